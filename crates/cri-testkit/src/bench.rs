//! Lifecycle benchmarks: pod and container lifecycles against any runtime, with N lifecycles
//! in parallel, reported as percentiles and in critest's raw datapoint shape.
//!
//! ```
//! use cri_testkit::bench::{Lifecycle, run};
//! use cri_testkit::conformance::Config;
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let harness = cri_testkit::Harness::fake(cri_testkit::FakeRuntime::builder().image("busybox").build()).await.unwrap();
//! let result = run(&harness.client, Lifecycle::Pod, 20, 4, &Config::default()).await.unwrap();
//! assert_eq!(result.datapoints.len(), 20);
//! assert_eq!(result.operations, ["CreatePod", "StatusPod", "StopPod", "RemovePod"]);
//! println!("{}", result.table());
//! # });
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cri_client::Client;
use cri_client::cri_api::v1::*;
use futures_util::StreamExt;

use crate::conformance::Config;

/// Which lifecycle to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// RunPodSandbox, PodSandboxStatus, StopPodSandbox, RemovePodSandbox.
    Pod,
    /// CreateContainer, StartContainer, ContainerStatus, StopContainer, RemoveContainer (in a
    /// sandbox created outside the measurement).
    Container,
}

impl Lifecycle {
    /// The operation names, as critest labels them.
    pub fn operations(self) -> &'static [&'static str] {
        match self {
            Self::Pod => &["CreatePod", "StatusPod", "StopPod", "RemovePod"],
            Self::Container => &[
                "CreateContainer",
                "StartContainer",
                "StatusContainer",
                "StopContainer",
                "RemoveContainer",
            ],
        }
    }
}

/// One measured lifecycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datapoint {
    /// Index of the sample.
    pub sample_index: usize,
    /// Start, nanoseconds since the Unix epoch.
    pub start_time: i64,
    /// End, nanoseconds since the Unix epoch.
    pub end_time: i64,
    /// Duration of each operation, in nanoseconds, in order.
    pub durations_ns: Vec<i64>,
}

/// The result of one benchmark run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LifecycleResult {
    /// The lifecycle measured.
    pub lifecycle: Lifecycle,
    /// Operation names.
    pub operations: Vec<&'static str>,
    /// Lifecycles run at once.
    pub parallel: usize,
    /// Every sample.
    pub datapoints: Vec<Datapoint>,
}

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed in sample {sample}: {source}")]
pub struct BenchError {
    /// The operation that failed.
    pub operation: &'static str,
    /// The sample.
    pub sample: usize,
    /// The client error.
    #[source]
    pub source: cri_client::Error,
}

fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The `p`-th percentile (0–100) of `values` by nearest rank; `None` when empty.
pub fn percentile(values: &[i64], p: f64) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

impl LifecycleResult {
    /// Per-operation durations, in nanoseconds.
    pub fn durations(&self, operation: usize) -> Vec<i64> {
        self.datapoints
            .iter()
            .filter_map(|d| d.durations_ns.get(operation).copied())
            .collect()
    }

