//! CRI container logs: a writer that turns a container's stdout and stderr into records of the
//! kubelet's log format (see [`cri_api::log`]) in the container's log file,
//!
//! ```text
//! 2024-01-02T03:04:05.123456789Z stdout F a whole line
//! 2024-01-02T03:04:05.123456790Z stderr P the first 16 KiB of a longer line
//! 2024-01-02T03:04:05.123456790Z stderr F ... and the rest of it
//! ```
//!
//! A runtime opens one [`LogWriter`] per container at the `log_path` the kubelet asked for,
//! [attaches](LogWriter::attach) the container's stdout and stderr (pipes, or anything
//! [`AsyncRead`]), [reopens](LogWriter::reopen) it for `ReopenContainerLog`, and
//! [closes](LogWriter::close) it when the container is gone. It works the same in a small
//! monitor process that outlives the runtime: all it needs is a Tokio runtime, the path and
//! the pipes (a pipe's read end becomes an `AsyncRead` with
//! `tokio::net::unix::pipe::Receiver::from_owned_fd`).
//!
//! ```
//! use cri_oci::log::{LogOptions, LogWriter, Stream};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let runtime = tokio::runtime::Builder::new_current_thread().build()?;
//! # runtime.block_on(async {
//! let path = dir.path().join("0.log");
//! let writer = LogWriter::open(&path, LogOptions::default())?;
//! let stdout = writer.attach(Stream::Stdout, &b"hello\nworld\n"[..]);
//! let stderr = writer.attach(Stream::Stderr, &b"no newline at the end"[..]);
//! // Both streams end (the container exited): wait for them, then flush and close.
//! assert_eq!(stdout.await??, 12);
//! assert_eq!(stderr.await??, 21);
//! let stats = writer.close().await?;
//! assert_eq!(stats.records, 3);
//!
//! let log = std::fs::read_to_string(&path)?;
//! let mut stdout_lines = log.lines().filter(|line| line.contains(" stdout "));
//! assert!(stdout_lines.next().unwrap().ends_with(" stdout F hello"));
//! assert!(log.lines().any(|line| line.ends_with(" stderr P no newline at the end")));
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok(())
//! # }
//! ```
//!
//! # How output becomes records
//!
//! - Each stream is cut at `\n`. A line becomes one `F` record, or, when longer than
//!   [`LogOptions::max_line`] (16 KiB by default, the kubelet's and containerd's size), `P`
//!   records of exactly that many bytes and an `F` record with the rest.
//! - Bytes without their newline wait for it (until the line outgrows `max_line`). When the
//!   stream ends, what is left becomes a `P` record: the container did not end the line, and
//!   the kubelet joins `P` content without adding a newline, so `kubectl logs` shows exactly
//!   what the container wrote. This is what containerd writes (fixed in containerd/cri#1027);
//!   some log shippers that wait for an `F` after a `P` time out on it (containerd#4813), the
//!   price of not inventing a newline.
//! - The `\r` of a `\r\n` line end is dropped (a TTY writes those), as containerd, CRI-O and
//!   Docker do; [`LogOptions::keep_carriage_returns`] keeps it. Other `\r` are content.
//! - Content is bytes: invalid UTF-8 and NUL bytes are written as they came.
//! - A record is stamped with the time of the read that completed it (UTC, nanoseconds).
//!   Times in the file never go backwards: a record is never stamped earlier than the one
//!   before it, even across streams or when the clock steps back.
//! - stdout and stderr records interleave in the file, each record whole: records are formatted
//!   by the reader and written by a single writer task.
//!
//! # A slow disk never blocks the container
//!
//! Each attached stream has a reader task that only reads and queues; one writer task does the
//! file I/O (on Tokio's blocking pool). The queue holds at most [`LogOptions::buffer`] bytes
//! of records. When a new read does not fit, the **oldest** queued records are dropped (the
//! newest output is usually what explains a crash, and dropping from the front keeps every
//! congestion episode one gap instead of many), counted in [`LogStats`], and the file gets a
//! marker record where they would have been:
//!
//! ```text
//! <time> stderr F [cri-oci: dropped 1048576 bytes of container output in 2048 records: the log writer fell behind]
//! ```
//!
//! A record that cannot be written (a full disk) is counted the same way and reported in the
//! next marker that makes it to the file. A write that fails part way leaves a torn record,
//! which is ended with a newline before the next one so the records after it parse.
//!
//! # Rotation
//!
//! The kubelet rotates a log by renaming it and calling `ReopenContainerLog`;
//! [`LogWriter::reopen`] then opens the path again (creating it `0640`). Records go to the old
//! file until the new one is open and nothing read is lost. If the path cannot be opened the
//! error is returned and writing carries on into the old file: the kubelet renames the rotated
//! file back when reopening fails, so the output lands where it looks.

