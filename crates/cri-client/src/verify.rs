//! The checks the kubelet applies to what a runtime answers.

use cri_api::v1::{ContainerStatus, PodSandboxStatus, VersionResponse};

use crate::{Error, Result};

fn missing(method: &'static str, field: &str) -> Error {
    Error::InvalidResponse {
        method,
        reason: format!("{field} is empty"),
    }
}

/// A runtime the kubelet would accept: every `Version` field set and API version `v1`.
pub(crate) fn version(response: &VersionResponse) -> Result<()> {
    for (field, value) in [
        ("version", &response.version),
        ("runtime_name", &response.runtime_name),
        ("runtime_version", &response.runtime_version),
        ("runtime_api_version", &response.runtime_api_version),
    ] {
        if value.is_empty() {
            return Err(Error::UnsupportedRuntime(format!(
                "Version returned an empty {field}"
            )));
        }
    }
    if response.runtime_api_version != cri_api::API_VERSION {
        return Err(Error::UnsupportedRuntime(format!(
            "runtime API version {:?} is not supported (want {:?})",
            response.runtime_api_version,
            cri_api::API_VERSION
        )));
    }
    Ok(())
}

/// A sandbox status carries its id, metadata name/namespace/uid and creation time.
pub(crate) fn sandbox_status(status: Option<&PodSandboxStatus>) -> Result<()> {
    const M: &str = "PodSandboxStatus";
    let status = status.ok_or_else(|| missing(M, "status"))?;
    if status.id.is_empty() {
        return Err(missing(M, "status.id"));
    }
    let metadata = status
        .metadata
        .as_ref()
        .ok_or_else(|| missing(M, "status.metadata"))?;
    for (field, value) in [
        ("status.metadata.name", &metadata.name),
        ("status.metadata.namespace", &metadata.namespace),
        ("status.metadata.uid", &metadata.uid),
    ] {
        if value.is_empty() {
            return Err(missing(M, field));
        }
    }
    if status.created_at == 0 {
        return Err(missing(M, "status.created_at"));
    }
    Ok(())
}

/// A container status carries its id, `metadata.name`, creation time, image and image ref.
pub(crate) fn container_status(status: Option<&ContainerStatus>) -> Result<()> {
    const M: &str = "ContainerStatus";
    let status = status.ok_or_else(|| missing(M, "status"))?;
    if status.id.is_empty() {
        return Err(missing(M, "status.id"));
    }
    if status.metadata.as_ref().is_none_or(|m| m.name.is_empty()) {
        return Err(missing(M, "status.metadata.name"));
    }
    if status.created_at == 0 {
        return Err(missing(M, "status.created_at"));
    }
    if status.image.as_ref().is_none_or(|i| i.image.is_empty()) {
        return Err(missing(M, "status.image.image"));
    }
    if status.image_ref.is_empty() {
        return Err(missing(M, "status.image_ref"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use cri_api::v1::{ContainerMetadata, ImageSpec, PodSandboxMetadata};

    use super::*;

    fn reason(result: Result<()>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn version_rules() {
        let good = VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "r".into(),
            runtime_version: "1".into(),
            runtime_api_version: "v1".into(),
        };
        assert!(version(&good).is_ok());
        let empty = VersionResponse {
            runtime_name: String::new(),
            ..good.clone()
        };
        assert!(reason(version(&empty)).contains("empty runtime_name"));
        let old = VersionResponse {
            runtime_api_version: "v1alpha2".into(),
            ..good
        };
        assert!(reason(version(&old)).contains("\"v1alpha2\" is not supported"));
    }

    #[test]
    fn sandbox_status_rules() {
        let mut status = PodSandboxStatus {
            id: "p".into(),
            metadata: Some(PodSandboxMetadata {
                name: "n".into(),
                namespace: "ns".into(),
                uid: "u".into(),
                attempt: 0,
            }),
            created_at: 1,
            ..Default::default()
        };
        assert!(sandbox_status(Some(&status)).is_ok());
        assert_eq!(
            reason(sandbox_status(None)),
            "PodSandboxStatus: invalid response: status is empty"
        );
        status.metadata.as_mut().unwrap().uid.clear();
        assert!(reason(sandbox_status(Some(&status))).contains("status.metadata.uid is empty"));
    }

    #[test]
    fn container_status_rules() {
        let mut status = ContainerStatus {
            id: "c".into(),
            metadata: Some(ContainerMetadata {
                name: "n".into(),
                attempt: 0,
            }),
            created_at: 1,
            image: Some(ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            image_ref: "sha256:1".into(),
            ..Default::default()
        };
        assert!(container_status(Some(&status)).is_ok());
        status.image_ref.clear();
        assert!(reason(container_status(Some(&status))).contains("status.image_ref is empty"));
        status.image = None;
        assert!(reason(container_status(Some(&status))).contains("status.image.image is empty"));
    }
}
