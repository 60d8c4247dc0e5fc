//! Pod sandboxes: a directory with the pod's files, and a pause container whose namespaces
//! the pod's containers join. With CNI configured, a pod with its own network namespace is
//! attached to the network (ADD) once its pause container runs, and detached (DEL) when it
//! stops.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cri_api::v1::{
    LinuxPodSandboxStatus, Namespace, NamespaceMode, PodIp, PodSandbox, PodSandboxConfig,
    PodSandboxFilter, PodSandboxNetworkStatus, PodSandboxState, PodSandboxStatus,
};
use cri_oci::image::RootfsMode;
use cri_oci::spec::{SandboxFiles, SandboxRequest, cgroups_path, sandbox_spec};
use cri_server::{Error, Result};
use tokio::sync::watch;

use super::{Runtime, exited_within, lock, new_id};
use crate::cni::{self, Attachment, NetworkList};
use crate::error;
use crate::monitor::protocol::{ExitRecord, MonitorConfig, now_nanos};
use crate::netns;
use crate::state::{self, PodIntent, PodNetwork, PodRecord};

/// One pod sandbox.
pub(crate) struct Pod {
    /// `<root>/pods/<id>`: the pause container's bundle and the pod's files.
    pub(crate) dir: PathBuf,
    record: Mutex<PodRecord>,
    /// The pause container's exit, once seen.
    exit: watch::Sender<Option<ExitRecord>>,
    /// Stop and remove take it for writing (one at a time); container creation takes it for
    /// reading, so a container is never created into a pod being stopped.
    pub(crate) op: tokio::sync::RwLock<()>,
}

/// The key that makes a pod's name unique (CRI: name, namespace, uid, attempt).
pub(crate) fn name_key(config: &PodSandboxConfig) -> String {
    let m = config.metadata.clone().unwrap_or_default();
    format!("pod/{}/{}/{}/{}", m.namespace, m.name, m.uid, m.attempt)
}

/// Whether the pod uses the node's network namespace.
pub(crate) fn host_network(config: &PodSandboxConfig) -> bool {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .is_some_and(|n| n.network == NamespaceMode::Node as i32)
}

impl Pod {
    pub(crate) fn new(dir: PathBuf, record: PodRecord, exit: Option<ExitRecord>) -> Self {
        Self {
            dir,
            record: Mutex::new(record),
            exit: watch::Sender::new(exit),
            op: tokio::sync::RwLock::new(()),
        }
    }

    pub(crate) fn id(&self) -> String {
        lock(&self.record).id.clone()
    }

    pub(crate) fn record(&self) -> PodRecord {
        lock(&self.record).clone()
    }

    pub(crate) fn pause_pid(&self) -> u32 {
        lock(&self.record).pause_pid
    }

    pub(crate) fn config(&self) -> PodSandboxConfig {
        lock(&self.record).config.clone()
    }

    pub(crate) fn set_exit(&self, exit: ExitRecord) {
        self.exit.send_replace(Some(exit));
    }

    /// Whether the pause container has exited.
    pub(crate) fn exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// READY: not stopped, pause running.
    pub(crate) fn ready(&self) -> bool {
        lock(&self.record).ready && !self.exited()
    }

    fn state(&self) -> PodSandboxState {
        if self.ready() {
            PodSandboxState::SandboxReady
        } else {
            PodSandboxState::SandboxNotready
        }
    }

