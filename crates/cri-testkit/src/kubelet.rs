//! The kubelet profile: `PodSandboxConfig` and `ContainerConfig` built the way a kubelet
//! (1.26 to current) builds them for a pod, so that a runtime can be tried with the requests
//! it will really receive.
//!
//! ```
//! use cri_testkit::kubelet::{Container, Pod, Profile};
//!
//! let profile = Profile::new("/tmp/pods-logs").hugepage_sizes(["2MB"]).cgroup_v2(false);
//! let pod = Pod::new("web", "default", "6b1f0c1e-0d5c-4bb4-9d53-4c0b8f1d2a11")
//!     .container(Container::new("nginx", "busybox", &["sleep", "3600"]));
//! let sandbox = profile.sandbox_config(&pod, 0);
//! assert_eq!(sandbox.log_directory, "/tmp/pods-logs/default_web_6b1f0c1e-0d5c-4bb4-9d53-4c0b8f1d2a11");
//! assert_eq!(sandbox.labels["io.kubernetes.pod.name"], "web");
//!
//! let container = profile.container_config(&pod, &pod.containers[0], 0, "sha256:abc", None);
//! assert_eq!(container.log_path, "nginx/0.log");
//! let resources = container.linux.unwrap().resources.unwrap();
//! assert_eq!(resources.cpu_shares, 2);
//! assert_eq!(resources.oom_score_adj, 1000);
//! assert_eq!(resources.hugepage_limits[0].page_size, "2MB");
//! assert_eq!(resources.hugepage_limits[0].limit, 0);
//! ```
//!
//! # What a kubelet sends
//!
//! The facts below describe the kubelet's behaviour; the profile reproduces them for
//! *BestEffort* pods (no resource requests or limits, as most static pods and test pods are),
//! without volumes, ports or environment from services.
//!
//! **Sandbox** (`RunPodSandbox`):
//! - metadata: the pod's name, namespace and UID, and an attempt number that grows each time
//!   the kubelet has to make a new sandbox for the same pod (0 when no sandbox of the pod is
//!   left);
//! - labels: every label of the pod, plus `io.kubernetes.pod.name`, `io.kubernetes.pod.namespace`
//!   and `io.kubernetes.pod.uid`; annotations: the pod's annotations, unchanged. A static pod
//!   (read from a manifest file) carries `kubernetes.io/config.source: file`,
//!   `kubernetes.io/config.seen` (when the kubelet first read it, RFC 3339) and
//!   `kubernetes.io/config.hash` (the hash of the manifest, which is also the pod's UID); its
//!   name is the manifest's name followed by `-<node name>`;
//! - hostname: the pod name (at most 63 characters) for pods with their own network; empty
//!   for host-network pods, which see the node's hostname;
//! - log directory: `<pod log root>/<namespace>_<name>_<uid>` (the root is `/var/log/pods`),
//!   created by the kubelet before the call;
//! - DNS: without cluster DNS the kubelet passes the node's resolver configuration
//!   (nameservers, search domains and options of its `resolv.conf`);
//! - Linux: the pod's cgroup parent (with the cgroupfs driver `/kubepods/besteffort/pod<uid>`
//!   under the kubelet's cgroup root; with systemd
//!   `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid with _>.slice`),
//!   the pod's sysctls (none here), a security context with the namespace modes (network
//!   `POD`, or `NODE` for host-network pods; PID `CONTAINER`; IPC `POD`), `privileged` when a
//!   container is, and seccomp `RuntimeDefault` for the sandbox itself; `resources` computed
//!   like a container's (see below, without hugepages and OOM score) and `overhead` as an
//!   empty resources message when the pod declares no overhead.
//!
//! **Container** (`CreateContainer`, with the sandbox config alongside):
//! - metadata: the container name and, as attempt, its restart count;
//! - image: the image *id* (`sha256:...`) that `ImageStatus` returned, with
//!   `user_specified_image` holding what the pod spec said (the kubelet first asks
//!   `ImageStatus` for the user's reference and pulls it, with the sandbox config, when the
//!   runtime does not have it);
//! - labels: exactly `io.kubernetes.pod.name`, `io.kubernetes.pod.namespace`,
//!   `io.kubernetes.pod.uid` and `io.kubernetes.container.name` (pod labels are not copied);
//! - annotations: `io.kubernetes.container.hash` (FNV-32a of the container spec, hexadecimal),
//!   `io.kubernetes.container.restartCount`, `io.kubernetes.container.terminationMessagePath`
//!   (default `/dev/termination-log`), `io.kubernetes.container.terminationMessagePolicy`
//!   (default `File`) and `io.kubernetes.pod.terminationGracePeriod` (default 30 seconds);
//! - log path: `<container name>/<restart count>.log`, relative to the sandbox's log
//!   directory; the kubelet creates the `<container name>` directory first;
//! - mounts: the termination message file: a file the kubelet creates under its pod
//!   directory (`/var/lib/kubelet/pods/<uid>/containers/<name>/<id>`), mounted read-write at
//!   the termination message path;
//! - `stdin`, `stdin_once` and `tty` false unless the spec asks;
//! - resources: `cpu_shares` from the CPU request (2, the minimum, when none),
//!   `cpu_period` 100000 µs (the CFS period) and `cpu_quota` from the CPU limit (0 when
//!   none), `memory_limit_in_bytes` (0 when no limit), `oom_score_adj` from the QoS class
//!   (1000 for BestEffort, -997 for Guaranteed and node-critical pods), one hugepage limit per
//!   page size the node supports — read from the `hugepages-<N>kB` directories of
//!   `/sys/kernel/mm/hugepages` and named in the largest exact binary unit (`2048kB` → `2MB`,
//!   `1048576kB` → `1GB`) — with limit 0 unless the container asks for hugepages, and, on
//!   cgroup v2 only, `unified: {memory.oom.group: "1"}` (kill the whole container on OOM,
//!   the default since 1.32);
//! - security context: namespace modes as for the sandbox, the user from the image
//!   (`ImageStatus`' `uid`, else its `username`, else 0: root), not privileged, no extra
//!   capabilities, `no_new_privs` false, the default masked paths ([`DEFAULT_MASKED_PATHS`])
//!   and read-only paths ([`DEFAULT_READONLY_PATHS`]) kept in step with Docker's, and seccomp
//!   `Unconfined` — `RuntimeDefault` when the kubelet runs with `SeccompDefault`.
//!
//! **Lifecycle**: the kubelet relists (`ListPodSandbox` and `ListContainers`, unfiltered)
//! every second, calls `PodSandboxStatus` and `ContainerStatus` for what changed, stops a
//! container with `StopContainer` and a timeout equal to the pod's termination grace period,
//! then stops the sandbox, and its garbage collector later removes the containers, the
//! sandbox and, once the pod is gone, the pod's log directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cri_api::v1::*;

