//! Plumbing between transports and runtimes: output pumps that guarantee everything written
//! reaches the client before the exit status, and resize decoding.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::runtime::{TerminalSize, Writer};

/// Bytes buffered between a runtime's writer and the transport.
const PIPE_BUFFER: usize = 256 * 1024;

/// The buffer [`copy`] reads into: two full SPDY DATA frames (32 KiB each) per read, where
/// tokio's own 8 KiB copy buffer would make four times the reads, wake-ups and frames.
pub const COPY_BUFFER: usize = 64 * 1024;

/// Copies `from` into `to` until end of file, reading [`COPY_BUFFER`] bytes at a time; returns
/// how many bytes were copied. What the crate's sessions use for every stream, and what a
/// runtime should use to feed them (a process's pipes into a [`Session`](crate::Session)'s
/// writers); `to` is neither flushed nor shut down.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// let mut out = Vec::new();
/// let copied = cri_streaming::copy(&b"hello"[..], &mut out).await?;
/// assert_eq!((copied, out.as_slice()), (5, &b"hello"[..]));
/// # Ok(()) }
/// ```
pub async fn copy<R, W>(from: R, to: &mut W) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut reader = tokio::io::BufReader::with_capacity(COPY_BUFFER, from);
    tokio::io::copy_buf(&mut reader, to).await
}

/// Joins a port-forward `stream` to the runtime's connection to the port in the pod: bytes
/// flow both ways ([`copy`]), and the forward ends when the pod's side ends (it closed the
/// connection or half-closed its sending side); the stream is then shut down, which over
/// SPDY ends the data stream and over WebSocket (where a channel cannot be half-closed
/// before `v5`) lets the session close once its ports are done. The client's end of stdin
/// (EOF) half-closes the connection towards the pod. Waiting for both directions instead
/// would hang a WebSocket client that waits for the pod's data to end.
///
/// What a [`StreamingRuntime::port_forward`](crate::StreamingRuntime::port_forward) does once
/// it has connected.
pub async fn forward<P>(stream: crate::Duplex, pod: P)
where
    P: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut from_client, mut to_client) = tokio::io::split(stream);
    let (mut from_pod, mut to_pod) = tokio::io::split(pod);
    let upstream = tokio::spawn(async move {
        let _ = copy(&mut from_client, &mut to_pod).await;
        let _ = to_pod.shutdown().await;
    });
    let _ = copy(&mut from_pod, &mut to_client).await;
    let _ = to_client.shutdown().await;
    upstream.abort();
}

/// Gives the runtime a writer whose bytes are copied to `sink` by a task; the task shuts the
/// sink down (FIN / channel close) once the runtime drops or shuts its writer. Awaiting the
/// returned handle therefore means "all output has been handed to the transport".
pub(crate) fn pump<W>(mut sink: W) -> (Writer, JoinHandle<()>)
where
    W: AsyncWrite + Send + Unpin + 'static,
{
    let (runtime_end, mut our_end) = tokio::io::duplex(PIPE_BUFFER);
    let task = tokio::spawn(async move {
        if let Err(error) = copy(&mut our_end, &mut sink).await {
            tracing::debug!(%error, "output stream ended early");
        }
        let _ = sink.shutdown().await;
    });
    (Box::pin(runtime_end), task)
}

/// Decodes a resize stream (back-to-back JSON objects `{"Width":W,"Height":H}`) into events.
pub(crate) fn resizes<R>(mut source: R) -> mpsc::Receiver<TerminalSize>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let n = match source.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            let mut stream = serde_json::Deserializer::from_slice(&buf).into_iter::<TerminalSize>();
            let mut consumed = 0;
            loop {
                match stream.next() {
                    Some(Ok(size)) => {
                        consumed = stream.byte_offset();
                        if tx.send(size).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(_)) => {
                        tracing::debug!("malformed resize event; ignoring the resize stream");
                        return;
                    }
                    None => break,
                }
            }
            buf.drain(..consumed);
            if buf.len() > 64 * 1024 {
                return; // no sane resize event is that long
            }
        }
    });
    rx
}

/// A reader and a writer joined into one duplex stream (port-forward over channels).
pub(crate) struct Joined<R, W> {
    pub(crate) reader: R,
    pub(crate) writer: W,
}

impl<R: AsyncRead + Unpin, W: Unpin> AsyncRead for Joined<R, W> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl<R: Unpin, W: AsyncWrite + Unpin> AsyncWrite for Joined<R, W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.writer).poll_shutdown(cx)
    }
}

/// Copies `from` into `to` and then shuts `to` down; used by clients for stdin.
pub(crate) async fn copy_and_close<R, W>(mut from: R, mut to: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let _ = copy(&mut from, &mut to).await;
    let _ = to.shutdown().await;
}

/// Drains a reader to a string (bounded), for status streams.
/// Reads until EOF, `limit` bytes, or an error. An error after some data (a peer that closed
/// the connection right after writing a status) still yields the data.
pub(crate) async fn read_bounded<R: AsyncRead + Unpin>(
    mut from: R,
    limit: usize,
) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while out.len() < limit {
        match from.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n.min(limit - out.len())]),
            Err(error) if out.is_empty() => return Err(error),
            Err(_) => break,
        }
    }
    Ok(out)
}

/// Unused duplex halves are dropped through here so that intent is explicit.
#[allow(dead_code)]
pub(crate) fn discard(_: DuplexStream) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pump_delivers_everything_then_closes() {
        let (sink, mut other) = tokio::io::duplex(1024);
        let (mut writer, task) = pump(sink);
        let payload = vec![7u8; 1 << 20];
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            other.read_to_end(&mut got).await.unwrap();
            got
        });
        writer.write_all(&payload).await.unwrap();
        drop(writer);
        task.await.unwrap();
        assert_eq!(reader.await.unwrap(), payload);
    }

    #[tokio::test]
    async fn resize_events_split_across_reads() {
        let (mut tx, rx_io) = tokio::io::duplex(64);
        let mut rx = resizes(rx_io);
        tx.write_all(br#"{"Width":80,"Height":24}{"Width":1"#)
            .await
            .unwrap();
        tx.write_all(br#"20,"Height":40}"#).await.unwrap();
        assert_eq!(
            rx.recv().await,
            Some(TerminalSize {
                width: 80,
                height: 24
            })
        );
        assert_eq!(
            rx.recv().await,
            Some(TerminalSize {
                width: 120,
                height: 40
            })
        );
        drop(tx);
        assert_eq!(rx.recv().await, None);
    }
}
