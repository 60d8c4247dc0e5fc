//! The examples as processes: the memory runtime and the proxy serve real clients, the
//! client examples print what they should.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cri_client::Client;
use cri_client::cri_api::v1::*;
use cri_testkit::conformance::{Config, Outcome, Suite};

/// `target/<profile>/examples/<name>`, built by `cargo test` along with the tests.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    profile_dir.join("examples").join(name)
}

/// A running example, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(name: &str, args: &[&str], socket: &Path) -> Running {
    let child = Command::new(example(name))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting example {name}: {e}"));
    let started = Instant::now();
    while !socket.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{name} did not create {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Running(child)
}

fn endpoint(socket: &Path) -> String {
    format!("unix://{}", socket.display())
}

fn pod(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            namespace: "examples".into(),
            uid: format!("uid-{name}"),
            attempt: 0,
        }),
        hostname: format!("{name}-host"),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_runtime_passes_the_suite_and_simulates_workloads() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("memory.sock");
    let _runtime = spawn(
        "memory-runtime",
        &["--socket", socket.to_str().unwrap()],
        &socket,
    );
    let client = Client::connect(endpoint(&socket)).await.unwrap();
    assert_eq!(
        client.version().await.unwrap().runtime_name,
        "memory-runtime"
    );

    let report = Suite::new(Config::default()).run(&client).await;
    report.assert_passed();

    // Logs and exec produce real output.
    let mut config = pod("sim");
    config.log_directory = dir.path().join("logs").display().to_string();
    let pod_id = client.run_pod_sandbox(config.clone(), "").await.unwrap();
    let container = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "hello".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        command: vec![
            "sh".into(),
            "-c".into(),
            "echo hello from memory-runtime; sleep 3600".into(),
        ],
        log_path: "hello.log".into(),
        ..Default::default()
    };
    let id = client
        .create_container(&pod_id, container, Some(config))
        .await
        .unwrap();
    client.start_container(&id).await.unwrap();
    let out = client
        .exec_sync(&id, ["hostname"], Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(out.stdout, b"sim-host\n");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = std::fs::read_to_string(dir.path().join("logs/hello.log")).unwrap();
    assert!(
        log.ends_with(" stdout F hello from memory-runtime\n"),
        "{log}"
    );
    let stats = client.container_stats(&id).await.unwrap();
    assert!(stats.cpu.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimal_runtime_answers_unimplemented_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("minimal.sock");
    let _runtime = spawn("minimal-runtime", &[socket.to_str().unwrap()], &socket);
    let client = Client::connect(endpoint(&socket)).await.unwrap();
    assert!(client.list_pod_sandbox(None).await.unwrap().is_empty());
    let status = client.status(false).await.unwrap();
    assert_eq!(status.status.unwrap().conditions.len(), 2);
    let err = client.list_containers(None).await.unwrap_err();
    assert!(err.is_unimplemented());
    assert!(
        err.to_string()
            .contains("ListContainers is not implemented by this runtime"),
        "{err}"
    );
    let err = client.image_status("busybox").await.unwrap_err();
    assert!(err.is_unimplemented(), "no image service at all: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_proxy_forwards_everything_and_read_only_denies_changes() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("upstream.sock");
    let _runtime = spawn(
        "memory-runtime",
        &["--socket", upstream.to_str().unwrap()],
        &upstream,
    );
    let proxy_socket = dir.path().join("proxy.sock");
    let _proxy = spawn(
        "cri-proxy",
        &[
            "--listen",
            proxy_socket.to_str().unwrap(),
            "--upstream",
            &endpoint(&upstream),
        ],
        &proxy_socket,
    );
    let client = Client::connect(endpoint(&proxy_socket)).await.unwrap();
    assert_eq!(
        client.version().await.unwrap().runtime_name,
        "memory-runtime"
    );
    // The whole suite through the proxy, events and Stream* included.
    let report = Suite::new(Config::default()).run(&client).await;
    report.assert_passed();
    assert!(report.results.iter().all(|r| r.outcome == Outcome::Passed));

    let ro_socket = dir.path().join("ro.sock");
    let _ro = spawn(
        "cri-proxy",
        &[
            "--listen",
            ro_socket.to_str().unwrap(),
            "--upstream",
            &endpoint(&upstream),
            "--read-only",
        ],
        &ro_socket,
    );
    let ro = Client::connect(endpoint(&ro_socket)).await.unwrap();
    ro.list_pod_sandbox(None).await.unwrap();
    let err = ro.run_pod_sandbox(pod("denied"), "").await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::PermissionDenied));
    assert!(
        err.to_string()
            .contains("RunPodSandbox is denied by this proxy")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pods_and_watch_events_examples() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("memory.sock");
    let _runtime = spawn(
        "memory-runtime",
        &["--socket", socket.to_str().unwrap()],
        &socket,
    );
    let client = Client::connect(endpoint(&socket)).await.unwrap();
    let ep = endpoint(&socket);

    // watch-events: stop after the CREATED and STARTED events of one container.
    let mut watcher = Command::new(example("watch-events"))
        .args([ep.as_str(), "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watcher.stdout.take().unwrap();
    let (subscribed, ready) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let first = lines.next().unwrap().unwrap();
        assert_eq!(first, "ready");
        subscribed.send(()).unwrap();
        lines.map(Result::unwrap).collect::<Vec<_>>()
    });
    // The watcher prints "ready" once it has subscribed and resynced.
    tokio::task::spawn_blocking(move || ready.recv_timeout(Duration::from_secs(20)).unwrap())
        .await
        .unwrap();
    let pod_id = client.run_pod_sandbox(pod("listed"), "").await.unwrap();
    let container = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "box".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "3600".into()],
        ..Default::default()
    };
    let id = client
        .create_container(&pod_id, container, None)
        .await
        .unwrap();
    client.start_container(&id).await.unwrap();
    let events = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    watcher.wait().unwrap();
    assert_eq!(
        events,
        [
            format!("CONTAINER_CREATED_EVENT {id} CONTAINER_CREATED"),
            format!("CONTAINER_STARTED_EVENT {id} CONTAINER_RUNNING"),
        ]
    );

    let out = Command::new(example("list-pods"))
        .arg(&ep)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("examples/listed SandboxReady"), "{text}");
    assert!(
        text.contains(&format!("  {} box ContainerRunning", &id[..13])),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_proxy_in_front_of_containerd_changes_nothing() {
    let Some(peer) = cri_testkit::peer::containerd() else {
        return;
    };
    peer.reimport_images().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let proxy_socket = dir.path().join("proxy.sock");
    let _proxy = spawn(
        "cri-proxy",
        &[
            "--listen",
            proxy_socket.to_str().unwrap(),
            "--upstream",
            &peer.endpoint,
        ],
        &proxy_socket,
    );
    let direct = Client::connect(&peer.endpoint).await.unwrap();
    let proxied = Client::connect(endpoint(&proxy_socket)).await.unwrap();
    let config = peer.conformance_config();
    let kinds = |report: &cri_testkit::conformance::Report| {
        report
            .results
            .iter()
            .map(|r| {
                let kind = match &r.outcome {
                    Outcome::Passed => "passed",
                    Outcome::Skipped(_) => "skipped",
                    Outcome::Failed(_) => "failed",
                };
                (r.id.clone(), kind)
            })
            .collect::<Vec<_>>()
    };
    let through_proxy = Suite::new(config.clone())
        .skip(["image/remove"])
        .run(&proxied)
        .await;
    let without = Suite::new(config).skip(["image/remove"]).run(&direct).await;
    println!("through the proxy:\n{}", through_proxy.human(false));
    assert_eq!(
        kinds(&through_proxy),
        kinds(&without),
        "the proxy changes no outcome"
    );
}