/// The directory under which a kubelet keeps pod logs.
pub const POD_LOG_ROOT: &str = "/var/log/pods";
/// Where the kubelet keeps per-pod files (termination message files, volumes, ...).
pub const PODS_ROOT: &str = "/var/lib/kubelet/pods";
/// Where the node lists its hugepage sizes.
pub const HUGEPAGES_DIR: &str = "/sys/kernel/mm/hugepages";
/// The default termination message path of a container.
pub const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// The default termination message policy.
pub const TERMINATION_MESSAGE_POLICY: &str = "File";
/// The default termination grace period of a pod, in seconds.
pub const TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
/// The CFS period the kubelet sets, in microseconds.
pub const CPU_PERIOD: i64 = 100_000;
/// The CPU shares of a container without a CPU request.
pub const MIN_CPU_SHARES: i64 = 2;
/// The OOM score adjustment of BestEffort containers.
pub const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;

/// Paths the kubelet asks runtimes to mask in every (non-privileged) container.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths the kubelet asks runtimes to make read-only in every (non-privileged) container.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Label keys the kubelet sets (see [`cri_api::well_known::labels`]).
pub use cri_api::well_known::labels;

/// Annotation key of a static pod's manifest hash (equal to its UID).
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// Annotation key naming where the pod came from (`file` for static pods).
pub const CONFIG_SOURCE: &str = cri_api::well_known::annotations::CONFIG_SOURCE;
/// Annotation key of when the kubelet first saw the pod.
pub const CONFIG_SEEN: &str = cri_api::well_known::annotations::CONFIG_SEEN;

