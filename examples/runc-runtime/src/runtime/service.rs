//! CRI's `RuntimeService` on top of the runtime's methods.

use std::collections::HashMap;
use std::time::Duration;

use cri_api::v1::*;
use cri_api::well_known::condition;
use cri_server::{Context, Error, ResponseStream, Result, RuntimeService, async_trait};

use super::Runtime;
use crate::monitor::protocol::now_nanos;

fn seconds(value: i64) -> Duration {
    Duration::from_secs(u64::try_from(value).unwrap_or(0))
}

impl Runtime {
    /// NetworkReady: true without CNI (pods have the host network or only `lo`, which need
    /// no plugin) and when the CNI config directory holds a usable network; otherwise false
    /// with reason `NetworkPluginNotReady`.
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
            runtime_name: "runc-runtime".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: cri_api::API_VERSION.into(),
        })
    }

    async fn status(&self, _ctx: Context, req: StatusRequest) -> Result<StatusResponse> {
        let conditions = vec![
            RuntimeCondition {
                r#type: condition::RUNTIME_READY.into(),
                status: true,
                ..Default::default()
            },
            self.network_condition(),
        ];
        let mut info = HashMap::new();
        if req.verbose {
            let runc_version = self
                .runc
                .command()
                .arg("--version")
                .output()
                .await
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_else(|e| format!("unavailable: {e}"));
            let network = match self.config.cni.conf_dir() {
                Some(dir) => serde_json::json!({
                    "cniConfDir": dir,
                    "cniBinDirs": self.config.cni.bin_dirs(),
                    "network": self.config.cni.load().ok(),
                }),
                None => "host or loopback-only namespaces (no CNI)".into(),
            };
            let config = serde_json::json!({
                "root": self.config.root,
                "runc": self.runc.path(),
                "runcRoot": self.runc.root(),
                "runcVersion": runc_version,
                "pauseImage": self.config.pause_image,
                "cgroupParent": self.host.cgroup_parent,
                "cgroupV2": self.cgroups.is_unified(),
                "restrictOomScoreAdj": self.host.restrict_oom_score_adj,
                "network": network,
            });
            info.insert("config".to_string(), config.to_string());
        }
        Ok(StatusResponse {
            status: Some(RuntimeStatus { conditions }),
            info,
            runtime_handlers: vec![RuntimeHandler {
                name: String::new(),
                features: Some(RuntimeHandlerFeatures {
                    recursive_read_only_mounts: self.host.recursive_read_only_supported,
                    user_namespaces: false,
                }),
            }],
            features: Some(RuntimeFeatures {
                supplemental_groups_policy: true,
                ..Default::default()
            }),
        })
    }

    async fn runtime_config(
        &self,
        _ctx: Context,
        _req: RuntimeConfigRequest,
    ) -> Result<RuntimeConfigResponse> {
        Ok(RuntimeConfigResponse {
            linux: Some(LinuxRuntimeConfiguration {
                cgroup_driver: CgroupDriver::Cgroupfs as i32,
            }),
        })
    }

    async fn update_runtime_config(
        &self,
        _ctx: Context,
        req: UpdateRuntimeConfigRequest,
    ) -> Result<UpdateRuntimeConfigResponse> {
        // CNI configs are used as they are written: the pod CIDR is not templated into one.
        let cidr = req
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        tracing::info!(%cidr, "pod CIDR noted (not applied: CNI configs are used as written)");
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
        let (status, info) = self.pod_status(&req.pod_sandbox_id, req.verbose)?;
        let containers_statuses = self
            .containers_of(&req.pod_sandbox_id)
            .iter()
            .map(|c| c.status())
            .collect();
        Ok(PodSandboxStatusResponse {
            status: Some(status),
            info,
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
            items: self.list_pods(req.filter.as_ref()),
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
            containers: Runtime::list_containers(self, req.filter.as_ref()),
        })
    }

    async fn container_status(
        &self,
        _ctx: Context,
        req: ContainerStatusRequest,
    ) -> Result<ContainerStatusResponse> {
        let (status, info) = Runtime::container_status(self, &req.container_id, req.verbose)?;
        Ok(ContainerStatusResponse {
            status: Some(status),
            info,
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
        self.reopen_log(&req.container_id).await?;
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
            stats: Some(Runtime::container_stats(self, &req.container_id)?),
        })
    }

    async fn list_container_stats(
        &self,
        _ctx: Context,
        req: ListContainerStatsRequest,
    ) -> Result<ListContainerStatsResponse> {
        Ok(ListContainerStatsResponse {
            stats: Runtime::list_container_stats(self, req.filter.as_ref()),
        })
    }

    async fn pod_sandbox_stats(
        &self,
        _ctx: Context,
        req: PodSandboxStatsRequest,
    ) -> Result<PodSandboxStatsResponse> {
        Ok(PodSandboxStatsResponse {
            stats: Some(self.pod_stats(&req.pod_sandbox_id)?),
        })
    }

    async fn list_pod_sandbox_stats(
        &self,
        _ctx: Context,
        req: ListPodSandboxStatsRequest,
    ) -> Result<ListPodSandboxStatsResponse> {
        Ok(ListPodSandboxStatsResponse {
            stats: self.list_pod_stats(req.filter.as_ref()),
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

/// Runs a creation as its own task and waits for it.
///
/// cri-server drops a method's future when the caller's deadline passes. A creation dropped
/// halfway would keep its name reserved (the kubelet's retry would get `AlreadyExists`) and
/// leave a half-made pod or container that nothing tracks; as a task it runs to its end, and
/// its own error path releases the name and cleans up.
async fn to_completion<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(work)
        .await
        .map_err(|e| Error::internal(format!("the operation's task failed: {e}")))?
}
