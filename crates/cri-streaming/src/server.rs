//! The streaming server: an HTTP/1.1 server whose URLs carry single-use tokens, upgrading to
//! SPDY/3.1 or WebSocket and running the runtime's exec, attach or port-forward.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cri_api::v1::{AttachRequest, ExecRequest, PortForwardRequest};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::io::{Joined, lend, resizes};
use crate::protocol::{self, PORTFORWARD_VERSION, Status, Version, stream_type};
use crate::runtime::{Session, StreamingRuntime};
use crate::token::{Cache, Pending, TokenError};
use crate::{spdy, websocket};

/// How the streaming server runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen (default `127.0.0.1:0`: loopback, a free port). The server has no
    /// authentication beyond its tokens; keep it on loopback unless a proxy authenticates.
    pub addr: SocketAddr,
    /// The base of the URLs handed out (default `http://<bound address>`, or `https://` with
    /// `Server::start_tls`, feature `tls`), for servers reached through a different address.
    pub base_url: Option<String>,
    /// How long a token stays valid (default 1 minute).
    pub token_ttl: Duration,
    /// How many tokens may be pending at once (default 1000).
    pub max_tokens: usize,
    /// How long the client has to create its streams after the upgrade (default 30 s).
    pub stream_creation_timeout: Duration,
    /// How long a session may go without traffic before it is closed (default 4 h). A
    /// port-forward session is closed after this long without a forwarded connection.
    pub idle_timeout: Duration,
    /// How long a client has to send a complete HTTP request head, counted from its first
    /// byte or, on a new connection, from the accept (default 10 s). Slower or silent
    /// clients are disconnected.
    pub header_read_timeout: Duration,
    /// Largest HTTP request head, in bytes (default 64 KiB, at least 8 KiB). Larger heads are
    /// answered `431 Request Header Fields Too Large`.
    pub max_request_head: usize,
    /// Limits of SPDY sessions: largest control frame and inflated header block, windows.
    pub spdy: spdy::Config,
    /// Limits of WebSocket sessions: largest incoming message and frame, buffers.
    pub websocket: websocket::Config,
}

/// Default of [`Config::header_read_timeout`].
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Default of [`Config::max_request_head`].
const DEFAULT_MAX_REQUEST_HEAD: usize = 64 * 1024;

/// hyper's smallest read buffer, the floor of [`Config::max_request_head`].
const MIN_REQUEST_HEAD: usize = 8 * 1024;

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            base_url: None,
            token_ttl: Duration::from_secs(60),
            max_tokens: 1000,
            stream_creation_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(4 * 3600),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_request_head: DEFAULT_MAX_REQUEST_HEAD,
            spdy: spdy::Config::default(),
            websocket: websocket::Config::default(),
        }
    }
}

struct Shared {
    runtime: Arc<dyn StreamingRuntime>,
    cache: Cache,
    config: Config,
    base_url: String,
}

/// A running streaming server. Cheap to clone; dropping the last clone does not stop it —
/// call [`Server::shutdown`].
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("pending_tokens", &self.shared.cache.len())
            .finish()
    }
}

/// How accepted connections are set up before HTTP is spoken on them.
#[derive(Clone)]
enum Accept {
    Plain,
    #[cfg(feature = "tls")]
    Tls(tokio_rustls::TlsAcceptor),
}

