//! Waiting for a process's output to drain after the process has exited, without waiting
//! for ever on a background process that holds the output open, and without cutting off a
//! slow reader: only time spent waiting for the process's side counts.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::task::JoinHandle;

/// [`Reading::waiting_since`] when the reader is not waiting.
const NOT_WAITING: u64 = u64::MAX;

/// Whether, and since when, a [`Watched`] reader has been waiting for data.
#[derive(Debug)]
pub(crate) struct Reading {
    base: Instant,
    /// Nanoseconds after `base`, or [`NOT_WAITING`].
    waiting_since: AtomicU64,
}

impl Reading {
    pub(crate) fn new() -> Arc<Reading> {
        Arc::new(Reading {
            base: Instant::now(),
            waiting_since: AtomicU64::new(NOT_WAITING),
        })
    }

    /// How long the reader has been waiting for data (zero when it is not).
    pub(crate) fn idle(&self) -> Duration {
        match self.waiting_since.load(Ordering::Acquire) {
            NOT_WAITING => Duration::ZERO,
            since => self
                .base
                .elapsed()
                .saturating_sub(Duration::from_nanos(since)),
        }
    }
}

/// A reader that records in a [`Reading`] when it waits for data.
pub(crate) struct Watched<R> {
    inner: R,
    reading: Arc<Reading>,
}

impl<R> Watched<R> {
    pub(crate) fn new(inner: R, reading: &Arc<Reading>) -> Self {
        Watched {
            inner,
            reading: reading.clone(),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Watched<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let reading = &self.reading;
        if polled.is_pending() {
            let now = u64::try_from(reading.base.elapsed().as_nanos()).unwrap_or(NOT_WAITING - 1);
            // Keeps the first moment of a wait.
            let _ = reading.waiting_since.compare_exchange(
                NOT_WAITING,
                now,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        } else {
            reading.waiting_since.store(NOT_WAITING, Ordering::Release);
        }
        polled
    }
}

/// Waits for `task`, a copy whose source is watched by `reading`, to end; gives up once the
/// source has been idle for `grace`. Returns whether the task ended (it is left running
/// otherwise).
pub(crate) async fn finish(task: &mut JoinHandle<()>, reading: &Reading, grace: Duration) -> bool {
    loop {
        let idle = reading.idle();
        if idle >= grace {
            return false;
        }
        if tokio::time::timeout(grace - idle, &mut *task).await.is_ok() {
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A copy that waits for its reader is not idle; one that waits for its source is.
    #[tokio::test]
    async fn only_waiting_for_the_source_counts() {
        let grace = Duration::from_millis(500);
        let (mut source, from) = tokio::io::duplex(1024);
        let reading = Reading::new();
        let (to, mut reader) = tokio::io::duplex(1024);
        // A copy that reads only once it has written what it read (as the runtime's are).
        let mut task = tokio::spawn({
            let mut from = tokio::io::BufReader::new(Watched::new(from, &reading));
            let mut to = to;
            async move {
                let _ = tokio::io::copy_buf(&mut from, &mut to).await;
            }
        });
        // 4 KiB through 1 KiB pipes whose reader takes its time: blocked on the reader.
        let slow_reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut chunk = [0u8; 512];
            while got.len() < 4096 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let n = reader.read(&mut chunk).await.unwrap();
                got.extend_from_slice(&chunk[..n]);
            }
            reader
        });
        source.write_all(&[7u8; 4096]).await.unwrap();
        let mut reader = slow_reader.await.unwrap();
        assert!(
            reading.idle() < grace,
            "waiting for the reader is not idleness"
        );
        // Now the source is silent (but open): the copy is cut off after the grace.
        assert!(!finish(&mut task, &reading, grace).await);
        assert!(reading.idle() >= grace);
        drop(source);
        task.await.unwrap();
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());

        // A source that ends within the grace: the copy is waited for to its end.
        let (mut source, from) = tokio::io::duplex(1024);
        let reading = Reading::new();
        let mut task = tokio::spawn({
            let mut from = tokio::io::BufReader::new(Watched::new(from, &reading));
            async move {
                let mut sink = tokio::io::sink();
                let _ = tokio::io::copy_buf(&mut from, &mut sink).await;
            }
        });
        let ender = tokio::spawn(async move {
            source.write_all(b"last").await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        });
        assert!(finish(&mut task, &reading, grace).await);
        ender.await.unwrap();
    }
}
