//! The client: connection, defaults, the generic `call` and the typed methods.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cri_api::v1::image_service_client::ImageServiceClient;
use cri_api::v1::runtime_service_client::RuntimeServiceClient;
use cri_api::v1::*;
use futures_util::{Stream, StreamExt};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::call::{Call, Stubs};
use crate::{Error, Result, endpoint};

/// The kubelet's per-call timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long connecting to the socket may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A stream of container events from `GetContainerEvents`.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<ContainerEventResponse>> + Send>>;

/// What `ExecSync` produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Everything the command wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything the command wrote to stderr.
    pub stderr: Vec<u8>,
    /// The command's exit code.
    pub exit_code: i32,
}

impl ExecOutput {
    /// Whether the command exited with code 0.
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

/// Configures and connects a [`Client`]. Created by [`Client::builder`].
#[derive(Clone, Debug)]
pub struct Builder {
    runtime_endpoint: String,
    image_endpoint: Option<String>,
    connect_timeout: Duration,
    timeout: Option<Duration>,
    max_message_size: usize,
    list_streaming: bool,
    verify_version: bool,
    streaming_connector: cri_streaming::Connector,
}

impl Builder {
    /// The image service's endpoint, when it differs from the runtime's.
    pub fn image_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.image_endpoint = Some(endpoint.into());
        self
    }

    /// How long connecting may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The base per-call timeout (default 2 min, the kubelet's); `None` for no deadline.
    /// `RunPodSandbox`, `StopContainer`, `ExecSync` and `PullImage` derive theirs from it as
    /// the kubelet does (see [`Call`]).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Largest message sent or received (default 16 MiB, the kubelet's).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Use the `Stream*` RPCs for `list_*` calls (default off, as upstream). A runtime that
    /// answers `Unimplemented` switches this client back to the unary calls for good.
    pub fn list_streaming(mut self, enabled: bool) -> Self {
        self.list_streaming = enabled;
        self
    }

    /// How exec, attach and port-forward sessions reach the runtime's streaming server
    /// (default: plain TCP, so `https://` streaming URLs fail). With the `tls` feature,
    /// `Connector::tls(ClientTls::from_ca_pem_file(..)?)` trusts the server's CA:
    ///
    /// ```no_run
    /// # #[cfg(feature = "tls")]
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use cri_client::streaming::{ClientTls, Connector};
    /// let tls = ClientTls::from_ca_pem_file("/etc/cri/streaming-ca.crt")?;
    /// let client = cri_client::Client::builder("unix:///run/containerd/containerd.sock")
    ///     .streaming_connector(Connector::tls(tls))
    ///     .connect()
    ///     .await?;
    /// # let _ = client; Ok(()) }
    /// ```
    pub fn streaming_connector(mut self, connector: cri_streaming::Connector) -> Self {
        self.streaming_connector = connector;
        self
    }

    /// Call `Version` when connecting and refuse runtimes the kubelet would refuse (default
    /// on). Off, the check is skipped and connecting makes no call.
    pub fn verify_version(mut self, enabled: bool) -> Self {
        self.verify_version = enabled;
        self
    }

    /// Connects to the runtime (and image) endpoints and, unless disabled, checks `Version`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEndpoint`], [`Error::Connect`], or [`Error::UnsupportedRuntime`] /
    /// a call error from the version check.
    pub async fn connect(self) -> Result<Client> {
        let runtime_channel =
            endpoint::connect(&self.runtime_endpoint, self.connect_timeout).await?;
        let image_channel = match &self.image_endpoint {
            Some(image) if *image != self.runtime_endpoint => {
                endpoint::connect(image, self.connect_timeout).await?
            }
            _ => runtime_channel.clone(),
        };
        let client = Client::from_channels(runtime_channel, image_channel, &self);
        if self.verify_version {
            client.version().await?;
        }
        Ok(client)
    }
}

/// A CRI client with the kubelet's defaults. Cheap to clone; clones share the connection.
///
/// ```no_run
/// # async fn run() -> cri_client::Result<()> {
/// let client = cri_client::Client::connect("unix:///run/containerd/containerd.sock").await?;
/// for pod in client.list_pod_sandbox(None).await? {
///     println!("{} {}", pod.id, pod.metadata.unwrap_or_default().name);
/// }
/// let out = client.exec_sync("c1", ["echo", "hi"], std::time::Duration::from_secs(5)).await?;
/// assert_eq!(out.stdout, b"hi\n");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    stubs: Stubs,
    timeout: Option<Duration>,
    list_streaming: bool,
    /// Set once the runtime answered a `Stream*` call with `Unimplemented`.
    streams_unsupported: Arc<AtomicBool>,
    streaming_connector: cri_streaming::Connector,
}