mod input;
mod queue;
mod reader;
mod split;
mod writer;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::AsyncRead;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;

use crate::{Error, Result};
pub use input::LogInput;
use queue::{Control, Queue};
use split::{ChunkBuilder, LineSplitter};

/// Which of a container's output streams a record comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The container's standard output.
    Stdout,
    /// The container's standard error.
    Stderr,
}

impl Stream {
    /// The name in a log record: `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a [`LogWriter`] splits and buffers, built from [`LogOptions::default`].
///
/// ```
/// use cri_oci::log::LogOptions;
///
/// let options = LogOptions::default()
///     .max_line(4096)
///     .buffer(4 << 20)
///     .keep_carriage_returns(true);
/// ```
#[derive(Clone)]
pub struct LogOptions {
    max_line: usize,
    buffer: usize,
    keep_cr: bool,
    clock: Arc<dyn Fn() -> SystemTime + Send + Sync>,
}

impl LogOptions {
    /// The default [`LogOptions::max_line`]: 16 KiB, the size the kubelet and containerd use.
    pub const DEFAULT_MAX_LINE: usize = 16 * 1024;
    /// The default [`LogOptions::buffer`]: 1 MiB per container.
    pub const DEFAULT_BUFFER: usize = 1024 * 1024;

    /// Longest record content in bytes; longer lines are split into `P` records of this size
    /// and a final `F`. At least 1.
    pub fn max_line(mut self, bytes: usize) -> Self {
        self.max_line = bytes;
        self
    }

    /// Most bytes of formatted records queued for the file before the oldest are dropped.
    /// At least 1; a read larger than this is still queued whole once the rest is dropped.
    /// Memory per container is about this, plus up to 1 MiB taken from the queue and being
    /// written, plus for each stream a line still waiting for its newline (at most
    /// `max_line + 1` bytes) and, for a stream attached as a reader, a 128 KiB read buffer.
    pub fn buffer(mut self, bytes: usize) -> Self {
        self.buffer = bytes;
        self
    }

    /// Keep the `\r` of `\r\n` line ends as content (default: dropped, like containerd).
    pub fn keep_carriage_returns(mut self, keep: bool) -> Self {
        self.keep_cr = keep;
        self
    }

    /// Where record times come from (default: [`SystemTime::now`]); for tests.
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn validate(&self) -> Result<()> {
        if self.max_line == 0 {
            return Err(Error::invalid(
                "LogOptions.max_line",
                "must be at least 1 byte",
            ));
        }
        if self.buffer == 0 {
            return Err(Error::invalid(
                "LogOptions.buffer",
                "must be at least 1 byte",
            ));
        }
        Ok(())
    }
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            max_line: Self::DEFAULT_MAX_LINE,
            buffer: Self::DEFAULT_BUFFER,
            keep_cr: false,
            clock: Arc::new(SystemTime::now),
        }
    }
}

impl fmt::Debug for LogOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogOptions")
            .field("max_line", &self.max_line)
            .field("buffer", &self.buffer)
            .field("keep_carriage_returns", &self.keep_cr)
            .finish_non_exhaustive()
    }
}

