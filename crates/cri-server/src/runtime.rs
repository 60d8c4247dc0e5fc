//! The trait a container runtime implements to serve CRI's `RuntimeService`.

use async_trait::async_trait;
use cri_api::v1::*;

use crate::stream::{BATCH_SIZE, ResponseStream, batches};
use crate::{Context, Error, Result};

/// CRI's `RuntimeService`: pod sandboxes, containers, exec, stats, events, configuration.
///
/// Implement [`version`](Self::version) and whatever else your runtime supports; every other
/// method answers `Unimplemented` by default. The six `Stream*` methods are derived from the
/// matching `List*` method (in batches of [`BATCH_SIZE`]), so a runtime that lists gets
/// streaming for free.
///
/// Requests reach these methods only after validation: ids that CRI requires are non-empty,
/// required configs and metadata are present, forbidden combinations are rejected with
/// `InvalidArgument` (see the crate's validation rules). A panic inside a method is caught
/// and answered with `Internal`; the server keeps serving.
///
/// The trait is object safe: the server holds runtimes as `Arc<dyn RuntimeService>`.
///
/// ```
/// use cri_server::{Context, Result, RuntimeService, async_trait};
/// use cri_server::cri_api::v1::{VersionRequest, VersionResponse};
///
/// struct Tiny;
///
/// #[async_trait]
/// impl RuntimeService for Tiny {
///     async fn version(&self, _ctx: Context, _req: VersionRequest) -> Result<VersionResponse> {
///         Ok(VersionResponse {
///             version: "0.1.0".into(),
///             runtime_name: "tiny".into(),
///             runtime_version: "0.1.0".into(),
///             runtime_api_version: cri_server::cri_api::API_VERSION.into(),
///         })
///     }
/// }
/// ```
#[async_trait]
pub trait RuntimeService: Send + Sync + 'static {
    /// Name and version of the runtime and the CRI API version (`"v1"`). Clients (the kubelet
    /// first of all) refuse a runtime that leaves any field empty or reports another API
    /// version. Required.
    async fn version(&self, ctx: Context, req: VersionRequest) -> Result<VersionResponse>;

    /// Creates and starts a sandbox; on success it is `SANDBOX_READY`. `config` and
    /// `config.metadata` (name, namespace, uid) are guaranteed present. Creating a sandbox
    /// whose metadata (name, namespace, uid, attempt) matches a live one should fail with
    /// `AlreadyExists` or return the existing id.
    async fn run_pod_sandbox(
        &self,
        ctx: Context,
        req: RunPodSandboxRequest,
    ) -> Result<RunPodSandboxResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("RunPodSandbox"))
    }

    /// Stops every process of the sandbox (killing its containers) and releases its network.
    /// Idempotent: an already stopped sandbox succeeds; an unknown id should succeed too
    /// (the kubelet retries after partial failures).
    async fn stop_pod_sandbox(
        &self,
        ctx: Context,
        req: StopPodSandboxRequest,
    ) -> Result<StopPodSandboxResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("StopPodSandbox"))
    }

    /// Removes the sandbox and any containers left in it, stopping them forcibly.
    /// Idempotent: removing an unknown or already removed sandbox succeeds.
    async fn remove_pod_sandbox(
        &self,
        ctx: Context,
        req: RemovePodSandboxRequest,
    ) -> Result<RemovePodSandboxResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("RemovePodSandbox"))
    }

    /// Status of one sandbox. An unknown id is `NotFound`. The status must carry the id,
    /// metadata (name, namespace, uid) and `created_at`; clients verify them.
    async fn pod_sandbox_status(
        &self,
        ctx: Context,
        req: PodSandboxStatusRequest,
    ) -> Result<PodSandboxStatusResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("PodSandboxStatus"))
    }

    /// All sandboxes matching the optional filter (id, state, label selector; all must hold).
    async fn list_pod_sandbox(
        &self,
        ctx: Context,
        req: ListPodSandboxRequest,
    ) -> Result<ListPodSandboxResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("ListPodSandbox"))
    }

    /// Streaming form of [`list_pod_sandbox`](Self::list_pod_sandbox). The default calls it
    /// and sends the result in batches; override only to stream from your own store.
    async fn stream_pod_sandboxes(
        &self,
        ctx: Context,
        req: StreamPodSandboxesRequest,
    ) -> Result<ResponseStream<StreamPodSandboxesResponse>> {
        let list = ListPodSandboxRequest { filter: req.filter };
        let items = self.list_pod_sandbox(ctx, list).await?.items;
        Ok(batches(items, BATCH_SIZE, |pod_sandboxes| {
            StreamPodSandboxesResponse { pod_sandboxes }
        }))
    }

    /// Creates a container in an existing sandbox without starting it; `CONTAINER_CREATED`
    /// on success. `pod_sandbox_id`, `config.metadata.name` and `config.image.image` are
    /// guaranteed non-empty. An unknown sandbox is `NotFound`.
    async fn create_container(
        &self,
        ctx: Context,
        req: CreateContainerRequest,
    ) -> Result<CreateContainerResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("CreateContainer"))
    }

    /// Starts a created container; it becomes `CONTAINER_RUNNING`. An unknown id is
    /// `NotFound`; a container that is not in `CONTAINER_CREATED` is `FailedPrecondition`.
    async fn start_container(
        &self,
        ctx: Context,
        req: StartContainerRequest,
    ) -> Result<StartContainerResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("StartContainer"))
    }

    /// Stops a running container: stop signal, then kill after `timeout` seconds (0: kill at
    /// once). Idempotent: an exited container succeeds, and so should an unknown one.
    async fn stop_container(
        &self,
        ctx: Context,
        req: StopContainerRequest,
    ) -> Result<StopContainerResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("StopContainer"))
    }

    /// Removes a container, killing it first if it still runs. Idempotent: an unknown or
    /// already removed container succeeds.
    async fn remove_container(
        &self,
        ctx: Context,
        req: RemoveContainerRequest,
    ) -> Result<RemoveContainerResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("RemoveContainer"))
    }

    /// All containers matching the optional filter (id, state, sandbox id, label selector).
    async fn list_containers(
        &self,
        ctx: Context,
        req: ListContainersRequest,
    ) -> Result<ListContainersResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("ListContainers"))
    }

    /// Streaming form of [`list_containers`](Self::list_containers), derived by default.
    async fn stream_containers(
        &self,
        ctx: Context,
        req: StreamContainersRequest,
    ) -> Result<ResponseStream<StreamContainersResponse>> {
        let list = ListContainersRequest { filter: req.filter };
        let items = self.list_containers(ctx, list).await?.containers;
        Ok(batches(items, BATCH_SIZE, |containers| {
            StreamContainersResponse { containers }
        }))
    }

    /// Status of one container. An unknown id is `NotFound`. The status must carry the id,
    /// `metadata.name`, `created_at`, `image.image` and `image_ref`; clients verify them.
    async fn container_status(
        &self,
        ctx: Context,
        req: ContainerStatusRequest,
    ) -> Result<ContainerStatusResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("ContainerStatus"))
    }

    /// Applies new resource limits to a container. An unknown id is `NotFound`.
    async fn update_container_resources(
        &self,
        ctx: Context,
        req: UpdateContainerResourcesRequest,
    ) -> Result<UpdateContainerResourcesResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("UpdateContainerResources"))
    }

    /// Reopens the container's log file (after the kubelet rotated it). A container that is
    /// not running is `FailedPrecondition`.
    async fn reopen_container_log(
        &self,
        ctx: Context,
        req: ReopenContainerLogRequest,
    ) -> Result<ReopenContainerLogResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("ReopenContainerLog"))
    }

    /// Runs a command in a container and returns its output and exit code. `cmd` is
    /// guaranteed non-empty. `timeout` seconds (0: none) bound the command; past it, answer
    /// `DeadlineExceeded`. Output is capped at 16 MiB.
    async fn exec_sync(&self, ctx: Context, req: ExecSyncRequest) -> Result<ExecSyncResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("ExecSync"))
    }

    /// Prepares a streaming exec and returns the URL of the runtime's streaming server.
    /// `cmd` is non-empty, at least one of stdin/stdout/stderr is set, and `tty` never comes
    /// with `stderr`.
    async fn exec(&self, ctx: Context, req: ExecRequest) -> Result<ExecResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("Exec"))
    }

    /// Prepares a streaming attach and returns the URL; same stream rules as `exec`.
    async fn attach(&self, ctx: Context, req: AttachRequest) -> Result<AttachResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("Attach"))
    }

    /// Prepares a port-forward into the sandbox's network and returns the URL.
    /// `pod_sandbox_id` is non-empty and every port is within 1..=65535.
    async fn port_forward(
        &self,
        ctx: Context,
        req: PortForwardRequest,
    ) -> Result<PortForwardResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("PortForward"))
    }

    /// Resource usage of one container. An unknown id is `NotFound`.
    async fn container_stats(
        &self,
        ctx: Context,
        req: ContainerStatsRequest,
    ) -> Result<ContainerStatsResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("ContainerStats"))
    }

    /// Resource usage of all containers matching the optional filter.
    async fn list_container_stats(
        &self,
        ctx: Context,
        req: ListContainerStatsRequest,
    ) -> Result<ListContainerStatsResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("ListContainerStats"))
    }

    /// Streaming form of [`list_container_stats`](Self::list_container_stats), derived by
    /// default.
    async fn stream_container_stats(
        &self,
        ctx: Context,
        req: StreamContainerStatsRequest,
    ) -> Result<ResponseStream<StreamContainerStatsResponse>> {
        let list = ListContainerStatsRequest { filter: req.filter };
        let items = self.list_container_stats(ctx, list).await?.stats;
        Ok(batches(items, BATCH_SIZE, |container_stats| {
            StreamContainerStatsResponse { container_stats }
        }))
    }

    /// Resource usage of one sandbox and its containers. An unknown id is `NotFound`.
    async fn pod_sandbox_stats(
        &self,
        ctx: Context,
        req: PodSandboxStatsRequest,
    ) -> Result<PodSandboxStatsResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("PodSandboxStats"))
    }

    /// Resource usage of all sandboxes matching the optional filter.
    async fn list_pod_sandbox_stats(
        &self,
        ctx: Context,
        req: ListPodSandboxStatsRequest,
    ) -> Result<ListPodSandboxStatsResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("ListPodSandboxStats"))
    }

    /// Streaming form of [`list_pod_sandbox_stats`](Self::list_pod_sandbox_stats), derived
    /// by default.
    async fn stream_pod_sandbox_stats(
        &self,
        ctx: Context,
        req: StreamPodSandboxStatsRequest,
    ) -> Result<ResponseStream<StreamPodSandboxStatsResponse>> {
        let list = ListPodSandboxStatsRequest { filter: req.filter };
        let items = self.list_pod_sandbox_stats(ctx, list).await?.stats;
        Ok(batches(items, BATCH_SIZE, |pod_sandbox_stats| {
            StreamPodSandboxStatsResponse { pod_sandbox_stats }
        }))
    }

    /// Applies runtime configuration pushed by the kubelet (today: the pod CIDR).
    async fn update_runtime_config(
        &self,
        ctx: Context,
        req: UpdateRuntimeConfigRequest,
    ) -> Result<UpdateRuntimeConfigResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("UpdateRuntimeConfig"))
    }

    /// Runtime health: conditions `RuntimeReady` and `NetworkReady` are required, reasons in
    /// CamelCase; `verbose` may add free-form `info`.
    async fn status(&self, ctx: Context, req: StatusRequest) -> Result<StatusResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("Status"))
    }

    /// Checkpoints a container to `location`.
    async fn checkpoint_container(
        &self,
        ctx: Context,
        req: CheckpointContainerRequest,
    ) -> Result<CheckpointContainerResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("CheckpointContainer"))
    }

    /// Checkpoints a whole sandbox (and chosen containers) to `output_path`.
    async fn checkpoint_pod(
        &self,
        ctx: Context,
        req: CheckpointPodRequest,
    ) -> Result<CheckpointPodResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("CheckpointPod"))
    }

    /// Restores a sandbox from a checkpoint made by `checkpoint_pod`.
    async fn restore_pod(
        &self,
        ctx: Context,
        req: RestorePodRequest,
    ) -> Result<RestorePodResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("RestorePod"))
    }

    /// Long-lived stream of container lifecycle events (created, started, stopped, deleted).
    /// [`EventBroadcaster`](crate::EventBroadcaster) implements the fan-out.
    async fn get_container_events(
        &self,
        ctx: Context,
        req: GetEventsRequest,
    ) -> Result<ResponseStream<ContainerEventResponse>> {
        let _ = (ctx, req);
        Err(Error::unimplemented("GetContainerEvents"))
    }

    /// Descriptors of the metrics `list_pod_sandbox_metrics` reports.
    async fn list_metric_descriptors(
        &self,
        ctx: Context,
        req: ListMetricDescriptorsRequest,
    ) -> Result<ListMetricDescriptorsResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("ListMetricDescriptors"))
    }

    /// Metrics of every sandbox and its containers.
    async fn list_pod_sandbox_metrics(
        &self,
        ctx: Context,
        req: ListPodSandboxMetricsRequest,
    ) -> Result<ListPodSandboxMetricsResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("ListPodSandboxMetrics"))
    }

    /// Streaming form of [`list_pod_sandbox_metrics`](Self::list_pod_sandbox_metrics),
    /// derived by default.
    async fn stream_pod_sandbox_metrics(
        &self,
        ctx: Context,
        req: StreamPodSandboxMetricsRequest,
    ) -> Result<ResponseStream<StreamPodSandboxMetricsResponse>> {
        let StreamPodSandboxMetricsRequest {} = req;
        let items = self
            .list_pod_sandbox_metrics(ctx, ListPodSandboxMetricsRequest {})
            .await?
            .pod_metrics;
        Ok(batches(items, BATCH_SIZE, |pod_sandbox_metrics| {
            StreamPodSandboxMetricsResponse {
                pod_sandbox_metrics,
            }
        }))
    }

    /// The runtime's configuration the kubelet must agree with (today: the cgroup driver).
    async fn runtime_config(
        &self,
        ctx: Context,
        req: RuntimeConfigRequest,
    ) -> Result<RuntimeConfigResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("RuntimeConfig"))
    }

    /// Applies new sandbox-level resources (in-place pod resize).
    async fn update_pod_sandbox_resources(
        &self,
        ctx: Context,
        req: UpdatePodSandboxResourcesRequest,
    ) -> Result<UpdatePodSandboxResourcesResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("UpdatePodSandboxResources"))
    }
}
