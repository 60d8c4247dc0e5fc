//! The module's error type and RST_STREAM status codes.

use std::fmt;
use std::io;

/// Why a stream was reset: the status code of an RST_STREAM frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResetReason {
    /// 1: the stream broke the protocol.
    ProtocolError,
    /// 2: a frame named a stream that is not open.
    InvalidStream,
    /// 3: the stream was refused before any processing (also used for streams above the
    /// last-good id of a GOAWAY).
    RefusedStream,
    /// 4: the SPDY version is not supported.
    UnsupportedVersion,
    /// 5: the stream is no longer needed.
    Cancel,
    /// 6: the sender failed in a way unrelated to the protocol.
    InternalError,
    /// 7: the peer sent more than the flow-control window allowed.
    FlowControlError,
    /// 8: a second SYN_REPLY arrived for the stream.
    StreamInUse,
    /// 9: data arrived after the sender had half-closed the stream.
    StreamAlreadyClosed,
    /// 11: a frame was too large to process.
    FrameTooLarge,
    /// Any other status code.
    Other(u32),
}

impl ResetReason {
    /// The status code on the wire.
    pub fn code(self) -> u32 {
        match self {
            ResetReason::ProtocolError => 1,
            ResetReason::InvalidStream => 2,
            ResetReason::RefusedStream => 3,
            ResetReason::UnsupportedVersion => 4,
            ResetReason::Cancel => 5,
            ResetReason::InternalError => 6,
            ResetReason::FlowControlError => 7,
            ResetReason::StreamInUse => 8,
            ResetReason::StreamAlreadyClosed => 9,
            ResetReason::FrameTooLarge => 11,
            ResetReason::Other(code) => code,
        }
    }

    /// The reason for a status code on the wire.
    pub fn from_code(code: u32) -> Self {
        match code {
            1 => ResetReason::ProtocolError,
            2 => ResetReason::InvalidStream,
            3 => ResetReason::RefusedStream,
            4 => ResetReason::UnsupportedVersion,
            5 => ResetReason::Cancel,
            6 => ResetReason::InternalError,
            7 => ResetReason::FlowControlError,
            8 => ResetReason::StreamInUse,
            9 => ResetReason::StreamAlreadyClosed,
            11 => ResetReason::FrameTooLarge,
            other => ResetReason::Other(other),
        }
    }
}

impl fmt::Display for ResetReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ResetReason::ProtocolError => "PROTOCOL_ERROR",
            ResetReason::InvalidStream => "INVALID_STREAM",
            ResetReason::RefusedStream => "REFUSED_STREAM",
            ResetReason::UnsupportedVersion => "UNSUPPORTED_VERSION",
            ResetReason::Cancel => "CANCEL",
            ResetReason::InternalError => "INTERNAL_ERROR",
            ResetReason::FlowControlError => "FLOW_CONTROL_ERROR",
            ResetReason::StreamInUse => "STREAM_IN_USE",
            ResetReason::StreamAlreadyClosed => "STREAM_ALREADY_CLOSED",
            ResetReason::FrameTooLarge => "FRAME_TOO_LARGE",
            ResetReason::Other(code) => return write!(f, "status {code}"),
        };
        f.write_str(name)
    }
}

/// Everything that can go wrong in a SPDY session or one of its streams.
///
/// [`Stream`](super::Stream)'s `AsyncRead`/`AsyncWrite` methods report these inside an
/// [`io::Error`] (see [`Error::io_kind`] for the kinds); `into_inner()` on it gives back
/// the `Error`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading from or writing to the transport failed, or the transport ended in the
    /// middle of a frame.
    #[error("SPDY transport error: {0}")]
    Io(#[from] io::Error),
    /// The peer broke the protocol (a malformed, oversized or out-of-place frame, a bad
    /// header block, a flow-control violation of the session window). The session was
    /// ended with GOAWAY(PROTOCOL_ERROR).
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
    /// The stream was reset: by the peer's RST_STREAM (`by_peer`), or by this side
    /// ([`Stream::reset`](super::Stream::reset), or a stream error this side detected).
    #[error("SPDY stream {stream} was reset {}: {reason}", if *.by_peer { "by the peer" } else { "locally" })]
    Reset {
        /// The stream id.
        stream: u32,
        /// The RST_STREAM status.
        reason: ResetReason,
        /// Whether the peer sent the RST_STREAM.
        by_peer: bool,
    },
    /// No new stream can be opened: a GOAWAY was sent or received.
    #[error("SPDY session is going away: no new streams")]
    GoingAway,
    /// The session has ended (closed by this side, or the peer closed the transport at a
    /// frame boundary) before the operation could complete.
    #[error("SPDY session closed")]
    Closed,
    /// Writing after this side half-closed the stream (or on a stream the peer opened as
    /// unidirectional).
    #[error("SPDY stream {0} is closed for writing")]
    WriteClosed(u32),
    /// All 2^30 stream ids of this side have been used.
    #[error("SPDY stream ids exhausted")]
    StreamIdsExhausted,
    /// A header block to send is larger than a frame can carry.
    #[error("SPDY header block of {0} bytes is too large")]
    HeadersTooLarge(usize),
}

impl Error {
    /// The [`io::ErrorKind`] under which a stream's `AsyncRead`/`AsyncWrite` reports this
    /// error: `ConnectionReset` for [`Error::Reset`], `BrokenPipe` for
    /// [`Error::WriteClosed`], `InvalidData` for [`Error::Protocol`], the transport's own
    /// kind for [`Error::Io`], and `ConnectionAborted` otherwise.
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            Error::Io(err) => err.kind(),
            Error::Protocol(_) => io::ErrorKind::InvalidData,
            Error::Reset { .. } => io::ErrorKind::ConnectionReset,
            Error::WriteClosed(_) => io::ErrorKind::BrokenPipe,
            _ => io::ErrorKind::ConnectionAborted,
        }
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        io::Error::new(err.io_kind(), err)
    }
}

/// Why a session failed, kept in a cloneable form so every stream can report it.
#[derive(Debug, Clone)]
pub(super) enum Failure {
    Io(io::ErrorKind, String),
    Protocol(String),
}

impl Failure {
    pub(super) fn to_error(&self) -> Error {
        match self {
            Failure::Io(kind, message) => Error::Io(io::Error::new(*kind, message.clone())),
            Failure::Protocol(message) => Error::Protocol(message.clone()),
        }
    }
}