/// One container of a [`Pod`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// The container's name in the pod.
    pub name: String,
    /// The image as the pod spec names it (e.g. `busybox`).
    pub image: String,
    /// The command (entrypoint override).
    pub command: Vec<String>,
    /// The arguments.
    pub args: Vec<String>,
    /// The working directory (empty: the image's).
    pub working_dir: String,
    /// The termination message path (default [`TERMINATION_MESSAGE_PATH`]).
    pub termination_message_path: String,
    /// The termination message policy (default [`TERMINATION_MESSAGE_POLICY`]).
    pub termination_message_policy: String,
}

impl Container {
    /// A container running `command` in `image`, with the API server's defaults.
    pub fn new(name: impl Into<String>, image: impl Into<String>, command: &[&str]) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            args: Vec::new(),
            working_dir: String::new(),
            termination_message_path: TERMINATION_MESSAGE_PATH.into(),
            termination_message_policy: TERMINATION_MESSAGE_POLICY.into(),
        }
    }

    /// The `io.kubernetes.container.hash` value: FNV-32a over a canonical encoding of the
    /// spec, in hexadecimal (the kubelet hashes its JSON form; the value only has to change
    /// when the spec does).
    pub fn hash(&self) -> String {
        let encoded = serde_json::json!({
            "name": self.name,
            "image": self.image,
            "command": self.command,
            "args": self.args,
            "workingDir": self.working_dir,
            "terminationMessagePath": self.termination_message_path,
            "terminationMessagePolicy": self.termination_message_policy,
        })
        .to_string();
        let mut hash: u32 = 0x811c_9dc5;
        for byte in encoded.bytes() {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        format!("{hash:x}")
    }
}

/// A BestEffort pod as the kubelet sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// The pod name.
    pub name: String,
    /// The namespace.
    pub namespace: String,
    /// The UID.
    pub uid: String,
    /// Whether the pod uses the node's network namespace (`hostNetwork: true`).
    pub host_network: bool,
    /// The pod's labels.
    pub labels: HashMap<String, String>,
    /// The pod's annotations.
    pub annotations: HashMap<String, String>,
    /// `terminationGracePeriodSeconds` (default 30).
    pub termination_grace_period_seconds: i64,
    /// The containers.
    pub containers: Vec<Container>,
}

impl Pod {
    /// A pod with no containers yet.
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        uid: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            uid: uid.into(),
            host_network: false,
            labels: HashMap::new(),
            annotations: HashMap::new(),
            termination_grace_period_seconds: TERMINATION_GRACE_PERIOD_SECONDS,
            containers: Vec::new(),
        }
    }

    /// A static pod read from the manifest `manifest_name` on node `node`: named
    /// `<manifest_name>-<node>`, its UID the manifest hash (32 hexadecimal digits), annotated
    /// with the config source (`file`), hash and the time it was seen.
    pub fn static_pod(manifest_name: &str, node: &str, namespace: impl Into<String>) -> Self {
        use sha2::{Digest, Sha256};
        let namespace = namespace.into();
        let digest = Sha256::digest(format!("{namespace}/{manifest_name}@{node}").as_bytes());
        let uid: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        let mut pod = Self::new(format!("{manifest_name}-{node}"), namespace, uid.clone());
        pod.annotations.insert(CONFIG_HASH.into(), uid);
        pod.annotations.insert(CONFIG_SOURCE.into(), "file".into());
        pod.annotations.insert(
            CONFIG_SEEN.into(),
            cri_api::log::rfc3339_nanos(crate::fake::now_nanos()),
        );
        pod
    }

    /// Adds a container.
    #[must_use]
    pub fn container(mut self, container: Container) -> Self {
        self.containers.push(container);
        self
    }

    /// Sets `hostNetwork`.
    #[must_use]
    pub fn host_network(mut self, host_network: bool) -> Self {
        self.host_network = host_network;
        self
    }

    /// Adds a pod label.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds a pod annotation.
    #[must_use]
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// Sets `terminationGracePeriodSeconds`.
    #[must_use]
    pub fn grace_period(mut self, seconds: i64) -> Self {
        self.termination_grace_period_seconds = seconds;
        self
    }

    /// The grace period as the `StopContainer` timeout.
    pub fn grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            u64::try_from(self.termination_grace_period_seconds).unwrap_or(0),
        )
    }
}

