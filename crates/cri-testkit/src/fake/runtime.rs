//! The CRI methods of the fake runtime.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cri_api::log::{Tag, format_record};
use cri_api::v1::*;
use cri_server::{
    Context, Error, ImageService, ResponseStream, Result, RuntimeService, async_trait,
};

use super::{ContainerRecord, FakeRuntime, SandboxRecord, State, now_nanos};
use crate::workload::{ContainerInfo, Script, Step, Stream};

/// Largest `ExecSync` output kept per stream (the CRI limit).
const EXEC_OUTPUT_LIMIT: usize = 16 * 1024 * 1024;
/// Exit code of a container stopped by the runtime (SIGKILL).
const KILLED: i32 = 137;

fn matches_id(id: &str, filter: &str) -> bool {
    filter.is_empty() || id.starts_with(filter)
}

fn matches_labels(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn uint(value: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value })
}

impl SandboxRecord {
    fn metadata(&self) -> Option<PodSandboxMetadata> {
        self.config.metadata.clone()
    }

    fn host_network(&self) -> bool {
        self.config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .is_some_and(|n| n.network() == NamespaceMode::Node)
    }

    fn summary(&self) -> PodSandbox {
        PodSandbox {
            id: self.id.clone(),
            metadata: self.metadata(),
            state: self.state as i32,
            created_at: self.created_at,
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            runtime_handler: self.runtime_handler.clone(),
        }
    }

    fn status(&self) -> PodSandboxStatus {
        let namespace_options = self
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone());
        PodSandboxStatus {
            id: self.id.clone(),
            metadata: self.metadata(),
            state: self.state as i32,
            created_at: self.created_at,
            network: Some(PodSandboxNetworkStatus {
                ip: self.ip.clone(),
                additional_ips: Vec::new(),
            }),
            linux: Some(LinuxPodSandboxStatus {
                namespaces: Some(Namespace {
                    options: namespace_options,
                }),
            }),
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            runtime_handler: self.runtime_handler.clone(),
        }
    }
}

impl ContainerRecord {
    fn image_spec(&self) -> Option<ImageSpec> {
        self.config.image.clone()
    }

    fn summary(&self) -> Container {
        Container {
            id: self.id.clone(),
            pod_sandbox_id: self.sandbox_id.clone(),
            metadata: self.config.metadata.clone(),
            image: self.image_spec(),
            image_ref: self.image_id.clone(),
            state: self.state as i32,
            created_at: self.created_at,
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            image_id: self.image_id.clone(),
        }
    }

    fn status(&self) -> ContainerStatus {
        ContainerStatus {
            id: self.id.clone(),
            metadata: self.config.metadata.clone(),
            state: self.state as i32,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            exit_code: self.exit_code,
            image: self.image_spec(),
            image_ref: self.image_id.clone(),
            reason: self.reason.clone(),
            message: self.message.clone(),
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            mounts: self.config.mounts.clone(),
            log_path: self
                .log_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            resources: Some(ContainerResources {
                linux: self
                    .resources
                    .clone()
                    .or_else(|| self.config.linux.as_ref().and_then(|l| l.resources.clone())),
                windows: None,
            }),
            image_id: self.image_id.clone(),
            user: None,
            stop_signal: self.config.stop_signal,
        }
    }

    fn attributes(&self) -> ContainerAttributes {
        ContainerAttributes {
            id: self.id.clone(),
            metadata: self.config.metadata.clone(),
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
        }
    }

    /// Synthetic but well-formed usage: CPU time grows with run time.
    fn synthetic_stats(&self, now: i64) -> ContainerStats {
        let ran = if self.started_at == 0 {
            0
        } else if self.finished_at != 0 {
            self.finished_at - self.started_at
        } else {
            now - self.started_at
        };
        let cpu_ns = u64::try_from(ran / 100).unwrap_or(0);
        let running = self.state == ContainerState::ContainerRunning;
        ContainerStats {
            attributes: Some(self.attributes()),
            cpu: Some(CpuUsage {
                timestamp: now,
                usage_core_nano_seconds: uint(cpu_ns),
                usage_nano_cores: uint(if running { 10_000_000 } else { 0 }),
                psi: None,
            }),
            memory: Some(MemoryUsage {
                timestamp: now,
                working_set_bytes: uint(if running { 4 << 20 } else { 0 }),
                available_bytes: uint(0),
                usage_bytes: uint(if running { 5 << 20 } else { 0 }),
                rss_bytes: uint(if running { 3 << 20 } else { 0 }),
                page_faults: uint(0),
                major_page_faults: uint(0),
                psi: None,
            }),
            writable_layer: Some(FilesystemUsage {
                timestamp: now,
                fs_id: Some(FilesystemIdentifier {
                    mountpoint: format!("/var/lib/cri-testkit/containers/{}", self.id),
                }),
                used_bytes: uint(4096),
                inodes_used: uint(1),
            }),
            swap: None,
            io: None,
        }
    }
}

