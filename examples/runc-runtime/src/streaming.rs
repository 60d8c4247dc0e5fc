//! Exec, attach and port-forward for the streaming server.
//!
//! - **exec** runs `runc exec --detach`: without a terminal runc hands our pipes to the
//!   process (which writes straight into them), with one `--console-socket` hands over the
//!   pty master; either way the process, orphaned when runc exits, is reparented to this
//!   runtime (a child subreaper), which waits for it through a pidfd.
//! - **attach** connects to the container's monitor: one control-socket connection per
//!   stream, plus resize requests.
//! - **port-forward** connects to `127.0.0.1:<port>` in the pod's network namespace: directly
//!   for host-network pods, else from a short-lived thread that first moves into the pod's
//!   namespace: the pinned `<pod dir>/netns` (CNI), or the pause process's once runc confirms
//!   that process is still the pod's.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use cri_api::v1::ContainerState;
use cri_streaming::{Duplex, Session, StreamError, StreamingRuntime, Writer, async_trait};
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::drain::{self, Reading, Watched};
use crate::monitor::console;
use crate::monitor::protocol::{self, AttachStream, Request};
use crate::runtime::{Adopted, ExecFiles, KillOnDrop, Pod, Runtime, exited_within, host_network};

/// The size of an exec's pipes (Linux's default is 64 KiB; an unprivileged process may raise
/// its own up to `/proc/sys/fs/pipe-max-size`, 1 MiB by default).
const EXEC_PIPE_SIZE: usize = 1024 * 1024;

/// How long an output stream may stay idle after the process has exited before it is cut
/// off (a background process may hold it open without writing).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

fn failed(e: impl std::fmt::Display) -> StreamError {
    StreamError::Failed(e.to_string())
}

fn cri_error(e: cri_server::Error) -> StreamError {
    match e {
        cri_server::Error::NotFound(m) => StreamError::NotFound(m),
        other => StreamError::Failed(other.to_string()),
    }
}

/// Copies `from` to `to` (or discards it when nobody asked), then drops `to`: that ends the
/// stream, and the streaming server finishes delivering it (a shutdown here would wait for
/// the client to take the last bytes).
async fn copy_out<R: AsyncRead + Unpin>(mut from: R, to: Option<Writer>) {
    match to {
        Some(mut to) => {
            let _ = cri_streaming::copy(&mut from, &mut to).await;
        }
        None => {
            let _ = cri_streaming::copy(&mut from, &mut tokio::io::sink()).await;
        }
    }
}

/// An exec's output stream being copied to the client; the copy is aborted if this is
/// dropped before [`Output::finish`] (an error path).
struct Output {
    task: Option<JoinHandle<()>>,
    reading: Arc<Reading>,
}

