//! Containers: create (rootfs, spec, monitor + `runc create`), start, stop, remove, status,
//! lists, resource updates and log reopening.

use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cri_api::v1::{
    Container as CriContainer, ContainerConfig, ContainerEventType, ContainerFilter,
    ContainerResources, ContainerState, ContainerStatus, ImageSpec, LinuxContainerResources,
    NamespaceMode, Signal,
};
use cri_oci::image::RootfsMode;
use cri_oci::spec::{ContainerRequest, Host, container_spec, hugepage_limits};
use cri_server::{Error, Result};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::pods::{labels_match, pod_files};
use super::{Runtime, exited_within, lock, new_id};
use crate::error;
use crate::monitor::protocol::{self, ExitRecord, MonitorConfig, Request, now_nanos};
use crate::state::{self, ContainerRecord};

/// How long a container gets to die after SIGKILL before stopping is reported as failed.
const KILL_GRACE: Duration = Duration::from_secs(30);

/// One container.
pub(crate) struct Container {
    /// `<root>/containers/<id>`: bundle, rootfs, monitor files.
    pub(crate) dir: PathBuf,
    record: Mutex<ContainerRecord>,
    /// The exit, once seen.
    pub(crate) exit: watch::Sender<Option<ExitRecord>>,
    /// Serialises start, stop, remove and update.
    pub(crate) op: tokio::sync::Mutex<()>,
    /// Held while starting, so the started event precedes the stopped one.
    pub(crate) start_gate: tokio::sync::Mutex<()>,
    removed: AtomicBool,
    /// The previous CPU reading `(time ns, usage ns)`, for a usage rate.
    pub(crate) cpu_sample: Mutex<Option<(i64, u64)>>,
}

/// The key that makes a container's name unique within its pod (CRI: name and attempt).
pub(crate) fn name_key(pod_id: &str, config: &ContainerConfig) -> String {
    let m = config.metadata.clone().unwrap_or_default();
    format!("container/{pod_id}/{}/{}", m.name, m.attempt)
}

impl Container {
    pub(crate) fn new(dir: PathBuf, record: ContainerRecord, exit: Option<ExitRecord>) -> Self {
        Self {
            dir,
            record: Mutex::new(record),
            exit: watch::Sender::new(exit),
            op: tokio::sync::Mutex::new(()),
            start_gate: tokio::sync::Mutex::new(()),
            removed: AtomicBool::new(false),
            cpu_sample: Mutex::new(None),
        }
    }

    pub(crate) fn id(&self) -> String {
        lock(&self.record).id.clone()
    }

    pub(crate) fn pod_id(&self) -> String {
        lock(&self.record).pod_id.clone()
    }

    pub(crate) fn pid(&self) -> u32 {
        lock(&self.record).pid
    }

    pub(crate) fn record(&self) -> ContainerRecord {
        lock(&self.record).clone()
    }

    pub(crate) fn set_exit(&self, exit: ExitRecord) {
        self.exit.send_replace(Some(exit));
    }

    pub(crate) fn exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    pub(crate) fn state(&self) -> ContainerState {
        if self.exited() {
            ContainerState::ContainerExited
        } else if lock(&self.record).started_at > 0 {
            ContainerState::ContainerRunning
        } else {
            ContainerState::ContainerCreated
        }
    }

    fn update_record(&self, change: impl FnOnce(&mut ContainerRecord)) -> Result<()> {
        let mut record = lock(&self.record);
        change(&mut record);
        state::save(&self.dir, state::CONTAINER_FILE, &*record)
            .map_err(|e| error::io("writing container.json", e))
    }