impl State {
    fn sandbox(&self, id: &str) -> Result<&SandboxRecord> {
        self.sandboxes
            .get(id)
            .ok_or_else(|| Error::not_found(format!("pod sandbox {id:?} not found")))
    }

    fn container(&self, id: &str) -> Result<&ContainerRecord> {
        self.containers
            .get(id)
            .ok_or_else(|| Error::not_found(format!("container {id:?} not found")))
    }

    fn container_stats(&self, container: &ContainerRecord, now: i64) -> ContainerStats {
        self.container_stats
            .get(&container.id)
            .cloned()
            .unwrap_or_else(|| container.synthetic_stats(now))
    }

    fn sandbox_stats(&self, sandbox: &SandboxRecord, now: i64) -> PodSandboxStats {
        if let Some(stats) = self.sandbox_stats.get(&sandbox.id) {
            return stats.clone();
        }
        let containers: Vec<ContainerStats> = self
            .containers
            .values()
            .filter(|c| c.sandbox_id == sandbox.id)
            .map(|c| self.container_stats(c, now))
            .collect();
        let sum = |f: &dyn Fn(&ContainerStats) -> Option<u64>| {
            containers.iter().filter_map(f).sum::<u64>()
        };
        let running = containers
            .iter()
            .filter(|c| {
                c.memory
                    .as_ref()
                    .and_then(|m| m.working_set_bytes.as_ref())
                    .is_some_and(|w| w.value > 0)
            })
            .count();
        PodSandboxStats {
            attributes: Some(PodSandboxAttributes {
                id: sandbox.id.clone(),
                metadata: sandbox.metadata(),
                labels: sandbox.config.labels.clone(),
                annotations: sandbox.config.annotations.clone(),
            }),
            linux: Some(LinuxPodSandboxStats {
                cpu: Some(CpuUsage {
                    timestamp: now,
                    usage_core_nano_seconds: uint(sum(&|c| {
                        c.cpu
                            .as_ref()?
                            .usage_core_nano_seconds
                            .as_ref()
                            .map(|v| v.value)
                    })),
                    usage_nano_cores: uint(sum(&|c| {
                        c.cpu.as_ref()?.usage_nano_cores.as_ref().map(|v| v.value)
                    })),
                    psi: None,
                }),
                memory: Some(MemoryUsage {
                    timestamp: now,
                    working_set_bytes: uint(sum(&|c| {
                        c.memory
                            .as_ref()?
                            .working_set_bytes
                            .as_ref()
                            .map(|v| v.value)
                    })),
                    ..Default::default()
                }),
                network: Some(NetworkUsage {
                    timestamp: now,
                    default_interface: Some(NetworkInterfaceUsage {
                        name: "eth0".into(),
                        rx_bytes: uint(0),
                        rx_errors: uint(0),
                        tx_bytes: uint(0),
                        tx_errors: uint(0),
                    }),
                    interfaces: Vec::new(),
                }),
                process: Some(ProcessUsage {
                    timestamp: now,
                    process_count: uint(running as u64 + 1),
                }),
                containers,
                io: None,
            }),
            windows: None,
        }
    }
}

/// Appends `data` to a CRI log file as records, one per line; a trailing partial line is
/// written with tag `P`.
/// The longest log record the fake writes (containerd's default `max_container_log_line_size`).
const MAX_LOG_RECORD: usize = 16 * 1024;

