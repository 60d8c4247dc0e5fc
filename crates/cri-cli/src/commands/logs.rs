//! `logs`: reads the CRI log file at the container's `log_path` (`--tail`, `--follow`,
//! `--timestamps`), joining partial records and sending stderr records to stderr.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cri_api::log::{Record, Tag};
use cri_api::v1::ContainerState;

use crate::cli::LogsArgs;
use crate::commands::{Ctx, container_id};
use crate::error::{CliError, Result};

/// How often `--follow` looks for new records.
const POLL: Duration = Duration::from_millis(100);
/// How many idle polls pass between two checks whether the container still runs.
const POLLS_PER_STATUS_CHECK: u32 = 5;

/// Which stream a line belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of the container's output: its records joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Line {
    /// The stream it was written to.
    pub(crate) stream: Stream,
    /// The timestamp of its first record.
    pub(crate) timestamp: String,
    /// The text, without a newline.
    pub(crate) content: String,
    /// Whether it ended with a full record (and so with a newline).
    pub(crate) complete: bool,
}

/// Joins partial (`P`) records with the records that follow them on the same stream.
#[derive(Debug, Default)]
pub(crate) struct Joiner {
    pending: [Option<Line>; 2],
}

impl Joiner {
    /// Takes one record; returns the line it completes, if any.
    pub(crate) fn push(&mut self, record: &Record<'_>) -> Option<Line> {
        let stream = if record.stream == cri_api::well_known::log::STDERR {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        let slot = &mut self.pending[stream as usize];
        let line = slot.get_or_insert_with(|| Line {
            stream,
            timestamp: record.timestamp.to_string(),
            content: String::new(),
            complete: false,
        });
        line.content.push_str(record.content);
        match record.tag {
            Tag::Partial => None,
            Tag::Full => {
                let mut line = slot.take()?;
                line.complete = true;
                Some(line)
            }
        }
    }

    /// The partial lines still waiting for their end, oldest first.
    pub(crate) fn take_pending(&mut self) -> Vec<Line> {
        let mut lines: Vec<Line> = self.pending.iter_mut().filter_map(Option::take).collect();
        lines.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
        lines
    }
}

/// A log file read incrementally, reopened when the runtime rotates it.
#[derive(Debug)]
struct LogFile {
    path: PathBuf,
    file: Option<File>,
    inode: u64,
    offset: u64,
    /// Bytes of a line whose newline has not been written yet.
    unfinished: Vec<u8>,
    joiner: Joiner,
}

impl LogFile {
    fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            file: None,
            inode: 0,
            offset: 0,
            unfinished: Vec::new(),
            joiner: Joiner::default(),
        }
    }

    /// Opens the file when it exists (a container that printed nothing may have none yet).
    fn open(&mut self) -> Result<bool> {
        match File::open(&self.path) {
            Ok(file) => {
                self.inode = file.metadata()?.ino();
                self.file = Some(file);
                self.offset = 0;
                self.unfinished.clear();
                Ok(true)
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(CliError::msg(format!(
                "cannot open log file {}: {err}",
                self.path.display()
            ))),
        }
    }

    /// Whether the file at the path is no longer the one open (rotated) or shrank.
    fn replaced(&self) -> bool {
        match std::fs::metadata(&self.path) {
            Ok(metadata) => metadata.ino() != self.inode || metadata.len() < self.offset,
            Err(_) => false,
        }
    }

    /// The lines completed since the last read.
    fn read_new(&mut self) -> Result<Vec<Line>> {
        if self.file.is_none() && !self.open()? {
            return Ok(Vec::new());
        }
        let mut lines = self.read_open()?;
        if self.replaced() {
            // Finish the old file, then start the new one from its beginning.
            if self.open()? {
                lines.extend(self.read_open()?);
            }
        }
        Ok(lines)
    }

    fn read_open(&mut self) -> Result<Vec<Line>> {
        let Some(file) = self.file.as_mut() else {
            return Ok(Vec::new());
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut data = Vec::new();
        let read = file.read_to_end(&mut data)?;
        self.offset += read as u64;
        self.unfinished.extend_from_slice(&data);
        let Some(end) = self.unfinished.iter().rposition(|b| *b == b'\n') else {
            return Ok(Vec::new());
        };
        let complete: Vec<u8> = self.unfinished.drain(..=end).collect();
        let text = String::from_utf8_lossy(&complete);
        let mut lines = Vec::new();
        for raw in text.split_terminator('\n') {
            match Record::parse(raw) {
                Ok(record) => lines.extend(self.joiner.push(&record)),
                Err(err) => tracing::warn!(line = raw, %err, "skipping a malformed log line"),
            }
        }
        Ok(lines)
    }
}

fn write_line(ctx: &mut Ctx<'_>, line: &Line, timestamps: bool) -> Result<()> {
    let out: &mut dyn Write = match line.stream {
        Stream::Stdout => &mut *ctx.out,
        Stream::Stderr => &mut *ctx.err,
    };
    if timestamps {
        write!(out, "{} ", line.timestamp)?;
    }
    out.write_all(line.content.as_bytes())?;
    if line.complete {
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn write_lines(ctx: &mut Ctx<'_>, lines: &[Line], timestamps: bool) -> Result<()> {
    for line in lines {
        write_line(ctx, line, timestamps)?;
    }
    ctx.out.flush()?;
    ctx.err.flush()?;
    Ok(())
}

/// `logs`.
pub(crate) async fn logs(ctx: &mut Ctx<'_>, args: LogsArgs) -> Result<i32> {
    let id = container_id(&ctx.client, &args.container).await?;
    let status = ctx
        .client
        .container_status(id.clone(), false)
        .await?
        .status
        .unwrap_or_default();
    if status.log_path.is_empty() {
        return Err(CliError::msg(format!(
            "container {id} has no log file (its pod config sets no log_directory or its \
             config no log_path)"
        )));
    }
    let mut file = LogFile::new(Path::new(&status.log_path));
    let mut lines = file.read_new()?;
    if !args.follow {
        lines.extend(file.joiner.take_pending());
    }
    if let Ok(tail) = usize::try_from(args.tail) {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    write_lines(ctx, &lines, args.timestamps)?;
    if !args.follow {
        return Ok(0);
    }

    let mut idle_polls = 0;
    loop {
        tokio::time::sleep(POLL).await;
        let lines = file.read_new()?;
        if !lines.is_empty() {
            idle_polls = 0;
            write_lines(ctx, &lines, args.timestamps)?;
            continue;
        }
        idle_polls += 1;
        if idle_polls < POLLS_PER_STATUS_CHECK {
            continue;
        }
        idle_polls = 0;
        let running = match ctx.client.container_status(id.clone(), false).await {
            Ok(response) => response
                .status
                .is_some_and(|s| s.state() == ContainerState::ContainerRunning),
            Err(err) if err.is_not_found() => false,
            Err(err) => return Err(err.into()),
        };
        if !running {
            let mut lines = file.read_new()?;
            lines.extend(file.joiner.take_pending());
            write_lines(ctx, &lines, args.timestamps)?;
            return Ok(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use cri_api::log::format_record;

    use super::*;

    fn join(records: &[(&str, Tag, &str)]) -> (Vec<Line>, Vec<Line>) {
        let mut joiner = Joiner::default();
        let mut lines = Vec::new();
        for (i, (stream, tag, content)) in records.iter().enumerate() {
            let text = format_record(i as i64 + 1, stream, *tag, content);
            lines.extend(joiner.push(&Record::parse(&text).unwrap()));
        }
        (lines, joiner.take_pending())
    }

    #[test]
    fn partial_records_join_the_next_one() {
        let (lines, pending) = join(&[
            ("stdout", Tag::Partial, "hel"),
            ("stdout", Tag::Partial, "lo "),
            ("stdout", Tag::Full, "world"),
            ("stdout", Tag::Full, "second"),
        ]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].content, "hello world");
        assert!(lines[0].complete);
        assert_eq!(
            lines[0].timestamp, "1970-01-01T00:00:00.000000001Z",
            "first record's"
        );
        assert_eq!(lines[1].content, "second");
        assert!(pending.is_empty());
    }

    #[test]
    fn streams_join_separately_and_trailing_partials_stay_pending() {
        let (lines, pending) = join(&[
            ("stdout", Tag::Partial, "out-"),
            ("stderr", Tag::Full, "err"),
            ("stdout", Tag::Full, "line"),
            ("stderr", Tag::Partial, "no end"),
        ]);
        assert_eq!(lines[0].stream, Stream::Stderr);
        assert_eq!(lines[0].content, "err");
        assert_eq!(lines[1].content, "out-line");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].content, "no end");
        assert!(!pending[0].complete);
    }

    #[test]
    fn the_file_is_read_incrementally_and_reopened_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut file = LogFile::new(&path);
        assert!(file.read_new().unwrap().is_empty(), "no file yet");
        let record = |n, text| format_record(n, "stdout", Tag::Full, text);
        std::fs::write(&path, format!("{}{}", record(1, "a"), "garbage\n")).unwrap();
        let lines = file.read_new().unwrap();
        assert_eq!(lines.len(), 1, "the malformed line is skipped");
        let mut handle = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let second = record(2, "b");
        handle.write_all(&second.as_bytes()[..10]).unwrap();
        assert!(file.read_new().unwrap().is_empty(), "half a line waits");
        handle.write_all(&second.as_bytes()[10..]).unwrap();
        assert_eq!(file.read_new().unwrap()[0].content, "b");
        // Rotation: the file is renamed away and a new one starts.
        std::fs::rename(&path, dir.path().join("c.log.1")).unwrap();
        std::fs::write(&path, record(3, "c")).unwrap();
        let lines = file.read_new().unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].content, "c");
    }
}
