//! Streaming sessions: `Exec`, `Attach` and `PortForward`, each run over SPDY/3.1 and over
//! WebSocket through the runtime's streaming server (one case per transport).
//!
//! Every wait is bounded, so a session that hangs fails its case instead of the suite.

use std::time::Duration;

use cri_client::cri_api::v1::*;
use cri_client::streaming::{PortForward, Reader, Streams, Transport, Writer};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;

use super::case;
use crate::conformance::ctx::{check, expect_eq, skip};
use crate::conformance::{Case, Ctx, Failure, Stop};

/// The longest a whole session may take once its output is in.
const SESSION: Duration = Duration::from_secs(20);
/// The longest the case waits for an expected piece of output.
const OUTPUT: Duration = Duration::from_secs(10);

/// Declares the SPDY and WebSocket variants of a case body `fn(Ctx, Transport)`.
macro_rules! both {
    ($spdy:ident, $websocket:ident, $body:ident) => {
        async fn $spdy(ctx: Ctx) -> Result<(), Stop> {
            $body(ctx, Transport::Spdy).await
        }
        async fn $websocket(ctx: Ctx) -> Result<(), Stop> {
            $body(ctx, Transport::WebSocket).await
        }
    };
}

both!(stdout_stderr_spdy, stdout_stderr_websocket, stdout_stderr);
both!(exit_code_spdy, exit_code_websocket, exit_code);
both!(stdin_spdy, stdin_websocket, stdin);
both!(tty_spdy, tty_websocket, tty);
both!(attach_spdy, attach_websocket, attach);
both!(port_forward_spdy, port_forward_websocket, port_forward);

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "exec",
            "stdout-stderr-spdy",
            "Exec over SPDY without a tty keeps stdout and stderr apart",
            stdout_stderr_spdy
        ),
        case!(
            "exec",
            "stdout-stderr-websocket",
            "Exec over WebSocket without a tty keeps stdout and stderr apart",
            stdout_stderr_websocket
        ),
        case!(
            "exec",
            "exit-code-spdy",
            "Exec over SPDY reports a failing command's exit code",
            exit_code_spdy
        ),
        case!(
            "exec",
            "exit-code-websocket",
            "Exec over WebSocket reports a failing command's exit code",
            exit_code_websocket
        ),
        case!(
            "exec",
            "stdin-spdy",
            "Exec over SPDY: stdin piped into cat comes back; closing stdin ends cat",
            stdin_spdy
        ),
        case!(
            "exec",
            "stdin-websocket",
            "Exec over WebSocket: stdin piped into cat comes back; closing stdin ends cat",
            stdin_websocket
        ),
        case!(
            "exec",
            "tty-spdy",
            "Exec over SPDY with a tty: output arrives with stderr merged into it",
            tty_spdy
        ),
        case!(
            "exec",
            "tty-websocket",
            "Exec over WebSocket with a tty: output arrives with stderr merged into it",
            tty_websocket
        ),
        case!(
            "exec",
            "attach-spdy",
            "Attach over SPDY to a container echoing its stdin; stdin_once=false keeps it open for a second attach",
            attach_spdy
        ),
        case!(
            "exec",
            "attach-websocket",
            "Attach over WebSocket to a container echoing its stdin; stdin_once=false keeps it open for a second attach",
            attach_websocket
        ),
        case!(
            "exec",
            "port-forward-spdy",
            "PortForward over SPDY reaches a TCP echo server in the pod, twice in one session",
            port_forward_spdy
        ),
        case!(
            "exec",
            "port-forward-websocket",
            "PortForward over WebSocket reaches a TCP echo server in the pod",
            port_forward_websocket
        ),
    ]
}

fn fail(check: &str, expected: impl Into<String>, got: impl Into<String>) -> Stop {
    Stop::Fail(Failure {
        check: check.to_string(),
        expected: expected.into(),
        got: got.into(),
    })
}

/// A writer for a session and a task collecting everything written to it.
fn capture() -> (Writer, JoinHandle<Vec<u8>>) {
    let (writer, mut reader) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(async move {
        let mut out = Vec::new();
        let _ = reader.read_to_end(&mut out).await;
        out
    });
    (Box::pin(writer), task)
}

