//! Shared pieces of the integration tests: a configurable test runtime and a harness that
//! serves it on a temporary Unix socket.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cri_server::cri_api::v1::image_service_client::ImageServiceClient;
use cri_server::cri_api::v1::runtime_service_client::RuntimeServiceClient;
use cri_server::cri_api::v1::*;
use cri_server::{
    Context, Error, EventBroadcaster, ImageService, ResponseStream, Result, RuntimeService, Server,
    async_trait,
};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tonic::transport::{Channel, Endpoint, Uri};

/// A runtime whose behaviour the tests choose.
#[derive(Default)]
pub struct TestRuntime {
    /// How many containers `list_containers` returns.
    pub containers: usize,
    /// Bytes of padding in each listed container's labels.
    pub padding: usize,
    /// Calls that reached the runtime (after validation).
    pub calls: AtomicUsize,
    pub events: EventBroadcaster,
}

pub fn version() -> VersionResponse {
    VersionResponse {
        version: "0.1.0".into(),
        runtime_name: "test".into(),
        runtime_version: "1.2.3".into(),
        runtime_api_version: "v1".into(),
    }
}

#[async_trait]
impl RuntimeService for TestRuntime {
    async fn version(&self, _: Context, _: VersionRequest) -> Result<VersionResponse> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(version())
    }

    async fn run_pod_sandbox(
        &self,
        _: Context,
        req: RunPodSandboxRequest,
    ) -> Result<RunPodSandboxResponse> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let name = req.config.unwrap().metadata.unwrap().name;
        Ok(RunPodSandboxResponse {
            pod_sandbox_id: format!("sandbox-{name}"),
        })
    }

    async fn container_status(
        &self,
        _: Context,
        req: ContainerStatusRequest,
    ) -> Result<ContainerStatusResponse> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(Error::not_found(format!(
            "container {:?} not found",
            req.container_id
        )))
    }

    async fn list_containers(
        &self,
        _: Context,
        _: ListContainersRequest,
    ) -> Result<ListContainersResponse> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let pad = "x".repeat(self.padding);
        Ok(ListContainersResponse {
            containers: (0..self.containers)
                .map(|i| Container {
                    id: format!("container-{i:05}"),
                    pod_sandbox_id: "sandbox-1".into(),
                    labels: [("pad".to_string(), pad.clone())].into(),
                    ..Default::default()
                })
                .collect(),
        })
    }

    /// `cmd[0]` chooses: `sleep MS`, `panic`, `echo ...`.
    async fn exec_sync(&self, ctx: Context, req: ExecSyncRequest) -> Result<ExecSyncResponse> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match req.cmd[0].as_str() {
            "sleep" => {
                let ms: u64 = req.cmd[1].parse().unwrap();
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(ExecSyncResponse::default())
            }
            "panic" => panic!("boom in exec_sync"),
            "whoami" => Ok(ExecSyncResponse {
                stdout: format!("{:?} {}", ctx.peer().map(|p| p.uid), ctx.request_id())
                    .into_bytes(),
                ..Default::default()
            }),
            _ => Ok(ExecSyncResponse {
                stdout: req.cmd[1..].join(" ").into_bytes(),
                ..Default::default()
            }),
        }
    }

    async fn get_container_events(
        &self,
        _: Context,
        _: GetEventsRequest,
    ) -> Result<ResponseStream<ContainerEventResponse>> {
        Ok(self.events.subscribe())
    }
}

#[async_trait]
impl ImageService for TestRuntime {
    async fn image_status(&self, _: Context, _: ImageStatusRequest) -> Result<ImageStatusResponse> {
        Ok(ImageStatusResponse::default())
    }

    async fn pull_image(&self, _: Context, req: PullImageRequest) -> Result<PullImageResponse> {
        Err(Error::RegistryUnavailable(format!(
            "cannot reach registry for {}",
            req.image.unwrap().image
        )))
    }
}

/// A runtime implementing only `version`.
pub struct MinimalRuntime;

#[async_trait]
impl RuntimeService for MinimalRuntime {
    async fn version(&self, _: Context, _: VersionRequest) -> Result<VersionResponse> {
        Ok(version())
    }
}

/// A server on a temporary socket, stopped and cleaned up on drop.
pub struct Running {
    pub path: PathBuf,
    pub metrics: cri_server::Metrics,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Requests shutdown and waits for the server to finish.
    pub async fn shutdown(mut self) -> Result<()> {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap()
    }

    pub fn trigger_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn channel(&self) -> Channel {
        connect(&self.path).await
    }

    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel().await)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    pub async fn image(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel().await)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.trigger_shutdown();
    }
}

/// Serves `server` on a fresh temporary socket.
pub fn serve(server: Server) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/cri.sock");
    let bound = server.bind(&path).unwrap();
    let metrics = bound.metrics();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(bound.serve_with_shutdown(async move {
        let _ = stopped.await;
    }));
    Running {
        path,
        metrics,
        stop: Some(stop),
        task: Some(task),
        _dir: dir,
    }
}

pub fn test_runtime(containers: usize) -> Arc<TestRuntime> {
    Arc::new(TestRuntime {
        containers,
        ..Default::default()
    })
}

/// A tonic channel over the Unix socket at `path`, as a modern client connects.
pub async fn connect(path: &Path) -> Channel {
    let path = path.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
        .unwrap()
}
