//! Pod and container start latency: runc-runtime against containerd 1.6 (and docker-shim over
//! Docker Engine 20.10 when its peer runs), in the same run.
//!
//! `cargo bench -p runc-runtime --bench lifecycle` (as root, with the containerd peer running:
//! `scripts/containerd-peer start` and its `env` exported; for docker-shim also
//! `scripts/docker-peer start` and its `env`). Every runtime runs the suite's lifecycle
//! benchmark (`cri_testkit::bench`) with the same image, host-network pods and one lifecycle at
//! a time, in alternating rounds so that machine noise falls on all; the table gives p50/p99 of
//! `RunPodSandbox` (pod start), `CreateContainer`, `StartContainer`, `StopPodSandbox` and
//! `RemovePodSandbox`, and each runtime's ratio to containerd (below 1 is faster).
//!
//! docker-shim is built here (`cargo build --release -p docker-shim`) and started on a private
//! root against `DOCKER_PEER_HOST`; without a reachable engine its column is left out.
//!
//! Environment: `LIFECYCLE_SAMPLES` (per runtime and lifecycle, default 40),
//! `LIFECYCLE_ROUNDS` (default 4).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cri_testkit::bench::{self, Lifecycle, LifecycleResult, percentile};
use cri_testkit::conformance::Config;
use cri_testkit::cri_client::Client;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

/// Durations (ns) of `operation` across results.
fn durations(results: &[LifecycleResult], operation: &str) -> Vec<i64> {
    results
        .iter()
        .flat_map(|r| {
            let index = r.operations.iter().position(|o| *o == operation);
            index.map(|i| r.durations(i)).unwrap_or_default()
        })
        .collect()
}

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

/// docker-shim on a private root against the Docker peer, killed (and its pods removed) on drop.
struct DockerShim {
    client: Client,
    log_root: PathBuf,
    child: Child,
    host: String,
    dir: tempfile::TempDir,
}

