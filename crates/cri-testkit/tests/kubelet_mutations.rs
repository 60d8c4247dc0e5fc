//! Mutation tests of the `kubelet/*` cases: runtimes with a defect a kubelet would trip over
//! make exactly the cases that check it fail (compared with the same wrapper unmutated).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cri_client::cri_api::log::Record;
use cri_client::cri_api::v1::*;
use cri_server::{
    Context, Error, ImageService, ResponseStream, Result, RuntimeService, Server, async_trait,
};
use cri_testkit::conformance::{Config, Outcome, Suite};
use cri_testkit::{FakeRuntime, Harness};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mutation {
    /// No defect: the baseline.
    None,
    /// CreateContainer refuses any hugepage limit.
    RejectsHugepageLimits,
    /// ContainerStatus and ListContainers drop the `io.kubernetes.container.name` label.
    DropsContainerNameLabel,
    /// Container logs are plain lines, without the CRI `<time> <stream> <tag>` prefix.
    PlainLogs,
    /// A container name (pod name, namespace, uid, container name, attempt) stays reserved
    /// after RemoveContainer.
    NeverFreesContainerNames,
    /// ListContainers ignores its filter (the kubelet selects a pod's containers by label).
    ListContainersIgnoresFilter,
    /// StopPodSandbox leaves the sandbox READY.
    SandboxStopIgnored,
}

/// Pod name, namespace and uid, container name and attempt: what a runtime reserves.
type ContainerName = (String, String, String, String, u32);

struct Mutant {
    fake: FakeRuntime,
    mutation: Mutation,
    /// Container names ever used (NeverFreesContainerNames).
    names: Mutex<HashSet<ContainerName>>,
}

const DROPPED_LABEL: &str = "io.kubernetes.container.name";
/// Suffix of the file the fake really writes when logs are mangled.
const HIDDEN: &str = ".cri-records";

impl Mutant {
    fn new(mutation: Mutation) -> Self {
        Self {
            fake: FakeRuntime::builder().image("busybox").build(),
            mutation,
            names: Mutex::default(),
        }
    }

