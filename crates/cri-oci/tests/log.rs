//! The CRI log writer end to end: real files, pipes (`tokio::io::duplex`), custom sinks.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cri_api::log::{Record, Tag};
use cri_oci::log::{LogOptions, LogSink, LogStats, LogWriter, Stream};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

/// One record of a log file; content as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    timestamp: String,
    stream: String,
    tag: Tag,
    content: Vec<u8>,
}

/// Parses a whole log file, failing on any line that is not a record.
fn parse(bytes: &[u8]) -> Vec<Rec> {
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "log does not end with a newline"
    );
    let mut records = Vec::new();
    for line in bytes.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue; // only the split after the last newline
        }
        // The header is ASCII and ends at the third space; the content is arbitrary bytes.
        let mut spaces = line.iter().enumerate().filter(|(_, b)| **b == b' ');
        let (end, _) = spaces.nth(2).expect("record has three fields and content");
        let header = std::str::from_utf8(&line[..=end]).expect("ASCII header");
        let record = Record::parse(header).unwrap_or_else(|e| panic!("{e}: {header:?}"));
        assert_eq!(record.content, "");
        records.push(Rec {
            timestamp: record.timestamp.to_owned(),
            stream: record.stream.to_owned(),
            tag: record.tag,
            content: line[end + 1..].to_vec(),
        });
    }
    records
}

fn parse_file(path: &Path) -> Vec<Rec> {
    parse(&std::fs::read(path).unwrap())
}

/// `(tag, content)` pairs, for compact assertions.
fn tagged(records: &[Rec]) -> Vec<(char, String)> {
    records
        .iter()
        .map(|r| {
            let tag = if r.tag == Tag::Full { 'F' } else { 'P' };
            (tag, String::from_utf8_lossy(&r.content).into_owned())
        })
        .collect()
}

fn pairs(expected: &[(char, &str)]) -> Vec<(char, String)> {
    expected.iter().map(|&(t, c)| (t, c.to_owned())).collect()
}

/// The lines of one stream, `P` records joined to the record that ends them.
fn lines_of(records: &[Rec], stream: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = Vec::new();
    for record in records.iter().filter(|r| r.stream == stream) {
        line.extend_from_slice(&record.content);
        if record.tag == Tag::Full {
            lines.push(String::from_utf8(std::mem::take(&mut line)).unwrap());
        }
    }
    if !line.is_empty() {
        lines.push(String::from_utf8(line).unwrap());
    }
    lines
}

/// Reads return exactly these chunks, one per read.
struct Chunked(VecDeque<Vec<u8>>);

impl Chunked {
    fn new(chunks: &[&[u8]]) -> Self {
        Self(chunks.iter().map(|c| c.to_vec()).collect())
    }
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(mut chunk) = self.0.pop_front() {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            if n < chunk.len() {
                self.0.push_front(chunk.split_off(n));
            }
        }
        Poll::Ready(Ok(()))
    }
}

fn fixed_clock(nanos: u64) -> impl Fn() -> SystemTime + Send + Sync + 'static {
    move || UNIX_EPOCH + Duration::from_nanos(nanos)
}

/// Writes everything into memory; optionally held shut until opened, optionally failing the
/// next few writes; reports when the writer drops it.
#[derive(Clone, Default)]
struct MemorySink {
    out: Arc<Mutex<Vec<u8>>>,
    gate: Arc<(Mutex<bool>, Condvar)>,
    failures: Arc<Mutex<u32>>,
    dropped: Option<Arc<tokio::sync::Notify>>,
}

impl MemorySink {
    fn open() -> Self {
        let sink = Self::default();
        sink.set_gate(true);
        sink
    }

    fn set_gate(&self, open: bool) {
        let (lock, cvar) = &*self.gate;
        *lock.lock().unwrap() = open;
        cvar.notify_all();
    }

    fn contents(&self) -> Vec<u8> {
        self.out.lock().unwrap().clone()
    }
}

impl Write for MemorySink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (lock, cvar) = &*self.gate;
        let _open = cvar
            .wait_while(lock.lock().unwrap(), |open| !*open)
            .unwrap();
        let mut failures = self.failures.lock().unwrap();
        if *failures > 0 {
            *failures -= 1;
            return Err(io::Error::other("no space left on device"));
        }
        self.out.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl LogSink for MemorySink {}

impl Drop for MemorySink {
    fn drop(&mut self) {
        if let Some(dropped) = &self.dropped {
            dropped.notify_one();
        }
    }
}

