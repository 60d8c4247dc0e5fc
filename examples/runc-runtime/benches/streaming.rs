//! Streaming throughput with real containers on both sides: runc-runtime against containerd
//! 1.6, the same busybox container command, read and written by the same client (ours), in
//! alternating rounds of one run.
//!
//! `cargo bench -p runc-runtime --bench streaming` (as root, with the containerd peer running:
//! `scripts/containerd-peer start` and its `env` exported). Workloads, each over SPDY and over
//! WebSocket, `STREAM_MIB` MiB (default 256) per session, each moved by two tools in the
//! container: busybox `head -c` (what issue #18 measured; it reads and writes 4 KiB at a time
//! and is itself the bound) and busybox `dd bs=128k` (rows ending in `-dd`):
//!
//! - **stdout**: the tool writes N zeros, read by the client (into a counting writer, as for
//!   attach);
//! - **stdin**: the client writes N bytes, which the tool reads and discards; it exits once
//!   it has them (so no end-of-stdin signal is needed, which containerd's WebSocket cannot
//!   give) and says how many it got (`wc -c`, `dd`'s record count), which is checked;
//! - **port-forward**: a connection through the port-forward session to `nc -e` in the pod,
//!   whose tool sends N zeros;
//! - **attach**: a new container per session whose main process waits for a line on its
//!   stdin, then runs the tool writing N zeros; the client attaches (stdin and stdout), sends
//!   the line and reads until the container exits. Its output also goes to the container's
//!   CRI log, on both runtimes (the log is deleted after each session).
//!
//! The table gives medians of `STREAM_ROUNDS` (default 5) in MiB/s, the ratio ours /
//! containerd (above 1 is faster), and "alone": the tool moving N bytes from `/dev/zero` to
//! `/dev/null` inside runc-runtime's container (through ExecSync), the most any transport
//! could carry from it. `STREAM_ONLY` picks rows by name, comma-separated
//! (`STREAM_ONLY=stdout-dd-spdy,stdin-websocket`), e.g. to profile one of them. For the
//! in-process ceiling of the streaming server and client alone, with no container behind
//! them, see `cargo bench -p cri-client --bench streaming`; for the `cri` command itself,
//! `scripts/stream-cli-bench`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cri_testkit::cri_client::Client;
use cri_testkit::cri_client::cri_api::v1::*;
use cri_testkit::cri_client::streaming::{Streams, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Numbers the attach workload's containers (names are unique in a pod).
static ATTACHED: AtomicUsize = AtomicUsize::new(0);

/// A session that has not finished by then is reported as an error, not waited for.
const SESSION_LIMIT: Duration = Duration::from_secs(120);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Stdout,
    Stdin,
    PortForward,
    Attach,
}

/// What moves the bytes in the container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    /// busybox `head -c`: what issue #18 measured; it reads and writes 4 KiB at a time and
    /// is itself the bound (see the "alone" column).
    Head,
    /// busybox `dd bs=128k`: the same bytes from a tool that is not the bound.
    Dd,
}

impl Workload {
    fn name(self, tool: Tool) -> String {
        let base = match self {
            Workload::Stdout => "stdout",
            Workload::Stdin => "stdin",
            Workload::PortForward => "port-forward",
            Workload::Attach => "attach",
        };
        match tool {
            Tool::Head => base.to_string(),
            Tool::Dd => format!("{base}-dd"),
        }
    }
}

impl Tool {
    /// The command that writes `bytes` zeros to its stdout.
    fn producer(self, bytes: usize) -> Vec<String> {
        let words = match self {
            Tool::Head => format!("head -c {bytes} /dev/zero"),
            Tool::Dd => format!("dd if=/dev/zero bs={DD_BLOCK} count={}", bytes / DD_BLOCK),
        };
        words.split(' ').map(String::from).collect()
    }

    /// A shell command that reads `bytes` from its stdin, discards them and prints evidence
    /// of how many it got (checked by [`Tool::received`]); it exits once it has them, so no
    /// end-of-stdin signal is needed (containerd's WebSocket cannot give one).
    fn consumer(self, bytes: usize) -> String {
        match self {
            Tool::Head => format!("head -c {bytes} | wc -c"),
            Tool::Dd => format!(
                "dd of=/dev/null bs={DD_BLOCK} count={} iflag=fullblock 2>&1",
                bytes / DD_BLOCK
            ),
        }
    }

