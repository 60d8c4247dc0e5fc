//! Exec through Docker's exec API: ExecSync here, streaming exec in `crate::streaming`.

use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use cri_api::v1::{ContainerState, ExecSyncResponse};
use cri_server::{Error, Result};
use futures_util::StreamExt;

use super::Runtime;
use super::containers::state_of;
use crate::error;
use crate::labels;

/// The most output ExecSync keeps of each stream.
const MAX_OUTPUT: usize = 16 << 20;

impl Runtime {
    /// Fails unless `id` is a running container of the shim.
    pub(crate) async fn ensure_running(&self, id: &str) -> Result<()> {
        let inspect = self.inspect_kind(id, labels::CONTAINER).await?;
        if state_of(&inspect) != ContainerState::ContainerRunning {
            return Err(Error::failed_precondition(format!(
                "container {id} is not running"
            )));
        }
        Ok(())
    }

    /// Creates a Docker exec of `cmd` in `id`; returns its exec id.
    pub(crate) async fn create_exec(
        &self,
        id: &str,
        cmd: &[String],
        stdin: bool,
        tty: bool,
    ) -> Result<String> {
        if cmd.is_empty() {
            return Err(Error::invalid_argument("cmd must not be empty"));
        }
        self.ensure_running(id).await?;
        let created = self
            .docker
            .create_exec(
                id,
                ExecConfig {
                    attach_stdin: Some(stdin),
                    attach_stdout: Some(true),
                    attach_stderr: Some(!tty),
                    tty: Some(tty),
                    cmd: Some(cmd.to_vec()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| error::docker(&format!("creating an exec in {id}"), e))?;
        Ok(created.id)
    }

    /// The exit code of a finished exec (waiting up to `limit` for Docker to record it).
    pub(crate) async fn exec_exit_code(&self, exec_id: &str, limit: Duration) -> Result<i32> {
        let started = std::time::Instant::now();
        loop {
            let inspect = self
                .docker
                .inspect_exec(exec_id)
                .await
                .map_err(|e| error::docker("inspecting an exec", e))?;
            if !inspect.running.unwrap_or(false) {
                return Ok(i32::try_from(inspect.exit_code.unwrap_or(0)).unwrap_or(255));
            }
            if started.elapsed() > limit {
                return Ok(255);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the process of an exec (Docker has no call for it; the shim runs on the engine's
    /// host and Docker reports the host pid).
    pub(crate) async fn kill_exec(&self, exec_id: &str) {
        if let Ok(inspect) = self.docker.inspect_exec(exec_id).await
            && inspect.running.unwrap_or(false)
            && let Some(pid) = inspect
                .pid
                .and_then(|p| i32::try_from(p).ok())
                .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }

    /// ExecSync: runs `cmd`, collects its output; a timeout (0: none) kills it.
    pub(crate) async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecSyncResponse> {
        let exec_id = self.create_exec(id, cmd, false, false).await?;
        let started = self
            .streams
            .start_exec(
                &exec_id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(|e| error::docker(&format!("starting an exec in {id}"), e))?;
        let StartExecResults::Attached { mut output, input } = started else {
            return Err(Error::internal("Docker detached an attached exec"));
        };
        drop(input);
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let collect = async {
            while let Some(chunk) = output.next().await {
                match chunk {
                    Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                        if stdout.len() < MAX_OUTPUT {
                            stdout.extend_from_slice(&message);
                        }
                    }
                    Ok(LogOutput::StdErr { message }) => {
                        if stderr.len() < MAX_OUTPUT {
                            stderr.extend_from_slice(&message);
                        }
                    }
                    Ok(LogOutput::StdIn { .. }) => {}
                    Err(_) => break,
                }
            }
        };
        let finished = if timeout.is_zero() {
            collect.await;
            true
        } else {
            tokio::time::timeout(timeout, collect).await.is_ok()
        };
        if !finished {
            self.kill_exec(&exec_id).await;
            return Err(Error::deadline_exceeded(format!(
                "command {cmd:?} timed out after {timeout:?}"
            )));
        }
        let exit_code = self
            .exec_exit_code(&exec_id, Duration::from_secs(5))
            .await?;
        Ok(ExecSyncResponse {
            stdout,
            stderr,
            exit_code,
        })
    }
}
