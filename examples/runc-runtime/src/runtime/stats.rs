//! Container and pod stats from cgroups, and the writable layer's disk usage.

use std::path::Path;

use cri_api::v1::{
    ContainerAttributes, ContainerState, ContainerStats, ContainerStatsFilter, CpuUsage,
    FilesystemIdentifier, FilesystemUsage, LinuxPodSandboxStats, MemoryUsage, PodSandboxAttributes,
    PodSandboxStats, PodSandboxStatsFilter, ProcessUsage, UInt64Value,
};
use cri_server::{Error, Result};

use super::pods::labels_match;
use super::{Container, Pod, Runtime, lock};
use crate::cgroups::Usage;
use crate::monitor::protocol::now_nanos;

fn value(v: Option<u64>) -> Option<UInt64Value> {
    v.map(|value| UInt64Value { value })
}

/// Bytes and inodes under `dir`, not following symlinks and not descending into other
/// filesystems (a container's mounted rootfs).
pub(crate) fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return (0, 0);
    };
    let mut bytes = 0;
    let mut inodes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.dev() != top.dev() {
            continue;
        }
        inodes += 1;
        bytes += meta.blocks() * 512;
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(&path)
        {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    (bytes, inodes)
}

fn cpu(usage: &Usage, timestamp: i64, rate: Option<u64>) -> CpuUsage {
    CpuUsage {
        timestamp,
        usage_core_nano_seconds: value(usage.cpu_nanos),
        usage_nano_cores: value(rate),
        psi: None,
    }
}

fn memory(usage: &Usage, timestamp: i64) -> MemoryUsage {
    MemoryUsage {
        timestamp,
        working_set_bytes: value(usage.working_set),
        available_bytes: None,
        usage_bytes: value(usage.memory_usage),
        rss_bytes: value(usage.rss),
        page_faults: value(usage.page_faults),
        major_page_faults: value(usage.major_page_faults),
        psi: None,
    }
}

impl Runtime {
    pub(crate) fn stats_of(&self, container: &Container) -> ContainerStats {
        let record = container.record();
        let timestamp = now_nanos();
        let mut stats = ContainerStats {
            attributes: Some(ContainerAttributes {
                id: record.id.clone(),
                metadata: record.config.metadata.clone(),
                labels: record.config.labels.clone(),
                annotations: record.config.annotations.clone(),
            }),
            ..Default::default()
        };
        if let Some(usage) = self.cgroups.usage(&record.cgroup_path) {
            // Cores in use since the previous reading, in nanocores.
            let rate = usage.cpu_nanos.and_then(|now| {
                let mut sample = lock(&container.cpu_sample);
                let previous = sample.replace((timestamp, now));
                let (then, before) = previous?;
                let elapsed = u64::try_from(timestamp - then).ok().filter(|e| *e > 0)?;
                Some(now.saturating_sub(before).saturating_mul(1_000_000_000) / elapsed)
            });
            stats.cpu = Some(cpu(&usage, timestamp, rate));
            stats.memory = Some(memory(&usage, timestamp));
        } else if container.state() != ContainerState::ContainerRunning {
            // An exited container has no cgroup left: zero usage, as the kubelet expects.
            stats.cpu = Some(cpu(&Usage::default(), timestamp, None));
            stats.memory = Some(memory(&Usage::default(), timestamp));
        }
        let upper = container.dir.join("rootfs.upper");
        let (bytes, inodes) = disk_usage(if upper.exists() {
            &upper
        } else {
            container.dir.as_path()
        });
        stats.writable_layer = Some(FilesystemUsage {
            timestamp,
            fs_id: Some(FilesystemIdentifier {
                mountpoint: self.containers_dir().display().to_string(),
            }),
            used_bytes: Some(UInt64Value { value: bytes }),
            inodes_used: Some(UInt64Value { value: inodes }),
        });
        stats
    }

    pub(crate) fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        let container = self
            .container(id)
            .ok_or_else(|| Error::not_found(format!("container {id:?} not found")))?;
        Ok(self.stats_of(&container))
    }

    pub(crate) fn list_container_stats(
        &self,
        filter: Option<&ContainerStatsFilter>,
    ) -> Vec<ContainerStats> {
        self.all_containers()
            .into_iter()
            .filter(|c| {
                let record = c.record();
                filter.is_none_or(|f| {
                    (f.id.is_empty() || record.id.starts_with(&f.id))
                        && (f.pod_sandbox_id.is_empty()
                            || record.pod_id.starts_with(&f.pod_sandbox_id))
                        && labels_match(&record.config.labels, &f.label_selector)
                })
            })
            // Stats are for containers that run (the kubelet asks for exited ones by id).
            .filter(|c| c.state() == ContainerState::ContainerRunning)
            .map(|c| self.stats_of(&c))
            .collect()
    }

    fn pod_stats_of(&self, pod: &Pod) -> PodSandboxStats {
        let record = pod.record();
        let timestamp = now_nanos();
        let containers: Vec<ContainerStats> = self
            .containers_of(&record.id)
            .iter()
            .filter(|c| c.state() == ContainerState::ContainerRunning)
            .map(|c| self.stats_of(c))
            .collect();
        // The pod's own cgroup when it has one of its own (the kubelet gives one per pod);
        // else the pause container's, which is at least the pod's infra.
        let pod_cgroup = if record.cgroup_parent.is_empty()
            || record.cgroup_parent.trim_end_matches('/')
                == self.host.cgroup_parent.trim_end_matches('/')
        {
            format!("{}/{}", record.cgroup_parent, record.id)
        } else {
            record.cgroup_parent.clone()
        };
        let usage = self.cgroups.usage(&pod_cgroup).unwrap_or_default();
        PodSandboxStats {
            attributes: Some(PodSandboxAttributes {
                id: record.id.clone(),
                metadata: record.config.metadata.clone(),
                labels: record.config.labels.clone(),
                annotations: record.config.annotations.clone(),
            }),
            linux: Some(LinuxPodSandboxStats {
                cpu: Some(cpu(&usage, timestamp, None)),
                memory: Some(memory(&usage, timestamp)),
                network: None,
                process: Some(ProcessUsage {
                    timestamp,
                    process_count: value(usage.pids),
                }),
                containers,
                io: None,
            }),
            windows: None,
        }
    }

    pub(crate) fn pod_stats(&self, id: &str) -> Result<PodSandboxStats> {
        let pod = self
            .pod(id)
            .ok_or_else(|| Error::not_found(format!("pod sandbox {id:?} not found")))?;
        Ok(self.pod_stats_of(&pod))
    }

    pub(crate) fn list_pod_stats(
        &self,
        filter: Option<&PodSandboxStatsFilter>,
    ) -> Vec<PodSandboxStats> {
        self.all_pods()
            .into_iter()
            .filter(|p| p.ready())
            .filter(|p| {
                let record = p.record();
                filter.is_none_or(|f| {
                    (f.id.is_empty() || record.id.starts_with(&f.id))
                        && labels_match(&record.config.labels, &f.label_selector)
                })
            })
            .map(|p| self.pod_stats_of(&p))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_counts_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/data"), vec![1u8; 10_000]).unwrap();
        std::os::unix::fs::symlink("/nowhere", dir.path().join("link")).unwrap();
        let (bytes, inodes) = disk_usage(dir.path());
        assert_eq!(inodes, 4, "root, etc, data, link");
        assert!(bytes >= 10_000, "{bytes}");
    }
}