    /// The bytes the consumer says it got: `wc -c`'s count, or `dd`'s full blocks ("K+0
    /// records in").
    fn received(self, printed: &str) -> Option<usize> {
        match self {
            Tool::Head => printed.trim().parse().ok(),
            Tool::Dd => {
                let line = printed.lines().find(|l| l.ends_with("records in"))?;
                let (full, rest) = line.split_once('+')?;
                rest.starts_with("0 ")
                    .then(|| full.parse::<usize>().ok().map(|k| k * DD_BLOCK))?
            }
        }
    }
}

/// `dd`'s block size: one `write(2)` per block (coreutils `cat` copies 128 KiB at a time too).
const DD_BLOCK: usize = 128 * 1024;

/// A host-network pod with a `sleep` container and two `nc` servers (one sending with
/// `head`, one with `dd`) in one runtime.
struct Target {
    name: &'static str,
    client: Client,
    pod: String,
    config: PodSandboxConfig,
    image: String,
    container: String,
    /// The servers' ports: `head`, `dd`.
    ports: [u16; 2],
}

impl Target {
    fn port(&self, tool: Tool) -> u16 {
        self.ports[tool as usize]
    }

    /// Creates and starts a container named `name` in the pod, with stdin open when `stdin`.
    async fn run(&self, name: &str, command: Vec<String>, stdin: bool) -> String {
        let container = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.to_string(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: self.image.clone(),
                ..Default::default()
            }),
            command,
            log_path: format!("{name}.log"),
            stdin,
            stdin_once: stdin,
            ..Default::default()
        };
        let id = self
            .client
            .create_container(&self.pod, container, Some(self.config.clone()))
            .await
            .unwrap_or_else(|e| panic!("{}: CreateContainer: {e}", self.name));
        self.client
            .start_container(&id)
            .await
            .unwrap_or_else(|e| panic!("{}: StartContainer: {e}", self.name));
        id
    }

    /// Removes a container and its log.
    async fn remove(&self, id: &str, name: &str) {
        let _ = self.client.stop_container(id, Duration::ZERO).await;
        let _ = self.client.remove_container(id).await;
        let _ = std::fs::remove_file(
            std::path::Path::new(&self.config.log_directory).join(format!("{name}.log")),
        );
    }
}

async fn target(
    name: &'static str,
    client: Client,
    image: &str,
    log_dir: &std::path::Path,
    port: u16,
    bytes: usize,
) -> Target {
    let unique = format!("stream-bench-{name}-{}", std::process::id());
    let config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: unique.clone(),
            namespace: "bench".into(),
            uid: unique.clone(),
            attempt: 0,
        }),
        log_directory: log_dir.join(&unique).display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("/cri-bench/{unique}"),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    std::fs::create_dir_all(&config.log_directory).unwrap();
    let pod = client
        .run_pod_sandbox(config.clone(), "")
        .await
        .unwrap_or_else(|e| panic!("{name}: RunPodSandbox: {e}"));
    let mut target = Target {
        name,
        client,
        pod,
        config,
        image: image.to_string(),
        container: String::new(),
        ports: [port, port + 2],
    };
    target.container = target
        .run("sleeper", vec!["sleep".into(), "3600".into()], false)
        .await;
    for (server, tool) in [("server-head", Tool::Head), ("server-dd", Tool::Dd)] {
        let mut nc: Vec<String> = ["nc", "-ll", "-p", &target.port(tool).to_string(), "-e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        nc.extend(tool.producer(bytes));
        target.run(server, nc, false).await;
    }
    target
}

/// The client's output stream as `/dev/null` with a count: takes every write whole, so the
/// client's side of a session costs only the transport (a pipe to a counting task would add
/// two copies and a task, the same for both runtimes, on a machine both sides share).
#[derive(Clone, Default)]
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn total(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        bytes: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.fetch_add(bytes.len(), Ordering::AcqRel);
        std::task::Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Counts what a reader yields until EOF.
async fn drain(mut reader: impl tokio::io::AsyncRead + Unpin) -> usize {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return total,
            Ok(n) => total += n,
        }
    }
}

