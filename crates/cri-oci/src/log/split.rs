//! Turning one stream's bytes into CRI records: line splitting and record formatting.
//!
//! Nothing here does I/O or takes locks; the reader task feeds each chunk it reads through a
//! [`LineSplitter`] into a [`ChunkBuilder`] and queues the chunks that come out.

use cri_api::log::{Tag, format_record};

use super::Stream;

/// Formatted records are grouped into chunks of about this many bytes: the unit the queue
/// drops when it is full and the writer writes in one call.
pub(super) const CHUNK_TARGET: usize = 8 * 1024;

/// Splits the bytes of one stream into lines and lines into records of at most `max_line`
/// content bytes.
///
/// A line that ends in `\n` becomes one `F` record, or `P` records of exactly `max_line` bytes
/// followed by an `F` record with the rest. Bytes without their newline wait in the splitter
/// until the newline arrives, the line outgrows `max_line` (a `P` record is written) or the
/// stream ends ([`LineSplitter::finish`]).
#[derive(Debug)]
pub(super) struct LineSplitter {
    max_line: usize,
    strip_cr: bool,
    /// The start of the current line: never more than `max_line` bytes between calls, or
    /// `max_line + 1` when the last is a `\r` that a newline in the next read would strip.
    pending: Vec<u8>,
}

impl LineSplitter {
    /// A splitter for lines of at most `max_line` (at least 1) bytes; `strip_cr` drops the `\r`
    /// of a `\r\n` line end.
    pub(super) fn new(max_line: usize, strip_cr: bool) -> Self {
        Self {
            max_line: max_line.max(1),
            strip_cr,
            pending: Vec::new(),
        }
    }

    /// Feeds the next bytes read, calling `emit` for every record they complete, in order.
    pub(super) fn push(&mut self, mut chunk: &[u8], emit: &mut impl FnMut(Tag, &[u8])) {
        while let Some(end) = memchr::memchr(b'\n', chunk) {
            let segment = &chunk[..end];
            chunk = &chunk[end + 1..];
            if self.pending.is_empty() {
                // The common case: a whole line inside one read, formatted straight from it.
                let line = if self.strip_cr {
                    segment.strip_suffix(b"\r").unwrap_or(segment)
                } else {
                    segment
                };
                split_line(line, self.max_line, emit);
            } else {
                self.pending.extend_from_slice(segment);
                if self.strip_cr && self.pending.last() == Some(&b'\r') {
                    self.pending.pop();
                }
                split_line(&self.pending, self.max_line, emit);
                self.pending.clear();
            }
        }
        if chunk.is_empty() {
            return;
        }
        // A `\r` at the end of the read may be half of a `\r\n` whose `\n` comes next: it
        // does not count against `max_line` yet, so that where the reads are cut does not
        // change the records (`abcd\r` + `\n` gives `F abcd` with `max_line` 4, as
        // `abcd\r\n` does, not `P abcd` and an empty `F`).
        let limit = self.max_line + usize::from(self.strip_cr && chunk.last() == Some(&b'\r'));
        if self.pending.is_empty() {
            // Output without newlines: whole `max_line` pieces go straight from the read
            // (same records as through `pending` below, one copy less).
            while chunk.len() > limit {
                emit(Tag::Partial, &chunk[..self.max_line]);
                chunk = &chunk[self.max_line..];
            }
        }
        self.pending.extend_from_slice(chunk);
        // Only split once the line is known to be longer than `max_line`: a line of exactly
        // `max_line` bytes whose newline is still to come stays one `F` record.
        let mut start = 0;
        while self.pending.len() - start > limit {
            emit(Tag::Partial, &self.pending[start..start + self.max_line]);
            start += self.max_line;
        }
        self.pending.drain(..start);
    }

