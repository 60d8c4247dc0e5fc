//! The writer task: the only code that touches the sink. It takes work from the queue and does
//! the blocking I/O on Tokio's blocking pool, so a slow disk stalls this task and nothing else.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cri_api::log::Tag;

use super::queue::{Control, Dropped, Work};
use super::split::{Chunk, single_record};
use super::{LogSink, Shared, Stream};

/// Most bytes of records handed to one blocking write call: each call is a hand-off to the
/// blocking pool, so a busy stream is written in large batches. The records are already in
/// memory; a batch only groups them.
const MAX_BATCH: usize = 1024 * 1024;

/// Opens (creating it `0640` if missing) a container log file for appending.
pub(super) fn open_log_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o640);
    options.open(path)
}

/// The sink behind [`super::LogWriter::open`]: a file reopened at the same path.
#[derive(Debug)]
pub(super) struct FileSink {
    path: PathBuf,
    file: File,
}

impl FileSink {
    pub(super) fn new(path: PathBuf, file: File) -> Self {
        Self { path, file }
    }
}

impl Write for FileSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl LogSink for FileSink {
    fn reopen(&mut self) -> io::Result<()> {
        // Only replace the handle once the new file is open: on failure writing carries on
        // into the old file, which is where the kubelet looks after it undoes the rotation.
        self.file = open_log_file(&self.path)?;
        Ok(())
    }
}

/// Runs until a close request, or until every handle and reader is gone and the queue is empty.
pub(super) async fn run(shared: Arc<Shared>, sink: Box<dyn LogSink>) {
    let mut writer = Writer {
        shared,
        sink: Some(sink),
        torn: false,
        failing: false,
    };
    loop {
        let Some(work) = writer.next_work().await else {
            // Detached: everything queued is written.
            let _ = writer.flush().await;
            break;
        };
        match work {
            Work::Write { gap, chunks } => writer.write(gap, chunks).await,
            Work::Control(Control::Flush(reply)) => {
                let _ = reply.send(writer.flush().await);
            }
            Work::Control(Control::Reopen(reply)) => {
                let _ = reply.send(writer.reopen().await);
            }
            Work::Control(Control::Close(reply)) => {
                if let Err(error) = writer.flush().await {
                    tracing::warn!(log = %writer.shared.label, %error, "flushing container log on close failed");
                }
                writer.finish();
                let _ = reply.send(());
                return;
            }
        }
    }
    writer.finish();
}

struct Writer {
    shared: Arc<Shared>,
    /// `None` once a sink call panicked: from then on records are dropped and counted.
    sink: Option<Box<dyn LogSink>>,
    /// The destination ends in the middle of a record after a failed write.
    torn: bool,
    /// The last write failed (for logging the start and end of a failure, not every batch).
    failing: bool,
}

/// What one batch did.
#[derive(Default)]
struct Outcome {
    bytes: u64,
    records: u64,
    failed: Dropped,
    marker_written: bool,
    torn: bool,
    error: Option<io::Error>,
}