/// Counters of a [`LogWriter`], from [`LogWriter::stats`] or [`LogWriter::close`].
///
/// Every record read ends up in exactly one of `records` and `dropped_records`, once it has
/// been written or dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogStats {
    /// Records written whole (drop markers not included).
    pub records: u64,
    /// Bytes written to the log, records and markers, across reopens.
    pub bytes: u64,
    /// Records dropped because the queue was full or a write failed.
    pub dropped_records: u64,
    /// Container output bytes (record content) in the dropped records.
    pub dropped_bytes: u64,
    /// Writes that failed (each may drop several records).
    pub write_errors: u64,
}

/// Where a [`LogWriter`] writes: an [`io::Write`] that can be reopened. [`LogWriter::open`]
/// uses a file; implement this for anything else (a test sink, a size-capped file).
///
/// All calls come from one task at a time, on Tokio's blocking pool, so they may block.
/// `write` is given whole records, and should not buffer: `flush` is called only when the
/// writer is [flushed](LogWriter::flush), reopened or closed.
pub trait LogSink: io::Write + Send + 'static {
    /// Replaces the destination with a fresh one (after the kubelet renamed the log file). On
    /// error the old destination must stay usable. The default cannot reopen.
    fn reopen(&mut self) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this log sink cannot be reopened",
        ))
    }
}

/// Writes CRI log records for one container; see the [module docs](self) for the behaviour.
///
/// Cheap to clone: clones share the file, the queue and the counters. The writer task keeps
/// going while any clone or attached stream is alive, and stops after writing everything once
/// the last one is gone, or at [`LogWriter::close`].
#[derive(Clone)]
pub struct LogWriter {
    inner: Arc<Handle>,
}

/// Dropping the last user handle (readers hold one too) lets the writer task finish.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.lock().detached = true;
        self.shared.wake.notify_one();
    }
}

/// What the handles, readers and the writer task share.
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer task: something was queued, or the last handle went away.
    wake: Notify,
    /// Set once by `close`: readers stop reading.
    shutdown: watch::Sender<bool>,
    /// Number of reader tasks still running.
    readers: watch::Sender<usize>,
    options: LogOptions,
    path: Option<PathBuf>,
    /// The log's name in errors and traces.
    label: String,
    runtime: tokio::runtime::Handle,
}

struct State {
    queue: Queue,
    stats: LogStats,
    /// The latest time given to a record: no record gets an earlier one.
    last_nanos: i64,
    closing: bool,
    detached: bool,
    writer_finished: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements, so a panic elsewhere while holding
        // the lock does not make it unusable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Splits `data` (and, at `eof`, what is left of the last line) into records and queues
    /// them. Stamping and queueing happen under one lock so that times in the file are in order.
    fn enqueue(&self, stream: Stream, splitter: &mut LineSplitter, data: &[u8], eof: bool) {
        let read_at = unix_nanos((self.options.clock)());
        let state = self.lock();
        self.enqueue_locked(state, read_at, stream, splitter, data, eof);
    }

    /// [`enqueue`](Self::enqueue) for a [`LogInput`]: refused (`false`) once `close` began, since
    /// `close` does not wait for inputs as it waits for readers.
    fn enqueue_input(
        &self,
        stream: Stream,
        splitter: &mut LineSplitter,
        data: &[u8],
        eof: bool,
    ) -> bool {
        let read_at = unix_nanos((self.options.clock)());
        let state = self.lock();
        if state.closing || state.writer_finished {
            return false;
        }
        self.enqueue_locked(state, read_at, stream, splitter, data, eof);
        true
    }

