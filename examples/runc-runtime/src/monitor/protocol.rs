//! What the runtime and a container's monitor say to each other, and the files they share in
//! the container directory.
//!
//! | file | written by | what |
//! |---|---|---|
//! | `monitor.json` | runtime | [`MonitorConfig`]: how to create the container |
//! | `monitor.sock` | monitor | the control socket ([`Request`] → [`Reply`]) |
//! | `exit.json` | monitor (or the runtime, for a lost monitor) | [`ExitRecord`] |
//! | `init.pid` | runc | the container's init pid |
//! | `runc.log` | runc | runc's own log (JSON lines) |
//! | `monitor.log` | monitor | the monitor's diagnostics |
//!
//! The control socket speaks one JSON line per connection in each direction; after an
//! `attach` request is answered, the connection carries raw bytes (container output, or input
//! for the container).
//!
//! Container directories can sit deep enough that `<dir>/monitor.sock` exceeds the 108-byte
//! limit of a Unix socket address, so both sides name the socket through an open descriptor
//! of the directory: `/proc/self/fd/<n>/monitor.sock`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// `monitor.json`.
pub(crate) const CONFIG_FILE: &str = "monitor.json";
/// The control socket's file name.
pub(crate) const SOCKET_FILE: &str = "monitor.sock";
/// `exit.json`.
pub(crate) const EXIT_FILE: &str = "exit.json";
/// The pid file runc writes.
pub(crate) const PID_FILE: &str = "init.pid";
/// runc's log.
pub(crate) const RUNC_LOG_FILE: &str = "runc.log";
/// The monitor's own diagnostics (its stderr).
pub(crate) const MONITOR_LOG_FILE: &str = "monitor.log";

/// How the monitor creates and runs one container. Written by the runtime before it starts
/// the monitor.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct MonitorConfig {
    /// The container's id for runc.
    pub(crate) id: String,
    /// The runc binary.
    pub(crate) runc: PathBuf,
    /// runc's `--root`.
    pub(crate) runc_root: PathBuf,
    /// The bundle (holds `config.json`).
    pub(crate) bundle: PathBuf,
    /// The CRI log file; `None` discards output.
    pub(crate) log_path: Option<PathBuf>,
    /// A terminal instead of pipes.
    pub(crate) tty: bool,
    /// Keep the container's stdin open for attach.
    pub(crate) stdin: bool,
    /// Close the container's stdin when the first attached client closes it.
    pub(crate) stdin_once: bool,
}

/// How the container's init ended (`exit.json`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ExitRecord {
    /// Exit code; 128 + signal for a process killed by a signal.
    pub(crate) exit_code: i32,
    /// When the exit was seen, in nanoseconds since the epoch.
    pub(crate) finished_at: i64,
    /// `Completed`, `Error`, `OOMKilled` or `Unknown`.
    pub(crate) reason: String,
    /// Detail for humans (empty when there is nothing to say).
    #[serde(default)]
    pub(crate) message: String,
}

impl ExitRecord {
    /// The record of a container nobody saw exit: its monitor is gone and left no record.
    pub(crate) fn lost(message: impl Into<String>) -> Self {
        Self {
            exit_code: 255,
            finished_at: now_nanos(),
            reason: "Unknown".into(),
            message: message.into(),
        }
    }
}

/// The monitor's first and only line on its stdout: whether `runc create` worked.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Handshake {
    /// The container's init pid, when it was created.
    #[serde(default)]
    pub(crate) pid: Option<u32>,
    /// Why creation failed.
    #[serde(default)]
    pub(crate) error: Option<String>,
}

/// Which stream an attach connection carries.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AttachStream {
    /// Container output on stdout (everything, with a terminal).
    Stdout,
    /// Container output on stderr (never with a terminal).
    Stderr,
    /// Input for the container.
    Stdin,
}

