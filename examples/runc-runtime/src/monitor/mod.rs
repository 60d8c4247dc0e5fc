//! The per-container monitor: `runc-runtime-monitor monitor <container-dir>` (or the same
//! code as `runc-runtime monitor <container-dir>`).
//!
//! One small process per container (and per pod's pause container), started by the runtime
//! and outliving it. It
//!
//! 1. detaches into its own session (`setsid`) and becomes a child subreaper, so that the
//!    container's init — whose parent, `runc create`, exits — is reparented to it;
//! 2. runs `runc create` with pipes for the container's stdio, or with `--console-socket`
//!    for a terminal (the pty master arrives over `SCM_RIGHTS`);
//! 3. answers the runtime on its stdout with the init pid or the error ([`Handshake`]);
//! 4. copies the container's output into the CRI log ([`cri_oci::log::LogWriter`]) and to
//!    attached clients, and serves the control socket (wait, reopen-log, resize, attach);
//! 5. reaps the init, records the exit atomically in `exit.json` (reason `OOMKilled` when
//!    the memory cgroup's OOM-kill counter moved, else `Completed` or `Error`), answers the
//!    waiters and exits.
//!
//! `runc start` is the runtime's business (StartContainer); so is `runc delete`.

pub(crate) mod console;
pub(crate) mod protocol;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cri_oci::log::{LogInput, LogOptions, LogWriter, Stream};
use rustix::process::{Pid, WaitOptions, WaitStatus};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};

use crate::cgroups::{Cgroups, memory_cgroup_of};
use crate::drain::{self, Reading, Watched};
use protocol::{
    AttachStream, ExitRecord, Handshake, MonitorConfig, Reply, Request, now_nanos, short_path,
};

/// How long the output may stay quiet but open after the init exited (processes that
/// inherited the container's stdio and outlived it) before the log is closed anyway.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Entry point of the `monitor` subcommand.
pub(crate) fn main(dir: PathBuf) -> ExitCode {
    // First act: leave the runtime's session and process group, so that signals aimed at
    // the runtime's terminal or group never reach the container's owner.
    let _ = rustix::process::setsid();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            handshake(Err(format!("starting the monitor's event loop: {e}")));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("monitor {}: {message}", dir.display());
            ExitCode::FAILURE
        }
    }
}

/// Writes the one handshake line to stdout (the runtime reads it).
fn handshake(result: Result<u32, String>) {
    let line = match result {
        Ok(pid) => Handshake {
            pid: Some(pid),
            error: None,
        },
        Err(error) => Handshake {
            pid: None,
            error: Some(error),
        },
    };
    let mut stdout = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut stdout, &line);
    let _ = stdout.write_all(b"\n");
    let _ = stdout.flush();
}

/// The container's stdio, as the monitor holds it.
enum Io {
    Pipes {
        stdin: Option<pipe::Sender>,
        stdout: pipe::Receiver,
        stderr: pipe::Receiver,
    },
    Tty {
        master: Arc<std::os::fd::OwnedFd>,
        reader: pipe::Receiver,
        writer: pipe::Sender,
    },
}

/// State shared by the control-socket handlers.
struct Shared {
    config: MonitorConfig,
    /// Output to attached clients.
    stdout: Arc<Fanout>,
    stderr: Arc<Fanout>,
    /// Input for the container; closed (dropped) when stdin_once ends.
    stdin: Mutex<Option<mpsc::Sender<Bytes>>>,
    /// The pty master, for resizes.
    master: Option<Arc<std::os::fd::OwnedFd>>,
    log: Option<LogWriter>,
    /// Set once the exit is recorded.
    exit: watch::Sender<Option<ExitRecord>>,
}

