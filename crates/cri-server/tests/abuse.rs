//! Abuse of the CRI socket: slow and silent clients, half-open HTTP/2 connections, thousands
//! of concurrent calls, oversized messages and header blocks, garbage bytes. Under each, a
//! well-behaved client still gets answers, memory stays bounded, and the abuser gets a clear
//! answer (an error code, `REFUSED_STREAM`, a closed connection).
//!
//! Every loop is bounded in count; every wait is bounded by a generous safety limit (never a
//! threshold on how fast something happens); everything runs over a temporary Unix socket.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{TestRuntime, connect, serve, version};
use cri_server::cri_api::v1::runtime_service_client::RuntimeServiceClient;
use cri_server::cri_api::v1::*;
use cri_server::{Context, Result, RuntimeService, Server, async_trait};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::watch;
use tonic::Code;

/// How long any single wait may take before the test fails: a safety net, far above the
/// configured limits it waits for.
const SAFETY: Duration = Duration::from_secs(60);

/// A generous bound on memory growth: about leaks and unbounded buffering, not speed.
const MAX_GROWTH_KIB: u64 = 256 * 1024;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const REFUSED_STREAM: u32 = 0x7;

/// The tests of this file run one at a time, so that each one's memory figures are its own.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The process's resident set size, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

fn assert_bounded_growth(test: &str, before: u64) {
    let after = rss_kib();
    let growth = after.saturating_sub(before);
    eprintln!("{test}: RSS {before} KiB -> {after} KiB (growth {growth} KiB)");
    assert!(
        growth < MAX_GROWTH_KIB,
        "{test}: RSS grew by {growth} KiB (from {before} KiB to {after} KiB)"
    );
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK block of a gRPC call to `path`.
fn request_block(encoder: &mut loona_hpack::Encoder<'_>, authority: &str, path: &str) -> Vec<u8> {
    encoder.encode(vec![
        (&b":method"[..], &b"POST"[..]),
        (b":scheme", b"http"),
        (b":path", path.as_bytes()),
        (b":authority", authority.as_bytes()),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ])
}

/// A received frame: type, flags, stream, payload.
type Frame = (u8, u8, u32, Vec<u8>);

/// Splits `bytes` into whole frames (a trailing partial frame is ignored).
fn parse_frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        if bytes.len() < 9 + len {
            break;
        }
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
        frames.push((bytes[3], bytes[4], stream, bytes[9..9 + len].to_vec()));
        bytes = &bytes[9 + len..];
    }
    frames
}

/// Reads until the server closes the connection (or resets it). Returns what was read;
/// fails the test if the server keeps the connection open past the safety limit.
async fn read_until_closed<R: AsyncRead + Unpin>(conn: &mut R, what: &str) -> Vec<u8> {
    let mut received = Vec::new();
    let outcome = tokio::time::timeout(SAFETY, async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    // Keep what is needed to recognise frames; drop the rest (bounded).
                    if received.len() < 1 << 20 {
                        received.extend_from_slice(&buf[..n]);
                    }
                }
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "{what}: the server kept the connection open"
    );
    received
}

/// A well-behaved client's call, on a connection of its own.
async fn good_call(path: &Path) {
    let mut client = RuntimeServiceClient::new(connect(path).await);
    let answer = tokio::time::timeout(SAFETY, client.version(VersionRequest::default()))
        .await
        .expect("a well-behaved call is answered")
        .expect("a well-behaved call succeeds")
        .into_inner();
    assert_eq!(answer, version());
}

