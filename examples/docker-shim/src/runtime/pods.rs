//! Pod sandboxes: one pause container each, holding the pod's namespaces. Its network mode
//! is `host` for a pod on the node's network, otherwise `none` (a namespace with only `lo`);
//! its IPC namespace is `shareable` (or the host's), so containers can join both with
//! `container:<pause id>`.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HostConfig, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, StartContainerOptions, StopContainerOptions,
};
use cri_api::v1::{
    LinuxPodSandboxStatus, Namespace, NamespaceMode, NamespaceOption, PodSandbox, PodSandboxConfig,
    PodSandboxFilter, PodSandboxNetworkStatus, PodSandboxState, PodSandboxStatus,
};
use cri_server::{Error, Result};

use super::Runtime;
use crate::error;
use crate::labels;

/// Whether the pod uses the node's network namespace.
pub(crate) fn host_network(config: &PodSandboxConfig) -> bool {
    pod_namespace_mode(config, |n| n.network) == NamespaceMode::Node as i32
}

/// One of the pod's namespace modes (`POD` when unset).
pub(crate) fn pod_namespace_mode(
    config: &PodSandboxConfig,
    mode: impl Fn(&NamespaceOption) -> i32,
) -> i32 {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .map_or(NamespaceMode::Pod as i32, mode)
}