    /// The stream ended: what is left of an unterminated last line becomes a `P` record.
    ///
    /// `P`, not `F`, because the container did not end the line: the kubelet joins a `P`
    /// record's content without adding a newline, so `kubectl logs` shows exactly the bytes
    /// the container wrote. containerd does the same.
    pub(super) fn finish(&mut self, emit: &mut impl FnMut(Tag, &[u8])) {
        // At most `max_line + 1` bytes: a trailing `\r` may be one more record.
        for piece in self.pending.chunks(self.max_line) {
            emit(Tag::Partial, piece);
        }
        self.pending.clear();
    }

    /// Bytes waiting for their newline.
    #[cfg(test)]
    fn pending(&self) -> &[u8] {
        &self.pending
    }
}

/// Emits one complete line as `P` records of `max_line` bytes and a final `F` record.
fn split_line(mut line: &[u8], max_line: usize, emit: &mut impl FnMut(Tag, &[u8])) {
    while line.len() > max_line {
        emit(Tag::Partial, &line[..max_line]);
        line = &line[max_line..];
    }
    emit(Tag::Full, line);
}

/// A run of formatted records from one stream and one read, as it sits in the queue.
#[derive(Debug, Default)]
pub(super) struct Chunk {
    /// Whole records, each ending in `\n`.
    pub(super) bytes: Vec<u8>,
    /// How many records `bytes` holds.
    pub(super) records: u64,
    /// Container output bytes in those records (content only, no headers or newlines).
    pub(super) content: u64,
    /// The time every record of the chunk carries, in nanoseconds since the Unix epoch.
    pub(super) unix_nanos: i64,
    /// Length of every record's header (`<time> <stream> <tag> `); all records of a chunk share
    /// one time and stream, and `F`/`P` are the same length.
    pub(super) header_len: usize,
}

impl Chunk {
    /// Records and content bytes in the first `written` bytes that made it out whole, for a
    /// write that failed part way.
    pub(super) fn written_prefix(&self, written: usize) -> (u64, u64) {
        let prefix = &self.bytes[..written.min(self.bytes.len())];
        let Some(last_newline) = prefix.iter().rposition(|&b| b == b'\n') else {
            return (0, 0);
        };
        let whole = &prefix[..=last_newline];
        let records = whole.iter().filter(|&&b| b == b'\n').count();
        let overhead = records * (self.header_len + 1);
        (records as u64, whole.len().saturating_sub(overhead) as u64)
    }
}

/// Formats the records of one read (one timestamp, one stream) into [`Chunk`]s of about
/// [`CHUNK_TARGET`] bytes.
#[derive(Debug)]
pub(super) struct ChunkBuilder {
    full: Vec<u8>,
    partial: Vec<u8>,
    current: Chunk,
    done: Vec<Chunk>,
}

impl ChunkBuilder {
    /// A builder stamping records with `unix_nanos` on `stream`.
    pub(super) fn new(unix_nanos: i64, stream: Stream) -> Self {
        let full = header(unix_nanos, stream, Tag::Full);
        let partial = header(unix_nanos, stream, Tag::Partial);
        let current = Chunk {
            unix_nanos,
            header_len: full.len(),
            ..Chunk::default()
        };
        Self {
            full,
            partial,
            current,
            done: Vec::new(),
        }
    }

    /// Appends one record.
    pub(super) fn record(&mut self, tag: Tag, content: &[u8]) {
        let header = match tag {
            Tag::Full => &self.full,
            Tag::Partial => &self.partial,
        };
        let chunk = &mut self.current;
        chunk.bytes.reserve(header.len() + content.len() + 1);
        chunk.bytes.extend_from_slice(header);
        chunk.bytes.extend_from_slice(content);
        chunk.bytes.push(b'\n');
        chunk.records += 1;
        chunk.content += content.len() as u64;
        if chunk.bytes.len() >= CHUNK_TARGET {
            let next = Chunk {
                unix_nanos: chunk.unix_nanos,
                header_len: chunk.header_len,
                ..Chunk::default()
            };
            self.done.push(std::mem::replace(chunk, next));
        }
    }