/// How a kubelet on a given node builds CRI requests: where it keeps logs and pod files,
/// its cgroup layout, the node's hugepage sizes and cgroup version, and its seccomp default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    log_root: PathBuf,
    pods_root: PathBuf,
    cgroup_root: String,
    cgroup_driver: CgroupDriver,
    hugepage_sizes: Vec<String>,
    cgroup_v2: bool,
    seccomp_default: bool,
    dns: DnsConfig,
}

impl Profile {
    /// A kubelet keeping pod logs under `log_root` (a real one uses [`POD_LOG_ROOT`]) and pod
    /// files under `<log_root>/.kubelet-pods`, with the cgroupfs driver and cgroup root `/`,
    /// the hugepage sizes, cgroup version and resolver configuration of this machine, and
    /// `SeccompDefault` off.
    pub fn new(log_root: impl Into<PathBuf>) -> Self {
        let log_root = log_root.into();
        Self {
            pods_root: log_root.join(".kubelet-pods"),
            log_root,
            cgroup_root: "/".into(),
            cgroup_driver: CgroupDriver::Cgroupfs,
            hugepage_sizes: host_hugepage_sizes(),
            cgroup_v2: host_cgroup_v2(),
            seccomp_default: false,
            dns: host_dns_config(),
        }
    }

