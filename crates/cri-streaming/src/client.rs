//! The client side: connect to a streaming URL over SPDY/3.1 or WebSocket and run an exec,
//! attach or port-forward session.

use std::time::Duration;

use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::connector::{Connection, Connector, Target};
use crate::io::{Joined, copy_and_close, read_bounded};
use crate::protocol::{
    self, PORTFORWARD_VERSION, REMOTECOMMAND_VERSIONS, Status, Version, stream_type,
};
use crate::runtime::{Reader, TerminalSize, Writer};
use crate::{spdy, websocket};

/// The client's SPDY settings: receive windows four times the server's defaults (4 MiB per
/// stream, 8 MiB per session). A client holds one session at a time, so the memory is cheap,
/// and a window that refills only at half-drained stalls a fast sender whenever the reader
/// is descheduled: with 1 MiB, stdout from a real container through runc-runtime measured
/// about 1 050 MiB/s, with 4 MiB about 1 190 MiB/s (`cargo bench -p runc-runtime --bench
/// streaming`, `stdout-dd` over SPDY).
fn client_spdy_config() -> spdy::Config {
    spdy::Config {
        initial_window: 4 * 1024 * 1024,
        session_window: 8 * 1024 * 1024,
        ..spdy::Config::default()
    }
}

/// Which protocol carries the session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// SPDY/3.1 (what the kubelet and crictl use by default).
    #[default]
    Spdy,
    /// WebSocket with the `*.channel.k8s.io` subprotocols.
    WebSocket,
}

/// Why a client session failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not `http[s]://host[:port]/...` (or `ws[s]://`).
    #[error("invalid streaming URL {0:?}")]
    InvalidUrl(String),
    /// Connecting or talking to the server failed.
    #[error("streaming connection: {0}")]
    Io(#[from] std::io::Error),
    /// TLS failed: the URL is `https` but the [`Connector`] has no TLS configuration (or the
    /// crate was built without its `tls` feature), or the handshake failed — for instance
    /// because the server's certificate is not trusted or does not name the URL's host
    /// (the rustls error is the source).
    #[error("TLS with {addr}: {message}")]
    Tls {
        /// The server, `host:port` as in the URL.
        addr: String,
        /// What went wrong.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<std::io::Error>,
    },
    /// The server refused the upgrade.
    #[error("the streaming server answered {status}: {body}")]
    Refused {
        /// HTTP status code.
        status: u16,
        /// Response body (trimmed).
        body: String,
    },
    /// SPDY failed.
    #[error("SPDY: {0}")]
    Spdy(String),
    /// WebSocket failed.
    #[error("WebSocket: {0}")]
    WebSocket(String),
    /// The session ended with an error that is not an exit code.
    #[error("remote command failed: {0}")]
    Remote(String),
}

/// The streams of a client session. `None` streams are not requested.
#[derive(Default)]
pub struct Streams {
    /// Sent to the process; the session half-closes stdin at EOF.
    pub stdin: Option<Reader>,
    /// Receives the process's stdout.
    pub stdout: Option<Writer>,
    /// Receives the process's stderr (ignored with `tty`).
    pub stderr: Option<Writer>,
    /// Ask for a terminal.
    pub tty: bool,
    /// Terminal sizes to send (with `tty`).
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("tty", &self.tty)
            .finish()
    }
}

