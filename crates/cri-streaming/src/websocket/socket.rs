//! [`ChannelSocket`]: a WebSocket split into per-channel readers and writers.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;

use super::driver::Driver;
use super::shared::Shared;
use super::{ChannelReader, ChannelWriter, Error, Protocol};

/// Buffer sizes of a [`ChannelSocket`].
///
/// ```
/// use cri_streaming::websocket::Config;
/// let config = Config::default().with_max_message(16 * 1024);
/// assert_eq!(config.read_buffer, 1024 * 1024);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest payload, in bytes, of one outgoing message: longer writes are split.
    /// Default 32 KiB. Zero is treated as one.
    pub max_message: usize,
    /// Bytes buffered per channel for its reader before the socket stops reading the
    /// WebSocket (a single message may take it past the bound once). Default 1 MiB. Zero is
    /// treated as one.
    pub read_buffer: usize,
    /// Largest incoming message (and frame), in bytes: a peer that announces a larger one
    /// has its connection closed before the payload is read. Default 1 MiB (peers send
    /// 32 KiB messages or less). Zero is treated as one.
    pub max_incoming: usize,
}

impl Config {
    /// The defaults: 32 KiB messages, 1 MiB per-channel read buffer.
    pub const fn new() -> Config {
        Config {
            max_message: 32 * 1024,
            read_buffer: 1024 * 1024,
            max_incoming: 1024 * 1024,
        }
    }

    /// Sets [`Config::max_incoming`].
    pub const fn with_max_incoming(mut self, bytes: usize) -> Config {
        self.max_incoming = bytes;
        self
    }

    /// The WebSocket library's limits for incoming messages and frames.
    pub(super) fn protocol(self) -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
        let max = Some(self.max_incoming.max(1));
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(max)
            .max_frame_size(max)
    }

    /// Sets [`Config::max_message`].
    pub const fn with_max_message(mut self, bytes: usize) -> Config {
        self.max_message = bytes;
        self
    }

    /// Sets [`Config::read_buffer`].
    pub const fn with_read_buffer(mut self, bytes: usize) -> Config {
        self.read_buffer = bytes;
        self
    }

    const fn normalized(self) -> Config {
        Config {
            max_message: if self.max_message == 0 {
                1
            } else {
                self.max_message
            },
            read_buffer: if self.read_buffer == 0 {
                1
            } else {
                self.read_buffer
            },
            max_incoming: if self.max_incoming == 0 {
                1
            } else {
                self.max_incoming
            },
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::new()
    }
}

/// A WebSocket carrying Kubernetes channels (exec, attach, port-forward).
///
/// One spawned task owns the WebSocket: it sends what the [`ChannelWriter`]s queue, answers
/// pings, and hands each received payload to the [`ChannelReader`] of its channel.
///
/// * Writers wait while the task's queue is full (a few messages), so a fast producer
///   cannot grow memory.
/// * Each reader has a buffer of [`Config::read_buffer`] bytes; while one is full the task
///   stops reading the WebSocket (which pushes back on the peer through TCP), and resumes
///   once that reader drains it or is dropped.
/// * Data for a channel nobody has taken a reader for is kept, up to 64 KiB across all such
///   channels, so that data arriving between [`ChannelSocket::new`] and
///   [`ChannelSocket::reader`] is not lost; beyond that, and once the `ChannelSocket` is
///   dropped or closed, it is discarded. Unknown channels are therefore ignored without
///   blocking anything.
/// * A malformed message (empty, a base64 message whose first byte is not a digit or whose
///   payload is not base64, a v5 CLOSE without exactly one byte) fails the socket: readers
///   return an [`std::io::ErrorKind::InvalidData`] error after their buffered data, writers
///   fail, and a close frame with code 1002 (protocol error) is sent.
/// * The peer's close frame, or the connection ending after our close, ends every reader
///   with EOF; a connection lost without a close handshake ends them with an error
///   ([`std::io::ErrorKind::ConnectionReset`] or the I/O error).
///
/// The socket closes itself (close frame after the queued messages) once the
/// `ChannelSocket` and all its readers and writers are dropped. After our close frame, the
/// task keeps reading until the peer answers, at most 5 seconds.
///
/// Needs a Tokio runtime (the task is spawned with [`tokio::spawn`]).
pub struct ChannelSocket {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ChannelSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelSocket")
            .field("protocol", &self.shared.protocol)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl ChannelSocket {
    /// Wraps an established WebSocket (after the handshake) speaking `protocol`, and spawns
    /// the task that owns it.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, like [`tokio::spawn`].
    pub fn new<S>(ws: WebSocketStream<S>, protocol: Protocol, config: Config) -> ChannelSocket
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Arc::new(Shared::new(protocol, config.normalized()));
        {
            let mut st = shared.lock();
            st.claimable = true;
            st.new_handle();
        }
        tokio::spawn(Driver::new(ws, Arc::clone(&shared)).run());
        ChannelSocket { shared }
    }

