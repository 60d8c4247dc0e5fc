//! Containers: Docker containers joining their pod's pause container
//! (`container:<pause id>` network and IPC, and PID when the pod asks for a pod PID
//! namespace), with the CRI config's resources and security context mapped to Docker's host
//! config, or refused with a clear error where Docker cannot express them.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, DeviceMapping, HostConfig, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, StartContainerOptions,
};
use cri_api::v1::{
    Container, ContainerConfig, ContainerFilter, ContainerResources, ContainerState,
    ContainerStatus, ImageSpec, LinuxContainerResources, MountPropagation, NamespaceMode,
    PodSandboxConfig, security_profile::ProfileType,
};
use cri_server::{Error, Result};

use super::Runtime;
use super::pods::{labels_match, pod_namespace_mode};
use crate::error;
use crate::labels;

/// The Docker name of a container (as the dockershim named them).
fn container_name(pod: &PodSandboxConfig, config: &ContainerConfig) -> String {
    let p = pod.metadata.clone().unwrap_or_default();
    let c = config.metadata.clone().unwrap_or_default();
    labels::docker_name(&[
        "k8s",
        &c.name,
        &p.name,
        &p.namespace,
        &p.uid,
        &c.attempt.to_string(),
    ])
}

fn invalid(field: &str, why: &str) -> Error {
    Error::invalid_argument(format!("{field}: {why}"))
}

fn cannot(what: &str) -> Error {
    Error::Unimplemented(format!("Docker Engine cannot express {what}"))
}

/// Maps CRI resources onto a Docker host config.
pub(crate) fn apply_resources(
    host: &cri_oci::spec::Host,
    r: &LinuxContainerResources,
    hc: &mut HostConfig,
) -> Result<()> {
    let prefix = "linux.resources";
    if r.cpu_shares < 0 || r.cpu_quota < -1 || r.cpu_period < 0 || r.memory_limit_in_bytes < 0 {
        return Err(invalid(
            prefix,
            "cpu and memory values must not be negative",
        ));
    }
    let limits =
        cri_oci::spec::hugepage_limits(host, &r.hugepage_limits, prefix).map_err(error::oci)?;
    if !limits.is_empty() {
        return Err(cannot(&format!(
            "{prefix}.hugepage_limits (HostConfig has no hugetlb limits)"
        )));
    }
    if !r.unified.is_empty() {
        return Err(cannot(&format!(
            "{prefix}.unified (cgroup v2 files: HostConfig has no such field)"
        )));
    }
    let positive = |v: i64| (v > 0).then_some(v);
    hc.cpu_shares = positive(r.cpu_shares);
    hc.cpu_quota = positive(r.cpu_quota);
    hc.cpu_period = positive(r.cpu_period);
    hc.memory = positive(r.memory_limit_in_bytes);
    // No swap unless asked for (as the kubelet means it): swap limit = memory limit.
    hc.memory_swap = match r.memory_swap_limit_in_bytes {
        0 => hc.memory,
        v => Some(v),
    };
    hc.cpuset_cpus = (!r.cpuset_cpus.is_empty()).then(|| r.cpuset_cpus.clone());
    hc.cpuset_mems = (!r.cpuset_mems.is_empty()).then(|| r.cpuset_mems.clone());
    if r.oom_score_adj != 0 {
        let mut adj = r.oom_score_adj;
        if host.restrict_oom_score_adj {
            adj = adj.max(host.min_oom_score_adj);
        }
        hc.oom_score_adj = Some(adj);
    }
    Ok(())
}