/// What a capture collected, once the session has let go of its writer (bounded).
async fn captured(task: JoinHandle<Vec<u8>>, what: &str) -> Result<Vec<u8>, Stop> {
    let abort = task.abort_handle();
    match tokio::time::timeout(OUTPUT, task).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => Err(fail(what, "collected output", error.to_string())),
        Err(_) => {
            abort.abort();
            Err(fail(
                what,
                "the stream closes when the session ends",
                format!("still open {OUTPUT:?} later"),
            ))
        }
    }
}

/// Reads `from` until what was read contains `needle`, EOF, or `OUTPUT` passes; returns
/// whether the needle came, and everything read.
async fn read_until(from: &mut DuplexStream, needle: &[u8]) -> (bool, Vec<u8>) {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(OUTPUT, async {
        let mut buf = [0u8; 4096];
        loop {
            if seen.windows(needle.len()).any(|w| w == needle) {
                return true;
            }
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .unwrap_or(false);
    (found, seen)
}

type Session = JoinHandle<Result<i32, cri_client::Error>>;

fn spawn_exec(
    ctx: &Ctx,
    id: &str,
    cmd: &[&str],
    transport: Transport,
    streams: Streams,
) -> Session {
    let client = ctx.client().clone();
    let id = id.to_string();
    let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
    tokio::spawn(async move { client.exec(id, cmd, transport, streams).await })
}

fn spawn_attach(ctx: &Ctx, id: &str, transport: Transport, streams: Streams) -> Session {
    let client = ctx.client().clone();
    let id = id.to_string();
    tokio::spawn(async move { client.attach(id, transport, streams).await })
}

/// Waits (at most `limit`) for a session to end; `Ok(None)` when it is still running (it is
/// then aborted, which closes the connection).
async fn wait_session(session: Session, limit: Duration) -> Result<Option<i32>, Stop> {
    let abort = session.abort_handle();
    match tokio::time::timeout(limit, session).await {
        Ok(Ok(result)) => Ok(Some(result?)),
        Ok(Err(error)) => Err(fail(
            "the session runs to completion",
            "no panic",
            error.to_string(),
        )),
        Err(_) => {
            abort.abort();
            Ok(None)
        }
    }
}

/// Waits for a session that must end, and returns its exit code.
async fn finish(session: Session, what: &str) -> Result<i32, Stop> {
    match wait_session(session, SESSION).await? {
        Some(code) => Ok(code),
        None => Err(fail(
            what,
            format!("the session ends within {SESSION:?}"),
            "still running; abandoned",
        )),
    }
}

/// A sandbox with a long-running container to exec in.
async fn target(ctx: &Ctx) -> Result<String, Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    ctx.start_container(&sandbox, "target", ctx.sleeper()).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn stdout_stderr(ctx: Ctx, transport: Transport) -> Result<(), Stop> {
    let id = target(&ctx).await?;
    let (stdout, out) = capture();
    let (stderr, err) = capture();
    let session = spawn_exec(
        &ctx,
        &id,
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2"],
        transport,
        Streams {
            stdout: Some(stdout),
            stderr: Some(stderr),
            ..Default::default()
        },
    );
    let code = finish(session, &format!("exec over {transport:?}")).await?;
    let out = captured(out, "stdout").await?;
    let err = captured(err, "stderr").await?;
    expect_eq("exit code", 0, code)?;
    expect_eq("stdout", "to-stdout\n".to_string(), text(&out))?;
    expect_eq("stderr", "to-stderr\n".to_string(), text(&err))
}

async fn exit_code(ctx: Ctx, transport: Transport) -> Result<(), Stop> {
    let id = target(&ctx).await?;
    let (stdout, out) = capture();
    let session = spawn_exec(
        &ctx,
        &id,
        &["sh", "-c", "echo before-exit; exit 7"],
        transport,
        Streams {
            stdout: Some(stdout),
            ..Default::default()
        },
    );
    let code = finish(session, &format!("exec over {transport:?}")).await?;
    let out = captured(out, "stdout").await?;
    expect_eq("exit code of `exit 7`", 7, code)?;
    expect_eq("stdout", "before-exit\n".to_string(), text(&out))
}

async fn stdin(ctx: Ctx, transport: Transport) -> Result<(), Stop> {
    let id = target(&ctx).await?;
    let (mut keyboard, stdin) = tokio::io::duplex(64 * 1024);
    let (stdout, mut out) = tokio::io::duplex(64 * 1024);
    let session = spawn_exec(
        &ctx,
        &id,
        &["cat"],
        transport,
        Streams {
            stdin: Some(Box::pin(stdin) as Reader),
            stdout: Some(Box::pin(stdout) as Writer),
            ..Default::default()
        },
    );
    let line = b"through stdin and back\n";
    if let Err(error) = keyboard.write_all(line).await {
        session.abort();
        return Err(fail(
            "writing to the session's stdin",
            "ok",
            error.to_string(),
        ));
    }
    let (found, seen) = read_until(&mut out, line).await;
    if !found {
        // An error from the runtime explains more than missing output.
        let ended = wait_session(session, Duration::from_millis(100)).await?;
        return Err(fail(
            &format!("cat's stdout over {transport:?} within {OUTPUT:?}"),
            text(line),
            format!("{:?} (session ended: {ended:?})", text(&seen)),
        ));
    }
    // EOF on stdin ends `cat`, which ends the session.
    drop(keyboard);
    match wait_session(session, OUTPUT).await? {
        Some(code) => expect_eq("exit code of cat after stdin EOF", 0, code),
        None if transport == Transport::WebSocket => skip(format!(
            "stdin came back through cat, but closing stdin did not end the session within \
             {OUTPUT:?}: the runtime's WebSocket server does not half-close stdin \
             (needs v5.channel.k8s.io)"
        )),
        None => Err(fail(
            "closing stdin over SPDY ends cat",
            format!("the session ends within {OUTPUT:?}"),
            "still running; abandoned",
        )),
    }
}

async fn tty(ctx: Ctx, transport: Transport) -> Result<(), Stop> {
    let id = target(&ctx).await?;
    // Stdin stays open as an interactive client's does (over WebSocket, containerd 1.6 drops
    // a terminal's output when the session has no stdin channel).
    let (keyboard, stdin) = tokio::io::duplex(1024);
    let (stdout, out) = capture();
    let session = spawn_exec(
        &ctx,
        &id,
        &["sh", "-c", "sleep 0.2; echo tty-out; echo tty-err >&2"],
        transport,
        Streams {
            stdin: Some(Box::pin(stdin) as Reader),
            stdout: Some(stdout),
            tty: true,
            ..Default::default()
        },
    );
    let code = finish(session, &format!("tty exec over {transport:?}")).await;
    drop(keyboard);
    let code = code?;
    let out = captured(out, "the terminal's output").await?;
    expect_eq("exit code", 0, code)?;
    expect_eq(
        "terminal output (CR removed), stderr merged in order",
        "tty-out\ntty-err\n".to_string(),
        text(&out).replace('\r', ""),
    )
}

/// One attach session: writes `line`, expects it echoed, then closes stdin and lets the
/// session go (ending by itself or aborted).
async fn attach_once(
    ctx: &Ctx,
    id: &str,
    transport: Transport,
    line: &[u8],
    which: &str,
) -> Result<(), Stop> {
    let (mut keyboard, stdin) = tokio::io::duplex(64 * 1024);
    let (stdout, mut out) = tokio::io::duplex(64 * 1024);
    let session = spawn_attach(
        ctx,
        id,
        transport,
        Streams {
            stdin: Some(Box::pin(stdin) as Reader),
            stdout: Some(Box::pin(stdout) as Writer),
            ..Default::default()
        },
    );
    if let Err(error) = keyboard.write_all(line).await {
        session.abort();
        return Err(fail("writing to the attach stdin", "ok", error.to_string()));
    }
    let (found, seen) = read_until(&mut out, line).await;
    if !found {
        // An error from the runtime explains more than missing output.
        let ended = wait_session(session, Duration::from_millis(100)).await?;
        return Err(fail(
            &format!("{which} attach over {transport:?} echoes stdin within {OUTPUT:?}"),
            text(line),
            format!("{:?} (session ended: {ended:?})", text(&seen)),
        ));
    }
    drop(keyboard);
    // Whether a session ends when the client's stdin closes is the runtime's choice; either
    // way the connection is closed here.
    let _ = wait_session(session, Duration::from_secs(2)).await;
    Ok(())
}

async fn attach(ctx: Ctx, transport: Transport) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    // `cat` echoes the container's stdin; the sleep keeps the container running whatever
    // happens to stdin, so that the second attach tells whether stdin stayed open.
    let id = ctx
        .start_container_with(&sandbox, "echo", &["sh", "-c", "cat; sleep 3600"], |c| {
            c.stdin = true;
            c.stdin_once = false;
            c.tty = false;
        })
        .await?;
    attach_once(&ctx, &id, transport, b"first attach\n", "the first").await?;
    attach_once(&ctx, &id, transport, b"second attach\n", "a second").await?;
    let status = ctx.container_status(&id).await?;
    expect_eq(
        "state after two attach sessions (stdin_once=false)",
        ContainerState::ContainerRunning,
        status.state(),
    )
}

/// A port nobody listens on right now on this host (pods on the host network share it).
fn free_port() -> Result<u16, Stop> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| fail("finding a free port", "a port", e.to_string()))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| fail("finding a free port", "a port", e.to_string()))
}