/// How long a client has to complete the TLS handshake.
#[cfg(feature = "tls")]
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Server {
    /// Binds `config.addr` and starts serving `runtime` over plain HTTP.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound.
    pub async fn start(
        runtime: Arc<dyn StreamingRuntime>,
        config: Config,
    ) -> std::io::Result<Self> {
        Self::bind(runtime, config, Accept::Plain).await
    }

    /// Binds `config.addr` and starts serving `runtime` over HTTPS with `tls`: the URLs
    /// handed out start with `https://`, and clients need TLS (with a
    /// [`Connector`](crate::Connector) that trusts the certificate). Connections that fail
    /// the handshake, or speak plain HTTP (answered `400` with a short explanation), are
    /// dropped without affecting other sessions.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound.
    #[cfg(feature = "tls")]
    pub async fn start_tls(
        runtime: Arc<dyn StreamingRuntime>,
        config: Config,
        tls: crate::tls::TlsServerConfig,
    ) -> std::io::Result<Self> {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.rustls_config().clone());
        Self::bind(runtime, config, Accept::Tls(acceptor)).await
    }

    async fn bind(
        runtime: Arc<dyn StreamingRuntime>,
        config: Config,
        accept: Accept,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.addr).await?;
        let local_addr = listener.local_addr()?;
        let scheme = match accept {
            Accept::Plain => "http",
            #[cfg(feature = "tls")]
            Accept::Tls(_) => "https",
        };
        let base_url = config
            .base_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{local_addr}"))
            .trim_end_matches('/')
            .to_string();
        let shared = Arc::new(Shared {
            runtime,
            cache: Cache::new(config.token_ttl, config.max_tokens),
            config,
            base_url,
        });
        let (stop, mut stopped) = watch::channel(false);
        let accept_shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    accepted = listener.accept() => {
                        let Ok((stream, peer)) = accepted else { continue };
                        tokio::spawn(connection(accept_shared.clone(), accept.clone(), stream, peer));
                    }
                }
            }
        });
        tracing::info!(%local_addr, %scheme, "CRI streaming server listening");
        Ok(Self {
            shared,
            local_addr,
            stop,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// How many tokens are waiting to be used.
    pub fn pending(&self) -> usize {
        self.shared.cache.len()
    }

    fn url(&self, request: Pending) -> Result<String, TokenError> {
        let kind = request.kind();
        let token = self.shared.cache.insert(request)?;
        Ok(format!("{}/{kind}/{token}", self.shared.base_url))
    }

    /// Stores an `Exec` request and returns the URL that runs it.
    ///
    /// # Errors
    ///
    /// When too many requests are pending.
    pub fn exec_url(&self, request: ExecRequest) -> Result<String, TokenError> {
        self.url(Pending::Exec(request))
    }

    /// Stores an `Attach` request and returns the URL that runs it.
    ///
    /// # Errors
    ///
    /// When too many requests are pending.
    pub fn attach_url(&self, request: AttachRequest) -> Result<String, TokenError> {
        self.url(Pending::Attach(request))
    }

    /// Stores a `PortForward` request and returns the URL that runs it.
    ///
    /// # Errors
    ///
    /// When too many requests are pending.
    pub fn port_forward_url(&self, request: PortForwardRequest) -> Result<String, TokenError> {
        self.url(Pending::PortForward(request))
    }

    /// Stops accepting connections. Sessions in progress run to their end.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }
}

/// Sets up one accepted connection (the TLS handshake, when serving TLS) and serves HTTP on
/// it. Failures only end this connection.
async fn connection(shared: Arc<Shared>, accept: Accept, stream: TcpStream, peer: SocketAddr) {
    match accept {
        Accept::Plain => serve(shared, stream, peer).await,
        #[cfg(feature = "tls")]
        Accept::Tls(acceptor) => {
            // Interactive sessions send small TLS records; do not hold them back.
            let _ = stream.set_nodelay(true);
            let handshake = async {
                if !starts_with_tls(&stream).await {
                    refuse_plain_http(stream).await;
                    return None;
                }
                match acceptor.accept(stream).await {
                    Ok(tls) => Some(tls),
                    Err(error) => {
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                        None
                    }
                }
            };
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Some(tls)) => serve(shared, tls, peer).await,
                Ok(None) => {}
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

/// Whether the client's first byte opens a TLS handshake record (content type 22); `false`
/// for anything else, such as the `P` of a plain-HTTP `POST`.
#[cfg(feature = "tls")]
async fn starts_with_tls(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(stream.peek(&mut first).await, Ok(1) if first[0] == 0x16)
}

/// Answers a plain-HTTP request on the TLS port with a `400` that says so, and closes.
#[cfg(feature = "tls")]
async fn refuse_plain_http(mut stream: TcpStream) {
    const BODY: &str = "client sent an HTTP request to an HTTPS server\n";
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    tracing::debug!(peer = ?stream.peer_addr().ok(), "plain HTTP on the TLS port");
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
    // Read what the client sent until it closes (bounded), so that closing does not reset
    // the connection before the client has read the answer.
    let _ = crate::io::read_bounded(&mut stream, 64 * 1024).await;
}

/// Serves HTTP/1.1 (with upgrades) on one connection.
async fn serve<IO>(shared: Arc<Shared>, io: IO, peer: SocketAddr)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = &shared.config;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_request_head.max(MIN_REQUEST_HEAD))
        .max_header_size(config.max_request_head.max(MIN_REQUEST_HEAD));
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(shared, req).await) }
    });
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    if let Err(error) = conn.await {
        tracing::debug!(%peer, %error, "streaming connection ended");
    }
}

