//! The trait a runtime implements to get working `Exec`, `Attach` and `PortForward`.

use std::pin::Pin;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// A terminal size, as the client reports it on the resize stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TerminalSize {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

/// A boxed reader.
pub type Reader = Pin<Box<dyn AsyncRead + Send>>;
/// A boxed writer.
pub type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// The streams of an exec or attach session, as the client asked for them.
///
/// `stdin` ends (EOF) when the client closes it; dropping `stdout`/`stderr` (or shutting
/// them down) tells the client no more output comes. With `tty`, there is no `stderr`: a
/// terminal has one output stream.
pub struct Session {
    /// Whether the client asked for a terminal.
    pub tty: bool,
    /// The client's input, when it asked for stdin.
    pub stdin: Option<Reader>,
    /// Where standard output goes, when the client asked for it.
    pub stdout: Option<Writer>,
    /// Where standard error goes, when the client asked for it (never with `tty`).
    pub stderr: Option<Writer>,
    /// Terminal resizes, when `tty` and the protocol carries them.
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("tty", &self.tty)
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .finish()
    }
}

/// A forwarded connection: bytes to and from one port inside the sandbox.
pub type Duplex = Pin<Box<dyn DuplexStream>>;

/// Something readable and writable (a TCP connection, a pipe).
pub trait DuplexStream: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> DuplexStream for T {}

/// How a streaming call ended, when it did not end with an exit code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The container or sandbox does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The runtime does not support this kind of streaming.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// Anything else; the text reaches the client.
    #[error("{0}")]
    Failed(String),
}

/// A runtime's side of exec, attach and port-forward. Implement it and hand it to the
/// streaming [`Server`](crate::Server) (or to `cri-server`'s builder), and the `Exec`,
/// `Attach` and `PortForward` RPCs work with no further code: the RPC returns a URL, the
/// client connects to it over SPDY or WebSocket, and these methods run with its streams.
///
/// ```
/// use cri_streaming::{Session, StreamError, StreamingRuntime, async_trait};
/// use tokio::io::AsyncWriteExt;
///
/// struct Echo;
///
/// #[async_trait]
/// impl StreamingRuntime for Echo {
///     async fn exec(&self, _container: &str, cmd: Vec<String>, mut session: Session) -> Result<i32, StreamError> {
///         if let Some(out) = session.stdout.as_mut() {
///             out.write_all(cmd.join(" ").as_bytes()).await.map_err(|e| StreamError::Failed(e.to_string()))?;
///         }
///         Ok(0)
///     }
/// }
/// ```
#[async_trait]
pub trait StreamingRuntime: Send + Sync + 'static {
    /// Runs `cmd` in the container with the session's streams; returns its exit code.
    async fn exec(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        session: Session,
    ) -> Result<i32, StreamError>;

    /// Attaches the session to the container's main process; returns its exit code when it
    /// ends (or 0 when the client detaches by closing stdin and the process keeps running).
    async fn attach(&self, container_id: &str, session: Session) -> Result<i32, StreamError> {
        let _ = (container_id, session);
        Err(StreamError::Unsupported("attach".into()))
    }

    /// Connects `stream` to `port` inside the sandbox's network namespace; returns when
    /// either side closes.
    async fn port_forward(
        &self,
        pod_sandbox_id: &str,
        port: u16,
        stream: Duplex,
    ) -> Result<(), StreamError> {
        let _ = (pod_sandbox_id, port, stream);
        Err(StreamError::Unsupported("port-forward".into()))
    }
}
