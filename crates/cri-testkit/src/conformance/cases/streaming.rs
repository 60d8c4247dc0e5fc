//! The `Stream*` list RPCs (Kubernetes 1.36+) against their `List*` counterparts.

use std::collections::BTreeSet;

use cri_client::cri_api::v1::*;
use tonic::Code;

use super::case;
use crate::conformance::ctx::{check, expect_eq, skip};
use crate::conformance::{Case, Ctx, Stop};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "streaming",
            "pod-sandboxes",
            "StreamPodSandboxes equals ListPodSandbox: each item once, no empty batch",
            sandboxes
        ),
        case!(
            "streaming",
            "containers",
            "StreamContainers equals ListContainers: each item once, no empty batch",
            containers
        ),
        case!(
            "streaming",
            "images",
            "StreamImages equals ListImages: each item once, no empty batch",
            images
        ),
        case!(
            "streaming",
            "container-stats",
            "StreamContainerStats equals ListContainerStats",
            container_stats
        ),
    ]
}

/// Collects a stream, checking the batching rules; `Unimplemented` skips.
async fn collect<B>(
    what: &str,
    opened: Result<tonic::Response<tonic::Streaming<B>>, tonic::Status>,
    items: impl Fn(B) -> Vec<String>,
) -> Result<Vec<String>, Stop> {
    let unimplemented = |s: &tonic::Status| s.code() == Code::Unimplemented;
    let mut stream = match opened {
        Ok(stream) => stream.into_inner(),
        Err(s) if unimplemented(&s) => return skip(format!("{what} is not implemented")),
        Err(s) => return Err(cri_client::Error::from_status("Stream", s).into()),
    };
    let mut all = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(batch)) => {
                let batch = items(batch);
                check(
                    !batch.is_empty(),
                    &format!("{what} batches are non-empty"),
                    "≥ 1 item",
                    0,
                )?;
                all.extend(batch);
            }
            Ok(None) => break,
            Err(s) if unimplemented(&s) && all.is_empty() => {
                return skip(format!("{what} is not implemented"));
            }
            Err(s) => return Err(cri_client::Error::from_status("Stream", s).into()),
        }
    }
    let unique: BTreeSet<&String> = all.iter().collect();
    expect_eq(
        &format!("{what}: each item in exactly one batch"),
        all.len(),
        unique.len(),
    )?;
    Ok(all)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn sandboxes(ctx: Ctx) -> Result<(), Stop> {
    for name in ["a", "b", "c"] {
        ctx.run_sandbox(name).await?;
    }
    let filter = PodSandboxFilter {
        label_selector: ctx.labels(),
        ..Default::default()
    };
    let opened = ctx
        .client()
        .runtime_client()
        .stream_pod_sandboxes(StreamPodSandboxesRequest {
            filter: Some(filter.clone()),
        })
        .await;
    let streamed = collect(
        "StreamPodSandboxes",
        opened,
        |b: StreamPodSandboxesResponse| b.pod_sandboxes.into_iter().map(|p| p.id).collect(),
    )
    .await?;
    let listed = ctx
        .client()
        .with_timeout(ctx.client().timeout())
        .call(ListPodSandboxRequest {
            filter: Some(filter),
        })
        .await?;
    expect_eq(
        "streamed = listed",
        sorted(listed.items.into_iter().map(|p| p.id).collect()),
        sorted(streamed),
    )
}

async fn containers(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    for name in ["a", "b", "c"] {
        ctx.create_container(&sandbox, name, ctx.sleeper()).await?;
    }
    // A decoy without this case's labels: a filter that is ignored would return it too.
    let mut decoy = ctx.container_config("decoy", ctx.sleeper());
    decoy.labels.insert(
        crate::conformance::CASE_LABEL.to_string(),
        "decoy".to_string(),
    );
    ctx.client()
        .create_container(&sandbox.0, decoy, Some(sandbox.1.clone()))
        .await?;
    let filter = ContainerFilter {
        label_selector: ctx.labels(),
        ..Default::default()
    };
    let opened = ctx
        .client()
        .runtime_client()
        .stream_containers(StreamContainersRequest {
            filter: Some(filter.clone()),
        })
        .await;
    let streamed = collect("StreamContainers", opened, |b: StreamContainersResponse| {
        b.containers.into_iter().map(|c| c.id).collect()
    })
    .await?;
    expect_eq("streamed containers", 3, streamed.len())?;
    let listed = ctx
        .client()
        .call(ListContainersRequest {
            filter: Some(filter),
        })
        .await?;
    expect_eq(
        "streamed = listed",
        sorted(listed.containers.into_iter().map(|c| c.id).collect()),
        sorted(streamed),
    )
}

async fn images(ctx: Ctx) -> Result<(), Stop> {
    ctx.ensure_image().await?;
    let opened = ctx
        .client()
        .image_client()
        .stream_images(StreamImagesRequest { filter: None })
        .await;
    let streamed = collect("StreamImages", opened, |b: StreamImagesResponse| {
        b.images.into_iter().map(|i| i.id).collect()
    })
    .await?;
    let listed = ctx
        .client()
        .call(ListImagesRequest { filter: None })
        .await?;
    expect_eq(
        "streamed = listed",
        sorted(listed.images.into_iter().map(|i| i.id).collect()),
        sorted(streamed),
    )
}

async fn container_stats(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let id = ctx.start_container(&sandbox, "a", ctx.sleeper()).await?;
    let filter = ContainerStatsFilter {
        id: id.clone(),
        ..Default::default()
    };
    let opened = ctx
        .client()
        .runtime_client()
        .stream_container_stats(StreamContainerStatsRequest {
            filter: Some(filter.clone()),
        })
        .await;
    let streamed = collect(
        "StreamContainerStats",
        opened,
        |b: StreamContainerStatsResponse| {
            b.container_stats
                .into_iter()
                .filter_map(|s| s.attributes.map(|a| a.id))
                .collect()
        },
    )
    .await?;
    let listed = ctx
        .client()
        .call(ListContainerStatsRequest {
            filter: Some(filter),
        })
        .await?;
    let listed: Vec<String> = listed
        .stats
        .into_iter()
        .filter_map(|s| s.attributes.map(|a| a.id))
        .collect();
    expect_eq("streamed = listed", sorted(listed), sorted(streamed))
}
