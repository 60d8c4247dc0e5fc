//! Shared harness code of the fuzz targets in `fuzz_targets/`: the runtimes they drive
//! async code with, a SPDY and a WebSocket session fed with fuzzed peer bytes, and a
//! streaming server on loopback that fuzzed HTTP requests are sent to.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cri_api::v1::{AttachRequest, ExecRequest, PortForwardRequest};
use cri_streaming::{spdy, websocket};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::runtime::Runtime;

/// Most streams a session harness accepts per input (the rest are refused by dropping them).
const MAX_STREAMS: usize = 16;

/// A current-thread runtime with the clock paused: timers fire as soon as every task is
/// idle, so a session that waits for a peer that will never send more ends at once instead
/// of after its real timeout. Only for harnesses over in-memory transports.
pub fn paused_runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a tokio runtime")
}

/// Reads `reader` to its end (or first error), discarding at most `limit` bytes' worth of
/// reads; returns what was read, up to `keep` bytes.
pub async fn drain<R: AsyncRead + Unpin>(mut reader: R, keep: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = keep.saturating_sub(kept.len()).min(n);
                kept.extend_from_slice(&buf[..room]);
            }
        }
    }
}

/// Plays the peer of a SPDY session: `wire` is everything the peer sends (then it half-
/// closes), while this side accepts up to [`MAX_STREAMS`] streams, reads each to its end and
/// answers on it, and (as a client) opens one stream itself. Returns the headers of the
/// streams the peer opened.
pub async fn spdy_session(wire: &[u8], role: spdy::Role) -> Vec<spdy::Headers> {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let config = spdy::Config {
        max_control_frame: 64 * 1024,
        ..spdy::Config::default()
    };
    let (conn, mut incoming) = spdy::Connection::new(ours, role, config);
    let (peer_read, mut peer_write) = tokio::io::split(theirs);
    let wire = wire.to_vec();
    let send = async move {
        let _ = peer_write.write_all(&wire).await;
        let _ = peer_write.shutdown().await;
        peer_write
    };
    let receive = drain(peer_read, 0);
    let accept = async {
        let mut seen = Vec::new();
        let mut tasks = Vec::new();
        while let Some(request) = incoming.next_stream().await {
            seen.push(request.headers().to_vec());
            if seen.len() > MAX_STREAMS {
                continue; // dropped: refused
            }
            tasks.push(tokio::spawn(async move {
                let Ok(mut stream) = request.accept().await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                let _ = stream.write_all(b"done\n").await;
                let _ = stream.shutdown().await;
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
        seen
    };
    let open = async {
        if role == spdy::Role::Client {
            let headers = vec![("streamtype".to_string(), "stdin".to_string())];
            if let Ok(mut stream) = conn.open(headers).await {
                let _ = stream.write_all(b"hello\n").await;
                let _ = stream.shutdown().await;
                let _ = drain(&mut stream, 0).await;
            }
        }
    };
    let all = async { tokio::join!(send, receive, accept, open) };
    let seen = match tokio::time::timeout(Duration::from_secs(60), all).await {
        Ok((_writer, _, seen, ())) => seen,
        Err(_) => Vec::new(),
    };
    conn.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
    seen
}

/// Frames a list of raw (compressed) header blocks as SYN_STREAM frames on streams 1, 3,
/// 5, ... (the last one with FIN), as a client opening streams sends them.
pub fn syn_streams(blocks: &[&[u8]]) -> Vec<u8> {
    let mut wire = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let length = 10 + block.len();
        let flags = u8::from(i + 1 == blocks.len());
        wire.extend_from_slice(&[0x80, 0x03, 0x00, 0x01, flags]);
        wire.extend_from_slice(&(length as u32).to_be_bytes()[1..]);
        wire.extend_from_slice(&(2 * i as u32 + 1).to_be_bytes());
        wire.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        wire.extend_from_slice(block);
    }
    wire
}

/// Splits `data` into chunks, each prefixed with a big-endian `u16` length; a short or
/// missing prefix makes the rest one last chunk.
pub fn length_prefixed(mut data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut chunks = Vec::new();
    while !data.is_empty() && chunks.len() < max {
        if data.len() < 2 {
            chunks.push(data);
            break;
        }
        let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let take = len.min(rest.len());
        chunks.push(&rest[..take]);
        data = &rest[take..];
    }
    chunks
}

/// Plays the client of a channel WebSocket: `wire` is everything it sends (raw WebSocket
/// frames, masked or not), while the server side reads every exec channel (or the first
/// two port-forward port's channels) to its end and writes a line to stdout.
pub async fn websocket_session(wire: &[u8], protocol: websocket::Protocol) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let mut socket = websocket::server(ours, protocol, websocket::Config::default()).await;
    let readers: Vec<_> = (0u8..6).map(|channel| socket.reader(channel)).collect();
    let mut stdout = socket.writer(websocket::channel::STDOUT);
    let (peer_read, mut peer_write) = tokio::io::split(theirs);
    let wire = wire.to_vec();
    let send = async move {
        let _ = peer_write.write_all(&wire).await;
        let _ = peer_write.shutdown().await;
        peer_write
    };
    let receive = drain(peer_read, 0);
    let read_all = futures_util::future::join_all(readers.into_iter().map(|r| drain(r, 0)));
    let write = async {
        let _ = stdout.write_all(b"hello\n").await;
        let _ = stdout.shutdown().await;
    };
    let all = async { tokio::join!(send, receive, read_all, write) };
    let _ = tokio::time::timeout(Duration::from_secs(60), all).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.close()).await;
}

/// What a fuzzed streaming request asks for.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// `Exec` of `cat` (echoes stdin).
    Exec,
    /// `Attach`.
    Attach,
    /// `PortForward` of port 80.
    PortForward,
}