    /// p50/p90/p99 per operation and for the whole lifecycle, as a table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<18} {:>10} {:>10} {:>10}   ({} samples, {} in parallel)\n",
            "operation",
            "p50",
            "p90",
            "p99",
            self.datapoints.len(),
            self.parallel
        );
        let fmt =
            |ns: Option<i64>| ns.map_or("-".to_string(), |ns| format!("{:.2} ms", ns as f64 / 1e6));
        let mut rows: Vec<(String, Vec<i64>)> = self
            .operations
            .iter()
            .enumerate()
            .map(|(i, op)| (op.to_string(), self.durations(i)))
            .collect();
        rows.push((
            "whole lifecycle".to_string(),
            self.datapoints
                .iter()
                .map(|d| d.durations_ns.iter().sum())
                .collect(),
        ));
        for (name, values) in rows {
            let _ = writeln!(
                out,
                "{name:<18} {:>10} {:>10} {:>10}",
                fmt(percentile(&values, 50.0)),
                fmt(percentile(&values, 90.0)),
                fmt(percentile(&values, 99.0))
            );
        }
        out
    }

    /// JSON with percentiles (nanoseconds) and critest's raw shape under `"critest"`:
    /// `{"operationsNames", "numParallel", "datapoints": [{"sampleIndex", "startTime",
    /// "endTime", "operationsDurationsNs", "metaInfo"}]}`.
    pub fn json(&self) -> serde_json::Value {
        let percentiles: serde_json::Map<String, serde_json::Value> = self
            .operations
            .iter()
            .enumerate()
            .map(|(i, op)| {
                let values = self.durations(i);
                (
                    op.to_string(),
                    serde_json::json!({
                        "p50Ns": percentile(&values, 50.0),
                        "p90Ns": percentile(&values, 90.0),
                        "p99Ns": percentile(&values, 99.0),
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "lifecycle": match self.lifecycle { Lifecycle::Pod => "pod", Lifecycle::Container => "container" },
            "samples": self.datapoints.len(),
            "parallel": self.parallel,
            "percentiles": percentiles,
            "critest": {
                "operationsNames": self.operations,
                "numParallel": self.parallel,
                "datapoints": self.datapoints.iter().map(|d| serde_json::json!({
                    "sampleIndex": d.sample_index,
                    "startTime": d.start_time,
                    "endTime": d.end_time,
                    "operationsDurationsNs": d.durations_ns,
                    "metaInfo": HashMap::<String, String>::new(),
                })).collect::<Vec<_>>(),
            },
        })
    }
}

/// Times `f`, attributing a failure to `operation`.
async fn timed<T>(
    durations: &mut Vec<i64>,
    operation: &'static str,
    sample: usize,
    f: impl std::future::Future<Output = cri_client::Result<T>>,
) -> Result<T, BenchError> {
    let started = Instant::now();
    let value = f.await.map_err(|source| BenchError {
        operation,
        sample,
        source,
    })?;
    durations.push(i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX));
    Ok(value)
}

/// Runs `samples` lifecycles, `parallel` at a time, and returns every datapoint.
///
/// # Errors
///
/// The first failed operation (the benchmark measures a working runtime).
pub async fn run(
    client: &Client,
    lifecycle: Lifecycle,
    samples: usize,
    parallel: usize,
    config: &Config,
) -> Result<LifecycleResult, BenchError> {
    let suite_ctx = Arc::new(config.clone());
    let run_id = format!("{:x}", unix_nanos() & 0xffff_ffff);
    let sandbox = match lifecycle {
        Lifecycle::Pod => None,
        Lifecycle::Container => {
            if client
                .image_status(&config.image)
                .await
                .map_err(|source| BenchError {
                    operation: "ImageStatus",
                    sample: 0,
                    source,
                })?
                .is_none()
            {
                client
                    .pull_image(&config.image, None)
                    .await
                    .map_err(|source| BenchError {
                        operation: "PullImage",
                        sample: 0,
                        source,
                    })?;
            }
            let pod = pod_config(&format!("bench-{run_id}"), &suite_ctx);
            let id = client
                .run_pod_sandbox(pod.clone(), config.runtime_handler.clone())
                .await
                .map_err(|source| BenchError {
                    operation: "RunPodSandbox",
                    sample: 0,
                    source,
                })?;
            Some((id, pod))
        }
    };
    let results: Vec<Result<Datapoint, BenchError>> = futures_util::stream::iter(0..samples)
        .map(|sample| {
            let client = client.clone();
            let config = suite_ctx.clone();
            let sandbox = sandbox.clone();
            let run_id = run_id.clone();
            async move {
                let start_time = unix_nanos();
                let mut d = Vec::new();
                match &sandbox {
                    None => {
                        let pod = pod_config(&format!("bench-{run_id}-{sample}"), &config);
                        let id = timed(
                            &mut d,
                            "CreatePod",
                            sample,
                            client.run_pod_sandbox(pod, config.runtime_handler.clone()),
                        )
                        .await?;
                        timed(
                            &mut d,
                            "StatusPod",
                            sample,
                            client.pod_sandbox_status(&id, false),
                        )
                        .await?;
                        timed(&mut d, "StopPod", sample, client.stop_pod_sandbox(&id)).await?;
                        timed(&mut d, "RemovePod", sample, client.remove_pod_sandbox(&id)).await?;
                    }
                    Some((pod_id, pod)) => {
                        let container = ContainerConfig {
                            metadata: Some(ContainerMetadata {
                                name: format!("c{sample}"),
                                attempt: 0,
                            }),
                            image: Some(ImageSpec {
                                image: config.image.clone(),
                                ..Default::default()
                            }),
                            command: vec!["sleep".into(), "3600".into()],
                            linux: Some(LinuxContainerConfig::default()),
                            ..Default::default()
                        };
                        let id = timed(
                            &mut d,
                            "CreateContainer",
                            sample,
                            client.create_container(pod_id, container, Some(pod.clone())),
                        )
                        .await?;
                        timed(
                            &mut d,
                            "StartContainer",
                            sample,
                            client.start_container(&id),
                        )
                        .await?;
                        timed(
                            &mut d,
                            "StatusContainer",
                            sample,
                            client.container_status(&id, false),
                        )
                        .await?;
                        timed(
                            &mut d,
                            "StopContainer",
                            sample,
                            client.stop_container(&id, Duration::ZERO),
                        )
                        .await?;
                        timed(
                            &mut d,
                            "RemoveContainer",
                            sample,
                            client.remove_container(&id),
                        )
                        .await?;
                    }
                }
                Ok(Datapoint {
                    sample_index: sample,
                    start_time,
                    end_time: unix_nanos(),
                    durations_ns: d,
                })
            }
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    if let Some((id, _)) = &sandbox {
        let _ = client.stop_pod_sandbox(id).await;
        let _ = client.remove_pod_sandbox(id).await;
    }
    let mut datapoints = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    datapoints.sort_by_key(|d| d.sample_index);
    Ok(LifecycleResult {
        lifecycle,
        operations: lifecycle.operations().to_vec(),
        parallel: parallel.max(1),
        datapoints,
    })
}

fn pod_config(name: &str, config: &Config) -> PodSandboxConfig {
    let mut pod = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_string(),
            namespace: "cri-testkit-bench".into(),
            uid: format!("uid-{name}"),
            attempt: 0,
        }),
        linux: Some(LinuxPodSandboxConfig::default()),
        ..Default::default()
    };
    if config.host_network {
        pod.linux = Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), Some(50));
        assert_eq!(percentile(&values, 90.0), Some(90));
        assert_eq!(percentile(&values, 99.0), Some(99));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[3, 1, 2], 0.0), Some(1));
    }
}
