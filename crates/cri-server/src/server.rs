//! Building a server and serving it on a Unix socket (or any connection).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use cri_api::v1::image_service_server::ImageServiceServer;
use cri_api::v1::runtime_service_server::RuntimeServiceServer;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixListener;
use tower_layer::{Identity, Layer, Stack};
use tower_service::Service;

use crate::authority::LegacyAuthority;
use crate::error::BoxError;
use crate::metrics::Metrics;
use crate::routes::Routes;
use crate::service::{ImageAdapter, RuntimeAdapter, Shared};
use crate::socket::{SocketGuard, bind};
use crate::{Error, ImageService, PeerCredentials, Result, RuntimeService};

/// Default permission bits of the socket file: owner and group may connect.
pub const DEFAULT_SOCKET_MODE: u32 = 0o660;

/// Default time in-flight calls get to finish after shutdown is requested.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Default time a new connection has to send the HTTP/2 preface and its first frame header.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default interval of the server's HTTP/2 keep-alive PINGs.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(120);

/// Default time a client has to acknowledge a keep-alive PING before its connection is closed.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Default number of calls (HTTP/2 streams) one connection may have open at once.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 1024;

/// Default largest header list (HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`) a call may send.
pub const DEFAULT_MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;

/// Largest HTTP/2 frame payload the server accepts (`SETTINGS_MAX_FRAME_SIZE`).
pub(crate) const MAX_FRAME_SIZE: u32 = 64 << 10;

/// Bytes that end the handshake: the 24-byte client preface and a 9-byte frame header.
const HANDSHAKE_BYTES: usize = 24 + 9;

/// Configures a [`Server`]. Created by [`Server::builder`].
///
/// ```no_run
/// use std::sync::Arc;
/// use cri_server::{Context, ImageService, Result, RuntimeService, Server, async_trait};
/// use cri_server::cri_api::v1::{VersionRequest, VersionResponse};
///
/// struct MyRuntime;
///
/// #[async_trait]
/// impl RuntimeService for MyRuntime {
///     async fn version(&self, _: Context, _: VersionRequest) -> Result<VersionResponse> {
///         Ok(VersionResponse {
///             version: "0.1.0".into(),
///             runtime_name: "my-runtime".into(),
///             runtime_version: "0.1.0".into(),
///             runtime_api_version: "v1".into(),
///         })
///     }
/// }
/// impl ImageService for MyRuntime {}
///
/// # async fn run() -> cri_server::Result<()> {
/// Server::builder()
///     .service(Arc::new(MyRuntime)) // one object serving both services
///     .allow_uids([0])              // only root may call
///     .build()?
///     .serve("/run/my-runtime/cri.sock") // until SIGTERM or SIGINT
///     .await
/// # }
/// ```
pub struct Builder<L = Identity> {
    runtime: Option<Arc<dyn RuntimeService>>,
    image: Option<Arc<dyn ImageService>>,
    socket_mode: u32,
    allowed_uids: Option<Vec<u32>>,
    max_message_size: usize,
    drain_timeout: Option<Duration>,
    legacy_authority: bool,
    limits: Limits,
    streaming: Option<cri_streaming::Server>,
    layer: L,
}

/// Connection limits against slow, silent and greedy clients.
#[derive(Clone, Copy, Debug)]
struct Limits {
    handshake_timeout: Option<Duration>,
    keepalive_interval: Option<Duration>,
    keepalive_timeout: Duration,
    max_concurrent_streams: u32,
    max_header_list_size: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
            keepalive_interval: Some(DEFAULT_KEEPALIVE_INTERVAL),
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            max_header_list_size: DEFAULT_MAX_HEADER_LIST_SIZE,
        }
    }
}

impl<L> std::fmt::Debug for Builder<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("runtime", &self.runtime.is_some())
            .field("image", &self.image.is_some())
            .field("socket_mode", &format_args!("{:o}", self.socket_mode))
            .field("allowed_uids", &self.allowed_uids)
            .field("max_message_size", &self.max_message_size)
            .field("drain_timeout", &self.drain_timeout)
            .field("legacy_authority", &self.legacy_authority)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Default for Builder<Identity> {
    fn default() -> Self {
        Self {
            runtime: None,
            image: None,
            socket_mode: DEFAULT_SOCKET_MODE,
            allowed_uids: None,
            max_message_size: cri_api::MAX_MESSAGE_SIZE,
            drain_timeout: Some(DEFAULT_DRAIN_TIMEOUT),
            legacy_authority: true,
            limits: Limits::default(),
            streaming: None,
            layer: Identity::new(),
        }
    }
}

impl<L> Builder<L> {
    /// Serves `RuntimeService` with `runtime`.
    pub fn runtime(self, runtime: impl RuntimeService) -> Self {
        self.runtime_shared(Arc::new(runtime))
    }

