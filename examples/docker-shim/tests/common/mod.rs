//! What every docker-shim test needs: the preconditions (root, a Docker Engine started by
//! `scripts/docker-peer` with the offline images), the shim binary on a private root and
//! socket, and a cleanup that leaves no container of the test behind even when it fails.
//!
//! Tests skip (saying why) without root or without the engine, unless `DOCKER_PEER_REQUIRED=1`,
//! which turns a skip into a failure (CI).

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cri_client::Client;
use cri_client::cri_api::v1::*;

/// The engine and images the tests use.
#[derive(Clone, Debug)]
pub(crate) struct Engine {
    /// `unix://…/docker.sock` of the engine `scripts/docker-peer` started.
    pub(crate) host: String,
    /// A busybox image (sh, echo, cat, sleep, nc), pullable through the engine's mirror.
    pub(crate) busybox: String,
    /// An image tests may remove (pullable again).
    pub(crate) removable: String,
    /// The pause image, present in the engine.
    pub(crate) pause: String,
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// Runs the docker CLI against `host`.
pub(crate) fn docker(host: &str, args: &[&str]) -> Option<String> {
    let out = Command::new("docker")
        .arg("-H")
        .arg(host)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The preconditions, or `None` (with the reason on stderr) when they do not hold.
///
/// # Panics
///
/// When they do not hold and `DOCKER_PEER_REQUIRED=1`.
pub(crate) fn requirements() -> Option<Engine> {
    let engine = Engine {
        host: env("DOCKER_PEER_HOST", "unix:///tmp/cri-rs-docker/docker.sock"),
        busybox: env("CRI_PEER_IMAGE", "docker.io/library/busybox:1.35-cri-rs"),
        removable: env(
            "CRI_PEER_REMOVABLE_IMAGE",
            "docker.io/library/busybox:removable-cri-rs",
        ),
        pause: env(
            "DOCKER_PEER_PAUSE_IMAGE",
            "registry.k8s.io/pause:3.10-cri-rs",
        ),
    };
    let missing = if !rustix::process::geteuid().is_root() {
        Some("not running as root".to_string())
    } else if docker(&engine.host, &["version"]).is_none() {
        Some(format!(
            "no Docker Engine answers at {} (run `scripts/docker-peer start` and export `scripts/docker-peer env`)",
            engine.host
        ))
    } else if docker(&engine.host, &["image", "inspect", &engine.pause]).is_none() {
        Some(format!("the engine has no pause image {}", engine.pause))
    } else {
        return Some(engine);
    };
    let why = missing.unwrap_or_default();
    if std::env::var("DOCKER_PEER_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("DOCKER_PEER_REQUIRED=1 but the docker-shim tests cannot run: {why}");
    }
    eprintln!("\n*** SKIPPED: docker-shim test — {why} ***\n");
    None
}

/// A running `docker-shim` with its own root and socket; cleaned up on drop.
pub(crate) struct Shim {
    pub(crate) client: Client,
    pub(crate) engine: Engine,
    pub(crate) root: PathBuf,
    pub(crate) socket: PathBuf,
    pub(crate) log_root: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Shim {
    pub(crate) async fn start(engine: &Engine, args: &[String]) -> Shim {
        let dir = tempfile::Builder::new()
            .prefix("docker-shim-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().join("root");
        let socket = dir.path().join("cri.sock");
        let log_root = dir.path().join("logs");
        std::fs::create_dir_all(&log_root).unwrap();
        let args = args.to_vec();
        let mut child = None;
        let client = launch(engine, &root, &socket, &args, &mut child).await;
        Shim {
            client,
            engine: engine.clone(),
            root,
            socket,
            log_root,
            args,
            child,
            dir,
        }
    }

    /// The shim's stderr so far (for failure messages).
    pub(crate) fn log(&self) -> String {
        read_log(&self.root)
    }

    /// Starts the binary again (after [`Shim::kill`]) and reconnects.
    pub(crate) async fn spawn(&mut self) {
        self.client = launch(
            &self.engine,
            &self.root,
            &self.socket,
            &self.args,
            &mut self.child,
        )
        .await;
    }

    /// Kills the shim with SIGKILL (its pods and containers live on in Docker).
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A pod config with unique metadata and a log directory; the host network unless
    /// `own_network`.
    pub(crate) fn pod_config(&self, name: &str, own_network: bool) -> PodSandboxConfig {
        let unique = format!("{name}-{}", std::process::id());
        let log_directory = self.log_root.join(&unique);
        std::fs::create_dir_all(&log_directory).unwrap();
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: unique.clone(),
                namespace: "docker-shim-test".into(),
                uid: format!("uid-{unique}"),
                attempt: 0,
            }),
            hostname: if own_network {
                name.to_string()
            } else {
                String::new()
            },
            log_directory: log_directory.display().to_string(),
            labels: std::collections::HashMap::from([("test".to_string(), name.to_string())]),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: if own_network {
                            NamespaceMode::Pod as i32
                        } else {
                            NamespaceMode::Node as i32
                        },
                        ..Default::default()
                    }),
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

    /// Removes every pod through CRI (the orderly way), then stops the shim.
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
    }
}

