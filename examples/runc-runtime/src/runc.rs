//! The runc command line, as the runtime uses it (the monitor runs `runc create` itself).
//!
//! Every call passes `--root` so that our containers live in the runtime's own state
//! directory, never in the system's `/run/runc`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

/// A failed runc call.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RuncError {
    /// runc could not be started.
    #[error("running {runc}: {source}")]
    Spawn {
        /// The binary.
        runc: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// runc ran and failed.
    #[error("runc {command} failed: {message}")]
    Failed {
        /// The subcommand (`kill`, `delete`, ...).
        command: String,
        /// What runc printed.
        message: String,
    },
}

impl RuncError {
    /// Whether runc said the container does not exist.
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, Self::Failed { message, .. } if message.contains("does not exist"))
    }

    /// Whether runc said the container is not running (a signal to a stopped container).
    pub(crate) fn is_not_running(&self) -> bool {
        matches!(self, Self::Failed { message, .. }
            if message.contains("not running") || message.contains("process already finished"))
    }
}

/// The runc binary and its state directory.
#[derive(Clone, Debug)]
pub(crate) struct Runc {
    path: PathBuf,
    root: PathBuf,
}

impl Runc {
    /// runc at `path`, keeping state under `root`.
    pub(crate) fn new(path: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            root: root.into(),
        }
    }

    /// The binary.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The `--root` directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// A command with `--root` set and all output captured.
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new(&self.path);
        command
            .arg("--root")
            .arg(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    async fn run(&self, args: Vec<OsString>) -> Result<Vec<u8>, RuncError> {
        let name = args
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        let output = self
            .command()
            .args(&args)
            .output()
            .await
            .map_err(|source| RuncError::Spawn {
                runc: self.path.display().to_string(),
                source,
            })?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            let mut message = String::from_utf8_lossy(&output.stderr).trim().to_string();
            if message.is_empty() {
                message = format!("exit status {}", output.status);
            }
            Err(RuncError::Failed {
                command: name,
                message,
            })
        }
    }

    /// `runc start ID`: runs the created container's process.
    pub(crate) async fn start(&self, id: &str) -> Result<(), RuncError> {
        self.run(vec!["start".into(), id.into()]).await.map(drop)
    }

    /// `runc state ID`'s status: `created`, `running`, `paused` or `stopped`.
    pub(crate) async fn status(&self, id: &str) -> Result<String, RuncError> {
        let out = self.run(vec!["state".into(), id.into()]).await?;
        let state: serde_json::Value =
            serde_json::from_slice(&out).map_err(|e| RuncError::Failed {
                command: "state".into(),
                message: format!("unreadable output: {e}"),
            })?;
        Ok(state["status"].as_str().unwrap_or_default().to_string())
    }

    /// `runc kill [--all] ID SIGNAL`.
    pub(crate) async fn kill(&self, id: &str, signal: &str, all: bool) -> Result<(), RuncError> {
        let mut args: Vec<OsString> = vec!["kill".into()];
        if all {
            args.push("--all".into());
        }
        args.push(id.into());
        args.push(signal.into());
        self.run(args).await.map(drop)
    }

    /// `runc delete --force ID`; a container runc does not know is not an error.
    pub(crate) async fn delete(&self, id: &str) -> Result<(), RuncError> {
        match self
            .run(vec!["delete".into(), "--force".into(), id.into()])
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    /// `runc update --resources FILE ID`.
    pub(crate) async fn update(&self, id: &str, resources: &Path) -> Result<(), RuncError> {
        self.run(vec![
            "update".into(),
            "--resources".into(),
            resources.into(),
            id.into(),
        ])
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in runc: a shell script that records its arguments and answers as told.
    fn fake_runc(dir: &Path, script: &str) -> Runc {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("runc");
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Runc::new(path, dir.join("root"))
    }

    #[tokio::test]
    async fn every_call_names_our_root() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("args");
        let runc = fake_runc(dir.path(), &format!("echo \"$@\" >> {}", log.display()));
        runc.kill("c1", "TERM", false).await.unwrap();
        runc.kill("c1", "KILL", true).await.unwrap();
        runc.start("c1").await.unwrap();
        let root = dir.path().join("root");
        let root = root.display();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            format!(
                "--root {root} kill c1 TERM\n--root {root} kill --all c1 KILL\n--root {root} start c1\n"
            )
        );
    }

    #[tokio::test]
    async fn missing_containers_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let runc = fake_runc(
            dir.path(),
            "echo 'container \"c1\" does not exist' >&2; exit 1",
        );
        runc.delete("c1").await.unwrap();
        let err = runc.start("c1").await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(err.to_string().contains("runc start failed"), "{err}");
    }
}
