//! Abuse of the streaming port: slow request heads, oversized heads, garbage, half-open SPDY
//! sessions, thousands of streams in one session, oversized SPDY header blocks and WebSocket
//! messages, replayed and expired tokens. Under each, a well-behaved session still runs,
//! memory stays bounded, and the abuser gets a clear answer (a 4xx, a closed connection).
//!
//! Every loop is bounded in count; every wait is bounded by a generous safety limit (never a
//! threshold on how fast something happens); everything runs on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cri_api::v1::{ExecRequest, PortForwardRequest};
use cri_streaming::spdy;
use cri_streaming::{
    Config, Duplex, Server, Session, StreamError, StreamingRuntime, Streams, Transport,
    async_trait, run,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single wait may take before the test fails: a safety net, far above the
/// configured limits it waits for.
const SAFETY: Duration = Duration::from_secs(60);

/// A generous bound on memory growth: about leaks and unbounded buffering, not speed.
const MAX_GROWTH_KIB: u64 = 256 * 1024;

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

/// `echo ARGS` prints its arguments; `cat` copies stdin to stdout. Port-forward greets with
/// the port, then echoes.
struct Test;

fn failed(e: std::io::Error) -> StreamError {
    StreamError::Failed(e.to_string())
}

#[async_trait]
impl StreamingRuntime for Test {
    async fn exec(
        &self,
        _container: &str,
        cmd: Vec<String>,
        mut s: Session,
    ) -> Result<i32, StreamError> {
        match cmd[0].as_str() {
            "echo" => {
                if let Some(out) = s.stdout.as_mut() {
                    out.write_all(format!("{}\n", cmd[1..].join(" ")).as_bytes())
                        .await
                        .map_err(failed)?;
                }
                Ok(0)
            }
            _ => {
                if let (Some(input), Some(out)) = (s.stdin.as_mut(), s.stdout.as_mut()) {
                    tokio::io::copy(input, out).await.map_err(failed)?;
                }
                Ok(0)
            }
        }
    }

    async fn attach(&self, _container: &str, _s: Session) -> Result<i32, StreamError> {
        Ok(0)
    }

    async fn port_forward(
        &self,
        _sandbox: &str,
        port: u16,
        mut stream: Duplex,
    ) -> Result<(), StreamError> {
        stream
            .write_all(format!("port {port}\n").as_bytes())
            .await
            .map_err(failed)?;
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.map_err(failed)?;
            if n == 0 {
                return Ok(());
            }
            stream.write_all(&buf[..n]).await.map_err(failed)?;
        }
    }
}

async fn server(config: Config) -> Server {
    Server::start(Arc::new(Test), config).await.unwrap()
}

fn exec(cmd: &[&str]) -> ExecRequest {
    ExecRequest {
        container_id: "c1".into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        stdout: true,
        stdin: cmd[0] == "cat",
        ..Default::default()
    }
}

fn port_forward() -> PortForwardRequest {
    PortForwardRequest {
        pod_sandbox_id: "p1".into(),
        port: vec![8080],
    }
}

/// A well-behaved exec session over `transport`; its output is checked.
async fn good_session(server: &Server, transport: Transport) {
    let url = server.exec_url(exec(&["echo", "alive"])).unwrap();
    let (stdout, mut out) = tokio::io::duplex(64 * 1024);
    let session = tokio::time::timeout(
        SAFETY,
        run(
            &url,
            transport,
            Streams {
                stdout: Some(Box::pin(stdout)),
                ..Default::default()
            },
        ),
    )
    .await
    .expect("a well-behaved session ends");
    assert_eq!(session.unwrap(), 0);
    let mut printed = Vec::new();
    out.read_to_end(&mut printed).await.unwrap();
    assert_eq!(printed, b"alive\n");
}

/// The path of a streaming URL (`/exec/TOKEN`).
fn path_of(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    rest[rest.find('/').unwrap()..].to_string()
}