    pub(crate) fn status(&self) -> PodSandboxStatus {
        let record = self.record();
        let namespaces = record
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone());
        PodSandboxStatus {
            id: record.id.clone(),
            metadata: record.config.metadata.clone(),
            state: self.state() as i32,
            created_at: record.created_at,
            network: Some(network_status(record.network.as_ref())),
            linux: Some(LinuxPodSandboxStatus {
                namespaces: Some(Namespace {
                    options: namespaces,
                }),
            }),
            labels: record.config.labels.clone(),
            annotations: record.config.annotations.clone(),
            runtime_handler: record.runtime_handler.clone(),
        }
    }

    pub(crate) fn summary(&self) -> PodSandbox {
        let record = self.record();
        PodSandbox {
            id: record.id.clone(),
            metadata: record.config.metadata.clone(),
            state: self.state() as i32,
            created_at: record.created_at,
            labels: record.config.labels,
            annotations: record.config.annotations,
            runtime_handler: record.runtime_handler,
        }
    }

    fn matches(&self, filter: &PodSandboxFilter) -> bool {
        let record = self.record();
        (filter.id.is_empty() || record.id.starts_with(&filter.id))
            && filter
                .state
                .as_ref()
                .is_none_or(|s| s.state == self.state() as i32)
            && labels_match(&record.config.labels, &filter.label_selector)
    }

    fn set_ready(&self, ready: bool) -> std::io::Result<()> {
        let mut record = lock(&self.record);
        record.ready = ready;
        state::save(&self.dir, state::POD_FILE, &*record)
    }

    /// Records that CNI DEL succeeded.
    fn set_network_torn_down(&self) -> std::io::Result<()> {
        let mut record = lock(&self.record);
        if let Some(network) = &mut record.network {
            network.torn_down = true;
        }
        state::save(&self.dir, state::POD_FILE, &*record)
    }
}

/// The pod's addresses: none without a CNI attachment (host network, no CNI) or once it was
/// torn down; otherwise the first as `ip`, the others as `additional_ips`.
fn network_status(network: Option<&PodNetwork>) -> PodSandboxNetworkStatus {
    match network {
        Some(network) if !network.torn_down => PodSandboxNetworkStatus {
            ip: network.ips.first().cloned().unwrap_or_default(),
            additional_ips: network
                .ips
                .iter()
                .skip(1)
                .map(|ip| PodIp { ip: ip.clone() })
                .collect(),
        },
        _ => PodSandboxNetworkStatus::default(),
    }
}

/// Whether every selector pair is among `labels`.
pub(crate) fn labels_match(
    labels: &HashMap<String, String>,
    selector: &HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Writes the pod's `hostname`, `hosts` and `resolv.conf` into `dir`.
fn write_pod_files(dir: &Path, config: &PodSandboxConfig) -> std::io::Result<SandboxFiles> {
    let host_network = host_network(config);
    let hostname = if config.hostname.is_empty() || host_network {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    } else {
        config.hostname.clone()
    };
    let mut files = SandboxFiles::default();
    let path = dir.join("hostname");
    std::fs::write(&path, format!("{hostname}\n"))?;
    files.hostname = Some(path);

    let path = dir.join("hosts");
    let hosts = if host_network {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
        )
    };
    std::fs::write(&path, hosts)?;
    files.hosts = Some(path);

    let path = dir.join("resolv.conf");
    let resolv = match &config.dns_config {
        Some(dns) => {
            let mut text = String::new();
            for server in &dns.servers {
                text.push_str(&format!("nameserver {server}\n"));
            }
            if !dns.searches.is_empty() {
                text.push_str(&format!("search {}\n", dns.searches.join(" ")));
            }
            if !dns.options.is_empty() {
                text.push_str(&format!("options {}\n", dns.options.join(" ")));
            }
            text
        }
        None => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    };
    std::fs::write(&path, resolv)?;
    files.resolv_conf = Some(path);
    Ok(files)
}

/// The files of a pod that already exists (for its containers' specs).
pub(crate) fn pod_files(dir: &Path) -> SandboxFiles {
    let mut files = SandboxFiles::default();
    let existing = |name: &str| Some(dir.join(name)).filter(|p| p.exists());
    files.hostname = existing("hostname");
    files.hosts = existing("hosts");
    files.resolv_conf = existing("resolv.conf");
    files
}

