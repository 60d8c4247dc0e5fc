//! A CRI proxy — the shim pattern from CRI's history: a server that forwards every call to an
//! upstream runtime, logging method, latency and status, and optionally denying calls by
//! method (`--read-only` denies everything that changes state).
//!
//! Streaming works through it: `Exec`/`Attach`/`PortForward` return the upstream's streaming
//! URL unchanged (clients then talk to the upstream's streaming server directly), and
//! `GetContainerEvents` and the `Stream*` RPCs are relayed message by message.
//!
//! Run, between crictl (or `cri`) and containerd:
//!   cargo run -p cri-examples --example cri-proxy -- \
//!       --socket /tmp/cri-proxy.sock --upstream unix:///run/containerd/containerd.sock
//!   crictl -r unix:///tmp/cri-proxy.sock ps
//! Read-only:
//!   cargo run -p cri-examples --example cri-proxy -- --socket /tmp/ro.sock \
//!       --upstream unix:///run/containerd/containerd.sock --read-only

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use cri_client::Client;
use cri_examples::ServeFlags;
use cri_server::cri_api::v1::image_service_client::ImageServiceClient;
use cri_server::cri_api::v1::runtime_service_client::RuntimeServiceClient;
use cri_server::cri_api::v1::*;
use cri_server::{
    Context, Error, ImageService, ResponseStream, Result, RuntimeService, Server, async_trait,
};
use futures_util::StreamExt;
use tonic::transport::Channel;

/// Methods `--read-only` denies: every call that changes the runtime's state.
const MUTATING: &[&str] = &[
    "RunPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "UpdateContainerResources",
    "ReopenContainerLog",
    "ExecSync",
    "Exec",
    "Attach",
    "PortForward",
    "UpdateRuntimeConfig",
    "CheckpointContainer",
    "CheckpointPod",
    "RestorePod",
    "UpdatePodSandboxResources",
    "PullImage",
    "RemoveImage",
];

/// A logging, filtering CRI proxy: forwards every call to an upstream runtime.
#[derive(Parser, Debug)]
#[command(name = "cri-proxy", version, about)]
struct Args {
    #[command(flatten)]
    serve: ServeFlags,
    /// The runtime to forward to.
    #[arg(long)]
    upstream: String,
    /// The upstream image service, when it differs.
    #[arg(long)]
    upstream_image: Option<String>,
    /// Deny every state-changing method.
    #[arg(long)]
    read_only: bool,
    /// Deny this method (repeatable), e.g. `--deny ExecSync`.
    #[arg(long)]
    deny: Vec<String>,
}

struct Proxy {
    runtime: RuntimeServiceClient<Channel>,
    image: ImageServiceClient<Channel>,
    denied: HashSet<String>,
}

impl Proxy {
    fn check(&self, ctx: &Context) -> Result<()> {
        if self.denied.contains(ctx.method()) {
            tracing::warn!(
                method = ctx.method(),
                request_id = ctx.request_id(),
                "denied"
            );
            return Err(Error::PermissionDenied(format!(
                "{} is denied by this proxy",
                ctx.method()
            )));
        }
        Ok(())
    }

    /// The request with the caller's remaining deadline, so the upstream gives up when the
    /// caller does.
    fn request<T>(ctx: &Context, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(remaining) = ctx.remaining() {
            request.set_timeout(remaining);
        }
        request
    }

    fn log(ctx: &Context, started: Instant, outcome: std::result::Result<(), &tonic::Status>) {
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        match outcome {
            Ok(()) => tracing::info!(method = ctx.method(), latency_ms, code = "OK", "forwarded"),
            Err(status) => tracing::info!(
                method = ctx.method(),
                latency_ms,
                code = ?status.code(),
                message = status.message(),
                "forwarded"
            ),
        }
    }
}

/// Relays an upstream stream, ending with the upstream's error if it fails.
fn relay<T: Send + 'static>(stream: tonic::Streaming<T>) -> ResponseStream<T> {
    Box::pin(stream.map(|item| item.map_err(Error::Status)))
}

