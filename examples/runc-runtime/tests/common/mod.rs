//! What every runc-runtime test needs: the preconditions (root, runc, offline images), a
//! loopback registry serving the images, the runtime binary on a private root and socket,
//! and a cleanup that leaves nothing behind even when a test fails.
//!
//! Tests skip (saying why) without root, runc or `CRI_PEER_IMAGES`, unless
//! `CRI_PEER_REQUIRED=1`, which turns a skip into a failure (CI).

#![allow(dead_code)] // each test file uses its own subset

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cri_client::Client;
use cri_client::cri_api::v1::*;
use cri_testkit::registry::Registry;

pub(crate) mod cni;

/// Runs a bench's `body` until it ends or Ctrl-C: on Ctrl-C the body is dropped where it
/// stands, so each [`Runtime`] it started cleans up as it goes out of scope (kills the
/// runtime, deletes its containers, unmounts their root filesystems) instead of leaving them
/// behind with the process. Without a SIGINT handler the body just runs.
pub(crate) async fn until_interrupted(body: impl std::future::Future<Output = ()>) {
    let mut body = std::pin::pin!(body);
    tokio::select! {
        () = &mut body => {}
        Ok(()) = tokio::signal::ctrl_c() => {
            eprintln!("interrupted: removing what this run started");
        }
    }
}

/// The pause image `scripts/containerd-peer` builds into `pause.tar`.
pub(crate) const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10-cri-rs";

/// The offline images.
#[derive(Clone, Debug)]
pub(crate) struct Images {
    /// The directory with busybox.tar, removable.tar and pause.tar.
    pub(crate) dir: PathBuf,
    /// A busybox image (sh, echo, cat, sleep, nc).
    pub(crate) busybox: String,
    /// An image tests may remove.
    pub(crate) removable: String,
}

/// The preconditions, or `None` (with the reason on stderr) when they do not hold.
///
/// # Panics
///
/// When they do not hold and `CRI_PEER_REQUIRED=1`.
pub(crate) fn requirements() -> Option<Images> {
    let missing = if !rustix::process::geteuid().is_root() {
        Some("not running as root".to_string())
    } else if Command::new("runc")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map_or(true, |s| !s.success())
    {
        Some("runc is not installed".to_string())
    } else {
        match std::env::var_os("CRI_PEER_IMAGES").map(PathBuf::from) {
            None => Some("CRI_PEER_IMAGES is not set (run `scripts/containerd-peer start` and export `scripts/containerd-peer env`)".to_string()),
            Some(dir) if !dir.join("busybox.tar").exists() || !dir.join("pause.tar").exists() => {
                Some(format!("{} has no busybox.tar or pause.tar", dir.display()))
            }
            Some(dir) => {
                let env = |name: &str, default: &str| {
                    std::env::var(name)
                        .ok()
                        .filter(|v| !v.is_empty())
                        .unwrap_or_else(|| default.to_string())
                };
                return Some(Images {
                    busybox: env("CRI_PEER_IMAGE", "docker.io/library/busybox:1.35-cri-rs"),
                    removable: env(
                        "CRI_PEER_REMOVABLE_IMAGE",
                        "docker.io/library/busybox:removable-cri-rs",
                    ),
                    dir,
                });
            }
        }
    };
    let why = missing.unwrap_or_default();
    if std::env::var("CRI_PEER_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("CRI_PEER_REQUIRED=1 but the runc-runtime tests cannot run: {why}");
    }
    eprintln!("\n*** SKIPPED: runc-runtime test — {why} ***\n");
    None
}

/// A loopback registry serving the three offline archives.
pub(crate) async fn registry(images: &Images) -> Registry {
    let mut builder = Registry::builder();
    for name in ["busybox.tar", "removable.tar", "pause.tar"] {
        let path = images.dir.join(name);
        if path.exists() {
            builder = builder.archive(path);
        }
    }
    builder
        .start()
        .await
        .expect("starting the loopback registry")
}

/// How to start the runtime.
#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    /// Archives imported at start (`--import`).
    pub(crate) imports: Vec<PathBuf>,
    /// The registry every pull goes to (mirror of docker.io and registry.k8s.io).
    pub(crate) registry: Option<String>,
    /// More flags (e.g. `--cni-conf-dir DIR`).
    pub(crate) args: Vec<String>,
    /// The runtime's executable; by default the package's `runc-runtime`.
    pub(crate) exe: Option<PathBuf>,
}