impl Client {
    /// Starts configuring a client for `endpoint` (`unix:///path` or a plain path).
    pub fn builder(endpoint: impl Into<String>) -> Builder {
        Builder {
            runtime_endpoint: endpoint.into(),
            image_endpoint: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: Some(DEFAULT_TIMEOUT),
            max_message_size: cri_api::MAX_MESSAGE_SIZE,
            list_streaming: false,
            verify_version: true,
            streaming_connector: cri_streaming::Connector::default(),
        }
    }

    /// Connects with the defaults and checks `Version`; see [`Builder::connect`].
    pub async fn connect(endpoint: impl Into<String>) -> Result<Self> {
        Self::builder(endpoint).connect().await
    }

    /// A client over existing channels (in-memory transports, custom connectors). No
    /// version check is made.
    pub fn from_channel(runtime: Channel, image: Channel) -> Self {
        Self::from_channels(runtime, image, &Self::builder(""))
    }

    fn from_channels(runtime: Channel, image: Channel, config: &Builder) -> Self {
        let limit = config.max_message_size;
        Self {
            stubs: Stubs {
                runtime: RuntimeServiceClient::new(runtime)
                    .max_decoding_message_size(limit)
                    .max_encoding_message_size(limit),
                image: ImageServiceClient::new(image)
                    .max_decoding_message_size(limit)
                    .max_encoding_message_size(limit),
            },
            timeout: config.timeout,
            list_streaming: config.list_streaming,
            streams_unsupported: Arc::new(AtomicBool::new(false)),
            streaming_connector: config.streaming_connector.clone(),
        }
    }

    /// A copy of this client whose calls use `timeout` as their base timeout (per-call
    /// override: `client.with_timeout(Some(d)).stop_container(..)`).
    #[must_use]
    pub fn with_timeout(&self, timeout: Option<Duration>) -> Self {
        Self {
            timeout,
            ..self.clone()
        }
    }

    /// A copy of this client whose exec, attach and port-forward sessions connect with
    /// `connector` (see [`Builder::streaming_connector`]).
    #[must_use]
    pub fn with_streaming_connector(&self, connector: cri_streaming::Connector) -> Self {
        Self {
            streaming_connector: connector,
            ..self.clone()
        }
    }

    /// The base per-call timeout.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The generated `RuntimeService` client (escape hatch: no defaults applied).
    pub fn runtime_client(&self) -> RuntimeServiceClient<Channel> {
        self.stubs.runtime.clone()
    }

    /// The generated `ImageService` client (escape hatch: no defaults applied).
    pub fn image_client(&self) -> ImageServiceClient<Channel> {
        self.stubs.image.clone()
    }