    pub(crate) fn status(&self) -> ContainerStatus {
        let record = self.record();
        let exit = self.exit.borrow().clone();
        let config = &record.config;
        let mut status = ContainerStatus {
            id: record.id.clone(),
            metadata: config.metadata.clone(),
            state: self.state() as i32,
            created_at: record.created_at,
            started_at: record.started_at,
            image: Some(ImageSpec {
                image: config
                    .image
                    .as_ref()
                    .map(|i| i.image.clone())
                    .unwrap_or_default(),
                annotations: config
                    .image
                    .as_ref()
                    .map(|i| i.annotations.clone())
                    .unwrap_or_default(),
                ..Default::default()
            }),
            image_ref: record.image_ref.clone(),
            image_id: record.image_id.clone(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            mounts: config.mounts.clone(),
            log_path: record.log_path.clone(),
            resources: Some(ContainerResources {
                linux: record.resources.clone(),
                windows: None,
            }),
            stop_signal: config.stop_signal,
            ..Default::default()
        };
        if let Some(exit) = exit {
            status.finished_at = exit.finished_at;
            status.exit_code = exit.exit_code;
            status.reason = exit.reason;
            status.message = exit.message;
        }
        status
    }

    pub(crate) fn summary(&self) -> CriContainer {
        let record = self.record();
        CriContainer {
            id: record.id.clone(),
            pod_sandbox_id: record.pod_id.clone(),
            metadata: record.config.metadata.clone(),
            image: Some(ImageSpec {
                image: record
                    .config
                    .image
                    .as_ref()
                    .map(|i| i.image.clone())
                    .unwrap_or_default(),
                ..Default::default()
            }),
            image_ref: record.image_ref.clone(),
            image_id: record.image_id.clone(),
            state: self.state() as i32,
            created_at: record.created_at,
            labels: record.config.labels,
            annotations: record.config.annotations,
        }
    }

    fn matches(&self, filter: &ContainerFilter) -> bool {
        let record = self.record();
        (filter.id.is_empty() || record.id.starts_with(&filter.id))
            && (filter.pod_sandbox_id.is_empty()
                || record.pod_id.starts_with(&filter.pod_sandbox_id))
            && filter
                .state
                .as_ref()
                .is_none_or(|s| s.state == self.state() as i32)
            && labels_match(&record.config.labels, &filter.label_selector)
    }

    /// The signal that asks the container to stop: the config's `stop_signal`, else the
    /// image's `StopSignal` (`image_stop_signal`), else SIGTERM.
    fn stop_signal(&self, image_stop_signal: Option<String>) -> String {
        let configured = lock(&self.record).config.stop_signal;
        match Signal::try_from(configured) {
            Ok(Signal::RuntimeDefault) | Err(_) => {
                image_stop_signal.unwrap_or_else(|| "SIGTERM".to_string())
            }
            Ok(signal) => signal
                .as_str_name()
                .trim_start_matches("SIGNAL_")
                .to_string(),
        }
    }
}

/// `oci` resources JSON for `runc update --resources`: only what the request sets.
pub(crate) fn resources_json(
    r: &LinuxContainerResources,
    host: &Host,
    unified_host: bool,
) -> Result<Value> {
    let negative = |field: &str, value: i64| {
        Error::invalid_argument(format!("linux.{field} must not be negative (got {value})"))
    };
    for (field, value) in [
        ("cpu_period", r.cpu_period),
        ("cpu_shares", r.cpu_shares),
        ("memory_limit_in_bytes", r.memory_limit_in_bytes),
    ] {
        if value < 0 {
            return Err(negative(field, value));
        }
    }
    if r.cpu_quota < -1 {
        return Err(negative("cpu_quota", r.cpu_quota));
    }
    if r.memory_swap_limit_in_bytes < -1 {
        return Err(negative(
            "memory_swap_limit_in_bytes",
            r.memory_swap_limit_in_bytes,
        ));
    }
    let mut cpu = Map::new();
    if r.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(r.cpu_shares));
    }
    if r.cpu_quota != 0 {
        cpu.insert("quota".into(), json!(r.cpu_quota));
    }
    if r.cpu_period > 0 {
        cpu.insert("period".into(), json!(r.cpu_period));
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(r.cpuset_cpus));
    }
    if !r.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), json!(r.cpuset_mems));
    }
    let mut memory = Map::new();
    if r.memory_limit_in_bytes > 0 {
        memory.insert("limit".into(), json!(r.memory_limit_in_bytes));
    }
    if r.memory_swap_limit_in_bytes != 0 {
        memory.insert("swap".into(), json!(r.memory_swap_limit_in_bytes));
    }
    let mut out = Map::new();
    if !cpu.is_empty() {
        out.insert("cpu".into(), Value::Object(cpu));
    }
    if !memory.is_empty() {
        out.insert("memory".into(), Value::Object(memory));
    }
    // Zero limits are dropped where the hugetlb controller is missing, as at create.
    let hugepages = hugepage_limits(host, &r.hugepage_limits, "linux")
        .map_err(|e| Error::invalid_argument(e.to_string()))?;
    if !hugepages.is_empty() {
        let limits: Vec<Value> = hugepages
            .iter()
            .map(|h| json!({"pageSize": h.page_size(), "limit": h.limit()}))
            .collect();
        out.insert("hugepageLimits".into(), Value::Array(limits));
    }
    if !r.unified.is_empty() {
        if !unified_host {
            return Err(Error::invalid_argument(
                "linux.unified needs a cgroup v2 host; this host uses cgroup v1",
            ));
        }
        out.insert("unified".into(), json!(r.unified));
    }
    Ok(Value::Object(out))
}