/// The parent of a cgroupfs path (`/a/b/id` → `/a/b`).
fn cgroup_parent_of(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((parent, _)) if !parent.is_empty() => parent.to_string(),
        _ => String::new(),
    }
}

/// `path` and its ancestors that do not exist yet, deepest first (`/a/b/c` with only `/a`
/// existing gives `/a/b/c`, `/a/b`).
fn missing_ancestors(path: &str, exists: impl Fn(&str) -> bool) -> Vec<String> {
    let mut missing = Vec::new();
    let mut current = path.trim_end_matches('/').to_string();
    while !current.is_empty() && !exists(&current) {
        missing.push(current.clone());
        current = cgroup_parent_of(&current);
    }
    missing
}

impl Runtime {
    pub(crate) async fn run_pod(
        &self,
        config: PodSandboxConfig,
        runtime_handler: String,
    ) -> Result<String> {
        if !(runtime_handler.is_empty() || runtime_handler == "runc") {
            return Err(Error::invalid_argument(format!(
                "runtime handler {runtime_handler:?} is not configured (this runtime has \"runc\")"
            )));
        }
        let key = name_key(&config);
        if !self.reserve(key.clone()) {
            let m = config.metadata.unwrap_or_default();
            return Err(Error::already_exists(format!(
                "a pod sandbox named {:?} in namespace {:?} (uid {:?}, attempt {}) exists",
                m.name, m.namespace, m.uid, m.attempt
            )));
        }
        let id = new_id()?;
        let dir = self.pods_dir().join(&id);
        match self.create_pod(&id, &dir, config, runtime_handler).await {
            Ok(()) => Ok(id),
            Err(e) => {
                self.release(&key);
                self.discard_dir(&dir).await;
                Err(e)
            }
        }
    }

    async fn create_pod(
        &self,
        id: &str,
        dir: &Path,
        config: PodSandboxConfig,
        runtime_handler: String,
    ) -> Result<()> {
        // The network first: a pod CNI cannot attach is refused before anything runs.
        let network = if self.config.cni.conf_dir().is_some() && !host_network(&config) {
            Some(self.config.cni.load().map_err(error::cni)?)
        } else {
            None
        };
        std::fs::create_dir_all(dir).map_err(|e| error::io("creating the pod directory", e))?;
        let pause = self.ensure_image(&self.config.pause_image).await?;
        let files =
            write_pod_files(dir, &config).map_err(|e| error::io("writing the pod's files", e))?;
        let rootfs = {
            let (images, pause, target) = (self.images.clone(), pause.clone(), dir.join("rootfs"));
            super::containers::blocking(move || {
                images
                    .prepare_rootfs(&pause, &target, RootfsMode::Auto)
                    .map_err(error::oci)
            })
            .await?
        };
        let spec = sandbox_spec(
            &self.host,
            &SandboxRequest::new(id, &config, &pause.config, &rootfs.path, &files),
        )
        .map_err(error::oci)?;
        state::save(dir, "config.json", &spec)
            .map_err(|e| error::io("writing the pause container's config.json", e))?;
        let cgroup_path = cgroups_path(&self.host, &config, id);
        let cgroup_parent = cgroup_parent_of(&cgroup_path);
        let created_cgroups = missing_ancestors(&cgroup_parent, |p| self.cgroups.exists(p));
        // Before runc creates cgroups and CNI allocates addresses: what cleaning up an
        // unfinished pod (this call failing, or the runtime dying before pod.json) undoes.
        let intent = PodIntent {
            config: config.clone(),
            cgroup_path: if cgroup_path.starts_with('/') {
                cgroup_path.clone()
            } else {
                String::new() // a systemd unit: runc delete removes it
            },
            created_cgroups: created_cgroups.clone(),
            network: network.clone(),
        };
        state::save(dir, state::INTENT_FILE, &intent)
            .map_err(|e| error::io("writing the pod's intent.json", e))?;

        let monitor = MonitorConfig {
            id: id.to_string(),
            runc: self.runc.path().to_path_buf(),
            runc_root: self.runc.root().to_path_buf(),
            bundle: dir.to_path_buf(),
            log_path: None,
            tty: false,
            stdin: false,
            stdin_once: false,
        };
        let pid = self.start_monitor(dir, &monitor).await?;
        self.runc.start(id).await.map_err(error::runc)?;
        if !host_network(&config) {
            // Every pod with a network of its own keeps it pinned at `<dir>/netns` (removed
            // with the pod): CNI runs on it, and port-forward enters it without trusting a
            // pause pid that could have been reused.
            netns::pin(pid, &dir.join(netns::FILE))
                .map_err(|e| error::io("pinning the pod's network namespace", e))?;
        }
        let network = match network {
            Some(list) => Some(self.attach(id, dir, &config, list).await?),
            None => None,
        };
        let record = PodRecord {
            id: id.to_string(),
            config,
            runtime_handler,
            created_at: now_nanos(),
            ready: true,
            pause_pid: pid,
            cgroup_parent,
            created_cgroups,
            pause_image: pause.id.clone(),
            network,
        };
        if let Err(e) = state::save(dir, state::POD_FILE, &record) {
            if let Some(network) = &record.network {
                self.detach(id, &record.config, network).await;
            }
            return Err(error::io("writing pod.json", e));
        }
        // pod.json now says what to undo; a stale intent would only repeat it.
        let _ = std::fs::remove_file(dir.join(state::INTENT_FILE));
        let pod = Arc::new(Pod::new(dir.to_path_buf(), record, None));
        lock(&self.pods).insert(id.to_string(), pod.clone());
        self.watch_pod(&pod);
        Ok(())
    }