    /// The fake writes CRI records to `<log>.cri-records`; a task copies them to the real
    /// log path as plain lines, as a runtime that forgot the CRI format would write them.
    fn mangle_logs(&self, id: String, hidden: PathBuf, real: PathBuf) {
        let fake = self.fake.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut last = String::new();
            while started.elapsed() < Duration::from_secs(120) {
                let text = std::fs::read_to_string(&hidden).unwrap_or_default();
                if text != last {
                    let plain: String = text
                        .lines()
                        .map(|l| match Record::parse(l) {
                            Ok(r) => format!("{}\n", r.content),
                            Err(_) => format!("{l}\n"),
                        })
                        .collect();
                    let temp = real.with_extension("tmp-mangled");
                    if std::fs::write(&temp, plain).is_ok() {
                        let _ = std::fs::rename(&temp, &real);
                    }
                    last = text;
                }
                if !fake.container_ids().contains(&id) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }

    fn fix_log_path(path: &mut String) {
        if let Some(real) = path.strip_suffix(HIDDEN) {
            *path = real.to_string();
        }
    }

    async fn sandbox_metadata(&self, req: &CreateContainerRequest) -> PodSandboxMetadata {
        if let Some(metadata) = req.sandbox_config.as_ref().and_then(|c| c.metadata.clone()) {
            return metadata;
        }
        self.fake
            .pod_sandbox_status(
                Context::new("PodSandboxStatus"),
                PodSandboxStatusRequest {
                    pod_sandbox_id: req.pod_sandbox_id.clone(),
                    verbose: false,
                },
            )
            .await
            .ok()
            .and_then(|r| r.status)
            .and_then(|s| s.metadata)
            .unwrap_or_default()
    }

    async fn create(
        &self,
        ctx: Context,
        mut req: CreateContainerRequest,
    ) -> Result<CreateContainerResponse> {
        let config = req.config.clone().unwrap_or_default();
        match self.mutation {
            Mutation::RejectsHugepageLimits => {
                let limits = config
                    .linux
                    .as_ref()
                    .and_then(|l| l.resources.as_ref())
                    .map_or(0, |r| r.hugepage_limits.len());
                if limits > 0 {
                    return Err(Error::invalid_argument("hugepage limits are not supported"));
                }
                self.fake.create_container(ctx, req).await
            }
            Mutation::NeverFreesContainerNames => {
                let pod = self.sandbox_metadata(&req).await;
                let metadata = config.metadata.clone().unwrap_or_default();
                let key = (
                    pod.name,
                    pod.namespace,
                    pod.uid,
                    metadata.name,
                    metadata.attempt,
                );
                if self.names.lock().unwrap().contains(&key) {
                    return Err(Error::already_exists(format!(
                        "container name {key:?} is reserved"
                    )));
                }
                let response = self.fake.create_container(ctx, req).await?;
                self.names.lock().unwrap().insert(key);
                Ok(response)
            }
            Mutation::PlainLogs => {
                let log_dir = req
                    .sandbox_config
                    .as_ref()
                    .map(|c| c.log_directory.clone())
                    .unwrap_or_default();
                if log_dir.is_empty() || config.log_path.is_empty() {
                    return self.fake.create_container(ctx, req).await;
                }
                let real = PathBuf::from(&log_dir).join(&config.log_path);
                let hidden = PathBuf::from(format!("{}{HIDDEN}", real.display()));
                if let Some(c) = req.config.as_mut() {
                    c.log_path = format!("{}{HIDDEN}", c.log_path);
                }
                let response = self.fake.create_container(ctx, req).await?;
                self.mangle_logs(response.container_id.clone(), hidden, real);
                Ok(response)
            }
            _ => self.fake.create_container(ctx, req).await,
        }
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
            self.create(ctx, req).await
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
            if self.mutation == Mutation::ListContainersIgnoresFilter {
                req.filter = None;
            }
            let mut response = self.fake.list_containers(ctx, req).await?;
            if self.mutation == Mutation::DropsContainerNameLabel {
                for c in &mut response.containers {
                    c.labels.remove(DROPPED_LABEL);
                }
            }
            Ok(response)
        }
        async fn container_status(
            &self,
            ctx: Context,
            req: ContainerStatusRequest,
        ) -> Result<ContainerStatusResponse> {
            let mut response = self.fake.container_status(ctx, req).await?;
            if let Some(status) = response.status.as_mut() {
                match self.mutation {
                    Mutation::DropsContainerNameLabel => {
                        status.labels.remove(DROPPED_LABEL);
                    }
                    Mutation::PlainLogs => Mutant::fix_log_path(&mut status.log_path),
                    _ => {}
                }
            }
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
            self.fake.get_container_events(ctx, req).await
        }
        async fn runtime_config(
            &self,
            ctx: Context,
            req: RuntimeConfigRequest,
        ) -> Result<RuntimeConfigResponse> {
            self.fake.runtime_config(ctx, req).await
        }
    }

    #[async_trait]
    impl ImageService for Mutant {
        async fn list_images(
            &self,
            ctx: Context,
            req: ListImagesRequest,
        ) -> Result<ListImagesResponse> {
            self.fake.list_images(ctx, req).await
        }
        async fn image_status(
            &self,
            ctx: Context,
            req: ImageStatusRequest,
        ) -> Result<ImageStatusResponse> {
            self.fake.image_status(ctx, req).await
        }
        async fn pull_image(
            &self,
            ctx: Context,
            req: PullImageRequest,
        ) -> Result<PullImageResponse> {
            self.fake.pull_image(ctx, req).await
        }
        async fn remove_image(
            &self,
            ctx: Context,
            req: RemoveImageRequest,
        ) -> Result<RemoveImageResponse> {
            self.fake.remove_image(ctx, req).await
        }
        async fn image_fs_info(
            &self,
            ctx: Context,
            req: ImageFsInfoRequest,
        ) -> Result<ImageFsInfoResponse> {
            self.fake.image_fs_info(ctx, req).await
        }
    }
}

