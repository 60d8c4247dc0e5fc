//! The runtime's state: pods and containers in memory, mirrored on disk, with one watcher task
//! per live monitor.
//!
//! Locking: the two maps are behind short-lived std mutexes (never held across an await);
//! each object has a tokio mutex (`op`) that serialises the slow operations on it (start,
//! stop, remove, update), and a watch channel that carries its exit once seen.

mod containers;
mod exec;
mod pods;
mod service;
mod stats;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use cri_api::v1::{ContainerEventResponse, ContainerEventType};
use cri_oci::image::{RegistryConfig, Store};
use cri_oci::spec::Host;
use cri_server::{EventBroadcaster, Result};
use tokio::sync::watch;

use crate::cgroups::Cgroups;
use crate::cni::Cni;
use crate::monitor::protocol::{self, ExitRecord, Handshake, MonitorConfig, Request};
use crate::runc::Runc;
use crate::state::{self, ContainerRecord, PodIntent, PodRecord};

pub(crate) use containers::Container;
pub(crate) use exec::{Adopted, ExecFiles, KillOnDrop};
pub(crate) use pods::{Pod, host_network};
pub(crate) use stats::disk_usage;

/// How the runtime was configured.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// `--root`.
    pub(crate) root: PathBuf,
    /// The pause image reference.
    pub(crate) pause_image: String,
    /// Mirrors and plain-HTTP hosts for pulls.
    pub(crate) registry: RegistryConfig,
    /// The executable that runs monitors, started as `<exe> monitor <dir>`.
    pub(crate) monitor_exe: PathBuf,
    /// CNI for pods with their own network (not configured: they get only `lo`).
    pub(crate) cni: Cni,
}