impl DockerShim {
    /// Builds and starts docker-shim, or says why it cannot (no engine, build failed).
    async fn start() -> Result<DockerShim, String> {
        let host = std::env::var("DOCKER_PEER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .ok_or("DOCKER_PEER_HOST is not set (`scripts/docker-peer start` and its `env`)")?;
        let reachable = Command::new("docker")
            .args(["-H", &host, "version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !reachable {
            return Err(format!("no Docker Engine answers on {host}"));
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let built = Command::new(env!("CARGO"))
            .args(["build", "--release", "--quiet", "-p", "docker-shim"])
            .current_dir(&workspace)
            .status()
            .map_err(|e| format!("running cargo: {e}"))?;
        if !built.success() {
            return Err("`cargo build --release -p docker-shim` failed".into());
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"));
        let binary = target.join("release/docker-shim");
        let dir = tempfile::Builder::new()
            .prefix("docker-shim-bench-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let socket = dir.path().join("cri.sock");
        let log_root = dir.path().join("logs");
        std::fs::create_dir_all(&log_root).map_err(|e| e.to_string())?;
        let pause = std::env::var("DOCKER_PEER_PAUSE_IMAGE")
            .unwrap_or_else(|_| common::PAUSE_IMAGE.to_string());
        let log = std::fs::File::create(dir.path().join("shim.log")).map_err(|e| e.to_string())?;
        let mut child = Command::new(&binary)
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--socket")
            .arg(&socket)
            .args(["--docker-host", &host, "--pause-image", &pause])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let started = Instant::now();
        while !socket.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("docker-shim exited with {status}"));
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                return Err("docker-shim did not listen within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let client = Client::connect(format!("unix://{}", socket.display()))
            .await
            .map_err(|e| format!("connecting to docker-shim: {e}"))?;
        Ok(DockerShim {
            client,
            log_root,
            child,
            host,
            dir,
        })
    }

    async fn shutdown(mut self) {
        if let Ok(pods) = self.client.list_pod_sandbox(None).await {
            for pod in pods {
                let _ = self.client.stop_pod_sandbox(&pod.id).await;
                let _ = self.client.remove_pod_sandbox(&pod.id).await;
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!(
            "docker-shim stopped (engine {}, state was in {})",
            self.host,
            self.dir.path().display()
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    common::until_interrupted(run()).await;
}

async fn run() {
    let Some(images) = common::requirements() else {
        return;
    };
    let Some(peer) = cri_testkit::peer::containerd() else {
        eprintln!("no containerd peer: nothing to compare against");
        return;
    };
    peer.reimport_images()
        .expect("importing images into containerd");
    let containerd = Client::connect(&peer.endpoint)
        .await
        .expect("connecting to containerd");

    let registry = common::registry(&images).await;
    let ours = common::Runtime::start(common::Options {
        registry: Some(registry.endpoint()),
        ..Default::default()
    })
    .await;
    ours.client
        .pull_image(&images.busybox, None)
        .await
        .expect("pulling busybox into runc-runtime");
    let shim = match DockerShim::start().await {
        Ok(shim) => {
            shim.client
                .pull_image(&images.busybox, None)
                .await
                .expect("pulling busybox into docker-shim");
            Some(shim)
        }
        Err(why) => {
            eprintln!("docker-shim left out of the comparison: {why}");
            None
        }
    };

    let mut runtimes: Vec<(&str, &Client, Config)> = vec![
        (
            "runc-runtime",
            &ours.client,
            Config {
                image: images.busybox.clone(),
                host_network: true,
                log_root: Some(ours.log_root.clone()),
                ..Default::default()
            },
        ),
        (
            "containerd",
            &containerd,
            Config {
                image: images.busybox.clone(),
                host_network: true,
                ..peer.conformance_config()
            },
        ),
    ];
    if let Some(shim) = &shim {
        runtimes.push((
            "docker-shim",
            &shim.client,
            Config {
                image: images.busybox.clone(),
                host_network: true,
                log_root: Some(shim.log_root.clone()),
                ..Default::default()
            },
        ));
    }
    // The pause image is pulled by the first pod; one warm-up lifecycle each keeps that (and
    // every runtime's first-use costs) out of the samples.
    for (name, client, config) in &runtimes {
        for lifecycle in [Lifecycle::Pod, Lifecycle::Container] {
            bench::run(client, lifecycle, 1, 1, config)
                .await
                .unwrap_or_else(|e| panic!("{name} warm-up: {e}"));
        }
    }

    let samples = env_usize("LIFECYCLE_SAMPLES", 40);
    let rounds = env_usize("LIFECYCLE_ROUNDS", 4).min(samples);
    let per_round = samples.div_ceil(rounds);
    let mut results: Vec<Vec<LifecycleResult>> = (0..runtimes.len()).map(|_| Vec::new()).collect();
    for round in 0..rounds {
        // Rotate which runtime goes first.
        for k in 0..runtimes.len() {
            let index = (round + k) % runtimes.len();
            let (name, client, config) = &runtimes[index];
            for lifecycle in [Lifecycle::Pod, Lifecycle::Container] {
                let result = bench::run(client, lifecycle, per_round, 1, config)
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                results[index].push(result);
            }
        }
    }

    println!(
        "\nlifecycle latency, {} samples per runtime and operation, {} rounds, 1 at a time, \
         host-network pods, busybox image (ms; ratio = runtime p50 / containerd p50)\n",
        per_round * rounds,
        rounds
    );
    let mut header = format!("{:<31}", "operation");
    for (name, _, _) in &runtimes {
        header.push_str(&format!(" {:>15} {:>15}", format!("{name} p50"), "p99"));
    }
    for (name, _, _) in &runtimes {
        if *name != "containerd" {
            header.push_str(&format!(" {:>14}", format!("{name} ratio")));
        }
    }
    println!("{header}");
    // Container start as the kubelet sees it: create + start.
    let container_start = |results: &[LifecycleResult]| -> Vec<i64> {
        results
            .iter()
            .filter(|r| r.lifecycle == Lifecycle::Container)
            .flat_map(|r| {
                r.datapoints
                    .iter()
                    .map(|d| d.durations_ns.iter().take(2).sum::<i64>())
            })
            .collect()
    };
    let rows: [(&str, Option<&str>); 6] = [
        ("pod start (RunPodSandbox)", Some("CreatePod")),
        ("CreateContainer", Some("CreateContainer")),
        ("StartContainer", Some("StartContainer")),
        ("container start (create+start)", None),
        ("StopPodSandbox", Some("StopPod")),
        ("RemovePodSandbox", Some("RemovePod")),
    ];
    for (label, operation) in rows {
        let stats: Vec<Option<(i64, i64)>> = results
            .iter()
            .map(|r| {
                let samples = match operation {
                    Some(op) => durations(r, op),
                    None => container_start(r),
                };
                Some((percentile(&samples, 50.0)?, percentile(&samples, 99.0)?))
            })
            .collect();
        let Some((containerd_p50, _)) = stats[1] else {
            continue;
        };
        let mut line = format!("{label:<31}");
        for stat in &stats {
            match stat {
                Some((p50, p99)) => {
                    line.push_str(&format!(" {:>15.1} {:>15.1}", ms(*p50), ms(*p99)))
                }
                None => line.push_str(&format!(" {:>15} {:>15}", "-", "-")),
            }
        }
        for (index, stat) in stats.iter().enumerate() {
            if index == 1 {
                continue;
            }
            match stat {
                Some((p50, _)) => {
                    line.push_str(&format!(" {:>13.2}x", *p50 as f64 / containerd_p50 as f64))
                }
                None => line.push_str(&format!(" {:>14}", "-")),
            }
        }
        println!("{line}");
    }

    if let Some(shim) = shim {
        shim.shutdown().await;
    }
    ours.shutdown().await;
    registry.shutdown().await;
}