    /// Where per-pod files (termination message files) go; a kubelet uses [`PODS_ROOT`].
    #[must_use]
    pub fn pods_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.pods_root = dir.into();
        self
    }

    /// The kubelet's `--cgroup-root` (default `/`); pods go under `<root>/kubepods`.
    #[must_use]
    pub fn cgroup_root(mut self, root: impl Into<String>) -> Self {
        self.cgroup_root = root.into();
        self
    }

    /// The cgroup driver (a kubelet asks the runtime with `RuntimeConfig`).
    #[must_use]
    pub fn cgroup_driver(mut self, driver: CgroupDriver) -> Self {
        self.cgroup_driver = driver;
        self
    }

    /// The node's hugepage sizes, e.g. `["1GB", "2MB"]` (default: read from
    /// [`HUGEPAGES_DIR`]).
    #[must_use]
    pub fn hugepage_sizes<I, S>(mut self, sizes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.hugepage_sizes = sizes.into_iter().map(Into::into).collect();
        self
    }

    /// Whether the node runs cgroup v2 (default: detected).
    #[must_use]
    pub fn cgroup_v2(mut self, v2: bool) -> Self {
        self.cgroup_v2 = v2;
        self
    }

    /// Whether the kubelet runs with `SeccompDefault` (containers get `RuntimeDefault`
    /// instead of `Unconfined`).
    #[must_use]
    pub fn seccomp_default(mut self, enabled: bool) -> Self {
        self.seccomp_default = enabled;
        self
    }

    /// The resolver configuration given to sandboxes (default: this machine's
    /// `/etc/resolv.conf`).
    #[must_use]
    pub fn dns_config(mut self, dns: DnsConfig) -> Self {
        self.dns = dns;
        self
    }

    /// The hugepage sizes in use.
    pub fn hugepage_sizes_in_use(&self) -> &[String] {
        &self.hugepage_sizes
    }

    /// `<log root>/<namespace>_<name>_<uid>`.
    pub fn pod_log_directory(&self, pod: &Pod) -> PathBuf {
        self.log_root
            .join(format!("{}_{}_{}", pod.namespace, pod.name, pod.uid))
    }

    /// `<container>/<restart count>.log`, relative to the pod log directory.
    pub fn container_log_path(&self, container: &str, restart_count: u32) -> String {
        format!("{container}/{restart_count}.log")
    }

    /// The absolute path of a container's log file.
    pub fn container_log_file(&self, pod: &Pod, container: &str, restart_count: u32) -> PathBuf {
        self.pod_log_directory(pod)
            .join(self.container_log_path(container, restart_count))
    }

    /// The host file mounted at the container's termination message path.
    pub fn termination_message_file(
        &self,
        pod: &Pod,
        container: &str,
        restart_count: u32,
    ) -> PathBuf {
        self.pods_root
            .join(&pod.uid)
            .join("containers")
            .join(container)
            .join(format!("termination-{restart_count}"))
    }

    /// The pod's cgroup parent (BestEffort QoS).
    pub fn cgroup_parent(&self, pod: &Pod) -> String {
        match self.cgroup_driver {
            CgroupDriver::Systemd => format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
                pod.uid.replace('-', "_")
            ),
            CgroupDriver::Cgroupfs => {
                let root = self.cgroup_root.trim_end_matches('/');
                format!("{root}/kubepods/besteffort/pod{}", pod.uid)
            }
        }
    }

    /// What the kubelet does on the host before `RunPodSandbox`: creates the pod log
    /// directory.
    ///
    /// # Errors
    ///
    /// When the directory cannot be created.
    pub fn prepare_sandbox(&self, pod: &Pod) -> std::io::Result<()> {
        std::fs::create_dir_all(self.pod_log_directory(pod))
    }

    /// What the kubelet does on the host before `CreateContainer`: creates the container's
    /// log directory and its (empty) termination message file.
    ///
    /// # Errors
    ///
    /// When a directory or the file cannot be created.
    pub fn prepare_container(
        &self,
        pod: &Pod,
        container: &Container,
        restart_count: u32,
    ) -> std::io::Result<()> {
        std::fs::create_dir_all(self.pod_log_directory(pod).join(&container.name))?;
        let file = self.termination_message_file(pod, &container.name, restart_count);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&file)
            .map(drop)
    }

    /// What the kubelet does once a pod is gone: removes the pod's cgroup (its QoS manager
    /// owns pod cgroups; runtimes only create and remove the containers' below it). Only
    /// with the cgroupfs driver; best effort (empty cgroups only, in every hierarchy).
    pub fn remove_pod_cgroup(&self, pod: &Pod) {
        if self.cgroup_driver != CgroupDriver::Cgroupfs {
            return;
        }
        let parent = self.cgroup_parent(pod);
        let relative = parent.trim_start_matches('/');
        let root = Path::new("/sys/fs/cgroup");
        let mut dirs = vec![root.join(relative)];
        if let Ok(entries) = std::fs::read_dir(root) {
            dirs.extend(entries.flatten().map(|e| e.path().join(relative)));
        }
        for dir in dirs {
            remove_cgroup(&dir);
        }
    }

    /// The sandbox's labels: the pod's plus the three `io.kubernetes.pod.*` ones.
    pub fn sandbox_labels(&self, pod: &Pod) -> HashMap<String, String> {
        let mut labels = pod.labels.clone();
        labels.insert(labels::POD_NAME.into(), pod.name.clone());
        labels.insert(labels::POD_NAMESPACE.into(), pod.namespace.clone());
        labels.insert(labels::POD_UID.into(), pod.uid.clone());
        labels
    }

    /// The container's labels: exactly the pod's name, namespace and UID and the container
    /// name.
    pub fn container_labels(&self, pod: &Pod, container: &Container) -> HashMap<String, String> {
        HashMap::from([
            (labels::POD_NAME.to_string(), pod.name.clone()),
            (labels::POD_NAMESPACE.to_string(), pod.namespace.clone()),
            (labels::POD_UID.to_string(), pod.uid.clone()),
            (labels::CONTAINER_NAME.to_string(), container.name.clone()),
        ])
    }

    /// The container's annotations.
    pub fn container_annotations(
        &self,
        pod: &Pod,
        container: &Container,
        restart_count: u32,
    ) -> HashMap<String, String> {
        use cri_api::well_known::annotations as a;
        HashMap::from([
            (a::CONTAINER_HASH.to_string(), container.hash()),
            (
                a::CONTAINER_RESTART_COUNT.to_string(),
                restart_count.to_string(),
            ),
            (
                a::CONTAINER_TERMINATION_MESSAGE_PATH.to_string(),
                container.termination_message_path.clone(),
            ),
            (
                a::CONTAINER_TERMINATION_MESSAGE_POLICY.to_string(),
                container.termination_message_policy.clone(),
            ),
            (
                a::POD_TERMINATION_GRACE_PERIOD.to_string(),
                pod.termination_grace_period_seconds.to_string(),
            ),
        ])
    }

    /// The namespace modes of the pod's sandbox and containers.
    pub fn namespace_options(&self, pod: &Pod) -> NamespaceOption {
        NamespaceOption {
            network: if pod.host_network {
                NamespaceMode::Node
            } else {
                NamespaceMode::Pod
            } as i32,
            pid: NamespaceMode::Container as i32,
            ipc: NamespaceMode::Pod as i32,
            ..Default::default()
        }
    }

    /// CPU and memory resources of a BestEffort container or pod (no hugepages, no OOM
    /// score): minimum shares, the CFS period without quota, no memory limit, and the
    /// cgroup v2 OOM-group setting.
    pub fn best_effort_resources(&self) -> LinuxContainerResources {
        LinuxContainerResources {
            cpu_period: CPU_PERIOD,
            cpu_quota: 0,
            cpu_shares: MIN_CPU_SHARES,
            memory_limit_in_bytes: 0,
            unified: if self.cgroup_v2 {
                HashMap::from([("memory.oom.group".to_string(), "1".to_string())])
            } else {
                HashMap::new()
            },
            ..Default::default()
        }
    }

    /// A BestEffort container's resources: [`Profile::best_effort_resources`] with OOM score
    /// 1000 and a zero limit for every hugepage size of the node.
    pub fn container_resources(&self) -> LinuxContainerResources {
        LinuxContainerResources {
            oom_score_adj: BEST_EFFORT_OOM_SCORE_ADJ,
            hugepage_limits: self
                .hugepage_sizes
                .iter()
                .map(|size| HugepageLimit {
                    page_size: size.clone(),
                    limit: 0,
                })
                .collect(),
            ..self.best_effort_resources()
        }
    }

    /// The container security context the kubelet derives for a container without one,
    /// given the image's status (for its user).
    pub fn container_security_context(
        &self,
        pod: &Pod,
        image: Option<&Image>,
    ) -> LinuxContainerSecurityContext {
        let (run_as_user, run_as_username) = match image {
            Some(image) if image.uid.is_some() => (image.uid, String::new()),
            Some(image) if !image.username.is_empty() => (None, image.username.clone()),
            _ => (Some(Int64Value { value: 0 }), String::new()),
        };
        LinuxContainerSecurityContext {
            namespace_options: Some(self.namespace_options(pod)),
            run_as_user,
            run_as_username,
            masked_paths: DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
            readonly_paths: DEFAULT_READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            seccomp: Some(SecurityProfile {
                profile_type: if self.seccomp_default {
                    security_profile::ProfileType::RuntimeDefault
                } else {
                    security_profile::ProfileType::Unconfined
                } as i32,
                localhost_ref: String::new(),
            }),
            ..Default::default()
        }
    }

    /// The `PodSandboxConfig` of `pod`'s sandbox number `attempt`.
    pub fn sandbox_config(&self, pod: &Pod, attempt: u32) -> PodSandboxConfig {
        let hostname = if pod.host_network {
            String::new()
        } else {
            let mut name: String = pod.name.chars().take(63).collect();
            while name.ends_with(['-', '.']) {
                name.pop();
            }
            name
        };
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: pod.name.clone(),
                namespace: pod.namespace.clone(),
                uid: pod.uid.clone(),
                attempt,
            }),
            hostname,
            log_directory: self.pod_log_directory(pod).display().to_string(),
            dns_config: Some(self.dns.clone()),
            port_mappings: Vec::new(),
            labels: self.sandbox_labels(pod),
            annotations: pod.annotations.clone(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent(pod),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(self.namespace_options(pod)),
                    privileged: false,
                    seccomp: Some(SecurityProfile {
                        profile_type: security_profile::ProfileType::RuntimeDefault as i32,
                        localhost_ref: String::new(),
                    }),
                    ..Default::default()
                }),
                sysctls: HashMap::new(),
                overhead: Some(LinuxContainerResources::default()),
                resources: Some(self.best_effort_resources()),
            }),
            windows: None,
        }
    }

    /// The `ContainerConfig` of `container` (restart number `restart_count`), running the
    /// image `image_ref` (the id from `ImageStatus`); `image` is that status, for the user.
    pub fn container_config(
        &self,
        pod: &Pod,
        container: &Container,
        restart_count: u32,
        image_ref: &str,
        image: Option<&Image>,
    ) -> ContainerConfig {
        let mut mounts = Vec::new();
        if !container.termination_message_path.is_empty() {
            mounts.push(Mount {
                container_path: container.termination_message_path.clone(),
                host_path: self
                    .termination_message_file(pod, &container.name, restart_count)
                    .display()
                    .to_string(),
                readonly: false,
                ..Default::default()
            });
        }
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: container.name.clone(),
                attempt: restart_count,
            }),
            image: Some(ImageSpec {
                image: image_ref.to_string(),
                user_specified_image: container.image.clone(),
                ..Default::default()
            }),
            command: container.command.clone(),
            args: container.args.clone(),
            working_dir: container.working_dir.clone(),
            envs: Vec::new(),
            mounts,
            devices: Vec::new(),
            labels: self.container_labels(pod, container),
            annotations: self.container_annotations(pod, container, restart_count),
            log_path: self.container_log_path(&container.name, restart_count),
            stdin: false,
            stdin_once: false,
            tty: false,
            linux: Some(LinuxContainerConfig {
                resources: Some(self.container_resources()),
                security_context: Some(self.container_security_context(pod, image)),
            }),
            ..Default::default()
        }
    }
}

