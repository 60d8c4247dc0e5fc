//! Glue between the generated tonic services and the runtime traits: context, validation,
//! deadline, panic isolation, tracing and metrics around every call.

use std::any::Any;
use std::fmt::Debug;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use cri_api::v1::{image_service_server, runtime_service_server, *};
use futures_util::{FutureExt, StreamExt};
use tonic::codegen::BoxStream;
use tonic::{Code, Request, Response, Status};

use crate::metrics::{Metrics, code_name, method_index};
use crate::stream::ResponseStream;
use crate::validate::Validate;
use crate::{Context, Error, ImageService, PeerCredentials, Result, RuntimeService};

/// What every call of one server shares.
pub(crate) struct Shared {
    pub(crate) metrics: Metrics,
}

/// Serves the generated `RuntimeService` with a [`RuntimeService`] implementation.
pub(crate) struct RuntimeAdapter {
    pub(crate) runtime: Arc<dyn RuntimeService>,
    pub(crate) shared: Arc<Shared>,
    /// When set, `Exec`, `Attach` and `PortForward` are answered with URLs on this
    /// streaming server instead of calling the runtime.
    pub(crate) streaming: Option<cri_streaming::Server>,
}

/// Serves the generated `ImageService` with an [`ImageService`] implementation.
pub(crate) struct ImageAdapter {
    pub(crate) image: Arc<dyn ImageService>,
    pub(crate) shared: Arc<Shared>,
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload")
}

/// Runs one call: builds the context, validates, calls the runtime under the deadline with
/// panics caught, and records tracing and metrics. `T` is the runtime's output (a message or
/// a stream), `convert` turns it into what tonic sends.
async fn call<Req, T, Out, Fut>(
    shared: &Shared,
    method: &'static str,
    slot: usize,
    request: Request<Req>,
    invoke: impl FnOnce(Context, Req) -> Fut,
    convert: impl FnOnce(T) -> Out,
) -> std::result::Result<Response<Out>, Status>
where
    Req: Validate + Debug,
    Fut: Future<Output = Result<T>>,
{
    let start = Instant::now();
    let (metadata, extensions, req) = request.into_parts();
    let peer = extensions.get::<PeerCredentials>().copied();
    let ctx = Context::from_call(method, metadata, peer);
    let deadline = ctx.deadline();
    let span = tracing::info_span!(
        "cri",
        method,
        request_id = ctx.request_id(),
        peer_uid = peer.map(|p| p.uid),
        code = tracing::field::Empty,
        latency_us = tracing::field::Empty,
    );

    let work = async move {
        req.validate()?;
        tracing::trace!(request = ?req, "request");
        let guarded = AssertUnwindSafe(invoke(ctx, req)).catch_unwind();
        let outcome = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), guarded)
                .await
                .map_err(|_| Error::deadline_exceeded(format!("{method}: deadline exceeded")))?,
            None => guarded.await,
        };
        outcome.unwrap_or_else(|panic| {
            let message = panic_message(panic.as_ref());
            tracing::error!(panic = message, "runtime method panicked");
            Err(Error::internal(format!(
                "{method}: the runtime panicked: {message}"
            )))
        })
    };
    // Polled in place so that the span is borrowed back afterwards instead of cloned.
    let mut work = std::pin::pin!(InSpan::new(span, work));
    let result = work.as_mut().await;
    let span = work.span();

    let latency = start.elapsed();
    let code = result.as_ref().map_or_else(Error::code, |_| Code::Ok);
    shared.metrics.record(slot, code, latency);
    record_outcome(span, code, latency);
    match &result {
        Ok(_) => tracing::debug!(parent: span, "ok"),
        Err(error @ Error::Internal { .. }) => tracing::warn!(parent: span, %error, "failed"),
        Err(error) => tracing::debug!(parent: span, %error, "failed"),
    }
    result
        .map(|out| Response::new(convert(out)))
        .map_err(Status::from)
}

pin_project_lite::pin_project! {
    /// `work` run inside `span`: the span is entered at every poll and while unfinished work
    /// is dropped (a cancelled call's clean-up logs in its span). Finished work is dropped as
    /// soon as it is done; nothing of it is left to run, so it needs no span (unlike
    /// `tracing::Instrumented`, which enters the span again to drop it).
    struct InSpan<F> {
        span: tracing::Span,
        #[pin]
        work: Option<F>,
    }

    impl<F> PinnedDrop for InSpan<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if this.work.is_some() {
                let _entered = this.span.enter();
                this.work.set(None);
            }
        }
    }
}

impl<F> InSpan<F> {
    fn new(span: tracing::Span, work: F) -> Self {
        Self {
            span,
            work: Some(work),
        }
    }

    fn span(self: std::pin::Pin<&mut Self>) -> &tracing::Span {
        self.project().span
    }
}