/// Sends an HTTP/1.1 upgrade request and reads the answer; returns the chosen protocol and
/// the connection, positioned after the response headers.
async fn upgrade(
    url: &str,
    connector: &Connector,
    upgrade: &str,
    protocol_header: &str,
    offers: &[&str],
) -> Result<(Connection, String), ClientError> {
    let target = Target::parse(url)?;
    let mut stream = connector.connect(&target).await?;
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: {upgrade}\r\nContent-Length: 0\r\n",
        target.path, target.authority
    );
    for offer in offers {
        request.push_str(&format!("{protocol_header}: {offer}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    // Read the response head byte by byte up to the blank line (bounded), so nothing of the
    // upgraded protocol is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(ClientError::Refused {
                status: 0,
                body: "response head too large".into(),
            });
        }
        let byte = stream.read_u8().await?;
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut chosen = String::new();
    let mut length = 0usize;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            if name == protocol_header.to_ascii_lowercase() {
                chosen = value.trim().to_string();
            } else if name == "content-length" {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    if status != 101 {
        let body = read_bounded(&mut stream, length.min(64 * 1024))
            .await
            .unwrap_or_default();
        return Err(ClientError::Refused {
            status,
            body: String::from_utf8_lossy(&body).trim().to_string(),
        });
    }
    Ok((stream, chosen))
}

/// The exit code in a final status, or the error it reports.
fn exit_code(version_v4: bool, payload: &[u8]) -> Result<i32, ClientError> {
    if payload.is_empty() {
        return Ok(0);
    }
    if version_v4 {
        let status: Status = serde_json::from_slice(payload).map_err(|e| {
            ClientError::Remote(format!(
                "unreadable status ({e}): {}",
                String::from_utf8_lossy(payload)
            ))
        })?;
        let code = status.exit_code();
        return code.ok_or(ClientError::Remote(status.message));
    }
    Err(ClientError::Remote(
        String::from_utf8_lossy(payload).to_string(),
    ))
}

/// Runs an exec or attach session at `url` (from the `Exec`/`Attach` RPC) and returns the
/// command's exit code. Plain TCP only: for `https://` URLs use [`run_with`].
///
/// # Errors
///
/// When the connection, the upgrade or the session fails, or the remote side reports an
/// error that is not an exit code.
pub async fn run(url: &str, transport: Transport, streams: Streams) -> Result<i32, ClientError> {
    run_with(url, transport, streams, &Connector::default()).await
}

/// [`run`], connecting with `connector` (which adds TLS for `https://` URLs).
///
/// # Errors
///
/// As [`run`]; also [`ClientError::Tls`] when the URL is `https` and `connector` has no
/// TLS, or the TLS handshake fails.
pub async fn run_with(
    url: &str,
    transport: Transport,
    streams: Streams,
    connector: &Connector,
) -> Result<i32, ClientError> {
    match transport {
        Transport::Spdy => run_spdy(url, connector, &REMOTECOMMAND_VERSIONS, streams).await,
        Transport::WebSocket => {
            run_websocket(url, connector, websocket::Protocol::all(), streams).await
        }
    }
}

/// [`run`] offering only the given protocol versions (strongest first): names such as
/// `v4.channel.k8s.io` for SPDY, or WebSocket subprotocols such as `v5.channel.k8s.io` and
/// `base64.channel.k8s.io`. For testing servers and talking to old ones.
///
/// # Errors
///
/// As [`run`]; unknown WebSocket subprotocol names are ignored.
pub async fn run_with_protocols(
    url: &str,
    transport: Transport,
    protocols: &[&str],
    streams: Streams,
) -> Result<i32, ClientError> {
    let connector = Connector::default();
    match transport {
        Transport::Spdy => run_spdy(url, &connector, protocols, streams).await,
        Transport::WebSocket => {
            let offered: Vec<websocket::Protocol> = protocols
                .iter()
                .filter_map(|p| websocket::Protocol::from_name(p))
                .collect();
            run_websocket(url, &connector, &offered, streams).await
        }
    }
}

