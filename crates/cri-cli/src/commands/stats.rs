//! `stats` and `statsp`: resource usage of containers and pod sandboxes.

use std::collections::HashSet;

use cri_api::v1::{
    ContainerFilter, ContainerState, ContainerStateValue, ContainerStats, ContainerStatsFilter,
    ListContainerStatsResponse, ListPodSandboxStatsResponse, PodSandboxStats,
    PodSandboxStatsFilter, UInt64Value,
};

use crate::cli::{DocFormat, StatsArgs, StatspArgs};
use crate::commands::{Ctx, container_id, labels, pod_id};
use crate::error::Result;
use crate::output::{self, Table, short_id, to_json};

fn value(v: Option<&UInt64Value>) -> u64 {
    v.map_or(0, |v| v.value)
}

/// CPU use in percent of one core, from nanocores: `12.34`.
pub(crate) fn cpu_percent(nano_cores: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // two decimals are shown
    let percent = nano_cores as f64 / 1e7;
    format!("{percent:.2}")
}

fn container_row(stats: &ContainerStats, no_trunc: bool) -> Vec<String> {
    let attributes = stats.attributes.clone().unwrap_or_default();
    let cpu = stats.cpu.unwrap_or_default();
    let memory = stats.memory.unwrap_or_default();
    let disk = stats.writable_layer.clone().unwrap_or_default();
    vec![
        short_id(&attributes.id, no_trunc),
        attributes.metadata.unwrap_or_default().name,
        cpu_percent(value(cpu.usage_nano_cores.as_ref())),
        output::human_size(value(memory.working_set_bytes.as_ref())),
        output::human_size(value(disk.used_bytes.as_ref())),
        value(disk.inodes_used.as_ref()).to_string(),
    ]
}

fn pod_row(stats: &PodSandboxStats, no_trunc: bool) -> Vec<String> {
    let attributes = stats.attributes.clone().unwrap_or_default();
    let linux = stats.linux.clone().unwrap_or_default();
    let cpu = linux.cpu.unwrap_or_default();
    let memory = linux.memory.unwrap_or_default();
    vec![
        attributes.metadata.unwrap_or_default().name,
        short_id(&attributes.id, no_trunc),
        cpu_percent(value(cpu.usage_nano_cores.as_ref())),
        output::human_size(value(memory.working_set_bytes.as_ref())),
    ]
}

/// `stats`: `ListContainerStats`, running containers only unless `-a` or an id is given.
pub(crate) async fn containers(ctx: &mut Ctx<'_>, args: StatsArgs) -> Result<i32> {
    let id = match args.container.as_deref().or(args.id.as_deref()) {
        Some(given) if args.container.is_some() => container_id(&ctx.client, given).await?,
        Some(prefix) => prefix.to_string(),
        None => String::new(),
    };
    let pod_sandbox_id = match &args.pod {
        Some(pod) => pod_id(&ctx.client, pod).await?,
        None => String::new(),
    };
    let label_selector = labels(&args.label)?;
    let mut stats = ctx
        .client
        .list_container_stats(Some(ContainerStatsFilter {
            id: id.clone(),
            pod_sandbox_id: pod_sandbox_id.clone(),
            label_selector: label_selector.clone(),
        }))
        .await?;
    if !args.all && args.container.is_none() {
        let running: HashSet<String> = ctx
            .client
            .list_containers(Some(ContainerFilter {
                id,
                state: Some(ContainerStateValue {
                    state: ContainerState::ContainerRunning as i32,
                }),
                pod_sandbox_id,
                label_selector,
            }))
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect();
        stats.retain(|s| {
            s.attributes
                .as_ref()
                .is_some_and(|a| running.contains(&a.id))
        });
    }
    stats.sort_by_key(|s| s.attributes.as_ref().map(|a| a.id.clone()));
    match args.output {
        DocFormat::Json | DocFormat::Yaml => {
            let doc = to_json(&ListContainerStatsResponse { stats })?;
            if let Some(document) = args.output.document() {
                output::write_document(ctx.out, &doc, document)?;
            }
        }
        DocFormat::Table => {
            let mut table = Table::new(&["CONTAINER", "NAME", "CPU %", "MEM", "DISK", "INODES"]);
            for s in &stats {
                table.row(container_row(s, args.no_trunc));
            }
            table.write(ctx.out)?;
        }
    }
    Ok(0)
}

/// `statsp`: `ListPodSandboxStats`.
pub(crate) async fn pods(ctx: &mut Ctx<'_>, args: StatspArgs) -> Result<i32> {
    let id = match &args.pod {
        Some(given) => pod_id(&ctx.client, given).await?,
        None => String::new(),
    };
    let mut stats = ctx
        .client
        .list_pod_sandbox_stats(Some(PodSandboxStatsFilter {
            id,
            label_selector: labels(&args.label)?,
        }))
        .await?;
    stats.sort_by_key(|s| s.attributes.as_ref().map(|a| a.id.clone()));
    match args.output {
        DocFormat::Json | DocFormat::Yaml => {
            let doc = to_json(&ListPodSandboxStatsResponse { stats })?;
            if let Some(document) = args.output.document() {
                output::write_document(ctx.out, &doc, document)?;
            }
        }
        DocFormat::Table => {
            let mut table = Table::new(&["POD", "POD ID", "CPU %", "MEM"]);
            for s in &stats {
                table.row(pod_row(s, args.no_trunc));
            }
            table.write(ctx.out)?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_percent_of_a_core() {
        assert_eq!(cpu_percent(10_000_000), "1.00");
        assert_eq!(cpu_percent(1_234_567_890), "123.46");
        assert_eq!(cpu_percent(0), "0.00");
    }

    #[test]
    fn rows_tolerate_missing_fields() {
        assert_eq!(
            container_row(&ContainerStats::default(), false),
            ["", "", "0.00", "0B", "0B", "0"]
        );
        assert_eq!(
            pod_row(&PodSandboxStats::default(), false),
            ["", "", "0.00", "0B"]
        );
    }
}