type Body = Full<Bytes>;

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// All values of a header, split on commas.
fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect()
}

fn upgrade_kind(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (Some(kind), Some(token)) = (parts.next(), parts.next()) else {
        return text(StatusCode::NOT_FOUND, "not found");
    };
    if !matches!(kind, "exec" | "attach" | "portforward") {
        return text(StatusCode::NOT_FOUND, "not found");
    }
    let pending = match shared.cache.take(token) {
        Ok(pending) if pending.kind() == kind => pending,
        Ok(_) | Err(TokenError::Unknown) => {
            return text(
                StatusCode::NOT_FOUND,
                "unknown, used or expired streaming token",
            );
        }
        Err(TokenError::Full) => unreachable!("take never reports Full"),
    };
    match upgrade_kind(req.headers()).as_deref() {
        Some("spdy/3.1") => upgrade_spdy(shared, req, pending),
        Some("websocket") => upgrade_websocket(shared, req, pending),
        _ => text(
            StatusCode::BAD_REQUEST,
            "streaming needs an upgrade to SPDY/3.1 or websocket",
        ),
    }
}

fn upgrade_spdy(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
    pending: Pending,
) -> Response<Body> {
    let offered = values(req.headers(), "x-stream-protocol-version");
    let chosen = match &pending {
        Pending::PortForward(_) => offered
            .contains(&PORTFORWARD_VERSION)
            .then_some(PORTFORWARD_VERSION),
        _ => Version::negotiate(offered.iter().copied()).map(Version::name),
    };
    let Some(chosen) = chosen else {
        return text(
            StatusCode::FORBIDDEN,
            &format!("unable to upgrade: no common protocol in {offered:?}"),
        );
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let io = match upgrade.await {
            Ok(io) => TokioIo::new(io),
            Err(error) => {
                tracing::debug!(%error, "SPDY upgrade failed");
                return;
            }
        };
        let (conn, incoming) =
            spdy::Connection::new(io, spdy::Role::Server, shared.config.spdy.clone());
        let result = match pending {
            Pending::PortForward(request) => {
                spdy_port_forward(&shared, &conn, incoming, request).await
            }
            other => {
                let version = Version::parse(chosen).unwrap_or(Version::V1);
                spdy_remotecommand(&shared, incoming, version, other).await
            }
        };
        if let Err(message) = result {
            tracing::debug!(message, "SPDY session ended with an error");
        }
        // The client closes once it has read the status; give it a moment to do so before
        // tearing the connection down, so the status is never lost to a race.
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
        conn.close();
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    headers.insert(
        "x-stream-protocol-version",
        HeaderValue::from_static(chosen),
    );
    response
}

/// What an exec or attach session asked for.
struct Wanted {
    container_id: String,
    cmd: Option<Vec<String>>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

impl Wanted {
    fn of(pending: Pending) -> Self {
        match pending {
            Pending::Exec(r) => Self {
                container_id: r.container_id,
                cmd: Some(r.cmd),
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr && !r.tty,
                tty: r.tty,
            },
            Pending::Attach(r) => Self {
                container_id: r.container_id,
                cmd: None,
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr && !r.tty,
                tty: r.tty,
            },
            Pending::PortForward(_) => unreachable!("port-forward is not a remote command"),
        }
    }
}

async fn run_remotecommand(shared: &Shared, wanted: &Wanted, session: Session) -> Status {
    let result = match &wanted.cmd {
        Some(cmd) => {
            shared
                .runtime
                .exec(&wanted.container_id, cmd.clone(), session)
                .await
        }
        None => shared.runtime.attach(&wanted.container_id, session).await,
    };
    match result {
        Ok(code) => Status::exit(code),
        Err(error) => Status::error(error.to_string()),
    }
}

async fn spdy_remotecommand(
    shared: &Shared,
    mut incoming: spdy::Incoming,
    version: Version,
    pending: Pending,
) -> Result<(), String> {
    let wanted = Wanted::of(pending);
    let expected = usize::from(wanted.stdin)
        + usize::from(wanted.stdout)
        + usize::from(wanted.stderr)
        + 1 // the error stream
        + usize::from(wanted.tty && version.has_resize());
    let mut streams: Vec<(String, spdy::Stream)> = Vec::new();
    let deadline = tokio::time::Instant::now() + shared.config.stream_creation_timeout;
    while streams.len() < expected {
        let next = tokio::time::timeout_at(deadline, incoming.next()).await;
        let Ok(Some(candidate)) = next else {
            let message = format!(
                "the client created {} of the {expected} streams its request asked for",
                streams.len()
            );
            if let Some(i) = streams.iter().position(|(k, _)| k == stream_type::ERROR) {
                let mut error = streams.swap_remove(i).1;
                let payload = if version >= Version::V4 {
                    serde_json::to_vec(&Status::error(message.clone())).unwrap_or_default()
                } else {
                    message.clone().into_bytes()
                };
                let _ = error.write_all(&payload).await;
                let _ = error.shutdown().await;
            }
            return Err(message);
        };
        let kind = candidate
            .headers()
            .iter()
            .find(|(k, _)| k == protocol::STREAM_TYPE)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let stream = candidate.accept().await.map_err(|e| e.to_string())?;
        if matches!(
            kind.as_str(),
            stream_type::ERROR
                | stream_type::STDIN
                | stream_type::STDOUT
                | stream_type::STDERR
                | stream_type::RESIZE
        ) {
            streams.push((kind, stream));
        } else {
            stream.reset();
        }
    }
    let mut take = |kind: &str| {
        streams
            .iter()
            .position(|(k, _)| k == kind)
            .map(|i| streams.swap_remove(i).1)
    };
    let mut error_stream = take(stream_type::ERROR);
    let stdin = take(stream_type::STDIN);
    let (stdout, stdout_done) = match take(stream_type::STDOUT) {
        Some(s) => {
            let (w, task) = lend(s);
            (Some(w), Some(task))
        }
        None => (None, None),
    };
    let (stderr, stderr_done) = match take(stream_type::STDERR) {
        Some(s) => {
            let (w, task) = lend(s);
            (Some(w), Some(task))
        }
        None => (None, None),
    };
    let resize = take(stream_type::RESIZE).map(resizes);
    let session = Session {
        tty: wanted.tty,
        stdin: stdin.map(|s| Box::pin(s) as crate::runtime::Reader),
        stdout,
        stderr,
        resize,
    };
    let status = tokio::time::timeout(
        shared.config.idle_timeout,
        run_remotecommand(shared, &wanted, session),
    )
    .await
    .unwrap_or_else(|_| Status::error("the session exceeded the idle timeout"));
    for done in [stdout_done, stderr_done].into_iter().flatten() {
        let _ = done.await;
    }
    if let Some(error) = error_stream.as_mut() {
        let payload = if version >= Version::V4 {
            serde_json::to_vec(&status).unwrap_or_default()
        } else if status.status == "Success" {
            Vec::new()
        } else {
            status.message.clone().into_bytes()
        };
        if !payload.is_empty() {
            let _ = error.write_all(&payload).await;
        }
        let _ = error.shutdown().await;
    }
    Ok(())
}

/// Port-forward stream pairs of one SPDY session that may wait for their second stream.
const MAX_HALF_OPEN_FORWARDS: usize = 64;

fn port_allowed(request: &PortForwardRequest, port: u16) -> bool {
    request.port.is_empty() || request.port.contains(&i32::from(port))
}

async fn spdy_port_forward(
    shared: &Arc<Shared>,
    conn: &spdy::Connection,
    mut incoming: spdy::Incoming,
    request: PortForwardRequest,
) -> Result<(), String> {
    // Each forwarded connection is a pair of streams (error + data) sharing a request id.
    // Clients open the two back to back, so only a few pairs are ever half-open; the map is
    // bounded so that a client holding a valid token cannot grow it without limit.
    let mut halves: std::collections::HashMap<
        String,
        (Option<spdy::Stream>, Option<spdy::Stream>, u16),
    > = std::collections::HashMap::new();
    // Each forwarded connection holds a clone: the session is idle when only this one is left.
    let active = Arc::new(());
    loop {
        // A session is checked every idle timeout: one without a running forwarded connection
        // at that moment (half-open pairs do not count) is closed, after one to two idle
        // timeouts.
        let next = tokio::select! {
            next = incoming.next() => next,
            () = conn.closed() => None,
            () = tokio::time::sleep(shared.config.idle_timeout) => {
                if Arc::strong_count(&active) == 1 {
                    return Err("port-forward session idle for too long".into());
                }
                continue;
            }
        };
        let Some(candidate) = next else { return Ok(()) };
        let header = |name: &str| {
            candidate
                .headers()
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let kind = header(protocol::STREAM_TYPE);
        let request_id = header(protocol::REQUEST_ID);
        let port: Option<u16> = header(protocol::PORT).parse().ok();
        let stream = candidate.accept().await.map_err(|e| e.to_string())?;
        let is_error = match kind.as_str() {
            stream_type::ERROR => true,
            stream_type::DATA => false,
            _ => {
                stream.reset();
                continue;
            }
        };
        let Some(port) = port else {
            stream.reset();
            continue;
        };
        if !halves.contains_key(&request_id) && halves.len() >= MAX_HALF_OPEN_FORWARDS {
            tracing::debug!(
                request_id,
                "port-forward: too many half-open stream pairs; refusing another"
            );
            stream.reset();
            continue;
        }
        let entry = halves
            .entry(request_id.clone())
            .or_insert((None, None, port));
        let slot = if is_error { &mut entry.0 } else { &mut entry.1 };
        // A second stream of the same kind and id replaces the first, which is reset.
        if let Some(previous) = slot.replace(stream) {
            previous.reset();
        }
        if entry.0.is_some() && entry.1.is_some() {
            let Some((Some(mut error), Some(data), port)) = halves.remove(&request_id) else {
                continue;
            };
            let shared = shared.clone();
            let sandbox = request.pod_sandbox_id.clone();
            let allowed = port_allowed(&request, port);
            let active = active.clone();
            tokio::spawn(async move {
                let _active = active;
                let result = if allowed {
                    shared
                        .runtime
                        .port_forward(&sandbox, port, Box::pin(data))
                        .await
                        .map_err(|e| e.to_string())
                } else {
                    Err(format!("port {port} is not in the forwarded ports"))
                };
                if let Err(message) = result {
                    let _ = error.write_all(message.as_bytes()).await;
                }
                let _ = error.shutdown().await;
            });
        }
    }
}

fn upgrade_websocket(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
    pending: Pending,
) -> Response<Body> {
    let offered = values(req.headers(), "sec-websocket-protocol");
    let chosen = match &pending {
        Pending::PortForward(_) => websocket::Protocol::negotiate_port_forward(&offered),
        _ => websocket::Protocol::negotiate(&offered),
    };
    let Some(protocol) = chosen else {
        return text(
            StatusCode::FORBIDDEN,
            &format!("unable to upgrade: no common websocket protocol in {offered:?}"),
        );
    };
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    let query_ports: Vec<u16> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.strip_prefix("port="))
        .filter_map(|p| p.parse().ok())
        .collect();
    if let Pending::PortForward(request) = &pending {
        // Two channels per port in a one-byte channel space.
        let count = if request.port.is_empty() {
            query_ports.len()
        } else {
            request.port.len()
        };
        if count > websocket::portforward::MAX_PORTS {
            return text(
                StatusCode::BAD_REQUEST,
                &format!(
                    "{count} ports to forward: a WebSocket session carries at most {}",
                    websocket::portforward::MAX_PORTS
                ),
            );
        }
    }
    let offered_name = protocol.name_for(&offered);
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let io = match upgrade.await {
            Ok(io) => TokioIo::new(io),
            Err(error) => {
                tracing::debug!(%error, "websocket upgrade failed");
                return;
            }
        };
        let socket = websocket::server(io, protocol, shared.config.websocket).await;
        match pending {
            Pending::PortForward(request) => {
                ws_port_forward(&shared, socket, request, query_ports).await
            }
            other => ws_remotecommand(&shared, socket, protocol, other).await,
        }
    });
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert("sec-websocket-accept", accept);
    }
    if !offered_name.is_empty() {
        headers.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(offered_name),
        );
    }
    response
}

