//! Where settings come from (flag > environment > config file > default) and timeouts.

use std::time::Duration;

use cri_testkit::FakeRuntime;
use cri_testkit::workload::{ContainerInfo, Script, Shell, Workload};

use crate::common::{Env, Out, run};

const BOGUS: &str = "unix:///nonexistent/cri-cli-test.sock";

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[track_caller]
fn assert_bogus(out: &Out) {
    assert!(
        out.failed().contains("/nonexistent/cri-cli-test.sock"),
        "{out:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn runtime_endpoint_flag_beats_env_beats_file() {
    let env = Env::new().await;
    let good = env.endpoint.as_str();
    let file_good = env.write("good.yaml", &format!("runtime-endpoint: {good}\n"));
    let file_bogus = env.write(
        "bogus.yaml",
        &format!("runtime-endpoint: {BOGUS}\ntimeout: 5\n"),
    );

    // The file alone.
    run(args(&["--config", &file_good, "version"]), vec![])
        .await
        .ok();
    assert_bogus(&run(args(&["--config", &file_bogus, "version"]), vec![]).await);
    // The environment beats the file.
    let out = run(
        args(&["--config", &file_bogus, "version"]),
        vars(&[("CONTAINER_RUNTIME_ENDPOINT", good)]),
    )
    .await;
    out.ok();
    let out = run(
        args(&["--config", &file_good, "version"]),
        vars(&[("CONTAINER_RUNTIME_ENDPOINT", BOGUS)]),
    )
    .await;
    assert_bogus(&out);
    // The flag beats both.
    let out = run(
        args(&["--config", &file_bogus, "-r", good, "version"]),
        vars(&[("CONTAINER_RUNTIME_ENDPOINT", BOGUS)]),
    )
    .await;
    out.ok();
    // CRI_CONFIG_FILE names the file when --config does not.
    run(args(&["version"]), vars(&[("CRI_CONFIG_FILE", &file_good)]))
        .await
        .ok();
    // A named file that does not exist is an error, not silently skipped.
    let missing = env.path("missing.yaml").display().to_string();
    let out = run(args(&["--config", &missing, "-r", good, "version"]), vec![]).await;
    assert!(out.failed().contains("cannot read config file"), "{out:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn image_endpoint_flag_beats_env_beats_file_beats_runtime_endpoint() {
    let env = Env::new().await;
    let good = env.endpoint.as_str();
    let file = env.write(
        "split.yaml",
        &format!("runtime-endpoint: {good}\nimage-endpoint: {BOGUS}\n"),
    );
    assert_bogus(&run(args(&["--config", &file, "images"]), vec![]).await);
    let out = run(
        args(&["--config", &file, "images", "-q"]),
        vars(&[("IMAGE_SERVICE_ENDPOINT", good)]),
    )
    .await;
    assert_eq!(out.ok().lines().count(), 1);
    let out = run(
        args(&["--config", &file, "-i", good, "images", "-q"]),
        vars(&[("IMAGE_SERVICE_ENDPOINT", BOGUS)]),
    )
    .await;
    out.ok();
    // Without an image endpoint anywhere, the runtime endpoint serves images too.
    env.cri(&["images", "-q"]).await.ok();
}

/// Containers whose command is `slow-start` take 2.5 s to start: longer than crictl's 2 s
/// default timeout, well within the kubelet's 2 minutes.
struct SlowStart;

impl Workload for SlowStart {
    fn start(&self, container: &ContainerInfo<'_>) -> Script {
        if container.config.command.first().map(String::as_str) == Some("slow-start") {
            std::thread::sleep(Duration::from_millis(2500));
            return Script::forever();
        }
        Shell.run(container, &container.config.command, &[])
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_timeout_fails_with_a_clear_deadline_exceeded() {
    let env = Env::with(
        FakeRuntime::builder()
            .image("busybox")
            .workload(SlowStart)
            .build(),
    )
    .await;
    let pod = env.pod("p").await;
    let first = env.container(&pod, "first", &["slow-start"], false).await;
    let second = env.container(&pod, "second", &["slow-start"], false).await;
    let third = env.container(&pod, "third", &["slow-start"], false).await;

    let out = env.cri(&["-t", "1s", "start", &first]).await;
    assert_eq!(
        out.failed(),
        "cri: StartContainer: DeadlineExceeded: no answer within 1s (raise it with --timeout, e.g. -t 5m)"
    );
    // Let the blocked start finish before the next call.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The config file's timeout applies when no flag is given; the flag beats it.
    let file = env.write(
        "t.yaml",
        &format!("runtime-endpoint: {}\ntimeout: 1\n", env.endpoint),
    );
    let out = run(args(&["--config", &file, "start", &second]), vec![]).await;
    assert!(
        out.failed()
            .contains("DeadlineExceeded: no answer within 1s"),
        "{out:#?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The default (the kubelet's 2 minutes) lets a slow start finish.
    let out = env.cri(&["start", &third]).await;
    assert_eq!(out.ok(), format!("{third}\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_timeout_flag_takes_durations() {
    let env = Env::new().await;
    for timeout in ["30", "2s", "1m", "1m30s", "500ms", "0"] {
        env.cri(&["--timeout", timeout, "version"]).await.ok();
    }
    let out = env.cri(&["--timeout", "soon", "version"]).await;
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("invalid duration"), "{out:#?}");
}