impl Writer {
    /// The next work, waiting for it; `None` when the writer is no longer needed.
    async fn next_work(&mut self) -> Option<Work> {
        loop {
            // A push between the look and the wait is not missed: `notify_one` leaves a permit
            // when nobody waits.
            let notified = self.shared.wake.notified();
            {
                let mut state = self.shared.lock();
                if let Some(work) = state.queue.take(MAX_BATCH) {
                    return Some(work);
                }
                if state.detached {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Closes the sink and marks the writer finished. Requests queued behind a close (from
    /// clones racing it) are dropped, which answers them "closed" instead of leaving them
    /// waiting forever.
    fn finish(&mut self) {
        self.sink = None;
        let (leftover, dropped) = {
            let mut state = self.shared.lock();
            state.writer_finished = true;
            let (leftover, dropped) = state.queue.drain();
            state.stats.dropped_records += dropped.records;
            state.stats.dropped_bytes += dropped.bytes;
            (leftover, dropped)
        };
        if !dropped.is_empty() {
            tracing::warn!(log = %self.shared.label, records = dropped.records, "container log records queued after close were dropped");
        }
        drop(leftover);
    }

    /// Runs `f` on the sink on the blocking pool; `None` if the sink is gone or `f` panicked.
    async fn blocking<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut dyn LogSink) -> R + Send + 'static,
    ) -> Option<R> {
        let mut sink = self.sink.take()?;
        let task = self.shared.runtime.spawn_blocking(move || {
            let result = f(&mut *sink);
            (sink, result)
        });
        match task.await {
            Ok((sink, result)) => {
                self.sink = Some(sink);
                Some(result)
            }
            Err(error) => {
                tracing::error!(log = %self.shared.label, %error, "container log sink failed; dropping all further output");
                None
            }
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.blocking(|sink| sink.flush())
            .await
            .unwrap_or_else(|| Err(sink_lost()))
    }

    async fn reopen(&mut self) -> io::Result<()> {
        let result = self
            .blocking(|sink| {
                sink.flush()?;
                sink.reopen()
            })
            .await
            .unwrap_or_else(|| Err(sink_lost()));
        match &result {
            Ok(()) => tracing::debug!(log = %self.shared.label, "container log reopened"),
            Err(error) => {
                tracing::warn!(log = %self.shared.label, %error, "reopening container log failed; still writing to the old file")
            }
        }
        result
    }

    async fn write(&mut self, gap: Dropped, chunks: Vec<Chunk>) {
        let mut total = Dropped::default();
        for chunk in &chunks {
            total.add(chunk.records, chunk.content);
        }
        let marker = (!gap.is_empty()).then(|| {
            // Stamped like the records that follow it (the dropped ones were older), so the
            // file's times never go backwards.
            let nanos = match chunks.first() {
                Some(chunk) => chunk.unix_nanos,
                None => self.shared.lock().last_nanos,
            };
            let content = format!(
                "[cri-oci: dropped {} bytes of container output in {} records: the log writer fell behind]",
                gap.bytes, gap.records
            );
            single_record(nanos, Stream::Stderr, Tag::Full, content.as_bytes())
        });
        let only_marker = chunks.is_empty();
        let torn = self.torn;
        let outcome = self
            .blocking(move |sink| write_batch(sink, torn, marker.as_ref(), &chunks))
            .await
            .unwrap_or_else(|| Outcome {
                failed: total,
                torn,
                error: Some(sink_lost()),
                ..Outcome::default()
            });
        self.torn = outcome.torn;

        let mut state = self.shared.lock();
        state.stats.records += outcome.records;
        state.stats.bytes += outcome.bytes;
        state.stats.dropped_records += outcome.failed.records;
        state.stats.dropped_bytes += outcome.failed.bytes;
        let mut gap_left = outcome.failed;
        // A marker that did not make it is folded into the next one; one with no records
        // behind it is given up, or a failing sink would be retried forever.
        if !outcome.marker_written && !only_marker {
            gap_left.add(gap.records, gap.bytes);
        }
        state.queue.add_gap(gap_left);
        match outcome.error {
            Some(error) => {
                state.stats.write_errors += 1;
                drop(state);
                if !self.failing {
                    tracing::warn!(log = %self.shared.label, %error, "writing container log failed; dropping output until writes succeed");
                }
                self.failing = true;
            }
            None => {
                drop(state);
                if self.failing {
                    tracing::info!(log = %self.shared.label, "writing container log works again");
                }
                self.failing = false;
            }
        }
    }
}

fn sink_lost() -> io::Error {
    io::Error::other("the log sink panicked earlier and is gone")
}

/// Writes the marker and the chunks in order; after the first error the rest is counted as
/// failed without trying.
fn write_batch(
    sink: &mut dyn LogSink,
    mut torn: bool,
    marker: Option<&Chunk>,
    chunks: &[Chunk],
) -> Outcome {
    let mut out = Outcome::default();
    let pieces = marker
        .into_iter()
        .map(|m| (true, m))
        .chain(chunks.iter().map(|c| (false, c)));
    for (is_marker, piece) in pieces {
        if out.error.is_none() && torn {
            // End the torn record so the next one starts on its own line.
            match write_whole(sink, b"\n") {
                Ok(()) => {
                    out.bytes += 1;
                    torn = false;
                }
                Err((error, _)) => out.error = Some(error),
            }
        }
        if out.error.is_some() {
            if !is_marker {
                out.failed.add(piece.records, piece.content);
            }
            continue;
        }
        match write_whole(sink, &piece.bytes) {
            Ok(()) => {
                out.bytes += piece.bytes.len() as u64;
                if is_marker {
                    out.marker_written = true;
                } else {
                    out.records += piece.records;
                }
            }
            Err((error, done)) => {
                out.bytes += done as u64;
                torn = done > 0 && piece.bytes[done - 1] != b'\n';
                if !is_marker {
                    let (records, content) = piece.written_prefix(done);
                    out.records += records;
                    out.failed
                        .add(piece.records - records, piece.content - content);
                }
                out.error = Some(error);
            }
        }
    }
    out.torn = torn;
    out
}

/// `write_all` that reports how much was written when it fails.
fn write_whole(sink: &mut dyn LogSink, buf: &[u8]) -> Result<(), (io::Error, usize)> {
    let mut done = 0;
    while done < buf.len() {
        match sink.write(&buf[done..]) {
            Ok(0) => return Err((io::ErrorKind::WriteZero.into(), done)),
            Ok(n) => done += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err((error, done)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::split::ChunkBuilder;

    /// Accepts `budget` bytes, then fails.
    struct Budget {
        out: Vec<u8>,
        budget: usize,
    }

    impl Write for Budget {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::Error::other("disk full"));
            }
            let n = buf.len().min(self.budget).min(7);
            self.budget -= n;
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl LogSink for Budget {}

    fn chunk(lines: &[&str]) -> Chunk {
        let mut builder = ChunkBuilder::new(0, Stream::Stdout);
        for line in lines {
            builder.record(Tag::Full, line.as_bytes());
        }
        builder.finish().remove(0)
    }

    #[test]
    fn a_failed_write_counts_what_made_it_and_repairs_the_line() {
        let chunks = [chunk(&["one", "two"]), chunk(&["three"])];
        let first = chunks[0].header_len + 4;
        let mut sink = Budget {
            out: Vec::new(),
            budget: first + 5,
        };
        let out = write_batch(&mut sink, false, None, &chunks);
        assert_eq!(out.records, 1);
        assert_eq!(
            out.failed,
            Dropped {
                records: 2,
                bytes: 8
            }
        );
        assert_eq!(out.bytes, (first + 5) as u64);
        assert!(out.torn);
        assert!(out.error.is_some());

        // Once the sink has room again the torn record is ended before the next one.
        sink.budget = usize::MAX;
        let out = write_batch(&mut sink, true, None, &chunks[1..]);
        assert!(out.error.is_none() && !out.torn);
        assert_eq!(out.records, 1);
        let text = String::from_utf8(sink.out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].ends_with(" F one"));
        assert!(lines[2].ends_with(" F three"));
    }

    #[test]
    fn a_marker_that_fails_is_reported_as_not_written() {
        let marker = single_record(0, Stream::Stderr, Tag::Full, b"[marker]");
        let mut sink = Budget {
            out: Vec::new(),
            budget: 0,
        };
        let out = write_batch(&mut sink, false, Some(&marker), &[chunk(&["x"])]);
        assert!(!out.marker_written);
        assert_eq!(
            out.failed,
            Dropped {
                records: 1,
                bytes: 1
            }
        );
        assert!(!out.torn);
    }
}