/// The container's host config and user from its config and its pod's.
fn container_host_config(
    host: &cri_oci::spec::Host,
    pod_id: &str,
    pod: &PodSandboxConfig,
    config: &ContainerConfig,
) -> Result<(HostConfig, Option<String>)> {
    let linux = config.linux.clone().unwrap_or_default();
    let security = linux.security_context.clone().unwrap_or_default();
    let pod_linux = pod.linux.clone().unwrap_or_default();
    let pod_security = pod_linux.security_context.clone().unwrap_or_default();
    let mut hc = HostConfig {
        network_mode: Some(format!("container:{pod_id}")),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        cgroup_parent: (!pod_linux.cgroup_parent.is_empty())
            .then(|| pod_linux.cgroup_parent.clone()),
        ..Default::default()
    };
    // Namespaces.
    let ns = security.namespace_options.clone().unwrap_or_default();
    let pod_ipc = pod_namespace_mode(pod, |n| n.ipc);
    hc.ipc_mode = Some(if pod_ipc == NamespaceMode::Node as i32 {
        "host".to_string()
    } else {
        format!("container:{pod_id}")
    });
    hc.pid_mode = match NamespaceMode::try_from(ns.pid).unwrap_or(NamespaceMode::Pod) {
        NamespaceMode::Pod => Some(format!("container:{pod_id}")),
        NamespaceMode::Node => Some("host".into()),
        NamespaceMode::Container => None,
        NamespaceMode::Target => {
            if ns.target_id.is_empty() {
                return Err(invalid(
                    "linux.security_context.namespace_options.target_id",
                    "required with pid TARGET",
                ));
            }
            Some(format!("container:{}", ns.target_id))
        }
    };
    if ns
        .userns_options
        .as_ref()
        .is_some_and(|u| u.mode != NamespaceMode::Node as i32)
    {
        return Err(cannot("per-container user namespaces"));
    }
    // Resources.
    if let Some(r) = &linux.resources {
        apply_resources(host, r, &mut hc)?;
    }
    // Security.
    if security.privileged && !pod_security.privileged {
        return Err(invalid(
            "linux.security_context.privileged",
            "a privileged container needs a privileged pod sandbox",
        ));
    }
    hc.readonly_rootfs = Some(security.readonly_rootfs);
    let missing = missing_capabilities(host);
    if let Some(caps) = &security.capabilities {
        if !caps.add_ambient_capabilities.is_empty() {
            return Err(cannot("ambient capabilities"));
        }
        let name = |c: &String| c.trim_start_matches("CAP_").to_uppercase();
        let add: Vec<String> = caps.add_capabilities.iter().map(name).collect();
        let mut drop: Vec<String> = caps.drop_capabilities.iter().map(name).collect();
        if add.iter().any(|c| c == "ALL") {
            // Docker's ALL is every capability it knows; those outside this host's bounding
            // set would make runc fail, so they are dropped.
            drop.extend(missing.iter().cloned());
        }
        hc.cap_add = Some(add);
        hc.cap_drop = Some(drop);
    }
    let mut opts = Vec::new();
    if security.no_new_privs {
        opts.push("no-new-privileges".to_string());
    }
    match security.seccomp.as_ref() {
        Some(p) if p.profile_type == ProfileType::Unconfined as i32 => {
            opts.push("seccomp=unconfined".into())
        }
        Some(p) if p.profile_type == ProfileType::Localhost as i32 => {
            let json = std::fs::read_to_string(&p.localhost_ref).map_err(|e| {
                invalid(
                    "linux.security_context.seccomp.localhost_ref",
                    &format!("reading {}: {e}", p.localhost_ref),
                )
            })?;
            opts.push(format!("seccomp={json}"));
        }
        _ => {}
    }
    match security.apparmor.as_ref() {
        Some(p) if p.profile_type == ProfileType::Unconfined as i32 => {
            opts.push("apparmor=unconfined".into())
        }
        Some(p) if p.profile_type == ProfileType::Localhost as i32 => opts.push(format!(
            "apparmor={}",
            p.localhost_ref.trim_start_matches("localhost/")
        )),
        _ => {}
    }
    if let Some(se) = &security.selinux_options {
        for (key, value) in [
            ("user", &se.user),
            ("role", &se.role),
            ("type", &se.r#type),
            ("level", &se.level),
        ] {
            if !value.is_empty() {
                opts.push(format!("label={key}:{value}"));
            }
        }
    }
    hc.security_opt = (!opts.is_empty()).then_some(opts);
    if security.privileged {
        if missing.is_empty() {
            hc.privileged = Some(true);
        } else {
            emulate_privileged(&mut hc, &missing);
        }
    }
    if !security.privileged {
        // As the kubelet means them: empty lists mask nothing (procMount Unmasked).
        hc.masked_paths = Some(security.masked_paths.clone());
        hc.readonly_paths = Some(security.readonly_paths.clone());
    }
    if !security.supplemental_groups.is_empty() {
        hc.group_add = Some(
            security
                .supplemental_groups
                .iter()
                .map(i64::to_string)
                .collect(),
        );
    }
    if security.supplemental_groups_policy != 0 {
        return Err(cannot(
            "supplemental_groups_policy Strict (Docker always adds the image's groups)",
        ));
    }
    let user = match (
        &security.run_as_user,
        security.run_as_username.as_str(),
        &security.run_as_group,
    ) {
        (Some(uid), _, Some(gid)) => Some(format!("{}:{}", uid.value, gid.value)),
        (Some(uid), _, None) => Some(uid.value.to_string()),
        (None, name, Some(gid)) if !name.is_empty() => Some(format!("{name}:{}", gid.value)),
        (None, name, None) if !name.is_empty() => Some(name.to_string()),
        (None, _, Some(_)) => {
            return Err(invalid(
                "linux.security_context.run_as_group",
                "needs run_as_user or run_as_username",
            ));
        }
        _ => None,
    };
    // Mounts and devices.
    let mut binds = Vec::new();
    for (i, m) in config.mounts.iter().enumerate() {
        let field = format!("mounts[{i}]");
        if m.image.as_ref().is_some_and(|i| !i.image.is_empty()) {
            return Err(cannot(&format!("{field}: image volumes")));
        }
        if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
            return Err(cannot(&format!("{field}: id-mapped mounts")));
        }
        if m.recursive_read_only {
            return Err(cannot(&format!(
                "{field}: recursive read-only mounts (Docker Engine 20.10)"
            )));
        }
        if m.host_path.is_empty() || !m.container_path.starts_with('/') {
            return Err(invalid(
                &field,
                "host_path and an absolute container_path are required",
            ));
        }
        let mut options = vec![if m.readonly { "ro" } else { "rw" }];
        options.push(
            match MountPropagation::try_from(m.propagation)
                .unwrap_or(MountPropagation::PropagationPrivate)
            {
                MountPropagation::PropagationPrivate => "rprivate",
                MountPropagation::PropagationHostToContainer => "rslave",
                MountPropagation::PropagationBidirectional => "rshared",
            },
        );
        if m.selinux_relabel {
            options.push("Z");
        }
        binds.push(format!(
            "{}:{}:{}",
            m.host_path,
            m.container_path,
            options.join(",")
        ));
    }
    if let Some(extra) = hc.binds.take() {
        binds.extend(extra);
    }
    hc.binds = (!binds.is_empty()).then_some(binds);
    if !config.devices.is_empty() {
        hc.devices
            .get_or_insert_with(Vec::new)
            .extend(config.devices.iter().map(|d| DeviceMapping {
                path_on_host: Some(d.host_path.clone()),
                path_in_container: Some(d.container_path.clone()),
                cgroup_permissions: Some(if d.permissions.is_empty() {
                    "rwm".into()
                } else {
                    d.permissions.clone()
                }),
            }));
    }
    Ok((hc, user))
}