/// A TCP echo server on this host's loopback; stops when dropped.
struct LoopbackEcho(JoinHandle<()>);

impl Drop for LoopbackEcho {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn loopback_echo(port: u16) -> Result<LoopbackEcho, Stop> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| {
            fail(
                &format!("listening on 127.0.0.1:{port}"),
                "ok",
                e.to_string(),
            )
        })?;
    Ok(LoopbackEcho(tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = tokio::io::split(tcp);
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    })))
}

/// Sends `payload` through one forwarded connection and reads as many bytes back.
async fn round_trip(forward: &PortForward, port: u16, payload: &[u8]) -> Result<Vec<u8>, String> {
    let attempt = async {
        let mut conn = forward.connect(port).await.map_err(|e| e.to_string())?;
        conn.write_all(payload).await.map_err(|e| e.to_string())?;
        let mut echoed = vec![0; payload.len()];
        conn.read_exact(&mut echoed)
            .await
            .map_err(|e| format!("reading the echo: {e}"))?;
        let _ = conn.shutdown().await;
        Ok(echoed)
    };
    tokio::time::timeout(Duration::from_secs(3), attempt)
        .await
        .unwrap_or_else(|_| Err("no echo within 3s".into()))
}

async fn port_forward(ctx: Ctx, transport: Transport) -> Result<(), Stop> {
    let port = free_port()?;
    let sandbox = ctx.run_sandbox("pod").await?;
    let port_text = port.to_string();
    let listener = ctx
        .start_container(
            &sandbox,
            "echo-server",
            &["nc", "-ll", "-p", &port_text, "-e", "cat"],
        )
        .await?;
    // A runtime that runs no real processes (a simulator) has no `nc` (exit 127) and forwards
    // to this host's loopback: the echo server then runs here. A real runtime whose pods
    // have their own network cannot reach it, so the case still fails there.
    let mut fallback: Option<LoopbackEcho> = None;
    let payload = format!("through port {port}\n").into_bytes();
    let started = std::time::Instant::now();
    let forward = loop {
        if fallback.is_none() {
            let status = ctx.container_status(&listener).await?;
            if status.state() == ContainerState::ContainerExited {
                if status.exit_code != 127 {
                    let log = std::fs::read_to_string(&status.log_path).unwrap_or_default();
                    return Err(fail(
                        &format!("the echo server `nc -ll -p {port} -e cat` keeps running"),
                        "running",
                        format!(
                            "exited with {}: {} (log: {:?})",
                            status.exit_code,
                            status.message,
                            log.lines().rev().take(3).collect::<Vec<_>>()
                        ),
                    ));
                }
                fallback = Some(loopback_echo(port).await?);
            }
        }
        let forward = ctx
            .client()
            .port_forward(&sandbox.0, &[port], transport)
            .await?;
        let last = match round_trip(&forward, port, &payload).await {
            Ok(echoed) if echoed == payload => break forward,
            Ok(echoed) => format!("echoed {:?}", text(&echoed)),
            Err(error) => error,
        };
        if started.elapsed() > Duration::from_secs(15) {
            return Err(fail(
                &format!("port-forward over {transport:?} to port {port} in the pod"),
                format!("{:?} echoed", text(&payload)),
                format!(
                    "{last} (echo server: {})",
                    if fallback.is_some() {
                        "this host's loopback, as the container has no nc"
                    } else {
                        "nc in the container"
                    }
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if transport == Transport::Spdy {
        // SPDY carries any number of connections in one session.
        let again = b"second connection, same session\n";
        let echoed = round_trip(&forward, port, again).await;
        check(
            echoed.as_deref() == Ok(&again[..]),
            "a second connection in the same SPDY port-forward session",
            text(again),
            echoed.map(|e| text(&e)),
        )?;
    }
    drop(fallback);
    Ok(())
}