/// One session of `workload` moved by `tool`; returns MiB/s, or what went wrong.
async fn measure(
    target: &Target,
    workload: Workload,
    tool: Tool,
    transport: Transport,
    bytes: usize,
) -> Result<f64, String> {
    let started = Instant::now();
    let moved = match workload {
        Workload::Stdout => {
            let counted = Counted::default();
            let code = target
                .client
                .exec(
                    &target.container,
                    tool.producer(bytes),
                    transport,
                    Streams {
                        stdout: Some(Box::pin(counted.clone())),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| format!("exec: {e}"))?;
            if code != 0 {
                return Err(format!("exit code {code}"));
            }
            counted.total()
        }
        Workload::Stdin => {
            let (mut writer, reader) = tokio::io::duplex(256 * 1024);
            let feeder = tokio::spawn(async move {
                let chunk = vec![0u8; 256 * 1024];
                let mut left = bytes;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if writer.write_all(&chunk[..n]).await.is_err() {
                        break;
                    }
                    left -= n;
                }
                // Held open: the consumer exits once it has read its bytes.
                tokio::time::sleep(Duration::from_secs(600)).await;
            });
            let (out, counted) = tokio::io::duplex(4096);
            let count = tokio::spawn(async move {
                let mut text = String::new();
                let mut counted = counted;
                let _ = counted.read_to_string(&mut text).await;
                text
            });
            // The consumer says how many bytes it really got (an early end of stdin would
            // make it succeed with fewer).
            let code = target
                .client
                .exec(
                    &target.container,
                    ["sh", "-c", &tool.consumer(bytes)],
                    transport,
                    Streams {
                        stdin: Some(Box::pin(reader)),
                        stdout: Some(Box::pin(out)),
                        ..Default::default()
                    },
                )
                .await;
            feeder.abort();
            let code = code.map_err(|e| format!("exec with stdin: {e}"))?;
            if code != 0 {
                return Err(format!("exit code {code}"));
            }
            let text = count.await.unwrap();
            tool.received(&text)
                .ok_or_else(|| format!("the consumer printed {text:?}"))?
        }
        Workload::PortForward => {
            let forward = target
                .client
                .port_forward(&target.pod, &[target.port(tool)], transport)
                .await
                .map_err(|e| format!("port-forward: {e}"))?;
            let conn = forward
                .connect(target.port(tool))
                .await
                .map_err(|e| format!("port-forward connect: {e}"))?;
            drain(conn).await
        }
        Workload::Attach => {
            let name = format!("attached-{}", ATTACHED.fetch_add(1, Ordering::Relaxed));
            let command = format!("read line && exec {}", tool.producer(bytes).join(" "));
            let id = target
                .run(&name, vec!["sh".into(), "-c".into(), command], true)
                .await;
            let (mut go, stdin) = tokio::io::duplex(64);
            go.write_all(b"go\n").await.unwrap();
            let counted = Counted::default();
            let started_here = Instant::now();
            let attached = target
                .client
                .attach(
                    &id,
                    transport,
                    Streams {
                        stdin: Some(Box::pin(stdin)),
                        stdout: Some(Box::pin(counted.clone())),
                        ..Default::default()
                    },
                )
                .await;
            let secs = started_here.elapsed().as_secs_f64();
            drop(go);
            let moved = counted.total();
            target.remove(&id, &name).await;
            attached.map_err(|e| format!("attach: {e}"))?;
            if moved != bytes {
                return Err(format!("{moved} of {bytes} bytes arrived"));
            }
            return Ok(bytes as f64 / (1 << 20) as f64 / secs);
        }
    };
    let secs = started.elapsed().as_secs_f64();
    if moved != bytes {
        return Err(format!("{moved} of {bytes} bytes arrived"));
    }
    Ok(bytes as f64 / (1 << 20) as f64 / secs)
}