/// Removes an (empty) cgroup directory and the cgroups below it, deepest first.
fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// The node's hugepage sizes as the kubelet names them (`["1GB", "2MB"]`), read from
/// [`HUGEPAGES_DIR`]; empty when the kernel has none.
pub fn host_hugepage_sizes() -> Vec<String> {
    hugepage_sizes_in(Path::new(HUGEPAGES_DIR))
}

/// The hugepage sizes listed in `dir` (entries `hugepages-<N>kB`), in name order.
pub fn hugepage_sizes_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.iter().filter_map(|n| page_size_name(n)).collect()
}

/// `hugepages-2048kB` → `2MB`: the size in the largest binary unit that divides it exactly.
pub fn page_size_name(dir_name: &str) -> Option<String> {
    let kb: u64 = dir_name
        .strip_prefix("hugepages-")?
        .strip_suffix("kB")?
        .parse()
        .ok()?;
    let mut value = kb;
    let mut units = ["KB", "MB", "GB", "TB", "PB"].iter();
    let mut unit = units.next()?;
    while value >= 1024 && value.is_multiple_of(1024) {
        match units.next() {
            Some(next) => {
                value /= 1024;
                unit = next;
            }
            None => break,
        }
    }
    Some(format!("{value}{unit}"))
}

/// Whether this machine runs the unified cgroup v2 hierarchy.
pub fn host_cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// This machine's resolver configuration (`/etc/resolv.conf`): what a kubelet without
/// cluster DNS gives pods.
pub fn host_dns_config() -> DnsConfig {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    parse_resolv_conf(&text)
}

