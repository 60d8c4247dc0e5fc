//! Every stop and remove may be repeated, and may name something already gone.

use std::time::Duration;

use super::case;
use crate::conformance::{Case, Ctx, Stop};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "idempotence",
            "stop-sandbox",
            "StopPodSandbox twice succeeds",
            stop_sandbox
        ),
        case!(
            "idempotence",
            "stop-removed-sandbox",
            "StopPodSandbox of a removed sandbox succeeds (its resources are reclaimed)",
            stop_removed_sandbox
        ),
        case!(
            "idempotence",
            "remove-sandbox",
            "RemovePodSandbox twice succeeds",
            remove_sandbox
        ),
        case!(
            "idempotence",
            "stop-container",
            "StopContainer twice succeeds",
            stop_container
        ),
        case!(
            "idempotence",
            "remove-container",
            "RemoveContainer twice succeeds",
            remove_container
        ),
        case!(
            "idempotence",
            "remove-image",
            "RemoveImage of a missing image succeeds",
            remove_image
        ),
    ]
}

async fn stop_sandbox(ctx: Ctx) -> Result<(), Stop> {
    let (id, _) = ctx.run_sandbox("pod").await?;
    ctx.client().stop_pod_sandbox(&id).await?;
    ctx.client().stop_pod_sandbox(&id).await?;
    Ok(())
}

/// CRI: StopPodSandbox "must not return an error if all relevant resources have already been
/// reclaimed" — which removal does.
async fn stop_removed_sandbox(ctx: Ctx) -> Result<(), Stop> {
    let (id, _) = ctx.run_sandbox("pod").await?;
    ctx.client().stop_pod_sandbox(&id).await?;
    ctx.client().remove_pod_sandbox(&id).await?;
    ctx.client().stop_pod_sandbox(&id).await?;
    Ok(())
}

async fn remove_sandbox(ctx: Ctx) -> Result<(), Stop> {
    let (id, _) = ctx.run_sandbox("pod").await?;
    ctx.client().stop_pod_sandbox(&id).await?;
    ctx.client().remove_pod_sandbox(&id).await?;
    ctx.client().remove_pod_sandbox(&id).await?;
    Ok(())
}

async fn stop_container(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let id = ctx.start_container(&sandbox, "c", ctx.sleeper()).await?;
    // CRI: StopContainer "must not return an error if the container has already been
    // stopped" (a removed container is another matter, which CRI leaves open).
    ctx.client()
        .stop_container(&id, Duration::from_secs(1))
        .await?;
    ctx.client()
        .stop_container(&id, Duration::from_secs(1))
        .await?;
    Ok(())
}

async fn remove_container(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let id = ctx.start_container(&sandbox, "c", ctx.sleeper()).await?;
    ctx.client()
        .stop_container(&id, Duration::from_secs(1))
        .await?;
    ctx.client().remove_container(&id).await?;
    ctx.client().remove_container(&id).await?;
    Ok(())
}

async fn remove_image(ctx: Ctx) -> Result<(), Stop> {
    ctx.client()
        .remove_image("cri-testkit.invalid/never-pulled:none")
        .await?;
    Ok(())
}