fn read_log(root: &Path) -> String {
    std::fs::read_to_string(root.with_file_name("shim.log")).unwrap_or_default()
}

async fn launch(
    engine: &Engine,
    root: &Path,
    socket: &Path,
    args: &[String],
    slot: &mut Option<Child>,
) -> Client {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.with_file_name("shim.log"))
        .unwrap();
    let _ = std::fs::remove_file(socket);
    let child = slot.insert(
        Command::new(env!("CARGO_BIN_EXE_docker-shim"))
            .arg("--root")
            .arg(root)
            .arg("--socket")
            .arg(socket)
            .arg("--docker-host")
            .arg(&engine.host)
            .arg("--pause-image")
            .arg(&engine.pause)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting docker-shim"),
    );
    let started = Instant::now();
    while !socket.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "docker-shim did not listen within 60 s:\n{}",
            read_log(root)
        );
        if let Ok(Some(status)) = child.try_wait() {
            panic!("docker-shim exited with {status}:\n{}", read_log(root));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Client::connect(format!("unix://{}", socket.display()))
        .await
        .expect("connecting to docker-shim")
}

impl Drop for Shim {
    /// The hard way, for a test that failed half-way: kill the shim, then remove every
    /// container of the shim whose labels name this test's directory (its pods' log
    /// directories and its containers' log paths are under it).
    fn drop(&mut self) {
        self.kill();
        let needle = self.dir.path().display().to_string();
        let ids = docker(
            &self.engine.host,
            &[
                "ps",
                "-aq",
                "--no-trunc",
                "--filter",
                "label=io.cri-rs.docker-shim.kind",
            ],
        )
        .unwrap_or_default();
        for id in ids.split_whitespace() {
            let labels = docker(
                &self.engine.host,
                &["inspect", "--format", "{{json .Config.Labels}}", id],
            )
            .unwrap_or_default();
            if labels.contains(&needle) {
                let _ = docker(&self.engine.host, &["rm", "-f", "-v", id]);
            }
        }
    }
}

/// Polls `probe` every 50 ms until it returns `Some`, for at most `limit`.
pub(crate) async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
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

/// A CNI bridge network (`bridge` + `host-local`, then `portmap`) in its own directory, with
/// its own bridge and subnet; the bridge link is deleted on drop.
pub(crate) struct BridgeNetwork {
    dir: tempfile::TempDir,
    bridge: String,
}

impl BridgeNetwork {
    /// The network, or `None` (saying why) when the plugins are not installed.
    pub(crate) fn create() -> Option<BridgeNetwork> {
        let missing: Vec<&str> = ["bridge", "host-local", "portmap", "loopback"]
            .into_iter()
            .filter(|p| {
                !Path::new("/usr/lib/cni").join(p).exists()
                    && !Path::new("/opt/cni/bin").join(p).exists()
            })
            .collect();
        if !missing.is_empty() {
            let why =
                format!("CNI plugins {missing:?} are not installed (containernetworking-plugins)");
            if std::env::var("DOCKER_PEER_REQUIRED").is_ok_and(|v| v == "1") {
                panic!("DOCKER_PEER_REQUIRED=1 but {why}");
            }
            eprintln!("\n*** SKIPPED: docker-shim CNI variant — {why} ***\n");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("docker-shim-cni-")
            .tempdir()
            .unwrap();
        let pid = std::process::id();
        let bridge = format!("dshim{}", pid % 100_000);
        let conf = dir.path().join("conf");
        std::fs::create_dir_all(&conf).unwrap();
        let conflist = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": "docker-shim-test",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "ipam": {
                        "type": "host-local",
                        "subnet": format!("10.251.{}.0/24", pid % 200),
                        "dataDir": dir.path().join("ipam").display().to_string(),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
            ],
        });
        std::fs::write(
            conf.join("10-docker-shim-test.conflist"),
            conflist.to_string(),
        )
        .unwrap();
        Some(BridgeNetwork { dir, bridge })
    }

    /// The shim's flags for this network.
    pub(crate) fn args(&self) -> Vec<String> {
        vec![
            "--cni-conf-dir".into(),
            self.dir.path().join("conf").display().to_string(),
        ]
    }

    /// Addresses host-local still has leased (none once every pod is gone).
    pub(crate) fn leases(&self) -> Vec<String> {
        let mut leases = Vec::new();
        if let Ok(networks) = std::fs::read_dir(self.dir.path().join("ipam")) {
            for network in networks.flatten() {
                if let Ok(files) = std::fs::read_dir(network.path()) {
                    for f in files.flatten() {
                        let name = f.file_name().to_string_lossy().into_owned();
                        if name.parse::<std::net::IpAddr>().is_ok() {
                            leases.push(name);
                        }
                    }
                }
            }
        }
        leases
    }
}

impl Drop for BridgeNetwork {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