impl Output {
    fn spawn<R>(from: R, to: Option<Writer>) -> Output
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let reading = Reading::new();
        let task = tokio::spawn(copy_out(Watched::new(from, &reading), to));
        Output {
            task: Some(task),
            reading,
        }
    }

    /// Once the process has exited: waits for the copy to end, and cuts it off once it has
    /// waited [`OUTPUT_GRACE`] for the process's side (a background process holding the
    /// stream open). Time spent waiting for the client does not count: a slow client gets
    /// every byte.
    async fn finish(mut self) {
        if let Some(mut task) = self.task.take()
            && !drain::finish(&mut task, &self.reading, OUTPUT_GRACE).await
        {
            task.abort();
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Aborts the tasks it holds when dropped (an error path leaving them behind).
struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl Runtime {
    async fn exec_pipes(
        &self,
        id: &str,
        files: &ExecFiles,
        session: Session,
    ) -> Result<i32, StreamError> {
        let mut runc = self
            .exec_command(id, files, None)
            .stdin(if session.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .spawn()
            .map_err(|e| failed(format!("running runc exec: {e}")))?;
        // Pipes of 1 MiB rather than 64 KiB: the process writes on while the session drains.
        for fd in [
            runc.stdin.as_ref().map(|p| p.as_fd()),
            runc.stdout.as_ref().map(|p| p.as_fd()),
            runc.stderr.as_ref().map(|p| p.as_fd()),
        ]
        .into_iter()
        .flatten()
        {
            let _ = rustix::pipe::fcntl_setpipe_size(fd, EXEC_PIPE_SIZE);
        }
        let mut guard = KillOnDrop(files, true);
        let stdin = match (session.stdin, runc.stdin.take()) {
            (Some(mut input), Some(mut pipe)) => Some(tokio::spawn(async move {
                let _ = cri_streaming::copy(&mut input, &mut pipe).await;
                let _ = pipe.shutdown().await;
            })),
            _ => None,
        };
        let _stdin = AbortOnDrop(stdin.into_iter().collect());
        // The process writes straight into these pipes (runc handed them over); runc's own
        // complaints, should it fail, arrive on stderr too.
        let stdout = runc
            .stdout
            .take()
            .map(|out| Output::spawn(out, session.stdout));
        let stderr = runc
            .stderr
            .take()
            .map(|err| Output::spawn(err, session.stderr));
        let outputs: Vec<Output> = stdout.into_iter().chain(stderr).collect();
        let status = runc
            .wait()
            .await
            .map_err(|e| failed(format!("waiting for runc exec: {e}")))?;
        let code = if status.success() {
            let pid = files
                .pid()
                .ok_or_else(|| failed("runc exec wrote no pid for the process"))?;
            let mut process = Adopted::new(pid).map_err(cri_error)?;
            guard.disarm();
            process.wait().await.map_err(cri_error)?
        } else {
            // The process did not start; runc said why on the stderr stream.
            guard.disarm();
            status.code().unwrap_or(255)
        };
        for output in outputs {
            output.finish().await;
        }
        Ok(code)
    }

    async fn exec_tty(
        &self,
        id: &str,
        files: &ExecFiles,
        session: Session,
    ) -> Result<i32, StreamError> {
        let dir = File::open(&files.dir).map_err(failed)?;
        let socket = console::Listener::bind(&dir).map_err(failed)?;
        let child = self
            .exec_command(id, files, Some(socket.path_for_others()))
            .spawn()
            .map_err(|e| failed(format!("running runc exec: {e}")))?;
        let runc = async move {
            match child.wait_with_output().await {
                Ok(out) if out.status.success() => Ok(()),
                Ok(out) => Err(format!(
                    "runc exec failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(e) => Err(format!("waiting for runc exec: {e}")),
            }
        };
        let master = socket
            .receive_while(runc)
            .await
            .map_err(StreamError::Failed)?;
        let mut guard = KillOnDrop(files, true);
        let pid = files
            .pid()
            .ok_or_else(|| failed("runc exec wrote no pid for the process"))?;
        let mut process = Adopted::new(pid).map_err(cri_error)?;
        guard.disarm();

        let dup = |fd: &std::os::fd::OwnedFd| rustix::io::fcntl_dupfd_cloexec(fd, 3);
        let reader = dup(&master)
            .map_err(io::Error::from)
            .and_then(crate::monitor::receiver)
            .map_err(failed)?;
        let mut writer = dup(&master)
            .map_err(io::Error::from)
            .and_then(crate::monitor::sender)
            .map_err(failed)?;
        let stdin = session.stdin.map(|mut input| {
            tokio::spawn(async move {
                let _ = cri_streaming::copy(&mut input, &mut writer).await;
            })
        });
        let resizes = session.resize.map(|mut sizes| {
            let master = dup(&master);
            tokio::spawn(async move {
                let Ok(master) = master else { return };
                while let Some(size) = sizes.recv().await {
                    let winsize = rustix::termios::Winsize {
                        ws_row: size.height,
                        ws_col: size.width,
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    let _ = rustix::termios::tcsetwinsize(master.as_fd(), winsize);
                }
            })
        });
        let output = Output::spawn(reader, session.stdout);
        let code = process.wait().await.map_err(cri_error);
        output.finish().await;
        for task in [stdin, resizes].into_iter().flatten() {
            task.abort();
        }
        code
    }

    /// The network namespace of `pod`, open: pinned at `<pod dir>/netns` when the pod was
    /// created, so a pause pid reused by another process can never lead elsewhere.
    fn pod_netns(pod: &Pod) -> io::Result<File> {
        let pinned = pod.dir.join(crate::netns::FILE);
        File::open(&pinned).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "opening the pod's network namespace {}: {e}",
                    pinned.display()
                ),
            )
        })
    }

    async fn connect_to_pod(&self, pod_id: &str, port: u16) -> io::Result<tokio::net::TcpStream> {
        let pod = self
            .pod(pod_id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such pod sandbox"))?;
        if !pod.ready() {
            return Err(io::Error::other("the pod sandbox is not ready"));
        }
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        if host_network(&pod.config()) {
            return tokio::net::TcpStream::connect(address).await;
        }
        let netns = Self::pod_netns(&pod)?;
        cri_oci::netns::connect(netns, address, Duration::from_secs(10)).await
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
        let container = self.running(container_id).map_err(cri_error)?;
        let files = self
            .prepare_exec(&container, &cmd, session.tty)
            .map_err(cri_error)?;
        if session.tty {
            self.exec_tty(container_id, &files, session).await
        } else {
            self.exec_pipes(container_id, &files, session).await
        }
    }

    async fn attach(&self, container_id: &str, session: Session) -> Result<i32, StreamError> {
        let container = self.running(container_id).map_err(cri_error)?;
        let config = container.record().config;
        let dir = container.dir.clone();
        let open = |stream| {
            let dir = dir.clone();
            async move {
                let (reply, conn) = protocol::call(&dir, &Request::Attach { stream })
                    .await
                    .map_err(|e| failed(format!("reaching the container's monitor: {e}")))?;
                match reply.error {
                    Some(e) => Err(StreamError::Failed(e)),
                    None => Ok(conn),
                }
            }
        };
        // Output tasks started before a later stream fails to open are stopped on that error.
        let mut outputs = AbortOnDrop(Vec::new());
        if let Some(writer) = session.stdout {
            let conn = open(AttachStream::Stdout).await?;
            outputs.0.push(tokio::spawn(copy_out(conn, Some(writer))));
        }
        if let Some(writer) = session.stderr.filter(|_| !config.tty) {
            let conn = open(AttachStream::Stderr).await?;
            outputs.0.push(tokio::spawn(copy_out(conn, Some(writer))));
        }
        let stdin = match session.stdin.filter(|_| config.stdin) {
            Some(mut input) => {
                let mut conn = open(AttachStream::Stdin).await?.into_inner();
                Some(tokio::spawn(async move {
                    let _ = cri_streaming::copy(&mut input, &mut conn).await;
                    let _ = conn.shutdown().await;
                }))
            }
            None => None,
        };
        let resizes = session.resize.filter(|_| config.tty).map(|mut sizes| {
            let dir = dir.clone();
            tokio::spawn(async move {
                while let Some(size) = sizes.recv().await {
                    let request = Request::Resize {
                        width: size.width,
                        height: size.height,
                    };
                    let _ = protocol::call(&dir, &request).await;
                }
            })
        });

        let outputs_done = futures_util::future::join_all(std::mem::take(&mut outputs.0));
        tokio::pin!(outputs_done);
        let detached = match stdin {
            // Closing stdin detaches, unless it closes the container's stdin (stdin_once),
            // in which case the session runs on to the exit.
            Some(stdin) if !config.stdin_once => {
                tokio::select! {
                    _ = &mut outputs_done => false,
                    _ = stdin => true,
                }
            }
            _ => {
                outputs_done.await;
                false
            }
        };
        if let Some(task) = resizes {
            task.abort();
        }
        if detached && container.state() == ContainerState::ContainerRunning {
            return Ok(0);
        }
        match exited_within(&container.exit, Duration::from_secs(10)).await {
            Some(exit) => Ok(exit.exit_code),
            None => Ok(0),
        }
    }

    async fn port_forward(
        &self,
        pod_sandbox_id: &str,
        port: u16,
        stream: Duplex,
    ) -> Result<(), StreamError> {
        if self.pod(pod_sandbox_id).is_none() {
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
