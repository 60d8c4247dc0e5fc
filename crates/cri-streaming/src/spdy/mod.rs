//! SPDY/3.1 sessions, as Kubernetes' exec, attach and port-forward speak them after an
//! HTTP/1.1 `Upgrade: SPDY/3.1`.
//!
//! The upgrade itself happens elsewhere; [`Connection::new`] takes the upgraded byte stream
//! and runs a multiplexed session on it in a background task (one per connection, which
//! owns the transport). Either side can open streams; in Kubernetes the client opens them
//! all (SYN_STREAM with a `streamtype` header), the server accepts them from [`Incoming`]
//! (SYN_REPLY), and both then exchange DATA, each half-closing its direction with FIN.
//!
//! ```no_run
//! # async fn demo(upgraded: tokio::net::TcpStream) -> Result<(), cri_streaming::spdy::Error> {
//! use cri_streaming::spdy::{Config, Connection, Role};
//! use futures_util::StreamExt;
//! use tokio::io::AsyncWriteExt;
//!
//! let (conn, mut incoming) = Connection::new(upgraded, Role::Server, Config::default());
//! while let Some(request) = incoming.next().await {
//!     let kind = request.header("streamtype").unwrap_or_default().to_owned();
//!     let mut stream = request.accept().await?;
//!     if kind == "stdout" {
//!         stream.write_all(b"hello\n").await?;
//!         stream.shutdown().await?; // FIN
//!     }
//! }
//! conn.closed().await;
//! # Ok(()) }
//! ```
//!
//! # Flow control
//!
//! Both SPDY/3.1 levels are implemented: per-stream windows (this side's size is announced
//! with SETTINGS_INITIAL_WINDOW_SIZE, the peer's is followed through its SETTINGS) and the
//! session window (WINDOW_UPDATE on stream 0). Received data waits in the stream until it
//! is read, and windows are reopened as it is read, so unread data is bounded by the
//! windows; writers wait while the peer's windows are closed.
//!
//! The SPDY/3 library Kubernetes uses (moby/spdystream, in kubectl, the kubelet and crictl)
//! neither sends nor honours SETTINGS and WINDOW_UPDATE. A peer therefore counts as doing
//! flow control only once it has sent one of them (this implementation sends SETTINGS
//! first thing). For a peer that has not, writes are paced by the transport instead of the
//! windows (otherwise they would stall after 64 KiB), and data beyond our window is not an
//! error: the session stops reading the transport until the application has read enough,
//! which bounds memory the same way at the price of head-of-line blocking.
//!
//! # Robustness
//!
//! Malformed input never panics. Session-level protocol errors (bad version, short or
//! oversized frames, undecodable header blocks, decreasing stream ids, session window
//! overruns) end the session with GOAWAY(PROTOCOL_ERROR); stream-level ones are answered
//! with RST_STREAM (INVALID_STREAM for frames on streams that never existed, PROTOCOL_ERROR
//! for a duplicate SYN_STREAM, FLOW_CONTROL_ERROR, STREAM_ALREADY_CLOSED, STREAM_IN_USE).
//! When a session ends every open [`Stream`] returns EOF (where the peer had finished) or an
//! error, pending operations fail, and [`Connection::closed`] resolves.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

mod error;
mod frame;
mod headers;
mod session;
mod stream;
#[cfg(test)]
mod tests;

pub use error::{Error, ResetReason};
pub use stream::{IncomingStream, Stream};

use session::{Liveness, Shared, State};
use stream::PendingOpen;

/// A header list as on the wire: names lowercase, in order. A name given several times is
/// sent as one header with NUL-separated values; received multi-value headers come back as
/// one entry per value.
pub type Headers = Vec<(String, String)>;

/// Session parameters. Values outside what the protocol can express are clamped.
#[derive(Clone, Debug)]
pub struct Config {
    /// Our receive window per stream, advertised with SETTINGS_INITIAL_WINDOW_SIZE
    /// (default 1 MiB; SPDY's own default is 64 KiB). At least 1, at most 2^31-1.
    pub initial_window: u32,
    /// Session-level receive window (SPDY/3.1 WINDOW_UPDATE on stream 0; default 4 MiB),
    /// announced with a WINDOW_UPDATE right after the SETTINGS frame. At least 64 KiB (the
    /// protocol's starting size, which cannot be shrunk), at most 2^31-1.
    pub session_window: u32,
    /// Largest DATA payload sent in one frame (default 32 KiB; at most 2^24-1).
    pub max_frame: usize,
    /// Largest control frame, and largest inflated header block, accepted from the peer
    /// (default 1 MiB; at least 256 bytes). Larger ones end the session with
    /// GOAWAY(PROTOCOL_ERROR).
    pub max_control_frame: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            initial_window: 1024 * 1024,
            session_window: 4 * 1024 * 1024,
            max_frame: 32 * 1024,
            max_control_frame: 1024 * 1024,
        }
    }
}

