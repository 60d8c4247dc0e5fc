//! CRI's `RuntimeService` on top of the runtime's methods.

use std::collections::HashMap;
use std::time::Duration;

use cri_api::v1::*;
use cri_api::well_known::condition;
use cri_server::{Context, Error, ResponseStream, Result, RuntimeService, async_trait};

use super::Runtime;
use crate::labels::now_nanos;

fn seconds(value: i64) -> Duration {
    Duration::from_secs(u64::try_from(value).unwrap_or(0))
}

impl Runtime {
    /// NetworkReady: true without CNI (pods have the host network or only `lo`) and when the
    /// CNI config directory holds a usable network; otherwise false, `NetworkPluginNotReady`.
    fn network_condition(&self) -> RuntimeCondition {
        let not_ready = match self.config.cni.conf_dir() {
            None => None,
            Some(_) => self.config.cni.load().err(),
        };
        RuntimeCondition {
            r#type: condition::NETWORK_READY.into(),
            status: not_ready.is_none(),
            reason: if not_ready.is_some() {
                "NetworkPluginNotReady".into()
            } else {
                String::new()
            },
            message: not_ready.map(|e| format!("CNI: {e}")).unwrap_or_default(),
        }
    }
}

#[async_trait]
impl RuntimeService for Runtime {
    async fn version(&self, _ctx: Context, _req: VersionRequest) -> Result<VersionResponse> {
        Ok(VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "docker-shim".into(),
            runtime_version: format!(
                "{} (Docker Engine {})",
                env!("CARGO_PKG_VERSION"),
                self.engine_version
            ),
            runtime_api_version: cri_api::API_VERSION.into(),
        })
    }

    async fn status(&self, _ctx: Context, req: StatusRequest) -> Result<StatusResponse> {
        let engine = self.docker.ping().await;
        let conditions = vec![
            RuntimeCondition {
                r#type: condition::RUNTIME_READY.into(),
                status: engine.is_ok(),
                reason: if engine.is_ok() {
                    String::new()
                } else {
                    "DockerEngineUnreachable".into()
                },
                message: engine.err().map(|e| e.to_string()).unwrap_or_default(),
            },
            self.network_condition(),
        ];
        let mut info = HashMap::new();
        if req.verbose {
            let config = serde_json::json!({
                "root": self.config.root,
                "pauseImage": self.config.pause_image,
                "engineVersion": self.engine_version,
                "apiVersion": self.docker.client_version().to_string(),
                "network": match self.config.cni.conf_dir() {
                    Some(dir) => serde_json::json!({
                        "cniConfDir": dir,
                        "network": self.config.cni.load().ok(),
                    }),
                    None => "host or loopback-only namespaces (no CNI)".into(),
                },
            });
            info.insert("config".to_string(), config.to_string());
        }
        Ok(StatusResponse {
            status: Some(RuntimeStatus { conditions }),
            info,
            runtime_handlers: vec![RuntimeHandler {
                name: String::new(),
                features: Some(RuntimeHandlerFeatures {
                    recursive_read_only_mounts: false,
                    user_namespaces: false,
                }),
            }],
            features: Some(RuntimeFeatures::default()),
        })
    }

    async fn runtime_config(
        &self,
        _ctx: Context,
        _req: RuntimeConfigRequest,
    ) -> Result<RuntimeConfigResponse> {
        let driver = self
            .docker
            .info()
            .await
            .ok()
            .and_then(|i| i.cgroup_driver)
            .map(|d| d.to_string())
            .unwrap_or_default();
        Ok(RuntimeConfigResponse {
            linux: Some(LinuxRuntimeConfiguration {
                cgroup_driver: if driver == "systemd" {
                    CgroupDriver::Systemd as i32
                } else {
                    CgroupDriver::Cgroupfs as i32
                },
            }),
        })
    }

    async fn update_runtime_config(
        &self,
        _ctx: Context,
        req: UpdateRuntimeConfigRequest,
    ) -> Result<UpdateRuntimeConfigResponse> {
        let cidr = req
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        tracing::info!(%cidr, "pod CIDR noted (not applied: no CNI)");
        Ok(UpdateRuntimeConfigResponse {})
    }

    async fn run_pod_sandbox(
        &self,
        _ctx: Context,
        req: RunPodSandboxRequest,
    ) -> Result<RunPodSandboxResponse> {
        let config = req.config.unwrap_or_default();
        let runtime = self.arc();
        let pod_sandbox_id =
            to_completion(async move { runtime.run_pod(config, req.runtime_handler).await })
                .await?;
        Ok(RunPodSandboxResponse { pod_sandbox_id })
    }

    async fn stop_pod_sandbox(
        &self,
        _ctx: Context,
        req: StopPodSandboxRequest,
    ) -> Result<StopPodSandboxResponse> {
        self.stop_pod(&req.pod_sandbox_id).await?;
        Ok(StopPodSandboxResponse {})
    }

    async fn remove_pod_sandbox(
        &self,
        _ctx: Context,
        req: RemovePodSandboxRequest,
    ) -> Result<RemovePodSandboxResponse> {
        self.remove_pod(&req.pod_sandbox_id).await?;
        Ok(RemovePodSandboxResponse {})
    }

    async fn pod_sandbox_status(
        &self,
        _ctx: Context,
        req: PodSandboxStatusRequest,
    ) -> Result<PodSandboxStatusResponse> {
        let status = self.pod_status(&req.pod_sandbox_id).await?;
        let mut containers_statuses = Vec::new();
        for id in self.container_ids_of(&req.pod_sandbox_id).await? {
            match self.container_status(&id).await {
                Ok(s) => containers_statuses.push(s),
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(PodSandboxStatusResponse {
            status: Some(status),
            info: HashMap::new(),
            containers_statuses,
            timestamp: now_nanos(),
        })
    }

    async fn list_pod_sandbox(
        &self,
        _ctx: Context,
        req: ListPodSandboxRequest,
    ) -> Result<ListPodSandboxResponse> {
        Ok(ListPodSandboxResponse {
            items: self.list_pods(req.filter.as_ref()).await?,
        })
    }

    async fn create_container(
        &self,
        _ctx: Context,
        req: CreateContainerRequest,
    ) -> Result<CreateContainerResponse> {
        let config = req.config.unwrap_or_default();
        let runtime = self.arc();
        let container_id = to_completion(async move {
            Runtime::create_container(&runtime, &req.pod_sandbox_id, config).await
        })
        .await?;
        Ok(CreateContainerResponse { container_id })
    }

    async fn start_container(
        &self,
        _ctx: Context,
        req: StartContainerRequest,
    ) -> Result<StartContainerResponse> {
        Runtime::start_container(self, &req.container_id).await?;
        Ok(StartContainerResponse {})
    }

    async fn stop_container(
        &self,
        _ctx: Context,
        req: StopContainerRequest,
    ) -> Result<StopContainerResponse> {
        Runtime::stop_container(self, &req.container_id, seconds(req.timeout)).await?;
        Ok(StopContainerResponse {})
    }

    async fn remove_container(
        &self,
        _ctx: Context,
        req: RemoveContainerRequest,
    ) -> Result<RemoveContainerResponse> {
        Runtime::remove_container(self, &req.container_id).await?;
        Ok(RemoveContainerResponse {})
    }

    async fn list_containers(
        &self,
        _ctx: Context,
        req: ListContainersRequest,
    ) -> Result<ListContainersResponse> {
        Ok(ListContainersResponse {
            containers: Runtime::list_containers(self, req.filter.as_ref()).await?,
        })
    }

    async fn container_status(
        &self,
        _ctx: Context,
        req: ContainerStatusRequest,
    ) -> Result<ContainerStatusResponse> {
        let status = Runtime::container_status(self, &req.container_id).await?;
        Ok(ContainerStatusResponse {
            status: Some(status),
            info: HashMap::new(),
        })
    }

    async fn update_container_resources(
        &self,
        _ctx: Context,
        req: UpdateContainerResourcesRequest,
    ) -> Result<UpdateContainerResourcesResponse> {
        self.update_resources(&req.container_id, req.linux).await?;
        Ok(UpdateContainerResourcesResponse {})
    }

    async fn reopen_container_log(
        &self,
        _ctx: Context,
        req: ReopenContainerLogRequest,
    ) -> Result<ReopenContainerLogResponse> {
        self.ensure_running(&req.container_id).await?;
        self.reopen_log_of(&req.container_id).await?;
        Ok(ReopenContainerLogResponse {})
    }

    async fn exec_sync(&self, _ctx: Context, req: ExecSyncRequest) -> Result<ExecSyncResponse> {
        Runtime::exec_sync(self, &req.container_id, &req.cmd, seconds(req.timeout)).await
    }

    async fn container_stats(
        &self,
        _ctx: Context,
        req: ContainerStatsRequest,
    ) -> Result<ContainerStatsResponse> {
        Ok(ContainerStatsResponse {
            stats: Some(Runtime::container_stats(self, &req.container_id).await?),
        })
    }

    async fn list_container_stats(
        &self,
        _ctx: Context,
        req: ListContainerStatsRequest,
    ) -> Result<ListContainerStatsResponse> {
        Ok(ListContainerStatsResponse {
            stats: Runtime::list_container_stats(self, req.filter.as_ref()).await?,
        })
    }

    async fn pod_sandbox_stats(
        &self,
        _ctx: Context,
        req: PodSandboxStatsRequest,
    ) -> Result<PodSandboxStatsResponse> {
        Ok(PodSandboxStatsResponse {
            stats: Some(self.pod_stats(&req.pod_sandbox_id).await?),
        })
    }

    async fn list_pod_sandbox_stats(
        &self,
        _ctx: Context,
        req: ListPodSandboxStatsRequest,
    ) -> Result<ListPodSandboxStatsResponse> {
        Ok(ListPodSandboxStatsResponse {
            stats: self.list_pod_stats(req.filter.as_ref()).await?,
        })
    }

    async fn get_container_events(
        &self,
        _ctx: Context,
        _req: GetEventsRequest,
    ) -> Result<ResponseStream<ContainerEventResponse>> {
        Ok(self.events.subscribe())
    }
}

/// Runs a creation as its own task and waits for it: cri-server drops a method's future
/// when the caller's deadline passes, and a creation dropped halfway would leave a
/// half-made pause container behind.
async fn to_completion<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(work)
        .await
        .map_err(|e| Error::internal(format!("the operation's task failed: {e}")))?
}