/// The failed case ids of a whole suite run against the mutant.
async fn failures(mutation: Mutation) -> BTreeSet<String> {
    let server = Server::builder()
        .service(Arc::new(Mutant::new(mutation)))
        .build()
        .unwrap();
    let harness = Harness::start(server).await.unwrap();
    let report = Suite::new(Config::default()).run(&harness.client).await;
    harness.shutdown().await;
    report
        .results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
        .map(|r| r.id.clone())
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// Every `kubelet/*` case creates containers with the kubelet's resources.
const KUBELET_CASES: [&str; 8] = [
    "kubelet/static-pod",
    "kubelet/static-pod-recreate",
    "kubelet/labels-annotations-roundtrip",
    "kubelet/log-layout",
    "kubelet/hugepage-limits",
    "kubelet/default-security-context",
    "kubelet/image-by-id",
    "kubelet/host-network-pod",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kubelet_defect_fails_exactly_the_cases_that_check_it() {
    let baseline = failures(Mutation::None).await;
    println!("baseline failures (other areas, ignored): {baseline:?}");
    assert!(
        baseline.iter().all(|id| !id.starts_with("kubelet/")),
        "the unmutated wrapper passes the kubelet cases: {baseline:?}"
    );
    // Where the node has hugepage sizes the kubelet sends a limit for each in every
    // container, so a runtime refusing them can run no kubelet pod at all.
    let hugepages = if cri_testkit::kubelet::host_hugepage_sizes().is_empty() {
        set(&[])
    } else {
        let mut cases = set(&KUBELET_CASES);
        cases.insert("resources/hugepage-limits-as-kubelet".to_string());
        cases
    };
    let expectations = [
        (Mutation::RejectsHugepageLimits, hugepages),
        (
            Mutation::DropsContainerNameLabel,
            set(&[
                "kubelet/static-pod",
                "kubelet/labels-annotations-roundtrip",
                "kubelet/host-network-pod",
            ]),
        ),
        (
            Mutation::PlainLogs,
            set(&[
                "kubelet/static-pod",
                "kubelet/log-layout",
                "container/logs",
                "logs/cri-format",
                "logs/partial-lines",
                "logs/reopen-rotation",
            ]),
        ),
        (
            Mutation::NeverFreesContainerNames,
            set(&["kubelet/static-pod-recreate"]),
        ),
    ];
    let mut wrong = HashMap::new();
    for (mutation, expected) in expectations {
        let failed: BTreeSet<String> = failures(mutation)
            .await
            .difference(&baseline)
            .cloned()
            .collect();
        println!("{mutation:?}: {failed:?}");
        if failed != expected {
            wrong.insert(format!("{mutation:?}"), (expected, failed));
        }
    }
    // Defects the general mutation test covers too: here only their effect on the kubelet
    // cases is pinned.
    let kubelet_only = [
        (
            Mutation::ListContainersIgnoresFilter,
            set(&["kubelet/labels-annotations-roundtrip"]),
        ),
        (Mutation::SandboxStopIgnored, set(&["kubelet/static-pod"])),
    ];
    for (mutation, expected) in kubelet_only {
        let failed: BTreeSet<String> = failures(mutation)
            .await
            .into_iter()
            .filter(|id| id.starts_with("kubelet/"))
            .collect();
        println!("{mutation:?} (kubelet cases): {failed:?}");
        if failed != expected {
            wrong.insert(format!("{mutation:?}"), (expected, failed));
        }
    }
    assert!(
        wrong.is_empty(),
        "(expected, failed) per mutation: {wrong:#?}"
    );
}
