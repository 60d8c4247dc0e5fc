//! Error codes the kubelet relies on.

use super::case;
use crate::conformance::ctx::check;
use crate::conformance::{Case, Ctx, Stop};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "errors",
            "not-found",
            "status calls for unknown ids answer NotFound",
            not_found
        ),
        case!(
            "errors",
            "unknown-sandbox",
            "CreateContainer in an unknown sandbox fails",
            unknown_sandbox
        ),
    ]
}

const UNKNOWN: &str = "0000000000000000000000000000000000000000000000000000000000c0ffee";

async fn not_found(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.client().pod_sandbox_status(UNKNOWN, false).await;
    check(
        sandbox.as_ref().is_err_and(cri_client::Error::is_not_found),
        "PodSandboxStatus of an unknown id",
        "NotFound",
        sandbox.map(|_| ()).map_err(|e| e.to_string()),
    )?;
    let container = ctx.client().container_status(UNKNOWN, false).await;
    check(
        container
            .as_ref()
            .is_err_and(cri_client::Error::is_not_found),
        "ContainerStatus of an unknown id",
        "NotFound",
        container.map(|_| ()).map_err(|e| e.to_string()),
    )
}

async fn unknown_sandbox(ctx: Ctx) -> Result<(), Stop> {
    ctx.ensure_image().await?;
    let config = ctx.container_config("orphan", ctx.sleeper());
    let result = ctx.client().create_container(UNKNOWN, config, None).await;
    check(
        result.is_err(),
        "CreateContainer in an unknown sandbox",
        "an error",
        result,
    )
}
