//! The shim's runtime: a Docker client, the CRI log writers of running containers, and the
//! container-event fan-out. Every pod and container fact is read back from Docker (inspect,
//! list with label filters), so a restarted shim sees exactly what the previous one left.

mod containers;
mod exec;
mod pods;
mod service;
mod stats;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, ContainerSummary};
use bollard::query_parameters::{EventsOptions, InspectContainerOptions, ListContainersOptions};
use cri_api::v1::{ContainerEventResponse, ContainerEventType};
use cri_oci::log::LogWriter;
use cri_oci::spec::Host;
use cri_server::{EventBroadcaster, Result};
use futures_util::StreamExt;

use crate::error;
use crate::labels;

pub(crate) use pods::host_network;

/// How the shim was configured.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// `--root`.
    pub(crate) root: PathBuf,
    /// The pause image reference.
    pub(crate) pause_image: String,
    /// CNI for pods with their own network (not configured: they get only `lo`).
    pub(crate) cni: crate::cni::Cni,
}

/// The log writer of one container and the task feeding it from Docker's log stream.
struct LogPump {
    writer: LogWriter,
    task: tokio::task::JoinHandle<()>,
}

/// The runtime: serves both CRI services and streaming.
pub(crate) struct Runtime {
    /// How it was started.
    pub(crate) config: Config,
    /// The engine, with the API version negotiated (calls time out after 120 s).
    pub(crate) docker: Docker,
    /// The same engine for streams that last as long as a container or an exec (logs,
    /// events, exec and attach sessions): no practical timeout.
    pub(crate) streams: Docker,
    /// Host facts (hugetlb controller, capabilities) for mapping resources.
    pub(crate) host: Host,
    /// `GetContainerEvents` fan-out.
    pub(crate) events: EventBroadcaster,
    /// The Docker Engine version, for `Version` and `Status`.
    pub(crate) engine_version: String,
    logs: Mutex<HashMap<String, LogPump>>,
    this: Weak<Runtime>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A filter on the shim's label `kind`.
fn kind_filter(kind: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{}={kind}", labels::KIND)],
    )])
}

impl Runtime {
    /// Connects to the engine and resumes: log pumps for running containers, the event
    /// watcher.
    pub(crate) async fn open(config: Config, docker: Docker, host: Host) -> Result<Arc<Self>> {
        let engine_version = docker
            .version()
            .await
            .map_err(|e| error::docker("asking Docker Engine its version", e))?
            .version
            .unwrap_or_default();
        let streams = docker
            .clone()
            .with_timeout(Duration::from_secs(10 * 365 * 86_400));
        let runtime = Arc::new_cyclic(|this| Runtime {
            config,
            docker,
            streams,
            host,
            events: EventBroadcaster::default(),
            engine_version,
            logs: Mutex::default(),
            this: this.clone(),
        });
        let pods = runtime.list_kind(labels::SANDBOX).await?.len();
        let containers = runtime.list_kind(labels::CONTAINER).await?;
        for c in &containers {
            if c.state.as_ref().map(|s| s.to_string()).as_deref() == Some("running")
                && let Some(id) = &c.id
            {
                let log_path = labels::text(
                    c.labels.as_ref().unwrap_or(&HashMap::new()),
                    labels::LOG_PATH,
                );
                // Output written while no shim ran is not in the CRI log (Docker keeps it in
                // its own log); from now on it is.
                runtime.start_log_pump(id, &log_path, labels::now_nanos() / 1_000_000_000);
            }
        }
        tracing::info!(pods, containers = containers.len(), "state found in Docker");
        runtime.watch_events();
        Ok(runtime)
    }

    /// An owning handle for background tasks.
    fn arc(&self) -> Arc<Runtime> {
        self.this
            .upgrade()
            .expect("the runtime is alive while its methods run")
    }