    /// Runs CNI ADD of `list` on the pod's pinned network namespace (`<dir>/netns`). On a
    /// failure, what ADD did is undone (DEL); the pin goes with the pod's directory.
    async fn attach(
        &self,
        id: &str,
        dir: &Path,
        config: &PodSandboxConfig,
        list: NetworkList,
    ) -> Result<PodNetwork> {
        let path = dir.join(netns::FILE);
        let attachment = Attachment::for_pod(id, &path, config);
        match self.config.cni.add(&list, &attachment).await {
            Ok(result) => Ok(PodNetwork {
                netns: path,
                ips: cni::result_ips(&result),
                config: list,
                result,
                torn_down: false,
            }),
            Err(e) => {
                if let Err(del) = self.config.cni.del(&list, &attachment, None).await {
                    tracing::warn!(id, error = %del, "CNI DEL after a failed ADD");
                }
                Err(error::cni(e))
            }
        }
    }

    /// Best-effort CNI DEL and unpin, for a creation that failed after ADD.
    async fn detach(&self, id: &str, config: &PodSandboxConfig, network: &PodNetwork) {
        let attachment = Attachment::for_pod(id, &network.netns, config);
        if let Err(e) = self
            .config
            .cni
            .del(&network.config, &attachment, Some(&network.result))
            .await
        {
            tracing::warn!(id, error = %e, "CNI DEL of a pod that failed to start");
        }
        if let Err(e) = netns::unpin(&network.netns) {
            tracing::warn!(id, error = %e, "unpinning the network namespace");
        }
    }

    /// CNI DEL of the pod's attachment, once (a no-op without one or when done already). The
    /// namespace stays pinned (until the pod is removed), so this works after the pause
    /// process is gone too.
    async fn tear_down_network(&self, pod: &Pod) -> Result<()> {
        let record = pod.record();
        let Some(network) = record.network.filter(|n| !n.torn_down) else {
            return Ok(());
        };
        let attachment = Attachment::for_pod(&record.id, &network.netns, &record.config);
        self.config
            .cni
            .del(&network.config, &attachment, Some(&network.result))
            .await
            .map_err(error::cni)?;
        pod.set_network_torn_down()
            .map_err(|e| error::io("writing pod.json", e))
    }