/// A running `runc-runtime` with its own root, socket and runc state; cleaned up on drop.
pub(crate) struct Runtime {
    pub(crate) client: Client,
    pub(crate) root: PathBuf,
    pub(crate) socket: PathBuf,
    pub(crate) log_root: PathBuf,
    options: Options,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Runtime {
    pub(crate) async fn start(options: Options) -> Runtime {
        let dir = tempfile::Builder::new()
            .prefix("runc-rt-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().join("root");
        let socket = dir.path().join("cri.sock");
        let log_root = dir.path().join("logs");
        std::fs::create_dir_all(&log_root).unwrap();
        let mut child = None;
        let client = launch(&root, &socket, &options, &mut child).await;
        Runtime {
            client,
            root,
            socket,
            log_root,
            options,
            child,
            _dir: dir,
        }
    }

    /// The runtime's stderr so far (for failure messages).
    pub(crate) fn log(&self) -> String {
        read_log(&self.root)
    }

    /// Starts the binary again (after [`Runtime::kill`]) and reconnects.
    pub(crate) async fn spawn(&mut self) {
        self.client = launch(&self.root, &self.socket, &self.options, &mut self.child).await;
    }

    /// Kills the runtime process with SIGKILL (its containers and monitors live on).
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the runtime with SIGTERM and waits for it.
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the runtime runs");
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        child.wait().unwrap()
    }

    /// runc's state directory.
    pub(crate) fn runc_root(&self) -> PathBuf {
        self.root.join("runc")
    }

    /// A pod config with unique metadata, a log directory, and the host network unless
    /// `own_network`.
    pub(crate) fn pod_config(&self, name: &str, own_network: bool) -> PodSandboxConfig {
        let unique = format!("{name}-{}", std::process::id());
        let log_directory = self.log_root.join(&unique);
        std::fs::create_dir_all(&log_directory).unwrap();
        let namespace_options = NamespaceOption {
            network: if own_network {
                NamespaceMode::Pod as i32
            } else {
                NamespaceMode::Node as i32
            },
            ..Default::default()
        };
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: unique.clone(),
                namespace: "runc-runtime-test".into(),
                uid: format!("uid-{unique}"),
                attempt: 0,
            }),
            hostname: if own_network {
                name.to_string()
            } else {
                String::new()
            },
            log_directory: log_directory.display().to_string(),
            labels: HashMap::from([("test".to_string(), name.to_string())]),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("/runc-runtime-test/{unique}"),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(namespace_options),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A container config running `command` in `image`, logging to `<name>.log`.
    pub(crate) fn container_config(name: &str, image: &str, command: &[&str]) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.to_string(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            linux: Some(LinuxContainerConfig::default()),
            ..Default::default()
        }
    }

    /// Removes every pod through CRI (the orderly way), then stops the runtime.
    pub(crate) async fn shutdown(mut self) {
        if self.child.is_some()
            && let Ok(pods) = self.client.list_pod_sandbox(None).await
        {
            for pod in pods {
                let _ = self.client.stop_pod_sandbox(&pod.id).await;
                let _ = self.client.remove_pod_sandbox(&pod.id).await;
            }
        }
        self.kill();
        // Drop does the rest (and finds nothing left when all went well).
    }
}

fn read_log(root: &Path) -> String {
    std::fs::read_to_string(root.with_file_name("runtime.log")).unwrap_or_default()
}

/// Starts `runc-runtime` on `root` and `socket` and connects to it.
async fn launch(root: &Path, socket: &Path, options: &Options, slot: &mut Option<Child>) -> Client {
    let mut command = Command::new(
        options
            .exe
            .as_deref()
            .unwrap_or(Path::new(env!("CARGO_BIN_EXE_runc-runtime"))),
    );
    command
        .arg("--root")
        .arg(root)
        .arg("--socket")
        .arg(socket)
        .arg("--pause-image")
        .arg(PAUSE_IMAGE)
        .arg("--cgroup-parent")
        .arg("/runc-runtime-test");
    for archive in &options.imports {
        command.arg("--import").arg(archive);
    }
    if let Some(endpoint) = &options.registry {
        let host = endpoint.trim_start_matches("http://");
        for registry in ["docker.io", "registry.k8s.io"] {
            command
                .arg("--registry-mirror")
                .arg(format!("{registry}={endpoint}"));
        }
        command.arg("--plain-http").arg(host);
    }
    command.args(&options.args);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.with_file_name("runtime.log"))
        .unwrap();
    let _ = std::fs::remove_file(socket);
    let child = slot.insert(
        command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting runc-runtime"),
    );
    let started = Instant::now();
    while !socket.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "runc-runtime did not listen within 60 s:\n{}",
            read_log(root)
        );
        if let Ok(Some(status)) = child.try_wait() {
            panic!("runc-runtime exited with {status}:\n{}", read_log(root));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Client::connect(format!("unix://{}", socket.display()))
        .await
        .expect("connecting to runc-runtime")
}

