//! The `cri-conformance` binary: exit codes, listing, focus, reports.

use std::process::Command;

use cri_server::Error;
use cri_testkit::{FakeRuntime, Harness};

fn runner() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cri-conformance"))
}

#[test]
fn embedded_run_passes_and_writes_valid_reports() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("report.xml");
    let json = dir.path().join("report.json");
    let out = runner()
        .args(["--color", "never", "--junit"])
        .arg(&junit)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("0 failed"), "{stdout}");
    assert!(!stdout.contains('\x1b'), "no colours when asked");

    // JUnit: well-formed XML with the standard structure and consistent counts.
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let mut cases = 0;
    for suite in root.children().filter(|n| n.is_element()) {
        assert_eq!(suite.tag_name().name(), "testsuite");
        let tests: usize = suite.attribute("tests").unwrap().parse().unwrap();
        let children: Vec<_> = suite.children().filter(|n| n.is_element()).collect();
        assert_eq!(tests, children.len());
        for case in children {
            assert_eq!(case.tag_name().name(), "testcase");
            assert!(case.attribute("name").is_some() && case.attribute("classname").is_some());
            case.attribute("time").unwrap().parse::<f64>().unwrap();
        }
        cases += tests;
    }
    assert_eq!(
        root.attribute("tests").unwrap().parse::<usize>().unwrap(),
        cases
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["summary"]["failed"], 0);
    assert_eq!(report["summary"]["total"].as_u64().unwrap() as usize, cases);
}

#[test]
fn list_focus_and_skip_select_cases() {
    let out = runner()
        .args(["--list", "--focus", "container/", "--skip", "exec"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.lines().all(|l| l.starts_with("container/")), "{text}");
    assert!(!text.contains("exec-sync"));
    assert!(text.contains("container/lifecycle"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_runtime_exits_one_and_names_the_case() {
    let fake = FakeRuntime::builder().image("busybox").build();
    let harness = Harness::fake(fake.clone()).await.unwrap();
    // Status fails once: the status-conditions case fails (its first call).
    fake.fail_next("Status", Error::internal("injected failure"));
    let endpoint = harness.endpoint().unwrap();
    let out = tokio::task::spawn_blocking(move || {
        runner()
            .args([
                "--endpoint",
                &endpoint,
                "--focus",
                "runtime/",
                "--color",
                "never",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL runtime/status-conditions"), "{text}");
    assert!(text.contains("injected failure"), "{text}");
}

#[test]
fn unreachable_endpoint_is_a_setup_error() {
    let out = runner()
        .args(["--endpoint", "unix:///nonexistent/cri.sock"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
}

#[test]
fn bench_writes_critest_shaped_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = runner()
        .args([
            "bench",
            "--pods",
            "5",
            "--containers",
            "5",
            "--parallel",
            "2",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let pod = &value["results"][0];
    assert_eq!(pod["lifecycle"], "pod");
    assert_eq!(pod["critest"]["operationsNames"][0], "CreatePod");
    assert_eq!(pod["critest"]["numParallel"], 2);
    let points = pod["critest"]["datapoints"].as_array().unwrap();
    assert_eq!(points.len(), 5);
    assert_eq!(
        points[0]["operationsDurationsNs"].as_array().unwrap().len(),
        4
    );
    assert!(pod["percentiles"]["CreatePod"]["p99Ns"].as_i64().unwrap() > 0);
    assert_eq!(
        value["results"][1]["critest"]["operationsNames"][4],
        "RemoveContainer"
    );
}