    /// The image `reference` from the store, pulled first when missing.
    pub(crate) async fn ensure_image(&self, reference: &str) -> Result<cri_oci::image::Image> {
        match self.images.get(reference) {
            Ok(image) => Ok(image),
            Err(cri_oci::Error::ImageNotFound(_)) => self.pull(reference, None).await,
            Err(e) => Err(error::oci(e)),
        }
    }

    /// Pulls `reference` into the store, with the runtime's mirrors and plain-HTTP hosts.
    pub(crate) async fn pull(
        &self,
        reference: &str,
        auth: Option<cri_api::v1::AuthConfig>,
    ) -> Result<cri_oci::image::Image> {
        self.images
            .pull(reference, auth.as_ref(), &self.config.registry)
            .await
            .map_err(error::oci)
    }

    /// Stops every container of the pod and its pause container. Unknown pods succeed.
    pub(crate) async fn stop_pod(&self, id: &str) -> Result<()> {
        let Some(pod) = self.pod(id) else {
            return Ok(());
        };
        let _op = pod.op.write().await;
        for container in self.containers_of(id) {
            self.stop(&container, Duration::ZERO).await?;
        }
        self.tear_down_network(&pod).await?;
        if !pod.exited() {
            if let Err(e) = self.runc.kill(id, "KILL", false).await
                && !e.is_not_running()
                && !e.is_not_found()
            {
                return Err(error::runc(e));
            }
            if exited_within(&pod.exit, Duration::from_secs(10))
                .await
                .is_none()
            {
                return Err(Error::internal(format!(
                    "the pause container of pod {id} did not exit after SIGKILL"
                )));
            }
        }
        pod.set_ready(false)
            .map_err(|e| error::io("writing pod.json", e))?;
        Ok(())
    }

    /// Stops and removes the pod, its containers and its files. Unknown pods succeed.
    pub(crate) async fn remove_pod(&self, id: &str) -> Result<()> {
        let Some(pod) = self.pod(id) else {
            return Ok(());
        };
        self.stop_pod(id).await?;
        let _op = pod.op.write().await;
        // A concurrent RemovePodSandbox may have finished while this one waited: the pod is
        // gone, and releasing its name again could free a new pod's reservation.
        if !lock(&self.pods)
            .get(id)
            .is_some_and(|current| Arc::ptr_eq(current, &pod))
        {
            return Ok(());
        }
        for container in self.containers_of(id) {
            self.remove(&container).await?;
        }
        self.runc.delete(id).await.map_err(error::runc)?;
        let rootfs = pod.dir.join("rootfs");
        super::containers::blocking(move || {
            cri_oci::image::cleanup_rootfs(&rootfs).map_err(error::oci)
        })
        .await?;
        netns::unpin(&pod.dir.join(netns::FILE))
            .map_err(|e| error::io("unpinning the pod's network namespace", e))?;
        // The cgroups go while the record still names them: once it is gone, a crash would
        // leave nothing that does.
        let record = pod.record();
        for cgroup in &record.created_cgroups {
            self.cgroups.remove(cgroup);
        }
        state::remove_dir(&pod.dir, state::POD_FILE)
            .map_err(|e| error::io("removing the pod directory", e))?;
        lock(&self.pods).remove(id);
        self.release(&name_key(&record.config));
        Ok(())
    }

    pub(crate) fn pod_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<(PodSandboxStatus, HashMap<String, String>)> {
        let pod = self
            .pod(id)
            .ok_or_else(|| Error::not_found(format!("pod sandbox {id:?} not found")))?;
        let mut info = HashMap::new();
        if verbose {
            let record = pod.record();
            let detail = serde_json::json!({
                "pid": record.pause_pid,
                "pauseImage": record.pause_image,
                "cgroupParent": record.cgroup_parent,
                "directory": pod.dir,
                "pauseExit": *pod.exit.borrow(),
                "network": record.network,
            });
            info.insert("info".to_string(), detail.to_string());
        }
        Ok((pod.status(), info))
    }

