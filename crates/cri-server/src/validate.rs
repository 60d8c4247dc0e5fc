//! Request validation: what the CRI contract rules out never reaches a runtime.
//!
//! The server validates every request before calling the trait method; a failure answers
//! `InvalidArgument` with a message that names the field, e.g.
//! `"CreateContainer: config.metadata.name is required"`.
//!
//! | request | rules |
//! |---|---|
//! | `RunPodSandbox` | `config`, `config.metadata` with `name`, `namespace`, `uid` |
//! | `CreateContainer` | `pod_sandbox_id`, `config`, `config.metadata.name`, `config.image.image` |
//! | sandbox-addressed calls | `pod_sandbox_id` (stop, remove, status, stats, port-forward, checkpoint, resources) |
//! | container-addressed calls | `container_id` (start, stop, remove, status, resources, log reopen, exec, attach, stats, checkpoint) |
//! | `StopContainer` | `timeout` ≥ 0 |
//! | `ExecSync` | `cmd` non-empty, `timeout` ≥ 0 |
//! | `Exec` | `cmd` non-empty; one of `stdin`/`stdout`/`stderr`; not `tty` with `stderr` |
//! | `Attach` | one of `stdin`/`stdout`/`stderr`; not `tty` with `stderr` |
//! | `PortForward` | every port in 1..=65535 |
//! | `CheckpointContainer` | `location`, `timeout` ≥ 0 |
//! | `CheckpointPod` | `output_path` |
//! | `RestorePod` | `checkpoint_path` |
//! | `UpdateRuntimeConfig` | `runtime_config` |
//! | `PullImage`, `ImageStatus`, `RemoveImage` | `image.image` |
//!
//! ```
//! use cri_server::validate::Validate;
//! use cri_server::cri_api::v1::ExecRequest;
//!
//! let bad = ExecRequest {
//!     container_id: "c1".into(),
//!     cmd: vec!["sh".into()],
//!     tty: true,
//!     stderr: true,
//!     ..Default::default()
//! };
//! let err = bad.validate().unwrap_err();
//! assert!(err.to_string().contains("tty and stderr"));
//! ```

use cri_api::v1::*;

use crate::Error;

/// A CRI request that can check itself against the contract.
pub trait Validate {
    /// `Ok` when the request may reach a runtime; `Err(InvalidArgument)` naming the field
    /// otherwise.
    fn validate(&self) -> Result<(), Error>;
}

fn required(method: &str, field: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        Err(Error::invalid_argument(format!(
            "{method}: {field} is required"
        )))
    } else {
        Ok(())
    }
}

fn present<'a, T>(method: &str, field: &str, value: Option<&'a T>) -> Result<&'a T, Error> {
    value.ok_or_else(|| Error::invalid_argument(format!("{method}: {field} is required")))
}

fn non_negative(method: &str, field: &str, value: i64) -> Result<(), Error> {
    if value < 0 {
        Err(Error::invalid_argument(format!(
            "{method}: {field} must not be negative (got {value})"
        )))
    } else {
        Ok(())
    }
}