async fn ws_remotecommand(
    shared: &Shared,
    mut socket: websocket::ChannelSocket,
    protocol: websocket::Protocol,
    pending: Pending,
) {
    let wanted = Wanted::of(pending);
    let stdin = wanted
        .stdin
        .then(|| Box::pin(socket.reader(0)) as crate::runtime::Reader);
    let (stdout, stdout_done) = if wanted.stdout {
        let (w, t) = lend(socket.writer(1));
        (Some(w), Some(t))
    } else {
        (None, None)
    };
    let (stderr, stderr_done) = if wanted.stderr {
        let (w, t) = lend(socket.writer(2));
        (Some(w), Some(t))
    } else {
        (None, None)
    };
    let mut error = socket.writer(3);
    let resize = wanted.tty.then(|| resizes(socket.reader(4)));
    let session = Session {
        tty: wanted.tty,
        stdin,
        stdout,
        stderr,
        resize,
    };
    let status = tokio::time::timeout(
        shared.config.idle_timeout,
        run_remotecommand(shared, &wanted, session),
    )
    .await
    .unwrap_or_else(|_| Status::error("the session exceeded the idle timeout"));
    for done in [stdout_done, stderr_done].into_iter().flatten() {
        let _ = done.await;
    }
    let payload = if protocol.is_v1() {
        if status.status == "Success" {
            Vec::new()
        } else {
            status.message.clone().into_bytes()
        }
    } else {
        serde_json::to_vec(&status).unwrap_or_default()
    };
    if !payload.is_empty() {
        let _ = error.write_all(&payload).await;
    }
    let _ = error.shutdown().await;
    socket.close().await;
}

