//! Exec, attach and port-forward for the streaming server.
//!
//! - **exec**: a Docker exec started attached; its multiplexed output stream is split into
//!   the session's stdout and stderr (one stream with a terminal), the session's stdin is
//!   copied into it, and resizes go to Docker's exec resize call.
//! - **attach**: Docker's attach to the container's main process, the same way; the exit code
//!   comes from the container's state once the stream ends.
//! - **port-forward**: a connection to `127.0.0.1:<port>` in the pod's network namespace:
//!   directly for host-network pods, otherwise from a short-lived thread that first enters
//!   the pause container's namespace (`/proc/<pause pid>/ns/net`).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::query_parameters::{
    AttachContainerOptions, ResizeContainerTTYOptions, ResizeExecOptions,
};
use cri_api::v1::{ContainerConfig, ContainerState};
use cri_streaming::{Duplex, Session, StreamError, StreamingRuntime, Writer, async_trait};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::labels;
use crate::runtime::{Runtime, host_network};

fn failed(e: impl std::fmt::Display) -> StreamError {
    StreamError::Failed(e.to_string())
}

fn cri_error(e: cri_server::Error) -> StreamError {
    match e {
        cri_server::Error::NotFound(m) => StreamError::NotFound(m),
        other => StreamError::Failed(other.to_string()),
    }
}

type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, DockerError>> + Send>>;

/// Copies Docker's output stream into the session's writers until it ends, then closes
/// them.
async fn pump_output(mut output: Output, mut stdout: Option<Writer>, mut stderr: Option<Writer>) {
    while let Some(chunk) = output.next().await {
        let (to, message) = match chunk {
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                (stdout.as_mut(), message)
            }
            Ok(LogOutput::StdErr { message }) => (stderr.as_mut(), message),
            Ok(LogOutput::StdIn { .. }) => continue,
            Err(_) => break,
        };
        if let Some(to) = to
            && to.write_all(&message).await.is_err()
        {
            break;
        }
    }
    for w in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
        let _ = w.shutdown().await;
    }
}

/// Copies the session's stdin into Docker's input; closes it at the end.
fn pump_input(
    stdin: Option<cri_streaming::Reader>,
    mut input: Pin<Box<dyn AsyncWrite + Send>>,
) -> Option<tokio::task::JoinHandle<()>> {
    stdin.map(|mut stdin| {
        tokio::spawn(async move {
            let _ = cri_streaming::copy(&mut stdin, &mut input).await;
            let _ = input.shutdown().await;
        })
    })
}

impl Runtime {
    async fn connect_to_pod(&self, pod_id: &str, port: u16) -> io::Result<tokio::net::TcpStream> {
        let (config, pid) = self
            .pause_pid(pod_id)
            .await
            .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e.to_string()))?;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        if host_network(&config) {
            return tokio::net::TcpStream::connect(address).await;
        }
        let pid = pid.ok_or_else(|| io::Error::other("the pod sandbox is not ready"))?;
        let netns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
        cri_oci::netns::connect(netns, address, Duration::from_secs(10)).await
    }

    /// The container's CRI config (from its label).
    async fn config_of(&self, id: &str) -> Result<ContainerConfig, StreamError> {
        let inspect = self
            .inspect_kind(id, labels::CONTAINER)
            .await
            .map_err(cri_error)?;
        let labels = inspect.config.and_then(|c| c.labels).unwrap_or_default();
        Ok(labels::decode(&labels))
    }
}

#[async_trait]
impl StreamingRuntime for Runtime {
    async fn exec(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        session: Session,
    ) -> Result<i32, StreamError> {
        let exec_id = self
            .create_exec(container_id, &cmd, session.stdin.is_some(), session.tty)
            .await
            .map_err(cri_error)?;
        let started = self
            .streams
            .start_exec(
                &exec_id,
                Some(StartExecOptions {
                    detach: false,
                    tty: session.tty,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(|e| failed(format!("starting the exec: {e}")))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(failed("Docker detached an attached exec"));
        };
        let stdin = pump_input(session.stdin, input);
        let resizes = session.resize.map(|mut sizes| {
            let docker = self.docker.clone();
            let exec_id = exec_id.clone();
            tokio::spawn(async move {
                while let Some(size) = sizes.recv().await {
                    let _ = docker
                        .resize_exec(
                            &exec_id,
                            ResizeExecOptions {
                                h: i32::from(size.height),
                                w: i32::from(size.width),
                            },
                        )
                        .await;
                }
            })
        });
        pump_output(output, session.stdout, session.stderr).await;
        for task in [stdin, resizes].into_iter().flatten() {
            task.abort();
        }
        self.exec_exit_code(&exec_id, Duration::from_secs(5))
            .await
            .map_err(cri_error)
    }

    async fn attach(&self, container_id: &str, session: Session) -> Result<i32, StreamError> {
        let config = self.config_of(container_id).await?;
        self.ensure_running(container_id).await.map_err(cri_error)?;
        let attached = self
            .streams
            .attach_container(
                container_id,
                Some(AttachContainerOptions {
                    stream: true,
                    stdin: session.stdin.is_some() && config.stdin,
                    stdout: session.stdout.is_some(),
                    stderr: session.stderr.is_some() && !config.tty,
                    logs: false,
                    detach_keys: None,
                }),
            )
            .await
            .map_err(|e| failed(format!("attaching: {e}")))?;
        let stdin = if config.stdin {
            pump_input(session.stdin, attached.input)
        } else {
            None
        };
        let resizes = session.resize.filter(|_| config.tty).map(|mut sizes| {
            let docker = self.docker.clone();
            let id = container_id.to_string();
            tokio::spawn(async move {
                while let Some(size) = sizes.recv().await {
                    let _ = docker
                        .resize_container_tty(
                            &id,
                            ResizeContainerTTYOptions {
                                h: i32::from(size.height),
                                w: i32::from(size.width),
                            },
                        )
                        .await;
                }
            })
        });
        let output = pump_output(attached.output, session.stdout, session.stderr);
        let detached = match stdin {
            // Closing stdin detaches, unless it closes the container's stdin (stdin_once).
            Some(stdin) if !config.stdin_once => {
                tokio::pin!(output);
                tokio::select! {
                    _ = &mut output => false,
                    _ = stdin => true,
                }
            }
            _ => {
                output.await;
                false
            }
        };
        if let Some(task) = resizes {
            task.abort();
        }
        // The exit code, once Docker has recorded the exit.
        for _ in 0..100 {
            match self.container_status(container_id).await {
                Ok(s) if s.state == ContainerState::ContainerExited as i32 => {
                    return Ok(s.exit_code);
                }
                Ok(_) if detached => return Ok(0),
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(_) => return Ok(0),
            }
        }
        Ok(0)
    }

    async fn port_forward(
        &self,
        pod_sandbox_id: &str,
        port: u16,
        stream: Duplex,
    ) -> Result<(), StreamError> {
        if self
            .inspect_kind(pod_sandbox_id, labels::SANDBOX)
            .await
            .is_err()
        {
            return Err(StreamError::NotFound(format!(
                "pod sandbox {pod_sandbox_id:?} not found"
            )));
        }
        let tcp = self
            .connect_to_pod(pod_sandbox_id, port)
            .await
            .map_err(|e| failed(format!("connecting to port {port} in the pod: {e}")))?;
        cri_streaming::forward(stream, tcp).await;
        Ok(())
    }
}