/// Runs filesystem-heavy work (unpacking a rootfs, deleting a copied one) on the blocking
/// pool, so that the server's async threads keep answering other calls meanwhile.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::internal(format!("a blocking task failed: {e}")))?
}

/// `log_path` is relative to the pod's log directory (CRI). An absolute path or a `..` would
/// let a request create and append to any file as root, so both are refused.
fn check_log_path(log_path: &str) -> Result<()> {
    use std::path::Component;
    let path = Path::new(log_path);
    let escapes = path.is_absolute()
        || path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if escapes {
        return Err(Error::invalid_argument(format!(
            "log_path {log_path:?} must be relative to the pod's log directory and stay inside it"
        )));
    }
    Ok(())
}

impl Runtime {
    pub(crate) async fn create_container(
        &self,
        pod_id: &str,
        config: ContainerConfig,
    ) -> Result<String> {
        let pod = self
            .pod(pod_id)
            .ok_or_else(|| Error::not_found(format!("pod sandbox {pod_id:?} not found")))?;
        // Held until the container is in the pod's list: a concurrent Stop/RemovePodSandbox
        // (which take it for writing) either sees the new container or runs before the
        // readiness check, never in between.
        let _pod_op = pod.op.read().await;
        if !pod.ready() {
            return Err(Error::failed_precondition(format!(
                "pod sandbox {pod_id:?} is not ready"
            )));
        }
        check_log_path(&config.log_path)?;
        let key = name_key(pod_id, &config);
        if !self.reserve(key.clone()) {
            let m = config.metadata.unwrap_or_default();
            return Err(Error::already_exists(format!(
                "a container named {:?} (attempt {}) exists in pod sandbox {pod_id:?}",
                m.name, m.attempt
            )));
        }
        let id = new_id()?;
        let dir = self.containers_dir().join(&id);
        match self.create_in(&pod, &id, &dir, config).await {
            Ok(container) => {
                self.publish(&container, ContainerEventType::ContainerCreatedEvent);
                Ok(id)
            }
            Err(e) => {
                self.release(&key);
                self.discard_dir(&dir).await;
                Err(e)
            }
        }
    }

