//! The kubelet's requests: pods driven with exactly the configs, call order and polling a
//! kubelet uses (see [`crate::kubelet`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cri_client::cri_api::log::Record;
use cri_client::cri_api::v1::*;

use super::case;
use crate::conformance::ctx::{check, expect_eq, skip};
use crate::conformance::{Case, Ctx, Failure, Stop};
use crate::kubelet::{Container, Pod, Profile};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "kubelet",
            "static-pod",
            "a static pod's whole life with the kubelet's configs, call order and 1 s relist",
            static_pod
        ),
        case!(
            "kubelet",
            "static-pod-recreate",
            "a static pod removed and re-added unchanged runs again under the same names",
            static_pod_recreate
        ),
        case!(
            "kubelet",
            "labels-annotations-roundtrip",
            "status and list calls return the kubelet's label and annotation maps exactly",
            labels_annotations
        ),
        case!(
            "kubelet",
            "log-layout",
            "logs land at <log root>/<ns>_<name>_<uid>/<container>/0.log in CRI format",
            log_layout
        ),
        case!(
            "kubelet",
            "hugepage-limits",
            "a container with the kubelet's zero limit per node hugepage size runs",
            hugepage_limits
        ),
        case!(
            "kubelet",
            "default-security-context",
            "the kubelet's masked/read-only paths, seccomp and user are accepted and applied",
            default_security_context
        ),
        case!(
            "kubelet",
            "image-by-id",
            "a container created from the image id (with user_specified_image) runs and reports it",
            image_by_id
        ),
        case!(
            "kubelet",
            "host-network-pod",
            "a hostNetwork pod (network NODE, no hostname) runs",
            host_network_pod
        ),
    ]
}

/// The node name static pods are suffixed with.
const NODE: &str = "cri-testkit-node";
/// A short grace period, so that a shell ignoring SIGTERM as PID 1 does not hold the case.
const GRACE_SECONDS: i64 = 5;

fn fail(check: &str, expected: impl std::fmt::Debug, got: impl std::fmt::Debug) -> Stop {
    Stop::Fail(Failure {
        check: check.to_string(),
        expected: format!("{expected:?}"),
        got: format!("{got:?}"),
    })
}

fn io_fail(what: &str, error: &std::io::Error) -> Stop {
    fail(what, "the host path can be prepared", error.to_string())
}

/// The profile of a kubelet logging under the suite's log root, with cgroup root
/// `/cri-testkit` and the runtime's cgroup driver (as the kubelet asks with
/// `RuntimeConfig`; cgroupfs when the runtime does not answer).
async fn profile(ctx: &Ctx) -> Result<Profile, Stop> {
    let probe = ctx.sandbox_config("probe");
    let log_root = Path::new(&probe.log_directory)
        .parent()
        .map_or_else(std::env::temp_dir, Path::to_path_buf);
    let mut profile = Profile::new(log_root).cgroup_root("/cri-testkit");
    match ctx.client().runtime_config().await {
        Ok(response) => {
            if let Some(linux) = response.linux {
                profile = profile.cgroup_driver(linux.cgroup_driver());
            }
        }
        Err(error) if error.is_unimplemented() => {}
        Err(error) => return Err(error.into()),
    }
    Ok(profile)
}

/// A static pod for this case, with the case's labels, one container running `command`,
/// and the configured network mode.
fn pod(ctx: &Ctx, name: &str, command: &[&str]) -> Pod {
    let mut pod = Pod::static_pod(&ctx.unique(name), NODE, "cri-testkit")
        .host_network(ctx.config().host_network)
        .grace_period(GRACE_SECONDS)
        .container(Container::new("main", ctx.config().image.clone(), command));
    for (key, value) in ctx.labels() {
        pod = pod.label(key, value);
    }
    pod
}

/// `RunPodSandbox` as the kubelet does it (log directory first), registered for cleanup.
async fn run_sandbox(
    ctx: &Ctx,
    profile: &Profile,
    pod: &Pod,
    attempt: u32,
) -> Result<(String, PodSandboxConfig), Stop> {
    profile
        .prepare_sandbox(pod)
        .map_err(|e| io_fail("create the pod log directory", &e))?;
    let config = profile.sandbox_config(pod, attempt);
    ctx.run_sandbox_with(&pod.name, |c| *c = config).await
}

