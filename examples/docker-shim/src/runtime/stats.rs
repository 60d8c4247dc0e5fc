//! Container and pod stats from the engine's one-shot stats.

use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::{InspectContainerOptions, StatsOptions};
use cri_api::v1::{
    ContainerAttributes, ContainerConfig, ContainerStats, ContainerStatsFilter, CpuUsage,
    FilesystemIdentifier, FilesystemUsage, LinuxPodSandboxStats, MemoryUsage, PodSandboxAttributes,
    PodSandboxConfig, PodSandboxStats, PodSandboxStatsFilter, UInt64Value,
};
use cri_server::{Error, Result};
use futures_util::StreamExt;

use super::Runtime;
use super::pods::labels_match;
use crate::error;
use crate::labels;

fn value(v: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value: v })
}

/// CPU and memory usage from one Docker stats sample.
pub(crate) fn usage(stats: &ContainerStatsResponse, now: i64) -> (CpuUsage, MemoryUsage) {
    let cpu = stats.cpu_stats.clone().unwrap_or_default();
    let total = cpu
        .cpu_usage
        .as_ref()
        .and_then(|u| u.total_usage)
        .unwrap_or(0);
    let pre = stats.precpu_stats.clone().unwrap_or_default();
    let pre_total = pre
        .cpu_usage
        .as_ref()
        .and_then(|u| u.total_usage)
        .unwrap_or(0);
    let read = labels::parse_time(stats.read.as_deref().unwrap_or(""));
    let preread = labels::parse_time(stats.preread.as_deref().unwrap_or(""));
    let nano_cores = if pre_total > 0 && read > preread && preread > 0 && total >= pre_total {
        let window = u64::try_from(read - preread).unwrap_or(1).max(1);
        Some(((total - pre_total) as u128 * 1_000_000_000 / window as u128) as u64)
    } else {
        None
    };
    let memory = stats.memory_stats.clone().unwrap_or_default();
    let used = memory.usage.unwrap_or(0);
    let extra = memory.stats.unwrap_or_default();
    let inactive = extra
        .get("total_inactive_file")
        .or_else(|| extra.get("inactive_file"))
        .copied()
        .unwrap_or(0);
    let working_set = used.saturating_sub(inactive);
    let limit = memory.limit.unwrap_or(0);
    (
        CpuUsage {
            timestamp: now,
            usage_core_nano_seconds: value(total),
            usage_nano_cores: nano_cores.and_then(value),
            psi: None,
        },
        MemoryUsage {
            timestamp: now,
            working_set_bytes: value(working_set),
            available_bytes: (limit > 0)
                .then(|| value(limit.saturating_sub(working_set)))
                .flatten(),
            usage_bytes: value(used),
            rss_bytes: extra
                .get("total_rss")
                .or_else(|| extra.get("rss"))
                .or_else(|| extra.get("anon"))
                .copied()
                .and_then(value),
            page_faults: extra
                .get("total_pgfault")
                .or_else(|| extra.get("pgfault"))
                .copied()
                .and_then(value),
            major_page_faults: extra
                .get("total_pgmajfault")
                .or_else(|| extra.get("pgmajfault"))
                .copied()
                .and_then(value),
            psi: None,
        },
    )
}

impl Runtime {
    async fn sample(&self, id: &str) -> Result<ContainerStatsResponse> {
        let mut stream = self.docker.stats(
            id,
            Some(StatsOptions {
                stream: false,
                one_shot: true,
            }),
        );
        match stream.next().await {
            Some(Ok(stats)) => Ok(stats),
            Some(Err(e)) => Err(error::docker(&format!("stats of {id}"), e)),
            None => Err(Error::internal(format!("Docker sent no stats for {id}"))),
        }
    }

