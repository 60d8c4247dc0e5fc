//! The full request form: every unary CRI request type knows its method, its deadline rule
//! (the kubelet's) and how to verify its response, so `Client::call` can send any of them.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use cri_api::v1::image_service_client::ImageServiceClient;
use cri_api::v1::runtime_service_client::RuntimeServiceClient;
use cri_api::v1::*;
use tonic::Status;
use tonic::transport::Channel;

use crate::{Result, verify};

/// The generated clients a call goes through. Not part of the public API.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct Stubs {
    pub(crate) runtime: RuntimeServiceClient<Channel>,
    pub(crate) image: ImageServiceClient<Channel>,
}

/// A future answering one call.
#[doc(hidden)]
pub type Answer<T> =
    Pin<Box<dyn Future<Output = std::result::Result<tonic::Response<T>, Status>> + Send>>;

mod sealed {
    pub trait Sealed {}
}

/// A unary CRI request that [`Client::call`](crate::Client::call) can send.
///
/// Implemented for every unary request message of `runtime.v1` (the seven server-streaming
/// RPCs have methods of their own). The implementation carries the kubelet's rules:
///
/// | request | deadline | response check |
/// |---|---|---|
/// | `RunPodSandboxRequest` | 2 × the client timeout | — |
/// | `StopContainerRequest` | timeout + the request's grace period | — |
/// | `ExecSyncRequest` | timeout + the command timeout; none when that is 0 | — |
/// | `PullImageRequest` | none | non-empty `image_ref` |
/// | `PodSandboxStatusRequest` | timeout | id, metadata name/namespace/uid, `created_at` |
/// | `ContainerStatusRequest` | timeout | id, `metadata.name`, `created_at`, image, `image_ref` |
/// | `VersionRequest` | timeout | all fields set, API version `v1` |
/// | everything else | timeout | — |
pub trait Call: sealed::Sealed + Send + Sized + 'static {
    /// The response message.
    type Response: Send + 'static;
    /// The CRI method name, e.g. `"RunPodSandbox"`.
    const METHOD: &'static str;

    /// The deadline of this call given the client's timeout (`None`: no deadline).
    fn deadline(&self, timeout: Option<Duration>) -> Option<Duration> {
        timeout
    }

    /// Checks the response against the CRI contract.
    fn verify(response: &Self::Response) -> Result<()> {
        let _ = response;
        Ok(())
    }

    /// Sends the request through the generated client.
    #[doc(hidden)]
    fn send(stubs: &Stubs, request: tonic::Request<Self>) -> Answer<Self::Response>;
}

macro_rules! calls {
    ($($stub:ident . $method:ident ( $req:ident ) -> $resp:ty = $name:literal;)*) => {$(
        impl sealed::Sealed for $req {}
        impl Call for $req {
            type Response = $resp;
            const METHOD: &'static str = $name;
            calls!(@rules $req);
            fn send(stubs: &Stubs, request: tonic::Request<Self>) -> Answer<$resp> {
                let mut client = stubs.$stub.clone();
                Box::pin(async move { client.$method(request).await })
            }
        }
    )*};
    (@rules RunPodSandboxRequest) => {
        fn deadline(&self, timeout: Option<Duration>) -> Option<Duration> {
            timeout.map(|t| t.saturating_mul(2))
        }
    };
    (@rules StopContainerRequest) => {
        fn deadline(&self, timeout: Option<Duration>) -> Option<Duration> {
            let grace = Duration::from_secs(self.timeout.max(0).unsigned_abs());
            timeout.map(|t| t.saturating_add(grace))
        }
    };
    (@rules ExecSyncRequest) => {
        fn deadline(&self, timeout: Option<Duration>) -> Option<Duration> {
            if self.timeout <= 0 {
                return None;
            }
            let command = Duration::from_secs(self.timeout.unsigned_abs());
            timeout.map(|t| t.saturating_add(command))
        }
    };
    (@rules PullImageRequest) => {
        fn deadline(&self, _timeout: Option<Duration>) -> Option<Duration> {
            None
        }
        fn verify(response: &PullImageResponse) -> Result<()> {
            if response.image_ref.is_empty() {
                return Err(crate::Error::InvalidResponse {
                    method: "PullImage",
                    reason: "image_ref is empty".into(),
                });
            }
            Ok(())
        }
    };
    (@rules PodSandboxStatusRequest) => {
        fn verify(response: &PodSandboxStatusResponse) -> Result<()> {
            verify::sandbox_status(response.status.as_ref())
        }
    };
    (@rules ContainerStatusRequest) => {
        fn verify(response: &ContainerStatusResponse) -> Result<()> {
            verify::container_status(response.status.as_ref())
        }
    };
    (@rules VersionRequest) => {
        fn verify(response: &VersionResponse) -> Result<()> {
            verify::version(response)
        }
    };
    (@rules $other:ident) => {};
}

