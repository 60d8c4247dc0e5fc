//! cri-server against a bare tonic server with the same handler logic, over Unix sockets, in
//! the same run.
//!
//! Run: `cargo bench -p cri-server --bench server` (add `-- --quick` for a short run).
//!
//! Three workloads, each measured in alternating rounds (ours, bare, ours, bare, ...) so that
//! machine noise hits both sides alike; each figure is the median over rounds:
//! - `Version`, one call in flight: mean latency per call;
//! - `Version`, 32 calls in flight: calls per second;
//! - `ListContainers` returning 1000 containers, one in flight: mean latency per call.
//!
//! Ratios are ours / bare for latencies and ours / bare for throughput. Targets: latency
//! <= 1.10x, throughput >= 0.90x, list <= 1.05x.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cri_server::cri_api::v1::runtime_service_client::RuntimeServiceClient;
use cri_server::cri_api::v1::runtime_service_server::{self, RuntimeServiceServer};
use cri_server::cri_api::v1::*;
use cri_server::{Context, Result, RuntimeService, Server, async_trait};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tonic::transport::{Channel, Endpoint, Uri};

/// The handler logic both servers share.
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

async fn sequential_version(client: &RuntimeServiceClient<Channel>, calls: u32) -> Duration {
    let mut client = client.clone();
    let start = Instant::now();
    for _ in 0..calls {
        client
            .version(VersionRequest::default())
            .await
            .expect("version");
    }
    start.elapsed() / calls
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
    let start = Instant::now();
    for _ in 0..calls {
        let list = client
            .list_containers(ListContainersRequest::default())
            .await
            .expect("list");
        assert_eq!(list.get_ref().containers.len(), 1000);
    }
    start.elapsed() / calls
}

fn median<T: PartialOrd + Copy>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    values[values.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, version_calls, parallel_calls, list_calls) = if quick {
        (3, 2_000, 8_000, 100)
    } else {
        (9, 10_000, 40_000, 400)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let dir = std::env::temp_dir().join(format!("cri-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let logic = Arc::new(Logic::new());

        let ours_path: PathBuf = dir.join("ours.sock");
        let ours = Server::builder()
            .runtime(Ours(logic.clone()))
            .build()
            .expect("build")
            .bind(&ours_path)
            .expect("bind");
        tokio::spawn(ours.serve_with_shutdown(std::future::pending()));

        let bare_path = dir.join("bare.sock");
        let listener = UnixListener::bind(&bare_path).expect("bind bare");
        let bare = RuntimeServiceServer::new(Bare(logic))
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(16 << 20);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(bare)
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
        );

        let ours = connect(&ours_path).await;
        let bare = connect(&bare_path).await;
        // Warm up both paths.
        for client in [&ours, &bare] {
            sequential_version(client, 500).await;
            sequential_list(client, 20).await;
        }

        let mut latency = (Vec::new(), Vec::new());
        let mut throughput = (Vec::new(), Vec::new());
        let mut list = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            latency
                .0
                .push(sequential_version(&ours, version_calls).await);
            latency
                .1
                .push(sequential_version(&bare, version_calls).await);
            throughput
                .0
                .push(parallel_version(&ours, parallel_calls).await);
            throughput
                .1
                .push(parallel_version(&bare, parallel_calls).await);
            list.0.push(sequential_list(&ours, list_calls).await);
            list.1.push(sequential_list(&bare, list_calls).await);
        }
        let (lo, lb) = (median(latency.0), median(latency.1));
        let (to, tb) = (median(throughput.0), median(throughput.1));
        let (so, sb) = (median(list.0), median(list.1));
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        println!("cri-server vs bare tonic, Unix sockets, median of {rounds} alternating rounds");
        println!(
            "{:<34} {:>14} {:>14} {:>8} {:>8}",
            "workload", "cri-server", "bare tonic", "ratio", "target"
        );
        println!(
            "{:<34} {:>11.1} µs {:>11.1} µs {:>7.3}x {:>8}",
            "Version, 1 in flight (latency)",
            lo.as_secs_f64() * 1e6,
            lb.as_secs_f64() * 1e6,
            ratio(lo, lb),
            "<= 1.10"
        );
        println!(
            "{:<34} {:>10.0} /s {:>10.0} /s {:>7.3}x {:>8}",
            "Version, 32 in flight (throughput)",
            to,
            tb,
            to / tb,
            ">= 0.90"
        );
        println!(
            "{:<34} {:>11.1} µs {:>11.1} µs {:>7.3}x {:>8}",
            "ListContainers 1000 (latency)",
            so.as_secs_f64() * 1e6,
            sb.as_secs_f64() * 1e6,
            ratio(so, sb),
            "<= 1.05"
        );
        let _ = std::fs::remove_dir_all(&dir);
    });
}