async fn write_lines(pipe: &mut (impl tokio::io::AsyncWrite + Unpin), range: std::ops::Range<u32>) {
    for i in range {
        pipe.write_all(format!("line {i}\n").as_bytes())
            .await
            .unwrap();
    }
}

fn numbered(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("line {i}")).collect()
}

#[tokio::test]
async fn lines_split_across_reads_are_whole_records_with_the_read_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    let options = LogOptions::default().clock(fixed_clock(1_704_164_645_123_456_789));
    let writer = LogWriter::open(&path, options).unwrap();
    let reads = Chunked::new(&[b"hel", b"lo\nwor", b"ld\n\nlast", b" words"]);
    assert_eq!(
        writer.attach(Stream::Stdout, reads).await.unwrap().unwrap(),
        23
    );
    let stats = writer.close().await.unwrap();

    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "2024-01-02T03:04:05.123456789Z stdout F hello\n\
         2024-01-02T03:04:05.123456789Z stdout F world\n\
         2024-01-02T03:04:05.123456789Z stdout F \n\
         2024-01-02T03:04:05.123456789Z stdout P last words\n"
    );
    assert_eq!(stats.records, 4);
    assert_eq!(stats.bytes, std::fs::metadata(&path).unwrap().len());
    assert_eq!((stats.dropped_records, stats.write_errors), (0, 0));
}

#[tokio::test]
async fn long_lines_are_split_into_partial_records_at_max_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    let writer = LogWriter::open(&path, LogOptions::default().max_line(8)).unwrap();
    let reads = Chunked::new(&[b"0123456789abc", b"defghij\n01234567\nabcdefgh", b"ij\n"]);
    writer.attach(Stream::Stderr, reads).await.unwrap().unwrap();
    writer.close().await.unwrap();

    let records = parse_file(&path);
    assert!(records.iter().all(|r| r.stream == "stderr"));
    assert_eq!(
        tagged(&records),
        pairs(&[
            ('P', "01234567"),
            ('P', "89abcdef"),
            ('F', "ghij"),
            ('F', "01234567"),
            ('P', "abcdefgh"),
            ('F', "ij"),
        ])
    );
    assert_eq!(
        lines_of(&records, "stderr"),
        ["0123456789abcdefghij", "01234567", "abcdefghij"]
    );
}

#[tokio::test]
async fn the_unterminated_last_line_is_kept_as_a_partial_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    let writer = LogWriter::open(&path, LogOptions::default()).unwrap();
    writer
        .attach(Stream::Stdout, &b"done\nexit status 3"[..])
        .await
        .unwrap()
        .unwrap();
    writer.close().await.unwrap();
    assert_eq!(
        tagged(&parse_file(&path)),
        pairs(&[('F', "done"), ('P', "exit status 3")])
    );
}

#[tokio::test]
async fn carriage_returns_of_crlf_are_dropped_unless_kept() {
    let dir = tempfile::tempdir().unwrap();
    for (keep, expected) in [
        (false, [('F', "tty line"), ('F', "split"), ('F', "a\rb")]),
        (true, [('F', "tty line\r"), ('F', "split\r"), ('F', "a\rb")]),
    ] {
        let path = dir.path().join(format!("{keep}.log"));
        let options = LogOptions::default().keep_carriage_returns(keep);
        let writer = LogWriter::open(&path, options).unwrap();
        let reads = Chunked::new(&[b"tty line\r\nsplit\r", b"\na\rb\n"]);
        writer.attach(Stream::Stdout, reads).await.unwrap().unwrap();
        writer.close().await.unwrap();
        assert_eq!(tagged(&parse_file(&path)), pairs(&expected), "keep={keep}");
    }
}

#[tokio::test]
async fn empty_output_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    let writer = LogWriter::open(&path, LogOptions::default()).unwrap();
    assert_eq!(
        writer
            .attach(Stream::Stdout, &b""[..])
            .await
            .unwrap()
            .unwrap(),
        0
    );
    assert_eq!(
        writer
            .attach(Stream::Stderr, &b""[..])
            .await
            .unwrap()
            .unwrap(),
        0
    );
    assert_eq!(writer.close().await.unwrap(), LogStats::default());
    assert_eq!(std::fs::read(&path).unwrap(), b"");
}

