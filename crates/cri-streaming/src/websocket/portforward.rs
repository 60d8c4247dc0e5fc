//! Port-forward over a channel socket.
//!
//! The client asks for ports in the URL (`?port=80&port=443`). The i-th port (from 0) gets
//! two channels: data `2i` (both ways) and error `2i + 1` (server to client). The first
//! message the server sends on each of them is the port number, two bytes little-endian;
//! the rest of the data channel is the forwarded connection's bytes, the rest of the error
//! channel a text error, if any.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// How many ports one socket can forward: the error channel of the last one is 253, so no
/// channel collides with the v5 CLOSE channel (255).
pub const MAX_PORTS: usize = 127;

/// The two channels of one forwarded port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortChannels {
    /// The forwarded bytes, both ways.
    pub data: u8,
    /// Errors about this port, server to client.
    pub error: u8,
}

/// The channels of the `index`-th requested port, or `None` past [`MAX_PORTS`].
///
/// ```
/// use cri_streaming::websocket::portforward::{channels, PortChannels};
/// assert_eq!(channels(1), Some(PortChannels { data: 2, error: 3 }));
/// ```
pub fn channels(index: usize) -> Option<PortChannels> {
    if index >= MAX_PORTS {
        return None;
    }
    let data = u8::try_from(2 * index).ok()?;
    Some(PortChannels {
        data,
        error: data + 1,
    })
}

/// The prefix message announcing `port`.
pub fn encode_port(port: u16) -> [u8; 2] {
    port.to_le_bytes()
}

/// Sends the port prefix as one message and flushes it (server side, once per channel,
/// before anything else).
pub async fn write_port<W>(writer: &mut W, port: u16) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    writer.write_all(&encode_port(port)).await?;
    writer.flush().await
}

/// Reads the port prefix (client side, first thing on each channel).
pub async fn read_port<R>(reader: &mut R) -> io::Result<u16>
where
    R: AsyncRead + Unpin,
{
    let mut prefix = [0u8; 2];
    reader.read_exact(&mut prefix).await?;
    Ok(u16::from_le_bytes(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_numbers() {
        assert_eq!(channels(0), Some(PortChannels { data: 0, error: 1 }));
        assert_eq!(
            channels(5),
            Some(PortChannels {
                data: 10,
                error: 11
            })
        );
        assert_eq!(
            channels(MAX_PORTS - 1),
            Some(PortChannels {
                data: 252,
                error: 253
            })
        );
        assert_eq!(channels(MAX_PORTS), None);
        assert_eq!(channels(usize::MAX), None);
    }

    #[tokio::test]
    async fn prefix_round_trip() {
        assert_eq!(encode_port(8080), [0x90, 0x1f]);
        for port in [0u16, 1, 80, 443, 8080, 65535] {
            let mut buf = Vec::new();
            write_port(&mut buf, port).await.unwrap();
            assert_eq!(buf, port.to_le_bytes());
            assert_eq!(read_port(&mut buf.as_slice()).await.unwrap(), port);
        }
        let err = read_port(&mut &[1u8][..]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
