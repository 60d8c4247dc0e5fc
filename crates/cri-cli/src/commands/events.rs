//! `events`: the `GetContainerEvents` stream, one line per event, until interrupted or the
//! runtime closes it.

use futures_util::StreamExt;

use crate::cli::EventFormat;
use crate::commands::Ctx;
use crate::error::Result;
use crate::output::{short_id, to_json};

/// Short event names for the table: `CONTAINER_STARTED_EVENT` → `Started`.
pub(crate) fn event_name(kind: i32) -> &'static str {
    use cri_api::v1::ContainerEventType;
    match ContainerEventType::try_from(kind) {
        Ok(ContainerEventType::ContainerCreatedEvent) => "Created",
        Ok(ContainerEventType::ContainerStartedEvent) => "Started",
        Ok(ContainerEventType::ContainerStoppedEvent) => "Stopped",
        Ok(ContainerEventType::ContainerDeletedEvent) => "Deleted",
        Err(_) => "Unknown",
    }
}

/// `events`.
pub(crate) async fn stream(ctx: &mut Ctx<'_>, output: EventFormat) -> Result<i32> {
    let mut events = ctx.client.events().await?;
    if output == EventFormat::Table {
        writeln!(
            ctx.out,
            "{:<31} {:<13}  {:<8} {:<13}  POD",
            "TIME", "CONTAINER", "EVENT", "POD ID"
        )?;
        ctx.out.flush()?;
    }
    while let Some(event) = events.next().await {
        let event = event?;
        match output {
            EventFormat::Json => {
                let line = serde_json::to_string(&to_json(&event)?)?;
                writeln!(ctx.out, "{line}")?;
            }
            EventFormat::Table => {
                let pod = event.pod_sandbox_status.clone().unwrap_or_default();
                writeln!(
                    ctx.out,
                    "{:<31} {:<13}  {:<8} {:<13}  {}",
                    cri_api::log::rfc3339_nanos(event.created_at),
                    short_id(&event.container_id, false),
                    event_name(event.container_event_type),
                    short_id(&pod.id, false),
                    pod.metadata.unwrap_or_default().name
                )?;
            }
        }
        ctx.out.flush()?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names() {
        use cri_api::v1::ContainerEventType;
        assert_eq!(
            event_name(ContainerEventType::ContainerStartedEvent as i32),
            "Started"
        );
        assert_eq!(
            event_name(ContainerEventType::ContainerDeletedEvent as i32),
            "Deleted"
        );
        assert_eq!(event_name(42), "Unknown");
    }
}