#[tokio::test]
async fn binary_output_is_written_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    let options = LogOptions::default().clock(fixed_clock(0));
    let writer = LogWriter::open(&path, options).unwrap();
    let bytes: &'static [u8] = b"\xff\xfe\x00\x01 bin\xc3\n\x80";
    writer.attach(Stream::Stderr, bytes).await.unwrap().unwrap();
    writer.close().await.unwrap();

    let mut expected =
        b"1970-01-01T00:00:00.000000000Z stderr F \xff\xfe\x00\x01 bin\xc3\n".to_vec();
    expected.extend_from_slice(b"1970-01-01T00:00:00.000000000Z stderr P \x80\n");
    assert_eq!(std::fs::read(&path).unwrap(), expected);
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_log_file_is_created_0640() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    let writer = LogWriter::open(&path, LogOptions::default()).unwrap();
    writer.close().await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    // The umask may take bits away, never add them.
    assert_eq!(mode & !0o640, 0, "{mode:o}");
    assert_eq!(mode & 0o600, 0o600, "{mode:o}");
}

#[tokio::test]
async fn a_missing_directory_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("0.log");
    let err = LogWriter::open(&path, LogOptions::default()).unwrap_err();
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_and_stderr_interleave_as_whole_records() {
    const LINES: u32 = 3000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    // A small max_line so some lines are split, and a buffer large enough to drop nothing.
    let options = LogOptions::default().max_line(24).buffer(64 << 20);
    let writer = LogWriter::open(&path, options).unwrap();

    let mut readers = Vec::new();
    let mut producers = Vec::new();
    for (stream, seed) in [(Stream::Stdout, 7u64), (Stream::Stderr, 13u64)] {
        let (mut tx, rx) = tokio::io::duplex(97);
        readers.push(writer.attach(stream, rx));
        producers.push(tokio::spawn(async move {
            // Lines of varied length written in pieces of varied size.
            let mut text = Vec::new();
            for i in 0..LINES {
                let pad = "x".repeat((i as usize * 7) % 40);
                text.extend_from_slice(format!("{stream} {i} {pad}\n").as_bytes());
            }
            let mut state = seed;
            let mut rest = &text[..];
            while !rest.is_empty() {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                let n = ((state >> 33) as usize % 61 + 1).min(rest.len());
                tx.write_all(&rest[..n]).await.unwrap();
                rest = &rest[n..];
            }
        }));
    }
    for producer in producers {
        producer.await.unwrap();
    }
    for reader in readers {
        reader.await.unwrap().unwrap();
    }
    let stats = writer.close().await.unwrap();
    assert_eq!(stats.dropped_records, 0);

    let records = parse_file(&path);
    assert_eq!(stats.records, records.len() as u64);
    assert!(records.iter().all(|r| r.content.len() <= 24));
    for stream in ["stdout", "stderr"] {
        let expected: Vec<String> = (0..LINES)
            .map(|i| format!("{stream} {i} {}", "x".repeat((i as usize * 7) % 40)))
            .collect();
        assert_eq!(lines_of(&records, stream), expected, "{stream}");
    }
    // Both streams' records are mixed, not one stream after the other.
    let switches = records
        .windows(2)
        .filter(|w| w[0].stream != w[1].stream)
        .count();
    assert!(switches > 1, "streams were not interleaved");
    assert!(
        records.windows(2).all(|w| w[0].timestamp <= w[1].timestamp),
        "times go backwards"
    );
}

#[tokio::test]
async fn record_times_never_go_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    // A clock stepping back 1s on every call.
    let now = Arc::new(AtomicI64::new(1_000_000));
    let clock = {
        let now = Arc::clone(&now);
        move || UNIX_EPOCH + Duration::from_secs(now.fetch_sub(1, Ordering::SeqCst) as u64)
    };
    let writer = LogWriter::open(&path, LogOptions::default().clock(clock)).unwrap();
    let reads = Chunked::new(&[b"a\n", b"b\n", b"c\n"]);
    writer.attach(Stream::Stdout, reads).await.unwrap().unwrap();
    writer.close().await.unwrap();

    let records = parse_file(&path);
    assert_eq!(records.len(), 3);
    assert!(
        now.load(Ordering::SeqCst) < 1_000_000 - 2,
        "the clock was asked"
    );
    assert!(records.iter().all(|r| r.timestamp == records[0].timestamp));
}