async fn run(dir: &Path) -> Result<(), String> {
    let config: MonitorConfig = std::fs::read(dir.join(protocol::CONFIG_FILE))
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
        .map_err(|e| {
            let message = format!("reading {}: {e}", protocol::CONFIG_FILE);
            handshake(Err(message.clone()));
            message
        })?;
    let created = create(&config, dir).await;
    let (pid, io, listener) = match created {
        Ok(created) => created,
        Err(message) => {
            handshake(Err(message.clone()));
            return Err(message);
        }
    };
    let memory_cgroup = memory_cgroup_of(pid);
    let cgroups = Cgroups::default();
    let oom_before = memory_cgroup
        .as_deref()
        .map_or(0, |path| cgroups.oom_kills(path));

    let log = match &config.log_path {
        Some(path) => match LogWriter::open(path.clone(), LogOptions::default()) {
            Ok(log) => Some(log),
            Err(e) => {
                eprintln!(
                    "opening the log {}: {e}; output is discarded",
                    path.display()
                );
                None
            }
        },
        None => None,
    };
    let (exit, _) = watch::channel(None);
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(64);
    let (stdout_tx, stderr_tx) = (Arc::new(Fanout::new()), Arc::new(Fanout::new()));
    let mut master = None;
    let mut pumps = Vec::new();
    match io {
        Io::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            pumps.push(Pump::spawn(
                stdout,
                log.as_ref().map(|l| l.input(Stream::Stdout)),
                stdout_tx.clone(),
            ));
            pumps.push(Pump::spawn(
                stderr,
                log.as_ref().map(|l| l.input(Stream::Stderr)),
                stderr_tx.clone(),
            ));
            if let Some(stdin) = stdin {
                tokio::spawn(feed_stdin(stdin_rx, stdin));
            }
        }
        Io::Tty {
            master: fd,
            reader,
            writer,
        } => {
            master = Some(fd);
            pumps.push(Pump::spawn(
                reader,
                log.as_ref().map(|l| l.input(Stream::Stdout)),
                stdout_tx.clone(),
            ));
            tokio::spawn(feed_stdin(stdin_rx, writer));
        }
    }
    let shared = Arc::new(Shared {
        stdout: stdout_tx,
        stderr: stderr_tx,
        stdin: Mutex::new(config.stdin.then_some(stdin_tx)),
        master,
        log,
        exit,
        config,
    });
    tokio::spawn(serve(listener, shared.clone()));
    handshake(Ok(pid));

    let status = reap(pid).await;

    // Let the output drain, then close the log so every byte read is on disk. Only waiting
    // for the container's side counts against the grace: attached clients may be slow.
    for mut pump in pumps {
        if !drain::finish(&mut pump.task, &pump.reading, DRAIN_GRACE).await {
            eprintln!(
                "output still open {DRAIN_GRACE:?} after the container exited and went quiet; \
                 closing"
            );
            break;
        }
    }
    for fanout in [&shared.stdout, &shared.stderr] {
        fanout.close();
    }
    if let Some(log) = &shared.log
        && let Err(e) = log.clone().close().await
    {
        eprintln!("closing the log: {e}");
    }

    let oom = memory_cgroup
        .as_deref()
        .is_some_and(|path| cgroups.oom_kills(path) > oom_before);
    let record = exit_record(status.map(ended), oom);
    protocol::write_json_atomic(&dir.join(protocol::EXIT_FILE), &record)
        .map_err(|e| format!("writing {}: {e}", protocol::EXIT_FILE))?;
    shared.exit.send_replace(Some(record));
    // Attached clients get what was queued for them before the process (and their
    // connections) go.
    for fanout in [&shared.stdout, &shared.stderr] {
        fanout.delivered_all().await;
    }
    // Give waiters a moment to receive their answer before the process (and socket) goes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = std::fs::remove_file(dir.join(protocol::SOCKET_FILE));
    Ok(())
}

/// How a process ended: `(exit code, terminating signal)`.
fn ended(status: WaitStatus) -> (Option<i32>, Option<i32>) {
    (status.exit_status(), status.terminating_signal())
}

