//! A stream's bytes handed to the log by the caller instead of read by a task.

use super::split::LineSplitter;
use super::{LogWriter, Stream};

/// One stream of a container's output that the caller pushes into the log
/// ([`LogWriter::input`]), for a caller that already holds the bytes in memory: a monitor that
/// also hands them to attached clients, say. Unlike [`LogWriter::attach`] there is no pipe and
/// no task between the caller and the queue: [`push`](LogInput::push) splits and queues at
/// once, and never waits for the file.
///
/// When the stream ends, [`finish`](LogInput::finish) it (dropping it does the same): an
/// unterminated last line becomes a `P` record. Records pushed before
/// [`LogWriter::close`] are written; after it, `push` takes nothing.
///
/// ```
/// use cri_oci::log::{LogOptions, LogWriter, Stream};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let runtime = tokio::runtime::Builder::new_current_thread().build()?;
/// # runtime.block_on(async {
/// let path = dir.path().join("0.log");
/// let writer = LogWriter::open(&path, LogOptions::default())?;
/// let mut stdout = writer.input(Stream::Stdout);
/// assert!(stdout.push(b"hello\nwor"));
/// assert!(stdout.push(b"ld\nno newline"));
/// stdout.finish();
/// let stats = writer.close().await?;
/// assert_eq!(stats.records, 3);
///
/// let log = std::fs::read_to_string(&path)?;
/// assert!(log.lines().nth(1).unwrap().ends_with(" stdout F world"));
/// assert!(log.lines().nth(2).unwrap().ends_with(" stdout P no newline"));
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok(())
/// # }
/// ```
pub struct LogInput {
    writer: LogWriter,
    stream: Stream,
    splitter: LineSplitter,
    finished: bool,
}

impl LogInput {
    pub(super) fn new(writer: LogWriter, stream: Stream) -> Self {
        let options = &writer.inner.shared.options;
        let splitter = LineSplitter::new(options.max_line, !options.keep_cr);
        Self {
            writer,
            stream,
            splitter,
            finished: false,
        }
    }

    /// Queues the records `data` completes (bytes without their newline wait for it, as in
    /// [`LogWriter::attach`]). Returns `false`, taking nothing, once the writer is closing or
    /// closed.
    pub fn push(&mut self, data: &[u8]) -> bool {
        self.writer
            .inner
            .shared
            .enqueue_input(self.stream, &mut self.splitter, data, false)
    }

    /// The stream ended: what is left of an unterminated last line is queued as a `P` record
    /// (unless the writer is closing).
    pub fn finish(mut self) {
        self.end();
    }

    fn end(&mut self) {
        if !self.finished {
            self.finished = true;
            self.writer
                .inner
                .shared
                .enqueue_input(self.stream, &mut self.splitter, &[], true);
        }
    }
}

impl Drop for LogInput {
    fn drop(&mut self) {
        self.end();
    }
}

impl std::fmt::Debug for LogInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogInput")
            .field("log", &self.writer.inner.shared.label)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::super::LogOptions;
    use super::*;

    #[tokio::test]
    async fn inputs_end_on_drop_and_are_refused_after_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let writer = LogWriter::open(&path, LogOptions::default()).unwrap();

        // Dropped without `finish`: the unterminated line is still written, as a `P` record.
        let mut stderr = writer.input(Stream::Stderr);
        assert!(stderr.push(b"a line\ncut"));
        drop(stderr);

        // An input still open does not hold `close` up; it takes nothing afterwards.
        let mut stdout = writer.input(Stream::Stdout);
        assert!(stdout.push(b"before\n"));
        let stats = writer.clone().close().await.unwrap();
        assert_eq!(stats.records, 3);
        assert!(!stdout.push(b"after\n"), "refused once closed");
        stdout.finish();

        let log = std::fs::read_to_string(&path).unwrap();
        let records: Vec<&str> = log
            .lines()
            .map(|line| line.split_once(' ').unwrap().1)
            .collect();
        assert_eq!(
            records,
            ["stderr F a line", "stderr P cut", "stdout F before"]
        );
    }
}
