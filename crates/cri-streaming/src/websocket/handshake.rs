//! Opening a [`ChannelSocket`]: the server side after the HTTP upgrade, the client side
//! with its own handshake over plain TCP or over a connection the caller opened.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::{ChannelSocket, Config, Error, Protocol};

/// The server side of a channel socket over `io`, a connection the HTTP layer has already
/// upgraded: it checked the request (`Upgrade: websocket`, `Sec-WebSocket-Version: 13`),
/// chose `protocol` with [`Protocol::negotiate`], and answered `101 Switching Protocols`
/// with `Sec-WebSocket-Accept` (see [`accept_key`]) and `Sec-WebSocket-Protocol:
/// protocol.name()`.
pub async fn server<S>(io: S, protocol: Protocol, config: Config) -> ChannelSocket
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config.protocol())).await;
    ChannelSocket::new(ws, protocol, config)
}

/// The `Sec-WebSocket-Accept` value answering a request's `Sec-WebSocket-Key`.
///
/// ```
/// // The example of RFC 6455, section 1.3.
/// assert_eq!(
///     cri_streaming::websocket::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
/// );
/// ```
pub fn accept_key(key: &[u8]) -> String {
    derive_accept_key(key)
}

/// Connects to `url` (`ws://` or `http://`, e.g. the URL an `Exec` call returned) over
/// plain TCP, offering `protocols` in the given order, and returns the socket with the
/// protocol the server chose. TLS URLs (`https://`, `wss://`) are refused here: open the
/// TLS connection yourself and use [`client`], or run the whole session with
/// [`run_with`](crate::run_with) and a [`Connector`](crate::Connector).
pub async fn connect(
    url: &str,
    protocols: &[Protocol],
    config: Config,
) -> Result<(ChannelSocket, Protocol), Error> {
    let ws_url = websocket_url(url)?;
    if ws_url.starts_with("wss://") {
        return Err(invalid(
            url,
            "TLS needs a connection opened by the caller (websocket::client, or a Connector)",
        ));
    }
    let request = ws_url
        .as_str()
        .into_client_request()
        .map_err(|_| invalid(url, "not a valid URL"))?;
    let host = request
        .uri()
        .host()
        .ok_or_else(|| invalid(url, "no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = request.uri().port_u16().unwrap_or(80);
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| Error::Connect {
            addr: format!("{}:{port}", request.uri().host().unwrap_or_default()),
            source: e.into(),
        })?;
    // Interactive sessions send small messages; do not hold them back.
    let _ = tcp.set_nodelay(true);
    client(tcp, &ws_url, protocols, config).await
}

/// Like [`connect`], over a connection the caller opened (`io`, plain or TLS); `url`
/// (`ws`, `wss`, `http` or `https`) gives the request's path and `Host` header.
pub async fn client<S>(
    io: S,
    url: &str,
    protocols: &[Protocol],
    config: Config,
) -> Result<(ChannelSocket, Protocol), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if protocols.is_empty() {
        return Err(Error::NoProtocols);
    }
    let ws_url = websocket_url(url)?;
    let mut request = ws_url
        .as_str()
        .into_client_request()
        .map_err(|_| invalid(url, "not a valid URL"))?;
    let offer = protocols
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ");
    request.headers_mut().insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_str(&offer).map_err(|_| Error::NoProtocols)?,
    );
    let (ws, response) =
        tokio_tungstenite::client_async_with_config(request, io, Some(config.protocol())).await?;
    let selected = response
        .headers()
        .get(SEC_WEBSOCKET_PROTOCOL)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let protocol = selected
        .as_deref()
        .and_then(Protocol::from_name)
        .filter(|p| protocols.contains(p))
        .ok_or(Error::Negotiation { selected })?;
    Ok((ChannelSocket::new(ws, protocol, config), protocol))
}

fn invalid(url: &str, reason: &'static str) -> Error {
    Error::InvalidUrl {
        url: url.to_owned(),
        reason,
    }
}

/// `url` with an `http` scheme turned into `ws` (and `https` into `wss`).
fn websocket_url(url: &str) -> Result<String, Error> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(invalid(url, "no scheme"));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "ws" | "http" => Ok(format!("ws://{rest}")),
        "wss" | "https" => Ok(format!("wss://{rest}")),
        _ => Err(invalid(url, "the scheme must be ws, wss, http or https")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            websocket_url("http://127.0.0.1:10010/exec/abc").unwrap(),
            "ws://127.0.0.1:10010/exec/abc"
        );
        assert_eq!(
            websocket_url("HTTP://[::1]:8080/attach/x?a=b").unwrap(),
            "ws://[::1]:8080/attach/x?a=b"
        );
        assert_eq!(websocket_url("ws://h/p").unwrap(), "ws://h/p");
        assert_eq!(websocket_url("https://h/p").unwrap(), "wss://h/p");
        assert_eq!(websocket_url("WSS://h/p").unwrap(), "wss://h/p");
        for bad in ["ftp://h/p", "h/p"] {
            assert!(
                matches!(websocket_url(bad), Err(Error::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }
}