fn append_log(path: &Path, stream: Stream, data: &[u8]) {
    let stream = match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    let now = now_nanos();
    let text = String::from_utf8_lossy(data);
    let mut out = String::new();
    let mut rest: &str = &text;
    while !rest.is_empty() {
        let (mut line, tag) = match rest.find('\n') {
            Some(i) => {
                let line = &rest[..i];
                rest = &rest[i + 1..];
                (line, Tag::Full)
            }
            None => (std::mem::take(&mut rest), Tag::Partial),
        };
        // Long lines become partial records of at most MAX_LOG_RECORD bytes (at a character
        // boundary), the last one keeping the line's own tag, as containerd writes them.
        while line.len() > MAX_LOG_RECORD {
            let mut cut = MAX_LOG_RECORD;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push_str(&format_record(now, stream, Tag::Partial, &line[..cut]));
            line = &line[cut..];
        }
        out.push_str(&format_record(now, stream, tag, line));
    }
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(out.as_bytes()));
    if let Err(error) = written {
        tracing::warn!(path = %path.display(), %error, "cannot write container log");
    }
}

impl FakeRuntime {
    fn event(&self, state: &State, container: &ContainerRecord, kind: ContainerEventType) {
        let sandbox = state
            .sandboxes
            .get(&container.sandbox_id)
            .map(SandboxRecord::status);
        self.inner.events.publish(ContainerEventResponse {
            container_id: container.id.clone(),
            container_event_type: kind as i32,
            created_at: now_nanos(),
            pod_sandbox_status: sandbox,
            containers_statuses: vec![container.status()],
        });
    }

    /// Ends a running container's run: `generation` (when given) must still be current, so
    /// that a process that ended after a restart or removal changes nothing.
    pub(crate) fn finish(
        &self,
        id: &str,
        generation: Option<u64>,
        exit_code: i32,
        reason: &str,
    ) -> bool {
        let mut state = self.state();
        let Some(container) = state.containers.get_mut(id) else {
            return false;
        };
        if container.state != ContainerState::ContainerRunning
            || generation.is_some_and(|g| g != container.generation)
        {
            return false;
        }
        if let Some(process) = container.process.take()
            && generation.is_none()
        {
            process.abort();
        }
        container.state = ContainerState::ContainerExited;
        container.finished_at = now_nanos().max(container.started_at + 1);
        container.exit_code = exit_code;
        container.reason = reason.to_string();
        let container = &state.containers[id];
        self.event(&state, container, ContainerEventType::ContainerStoppedEvent);
        true
    }

    /// Runs a container's main process script in the background.
    fn spawn_process(
        &self,
        id: String,
        generation: u64,
        script: Script,
        log: Option<std::path::PathBuf>,
    ) -> tokio::task::AbortHandle {
        let weak = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            let mut code = 0;
            for step in script.steps {
                match step {
                    Step::Write(stream, data) => {
                        if let Some(log) = &log {
                            append_log(log, stream, &data);
                        }
                    }
                    Step::Sleep(duration) => tokio::time::sleep(duration).await,
                    Step::Exit(exit) => {
                        code = exit;
                        break;
                    }
                    Step::Forever => std::future::pending::<()>().await,
                }
            }
            if let Some(inner) = weak.upgrade() {
                let fake = FakeRuntime { inner };
                let reason = if code == 0 { "Completed" } else { "Error" };
                fake.finish(&id, Some(generation), code, reason);
            }
        });
        task.abort_handle()
    }

    fn stop_in(&self, state: &mut State, id: &str) {
        let Some(container) = state.containers.get_mut(id) else {
            return;
        };
        if container.state != ContainerState::ContainerRunning {
            return;
        }
        if let Some(process) = container.process.take() {
            process.abort();
        }
        container.state = ContainerState::ContainerExited;
        container.finished_at = now_nanos().max(container.started_at + 1);
        container.exit_code = KILLED;
        container.reason = "Error".into();
        let container = &state.containers[id];
        self.event(state, container, ContainerEventType::ContainerStoppedEvent);
    }

    fn remove_in(&self, state: &mut State, id: &str) {
        self.stop_in(state, id);
        if let Some(container) = state.containers.remove(id) {
            state.container_stats.remove(id);
            self.event(state, &container, ContainerEventType::ContainerDeletedEvent);
        }
    }
}

