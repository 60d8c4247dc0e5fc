//! [`FakeRuntime`]: an in-memory CRI runtime that follows the CRI state machine.

mod images;
mod runtime;
mod streaming;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use cri_api::v1::*;
use cri_server::{Error, EventBroadcaster};
use sha2::{Digest, Sha256};

use crate::workload::{Shell, Workload};

pub use images::normalize as normalize_image_reference;

/// Nanoseconds since the Unix epoch, now.
pub(crate) fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// One call the fake received, in arrival order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// The CRI method, e.g. `"CreateContainer"`.
    pub method: &'static str,
    /// The request's `Debug` text (credentials redacted).
    pub request: String,
}

/// A sandbox as the fake stores it.
#[derive(Clone, Debug)]
pub(crate) struct SandboxRecord {
    pub(crate) id: String,
    pub(crate) config: PodSandboxConfig,
    pub(crate) runtime_handler: String,
    pub(crate) state: PodSandboxState,
    pub(crate) created_at: i64,
    pub(crate) ip: String,
    pub(crate) resources: Option<LinuxContainerResources>,
}

/// A container as the fake stores it.
#[derive(Debug)]
pub(crate) struct ContainerRecord {
    pub(crate) id: String,
    pub(crate) sandbox_id: String,
    pub(crate) config: ContainerConfig,
    pub(crate) image_id: String,
    pub(crate) state: ContainerState,
    pub(crate) created_at: i64,
    pub(crate) started_at: i64,
    pub(crate) finished_at: i64,
    pub(crate) exit_code: i32,
    pub(crate) reason: String,
    pub(crate) message: String,
    pub(crate) resources: Option<LinuxContainerResources>,
    pub(crate) log_path: Option<PathBuf>,
    /// The simulated main process, while running.
    pub(crate) process: Option<tokio::task::AbortHandle>,
    /// Bumped at every start so that a stale process task cannot touch a later run.
    pub(crate) generation: u64,
}

/// Everything the fake holds, behind one lock.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) sandboxes: BTreeMap<String, SandboxRecord>,
    pub(crate) containers: BTreeMap<String, ContainerRecord>,
    pub(crate) images: images::ImageStore,
    pub(crate) conditions: Vec<RuntimeCondition>,
    pub(crate) pod_cidr: String,
    pub(crate) container_stats: HashMap<String, ContainerStats>,
    pub(crate) sandbox_stats: HashMap<String, PodSandboxStats>,
    pub(crate) next_ip: u32,
}

/// A call as the log keeps it: the request itself, formatted only when the log is read.
struct LoggedCall {
    method: &'static str,
    request: Box<dyn std::fmt::Debug + Send + Sync>,
}

pub(crate) struct Inner {
    pub(crate) state: Mutex<State>,
    pub(crate) events: EventBroadcaster,
    calls: Mutex<Vec<LoggedCall>>,
    faults: Mutex<HashMap<String, VecDeque<Error>>>,
    /// Errors queued in `faults`, so that calls skip that lock while none are.
    queued_faults: AtomicUsize,
    pub(crate) workload: Arc<dyn Workload>,
    deterministic: bool,
    next_id: AtomicU64,
    pub(crate) options: Options,
    pub(crate) resizes: Mutex<Vec<cri_streaming::TerminalSize>>,
}

#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) runtime_name: String,
    pub(crate) runtime_version: String,
    pub(crate) cgroup_driver: CgroupDriver,
    pub(crate) image_fs_mountpoint: String,
}

/// An in-memory CRI runtime for tests: sandboxes, containers and images that follow the CRI
/// state machine, with everything a test needs to observe and steer it.
///
/// - sandboxes: `SANDBOX_READY` → `SANDBOX_NOTREADY`; stop and remove are idempotent; removal
///   removes their containers; `NotFound` for unknown ids in status calls;
/// - containers: `CREATED` → `RUNNING` → `EXITED` with exit code, timestamps and reason;
///   their command runs through a [`Workload`] (default [`Shell`]) that writes CRI-format logs
///   to `log_directory/log_path` and decides when they exit; `ExecSync` runs commands the same
///   way, honouring the timeout;
/// - images: pulled (deterministically made up), listed, looked up by tag, id or digest,
///   removed; `ImageStatus` of a missing image succeeds with no image;
/// - events on every container transition, filters by id, state, sandbox and labels;
/// - a call log, queued error injection per method, hooks to change statuses and stats, and
///   deterministic ids on request.
///
/// It also implements [`cri_streaming::StreamingRuntime`]: served with a streaming server
/// (as [`Harness::fake`](crate::Harness::fake) does), `Exec`, `Attach` and `PortForward`
/// work — commands run through the workload, `cat` and `attach` echo stdin, a bare `sh` is
/// a line-by-line interactive shell, and port-forward reaches loopback ports of this machine.
/// Checkpointing and the metrics RPCs answer `Unimplemented`.
///
/// ```
/// use cri_testkit::FakeRuntime;
///
/// let fake = FakeRuntime::builder().deterministic_ids().image("busybox").build();
/// assert!(fake.has_image("docker.io/library/busybox:latest"));
/// fake.fail_next("RunPodSandbox", cri_server::Error::unavailable("injected"));
/// ```
#[derive(Clone)]
pub struct FakeRuntime {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("FakeRuntime")
            .field("sandboxes", &state.sandboxes.len())
            .field("containers", &state.containers.len())
            .finish_non_exhaustive()
    }
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::builder().build()
    }
}

