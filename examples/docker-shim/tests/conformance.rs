//! The conformance suite against docker-shim over a real Docker Engine (`scripts/docker-peer`),
//! with host-network pods, with pods in their own loopback-only network namespace (no CNI),
//! and with pods on a CNI bridge (`bridge` + `host-local` + `portmap`). The outcome is pinned
//! case by case: nothing fails, and only these are skipped:
//!
//! - `mounts/image-volume`: Docker Engine 20.10 has no image volumes; the shim answers
//!   `Unimplemented` (an image-volume mount), which the suite reports as a skip.
//! - `network/port-mapping-host-port`, `network/pod-ip` (without CNI): pods have no IP (the
//!   host network, or only `lo`).
//! - `namespaces/hostname` (host network only): host-network pods have the node's name.
//! - `security/apparmor`: only where the host has no AppArmor (the suite checks the host).
//!
//! One failure is tolerated in one exact form: `resources/oom-killed` reporting reason
//! `Error` with exit code 137, when Docker under load recorded neither `OOMKilled` nor an
//! `oom` event in time (see docs/docker-shim.md).
//!
//! A change in any outcome fails the test.

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

fn host_has_apparmor() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.trim() == "Y")
}

/// How the pods get their network.
#[derive(Clone, Copy, PartialEq)]
enum Net {
    Host,
    Loopback,
    Bridge,
}

async fn run(engine: &common::Engine, net: Net) {
    let network = match net {
        Net::Bridge => match common::BridgeNetwork::create() {
            Some(network) => Some(network),
            None => return,
        },
        _ => None,
    };
    let own_network = net != Net::Host;
    let args = network.as_ref().map(|n| n.args()).unwrap_or_default();
    let shim = common::Shim::start(engine, &args).await;
    let config = Config {
        image: engine.busybox.clone(),
        pull_image: Some(engine.busybox.clone()),
        removable_image: Some(engine.removable.clone()),
        host_network: !own_network,
        log_root: Some(shim.log_root.clone()),
        ..Default::default()
    };
    let report = Suite::new(config).run(&shim.client).await;
    println!("{}", report.human(false));
    let s = report.summary();
    println!(
        "docker-shim ({}): {} passed, {} skipped, {} failed",
        match net {
            Net::Host => "host network",
            Net::Loopback => "pod network namespaces, loopback only",
            Net::Bridge => "pod network namespaces, CNI bridge",
        },
        s.passed,
        s.skipped,
        s.failed
    );
    let outcome = by_outcome(&report);
    let mut failed = outcome.get("failed").cloned().unwrap_or_default();
    // Docker Engine 20.10 sets OOMKilled only when containerd's OOM event beats the exit,
    // and under load it sometimes emits no `oom` event the shim could see in time either:
    // then the container is reported as it was, exit 137 with reason Error. Tolerated, and
    // only in exactly that form.
    let oom_race = report.results.iter().any(|r| {
        r.id == "resources/oom-killed"
            && matches!(&r.outcome, Outcome::Failed(f) if f.got.contains("\"Error\", 137"))
    });
    if oom_race {
        eprintln!(
            "WARNING: resources/oom-killed hit Docker's OOMKilled race (reason Error, exit 137)"
        );
        failed.retain(|id| id != "resources/oom-killed");
    }
    let skipped = outcome.get("skipped").cloned().unwrap_or_default();
    let log = shim.log();
    shim.shutdown().await;
    assert!(
        failed.is_empty(),
        "failed: {failed:?}\n{}\nshim log:\n{log}",
        report.human(false)
    );
    let mut expected = vec!["mounts/image-volume"];
    if net != Net::Bridge {
        expected.extend(["network/port-mapping-host-port", "network/pod-ip"]);
    }
    if !own_network {
        expected.push("namespaces/hostname");
    }
    if !host_has_apparmor() {
        expected.push("security/apparmor");
    }
    let mut expected: Vec<String> = expected.into_iter().map(String::from).collect();
    let mut skipped = skipped;
    expected.sort();
    skipped.sort();
    assert_eq!(skipped, expected, "skipped\n{}", report.human(false));
    assert!(s.passed >= 100, "{s:?}");
    if let Some(network) = network {
        // Every pod's address went back.
        assert_eq!(network.leases(), Vec::<String>::new());
    }
}

/// The variants in one test, one after the other: every shim on an engine lists all of the
/// engine's pods (the state lives in Docker), so two suites at once would see each other's
/// pods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_host_network_loopback_and_cni_bridge() {
    let Some(engine) = common::requirements() else {
        return;
    };
    run(&engine, Net::Host).await;
    run(&engine, Net::Loopback).await;
    run(&engine, Net::Bridge).await;
}
