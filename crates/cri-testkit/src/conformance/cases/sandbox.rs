//! Pod sandboxes: lifecycle, attributes preserved, filters.

use cri_client::cri_api::v1::*;

use super::case;
use crate::conformance::ctx::{CASE_LABEL, check, expect_eq};
use crate::conformance::{Case, Ctx, Stop};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "sandbox",
            "lifecycle",
            "run → READY, stop → NOTREADY, remove → NotFound",
            lifecycle
        ),
        case!(
            "sandbox",
            "attributes",
            "metadata, labels and annotations come back unchanged",
            attributes
        ),
        case!(
            "sandbox",
            "list-filters",
            "ListPodSandbox filters by id, state and labels",
            filters
        ),
    ]
}

async fn lifecycle(ctx: Ctx) -> Result<(), Stop> {
    let (id, _) = ctx.run_sandbox("life").await?;
    let status = ctx
        .client()
        .pod_sandbox_status(&id, false)
        .await?
        .status
        .unwrap_or_default();
    expect_eq(
        "state after RunPodSandbox",
        PodSandboxState::SandboxReady,
        status.state(),
    )?;
    expect_eq("status.id", id.as_str(), status.id.as_str())?;
    check(
        status.created_at > 0,
        "created_at is set",
        "> 0",
        status.created_at,
    )?;

    ctx.client().stop_pod_sandbox(&id).await?;
    let status = ctx
        .client()
        .pod_sandbox_status(&id, false)
        .await?
        .status
        .unwrap_or_default();
    expect_eq(
        "state after StopPodSandbox",
        PodSandboxState::SandboxNotready,
        status.state(),
    )?;

    ctx.client().remove_pod_sandbox(&id).await?;
    let gone = ctx.client().pod_sandbox_status(&id, false).await;
    check(
        gone.as_ref().is_err_and(cri_client::Error::is_not_found),
        "PodSandboxStatus after RemovePodSandbox",
        "NotFound",
        gone.map(|_| "a status").map_err(|e| e.to_string()),
    )
}

async fn attributes(ctx: Ctx) -> Result<(), Stop> {
    let (id, config) = ctx.run_sandbox("attrs").await?;
    let status = ctx
        .client()
        .pod_sandbox_status(&id, false)
        .await?
        .status
        .unwrap_or_default();
    expect_eq(
        "metadata",
        config.metadata.as_ref(),
        status.metadata.as_ref(),
    )?;
    for (k, v) in &config.labels {
        expect_eq(&format!("label {k}"), Some(v), status.labels.get(k))?;
    }
    for (k, v) in &config.annotations {
        expect_eq(
            &format!("annotation {k}"),
            Some(v),
            status.annotations.get(k),
        )?;
    }
    let listed = ctx
        .client()
        .list_pod_sandbox(Some(PodSandboxFilter {
            id: id.clone(),
            ..Default::default()
        }))
        .await?;
    let item = listed.iter().find(|p| p.id == id);
    check(item.is_some(), "the sandbox is listed", &id, &listed)?;
    expect_eq(
        "listed metadata",
        config.metadata.as_ref(),
        item.and_then(|p| p.metadata.as_ref()),
    )
}

async fn filters(ctx: Ctx) -> Result<(), Stop> {
    let (a, _) = ctx.run_sandbox("a").await?;
    let (b, _) = ctx.run_sandbox("b").await?;
    ctx.client().stop_pod_sandbox(&b).await?;
    let mine = ctx
        .labels()
        .into_iter()
        .filter(|(k, _)| k == CASE_LABEL)
        .collect();
    let ids = |pods: Vec<PodSandbox>| {
        let mut ids: Vec<String> = pods.into_iter().map(|p| p.id).collect();
        ids.sort();
        ids
    };
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    let by_label = ctx
        .client()
        .list_pod_sandbox(Some(PodSandboxFilter {
            label_selector: mine,
            ..Default::default()
        }))
        .await?;
    expect_eq("filter by label", both, ids(by_label))?;
    let by_id = ctx
        .client()
        .list_pod_sandbox(Some(PodSandboxFilter {
            id: a.clone(),
            ..Default::default()
        }))
        .await?;
    expect_eq("filter by id", vec![a.clone()], ids(by_id))?;
    let ready = PodSandboxFilter {
        state: Some(PodSandboxStateValue {
            state: PodSandboxState::SandboxReady as i32,
        }),
        label_selector: ctx.labels(),
        ..Default::default()
    };
    expect_eq(
        "filter by state READY",
        vec![a],
        ids(ctx.client().list_pod_sandbox(Some(ready)).await?),
    )
}
