//! `GetContainerEvents` across a container's life.

use std::time::Duration;

use cri_client::cri_api::v1::*;
use futures_util::StreamExt;

use super::case;
use crate::conformance::ctx::expect_eq;
use crate::conformance::{Case, Ctx, Failure, Stop};

pub(super) fn cases() -> Vec<Case> {
    vec![case!(
        "events",
        "container-lifecycle",
        "GetContainerEvents reports CREATED, STARTED, STOPPED, DELETED for a container, in order",
        lifecycle
    )]
}

async fn lifecycle(ctx: Ctx) -> Result<(), Stop> {
    let mut events = ctx.client().events().await?;
    let sandbox = ctx.run_sandbox("pod").await?;
    let id = ctx
        .start_container(&sandbox, "watched", ctx.sleeper())
        .await?;
    ctx.client()
        .stop_container(&id, Duration::from_secs(1))
        .await?;
    ctx.client().remove_container(&id).await?;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < 4 {
        let next = tokio::time::timeout_at(deadline, events.next()).await;
        let event = match next {
            Ok(Some(Ok(event))) => event,
            Ok(Some(Err(e))) if e.is_unimplemented() => {
                return Err(Stop::Skip(format!(
                    "GetContainerEvents is not implemented: {e}"
                )));
            }
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) | Err(_) => {
                return Err(Stop::Fail(Failure {
                    check: "events for the container arrive".into(),
                    expected: "CREATED, STARTED, STOPPED, DELETED".into(),
                    got: format!("{seen:?} before the stream ended or 20 s passed"),
                }));
            }
        };
        if event.container_id == id {
            seen.push(event.container_event_type());
        }
    }
    expect_eq(
        "event sequence",
        vec![
            ContainerEventType::ContainerCreatedEvent,
            ContainerEventType::ContainerStartedEvent,
            ContainerEventType::ContainerStoppedEvent,
            ContainerEventType::ContainerDeletedEvent,
        ],
        seen,
    )
}
