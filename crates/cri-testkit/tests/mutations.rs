//! Mutation tests: deliberately broken runtimes make exactly the expected cases fail, which
//! proves the suite can fail.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cri_client::cri_api::v1::*;
use cri_server::{
    Context, Error, ImageService, ResponseStream, Result, RuntimeService, Server, async_trait,
};
use cri_testkit::conformance::{Config, Outcome, Suite};
use cri_testkit::{FakeRuntime, Harness};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mutation {
    /// StopContainer fails unless the container is running.
    StopNotIdempotent,
    /// StopPodSandbox leaves the sandbox READY.
    SandboxStopIgnored,
    /// GetContainerEvents ends at once.
    NoEvents,
    /// ImageStatus of a missing image answers NotFound.
    MissingImageNotFound,
    /// ListContainers ignores its filter.
    ListIgnoresFilter,
    /// ContainerStatus forgets the exit code.
    ExitCodeLost,
}

struct Mutant {
    fake: FakeRuntime,
    mutation: Mutation,
}

impl Mutant {
    /// Runs before the fake: may refuse the call.
    async fn pre(&self, method: &str, req: &(dyn Any + Send + Sync)) -> Result<()> {
        match (self.mutation, method) {
            (Mutation::StopNotIdempotent, "stop_container") => {
                let req = req.downcast_ref::<StopContainerRequest>().unwrap();
                let status = self
                    .fake
                    .container_status(
                        Context::new("ContainerStatus"),
                        ContainerStatusRequest {
                            container_id: req.container_id.clone(),
                            verbose: false,
                        },
                    )
                    .await;
                let running = status
                    .ok()
                    .and_then(|s| s.status)
                    .is_some_and(|s| s.state() == ContainerState::ContainerRunning);
                if !running {
                    return Err(Error::failed_precondition("container is not running"));
                }
                Ok(())
            }
            (Mutation::MissingImageNotFound, "image_status") => {
                let req = req.downcast_ref::<ImageStatusRequest>().unwrap();
                let image = req.image.as_ref().map(|i| i.image.as_str()).unwrap_or("");
                if !self.fake.has_image(image) {
                    return Err(Error::not_found(format!("image {image} not found")));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Runs on the fake's response: may damage it.
    fn post(&self, method: &str, response: &mut dyn Any) {
        if (self.mutation, method) == (Mutation::ExitCodeLost, "container_status")
            && let Some(status) = response
                .downcast_mut::<ContainerStatusResponse>()
                .and_then(|r| r.status.as_mut())
        {
            status.exit_code = 0;
        }
    }
}

macro_rules! forward {
    ($trait:ident { $($m:ident($req:ty) -> $resp:ty;)* }) => {
        #[async_trait]
        impl $trait for Mutant {
            $(async fn $m(&self, ctx: Context, req: $req) -> Result<$resp> {
                self.pre(stringify!($m), &req).await?;
                let mut response = $trait::$m(&self.fake, ctx, req).await?;
                self.post(stringify!($m), &mut response);
                Ok(response)
            })*
        }
    };
}

/// Streams the fake returns, forwarded (or replaced) outside the macro.
#[async_trait]
trait Streams {
    async fn events(
        &self,
        ctx: Context,
        req: GetEventsRequest,
    ) -> Result<ResponseStream<ContainerEventResponse>>;
}

#[async_trait]
impl Streams for Mutant {
    async fn events(
        &self,
        ctx: Context,
        req: GetEventsRequest,
    ) -> Result<ResponseStream<ContainerEventResponse>> {
        if self.mutation == Mutation::NoEvents {
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        RuntimeService::get_container_events(&self.fake, ctx, req).await
    }
}

mod runtime_impl {
    use super::*;

    #[async_trait]
    impl RuntimeService for Mutant {
        async fn version(&self, ctx: Context, req: VersionRequest) -> Result<VersionResponse> {
            RuntimeService::version(&self.fake, ctx, req).await
        }
        async fn run_pod_sandbox(
            &self,
            ctx: Context,
            req: RunPodSandboxRequest,
        ) -> Result<RunPodSandboxResponse> {
            self.fake.run_pod_sandbox(ctx, req).await
        }
        async fn stop_pod_sandbox(
            &self,
            ctx: Context,
            req: StopPodSandboxRequest,
        ) -> Result<StopPodSandboxResponse> {
            if self.mutation == Mutation::SandboxStopIgnored {
                return Ok(StopPodSandboxResponse {});
            }
            self.fake.stop_pod_sandbox(ctx, req).await
        }
        async fn remove_pod_sandbox(
            &self,
            ctx: Context,
            req: RemovePodSandboxRequest,
        ) -> Result<RemovePodSandboxResponse> {
            self.fake.remove_pod_sandbox(ctx, req).await
        }
        async fn pod_sandbox_status(
            &self,
            ctx: Context,
            req: PodSandboxStatusRequest,
        ) -> Result<PodSandboxStatusResponse> {
            self.fake.pod_sandbox_status(ctx, req).await
        }
        async fn list_pod_sandbox(
            &self,
            ctx: Context,
            req: ListPodSandboxRequest,
        ) -> Result<ListPodSandboxResponse> {
            self.fake.list_pod_sandbox(ctx, req).await
        }
        async fn create_container(
            &self,
            ctx: Context,
            req: CreateContainerRequest,
        ) -> Result<CreateContainerResponse> {
            self.fake.create_container(ctx, req).await
        }
        async fn start_container(
            &self,
            ctx: Context,
            req: StartContainerRequest,
        ) -> Result<StartContainerResponse> {
            self.fake.start_container(ctx, req).await
        }
        async fn stop_container(
            &self,
            ctx: Context,
            req: StopContainerRequest,
        ) -> Result<StopContainerResponse> {
            self.pre("stop_container", &req).await?;
            self.fake.stop_container(ctx, req).await
        }
        async fn remove_container(
            &self,
            ctx: Context,
            req: RemoveContainerRequest,
        ) -> Result<RemoveContainerResponse> {
            self.fake.remove_container(ctx, req).await
        }
        async fn list_containers(
            &self,
            ctx: Context,
            mut req: ListContainersRequest,
        ) -> Result<ListContainersResponse> {
            if self.mutation == Mutation::ListIgnoresFilter {
                req.filter = None;
            }
            self.fake.list_containers(ctx, req).await
        }
        async fn container_status(
            &self,
            ctx: Context,
            req: ContainerStatusRequest,
        ) -> Result<ContainerStatusResponse> {
            let mut response = self.fake.container_status(ctx, req).await?;
            self.post("container_status", &mut response);
            Ok(response)
        }
        async fn update_container_resources(
            &self,
            ctx: Context,
            req: UpdateContainerResourcesRequest,
        ) -> Result<UpdateContainerResourcesResponse> {
            self.fake.update_container_resources(ctx, req).await
        }
        async fn reopen_container_log(
            &self,
            ctx: Context,
            req: ReopenContainerLogRequest,
        ) -> Result<ReopenContainerLogResponse> {
            self.fake.reopen_container_log(ctx, req).await
        }
        async fn exec_sync(&self, ctx: Context, req: ExecSyncRequest) -> Result<ExecSyncResponse> {
            self.fake.exec_sync(ctx, req).await
        }
        async fn container_stats(
            &self,
            ctx: Context,
            req: ContainerStatsRequest,
        ) -> Result<ContainerStatsResponse> {
            self.fake.container_stats(ctx, req).await
        }
        async fn list_container_stats(
            &self,
            ctx: Context,
            req: ListContainerStatsRequest,
        ) -> Result<ListContainerStatsResponse> {
            self.fake.list_container_stats(ctx, req).await
        }
        async fn pod_sandbox_stats(
            &self,
            ctx: Context,
            req: PodSandboxStatsRequest,
        ) -> Result<PodSandboxStatsResponse> {
            self.fake.pod_sandbox_stats(ctx, req).await
        }
        async fn list_pod_sandbox_stats(
            &self,
            ctx: Context,
            req: ListPodSandboxStatsRequest,
        ) -> Result<ListPodSandboxStatsResponse> {
            self.fake.list_pod_sandbox_stats(ctx, req).await
        }
        async fn update_runtime_config(
            &self,
            ctx: Context,
            req: UpdateRuntimeConfigRequest,
        ) -> Result<UpdateRuntimeConfigResponse> {
            self.fake.update_runtime_config(ctx, req).await
        }
        async fn status(&self, ctx: Context, req: StatusRequest) -> Result<StatusResponse> {
            self.fake.status(ctx, req).await
        }
        async fn get_container_events(
            &self,
            ctx: Context,
            req: GetEventsRequest,
        ) -> Result<ResponseStream<ContainerEventResponse>> {
            Streams::events(self, ctx, req).await
        }
        async fn runtime_config(
            &self,
            ctx: Context,
            req: RuntimeConfigRequest,
        ) -> Result<RuntimeConfigResponse> {
            self.fake.runtime_config(ctx, req).await
        }
    }
}

forward!(ImageService {
    list_images(ListImagesRequest) -> ListImagesResponse;
    image_status(ImageStatusRequest) -> ImageStatusResponse;
    pull_image(PullImageRequest) -> PullImageResponse;
    remove_image(RemoveImageRequest) -> RemoveImageResponse;
    image_fs_info(ImageFsInfoRequest) -> ImageFsInfoResponse;
});

/// Every case's outcome under `mutation`, by id.
async fn outcomes(mutation: Mutation) -> BTreeMap<String, Outcome> {
    let mutant = Mutant {
        fake: FakeRuntime::builder().image("busybox").build(),
        mutation,
    };
    let server = Server::builder().service(Arc::new(mutant)).build().unwrap();
    let harness = Harness::start(server).await.unwrap();
    let report = Suite::new(Config::default()).run(&harness.client).await;
    report
        .results
        .iter()
        .map(|r| (r.id.clone(), r.outcome.clone()))
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mutation_fails_exactly_the_cases_that_check_it() {
    let expectations = [
        (
            Mutation::StopNotIdempotent,
            set(&["idempotence/stop-container"]),
        ),
        (
            Mutation::SandboxStopIgnored,
            set(&[
                "sandbox/lifecycle",
                "sandbox/list-filters",
                "kubelet/static-pod",
            ]),
        ),
        (Mutation::NoEvents, set(&["events/container-lifecycle"])),
        (
            Mutation::MissingImageNotFound,
            // Status of a removed image must say "absent", not fail.
            set(&["image/missing-image", "image/remove", "image/remove-by-id"]),
        ),
        (
            Mutation::ListIgnoresFilter,
            set(&[
                "container/list-filters",
                "streaming/containers",
                "kubelet/labels-annotations-roundtrip",
            ]),
        ),
        (
            Mutation::ExitCodeLost,
            // The port-forward cases read their server container's exit code to tell a
            // missing `nc` (127 on a simulator) from a server that died.
            set(&[
                "container/exit-code",
                "exec/port-forward-spdy",
                "exec/port-forward-websocket",
            ]),
        ),
    ];
    let mut wrong = Vec::new();
    for (mutation, expected) in expectations {
        let mut outcomes = outcomes(mutation).await;
        let failed: BTreeSet<String> = outcomes
            .iter()
            .filter(|(_, outcome)| matches!(outcome, Outcome::Failed(_)))
            .map(|(id, _)| id.clone())
            .collect();
        if failed != expected {
            // The outcomes that differ, to tell a regression from a timing accident.
            outcomes.retain(|id, _| failed.contains(id) != expected.contains(id));
            wrong.push((mutation, expected, failed, outcomes));
        }
    }
    assert!(
        wrong.is_empty(),
        "(mutation, expected, failed, differing outcomes): {wrong:#?}"
    );
}
