//! Mutation tests on real runc: the defects only a kernel can show (a runtime that ignores
//! `privileged`, or `readonly_rootfs`) must make exactly the conformance cases that check
//! them fail. The fake cannot run these cases (it runs no processes), so the defect is put
//! in front of runc-runtime instead: a proxy that forwards every call and drops the field from
//! CreateContainer, which the runtime behind it then never sees.

mod common;

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::Arc;

use cri_client::cri_api::v1::image_service_client::ImageServiceClient;
use cri_client::cri_api::v1::runtime_service_client::RuntimeServiceClient;
use cri_client::cri_api::v1::*;
use cri_client::tonic::transport::Channel;
use cri_server::{Context, Error, ImageService, Result, RuntimeService, Server, async_trait};
use cri_testkit::Harness;
use cri_testkit::conformance::{Config, Outcome, Suite};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mutation {
    /// Forwards everything unchanged (the baseline).
    None,
    /// Containers run unprivileged whatever they ask.
    IgnoresPrivileged,
    /// Containers get a writable rootfs whatever they ask.
    IgnoresReadonlyRootfs,
}

struct Mutant {
    runtime: RuntimeServiceClient<Channel>,
    image: ImageServiceClient<Channel>,
    mutation: Mutation,
}

impl Mutant {
    /// The request as the defective runtime would treat it.
    fn mutate<T: Any>(&self, mut request: T) -> T {
        if let Some(create) =
            (&mut request as &mut dyn Any).downcast_mut::<CreateContainerRequest>()
            && let Some(sc) = create
                .config
                .as_mut()
                .and_then(|c| c.linux.as_mut())
                .and_then(|l| l.security_context.as_mut())
        {
            match self.mutation {
                Mutation::None => {}
                Mutation::IgnoresPrivileged => sc.privileged = false,
                Mutation::IgnoresReadonlyRootfs => sc.readonly_rootfs = false,
            }
        }
        request
    }
}

macro_rules! forward {
    ($trait:ident via $stub:ident { $($m:ident($req:ty) -> $resp:ty;)* }) => {
        #[async_trait]
        impl $trait for Mutant {
            $(async fn $m(&self, _: Context, req: $req) -> Result<$resp> {
                let req = self.mutate(req);
                self.$stub
                    .clone()
                    .$m(req)
                    .await
                    .map(cri_client::tonic::Response::into_inner)
                    .map_err(Error::Status)
            })*
        }
    };
}

forward! {
    RuntimeService via runtime {
        version(VersionRequest) -> VersionResponse;
        status(StatusRequest) -> StatusResponse;
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
        exec_sync(ExecSyncRequest) -> ExecSyncResponse;
    }
}

forward! {
    ImageService via image {
        list_images(ListImagesRequest) -> ListImagesResponse;
        image_status(ImageStatusRequest) -> ImageStatusResponse;
        pull_image(PullImageRequest) -> PullImageResponse;
        image_fs_info(ImageFsInfoRequest) -> ImageFsInfoResponse;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_level_defects_fail_exactly_their_cases() {
    let Some(images) = common::requirements() else {
        return;
    };
    let runtime = common::Runtime::start(common::Options {
        imports: vec![images.dir.join("busybox.tar"), images.dir.join("pause.tar")],
        ..Default::default()
    })
    .await;
    let config = Config {
        image: images.busybox.clone(),
        pull_image: None,
        removable_image: None,
        host_network: true,
        log_root: Some(runtime.log_root.clone()),
        ..Default::default()
    };
    let mut failed_by = Vec::new();
    for mutation in [
        Mutation::None,
        Mutation::IgnoresPrivileged,
        Mutation::IgnoresReadonlyRootfs,
    ] {
        let mutant = Mutant {
            runtime: runtime.client.runtime_client(),
            image: runtime.client.image_client(),
            mutation,
        };
        let server = Server::builder().service(Arc::new(mutant)).build().unwrap();
        let harness = Harness::start(server).await.unwrap();
        let report = Suite::new(config.clone())
            .focus(["security/"])
            .run(&harness.client)
            .await;
        harness.shutdown().await;
        let failed: BTreeSet<String> = report
            .results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
            .map(|r| r.id.clone())
            .collect();
        println!("{mutation:?}: {failed:?}");
        failed_by.push((mutation, failed));
    }
    let log = runtime.log();
    runtime.shutdown().await;

    let set = |ids: &[&str]| -> BTreeSet<String> { ids.iter().map(|s| s.to_string()).collect() };
    let expected = [
        (Mutation::None, set(&[])),
        (
            Mutation::IgnoresPrivileged,
            set(&[
                "security/privileged-sandbox",
                "security/privileged-devices",
                "security/privileged-no-masked-paths",
                "security/privileged-seccomp-ignored",
                "security/privileged-sysfs-writable",
                // The runtime no longer sees a privileged container to refuse.
                "security/privileged-container-refused-in-unprivileged-sandbox",
            ]),
        ),
        (
            Mutation::IgnoresReadonlyRootfs,
            set(&["security/readonly-rootfs"]),
        ),
    ];
    assert_eq!(
        failed_by, expected,
        "(mutation, failed cases)\nruntime log:\n{log}"
    );
}