/// A streaming server on loopback over the fake runtime, with the runtime that drives it.
pub struct Streaming {
    runtime: Runtime,
    server: cri_streaming::Server,
    addr: SocketAddr,
    sandbox: String,
    container: String,
}

/// The marker a fuzzed request carries where the token URL's path goes.
pub const PATH_MARKER: &[u8] = b"@PATH@";

impl Streaming {
    /// The process-wide server (started on first use).
    pub fn get() -> &'static Streaming {
        static SERVER: OnceLock<Streaming> = OnceLock::new();
        SERVER.get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            let (server, sandbox, container) = runtime.block_on(async {
                let fake = Arc::new(cri_testkit::FakeRuntime::builder().image("busybox").build());
                let (sandbox, container) = running_container(&fake).await;
                let config = cri_streaming::Config {
                    token_ttl: Duration::from_secs(5),
                    max_tokens: 1_000_000,
                    stream_creation_timeout: Duration::from_millis(200),
                    ..cri_streaming::Config::default()
                };
                let server = cri_streaming::Server::start(fake, config)
                    .await
                    .expect("streaming server on loopback");
                (server, sandbox, container)
            });
            let addr = server.local_addr();
            Streaming {
                runtime,
                server,
                addr,
                sandbox,
                container,
            }
        })
    }

    /// Mints a token for `kind`, puts its path where `raw` has [`PATH_MARKER`], sends the
    /// result on a fresh loopback connection, half-closes, and reads the answer (for at most
    /// `wait`). Returns the first bytes of the answer.
    pub fn request(&self, kind: Kind, raw: &[u8], wait: Duration) -> Vec<u8> {
        let url = match kind {
            Kind::Exec => self.server.exec_url(ExecRequest {
                container_id: self.container.clone(),
                cmd: vec!["cat".into()],
                stdin: true,
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
            Kind::Attach => self.server.attach_url(AttachRequest {
                container_id: self.container.clone(),
                stdin: true,
                stdout: true,
                ..Default::default()
            }),
            Kind::PortForward => self.server.port_forward_url(PortForwardRequest {
                pod_sandbox_id: self.sandbox.clone(),
                port: vec![80],
            }),
        };
        let Ok(url) = url else { return Vec::new() };
        let path = url
            .splitn(4, '/')
            .nth(3)
            .map(|p| format!("/{p}"))
            .unwrap_or_default();
        let request = match raw
            .windows(PATH_MARKER.len())
            .position(|w| w == PATH_MARKER)
        {
            Some(at) => [&raw[..at], path.as_bytes(), &raw[at + PATH_MARKER.len()..]].concat(),
            None => raw.to_vec(),
        };
        self.runtime.block_on(async {
            let Ok(tcp) = tokio::net::TcpStream::connect(self.addr).await else {
                return Vec::new();
            };
            let (read, mut write) = tcp.into_split();
            let exchange = async {
                let send = async {
                    let _ = write.write_all(&request).await;
                    let _ = write.shutdown().await;
                };
                let ((), answer) = tokio::join!(send, drain(read, 256));
                answer
            };
            tokio::time::timeout(wait, exchange)
                .await
                .unwrap_or_default()
        })
    }
}

/// A pod with one running container (`busybox`, `sleep`) in `fake`: exec and attach sessions
/// on it reach the runtime. Returns the sandbox and container ids.
async fn running_container(fake: &cri_testkit::FakeRuntime) -> (String, String) {
    use cri_api::v1::{
        ContainerConfig, ContainerMetadata, CreateContainerRequest, ImageSpec, PodSandboxConfig,
        PodSandboxMetadata, RunPodSandboxRequest, StartContainerRequest,
    };
    use cri_server::{Context, RuntimeService};
    let pod_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "fuzz".into(),
            uid: "fuzz-uid".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        ..Default::default()
    };
    let sandbox = fake
        .run_pod_sandbox(
            Context::new("RunPodSandbox"),
            RunPodSandboxRequest {
                config: Some(pod_config.clone()),
                ..Default::default()
            },
        )
        .await
        .expect("RunPodSandbox")
        .pod_sandbox_id;
    let container = fake
        .create_container(
            Context::new("CreateContainer"),
            CreateContainerRequest {
                pod_sandbox_id: sandbox.clone(),
                config: Some(ContainerConfig {
                    metadata: Some(ContainerMetadata {
                        name: "main".into(),
                        attempt: 0,
                    }),
                    image: Some(ImageSpec {
                        image: "busybox".into(),
                        ..Default::default()
                    }),
                    command: vec!["sleep".into(), "1000000".into()],
                    stdin: true,
                    ..Default::default()
                }),
                sandbox_config: Some(pod_config),
            },
        )
        .await
        .expect("CreateContainer")
        .container_id;
    fake.start_container(
        Context::new("StartContainer"),
        StartContainerRequest {
            container_id: container.clone(),
        },
    )
    .await
    .expect("StartContainer");
    (sandbox, container)
}

/// Runs `f` with the thread's filesystem uid and gid set to `nobody` (65534) when the
/// process runs as root, so that a bug that writes outside its target cannot damage the
/// machine (only world-writable places are writable); restores them afterwards.
pub fn as_nobody<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: setfsuid/setfsgid only change this thread's filesystem credentials.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        #[allow(unsafe_code)]
        unsafe {
            libc::setfsgid(65534);
            libc::setfsuid(65534);
        }
    }
    let out = f();
    if root {
        #[allow(unsafe_code)]
        unsafe {
            libc::setfsuid(0);
            libc::setfsgid(0);
        }
    }
    out
}

/// Writes `bytes` to `writer`, ignoring errors (the peer may have gone).
pub async fn send_all<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) {
    let _ = writer.write_all(bytes).await;
}