/// Polls until the file holds `count` records (the reader may not have read the pipe yet).
async fn wait_for_records(writer: &LogWriter, path: &Path, count: usize) {
    loop {
        writer.flush().await.unwrap();
        let bytes = std::fs::read(path).unwrap();
        if bytes.iter().filter(|&&b| b == b'\n').count() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_after_rename_loses_nothing_while_output_flows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    let rotated = dir.path().join("0.log.20240102-030405");
    let writer = LogWriter::open(&path, LogOptions::default()).unwrap();
    let (mut tx, rx) = tokio::io::duplex(64);
    let reader = writer.attach(Stream::Stdout, rx);

    write_lines(&mut tx, 0..100).await;
    wait_for_records(&writer, &path, 100).await;

    // What the kubelet does: rename, then ReopenContainerLog, while the container writes on.
    std::fs::rename(&path, &rotated).unwrap();
    let producer = tokio::spawn(async move {
        write_lines(&mut tx, 100..2000).await;
        tx
    });
    writer.reopen().await.unwrap();
    let mut tx = producer.await.unwrap();
    write_lines(&mut tx, 2000..2100).await;
    drop(tx);
    reader.await.unwrap().unwrap();
    writer.close().await.unwrap();

    let old = lines_of(&parse_file(&rotated), "stdout");
    let new = lines_of(&parse_file(&path), "stdout");
    assert_eq!(old[..100], numbered(0..100)[..]);
    assert!(
        new.contains(&"line 2099".to_owned()),
        "the new file gets what follows"
    );
    let all: Vec<String> = old.into_iter().chain(new).collect();
    assert_eq!(all, numbered(0..2100));
}

#[tokio::test]
async fn a_failed_reopen_keeps_writing_to_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    let rotated = dir.path().join("0.log.1");
    let writer = LogWriter::open(&path, LogOptions::default()).unwrap();
    writer
        .attach(Stream::Stdout, &b"before\n"[..])
        .await
        .unwrap()
        .unwrap();

    std::fs::rename(&path, &rotated).unwrap();
    std::fs::create_dir(&path).unwrap(); // the path cannot be opened as a file
    let err = writer.reopen().await.unwrap_err();
    assert!(err.to_string().contains("reopening container log"), "{err}");
    assert!(err.to_string().contains("0.log"), "{err}");

    writer
        .attach(Stream::Stdout, &b"after\n"[..])
        .await
        .unwrap()
        .unwrap();
    let stats = writer.close().await.unwrap();
    assert_eq!(stats.dropped_records, 0);
    assert_eq!(
        lines_of(&parse_file(&rotated), "stdout"),
        ["before", "after"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_sink_drops_the_oldest_records_instead_of_blocking_the_reader() {
    const LINES: u32 = 20_000;
    let sink = MemorySink::default(); // shut: every write blocks until opened
    let options = LogOptions::default().buffer(16 * 1024);
    let writer = LogWriter::with_sink(sink.clone(), options).unwrap();
    let mut output = Vec::new();
    for i in 0..LINES {
        output.extend_from_slice(format!("line {i}\n").as_bytes());
    }
    let total_content = output.len() as u64 - u64::from(LINES);

    // The whole output is read while nothing can be written: the reader finishes.
    let read = writer.attach(Stream::Stdout, io::Cursor::new(output));
    read.await.unwrap().unwrap();
    let stats = writer.stats();
    assert!(stats.dropped_records > 0, "{stats:?}");
    assert_eq!(stats.records, 0);

    sink.set_gate(true);
    let stats = writer.close().await.unwrap();
    assert_eq!(stats.records + stats.dropped_records, u64::from(LINES));
    assert_eq!(stats.write_errors, 0);

    let records = parse(&sink.contents());
    let (markers, kept): (Vec<_>, Vec<_>) = records
        .iter()
        .partition(|r| r.content.starts_with(b"[cri-oci: dropped "));
    assert!(!markers.is_empty());
    assert!(
        markers
            .iter()
            .all(|m| m.stream == "stderr" && m.tag == Tag::Full)
    );
    // The markers account for every dropped record and byte.
    let (mut marked_bytes, mut marked_records) = (0, 0);
    for marker in &markers {
        let text = String::from_utf8(marker.content.clone()).unwrap();
        let words: Vec<&str> = text.split(' ').collect();
        marked_bytes += words[2].parse::<u64>().unwrap();
        marked_records += words[8].parse::<u64>().unwrap();
    }
    assert_eq!(marked_records, stats.dropped_records);
    assert_eq!(marked_bytes, stats.dropped_bytes);

    // What was kept is in order, whole, and ends with the newest output.
    let kept: Vec<u32> = kept
        .iter()
        .map(|r| {
            assert_eq!(r.tag, Tag::Full);
            let text = std::str::from_utf8(&r.content).unwrap();
            text.strip_prefix("line ").unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(kept.len() as u64, stats.records);
    assert!(kept.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(kept.last(), Some(&(LINES - 1)));
    let kept_content: u64 = records
        .iter()
        .filter(|r| !r.content.starts_with(b"[cri-oci"))
        .map(|r| r.content.len() as u64)
        .sum();
    assert_eq!(kept_content + stats.dropped_bytes, total_content);
}

#[tokio::test]
async fn records_a_write_could_not_take_are_reported_in_the_next_marker() {
    let sink = MemorySink::open();
    *sink.failures.lock().unwrap() = 1;
    let writer = LogWriter::with_sink(sink.clone(), LogOptions::default()).unwrap();
    writer
        .attach(Stream::Stdout, &b"lost\n"[..])
        .await
        .unwrap()
        .unwrap();
    writer.flush().await.unwrap();
    assert_eq!(writer.stats().write_errors, 1);

    writer
        .attach(Stream::Stdout, &b"kept\n"[..])
        .await
        .unwrap()
        .unwrap();
    let stats = writer.close().await.unwrap();
    assert_eq!(
        (stats.records, stats.dropped_records, stats.dropped_bytes),
        (1, 1, 4)
    );
    let records = parse(&sink.contents());
    assert_eq!(
        tagged(&records),
        pairs(&[
            (
                'F',
                "[cri-oci: dropped 4 bytes of container output in 1 records: the log writer fell behind]"
            ),
            ('F', "kept"),
        ])
    );
}

#[tokio::test]
async fn close_stops_readers_and_keeps_their_unfinished_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    let writer = LogWriter::open(&path, LogOptions::default()).unwrap();
    let (mut tx, rx) = tokio::io::duplex(64);
    let reader = writer.attach(Stream::Stdout, rx);
    tx.write_all(b"full\nhalf a li").await.unwrap();
    wait_for_records(&writer, &path, 1).await;

    let clone = writer.clone();
    writer.close().await.unwrap();
    // The container's end is still open, yet the reader has finished.
    assert_eq!(reader.await.unwrap().unwrap(), 14);
    assert_eq!(
        tagged(&parse_file(&path)),
        pairs(&[('F', "full"), ('P', "half a li")])
    );

    // Everything after close fails cleanly.
    assert!(
        clone
            .attach(Stream::Stderr, &b"x\n"[..])
            .await
            .unwrap()
            .is_err()
    );
    assert!(clone.flush().await.is_err());
    assert!(clone.reopen().await.is_err());
    assert_eq!(clone.clone().close().await.unwrap().records, 2);
    drop(tx);
}

#[tokio::test]
async fn dropping_every_handle_still_writes_everything() {
    let notify = Arc::new(tokio::sync::Notify::new());
    let mut sink = MemorySink::open();
    sink.dropped = Some(Arc::clone(&notify));
    let out = Arc::clone(&sink.out);
    let writer = LogWriter::with_sink(sink, LogOptions::default()).unwrap();
    let reader = writer.attach(Stream::Stderr, &b"one\ntwo\n"[..]);
    drop(writer);
    reader.await.unwrap().unwrap();
    // The writer task drops the sink once it has written everything.
    notify.notified().await;
    let records = parse(&out.lock().unwrap());
    assert_eq!(tagged(&records), pairs(&[('F', "one"), ('F', "two")]));
}

#[tokio::test]
async fn a_sink_that_cannot_reopen_says_so() {
    let writer = LogWriter::with_sink(MemorySink::open(), LogOptions::default()).unwrap();
    assert!(writer.path().is_none());
    let err = writer.reopen().await.unwrap_err();
    assert!(err.to_string().contains("cannot be reopened"), "{err}");
    writer.close().await.unwrap();
}

#[tokio::test]
async fn requests_racing_a_close_fail_instead_of_waiting_forever() {
    let sink = MemorySink::default(); // shut: the writer blocks on the first write
    let writer = LogWriter::with_sink(sink.clone(), LogOptions::default()).unwrap();
    writer
        .attach(Stream::Stdout, &b"x\n"[..])
        .await
        .unwrap()
        .unwrap();

    let other = writer.clone();
    let closing = tokio::spawn(writer.close());
    // Let the close queue its request behind the blocked write.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let flush = tokio::spawn(async move { other.flush().await });
    tokio::task::yield_now().await;
    sink.set_gate(true);

    let stats = closing.await.unwrap().unwrap();
    assert_eq!(stats.records, 1);
    let err = flush.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
}