impl Drop for Runtime {
    /// The hard way, for a test that failed half-way: kill the runtime, delete every runc
    /// container of this root (which ends their monitors), kill leftover monitors, unmount
    /// rootfs overlays, remove created cgroups and the directory.
    fn drop(&mut self) {
        self.kill();
        let runc_root = self.runc_root();
        if let Ok(entries) = std::fs::read_dir(&runc_root) {
            for entry in entries.flatten() {
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(&runc_root)
                    .args(["delete", "--force"])
                    .arg(entry.file_name())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        for pid in monitors_of(&self.root) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        unmount_under(&self.root);
        remove_test_cgroups();
    }
}

/// Monitor processes started for containers under `root` (matched by their command line).
pub(crate) fn monitors_of(root: &Path) -> Vec<rustix::process::Pid> {
    let needle = format!("monitor\0{}/", root.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(&needle)
                .then(|| rustix::process::Pid::from_raw(pid))
                .flatten()
        })
        .collect()
}

/// Unmounts everything mounted under `root`, deepest first.
fn unmount_under(root: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return;
    };
    let prefix = format!("{}/", root.display());
    let mut targets: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|t| t.starts_with(&prefix))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for target in targets {
        let _ = rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH);
    }
}

/// Removes the empty cgroups under `/runc-runtime-test`, and that one when it is empty, in
/// every hierarchy (cgroups in use, by a test running in parallel, stay).
fn remove_test_cgroups() {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for hierarchy in hierarchies.flatten() {
        let base = hierarchy.path().join("runc-runtime-test");
        if let Ok(children) = std::fs::read_dir(&base) {
            for child in children.flatten() {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = std::fs::remove_dir(child.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&base);
    }
}

/// A runtime with the test images and one running host-network pod: where the tests that
/// run containers in a pod start. Test files add their own helpers in `impl Pod` blocks.
pub(crate) struct Pod {
    pub(crate) runtime: Runtime,
    /// The pod's id.
    pub(crate) id: String,
    pub(crate) config: PodSandboxConfig,
    /// The busybox image.
    pub(crate) image: String,
}

impl Pod {
    /// `None` when the tests are skipped ([`requirements`]).
    pub(crate) async fn start(name: &str) -> Option<Pod> {
        Self::start_with(name, |_| {}).await
    }

    /// [`Pod::start`] with the pod's config edited before it runs.
    pub(crate) async fn start_with(
        name: &str,
        edit: impl FnOnce(&mut PodSandboxConfig),
    ) -> Option<Pod> {
        let images = requirements()?;
        let runtime = Runtime::start(Options {
            imports: vec![images.dir.join("busybox.tar"), images.dir.join("pause.tar")],
            ..Default::default()
        })
        .await;
        let mut config = runtime.pod_config(name, false);
        edit(&mut config);
        let id = runtime
            .client
            .run_pod_sandbox(config.clone(), "")
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox {name}: {e}"));
        Some(Pod {
            runtime,
            id,
            config,
            image: images.busybox,
        })
    }
}

/// Polls `probe` every 50 ms until it returns `Some`, for at most `limit`.
pub(crate) async fn wait_for<T, F, Fut>(what: &str, limit: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    poll_for(limit, probe)
        .await
        .unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

/// [`wait_for`] that gives up with `None` after `limit` instead of failing the test.
pub(crate) async fn poll_for<T, F, Fut>(limit: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if started.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The container's status.
pub(crate) async fn status(client: &Client, id: &str) -> ContainerStatus {
    client
        .container_status(id, false)
        .await
        .expect("ContainerStatus")
        .status
        .expect("a status")
}