/// Parses `nameserver`, `search` (or `domain`) and `options` lines.
pub fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut dns = DnsConfig::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.servers.extend(words.next().map(str::to_string)),
            Some("search" | "domain") => dns.searches = words.map(str::to_string).collect(),
            Some("options") => dns.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    dns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_are_named_like_the_kubelet() {
        assert_eq!(page_size_name("hugepages-2048kB").as_deref(), Some("2MB"));
        assert_eq!(
            page_size_name("hugepages-1048576kB").as_deref(),
            Some("1GB")
        );
        assert_eq!(page_size_name("hugepages-64kB").as_deref(), Some("64KB"));
        assert_eq!(page_size_name("hugepages-32768kB").as_deref(), Some("32MB"));
        assert_eq!(page_size_name("other"), None);
    }

    #[test]
    fn resolv_conf_is_parsed() {
        let dns = parse_resolv_conf("# c\nnameserver 10.0.0.1\nsearch a b\noptions ndots:5\n");
        assert_eq!(dns.servers, ["10.0.0.1"]);
        assert_eq!(dns.searches, ["a", "b"]);
        assert_eq!(dns.options, ["ndots:5"]);
    }

    #[test]
    fn cgroup_parents() {
        let pod = Pod::new("p", "ns", "1-2");
        let profile = Profile::new("/logs");
        assert_eq!(profile.cgroup_parent(&pod), "/kubepods/besteffort/pod1-2");
        let profile = profile.cgroup_root("/cri-testkit/");
        assert_eq!(
            profile.cgroup_parent(&pod),
            "/cri-testkit/kubepods/besteffort/pod1-2"
        );
        let profile = profile.cgroup_driver(CgroupDriver::Systemd);
        assert_eq!(
            profile.cgroup_parent(&pod),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1_2.slice"
        );
    }
}