#[async_trait]
impl RuntimeService for FakeRuntime {
    async fn version(&self, _: Context, req: VersionRequest) -> Result<VersionResponse> {
        self.begin("Version", &req)?;
        Ok(VersionResponse {
            version: "0.1.0".into(),
            runtime_name: self.inner.options.runtime_name.clone(),
            runtime_version: self.inner.options.runtime_version.clone(),
            runtime_api_version: cri_api::API_VERSION.into(),
        })
    }

    async fn run_pod_sandbox(
        &self,
        _: Context,
        req: RunPodSandboxRequest,
    ) -> Result<RunPodSandboxResponse> {
        self.begin("RunPodSandbox", &req)?;
        let config = req.config.unwrap_or_default();
        let metadata = config.metadata.clone().unwrap_or_default();
        let id = self.new_id("sandbox");
        let mut state = self.state();
        if let Some(existing) = state.sandboxes.values().find(|s| {
            s.state == PodSandboxState::SandboxReady
                && s.config.metadata.as_ref() == Some(&metadata)
        }) {
            return Err(Error::already_exists(format!(
                "a ready sandbox {} already has name {:?}, namespace {:?}, uid {:?}, attempt {}",
                existing.id, metadata.name, metadata.namespace, metadata.uid, metadata.attempt
            )));
        }
        let mut record = SandboxRecord {
            id: id.clone(),
            config,
            runtime_handler: req.runtime_handler,
            state: PodSandboxState::SandboxReady,
            created_at: now_nanos(),
            ip: String::new(),
            resources: None,
        };
        if !record.host_network() {
            let n = state.next_ip;
            state.next_ip = state.next_ip.wrapping_add(1);
            record.ip = format!("10.88.{}.{}", (n >> 8) & 0xff, n & 0xff);
        }
        state.sandboxes.insert(id.clone(), record);
        Ok(RunPodSandboxResponse { pod_sandbox_id: id })
    }

    async fn stop_pod_sandbox(
        &self,
        _: Context,
        req: StopPodSandboxRequest,
    ) -> Result<StopPodSandboxResponse> {
        self.begin("StopPodSandbox", &req)?;
        let mut state = self.state();
        if !state.sandboxes.contains_key(&req.pod_sandbox_id) {
            return Ok(StopPodSandboxResponse {});
        }
        let members: Vec<String> = state
            .containers
            .values()
            .filter(|c| c.sandbox_id == req.pod_sandbox_id)
            .map(|c| c.id.clone())
            .collect();
        for id in members {
            self.stop_in(&mut state, &id);
        }
        if let Some(sandbox) = state.sandboxes.get_mut(&req.pod_sandbox_id) {
            sandbox.state = PodSandboxState::SandboxNotready;
        }
        Ok(StopPodSandboxResponse {})
    }

    async fn remove_pod_sandbox(
        &self,
        _: Context,
        req: RemovePodSandboxRequest,
    ) -> Result<RemovePodSandboxResponse> {
        self.begin("RemovePodSandbox", &req)?;
        let mut state = self.state();
        let members: Vec<String> = state
            .containers
            .values()
            .filter(|c| c.sandbox_id == req.pod_sandbox_id)
            .map(|c| c.id.clone())
            .collect();
        for id in members {
            self.remove_in(&mut state, &id);
        }
        state.sandboxes.remove(&req.pod_sandbox_id);
        state.sandbox_stats.remove(&req.pod_sandbox_id);
        Ok(RemovePodSandboxResponse {})
    }

    async fn pod_sandbox_status(
        &self,
        _: Context,
        req: PodSandboxStatusRequest,
    ) -> Result<PodSandboxStatusResponse> {
        self.begin("PodSandboxStatus", &req)?;
        let state = self.state();
        let sandbox = state.sandbox(&req.pod_sandbox_id)?;
        let containers_statuses = state
            .containers
            .values()
            .filter(|c| c.sandbox_id == sandbox.id)
            .map(ContainerRecord::status)
            .collect();
        let mut info = HashMap::new();
        if req.verbose {
            let detail = serde_json::json!({
                "runtimeHandler": sandbox.runtime_handler,
                "config": serde_json::to_value(&sandbox.config).unwrap_or_default(),
            });
            info.insert("info".to_string(), detail.to_string());
        }
        Ok(PodSandboxStatusResponse {
            status: Some(sandbox.status()),
            info,
            containers_statuses,
            timestamp: now_nanos(),
        })
    }