    /// The chunks built, in order; none when no record was appended.
    pub(super) fn finish(mut self) -> Vec<Chunk> {
        if self.current.records > 0 {
            self.done.push(self.current);
        }
        self.done
    }
}

/// `<time> <stream> <tag> ` for a record, from the one formatter in `cri_api::log`: the record
/// with empty content, less its newline.
fn header(unix_nanos: i64, stream: Stream, tag: Tag) -> Vec<u8> {
    let mut header = format_record(unix_nanos, stream.as_str(), tag, "").into_bytes();
    header.pop();
    header
}

/// One record formatted on its own (used for the dropped-output marker).
pub(super) fn single_record(unix_nanos: i64, stream: Stream, tag: Tag, content: &[u8]) -> Chunk {
    let mut builder = ChunkBuilder::new(unix_nanos, stream);
    builder.record(tag, content);
    builder.finish().pop().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max_line: usize, strip_cr: bool, chunks: &[&[u8]]) -> Vec<(char, String)> {
        let mut splitter = LineSplitter::new(max_line, strip_cr);
        let mut out = Vec::new();
        let mut emit = |tag: Tag, content: &[u8]| {
            let tag = if tag == Tag::Full { 'F' } else { 'P' };
            out.push((tag, String::from_utf8_lossy(content).into_owned()));
        };
        for chunk in chunks {
            splitter.push(chunk, &mut emit);
        }
        splitter.finish(&mut emit);
        out
    }

    fn records(expected: &[(char, &str)]) -> Vec<(char, String)> {
        expected.iter().map(|&(t, c)| (t, c.to_owned())).collect()
    }

    #[test]
    fn whole_lines_become_full_records() {
        assert_eq!(
            split(16, true, &[b"a\nbb\n\nccc\n"]),
            records(&[('F', "a"), ('F', "bb"), ('F', ""), ('F', "ccc")])
        );
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        assert_eq!(
            split(16, true, &[b"hel", b"lo\nwo", b"r", b"ld\n"]),
            records(&[('F', "hello"), ('F', "world")])
        );
    }

    #[test]
    fn long_lines_become_partial_records_of_max_line() {
        assert_eq!(
            split(4, true, &[b"0123456789\n"]),
            records(&[('P', "0123"), ('P', "4567"), ('F', "89")])
        );
        // Exactly max_line: one full record, also when the newline comes in a later read.
        assert_eq!(split(4, true, &[b"0123\n"]), records(&[('F', "0123")]));
        assert_eq!(split(4, true, &[b"0123", b"\n"]), records(&[('F', "0123")]));
        // A multiple of max_line never ends in an empty F record.
        assert_eq!(
            split(4, true, &[b"01234567\n"]),
            records(&[('P', "0123"), ('F', "4567")])
        );
        // Split while the line is still arriving.
        assert_eq!(
            split(4, true, &[b"012", b"3456", b"789", b"\n"]),
            records(&[('P', "0123"), ('P', "4567"), ('F', "89")])
        );
    }

    #[test]
    fn pending_never_exceeds_max_line() {
        let mut splitter = LineSplitter::new(4, true);
        let mut count = 0;
        splitter.push(b"0123456789abc", &mut |_, _| count += 1);
        assert_eq!(count, 3);
        assert_eq!(splitter.pending(), b"c");
    }

    /// Records do not depend on how the output was cut into reads: large reads (which take
    /// the direct path for long lines) give what one byte at a time gives, with `\r` stripped
    /// or kept.
    #[test]
    fn records_do_not_depend_on_read_sizes() {
        let mut seed = 0x2545_f491_u32;
        let mut next = move |below: u32| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed % below
        };
        for _ in 0..200 {
            let len = next(200) as usize;
            let output: Vec<u8> = (0..len)
                .map(|_| match next(10) {
                    0 => b'\n',
                    1 => b'\r',
                    _ => b'x',
                })
                .collect();
            let max_line = 1 + next(12) as usize;
            let strip_cr = next(2) == 0;
            let bytes: Vec<&[u8]> = output.chunks(1).collect();
            let mut reads = Vec::new();
            let mut rest = &output[..];
            while !rest.is_empty() {
                let cut = (1 + next(60) as usize).min(rest.len());
                reads.push(&rest[..cut]);
                rest = &rest[cut..];
            }
            assert_eq!(
                split(max_line, strip_cr, &reads),
                split(max_line, strip_cr, &bytes),
                "{output:?} max_line {max_line}"
            );
        }
    }

    #[test]
    fn the_last_unterminated_line_is_partial() {
        assert_eq!(
            split(16, true, &[b"a\nb"]),
            records(&[('F', "a"), ('P', "b")])
        );
        assert_eq!(split(16, true, &[]), records(&[]));
        assert_eq!(split(16, true, &[b""]), records(&[]));
    }

    #[test]
    fn carriage_returns_before_newlines_are_stripped_or_kept() {
        assert_eq!(
            split(16, true, &[b"a\r\nb\r", b"\nc\rd\n\r"]),
            records(&[('F', "a"), ('F', "b"), ('F', "c\rd"), ('P', "\r")])
        );
        assert_eq!(
            split(16, false, &[b"a\r\nb\r", b"\n"]),
            records(&[('F', "a\r"), ('F', "b\r")])
        );
        // A line of exactly max_line whose \r\n a read cuts in two is still one F record,
        // as when the \r\n arrives whole.
        assert_eq!(split(2, true, &[b"ab\r", b"\n"]), records(&[('F', "ab")]));
        assert_eq!(split(2, true, &[b"ab\r\n"]), records(&[('F', "ab")]));
        assert_eq!(
            split(2, true, &[b"a", b"b\r", b"\n"]),
            records(&[('F', "ab")])
        );
        assert_eq!(
            split(2, true, &[b"abcd\r", b"\n"]),
            records(&[('P', "ab"), ('F', "cd")])
        );
        // A \r that turns out to be content is split as content.
        assert_eq!(
            split(2, true, &[b"ab\r", b"x\n"]),
            records(&[('P', "ab"), ('F', "\rx")])
        );
        assert_eq!(
            split(2, true, &[b"ab\r"]),
            records(&[('P', "ab"), ('P', "\r")])
        );
        // Kept \r counts as content at once.
        assert_eq!(
            split(2, false, &[b"ab\r", b"\n"]),
            records(&[('P', "ab"), ('F', "\r")])
        );
    }

    #[test]
    fn chunks_carry_counts_and_formatted_records() {
        let mut builder = ChunkBuilder::new(1_704_164_645_123_456_789, Stream::Stderr);
        builder.record(Tag::Partial, b"par");
        builder.record(Tag::Full, b"t\xff");
        let chunks = builder.finish();
        assert_eq!(chunks.len(), 1);
        let chunk = &chunks[0];
        assert_eq!(
            chunk.bytes,
            b"2024-01-02T03:04:05.123456789Z stderr P par\n\
              2024-01-02T03:04:05.123456789Z stderr F t\xff\n"
        );
        assert_eq!((chunk.records, chunk.content), (2, 5));
        assert_eq!(chunk.written_prefix(chunk.bytes.len()), (2, 5));
        assert_eq!(chunk.written_prefix(chunk.header_len + 4), (1, 3));
        assert_eq!(chunk.written_prefix(chunk.header_len + 3), (0, 0));
    }

    #[test]
    fn chunks_are_cut_near_the_target_size() {
        let mut builder = ChunkBuilder::new(0, Stream::Stdout);
        let line = [b'x'; 1000];
        for _ in 0..20 {
            builder.record(Tag::Full, &line);
        }
        let chunks = builder.finish();
        assert!(chunks.len() > 1);
        assert_eq!(chunks.iter().map(|c| c.records).sum::<u64>(), 20);
        assert!(chunks.iter().all(|c| c.bytes.len() < CHUNK_TARGET + 1100));
        assert!(ChunkBuilder::new(0, Stream::Stdout).finish().is_empty());
    }
}
