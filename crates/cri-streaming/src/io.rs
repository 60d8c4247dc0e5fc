//! Plumbing between transports and runtimes: output writers that guarantee everything written
//! reaches the transport before the exit status, and resize decoding.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::runtime::{TerminalSize, Writer};

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

/// Lends `sink` itself to the runtime as its writer: no buffer and no task between the
/// runtime's writes and the transport (each byte is copied once, into the transport's frame
/// queue). When the runtime drops its writer the sink comes back to the returned task, which
/// shuts it down (FIN / channel close; a shutdown flushes first) unless the runtime already
/// did. Awaiting the handle therefore means "all output has been handed to the transport".
pub(crate) fn lend<W>(sink: W) -> (Writer, JoinHandle<()>)
where
    W: AsyncWrite + Send + Unpin + 'static,
{
    let (back, returned) = oneshot::channel();
    let lent = Lent {
        sink: Some(sink),
        shut: false,
        back: Some(back),
    };
    let task = tokio::spawn(async move {
        if let Ok((mut sink, shut)) = returned.await
            && !shut
            && let Err(error) = sink.shutdown().await
        {
            tracing::debug!(%error, "output stream ended early");
        }
    });
    (Box::pin(lent), task)
}

/// The runtime's end of [`lend`]: the sink, returned (with whether the runtime shut it down)
/// when dropped.
struct Lent<W> {
    /// Always `Some` until dropped.
    sink: Option<W>,
    shut: bool,
    back: Option<oneshot::Sender<(W, bool)>>,
}

impl<W> Lent<W> {
    fn sink(&mut self) -> Pin<&mut W>
    where
        W: Unpin,
    {
        Pin::new(self.sink.as_mut().expect("the sink is taken only on drop"))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Lent<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.sink().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.sink().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.sink.as_ref().is_some_and(W::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.sink().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let done = self.sink().poll_shutdown(cx);
        if let Poll::Ready(Ok(())) = done {
            self.shut = true;
        }
        done
    }
}

impl<W> Drop for Lent<W> {
    fn drop(&mut self) {
        if let (Some(sink), Some(back)) = (self.sink.take(), self.back.take()) {
            // The task is gone only if the session was torn down; the sink goes with it.
            let _ = back.send((sink, self.shut));
        }
    }
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
    async fn lend_delivers_everything_then_closes() {
        let (sink, mut other) = tokio::io::duplex(1024);
        let (mut writer, task) = lend(sink);
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
    async fn lend_closes_once_after_the_runtime_shut_its_writer_down() {
        let (sink, mut other) = tokio::io::duplex(1024);
        let (mut writer, task) = lend(sink);
        writer.write_all(b"last words").await.unwrap();
        writer.shutdown().await.unwrap();
        let mut got = Vec::new();
        other.read_to_end(&mut got).await.unwrap();
        assert_eq!(
            got, b"last words",
            "the runtime's shutdown reached the sink"
        );
        assert!(
            !task.is_finished(),
            "the sink comes back only when the writer is dropped"
        );
        drop(writer);
        task.await.unwrap();
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
