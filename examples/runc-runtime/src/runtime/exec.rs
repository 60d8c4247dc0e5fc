//! Running commands in a container with `runc exec`: ExecSync here, the streaming forms in
//! `crate::streaming`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use cri_api::v1::{ContainerState, ExecSyncResponse};
use cri_server::{Error, Result};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Container, Runtime, new_id};
use crate::error;
use crate::monitor::protocol::write_json_atomic;

/// ExecSync's output limit per stream (the kubelet's message size).
const OUTPUT_LIMIT: usize = 16 << 20;

/// The files of one exec: the process JSON and runc's pid file, in a directory removed on drop.
pub(crate) struct ExecFiles {
    pub(crate) dir: PathBuf,
    pub(crate) process: PathBuf,
    pub(crate) pid_file: PathBuf,
}

impl ExecFiles {
    /// The exec'd process's host pid, once runc has written it.
    pub(crate) fn pid(&self) -> Option<rustix::process::Pid> {
        std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw)
    }

    /// Kills the exec'd process (if runc got as far as starting it).
    pub(crate) fn kill(&self) {
        if let Some(pid) = self.pid() {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for ExecFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kills an exec'd process whose caller went away (so runc, its parent, reaps it and exits).
pub(crate) struct KillOnDrop<'a>(pub(crate) &'a ExecFiles, pub(crate) bool);

impl KillOnDrop<'_> {
    pub(crate) fn disarm(&mut self) {
        self.1 = false;
    }
}

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.kill();
        }
    }
}

impl Runtime {
    /// A running container by id, or the CRI error for why it is not.
    pub(crate) fn running(&self, id: &str) -> Result<Arc<Container>> {
        let container = self
            .container(id)
            .ok_or_else(|| Error::not_found(format!("container {id:?} not found")))?;
        if container.state() != ContainerState::ContainerRunning {
            return Err(Error::failed_precondition(format!(
                "container {id:?} is not running"
            )));
        }
        Ok(container)
    }

    /// Writes the process JSON for `cmd` (the container's own process settings: user, env,
    /// capabilities, cwd...) into a fresh exec directory.
    pub(crate) fn prepare_exec(
        &self,
        container: &Container,
        cmd: &[String],
        tty: bool,
    ) -> Result<ExecFiles> {
        let spec_path = container.dir.join("config.json");
        let spec: oci_spec::runtime::Spec = std::fs::read(&spec_path)
            .map_err(|e| error::io("reading the container's config.json", e))
            .and_then(|b| {
                serde_json::from_slice(&b)
                    .map_err(|e| Error::internal(format!("the container's config.json: {e}")))
            })?;
        let process = cri_oci::spec::process_for_exec(&spec, cmd, tty).map_err(error::oci)?;
        let dir = container.dir.join(format!("exec-{}", &new_id()[..16]));
        std::fs::create_dir(&dir).map_err(|e| error::io("creating an exec directory", e))?;
        let files = ExecFiles {
            process: dir.join("process.json"),
            pid_file: dir.join("exec.pid"),
            dir,
        };
        write_json_atomic(&files.process, &process)
            .map_err(|e| error::io("writing the exec process", e))?;
        Ok(files)
    }

    /// `runc exec` arguments for `files` (`detach` for a terminal exec).
    pub(crate) fn exec_command(
        &self,
        id: &str,
        files: &ExecFiles,
        console_socket: Option<&Path>,
    ) -> tokio::process::Command {
        let mut command = self.runc.command();
        command.arg("exec");
        if let Some(socket) = console_socket {
            command.arg("--detach").arg("--console-socket").arg(socket);
        }
        command
            .arg("--process")
            .arg(&files.process)
            .arg("--pid-file")
            .arg(&files.pid_file)
            .arg(id);
        command
    }

    pub(crate) async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecSyncResponse> {
        let container = self.running(id)?;
        let files = self.prepare_exec(&container, cmd, false)?;
        let mut child = self
            .exec_command(id, &files, None)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| error::io("running runc exec", e))?;
        let mut guard = KillOnDrop(&files, true);
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let run = async {
            let (out, err, status) =
                tokio::join!(read_capped(stdout), read_capped(stderr), child.wait());
            (out, err, status)
        };
        let outcome = if timeout.is_zero() {
            Ok(run.await)
        } else {
            tokio::time::timeout(timeout, run).await
        };
        match outcome {
            Ok((stdout, stderr, status)) => {
                guard.disarm();
                let status = status.map_err(|e| error::io("waiting for runc exec", e))?;
                let exit_code = status.code().unwrap_or(255);
                Ok(ExecSyncResponse {
                    stdout,
                    stderr,
                    exit_code,
                })
            }
            Err(_) => {
                // Kill the command; runc then reaps it and exits.
                files.kill();
                guard.disarm();
                let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
                Err(Error::deadline_exceeded(format!(
                    "command {cmd:?} timed out after {timeout:?}"
                )))
            }
        }
    }
}

/// Reads everything, keeping the first [`OUTPUT_LIMIT`] bytes.
async fn read_capped<R: AsyncRead + Unpin>(reader: Option<R>) -> Vec<u8> {
    let Some(mut reader) = reader else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_LIMIT.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_is_capped_but_drained() {
        let big = vec![b'x'; OUTPUT_LIMIT + 1000];
        let out = read_capped(Some(&big[..])).await;
        assert_eq!(out.len(), OUTPUT_LIMIT);
        assert!(read_capped(None::<&[u8]>).await.is_empty());
    }
}
