//! The suite against the embedded fake runtime: every case about CRI behaviour passes; the
//! cases about kernel state (capabilities, mounts, cgroups, namespaces) skip, each saying the
//! fake runs no real processes, and nothing else skips but for a named lack of this host
//! (e.g. no huge pages).

use std::sync::Arc;

use cri_server::Server;
use cri_testkit::conformance::{Config, Outcome, Suite};
use cri_testkit::{FakeRuntime, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_passes_against_the_fake_or_names_the_simulator() {
    let harness = Harness::fake(FakeRuntime::builder().image("busybox").build())
        .await
        .unwrap();
    let suite = Suite::new(Config::default());
    assert!(suite.cases().len() >= 100, "{} cases", suite.cases().len());
    let report = suite.run(&harness.client).await;
    println!("{}", report.human(false));
    report.assert_passed();
    let other_skips: Vec<_> = report
        .results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Skipped(why)
                if !why.contains("runs no real processes")
                    && !why.contains("the host has no")
                    && !why.contains("lists no huge") =>
            {
                Some(format!("{}: {why}", r.id))
            }
            _ => None,
        })
        .collect();
    assert!(
        other_skips.is_empty(),
        "only kernel-level cases (and named host lacks) skip against the fake: {other_skips:#?}"
    );
    let s = report.summary();
    assert!(s.passed >= 60, "{s:?}");
}

#[tokio::test]
async fn run_in_process_covers_chosen_areas() {
    let server = Server::builder()
        .service(Arc::new(FakeRuntime::builder().image("busybox").build()))
        .build()
        .unwrap();
    let report = cri_testkit::conformance::run_in_process(
        server,
        &["idempotence/", "image/"],
        Config::default(),
    )
    .await;
    report.assert_passed();
    assert!(
        report
            .results
            .iter()
            .all(|r| r.area == "idempotence" || r.area == "image")
    );
    assert!(report.results.len() >= 10);
}