/// The capabilities Docker knows that this host's bounding set lacks (e.g. `SYS_RESOURCE`
/// in a container without it), by kernel name without `CAP_`.
fn missing_capabilities(host: &cri_oci::spec::Host) -> Vec<String> {
    let mut missing: Vec<String> = cri_oci::spec::all_capabilities()
        .difference(&host.capabilities)
        .filter_map(|c| serde_json::to_value(c).ok())
        .filter_map(|v| v.as_str().map(|s| s.trim_start_matches("CAP_").to_string()))
        .collect();
    missing.sort();
    missing
}

/// A privileged container on a host whose bounding set is incomplete. Docker's
/// `privileged` asks for every capability, which runc cannot grant there; instead the
/// container gets what `privileged` means, piece by piece: every capability of the bounding
/// set, no seccomp or AppArmor confinement, no masked or read-only paths, every host device
/// with full device-cgroup access, and the host's `/sys` (with `/sys/fs/cgroup`) bound
/// read-write in place of Docker's read-only sysfs and cgroup mounts.
fn emulate_privileged(hc: &mut HostConfig, missing: &[String]) {
    hc.privileged = Some(false);
    hc.cap_add = Some(vec!["ALL".into()]);
    hc.cap_drop = Some(missing.to_vec());
    let mut opts = hc.security_opt.take().unwrap_or_default();
    opts.retain(|o| !o.starts_with("seccomp=") && !o.starts_with("apparmor="));
    opts.push("seccomp=unconfined".into());
    opts.push("apparmor=unconfined".into());
    hc.security_opt = Some(opts);
    hc.masked_paths = Some(Vec::new());
    hc.readonly_paths = Some(Vec::new());
    hc.device_cgroup_rules = Some(vec!["c *:* rwm".into(), "b *:* rwm".into()]);
    hc.devices = Some(host_devices());
    hc.binds = Some(vec![
        "/sys:/sys:rw,rprivate".into(),
        "/sys/fs/cgroup:/sys/fs/cgroup:rw,rprivate".into(),
    ]);
}