async fn ws_port_forward(
    shared: &Arc<Shared>,
    mut socket: websocket::ChannelSocket,
    request: PortForwardRequest,
    query_ports: Vec<u16>,
) {
    let ports: Vec<u16> = if request.port.is_empty() {
        query_ports
    } else {
        request
            .port
            .iter()
            .filter_map(|p| u16::try_from(*p).ok())
            .collect()
    };
    let mut tasks = Vec::new();
    for (i, port) in ports.into_iter().enumerate() {
        let Some(channels) = websocket::portforward::channels(i) else {
            break; // refused before the upgrade
        };
        let (data_ch, error_ch) = (channels.data, channels.error);
        let mut data_writer = socket.writer(data_ch);
        let mut error_writer = socket.writer(error_ch);
        let data_reader = socket.reader(data_ch);
        let shared = shared.clone();
        let sandbox = request.pod_sandbox_id.clone();
        tasks.push(tokio::spawn(async move {
            // The first message on each channel names the port (little-endian).
            let prefix = port.to_le_bytes();
            if data_writer.write_all(&prefix).await.is_err()
                || error_writer.write_all(&prefix).await.is_err()
            {
                return;
            }
            let duplex = Joined {
                reader: data_reader,
                writer: data_writer,
            };
            if let Err(error) = shared
                .runtime
                .port_forward(&sandbox, port, Box::pin(duplex))
                .await
            {
                let _ = error_writer.write_all(error.to_string().as_bytes()).await;
            }
            let _ = error_writer.shutdown().await;
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    socket.close().await;
}
