//! How the client reaches a streaming server: the URL's address, and a plain TCP or TLS
//! connection to it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::client::ClientError;

/// How the client connects to streaming URLs: `http://` (and `ws://`) over plain TCP,
/// `https://` (and `wss://`) over TLS when a TLS configuration is given. Which of the two a
/// session uses is decided by the URL the runtime handed out.
///
/// [`Connector::default`] is plain TCP only: an `https://` URL is then a
/// [`ClientError::Tls`]. With the `tls` feature, `Connector::tls` adds TLS:
///
/// ```no_run
/// # #[cfg(feature = "tls")]
/// # async fn demo(url: &str) -> Result<(), Box<dyn std::error::Error>> {
/// use cri_streaming::{ClientTls, Connector, Streams, Transport, run_with};
///
/// let connector = Connector::tls(ClientTls::from_ca_pem_file("/etc/cri/ca.crt")?);
/// let streams = Streams {
///     stdout: Some(Box::pin(tokio::io::stdout())),
///     ..Default::default()
/// };
/// let code = run_with(url, Transport::Spdy, streams, &connector).await?;
/// # let _ = code; Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Connector {
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::ClientTls>,
}

impl Connector {
    /// Plain TCP only (the same as [`Connector::default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Plain TCP for `http://` URLs, TLS configured by `tls` for `https://` URLs.
    #[cfg(feature = "tls")]
    pub fn tls(tls: crate::tls::ClientTls) -> Self {
        Self { tls: Some(tls) }
    }

    /// Whether `https://` URLs can be reached.
    pub fn has_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        {
            self.tls.is_some()
        }
        #[cfg(not(feature = "tls"))]
        {
            false
        }
    }

    /// Opens a connection to `target`, with TLS when its scheme asks for it.
    pub(crate) async fn connect(&self, target: &Target) -> Result<Connection, ClientError> {
        if target.tls && !self.has_tls() {
            return Err(ClientError::Tls {
                addr: target.authority.clone(),
                message: if cfg!(feature = "tls") {
                    "the URL is https but no TLS configuration was given (Connector::tls)"
                } else {
                    "the URL is https but cri-streaming was built without its `tls` feature"
                }
                .into(),
                source: None,
            });
        }
        let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
        // Interactive sessions send small messages; do not hold them back.
        tcp.set_nodelay(true)?;
        #[cfg(feature = "tls")]
        if let (true, Some(tls)) = (target.tls, &self.tls) {
            return match tls.handshake(&target.host, tcp).await {
                Ok(stream) => Ok(Connection::Tls(Box::new(stream))),
                Err(crate::tls::HandshakeError::Name) => Err(ClientError::Tls {
                    addr: target.authority.clone(),
                    message: format!("{:?} is neither a DNS name nor an IP address", target.host),
                    source: None,
                }),
                Err(crate::tls::HandshakeError::Io(source)) => Err(ClientError::Tls {
                    addr: target.authority.clone(),
                    message: "handshake failed".into(),
                    source: Some(source),
                }),
            };
        }
        Ok(Connection::Plain(tcp))
    }
}

/// A streaming URL taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// `host[:port]` as in the URL, for the `Host` header.
    pub(crate) authority: String,
    /// The host to connect to (IPv6 without brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The path and query, starting with `/`.
    pub(crate) path: String,
    /// `https` or `wss`.
    pub(crate) tls: bool,
}

impl Target {
    /// Parses `http://`, `https://`, `ws://` and `wss://` URLs (scheme case-insensitive).
    pub(crate) fn parse(url: &str) -> Result<Self, ClientError> {
        let invalid = || ClientError::InvalidUrl(url.to_string());
        let (scheme, rest) = url.split_once("://").ok_or_else(invalid)?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "http" | "ws" => false,
            "https" | "wss" => true,
            _ => return Err(invalid()),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(invalid)?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(port) => port.parse().map_err(|_| invalid())?,
            None if tls => 443,
            None => 80,
        };
        if host.is_empty() || authority.contains('@') {
            return Err(invalid());
        }
        let path = match path.strip_prefix('?') {
            Some(query) => format!("/?{query}"),
            None if path.is_empty() => "/".to_string(),
            None => path.to_string(),
        };
        Ok(Self {
            authority: authority.to_string(),
            host: host.to_string(),
            port,
            path,
            tls,
        })
    }

    /// The same URL with a WebSocket scheme (`ws` or `wss`).
    pub(crate) fn websocket_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.authority, self.path)
    }
}

/// A client connection: plain TCP or TLS over TCP.
pub(crate) enum Connection {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Connection::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Connection::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            Connection::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Connection::Plain(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            Connection::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            Connection::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            Connection::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn urls() {
        let t = target("http://127.0.0.1:10010/exec/abc");
        assert_eq!(
            t,
            Target {
                authority: "127.0.0.1:10010".into(),
                host: "127.0.0.1".into(),
                port: 10010,
                path: "/exec/abc".into(),
                tls: false,
            }
        );
        assert_eq!(t.websocket_url(), "ws://127.0.0.1:10010/exec/abc");
        let t = target("HTTPS://[::1]:8443/attach/x?a=b");
        assert_eq!((t.host.as_str(), t.port, t.tls), ("::1", 8443, true));
        assert_eq!(t.websocket_url(), "wss://[::1]:8443/attach/x?a=b");
        assert_eq!(target("https://node.example/p").port, 443);
        assert_eq!(target("ws://node.example").path, "/");
        assert_eq!(target("wss://h?port=1").path, "/?port=1");
        assert!(target("wss://h:1/").tls);
        for bad in [
            "ftp://h/p",
            "h/p",
            "http:///p",
            "http://h:port/p",
            "http://h:70000/p",
            "http://[::1/p",
            "http://user@h/p",
        ] {
            assert!(
                matches!(Target::parse(bad), Err(ClientError::InvalidUrl(_))),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn https_without_tls_is_a_clear_error() {
        let error = Connector::default()
            .connect(&target("https://127.0.0.1:1/exec/x"))
            .await
            .err()
            .expect("refused before connecting");
        let text = error.to_string();
        assert!(
            matches!(&error, ClientError::Tls { addr, .. } if addr == "127.0.0.1:1"),
            "{error:?}"
        );
        assert!(text.contains("https"), "{text}");
    }
}
