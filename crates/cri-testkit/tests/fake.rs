//! The fake runtime's own tests, through the harness and the typed client.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cri_client::Client;
use cri_client::cri_api::v1::*;
use cri_server::{Error, Server};
use cri_testkit::{FakeRuntime, Harness};
use futures_util::StreamExt;
use tonic::Code;

fn pod(name: &str, log_dir: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            namespace: "default".into(),
            uid: format!("uid-{name}"),
            attempt: 0,
        }),
        hostname: format!("{name}-host"),
        log_directory: log_dir.into(),
        labels: HashMap::from([("app".into(), name.into())]),
        ..Default::default()
    }
}

fn container(name: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        labels: HashMap::from([("tier".into(), name.into())]),
        ..Default::default()
    }
}

async fn harness() -> (FakeRuntime, Harness) {
    let fake = FakeRuntime::builder().image("busybox").build();
    let harness = Harness::fake(fake.clone()).await.unwrap();
    (fake, harness)
}

async fn running(client: &Client, pod_id: &str, name: &str, command: &[&str]) -> String {
    let id = client
        .create_container(pod_id, container(name, command), None)
        .await
        .unwrap();
    client.start_container(&id).await.unwrap();
    id
}

async fn state_of(client: &Client, id: &str) -> ContainerStatus {
    client
        .container_status(id, false)
        .await
        .unwrap()
        .status
        .unwrap()
}

#[tokio::test]
async fn sandbox_lifecycle_and_idempotence() {
    let (_fake, h) = harness().await;
    let c = &h.client;
    let id = c.run_pod_sandbox(pod("web", ""), "").await.unwrap();
    let status = c
        .pod_sandbox_status(&id, false)
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.state(), PodSandboxState::SandboxReady);
    assert!(!status.network.unwrap().ip.is_empty());
    assert_eq!(status.labels["app"], "web");

    let dup = c.run_pod_sandbox(pod("web", ""), "").await.unwrap_err();
    assert_eq!(dup.code(), Some(Code::AlreadyExists));

    for _ in 0..2 {
        c.stop_pod_sandbox(&id).await.unwrap();
    }
    let status = c
        .pod_sandbox_status(&id, false)
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.state(), PodSandboxState::SandboxNotready);
    for _ in 0..2 {
        c.remove_pod_sandbox(&id).await.unwrap();
    }
    assert!(
        c.pod_sandbox_status(&id, false)
            .await
            .unwrap_err()
            .is_not_found()
    );
    c.stop_pod_sandbox("never-existed").await.unwrap();
    c.remove_pod_sandbox("never-existed").await.unwrap();
}

#[tokio::test]
async fn container_lifecycle_exit_codes_and_removal_rules() {
    let (fake, h) = harness().await;
    let c = &h.client;
    let pod_id = c.run_pod_sandbox(pod("app", ""), "").await.unwrap();
    let id = c
        .create_container(&pod_id, container("main", &["sleep", "infinity"]), None)
        .await
        .unwrap();
    let created = state_of(c, &id).await;
    assert_eq!(created.state(), ContainerState::ContainerCreated);
    assert!(created.created_at > 0 && created.started_at == 0);
    assert!(created.image_ref.starts_with("sha256:"));

    c.start_container(&id).await.unwrap();
    let err = c.start_container(&id).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::FailedPrecondition));
    let started = state_of(c, &id).await;
    assert_eq!(started.state(), ContainerState::ContainerRunning);
    assert!(started.started_at > started.created_at);

    for _ in 0..2 {
        c.stop_container(&id, Duration::from_secs(1)).await.unwrap();
    }
    let stopped = state_of(c, &id).await;
    assert_eq!(stopped.state(), ContainerState::ContainerExited);
    assert_eq!(stopped.exit_code, 137);
    assert!(stopped.finished_at >= stopped.started_at);

    // A container whose command exits on its own reports its code and reason.
    let quick = running(c, &pod_id, "quick", &["sh", "-c", "exit 3"]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let exited = state_of(c, &quick).await;
    assert_eq!(
        (exited.state(), exited.exit_code, exited.reason.as_str()),
        (ContainerState::ContainerExited, 3, "Error")
    );
    let ok = running(c, &pod_id, "ok", &["true"]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(state_of(c, &ok).await.reason, "Completed");

    // Removal is idempotent and kills a running container.
    let busy = running(c, &pod_id, "busy", &["sleep", "1000"]).await;
    for _ in 0..2 {
        c.remove_container(&busy).await.unwrap();
    }
    assert!(
        c.container_status(&busy, false)
            .await
            .unwrap_err()
            .is_not_found()
    );
    c.stop_container("never-existed", Duration::ZERO)
        .await
        .unwrap();
    c.remove_container("never-existed").await.unwrap();

    // Creating in a stopped sandbox fails; removing the sandbox removes its containers.
    c.stop_pod_sandbox(&pod_id).await.unwrap();
    let err = c
        .create_container(&pod_id, container("late", &["true"]), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::FailedPrecondition));
    c.remove_pod_sandbox(&pod_id).await.unwrap();
    assert!(fake.container_ids().is_empty());
    fake.check_consistency().unwrap();
}