/// Whether every `selector` entry is among `labels`.
pub(crate) fn labels_match(
    labels: &HashMap<String, String>,
    selector: &HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The Docker name of a pod's pause container (as the dockershim named them).
fn sandbox_name(config: &PodSandboxConfig) -> String {
    let m = config.metadata.clone().unwrap_or_default();
    labels::docker_name(&[
        "k8s",
        "POD",
        &m.name,
        &m.namespace,
        &m.uid,
        &m.attempt.to_string(),
    ])
}

/// The pause container's host config for `config`.
pub(crate) fn sandbox_host_config(config: &PodSandboxConfig) -> Result<HostConfig> {
    let linux = config.linux.clone().unwrap_or_default();
    let security = linux.security_context.clone().unwrap_or_default();
    let ns = security.namespace_options.clone().unwrap_or_default();
    if ns.network == NamespaceMode::Container as i32 || ns.network == NamespaceMode::Target as i32 {
        return Err(Error::invalid_argument(
            "linux.security_context.namespace_options.network must be POD or NODE",
        ));
    }
    if ns
        .userns_options
        .as_ref()
        .is_some_and(|u| u.mode != NamespaceMode::Node as i32)
    {
        return Err(Error::unimplemented(
            "RunPodSandbox with a user namespace (Docker Engine sets user namespaces daemon-wide, not per pod)",
        ));
    }
    let host_network = ns.network == NamespaceMode::Node as i32;
    let dns = config.dns_config.clone().unwrap_or_default();
    let some = |v: Vec<String>| (!v.is_empty()).then_some(v);
    let mut security_opt = Vec::new();
    if security.seccomp.as_ref().is_some_and(|s| {
        s.profile_type == cri_api::v1::security_profile::ProfileType::Unconfined as i32
    }) {
        security_opt.push("seccomp=unconfined".to_string());
    }
    Ok(HostConfig {
        network_mode: Some(if host_network { "host" } else { "none" }.into()),
        ipc_mode: Some(
            if ns.ipc == NamespaceMode::Node as i32 {
                "host"
            } else {
                "shareable"
            }
            .into(),
        ),
        pid_mode: (ns.pid == NamespaceMode::Node as i32).then(|| "host".to_string()),
        dns: some(dns.servers),
        dns_search: some(dns.searches),
        dns_options: some(dns.options),
        sysctls: (!linux.sysctls.is_empty()).then(|| linux.sysctls.clone()),
        cgroup_parent: (!linux.cgroup_parent.is_empty()).then(|| linux.cgroup_parent.clone()),
        readonly_rootfs: Some(security.readonly_rootfs),
        security_opt: some(security_opt),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        ..Default::default()
    })
}

/// The pod's addresses: none without a CNI attachment or once it was torn down.
fn network_status(attachment: Option<crate::cni::Attachment>) -> PodSandboxNetworkStatus {
    match attachment {
        Some(a) if !a.torn_down => PodSandboxNetworkStatus {
            ip: a.ips.first().cloned().unwrap_or_default(),
            additional_ips: a
                .ips
                .iter()
                .skip(1)
                .map(|ip| cri_api::v1::PodIp { ip: ip.clone() })
                .collect(),
        },
        _ => PodSandboxNetworkStatus::default(),
    }
}

/// The pod's CRI state from its pause container.
fn pod_state(inspect: &ContainerInspectResponse) -> PodSandboxState {
    if inspect
        .state
        .as_ref()
        .and_then(|s| s.running)
        .unwrap_or(false)
    {
        PodSandboxState::SandboxReady
    } else {
        PodSandboxState::SandboxNotready
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
    /// Makes sure `image` is present, pulling it when it is not.
    pub(crate) async fn ensure_image(&self, image: &str) -> Result<String> {
        if let Ok(found) = self.docker.inspect_image(image).await {
            return Ok(found.id.unwrap_or_default());
        }
        self.pull(image, None).await
    }

    /// RunPodSandbox: creates and starts the pause container.
    pub(crate) async fn run_pod(
        &self,
        config: PodSandboxConfig,
        handler: String,
    ) -> Result<String> {
        let metadata = config.metadata.clone().unwrap_or_default();
        if metadata.name.is_empty() || metadata.namespace.is_empty() || metadata.uid.is_empty() {
            return Err(Error::invalid_argument(
                "metadata.name, metadata.namespace and metadata.uid are required",
            ));
        }
        let network = if !host_network(&config) && self.config.cni.conf_dir().is_some() {
            Some(self.config.cni.load().map_err(|e| {
                Error::failed_precondition(format!("the pod network is not ready: {e}"))
            })?)
        } else {
            None
        };
        let mut host_config = sandbox_host_config(&config)?;
        if !handler.is_empty() {
            host_config.runtime = Some(handler.clone());
        }
        let image = self.ensure_image(&self.config.pause_image).await?;
        let created = labels::now_nanos();
        let body = ContainerCreateBody {
            image: Some(self.config.pause_image.clone()),
            hostname: (!host_network(&config) && !config.hostname.is_empty())
                .then(|| config.hostname.clone()),
            labels: Some(HashMap::from([
                (labels::KIND.to_string(), labels::SANDBOX.to_string()),
                (labels::CONFIG.to_string(), labels::encode(&config)),
                (labels::CREATED.to_string(), created.to_string()),
                (labels::RUNTIME_HANDLER.to_string(), handler),
                (labels::IMAGE_REF.to_string(), image),
            ])),
            host_config: Some(host_config),
            ..Default::default()
        };
        let id = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(sandbox_name(&config)),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| error::docker("creating the pause container", e))?
            .id;
        if let Err(e) = self
            .docker
            .start_container(&id, None::<StartContainerOptions>)
            .await
        {
            self.force_remove(&id).await;
            return Err(error::docker("starting the pause container", e));
        }
        if let Some(network) = network
            && let Err(e) = self.attach_network(&id, network, &config).await
        {
            self.force_remove(&id).await;
            return Err(e);
        }
        tracing::info!(id, name = %metadata.name, namespace = %metadata.namespace, "pod started");
        Ok(id)
    }

    /// CNI ADD into the running pause container's namespace; the attachment is persisted.
    async fn attach_network(
        &self,
        id: &str,
        network: crate::cni::Network,
        config: &PodSandboxConfig,
    ) -> Result<()> {
        let (_, pid) = self.pause_pid(id).await?;
        let pid = pid.ok_or_else(|| Error::internal("the pause container exited at once"))?;
        let cni = self.config.cni.clone();
        let (pod_id, pod_config) = (id.to_string(), config.clone());
        let attachment = tokio::task::spawn_blocking(move || {
            cni.add(
                &network,
                &pod_id,
                &format!("/proc/{pid}/ns/net"),
                &pod_config,
            )
        })
        .await
        .map_err(|e| Error::internal(format!("the CNI task failed: {e}")))?
        .map_err(|e| Error::internal(format!("pod network (CNI): {e}")))?;
        if let Err(e) = crate::cni::write_state(&self.config.root, id, &attachment) {
            let _ = self.detach_network_with(id, &attachment, Some(pid), config);
            return Err(Error::internal(format!("recording the pod's network: {e}")));
        }
        tracing::info!(id, ips = ?attachment.ips, network = %attachment.network.name, "pod network attached");
        Ok(())
    }

    fn detach_network_with(
        &self,
        id: &str,
        attachment: &crate::cni::Attachment,
        pid: Option<i64>,
        config: &PodSandboxConfig,
    ) -> std::result::Result<(), String> {
        let netns = pid.map(|p| format!("/proc/{p}/ns/net")).unwrap_or_default();
        self.config.cni.del(attachment, id, &netns, config)
    }

    /// CNI DEL of the pod's attachment, if it has one not yet torn down. A failure while the
    /// namespace exists is an error (the kubelet retries); without it, it is only logged.
    async fn detach_network(&self, id: &str) -> Result<()> {
        let Some(mut attachment) = crate::cni::read_state(&self.config.root, id) else {
            return Ok(());
        };
        if attachment.torn_down {
            return Ok(());
        }
        let (config, pid) = self.pause_pid(id).await.unwrap_or_default();
        let cni = self.config.cni.clone();
        let (pod_id, state) = (id.to_string(), attachment.clone());
        let deleted = tokio::task::spawn_blocking(move || {
            let netns = pid.map(|p| format!("/proc/{p}/ns/net")).unwrap_or_default();
            cni.del(&state, &pod_id, &netns, &config)
        })
        .await
        .map_err(|e| Error::internal(format!("the CNI task failed: {e}")))?;
        match deleted {
            Ok(()) => {}
            Err(e) if pid.is_some() => {
                return Err(Error::internal(format!("pod network (CNI) DEL: {e}")));
            }
            Err(e) => tracing::warn!(id, error = %e, "CNI DEL without the pod's namespace"),
        }
        attachment.torn_down = true;
        crate::cni::write_state(&self.config.root, id, &attachment)
            .map_err(|e| Error::internal(format!("recording the pod's network: {e}")))
    }

    async fn force_remove(&self, id: &str) {
        if let Err(e) = self
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
            && !error::is_not_found(&e)
        {
            tracing::warn!(id, error = %e, "removing a container");
        }
    }

    /// The ids of the containers of pod `pod_id`.
    pub(crate) async fn container_ids_of(&self, pod_id: &str) -> Result<Vec<String>> {
        Ok(self
            .list_kind(labels::CONTAINER)
            .await?
            .into_iter()
            .filter(|c| {
                c.labels
                    .as_ref()
                    .and_then(|l| l.get(labels::POD_ID))
                    .is_some_and(|p| p == pod_id)
            })
            .filter_map(|c| c.id)
            .collect())
    }

    /// StopPodSandbox: kills the pod's containers, then the pause container. A pod that is
    /// gone is stopped.
    pub(crate) async fn stop_pod(&self, id: &str) -> Result<()> {
        match self.inspect_kind(id, labels::SANDBOX).await {
            Ok(_) => {}
            Err(Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
        let containers = self.container_ids_of(id).await?;
        let stops = containers
            .iter()
            .map(|c| self.stop_container(c, std::time::Duration::ZERO));
        for result in futures_util::future::join_all(stops).await {
            match result {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.detach_network(id).await?;
        self.stop_docker(id, 0).await
    }

    /// `docker stop` with a grace period of `seconds`; not running or gone is fine.
    pub(crate) async fn stop_docker(&self, id: &str, seconds: i32) -> Result<()> {
        match self
            .docker
            .stop_container(
                id,
                Some(StopContainerOptions {
                    t: Some(seconds),
                    signal: None,
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if error::is_not_modified(&e) || error::is_not_found(&e) => Ok(()),
            Err(e) => Err(error::docker(&format!("stopping {id}"), e)),
        }
    }

    /// RemovePodSandbox: removes the pod's containers and the pause container. Removing a
    /// pod that is gone succeeds.
    pub(crate) async fn remove_pod(&self, id: &str) -> Result<()> {
        match self.inspect_kind(id, labels::SANDBOX).await {
            Ok(_) => {}
            Err(Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
        for container in self.container_ids_of(id).await? {
            self.remove_container(&container).await?;
        }
        self.detach_network(id).await?;
        self.force_remove(id).await;
        let _ = std::fs::remove_file(crate::cni::state_file(&self.config.root, id));
        tracing::info!(id, "pod removed");
        Ok(())
    }

    /// PodSandboxStatus from the pause container.
    pub(crate) async fn pod_status(&self, id: &str) -> Result<PodSandboxStatus> {
        let inspect = self.inspect_kind(id, labels::SANDBOX).await?;
        let labels = labels_of(&inspect);
        let config: PodSandboxConfig = labels::decode(&labels);
        let namespaces = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone());
        Ok(PodSandboxStatus {
            id: inspect.id.clone().unwrap_or_default(),
            metadata: config.metadata.clone(),
            state: pod_state(&inspect) as i32,
            created_at: labels::int(&labels, labels::CREATED),
            network: Some(network_status(crate::cni::read_state(
                &self.config.root,
                id,
            ))),
            linux: Some(LinuxPodSandboxStatus {
                namespaces: Some(Namespace {
                    options: namespaces,
                }),
            }),
            labels: config.labels,
            annotations: config.annotations,
            runtime_handler: labels::text(&labels, labels::RUNTIME_HANDLER),
        })
    }

    /// The pause container's pid while the pod is ready.
    pub(crate) async fn pause_pid(&self, id: &str) -> Result<(PodSandboxConfig, Option<i64>)> {
        let inspect = self.inspect_kind(id, labels::SANDBOX).await?;
        let config: PodSandboxConfig = labels::decode(&labels_of(&inspect));
        let pid = inspect
            .state
            .as_ref()
            .filter(|s| s.running.unwrap_or(false))
            .and_then(|s| s.pid)
            .filter(|pid| *pid > 0);
        Ok((config, pid))
    }

    /// ListPodSandbox.
    pub(crate) async fn list_pods(
        &self,
        filter: Option<&PodSandboxFilter>,
    ) -> Result<Vec<PodSandbox>> {
        let mut pods = Vec::new();
        for summary in self.list_kind(labels::SANDBOX).await? {
            let labels = summary.labels.clone().unwrap_or_default();
            let config: PodSandboxConfig = labels::decode(&labels);
            let running = summary
                .state
                .as_ref()
                .is_some_and(|s| s.to_string() == "running");
            let state = if running {
                PodSandboxState::SandboxReady
            } else {
                PodSandboxState::SandboxNotready
            };
            let id = summary.id.clone().unwrap_or_default();
            if let Some(f) = filter {
                if !f.id.is_empty() && !id.starts_with(&f.id) {
                    continue;
                }
                if f.state.as_ref().is_some_and(|s| s.state != state as i32) {
                    continue;
                }
                if !labels_match(&config.labels, &f.label_selector) {
                    continue;
                }
            }
            pods.push(PodSandbox {
                id,
                metadata: config.metadata,
                state: state as i32,
                created_at: labels::int(&labels, labels::CREATED),
                labels: config.labels,
                annotations: config.annotations,
                runtime_handler: labels::text(&labels, labels::RUNTIME_HANDLER),
            });
        }
        Ok(pods)
    }
}