/// Configures a [`FakeRuntime`].
#[derive(Clone)]
pub struct FakeBuilder {
    workload: Arc<dyn Workload>,
    deterministic: bool,
    images: Vec<String>,
    options: Options,
    event_buffer: usize,
}

impl std::fmt::Debug for FakeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeBuilder")
            .field("deterministic", &self.deterministic)
            .field("images", &self.images)
            .finish_non_exhaustive()
    }
}

impl FakeBuilder {
    /// Ids derived from a counter (same sequence every run) instead of random ones.
    pub fn deterministic_ids(mut self) -> Self {
        self.deterministic = true;
        self
    }

    /// An image present from the start (as if pulled).
    pub fn image(mut self, reference: impl Into<String>) -> Self {
        self.images.push(reference.into());
        self
    }

    /// What containers and exec'd commands do (default [`Shell`]).
    pub fn workload(mut self, workload: impl Workload) -> Self {
        self.workload = Arc::new(workload);
        self
    }

    /// The `runtime_name` and `runtime_version` that `Version` reports.
    pub fn name(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.options.runtime_name = name.into();
        self.options.runtime_version = version.into();
        self
    }

    /// How many events a `GetContainerEvents` subscriber may fall behind (default 1024).
    pub fn event_buffer(mut self, events: usize) -> Self {
        self.event_buffer = events;
        self
    }

    /// Builds the runtime.
    pub fn build(self) -> FakeRuntime {
        let mut state = State {
            conditions: vec![
                condition(cri_api::well_known::condition::RUNTIME_READY, true),
                condition(cri_api::well_known::condition::NETWORK_READY, true),
            ],
            next_ip: 2,
            ..Default::default()
        };
        for image in &self.images {
            state.images.pull(image);
        }
        FakeRuntime {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                events: EventBroadcaster::new(self.event_buffer),
                calls: Mutex::new(Vec::new()),
                faults: Mutex::new(HashMap::new()),
                queued_faults: AtomicUsize::new(0),
                workload: self.workload,
                deterministic: self.deterministic,
                next_id: AtomicU64::new(1),
                options: self.options,
                resizes: Mutex::new(Vec::new()),
            }),
        }
    }
}

fn condition(kind: &str, status: bool) -> RuntimeCondition {
    RuntimeCondition {
        r#type: kind.to_string(),
        status,
        reason: String::new(),
        message: String::new(),
    }
}