    /// ContainerStats.
    pub(crate) async fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        let inspect = self.inspect_kind(id, labels::CONTAINER).await?;
        let labels = inspect
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let config: ContainerConfig = labels::decode(&labels);
        let now = labels::now_nanos();
        let (cpu, memory) = match self.sample(id).await {
            Ok(stats) => usage(&stats, now),
            Err(_) => Default::default(),
        };
        let sized = self
            .docker
            .inspect_container(id, Some(InspectContainerOptions { size: true }))
            .await
            .ok();
        let writable = sized.and_then(|s| s.size_rw).unwrap_or(0);
        Ok(ContainerStats {
            attributes: Some(ContainerAttributes {
                id: id.to_string(),
                metadata: config.metadata,
                labels: config.labels,
                annotations: config.annotations,
            }),
            cpu: Some(cpu),
            memory: Some(memory),
            writable_layer: Some(FilesystemUsage {
                timestamp: now,
                fs_id: Some(FilesystemIdentifier {
                    mountpoint: self.docker_root().await,
                }),
                used_bytes: value(u64::try_from(writable).unwrap_or(0)),
                inodes_used: None,
            }),
            swap: None,
            io: None,
        })
    }

    /// Docker's data root (where writable layers live).
    pub(crate) async fn docker_root(&self) -> String {
        self.docker
            .info()
            .await
            .ok()
            .and_then(|i| i.docker_root_dir)
            .unwrap_or_default()
    }

    /// ListContainerStats: running containers matching `filter`.
    pub(crate) async fn list_container_stats(
        &self,
        filter: Option<&ContainerStatsFilter>,
    ) -> Result<Vec<ContainerStats>> {
        let mut out = Vec::new();
        for c in self.list_containers(None).await? {
            if c.state != cri_api::v1::ContainerState::ContainerRunning as i32 {
                continue;
            }
            if let Some(f) = filter
                && ((!f.id.is_empty() && !c.id.starts_with(&f.id))
                    || (!f.pod_sandbox_id.is_empty()
                        && !c.pod_sandbox_id.starts_with(&f.pod_sandbox_id))
                    || !labels_match(&c.labels, &f.label_selector))
            {
                continue;
            }
            match self.container_stats(&c.id).await {
                Ok(stats) => out.push(stats),
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// PodSandboxStats: the pause container's usage and the containers'.
    pub(crate) async fn pod_stats(&self, id: &str) -> Result<PodSandboxStats> {
        let inspect = self.inspect_kind(id, labels::SANDBOX).await?;
        let labels = inspect
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let config: PodSandboxConfig = labels::decode(&labels);
        let now = labels::now_nanos();
        let containers = self
            .list_container_stats(Some(&ContainerStatsFilter {
                pod_sandbox_id: id.to_string(),
                ..Default::default()
            }))
            .await?;
        let (mut cpu, mut memory) = match self.sample(id).await {
            Ok(stats) => usage(&stats, now),
            Err(_) => Default::default(),
        };
        let add = |a: &mut Option<UInt64Value>, b: &Option<UInt64Value>| {
            if let Some(b) = b {
                a.get_or_insert(UInt64Value { value: 0 }).value += b.value;
            }
        };
        for c in &containers {
            if let Some(u) = &c.cpu {
                add(&mut cpu.usage_core_nano_seconds, &u.usage_core_nano_seconds);
                add(&mut cpu.usage_nano_cores, &u.usage_nano_cores);
            }
            if let Some(m) = &c.memory {
                add(&mut memory.working_set_bytes, &m.working_set_bytes);
                add(&mut memory.usage_bytes, &m.usage_bytes);
            }
        }
        Ok(PodSandboxStats {
            attributes: Some(PodSandboxAttributes {
                id: id.to_string(),
                metadata: config.metadata,
                labels: config.labels,
                annotations: config.annotations,
            }),
            linux: Some(LinuxPodSandboxStats {
                cpu: Some(cpu),
                memory: Some(memory),
                network: None,
                process: None,
                containers,
                io: None,
            }),
            windows: None,
        })
    }

    /// ListPodSandboxStats: ready pods matching `filter`.
    pub(crate) async fn list_pod_stats(
        &self,
        filter: Option<&PodSandboxStatsFilter>,
    ) -> Result<Vec<PodSandboxStats>> {
        let mut out = Vec::new();
        for pod in self.list_pods(None).await? {
            if pod.state != cri_api::v1::PodSandboxState::SandboxReady as i32 {
                continue;
            }
            if let Some(f) = filter
                && ((!f.id.is_empty() && !pod.id.starts_with(&f.id))
                    || !labels_match(&pod.labels, &f.label_selector))
            {
                continue;
            }
            match self.pod_stats(&pod.id).await {
                Ok(stats) => out.push(stats),
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}
