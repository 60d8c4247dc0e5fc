//! What a case works with: the client, the configuration, and helpers that create uniquely
//! named objects and clean them up.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cri_client::Client;
use cri_client::cri_api::v1::*;

use super::{Case, Config, Failure, Stop};

/// A short id that makes this run's objects unique on a shared runtime.
pub(super) fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:08x}",
        (nanos as u64 ^ u64::from(std::process::id()) << 32) & 0xffff_ffff
    )
}

/// Label put on everything the suite creates.
pub const RUN_LABEL: &str = "cri-testkit.run";
/// Label naming the case that created an object.
pub const CASE_LABEL: &str = "cri-testkit.case";

/// The context of one case.
#[derive(Clone)]
pub struct Ctx {
    client: Client,
    config: Arc<Config>,
    log_root: PathBuf,
    run: String,
    case: String,
    sandboxes: Arc<Mutex<Vec<String>>>,
    /// The cgroup parents of those sandboxes: the kubelet owns pod cgroups, and so does the
    /// suite, which removes them once the pods are gone.
    cgroup_parents: Arc<Mutex<Vec<String>>>,
}

impl Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("case", &self.case)
            .finish_non_exhaustive()
    }
}

/// Fails the case unless `condition` holds.
///
/// # Errors
///
/// [`Stop::Fail`] with the evidence.
pub fn check(
    condition: bool,
    check: &str,
    expected: impl Debug,
    got: impl Debug,
) -> Result<(), Stop> {
    if condition {
        Ok(())
    } else {
        Err(Stop::Fail(Failure {
            check: check.to_string(),
            expected: format!("{expected:?}"),
            got: format!("{got:?}"),
        }))
    }
}

/// Fails the case unless `got == expected`.
///
/// # Errors
///
/// [`Stop::Fail`] with both values.
pub fn expect_eq<T: PartialEq + Debug>(what: &str, expected: T, got: T) -> Result<(), Stop> {
    check(got == expected, what, expected, got)
}

/// Skips the case.
///
/// # Errors
///
/// Always: [`Stop::Skip`].
pub fn skip<T>(reason: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Skip(reason.into()))
}