/// The device nodes directly under the host's `/dev`, except those Docker always creates.
fn host_devices() -> Vec<DeviceMapping> {
    use std::os::unix::fs::FileTypeExt;
    const DEFAULT: [&str; 8] = [
        "null", "zero", "full", "random", "urandom", "tty", "console", "ptmx",
    ];
    let Ok(entries) = std::fs::read_dir("/dev") else {
        return Vec::new();
    };
    let mut devices: Vec<DeviceMapping> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_type()
                .is_ok_and(|t| t.is_char_device() || t.is_block_device())
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| !DEFAULT.contains(&name.as_str()))
        .map(|name| DeviceMapping {
            path_on_host: Some(format!("/dev/{name}")),
            path_in_container: Some(format!("/dev/{name}")),
            cgroup_permissions: Some("rwm".into()),
        })
        .collect();
    devices.sort_by(|a, b| a.path_on_host.cmp(&b.path_on_host));
    devices
}

/// The resources in force: Docker's host config (which `docker update` changes), with what
/// it does not hold (hugepage limits, unified) from the CRI config.
fn applied_resources(
    inspect: &ContainerInspectResponse,
    config: &ContainerConfig,
) -> LinuxContainerResources {
    let asked = config
        .linux
        .as_ref()
        .and_then(|l| l.resources.clone())
        .unwrap_or_default();
    let Some(hc) = inspect.host_config.as_ref() else {
        return asked;
    };
    LinuxContainerResources {
        cpu_period: hc.cpu_period.unwrap_or(0),
        cpu_quota: hc.cpu_quota.unwrap_or(0),
        cpu_shares: hc.cpu_shares.unwrap_or(0),
        memory_limit_in_bytes: hc.memory.unwrap_or(0),
        memory_swap_limit_in_bytes: hc.memory_swap.unwrap_or(0).max(0),
        oom_score_adj: hc.oom_score_adj.unwrap_or(0),
        cpuset_cpus: hc.cpuset_cpus.clone().unwrap_or_default(),
        cpuset_mems: hc.cpuset_mems.clone().unwrap_or_default(),
        ..asked
    }
}

/// The container's CRI state from Docker's.
pub(crate) fn state_of(inspect: &ContainerInspectResponse) -> ContainerState {
    let status = inspect
        .state
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .map(|s| s.to_string())
        .unwrap_or_default();
    docker_state(&status)
}

fn docker_state(status: &str) -> ContainerState {
    match status {
        "created" => ContainerState::ContainerCreated,
        "running" | "paused" | "restarting" => ContainerState::ContainerRunning,
        "exited" | "dead" | "removing" => ContainerState::ContainerExited,
        _ => ContainerState::ContainerUnknown,
    }
}

fn labels_of(inspect: &ContainerInspectResponse) -> HashMap<String, String> {
    inspect
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
}