macro_rules! forward {
    (
        $trait:ident via $stub:ident;
        unary { $($m:ident($req:ty) -> $resp:ty;)* }
        streams { $($s:ident($sreq:ty) -> $sresp:ty;)* }
    ) => {
        #[async_trait]
        impl $trait for Proxy {
            $(async fn $m(&self, ctx: Context, req: $req) -> Result<$resp> {
                self.check(&ctx)?;
                let started = Instant::now();
                let result = self.$stub.clone().$m(Self::request(&ctx, req)).await;
                Self::log(&ctx, started, result.as_ref().map(drop));
                result.map(tonic::Response::into_inner).map_err(Error::Status)
            })*
            $(async fn $s(&self, ctx: Context, req: $sreq) -> Result<ResponseStream<$sresp>> {
                self.check(&ctx)?;
                let started = Instant::now();
                let result = self.$stub.clone().$s(Self::request(&ctx, req)).await;
                Self::log(&ctx, started, result.as_ref().map(drop));
                result.map(|r| relay(r.into_inner())).map_err(Error::Status)
            })*
        }
    };
}

forward! {
    RuntimeService via runtime;
    unary {
        version(VersionRequest) -> VersionResponse;
        run_pod_sandbox(RunPodSandboxRequest) -> RunPodSandboxResponse;
        stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse;
        remove_pod_sandbox(RemovePodSandboxRequest) -> RemovePodSandboxResponse;
        pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse;
        list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse;
        create_container(CreateContainerRequest) -> CreateContainerResponse;
        start_container(StartContainerRequest) -> StartContainerResponse;
        stop_container(StopContainerRequest) -> StopContainerResponse;
        remove_container(RemoveContainerRequest) -> RemoveContainerResponse;
        list_containers(ListContainersRequest) -> ListContainersResponse;
        container_status(ContainerStatusRequest) -> ContainerStatusResponse;
        update_container_resources(UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse;
        reopen_container_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse;
        exec_sync(ExecSyncRequest) -> ExecSyncResponse;
        exec(ExecRequest) -> ExecResponse;
        attach(AttachRequest) -> AttachResponse;
        port_forward(PortForwardRequest) -> PortForwardResponse;
        container_stats(ContainerStatsRequest) -> ContainerStatsResponse;
        list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse;
        pod_sandbox_stats(PodSandboxStatsRequest) -> PodSandboxStatsResponse;
        list_pod_sandbox_stats(ListPodSandboxStatsRequest) -> ListPodSandboxStatsResponse;
        update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse;
        status(StatusRequest) -> StatusResponse;
        checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse;
        checkpoint_pod(CheckpointPodRequest) -> CheckpointPodResponse;
        restore_pod(RestorePodRequest) -> RestorePodResponse;
        list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse;
        list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse;
        runtime_config(RuntimeConfigRequest) -> RuntimeConfigResponse;
        update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest) -> UpdatePodSandboxResourcesResponse;
    }
    streams {
        stream_pod_sandboxes(StreamPodSandboxesRequest) -> StreamPodSandboxesResponse;
        stream_containers(StreamContainersRequest) -> StreamContainersResponse;
        stream_container_stats(StreamContainerStatsRequest) -> StreamContainerStatsResponse;
        stream_pod_sandbox_stats(StreamPodSandboxStatsRequest) -> StreamPodSandboxStatsResponse;
        stream_pod_sandbox_metrics(StreamPodSandboxMetricsRequest) -> StreamPodSandboxMetricsResponse;
        get_container_events(GetEventsRequest) -> ContainerEventResponse;
    }
}

forward! {
    ImageService via image;
    unary {
        list_images(ListImagesRequest) -> ListImagesResponse;
        image_status(ImageStatusRequest) -> ImageStatusResponse;
        pull_image(PullImageRequest) -> PullImageResponse;
        remove_image(RemoveImageRequest) -> RemoveImageResponse;
        image_fs_info(ImageFsInfoRequest) -> ImageFsInfoResponse;
    }
    streams {
        stream_images(StreamImagesRequest) -> StreamImagesResponse;
    }
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    args.serve.init_logging();
    // The typed client connects (and checks Version); the proxy forwards through its raw
    // generated clients so that requests and statuses pass unchanged.
    let mut upstream = Client::builder(&args.upstream).timeout(None);
    if let Some(image) = &args.upstream_image {
        upstream = upstream.image_endpoint(image);
    }
    let upstream = upstream.connect().await?;
    let mut denied: HashSet<String> = args.deny.iter().cloned().collect();
    if args.read_only {
        denied.extend(MUTATING.iter().map(|m| m.to_string()));
    }
    let proxy = Arc::new(Proxy {
        runtime: upstream.runtime_client(),
        image: upstream.image_client(),
        denied,
    });
    let bound = Server::builder()
        .service(proxy)
        .build()?
        .bind(&args.serve.socket)?;
    tracing::info!(socket = %args.serve.socket.display(), upstream = %args.upstream, read_only = args.read_only, "cri-proxy serving");
    bound.serve().await?;
    Ok(())
}
