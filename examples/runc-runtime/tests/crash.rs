//! Crash recovery: runc-runtime killed with SIGKILL while creates, starts, stops and removes
//! are in flight (several at once, with a kubelet-like relist running beside them), then
//! started again on the same root.
//!
//! After each restart the test checks what the kubelet relies on:
//!
//! - the client it had before the crash (the kubelet's defaults) reconnects and carries on;
//! - every call that answered OK before the crash is durable (a created container is listed,
//!   a started one runs, a stopped one has exited, a removed one is gone);
//! - every call cut off by the crash left a state that is consistent and usable: a listed
//!   container is `CREATED` (and starts), `RUNNING` (and execs) or `EXITED`, and every pod
//!   and container can be stopped and removed;
//! - once everything is removed through CRI, nothing is left on the host: no mount under the
//!   runtime's root (rootfs overlays, pinned network namespaces), no runc container, no
//!   monitor process, no pod cgroup, no CNI address lease.
//!
//! The streaming server is checked across a restart too: a URL handed out before the crash
//! is refused afterwards (its session died with the process), a new one works.
//!
//! The kill moment is the first answer of the batch: the others of the batch are then still
//! in the runtime (runc takes tens of milliseconds per call on this hardware), which is what
//! makes the crash land in the middle. No assertion depends on timing.

mod common;

use std::path::Path;
use std::time::Duration;

use common::cni::Network;
use common::{Runtime, wait_for};
use cri_client::Client;
use cri_client::cri_api::v1::*;
use tokio::task::JoinSet;

/// How many calls of the phase run at once when the runtime is killed.
const BATCH: usize = 6;

/// The operation in flight when the runtime is killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Create,
    Start,
    Stop,
    Remove,
}

/// What a call of the batch answered before (or because of) the crash.
#[derive(Debug)]
struct Answer {
    container: Option<String>,
    ok: bool,
}

fn state_name(state: i32) -> &'static str {
    ContainerState::try_from(state).map_or("?", |s| s.as_str_name())
}

/// A sleeper container's config (`name` unique within its pod).
fn sleeper(name: &str, image: &str) -> ContainerConfig {
    Runtime::container_config(name, image, &["sleep", "3600"])
}

/// Brings `count` containers of `pod` to the state the phase starts from.
async fn prepare(
    client: &Client,
    pod: &str,
    pod_config: &PodSandboxConfig,
    image: &str,
    phase: Phase,
) -> Vec<String> {
    let mut ids = Vec::new();
    if phase == Phase::Create {
        return ids;
    }
    for i in 0..BATCH {
        let id = client
            .create_container(
                pod,
                sleeper(&format!("c{i}"), image),
                Some(pod_config.clone()),
            )
            .await
            .expect("CreateContainer before the crash");
        if phase != Phase::Start {
            client.start_container(&id).await.expect("StartContainer");
        }
        if phase == Phase::Remove {
            client
                .stop_container(&id, Duration::ZERO)
                .await
                .expect("StopContainer");
        }
        ids.push(id);
    }
    ids
}