fn test_runtime() -> Arc<TestRuntime> {
    Arc::new(TestRuntime::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_that_never_finish_the_preface_are_disconnected() {
    let _serial = SERIAL.lock().await;
    let before = rss_kib();
    let server = serve(
        Server::builder()
            .runtime_shared(test_runtime())
            .handshake_timeout(Some(Duration::from_millis(300)))
            .build()
            .unwrap(),
    );
    // 200 clients: silent, or stopping inside the preface, or after it without a frame.
    let mut slow = Vec::new();
    for i in 0..200 {
        let mut conn = UnixStream::connect(&server.path).await.unwrap();
        match i % 3 {
            0 => {}
            1 => conn.write_all(&PREFACE[..10]).await.unwrap(),
            _ => {
                conn.write_all(PREFACE).await.unwrap();
                conn.write_all(&frame(SETTINGS, 0, 0, &[])[..5])
                    .await
                    .unwrap();
            }
        }
        slow.push(conn);
    }
    // While they hang on, others are served.
    good_call(&server.path).await;
    for (i, conn) in slow.iter_mut().enumerate() {
        let received = read_until_closed(conn, &format!("slow client {i}")).await;
        assert!(
            !parse_frames(&received)
                .iter()
                .any(|(kind, ..)| *kind == HEADERS),
            "a slow client never gets a response"
        );
    }
    good_call(&server.path).await;
    assert_bounded_growth("slowloris", before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_http2_connections_are_closed_by_the_keepalive() {
    let _serial = SERIAL.lock().await;
    let before = rss_kib();
    let server = serve(
        Server::builder()
            .runtime_shared(test_runtime())
            .keepalive(Some(Duration::from_millis(200)), Duration::from_millis(300))
            .build()
            .unwrap(),
    );
    // Preface and SETTINGS, then silence: the server's SETTINGS are never acknowledged and
    // its PINGs never answered. Half of them also stop in the middle of a HEADERS frame.
    let mut half_open = Vec::new();
    for i in 0..100 {
        let mut conn = UnixStream::connect(&server.path).await.unwrap();
        conn.write_all(PREFACE).await.unwrap();
        conn.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        if i % 2 == 1 {
            let mut encoder = loona_hpack::Encoder::new();
            let block = request_block(
                &mut encoder,
                "localhost",
                "/runtime.v1.RuntimeService/Version",
            );
            let headers = frame(HEADERS, END_HEADERS, 1, &block);
            conn.write_all(&headers[..headers.len() / 2]).await.unwrap();
        }
        half_open.push(conn);
    }
    good_call(&server.path).await;
    for (i, conn) in half_open.iter_mut().enumerate() {
        let received = read_until_closed(conn, &format!("half-open connection {i}")).await;
        let frames = parse_frames(&received);
        assert!(
            frames
                .iter()
                .any(|(kind, flags, ..)| *kind == PING && flags & ACK == 0),
            "connection {i}: the server probed it with a PING before closing it"
        );
    }
    good_call(&server.path).await;
    assert_bounded_growth("half-open HTTP/2", before);
}

/// A runtime whose `exec_sync` calls wait for a gate, to hold thousands of calls in flight.
struct Gated {
    in_flight: AtomicUsize,
    open: watch::Receiver<bool>,
}

#[async_trait]
impl RuntimeService for Gated {
    async fn version(&self, _: Context, _: VersionRequest) -> Result<VersionResponse> {
        Ok(version())
    }

    async fn exec_sync(&self, _: Context, req: ExecSyncRequest) -> Result<ExecSyncResponse> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.clone();
        let _ = open.wait_for(|open| *open).await;
        Ok(ExecSyncResponse {
            stdout: req.cmd.join(" ").into_bytes(),
            ..Default::default()
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_concurrent_calls_are_all_answered_while_others_are_served() {
    const CONNECTIONS: usize = 4;
    const CALLS: usize = 2000;
    let _serial = SERIAL.lock().await;
    let before = rss_kib();
    let (gate, open) = watch::channel(false);
    let runtime = Arc::new(Gated {
        in_flight: AtomicUsize::new(0),
        open,
    });
    let server = serve(
        Server::builder()
            .runtime_shared(runtime.clone())
            .build()
            .unwrap(),
    );
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(RuntimeServiceClient::new(connect(&server.path).await));
    }
    let mut calls = Vec::new();
    for i in 0..CALLS {
        let mut client = clients[i % CONNECTIONS].clone();
        calls.push(tokio::spawn(async move {
            client
                .exec_sync(ExecSyncRequest {
                    container_id: "c1".into(),
                    cmd: vec!["call".into(), i.to_string()],
                    timeout: 0,
                })
                .await
        }));
    }
    tokio::time::timeout(SAFETY, async {
        while runtime.in_flight.load(Ordering::SeqCst) < CALLS {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every call reaches the runtime at once");
    // With 2,000 calls in flight, a new client is served.
    good_call(&server.path).await;
    let during = rss_kib();
    eprintln!("2000 calls in flight: RSS {during} KiB");
    gate.send(true).unwrap();
    for (i, call) in calls.into_iter().enumerate() {
        let answer = call
            .await
            .unwrap()
            .expect("every call succeeds")
            .into_inner();
        assert_eq!(answer.stdout, format!("call {i}").into_bytes());
    }
    assert_bounded_growth("2000 concurrent calls", before);
}

/// Performs the client side of the HTTP/2 handshake by hand, acknowledging the server's
/// SETTINGS.
async fn raw_handshake(conn: &mut UnixStream) {
    conn.write_all(PREFACE).await.unwrap();
    conn.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(SAFETY, async {
        loop {
            if parse_frames(&received)
                .iter()
                .any(|(kind, flags, ..)| *kind == SETTINGS && flags & ACK == 0)
            {
                return;
            }
            let mut buf = [0u8; 4096];
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the server closed during the handshake");
            received.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the server sends its SETTINGS");
    conn.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_concurrency_limit_are_refused() {
    let _serial = SERIAL.lock().await;
    const LIMIT: u32 = 8;
    const OPENED: u32 = 40;
    let server = serve(
        Server::builder()
            .runtime_shared(test_runtime())
            .max_concurrent_streams(LIMIT)
            .build()
            .unwrap(),
    );
    let mut conn = UnixStream::connect(&server.path).await.unwrap();
    raw_handshake(&mut conn).await;
    // A client that ignores the advertised limit: calls that never send their body, so
    // they all stay open.
    let mut encoder = loona_hpack::Encoder::new();
    for i in 0..OPENED {
        let block = request_block(
            &mut encoder,
            "localhost",
            "/runtime.v1.RuntimeService/Version",
        );
        conn.write_all(&frame(HEADERS, END_HEADERS, 2 * i + 1, &block))
            .await
            .unwrap();
    }
    let mut received = Vec::new();
    let refused = tokio::time::timeout(SAFETY, async {
        loop {
            let refused: Vec<u32> = parse_frames(&received)
                .iter()
                .filter(|(kind, _, _, payload)| {
                    *kind == RST_STREAM
                        && payload.len() == 4
                        && u32::from_be_bytes(payload[..4].try_into().unwrap()) == REFUSED_STREAM
                })
                .map(|(_, _, stream, _)| *stream)
                .collect();
            if refused.len() >= (OPENED - LIMIT) as usize {
                return refused;
            }
            let mut buf = [0u8; 16 * 1024];
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the server closed instead of refusing streams");
            received.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the streams beyond the limit are refused");
    assert_eq!(refused.len(), (OPENED - LIMIT) as usize);
    assert!(
        refused.iter().all(|id| *id > 2 * LIMIT),
        "only streams beyond the limit are refused: {refused:?}"
    );
    good_call(&server.path).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_resource_exhausted_and_others_are_served() {
    let _serial = SERIAL.lock().await;
    let before = rss_kib();
    let server = serve(
        Server::builder()
            .runtime_shared(test_runtime())
            .build()
            .unwrap(),
    );
    let path = server.path.clone();
    let abuser = tokio::spawn(async move {
        let mut client = RuntimeServiceClient::new(connect(&path).await)
            .max_encoding_message_size(64 << 20)
            .max_decoding_message_size(64 << 20);
        let huge = "y".repeat(17 << 20);
        for _ in 0..8 {
            let err = client
                .exec_sync(ExecSyncRequest {
                    container_id: "c1".into(),
                    cmd: vec!["echo".into(), huge.clone()],
                    timeout: 0,
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
        }
        // The abuser's own connection is still usable.
        client.version(VersionRequest::default()).await.unwrap();
    });
    for _ in 0..8 {
        good_call(&server.path).await;
    }
    abuser.await.unwrap();
    assert_bounded_growth("oversized requests", before);
}

/// A header block that never ends: a HEADERS frame and CONTINUATION frames (16 MiB in all)
/// without END_HEADERS, on `stream`.
async fn continuation_flood<W: AsyncWrite + Unpin>(
    conn: &mut W,
    encoder: &mut loona_hpack::Encoder<'_>,
    stream: u32,
) {
    let block = request_block(encoder, "localhost", "/runtime.v1.RuntimeService/Version");
    if conn
        .write_all(&frame(HEADERS, 0, stream, &block))
        .await
        .is_err()
    {
        return;
    }
    let chunk = vec![b'a'; 16 * 1024];
    for _ in 0..1024 {
        // Writes fail once the server has closed the connection: that is the point.
        if conn
            .write_all(&frame(CONTINUATION, 0, stream, &chunk))
            .await
            .is_err()
        {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_blocks_that_never_end_are_refused_in_bounded_memory() {
    let _serial = SERIAL.lock().await;
    let before = rss_kib();
    let server = serve(
        Server::builder()
            .runtime_shared(test_runtime())
            .build()
            .unwrap(),
    );
    // First block: the flood itself (inspected by the legacy-authority layer, which hands it
    // to h2), or a valid call with a socket path as :authority (which makes that layer
    // rewrite every block) and then the flood.
    for legacy in [false, true] {
        let mut conn = UnixStream::connect(&server.path).await.unwrap();
        raw_handshake(&mut conn).await;
        let mut encoder = loona_hpack::Encoder::new();
        let mut stream = 1;
        if legacy {
            let block = request_block(
                &mut encoder,
                "/run/containerd/containerd.sock",
                "/runtime.v1.RuntimeService/Version",
            );
            conn.write_all(&frame(HEADERS, END_HEADERS, 1, &block))
                .await
                .unwrap();
            // An empty gRPC message: the call completes normally.
            conn.write_all(&frame(DATA, END_STREAM, 1, &[0, 0, 0, 0, 0]))
                .await
                .unwrap();
            stream = 3;
            // The legacy client's call is answered (response headers, then trailers).
            let mut received = Vec::new();
            tokio::time::timeout(SAFETY, async {
                while !parse_frames(&received).iter().any(|(kind, flags, id, _)| {
                    *kind == HEADERS && *id == 1 && flags & END_STREAM != 0
                }) {
                    let mut buf = [0u8; 4096];
                    let n = conn.read(&mut buf).await.unwrap();
                    assert!(n > 0, "the server closed the legacy client's connection");
                    received.extend_from_slice(&buf[..n]);
                }
            })
            .await
            .expect("the legacy client's call is answered");
        }
        let (mut reader, mut writer) = conn.into_split();
        let flood = tokio::spawn(async move {
            continuation_flood(&mut writer, &mut encoder, stream).await;
            // Keep the connection open (no EOF) until the server has closed it.
            writer
        });
        let what = if legacy {
            "a flood after a legacy :authority"
        } else {
            "a flood as the first block"
        };
        let received = read_until_closed(&mut reader, what).await;
        drop(flood.await.unwrap());
        let frames = parse_frames(&received);
        assert!(
            !frames
                .iter()
                .any(|(kind, _, id, _)| *kind == HEADERS && *id == stream),
            "{what}: the endless block is never answered as a call"
        );
        good_call(&server.path).await;
    }
    assert_bounded_growth("CONTINUATION flood", before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_get_the_connection_closed() {
    let _serial = SERIAL.lock().await;
    let before = rss_kib();
    let server = serve(
        Server::builder()
            .runtime_shared(test_runtime())
            .build()
            .unwrap(),
    );
    // Deterministic pseudo-random bytes.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = vec![0u8; 64 * 1024];
    for byte in &mut noise {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    let mut after_preface = PREFACE.to_vec();
    after_preface.extend_from_slice(&noise[..4096]);
    let mut huge_frame = PREFACE.to_vec();
    huge_frame.extend_from_slice(&frame(SETTINGS, 0, 0, &[]));
    huge_frame.extend_from_slice(&[0xff, 0xff, 0xff, DATA, 0, 0, 0, 0, 1]);
    huge_frame.extend_from_slice(&noise[..4096]);
    let http1 = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    let cases: [(&str, Vec<u8>); 4] = [
        ("random bytes", noise.clone()),
        ("noise after the preface", after_preface),
        ("a 16 MiB frame", huge_frame),
        ("HTTP/1.1", http1),
    ];
    for (what, bytes) in cases {
        for _ in 0..10 {
            let mut conn = UnixStream::connect(&server.path).await.unwrap();
            // The server may close before reading everything: a failed write is fine.
            let _ = conn.write_all(&bytes).await;
            let received = read_until_closed(&mut conn, what).await;
            let frames = parse_frames(&received);
            assert!(
                !frames.iter().any(|(kind, ..)| *kind == HEADERS),
                "{what}: garbage never gets a response"
            );
        }
        good_call(&server.path).await;
    }
    assert_bounded_growth("garbage", before);
}
