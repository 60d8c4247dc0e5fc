//! The error type of the WebSocket channel layer and its mapping to `std::io::Error`.

use std::io;
use std::sync::Arc;

use tokio_tungstenite::tungstenite;

use super::Protocol;

/// What went wrong on a channel socket, while connecting, or while decoding a message.
///
/// `Clone` because one failure is reported to every reader and writer of the socket; the
/// transport errors it wraps are shared behind an `Arc`. Readers and writers report it
/// inside a [`std::io::Error`] whose [`get_ref`](std::io::Error::get_ref) downcasts to this
/// type.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The WebSocket transport failed: I/O, a WebSocket protocol violation by the peer, the
    /// connection dropped without a closing handshake, or the handshake was refused.
    #[error("websocket transport: {0}")]
    Transport(#[source] Arc<tungstenite::Error>),
    /// A message had no bytes at all, so not even a channel.
    #[error("malformed channel message: empty message")]
    EmptyMessage,
    /// A base64-protocol message did not start with an ASCII digit naming its channel.
    #[error("malformed channel message: channel byte {0:#04x} is not an ASCII digit")]
    BadChannel(u8),
    /// A base64-protocol message's payload was not valid base64.
    #[error("malformed channel message: invalid base64 on channel {channel}: {source}")]
    BadBase64 {
        /// The channel the message was addressed to.
        channel: u8,
        /// What the decoder rejected.
        #[source]
        source: base64::DecodeError,
    },
    /// A `v5.channel.k8s.io` CLOSE message did not carry exactly one channel byte.
    #[error("malformed channel message: CLOSE carries {len} bytes instead of one channel")]
    BadClose {
        /// The payload length received.
        len: usize,
    },
    /// The socket was closed (by either side) before the operation could complete; writes
    /// after [`ChannelSocket::close`](super::ChannelSocket::close) also fail with this.
    #[error("the channel socket is closed")]
    Closed,
    /// [`ChannelSocket::reader`](super::ChannelSocket::reader) was called twice for one
    /// channel; the second reader reports this.
    #[error("channel {0} already has a reader")]
    ReaderTaken(u8),
    /// A channel the negotiated protocol cannot carry: above 9 for base64 protocols, 255
    /// (CLOSE) for `v5.channel.k8s.io`.
    #[error("channel {channel} cannot be written with {protocol}")]
    InvalidChannel {
        /// The channel asked for.
        channel: u8,
        /// The negotiated protocol.
        protocol: Protocol,
    },
    /// The writer was shut down (half-closed) and written to again.
    #[error("channel {0} was shut down for writing")]
    WriteAfterShutdown(u8),
    /// [`connect`](super::connect) was given a URL it cannot use.
    #[error("invalid WebSocket URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// [`connect`](super::connect) could not open the TCP connection.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The `host:port` dialled.
        addr: String,
        /// The socket error.
        #[source]
        source: Arc<io::Error>,
    },
    /// [`connect`](super::connect) was given no protocol to offer.
    #[error("no channel protocol to offer")]
    NoProtocols,
    /// The server accepted the upgrade but selected no protocol, or one that was not
    /// offered.
    #[error("server selected subprotocol {selected:?}, which is not one that was offered")]
    Negotiation {
        /// The `Sec-WebSocket-Protocol` the server answered with, if any.
        selected: Option<String>,
    },
    /// The task driving the socket stopped without closing it (its runtime shut down).
    #[error("the channel socket task stopped")]
    TaskStopped,
}

impl Error {
    /// Whether this is one of the malformed-message errors (the peer broke the channel
    /// framing rules).
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            Error::EmptyMessage
                | Error::BadChannel(_)
                | Error::BadBase64 { .. }
                | Error::BadClose { .. }
        )
    }

    /// The `std::io::Error` readers and writers report for this error.
    pub(crate) fn to_io(&self) -> io::Error {
        io::Error::new(self.io_kind(), self.clone())
    }

    fn io_kind(&self) -> io::ErrorKind {
        use tungstenite::error::ProtocolError;
        match self {
            Error::Transport(e) => match &**e {
                tungstenite::Error::Io(io) => io.kind(),
                tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                    io::ErrorKind::ConnectionReset
                }
                tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
                    io::ErrorKind::BrokenPipe
                }
                _ => io::ErrorKind::InvalidData,
            },
            _ if self.is_malformed() => io::ErrorKind::InvalidData,
            Error::Closed | Error::WriteAfterShutdown(_) | Error::TaskStopped => {
                io::ErrorKind::BrokenPipe
            }
            Error::ReaderTaken(_) => io::ErrorKind::AlreadyExists,
            Error::InvalidChannel { .. } | Error::InvalidUrl { .. } | Error::NoProtocols => {
                io::ErrorKind::InvalidInput
            }
            Error::Connect { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        }
    }
}

impl From<tungstenite::Error> for Error {
    fn from(e: tungstenite::Error) -> Self {
        Error::Transport(Arc::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_kinds() {
        let kind = |e: Error| e.to_io().kind();
        assert_eq!(kind(Error::EmptyMessage), io::ErrorKind::InvalidData);
        assert_eq!(kind(Error::BadChannel(b'x')), io::ErrorKind::InvalidData);
        assert_eq!(kind(Error::BadClose { len: 2 }), io::ErrorKind::InvalidData);
        assert_eq!(kind(Error::Closed), io::ErrorKind::BrokenPipe);
        assert_eq!(kind(Error::ReaderTaken(1)), io::ErrorKind::AlreadyExists);
        assert_eq!(
            kind(Error::InvalidChannel {
                channel: 10,
                protocol: Protocol::V4Base64
            }),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(
                tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake
                )
                .into()
            ),
            io::ErrorKind::ConnectionReset
        );
        assert_eq!(
            kind(tungstenite::Error::Io(io::ErrorKind::TimedOut.into()).into()),
            io::ErrorKind::TimedOut
        );
    }

    #[test]
    fn io_error_downcasts_back() {
        let io = Error::BadChannel(b'z').to_io();
        let inner = io.get_ref().and_then(|e| e.downcast_ref::<Error>());
        assert!(matches!(inner, Some(Error::BadChannel(b'z'))));
        assert!(Error::BadChannel(0).is_malformed());
        assert!(!Error::Closed.is_malformed());
    }
}