fn streams(method: &str, stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Result<(), Error> {
    if !(stdin || stdout || stderr) {
        return Err(Error::invalid_argument(format!(
            "{method}: one of stdin, stdout and stderr must be set"
        )));
    }
    if tty && stderr {
        return Err(Error::invalid_argument(format!(
            "{method}: tty and stderr cannot both be set (a terminal has one output stream)"
        )));
    }
    Ok(())
}

fn image(method: &str, spec: Option<&ImageSpec>) -> Result<(), Error> {
    let spec = present(method, "image", spec)?;
    required(method, "image.image", &spec.image)
}

/// Requests without rules.
macro_rules! always_valid {
    ($($ty:ty),* $(,)?) => {
        $(impl Validate for $ty {
            fn validate(&self) -> Result<(), Error> {
                Ok(())
            }
        })*
    };
}

/// Requests whose only rule is one required id field.
macro_rules! id_required {
    ($($ty:ty => $method:literal . $field:ident),* $(,)?) => {
        $(impl Validate for $ty {
            fn validate(&self) -> Result<(), Error> {
                required($method, stringify!($field), &self.$field)
            }
        })*
    };
}

always_valid!(
    VersionRequest,
    ListPodSandboxRequest,
    StreamPodSandboxesRequest,
    ListContainersRequest,
    StreamContainersRequest,
    ListContainerStatsRequest,
    StreamContainerStatsRequest,
    ListPodSandboxStatsRequest,
    StreamPodSandboxStatsRequest,
    StatusRequest,
    GetEventsRequest,
    ListMetricDescriptorsRequest,
    ListPodSandboxMetricsRequest,
    StreamPodSandboxMetricsRequest,
    RuntimeConfigRequest,
    ListImagesRequest,
    StreamImagesRequest,
    ImageFsInfoRequest,
);

id_required!(
    StopPodSandboxRequest => "StopPodSandbox".pod_sandbox_id,
    RemovePodSandboxRequest => "RemovePodSandbox".pod_sandbox_id,
    PodSandboxStatusRequest => "PodSandboxStatus".pod_sandbox_id,
    PodSandboxStatsRequest => "PodSandboxStats".pod_sandbox_id,
    UpdatePodSandboxResourcesRequest => "UpdatePodSandboxResources".pod_sandbox_id,
    StartContainerRequest => "StartContainer".container_id,
    RemoveContainerRequest => "RemoveContainer".container_id,
    ContainerStatusRequest => "ContainerStatus".container_id,
    UpdateContainerResourcesRequest => "UpdateContainerResources".container_id,
    ReopenContainerLogRequest => "ReopenContainerLog".container_id,
    ContainerStatsRequest => "ContainerStats".container_id,
);

impl Validate for RunPodSandboxRequest {
    fn validate(&self) -> Result<(), Error> {
        const M: &str = "RunPodSandbox";
        let config = present(M, "config", self.config.as_ref())?;
        let metadata = present(M, "config.metadata", config.metadata.as_ref())?;
        required(M, "config.metadata.name", &metadata.name)?;
        required(M, "config.metadata.namespace", &metadata.namespace)?;
        required(M, "config.metadata.uid", &metadata.uid)
    }
}

impl Validate for CreateContainerRequest {
    fn validate(&self) -> Result<(), Error> {
        const M: &str = "CreateContainer";
        required(M, "pod_sandbox_id", &self.pod_sandbox_id)?;
        let config = present(M, "config", self.config.as_ref())?;
        let metadata = present(M, "config.metadata", config.metadata.as_ref())?;
        required(M, "config.metadata.name", &metadata.name)?;
        let spec = present(M, "config.image", config.image.as_ref())?;
        required(M, "config.image.image", &spec.image)
    }
}

impl Validate for StopContainerRequest {
    fn validate(&self) -> Result<(), Error> {
        required("StopContainer", "container_id", &self.container_id)?;
        non_negative("StopContainer", "timeout", self.timeout)
    }
}

impl Validate for ExecSyncRequest {
    fn validate(&self) -> Result<(), Error> {
        const M: &str = "ExecSync";
        required(M, "container_id", &self.container_id)?;
        if self.cmd.is_empty() {
            return Err(Error::invalid_argument(format!("{M}: cmd is required")));
        }
        non_negative(M, "timeout", self.timeout)
    }
}

impl Validate for ExecRequest {
    fn validate(&self) -> Result<(), Error> {
        const M: &str = "Exec";
        required(M, "container_id", &self.container_id)?;
        if self.cmd.is_empty() {
            return Err(Error::invalid_argument(format!("{M}: cmd is required")));
        }
        streams(M, self.stdin, self.stdout, self.stderr, self.tty)
    }
}

impl Validate for AttachRequest {
    fn validate(&self) -> Result<(), Error> {
        required("Attach", "container_id", &self.container_id)?;
        streams("Attach", self.stdin, self.stdout, self.stderr, self.tty)
    }
}

impl Validate for PortForwardRequest {
    fn validate(&self) -> Result<(), Error> {
        const M: &str = "PortForward";
        required(M, "pod_sandbox_id", &self.pod_sandbox_id)?;
        match self.port.iter().find(|p| !(1..=65535).contains(*p)) {
            Some(port) => Err(Error::invalid_argument(format!(
                "{M}: port {port} is outside 1..=65535"
            ))),
            None => Ok(()),
        }
    }
}

impl Validate for UpdateRuntimeConfigRequest {
    fn validate(&self) -> Result<(), Error> {
        present(
            "UpdateRuntimeConfig",
            "runtime_config",
            self.runtime_config.as_ref(),
        )
        .map(drop)
    }
}

impl Validate for CheckpointContainerRequest {
    fn validate(&self) -> Result<(), Error> {
        const M: &str = "CheckpointContainer";
        required(M, "container_id", &self.container_id)?;
        required(M, "location", &self.location)?;
        non_negative(M, "timeout", self.timeout)
    }
}

impl Validate for CheckpointPodRequest {
    fn validate(&self) -> Result<(), Error> {
        required("CheckpointPod", "pod_sandbox_id", &self.pod_sandbox_id)?;
        required("CheckpointPod", "output_path", &self.output_path)
    }
}

impl Validate for RestorePodRequest {
    fn validate(&self) -> Result<(), Error> {
        required("RestorePod", "checkpoint_path", &self.checkpoint_path)
    }
}

impl Validate for PullImageRequest {
    fn validate(&self) -> Result<(), Error> {
        image("PullImage", self.image.as_ref())
    }
}

impl Validate for ImageStatusRequest {
    fn validate(&self) -> Result<(), Error> {
        image("ImageStatus", self.image.as_ref())
    }
}

impl Validate for RemoveImageRequest {
    fn validate(&self) -> Result<(), Error> {
        image("RemoveImage", self.image.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(request: &impl Validate) -> String {
        let err = request.validate().unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        err.to_string()
    }

    #[test]
    fn run_pod_sandbox_names_the_missing_field() {
        let mut req = RunPodSandboxRequest::default();
        assert_eq!(message(&req), "RunPodSandbox: config is required");
        req.config = Some(PodSandboxConfig::default());
        assert_eq!(message(&req), "RunPodSandbox: config.metadata is required");
        req.config.as_mut().unwrap().metadata = Some(PodSandboxMetadata {
            name: "p".into(),
            namespace: "ns".into(),
            ..Default::default()
        });
        assert_eq!(
            message(&req),
            "RunPodSandbox: config.metadata.uid is required"
        );
        req.config.as_mut().unwrap().metadata.as_mut().unwrap().uid = "u".into();
        assert!(req.validate().is_ok());
    }

    #[test]
    fn create_container_rules() {
        let mut req = CreateContainerRequest::default();
        assert_eq!(message(&req), "CreateContainer: pod_sandbox_id is required");
        req.pod_sandbox_id = "p".into();
        req.config = Some(ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "c".into(),
                attempt: 0,
            }),
            ..Default::default()
        });
        assert_eq!(message(&req), "CreateContainer: config.image is required");
        req.config.as_mut().unwrap().image = Some(ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        });
        assert!(req.validate().is_ok());
    }

    #[test]
    fn id_fields_are_required() {
        assert_eq!(
            message(&StopPodSandboxRequest::default()),
            "StopPodSandbox: pod_sandbox_id is required"
        );
        assert_eq!(
            message(&ContainerStatusRequest::default()),
            "ContainerStatus: container_id is required"
        );
        assert!(
            RemoveContainerRequest {
                container_id: "c".into()
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn exec_and_attach_stream_rules() {
        let base = ExecRequest {
            container_id: "c".into(),
            cmd: vec!["sh".into()],
            ..Default::default()
        };
        assert!(message(&base).contains("one of stdin, stdout and stderr"));
        let ok = ExecRequest {
            stdout: true,
            tty: true,
            ..base.clone()
        };
        assert!(ok.validate().is_ok());
        let bad = ExecRequest {
            stderr: true,
            ..ok.clone()
        };
        assert!(message(&bad).contains("tty and stderr"));
        let no_cmd = ExecRequest { cmd: vec![], ..ok };
        assert_eq!(message(&no_cmd), "Exec: cmd is required");
        let attach = AttachRequest {
            container_id: "c".into(),
            tty: true,
            stderr: true,
            ..Default::default()
        };
        assert!(message(&attach).starts_with("Attach: tty and stderr"));
    }

    #[test]
    fn numeric_rules() {
        let stop = StopContainerRequest {
            container_id: "c".into(),
            timeout: -1,
        };
        assert!(message(&stop).contains("timeout must not be negative"));
        let exec = ExecSyncRequest {
            container_id: "c".into(),
            cmd: vec!["true".into()],
            timeout: -5,
        };
        assert!(message(&exec).contains("got -5"));
        let pf = PortForwardRequest {
            pod_sandbox_id: "p".into(),
            port: vec![80, 0],
        };
        assert_eq!(message(&pf), "PortForward: port 0 is outside 1..=65535");
    }

    #[test]
    fn image_requests_need_a_reference() {
        assert_eq!(
            message(&PullImageRequest::default()),
            "PullImage: image is required"
        );
        let empty = ImageStatusRequest {
            image: Some(ImageSpec::default()),
            verbose: false,
        };
        assert_eq!(message(&empty), "ImageStatus: image.image is required");
    }
}
