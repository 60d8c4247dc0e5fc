//! CRI container logs, both ends. Input: `[mode][chunk][output...]`.
//!
//! - Every line of the output, read as a log file, goes through `Record::parse` (the
//!   parser `cri logs` and the conformance suite read log files with).
//! - The output, as a container's stdout delivered in reads of `chunk` bytes, goes through
//!   `LogWriter` with `max_line` from `mode` (small, so lines are split) and CR handling
//!   from its top bit. Every record written must parse, carry at most `max_line` bytes, and
//!   the records joined as the kubelet joins them (`P` without, `F` with a newline) must
//!   give back exactly the output (with `\r\n` as `\n` unless CRs are kept).
#![no_main]

use std::io::{self, Write};
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use cri_api::log::Record;
use cri_oci::log::{LogOptions, LogSink, LogWriter, Stream};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::runtime::Runtime;

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
});

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl LogSink for Sink {}

/// Hands out `data` in reads of at most `chunk` bytes.
struct Chunked {
    data: Vec<u8>,
    at: usize,
    chunk: usize,
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self
            .chunk
            .min(buf.remaining())
            .min(self.data.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

fn expected(output: &[u8], keep_cr: bool) -> Vec<u8> {
    if keep_cr {
        return output.to_vec();
    }
    let mut out = Vec::with_capacity(output.len());
    let mut i = 0;
    while i < output.len() {
        if output[i] == b'\r' && output.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(output[i]);
        i += 1;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [mode, chunk, output @ ..] = data else {
        return;
    };
    for line in String::from_utf8_lossy(output).split('\n') {
        if let Ok(record) = Record::parse(line) {
            assert!(matches!(record.stream, "stdout" | "stderr"));
            assert!(!record.content.contains('\n'));
        }
    }

    let max_line = 1 + usize::from(mode & 0x3f);
    let keep_cr = mode & 0x80 != 0;
    let chunk = 1 + usize::from(*chunk);
    let sink = Sink::default();
    let options = LogOptions::default()
        .max_line(max_line)
        .keep_carriage_returns(keep_cr)
        .clock(|| SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let reader = Chunked {
        data: output.to_vec(),
        at: 0,
        chunk,
    };
    RUNTIME.block_on(async {
        let writer = LogWriter::with_sink(sink.clone(), options).expect("log writer");
        let read = writer.attach(Stream::Stdout, reader).await.expect("join");
        assert_eq!(read.expect("reading a slice"), output.len() as u64);
        writer.close().await.expect("close");
    });

    let written = sink.0.lock().unwrap().clone();
    assert!(
        written.is_empty() || written.ends_with(b"\n"),
        "unterminated record"
    );
    let mut joined = Vec::new();
    for line in written.split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let text = String::from_utf8_lossy(line);
        let record = Record::parse(&text)
            .unwrap_or_else(|e| panic!("written record {text:?} does not parse: {e}"));
        assert_eq!(record.stream, "stdout");
        let mut fields = line.splitn(4, |b| *b == b' ');
        let (_, _, tag) = (fields.next(), fields.next(), fields.next());
        let content = fields.next().unwrap_or_default();
        assert!(
            content.len() <= max_line,
            "record longer than max_line: {text:?}"
        );
        joined.extend_from_slice(content);
        if tag == Some(b"F") {
            joined.push(b'\n');
        }
    }
    assert_eq!(
        String::from_utf8_lossy(&joined),
        String::from_utf8_lossy(&expected(output, keep_cr)),
        "records do not join back to the output (max_line {max_line}, keep_cr {keep_cr})"
    );
    assert_eq!(joined, expected(output, keep_cr));
});
