//! What a runtime method learns about the call besides the request itself.

use std::fmt;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tonic::metadata::{Ascii, MetadataKey, MetadataMap};

/// The credentials of the process at the other end of the Unix socket, read from the socket
/// (`SO_PEERCRED`) when the connection was accepted. They cannot be forged by the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerCredentials {
    /// Effective user id of the client process.
    pub uid: u32,
    /// Effective group id of the client process.
    pub gid: u32,
    /// Process id of the client, where the platform reports it.
    pub pid: Option<i32>,
}

/// Per-call context handed to every runtime and image method.
///
/// ```
/// use std::time::Duration;
/// use cri_server::Context;
///
/// let ctx = Context::new("ExecSync").with_timeout(Duration::from_secs(5));
/// assert_eq!(ctx.method(), "ExecSync");
/// assert!(ctx.remaining().unwrap() <= Duration::from_secs(5));
/// ```
#[derive(Clone)]
pub struct Context {
    method: &'static str,
    request_id: RequestId,
    peer: Option<PeerCredentials>,
    deadline: Option<Instant>,
    metadata: MetadataMap,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("method", &self.method)
            .field("request_id", &self.request_id())
            .field("peer", &self.peer)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// Metadata key a client may set to choose the request id (at most 128 visible ASCII bytes).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The two metadata keys every call looks up, parsed once (a lookup by `&str` parses the
/// name again at every call).
static REQUEST_ID_KEY: LazyLock<MetadataKey<Ascii>> =
    LazyLock::new(|| MetadataKey::from_static(REQUEST_ID_HEADER));
static GRPC_TIMEOUT_KEY: LazyLock<MetadataKey<Ascii>> =
    LazyLock::new(|| MetadataKey::from_static("grpc-timeout"));

/// A request id: the client's, or one generated without allocating.
#[derive(Clone)]
enum RequestId {
    /// `<process epoch, hex>-<counter, hex>`: ASCII, at most 16 + 1 + 16 bytes.
    Generated { text: [u8; 33], len: u8 },
    /// The client's `x-request-id`.
    Client(Box<str>),
}

impl RequestId {
    fn as_str(&self) -> &str {
        match self {
            // Only ASCII hex digits and '-' are ever written, so this never fails.
            Self::Generated { text, len } => {
                std::str::from_utf8(&text[..usize::from(*len)]).unwrap_or_default()
            }
            Self::Client(id) => id,
        }
    }
}

impl Context {
    /// A context for calling a runtime method directly (tests, in-process use): a fresh
    /// request id, no peer, no deadline, no metadata.
    pub fn new(method: &'static str) -> Self {
        Self {
            method,
            request_id: next_request_id(),
            peer: None,
            deadline: None,
            metadata: MetadataMap::new(),
        }
    }

    /// Built by the server from the incoming request.
    pub(crate) fn from_call(
        method: &'static str,
        metadata: MetadataMap,
        peer: Option<PeerCredentials>,
    ) -> Self {
        let request_id = metadata
            .get(&*REQUEST_ID_KEY)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .map_or_else(next_request_id, |id| RequestId::Client(id.into()));
        let deadline = metadata
            .get(&*GRPC_TIMEOUT_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .and_then(|timeout| Instant::now().checked_add(timeout));
        Self {
            method,
            request_id,
            peer,
            deadline,
            metadata,
        }
    }

    /// Sets the deadline to `timeout` from now.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.deadline = Instant::now().checked_add(timeout);
        self
    }

    /// Sets the peer credentials.
    pub fn with_peer(mut self, peer: PeerCredentials) -> Self {
        self.peer = Some(peer);
        self
    }

    /// The CRI method being served, e.g. `"RunPodSandbox"`.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// An id for this call, for logs: the client's `x-request-id` when it sent one, a
    /// process-unique id otherwise.
    pub fn request_id(&self) -> &str {
        self.request_id.as_str()
    }

    /// The credentials of the calling process, when the call came over a Unix socket.
    pub fn peer(&self) -> Option<PeerCredentials> {
        self.peer
    }

    /// When the client gives up on the call (from its `grpc-timeout`), if it set one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left before the deadline; `None` without a deadline, zero once it has passed.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Resolves when the call's deadline passes; never resolves without a deadline.
    ///
    /// A call whose client goes away is cancelled by dropping the method's future, so
    /// long-running work should be written to stop at an `.await`.
    pub async fn cancelled(&self) {
        match self.deadline {
            Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
            None => std::future::pending().await,
        }
    }

    /// The request's gRPC metadata (custom headers).
    pub fn metadata(&self) -> &MetadataMap {
        &self.metadata
    }
}

fn next_request_id() -> RequestId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    static EPOCH: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let mut text = [0; 33];
    let mut len = push_hex(&mut text, 0, epoch);
    text[len] = b'-';
    len = push_hex(&mut text, len + 1, NEXT.fetch_add(1, Ordering::Relaxed));
    RequestId::Generated {
        text,
        len: len as u8,
    }
}

/// Writes `n` in lowercase hex without leading zeros at `text[at..]`; returns the end.
fn push_hex(text: &mut [u8; 33], at: usize, n: u64) -> usize {
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
    for i in 0..digits {
        let nibble = (n >> (4 * (digits - 1 - i))) & 0xf;
        text[at + i] = b"0123456789abcdef"[nibble as usize];
    }
    at + digits
}

/// Parses a gRPC `grpc-timeout` header value: up to 8 digits and a unit
/// (`H`, `M`, `S`, `m`, `u`, `n`).
pub(crate) fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("120S"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("500m"), Some(Duration::from_millis(500)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
    }

    #[test]
    fn grpc_timeout_rejects_malformed_values() {
        for bad in ["", "S", "1", "123456789S", "12x", "-1S", "1.5S", "S1"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn request_id_comes_from_metadata_or_is_generated() {
        let mut metadata = MetadataMap::new();
        metadata.insert(REQUEST_ID_HEADER, "abc-123".parse().unwrap());
        let ctx = Context::from_call("Version", metadata, None);
        assert_eq!(ctx.request_id(), "abc-123");

        let a = Context::new("Version");
        let b = Context::new("Version");
        assert_ne!(a.request_id(), b.request_id());
        let (epoch, counter) = a.request_id().split_once('-').unwrap();
        assert!(u64::from_str_radix(epoch, 16).is_ok());
        assert!(u64::from_str_radix(counter, 16).unwrap() >= 1);
    }

    #[test]
    fn generated_ids_are_hex_like_format() {
        for n in [0, 1, 0xf, 0x10, 0xdead_beef, u64::MAX] {
            let mut text = [0; 33];
            let end = push_hex(&mut text, 0, n);
            assert_eq!(std::str::from_utf8(&text[..end]).unwrap(), format!("{n:x}"));
        }
    }

    #[test]
    fn deadline_comes_from_grpc_timeout() {
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-timeout", "10S".parse().unwrap());
        let ctx = Context::from_call("Version", metadata, None);
        let remaining = ctx.remaining().unwrap();
        assert!(remaining <= Duration::from_secs(10) && remaining > Duration::from_secs(5));
        assert!(Context::new("Version").remaining().is_none());
    }
}