/// Which end of the session this is. It decides the parity of the stream ids (and PING
/// ids) this side uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The side that sent the HTTP upgrade request; opens odd-numbered streams.
    Client,
    /// The side that answered the upgrade; opens even-numbered streams.
    Server,
}

/// A handle to a SPDY session. Cheap to clone; the session ends when [`close`] is called,
/// the peer ends it, or every handle (connections, [`Incoming`], streams) is dropped.
///
/// [`close`]: Connection::close
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
    live: Arc<Liveness>,
}

impl Connection {
    /// Starts a session over an upgraded transport: spawns its task (reader and writer),
    /// which first sends SETTINGS and the session WINDOW_UPDATE. Returns the handle and the
    /// streams the peer opens.
    ///
    /// # Panics
    ///
    /// When called outside a Tokio runtime (it uses [`tokio::spawn`]).
    pub fn new<IO>(io: IO, role: Role, config: Config) -> (Connection, Incoming)
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let shared = Shared::new(role, &config);
        tokio::spawn(session::run(io, shared.clone()));
        let live = Arc::new(Liveness(shared.clone()));
        let incoming = Incoming {
            shared: shared.clone(),
            live: live.clone(),
        };
        (Connection { shared, live }, incoming)
    }

    /// Opens a stream (SYN_STREAM with `headers`) and resolves when the peer's SYN_REPLY
    /// arrives; [`Stream::headers`] then holds the reply's headers.
    ///
    /// Fails with [`Error::Reset`] if the peer resets the stream (REFUSED_STREAM when it
    /// went away without processing it), [`Error::GoingAway`] after a GOAWAY, and with the
    /// session's error if it ends first. Dropping the future cancels the stream.
    pub async fn open(&self, headers: Headers) -> Result<Stream, Error> {
        stream::check_headers(&headers)?;
        let (id, reply) = self.shared.with(|st| st.open(headers))?;
        let mut pending = PendingOpen {
            shared: &self.shared,
            id,
            armed: true,
        };
        match reply.await {
            Ok(Ok(reply_headers)) => {
                pending.armed = false;
                Ok(Stream::new(
                    self.shared.clone(),
                    self.live.clone(),
                    id,
                    reply_headers,
                ))
            }
            Ok(Err(err)) => Err(err),
            Err(_) => Err(self
                .shared
                .with(|st| st.ended_error())
                .unwrap_or(Error::Closed)),
        }
    }

    /// Sends a PING and resolves with the round-trip time when the peer echoes it.
    pub async fn ping(&self) -> Result<Duration, Error> {
        let (id, pong) = self.shared.with(State::ping)?;
        let started = tokio::time::Instant::now();
        struct Forget<'a>(&'a Shared, u32);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                let id = self.1;
                self.0.with(|st| st.forget_ping(id));
            }
        }
        let _forget = Forget(&self.shared, id);
        match pong.await {
            Ok(()) => Ok(started.elapsed()),
            Err(_) => Err(self
                .shared
                .with(|st| st.ended_error())
                .unwrap_or(Error::Closed)),
        }
    }

    /// Ends the session: sends GOAWAY, stops accepting and opening streams (writes fail
    /// from now on), sends what is already queued, then shuts the transport down.
    pub fn close(&self) {
        self.shared.with(State::close_local);
    }

    /// Resolves once the session has ended and its task has finished: after [`close`], the
    /// transport's end or failure, a protocol error, or the peer's GOAWAY once every stream
    /// has finished.
    ///
    /// [`close`]: Connection::close
    pub async fn closed(&self) {
        self.shared.closed().await;
    }

    /// Whether the session has ended (see [`closed`](Connection::closed)).
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Why the session failed: `None` while it runs and after a clean end (a GOAWAY
    /// exchange, [`close`](Connection::close), or the transport closing between frames).
    pub fn error(&self) -> Option<Error> {
        self.shared.with(|st| st.failure())
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// The streams the peer opens, in order, as a [`futures_util::Stream`]. It ends when the
/// session is closing or over. Dropping it refuses every stream the peer opens from then on
/// (RST_STREAM REFUSED_STREAM).
pub struct Incoming {
    shared: Arc<Shared>,
    live: Arc<Liveness>,
}

impl Incoming {
    /// The next stream the peer opened; `None` once the session is closing or over.
    pub async fn next_stream(&mut self) -> Option<IncomingStream> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next_stream(cx)).await
    }

    fn poll_next_stream(&mut self, cx: &mut Context<'_>) -> Poll<Option<IncomingStream>> {
        self.shared.with(|st| st.poll_accept(cx)).map(|next| {
            next.map(|(id, headers)| {
                IncomingStream::new(self.shared.clone(), self.live.clone(), id, headers)
            })
        })
    }
}

impl futures_util::Stream for Incoming {
    type Item = IncomingStream;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<IncomingStream>> {
        self.get_mut().poll_next_stream(cx)
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.shared.with(State::incoming_dropped);
    }
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming").finish_non_exhaustive()
    }
}