/// The kubelet's image step: `ImageStatus` of the user's reference, `PullImage` (with the
/// sandbox config) when absent; returns the image id and the image's status.
async fn ensure_image(
    ctx: &Ctx,
    image: &str,
    sandbox: &PodSandboxConfig,
) -> Result<(String, Option<Image>), Stop> {
    if let Some(status) = ctx.client().image_status(image).await? {
        check(
            !status.id.is_empty(),
            "ImageStatus reports the image id",
            "non-empty",
            &status.id,
        )?;
        return Ok((status.id.clone(), Some(status)));
    }
    if ctx.config().pull_image.is_none() {
        return skip(format!(
            "image {image:?} is not present and pulling is disabled"
        ));
    }
    let pulled = ctx
        .client()
        .call(PullImageRequest {
            image: Some(ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: Some(sandbox.clone()),
        })
        .await?;
    let status = ctx.client().image_status(image).await?;
    Ok((pulled.image_ref, status))
}

/// Image, host files, `CreateContainer` (with the sandbox config) and `StartContainer`.
async fn start(
    ctx: &Ctx,
    profile: &Profile,
    pod: &Pod,
    sandbox: &(String, PodSandboxConfig),
    restart_count: u32,
) -> Result<(String, ContainerConfig), Stop> {
    let container = &pod.containers[0];
    let (image_ref, image) = ensure_image(ctx, &container.image, &sandbox.1).await?;
    profile
        .prepare_container(pod, container, restart_count)
        .map_err(|e| io_fail("create the container's log directory and files", &e))?;
    let config =
        profile.container_config(pod, container, restart_count, &image_ref, image.as_ref());
    let id = ctx
        .client()
        .create_container(&sandbox.0, config.clone(), Some(sandbox.1.clone()))
        .await?;
    ctx.client().start_container(&id).await?;
    Ok((id, config))
}

/// Removes what the kubelet keeps on the host for a pod once it is gone: its cgroup, log
/// directory and files.
fn remove_host_files(profile: &Profile, pod: &Pod) {
    profile.remove_pod_cgroup(pod);
    let _ = std::fs::remove_dir_all(profile.pod_log_directory(pod));
    if let Some(dir) = profile
        .termination_message_file(pod, "main", 0)
        .ancestors()
        .nth(3)
    {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Tears the pod down as the kubelet's garbage collector would (its sandboxes, with their
/// containers, then its cgroup and host files) and returns the checks' `result`.
async fn torn_down(
    ctx: &Ctx,
    profile: &Profile,
    pod: &Pod,
    result: Result<(), Stop>,
) -> Result<(), Stop> {
    let mine = PodSandboxFilter {
        label_selector: HashMap::from([(
            crate::kubelet::labels::POD_UID.to_string(),
            pod.uid.clone(),
        )]),
        ..Default::default()
    };
    if let Ok(sandboxes) = ctx.client().list_pod_sandbox(Some(mine)).await {
        for sandbox in sandboxes {
            let _ = ctx.client().stop_pod_sandbox(&sandbox.id).await;
            let _ = ctx.client().remove_pod_sandbox(&sandbox.id).await;
        }
    }
    remove_host_files(profile, pod);
    result
}

async fn expect_running(ctx: &Ctx, id: &str) -> Result<ContainerStatus, Stop> {
    let status = ctx.container_status(id).await?;
    expect_eq(
        "state after StartContainer",
        ContainerState::ContainerRunning,
        status.state(),
    )?;
    Ok(status)
}

fn expect_map(
    what: &str,
    expected: &HashMap<String, String>,
    got: &HashMap<String, String>,
) -> Result<(), Stop> {
    let sorted = |m: &HashMap<String, String>| {
        let mut v: Vec<(String, String)> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort();
        v
    };
    expect_eq(what, sorted(expected), sorted(got))
}

/// Waits for CRI log records at `path` until `done` accepts their contents.
async fn read_log(
    ctx: &Ctx,
    path: &Path,
    done: impl Fn(&[(String, String)]) -> bool,
) -> Result<Vec<(String, String)>, Stop> {
    let text = ctx
        .wait_for(
            "the expected lines reach the log file",
            Duration::from_secs(10),
            || {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let records: Vec<(String, String)> = text
                    .lines()
                    .filter_map(|l| Record::parse(l).ok())
                    .map(|r| (r.stream.to_string(), r.content.to_string()))
                    .collect();
                let ready =
                    !text.is_empty() && (done(&records) || records.len() < text.lines().count());
                async move { Ok(ready.then_some(text)) }
            },
        )
        .await?;
    let mut records = Vec::new();
    for line in text.lines() {
        let record = Record::parse(line);
        check(
            record.is_ok(),
            "each line of the kubelet log file is a CRI log record",
            "<RFC 3339 time> <stdout|stderr> <F|P> <text>",
            line,
        )?;
        let record = record.expect("checked");
        records.push((record.stream.to_string(), record.content.to_string()));
    }
    Ok(records)
}

// ----- the relist loop -----

/// What the background relist saw.
#[derive(Debug, Default)]
struct Relisted {
    /// Rounds whose `ListPodSandbox` included the pod's sandbox.
    sandbox_seen: usize,
    errors: Vec<String>,
    mismatches: Vec<String>,
    container_states: Vec<ContainerState>,
}

/// The kubelet's PLEG relist: `ListPodSandbox` and `ListContainers`, unfiltered, every
/// second, checking every appearance of the pod's objects; aborted on drop.
struct Relist {
    seen: Arc<Mutex<Relisted>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relist {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relist {
    fn start(ctx: &Ctx, profile: &Profile, pod: &Pod) -> Self {
        let seen = Arc::new(Mutex::new(Relisted::default()));
        let client = ctx.client().clone();
        let uid = pod.uid.clone();
        let sandbox_labels = profile.sandbox_labels(pod);
        let container_labels = profile.container_labels(pod, &pod.containers[0]);
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let sandboxes = client.list_pod_sandbox(None).await;
                let containers = client.list_containers(None).await;
                let mut seen = record
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match sandboxes {
                    Ok(list) => {
                        let mut ours = list
                            .iter()
                            .filter(|s| s.metadata.as_ref().is_some_and(|m| m.uid == uid))
                            .peekable();
                        if ours.peek().is_some() {
                            seen.sandbox_seen += 1;
                        }
                        for s in ours {
                            if s.labels != sandbox_labels {
                                seen.mismatches.push(format!(
                                    "ListPodSandbox labels {:?}, created with {:?}",
                                    s.labels, sandbox_labels
                                ));
                            }
                        }
                    }
                    Err(e) => seen.errors.push(format!("ListPodSandbox: {e}")),
                }
                match containers {
                    Ok(list) => {
                        for c in list
                            .iter()
                            .filter(|c| c.labels.get(crate::kubelet::labels::POD_UID) == Some(&uid))
                        {
                            if c.labels != container_labels {
                                seen.mismatches.push(format!(
                                    "ListContainers labels {:?}, created with {:?}",
                                    c.labels, container_labels
                                ));
                            }
                            seen.container_states.push(c.state());
                        }
                    }
                    Err(e) => seen.errors.push(format!("ListContainers: {e}")),
                }
            }
        });
        Self { seen, task }
    }

    fn seen<T>(&self, f: impl FnOnce(&Relisted) -> T) -> T {
        f(&self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Stops the loop and fails on any error or mismatch it met; returns how many rounds
    /// saw the pod's sandbox.
    fn finish(self) -> Result<usize, Stop> {
        self.task.abort();
        let (sandbox_seen, errors, mismatches) =
            self.seen(|s| (s.sandbox_seen, s.errors.clone(), s.mismatches.clone()));
        check(
            errors.is_empty(),
            "every relist call succeeds",
            "no errors",
            &errors,
        )?;
        check(
            mismatches.is_empty(),
            "relists return the labels the kubelet set",
            "exact label maps",
            &mismatches,
        )?;
        Ok(sandbox_seen)
    }
}

// ----- cases -----

async fn runtime_ready(ctx: &Ctx) -> Result<(), Stop> {
    let status = ctx.client().status(false).await?;
    let ready = status
        .status
        .as_ref()
        .and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.r#type == cri_client::cri_api::well_known::condition::RUNTIME_READY)
        })
        .map(|c| c.status);
    expect_eq("Status: RuntimeReady", Some(true), ready)
}

async fn static_pod(ctx: Ctx) -> Result<(), Stop> {
    let profile = profile(&ctx).await?;
    let pod = pod(
        &ctx,
        "static",
        &["sh", "-c", "echo kubelet-static-pod-up; sleep 3600"],
    );
    let result = static_pod_checks(ctx.clone(), profile.clone(), pod.clone()).await;
    torn_down(&ctx, &profile, &pod, result).await
}

async fn static_pod_checks(ctx: Ctx, profile: Profile, pod: Pod) -> Result<(), Stop> {
    runtime_ready(&ctx).await?;
    let relist = Relist::start(&ctx, &profile, &pod);

    let sandbox = run_sandbox(&ctx, &profile, &pod, 0).await?;
    let status = ctx
        .client()
        .pod_sandbox_status(&sandbox.0, false)
        .await?
        .status
        .unwrap_or_default();
    expect_eq(
        "sandbox state",
        PodSandboxState::SandboxReady,
        status.state(),
    )?;
    expect_eq(
        "sandbox metadata",
        sandbox.1.metadata.as_ref(),
        status.metadata.as_ref(),
    )?;
    expect_map("sandbox labels", &sandbox.1.labels, &status.labels)?;
    expect_map(
        "sandbox annotations",
        &sandbox.1.annotations,
        &status.annotations,
    )?;

    let (id, config) = start(&ctx, &profile, &pod, &sandbox, 0).await?;
    let status = expect_running(&ctx, &id).await?;
    expect_map("container labels", &config.labels, &status.labels)?;
    expect_map(
        "container annotations",
        &config.annotations,
        &status.annotations,
    )?;
    let log_file = profile.container_log_file(&pod, "main", 0);
    expect_eq(
        "ContainerStatus.log_path",
        log_file.display().to_string(),
        status.log_path.clone(),
    )?;

    ctx.wait_for(
        "the relist sees the container RUNNING",
        Duration::from_secs(5),
        || {
            let running = relist.seen(|s| {
                s.container_states
                    .contains(&ContainerState::ContainerRunning)
            });
            async move { Ok(running.then_some(())) }
        },
    )
    .await?;

    let stats = ctx.client().list_container_stats(None).await?;
    check(
        stats
            .iter()
            .any(|s| s.attributes.as_ref().is_some_and(|a| a.id == id)),
        "ListContainerStats includes the running container",
        &id,
        stats
            .iter()
            .filter_map(|s| s.attributes.as_ref().map(|a| a.id.clone()))
            .collect::<Vec<_>>(),
    )?;
    let fs = ctx.client().image_fs_info().await?;
    check(
        !fs.image_filesystems.is_empty(),
        "ImageFsInfo reports the image filesystem",
        "at least one",
        &fs,
    )?;
    runtime_ready(&ctx).await?;

    let records = read_log(&ctx, &log_file, |r| {
        r.iter().any(|(_, text)| text == "kubelet-static-pod-up")
    })
    .await?;
    check(
        records.contains(&("stdout".into(), "kubelet-static-pod-up".into())),
        "the container's output at the kubelet log path",
        "stdout F kubelet-static-pod-up",
        &records,
    )?;

    // Killing the pod: containers with the grace period, then the sandbox; the garbage
    // collector removes them afterwards.
    ctx.client().stop_container(&id, pod.grace()).await?;
    let status = ctx.container_status(&id).await?;
    expect_eq(
        "state after StopContainer",
        ContainerState::ContainerExited,
        status.state(),
    )?;
    ctx.client().stop_pod_sandbox(&sandbox.0).await?;
    let status = ctx
        .client()
        .pod_sandbox_status(&sandbox.0, false)
        .await?
        .status
        .unwrap_or_default();
    expect_eq(
        "sandbox state after StopPodSandbox",
        PodSandboxState::SandboxNotready,
        status.state(),
    )?;
    ctx.client().remove_container(&id).await?;
    let gone = ctx.client().container_status(&id, false).await;
    check(
        gone.as_ref().is_err_and(cri_client::Error::is_not_found),
        "ContainerStatus after RemoveContainer",
        "NotFound",
        gone.map(|_| "a status").map_err(|e| e.to_string()),
    )?;
    ctx.client().remove_pod_sandbox(&sandbox.0).await?;
    let gone = ctx.client().pod_sandbox_status(&sandbox.0, false).await;
    check(
        gone.as_ref().is_err_and(cri_client::Error::is_not_found),
        "PodSandboxStatus after RemovePodSandbox",
        "NotFound",
        gone.map(|_| "a status").map_err(|e| e.to_string()),
    )?;

    // The relist saw the container RUNNING, so the same round listed the sandbox too;
    // how many rounds ran depends on timing and is not checked.
    let sandbox_seen = relist.finish()?;
    check(
        sandbox_seen >= 1,
        "the unfiltered ListPodSandbox of the relist included the pod",
        ">= 1 round",
        sandbox_seen,
    )?;
    let sandboxes = ctx.client().list_pod_sandbox(None).await?;
    let containers = ctx.client().list_containers(None).await?;
    let left: Vec<String> = sandboxes
        .iter()
        .filter(|s| s.metadata.as_ref().is_some_and(|m| m.uid == pod.uid))
        .map(|s| s.id.clone())
        .chain(
            containers
                .iter()
                .filter(|c| c.pod_sandbox_id == sandbox.0 || c.id == id)
                .map(|c| c.id.clone()),
        )
        .collect();
    check(
        left.is_empty(),
        "the final relist shows nothing of the pod",
        "no sandbox or container",
        &left,
    )?;
    remove_host_files(&profile, &pod);
    Ok(())
}

async fn static_pod_recreate(ctx: Ctx) -> Result<(), Stop> {
    let profile = profile(&ctx).await?;
    let pod = pod(&ctx, "again", ctx.sleeper());
    let result = static_pod_recreate_checks(ctx.clone(), profile.clone(), pod.clone()).await;
    torn_down(&ctx, &profile, &pod, result).await
}

async fn static_pod_recreate_checks(ctx: Ctx, profile: Profile, pod: Pod) -> Result<(), Stop> {
    for round in 0..2 {
        // Each time the pod has no sandbox left: attempt 0, restart count 0 (its log
        // directory was collected with it).
        let sandbox = run_sandbox(&ctx, &profile, &pod, 0).await?;
        let (id, _) = start(&ctx, &profile, &pod, &sandbox, 0)
            .await
            .map_err(|stop| match stop {
                Stop::Fail(mut failure) if round == 1 => {
                    failure.check = format!(
                        "re-creating container \"main\" attempt 0 of the re-added pod (its earlier instance was removed): {}",
                        failure.check
                    );
                    Stop::Fail(failure)
                }
                other => other,
            })?;
        expect_running(&ctx, &id).await?;
        ctx.client().stop_container(&id, pod.grace()).await?;
        ctx.client().stop_pod_sandbox(&sandbox.0).await?;
        ctx.client().remove_container(&id).await?;
        ctx.client().remove_pod_sandbox(&sandbox.0).await?;
        remove_host_files(&profile, &pod);
    }
    Ok(())
}

async fn labels_annotations(ctx: Ctx) -> Result<(), Stop> {
    let profile = profile(&ctx).await?;
    let pod = pod(&ctx, "maps", ctx.sleeper()).annotation("cri-testkit/pod-annotation", "kept");
    // Another pod of the same case, which no uid filter may return.
    let decoy = self::pod(&ctx, "decoy", ctx.sleeper());
    let result =
        labels_annotations_checks(ctx.clone(), profile.clone(), pod.clone(), decoy.clone()).await;
    let result = torn_down(&ctx, &profile, &decoy, result).await;
    torn_down(&ctx, &profile, &pod, result).await
}

async fn labels_annotations_checks(
    ctx: Ctx,
    profile: Profile,
    pod: Pod,
    decoy: Pod,
) -> Result<(), Stop> {
    let sandbox = run_sandbox(&ctx, &profile, &pod, 0).await?;
    let (id, config) = start(&ctx, &profile, &pod, &sandbox, 0).await?;
    let other = run_sandbox(&ctx, &profile, &decoy, 0).await?;
    start(&ctx, &profile, &decoy, &other, 0).await?;

    let status = ctx
        .client()
        .pod_sandbox_status(&sandbox.0, false)
        .await?
        .status
        .unwrap_or_default();
    expect_map("PodSandboxStatus labels", &sandbox.1.labels, &status.labels)?;
    expect_map(
        "PodSandboxStatus annotations",
        &sandbox.1.annotations,
        &status.annotations,
    )?;
    let by_uid = ctx
        .client()
        .list_pod_sandbox(Some(PodSandboxFilter {
            label_selector: HashMap::from([(
                crate::kubelet::labels::POD_UID.to_string(),
                pod.uid.clone(),
            )]),
            ..Default::default()
        }))
        .await?;
    let ids: Vec<&str> = by_uid.iter().map(|s| s.id.as_str()).collect();
    expect_eq(
        "ListPodSandbox by the pod-uid label",
        vec![sandbox.0.as_str()],
        ids,
    )?;
    expect_map(
        "ListPodSandbox labels",
        &sandbox.1.labels,
        &by_uid[0].labels,
    )?;
    expect_map(
        "ListPodSandbox annotations",
        &sandbox.1.annotations,
        &by_uid[0].annotations,
    )?;

    let status = ctx.container_status(&id).await?;
    expect_map("ContainerStatus labels", &config.labels, &status.labels)?;
    expect_map(
        "ContainerStatus annotations",
        &config.annotations,
        &status.annotations,
    )?;
    let listed = ctx
        .client()
        .list_containers(Some(ContainerFilter {
            label_selector: HashMap::from([(
                crate::kubelet::labels::POD_UID.to_string(),
                pod.uid.clone(),
            )]),
            ..Default::default()
        }))
        .await?;
    let ids: Vec<&str> = listed.iter().map(|c| c.id.as_str()).collect();
    expect_eq(
        "ListContainers by the pod-uid label",
        vec![id.as_str()],
        ids,
    )?;
    expect_map("ListContainers labels", &config.labels, &listed[0].labels)?;
    expect_map(
        "ListContainers annotations",
        &config.annotations,
        &listed[0].annotations,
    )?;
    let all = ctx.client().list_containers(None).await?;
    let item = all.iter().find(|c| c.id == id);
    check(
        item.is_some(),
        "the unfiltered relist lists the container",
        &id,
        all.len(),
    )?;
    expect_map(
        "unfiltered ListContainers labels",
        &config.labels,
        &item.expect("checked").labels,
    )
}

async fn log_layout(ctx: Ctx) -> Result<(), Stop> {
    let profile = profile(&ctx).await?;
    let pod = pod(
        &ctx,
        "logs",
        &["sh", "-c", "echo kubelet-log-out; echo kubelet-log-err >&2"],
    );
    let result = log_layout_checks(ctx.clone(), profile.clone(), pod.clone()).await;
    torn_down(&ctx, &profile, &pod, result).await
}

async fn log_layout_checks(ctx: Ctx, profile: Profile, pod: Pod) -> Result<(), Stop> {
    let sandbox = run_sandbox(&ctx, &profile, &pod, 0).await?;
    let expected_dir: PathBuf = profile
        .pod_log_directory(&pod)
        .parent()
        .map(|root| root.join(format!("{}_{}_{}", pod.namespace, pod.name, pod.uid)))
        .unwrap_or_default();
    expect_eq(
        "sandbox log_directory",
        expected_dir.display().to_string(),
        sandbox.1.log_directory.clone(),
    )?;
    let (id, config) = start(&ctx, &profile, &pod, &sandbox, 0).await?;
    expect_eq("container log_path", "main/0.log", config.log_path.as_str())?;
    let status = ctx.wait_exited(&id).await?;
    let file = expected_dir.join("main").join("0.log");
    expect_eq(
        "ContainerStatus.log_path",
        file.display().to_string(),
        status.log_path.clone(),
    )?;
    let records = read_log(&ctx, &file, |r| r.len() >= 2).await?;
    let mut sorted = records.clone();
    sorted.sort();
    expect_eq(
        "log records (stream, text)",
        vec![
            ("stderr".to_string(), "kubelet-log-err".to_string()),
            ("stdout".to_string(), "kubelet-log-out".to_string()),
        ],
        sorted,
    )
}

async fn hugepage_limits(ctx: Ctx) -> Result<(), Stop> {
    let profile = profile(&ctx).await?;
    let sizes = profile.hugepage_sizes_in_use().to_vec();
    if sizes.is_empty() {
        return skip(format!(
            "the node lists no hugepage sizes under {}: the kubelet sends no hugepage limits",
            crate::kubelet::HUGEPAGES_DIR
        ));
    }
    let pod = pod(&ctx, "huge", ctx.sleeper());
    let result = hugepage_limits_checks(ctx.clone(), profile.clone(), pod.clone()).await;
    torn_down(&ctx, &profile, &pod, result).await
}

async fn hugepage_limits_checks(ctx: Ctx, profile: Profile, pod: Pod) -> Result<(), Stop> {
    let sizes = profile.hugepage_sizes_in_use().to_vec();
    let sandbox = run_sandbox(&ctx, &profile, &pod, 0).await?;
    let (id, config) = start(&ctx, &profile, &pod, &sandbox, 0).await?;
    let sent = config
        .linux
        .as_ref()
        .and_then(|l| l.resources.as_ref())
        .map(|r| r.hugepage_limits.clone())
        .unwrap_or_default();
    expect_eq("hugepage limits sent", sizes.len(), sent.len())?;
    let status = expect_running(&ctx, &id).await?;
    if let Some(reported) = status.resources.and_then(|r| r.linux)
        && !reported.hugepage_limits.is_empty()
    {
        let mut reported = reported.hugepage_limits;
        reported.sort_by(|a, b| a.page_size.cmp(&b.page_size));
        let mut sent = sent;
        sent.sort_by(|a, b| a.page_size.cmp(&b.page_size));
        expect_eq(
            "hugepage limits reported by ContainerStatus",
            sent,
            reported,
        )?;
    }
    // Where the container can read its own hugetlb limit (cgroup v2, or v1 with the
    // controller mounted), it must be 0.
    let size = &sizes[0];
    let v2 = format!("/sys/fs/cgroup/hugetlb.{size}.max");
    let v1 = format!("/sys/fs/cgroup/hugetlb/hugetlb.{size}.limit_in_bytes");
    for file in [v2, v1] {
        let out = ctx.exec(&id, &["cat", &file]).await?;
        if out.exit_code == 0 {
            let value = String::from_utf8_lossy(&out.stdout).trim().to_string();
            expect_eq(&format!("{file} in the container"), "0", value.as_str())?;
        }
    }
    Ok(())
}

async fn default_security_context(ctx: Ctx) -> Result<(), Stop> {
    let profile = profile(&ctx).await?;
    let pod = pod(&ctx, "secctx", ctx.sleeper());
    let result = default_security_context_checks(ctx.clone(), profile.clone(), pod.clone()).await;
    torn_down(&ctx, &profile, &pod, result).await
}

async fn default_security_context_checks(ctx: Ctx, profile: Profile, pod: Pod) -> Result<(), Stop> {
    let sandbox = run_sandbox(&ctx, &profile, &pod, 0).await?;
    let (id, config) = start(&ctx, &profile, &pod, &sandbox, 0).await?;
    expect_running(&ctx, &id).await?;
    let sc = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();

    let status = ctx.exec_ok(&id, &["cat", "/proc/self/status"]).await?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    expect_eq(
        "Seccomp: (Unconfined → 0)",
        Some("0".to_string()),
        field("Seccomp:"),
    )?;
    expect_eq("NoNewPrivs:", Some("0".to_string()), field("NoNewPrivs:"))?;

    let mountinfo = ctx.exec_ok(&id, &["cat", "/proc/self/mountinfo"]).await?;
    let mounts: Vec<(String, String)> = mountinfo
        .lines()
        .filter_map(|l| {
            let mut fields = l.split(' ');
            let point = fields.nth(4)?;
            let options = fields.next()?;
            Some((point.to_string(), options.to_string()))
        })
        .collect();
    // Only paths this host has can be masked or made read-only.
    for path in sc.masked_paths.iter().filter(|p| Path::new(p).exists()) {
        check(
            mounts.iter().any(|(point, _)| point == path),
            &format!("masked path {path} is covered by a mount"),
            "a mount at the path",
            mounts.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        )?;
    }
    for path in sc.readonly_paths.iter().filter(|p| Path::new(p).exists()) {
        let mount = mounts.iter().rev().find(|(point, _)| point == path);
        check(
            mount.is_some_and(|(_, options)| options.split(',').any(|o| o == "ro")),
            &format!("read-only path {path} is mounted read-only"),
            "a ro mount at the path",
            mount,
        )?;
    }
    if let Some(user) = sc.run_as_user {
        let uid = ctx.exec_ok(&id, &["id", "-u"]).await?;
        expect_eq(
            "id -u (run_as_user from the image)",
            user.value.to_string(),
            uid.trim().to_string(),
        )?;
    }
    Ok(())
}

async fn image_by_id(ctx: Ctx) -> Result<(), Stop> {
    let profile = profile(&ctx).await?;
    let pod = pod(&ctx, "byid", ctx.sleeper());
    let result = image_by_id_checks(ctx.clone(), profile.clone(), pod.clone()).await;
    torn_down(&ctx, &profile, &pod, result).await
}

async fn image_by_id_checks(ctx: Ctx, profile: Profile, pod: Pod) -> Result<(), Stop> {
    let sandbox = run_sandbox(&ctx, &profile, &pod, 0).await?;
    let (id, config) = start(&ctx, &profile, &pod, &sandbox, 0).await?;
    let spec = config.image.clone().unwrap_or_default();
    let (image_id, _) = ensure_image(&ctx, &pod.containers[0].image, &sandbox.1).await?;
    expect_eq(
        "the image the kubelet sends",
        image_id.as_str(),
        spec.image.as_str(),
    )?;
    expect_eq(
        "user_specified_image",
        ctx.config().image.as_str(),
        spec.user_specified_image.as_str(),
    )?;
    let status = expect_running(&ctx, &id).await?;
    check(
        !status.image_ref.is_empty(),
        "ContainerStatus.image_ref is set",
        "non-empty",
        &status.image_ref,
    )?;
    let resolved = ctx.client().image_status(&status.image_ref).await?;
    expect_eq(
        "ImageStatus(image_ref).id",
        Some(image_id.as_str()),
        resolved.as_ref().map(|i| i.id.as_str()),
    )?;
    let listed = ctx
        .client()
        .list_containers(Some(ContainerFilter {
            id: id.clone(),
            ..Default::default()
        }))
        .await?;
    let item = listed.iter().find(|c| c.id == id);
    check(item.is_some(), "the container is listed", &id, &listed)?;
    let listed_ref = item.expect("checked").image_ref.clone();
    let resolved = ctx.client().image_status(&listed_ref).await?;
    expect_eq(
        "ImageStatus(listed image_ref).id",
        Some(image_id.as_str()),
        resolved.as_ref().map(|i| i.id.as_str()),
    )
}

async fn host_network_pod(ctx: Ctx) -> Result<(), Stop> {
    let profile = profile(&ctx).await?;
    let pod = pod(&ctx, "hostnet", ctx.sleeper()).host_network(true);
    let result = host_network_pod_checks(ctx.clone(), profile.clone(), pod.clone()).await;
    torn_down(&ctx, &profile, &pod, result).await
}

async fn host_network_pod_checks(ctx: Ctx, profile: Profile, pod: Pod) -> Result<(), Stop> {
    let sandbox = run_sandbox(&ctx, &profile, &pod, 0).await?;
    expect_eq(
        "hostname of a hostNetwork sandbox",
        "",
        sandbox.1.hostname.as_str(),
    )?;
    let status = ctx
        .client()
        .pod_sandbox_status(&sandbox.0, false)
        .await?
        .status
        .unwrap_or_default();
    expect_eq(
        "sandbox state",
        PodSandboxState::SandboxReady,
        status.state(),
    )?;
    if let Some(options) = status
        .linux
        .as_ref()
        .and_then(|l| l.namespaces.as_ref())
        .and_then(|n| n.options.as_ref())
    {
        expect_eq(
            "PodSandboxStatus network namespace mode",
            NamespaceMode::Node,
            options.network(),
        )?;
    }
    let (id, config) = start(&ctx, &profile, &pod, &sandbox, 0).await?;
    let status = expect_running(&ctx, &id).await?;
    expect_map("container labels", &config.labels, &status.labels)?;
    let network = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .map(NamespaceOption::network);
    expect_eq(
        "container network mode sent",
        Some(NamespaceMode::Node),
        network,
    )
}