    pub(crate) fn list_pods(&self, filter: Option<&PodSandboxFilter>) -> Vec<PodSandbox> {
        self.all_pods()
            .into_iter()
            .filter(|p| filter.is_none_or(|f| p.matches(f)))
            .map(|p| p.summary())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_api::v1::{
        DnsConfig, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption,
    };

    #[test]
    fn pod_files_follow_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = PodSandboxConfig {
            hostname: "web-0".into(),
            dns_config: Some(DnsConfig {
                servers: vec!["10.0.0.10".into()],
                searches: vec![
                    "default.svc.cluster.local".into(),
                    "svc.cluster.local".into(),
                ],
                options: vec!["ndots:5".into()],
            }),
            ..Default::default()
        };
        let files = write_pod_files(dir.path(), &config).unwrap();
        let read = |p: &Option<PathBuf>| std::fs::read_to_string(p.as_ref().unwrap()).unwrap();
        assert_eq!(read(&files.hostname), "web-0\n");
        assert!(read(&files.hosts).contains("127.0.1.1\tweb-0"));
        assert_eq!(
            read(&files.resolv_conf),
            "nameserver 10.0.0.10\nsearch default.svc.cluster.local svc.cluster.local\noptions ndots:5\n"
        );
        let again = pod_files(dir.path());
        assert_eq!(again.hosts, files.hosts);
    }

    #[test]
    fn host_network_pods_keep_the_node_name() {
        let dir = tempfile::tempdir().unwrap();
        let config = PodSandboxConfig {
            hostname: "ignored".into(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Node as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(host_network(&config));
        let files = write_pod_files(dir.path(), &config).unwrap();
        let node = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        assert_eq!(
            std::fs::read_to_string(files.hostname.unwrap()).unwrap(),
            format!("{node}\n")
        );
    }

    #[test]
    fn the_network_status_lists_the_addresses_until_torn_down() {
        assert_eq!(network_status(None), PodSandboxNetworkStatus::default());
        let mut network = PodNetwork {
            netns: "/r/pods/p/netns".into(),
            config: NetworkList {
                name: "n".into(),
                cni_version: "1.0.0".into(),
                plugins: Vec::new(),
                source: PathBuf::new(),
            },
            result: serde_json::Value::Null,
            ips: vec!["10.1.0.2".into(), "fd00::2".into()],
            torn_down: false,
        };
        let status = network_status(Some(&network));
        assert_eq!(status.ip, "10.1.0.2");
        assert_eq!(
            status.additional_ips,
            [PodIp {
                ip: "fd00::2".into()
            }]
        );
        network.torn_down = true;
        assert_eq!(
            network_status(Some(&network)),
            PodSandboxNetworkStatus::default()
        );
    }

    #[test]
    fn labels_and_parents() {
        let labels: HashMap<String, String> =
            [("a".into(), "1".into()), ("b".into(), "2".into())].into();
        assert!(labels_match(&labels, &HashMap::new()));
        assert!(labels_match(&labels, &[("a".into(), "1".into())].into()));
        assert!(!labels_match(&labels, &[("a".into(), "2".into())].into()));
        assert!(!labels_match(&labels, &[("c".into(), "1".into())].into()));
        assert_eq!(cgroup_parent_of("/kubepods/pod1/abc"), "/kubepods/pod1");
        assert_eq!(cgroup_parent_of("/abc"), "");
        let existing = ["/a"];
        assert_eq!(
            missing_ancestors("/a/b/c", |p| existing.contains(&p)),
            ["/a/b/c", "/a/b"]
        );
        assert!(missing_ancestors("/a", |p| existing.contains(&p)).is_empty());
        assert_eq!(missing_ancestors("/x/", |_| false), ["/x"]);
    }
}