#[tokio::test]
async fn unknown_ids_and_images_answer_not_found() {
    let (_fake, h) = harness().await;
    let c = &h.client;
    assert!(
        c.container_status("nope", false)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        c.pod_sandbox_status("nope", false)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(c.container_stats("nope").await.unwrap_err().is_not_found());
    let err = c
        .create_container("nope", container("x", &["true"]), None)
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    let pod_id = c.run_pod_sandbox(pod("img", ""), "").await.unwrap();
    let mut config = container("x", &["true"]);
    config.image.as_mut().unwrap().image = "not-pulled:1".into();
    let err = c.create_container(&pod_id, config, None).await.unwrap_err();
    assert!(err.is_not_found());
    assert!(err.to_string().contains("pull it first"));
}

#[tokio::test]
async fn filters_by_id_state_sandbox_and_labels() {
    let (_fake, h) = harness().await;
    let c = &h.client;
    let a = c.run_pod_sandbox(pod("a", ""), "").await.unwrap();
    let b = c.run_pod_sandbox(pod("b", ""), "").await.unwrap();
    let a1 = running(c, &a, "front", &["sleep", "infinity"]).await;
    let a2 = c
        .create_container(&a, container("back", &["true"]), None)
        .await
        .unwrap();
    let b1 = running(c, &b, "front", &["sleep", "infinity"]).await;
    c.stop_pod_sandbox(&b).await.unwrap();

    let ids = |list: Vec<Container>| {
        let mut ids: Vec<String> = list.into_iter().map(|c| c.id).collect();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        ids(c.list_containers(None).await.unwrap()),
        sorted(vec![a1.clone(), a2.clone(), b1.clone()])
    );
    let by_sandbox = ContainerFilter {
        pod_sandbox_id: a.clone(),
        ..Default::default()
    };
    assert_eq!(
        ids(c.list_containers(Some(by_sandbox)).await.unwrap()),
        sorted(vec![a1.clone(), a2.clone()])
    );
    let running_only = ContainerFilter {
        state: Some(ContainerStateValue {
            state: ContainerState::ContainerRunning as i32,
        }),
        ..Default::default()
    };
    assert_eq!(
        ids(c.list_containers(Some(running_only)).await.unwrap()),
        vec![a1.clone()]
    );
    let by_label = ContainerFilter {
        label_selector: HashMap::from([("tier".into(), "front".into())]),
        ..Default::default()
    };
    assert_eq!(
        ids(c.list_containers(Some(by_label)).await.unwrap()),
        sorted(vec![a1.clone(), b1])
    );
    let by_prefix = ContainerFilter {
        id: a2[..12].to_string(),
        ..Default::default()
    };
    assert_eq!(
        ids(c.list_containers(Some(by_prefix)).await.unwrap()),
        vec![a2]
    );

    let ready = PodSandboxFilter {
        state: Some(PodSandboxStateValue {
            state: PodSandboxState::SandboxReady as i32,
        }),
        ..Default::default()
    };
    let pods = c.list_pod_sandbox(Some(ready)).await.unwrap();
    assert_eq!(
        pods.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        vec![a.clone()]
    );
    let labelled = PodSandboxFilter {
        label_selector: HashMap::from([("app".into(), "b".into())]),
        ..Default::default()
    };
    assert_eq!(c.list_pod_sandbox(Some(labelled)).await.unwrap()[0].id, b);

    // Stats follow the same filters.
    let stats = c
        .list_container_stats(Some(ContainerStatsFilter {
            pod_sandbox_id: a.clone(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(stats.len(), 2);
    let one = c.container_stats(&a1).await.unwrap();
    assert!(one.cpu.unwrap().usage_core_nano_seconds.is_some());
    let pod_stats = c.pod_sandbox_stats(&a).await.unwrap();
    assert_eq!(pod_stats.linux.unwrap().containers.len(), 2);
}

#[tokio::test]
async fn logs_are_written_in_cri_format() {
    let (_fake, h) = harness().await;
    let c = &h.client;
    let dir = tempfile::tempdir().unwrap();
    let pod_id = c
        .run_pod_sandbox(pod("logs", dir.path().to_str().unwrap()), "")
        .await
        .unwrap();
    let id = running(
        c,
        &pod_id,
        "talker",
        &["sh", "-c", "echo hello; echo -n partial; exit 0"],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = state_of(c, &id).await;
    assert_eq!(
        status.log_path,
        dir.path().join("talker/0.log").display().to_string()
    );
    let text = std::fs::read_to_string(&status.log_path).unwrap();
    let records: Vec<_> = text
        .lines()
        .map(|l| cri_client::cri_api::log::Record::parse(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "{text}");
    assert_eq!((records[0].stream, records[0].content), ("stdout", "hello"));
    assert_eq!(records[0].tag, cri_client::cri_api::log::Tag::Full);
    assert_eq!(
        (records[1].content, records[1].tag),
        ("partial", cri_client::cri_api::log::Tag::Partial)
    );

    let err = c.reopen_container_log(&id).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(Code::FailedPrecondition),
        "exited container"
    );
}

#[tokio::test]
async fn exec_sync_output_exit_code_and_timeout() {
    let (_fake, h) = harness().await;
    let c = &h.client;
    let pod_id = c.run_pod_sandbox(pod("exec", ""), "").await.unwrap();
    let id = running(c, &pod_id, "shell", &["sleep", "infinity"]).await;
    let out = c
        .exec_sync(&id, ["echo", "hi"], Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!((out.stdout.as_slice(), out.exit_code), (&b"hi\n"[..], 0));
    let out = c
        .exec_sync(&id, ["sh", "-c", "echo oops >&2; exit 7"], Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(out.exit_code, 7);
    let out = c
        .exec_sync(&id, ["hostname"], Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(out.stdout, b"exec-host\n");
    let err = c
        .exec_sync(&id, ["sleep", "30"], Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, cri_client::Error::ExecSyncTimeout { .. }),
        "{err:?}"
    );

    c.stop_container(&id, Duration::ZERO).await.unwrap();
    let err = c
        .exec_sync(&id, ["true"], Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::FailedPrecondition));
}

#[tokio::test]
async fn events_follow_a_container_through_its_life() {
    let (_fake, h) = harness().await;
    let c = &h.client;
    let mut events = c.events().await.unwrap();
    let pod_id = c.run_pod_sandbox(pod("ev", ""), "").await.unwrap();
    let id = running(c, &pod_id, "x", &["sleep", "infinity"]).await;
    c.stop_container(&id, Duration::ZERO).await.unwrap();
    c.remove_container(&id).await.unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 4 {
        let event = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(event.container_id, id);
        assert!(event.pod_sandbox_status.is_some());
        assert_eq!(event.containers_statuses[0].id, id);
        kinds.push(event.container_event_type());
    }
    assert_eq!(
        kinds,
        [
            ContainerEventType::ContainerCreatedEvent,
            ContainerEventType::ContainerStartedEvent,
            ContainerEventType::ContainerStoppedEvent,
            ContainerEventType::ContainerDeletedEvent,
        ]
    );
}

#[tokio::test]
async fn images_pull_status_list_remove() {
    let fake = FakeRuntime::default();
    let h = Harness::fake(fake.clone()).await.unwrap();
    let c = &h.client;
    assert!(
        c.image_status("alpine:3.20").await.unwrap().is_none(),
        "missing image is not an error"
    );
    let auth = AuthConfig {
        username: "u".into(),
        password: "secret-pw".into(),
        ..Default::default()
    };
    let image_ref = c.pull_image("alpine:3.20", Some(auth)).await.unwrap();
    assert!(image_ref.starts_with("sha256:"));
    let pulls = fake
        .calls()
        .into_iter()
        .filter(|c| c.method == "PullImage")
        .collect::<Vec<_>>();
    assert!(
        pulls[0].request.contains("username: \"u\""),
        "auth reached the runtime"
    );
    assert!(
        !pulls[0].request.contains("secret-pw"),
        "and the call log redacts it"
    );

    let image = c
        .image_status("docker.io/library/alpine:3.20")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(image.id, image_ref);
    assert_eq!(image.repo_tags, ["docker.io/library/alpine:3.20"]);
    assert!(image.size > 0);
    assert_eq!(
        c.image_status(&image_ref).await.unwrap().unwrap().id,
        image_ref,
        "by id"
    );
    assert_eq!(
        c.image_status(&image.repo_digests[0])
            .await
            .unwrap()
            .unwrap()
            .id,
        image_ref,
        "by digest"
    );
    assert_eq!(c.list_images(None).await.unwrap().len(), 1);
    let fs = c.image_fs_info().await.unwrap();
    assert_eq!(
        fs.image_filesystems[0].used_bytes.unwrap().value,
        image.size
    );
    for _ in 0..2 {
        c.remove_image("alpine:3.20").await.unwrap();
    }
    assert!(c.list_images(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn injected_errors_are_answered_once_each_in_order() {
    let (fake, h) = harness().await;
    fake.fail_next("Version", Error::unavailable("first"));
    fake.fail_next("Version", Error::RegistryUnavailable("second".into()));
    let e1 = h.client.version().await.unwrap_err();
    assert_eq!(e1.code(), Some(Code::Unavailable));
    let e2 = h.client.version().await.unwrap_err();
    assert!(matches!(e2, cri_client::Error::RegistryUnavailable { .. }));
    h.client.version().await.unwrap();
    assert!(fake.call_count("Version") >= 3);
}

#[tokio::test]
async fn hooks_change_what_the_runtime_reports() {
    let (fake, h) = harness().await;
    let c = &h.client;
    fake.set_condition(
        "NetworkReady",
        false,
        "NetworkPluginNotReady",
        "cni not initialised",
    );
    let status = c.status(false).await.unwrap().status.unwrap();
    let network = status
        .conditions
        .iter()
        .find(|c| c.r#type == "NetworkReady")
        .unwrap();
    assert!(!network.status);
    assert_eq!(network.reason, "NetworkPluginNotReady");

    let pod_id = c.run_pod_sandbox(pod("hooks", ""), "").await.unwrap();
    let id = running(c, &pod_id, "victim", &["sleep", "infinity"]).await;
    assert!(fake.exit_container(&id, 137, "OOMKilled"));
    let status = state_of(c, &id).await;
    assert_eq!(
        (status.state(), status.reason.as_str()),
        (ContainerState::ContainerExited, "OOMKilled")
    );

    let stats = ContainerStats {
        attributes: Some(ContainerAttributes {
            id: id.clone(),
            ..Default::default()
        }),
        memory: Some(MemoryUsage {
            working_set_bytes: Some(UInt64Value { value: 42 }),
            ..Default::default()
        }),
        ..Default::default()
    };
    fake.set_container_stats(&id, stats);
    let got = c.container_stats(&id).await.unwrap();
    assert_eq!(got.memory.unwrap().working_set_bytes.unwrap().value, 42);
}

#[tokio::test]
async fn deterministic_ids_repeat_across_instances() {
    let ids = |fake: FakeRuntime| async move {
        let h = Harness::fake(fake).await.unwrap();
        let pod_id = h.client.run_pod_sandbox(pod("d", ""), "").await.unwrap();
        let c = h
            .client
            .create_container(&pod_id, container("c", &["true"]), None)
            .await
            .unwrap();
        (pod_id, c)
    };
    let first = ids(FakeRuntime::builder()
        .deterministic_ids()
        .image("busybox")
        .build())
    .await;
    let second = ids(FakeRuntime::builder()
        .deterministic_ids()
        .image("busybox")
        .build())
    .await;
    assert_eq!(first, second);
    assert_eq!(first.0.len(), 64);
}

#[tokio::test]
async fn in_memory_harness_serves_the_same_runtime() {
    let fake = FakeRuntime::builder().image("busybox").build();
    let server = Server::builder()
        .service(Arc::new(fake.clone()))
        .build()
        .unwrap();
    let h = Harness::in_memory(server).await.unwrap();
    assert!(h.socket().is_none());
    let pod_id = h.client.run_pod_sandbox(pod("mem", ""), "").await.unwrap();
    assert_eq!(fake.sandbox_ids(), vec![pod_id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_concurrent_lifecycle_operations_leave_a_consistent_state() {
    let fake = FakeRuntime::builder().image("busybox").build();
    let h = Harness::fake(fake.clone()).await.unwrap();
    let pods: Vec<String> = {
        let mut pods = Vec::new();
        for i in 0..10 {
            pods.push(
                h.client
                    .run_pod_sandbox(pod(&format!("p{i}"), ""), "")
                    .await
                    .unwrap(),
            );
        }
        pods
    };
    // 2,000 workers × 5 operations (create, start, stop, remove, plus a status) = 10,000
    // calls, interleaved with sandbox stops on the same sandboxes.
    let mut tasks = Vec::new();
    for i in 0..2000usize {
        let client = h.client.clone();
        let pod_id = pods[i % pods.len()].clone();
        tasks.push(tokio::spawn(async move {
            let created = client
                .create_container(
                    &pod_id,
                    container(&format!("c{i}"), &["sleep", "infinity"]),
                    None,
                )
                .await;
            let Ok(id) = created else {
                return; // the sandbox was stopped under us: a legitimate outcome
            };
            let _ = client.start_container(&id).await;
            let _ = client.container_status(&id, false).await;
            client.stop_container(&id, Duration::ZERO).await.unwrap();
            if i % 2 == 0 {
                client.remove_container(&id).await.unwrap();
            }
        }));
        if i % 500 == 499 {
            let client = h.client.clone();
            let victim = pods[i % pods.len()].clone();
            tasks.push(tokio::spawn(async move {
                client.stop_pod_sandbox(&victim).await.unwrap();
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    fake.check_consistency().unwrap();
    let listed = h.client.list_containers(None).await.unwrap();
    assert_eq!(listed.len(), fake.container_ids().len());
    assert!(
        listed
            .iter()
            .all(|c| c.state() == ContainerState::ContainerExited)
    );
    assert!(fake.calls().len() >= 7_000, "{}", fake.calls().len());
}