    /// Serves `RuntimeService` with a runtime shared with other code.
    pub fn runtime_shared(mut self, runtime: Arc<dyn RuntimeService>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Serves `ImageService` with `image`.
    pub fn image(self, image: impl ImageService) -> Self {
        self.image_shared(Arc::new(image))
    }

    /// Serves `ImageService` with an image service shared with other code.
    pub fn image_shared(mut self, image: Arc<dyn ImageService>) -> Self {
        self.image = Some(image);
        self
    }

    /// Serves both services with one object.
    pub fn service<T: RuntimeService + ImageService>(self, both: Arc<T>) -> Self {
        let runtime: Arc<dyn RuntimeService> = both.clone();
        let image: Arc<dyn ImageService> = both;
        self.runtime_shared(runtime).image_shared(image)
    }

    /// Permission bits of the socket file (default `0o660`).
    pub fn socket_mode(mut self, mode: u32) -> Self {
        self.socket_mode = mode;
        self
    }

    /// Only processes running as one of these uids may call; others get `PermissionDenied`.
    /// The uid is the socket's peer credential, which clients cannot forge. Default: no
    /// allowlist (the socket's permissions decide).
    pub fn allow_uids(mut self, uids: impl IntoIterator<Item = u32>) -> Self {
        self.allowed_uids = Some(uids.into_iter().collect());
        self
    }

    /// Largest message accepted or sent, in bytes (default 16 MiB, the kubelet's). Larger
    /// requests are answered with `ResourceExhausted`.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How long in-flight calls may run after shutdown is requested (default 30 s); `None`
    /// waits for them however long they take.
    pub fn drain_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Whether to accept clients that send the socket path as `:authority` (grpc-go before
    /// 2024; default `true`). See the `authority` section of the crate docs.
    pub fn legacy_authority(mut self, enabled: bool) -> Self {
        self.legacy_authority = enabled;
        self
    }

    /// How long a new connection has to send the HTTP/2 client preface and the header of its
    /// first frame (default 10 s); a client that is silent or slower is disconnected, so that
    /// idle sockets cannot pile up. `None` waits forever.
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.limits.handshake_timeout = timeout;
        self
    }

    /// HTTP/2 keep-alive: every `interval` without traffic the server sends a PING, and a
    /// connection whose client does not answer within `timeout` is closed (defaults 120 s and
    /// 20 s). This ends half-open connections and clients stuck in the middle of a frame.
    /// `None` as the interval disables the PINGs.
    pub fn keepalive(mut self, interval: Option<Duration>, timeout: Duration) -> Self {
        self.limits.keepalive_interval = interval;
        self.limits.keepalive_timeout = timeout;
        self
    }

    /// How many calls one connection may have in flight (HTTP/2
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`, default 1024). Clients queue calls beyond it; streams
    /// opened beyond it anyway are refused (`REFUSED_STREAM`).
    pub fn max_concurrent_streams(mut self, streams: u32) -> Self {
        self.limits.max_concurrent_streams = streams;
        self
    }

    /// Largest header list a call may send, in bytes as HTTP/2 counts them (name, value and
    /// 32 per header; default 16 KiB). Larger header blocks are refused, and never buffered
    /// beyond this size.
    pub fn max_header_list_size(mut self, bytes: u32) -> Self {
        self.limits.max_header_list_size = bytes;
        self
    }

    /// Answers `Exec`, `Attach` and `PortForward` with URLs on `server`, which runs them
    /// with its [`StreamingRuntime`](cri_streaming::StreamingRuntime): a runtime that
    /// implements that trait gets working streaming RPCs with no further code. Without a
    /// streaming server, the runtime's own `exec`/`attach`/`port_forward` methods answer.
    ///
    /// Requests are validated first (container id, streams, no `tty` with `stderr`, ports).
    pub fn streaming(mut self, server: cri_streaming::Server) -> Self {
        self.streaming = Some(server);
        self
    }

    /// Wraps the CRI service in a tower layer (logging, auth, rate limits...). Layers apply
    /// outside-in in the order added: the last one added sees requests first.
    pub fn layer<N>(self, layer: N) -> Builder<Stack<N, L>> {
        Builder {
            runtime: self.runtime,
            image: self.image,
            socket_mode: self.socket_mode,
            allowed_uids: self.allowed_uids,
            max_message_size: self.max_message_size,
            drain_timeout: self.drain_timeout,
            legacy_authority: self.legacy_authority,
            limits: self.limits,
            streaming: self.streaming,
            layer: Stack::new(layer, self.layer),
        }
    }

    /// Builds the server. Fails when neither a runtime nor an image service was given.
    pub fn build(self) -> Result<Server<L::Service>>
    where
        L: Layer<Routes>,
    {
        if self.runtime.is_none() && self.image.is_none() {
            return Err(Error::Config(
                "neither a runtime nor an image service was given".into(),
            ));
        }
        let metrics = Metrics::default();
        let shared = Arc::new(Shared {
            metrics: metrics.clone(),
        });
        let limit = self.max_message_size;
        let runtime = self.runtime.map(|runtime| {
            RuntimeServiceServer::new(RuntimeAdapter {
                runtime,
                shared: shared.clone(),
                streaming: self.streaming.clone(),
            })
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit)
        });
        let image = self.image.map(|image| {
            ImageServiceServer::new(ImageAdapter {
                image,
                shared: shared.clone(),
            })
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit)
        });
        let allowed = self.allowed_uids.map(Arc::from);
        let routes = Routes::new(runtime, image, allowed);
        Ok(Server {
            service: self.layer.layer(routes),
            metrics,
            config: Config {
                socket_mode: self.socket_mode,
                drain_timeout: self.drain_timeout,
                legacy_authority: self.legacy_authority,
                limits: self.limits,
            },
        })
    }
}

#[derive(Clone, Copy, Debug)]
struct Config {
    socket_mode: u32,
    drain_timeout: Option<Duration>,
    legacy_authority: bool,
    limits: Limits,
}

/// A CRI server, ready to serve. See [`Server::builder`].
#[derive(Debug)]
pub struct Server<S = Routes> {
    service: S,
    metrics: Metrics,
    config: Config,
}

impl Server<Routes> {
    /// Starts configuring a server.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The CRI service itself, to mount inside another hyper or tonic server.
    pub fn into_routes(self) -> Routes {
        self.service
    }
}

impl<S, B> Server<S>
where
    S: Service<http::Request<Incoming>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    /// Call counts and latencies per method, live.
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// Binds the Unix socket at `path` (see [`Bound`] for the rules) without serving yet.
    ///
    /// Must be called inside a Tokio runtime.
    pub fn bind(self, path: impl AsRef<Path>) -> Result<Bound<S>> {
        let path = path.as_ref();
        let (listener, guard) = bind(path, self.config.socket_mode)?;
        tracing::info!(path = %path.display(), "CRI server listening");
        Ok(Bound {
            server: self,
            listener,
            guard,
            path: path.to_path_buf(),
        })
    }

    /// Binds `path` and serves until SIGTERM or SIGINT, then shuts down gracefully.
    pub async fn serve(self, path: impl AsRef<Path>) -> Result<()> {
        self.bind(path)?.serve().await
    }

    /// Binds `path` and serves until `signal` completes, then shuts down gracefully.
    pub async fn serve_with_shutdown(
        self,
        path: impl AsRef<Path>,
        signal: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        self.bind(path)?.serve_with_shutdown(signal).await
    }

    /// Serves one already-established connection (an in-memory pipe, a socket accepted
    /// elsewhere) until the client closes it. `peer` is what calls see as their
    /// [`PeerCredentials`].
    pub async fn serve_connection<IO>(&self, io: IO, peer: Option<PeerCredentials>) -> Result<()>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let connection = self.connection(io, peer);
        connection.await.map_err(|source| Error::Io {
            context: "serving a connection".into(),
            source: std::io::Error::other(source),
        })
    }

    fn connection<IO>(&self, io: IO, peer: Option<PeerCredentials>) -> Http2Connection<IO, S>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits = self.config.limits;
        let io = if self.config.legacy_authority {
            MaybeLegacy::Legacy(Box::new(LegacyAuthority::new(
                io,
                limits.max_header_list_size as usize,
            )))
        } else {
            MaybeLegacy::Plain(io)
        };
        let io = Handshake::new(io, limits.handshake_timeout);
        let service = TowerToHyperService::new(WithPeer {
            inner: self.service.clone(),
            peer,
        });
        http2_settings(&limits).serve_connection(TokioIo::new(io), service)
    }
}

/// One served HTTP/2 connection: the client's bytes through the handshake deadline and the
/// legacy-authority layer, calls through the service with the peer's credentials.
type Http2Connection<IO, S> = hyper::server::conn::http2::Connection<
    TokioIo<Handshake<MaybeLegacy<IO>>>,
    TowerToHyperService<WithPeer<S>>,
    TokioExecutor,
>;

/// HTTP/2 settings for CRI traffic: large windows so that multi-megabyte list responses and
/// requests flow without waiting for window updates, and the connection limits.
fn http2_settings(limits: &Limits) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(8 << 20)
        .max_send_buf_size(4 << 20)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_list_size)
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.keepalive_timeout);
    builder
}

/// A connection that must deliver its first [`HANDSHAKE_BYTES`] bytes before a deadline;
/// reading fails with `TimedOut` once it has passed. After that it is a plain pass-through.
pub(crate) struct Handshake<IO> {
    inner: IO,
    /// Bytes still expected before the deadline stops applying.
    missing: usize,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<IO> Handshake<IO> {
    fn new(inner: IO, timeout: Option<Duration>) -> Self {
        Self {
            inner,
            missing: HANDSHAKE_BYTES,
            deadline: timeout.map(|t| Box::pin(tokio::time::sleep(t))),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Handshake<IO> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        let Some(deadline) = this.deadline.as_mut() else {
            return read;
        };
        match read {
            Poll::Ready(result) => {
                let n = buf.filled().len() - before;
                this.missing = this.missing.saturating_sub(n);
                if this.missing == 0 || n == 0 {
                    this.deadline = None;
                }
                Poll::Ready(result)
            }
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.deadline = None;
                    tracing::debug!("a client did not finish the HTTP/2 handshake in time");
                    Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client did not send the HTTP/2 preface in time",
                    )))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Handshake<IO> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A server bound to its Unix socket. Created by [`Server::bind`].
///
/// Binding creates missing parent directories and sets the socket's mode. A stale socket file
/// left by a crashed server is replaced; a socket another server is still listening on is
/// never taken ([`Error::SocketInUse`]), and a path that is not a socket is never removed.
/// When serving ends, the socket file is removed (unless someone else replaced it).
#[derive(Debug)]
pub struct Bound<S = Routes> {
    server: Server<S>,
    listener: UnixListener,
    guard: SocketGuard,
    path: PathBuf,
}

impl<S, B> Bound<S>
where
    S: Service<http::Request<Incoming>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Call counts and latencies per method, live.
    pub fn metrics(&self) -> Metrics {
        self.server.metrics()
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    pub async fn serve(self) -> Result<()> {
        self.serve_with_shutdown(termination()).await
    }

    /// Serves until `signal` completes. Then it stops accepting connections, removes the
    /// socket file, tells clients to stop sending (HTTP/2 GOAWAY) and lets in-flight calls
    /// finish, for at most the drain timeout.
    pub async fn serve_with_shutdown(self, signal: impl Future<Output = ()> + Send) -> Result<()> {
        let Bound {
            server,
            listener,
            guard,
            path,
        } = self;
        let graceful = GracefulShutdown::new();
        tokio::pin!(signal);
        loop {
            tokio::select! {
                () = &mut signal => break,
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(error) => {
                            // Out of file descriptors and the like: back off, keep serving.
                            tracing::warn!(%error, "accepting a connection failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let peer = stream.peer_cred().ok().map(|cred| PeerCredentials {
                        uid: cred.uid(),
                        gid: cred.gid(),
                        pid: cred.pid(),
                    });
                    let connection = graceful.watch(server.connection(stream, peer));
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%error, "connection ended with an error");
                        }
                    });
                }
            }
        }
        drop(listener);
        drop(guard);
        tracing::info!(path = %path.display(), in_flight_connections = graceful.count(), "CRI server shutting down");
        match server.config.drain_timeout {
            Some(limit) => {
                if tokio::time::timeout(limit, graceful.shutdown())
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        ?limit,
                        "calls still running after the drain timeout were cut off"
                    );
                }
            }
            None => graceful.shutdown().await,
        }
        Ok(())
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            tracing::warn!("cannot install signal handlers; serving until the process ends");
            std::future::pending::<()>().await;
        }
    }
}

/// Adds the connection's peer credentials to each request.
#[derive(Clone)]
pub(crate) struct WithPeer<S> {
    inner: S,
    peer: Option<PeerCredentials>,
}

impl<S, Req> Service<http::Request<Req>> for WithPeer<S>
where
    S: Service<http::Request<Req>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Req>) -> Self::Future {
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(peer);
        }
        self.inner.call(request)
    }
}

/// A connection with or without the legacy `:authority` rewriting.
pub(crate) enum MaybeLegacy<IO> {
    /// Bytes go to h2 as they are.
    Plain(IO),
    /// Bytes go through [`LegacyAuthority`] first.
    Legacy(Box<LegacyAuthority<IO>>),
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeLegacy<IO> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => std::pin::Pin::new(io).poll_read(cx, buf),
            Self::Legacy(io) => std::pin::Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeLegacy<IO> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(io) => std::pin::Pin::new(io).poll_write(cx, buf),
            Self::Legacy(io) => std::pin::Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => std::pin::Pin::new(io).poll_flush(cx),
            Self::Legacy(io) => std::pin::Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => std::pin::Pin::new(io).poll_shutdown(cx),
            Self::Legacy(io) => std::pin::Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(io) => std::pin::Pin::new(io).poll_write_vectored(cx, bufs),
            Self::Legacy(io) => std::pin::Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(io) => io.is_write_vectored(),
            Self::Legacy(io) => io.is_write_vectored(),
        }
    }
}
