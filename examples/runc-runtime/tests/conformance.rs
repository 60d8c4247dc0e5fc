//! The conformance suite against runc-runtime: real runc containers, images pulled from a
//! loopback registry standing in for docker.io and registry.k8s.io.
//!
//! The outcome is pinned case by case, as for containerd (crates/cri-testkit/tests/
//! containerd.rs): every case containerd passes passes here, and so do the cases containerd
//! 1.6 skips or fails (pulls, digests, RuntimeConfig, events, Stream*, image filters, stop of
//! a removed sandbox). A change in any outcome fails the test.

mod common;

use std::collections::BTreeMap;

use cri_testkit::conformance::{Config, Outcome, Report, Suite};

fn by_outcome(report: &Report) -> BTreeMap<&'static str, Vec<String>> {
    let mut by_kind: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for r in &report.results {
        let kind = match r.outcome {
            Outcome::Passed => "passed",
            Outcome::Skipped(_) => "skipped",
            Outcome::Failed(_) => "failed",
        };
        by_kind.entry(kind).or_default().push(r.id.clone());
    }
    by_kind
}

async fn run(own_network: bool) {
    let Some(images) = common::requirements() else {
        return;
    };
    let registry = common::registry(&images).await;
    let runtime = common::Runtime::start(common::Options {
        registry: Some(registry.endpoint()),
        ..Default::default()
    })
    .await;
    let config = Config {
        image: images.busybox.clone(),
        pull_image: Some(images.busybox.clone()),
        removable_image: Some(images.removable.clone()),
        host_network: !own_network,
        log_root: Some(runtime.log_root.clone()),
        ..Default::default()
    };
    let report = Suite::new(config).run(&runtime.client).await;
    println!("{}", report.human(false));
    let s = report.summary();
    println!(
        "runc-runtime ({}): {} passed, {} skipped, {} failed",
        if own_network {
            "pod network namespaces"
        } else {
            "host network"
        },
        s.passed,
        s.skipped,
        s.failed
    );
    let outcome = by_outcome(&report);
    let failed = outcome.get("failed").cloned().unwrap_or_default();
    let skipped = outcome.get("skipped").cloned().unwrap_or_default();
    let log = runtime.log();
    runtime.shutdown().await;
    registry.shutdown().await;
    assert!(
        failed.is_empty(),
        "failed: {failed:?}\n{}\nruntime log:\n{log}",
        report.human(false)
    );
    // Nothing is skipped: every case runs against a real runtime with pulls.
    assert_eq!(skipped, Vec::<String>::new(), "skipped");
    // containerd passes 30; the cases it skips or fails pass here too.
    assert!(s.passed >= 41, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_host_network() {
    run(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_pod_network_namespaces() {
    run(true).await;
}