    fn enqueue_locked(
        &self,
        mut state: MutexGuard<'_, State>,
        read_at: i64,
        stream: Stream,
        splitter: &mut LineSplitter,
        data: &[u8],
        eof: bool,
    ) {
        let nanos = read_at.max(state.last_nanos);
        let mut builder = ChunkBuilder::new(nanos, stream);
        let mut emit = |tag, content: &[u8]| builder.record(tag, content);
        splitter.push(data, &mut emit);
        if eof {
            splitter.finish(&mut emit);
        }
        let chunks = builder.finish();
        if chunks.is_empty() {
            return;
        }
        state.last_nanos = nanos;
        for chunk in chunks {
            let dropped = state.queue.push_chunk(chunk);
            state.stats.dropped_records += dropped.records;
            state.stats.dropped_bytes += dropped.bytes;
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Queues a request for the writer task, or `false` if the task has finished.
    fn request(&self, control: Control) -> bool {
        let mut state = self.lock();
        if state.writer_finished {
            return false;
        }
        state.queue.push_control(control);
        drop(state);
        self.wake.notify_one();
        true
    }

    fn closed(&self) -> Error {
        Error::io(
            format!("container log {}", self.label),
            io::Error::new(io::ErrorKind::BrokenPipe, "the log writer is closed"),
        )
    }
}

impl LogWriter {
    /// Opens (creating it `0640` if missing) the log file at `path` for appending and starts the
    /// writer task. The directory must exist: the kubelet creates it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for bad options, [`Error::Unsupported`] outside a Tokio
    /// runtime, [`Error::Io`] when the file cannot be opened.
    pub fn open(path: impl Into<PathBuf>, options: LogOptions) -> Result<Self> {
        let path = path.into();
        options.validate()?;
        let runtime = current_runtime()?;
        let label = path.display().to_string();
        let file = writer::open_log_file(&path)
            .map_err(|e| Error::io(format!("opening container log {label}"), e))?;
        let sink = writer::FileSink::new(path.clone(), file);
        Ok(Self::start(
            Box::new(sink),
            Some(path),
            label,
            options,
            runtime,
        ))
    }

    /// Starts a writer on any [`LogSink`] instead of a file.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for bad options, [`Error::Unsupported`] outside a Tokio
    /// runtime.
    pub fn with_sink(sink: impl LogSink, options: LogOptions) -> Result<Self> {
        options.validate()?;
        let runtime = current_runtime()?;
        Ok(Self::start(
            Box::new(sink),
            None,
            "(custom sink)".to_owned(),
            options,
            runtime,
        ))
    }

    fn start(
        sink: Box<dyn LogSink>,
        path: Option<PathBuf>,
        label: String,
        options: LogOptions,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: Queue::new(options.buffer),
                stats: LogStats::default(),
                last_nanos: i64::MIN,
                closing: false,
                detached: false,
                writer_finished: false,
            }),
            wake: Notify::new(),
            shutdown: watch::Sender::new(false),
            readers: watch::Sender::new(0),
            options,
            path,
            label,
            runtime: runtime.clone(),
        });
        runtime.spawn(writer::run(Arc::clone(&shared), sink));
        Self {
            inner: Arc::new(Handle { shared }),
        }
    }

    /// The log file's path; `None` for a [custom sink](LogWriter::with_sink).
    pub fn path(&self) -> Option<&Path> {
        self.inner.shared.path.as_deref()
    }

    /// Copies `reader` (a container's stdout or stderr) into the log until it ends, as records
    /// of `stream`. Returns the reader task; it resolves to the bytes read, once the stream has
    /// ended and its last records are queued (not necessarily written: see
    /// [`LogWriter::flush`]).
    ///
    /// Any number of readers may be attached, from any thread. The task stops early when the
    /// writer is [closed](LogWriter::close), writing what it has read.
    ///
    /// The task fails with [`Error::Io`] when reading fails (what was read is written), or at
    /// once if the writer is already closed.
    pub fn attach(
        &self,
        stream: Stream,
        reader: impl AsyncRead + Send + Unpin + 'static,
    ) -> JoinHandle<Result<u64>> {
        let shared = &self.inner.shared;
        {
            // Counted under the lock, so `close` either sees this reader or refuses it.
            let state = shared.lock();
            if state.closing || state.writer_finished {
                let error = shared.closed();
                return shared.runtime.spawn(async move { Err(error) });
            }
            shared.readers.send_modify(|n| *n += 1);
        }
        shared
            .runtime
            .spawn(reader::pump(self.clone(), stream, reader))
    }

    /// Waits until every record queued before the call is written (or dropped) and the sink is
    /// flushed. Bytes still in a pipe, or a line still waiting for its newline, are not
    /// included.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when flushing fails or the writer is closed.
    pub async fn flush(&self) -> Result<()> {
        let shared = &self.inner.shared;
        let (reply, answer) = oneshot::channel();
        if !shared.request(Control::Flush(reply)) {
            return Err(shared.closed());
        }
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::io(
                format!("flushing container log {}", shared.label),
                e,
            )),
            Err(_) => Err(shared.closed()),
        }
    }

    /// `ReopenContainerLog`: after everything queued so far is written to the current file,
    /// opens the path again (creating it) and writes there from then on. Readers keep going
    /// meanwhile and nothing they read is lost.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the path cannot be opened (writing continues into the old file) or
    /// the writer is closed.
    pub async fn reopen(&self) -> Result<()> {
        let shared = &self.inner.shared;
        let (reply, answer) = oneshot::channel();
        if !shared.request(Control::Reopen(reply)) {
            return Err(shared.closed());
        }
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::io(
                format!("reopening container log {}", shared.label),
                e,
            )),
            Err(_) => Err(shared.closed()),
        }
    }

    /// A stream the caller pushes bytes into ([`LogInput::push`]) instead of one read by a
    /// task: for output the caller already holds in memory, without a pipe or a task in
    /// between. Inputs are not waited for by [`close`](LogWriter::close): finish them first to
    /// keep an unterminated last line.
    pub fn input(&self, stream: Stream) -> LogInput {
        LogInput::new(self.clone(), stream)
    }

    /// The counters so far.
    pub fn stats(&self) -> LogStats {
        self.inner.shared.lock().stats
    }

    /// Stops the readers (each queues what it has read, an unterminated line as a `P` record)
    /// and refuses further [inputs](LogWriter::input), writes everything queued, closes the
    /// file and returns the final counters. Later calls on clones return the same counters;
    /// later [`attach`](LogWriter::attach) calls fail.
    ///
    /// To keep everything a container wrote, await the [`attach`](LogWriter::attach) tasks
    /// (they finish when the container's end of the pipes is closed) before closing.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the writer task is gone without finishing (its runtime shut down).
    pub async fn close(self) -> Result<LogStats> {
        let shared = &self.inner.shared;
        shared.lock().closing = true;
        shared.shutdown.send_replace(true);
        let mut readers = shared.readers.subscribe();
        // The sender lives in `shared`, so this only ends when the count reaches zero.
        let _ = readers.wait_for(|&n| n == 0).await;

        let (reply, answer) = oneshot::channel();
        if shared.request(Control::Close(reply)) {
            let _ = answer.await;
        }
        let state = shared.lock();
        if state.writer_finished {
            Ok(state.stats)
        } else {
            Err(Error::io(
                format!("closing container log {}", shared.label),
                io::Error::other("the log writer task stopped before writing everything"),
            ))
        }
    }
}