/// What the exit means for CRI; `None` when the monitor could not see it.
fn exit_record(status: Option<(Option<i32>, Option<i32>)>, oom: bool) -> ExitRecord {
    let Some(status) = status else {
        return ExitRecord::lost("the container's init was not a child of its monitor");
    };
    let exit_code = match status {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 255,
    };
    let reason = if oom {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    ExitRecord {
        exit_code,
        finished_at: now_nanos(),
        reason: reason.into(),
        message: String::new(),
    }
}

/// Runs `runc create` and returns the init pid, the container's stdio and the bound control
/// socket.
async fn create(config: &MonitorConfig, dir: &Path) -> Result<(u32, Io, UnixListener), String> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .map_err(|e| format!("becoming a child subreaper: {e}"))?;
    let dir_handle = File::open(dir).map_err(|e| format!("opening {}: {e}", dir.display()))?;
    let socket = short_path(&dir_handle, protocol::SOCKET_FILE);
    let _ = std::fs::remove_file(&socket);
    let listener = std::os::unix::net::UnixListener::bind(&socket)
        .and_then(|l| {
            l.set_nonblocking(true)?;
            UnixListener::from_std(l)
        })
        .map_err(|e| format!("binding the control socket: {e}"))?;

    let mut command = std::process::Command::new(&config.runc);
    command
        .arg("--root")
        .arg(&config.runc_root)
        .arg("--log")
        .arg(dir.join(protocol::RUNC_LOG_FILE))
        .arg("--log-format")
        .arg("json")
        .arg("create")
        .arg("--bundle")
        .arg(&config.bundle)
        .arg("--pid-file")
        .arg(dir.join(protocol::PID_FILE));

    let io = if config.tty {
        let console = console::Listener::bind(&dir_handle)
            .map_err(|e| format!("binding the console socket: {e}"))?;
        command
            .arg("--console-socket")
            .arg(console.path_for_others())
            .arg(&config.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = command.spawn().map_err(|e| spawn_error(config, &e))?;
        drop(command);
        let master = console.receive_while(wait_runc(child, dir)).await?;
        console::into_io(master).map_err(|e| format!("using the pty master: {e}"))?
    } else {
        let (stdout_r, stdout_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
        let (stderr_r, stderr_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
        for pipe in [&stdout_r, &stderr_r] {
            // Best effort: the default size only costs throughput.
            let _ = rustix::pipe::fcntl_setpipe_size(pipe, OUTPUT_PIPE_SIZE);
        }
        let (stdin_r, stdin_w) = if config.stdin {
            let (r, w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
            (Stdio::from(r), Some(w))
        } else {
            (Stdio::null(), None)
        };
        command
            .arg(&config.id)
            .stdin(stdin_r)
            .stdout(stdout_w)
            .stderr(stderr_w);
        let child = command.spawn().map_err(|e| spawn_error(config, &e))?;
        // Our copies of the container's ends must go, or its output never ends.
        drop(command);
        let stderr = receiver(stderr_r.into()).map_err(|e| format!("pipe: {e}"))?;
        match wait_runc(child, dir).await {
            Ok(()) => {}
            Err(message) => {
                // runc reports a failed create on its stderr, which is the container's.
                let mut text = Vec::new();
                let mut stderr = stderr;
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    (&mut stderr).take(64 * 1024).read_to_end(&mut text),
                )
                .await;
                let text = String::from_utf8_lossy(&text).trim().to_string();
                return Err(if text.is_empty() { message } else { text });
            }
        }
        Io::Pipes {
            stdin: match stdin_w {
                Some(w) => Some(sender(w.into()).map_err(|e| format!("pipe: {e}"))?),
                None => None,
            },
            stdout: receiver(stdout_r.into()).map_err(|e| format!("pipe: {e}"))?,
            stderr,
        }
    };
    let pid = std::fs::read_to_string(dir.join(protocol::PID_FILE))
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        .ok_or_else(|| format!("runc wrote no readable {}", protocol::PID_FILE))?;
    Ok((pid, io, listener))
}

fn spawn_error(config: &MonitorConfig, e: &std::io::Error) -> String {
    format!("running {}: {e}", config.runc.display())
}

/// Waits for `runc create` to finish; its failure message comes from its log when it has one.
async fn wait_runc(mut child: std::process::Child, dir: &Path) -> Result<(), String> {
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .map_err(|e| format!("waiting for runc: {e}"))?
        .map_err(|e| format!("waiting for runc: {e}"))?;
    if status.success() {
        return Ok(());
    }
    let log = std::fs::read_to_string(dir.join(protocol::RUNC_LOG_FILE)).unwrap_or_default();
    let last_error = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["level"] == "error" || v["level"] == "fatal")
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .next_back();
    Err(last_error.unwrap_or_else(|| format!("runc create failed ({status})")))
}

/// A non-blocking tokio reader over a pipe's (or pty's) read end.
pub(crate) fn receiver(fd: std::os::fd::OwnedFd) -> std::io::Result<pipe::Receiver> {
    rustix::io::ioctl_fionbio(&fd, true)?;
    pipe::Receiver::from_owned_fd_unchecked(fd)
}

/// A non-blocking tokio writer over a pipe's (or pty's) write end.
pub(crate) fn sender(fd: std::os::fd::OwnedFd) -> std::io::Result<pipe::Sender> {
    rustix::io::ioctl_fionbio(&fd, true)?;
    pipe::Sender::from_owned_fd_unchecked(fd)
}

/// Reaps children until the init exits; `None` when the init turns out not to be ours.
async fn reap(init: u32) -> Option<WaitStatus> {
    let init = Pid::from_raw(i32::try_from(init).ok()?)?;
    let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok();
    loop {
        loop {
            // `wait` is waitpid(-1): any child, whatever its process group.
            match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some((pid, status))) if pid == init => return Some(status),
                Ok(Some(_)) => continue, // an orphan of the container, reaped
                Ok(None) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::CHILD) => {
                    // Not our child after all: watch /proc until it is gone.
                    while alive(init) {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    return None;
                }
                Err(_) => break,
            }
        }
        match sigchld.as_mut() {
            Some(signal) => {
                // The timeout covers a SIGCHLD that arrived before the handler existed.
                let _ = tokio::time::timeout(Duration::from_secs(1), signal.recv()).await;
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: Pid) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero()));
    // The state follows the command name, which is in parentheses and may hold spaces.
    stat.ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

/// Bytes the pump reads from the container at a time (and so the largest chunk it hands to
/// the log and to attached clients): fewer, larger chunks cost fewer wake-ups per byte.
const PUMP_READ: usize = 128 * 1024;

/// The size of the container's stdout and stderr pipes (Linux's default is 64 KiB): the
/// container writes on while the pump is busy with the last chunk.
const OUTPUT_PIPE_SIZE: usize = 1024 * 1024;

/// One output stream's copy into the log and to attached clients ([`pump`]), with what it is
/// waiting for.
struct Pump {
    task: tokio::task::JoinHandle<()>,
    reading: Arc<Reading>,
}

impl Pump {
    fn spawn<R>(from: R, log: Option<LogInput>, fanout: Arc<Fanout>) -> Pump
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let reading = Reading::new();
        let task = tokio::spawn(pump(Watched::new(from, &reading), log, fanout));
        Pump { task, reading }
    }
}

