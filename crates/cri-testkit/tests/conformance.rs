//! The suite against the embedded fake runtime: every case passes.

use std::sync::Arc;

use cri_server::Server;
use cri_testkit::conformance::{Config, Outcome, Suite};
use cri_testkit::{FakeRuntime, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_passes_against_the_fake() {
    let harness = Harness::fake(FakeRuntime::builder().image("busybox").build())
        .await
        .unwrap();
    let report = Suite::new(Config::default()).run(&harness.client).await;
    println!("{}", report.human(false));
    report.assert_passed();
    let skipped: Vec<_> = report
        .results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Skipped(_)))
        .map(|r| r.id.clone())
        .collect();
    assert!(
        skipped.is_empty(),
        "nothing is skipped against the fake: {skipped:?}"
    );
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