impl fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.inner.shared;
        f.debug_struct("LogWriter")
            .field("log", &shared.label)
            .field("options", &shared.options)
            .finish_non_exhaustive()
    }
}

fn current_runtime() -> Result<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current().map_err(|_| {
        Error::Unsupported("a LogWriter must be started inside a Tokio runtime".to_owned())
    })
}

/// `time` as nanoseconds since the Unix epoch, saturating outside about 1678..2262.
fn unix_nanos(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn converts_times_around_the_epoch() {
        assert_eq!(unix_nanos(UNIX_EPOCH), 0);
        assert_eq!(unix_nanos(UNIX_EPOCH + Duration::new(1, 5)), 1_000_000_005);
        assert_eq!(unix_nanos(UNIX_EPOCH - Duration::from_nanos(3)), -3);
    }

    #[test]
    fn rejects_empty_sizes_by_field_name() {
        let err = LogOptions::default().max_line(0).validate().unwrap_err();
        assert!(err.to_string().contains("LogOptions.max_line"), "{err}");
        let err = LogOptions::default().buffer(0).validate().unwrap_err();
        assert!(err.to_string().contains("LogOptions.buffer"), "{err}");
        assert!(LogOptions::default().validate().is_ok());
    }

    #[test]
    fn opening_outside_a_runtime_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = LogWriter::open(dir.path().join("x.log"), LogOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err}");
        assert!(!dir.path().join("x.log").exists());
    }
}
