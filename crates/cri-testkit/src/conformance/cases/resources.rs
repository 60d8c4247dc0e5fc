//! `UpdateContainerResources`.

use cri_client::cri_api::v1::*;

use super::case;
use crate::conformance::ctx::{expect_eq, skip};
use crate::conformance::{Case, Ctx, Stop};

pub(super) fn cases() -> Vec<Case> {
    vec![case!(
        "resources",
        "update-container",
        "UpdateContainerResources on a running container is applied and reported",
        update
    )]
}

async fn update(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let id = ctx
        .start_container(&sandbox, "limited", ctx.sleeper())
        .await?;
    let resources = LinuxContainerResources {
        cpu_shares: 512,
        cpu_period: 100_000,
        cpu_quota: 50_000,
        memory_limit_in_bytes: 256 << 20,
        ..Default::default()
    };
    ctx.client()
        .call(UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(resources.clone()),
            ..Default::default()
        })
        .await?;
    let status = ctx.container_status(&id).await?;
    let Some(reported) = status.resources.and_then(|r| r.linux) else {
        return skip(
            "the runtime applied the update but does not report resources in ContainerStatus",
        );
    };
    expect_eq("cpu_shares", resources.cpu_shares, reported.cpu_shares)?;
    expect_eq("cpu_quota", resources.cpu_quota, reported.cpu_quota)?;
    expect_eq(
        "memory_limit_in_bytes",
        resources.memory_limit_in_bytes,
        reported.memory_limit_in_bytes,
    )
}
