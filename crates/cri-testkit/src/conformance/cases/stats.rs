//! Container and sandbox stats.

use cri_client::cri_api::v1::*;

use super::case;
use crate::conformance::ctx::{check, expect_eq};
use crate::conformance::{Case, Ctx, Stop};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "stats",
            "container",
            "ContainerStats of a running container names it and reports CPU and memory",
            container
        ),
        case!(
            "stats",
            "list-containers",
            "ListContainerStats includes a running container",
            list
        ),
        case!(
            "stats",
            "pod-sandbox",
            "PodSandboxStats names the sandbox and reports Linux usage",
            sandbox
        ),
    ]
}

async fn container(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let id = ctx
        .start_container(&sandbox, "measured", ctx.sleeper())
        .await?;
    let stats = ctx.client().container_stats(&id).await?;
    expect_eq(
        "attributes.id",
        Some(id.as_str()),
        stats.attributes.as_ref().map(|a| a.id.as_str()),
    )?;
    check(stats.cpu.is_some(), "cpu usage", "reported", stats.cpu)?;
    check(
        stats.memory.is_some(),
        "memory usage",
        "reported",
        stats.memory,
    )
}

async fn list(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let id = ctx
        .start_container(&sandbox, "measured", ctx.sleeper())
        .await?;
    let filter = ContainerStatsFilter {
        pod_sandbox_id: sandbox.0.clone(),
        ..Default::default()
    };
    let stats = ctx.client().list_container_stats(Some(filter)).await?;
    let ids: Vec<String> = stats
        .into_iter()
        .filter_map(|s| s.attributes.map(|a| a.id))
        .collect();
    expect_eq("containers with stats in the sandbox", vec![id], ids)
}

async fn sandbox(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    ctx.start_container(&sandbox, "measured", ctx.sleeper())
        .await?;
    let stats = ctx.client().pod_sandbox_stats(&sandbox.0).await?;
    expect_eq(
        "attributes.id",
        Some(sandbox.0.as_str()),
        stats.attributes.as_ref().map(|a| a.id.as_str()),
    )?;
    check(
        stats.linux.is_some(),
        "linux stats",
        "reported",
        &stats.linux,
    )
}
