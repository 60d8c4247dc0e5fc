//! Kubernetes channel streams over WebSocket (exec, attach, port-forward).
//!
//! Every WebSocket message belongs to one channel. The binary protocols put the channel
//! number in the message's first byte; the base64 protocols send text messages whose first
//! character is the channel as an ASCII digit, followed by the payload in base64. Which
//! one is spoken is the subprotocol the two sides agreed on in `Sec-WebSocket-Protocol`
//! ([`Protocol`]). Exec and attach use the channels of [`channel`]; port-forward uses two
//! per port ([`portforward`]).
//!
//! A [`ChannelSocket`] owns the WebSocket in a task of its own and hands out one
//! [`ChannelReader`] (`AsyncRead`) and any number of [`ChannelWriter`]s (`AsyncWrite`) per
//! channel, with bounded buffers in both directions. [`server`] wraps a connection an HTTP
//! server has upgraded; [`connect`] dials a streaming URL and negotiates.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use cri_streaming::websocket::{channel, connect, Config, Protocol};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let (mut socket, protocol) = connect(
//!     "http://127.0.0.1:10010/exec/token",
//!     &[Protocol::V5, Protocol::V4],
//!     Config::default(),
//! )
//! .await?;
//! let mut stdout = socket.reader(channel::STDOUT);
//! let mut stdin = socket.writer(channel::STDIN);
//! stdin.write_all(b"echo hi\n").await?;
//! stdin.shutdown().await?; // v5: tells the server stdin is done
//! let mut out = Vec::new();
//! stdout.read_to_end(&mut out).await?;
//! socket.close().await;
//! # let _ = protocol;
//! # Ok(())
//! # }
//! ```

pub mod channel;
mod driver;
mod error;
mod frame;
mod handshake;
mod io;
pub mod portforward;
mod protocol;
mod shared;
mod socket;

pub use error::Error;
pub use handshake::{accept_key, client, connect, server};
pub use io::{ChannelReader, ChannelWriter};
pub use protocol::Protocol;
pub use socket::{ChannelSocket, Config};

#[cfg(test)]
mod tests;
