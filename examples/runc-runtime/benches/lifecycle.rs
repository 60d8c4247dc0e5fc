//! Pod and container start latency: runc-runtime against containerd 1.6, in the same run.
//!
//! `cargo bench -p runc-runtime --bench lifecycle` (as root, with the containerd peer running:
//! `scripts/containerd-peer start` and its `env` exported). Both runtimes run the suite's
//! lifecycle benchmark (`cri_testkit::bench`) with the same image, host-network pods and one
//! lifecycle at a time, in alternating rounds so that machine noise falls on both; the table
//! gives p50/p99 of `RunPodSandbox` (pod start) and of `CreateContainer` and `StartContainer`
//! (container start), and the ratio runc-runtime / containerd (below 1 is faster).
//!
//! Environment: `LIFECYCLE_SAMPLES` (per runtime and lifecycle, default 40),
//! `LIFECYCLE_ROUNDS` (default 4).

#[path = "../tests/common/mod.rs"]
mod common;

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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
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
    // The pause image is pulled by the first pod; one warm-up lifecycle each keeps that (and
    // containerd's first-use costs) out of the samples.
    let ours_config = Config {
        image: images.busybox.clone(),
        host_network: true,
        log_root: Some(ours.log_root.clone()),
        ..Default::default()
    };
    let containerd_config = Config {
        image: images.busybox.clone(),
        host_network: true,
        ..peer.conformance_config()
    };
    let runtimes: [(&str, &Client, &Config); 2] = [
        ("runc-runtime", &ours.client, &ours_config),
        ("containerd", &containerd, &containerd_config),
    ];
    for (name, client, config) in runtimes {
        for lifecycle in [Lifecycle::Pod, Lifecycle::Container] {
            bench::run(client, lifecycle, 1, 1, config)
                .await
                .unwrap_or_else(|e| panic!("{name} warm-up: {e}"));
        }
    }

    let samples = env_usize("LIFECYCLE_SAMPLES", 40);
    let rounds = env_usize("LIFECYCLE_ROUNDS", 4).min(samples);
    let per_round = samples.div_ceil(rounds);
    let mut results: [Vec<LifecycleResult>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        // Alternate which runtime goes first.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for index in order {
            let (name, client, config) = runtimes[index];
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
         host-network pods, busybox image (ms)\n",
        per_round * rounds,
        rounds
    );
    println!(
        "{:<26} {:>10} {:>10} {:>12} {:>12} {:>9} {:>9}",
        "operation",
        "ours p50",
        "ours p99",
        "containerd p50",
        "containerd p99",
        "p50 ratio",
        "p99 ratio"
    );
    for (label, operation) in [
        ("pod start (RunPodSandbox)", "CreatePod"),
        ("CreateContainer", "CreateContainer"),
        ("StartContainer", "StartContainer"),
        ("StopPodSandbox", "StopPod"),
        ("RemovePodSandbox", "RemovePod"),
    ] {
        let ours = durations(&results[0], operation);
        let theirs = durations(&results[1], operation);
        let (Some(o50), Some(o99), Some(t50), Some(t99)) = (
            percentile(&ours, 50.0),
            percentile(&ours, 99.0),
            percentile(&theirs, 50.0),
            percentile(&theirs, 99.0),
        ) else {
            continue;
        };
        println!(
            "{:<26} {:>10.1} {:>10.1} {:>12.1} {:>12.1} {:>8.2}x {:>8.2}x",
            label,
            ms(o50),
            ms(o99),
            ms(t50),
            ms(t99),
            o50 as f64 / t50 as f64,
            o99 as f64 / t99 as f64
        );
    }
    // Container start as the kubelet sees it: create + start.
    let sum = |results: &[LifecycleResult]| -> Vec<i64> {
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
    let (ours_cs, theirs_cs) = (sum(&results[0]), sum(&results[1]));
    if let (Some(o50), Some(o99), Some(t50), Some(t99)) = (
        percentile(&ours_cs, 50.0),
        percentile(&ours_cs, 99.0),
        percentile(&theirs_cs, 50.0),
        percentile(&theirs_cs, 99.0),
    ) {
        println!(
            "{:<26} {:>10.1} {:>10.1} {:>12.1} {:>12.1} {:>8.2}x {:>8.2}x",
            "container start (create+start)",
            ms(o50),
            ms(o99),
            ms(t50),
            ms(t99),
            o50 as f64 / t50 as f64,
            o99 as f64 / t99 as f64
        );
    }

    ours.shutdown().await;
    registry.shutdown().await;
}
