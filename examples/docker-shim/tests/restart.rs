//! State lives in Docker, not in the shim: a shim killed with SIGKILL mid-way and started
//! again lists every pod and container with the same ids, states, exit codes and
//! timestamps, keeps writing the CRI log of a running container, and can stop and remove
//! everything.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Shim, status, wait_for};
use cri_client::Client;
use cri_client::cri_api::v1::*;

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

/// Everything a kubelet sees of the shim's state, by id.
async fn snapshot(
    client: &Client,
) -> (
    BTreeMap<String, PodSandbox>,
    BTreeMap<String, ContainerStatus>,
) {
    let pods = client
        .list_pod_sandbox(None)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.id.clone(), p))
        .collect();
    let mut containers = BTreeMap::new();
    for c in client.list_containers(None).await.unwrap() {
        containers.insert(c.id.clone(), status(client, &c.id).await);
    }
    (pods, containers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_and_containers_survive_a_killed_shim() {
    let Some(engine) = common::requirements() else {
        return;
    };
    let mut shim = Shim::start(&engine, &[]).await;
    let client = shim.client.clone();
    client.pull_image(&engine.busybox, None).await.unwrap();

    // Two pods: one on the host network, one in its own namespace.
    let host_config = shim.pod_config("restart-host", false);
    let host_pod = client
        .run_pod_sandbox(host_config.clone(), "")
        .await
        .unwrap();
    let own_config = shim.pod_config("restart-own", true);
    let own_pod = client
        .run_pod_sandbox(own_config.clone(), "")
        .await
        .unwrap();

    let ticker = Shim::container_config(
        "ticker",
        &engine.busybox,
        &[
            "sh",
            "-c",
            "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.1; done",
        ],
    );
    let running = client
        .create_container(&host_pod, ticker, Some(host_config.clone()))
        .await
        .unwrap();
    client.start_container(&running).await.unwrap();
    let failing = Shim::container_config("failing", &engine.busybox, &["sh", "-c", "exit 3"]);
    let exited = client
        .create_container(&own_pod, failing, Some(own_config.clone()))
        .await
        .unwrap();
    client.start_container(&exited).await.unwrap();
    let idle = Shim::container_config("idle", &engine.busybox, &["sleep", "3600"]);
    let created = client
        .create_container(&own_pod, idle, Some(own_config.clone()))
        .await
        .unwrap();
    wait_for(
        "the failing container to exit",
        Duration::from_secs(20),
        || async {
            (status(&client, &exited).await.state() == ContainerState::ContainerExited)
                .then_some(())
        },
    )
    .await;
    let log = status(&client, &running).await.log_path;
    wait_for("the first log lines", Duration::from_secs(10), || async {
        (log_lines(&log).len() >= 3).then_some(())
    })
    .await;

    let before = snapshot(&client).await;
    assert_eq!(before.0.len(), 2, "{:?}", before.0);
    assert_eq!(before.1.len(), 3, "{:?}", before.1);

    // SIGKILL: no chance to save anything.
    shim.kill();
    shim.spawn().await;
    let client = shim.client.clone();
    let after = snapshot(&client).await;
    assert_eq!(
        before.0.keys().collect::<Vec<_>>(),
        after.0.keys().collect::<Vec<_>>(),
        "pod ids"
    );
    for (id, pod) in &before.0 {
        let again = &after.0[id];
        assert_eq!(pod.state, again.state, "{id}");
        assert_eq!(pod.metadata, again.metadata, "{id}");
        assert_eq!(pod.created_at, again.created_at, "{id}");
        assert_eq!(pod.labels, again.labels, "{id}");
        assert_eq!(again.state(), PodSandboxState::SandboxReady, "{id}");
    }
    assert_eq!(
        before.1.keys().collect::<Vec<_>>(),
        after.1.keys().collect::<Vec<_>>(),
        "container ids"
    );
    for (id, c) in &before.1 {
        let again = &after.1[id];
        for (what, a, b) in [
            ("state", c.state, again.state),
            ("exit code", c.exit_code, again.exit_code),
        ] {
            assert_eq!(a, b, "{what} of {id}");
        }
        assert_eq!(c.metadata, again.metadata, "{id}");
        assert_eq!(c.created_at, again.created_at, "{id}");
        assert_eq!(c.started_at, again.started_at, "{id}");
        assert_eq!(c.finished_at, again.finished_at, "{id}");
        assert_eq!(c.reason, again.reason, "{id}");
        assert_eq!(c.log_path, again.log_path, "{id}");
    }
    assert_eq!(after.1[&running].state(), ContainerState::ContainerRunning);
    assert_eq!(after.1[&exited].state(), ContainerState::ContainerExited);
    assert_eq!(after.1[&exited].exit_code, 3);
    assert_eq!(after.1[&exited].reason, "Error");
    assert_eq!(after.1[&created].state(), ContainerState::ContainerCreated);
    let pods_of = client
        .list_containers(Some(ContainerFilter {
            pod_sandbox_id: own_pod.clone(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(pods_of.len(), 2, "{pods_of:?}");

    // The restarted shim follows the running container's output again.
    let count = log_lines(&log).len();
    wait_for(
        "log lines after the restart",
        Duration::from_secs(10),
        || async { (log_lines(&log).len() > count + 3).then_some(()) },
    )
    .await;
    // And can exec in it, start the created one, stop and remove everything.
    let out = client
        .exec_sync(&running, ["echo", "still-here"], Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "still-here");
    client.start_container(&created).await.unwrap();
    assert_eq!(
        status(&client, &created).await.state(),
        ContainerState::ContainerRunning
    );
    for pod in [&host_pod, &own_pod] {
        client.stop_pod_sandbox(pod).await.unwrap();
        client.remove_pod_sandbox(pod).await.unwrap();
    }
    assert!(client.list_pod_sandbox(None).await.unwrap().is_empty());
    assert!(client.list_containers(None).await.unwrap().is_empty());
    let log_text = shim.log();
    shim.shutdown().await;
    assert!(
        log_text.contains("state found in Docker pods=2 containers=3"),
        "{log_text}"
    );
}