calls! {
    runtime.version(VersionRequest) -> VersionResponse = "Version";
    runtime.run_pod_sandbox(RunPodSandboxRequest) -> RunPodSandboxResponse = "RunPodSandbox";
    runtime.stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse = "StopPodSandbox";
    runtime.remove_pod_sandbox(RemovePodSandboxRequest) -> RemovePodSandboxResponse = "RemovePodSandbox";
    runtime.pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse = "PodSandboxStatus";
    runtime.list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse = "ListPodSandbox";
    runtime.create_container(CreateContainerRequest) -> CreateContainerResponse = "CreateContainer";
    runtime.start_container(StartContainerRequest) -> StartContainerResponse = "StartContainer";
    runtime.stop_container(StopContainerRequest) -> StopContainerResponse = "StopContainer";
    runtime.remove_container(RemoveContainerRequest) -> RemoveContainerResponse = "RemoveContainer";
    runtime.list_containers(ListContainersRequest) -> ListContainersResponse = "ListContainers";
    runtime.container_status(ContainerStatusRequest) -> ContainerStatusResponse = "ContainerStatus";
    runtime.update_container_resources(UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse = "UpdateContainerResources";
    runtime.reopen_container_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse = "ReopenContainerLog";
    runtime.exec_sync(ExecSyncRequest) -> ExecSyncResponse = "ExecSync";
    runtime.exec(ExecRequest) -> ExecResponse = "Exec";
    runtime.attach(AttachRequest) -> AttachResponse = "Attach";
    runtime.port_forward(PortForwardRequest) -> PortForwardResponse = "PortForward";
    runtime.container_stats(ContainerStatsRequest) -> ContainerStatsResponse = "ContainerStats";
    runtime.list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse = "ListContainerStats";
    runtime.pod_sandbox_stats(PodSandboxStatsRequest) -> PodSandboxStatsResponse = "PodSandboxStats";
    runtime.list_pod_sandbox_stats(ListPodSandboxStatsRequest) -> ListPodSandboxStatsResponse = "ListPodSandboxStats";
    runtime.update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse = "UpdateRuntimeConfig";
    runtime.status(StatusRequest) -> StatusResponse = "Status";
    runtime.checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse = "CheckpointContainer";
    runtime.checkpoint_pod(CheckpointPodRequest) -> CheckpointPodResponse = "CheckpointPod";
    runtime.restore_pod(RestorePodRequest) -> RestorePodResponse = "RestorePod";
    runtime.list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse = "ListMetricDescriptors";
    runtime.list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse = "ListPodSandboxMetrics";
    runtime.runtime_config(RuntimeConfigRequest) -> RuntimeConfigResponse = "RuntimeConfig";
    runtime.update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest) -> UpdatePodSandboxResourcesResponse = "UpdatePodSandboxResources";
    image.list_images(ListImagesRequest) -> ListImagesResponse = "ListImages";
    image.image_status(ImageStatusRequest) -> ImageStatusResponse = "ImageStatus";
    image.pull_image(PullImageRequest) -> PullImageResponse = "PullImage";
    image.remove_image(RemoveImageRequest) -> RemoveImageResponse = "RemoveImage";
    image.image_fs_info(ImageFsInfoRequest) -> ImageFsInfoResponse = "ImageFsInfo";
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Option<Duration> = Some(Duration::from_secs(120));

    #[test]
    fn kubelet_deadlines() {
        assert_eq!(
            RunPodSandboxRequest::default().deadline(BASE),
            Some(Duration::from_secs(240))
        );
        let stop = StopContainerRequest {
            container_id: "c".into(),
            timeout: 30,
        };
        assert_eq!(stop.deadline(BASE), Some(Duration::from_secs(150)));
        let exec = ExecSyncRequest {
            timeout: 5,
            ..Default::default()
        };
        assert_eq!(exec.deadline(BASE), Some(Duration::from_secs(125)));
        assert_eq!(
            ExecSyncRequest::default().deadline(BASE),
            None,
            "0: no deadline"
        );
        assert_eq!(PullImageRequest::default().deadline(BASE), None);
        assert_eq!(ListContainersRequest::default().deadline(BASE), BASE);
        assert_eq!(VersionRequest::default().deadline(None), None);
    }

    #[test]
    fn pull_must_return_an_image_ref() {
        assert!(PullImageRequest::verify(&PullImageResponse::default()).is_err());
        let ok = PullImageResponse {
            image_ref: "sha256:1".into(),
        };
        assert!(PullImageRequest::verify(&ok).is_ok());
    }
}