impl Ctx {
    pub(super) fn new(
        client: Client,
        config: Arc<Config>,
        log_root: PathBuf,
        run: &str,
        case: Case,
    ) -> Self {
        Self {
            client,
            config,
            log_root,
            run: run.to_string(),
            case: case.id().replace('/', "."),
            sandboxes: Arc::default(),
            cgroup_parents: Arc::default(),
        }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The suite configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A name unique to this run and case: `<case>-<suffix>-<run>`.
    pub fn unique(&self, suffix: &str) -> String {
        format!("{}-{suffix}-{}", self.case.replace('.', "-"), self.run)
    }

    /// Labels every object of this case carries.
    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (RUN_LABEL.to_string(), self.run.clone()),
            (CASE_LABEL.to_string(), self.case.clone()),
        ])
    }

    /// A sandbox config with unique metadata, this case's labels, a log directory under the
    /// log root, and host networking when configured.
    pub fn sandbox_config(&self, name: &str) -> PodSandboxConfig {
        let unique = self.unique(name);
        let mut config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: unique.clone(),
                namespace: "cri-testkit".into(),
                uid: format!("uid-{unique}"),
                attempt: 0,
            }),
            hostname: name.to_string(),
            log_directory: self.log_root.join(&unique).display().to_string(),
            labels: self.labels(),
            annotations: HashMap::from([("cri-testkit/annotation".to_string(), unique.clone())]),
            linux: Some(self.linux_sandbox_config(&unique)),
            ..Default::default()
        };
        if self.config.host_network {
            // The host's hostname applies: a sandbox without its own UTS namespace cannot
            // set one (the kubelet leaves it empty for host-network pods too).
            config.hostname = String::new();
            if let Some(linux) = config.linux.as_mut() {
                linux.security_context = Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Node as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
        }
        config
    }

    /// A cgroup parent per sandbox, as the kubelet gives (runtimes read sandbox stats from
    /// it).
    fn linux_sandbox_config(&self, unique: &str) -> LinuxPodSandboxConfig {
        LinuxPodSandboxConfig {
            cgroup_parent: format!("/cri-testkit/pod-{unique}"),
            ..Default::default()
        }
    }

    /// Runs a sandbox from [`Ctx::sandbox_config`] and registers it for cleanup.
    ///
    /// # Errors
    ///
    /// When `RunPodSandbox` fails.
    pub async fn run_sandbox(&self, name: &str) -> Result<(String, PodSandboxConfig), Stop> {
        let config = self.sandbox_config(name);
        let _ = std::fs::create_dir_all(&config.log_directory);
        let id = self
            .client
            .run_pod_sandbox(config.clone(), self.config.runtime_handler.clone())
            .await?;
        self.register(&id, &config);
        Ok((id, config))
    }

    /// A container config running `command` in the configured image, logging to
    /// `<name>.log`, with this case's labels.
    pub fn container_config(&self, name: &str, command: &[&str]) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.to_string(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: self.config.image.clone(),
                ..Default::default()
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            labels: self.labels(),
            annotations: HashMap::from([("cri-testkit/container".to_string(), name.to_string())]),
            linux: Some(LinuxContainerConfig::default()),
            ..Default::default()
        }
    }

    /// Creates a container in `sandbox` running `command`.
    ///
    /// # Errors
    ///
    /// When `CreateContainer` fails.
    pub async fn create_container(
        &self,
        sandbox: &(String, PodSandboxConfig),
        name: &str,
        command: &[&str],
    ) -> Result<String, Stop> {
        self.ensure_image().await?;
        let config = self.container_config(name, command);
        Ok(self
            .client
            .create_container(&sandbox.0, config, Some(sandbox.1.clone()))
            .await?)
    }

    /// Creates and starts a container.
    ///
    /// # Errors
    ///
    /// When either call fails.
    pub async fn start_container(
        &self,
        sandbox: &(String, PodSandboxConfig),
        name: &str,
        command: &[&str],
    ) -> Result<String, Stop> {
        let id = self.create_container(sandbox, name, command).await?;
        self.client.start_container(&id).await?;
        Ok(id)
    }

    /// Runs a sandbox from [`Ctx::sandbox_config`] changed by `edit` (privileges, namespaces,
    /// DNS, port mappings, ...) and registers it for cleanup.
    ///
    /// # Errors
    ///
    /// When `RunPodSandbox` fails.
    pub async fn run_sandbox_with(
        &self,
        name: &str,
        edit: impl FnOnce(&mut PodSandboxConfig),
    ) -> Result<(String, PodSandboxConfig), Stop> {
        let mut config = self.sandbox_config(name);
        edit(&mut config);
        let _ = std::fs::create_dir_all(&config.log_directory);
        let id = self
            .client
            .run_pod_sandbox(config.clone(), self.config.runtime_handler.clone())
            .await?;
        self.register(&id, &config);
        Ok((id, config))
    }

    /// Creates and starts a container from [`Ctx::container_config`] changed by `edit`.
    ///
    /// # Errors
    ///
    /// When either call fails.
    pub async fn start_container_with(
        &self,
        sandbox: &(String, PodSandboxConfig),
        name: &str,
        command: &[&str],
        edit: impl FnOnce(&mut ContainerConfig),
    ) -> Result<String, Stop> {
        self.ensure_image().await?;
        let mut config = self.container_config(name, command);
        edit(&mut config);
        let id = self
            .client
            .create_container(&sandbox.0, config, Some(sandbox.1.clone()))
            .await?;
        self.client.start_container(&id).await?;
        Ok(id)
    }

    /// Runs `cmd` in a container with `ExecSync` (10 s bound) and returns its output.
    ///
    /// # Errors
    ///
    /// When the call fails.
    pub async fn exec(&self, id: &str, cmd: &[&str]) -> Result<cri_client::ExecOutput, Stop> {
        Ok(self
            .client
            .exec_sync(id, cmd.iter().copied(), Duration::from_secs(10))
            .await?)
    }

    /// Runs `cmd` in a container and returns its stdout, failing unless it exits 0.
    ///
    /// A runtime that runs no real processes (a simulator such as the embedded fake) answers
    /// exit code 127 with `not found` for the kernel's files and tools: the case is then
    /// skipped with that reason, since what it checks lives in the kernel.
    ///
    /// # Errors
    ///
    /// Fails when the command fails; skips as above.
    pub async fn exec_ok(&self, id: &str, cmd: &[&str]) -> Result<String, Stop> {
        let out = self.exec(id, cmd).await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.exit_code == 127 && stderr.contains("not found") {
            return skip(format!(
                "the runtime runs no real processes ({cmd:?} answers {:?}): a simulator cannot show kernel state",
                stderr.trim()
            ));
        }
        check(
            out.exit_code == 0,
            &format!("{cmd:?} exits 0 in the container"),
            0,
            format!("exit {}: {}", out.exit_code, stderr.trim()),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A long-running command in the configured image.
    pub fn sleeper(&self) -> &'static [&'static str] {
        &["sleep", "3600"]
    }

    /// Makes sure the container image is present, pulling it if allowed.
    ///
    /// # Errors
    ///
    /// Skips when the image is missing and cannot be pulled.
    pub async fn ensure_image(&self) -> Result<(), Stop> {
        if self
            .client
            .image_status(&self.config.image)
            .await?
            .is_some()
        {
            return Ok(());
        }
        match &self.config.pull_image {
            Some(_) => {
                self.client.pull_image(&self.config.image, None).await?;
                Ok(())
            }
            None => skip(format!(
                "image {:?} is not present and pulling is disabled",
                self.config.image
            )),
        }
    }

    /// The container's status (verified by the client).
    ///
    /// # Errors
    ///
    /// When the call fails.
    pub async fn container_status(&self, id: &str) -> Result<ContainerStatus, Stop> {
        let response = self.client.container_status(id, false).await?;
        response.status.ok_or_else(|| {
            Stop::Fail(Failure {
                check: "ContainerStatus returns a status".into(),
                expected: "a status".into(),
                got: "none".into(),
            })
        })
    }

    /// Polls `probe` every 50 ms until it returns `Some`, for at most `limit`.
    ///
    /// # Errors
    ///
    /// Fails with `what` when time runs out, or with the probe's error.
    pub async fn wait_for<T, F, Fut>(
        &self,
        what: &str,
        limit: Duration,
        mut probe: F,
    ) -> Result<T, Stop>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, Stop>>,
    {
        let started = Instant::now();
        loop {
            if let Some(value) = probe().await? {
                return Ok(value);
            }
            if started.elapsed() > limit {
                return Err(Stop::Fail(Failure {
                    check: what.to_string(),
                    expected: format!("within {limit:?}"),
                    got: "timed out".into(),
                }));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a container has exited and returns its status.
    ///
    /// # Errors
    ///
    /// Fails when it does not exit within 20 s.
    pub async fn wait_exited(&self, id: &str) -> Result<ContainerStatus, Stop> {
        self.wait_for("the container exits", Duration::from_secs(20), || async {
            let status = self.container_status(id).await?;
            Ok((status.state() == ContainerState::ContainerExited).then_some(status))
        })
        .await
    }

    fn register(&self, id: &str, config: &PodSandboxConfig) {
        self.sandboxes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(id.to_string());
        if let Some(parent) = config.linux.as_ref().map(|l| &l.cgroup_parent)
            && parent.starts_with('/')
        {
            self.cgroup_parents
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(parent.clone());
        }
    }

    /// Stops and removes every sandbox this case created, then removes their (now empty)
    /// pod cgroups where the suite runs on the runtime's host (errors ignored).
    pub(super) async fn cleanup(&self) {
        let sandboxes = std::mem::take(
            &mut *self
                .sandboxes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for id in sandboxes {
            let _ = self.client.stop_pod_sandbox(&id).await;
            let _ = self.client.remove_pod_sandbox(&id).await;
        }
        let parents = std::mem::take(
            &mut *self
                .cgroup_parents
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for parent in parents {
            remove_pod_cgroup(&parent);
        }
    }
}

/// Removes a pod cgroup named by its (cgroupfs) parent path from every hierarchy: the cgroup
/// v2 root, or each v1 controller directory. Only empty directories go (`rmdir`); a cgroup
/// still in use, or one on another host, is left alone.
fn remove_pod_cgroup(parent: &str) {
    let relative = parent.trim_start_matches('/');
    if relative.is_empty() || relative.split('/').any(|part| part == "..") {
        return;
    }
    let root = std::path::Path::new("/sys/fs/cgroup");
    let _ = std::fs::remove_dir(root.join(relative));
    if let Ok(hierarchies) = std::fs::read_dir(root) {
        for hierarchy in hierarchies.flatten() {
            let _ = std::fs::remove_dir(hierarchy.path().join(relative));
        }
    }
}
