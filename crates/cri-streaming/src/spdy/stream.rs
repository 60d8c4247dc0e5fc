//! The stream handles: [`IncomingStream`] (opened by the peer, not yet accepted) and
//! [`Stream`] (an established stream you read and write).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};

use super::Headers;
use super::error::{Error, ResetReason};
use super::session::{Liveness, MAX_SEND_BLOCK, Shared};

/// Rejects header lists whose block would not fit in a frame (checked before compressing:
/// a block compressed and then not sent would desynchronize the peer's zlib context).
pub(super) fn check_headers(headers: &Headers) -> Result<(), Error> {
    let size = 4 + headers
        .iter()
        .map(|(name, value)| 8 + name.len() + value.len())
        .sum::<usize>();
    if size > MAX_SEND_BLOCK {
        return Err(Error::HeadersTooLarge(size));
    }
    Ok(())
}

fn find<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A stream the peer opened (its SYN_STREAM), waiting to be accepted or rejected.
///
/// Dropping it without [`accept`](IncomingStream::accept) rejects it like
/// [`reject`](IncomingStream::reject). Data the peer sends before the stream is accepted is
/// buffered (within the stream window) and readable after accepting.
pub struct IncomingStream {
    shared: Arc<Shared>,
    live: Arc<Liveness>,
    id: u32,
    headers: Headers,
    settled: bool,
}

impl IncomingStream {
    pub(super) fn new(shared: Arc<Shared>, live: Arc<Liveness>, id: u32, headers: Headers) -> Self {
        IncomingStream {
            shared,
            live,
            id,
            headers,
            settled: false,
        }
    }

    /// The stream id (odd when the client opened it).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The headers of the peer's SYN_STREAM, names lowercase, one entry per value.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The first value of header `name` (compared case-insensitively), e.g. `streamtype`.
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    /// Accepts the stream with an empty SYN_REPLY (what Kubernetes' servers send). The
    /// reply is queued for the writer; this never waits on the peer.
    ///
    /// Fails if the session has ended or is closing, or the peer already reset the stream.
    pub async fn accept(self) -> Result<Stream, Error> {
        self.accept_with(Vec::new()).await
    }

    /// Accepts the stream with a SYN_REPLY carrying `headers`.
    ///
    /// No SYN_REPLY is sent for a stream the peer opened as unidirectional; the returned
    /// [`Stream`] can then only read.
    pub async fn accept_with(self, headers: Headers) -> Result<Stream, Error> {
        self.settle(headers)
    }

    fn settle(mut self, headers: Headers) -> Result<Stream, Error> {
        check_headers(&headers)?;
        let id = self.id;
        // On error `self` is dropped here, which rejects the stream.
        self.shared.with(|st| st.accept(id, headers))?;
        self.settled = true;
        Ok(Stream::new(
            self.shared.clone(),
            self.live.clone(),
            id,
            std::mem::take(&mut self.headers),
        ))
    }

    /// Refuses the stream with RST_STREAM(REFUSED_STREAM).
    pub fn reject(self) {
        drop(self);
    }
}

impl Drop for IncomingStream {
    fn drop(&mut self) {
        if !self.settled {
            let id = self.id;
            self.shared
                .with(|st| st.abandon(id, ResetReason::RefusedStream));
        }
    }
}

impl fmt::Debug for IncomingStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncomingStream")
            .field("id", &self.id)
            .field("headers", &self.headers)
            .finish()
    }
}

/// Cancels a stream whose `open()` was dropped before the SYN_REPLY arrived.
pub(super) struct PendingOpen<'a> {
    pub(super) shared: &'a Shared,
    pub(super) id: u32,
    pub(super) armed: bool,
}

impl Drop for PendingOpen<'_> {
    fn drop(&mut self) {
        if self.armed {
            let id = self.id;
            self.shared.with(|st| st.abandon(id, ResetReason::Cancel));
        }
    }
}

/// One SPDY stream.
///
/// - [`AsyncRead`] yields the peer's DATA; end of file once the peer half-closed (FIN); an
///   error once the stream was reset or the session ended before the peer's FIN. Data not
///   yet read is bounded by this side's window (`Config::initial_window`).
/// - [`AsyncBufRead`] yields the same DATA without copying it: the received pieces
///   themselves, one at a time (what [`tokio::io::copy_buf`] wants).
/// - [`AsyncWrite`] sends DATA in frames of at most `Config::max_frame` bytes, waiting
///   (`Pending`) while the peer's flow-control windows or the session's send queue are
///   full. `poll_flush` waits until everything written so far has been handed to the
///   transport; `poll_shutdown` sends FIN (an empty DATA frame) and then flushes.
///
/// Dropping a `Stream` half-closes this side as `poll_shutdown` would (queued data is still
/// sent) and discards whatever the peer sends afterwards while keeping its windows open, so
/// the peer can finish; call [`reset`](Stream::reset) to abort instead. The handle can be
/// split with [`tokio::io::split`] to read and write from different tasks.
pub struct Stream {
    shared: Arc<Shared>,
    _live: Arc<Liveness>,
    id: u32,
    headers: Headers,
    /// Received data taken out of the session for [`AsyncBufRead`], not yet consumed.
    taken: Bytes,
    /// [`Stream::reset`] was called: what was taken is dropped, reads fail.
    was_reset: AtomicBool,
}

impl Stream {
    pub(super) fn new(shared: Arc<Shared>, live: Arc<Liveness>, id: u32, headers: Headers) -> Self {
        Stream {
            shared,
            _live: live,
            id,
            headers,
            taken: Bytes::new(),
            was_reset: AtomicBool::new(false),
        }
    }

    /// The stream id (odd when the client opened it).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The headers the peer sent: its SYN_STREAM for a stream it opened, its SYN_REPLY for
    /// a stream this side opened. Names lowercase, one entry per value.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The first value of header `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    /// Aborts the stream: sends RST_STREAM(CANCEL) and drops queued data; reads and writes
    /// fail from then on. Does nothing once both sides have half-closed.
    pub fn reset(&self) {
        let id = self.id;
        self.was_reset.store(true, Ordering::Relaxed);
        self.shared.with(|st| st.reset_by_user(id));
    }

    /// What was taken for [`AsyncBufRead`] and not yet consumed, unless the stream was reset.
    fn taken(&mut self) -> &[u8] {
        if !self.taken.is_empty() && *self.was_reset.get_mut() {
            self.taken.clear();
        }
        &self.taken
    }

    /// Largest amount of received data that was buffered at once.
    #[cfg(test)]
    pub(super) fn high_water(&self) -> usize {
        let id = self.id;
        self.shared.with(|st| st.high_water(id))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let taken = this.taken();
        if !taken.is_empty() {
            let n = taken.len().min(buf.remaining());
            buf.put_slice(&taken[..n]);
            this.taken.advance(n);
            return Poll::Ready(Ok(()));
        }
        let id = this.id;
        this.shared.with(|st| st.poll_read(id, cx, buf))
    }
}

impl AsyncBufRead for Stream {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.taken().is_empty() {
            let id = this.id;
            match this.shared.with(|st| st.poll_take(id, cx)) {
                Poll::Ready(Ok(chunk)) => this.taken = chunk,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(&this.taken))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        this.taken.advance(amt.min(this.taken.len()));
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let id = self.id;
        self.shared.with(|st| st.poll_write(id, cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let id = self.id;
        self.shared.with(|st| st.poll_flush(id, cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let id = self.id;
        self.shared.with(|st| st.poll_shutdown(id, cx))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let id = self.id;
        self.shared.with(|st| st.detach(id));
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id)
            .field("headers", &self.headers)
            .finish()
    }
}