impl<F: Future> Future for InSpan<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        let Some(work) = this.work.as_mut().as_pin_mut() else {
            panic!("InSpan polled after it finished");
        };
        let output = std::task::ready!(work.poll(cx));
        this.work.set(None);
        std::task::Poll::Ready(output)
    }
}

/// Records `code` and `latency_us` on the call's span in one go (one look-up of the span
/// by the subscriber instead of one per field); nothing at all when the span is disabled.
fn record_outcome(span: &tracing::Span, code: Code, latency: std::time::Duration) {
    let Some(metadata) = span.metadata() else {
        return;
    };
    let fields = metadata.fields();
    let (Some(code_field), Some(latency_field)) =
        (fields.field("code"), fields.field("latency_us"))
    else {
        return;
    };
    let code = code_name(code);
    let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    span.record_all(&fields.value_set(&[
        (&code_field, Some(&code as &dyn tracing::Value)),
        (&latency_field, Some(&latency_us as &dyn tracing::Value)),
    ]));
}

fn unary<T: Debug>(response: T) -> T {
    tracing::trace!(response = ?response, "response");
    response
}

/// Turns a runtime's stream into tonic's, isolating panics raised while it is polled.
fn streaming<T: Send + 'static>(stream: ResponseStream<T>) -> BoxStream<T> {
    Box::pin(
        AssertUnwindSafe(stream)
            .catch_unwind()
            .map(|item| match item {
                Ok(item) => item.map_err(Status::from),
                Err(panic) => Err(Status::internal(format!(
                    "the runtime panicked while streaming: {}",
                    panic_message(panic.as_ref())
                ))),
            }),
    )
}

/// Implements a generated server trait by forwarding each method to the runtime trait.
macro_rules! adapter {
    (
        $generated:path, $adapter:ident . $inner:ident;
        unary { $($u:ident $uname:literal ($ureq:ty) -> $uresp:ty;)* }
        streaming { $($s:ident $sname:literal ($sreq:ty) -> $sresp:ty;)* }
        urls { $($x:ident $xname:literal ($xreq:ty) -> $xresp:ident => $url:ident;)* }
    ) => {
        #[tonic::async_trait]
        impl $generated for $adapter {
            $(
                async fn $u(
                    &self,
                    request: Request<$ureq>,
                ) -> std::result::Result<Response<$uresp>, Status> {
                    let inner = &self.$inner;
                    call(
                        &self.shared,
                        $uname,
                        const { method_index($uname) },
                        request,
                        |ctx, req| inner.$u(ctx, req),
                        unary,
                    )
                    .await
                }
            )*
            $(
                async fn $s(
                    &self,
                    request: Request<$sreq>,
                ) -> std::result::Result<Response<BoxStream<$sresp>>, Status> {
                    let inner = &self.$inner;
                    call(
                        &self.shared,
                        $sname,
                        const { method_index($sname) },
                        request,
                        |ctx, req| inner.$s(ctx, req),
                        streaming,
                    )
                    .await
                }
            )*
            $(
                async fn $x(
                    &self,
                    request: Request<$xreq>,
                ) -> std::result::Result<Response<$xresp>, Status> {
                    let inner = &self.$inner;
                    let server = self.streaming.as_ref();
                    call(
                        &self.shared,
                        $xname,
                        const { method_index($xname) },
                        request,
                        |ctx, req| async move {
                            match server {
                                Some(server) => server
                                    .$url(req)
                                    .map(|url| $xresp { url })
                                    .map_err(|e| Error::resource_exhausted(e.to_string())),
                                None => inner.$x(ctx, req).await,
                            }
                        },
                        unary,
                    )
                    .await
                }
            )*
        }
    };
}