impl FakeRuntime {
    /// Starts configuring a fake runtime.
    pub fn builder() -> FakeBuilder {
        FakeBuilder {
            workload: Arc::new(Shell),
            deterministic: false,
            images: Vec::new(),
            options: Options {
                runtime_name: "cri-testkit-fake".into(),
                runtime_version: env!("CARGO_PKG_VERSION").into(),
                cgroup_driver: CgroupDriver::Cgroupfs,
                image_fs_mountpoint: "/var/lib/cri-testkit/images".into(),
            },
            event_buffer: 1024,
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied transition: every
        // mutation is a single assignment sequence, so the data stays usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new object id: 64 hex characters, like containerd's.
    pub(crate) fn new_id(&self, kind: &str) -> String {
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let seed = if self.inner.deterministic {
            format!("{kind}:{n}")
        } else {
            format!("{kind}:{n}:{}:{}", now_nanos(), std::process::id())
        };
        Sha256::digest(seed.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Records the call and returns the injected error queued for `method`, if any.
    ///
    /// The log keeps a copy of the request and formats it only when read: a clone costs a
    /// fraction of `Debug` formatting on every call.
    pub(crate) fn begin<R>(&self, method: &'static str, request: &R) -> Result<(), Error>
    where
        R: std::fmt::Debug + Clone + Send + Sync + 'static,
    {
        let logged = LoggedCall {
            method,
            request: Box::new(request.clone()),
        };
        self.inner
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(logged);
        if self.inner.queued_faults.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let mut faults = self
            .inner
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let injected = faults.get_mut(method).and_then(VecDeque::pop_front);
        match injected {
            Some(error) => {
                self.inner.queued_faults.fetch_sub(1, Ordering::Release);
                Err(error)
            }
            None => Ok(()),
        }
    }

    // ----- observing and steering -----

    /// Queues `error` as the answer to the next call of `method` (e.g. `"PullImage"`); each
    /// call consumes one queued error, then calls behave normally again.
    pub fn fail_next(&self, method: &str, error: Error) {
        let mut faults = self
            .inner
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        faults
            .entry(method.to_string())
            .or_default()
            .push_back(error);
        self.inner.queued_faults.fetch_add(1, Ordering::Release);
    }

    /// Every call received so far, in order.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.inner
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|call| CallRecord {
                method: call.method,
                request: format!("{:?}", call.request),
            })
            .collect()
    }

    /// How many calls of `method` were received.
    pub fn call_count(&self, method: &str) -> usize {
        self.inner
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|call| call.method == method)
            .count()
    }

    /// The event fan-out; publish extra events or count subscribers.
    pub fn events(&self) -> &EventBroadcaster {
        &self.inner.events
    }

    /// Whether the image store has `reference` (tag, id or digest).
    pub fn has_image(&self, reference: &str) -> bool {
        self.state().images.find(reference).is_some()
    }

    /// Adds an image as if it had been pulled; returns its id.
    pub fn add_image(&self, reference: &str) -> String {
        self.state().images.pull(reference)
    }

    /// Ids of all sandboxes.
    pub fn sandbox_ids(&self) -> Vec<String> {
        self.state().sandboxes.keys().cloned().collect()
    }

    /// Ids of all containers.
    pub fn container_ids(&self) -> Vec<String> {
        self.state().containers.keys().cloned().collect()
    }

    /// Sets a runtime condition reported by `Status` (added if new).
    pub fn set_condition(&self, kind: &str, status: bool, reason: &str, message: &str) {
        let mut state = self.state();
        let entry = match state.conditions.iter_mut().find(|c| c.r#type == kind) {
            Some(existing) => existing,
            None => {
                state.conditions.push(condition(kind, status));
                state.conditions.last_mut().expect("just pushed")
            }
        };
        entry.status = status;
        entry.reason = reason.to_string();
        entry.message = message.to_string();
    }

    /// Makes a running container exit now with `exit_code` and `reason` (e.g. `"OOMKilled"`),
    /// as if its process died. Returns whether the container was running.
    pub fn exit_container(&self, id: &str, exit_code: i32, reason: &str) -> bool {
        self.finish(id, None, exit_code, reason)
    }

    /// The stats `ContainerStats` reports for `id` from now on (instead of the synthetic
    /// ones).
    pub fn set_container_stats(&self, id: &str, stats: ContainerStats) {
        self.state().container_stats.insert(id.to_string(), stats);
    }

    /// The stats `PodSandboxStats` reports for `id` from now on.
    pub fn set_sandbox_stats(&self, id: &str, stats: PodSandboxStats) {
        self.state().sandbox_stats.insert(id.to_string(), stats);
    }

    /// Checks the invariants of the stored state; `Err` describes the first violation.
    /// Used by tests that hammer the fake concurrently.
    pub fn check_consistency(&self) -> Result<(), String> {
        let state = self.state();
        for container in state.containers.values() {
            if !state.sandboxes.contains_key(&container.sandbox_id) {
                return Err(format!(
                    "container {} belongs to missing sandbox {}",
                    container.id, container.sandbox_id
                ));
            }
            let running = container.state == ContainerState::ContainerRunning;
            if running && container.started_at == 0 {
                return Err(format!(
                    "running container {} has no start time",
                    container.id
                ));
            }
            if container.state == ContainerState::ContainerExited && container.finished_at == 0 {
                return Err(format!(
                    "exited container {} has no finish time",
                    container.id
                ));
            }
            if running != container.process.is_some() {
                return Err(format!("container {} process/state mismatch", container.id));
            }
        }
        for sandbox in state.sandboxes.values() {
            if sandbox.state == PodSandboxState::SandboxNotready
                && state.containers.values().any(|c| {
                    c.sandbox_id == sandbox.id && c.state == ContainerState::ContainerRunning
                })
            {
                return Err(format!(
                    "stopped sandbox {} has running containers",
                    sandbox.id
                ));
            }
        }
        Ok(())
    }
}