impl Runtime {
    /// CreateContainer.
    pub(crate) async fn create_container(
        &self,
        pod_id: &str,
        config: ContainerConfig,
    ) -> Result<String> {
        let metadata = config.metadata.clone().unwrap_or_default();
        if metadata.name.is_empty() {
            return Err(invalid("metadata.name", "required"));
        }
        let (pod, pause_pid) = self.pause_pid(pod_id).await?;
        if pause_pid.is_none() {
            return Err(Error::failed_precondition(format!(
                "pod sandbox {pod_id} is not ready"
            )));
        }
        let image = config.image.clone().unwrap_or_default().image;
        if image.is_empty() {
            return Err(invalid("image.image", "required"));
        }
        let image_id = match self.docker.inspect_image(&image).await {
            Ok(found) => found.id.unwrap_or_default(),
            Err(e) if error::is_not_found(&e) => {
                return Err(Error::not_found(format!(
                    "image {image:?} is not present: pull it first"
                )));
            }
            Err(e) => return Err(error::docker(&format!("inspecting image {image}"), e)),
        };
        let (host_config, user) = container_host_config(&self.host, pod_id, &pod, &config)?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        crate::propagation::check(&config.mounts, &mountinfo)?;
        let log_path = if pod.log_directory.is_empty() || config.log_path.is_empty() {
            String::new()
        } else {
            Path::new(&pod.log_directory)
                .join(&config.log_path)
                .display()
                .to_string()
        };
        let created = labels::now_nanos();
        let body = ContainerCreateBody {
            image: Some(image_id.clone()),
            entrypoint: (!config.command.is_empty()).then(|| config.command.clone()),
            cmd: (!config.args.is_empty()).then(|| config.args.clone()),
            env: Some(
                config
                    .envs
                    .iter()
                    .map(|e| format!("{}={}", e.key, String::from_utf8_lossy(&e.value)))
                    .collect(),
            ),
            working_dir: (!config.working_dir.is_empty()).then(|| config.working_dir.clone()),
            tty: Some(config.tty),
            open_stdin: Some(config.stdin),
            stdin_once: Some(config.stdin_once),
            attach_stdin: Some(config.stdin),
            user,
            stop_signal: (config.stop_signal != 0)
                .then(|| cri_api::v1::Signal::try_from(config.stop_signal).ok())
                .flatten()
                .map(|s| s.as_str_name().to_string()),
            labels: Some(HashMap::from([
                (labels::KIND.to_string(), labels::CONTAINER.to_string()),
                (labels::CONFIG.to_string(), labels::encode(&config)),
                (labels::CREATED.to_string(), created.to_string()),
                (labels::POD_ID.to_string(), pod_id.to_string()),
                (labels::LOG_PATH.to_string(), log_path),
                (labels::IMAGE_REF.to_string(), image_id),
            ])),
            host_config: Some(host_config),
            ..Default::default()
        };
        let id = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(container_name(&pod, &config)),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| error::docker("creating the container", e))?
            .id;
        tracing::info!(id, pod_id, name = %metadata.name, "container created");
        Ok(id)
    }

    /// StartContainer: starts it, then copies its output into the CRI log.
    pub(crate) async fn start_container(&self, id: &str) -> Result<()> {
        let inspect = self.inspect_kind(id, labels::CONTAINER).await?;
        if state_of(&inspect) != ContainerState::ContainerCreated {
            return Err(Error::failed_precondition(format!(
                "container {id} is not in the created state"
            )));
        }
        let labels = labels_of(&inspect);
        let log_path = labels::text(&labels, labels::LOG_PATH);
        if !log_path.is_empty()
            && let Some(dir) = Path::new(&log_path).parent()
            && !dir.exists()
        {
            return Err(Error::failed_precondition(format!(
                "the log directory {} does not exist",
                dir.display()
            )));
        }
        self.docker
            .start_container(id, None::<StartContainerOptions>)
            .await
            .map_err(|e| error::docker(&format!("starting container {id}"), e))?;
        self.start_log_pump(id, &log_path, 0);
        Ok(())
    }

    /// StopContainer: the stop signal, SIGKILL after `timeout`. A container that is gone or
    /// not running is stopped.
    pub(crate) async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        match self.inspect_kind(id, labels::CONTAINER).await {
            Ok(_) => {}
            Err(Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
        let seconds = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        self.stop_docker(id, seconds).await?;
        self.finish_log_pump(id, Duration::from_secs(2)).await;
        Ok(())
    }

    /// RemoveContainer: forcibly (a running container is killed). Removing a container that
    /// is gone succeeds.
    pub(crate) async fn remove_container(&self, id: &str) -> Result<()> {
        match self.inspect_kind(id, labels::CONTAINER).await {
            Ok(_) => {}
            Err(Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
        match self
            .docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => {}
            Err(e) if error::is_not_found(&e) => {}
            Err(e) => return Err(error::docker(&format!("removing container {id}"), e)),
        }
        self.finish_log_pump(id, Duration::from_millis(500)).await;
        self.forget_oom(id);
        Ok(())
    }

    /// ContainerStatus from `docker inspect` and the labels.
    pub(crate) async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let inspect = self.inspect_kind(id, labels::CONTAINER).await?;
        let state = state_of(&inspect);
        if state == ContainerState::ContainerExited {
            // The log is complete once the status says exited.
            self.finish_log_pump(id, Duration::from_secs(2)).await;
        }
        let labels = labels_of(&inspect);
        let config: ContainerConfig = labels::decode(&labels);
        let docker_state = inspect.state.clone().unwrap_or_default();
        let exit_code = i32::try_from(docker_state.exit_code.unwrap_or(0)).unwrap_or(-1);
        let (reason, message) = match state {
            ContainerState::ContainerExited => {
                // A kill by SIGKILL may be an OOM kill whose event Docker got late.
                let oom = docker_state.oom_killed.unwrap_or(false)
                    || (exit_code == 137 && {
                        // Wait for a late event only right after the exit.
                        let finished =
                            labels::parse_time(docker_state.finished_at.as_deref().unwrap_or(""));
                        let recent = labels::now_nanos() - finished < 2_000_000_000;
                        let wait = Duration::from_millis(if recent { 1000 } else { 0 });
                        self.oom_recorded(id, wait).await
                    });
                let reason = if oom {
                    "OOMKilled"
                } else if exit_code == 0 {
                    "Completed"
                } else {
                    "Error"
                };
                (
                    reason.to_string(),
                    docker_state.error.clone().unwrap_or_default(),
                )
            }
            ContainerState::ContainerCreated => (
                String::new(),
                docker_state.error.clone().unwrap_or_default(),
            ),
            _ => (String::new(), String::new()),
        };
        let image_ref = labels::text(&labels, labels::IMAGE_REF);
        let started_at = if state == ContainerState::ContainerCreated {
            0
        } else {
            labels::parse_time(docker_state.started_at.as_deref().unwrap_or(""))
        };
        let finished_at = if state == ContainerState::ContainerExited {
            labels::parse_time(docker_state.finished_at.as_deref().unwrap_or(""))
        } else {
            0
        };
        Ok(ContainerStatus {
            id: inspect.id.clone().unwrap_or_default(),
            metadata: config.metadata.clone(),
            state: state as i32,
            created_at: labels::int(&labels, labels::CREATED),
            started_at,
            finished_at,
            exit_code: if state == ContainerState::ContainerExited {
                exit_code
            } else {
                0
            },
            image: Some(ImageSpec {
                image: config.image.clone().unwrap_or_default().image,
                ..Default::default()
            }),
            image_ref: image_ref.clone(),
            image_id: image_ref,
            reason,
            message,
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            mounts: config.mounts.clone(),
            log_path: labels::text(&labels, labels::LOG_PATH),
            resources: Some(ContainerResources {
                linux: Some(applied_resources(&inspect, &config)),
                windows: None,
            }),
            user: None,
            stop_signal: config.stop_signal,
        })
    }

    /// ListContainers.
    pub(crate) async fn list_containers(
        &self,
        filter: Option<&ContainerFilter>,
    ) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        for summary in self.list_kind(labels::CONTAINER).await? {
            let labels = summary.labels.clone().unwrap_or_default();
            let config: ContainerConfig = labels::decode(&labels);
            let state = docker_state(
                &summary
                    .state
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
            );
            let id = summary.id.clone().unwrap_or_default();
            let pod_id = labels::text(&labels, labels::POD_ID);
            if let Some(f) = filter
                && ((!f.id.is_empty() && !id.starts_with(&f.id))
                    || (!f.pod_sandbox_id.is_empty() && !pod_id.starts_with(&f.pod_sandbox_id))
                    || f.state.as_ref().is_some_and(|s| s.state != state as i32)
                    || !labels_match(&config.labels, &f.label_selector))
            {
                continue;
            }
            let image_ref = labels::text(&labels, labels::IMAGE_REF);
            out.push(Container {
                id,
                pod_sandbox_id: pod_id,
                metadata: config.metadata,
                image: Some(ImageSpec {
                    image: config.image.unwrap_or_default().image,
                    ..Default::default()
                }),
                image_ref: image_ref.clone(),
                image_id: image_ref,
                state: state as i32,
                created_at: labels::int(&labels, labels::CREATED),
                labels: config.labels,
                annotations: config.annotations,
            });
        }
        Ok(out)
    }

    /// UpdateContainerResources through `docker update`.
    pub(crate) async fn update_resources(
        &self,
        id: &str,
        resources: Option<LinuxContainerResources>,
    ) -> Result<()> {
        self.inspect_kind(id, labels::CONTAINER).await?;
        let Some(r) = resources else { return Ok(()) };
        let mut hc = HostConfig::default();
        apply_resources(&self.host, &r, &mut hc)?;
        if hc.oom_score_adj.is_some() {
            return Err(cannot(
                "a new oom_score_adj for a created container (docker update has none)",
            ));
        }
        let update = bollard::models::ContainerUpdateBody {
            cpu_shares: hc.cpu_shares,
            cpu_quota: hc.cpu_quota,
            cpu_period: hc.cpu_period,
            memory: hc.memory,
            memory_swap: hc.memory_swap,
            cpuset_cpus: hc.cpuset_cpus,
            cpuset_mems: hc.cpuset_mems,
            ..Default::default()
        };
        self.docker
            .update_container(id, update)
            .await
            .map_err(|e| error::docker(&format!("updating container {id}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_api::v1::{
        Capability, HugepageLimit, Int64Value, LinuxContainerConfig, LinuxContainerSecurityContext,
        Mount,
    };

    fn host() -> cri_oci::spec::Host {
        cri_oci::spec::Host::default()
    }

    #[test]
    fn resources_map_to_the_host_config() {
        let mut hc = HostConfig::default();
        let r = LinuxContainerResources {
            cpu_shares: 512,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit_in_bytes: 64 << 20,
            cpuset_cpus: "0".into(),
            hugepage_limits: vec![HugepageLimit {
                page_size: "2MB".into(),
                limit: 0,
            }],
            ..Default::default()
        };
        let mut host = host();
        host.hugetlb_supported = false;
        apply_resources(&host, &r, &mut hc).unwrap();
        assert_eq!(hc.cpu_shares, Some(512));
        assert_eq!(hc.cpu_quota, Some(50_000));
        assert_eq!(hc.memory, Some(64 << 20));
        assert_eq!(hc.cpuset_cpus.as_deref(), Some("0"));
        let r = LinuxContainerResources {
            hugepage_limits: vec![HugepageLimit {
                page_size: "2MB".into(),
                limit: 2 << 20,
            }],
            ..Default::default()
        };
        assert!(apply_resources(&host, &r, &mut hc).is_err());
        let r = LinuxContainerResources {
            unified: HashMap::from([("memory.high".into(), "1M".into())]),
            ..Default::default()
        };
        assert!(matches!(
            apply_resources(&host, &r, &mut hc),
            Err(Error::Unimplemented(_))
        ));
    }

    #[test]
    fn security_context_maps_to_the_host_config() {
        let config = ContainerConfig {
            mounts: vec![Mount {
                host_path: "/tmp/a".into(),
                container_path: "/a".into(),
                readonly: true,
                propagation: MountPropagation::PropagationHostToContainer as i32,
                ..Default::default()
            }],
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    capabilities: Some(Capability {
                        add_capabilities: vec!["CAP_NET_ADMIN".into()],
                        drop_capabilities: vec!["ALL".into()],
                        ..Default::default()
                    }),
                    run_as_user: Some(Int64Value { value: 1000 }),
                    run_as_group: Some(Int64Value { value: 2000 }),
                    no_new_privs: true,
                    readonly_rootfs: true,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (hc, user) =
            container_host_config(&host(), "p1", &PodSandboxConfig::default(), &config).unwrap();
        assert_eq!(user.as_deref(), Some("1000:2000"));
        assert_eq!(hc.network_mode.as_deref(), Some("container:p1"));
        assert_eq!(hc.ipc_mode.as_deref(), Some("container:p1"));
        assert_eq!(hc.pid_mode.as_deref(), Some("container:p1"));
        assert_eq!(hc.cap_add, Some(vec!["NET_ADMIN".to_string()]));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(hc.security_opt, Some(vec!["no-new-privileges".to_string()]));
        assert_eq!(hc.binds, Some(vec!["/tmp/a:/a:ro,rslave".to_string()]));
    }

    #[test]
    fn privileged_needs_a_privileged_pod() {
        let config = ContainerConfig {
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    privileged: true,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let refused = container_host_config(&host(), "p", &PodSandboxConfig::default(), &config);
        assert!(matches!(refused, Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn docker_states_map_to_cri_states() {
        assert_eq!(docker_state("created"), ContainerState::ContainerCreated);
        assert_eq!(docker_state("running"), ContainerState::ContainerRunning);
        assert_eq!(docker_state("exited"), ContainerState::ContainerExited);
        assert_eq!(docker_state("what"), ContainerState::ContainerUnknown);
    }
}