/// The producer alone, its output to `/dev/null` inside the container (through ExecSync in
/// runc-runtime's container): the most any transport could carry from it, in MiB/s.
async fn alone(target: &Target, producer: &str, bytes: usize) -> Result<f64, String> {
    let started = Instant::now();
    let out = target
        .client
        .exec_sync(
            &target.container,
            ["sh", "-c", &format!("{producer} > /dev/null")],
            SESSION_LIMIT,
        )
        .await
        .map_err(|e| format!("exec_sync: {e}"))?;
    if out.exit_code != 0 {
        return Err(format!("exit code {}", out.exit_code));
    }
    Ok(bytes as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    common::until_interrupted(run()).await;
}

async fn run() {
    let Some(images) = common::requirements() else {
        return;
    };
    let Some(peer) = cri_testkit::peer::containerd() else {
        eprintln!("no containerd peer: nothing to compare against");
        return;
    };
    peer.reimport_images()
        .expect("importing images into containerd");
    let bytes = env_usize("STREAM_MIB", 256) << 20;
    let rounds = env_usize("STREAM_ROUNDS", 5);

    let ours = common::Runtime::start(common::Options {
        imports: vec![images.dir.join("busybox.tar"), images.dir.join("pause.tar")],
        ..Default::default()
    })
    .await;
    let containerd = Client::connect(&peer.endpoint)
        .await
        .expect("connecting to containerd");
    let logs = tempfile::tempdir().unwrap();
    let base = 21000 + (std::process::id() % 2000) as u16 * 2;
    let targets = [
        target(
            "runc-runtime",
            ours.client.clone(),
            &images.busybox,
            logs.path(),
            base,
            bytes,
        )
        .await,
        target(
            "containerd",
            containerd,
            &peer.image,
            logs.path(),
            base + 1,
            bytes,
        )
        .await,
    ];
    // The servers listen once their containers run.
    tokio::time::sleep(Duration::from_millis(500)).await;

    println!(
        "\nstreaming throughput, {} MiB per session, median of {rounds} alternating rounds, \
         real busybox containers, host-network pods, our client (MiB/s)\n",
        bytes >> 20
    );
    println!(
        "{:<16} {:<10} {:>13} {:>11} {:>7} {:>7}",
        "workload", "transport", "runc-runtime", "containerd", "ratio", "alone"
    );
    let only = std::env::var("STREAM_ONLY").unwrap_or_default();
    let picked = |workload: Workload, tool: Tool, transport: Transport| {
        let name = format!("{}-{transport:?}", workload.name(tool)).to_lowercase();
        only.is_empty()
            || only
                .split(',')
                .any(|o| o.trim().eq_ignore_ascii_case(&name))
    };
    let rows = [
        Workload::Stdout,
        Workload::Stdin,
        Workload::PortForward,
        Workload::Attach,
    ]
    .into_iter()
    .flat_map(|workload| [Tool::Head, Tool::Dd].map(|tool| (workload, tool)))
    .flat_map(|(workload, tool)| {
        [Transport::Spdy, Transport::WebSocket].map(|transport| (workload, tool, transport))
    });
    for (workload, tool, transport) in rows {
        if !picked(workload, tool, transport) {
            continue;
        }
        let mut runs = [Vec::new(), Vec::new()];
        let mut errors: [Option<String>; 2] = [None, None];
        let mut alone_runs = Vec::new();
        for round in 0..rounds {
            match alone(&targets[0], &tool.producer(bytes).join(" "), bytes).await {
                Ok(rate) => alone_runs.push(rate),
                Err(e) => println!("    alone: {e}"),
            }
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for index in order {
                let session = measure(&targets[index], workload, tool, transport, bytes);
                match tokio::time::timeout(SESSION_LIMIT, session).await {
                    Ok(Ok(rate)) => runs[index].push(rate),
                    Ok(Err(e)) => {
                        errors[index].get_or_insert(e);
                    }
                    Err(_) => {
                        errors[index].get_or_insert(format!(
                            "the session did not finish within {SESSION_LIMIT:?}"
                        ));
                    }
                }
            }
        }
        let cell = |index: usize| match (&errors[index], runs[index].is_empty()) {
            (Some(_), _) | (None, true) => "error".to_string(),
            (None, false) => format!("{:.0}", median(runs[index].clone())),
        };
        let ratio = match (errors[0].is_none(), errors[1].is_none()) {
            (true, true) => {
                format!("{:.2}x", median(runs[0].clone()) / median(runs[1].clone()))
            }
            _ => "-".to_string(),
        };
        let alone_cell = if alone_runs.is_empty() {
            "error".to_string()
        } else {
            format!("{:.0}", median(alone_runs))
        };
        println!(
            "{:<16} {:<10} {:>13} {:>11} {:>7} {:>7}",
            workload.name(tool),
            format!("{transport:?}"),
            cell(0),
            cell(1),
            ratio,
            alone_cell
        );
        for (target, error) in targets.iter().zip(&errors) {
            if let Some(error) = error {
                println!("    {}: {error}", target.name);
            }
        }
    }

    for target in &targets {
        let _ = target.client.stop_pod_sandbox(&target.pod).await;
        let _ = target.client.remove_pod_sandbox(&target.pod).await;
    }
    ours.shutdown().await;
}
