//! cri-server against a bare tonic server with the same handler logic, over Unix sockets, in
//! the same run, with logging and metrics on as a runtime binary has them.
//!
//! Run: `cargo bench -p cri-server --bench server` (add `-- --quick` for a short run,
//! `-- --rounds N` to choose the number of rounds).
//!
//! Three servers in one process:
//! - `bare`: tonic's generated server with the handler logic, nothing else;
//! - `cri-server`: the same logic behind [`cri_server::Server`] (context, validation,
//!   deadline, panic isolation, tracing span, metrics);
//! - `memory-runtime`: `examples/memory-runtime.rs`'s configuration, the testkit's
//!   `FakeRuntime` (with its call log and fault injection) behind `cri_server::Server` with a
//!   streaming server.
//!
//! A global tracing subscriber as `cri_server::logging::init` installs it (`fmt`, `info`
//! filter) writes to `io::sink`; it applies to all three servers (and to the client).
//! `-- --no-tracing` leaves it out, to see what the span costs.
//!
//! Workloads, each measured in many short alternating rounds (within a round each workload
//! runs on the three servers back to back, in an order that rotates every round) so that
//! machine noise hits every side alike:
//! - `Version`, one call in flight: p50 latency of the round;
//! - `Version`, 32 calls in flight: calls per second;
//! - `ListContainers` returning 1000 containers, one in flight: p50 latency (not for
//!   `memory-runtime`, whose list is its own logic).
//!
//! Each figure is the median over rounds; each ratio is the median of the per-round ratios
//! against `bare` (with their interquartile range, the noise). Targets (issue #16): `cri-server` `Version`
//! p50 <= 1.03x and throughput >= 1.0x, `memory-runtime` `Version` p50 <= 1.05x,
//! `ListContainers` p50 <= 1.0x.
//!
//! For profiling, `-- --serve KIND PATH` serves one server (`bare`, `ours`, `fake`) on `PATH`
//! until killed, `-- --load PATH SECONDS` calls `Version` on it for that long and
//! `-- --count PATH CALLS` that many times (for instruction counts under callgrind).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cri_server::cri_api::v1::runtime_service_client::RuntimeServiceClient;
use cri_server::cri_api::v1::runtime_service_server::{self, RuntimeServiceServer};
use cri_server::cri_api::v1::*;
use cri_server::{Context, Result, RuntimeService, Server, async_trait};
use cri_testkit::FakeRuntime;
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tonic::transport::{Channel, Endpoint, Uri};

/// The handler logic the first two servers share.
struct Logic {
    containers: ListContainersResponse,
}

impl Logic {
    fn new() -> Self {
        let containers = (0..1000)
            .map(|i| Container {
                id: format!("{i:064x}"),
                pod_sandbox_id: format!("{:064x}", i / 4),
                metadata: Some(ContainerMetadata {
                    name: format!("container-{i}"),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: "registry.k8s.io/pause:3.10".into(),
                    ..Default::default()
                }),
                image_ref: format!("sha256:{i:064x}"),
                state: ContainerState::ContainerRunning as i32,
                created_at: 1_700_000_000_000_000_000 + i,
                labels: [
                    (
                        "io.kubernetes.pod.name".to_string(),
                        format!("pod-{}", i / 4),
                    ),
                    (
                        "io.kubernetes.pod.namespace".to_string(),
                        "default".to_string(),
                    ),
                ]
                .into(),
                ..Default::default()
            })
            .collect();
        Self {
            containers: ListContainersResponse { containers },
        }
    }

    fn version(&self) -> VersionResponse {
        VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "bench".into(),
            runtime_version: "0.1.0".into(),
            runtime_api_version: "v1".into(),
        }
    }
}

struct Ours(Arc<Logic>);

#[async_trait]
impl RuntimeService for Ours {
    async fn version(&self, _: Context, _: VersionRequest) -> Result<VersionResponse> {
        Ok(self.0.version())
    }

    async fn list_containers(
        &self,
        _: Context,
        _: ListContainersRequest,
    ) -> Result<ListContainersResponse> {
        Ok(self.0.containers.clone())
    }
}

struct Bare(Arc<Logic>);

#[tonic::async_trait]
impl runtime_service_server::RuntimeService for Bare {
    async fn version(
        &self,
        _: tonic::Request<VersionRequest>,
    ) -> std::result::Result<tonic::Response<VersionResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.0.version()))
    }

    async fn list_containers(
        &self,
        _: tonic::Request<ListContainersRequest>,
    ) -> std::result::Result<tonic::Response<ListContainersResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.0.containers.clone()))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Bare,
    Ours,
    Fake,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Bare => "bare tonic",
            Self::Ours => "cri-server",
            Self::Fake => "memory-runtime",
        }
    }
}