    /// Every Docker container of the shim of `kind` (`sandbox` or `container`), any state.
    pub(crate) async fn list_kind(&self, kind: &str) -> Result<Vec<ContainerSummary>> {
        self.docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(kind_filter(kind)),
                ..Default::default()
            }))
            .await
            .map_err(|e| error::docker("listing containers", e))
    }

    /// Inspects a shim object of `kind`; `NotFound` for anything else (a container the shim
    /// did not create, a pod id given as a container id).
    pub(crate) async fn inspect_kind(
        &self,
        id: &str,
        kind: &str,
    ) -> Result<ContainerInspectResponse> {
        let what = if kind == labels::SANDBOX {
            "pod sandbox"
        } else {
            "container"
        };
        if id.is_empty() {
            return Err(cri_server::Error::not_found(format!("{what} id is empty")));
        }
        let found = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| {
                if error::is_not_found(&e) {
                    cri_server::Error::not_found(format!("{what} {id:?} not found"))
                } else {
                    error::docker(&format!("inspecting {what} {id}"), e)
                }
            })?;
        let labels = found
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .cloned()
            .unwrap_or_default();
        if labels.get(labels::KIND).map(String::as_str) != Some(kind) {
            return Err(cri_server::Error::not_found(format!(
                "{what} {id:?} not found"
            )));
        }
        Ok(found)
    }

    /// Starts copying a container's Docker log stream into its CRI log file (`log_path`
    /// empty: no CRI log). `since`: seconds since the epoch (0: from the start).
    pub(crate) fn start_log_pump(&self, id: &str, log_path: &str, since: i64) {
        if log_path.is_empty() {
            return;
        }
        let writer = match LogWriter::open(log_path, cri_oci::log::LogOptions::default()) {
            Ok(writer) => writer,
            Err(e) => {
                tracing::warn!(id, log_path, error = %e, "opening the container log");
                return;
            }
        };
        let task = tokio::spawn(logs::pump(
            self.streams.clone(),
            id.to_string(),
            writer.clone(),
            since,
        ));
        if let Some(old) = lock(&self.logs).insert(id.to_string(), LogPump { writer, task }) {
            old.task.abort();
        }
    }

    /// Waits (a little) for the log pump of `id` to drain, then closes the writer.
    pub(crate) async fn finish_log_pump(&self, id: &str, wait: Duration) {
        let pump = lock(&self.logs).remove(id);
        if let Some(LogPump { writer, task }) = pump {
            let abort = task.abort_handle();
            if tokio::time::timeout(wait, task).await.is_err() {
                abort.abort();
            }
            let _ = writer.close().await;
        }
    }

    /// Flushes the log of `id` (after an exit, so the log is complete when the status says
    /// exited).
    pub(crate) async fn flush_log(&self, id: &str) {
        let writer = lock(&self.logs).get(id).map(|p| p.writer.clone());
        if let Some(writer) = writer {
            let _ = writer.flush().await;
        }
    }

    /// Reopens the CRI log of `id` (ReopenContainerLog).
    pub(crate) async fn reopen_log_of(&self, id: &str) -> Result<()> {
        let writer = lock(&self.logs).get(id).map(|p| p.writer.clone());
        match writer {
            Some(writer) => writer.reopen().await.map_err(error::oci),
            None => Err(cri_server::Error::failed_precondition(format!(
                "container {id} has no open log (not running, or no log path)"
            ))),
        }
    }

    /// The marker of an OOM kill Docker reported as an event: Docker sets `OOMKilled` only
    /// when containerd's OOM event comes before the exit, so the event is kept in
    /// `<root>/oom/<id>` for ContainerStatus.
    fn oom_marker(&self, id: &str) -> PathBuf {
        self.config.root.join("oom").join(id)
    }

    fn record_oom(&self, id: &str) {
        tracing::info!(id, "Docker reported an OOM kill");
        let marker = self.oom_marker(id);
        if let Some(dir) = marker.parent()
            && let Err(e) = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&marker, b""))
        {
            tracing::warn!(id, error = %e, "recording an OOM kill");
        }
    }

    /// Whether Docker reported an OOM kill of `id` (waiting up to `wait` for the event).
    pub(crate) async fn oom_recorded(&self, id: &str, wait: Duration) -> bool {
        let marker = self.oom_marker(id);
        let started = std::time::Instant::now();
        loop {
            if marker.exists() {
                return true;
            }
            if started.elapsed() >= wait {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Forgets the OOM marker of a removed container.
    pub(crate) fn forget_oom(&self, id: &str) {
        let _ = std::fs::remove_file(self.oom_marker(id));
    }

    /// Follows Docker's `oom` events on a stream of their own (publishing the others takes
    /// engine calls per event; an OOM marker must not wait behind them).
    fn watch_ooms(&self) {
        let runtime = self.arc();
        tokio::spawn(async move {
            let mut since = labels::now_nanos() / 1_000_000_000;
            loop {
                let mut filters = kind_filter(labels::CONTAINER);
                filters.insert("type".into(), vec!["container".into()]);
                filters.insert("event".into(), vec!["oom".into()]);
                let mut stream = runtime.streams.events(Some(EventsOptions {
                    since: Some(since.to_string()),
                    filters: Some(filters),
                    ..Default::default()
                }));
                while let Some(Ok(event)) = stream.next().await {
                    since = event.time.unwrap_or(since);
                    if let Some(id) = event.actor.and_then(|a| a.id) {
                        runtime.record_oom(&id);
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }

    /// Follows Docker's event stream (reconnecting) and publishes the shim containers'
    /// events: create, start, die, destroy.
    fn watch_events(&self) {
        self.watch_ooms();
        let runtime = self.arc();
        tokio::spawn(async move {
            let mut since = labels::now_nanos() / 1_000_000_000;
            // Events already published: a reconnection asks again from the last second seen.
            let mut seen = BTreeMap::new();
            loop {
                let mut filters = kind_filter(labels::CONTAINER);
                filters.insert("type".into(), vec!["container".into()]);
                filters.insert(
                    "event".into(),
                    ["create", "start", "die", "destroy"]
                        .map(String::from)
                        .to_vec(),
                );
                let mut stream = runtime.streams.events(Some(EventsOptions {
                    since: Some(since.to_string()),
                    filters: Some(filters),
                    ..Default::default()
                }));
                while let Some(event) = stream.next().await {
                    let Ok(event) = event else { break };
                    since = event.time.unwrap_or(since);
                    let Some(id) = event.actor.as_ref().and_then(|a| a.id.clone()) else {
                        continue;
                    };
                    let key = (
                        event.time_nano.unwrap_or(0),
                        id.clone(),
                        event.action.clone(),
                    );
                    if seen.insert(key, ()).is_some() {
                        continue;
                    }
                    while seen.len() > 4096 {
                        seen.pop_first();
                    }
                    let kind = match event.action.as_deref() {
                        Some("create") => ContainerEventType::ContainerCreatedEvent,
                        Some("start") => ContainerEventType::ContainerStartedEvent,
                        Some("die") => ContainerEventType::ContainerStoppedEvent,
                        Some("destroy") => ContainerEventType::ContainerDeletedEvent,
                        _ => continue,
                    };
                    let attributes = event.actor.and_then(|a| a.attributes).unwrap_or_default();
                    runtime
                        .publish(&id, kind, &attributes, event.time_nano.unwrap_or(0))
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }

    async fn publish(
        &self,
        id: &str,
        kind: ContainerEventType,
        attributes: &HashMap<String, String>,
        at: i64,
    ) {
        if kind == ContainerEventType::ContainerStoppedEvent {
            self.flush_log(id).await;
        }
        let pod_id = labels::text(attributes, labels::POD_ID);
        let pod_sandbox_status = self.pod_status(&pod_id).await.ok();
        let containers_statuses = if kind == ContainerEventType::ContainerDeletedEvent {
            Vec::new()
        } else {
            self.container_status(id)
                .await
                .map(|s| vec![s])
                .unwrap_or_default()
        };
        self.events.publish(ContainerEventResponse {
            container_id: id.to_string(),
            container_event_type: kind as i32,
            created_at: if at > 0 { at } else { labels::now_nanos() },
            pod_sandbox_status,
            containers_statuses,
        });
    }
}

/// Docker's log stream into a CRI log writer.
mod logs {
    use bollard::Docker;
    use bollard::container::LogOutput;
    use bollard::query_parameters::LogsOptions;
    use cri_oci::log::{LogWriter, Stream};
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;

    /// Follows the container's stdout and stderr from `since` (seconds; 0: from the start)
    /// until the container exits, writing each stream through its own pipe into `writer`.
    pub(super) async fn pump(docker: Docker, id: String, writer: LogWriter, since: i64) {
        let (mut out_tx, out_rx) = tokio::io::duplex(64 * 1024);
        let (mut err_tx, err_rx) = tokio::io::duplex(64 * 1024);
        let out = writer.attach(Stream::Stdout, out_rx);
        let err = writer.attach(Stream::Stderr, err_rx);
        let mut stream = docker.logs(
            &id,
            Some(LogsOptions {
                follow: true,
                stdout: true,
                stderr: true,
                since: i32::try_from(since).unwrap_or(0),
                tail: "all".into(),
                ..Default::default()
            }),
        );
        while let Some(chunk) = stream.next().await {
            let written = match chunk {
                Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                    out_tx.write_all(&message).await
                }
                Ok(LogOutput::StdErr { message }) => err_tx.write_all(&message).await,
                Ok(LogOutput::StdIn { .. }) => Ok(()),
                Err(e) => {
                    tracing::debug!(id, error = %e, "the container's log stream ended");
                    break;
                }
            };
            if written.is_err() {
                break;
            }
        }
        let _ = out_tx.shutdown().await;
        let _ = err_tx.shutdown().await;
        drop((out_tx, err_tx));
        let _ = out.await;
        let _ = err.await;
        let _ = writer.flush().await;
    }
}
