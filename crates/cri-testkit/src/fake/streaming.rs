//! Exec, attach and port-forward for the fake runtime (with `cri-streaming`).
//!
//! - `exec` runs the command through the workload: output goes to stdout/stderr as it is
//!   produced, `cat` copies stdin to stdout live, and `sh` (or `bash`) without `-c` is a small
//!   interactive shell that runs each input line;
//! - `attach` behaves like attaching to a `cat` main process: stdin is echoed to stdout;
//! - `port-forward` connects to the port on the loopback interface of this machine.

use std::time::Duration;

use cri_api::v1::ContainerState;
use cri_streaming::{Duplex, Session, StreamError, StreamingRuntime, TerminalSize, async_trait};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::FakeRuntime;
use crate::workload::{ContainerInfo, Step, Stream};

fn io_error(error: std::io::Error) -> StreamError {
    StreamError::Failed(error.to_string())
}

impl FakeRuntime {
    /// The terminal sizes streaming sessions received, in order.
    pub fn terminal_sizes(&self) -> Vec<TerminalSize> {
        self.inner
            .resizes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn script_for(
        &self,
        container_id: &str,
        cmd: &[String],
    ) -> Result<crate::workload::Script, StreamError> {
        let state = self.state();
        let container = state
            .containers
            .get(container_id)
            .ok_or_else(|| StreamError::NotFound(format!("container {container_id:?}")))?;
        if container.state != ContainerState::ContainerRunning {
            return Err(StreamError::Failed(format!(
                "container {container_id} is not running"
            )));
        }
        let hostname = state
            .sandboxes
            .get(&container.sandbox_id)
            .map(|s| s.config.hostname.clone())
            .unwrap_or_default();
        Ok(self.inner.workload.exec(
            &ContainerInfo {
                id: &container.id,
                pod_sandbox_id: &container.sandbox_id,
                hostname: &hostname,
                config: &container.config,
            },
            cmd,
            &[],
        ))
    }

    fn record_resizes(&self, session: &mut Session) {
        if let Some(mut sizes) = session.resize.take() {
            let inner = self.inner.clone();
            tokio::spawn(async move {
                while let Some(size) = sizes.recv().await {
                    inner
                        .resizes
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(size);
                }
            });
        }
    }
}

/// Runs a script's steps against the session's writers; returns the exit code.
async fn play(steps: Vec<Step>, session: &mut Session) -> Result<Option<i32>, StreamError> {
    for step in steps {
        match step {
            Step::Write(stream, data) => {
                let out = match (stream, session.tty) {
                    (Stream::Stderr, false) => session.stderr.as_mut(),
                    _ => session.stdout.as_mut(),
                };
                if let Some(out) = out {
                    out.write_all(&data).await.map_err(io_error)?;
                }
            }
            Step::Sleep(d) => tokio::time::sleep(d).await,
            Step::Exit(code) => return Ok(Some(code)),
            Step::Forever => return Ok(None),
        }
    }
    Ok(Some(0))
}

async fn echo(session: &mut Session) -> Result<(), StreamError> {
    if let (Some(stdin), Some(stdout)) = (session.stdin.as_mut(), session.stdout.as_mut()) {
        tokio::io::copy(stdin, stdout).await.map_err(io_error)?;
    }
    Ok(())
}

#[async_trait]
impl StreamingRuntime for FakeRuntime {
    async fn exec(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        mut session: Session,
    ) -> Result<i32, StreamError> {
        self.record_resizes(&mut session);
        let name = cmd
            .first()
            .map(|c| c.rsplit('/').next().unwrap_or(c))
            .unwrap_or("");
        if name == "cat" && cmd.len() == 1 {
            self.script_for(container_id, &cmd)?; // existence and state checks
            echo(&mut session).await?;
            return Ok(0);
        }
        if matches!(name, "sh" | "bash" | "ash") && cmd.len() == 1 {
            self.script_for(container_id, &cmd)?;
            let Some(stdin) = session.stdin.take() else {
                return Ok(0);
            };
            let mut lines = BufReader::new(stdin).lines();
            while let Some(line) = lines.next_line().await.map_err(io_error)? {
                if let Some(code) = line.trim().strip_prefix("exit") {
                    return Ok(code.trim().parse().unwrap_or(0));
                }
                let argv = vec!["sh".to_string(), "-c".to_string(), line];
                let script = self.script_for(container_id, &argv)?;
                play(script.steps, &mut session).await?;
            }
            return Ok(0);
        }
        let script = self.script_for(container_id, &cmd)?;
        match play(script.steps, &mut session).await? {
            Some(code) => Ok(code),
            None => {
                // A command that never ends runs until the client goes away.
                if let Some(stdin) = session.stdin.as_mut() {
                    let _ = tokio::io::copy(stdin, &mut tokio::io::sink()).await;
                    return Ok(0);
                }
                std::future::pending::<()>().await;
                Ok(0)
            }
        }
    }

    async fn attach(&self, container_id: &str, mut session: Session) -> Result<i32, StreamError> {
        self.script_for(container_id, &[])?;
        self.record_resizes(&mut session);
        echo(&mut session).await?;
        Ok(0)
    }

    async fn port_forward(
        &self,
        pod_sandbox_id: &str,
        port: u16,
        mut stream: Duplex,
    ) -> Result<(), StreamError> {
        if !self.state().sandboxes.contains_key(pod_sandbox_id) {
            return Err(StreamError::NotFound(format!(
                "pod sandbox {pod_sandbox_id:?}"
            )));
        }
        let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
        let mut tcp = tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .map_err(|_| StreamError::Failed(format!("connecting to 127.0.0.1:{port} timed out")))?
            .map_err(|e| StreamError::Failed(format!("connecting to 127.0.0.1:{port}: {e}")))?;
        tokio::io::copy_bidirectional(&mut stream, &mut tcp)
            .await
            .map_err(io_error)?;
        Ok(())
    }
}