async fn run_spdy(
    url: &str,
    connector: &Connector,
    offers: &[&str],
    streams: Streams,
) -> Result<i32, ClientError> {
    let (io, chosen) = upgrade(
        url,
        connector,
        "SPDY/3.1",
        "X-Stream-Protocol-Version",
        offers,
    )
    .await?;
    let version = Version::parse(&chosen).unwrap_or(Version::V1);
    let (conn, _incoming) = spdy::Connection::new(io, spdy::Role::Client, client_spdy_config());
    let open = |kind: &'static str| {
        let conn = conn.clone();
        async move {
            conn.open(vec![(protocol::STREAM_TYPE.to_string(), kind.to_string())])
                .await
                .map_err(|e| ClientError::Spdy(e.to_string()))
        }
    };
    let mut error = Some(open(stream_type::ERROR).await?);
    let Streams {
        stdin,
        stdout,
        stderr,
        tty,
        resize,
    } = streams;
    let stdin_stream = if stdin.is_some() {
        Some(open(stream_type::STDIN).await?)
    } else {
        None
    };
    let mut stdout_stream = if stdout.is_some() {
        Some(open(stream_type::STDOUT).await?)
    } else {
        None
    };
    let mut stderr_stream = if stderr.is_some() && !tty {
        Some(open(stream_type::STDERR).await?)
    } else {
        None
    };
    let resize_stream = if tty && version.has_resize() {
        Some(open(stream_type::RESIZE).await?)
    } else {
        None
    };
    // We never write on the error, stdout and stderr streams: half-close them now, as
    // Kubernetes clients do, so that the server's close completes them instead of
    // resetting them (which would discard an unread exit status).
    for stream in [
        error.as_mut(),
        stdout_stream.as_mut(),
        stderr_stream.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        let _ = stream.shutdown().await;
    }

    let mut tasks = Vec::new();
    if let (Some(from), Some(to)) = (stdin, stdin_stream) {
        tokio::spawn(copy_and_close(from, to));
    }
    // The streams hand over their received pieces (`AsyncBufRead`): no copy on the way.
    if let (Some(mut to), Some(mut from)) = (stdout, stdout_stream) {
        tasks.push(tokio::spawn(async move {
            let _ = tokio::io::copy_buf(&mut from, &mut to).await;
            let _ = to.flush().await;
        }));
    }
    if let (Some(mut to), Some(mut from)) = (stderr, stderr_stream) {
        tasks.push(tokio::spawn(async move {
            let _ = tokio::io::copy_buf(&mut from, &mut to).await;
            let _ = to.flush().await;
        }));
    }
    if let (Some(mut sizes), Some(mut stream)) = (resize, resize_stream) {
        tokio::spawn(async move {
            while let Some(size) = sizes.recv().await {
                let Ok(json) = serde_json::to_vec(&size) else {
                    continue;
                };
                if stream.write_all(&json).await.is_err() {
                    break;
                }
            }
            let _ = stream.shutdown().await;
        });
    }
    let status = match error {
        Some(error) => read_bounded(error, 64 * 1024).await?,
        None => Vec::new(),
    };
    join_all(tasks).await;
    conn.close();
    exit_code(version >= Version::V4, &status)
}

/// Connects to `url` with `connector` and opens a channel socket, offering `offers`.
async fn websocket_connect(
    url: &str,
    connector: &Connector,
    offers: &[websocket::Protocol],
) -> Result<(websocket::ChannelSocket, websocket::Protocol), ClientError> {
    let target = Target::parse(url)?;
    let io = connector.connect(&target).await?;
    websocket::client(
        io,
        &target.websocket_url(),
        offers,
        websocket::Config::default(),
    )
    .await
    .map_err(|e| ClientError::WebSocket(e.to_string()))
}