/// The runtime: serves both CRI services (`service.rs`, `crate::images`) and streaming
/// (`crate::streaming`).
pub(crate) struct Runtime {
    /// How it was started.
    pub(crate) config: Config,
    /// runc, with our `--root`.
    pub(crate) runc: Runc,
    /// The image store under `<root>/images`.
    pub(crate) images: Store,
    /// Host facts for spec generation.
    pub(crate) host: Host,
    /// Where stats and OOM counters are read.
    pub(crate) cgroups: Cgroups,
    /// `GetContainerEvents` fan-out.
    pub(crate) events: EventBroadcaster,
    pods: Mutex<BTreeMap<String, Arc<Pod>>>,
    containers: Mutex<BTreeMap<String, Arc<Container>>>,
    /// Pod and container names being created or in use (CRI forbids duplicates).
    names: Mutex<HashSet<String>>,
    /// A handle on ourselves, for the background watcher tasks.
    this: Weak<Runtime>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A fresh 64-hex-digit id, from the operating system's randomness.
pub(crate) fn new_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| cri_server::Error::internal(format!("no randomness for a new id: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What the host allows (`Host::detect`: OOM-score clamping without `CAP_SYS_RESOURCE`,
/// recursive read-only mounts by kernel, the capabilities this process can grant, whether
/// the hugetlb controller exists), with the runtime's cgroup parent.
pub(crate) fn detect_host(cgroup_parent: &str) -> Host {
    let mut host = Host::detect();
    host.cgroup_parent = cgroup_parent.to_string();
    host
}

impl Runtime {
    /// Opens (or creates) the state under `config.root` and reattaches to everything that
    /// survived: live monitors get a watcher; containers whose monitor is gone are reported
    /// exited with reason `Unknown`.
    pub(crate) async fn open(config: Config, runc: Runc, host: Host) -> std::io::Result<Arc<Self>> {
        for dir in ["pods", "containers", "images"] {
            std::fs::create_dir_all(config.root.join(dir))?;
        }
        std::fs::create_dir_all(runc.root())?;
        let images = Store::open(config.root.join("images")).map_err(std::io::Error::other)?;
        let runtime = Arc::new_cyclic(|this| Runtime {
            config,
            runc,
            images,
            host,
            cgroups: Cgroups::default(),
            events: EventBroadcaster::default(),
            pods: Mutex::default(),
            containers: Mutex::default(),
            names: Mutex::default(),
            this: this.clone(),
        });
        runtime.recover().await;
        Ok(runtime)
    }

    /// An owning handle for background tasks.
    fn arc(&self) -> Arc<Runtime> {
        self.this
            .upgrade()
            .expect("the runtime is alive while its methods run")
    }

    fn pods_dir(&self) -> PathBuf {
        self.config.root.join("pods")
    }

    fn containers_dir(&self) -> PathBuf {
        self.config.root.join("containers")
    }

    async fn recover(&self) {
        for (dir, record) in state::load_all::<PodRecord>(&self.pods_dir(), state::POD_FILE) {
            match record {
                Ok(record) => {
                    let exit = protocol::read_exit(&dir);
                    let name = pods::name_key(&record.config);
                    let pod = Arc::new(Pod::new(dir, record, exit.clone()));
                    lock(&self.names).insert(name);
                    lock(&self.pods).insert(pod.id(), pod.clone());
                    if exit.is_none() {
                        self.watch_pod(&pod);
                    }
                }
                Err(why) => {
                    tracing::warn!(dir = %dir.display(), %why, "removing an unfinished pod");
                    self.discard_dir(&dir).await;
                }
            }
        }
        for (dir, record) in
            state::load_all::<ContainerRecord>(&self.containers_dir(), state::CONTAINER_FILE)
        {
            match record {
                Ok(mut record) => {
                    let exit = protocol::read_exit(&dir);
                    if exit.is_none() && record.started_at == 0 {
                        self.recover_start(&dir, &mut record).await;
                    }
                    let name = containers::name_key(&record.pod_id, &record.config);
                    let container = Arc::new(Container::new(dir, record, exit.clone()));
                    lock(&self.names).insert(name);
                    lock(&self.containers).insert(container.id(), container.clone());
                    if exit.is_none() {
                        self.watch_container(&container);
                    }
                }
                Err(why) => {
                    tracing::warn!(dir = %dir.display(), %why, "removing an unfinished container");
                    self.discard_dir(&dir).await;
                }
            }
        }
        let (pods, containers) = (lock(&self.pods).len(), lock(&self.containers).len());
        tracing::info!(pods, containers, "state loaded");
    }

    /// A container recorded as created whose StartContainer was cut off by a crash after
    /// `runc start` ran: runc knows it started, so the record says so too (with the time of
    /// recovery, the best this runtime can know), and a second start is not attempted.
    async fn recover_start(&self, dir: &Path, record: &mut ContainerRecord) {
        match self.runc.status(&record.id).await {
            Ok(status) if status != "created" => {
                tracing::warn!(
                    id = %record.id,
                    %status,
                    "a start cut off by a restart had happened; recording it"
                );
                record.started_at = protocol::now_nanos();
                if let Err(e) = state::save(dir, state::CONTAINER_FILE, &*record) {
                    tracing::warn!(id = %record.id, error = %e, "writing container.json");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(id = %record.id, error = %e, "runc state at recovery"),
        }
    }

    /// Removes what an interrupted creation left: runc's container, a pod's CNI attachment
    /// and cgroups (from its intent file), the rootfs, a pinned network namespace, the
    /// directory.
    async fn discard_dir(&self, dir: &Path) {
        let id = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        // A runtime killed mid-creation leaves the monitor (and its `runc create`) running:
        // they must be gone before runc's state and the cgroups are removed, or they recreate
        // them afterwards.
        stop_stragglers(dir, &id).await;
        if !id.is_empty() {
            if let Err(e) = self.runc.delete(&id).await {
                tracing::warn!(id, error = %e, "runc delete of an unfinished container");
            }
            // A `runc create` cut off before its state was complete leaves a directory runc
            // itself no longer recognizes.
            let _ = std::fs::remove_dir_all(self.runc.root().join(&id));
        }
        let intent = std::fs::read(dir.join(state::INTENT_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<PodIntent>(&bytes).ok());
        if let Some(intent) = &intent
            && let Some(list) = &intent.network
        {
            // DEL tolerates what ADD never did; the namespace is still pinned here.
            let netns = dir.join(crate::netns::FILE);
            let attachment = crate::cni::Attachment::for_pod(&id, &netns, &intent.config);
            if let Err(e) = self.config.cni.del(list, &attachment, None).await {
                tracing::warn!(id, error = %e, "CNI DEL of an unfinished pod");
            }
        }
        if let Err(e) = cri_oci::image::cleanup_rootfs(&dir.join("rootfs")) {
            tracing::warn!(dir = %dir.display(), error = %e, "removing an unfinished rootfs");
        }
        if let Err(e) = crate::netns::unpin(&dir.join(crate::netns::FILE)) {
            tracing::warn!(dir = %dir.display(), error = %e, "unpinning a network namespace");
        }
        let _ = std::fs::remove_dir_all(dir);
        if let Some(intent) = &intent {
            // The pause container's own cgroup is the pod's alone: whatever still runs in it
            // (a `runc init` whose create was cut off) goes, then the cgroups the pod made.
            if !intent.cgroup_path.is_empty() {
                self.cgroups.kill_and_remove(&intent.cgroup_path).await;
            }
            for cgroup in &intent.created_cgroups {
                self.cgroups.remove(cgroup);
            }
        }
    }

    pub(crate) fn pod(&self, id: &str) -> Option<Arc<Pod>> {
        lock(&self.pods).get(id).cloned()
    }

    pub(crate) fn container(&self, id: &str) -> Option<Arc<Container>> {
        lock(&self.containers).get(id).cloned()
    }

    pub(crate) fn all_pods(&self) -> Vec<Arc<Pod>> {
        lock(&self.pods).values().cloned().collect()
    }

    pub(crate) fn all_containers(&self) -> Vec<Arc<Container>> {
        lock(&self.containers).values().cloned().collect()
    }

    pub(crate) fn containers_of(&self, pod_id: &str) -> Vec<Arc<Container>> {
        lock(&self.containers)
            .values()
            .filter(|c| c.pod_id() == pod_id)
            .cloned()
            .collect()
    }

    /// Reserves a name; `false` if it is taken.
    fn reserve(&self, key: String) -> bool {
        lock(&self.names).insert(key)
    }

    fn release(&self, key: &str) {
        lock(&self.names).remove(key);
    }

    /// Starts the monitor for the bundle in `dir` and waits for `runc create` to finish;
    /// returns the init pid.
    async fn start_monitor(&self, dir: &Path, config: &MonitorConfig) -> Result<u32> {
        use tokio::io::AsyncBufReadExt;
        state::save(dir, protocol::CONFIG_FILE, config)
            .map_err(|e| crate::error::io("writing monitor.json", e))?;
        let log = std::fs::File::create(dir.join(protocol::MONITOR_LOG_FILE))
            .map_err(|e| crate::error::io("creating monitor.log", e))?;
        let mut child = tokio::process::Command::new(&self.config.monitor_exe)
            .arg("monitor")
            .arg(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| crate::error::io("starting the container monitor", e))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| cri_server::Error::internal("the monitor has no stdout"))?;
        let mut line = String::new();
        let mut reader = tokio::io::BufReader::new(stdout);
        let read = tokio::time::timeout(Duration::from_secs(120), reader.read_line(&mut line));
        let failure = match read.await {
            Ok(Ok(n)) if n > 0 => match serde_json::from_str::<Handshake>(&line) {
                Ok(Handshake { pid: Some(pid), .. }) => {
                    // The monitor lives on after this; dropping the handle leaves it running
                    // and Tokio reaps it when it exits (while this runtime lives).
                    drop(child);
                    return Ok(pid);
                }
                Ok(Handshake { error, .. }) => format!(
                    "runc create failed: {}",
                    error.unwrap_or_else(|| "no reason given".into())
                ),
                Err(e) => format!("unreadable monitor handshake {line:?}: {e}"),
            },
            Ok(_) => {
                let log = std::fs::read_to_string(dir.join(protocol::MONITOR_LOG_FILE))
                    .unwrap_or_default();
                format!(
                    "the container monitor exited before creating the container: {}",
                    log.trim()
                )
            }
            Err(_) => "runc create did not finish within 120 s".to_string(),
        };
        self.abandon_monitor(child, &config.id).await;
        Err(cri_server::Error::internal(failure))
    }

    /// Stops a monitor whose `runc create` failed or never finished, so that the caller's
    /// cleanup does not race a container still being created: the monitor's process group
    /// (the monitor and its `runc create`) is killed and the monitor reaped; then runc forgets
    /// whatever it had created.
    async fn abandon_monitor(&self, mut child: tokio::process::Child, id: &str) {
        // The monitor leads its own process group once it has called setsid. While it is
        // our unreaped child its pid names no other group, so this reaches only its own.
        if let Some(pid) = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = child.start_kill();
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            tracing::warn!(id, "the container monitor did not exit after SIGKILL");
        }
        if let Err(e) = self.runc.delete(id).await {
            tracing::warn!(id, error = %e, "runc delete after a failed create");
        }
    }

    /// Watches the pause container of `pod`: when it exits, the pod is no longer ready.
    fn watch_pod(&self, pod: &Arc<Pod>) {
        let runtime = self.arc();
        let pod = pod.clone();
        tokio::spawn(async move {
            let exit = wait_exit(&pod.dir).await;
            let exit = match exit {
                Ok(exit) => exit,
                Err(lost) => {
                    runtime
                        .handle_lost(&pod.dir, &pod.id(), pod.pause_pid(), lost)
                        .await
                }
            };
            pod.set_exit(exit);
        });
    }

    /// Watches `container`: when it exits, publishes the stopped event, then the exit.
    fn watch_container(&self, container: &Arc<Container>) {
        let runtime = self.arc();
        let container = container.clone();
        tokio::spawn(async move {
            let exit = match wait_exit(&container.dir).await {
                Ok(exit) => exit,
                Err(lost) => {
                    runtime
                        .handle_lost(&container.dir, &container.id(), container.pid(), lost)
                        .await
                }
            };
            // A start in progress publishes its event first, so the order stays
            // created, started, stopped.
            let gate = container.start_gate.lock().await;
            container.set_exit(exit);
            runtime.publish(&container, ContainerEventType::ContainerStoppedEvent);
            drop(gate);
        });
    }

    /// A monitor that died without recording the exit: the container's output and status
    /// are lost. The container is killed (nothing owns its stdio any more) and reported
    /// exited with reason `Unknown`; the record is persisted so a restart agrees.
    async fn handle_lost(&self, dir: &Path, id: &str, pid: u32, lost: ExitRecord) -> ExitRecord {
        tracing::warn!(id, message = %lost.message, "container monitor lost");
        if let Err(e) = self.runc.kill(id, "KILL", false).await
            && !e.is_not_running()
            && !e.is_not_found()
        {
            tracing::warn!(id, error = %e, "killing a container whose monitor is gone");
        }
        // If its init was reparented to us (we are a subreaper), reap it.
        if let Some(pid) = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let mut reaped = false;
            for _ in 0..20 {
                match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG) {
                    Ok(Some(_)) | Err(_) => {
                        reaped = true;
                        break;
                    }
                    Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            if !reaped {
                // Still dying (a slow exit, a process in uninterruptible sleep): a blocking
                // thread waits for it however long it takes, or it would stay a zombie.
                let id = id.to_string();
                tokio::task::spawn_blocking(move || {
                    loop {
                        match rustix::process::waitpid(
                            Some(pid),
                            rustix::process::WaitOptions::empty(),
                        ) {
                            Err(rustix::io::Errno::INTR) => continue,
                            Err(e) => {
                                tracing::debug!(id, error = %e, "waiting for a lost container");
                                return;
                            }
                            Ok(_) => return,
                        }
                    }
                });
            }
        }
        if let Err(e) = protocol::write_json_atomic(&dir.join(protocol::EXIT_FILE), &lost) {
            tracing::warn!(id, error = %e, "recording a lost container");
        }
        lost
    }

    /// Publishes a container event with the container's and its pod's status.
    pub(crate) fn publish(&self, container: &Container, kind: ContainerEventType) {
        let pod_sandbox_status = self.pod(&container.pod_id()).map(|p| p.status());
        self.events.publish(ContainerEventResponse {
            container_id: container.id(),
            container_event_type: kind as i32,
            created_at: protocol::now_nanos(),
            pod_sandbox_status,
            containers_statuses: if kind == ContainerEventType::ContainerDeletedEvent {
                Vec::new()
            } else {
                vec![container.status()]
            },
        });
    }
}

/// Waits for the monitor in `dir` to report the exit. `Err` carries the record of a lost
/// monitor (gone without writing `exit.json`).
async fn wait_exit(dir: &Path) -> std::result::Result<ExitRecord, ExitRecord> {
    let mut failures = 0;
    loop {
        match protocol::call(dir, &Request::Wait).await {
            Ok((reply, _)) if reply.exit.is_some() => {
                return Ok(reply.exit.unwrap_or_else(|| ExitRecord::lost("")));
            }
            _ => {
                // The monitor is gone or went away mid-answer: it may have just recorded the
                // exit and left.
                if let Some(exit) = protocol::read_exit(dir) {
                    return Ok(exit);
                }
                failures += 1;
                if protocol::connect(dir).await.is_ok() && failures < 50 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Some(exit) = protocol::read_exit(dir) {
                    return Ok(exit);
                }
                return Err(ExitRecord::lost(
                    "the container's monitor process exited without recording how the \
                     container ended; its exit code and any output since are lost",
                ));
            }
        }
    }
}

/// Blocks on the watch channel until an exit is recorded, for at most `limit`.
pub(crate) async fn exited_within(
    exit: &watch::Sender<Option<ExitRecord>>,
    limit: Duration,
) -> Option<ExitRecord> {
    let mut receiver = exit.subscribe();
    match tokio::time::timeout(limit, receiver.wait_for(Option::is_some)).await {
        Ok(Ok(record)) => record.clone(),
        _ => None,
    }
}

/// SIGKILLs the monitor serving `dir` (`<exe> monitor <dir>`), then waits (up to 30 s) for
/// every `runc` process naming `id` to finish: a `runc create` is left to complete, so that
/// runc's own `delete` can undo it afterwards.
async fn stop_stragglers(dir: &Path, id: &str) {
    let dir = dir.as_os_str().as_encoded_bytes();
    let is_monitor = |args: &[&[u8]]| args.len() == 3 && args[1] == b"monitor" && args[2] == dir;
    for pid in processes(is_monitor) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    let names_id = |args: &[&[u8]]| {
        !id.is_empty()
            && (is_monitor(args)
                || (args.first().is_some_and(|a| a.ends_with(b"runc"))
                    && args.contains(&id.as_bytes())))
    };
    let started = std::time::Instant::now();
    while !processes(names_id).is_empty() && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The processes whose command line (split at NULs) satisfies `matches`.
fn processes(matches: impl Fn(&[&[u8]]) -> bool) -> Vec<rustix::process::Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline
                .strip_suffix(b"\0")
                .unwrap_or(&cmdline)
                .split(|b| *b == 0)
                .collect();
            matches(&args)
                .then(|| rustix::process::Pid::from_raw(pid))
                .flatten()
        })
        .collect()
}