/// Starts serving `kind` on `path` (in the background).
async fn start(kind: Kind, path: &Path, logic: Arc<Logic>) {
    match kind {
        Kind::Bare => {
            let listener = UnixListener::bind(path).expect("bind bare");
            let bare = RuntimeServiceServer::new(Bare(logic))
                .max_decoding_message_size(16 << 20)
                .max_encoding_message_size(16 << 20);
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(bare)
                    .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
            );
        }
        Kind::Ours => {
            let ours = Server::builder()
                .runtime(Ours(logic))
                .build()
                .expect("build")
                .bind(path)
                .expect("bind");
            tokio::spawn(ours.serve_with_shutdown(std::future::pending()));
        }
        Kind::Fake => {
            // As examples/memory-runtime.rs builds it.
            let runtime = Arc::new(
                FakeRuntime::builder()
                    .name("memory-runtime", "0.1.0")
                    .image("busybox")
                    .image("registry.k8s.io/pause:3.10")
                    .build(),
            );
            let streaming = cri_server::cri_streaming::Server::start(
                runtime.clone(),
                cri_server::cri_streaming::Config::default(),
            )
            .await
            .expect("streaming server");
            let fake = Server::builder()
                .service(runtime)
                .streaming(streaming)
                .build()
                .expect("build")
                .bind(path)
                .expect("bind");
            tokio::spawn(fake.serve_with_shutdown(std::future::pending()));
        }
    }
}

/// The subscriber `cri_server::logging::init` installs, writing to a sink.
fn install_subscriber() {
    let filter = tracing_subscriber::EnvFilter::new("info");
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(cri_server::logging::TextFields)
        .with_ansi(false)
        .with_writer(std::io::sink)
        .init();
}

async fn connect(path: &Path) -> RuntimeServiceClient<Channel> {
    let path = path.to_path_buf();
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
        .expect("connect");
    RuntimeServiceClient::new(channel)
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20)
}

