//! The conformance suite against runc-runtime: real runc containers, images pulled from a
//! loopback registry standing in for docker.io and registry.k8s.io.
//!
//! The outcome is pinned case by case, as for containerd (crates/cri-testkit/tests/
//! containerd.rs): no case fails, and each skip is one of the named host or configuration
//! reasons below. A change in any outcome fails the test.

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
    // Skips, each for a reason of this host or configuration:
    let mut expected = vec![
        // Image volumes (Mount.image) are not supported: InvalidArgument, named.
        "mounts/image-volume",
        // This host has no AppArmor.
        "security/apparmor",
        // No CNI here: host ports and pod IPs need a pod network (tests/network.rs runs
        // them with a bridge and portmap).
        "network/port-mapping-host-port",
        "network/pod-ip",
    ];
    if !own_network {
        // Host-network pods share the host's UTS namespace.
        expected.push("namespaces/hostname");
    }
    let mut expected: Vec<String> = expected.into_iter().map(String::from).collect();
    expected.sort();
    let mut skipped = skipped;
    skipped.sort();
    assert_eq!(skipped, expected, "skipped\n{}", report.human(false));
    assert!(s.passed >= 110, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_host_network() {
    run(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_pod_network_namespaces() {
    run(true).await;
}
