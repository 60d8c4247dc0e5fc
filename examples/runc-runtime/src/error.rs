//! The one place where failures of the building blocks become CRI errors.

use cri_server::Error;

use crate::cni::CniError;
use crate::runc::RuncError;

/// A `cri_oci` failure as the CRI status its crate chose (code and kubelet reason).
pub(crate) fn oci(err: cri_oci::Error) -> Error {
    Error::Status(err.to_status())
}

/// A failed runc call: `Internal`, with runc's words.
pub(crate) fn runc(err: RuncError) -> Error {
    Error::internal_from("runc", err)
}

/// A CNI failure: `FailedPrecondition` when no network is configured or loadable (the
/// network is not ready), `Internal` when a plugin failed.
pub(crate) fn cni(err: CniError) -> Error {
    if err.is_config() {
        Error::failed_precondition(format!("the pod network is not ready: {err}"))
    } else {
        Error::internal_from("pod network (CNI)", err)
    }
}

/// A failed operating-system call while doing `what`.
pub(crate) fn io(what: impl Into<String>, err: std::io::Error) -> Error {
    Error::internal_from(what, err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_server::tonic::Code;

    #[test]
    fn oci_errors_keep_their_code_and_reason() {
        let status: cri_server::tonic::Status = oci(cri_oci::Error::RegistryUnavailable(
            "connection refused".into(),
        ))
        .into();
        assert_eq!(status.code(), Code::Unknown);
        assert!(
            status.message().starts_with("RegistryUnavailable: "),
            "{}",
            status.message()
        );

        let status: cri_server::tonic::Status =
            oci(cri_oci::Error::ImageNotFound("busybox".into())).into();
        assert_eq!(status.code(), Code::NotFound);

        let status: cri_server::tonic::Status = oci(cri_oci::Error::invalid(
            "linux.resources.cpu_quota",
            "must not be negative",
        ))
        .into();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("cpu_quota"));
    }

    #[test]
    fn cni_errors_say_whether_the_network_is_ready() {
        let status: cri_server::tonic::Status =
            cni(CniError::NoConfig("/etc/cni/net.d".into())).into();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(
            status.message().contains("not ready") && status.message().contains("/etc/cni/net.d"),
            "{}",
            status.message()
        );
        let status: cri_server::tonic::Status = cni(CniError::Failed {
            plugin: "bridge".into(),
            command: "ADD",
            message: "error 11: no addresses left".into(),
            code: Some(11),
        })
        .into();
        assert_eq!(status.code(), Code::Internal);
        assert!(
            status.message().contains("\"bridge\" failed on ADD"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn runc_errors_are_internal_with_runc_words() {
        let status: cri_server::tonic::Status = runc(RuncError::Failed {
            command: "start".into(),
            message: "container not created".into(),
        })
        .into();
        assert_eq!(status.code(), Code::Internal);
        assert!(
            status.message().contains("container not created"),
            "{}",
            status.message()
        );
    }
}