/// A request on the control socket.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub(crate) enum Request {
    /// Answer once the container has exited, with its [`ExitRecord`].
    Wait,
    /// Reopen the log file (after the kubelet rotated it).
    ReopenLog,
    /// Set the terminal size.
    Resize {
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
    /// Turn this connection into one of the container's streams.
    Attach {
        /// Which one.
        stream: AttachStream,
    },
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Reply {
    /// Why the request failed; `None` on success.
    #[serde(default)]
    pub(crate) error: Option<String>,
    /// The exit, for [`Request::Wait`].
    #[serde(default)]
    pub(crate) exit: Option<ExitRecord>,
}

impl Reply {
    /// Success.
    pub(crate) fn ok() -> Self {
        Self::default()
    }

    /// Failure with a reason.
    pub(crate) fn error(message: impl Into<String>) -> Self {
        Self {
            error: Some(message.into()),
            exit: None,
        }
    }
}

/// Nanoseconds since the epoch, now.
pub(crate) fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A path naming `name` inside the directory open as `dir`, short enough for a socket address
/// whatever the directory's own path length (valid only in this process).
pub(crate) fn short_path(dir: &File, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

/// Reads `exit.json` of a container directory, if the container has exited.
pub(crate) fn read_exit(dir: &Path) -> Option<ExitRecord> {
    let text = std::fs::read(dir.join(EXIT_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Writes `value` as JSON to `path` atomically (temporary file, fsync, rename).
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    use std::io::Write;
    let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} has no file name", path.display())))?;
    let tmp = path.with_file_name(format!(".{}.tmp", file_name.to_string_lossy()));
    let mut file = File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Connects to the monitor of the container directory `dir`.
///
/// # Errors
///
/// `NotFound` or `ConnectionRefused` when no monitor is listening (it has exited or died).
pub(crate) async fn connect(dir: &Path) -> io::Result<UnixStream> {
    let handle = File::open(dir)?;
    let path = short_path(&handle, SOCKET_FILE);
    let stream = UnixStream::connect(&path).await;
    drop(handle);
    stream
}

/// Sends `request` on a fresh connection and reads the one-line reply. The connection is
/// returned too (for `attach`, which continues on it).
///
/// # Errors
///
/// When the monitor cannot be reached or closes the connection without answering.
pub(crate) async fn call(
    dir: &Path,
    request: &Request,
) -> io::Result<(Reply, BufReader<UnixStream>)> {
    let mut stream = BufReader::new(connect(dir).await?);
    let mut line = serde_json::to_vec(request).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.get_mut().write_all(&line).await?;
    let reply = read_line_json(&mut stream).await?;
    Ok((reply, stream))
}

/// Reads one JSON line (at most 1 MiB).
pub(crate) async fn read_line_json<T, R>(reader: &mut R) -> io::Result<T>
where
    T: for<'de> Deserialize<'de>,
    R: tokio::io::AsyncBufRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut line = Vec::new();
    let mut limited = reader.take(1 << 20);
    let n = limited.read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the monitor closed the connection without answering",
        ));
    }
    serde_json::from_slice(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_a_stable_wire_form() {
        let cases = [
            (Request::Wait, r#"{"op":"wait"}"#),
            (Request::ReopenLog, r#"{"op":"reopen-log"}"#),
            (
                Request::Resize {
                    width: 80,
                    height: 24,
                },
                r#"{"op":"resize","width":80,"height":24}"#,
            ),
            (
                Request::Attach {
                    stream: AttachStream::Stderr,
                },
                r#"{"op":"attach","stream":"stderr"}"#,
            ),
        ];
        for (request, wire) in cases {
            assert_eq!(serde_json::to_string(&request).unwrap(), wire);
            assert_eq!(serde_json::from_str::<Request>(wire).unwrap(), request);
        }
    }

    #[test]
    fn exit_records_round_trip_atomically() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_exit(dir.path()), None);
        let record = ExitRecord {
            exit_code: 137,
            finished_at: 42,
            reason: "OOMKilled".into(),
            message: String::new(),
        };
        write_json_atomic(&dir.path().join(EXIT_FILE), &record).unwrap();
        assert_eq!(read_exit(dir.path()), Some(record));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [EXIT_FILE], "no temporary file left behind");
    }

    #[test]
    fn short_paths_fit_a_socket_address() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("x".repeat(200));
        std::fs::create_dir(&deep).unwrap();
        let handle = File::open(&deep).unwrap();
        let path = short_path(&handle, SOCKET_FILE);
        assert!(path.as_os_str().len() < 40, "{}", path.display());
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(deep.join(SOCKET_FILE).exists());
        drop(listener);
    }

    #[test]
    fn a_lost_exit_is_unknown() {
        let lost = ExitRecord::lost("monitor died");
        assert_eq!((lost.exit_code, lost.reason.as_str()), (255, "Unknown"));
        assert!(lost.finished_at > 0);
    }
}