async fn run_websocket(
    url: &str,
    connector: &Connector,
    offers: &[websocket::Protocol],
    streams: Streams,
) -> Result<i32, ClientError> {
    let (mut socket, protocol) = websocket_connect(url, connector, offers).await?;
    let Streams {
        stdin,
        stdout,
        stderr,
        tty,
        resize,
    } = streams;
    // Take the readers first, before anything can make the server answer.
    let status_reader = socket.reader(3);
    let outputs: Vec<_> = [(1u8, stdout), (2u8, if tty { None } else { stderr })]
        .into_iter()
        .filter_map(|(channel, to)| to.map(|to| (socket.reader(channel), to)))
        .collect();
    let mut tasks = Vec::new();
    for (mut from, mut to) in outputs {
        tasks.push(tokio::spawn(async move {
            let _ = crate::io::copy(&mut from, &mut to).await;
            let _ = to.flush().await;
        }));
    }
    if let Some(from) = stdin {
        let to = socket.writer(0);
        tokio::spawn(copy_and_close(from, to));
    }
    if let (true, Some(mut sizes)) = (tty, resize) {
        let mut to = socket.writer(4);
        tokio::spawn(async move {
            while let Some(size) = sizes.recv().await {
                let Ok(json) = serde_json::to_vec(&size) else {
                    continue;
                };
                if to.write_all(&json).await.is_err() {
                    break;
                }
            }
        });
    }
    let status = read_bounded(status_reader, 64 * 1024).await?;
    let _ = tokio::time::timeout(Duration::from_secs(30), join_all(tasks)).await;
    socket.close().await;
    exit_code(!protocol.is_v1(), &status)
}

/// A port-forward session: each [`PortForward::connect`] opens one forwarded connection.
///
/// Over SPDY one session carries any number of connections to any of the requested ports.
/// Over WebSocket the protocol carries exactly one connection per requested port (a channel
/// pair each); a second `connect` to the same port needs a new session.
pub struct PortForward {
    kind: PortForwardKind,
}

enum PortForwardKind {
    Spdy {
        conn: spdy::Connection,
        next_id: std::sync::atomic::AtomicU64,
    },
    WebSocket {
        ports: std::sync::Mutex<std::collections::HashMap<u16, Forwarded>>,
    },
}

impl std::fmt::Debug for PortForward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            PortForwardKind::Spdy { .. } => "PortForward(SPDY)",
            PortForwardKind::WebSocket { .. } => "PortForward(WebSocket)",
        })
    }
}

/// A forwarded connection: read and write bytes of the remote port.
pub type Forwarded = crate::runtime::Duplex;

impl PortForward {
    /// Connects to a port-forward URL (from the `PortForward` RPC). `ports` are the ports
    /// the RPC requested, in the same order (needed by WebSocket, which sets up one channel
    /// pair per port at connection time; SPDY ignores them). Plain TCP only: for `https://`
    /// URLs use [`PortForward::start_with`].
    ///
    /// # Errors
    ///
    /// When the connection or upgrade fails.
    pub async fn start(
        url: &str,
        transport: Transport,
        ports: &[u16],
    ) -> Result<Self, ClientError> {
        Self::start_with(url, transport, ports, &Connector::default()).await
    }

