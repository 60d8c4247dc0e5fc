//! Containers outlive the runtime: a runtime killed with SIGKILL (or stopped with SIGTERM)
//! finds its pods and containers again on restart; a container whose monitor died is
//! reported exited with reason `Unknown`, and nothing hangs.

mod common;

use std::time::Duration;

use common::{Runtime, status, wait_for};
use cri_client::cri_api::v1::*;

async fn start(images: &common::Images) -> Runtime {
    Runtime::start(common::Options {
        imports: vec![images.dir.join("busybox.tar"), images.dir.join("pause.tar")],
        ..Default::default()
    })
    .await
}

/// The CRI log records' contents of `path`.
fn log_lines(path: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            cri_client::cri_api::log::Record::parse(l)
                .ok()
                .map(|r| r.content.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_survive_a_killed_runtime() {
    let Some(images) = common::requirements() else {
        return;
    };
    let mut runtime = start(&images).await;
    let pod_config = runtime.pod_config("survive", false);
    let pod = runtime
        .client
        .run_pod_sandbox(pod_config.clone(), "")
        .await
        .unwrap();
    let ticker = Runtime::container_config(
        "ticker",
        &images.busybox,
        &[
            "sh",
            "-c",
            "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.1; done",
        ],
    );
    let id = runtime
        .client
        .create_container(&pod, ticker, Some(pod_config.clone()))
        .await
        .unwrap();
    runtime.client.start_container(&id).await.unwrap();
    let before = status(&runtime.client, &id).await;
    assert_eq!(before.state(), ContainerState::ContainerRunning);
    let log = before.log_path.clone();
    wait_for("the first log lines", Duration::from_secs(10), || async {
        (log_lines(&log).len() >= 3).then_some(())
    })
    .await;

    // SIGKILL: no chance to clean up. The container keeps running and logging meanwhile.
    runtime.kill();
    let lines_while_down = log_lines(&log).len();
    wait_for(
        "output while the runtime is down",
        Duration::from_secs(10),
        || async { (log_lines(&log).len() > lines_while_down + 3).then_some(()) },
    )
    .await;

    runtime.spawn().await;
    let after = status(&runtime.client, &id).await;
    assert_eq!(after.state(), ContainerState::ContainerRunning, "{after:?}");
    assert_eq!(
        (after.created_at, after.started_at),
        (before.created_at, before.started_at),
        "timestamps survive"
    );
    let pods = runtime.client.list_pod_sandbox(None).await.unwrap();
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].state(), PodSandboxState::SandboxReady);
    // Still driven after the restart: exec and stop.
    let out = runtime
        .client
        .exec_sync(&id, ["echo", "still here"], Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(out.stdout, b"still here\n");
    runtime
        .client
        .stop_container(&id, Duration::from_secs(1))
        .await
        .unwrap();
    let stopped = status(&runtime.client, &id).await;
    assert_eq!(stopped.state(), ContainerState::ContainerExited);
    assert_eq!(stopped.exit_code, 143, "ended by the stop signal, SIGTERM");
    let lines = log_lines(&log);
    assert!(
        lines.len() > lines_while_down,
        "logging went on: {}",
        lines.len()
    );
    for (n, line) in lines.iter().enumerate() {
        assert_eq!(line, &format!("tick-{n}"), "no line lost or doubled");
    }

    // SIGTERM: a graceful stop, which leaves containers running too.
    let sleeper = Runtime::container_config("sleeper", &images.busybox, &["sleep", "3600"]);
    let sleeper = runtime
        .client
        .create_container(&pod, sleeper, Some(pod_config))
        .await
        .unwrap();
    runtime.client.start_container(&sleeper).await.unwrap();
    let code = runtime.terminate();
    assert!(code.success(), "{code}");
    runtime.spawn().await;
    assert_eq!(
        status(&runtime.client, &sleeper).await.state(),
        ContainerState::ContainerRunning
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_monitor_is_reported_not_waited_for() {
    let Some(images) = common::requirements() else {
        return;
    };
    let mut runtime = start(&images).await;
    let pod_config = runtime.pod_config("lost", false);
    let pod = runtime
        .client
        .run_pod_sandbox(pod_config.clone(), "")
        .await
        .unwrap();
    let mut ids = Vec::new();
    for name in ["first", "second"] {
        let config = Runtime::container_config(name, &images.busybox, &["sleep", "3600"]);
        let id = runtime
            .client
            .create_container(&pod, config, Some(pod_config.clone()))
            .await
            .unwrap();
        runtime.client.start_container(&id).await.unwrap();
        ids.push(id);
    }
    let root = runtime.root.clone();
    let monitor_of = |id: &str| {
        let dir = root.join("containers").join(id);
        let found = common::monitors_of(&root);
        found
            .into_iter()
            .find(|pid| {
                std::fs::read(format!("/proc/{}/cmdline", pid.as_raw_nonzero()))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&dir.display().to_string()))
            })
            .expect("the container's monitor runs")
    };

    // A monitor killed while the runtime runs: the watcher notices.
    let first_monitor = monitor_of(&ids[0]);
    rustix::process::kill_process(first_monitor, rustix::process::Signal::KILL).unwrap();
    let lost = wait_for(
        "the loss to be reported",
        Duration::from_secs(20),
        || async {
            let s = status(&runtime.client, &ids[0]).await;
            (s.state() == ContainerState::ContainerExited).then_some(s)
        },
    )
    .await;
    assert_eq!((lost.reason.as_str(), lost.exit_code), ("Unknown", 255));
    assert!(lost.message.contains("monitor"), "{}", lost.message);
    assert!(lost.finished_at >= lost.started_at);

    // A monitor killed while the runtime is down: known at once after the restart.
    runtime.kill();
    let second_monitor = monitor_of(&ids[1]);
    rustix::process::kill_process(second_monitor, rustix::process::Signal::KILL).unwrap();
    runtime.spawn().await;
    let lost = wait_for(
        "the loss to be reported",
        Duration::from_secs(20),
        || async {
            let s = status(&runtime.client, &ids[1]).await;
            (s.state() == ContainerState::ContainerExited).then_some(s)
        },
    )
    .await;
    assert_eq!(lost.reason, "Unknown");
    // The lost container's process was killed; nothing hangs on it.
    let exec = runtime
        .client
        .exec_sync(&ids[1], ["true"], Duration::from_secs(5))
        .await;
    assert!(exec.is_err(), "exec in an exited container fails");
    for id in &ids {
        runtime
            .client
            .stop_container(id, Duration::from_secs(1))
            .await
            .unwrap();
        runtime.client.remove_container(id).await.unwrap();
    }
    assert!(
        runtime
            .client
            .list_containers(None)
            .await
            .unwrap()
            .is_empty()
    );
    runtime.shutdown().await;
}
