//! The shared setup: a served fake runtime, a temporary directory, and a way to run `cri`.

use std::path::{Path, PathBuf};
use std::process::Command;

use cri_api::v1::{
    ContainerConfig, ContainerMetadata, ImageSpec, PodSandboxConfig, PodSandboxMetadata,
};
use cri_client::Client;
use cri_testkit::{FakeRuntime, Harness};
use serde_json::Value;

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_cri");

/// What one run of `cri` produced.
#[derive(Debug)]
pub(crate) struct Out {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Out {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub(crate) fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "cri failed: {self:#?}");
        &self.stdout
    }

    /// Asserts failure with exit code 1 and one `cri: ` line on stderr; returns that line.
    #[track_caller]
    pub(crate) fn failed(&self) -> &str {
        assert_eq!(self.code, 1, "cri should have failed: {self:#?}");
        assert!(self.stderr.starts_with("cri: "), "{self:#?}");
        assert!(!self.stderr.contains("panicked"), "{self:#?}");
        self.stderr.trim_end()
    }

    /// Stdout parsed as JSON.
    #[track_caller]
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }

    /// Stdout parsed as YAML, into the same value model as JSON.
    #[track_caller]
    pub(crate) fn yaml(&self) -> Value {
        serde_norway::from_str(self.ok()).unwrap_or_else(|e| panic!("not YAML ({e}): {self:#?}"))
    }

    /// Stdout lines.
    pub(crate) fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// A fake runtime served on a temporary socket, and a directory for files.
pub(crate) struct Env {
    pub(crate) fake: FakeRuntime,
    pub(crate) harness: Harness,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) endpoint: String,
    empty_config: PathBuf,
}

impl Env {
    /// The fake with the image `busybox`.
    pub(crate) async fn new() -> Self {
        Self::with(FakeRuntime::builder().image("busybox").build()).await
    }

    /// Serves `fake`.
    pub(crate) async fn with(fake: FakeRuntime) -> Self {
        let harness = Harness::fake(fake.clone()).await.expect("harness");
        let endpoint = harness.endpoint().expect("a socket harness");
        let dir = tempfile::tempdir().unwrap();
        let empty_config = dir.path().join("empty-crictl.yaml");
        std::fs::write(&empty_config, "").unwrap();
        Self {
            fake,
            harness,
            dir,
            endpoint,
            empty_config,
        }
    }

    pub(crate) fn client(&self) -> &Client {
        &self.harness.client
    }

    /// `cri -r <endpoint> --config <empty file> ARGS`.
    pub(crate) async fn cri(&self, args: &[&str]) -> Out {
        let mut full = vec![
            "-r".to_string(),
            self.endpoint.clone(),
            "--config".to_string(),
            self.empty_config.display().to_string(),
        ];
        full.extend(args.iter().map(|a| a.to_string()));
        run(full, Vec::new()).await
    }

    /// A path in the temporary directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a file in the temporary directory and returns its path as text.
    pub(crate) fn write(&self, name: &str, content: &str) -> String {
        let path = self.path(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    }

    /// The directory pods log to.
    pub(crate) fn log_dir(&self) -> PathBuf {
        let dir = self.path("logs");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Runs a pod through the client; returns its id.
    pub(crate) async fn pod(&self, name: &str) -> String {
        self.client()
            .run_pod_sandbox(pod_config(name, "default", &self.log_dir()), "")
            .await
            .unwrap()
    }

    /// Creates (and optionally starts) a busybox container running `cmd`; returns its id.
    pub(crate) async fn container(
        &self,
        pod: &str,
        name: &str,
        cmd: &[&str],
        start: bool,
    ) -> String {
        let config = container_config(name, cmd);
        let sandbox = pod_config("ignored", "default", &self.log_dir());
        let id = self
            .client()
            .create_container(pod, config, Some(sandbox))
            .await
            .unwrap();
        if start {
            self.client().start_container(&id).await.unwrap();
        }
        id
    }
}

/// Runs the binary with `args` and extra environment variables, with the endpoint and
/// config variables of this process removed.
pub(crate) async fn run(args: Vec<String>, env: Vec<(String, String)>) -> Out {
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(BIN);
        command
            .args(&args)
            .env_remove("CONTAINER_RUNTIME_ENDPOINT")
            .env_remove("IMAGE_SERVICE_ENDPOINT")
            .env_remove("CRI_CONFIG_FILE")
            .envs(env);
        let output = command.output().expect("run cri");
        Out {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

pub(crate) fn pod_config(name: &str, namespace: &str, log_dir: &Path) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: namespace.into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: log_dir.display().to_string(),
        ..Default::default()
    }
}

pub(crate) fn container_config(name: &str, cmd: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

/// The message as `cri` prints it: proto3 JSON with defaults.
pub(crate) fn json_of<M: serde::Serialize + prost::Name>(message: &M) -> Value {
    cri_api::json::to_value_with_defaults(message).unwrap()
}

/// Asserts that every row's cells start at the header's column positions.
#[track_caller]
pub(crate) fn assert_aligned(table: &str, columns: &[&str]) {
    let mut lines = table.lines();
    let header = lines.next().expect("a header");
    let mut starts = Vec::new();
    let mut from = 0;
    for column in columns {
        let at = header[from..]
            .find(column)
            .unwrap_or_else(|| panic!("no column {column} in {header:?}"))
            + from;
        starts.push(at);
        from = at + column.len();
    }
    assert_eq!(starts[0], 0, "{header:?}");
    for w in starts.windows(2) {
        assert!(w[0] < w[1], "columns out of order in {header:?}");
        assert!(w[1] - w[0] >= 20, "columns narrower than 20 in {header:?}");
    }
    for line in lines {
        for &start in &starts[1..] {
            assert!(
                line.len() > start
                    && line.as_bytes()[start - 1] == b' '
                    && line.as_bytes()[start] != b' ',
                "cell not at column {start} in {line:?}\n{table}"
            );
        }
    }
}

/// Waits until `check` holds (up to 5 s).
pub(crate) async fn wait_for<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("condition not reached within 5 s");
}
