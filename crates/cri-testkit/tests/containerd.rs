//! The conformance suite against a real containerd (see `scripts/containerd-peer`).
//!
//! containerd 1.6 (Debian 12) is checked case by case: what it passes, what it skips and why,
//! and the one place it departs from the CRI text. A change in any of these fails the test,
//! so an upgrade of the peer or of the suite is noticed.

use std::collections::BTreeMap;

use cri_testkit::conformance::{Outcome, Suite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_against_containerd() {
    let Some(peer) = cri_testkit::peer::containerd() else {
        return;
    };
    peer.reimport_images().unwrap();
    let client = cri_testkit::cri_client::Client::connect(&peer.endpoint)
        .await
        .unwrap();
    let version = client.version().await.unwrap();
    let report = Suite::new(peer.conformance_config()).run(&client).await;
    println!(
        "{} {}\n{}",
        version.runtime_name,
        version.runtime_version,
        report.human(false)
    );

    let outcome = |id: &str| -> &Outcome {
        &report
            .results
            .iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("no case {id}"))
            .outcome
    };
    let mut by_kind: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in &report.results {
        let kind = match r.outcome {
            Outcome::Passed => "passed",
            Outcome::Skipped(_) => "skipped",
            Outcome::Failed(_) => "failed",
        };
        by_kind.entry(kind).or_default().push(&r.id);
    }
    let s = report.summary();
    println!(
        "containerd: {} passed, {} skipped, {} failed",
        s.passed, s.skipped, s.failed
    );

    if version.runtime_version.starts_with("1.6") {
        // Not in containerd 1.6: RuntimeConfig (1.7), Stream* (Kubernetes 1.36), events
        // (1.7), ImageFilter, a WebSocket stdin close (v5.channel.k8s.io). Offline: no pulls;
        // imported images have no repo digest; the removable image is gone once image/remove
        // ran and cannot be pulled back. The peer runs host-network pods (no CNI): no host
        // ports, no pod IP, the host's hostname. This host has no AppArmor.
        let mut expected_skips = vec![
            "runtime/runtime-config",
            "image/pull",
            "image/pull-with-auth",
            "image/status-by-digest",
            "image/list-filter",
            "image/remove-by-id",
            "image/list-contains-digest",
            "image/pull-by-digest",
            "streaming/pod-sandboxes",
            "streaming/containers",
            "streaming/images",
            "streaming/container-stats",
            "exec/stdin-websocket",
            "events/container-lifecycle",
            "network/port-mapping-host-port",
            "network/pod-ip",
            "security/apparmor",
            "namespaces/hostname",
        ];
        expected_skips.sort_unstable();
        let mut skips = by_kind.get("skipped").cloned().unwrap_or_default();
        skips.sort_unstable();
        assert_eq!(skips, expected_skips, "skips");
        // Where containerd 1.6 departs from CRI:
        // - it answers NotFound to StopPodSandbox of a removed sandbox, where CRI says stop
        //   must succeed once the sandbox's resources are reclaimed;
        // - it ignores Mount.image (image volumes) and fails with Unknown `mkdir ""` instead
        //   of refusing them clearly.
        // - it reports an OOM kill as reason `Error` when the task's exit event is handled
        //   before its OOM event (a race in containerd, seen under load); the exit code is
        //   137 either way, which is checked.
        let mut failures = by_kind.get("failed").cloned().unwrap_or_default();
        failures.sort_unstable();
        // The cases containerd 1.6 passes: 96, one fewer when it lost the OOM event.
        let mut must_pass = 96;
        if let Some(at) = failures.iter().position(|f| *f == "resources/oom-killed") {
            match outcome("resources/oom-killed") {
                Outcome::Failed(f) => assert!(f.got.contains("\"Error\", 137"), "{f}"),
                other => panic!("{other:?}"),
            }
            failures.remove(at);
            must_pass -= 1;
            eprintln!("containerd lost the OOM event of resources/oom-killed this time");
        }
        assert_eq!(
            failures,
            ["idempotence/stop-removed-sandbox", "mounts/image-volume"],
            "failures"
        );
        match outcome("idempotence/stop-removed-sandbox") {
            Outcome::Failed(f) => assert!(f.got.contains("NotFound"), "{f}"),
            other => panic!("{other:?}"),
        }
        assert!(s.passed >= must_pass, "{s:?}");
    } else {
        // Another containerd: everything it runs must pass.
        report.assert_passed();
    }
}