fn p50(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

async fn sequential_version(client: &RuntimeServiceClient<Channel>, calls: u32) -> Duration {
    let mut client = client.clone();
    let mut samples = Vec::with_capacity(calls as usize);
    for _ in 0..calls {
        let start = Instant::now();
        client
            .version(VersionRequest::default())
            .await
            .expect("version");
        samples.push(start.elapsed());
    }
    p50(samples)
}

async fn parallel_version(client: &RuntimeServiceClient<Channel>, calls: u32) -> f64 {
    let in_flight = 32;
    let start = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                for _ in 0..calls / in_flight {
                    client
                        .version(VersionRequest::default())
                        .await
                        .expect("version");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    f64::from(calls / in_flight * in_flight) / start.elapsed().as_secs_f64()
}

async fn sequential_list(client: &RuntimeServiceClient<Channel>, calls: u32) -> Duration {
    let mut client = client.clone();
    let mut samples = Vec::with_capacity(calls as usize);
    for _ in 0..calls {
        let start = Instant::now();
        let list = client
            .list_containers(ListContainersRequest::default())
            .await
            .expect("list");
        samples.push(start.elapsed());
        assert_eq!(list.get_ref().containers.len(), 1000);
    }
    p50(samples)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The first and third quartiles.
fn quartiles(values: &[f64]) -> (f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    (sorted[sorted.len() / 4], sorted[sorted.len() * 3 / 4])
}

/// One workload's figures: per server, one value per round.
#[derive(Default)]
struct Series {
    values: [Vec<f64>; 3],
}

impl Series {
    fn push(&mut self, kind: Kind, value: f64) {
        self.values[kind as usize].push(value);
    }

    /// Prints one row per server other than bare: value, bare's, ratio (median of per-round
    /// ratios) and the quartiles of the per-round ratios (the noise).
    fn print(&self, workload: &str, unit: &str, scale: f64, targets: [Option<&str>; 3]) {
        let bare = &self.values[Kind::Bare as usize];
        for kind in [Kind::Ours, Kind::Fake] {
            let ours = &self.values[kind as usize];
            if ours.is_empty() {
                continue;
            }
            let ratios: Vec<f64> = ours.iter().zip(bare).map(|(o, b)| o / b).collect();
            let (lo, hi) = quartiles(&ratios);
            println!(
                "{:<36} {:<15} {:>10.1} {:<3} {:>10.1} {:<3} {:>7.3}x  {:.3}-{:.3}  {}",
                workload,
                kind.name(),
                median(ours.clone()) * scale,
                unit,
                median(bare.clone()) * scale,
                unit,
                median(ratios),
                lo,
                hi,
                targets[kind as usize].unwrap_or("-"),
            );
        }
    }
}

fn arg_after(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let tracing_on = !args.iter().any(|a| a == "--no-tracing");
    if tracing_on {
        install_subscriber();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Some(kind) = arg_after(&args, "--serve") {
        let path = PathBuf::from(arg_after(&args, &kind).expect("--serve KIND PATH"));
        let kind = match kind.as_str() {
            "bare" => Kind::Bare,
            "ours" => Kind::Ours,
            "fake" => Kind::Fake,
            other => panic!("unknown server kind {other:?}"),
        };
        let _ = std::fs::remove_file(&path);
        runtime.block_on(async move {
            start(kind, &path, Arc::new(Logic::new())).await;
            std::future::pending::<()>().await;
        });
        return;
    }
    if let Some(path) = arg_after(&args, "--count") {
        let calls: u32 = arg_after(&args, &path)
            .and_then(|s| s.parse().ok())
            .expect("--count PATH CALLS");
        runtime.block_on(async move {
            let client = connect(Path::new(&path)).await;
            sequential_version(&client, calls).await;
        });
        return;
    }
    if let Some(path) = arg_after(&args, "--load") {
        let seconds: u64 = arg_after(&args, &path)
            .and_then(|s| s.parse().ok())
            .expect("--load PATH SECONDS");
        runtime.block_on(async move {
            let client = connect(Path::new(&path)).await;
            let end = Instant::now() + Duration::from_secs(seconds);
            let mut calls = 0u64;
            while Instant::now() < end {
                sequential_version(&client, 1000).await;
                calls += 1000;
            }
            println!("{calls} calls");
        });
        return;
    }

    let quick = args.iter().any(|a| a == "--quick");
    // Many short rounds rather than a few long ones: on a shared machine, load comes and goes
    // within seconds, and a short round puts the three servers under the same load.
    let (mut rounds, version_calls, parallel_calls, list_calls) = if quick {
        (5, 1_000, 6_400, 40)
    } else {
        (41, 1_000, 6_400, 40)
    };
    if let Some(n) = arg_after(&args, "--rounds").and_then(|n| n.parse().ok()) {
        rounds = n;
    }
    runtime.block_on(async move {
        let dir = std::env::temp_dir().join(format!("cri-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let logic = Arc::new(Logic::new());
        let kinds = [Kind::Bare, Kind::Ours, Kind::Fake];
        let mut clients = Vec::new();
        for kind in kinds {
            let path = dir.join(format!("{kind:?}.sock"));
            start(kind, &path, logic.clone()).await;
            clients.push(connect(&path).await);
        }
        // Warm up every path.
        for (kind, client) in kinds.iter().zip(&clients) {
            sequential_version(client, 500).await;
            parallel_version(client, 3_200).await;
            if *kind != Kind::Fake {
                sequential_list(client, 20).await;
            }
        }

        let mut latency = Series::default();
        let mut throughput = Series::default();
        let mut list = Series::default();
        for round in 0..rounds {
            let order = |i: usize| kinds[(round + i) % kinds.len()];
            for kind in (0..kinds.len()).map(order) {
                let lat = sequential_version(&clients[kind as usize], version_calls).await;
                latency.push(kind, lat.as_secs_f64());
            }
            for kind in (0..kinds.len()).map(order) {
                let rate = parallel_version(&clients[kind as usize], parallel_calls).await;
                throughput.push(kind, rate);
            }
            for kind in (0..kinds.len()).map(order).filter(|k| *k != Kind::Fake) {
                let lat = sequential_list(&clients[kind as usize], list_calls).await;
                list.push(kind, lat.as_secs_f64());
            }
        }
        println!(
            "vs bare tonic, Unix sockets, {}, metrics on; median of {rounds} alternating rounds",
            if tracing_on {
                "tracing (fmt, info) to a sink"
            } else {
                "no tracing subscriber"
            }
        );
        println!(
            "{:<36} {:<15} {:>14} {:>14} {:>8}  {:<11}  target",
            "workload", "server", "value", "bare tonic", "ratio", "ratio IQR"
        );
        latency.print(
            "Version, 1 in flight (p50)",
            "µs",
            1e6,
            [None, Some("<= 1.03"), Some("<= 1.05")],
        );
        throughput.print(
            "Version, 32 in flight (throughput)",
            "/s",
            1.0,
            [None, Some(">= 1.00"), None],
        );
        list.print(
            "ListContainers 1000 (p50)",
            "µs",
            1e6,
            [None, Some("<= 1.00"), None],
        );
        let _ = std::fs::remove_dir_all(&dir);
    });
}