    async fn create_in(
        &self,
        pod: &super::Pod,
        id: &str,
        dir: &Path,
        config: ContainerConfig,
    ) -> Result<Arc<Container>> {
        std::fs::create_dir_all(dir)
            .map_err(|e| error::io("creating the container directory", e))?;
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let image = self.images.get(&image_name).map_err(error::oci)?;
        let rootfs = {
            let (images, image, target) = (self.images.clone(), image.clone(), dir.join("rootfs"));
            blocking(move || {
                images
                    .prepare_rootfs(&image, &target, RootfsMode::Auto)
                    .map_err(error::oci)
            })
            .await?
        };
        let sandbox = pod.config();
        let pod_id = pod.id();
        let files = pod_files(&pod.dir);
        let mut request = ContainerRequest::new(
            id,
            &config,
            &pod_id,
            &sandbox,
            &image.config,
            &rootfs.path,
            &files,
        )
        .with_sandbox_pid(pod.pause_pid());
        let namespaces = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref());
        if let Some(ns) = namespaces.filter(|n| n.pid == NamespaceMode::Target as i32) {
            let target = self.container(&ns.target_id).ok_or_else(|| {
                Error::not_found(format!(
                    "target container {:?} of the PID namespace not found",
                    ns.target_id
                ))
            })?;
            if target.state() != ContainerState::ContainerRunning {
                return Err(Error::failed_precondition(format!(
                    "target container {:?} of the PID namespace is not running",
                    ns.target_id
                )));
            }
            request = request.with_target_pid(target.pid());
        }
        let spec = container_spec(&self.host, &request).map_err(error::oci)?;
        // Bind mounts of missing host paths: create the directory, as the kubelet expects.
        for mount in &config.mounts {
            let host = Path::new(&mount.host_path);
            if mount.image.is_none() && !mount.host_path.is_empty() && !host.exists() {
                std::fs::create_dir_all(host).map_err(|e| {
                    error::io(format!("creating the mount source {}", host.display()), e)
                })?;
            }
        }
        // Propagation into or out of the container needs a source that propagates.
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| error::io("reading /proc/self/mountinfo", e))?;
        crate::propagation::check_mounts(&config.mounts, &mountinfo)
            .map_err(Error::failed_precondition)?;
        state::save(dir, "config.json", &spec)
            .map_err(|e| error::io("writing the container's config.json", e))?;
        let cgroup_path = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.display().to_string())
            .unwrap_or_default();

        let log_dir = &sandbox.log_directory;
        let log_path = if log_dir.is_empty() || config.log_path.is_empty() {
            None
        } else {
            let path = Path::new(log_dir).join(&config.log_path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| error::io(format!("creating {}", parent.display()), e))?;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&path)
                .map_err(|e| error::io(format!("creating the log {}", path.display()), e))?;
            Some(path)
        };

        let monitor = MonitorConfig {
            id: id.to_string(),
            runc: self.runc.path().to_path_buf(),
            runc_root: self.runc.root().to_path_buf(),
            bundle: dir.to_path_buf(),
            log_path: log_path.clone(),
            tty: config.tty,
            stdin: config.stdin,
            stdin_once: config.stdin_once,
        };
        let pid = self.start_monitor(dir, &monitor).await?;
        let record = ContainerRecord {
            id: id.to_string(),
            pod_id,
            image_id: image.id.clone(),
            image_ref: image
                .repo_digests
                .first()
                .cloned()
                .unwrap_or_else(|| image.id.clone()),
            created_at: now_nanos(),
            started_at: 0,
            log_path: log_path
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            pid,
            cgroup_path,
            resources: config.linux.as_ref().and_then(|l| l.resources.clone()),
            config,
        };
        state::save(dir, state::CONTAINER_FILE, &record)
            .map_err(|e| error::io("writing container.json", e))?;
        let container = Arc::new(Container::new(dir.to_path_buf(), record, None));
        lock(&self.containers).insert(id.to_string(), container.clone());
        self.watch_container(&container);
        Ok(container)
    }

    pub(crate) async fn start_container(&self, id: &str) -> Result<()> {
        let container = self
            .container(id)
            .ok_or_else(|| Error::not_found(format!("container {id:?} not found")))?;
        let _op = container.op.lock().await;
        let _gate = container.start_gate.lock().await;
        let state = container.state();
        if state != ContainerState::ContainerCreated {
            return Err(Error::failed_precondition(format!(
                "container {id:?} is {}, not created",
                state.as_str_name()
            )));
        }
        self.runc.start(id).await.map_err(error::runc)?;
        container.update_record(|r| r.started_at = now_nanos())?;
        self.publish(&container, ContainerEventType::ContainerStartedEvent);
        Ok(())
    }

    /// StopContainer: unknown and exited containers succeed.
    pub(crate) async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        match self.container(id) {
            Some(container) => self.stop(&container, timeout).await,
            None => Ok(()),
        }
    }

    pub(crate) async fn stop(&self, container: &Container, timeout: Duration) -> Result<()> {
        let _op = container.op.lock().await;
        self.stop_locked(container, timeout).await
    }

    /// Stop signal, up to `timeout` for the container to exit, then SIGKILL to every process.
    async fn stop_locked(&self, container: &Container, timeout: Duration) -> Result<()> {
        if container.exited() {
            return Ok(());
        }
        let id = container.id();
        let ignore_gone = |result: std::result::Result<(), crate::runc::RuncError>| match result {
            Err(e) if !e.is_not_running() && !e.is_not_found() => Err(error::runc(e)),
            _ => Ok(()),
        };
        if !timeout.is_zero() && container.state() == ContainerState::ContainerRunning {
            let image_signal = self
                .images
                .get(&container.record().image_id)
                .ok()
                .and_then(|image| image.config.config().as_ref()?.stop_signal().clone())
                .filter(|s| !s.is_empty());
            let signal = container.stop_signal(image_signal);
            ignore_gone(self.runc.kill(&id, &signal, false).await)?;
            if exited_within(&container.exit, timeout).await.is_some() {
                return Ok(());
            }
        }
        ignore_gone(self.runc.kill(&id, "KILL", true).await)?;
        if exited_within(&container.exit, KILL_GRACE).await.is_none() {
            return Err(Error::internal(format!(
                "container {id:?} did not exit within {KILL_GRACE:?} of SIGKILL"
            )));
        }
        Ok(())
    }

    /// RemoveContainer: kills it if needed, then deletes everything. Unknown containers succeed.
    pub(crate) async fn remove_container(&self, id: &str) -> Result<()> {
        match self.container(id) {
            Some(container) => self.remove(&container).await,
            None => Ok(()),
        }
    }

    pub(crate) async fn remove(&self, container: &Container) -> Result<()> {
        let _op = container.op.lock().await;
        if container.removed.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.stop_locked(container, Duration::ZERO).await?;
        let id = container.id();
        self.runc.delete(&id).await.map_err(error::runc)?;
        let rootfs = container.dir.join("rootfs");
        blocking(move || cri_oci::image::cleanup_rootfs(&rootfs).map_err(error::oci)).await?;
        state::remove_dir(&container.dir, state::CONTAINER_FILE)
            .map_err(|e| error::io("removing the container directory", e))?;
        container.removed.store(true, Ordering::SeqCst);
        lock(&self.containers).remove(&id);
        let record = container.record();
        self.release(&name_key(&record.pod_id, &record.config));
        self.publish(container, ContainerEventType::ContainerDeletedEvent);
        Ok(())
    }

    pub(crate) fn container_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<(ContainerStatus, HashMap<String, String>)> {
        let container = self
            .container(id)
            .ok_or_else(|| Error::not_found(format!("container {id:?} not found")))?;
        let mut info = HashMap::new();
        if verbose {
            let record = container.record();
            let spec: Value = std::fs::read(container.dir.join("config.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            let detail = json!({
                "pid": record.pid,
                "sandboxID": record.pod_id,
                "cgroupPath": record.cgroup_path,
                "directory": container.dir,
                "runtimeSpec": spec,
            });
            info.insert("info".to_string(), detail.to_string());
        }
        Ok((container.status(), info))
    }

    pub(crate) fn list_containers(&self, filter: Option<&ContainerFilter>) -> Vec<CriContainer> {
        self.all_containers()
            .into_iter()
            .filter(|c| filter.is_none_or(|f| c.matches(f)))
            .map(|c| c.summary())
            .collect()
    }

    pub(crate) async fn update_resources(
        &self,
        id: &str,
        resources: Option<LinuxContainerResources>,
    ) -> Result<()> {
        let container = self
            .container(id)
            .ok_or_else(|| Error::not_found(format!("container {id:?} not found")))?;
        let Some(resources) = resources else {
            return Ok(());
        };
        let _op = container.op.lock().await;
        if container.exited() {
            return Err(Error::failed_precondition(format!(
                "container {id:?} has exited"
            )));
        }
        let body = resources_json(&resources, &self.host, self.cgroups.is_unified())?;
        let file = container.dir.join("resources.json");
        protocol::write_json_atomic(&file, &body)
            .map_err(|e| error::io("writing resources.json", e))?;
        self.runc.update(id, &file).await.map_err(error::runc)?;
        container.update_record(|r| {
            // Keep what the update does not touch (the oom score, which runc cannot change).
            let mut merged = r.resources.clone().unwrap_or_default();
            let oom = merged.oom_score_adj;
            merged = resources;
            if merged.oom_score_adj == 0 {
                merged.oom_score_adj = oom;
            }
            r.resources = Some(merged);
        })
    }

    pub(crate) async fn reopen_log(&self, id: &str) -> Result<()> {
        let container = self
            .container(id)
            .ok_or_else(|| Error::not_found(format!("container {id:?} not found")))?;
        if container.state() != ContainerState::ContainerRunning {
            return Err(Error::failed_precondition(format!(
                "container {id:?} is not running"
            )));
        }
        let (reply, _) = protocol::call(&container.dir, &Request::ReopenLog)
            .await
            .map_err(|e| error::io("asking the container's monitor to reopen the log", e))?;
        match reply.error {
            None => Ok(()),
            Some(e) => Err(Error::internal(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_api::v1::HugepageLimit;

    #[test]
    fn resources_json_carries_only_what_is_set() {
        let r = LinuxContainerResources {
            cpu_shares: 512,
            cpu_period: 100_000,
            cpu_quota: 50_000,
            memory_limit_in_bytes: 256 << 20,
            ..Default::default()
        };
        assert_eq!(
            resources_json(&r, &Host::default(), false).unwrap(),
            json!({"cpu": {"shares": 512, "quota": 50000, "period": 100000},
                   "memory": {"limit": 268435456}})
        );
        let r = LinuxContainerResources {
            cpuset_cpus: "0-1".into(),
            hugepage_limits: vec![HugepageLimit {
                page_size: "2MB".into(),
                limit: 1 << 21,
            }],
            ..Default::default()
        };
        assert_eq!(
            resources_json(&r, &Host::default(), false).unwrap(),
            json!({"cpu": {"cpus": "0-1"}, "hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}]})
        );
        assert_eq!(
            resources_json(&LinuxContainerResources::default(), &Host::default(), false).unwrap(),
            json!({})
        );
    }

    #[test]
    fn zero_hugepage_limits_are_dropped_without_hugetlb() {
        let mut host = Host::default();
        host.hugetlb_supported = false;
        let kubelet = LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            hugepage_limits: vec![
                HugepageLimit {
                    page_size: "2MB".into(),
                    limit: 0,
                },
                HugepageLimit {
                    page_size: "1GB".into(),
                    limit: 0,
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            resources_json(&kubelet, &host, false).unwrap(),
            json!({"memory": {"limit": 67108864}})
        );
        let asked = LinuxContainerResources {
            hugepage_limits: vec![HugepageLimit {
                page_size: "2MB".into(),
                limit: 2 << 20,
            }],
            ..Default::default()
        };
        let err = resources_json(&asked, &host, false).unwrap_err();
        assert!(err.to_string().contains("hugetlb"), "{err}");
    }

    #[test]
    fn stop_signals_come_from_the_config_then_the_image() {
        let record = |stop_signal: Signal| ContainerRecord {
            id: "c1".into(),
            pod_id: "p1".into(),
            config: ContainerConfig {
                stop_signal: stop_signal as i32,
                ..Default::default()
            },
            image_id: String::new(),
            image_ref: String::new(),
            created_at: 0,
            started_at: 0,
            log_path: String::new(),
            pid: 0,
            cgroup_path: String::new(),
            resources: None,
        };
        let dir = PathBuf::from("/nonexistent");
        let default = Container::new(dir.clone(), record(Signal::RuntimeDefault), None);
        assert_eq!(default.stop_signal(None), "SIGTERM");
        assert_eq!(default.stop_signal(Some("SIGQUIT".into())), "SIGQUIT");
        let configured = Container::new(dir, record(Signal::Sigint), None);
        assert_eq!(configured.stop_signal(Some("SIGQUIT".into())), "SIGINT");
    }

    #[test]
    fn bad_resources_name_the_field() {
        let err = resources_json(
            &LinuxContainerResources {
                memory_limit_in_bytes: -5,
                ..Default::default()
            },
            &Host::default(),
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("memory_limit_in_bytes"), "{err}");
        let err = resources_json(
            &LinuxContainerResources {
                unified: [("memory.max".to_string(), "1G".to_string())].into(),
                ..Default::default()
            },
            &Host::default(),
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("cgroup v2"), "{err}");
    }

    #[test]
    fn log_paths_stay_inside_the_log_directory() {
        for ok in ["c/0.log", "c.log", "./c/1.log"] {
            assert!(check_log_path(ok).is_ok(), "{ok}");
        }
        for bad in ["/etc/passwd", "../x.log", "c/../../x.log", "c/.."] {
            let err = check_log_path(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{bad}: {err:?}");
        }
    }
}