    async fn list_pod_sandbox(
        &self,
        _: Context,
        req: ListPodSandboxRequest,
    ) -> Result<ListPodSandboxResponse> {
        self.begin("ListPodSandbox", &req)?;
        let filter = req.filter.unwrap_or_default();
        let state = self.state();
        let items = state
            .sandboxes
            .values()
            .filter(|s| matches_id(&s.id, &filter.id))
            .filter(|s| {
                filter
                    .state
                    .as_ref()
                    .is_none_or(|f| f.state == s.state as i32)
            })
            .filter(|s| matches_labels(&s.config.labels, &filter.label_selector))
            .map(SandboxRecord::summary)
            .collect();
        Ok(ListPodSandboxResponse { items })
    }

    async fn create_container(
        &self,
        _: Context,
        req: CreateContainerRequest,
    ) -> Result<CreateContainerResponse> {
        self.begin("CreateContainer", &req)?;
        let config = req.config.unwrap_or_default();
        let id = self.new_id("container");
        let mut state = self.state();
        let sandbox = state.sandbox(&req.pod_sandbox_id)?;
        if sandbox.state != PodSandboxState::SandboxReady {
            return Err(Error::failed_precondition(format!(
                "pod sandbox {} is not ready",
                sandbox.id
            )));
        }
        let wants_privileged = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .is_some_and(|s| s.privileged);
        let sandbox_privileged = sandbox
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .is_some_and(|s| s.privileged);
        if wants_privileged && !sandbox_privileged {
            return Err(Error::invalid_argument(format!(
                "linux.security_context.privileged: a privileged container needs a privileged sandbox; {} is not",
                sandbox.id
            )));
        }
        let log_path = (!sandbox.config.log_directory.is_empty() && !config.log_path.is_empty())
            .then(|| Path::new(&sandbox.config.log_directory).join(&config.log_path));
        let image = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let image_id = state
            .images
            .find(&image)
            .map(|i| i.id.clone())
            .ok_or_else(|| Error::not_found(format!("image {image:?} not found; pull it first")))?;
        let metadata = config.metadata.clone().unwrap_or_default();
        if let Some(existing) = state.containers.values().find(|c| {
            c.sandbox_id == req.pod_sandbox_id && c.config.metadata.as_ref() == Some(&metadata)
        }) {
            return Err(Error::already_exists(format!(
                "container {} in this sandbox already has name {:?} attempt {}",
                existing.id, metadata.name, metadata.attempt
            )));
        }
        let record = ContainerRecord {
            id: id.clone(),
            sandbox_id: req.pod_sandbox_id,
            config,
            image_id,
            state: ContainerState::ContainerCreated,
            created_at: now_nanos(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            resources: None,
            log_path,
            process: None,
            generation: 0,
        };
        self.event(&state, &record, ContainerEventType::ContainerCreatedEvent);
        state.containers.insert(id.clone(), record);
        Ok(CreateContainerResponse { container_id: id })
    }

    async fn start_container(
        &self,
        _: Context,
        req: StartContainerRequest,
    ) -> Result<StartContainerResponse> {
        self.begin("StartContainer", &req)?;
        let mut state = self.state();
        let container = state.container(&req.container_id)?;
        if container.state != ContainerState::ContainerCreated {
            return Err(Error::failed_precondition(format!(
                "container {} is {:?}, not CREATED",
                container.id,
                container.state.as_str_name()
            )));
        }
        let hostname = state
            .sandboxes
            .get(&container.sandbox_id)
            .map(|s| s.config.hostname.clone())
            .unwrap_or_default();
        let script = self.inner.workload.start(&ContainerInfo {
            id: &container.id,
            pod_sandbox_id: &container.sandbox_id,
            hostname: &hostname,
            config: &container.config,
        });
        let log = container.log_path.clone();
        let container = state
            .containers
            .get_mut(&req.container_id)
            .expect("checked above");
        container.generation += 1;
        container.state = ContainerState::ContainerRunning;
        container.started_at = now_nanos().max(container.created_at + 1);
        let generation = container.generation;
        let process = self.spawn_process(container.id.clone(), generation, script, log);
        container.process = Some(process);
        let container = &state.containers[&req.container_id];
        self.event(&state, container, ContainerEventType::ContainerStartedEvent);
        Ok(StartContainerResponse {})
    }

    async fn stop_container(
        &self,
        _: Context,
        req: StopContainerRequest,
    ) -> Result<StopContainerResponse> {
        self.begin("StopContainer", &req)?;
        let mut state = self.state();
        self.stop_in(&mut state, &req.container_id);
        Ok(StopContainerResponse {})
    }

    async fn remove_container(
        &self,
        _: Context,
        req: RemoveContainerRequest,
    ) -> Result<RemoveContainerResponse> {
        self.begin("RemoveContainer", &req)?;
        let mut state = self.state();
        self.remove_in(&mut state, &req.container_id);
        Ok(RemoveContainerResponse {})
    }

    async fn list_containers(
        &self,
        _: Context,
        req: ListContainersRequest,
    ) -> Result<ListContainersResponse> {
        self.begin("ListContainers", &req)?;
        let filter = req.filter.unwrap_or_default();
        let state = self.state();
        let containers = state
            .containers
            .values()
            .filter(|c| matches_id(&c.id, &filter.id))
            .filter(|c| matches_id(&c.sandbox_id, &filter.pod_sandbox_id))
            .filter(|c| {
                filter
                    .state
                    .as_ref()
                    .is_none_or(|f| f.state == c.state as i32)
            })
            .filter(|c| matches_labels(&c.config.labels, &filter.label_selector))
            .map(ContainerRecord::summary)
            .collect();
        Ok(ListContainersResponse { containers })
    }

    async fn container_status(
        &self,
        _: Context,
        req: ContainerStatusRequest,
    ) -> Result<ContainerStatusResponse> {
        self.begin("ContainerStatus", &req)?;
        let state = self.state();
        let container = state.container(&req.container_id)?;
        let mut info = HashMap::new();
        if req.verbose {
            let detail = serde_json::json!({
                "sandboxID": container.sandbox_id,
                "config": serde_json::to_value(&container.config).unwrap_or_default(),
            });
            info.insert("info".to_string(), detail.to_string());
        }
        Ok(ContainerStatusResponse {
            status: Some(container.status()),
            info,
        })
    }

    async fn update_container_resources(
        &self,
        _: Context,
        req: UpdateContainerResourcesRequest,
    ) -> Result<UpdateContainerResourcesResponse> {
        self.begin("UpdateContainerResources", &req)?;
        let mut state = self.state();
        let container = state.container(&req.container_id)?;
        if container.state == ContainerState::ContainerExited {
            return Err(Error::failed_precondition(format!(
                "container {} has exited; its resources cannot change",
                container.id
            )));
        }
        let container = state
            .containers
            .get_mut(&req.container_id)
            .expect("checked above");
        if let Some(linux) = req.linux {
            container.resources = Some(linux);
        }
        Ok(UpdateContainerResourcesResponse {})
    }

    async fn reopen_container_log(
        &self,
        _: Context,
        req: ReopenContainerLogRequest,
    ) -> Result<ReopenContainerLogResponse> {
        self.begin("ReopenContainerLog", &req)?;
        let state = self.state();
        let container = state.container(&req.container_id)?;
        if container.state != ContainerState::ContainerRunning {
            return Err(Error::failed_precondition(format!(
                "container {} is not running",
                container.id
            )));
        }
        // Logs are opened per write, so the next record lands in a fresh file at log_path.
        Ok(ReopenContainerLogResponse {})
    }

    async fn exec_sync(&self, _: Context, req: ExecSyncRequest) -> Result<ExecSyncResponse> {
        self.begin("ExecSync", &req)?;
        let script = {
            let state = self.state();
            let container = state.container(&req.container_id)?;
            if container.state != ContainerState::ContainerRunning {
                return Err(Error::failed_precondition(format!(
                    "container {} is not running",
                    container.id
                )));
            }
            let hostname = state
                .sandboxes
                .get(&container.sandbox_id)
                .map(|s| s.config.hostname.clone())
                .unwrap_or_default();
            self.inner.workload.exec(
                &ContainerInfo {
                    id: &container.id,
                    pod_sandbox_id: &container.sandbox_id,
                    hostname: &hostname,
                    config: &container.config,
                },
                &req.cmd,
                &[],
            )
        };
        let run = async {
            let mut out = ExecSyncResponse::default();
            for step in script.steps {
                match step {
                    Step::Write(stream, data) => {
                        let buf = match stream {
                            Stream::Stdout => &mut out.stdout,
                            Stream::Stderr => &mut out.stderr,
                        };
                        let room = EXEC_OUTPUT_LIMIT.saturating_sub(buf.len());
                        buf.extend_from_slice(&data[..data.len().min(room)]);
                    }
                    Step::Sleep(duration) => tokio::time::sleep(duration).await,
                    Step::Exit(code) => {
                        out.exit_code = code;
                        return out;
                    }
                    Step::Forever => std::future::pending::<()>().await,
                }
            }
            out
        };
        if req.timeout > 0 {
            let limit = Duration::from_secs(req.timeout.unsigned_abs());
            tokio::time::timeout(limit, run).await.map_err(|_| {
                Error::deadline_exceeded(format!(
                    "command {:?} timed out after {}s",
                    req.cmd, req.timeout
                ))
            })
        } else {
            Ok(run.await)
        }
    }

    async fn container_stats(
        &self,
        _: Context,
        req: ContainerStatsRequest,
    ) -> Result<ContainerStatsResponse> {
        self.begin("ContainerStats", &req)?;
        let state = self.state();
        let container = state.container(&req.container_id)?;
        Ok(ContainerStatsResponse {
            stats: Some(state.container_stats(container, now_nanos())),
        })
    }

    async fn list_container_stats(
        &self,
        _: Context,
        req: ListContainerStatsRequest,
    ) -> Result<ListContainerStatsResponse> {
        self.begin("ListContainerStats", &req)?;
        let filter = req.filter.unwrap_or_default();
        let state = self.state();
        let now = now_nanos();
        let stats = state
            .containers
            .values()
            .filter(|c| matches_id(&c.id, &filter.id))
            .filter(|c| matches_id(&c.sandbox_id, &filter.pod_sandbox_id))
            .filter(|c| matches_labels(&c.config.labels, &filter.label_selector))
            .map(|c| state.container_stats(c, now))
            .collect();
        Ok(ListContainerStatsResponse { stats })
    }

    async fn pod_sandbox_stats(
        &self,
        _: Context,
        req: PodSandboxStatsRequest,
    ) -> Result<PodSandboxStatsResponse> {
        self.begin("PodSandboxStats", &req)?;
        let state = self.state();
        let sandbox = state.sandbox(&req.pod_sandbox_id)?;
        Ok(PodSandboxStatsResponse {
            stats: Some(state.sandbox_stats(sandbox, now_nanos())),
        })
    }

    async fn list_pod_sandbox_stats(
        &self,
        _: Context,
        req: ListPodSandboxStatsRequest,
    ) -> Result<ListPodSandboxStatsResponse> {
        self.begin("ListPodSandboxStats", &req)?;
        let filter = req.filter.unwrap_or_default();
        let state = self.state();
        let now = now_nanos();
        let stats = state
            .sandboxes
            .values()
            .filter(|s| matches_id(&s.id, &filter.id))
            .filter(|s| matches_labels(&s.config.labels, &filter.label_selector))
            .map(|s| state.sandbox_stats(s, now))
            .collect();
        Ok(ListPodSandboxStatsResponse { stats })
    }

    async fn update_runtime_config(
        &self,
        _: Context,
        req: UpdateRuntimeConfigRequest,
    ) -> Result<UpdateRuntimeConfigResponse> {
        self.begin("UpdateRuntimeConfig", &req)?;
        let cidr = req
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        self.state().pod_cidr = cidr;
        Ok(UpdateRuntimeConfigResponse {})
    }

    async fn status(&self, _: Context, req: StatusRequest) -> Result<StatusResponse> {
        self.begin("Status", &req)?;
        let state = self.state();
        let mut info = HashMap::new();
        if req.verbose {
            let detail = serde_json::json!({
                "podCIDR": state.pod_cidr,
                "sandboxes": state.sandboxes.len(),
                "containers": state.containers.len(),
            });
            info.insert("config".to_string(), detail.to_string());
        }
        Ok(StatusResponse {
            status: Some(RuntimeStatus {
                conditions: state.conditions.clone(),
            }),
            info,
            runtime_handlers: vec![RuntimeHandler {
                name: String::new(),
                features: Some(RuntimeHandlerFeatures {
                    recursive_read_only_mounts: false,
                    user_namespaces: false,
                }),
            }],
            features: Some(RuntimeFeatures::default()),
        })
    }

    async fn get_container_events(
        &self,
        _: Context,
        req: GetEventsRequest,
    ) -> Result<ResponseStream<ContainerEventResponse>> {
        self.begin("GetContainerEvents", &req)?;
        Ok(self.inner.events.subscribe())
    }

    async fn runtime_config(
        &self,
        _: Context,
        req: RuntimeConfigRequest,
    ) -> Result<RuntimeConfigResponse> {
        self.begin("RuntimeConfig", &req)?;
        Ok(RuntimeConfigResponse {
            linux: Some(LinuxRuntimeConfiguration {
                cgroup_driver: self.inner.options.cgroup_driver as i32,
            }),
        })
    }

    async fn update_pod_sandbox_resources(
        &self,
        _: Context,
        req: UpdatePodSandboxResourcesRequest,
    ) -> Result<UpdatePodSandboxResourcesResponse> {
        self.begin("UpdatePodSandboxResources", &req)?;
        let mut state = self.state();
        state.sandbox(&req.pod_sandbox_id)?;
        if let Some(sandbox) = state.sandboxes.get_mut(&req.pod_sandbox_id) {
            sandbox.resources = req.resources;
        }
        Ok(UpdatePodSandboxResourcesResponse {})
    }
}

#[async_trait]
impl ImageService for FakeRuntime {
    async fn list_images(&self, _: Context, req: ListImagesRequest) -> Result<ListImagesResponse> {
        self.begin("ListImages", &req)?;
        let wanted = req
            .filter
            .and_then(|f| f.image)
            .map(|i| i.image)
            .unwrap_or_default();
        let state = self.state();
        let images = if wanted.is_empty() {
            state.images.list().cloned().collect()
        } else {
            state.images.find(&wanted).cloned().into_iter().collect()
        };
        Ok(ListImagesResponse { images })
    }

