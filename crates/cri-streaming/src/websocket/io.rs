//! [`ChannelReader`] and [`ChannelWriter`]: one channel of a [`ChannelSocket`] as
//! `AsyncRead` / `AsyncWrite`.
//!
//! [`ChannelSocket`]: super::ChannelSocket

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Error;
use super::frame;
use super::shared::{OUTBOX_MESSAGES, Shared};

/// The receiving half of one channel; see [`ChannelSocket::reader`].
///
/// [`ChannelSocket::reader`]: super::ChannelSocket::reader
pub struct ChannelReader {
    shared: Arc<Shared>,
    channel: u8,
    misuse: Option<Error>,
}

impl std::fmt::Debug for ChannelReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelReader")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl ChannelReader {
    pub(crate) fn new(shared: Arc<Shared>, channel: u8, misuse: Option<Error>) -> ChannelReader {
        ChannelReader {
            shared,
            channel,
            misuse,
        }
    }

    /// The channel this reader receives.
    pub fn channel(&self) -> u8 {
        self.channel
    }
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = &self.misuse {
            return Poll::Ready(Err(e.to_io()));
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let read_buffer = self.shared.config.read_buffer;
        let mut st = self.shared.lock();
        let blocked_here = st.blocked_on == Some(self.channel);
        let Some(inbox) = st.inboxes.get_mut(&self.channel) else {
            // Claimed inboxes are never removed.
            return Poll::Ready(Ok(()));
        };
        if inbox.take_into(buf) > 0 {
            if blocked_here && inbox.buffered < read_buffer {
                st.wake_driver();
            }
            return Poll::Ready(Ok(()));
        }
        if inbox.eof {
            return Poll::Ready(Ok(()));
        }
        inbox.reader = Some(cx.waker().clone());
        match &st.read_end {
            None => Poll::Pending,
            Some(Ok(())) => Poll::Ready(Ok(())),
            Some(Err(e)) => Poll::Ready(Err(e.to_io())),
        }
    }
}

impl Drop for ChannelReader {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        if self.misuse.is_none() {
            st.unclaim(self.channel);
        }
        st.release_handle();
    }
}

/// The sending half of one channel; see [`ChannelSocket::writer`].
///
/// [`ChannelSocket::writer`]: super::ChannelSocket::writer
pub struct ChannelWriter {
    shared: Arc<Shared>,
    channel: u8,
    misuse: Option<Error>,
    /// Sequence number of the last message this writer queued.
    last_queued: u64,
    shut_down: bool,
}

impl std::fmt::Debug for ChannelWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelWriter")
            .field("channel", &self.channel)
            .field("shut_down", &self.shut_down)
            .finish_non_exhaustive()
    }
}

impl ChannelWriter {
    pub(crate) fn new(shared: Arc<Shared>, channel: u8, misuse: Option<Error>) -> ChannelWriter {
        ChannelWriter {
            shared,
            channel,
            misuse,
            last_queued: 0,
            shut_down: false,
        }
    }

    /// The channel this writer sends on.
    pub fn channel(&self) -> u8 {
        self.channel
    }

    /// Queues one message built by `build` once the queue has room.
    fn poll_queue(
        &mut self,
        cx: &mut Context<'_>,
        build: impl FnOnce() -> tokio_tungstenite::tungstenite::Message,
    ) -> Poll<Result<(), Error>> {
        {
            let mut st = self.shared.lock();
            if let Some(e) = &st.write_error {
                return Poll::Ready(Err(e.clone()));
            }
            if st.outbox.len() >= OUTBOX_MESSAGES {
                st.wait_write(cx.waker());
                return Poll::Pending;
            }
        }
        // Encode outside the lock; concurrent writers may overshoot the queue bound by one
        // message each.
        let message = build();
        let mut st = self.shared.lock();
        if let Some(e) = &st.write_error {
            return Poll::Ready(Err(e.clone()));
        }
        self.last_queued = st.enqueue(message);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = &this.misuse {
            return Poll::Ready(Err(e.to_io()));
        }
        if this.shut_down {
            return Poll::Ready(Err(Error::WriteAfterShutdown(this.channel).to_io()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(this.shared.config.max_message);
        let (protocol, channel) = (this.shared.protocol, this.channel);
        this.poll_queue(cx, || frame::encode(protocol, channel, &buf[..n]))
            .map_ok(|()| n)
            .map_err(|e| e.to_io())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = &self.misuse {
            return Poll::Ready(Err(e.to_io()));
        }
        let mut st = self.shared.lock();
        if st.flushed >= self.last_queued {
            return Poll::Ready(Ok(()));
        }
        if st.writes_done {
            let e = st.write_error.clone().unwrap_or(Error::Closed);
            return Poll::Ready(Err(e.to_io()));
        }
        st.wait_flush(cx.waker());
        Poll::Pending
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = &self.misuse {
            return Poll::Ready(Err(e.to_io()));
        }
        if !self.shut_down {
            if self.shared.protocol.supports_close() {
                let channel = self.channel;
                match self.poll_queue(cx, || frame::encode_close(channel)) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(())) => {}
                    // Half-closing a closed socket has nothing left to do.
                    Poll::Ready(Err(Error::Closed)) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e.to_io())),
                }
            }
            self.shut_down = true;
        }
        self.poll_flush(cx)
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        self.shared.lock().release_handle();
    }
}