    /// [`PortForward::start`], connecting with `connector` (which adds TLS for `https://`
    /// URLs).
    ///
    /// # Errors
    ///
    /// As [`PortForward::start`]; also [`ClientError::Tls`] when the URL is `https` and
    /// `connector` has no TLS, or the TLS handshake fails.
    pub async fn start_with(
        url: &str,
        transport: Transport,
        ports: &[u16],
        connector: &Connector,
    ) -> Result<Self, ClientError> {
        match transport {
            Transport::Spdy => {
                let (io, _) = upgrade(
                    url,
                    connector,
                    "SPDY/3.1",
                    "X-Stream-Protocol-Version",
                    &[PORTFORWARD_VERSION],
                )
                .await?;
                let (conn, _incoming) =
                    spdy::Connection::new(io, spdy::Role::Client, client_spdy_config());
                Ok(Self {
                    kind: PortForwardKind::Spdy {
                        conn,
                        next_id: std::sync::atomic::AtomicU64::new(0),
                    },
                })
            }
            Transport::WebSocket => {
                if ports.is_empty() {
                    return Err(ClientError::InvalidUrl(format!(
                        "{url}: WebSocket port-forward needs the ports up front"
                    )));
                }
                let query: Vec<String> = ports.iter().map(|p| format!("port={p}")).collect();
                let separator = if url.contains('?') { '&' } else { '?' };
                let url = format!("{url}{separator}{}", query.join("&"));
                let (mut socket, _) =
                    websocket_connect(&url, connector, websocket::Protocol::port_forward_all())
                        .await?;
                let mut connections = std::collections::HashMap::new();
                let mut errors = Vec::new();
                for (i, port) in ports.iter().enumerate() {
                    let Some(channels) = websocket::portforward::channels(i) else {
                        break;
                    };
                    let mut reader = socket.reader(channels.data);
                    let mut error = socket.reader(channels.error);
                    let writer = socket.writer(channels.data);
                    // Each channel starts with the port the server confirms.
                    websocket::portforward::read_port(&mut reader).await?;
                    websocket::portforward::read_port(&mut error).await?;
                    errors.push((*port, error));
                    connections.insert(*port, Box::pin(Joined { reader, writer }) as Forwarded);
                }
                tokio::spawn(async move {
                    let _keep_alive = socket;
                    for (port, error) in errors {
                        if let Ok(message) = read_bounded(error, 64 * 1024).await
                            && !message.is_empty()
                        {
                            tracing::warn!(port, message = %String::from_utf8_lossy(&message), "port-forward error");
                        }
                    }
                });
                Ok(Self {
                    kind: PortForwardKind::WebSocket {
                        ports: std::sync::Mutex::new(connections),
                    },
                })
            }
        }
    }

    /// Opens a connection to `port` in the sandbox.
    ///
    /// # Errors
    ///
    /// When the streams cannot be opened (or, over WebSocket, when the port was not
    /// requested or its one connection is already taken).
    pub async fn connect(&self, port: u16) -> Result<Forwarded, ClientError> {
        match &self.kind {
            PortForwardKind::Spdy { conn, next_id } => {
                let id = next_id
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    .to_string();
                let headers = |kind: &str| {
                    vec![
                        (protocol::STREAM_TYPE.to_string(), kind.to_string()),
                        (protocol::PORT.to_string(), port.to_string()),
                        (protocol::REQUEST_ID.to_string(), id.clone()),
                    ]
                };
                let error = conn
                    .open(headers(stream_type::ERROR))
                    .await
                    .map_err(|e| ClientError::Spdy(e.to_string()))?;
                let data = conn
                    .open(headers(stream_type::DATA))
                    .await
                    .map_err(|e| ClientError::Spdy(e.to_string()))?;
                tokio::spawn(async move {
                    if let Ok(message) = read_bounded(error, 64 * 1024).await
                        && !message.is_empty()
                    {
                        tracing::warn!(port, message = %String::from_utf8_lossy(&message), "port-forward error");
                    }
                });
                Ok(Box::pin(data))
            }
            PortForwardKind::WebSocket { ports } => ports
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&port)
                .ok_or_else(|| {
                    ClientError::WebSocket(format!(
                        "port {port} was not requested, or its one WebSocket connection is taken"
                    ))
                }),
        }
    }

    /// Listens on `local` and forwards every accepted TCP connection to `port`, until the
    /// returned task is aborted.
    ///
    /// # Errors
    ///
    /// When `local` cannot be bound.
    pub async fn listen(
        self,
        local: std::net::SocketAddr,
        port: u16,
    ) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>), ClientError> {
        let listener = tokio::net::TcpListener::bind(local).await?;
        let bound = listener.local_addr()?;
        let this = std::sync::Arc::new(self);
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let this = this.clone();
                tokio::spawn(async move {
                    match this.connect(port).await {
                        Ok(mut remote) => {
                            let _ = tokio::io::copy_bidirectional_with_sizes(
                                &mut tcp,
                                &mut remote,
                                crate::io::COPY_BUFFER,
                                crate::io::COPY_BUFFER,
                            )
                            .await;
                        }
                        Err(error) => tracing::warn!(%error, "port-forward connection failed"),
                    }
                });
            }
        });
        Ok((bound, task))
    }
}