/// Copies one output stream into the log and to attached clients until it ends. Each read
/// lands in its own buffer, which the log splits from and the clients share: no copy.
async fn pump<R: AsyncRead + Unpin>(mut from: R, mut log: Option<LogInput>, fanout: Arc<Fanout>) {
    let mut buf = bytes::BytesMut::new();
    loop {
        buf.reserve(PUMP_READ);
        match from.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // A pty master reads EIO once the last slave is closed: the end.
            Err(_) => break,
        }
        let chunk = buf.split().freeze();
        if let Some(input) = log.as_mut()
            && !input.push(&chunk)
        {
            log = None;
        }
        fanout.send(chunk).await;
    }
    if let Some(input) = log {
        input.finish();
    }
}

/// Chunks queued for one attached client (at most [`PUMP_READ`] each: up to 2 MiB).
const ATTACH_QUEUE: usize = 16;

/// How long an attached client may take nothing before it is let go.
const ATTACH_STALL: Duration = Duration::from_secs(10);

/// One output stream's attached clients. Each gets every chunk, in order, from the moment it
/// attached: when a client's queue is full the pump waits for it, so the container's output
/// (and its log) goes at the pace of the slowest attached client, as under containerd. A
/// client that takes nothing for [`ATTACH_STALL`] is let go (its attach ends), so that a
/// stuck one cannot hold the container's output for good.
struct Fanout {
    /// `None` once the stream has ended.
    clients: Mutex<Option<Vec<mpsc::Sender<Bytes>>>>,
    /// [`ATTACH_STALL`], shorter in tests.
    stall: Duration,
    /// Clients still delivering their queue ([`Subscription`]s alive).
    active: AtomicUsize,
    /// Bytes delivered to clients so far.
    delivered: AtomicU64,
}

