//! Our client against our server: every protocol version and stream type, exit codes,
//! half-close, terminals, large outputs, concurrency, tokens, malformed input.

use std::sync::Arc;
use std::time::Duration;

use cri_api::v1::{AttachRequest, ExecRequest, PortForwardRequest};
use cri_streaming::{
    ClientError, Config, Duplex, PortForward, Reader, Server, Session, StreamError,
    StreamingRuntime, Streams, TerminalSize, Transport, Writer, async_trait, run,
    run_with_protocols,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// Commands: `echo ARGS`, `err TEXT` (stderr), `exit N`, `cat`, `big MIB`, `size`, `fail`.
struct Test;

fn failed(e: std::io::Error) -> StreamError {
    StreamError::Failed(e.to_string())
}

#[async_trait]
impl StreamingRuntime for Test {
    async fn exec(
        &self,
        container: &str,
        cmd: Vec<String>,
        mut s: Session,
    ) -> Result<i32, StreamError> {
        if container != "c1" {
            return Err(StreamError::NotFound(format!("container {container}")));
        }
        let out = s.stdout.as_mut();
        match cmd[0].as_str() {
            "echo" => {
                if let Some(out) = out {
                    out.write_all(format!("{}\n", cmd[1..].join(" ")).as_bytes())
                        .await
                        .map_err(failed)?;
                }
                Ok(0)
            }
            "err" => {
                let target = if s.tty {
                    s.stdout.as_mut()
                } else {
                    s.stderr.as_mut()
                };
                if let Some(err) = target {
                    err.write_all(cmd[1].as_bytes()).await.map_err(failed)?;
                }
                Ok(0)
            }
            "exit" => Ok(cmd[1].parse().unwrap()),
            "cat" => {
                if let (Some(input), Some(out)) = (s.stdin.as_mut(), s.stdout.as_mut()) {
                    tokio::io::copy(input, out).await.map_err(failed)?;
                }
                Ok(0)
            }
            "big" => {
                let mib: usize = cmd[1].parse().unwrap();
                let chunk = vec![b'x'; 64 * 1024];
                if let Some(out) = out {
                    for _ in 0..mib * 16 {
                        out.write_all(&chunk).await.map_err(failed)?;
                    }
                }
                Ok(0)
            }
            "size" => {
                let size = s
                    .resize
                    .as_mut()
                    .expect("a resize stream")
                    .recv()
                    .await
                    .expect("a size");
                if let Some(out) = s.stdout.as_mut() {
                    out.write_all(format!("{}x{}", size.width, size.height).as_bytes())
                        .await
                        .map_err(failed)?;
                }
                Ok(0)
            }
            _ => Err(StreamError::Failed("fail: as asked".into())),
        }
    }

    async fn attach(&self, _container: &str, mut s: Session) -> Result<i32, StreamError> {
        if let (Some(input), Some(out)) = (s.stdin.as_mut(), s.stdout.as_mut()) {
            tokio::io::copy(input, out).await.map_err(failed)?;
        }
        Ok(0)
    }

    async fn port_forward(
        &self,
        _sandbox: &str,
        port: u16,
        mut stream: Duplex,
    ) -> Result<(), StreamError> {
        // An echo service that greets with its port.
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
        stderr: true,
        ..Default::default()
    }
}

/// A writer whose bytes are collected; the handle yields them once the writer is dropped.
fn capture() -> (Writer, JoinHandle<Vec<u8>>) {
    let (writer, mut reader) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(async move {
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        out
    });
    (Box::pin(writer), task)
}

fn input(bytes: &[u8]) -> Reader {
    Box::pin(std::io::Cursor::new(bytes.to_vec()))
}

struct Outcome {
    code: Result<i32, ClientError>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

async fn session(
    server: &Server,
    request: ExecRequest,
    transport: Transport,
    protocol: Option<&str>,
    stdin: Option<&[u8]>,
) -> Outcome {
    let tty = request.tty;
    let url = server.exec_url(request).unwrap();
    let (stdout, out) = capture();
    let (stderr, err) = capture();
    let streams = Streams {
        stdin: stdin.map(input),
        stdout: Some(stdout),
        stderr: (!tty).then_some(stderr),
        tty,
        resize: None,
    };
    let code = match protocol {
        Some(p) => run_with_protocols(&url, transport, &[p], streams).await,
        None => run(&url, transport, streams).await,
    };
    Outcome {
        code,
        stdout: out.await.unwrap(),
        stderr: err.await.unwrap(),
    }
}

const SPDY: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
const WEBSOCKET: [&str; 5] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];

fn every_protocol() -> Vec<(Transport, &'static str)> {
    SPDY.iter()
        .map(|p| (Transport::Spdy, *p))
        .chain(WEBSOCKET.iter().map(|p| (Transport::WebSocket, *p)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_stderr_and_exit_codes_over_every_protocol() {
    let server = server(Config::default()).await;
    for (transport, protocol) in every_protocol() {
        let ok = session(
            &server,
            exec(&["echo", "hello", "world"]),
            transport,
            Some(protocol),
            None,
        )
        .await;
        assert_eq!(ok.code.unwrap(), 0, "{protocol}");
        assert_eq!(ok.stdout, b"hello world\n", "{protocol}");

        let err = session(
            &server,
            exec(&["err", "to stderr"]),
            transport,
            Some(protocol),
            None,
        )
        .await;
        assert_eq!(err.stderr, b"to stderr", "{protocol}");
        assert!(err.stdout.is_empty(), "{protocol}");

        let exit = session(
            &server,
            exec(&["exit", "7"]),
            transport,
            Some(protocol),
            None,
        )
        .await;
        let v4 = protocol.starts_with("v4") || protocol.starts_with("v5");
        match exit.code {
            Ok(code) => assert_eq!(
                (code, v4),
                (7, true),
                "{protocol}: exit codes travel in v4+"
            ),
            Err(ClientError::Remote(message)) => {
                assert!(!v4, "{protocol}");
                assert!(message.contains("exit status 7"), "{protocol}: {message}");
            }
            Err(other) => panic!("{protocol}: {other}"),
        }

        let failure = session(&server, exec(&["fail"]), transport, Some(protocol), None).await;
        match failure.code {
            Err(ClientError::Remote(message)) => {
                assert!(message.contains("fail: as asked"), "{protocol}: {message}")
            }
            other => panic!("{protocol}: {:?}", other.map_err(|e| e.to_string())),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_half_close_ends_the_command() {
    let server = server(Config::default()).await;
    // WebSocket before v5 has no way to half-close a channel (the reason v5 exists), so
    // stdin EOF only reaches the command over SPDY and v5.
    let half_closing = every_protocol()
        .into_iter()
        .filter(|(t, p)| *t == Transport::Spdy || *p == "v5.channel.k8s.io");
    for (transport, protocol) in half_closing {
        let mut request = exec(&["cat"]);
        request.stdin = true;
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let out = session(&server, request, transport, Some(protocol), Some(&payload)).await;
        assert_eq!(out.code.unwrap(), 0, "{protocol}");
        assert_eq!(
            out.stdout, payload,
            "{protocol}: stdin echoed, then EOF ended cat"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_sessions_merge_stderr_and_carry_resizes() {
    let server = server(Config::default()).await;
    for (transport, protocol) in [
        (Transport::Spdy, "v4.channel.k8s.io"),
        (Transport::Spdy, "v3.channel.k8s.io"),
        (Transport::WebSocket, "v5.channel.k8s.io"),
        (Transport::WebSocket, "v4.base64.channel.k8s.io"),
    ] {
        let mut request = exec(&["size"]);
        request.tty = true;
        request.stderr = false;
        let url = server.exec_url(request).unwrap();
        let (stdout, out) = capture();
        let (sizes, resize) = tokio::sync::mpsc::channel(4);
        sizes
            .send(TerminalSize {
                width: 132,
                height: 43,
            })
            .await
            .unwrap();
        let code = run_with_protocols(
            &url,
            transport,
            &[protocol],
            Streams {
                stdout: Some(stdout),
                tty: true,
                resize: Some(resize),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        drop(sizes);
        assert_eq!(
            (code, out.await.unwrap()),
            (0, b"132x43".to_vec()),
            "{protocol}"
        );

        let mut request = exec(&["err", "merged"]);
        request.tty = true;
        request.stderr = false;
        let out = session(&server, request, transport, Some(protocol), None).await;
        assert_eq!(
            out.stdout, b"merged",
            "{protocol}: a terminal has one output"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_echoes_stdin() {
    let server = server(Config::default()).await;
    for transport in [Transport::Spdy, Transport::WebSocket] {
        let url = server
            .attach_url(AttachRequest {
                container_id: "c1".into(),
                stdin: true,
                stdout: true,
                ..Default::default()
            })
            .unwrap();
        let (stdout, out) = capture();
        let code = run(
            &url,
            transport,
            Streams {
                stdin: Some(input(b"attached\n")),
                stdout: Some(stdout),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!((code, out.await.unwrap()), (0, b"attached\n".to_vec()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_at_once() {
    let server = server(Config::default()).await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let transport = if i % 2 == 0 {
                Transport::Spdy
            } else {
                Transport::WebSocket
            };
            let text = format!("session {i}");
            let out = session(&server, exec(&["echo", &text]), transport, None, None).await;
            assert_eq!(out.code.unwrap(), 0);
            assert_eq!(out.stdout, format!("{text}\n").into_bytes());
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(server.pending(), 0, "every token was used once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_reused_and_expired_tokens_are_clean_http_errors() {
    let server = server(Config {
        token_ttl: Duration::from_millis(200),
        ..Config::default()
    })
    .await;
    let base = format!("http://{}", server.local_addr());
    for transport in [Transport::Spdy, Transport::WebSocket] {
        let unknown = run(
            &format!("{base}/exec/not-a-token"),
            transport,
            Streams::default(),
        )
        .await;
        assert!(
            matches!(
                unknown,
                Err(ClientError::Refused { status: 404, .. }) | Err(ClientError::WebSocket(_))
            ),
            "{unknown:?}"
        );

        let url = server.exec_url(exec(&["echo", "once"])).unwrap();
        session_at(&url, transport).await.unwrap();
        let reused = session_at(&url, transport).await;
        assert!(reused.is_err(), "a token works once");

        let url = server.exec_url(exec(&["echo", "late"])).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(session_at(&url, transport).await.is_err(), "expired");
    }
    // Over SPDY the refusal is a plain HTTP 404 with a reason.
    let url = server.exec_url(exec(&["echo", "x"])).unwrap();
    session_at(&url, Transport::Spdy).await.unwrap();
    match session_at(&url, Transport::Spdy).await {
        Err(ClientError::Refused { status, body }) => {
            assert_eq!(status, 404);
            assert!(body.contains("unknown, used or expired"), "{body}");
        }
        other => panic!("{other:?}"),
    }
    // A token for exec does not open attach.
    let url = server
        .exec_url(exec(&["echo", "x"]))
        .unwrap()
        .replace("/exec/", "/attach/");
    assert!(session_at(&url, Transport::Spdy).await.is_err());
}

async fn session_at(url: &str, transport: Transport) -> Result<i32, ClientError> {
    let (stdout, _out) = capture();
    let (stderr, _err) = capture();
    run(
        url,
        transport,
        Streams {
            stdout: Some(stdout),
            stderr: Some(stderr),
            ..Default::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_pending_tokens_are_refused() {
    let server = server(Config {
        max_tokens: 3,
        ..Config::default()
    })
    .await;
    for _ in 0..3 {
        server.exec_url(exec(&["echo"])).unwrap();
    }
    assert!(server.exec_url(exec(&["echo"])).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_spdy_and_truncated_connections_leave_the_server_serving() {
    let server = server(Config {
        stream_creation_timeout: Duration::from_secs(2),
        ..Config::default()
    })
    .await;
    for garbage in [
        &b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"[..], // nonsense control frame
        &b"\x80\x03\x00\x01\x01\x00\x00\x0a\x00\x00"[..],         // truncated SYN_STREAM
        &b"\x80\x03\x00\x01\x00\xff\xff\xff"[..],                 // absurd length
        &b""[..],                                                 // upgrade, then nothing
    ] {
        let url = server.exec_url(exec(&["echo", "never"])).unwrap();
        let path = url
            .split_once(&server.local_addr().to_string())
            .unwrap()
            .1
            .to_string();
        let mut tcp = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        tcp.write_all(garbage).await.unwrap();
        let mut response = vec![0u8; 12];
        tcp.read_exact(&mut response).await.unwrap();
        assert_eq!(&response, b"HTTP/1.1 101");
        drop(tcp); // truncate the connection
    }
    // Still serving.
    let out = session(
        &server,
        exec(&["echo", "alive"]),
        Transport::Spdy,
        None,
        None,
    )
    .await;
    assert_eq!(out.stdout, b"alive\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_over_both_transports() {
    let server = server(Config::default()).await;
    for transport in [Transport::Spdy, Transport::WebSocket] {
        let url = server
            .port_forward_url(PortForwardRequest {
                pod_sandbox_id: "p1".into(),
                port: vec![8080, 9090],
            })
            .unwrap();
        let forward = PortForward::start(&url, transport, &[8080, 9090])
            .await
            .unwrap();
        for port in [8080u16, 9090] {
            let mut conn = forward.connect(port).await.unwrap();
            let mut greeting = vec![0u8; format!("port {port}\n").len()];
            conn.read_exact(&mut greeting).await.unwrap();
            assert_eq!(
                greeting,
                format!("port {port}\n").into_bytes(),
                "{transport:?}"
            );
            conn.write_all(b"ping").await.unwrap();
            let mut echo = [0u8; 4];
            conn.read_exact(&mut echo).await.unwrap();
            assert_eq!(&echo, b"ping");
        }
        if transport == Transport::Spdy {
            // Several connections share one SPDY session; a local listener forwards TCP.
            let (local, task) = forward
                .listen("127.0.0.1:0".parse().unwrap(), 8080)
                .await
                .unwrap();
            let mut tcp = tokio::net::TcpStream::connect(local).await.unwrap();
            let mut greeting = vec![0u8; 10];
            tcp.read_exact(&mut greeting).await.unwrap();
            assert_eq!(greeting, b"port 8080\n");
            task.abort();
        }
    }
}

/// A SPDY port-forward session opened by hand (HTTP upgrade, then a raw SPDY client), for
/// clients that do not behave like ours.
async fn raw_port_forward_session(url: &str) -> cri_streaming::spdy::Connection {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    tcp.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n\
             Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.unwrap();
        response.push(byte[0]);
    }
    assert!(
        response.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    let (conn, _incoming) = cri_streaming::spdy::Connection::new(
        tcp,
        cri_streaming::spdy::Role::Client,
        cri_streaming::spdy::Config::default(),
    );
    conn
}

fn forward_headers(kind: &str, request_id: usize) -> cri_streaming::spdy::Headers {
    vec![
        ("streamtype".into(), kind.into()),
        ("port".into(), "8080".into()),
        ("requestid".into(), request_id.to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_port_forward_pairs_are_bounded() {
    let server = server(Config::default()).await;
    let url = server
        .port_forward_url(PortForwardRequest {
            pod_sandbox_id: "p1".into(),
            port: vec![8080],
        })
        .unwrap();
    let conn = raw_port_forward_session(&url).await;

    // A client that opens error streams and never their data streams: the server keeps a
    // bounded number of such halves and resets the streams beyond it.
    let mut kept = Vec::new();
    for id in 0..64 {
        kept.push(conn.open(forward_headers("error", id)).await.unwrap());
    }
    let mut refused = conn.open(forward_headers("error", 64)).await.unwrap();
    let mut buf = [0u8; 16];
    let outcome = tokio::time::timeout(Duration::from_secs(10), refused.read(&mut buf))
        .await
        .expect("the refused stream ends");
    assert!(
        matches!(outcome, Ok(0) | Err(_)),
        "a stream beyond the bound is reset, got {outcome:?}"
    );

    // The halves it kept still complete: the data stream of pair 0 reaches the runtime.
    let mut data = conn.open(forward_headers("data", 0)).await.unwrap();
    let mut greeting = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(10), data.read_exact(&mut greeting))
        .await
        .expect("the completed pair is served")
        .unwrap();
    assert_eq!(&greeting, b"port 8080\n");
    data.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    data.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping");
    drop(kept);
    conn.close();
}