    /// Sends any unary CRI request with the kubelet's deadline for it and verifies the
    /// response (see [`Call`]).
    ///
    /// ```no_run
    /// # async fn run(client: cri_client::Client) -> cri_client::Result<()> {
    /// use cri_client::cri_api::v1::UpdateContainerResourcesRequest;
    /// client.call(UpdateContainerResourcesRequest {
    ///     container_id: "c1".into(),
    ///     ..Default::default()
    /// }).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call<R: Call>(&self, request: R) -> Result<R::Response> {
        let deadline = request.deadline(self.timeout);
        let mut request = tonic::Request::new(request);
        if let Some(deadline) = deadline {
            request.set_timeout(deadline);
        }
        let started = Instant::now();
        let answer = R::send(&self.stubs, request);
        let result = match deadline {
            Some(deadline) => match tokio::time::timeout(deadline, answer).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(Error::DeadlineExceeded {
                        method: R::METHOD,
                        timeout: deadline,
                    });
                }
            },
            None => answer.await,
        };
        match result {
            Ok(response) => {
                let response = response.into_inner();
                R::verify(&response)?;
                Ok(response)
            }
            Err(status) => Err(classify(R::METHOD, status, deadline, started)),
        }
    }

    // ----- runtime information -----

    /// `Version`, verified as the kubelet does.
    pub async fn version(&self) -> Result<VersionResponse> {
        self.call(VersionRequest {
            version: cri_api::API_VERSION.into(),
        })
        .await
    }

    /// `Status`: runtime conditions (and free-form info when `verbose`).
    pub async fn status(&self, verbose: bool) -> Result<StatusResponse> {
        self.call(StatusRequest { verbose }).await
    }

    /// `RuntimeConfig`: the cgroup driver the runtime uses.
    pub async fn runtime_config(&self) -> Result<RuntimeConfigResponse> {
        self.call(RuntimeConfigRequest {}).await
    }

    /// `UpdateRuntimeConfig` with a new pod CIDR.
    pub async fn update_runtime_config(&self, pod_cidr: impl Into<String>) -> Result<()> {
        self.call(UpdateRuntimeConfigRequest {
            runtime_config: Some(RuntimeConfig {
                network_config: Some(NetworkConfig {
                    pod_cidr: pod_cidr.into(),
                }),
            }),
        })
        .await
        .map(drop)
    }

    // ----- pod sandboxes -----

    /// Creates and starts a sandbox; returns its id. Deadline: twice the timeout.
    pub async fn run_pod_sandbox(
        &self,
        config: PodSandboxConfig,
        runtime_handler: impl Into<String>,
    ) -> Result<String> {
        let response = self
            .call(RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: runtime_handler.into(),
            })
            .await?;
        Ok(response.pod_sandbox_id)
    }

    /// Stops a sandbox (idempotent).
    pub async fn stop_pod_sandbox(&self, id: impl Into<String>) -> Result<()> {
        self.call(StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .map(drop)
    }

    /// Removes a sandbox (idempotent).
    pub async fn remove_pod_sandbox(&self, id: impl Into<String>) -> Result<()> {
        self.call(RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .map(drop)
    }

    /// A sandbox's status, verified (id, metadata, creation time).
    pub async fn pod_sandbox_status(
        &self,
        id: impl Into<String>,
        verbose: bool,
    ) -> Result<PodSandboxStatusResponse> {
        self.call(PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose,
        })
        .await
    }

    /// Sandboxes matching `filter` (all when `None`); over `StreamPodSandboxes` when list
    /// streaming is on.
    pub async fn list_pod_sandbox(
        &self,
        filter: Option<PodSandboxFilter>,
    ) -> Result<Vec<PodSandbox>> {
        self.list(
            "StreamPodSandboxes",
            StreamPodSandboxesRequest {
                filter: filter.clone(),
            },
            |mut s, r| async move { s.runtime.stream_pod_sandboxes(r).await },
            |b: StreamPodSandboxesResponse| b.pod_sandboxes,
            ListPodSandboxRequest { filter },
            |r| r.items,
        )
        .await
    }

    /// Sandbox stats of one sandbox.
    pub async fn pod_sandbox_stats(&self, id: impl Into<String>) -> Result<PodSandboxStats> {
        let response = self
            .call(PodSandboxStatsRequest {
                pod_sandbox_id: id.into(),
            })
            .await?;
        response.stats.ok_or_else(|| Error::InvalidResponse {
            method: "PodSandboxStats",
            reason: "stats is empty".into(),
        })
    }

    /// Sandbox stats matching `filter`; over `StreamPodSandboxStats` when streaming is on.
    pub async fn list_pod_sandbox_stats(
        &self,
        filter: Option<PodSandboxStatsFilter>,
    ) -> Result<Vec<PodSandboxStats>> {
        self.list(
            "StreamPodSandboxStats",
            StreamPodSandboxStatsRequest {
                filter: filter.clone(),
            },
            |mut s, r| async move { s.runtime.stream_pod_sandbox_stats(r).await },
            |b: StreamPodSandboxStatsResponse| b.pod_sandbox_stats,
            ListPodSandboxStatsRequest { filter },
            |r| r.stats,
        )
        .await
    }

    // ----- containers -----

    /// Creates a container in a sandbox; returns its id.
    pub async fn create_container(
        &self,
        pod_sandbox_id: impl Into<String>,
        config: ContainerConfig,
        sandbox_config: Option<PodSandboxConfig>,
    ) -> Result<String> {
        let response = self
            .call(CreateContainerRequest {
                pod_sandbox_id: pod_sandbox_id.into(),
                config: Some(config),
                sandbox_config,
            })
            .await?;
        Ok(response.container_id)
    }

    /// Starts a created container.
    pub async fn start_container(&self, id: impl Into<String>) -> Result<()> {
        self.call(StartContainerRequest {
            container_id: id.into(),
        })
        .await
        .map(drop)
    }

    /// Stops a container, giving it `grace` to exit before it is killed (idempotent).
    /// Deadline: timeout + grace.
    pub async fn stop_container(&self, id: impl Into<String>, grace: Duration) -> Result<()> {
        self.call(StopContainerRequest {
            container_id: id.into(),
            timeout: i64::try_from(grace.as_secs()).unwrap_or(i64::MAX),
        })
        .await
        .map(drop)
    }

    /// Removes a container (idempotent).
    pub async fn remove_container(&self, id: impl Into<String>) -> Result<()> {
        self.call(RemoveContainerRequest {
            container_id: id.into(),
        })
        .await
        .map(drop)
    }

    /// A container's status, verified (id, name, creation time, image, image ref).
    pub async fn container_status(
        &self,
        id: impl Into<String>,
        verbose: bool,
    ) -> Result<ContainerStatusResponse> {
        self.call(ContainerStatusRequest {
            container_id: id.into(),
            verbose,
        })
        .await
    }

    /// Containers matching `filter`; over `StreamContainers` when streaming is on.
    pub async fn list_containers(&self, filter: Option<ContainerFilter>) -> Result<Vec<Container>> {
        self.list(
            "StreamContainers",
            StreamContainersRequest {
                filter: filter.clone(),
            },
            |mut s, r| async move { s.runtime.stream_containers(r).await },
            |b: StreamContainersResponse| b.containers,
            ListContainersRequest { filter },
            |r| r.containers,
        )
        .await
    }

    /// Asks the runtime to reopen a container's log file (after rotation).
    pub async fn reopen_container_log(&self, id: impl Into<String>) -> Result<()> {
        self.call(ReopenContainerLogRequest {
            container_id: id.into(),
        })
        .await
        .map(drop)
    }

    /// Runs `cmd` in a container and waits for it. `timeout` bounds the command (zero: no
    /// bound and no client deadline); past it the runtime answers and this returns
    /// [`Error::ExecSyncTimeout`].
    pub async fn exec_sync<I, S>(
        &self,
        id: impl Into<String>,
        cmd: I,
        timeout: Duration,
    ) -> Result<ExecOutput>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let response = self
            .call(ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.into_iter().map(Into::into).collect(),
                timeout: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            })
            .await?;
        Ok(ExecOutput {
            stdout: response.stdout,
            stderr: response.stderr,
            exit_code: response.exit_code,
        })
    }

    /// Stats of one container.
    pub async fn container_stats(&self, id: impl Into<String>) -> Result<ContainerStats> {
        let response = self
            .call(ContainerStatsRequest {
                container_id: id.into(),
            })
            .await?;
        response.stats.ok_or_else(|| Error::InvalidResponse {
            method: "ContainerStats",
            reason: "stats is empty".into(),
        })
    }

    /// Container stats matching `filter`; over `StreamContainerStats` when streaming is on.
    pub async fn list_container_stats(
        &self,
        filter: Option<ContainerStatsFilter>,
    ) -> Result<Vec<ContainerStats>> {
        self.list(
            "StreamContainerStats",
            StreamContainerStatsRequest {
                filter: filter.clone(),
            },
            |mut s, r| async move { s.runtime.stream_container_stats(r).await },
            |b: StreamContainerStatsResponse| b.container_stats,
            ListContainerStatsRequest { filter },
            |r| r.stats,
        )
        .await
    }

    /// Metrics of every sandbox; over `StreamPodSandboxMetrics` when streaming is on.
    pub async fn list_pod_sandbox_metrics(&self) -> Result<Vec<PodSandboxMetrics>> {
        self.list(
            "StreamPodSandboxMetrics",
            StreamPodSandboxMetricsRequest {},
            |mut s, r| async move { s.runtime.stream_pod_sandbox_metrics(r).await },
            |b: StreamPodSandboxMetricsResponse| b.pod_sandbox_metrics,
            ListPodSandboxMetricsRequest {},
            |r| r.pod_metrics,
        )
        .await
    }

    /// The `GetContainerEvents` stream: every container event from now on, with no deadline.
    ///
    /// The stream ends when the runtime closes it or the connection drops; reconnecting is
    /// the caller's choice. The usual pattern resubscribes and resyncs:
    ///
    /// ```no_run
    /// # async fn run(client: cri_client::Client) {
    /// use futures_util::StreamExt;
    /// loop {
    ///     match client.events().await {
    ///         Ok(mut events) => {
    ///             // Resync with a full list first: events missed while disconnected are gone.
    ///             let _containers = client.list_containers(None).await;
    ///             while let Some(Ok(event)) = events.next().await {
    ///                 println!("{} {:?}", event.container_id, event.container_event_type());
    ///             }
    ///         }
    ///         Err(err) if err.is_unimplemented() => break, // the runtime has no events
    ///         Err(_) => {}
    ///     }
    ///     tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    /// }
    /// # }
    /// ```
    pub async fn events(&self) -> Result<EventStream> {
        let mut client = self.stubs.runtime.clone();
        let stream = client
            .get_container_events(GetEventsRequest {})
            .await
            .map_err(|status| Error::from_status("GetContainerEvents", status))?
            .into_inner();
        Ok(Box::pin(stream.map(|item| {
            item.map_err(|status| Error::from_status("GetContainerEvents", status))
        })))
    }

    // ----- streaming: exec, attach, port-forward -----

    /// Runs `cmd` in a container interactively: calls `Exec` for a URL, connects to the
    /// runtime's streaming server over `transport` and wires `streams` (the request's
    /// stdin/stdout/stderr/tty flags follow from which streams are given). Returns the
    /// command's exit code.
    ///
    /// ```no_run
    /// # async fn run(client: cri_client::Client) -> cri_client::Result<()> {
    /// use cri_client::streaming::{Streams, Transport};
    /// let streams = Streams {
    ///     stdout: Some(Box::pin(tokio::io::stdout())),
    ///     stderr: Some(Box::pin(tokio::io::stderr())),
    ///     ..Default::default()
    /// };
    /// let code = client.exec("3b6a5f1c", ["uname", "-a"], Transport::Spdy, streams).await?;
    /// # let _ = code; Ok(()) }
    /// ```
    pub async fn exec<I, S>(
        &self,
        id: impl Into<String>,
        cmd: I,
        transport: cri_streaming::Transport,
        streams: cri_streaming::Streams,
    ) -> Result<i32>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let response = self
            .call(ExecRequest {
                container_id: id.into(),
                cmd: cmd.into_iter().map(Into::into).collect(),
                tty: streams.tty,
                stdin: streams.stdin.is_some(),
                stdout: streams.stdout.is_some(),
                stderr: streams.stderr.is_some() && !streams.tty,
            })
            .await?;
        Ok(
            cri_streaming::run_with(&response.url, transport, streams, &self.streaming_connector)
                .await?,
        )
    }

    /// Attaches to a container's main process: calls `Attach` for a URL and runs the
    /// session like [`Client::exec`].
    pub async fn attach(
        &self,
        id: impl Into<String>,
        transport: cri_streaming::Transport,
        streams: cri_streaming::Streams,
    ) -> Result<i32> {
        let response = self
            .call(AttachRequest {
                container_id: id.into(),
                tty: streams.tty,
                stdin: streams.stdin.is_some(),
                stdout: streams.stdout.is_some(),
                stderr: streams.stderr.is_some() && !streams.tty,
            })
            .await?;
        Ok(
            cri_streaming::run_with(&response.url, transport, streams, &self.streaming_connector)
                .await?,
        )
    }

    /// Starts a port-forward session into a sandbox: calls `PortForward` for a URL and
    /// connects to it. Open connections with [`PortForward::connect`] or forward a local
    /// listener with [`PortForward::listen`].
    ///
    /// [`PortForward::connect`]: cri_streaming::PortForward::connect
    /// [`PortForward::listen`]: cri_streaming::PortForward::listen
    pub async fn port_forward(
        &self,
        pod_sandbox_id: impl Into<String>,
        ports: &[u16],
        transport: cri_streaming::Transport,
    ) -> Result<cri_streaming::PortForward> {
        let response = self
            .call(PortForwardRequest {
                pod_sandbox_id: pod_sandbox_id.into(),
                port: ports.iter().map(|p| i32::from(*p)).collect(),
            })
            .await?;
        Ok(cri_streaming::PortForward::start_with(
            &response.url,
            transport,
            ports,
            &self.streaming_connector,
        )
        .await?)
    }

    // ----- images -----

    /// Images matching `filter`; over `StreamImages` when streaming is on.
    pub async fn list_images(&self, filter: Option<ImageFilter>) -> Result<Vec<Image>> {
        self.list(
            "StreamImages",
            StreamImagesRequest {
                filter: filter.clone(),
            },
            |mut s, r| async move { s.image.stream_images(r).await },
            |b: StreamImagesResponse| b.images,
            ListImagesRequest { filter },
            |r| r.images,
        )
        .await
    }

    /// The status of an image by tag, id or digest; `None` when the runtime does not have it.
    pub async fn image_status(&self, image: impl Into<String>) -> Result<Option<Image>> {
        let response = self
            .call(ImageStatusRequest {
                image: Some(ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await?;
        Ok(response.image)
    }

    /// Pulls an image (no deadline) and returns its verified, non-empty reference.
    pub async fn pull_image(
        &self,
        image: impl Into<String>,
        auth: Option<AuthConfig>,
    ) -> Result<String> {
        let response = self
            .call(PullImageRequest {
                image: Some(ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                auth,
                sandbox_config: None,
            })
            .await?;
        Ok(response.image_ref)
    }

    /// Removes an image (idempotent).
    pub async fn remove_image(&self, image: impl Into<String>) -> Result<()> {
        self.call(RemoveImageRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
        })
        .await
        .map(drop)
    }

    /// Usage of the image filesystems.
    pub async fn image_fs_info(&self) -> Result<ImageFsInfoResponse> {
        self.call(ImageFsInfoRequest {}).await
    }

    // ----- list streaming -----

    fn streaming_enabled(&self) -> bool {
        self.list_streaming && !self.streams_unsupported.load(Ordering::Relaxed)
    }

    /// A `List*` call: over its `Stream*` RPC when streaming is on and supported (batches
    /// concatenated), otherwise — and for good once the runtime answers `Unimplemented`, at
    /// creation or first receive — over the unary RPC.
    async fn list<S, Batch, U, Item, Fut>(
        &self,
        method: &'static str,
        stream_request: S,
        open: impl FnOnce(Stubs, tonic::Request<S>) -> Fut,
        batch_items: impl Fn(Batch) -> Vec<Item>,
        unary: U,
        unary_items: impl FnOnce(U::Response) -> Vec<Item>,
    ) -> Result<Vec<Item>>
    where
        U: Call,
        Fut: std::future::Future<
                Output = std::result::Result<tonic::Response<tonic::Streaming<Batch>>, Status>,
            >,
    {
        if self.streaming_enabled() {
            let stubs = self.stubs.clone();
            let streamed = self
                .collect_stream(method, stream_request, |r| open(stubs, r), batch_items)
                .await?;
            if let Some(items) = streamed {
                return Ok(items);
            }
        }
        Ok(unary_items(self.call(unary).await?))
    }

    async fn collect_stream<Req, Batch, Item, Fut>(
        &self,
        method: &'static str,
        request: Req,
        open: impl FnOnce(tonic::Request<Req>) -> Fut,
        items: impl Fn(Batch) -> Vec<Item>,
    ) -> Result<Option<Vec<Item>>>
    where
        Fut: std::future::Future<
                Output = std::result::Result<tonic::Response<tonic::Streaming<Batch>>, Status>,
            >,
    {
        let deadline = self.timeout;
        let mut request = tonic::Request::new(request);
        if let Some(deadline) = deadline {
            request.set_timeout(deadline);
        }
        let started = Instant::now();
        let work = async {
            let mut stream = open(request).await?.into_inner();
            let mut all = Vec::new();
            while let Some(batch) = stream.message().await? {
                all.extend(items(batch));
            }
            Ok::<_, Status>(all)
        };
        let result = match deadline {
            Some(deadline) => match tokio::time::timeout(deadline, work).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(Error::DeadlineExceeded {
                        method,
                        timeout: deadline,
                    });
                }
            },
            None => work.await,
        };
        match result {
            Ok(all) => Ok(Some(all)),
            Err(status) if status.code() == Code::Unimplemented => {
                tracing::debug!(
                    method,
                    "runtime does not stream lists; using unary calls from now on"
                );
                self.streams_unsupported.store(true, Ordering::Relaxed);
                Ok(None)
            }
            Err(status) => Err(classify(method, status, deadline, started)),
        }
    }
}

/// A status, or our deadline when tonic reports its own client-side timeout as `Cancelled`.
fn classify(
    method: &'static str,
    status: Status,
    deadline: Option<Duration>,
    started: Instant,
) -> Error {
    if let Some(deadline) = deadline
        && status.code() == Code::Cancelled
        && started.elapsed() >= deadline
    {
        return Error::DeadlineExceeded {
            method,
            timeout: deadline,
        };
    }
    Error::from_status(method, status)
}