/// A client's queue of a [`Fanout`]; the fanout counts it as delivering until it is dropped.
struct Subscription {
    queue: mpsc::Receiver<Bytes>,
    fanout: Arc<Fanout>,
}

impl Subscription {
    /// Notes that `n` bytes reached the client.
    fn delivered(&self, n: usize) {
        self.fanout.delivered.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.fanout.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Fanout {
    fn new() -> Self {
        Fanout::with_stall(ATTACH_STALL)
    }

    fn with_stall(stall: Duration) -> Self {
        Fanout {
            clients: Mutex::new(Some(Vec::new())),
            stall,
            active: AtomicUsize::new(0),
            delivered: AtomicU64::new(0),
        }
    }

    /// A new client's queue, or `None` when the stream has ended.
    fn subscribe(self: &Arc<Self>) -> Option<Subscription> {
        let mut clients = lock(&self.clients);
        let (tx, rx) = mpsc::channel(ATTACH_QUEUE);
        clients.as_mut()?.push(tx);
        self.active.fetch_add(1, Ordering::AcqRel);
        Some(Subscription {
            queue: rx,
            fanout: self.clone(),
        })
    }

    /// After [`Fanout::close`]: waits until every client has been handed what was queued for
    /// it, for as long as they keep taking it (a client that takes nothing for the stall
    /// limit is given up on).
    async fn delivered_all(&self) {
        let mut seen = (self.delivered.load(Ordering::Relaxed), Instant::now());
        while self.active.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let delivered = self.delivered.load(Ordering::Relaxed);
            if delivered != seen.0 {
                seen = (delivered, Instant::now());
            } else if seen.1.elapsed() >= self.stall {
                eprintln!(
                    "an attached client took nothing for {:?}; leaving",
                    self.stall
                );
                return;
            }
        }
    }

    /// Hands `chunk` to every client, waiting for full queues (see [`Fanout`]).
    async fn send(&self, chunk: Bytes) {
        let clients = match lock(&self.clients).as_ref() {
            Some(clients) if !clients.is_empty() => clients.clone(),
            _ => return,
        };
        let mut gone = Vec::new();
        for client in clients {
            let delivered = match client.try_send(chunk.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(chunk)) => {
                    matches!(
                        tokio::time::timeout(self.stall, client.send(chunk)).await,
                        Ok(Ok(()))
                    )
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            };
            if !delivered {
                gone.push(client);
            }
        }
        if !gone.is_empty()
            && let Some(clients) = lock(&self.clients).as_mut()
        {
            clients.retain(|c| !gone.iter().any(|g| g.same_channel(c)));
        }
    }

    /// Ends the stream for every client (once they have taken what is queued).
    fn close(&self) {
        lock(&self.clients).take();
    }
}

/// Writes what attached clients send into the container's stdin until every sender is gone.
async fn feed_stdin<W: tokio::io::AsyncWrite + Unpin>(mut from: mpsc::Receiver<Bytes>, mut to: W) {
    while let Some(chunk) = from.recv().await {
        if to.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn serve(listener: UnixListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle(stream, shared.clone()));
            }
            Err(e) => {
                eprintln!("accepting on the control socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn reply(stream: &mut BufReader<UnixStream>, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.get_mut().write_all(&line).await
}

async fn handle(stream: UnixStream, shared: Arc<Shared>) {
    let mut stream = BufReader::new(stream);
    let request: Request = match protocol::read_line_json(&mut stream).await {
        Ok(request) => request,
        Err(e) => {
            let _ = reply(&mut stream, &Reply::error(format!("bad request: {e}"))).await;
            return;
        }
    };
    let _ = match request {
        Request::Wait => {
            let mut exit = shared.exit.subscribe();
            let record = match exit.wait_for(Option::is_some).await {
                Ok(record) => record.clone(),
                Err(_) => None,
            };
            reply(
                &mut stream,
                &Reply {
                    error: None,
                    exit: record,
                },
            )
            .await
        }
        Request::ReopenLog => {
            let exited = shared.exit.borrow().is_some();
            let answer = match (&shared.log, exited) {
                (_, true) => Reply::error("the container has exited"),
                (None, false) => Reply::error("the container has no log file"),
                (Some(log), false) => match log.reopen().await {
                    Ok(()) => Reply::ok(),
                    Err(e) => Reply::error(format!("reopening the log: {e}")),
                },
            };
            reply(&mut stream, &answer).await
        }
        Request::Resize { width, height } => {
            let answer = match &shared.master {
                None => Reply::error("the container has no terminal"),
                Some(master) => {
                    let size = rustix::termios::Winsize {
                        ws_row: height,
                        ws_col: width,
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    match rustix::termios::tcsetwinsize(master.as_ref(), size) {
                        Ok(()) => Reply::ok(),
                        Err(e) => Reply::error(format!("resizing the terminal: {e}")),
                    }
                }
            };
            reply(&mut stream, &answer).await
        }
        Request::Attach { stream: which } => attach(stream, which, &shared).await,
    };
}

async fn attach(
    mut stream: BufReader<UnixStream>,
    which: AttachStream,
    shared: &Shared,
) -> std::io::Result<()> {
    match which {
        AttachStream::Stdout | AttachStream::Stderr => {
            let fanout = if which == AttachStream::Stdout {
                &shared.stdout
            } else {
                &shared.stderr
            };
            let subscription = fanout.subscribe();
            reply(&mut stream, &Reply::ok()).await?;
            let mut stream = stream.into_inner();
            if let Some(mut output) = subscription {
                while let Some(chunk) = output.queue.recv().await {
                    stream.write_all(&chunk).await?;
                    output.delivered(chunk.len());
                }
            }
            stream.shutdown().await
        }
        AttachStream::Stdin => {
            let input = lock(&shared.stdin).clone();
            let Some(input) = input else {
                return reply(
                    &mut stream,
                    &Reply::error("the container has no open stdin"),
                )
                .await;
            };
            reply(&mut stream, &Reply::ok()).await?;
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                if input.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    break;
                }
            }
            if shared.config.stdin_once {
                // The first client to close stdin closes it for the container.
                lock(&shared.stdin).take();
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slow attached client gets every chunk, in order (the pump waits for it); a client
    /// that takes nothing is let go after the stall limit, and the others carry on.
    #[tokio::test]
    async fn attached_clients_get_everything_or_are_let_go() {
        let fanout = Arc::new(Fanout::with_stall(Duration::from_millis(300)));
        let mut slow = fanout.subscribe().unwrap();
        let mut stuck = fanout.subscribe().unwrap();
        assert_eq!(fanout.active.load(Ordering::Acquire), 2);
        let chunks = 4 * ATTACH_QUEUE;
        let sender = {
            let fanout = fanout.clone();
            tokio::spawn(async move {
                for i in 0..chunks {
                    fanout
                        .send(Bytes::from((i as u32).to_be_bytes().to_vec()))
                        .await;
                }
                fanout.close();
            })
        };
        let mut got = Vec::new();
        while let Some(chunk) = slow.queue.recv().await {
            got.push(u32::from_be_bytes(chunk[..].try_into().unwrap()) as usize);
            if got.len() % 16 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        sender.await.unwrap();
        assert_eq!(
            got,
            (0..chunks).collect::<Vec<_>>(),
            "every chunk, in order"
        );
        let mut kept = 0;
        while stuck.queue.recv().await.is_some() {
            kept += 1;
        }
        drop((slow, stuck));
        assert_eq!(
            fanout.active.load(Ordering::Acquire),
            0,
            "both done delivering"
        );
        assert_eq!(
            kept, ATTACH_QUEUE,
            "the stuck client keeps what was queued, then ends"
        );
        assert!(fanout.subscribe().is_none(), "no attach after the end");
    }

    #[test]
    fn exit_reasons() {
        let cases = [
            (Some((Some(0), None)), false, 0, "Completed"),
            (Some((Some(3), None)), false, 3, "Error"),
            (Some((None, Some(9))), true, 137, "OOMKilled"),
            (Some((None, Some(9))), false, 137, "Error"),
            (None, false, 255, "Unknown"),
        ];
        for (status, oom, code, reason) in cases {
            let record = exit_record(status, oom);
            assert_eq!(
                (record.exit_code, record.reason.as_str()),
                (code, reason),
                "{status:?} oom={oom}"
            );
        }
    }
}