    /// The negotiated protocol.
    pub fn protocol(&self) -> Protocol {
        self.shared.protocol
    }

    /// The buffer sizes in use.
    pub fn config(&self) -> Config {
        self.shared.config
    }

    /// The receiving half of `channel`: an [`AsyncRead`] over the payloads received on it,
    /// base64-decoded where the protocol needs it, starting with any data that arrived
    /// before this call (see the type's documentation for that bound).
    ///
    /// It reaches EOF when the peer half-closes the channel (v5 CLOSE) or the socket closes,
    /// and fails if the socket fails. Take each channel's reader once: a second reader for
    /// the same channel fails every read with [`Error::ReaderTaken`] (the first keeps
    /// working). Dropping a reader discards the channel's data from then on.
    pub fn reader(&mut self, channel: u8) -> ChannelReader {
        let claimed = {
            let mut st = self.shared.lock();
            st.new_handle();
            st.claim(channel)
        };
        let misuse = (!claimed).then_some(Error::ReaderTaken(channel));
        ChannelReader::new(Arc::clone(&self.shared), channel, misuse)
    }

    /// The sending half of `channel`: an [`AsyncWrite`] whose writes become messages on that
    /// channel, at most [`Config::max_message`] bytes of payload each.
    ///
    /// `poll_write` waits while the socket's queue is full; `poll_flush` waits until what
    /// this writer queued was written to the transport; `poll_shutdown` sends the v5 CLOSE
    /// for the channel (other protocols have no half-close: it only flushes). Several
    /// writers may share a channel; their messages interleave whole. A channel the protocol
    /// cannot carry (see [`Protocol::carries_channel`]) gives a writer that fails with
    /// [`Error::InvalidChannel`].
    pub fn writer(&mut self, channel: u8) -> ChannelWriter {
        self.shared.lock().new_handle();
        let protocol = self.shared.protocol;
        let misuse = (!protocol.carries_channel(channel))
            .then_some(Error::InvalidChannel { channel, protocol });
        ChannelWriter::new(Arc::clone(&self.shared), channel, misuse)
    }

    /// Closes the socket: the messages already queued are sent, then a close frame, and
    /// writes fail from now on. Returns once the close frame is flushed, the peer's close
    /// arrived first, or the socket had already ended.
    ///
    /// Readers keep receiving what the peer sends until it answers the close, then reach
    /// EOF. Failures are not reported here but by the readers and writers, which see them
    /// (a close is usually the last thing done and has no one left to report to).
    pub async fn close(self) {
        {
            let mut st = self.shared.lock();
            st.stop_claims();
            st.request_close();
        }
        poll_fn(|cx| {
            let mut st = self.shared.lock();
            if st.closing_done || st.finished {
                Poll::Ready(())
            } else {
                st.wait_close(cx.waker());
                Poll::Pending
            }
        })
        .await;
    }

    /// The most bytes ever buffered for `channel`'s reader.
    #[cfg(test)]
    pub(crate) fn peak_buffered(&self, channel: u8) -> usize {
        self.shared
            .lock()
            .inboxes
            .get(&channel)
            .map_or(0, |inbox| inbox.peak)
    }
}

impl Drop for ChannelSocket {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.stop_claims();
        st.release_handle();
    }
}