    async fn image_status(
        &self,
        _: Context,
        req: ImageStatusRequest,
    ) -> Result<ImageStatusResponse> {
        self.begin("ImageStatus", &req)?;
        let reference = req.image.map(|i| i.image).unwrap_or_default();
        let image = self.state().images.find(&reference).cloned();
        let mut info = HashMap::new();
        if req.verbose
            && let Some(image) = &image
        {
            info.insert(
                "info".to_string(),
                serde_json::json!({ "id": image.id, "size": image.size }).to_string(),
            );
        }
        Ok(ImageStatusResponse { image, info })
    }

    async fn pull_image(&self, _: Context, req: PullImageRequest) -> Result<PullImageResponse> {
        self.begin("PullImage", &req)?;
        let reference = req.image.map(|i| i.image).unwrap_or_default();
        let image_ref = self.state().images.pull(&reference);
        Ok(PullImageResponse { image_ref })
    }

    async fn remove_image(
        &self,
        _: Context,
        req: RemoveImageRequest,
    ) -> Result<RemoveImageResponse> {
        self.begin("RemoveImage", &req)?;
        let reference = req.image.map(|i| i.image).unwrap_or_default();
        self.state().images.remove(&reference);
        Ok(RemoveImageResponse {})
    }

    async fn image_fs_info(
        &self,
        _: Context,
        req: ImageFsInfoRequest,
    ) -> Result<ImageFsInfoResponse> {
        self.begin("ImageFsInfo", &req)?;
        let state = self.state();
        let now = now_nanos();
        let images = state.images.list().count() as u64;
        Ok(ImageFsInfoResponse {
            image_filesystems: vec![FilesystemUsage {
                timestamp: now,
                fs_id: Some(FilesystemIdentifier {
                    mountpoint: self.inner.options.image_fs_mountpoint.clone(),
                }),
                used_bytes: uint(state.images.total_size()),
                inodes_used: uint(images),
            }],
            container_filesystems: vec![FilesystemUsage {
                timestamp: now,
                fs_id: Some(FilesystemIdentifier {
                    mountpoint: "/var/lib/cri-testkit/containers".into(),
                }),
                used_bytes: uint(4096 * state.containers.len() as u64),
                inodes_used: uint(state.containers.len() as u64),
            }],
        })
    }
}