/// Reads until the server closes the connection (or resets it) and returns what was read
/// (at most 1 MiB kept); fails the test if it stays open past the safety limit.
async fn read_until_closed<R: AsyncRead + Unpin>(conn: &mut R, what: &str) -> Vec<u8> {
    let mut received = Vec::new();
    let outcome = tokio::time::timeout(SAFETY, async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
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

/// Sends `request` and reads the response head (up to the blank line).
async fn request_head(addr: SocketAddr, request: &str) -> (TcpStream, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    tokio::time::timeout(SAFETY, async {
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            if tcp.read(&mut byte).await.unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
    })
    .await
    .expect("the server answers the request");
    (tcp, String::from_utf8_lossy(&head).into_owned())
}

fn spdy_upgrade(path: &str, protocol: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
         X-Stream-Protocol-Version: {protocol}\r\nContent-Length: 0\r\n\r\n"
    )
}

fn websocket_upgrade(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_request_heads_are_cut_off() {
    let _serial = SERIAL.lock().await;
    let before = rss_kib();
    let server = server(Config {
        header_read_timeout: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    let url = server.exec_url(exec(&["echo", "never"])).unwrap();
    let head = spdy_upgrade(&path_of(&url), "v4.channel.k8s.io");
    // 200 clients: silent, inside the request line, inside the headers, or without the
    // final blank line. None of them may get the session behind the valid token.
    let mut slow = Vec::new();
    for i in 0..200 {
        let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
        let cut = match i % 4 {
            0 => 0,
            1 => 10,
            2 => head.len() / 2,
            _ => head.len() - 2,
        };
        tcp.write_all(&head.as_bytes()[..cut]).await.unwrap();
        slow.push(tcp);
    }
    good_session(&server, Transport::Spdy).await;
    good_session(&server, Transport::WebSocket).await;
    for (i, tcp) in slow.iter_mut().enumerate() {
        let received = read_until_closed(tcp, &format!("slow client {i}")).await;
        assert!(
            !received.starts_with(b"HTTP/1.1 101"),
            "a slow client never gets its upgrade"
        );
    }
    good_session(&server, Transport::Spdy).await;
    assert_bounded_growth("slowloris", before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_are_answered_431() {
    let _serial = SERIAL.lock().await;
    let before = rss_kib();
    let server = server(Config::default()).await;
    for size in [128 << 10, 1 << 20, 8 << 20] {
        let url = server.exec_url(exec(&["echo", "never"])).unwrap();
        let padding = "a".repeat(size);
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nX-Pad: {padding}\r\n\r\n",
            path_of(&url)
        );
        let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
        // The server may answer and close before reading it all.
        let _ = tcp.write_all(request.as_bytes()).await;
        let received = read_until_closed(&mut tcp, &format!("a {size}-byte head")).await;
        let text = String::from_utf8_lossy(&received);
        assert!(
            text.starts_with("HTTP/1.1 431"),
            "a {size}-byte head: {text:?}"
        );
        good_session(&server, Transport::Spdy).await;
    }
    assert_bounded_growth("oversized request heads", before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_streaming_port_is_answered_400_or_closed() {
    let _serial = SERIAL.lock().await;
    let before = rss_kib();
    let server = server(Config::default()).await;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = vec![0u8; 64 * 1024];
    for byte in &mut noise {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    let cases: [(&str, Vec<u8>); 4] = [
        ("random bytes", noise),
        (
            "an HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        ),
        (
            "a TLS client hello",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
        ),
        (
            "a broken request line",
            b"GET /exec/x HTTP/9.9 extra\r\n\r\n".to_vec(),
        ),
    ];
    for (what, bytes) in cases {
        for _ in 0..10 {
            let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
            let _ = tcp.write_all(&bytes).await;
            let received = read_until_closed(&mut tcp, what).await;
            let text = String::from_utf8_lossy(&received);
            assert!(
                received.is_empty() || text.starts_with("HTTP/1.1 4"),
                "{what}: {text:?}"
            );
        }
        good_session(&server, Transport::Spdy).await;
    }
    assert_bounded_growth("garbage", before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_spdy_sessions_are_closed() {
    let _serial = SERIAL.lock().await;
    let before = rss_kib();
    let server = server(Config {
        stream_creation_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    // After the upgrade: nothing, half a frame header, a SYN_STREAM cut short. Exec sessions
    // wait for their streams; port-forward sessions for their first forwarded connection.
    let tails: [&[u8]; 3] = [
        b"",
        b"\x80\x03\x00",
        b"\x80\x03\x00\x01\x00\x00\x00\x40\x00\x00\x00\x01",
    ];
    let mut half_open = Vec::new();
    for i in 0..60 {
        let tail = tails[i % 3];
        let (url, protocol) = if i % 2 == 0 {
            (
                server.exec_url(exec(&["echo", "never"])).unwrap(),
                "v4.channel.k8s.io",
            )
        } else {
            (
                server.port_forward_url(port_forward()).unwrap(),
                "portforward.k8s.io",
            )
        };
        let (mut tcp, head) =
            request_head(server.local_addr(), &spdy_upgrade(&path_of(&url), protocol)).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        tcp.write_all(tail).await.unwrap();
        half_open.push(tcp);
    }
    good_session(&server, Transport::Spdy).await;
    for (i, tcp) in half_open.iter_mut().enumerate() {
        read_until_closed(tcp, &format!("half-open session {i}")).await;
    }
    good_session(&server, Transport::Spdy).await;
    assert_bounded_growth("half-open SPDY", before);
}

/// A port-forward session opened by hand: the HTTP upgrade, then a raw SPDY client.
async fn raw_port_forward_session(server: &Server) -> spdy::Connection {
    let url = server.port_forward_url(port_forward()).unwrap();
    let (tcp, head) = request_head(
        server.local_addr(),
        &spdy_upgrade(&path_of(&url), "portforward.k8s.io"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (conn, _incoming) = spdy::Connection::new(tcp, spdy::Role::Client, spdy::Config::default());
    conn
}

fn forward_headers(kind: &str, request_id: usize) -> spdy::Headers {
    vec![
        ("streamtype".into(), kind.into()),
        ("port".into(), "8080".into()),
        ("requestid".into(), request_id.to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_streams_in_one_spdy_session_are_served() {
    const FORWARDS: usize = 1000; // two streams each
    let _serial = SERIAL.lock().await;
    let before = rss_kib();
    let server = server(Config::default()).await;
    let conn = raw_port_forward_session(&server).await;
    let mut tasks = Vec::new();
    for id in 0..FORWARDS {
        let error = conn.open(forward_headers("error", id)).await.unwrap();
        let mut data = conn.open(forward_headers("data", id)).await.unwrap();
        tasks.push(tokio::spawn(async move {
            let mut greeting = [0u8; 10];
            data.read_exact(&mut greeting).await.unwrap();
            assert_eq!(&greeting, b"port 8080\n");
            let ping = format!("ping {id}");
            data.write_all(ping.as_bytes()).await.unwrap();
            let mut echo = vec![0u8; ping.len()];
            data.read_exact(&mut echo).await.unwrap();
            assert_eq!(echo, ping.as_bytes());
            (error, data)
        }));
    }
    // All 2,000 streams are open at once while another client is served.
    good_session(&server, Transport::Spdy).await;
    let mut open = Vec::new();
    for task in tasks {
        open.push(
            tokio::time::timeout(SAFETY, task)
                .await
                .expect("every forwarded connection is served")
                .unwrap(),
        );
    }
    eprintln!(
        "{} streams open in one session: RSS {} KiB",
        2 * open.len(),
        rss_kib()
    );
    drop(open);
    conn.close();
    assert_bounded_growth("2000 SPDY streams", before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_an_exec_session_never_accepts_are_refused() {
    let _serial = SERIAL.lock().await;
    let before = rss_kib();
    let server = server(Config::default()).await;
    let url = server.exec_url(exec(&["cat"])).unwrap();
    let (tcp, head) = request_head(
        server.local_addr(),
        &spdy_upgrade(&path_of(&url), "v4.channel.k8s.io"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (conn, _incoming) = spdy::Connection::new(tcp, spdy::Role::Client, spdy::Config::default());
    let stream = |kind: &str| vec![("streamtype".to_string(), kind.to_string())];
    let _error = conn.open(stream("error")).await.unwrap();
    let mut stdin = conn.open(stream("stdin")).await.unwrap();
    let mut stdout = conn.open(stream("stdout")).await.unwrap();
    // 3,000 more streams the session has no use for: a bounded number (1,024) wait to be
    // accepted, the rest are refused at once.
    const EXTRA: usize = 3000;
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut extra = Vec::new();
    for _ in 0..EXTRA {
        let conn = conn.clone();
        let refused = refused.clone();
        extra.push(tokio::spawn(async move {
            if conn.open(stream("stdout")).await.is_err() {
                refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }));
    }
    tokio::time::timeout(SAFETY, async {
        while refused.load(std::sync::atomic::Ordering::SeqCst) < EXTRA - 1024 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the streams beyond the accept queue are refused");
    // The session itself still works.
    stdin.write_all(b"still here").await.unwrap();
    let mut echo = [0u8; 10];
    tokio::time::timeout(SAFETY, stdout.read_exact(&mut echo))
        .await
        .expect("the session still runs")
        .unwrap();
    assert_eq!(&echo, b"still here");
    conn.close();
    // The streams left waiting end with the session.
    for task in extra {
        tokio::time::timeout(SAFETY, task)
            .await
            .expect("waiting streams end with the session")
            .unwrap();
    }
    good_session(&server, Transport::Spdy).await;
    assert_bounded_growth("streams never accepted", before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_spdy_header_blocks_end_the_session() {
    let _serial = SERIAL.lock().await;
    let before = rss_kib();
    let server = server(Config::default()).await;
    for _ in 0..4 {
        let conn = raw_port_forward_session(&server).await;
        // 4 MiB of headers compress to a few KiB; inflated they exceed the 1 MiB limit.
        let mut headers = forward_headers("data", 1);
        headers.push(("x-pad".into(), "a".repeat(4 << 20)));
        let _ = conn.open(headers).await;
        tokio::time::timeout(SAFETY, conn.closed())
            .await
            .expect("the session is ended");
    }
    // A control frame announcing 16 MiB is refused before its payload is read.
    let url = server.port_forward_url(port_forward()).unwrap();
    let (mut tcp, head) = request_head(
        server.local_addr(),
        &spdy_upgrade(&path_of(&url), "portforward.k8s.io"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp.write_all(b"\x80\x03\x00\x01\x00\xff\xff\xff")
        .await
        .unwrap();
    read_until_closed(&mut tcp, "a 16 MiB control frame").await;
    good_session(&server, Transport::Spdy).await;
    assert_bounded_growth("oversized SPDY header blocks", before);
}

/// A masked client WebSocket frame header with an all-zero mask (the payload goes as is).
fn ws_header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_websocket_messages_close_the_connection() {
    let _serial = SERIAL.lock().await;
    let before = rss_kib();
    let server = server(Config::default()).await;
    for fragmented in [false, true] {
        let url = server.exec_url(exec(&["cat"])).unwrap();
        let (tcp, head) =
            request_head(server.local_addr(), &websocket_upgrade(&path_of(&url))).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let (mut reader, mut writer) = tcp.into_split();
        let what = if fragmented {
            "a 4 MiB message in 64 KiB fragments"
        } else {
            "an 8 MiB frame"
        };
        let sender = tokio::spawn(async move {
            let chunk = vec![0u8; 64 * 1024];
            if fragmented {
                // Binary message on stdin (channel 0), continued without end.
                let mut first = ws_header(false, 0x2, chunk.len() as u64);
                first.extend_from_slice(&chunk);
                if writer.write_all(&first).await.is_ok() {
                    for _ in 0..64 {
                        let mut next = ws_header(false, 0x0, chunk.len() as u64);
                        next.extend_from_slice(&chunk);
                        if writer.write_all(&next).await.is_err() {
                            break;
                        }
                    }
                }
            } else {
                let _ = writer.write_all(&ws_header(true, 0x2, 8 << 20)).await;
                for _ in 0..128 {
                    if writer.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
            }
            // Keep the connection open (no EOF) until the server has closed it.
            writer
        });
        read_until_closed(&mut reader, what).await;
        drop(sender.await.unwrap());
        good_session(&server, Transport::WebSocket).await;
    }
    assert_bounded_growth("oversized WebSocket messages", before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_expired_tokens_are_refused() {
    let _serial = SERIAL.lock().await;
    let before = rss_kib();
    let server = server(Config {
        token_ttl: Duration::from_millis(200),
        ..Config::default()
    })
    .await;
    // One token raced by 20 clients at once, over both upgrades: exactly one gets it.
    for websocket in [false, true] {
        let url = server.exec_url(exec(&["echo", "once"])).unwrap();
        let path = path_of(&url);
        let addr = server.local_addr();
        let mut racers = Vec::new();
        for _ in 0..20 {
            let request = if websocket {
                websocket_upgrade(&path)
            } else {
                spdy_upgrade(&path, "v4.channel.k8s.io")
            };
            racers.push(tokio::spawn(async move {
                let (tcp, head) = request_head(addr, &request).await;
                (tcp, head)
            }));
        }
        let mut heads = Vec::new();
        let mut connections = Vec::new();
        for racer in racers {
            let (tcp, head) = racer.await.unwrap();
            heads.push(head);
            connections.push(tcp);
        }
        let won = heads
            .iter()
            .filter(|h| h.starts_with("HTTP/1.1 101"))
            .count();
        let refused = heads
            .iter()
            .filter(|h| h.starts_with("HTTP/1.1 404"))
            .count();
        assert_eq!((won, refused), (1, 19), "{heads:?}");
        drop(connections);
        // Replayed after the session: still refused.
        let (_tcp, head) = request_head(addr, &spdy_upgrade(&path, "v4.channel.k8s.io")).await;
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    }
    // Expired tokens, never used: refused, and no longer held.
    let mut expired = Vec::new();
    for _ in 0..100 {
        expired.push(path_of(&server.exec_url(exec(&["echo", "late"])).unwrap()));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    for path in &expired {
        let (_tcp, head) = request_head(
            server.local_addr(),
            &spdy_upgrade(path, "v4.channel.k8s.io"),
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    }
    assert_eq!(server.pending(), 0, "expired tokens are dropped");
    good_session(&server, Transport::Spdy).await;
    assert_bounded_growth("replayed and expired tokens", before);
}