adapter! {
    runtime_service_server::RuntimeService, RuntimeAdapter.runtime;
    unary {
        version "Version" (VersionRequest) -> VersionResponse;
        run_pod_sandbox "RunPodSandbox" (RunPodSandboxRequest) -> RunPodSandboxResponse;
        stop_pod_sandbox "StopPodSandbox" (StopPodSandboxRequest) -> StopPodSandboxResponse;
        remove_pod_sandbox "RemovePodSandbox" (RemovePodSandboxRequest) -> RemovePodSandboxResponse;
        pod_sandbox_status "PodSandboxStatus" (PodSandboxStatusRequest) -> PodSandboxStatusResponse;
        list_pod_sandbox "ListPodSandbox" (ListPodSandboxRequest) -> ListPodSandboxResponse;
        create_container "CreateContainer" (CreateContainerRequest) -> CreateContainerResponse;
        start_container "StartContainer" (StartContainerRequest) -> StartContainerResponse;
        stop_container "StopContainer" (StopContainerRequest) -> StopContainerResponse;
        remove_container "RemoveContainer" (RemoveContainerRequest) -> RemoveContainerResponse;
        list_containers "ListContainers" (ListContainersRequest) -> ListContainersResponse;
        container_status "ContainerStatus" (ContainerStatusRequest) -> ContainerStatusResponse;
        update_container_resources "UpdateContainerResources"
            (UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse;
        reopen_container_log "ReopenContainerLog"
            (ReopenContainerLogRequest) -> ReopenContainerLogResponse;
        exec_sync "ExecSync" (ExecSyncRequest) -> ExecSyncResponse;
        container_stats "ContainerStats" (ContainerStatsRequest) -> ContainerStatsResponse;
        list_container_stats "ListContainerStats"
            (ListContainerStatsRequest) -> ListContainerStatsResponse;
        pod_sandbox_stats "PodSandboxStats" (PodSandboxStatsRequest) -> PodSandboxStatsResponse;
        list_pod_sandbox_stats "ListPodSandboxStats"
            (ListPodSandboxStatsRequest) -> ListPodSandboxStatsResponse;
        update_runtime_config "UpdateRuntimeConfig"
            (UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse;
        status "Status" (StatusRequest) -> StatusResponse;
        checkpoint_container "CheckpointContainer"
            (CheckpointContainerRequest) -> CheckpointContainerResponse;
        checkpoint_pod "CheckpointPod" (CheckpointPodRequest) -> CheckpointPodResponse;
        restore_pod "RestorePod" (RestorePodRequest) -> RestorePodResponse;
        list_metric_descriptors "ListMetricDescriptors"
            (ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse;
        list_pod_sandbox_metrics "ListPodSandboxMetrics"
            (ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse;
        runtime_config "RuntimeConfig" (RuntimeConfigRequest) -> RuntimeConfigResponse;
        update_pod_sandbox_resources "UpdatePodSandboxResources"
            (UpdatePodSandboxResourcesRequest) -> UpdatePodSandboxResourcesResponse;
    }
    streaming {
        stream_pod_sandboxes "StreamPodSandboxes"
            (StreamPodSandboxesRequest) -> StreamPodSandboxesResponse;
        stream_containers "StreamContainers" (StreamContainersRequest) -> StreamContainersResponse;
        stream_container_stats "StreamContainerStats"
            (StreamContainerStatsRequest) -> StreamContainerStatsResponse;
        stream_pod_sandbox_stats "StreamPodSandboxStats"
            (StreamPodSandboxStatsRequest) -> StreamPodSandboxStatsResponse;
        get_container_events "GetContainerEvents" (GetEventsRequest) -> ContainerEventResponse;
        stream_pod_sandbox_metrics "StreamPodSandboxMetrics"
            (StreamPodSandboxMetricsRequest) -> StreamPodSandboxMetricsResponse;
    }
    urls {
        exec "Exec" (ExecRequest) -> ExecResponse => exec_url;
        attach "Attach" (AttachRequest) -> AttachResponse => attach_url;
        port_forward "PortForward" (PortForwardRequest) -> PortForwardResponse => port_forward_url;
    }
}

adapter! {
    image_service_server::ImageService, ImageAdapter.image;
    unary {
        list_images "ListImages" (ListImagesRequest) -> ListImagesResponse;
        image_status "ImageStatus" (ImageStatusRequest) -> ImageStatusResponse;
        pull_image "PullImage" (PullImageRequest) -> PullImageResponse;
        remove_image "RemoveImage" (RemoveImageRequest) -> RemoveImageResponse;
        image_fs_info "ImageFsInfo" (ImageFsInfoRequest) -> ImageFsInfoResponse;
    }
    streaming {
        stream_images "StreamImages" (StreamImagesRequest) -> StreamImagesResponse;
    }
    urls {}
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Notes the name of the current span when dropped.
    struct Guard(Arc<Mutex<Vec<Option<&'static str>>>>);

    impl Drop for Guard {
        fn drop(&mut self) {
            let current = tracing::Span::current().metadata().map(|m| m.name());
            self.0.lock().unwrap().push(current);
        }
    }

    #[tokio::test]
    async fn work_runs_and_is_dropped_inside_its_span() {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_max_level(tracing::Level::TRACE)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let seen = Arc::new(Mutex::new(Vec::new()));

        // Finished: the work's locals are dropped inside the span before it returns.
        let guard = Guard(seen.clone());
        let work = InSpan::new(tracing::info_span!("cri"), async move {
            let _guard = guard;
            tokio::task::yield_now().await;
            7
        });
        assert_eq!(work.await, 7);

        // Cancelled: dropped part-way, inside the span.
        let guard = Guard(seen.clone());
        let mut work = Box::pin(InSpan::new(tracing::info_span!("cri"), async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        }));
        let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(work.as_mut().poll(cx)));
        assert!(polled.await.is_pending());
        drop(work);

        assert_eq!(*seen.lock().unwrap(), [Some("cri"), Some("cri")]);
        assert_eq!(tracing::Span::current().metadata(), None, "left the span");
    }
}