/// Starts the phase's batch (and, for creates, two more pods); kills the runtime at the
/// first answer; returns every call's answer.
async fn crash_during(
    runtime: &mut Runtime,
    phase: Phase,
    pod: &str,
    pod_config: &PodSandboxConfig,
    image: &str,
    prepared: &[String],
) -> (Vec<Answer>, Vec<(PodSandboxConfig, Option<String>)>) {
    let client = runtime.client.clone();
    let mut calls = JoinSet::new();
    for i in 0..BATCH {
        let client = client.clone();
        let (pod, pod_config) = (pod.to_string(), pod_config.clone());
        let target = prepared.get(i).cloned();
        let config = sleeper(&format!("c{i}"), image);
        calls.spawn(async move {
            match phase {
                Phase::Create => {
                    let created = client
                        .create_container(&pod, config, Some(pod_config))
                        .await;
                    Answer {
                        ok: created.is_ok(),
                        container: created.ok(),
                    }
                }
                Phase::Start => Answer {
                    ok: client
                        .start_container(target.as_deref().unwrap())
                        .await
                        .is_ok(),
                    container: target,
                },
                Phase::Stop => Answer {
                    ok: client
                        .stop_container(target.as_deref().unwrap(), Duration::ZERO)
                        .await
                        .is_ok(),
                    container: target,
                },
                Phase::Remove => Answer {
                    ok: client
                        .remove_container(target.as_deref().unwrap())
                        .await
                        .is_ok(),
                    container: target,
                },
            }
        });
    }
    // New pods in flight too when the phase is creation (CNI ADD, netns pinning, cgroups).
    let mut pods = JoinSet::new();
    if phase == Phase::Create {
        for k in 0..2 {
            let client = client.clone();
            let config = runtime.pod_config(&format!("crash-new-{k}"), true);
            pods.spawn(async move {
                let id = client.run_pod_sandbox(config.clone(), "").await.ok();
                (config, id)
            });
        }
    }
    // The kubelet's relist beside it.
    let relist = {
        let client = client.clone();
        tokio::spawn(async move {
            loop {
                let _ = client.list_pod_sandbox(None).await;
                let _ = client.list_containers(None).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let first = calls.join_next().await.expect("a call").expect("call task");
    runtime.kill();
    relist.abort();
    let mut answers = vec![first];
    while let Some(answer) = calls.join_next().await {
        answers.push(answer.expect("call task"));
    }
    let mut new_pods = Vec::new();
    while let Some(pod) = pods.join_next().await {
        new_pods.push(pod.expect("pod task"));
    }
    (answers, new_pods)
}

/// Polls with the client from before the crash until the restarted runtime answers.
async fn reconnect(client: &Client) {
    wait_for(
        "the client from before the crash to reach the restarted runtime",
        Duration::from_secs(30),
        || async { client.version().await.ok() },
    )
    .await;
}

/// Checks one listed container's state against reality and brings it on (start a created
/// one, exec in a running one).
async fn check_usable(client: &Client, id: &str) -> Result<(), String> {
    let status = client
        .container_status(id, false)
        .await
        .map_err(|e| format!("ContainerStatus {id}: {e}"))?
        .status
        .ok_or(format!("{id}: no status"))?;
    match ContainerState::try_from(status.state) {
        Ok(ContainerState::ContainerCreated) => {
            client
                .start_container(id)
                .await
                .map_err(|e| format!("{id} is CREATED but does not start: {e}"))?;
            exec_works(client, id).await
        }
        Ok(ContainerState::ContainerRunning) => exec_works(client, id).await,
        Ok(ContainerState::ContainerExited) => {
            if status.finished_at == 0 {
                return Err(format!("{id} is EXITED without a finish time"));
            }
            Ok(())
        }
        _ => Err(format!("{id} is {}", state_name(status.state))),
    }
}

async fn exec_works(client: &Client, id: &str) -> Result<(), String> {
    let out = client
        .exec_sync(id, ["echo", "alive"], Duration::from_secs(10))
        .await
        .map_err(|e| format!("{id} RUNNING but ExecSync fails: {e}"))?;
    if out.exit_code != 0 || out.stdout != b"alive\n" {
        return Err(format!("{id} RUNNING but exec answered {out:?}"));
    }
    Ok(())
}

/// What the durability rules say about the answers, given what is listed now.
fn check_durable(phase: Phase, answers: &[Answer], listed: &[Container]) -> Vec<String> {
    let mut wrong = Vec::new();
    for answer in answers.iter().filter(|a| a.ok) {
        let id = answer.container.as_deref().unwrap();
        let found = listed.iter().find(|c| c.id == id);
        let expected = match phase {
            Phase::Create => Some(ContainerState::ContainerCreated),
            Phase::Start => Some(ContainerState::ContainerRunning),
            Phase::Stop => Some(ContainerState::ContainerExited),
            Phase::Remove => None,
        };
        let state = found.map(|c| c.state);
        if state != expected.map(|s| s as i32) {
            wrong.push(format!(
                "{phase:?} of {id} answered OK before the crash, but after it the container is {}",
                state.map_or("not listed", state_name)
            ));
        }
    }
    wrong
}

/// Mounts whose target is under `root`.
fn mounts_under(root: &Path) -> Vec<String> {
    let prefix = format!("{}/", root.display());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(4)
                .is_some_and(|t| t.starts_with(&prefix))
        })
        .map(str::to_string)
        .collect()
}

/// runc containers in the runtime's runc root.
fn runc_containers(runtime: &Runtime) -> Vec<String> {
    std::fs::read_dir(runtime.runc_root())
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The pod cgroups (under the tests' `/runc-runtime-test` parent) still present.
fn cgroups_of(configs: &[PodSandboxConfig]) -> Vec<String> {
    let mut left = Vec::new();
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return left;
    };
    let parents: Vec<String> = configs
        .iter()
        .filter_map(|c| c.linux.as_ref())
        .map(|l| l.cgroup_parent.trim_start_matches('/').to_string())
        .collect();
    for hierarchy in hierarchies.flatten() {
        for parent in &parents {
            let path = hierarchy.path().join(parent);
            if path.is_dir() {
                left.push(path.display().to_string());
            }
        }
    }
    left
}

/// One phase: set up, crash in the middle, restart, check, tear down, check for leaks.
async fn crash_and_recover(phase: Phase) {
    let Some(images) = common::cni::requirements() else {
        return;
    };
    let network = Network::new(8 + phase as u32);
    let registry = common::registry(&images).await;
    let mut runtime = Runtime::start(common::Options {
        registry: Some(registry.endpoint()),
        args: network.args(),
        ..Default::default()
    })
    .await;
    let client = runtime.client.clone();
    client
        .pull_image(&images.busybox, None)
        .await
        .expect("pulling busybox");
    let pod_config = runtime.pod_config(&format!("crash-{phase:?}").to_lowercase(), true);
    let pod = client
        .run_pod_sandbox(pod_config.clone(), "")
        .await
        .expect("RunPodSandbox");
    let prepared = prepare(&client, &pod, &pod_config, &images.busybox, phase).await;

    let (answers, new_pods) = crash_during(
        &mut runtime,
        phase,
        &pod,
        &pod_config,
        &images.busybox,
        &prepared,
    )
    .await;
    let answered_ok = answers.iter().filter(|a| a.ok).count();
    eprintln!(
        "{phase:?}: {answered_ok} of {BATCH} calls answered OK before the kill; new pods: {:?}",
        new_pods
            .iter()
            .map(|(_, id)| id.is_some())
            .collect::<Vec<_>>()
    );
    assert!(
        answered_ok >= 1,
        "the kill waits for one answer: {answers:?}"
    );

    runtime.spawn().await;
    reconnect(&client).await;

    // Durable answers, consistent states.
    let listed = client.list_containers(None).await.expect("ListContainers");
    let mut wrong = check_durable(phase, &answers, &listed);
    let pods = client.list_pod_sandbox(None).await.expect("ListPodSandbox");
    for (config, id) in &new_pods {
        if let Some(id) = id
            && !pods
                .iter()
                .any(|p| &p.id == id && p.state == PodSandboxState::SandboxReady as i32)
        {
            wrong.push(format!(
                "pod {} answered OK before the crash but is not listed ready",
                config.metadata.as_ref().unwrap().name
            ));
        }
    }
    for container in &listed {
        if let Err(why) = check_usable(&client, &container.id).await {
            wrong.push(why);
        }
    }
    // Carrying on: a new container in the pod runs and execs.
    match client
        .create_container(
            &pod,
            sleeper("after", &images.busybox),
            Some(pod_config.clone()),
        )
        .await
    {
        Ok(id) => match client.start_container(&id).await {
            Ok(()) => {
                if let Err(why) = exec_works(&client, &id).await {
                    wrong.push(why);
                }
            }
            Err(e) => wrong.push(format!(
                "a new container does not start after the crash: {e}"
            )),
        },
        Err(e) => wrong.push(format!(
            "a new container cannot be created after the crash: {e}"
        )),
    }

    // Everything goes away through CRI, and nothing is left behind.
    let pods = client.list_pod_sandbox(None).await.expect("ListPodSandbox");
    for pod in &pods {
        if let Err(e) = client.stop_pod_sandbox(&pod.id).await {
            wrong.push(format!("StopPodSandbox {}: {e}", pod.id));
        }
        if let Err(e) = client.remove_pod_sandbox(&pod.id).await {
            wrong.push(format!("RemovePodSandbox {}: {e}", pod.id));
        }
    }
    let containers_left = client.list_containers(None).await.expect("ListContainers");
    let pods_left = client.list_pod_sandbox(None).await.expect("ListPodSandbox");
    if !containers_left.is_empty() || !pods_left.is_empty() {
        wrong.push(format!(
            "listed after removing every pod: {} containers, {} pods",
            containers_left.len(),
            pods_left.len()
        ));
    }
    let mut configs = vec![pod_config.clone()];
    configs.extend(new_pods.iter().map(|(c, _)| c.clone()));
    // A monitor ends on its own shortly after its container's exit is recorded (it lingers
    // 100 ms for waiters), so removal returning first is not a leak.
    let started = std::time::Instant::now();
    while !common::monitors_of(&runtime.root).is_empty()
        && started.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leaks: Vec<(&str, Vec<String>)> = vec![
        ("mounts under the root", mounts_under(&runtime.root)),
        ("runc containers", runc_containers(&runtime)),
        (
            "monitor processes",
            common::monitors_of(&runtime.root)
                .into_iter()
                .map(|p| {
                    let cmdline = std::fs::read(format!("/proc/{}/cmdline", p.as_raw_nonzero()))
                        .unwrap_or_default();
                    format!(
                        "{}: {}",
                        p.as_raw_nonzero(),
                        String::from_utf8_lossy(&cmdline).replace('\0', " ")
                    )
                })
                .collect(),
        ),
        ("pod cgroups", cgroups_of(&configs)),
        ("CNI leases", network.leases()),
    ];
    for (what, left) in leaks {
        if !left.is_empty() {
            wrong.push(format!("{what} left: {left:?}"));
        }
    }
    let log = runtime.log();
    runtime.shutdown().await;
    registry.shutdown().await;
    assert!(
        wrong.is_empty(),
        "{phase:?}: after a crash mid-{phase:?}:\n  {}\n\nruntime log:\n{log}",
        wrong.join("\n  ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_creates() {
    crash_and_recover(Phase::Create).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_starts() {
    crash_and_recover(Phase::Start).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_stops() {
    crash_and_recover(Phase::Stop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_removes() {
    crash_and_recover(Phase::Remove).await;
}

/// A streaming URL handed out before the crash is refused by the restarted runtime (on the
/// same streaming address); a new one works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_urls_do_not_survive_a_crash() {
    let Some(images) = common::requirements() else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut runtime = Runtime::start(common::Options {
        imports: vec![images.dir.join("busybox.tar"), images.dir.join("pause.tar")],
        args: vec!["--streaming-addr".into(), format!("127.0.0.1:{port}")],
        ..Default::default()
    })
    .await;
    let client = runtime.client.clone();
    let pod_config = runtime.pod_config("crash-streaming", false);
    let pod = client
        .run_pod_sandbox(pod_config.clone(), "")
        .await
        .expect("RunPodSandbox");
    let id = client
        .create_container(&pod, sleeper("c", &images.busybox), Some(pod_config))
        .await
        .expect("CreateContainer");
    client.start_container(&id).await.expect("StartContainer");
    let exec = ExecRequest {
        container_id: id.clone(),
        cmd: vec!["echo".into(), "again".into()],
        stdout: true,
        ..Default::default()
    };
    let old = client.call(exec.clone()).await.expect("Exec").url;

    runtime.kill();
    runtime.spawn().await;
    reconnect(&client).await;

    let replayed = cri_streaming::run(
        &old,
        cri_streaming::Transport::Spdy,
        cri_streaming::Streams::default(),
    )
    .await;
    let new = client.call(exec).await.expect("Exec after the restart").url;
    assert!(
        new.contains(&format!("127.0.0.1:{port}")),
        "the restarted runtime streams on the same address: {new}"
    );
    let (mut reader, writer) = tokio::io::duplex(1024);
    let streams = cri_streaming::Streams {
        stdout: Some(Box::pin(writer)),
        ..Default::default()
    };
    let code = cri_streaming::run(&new, cri_streaming::Transport::Spdy, streams)
        .await
        .expect("a new exec session after the restart");
    let mut out = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut out)
        .await
        .unwrap();
    runtime.shutdown().await;
    match replayed {
        Err(cri_streaming::ClientError::Refused { status, .. }) => {
            assert_eq!(status, 404, "an unknown token is not found");
        }
        other => panic!("a pre-crash URL must be refused, got {other:?}"),
    }
    assert_eq!((code, out.as_slice()), (0, b"again\n".as_slice()));
}
