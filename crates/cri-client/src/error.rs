//! The client's error type: the gRPC code is always kept, the kubelet's well-known failures
//! are parsed into variants.

use std::time::Duration;

use cri_api::well_known::error_prefix;
use tonic::{Code, Status};

/// The result of every client call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a CRI call can fail with.
///
/// ```
/// use cri_client::Error;
///
/// let err = Error::from_status("PullImage", tonic::Status::unknown("RegistryUnavailable: dial tcp: refused"));
/// assert!(matches!(err, Error::RegistryUnavailable { .. }));
/// assert_eq!(err.code(), Some(tonic::Code::Unknown));
///
/// let err = Error::from_status("ContainerStatus", tonic::Status::not_found("no such container"));
/// assert!(err.is_not_found());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The endpoint is not `unix:///path` or a plain absolute path.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The runtime could not be reached.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The runtime answered `Version` in a way the kubelet would refuse (empty fields, an API
    /// version other than `v1`).
    #[error("unsupported runtime: {0}")]
    UnsupportedRuntime(String),
    /// The call failed with this gRPC status.
    #[error("{method}: {} ({:?})", .status.message(), .status.code())]
    Status {
        /// The CRI method.
        method: &'static str,
        /// The status as received.
        status: Status,
    },
    /// The client's deadline for the call passed.
    #[error("{method}: no answer within {timeout:?}")]
    DeadlineExceeded {
        /// The CRI method.
        method: &'static str,
        /// The deadline the call had.
        timeout: Duration,
    },
    /// `ExecSync` ran past its command timeout.
    #[error("ExecSync: command timed out: {message}")]
    ExecSyncTimeout {
        /// The runtime's message.
        message: String,
    },
    /// The registry could not be reached (runtime message prefix `RegistryUnavailable`).
    #[error("{method}: RegistryUnavailable: {detail}")]
    RegistryUnavailable {
        /// The CRI method.
        method: &'static str,
        /// The runtime's detail.
        detail: String,
    },
    /// An image signature did not validate (prefix `SignatureValidationFailed`).
    #[error("{method}: SignatureValidationFailed: {detail}")]
    SignatureValidationFailed {
        /// The CRI method.
        method: &'static str,
        /// The runtime's detail.
        detail: String,
    },
    /// Recursive read-only mounts are unsupported (prefix `RROUnsupported`).
    #[error("{method}: RROUnsupported: {detail}")]
    RroUnsupported {
        /// The CRI method.
        method: &'static str,
        /// The runtime's detail.
        detail: String,
    },
    /// An image volume could not be mounted (prefix `ImageVolumeMountFailed`).
    #[error("{method}: ImageVolumeMountFailed: {detail}")]
    ImageVolumeMountFailed {
        /// The CRI method.
        method: &'static str,
        /// The runtime's detail.
        detail: String,
    },
    /// A streaming session (exec, attach, port-forward) failed after the RPC returned its URL.
    #[error("streaming: {0}")]
    Streaming(#[from] cri_streaming::ClientError),
    /// The runtime answered, but the answer breaks the CRI contract (a required status
    /// field is missing, a pull returned no image reference).
    #[error("{method}: invalid response: {reason}")]
    InvalidResponse {
        /// The CRI method.
        method: &'static str,
        /// Which field is wrong.
        reason: String,
    },
}

impl Error {
    /// Classifies a status the runtime returned for `method`.
    pub fn from_status(method: &'static str, status: Status) -> Self {
        if status.code() == Code::Unknown {
            let message = status.message();
            for prefix in error_prefix::ALL {
                if let Some(detail) = message
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.strip_prefix(':'))
                {
                    let detail = detail.trim_start().to_string();
                    return match prefix {
                        error_prefix::REGISTRY_UNAVAILABLE => {
                            Self::RegistryUnavailable { method, detail }
                        }
                        error_prefix::SIGNATURE_VALIDATION_FAILED => {
                            Self::SignatureValidationFailed { method, detail }
                        }
                        error_prefix::RRO_UNSUPPORTED => Self::RroUnsupported { method, detail },
                        _ => Self::ImageVolumeMountFailed { method, detail },
                    };
                }
            }
        }
        if method == "ExecSync" && status.code() == Code::DeadlineExceeded {
            return Self::ExecSyncTimeout {
                message: status.message().to_string(),
            };
        }
        Self::Status { method, status }
    }

    /// The gRPC code of the failure, when the runtime answered (or the deadline passed).
    pub fn code(&self) -> Option<Code> {
        match self {
            Self::Status { status, .. } => Some(status.code()),
            Self::DeadlineExceeded { .. } | Self::ExecSyncTimeout { .. } => {
                Some(Code::DeadlineExceeded)
            }
            Self::RegistryUnavailable { .. }
            | Self::SignatureValidationFailed { .. }
            | Self::RroUnsupported { .. }
            | Self::ImageVolumeMountFailed { .. } => Some(Code::Unknown),
            Self::InvalidEndpoint { .. }
            | Self::Streaming(_)
            | Self::Connect { .. }
            | Self::UnsupportedRuntime(_)
            | Self::InvalidResponse { .. } => None,
        }
    }

    /// Whether the runtime answered `NotFound` (an unknown sandbox, container or image).
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(Code::NotFound)
    }

    /// Whether the runtime does not implement the method.
    pub fn is_unimplemented(&self) -> bool {
        self.code() == Some(Code::Unimplemented)
    }

    /// The raw status, when the failure is a plain gRPC status.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Self::Status { status, .. } => Some(status),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_become_variants() {
        let cases = [
            ("RegistryUnavailable: x", "RegistryUnavailable"),
            ("SignatureValidationFailed: x", "SignatureValidationFailed"),
            ("RROUnsupported: x", "RroUnsupported"),
            ("ImageVolumeMountFailed: x", "ImageVolumeMountFailed"),
        ];
        for (message, variant) in cases {
            let err = Error::from_status("PullImage", Status::unknown(message));
            assert!(format!("{err:?}").starts_with(variant), "{err:?}");
            assert!(err.to_string().ends_with(message), "{err}");
            assert_eq!(err.code(), Some(Code::Unknown));
        }
    }

    #[test]
    fn prefixes_only_count_with_unknown_and_a_colon() {
        let err = Error::from_status("PullImage", Status::internal("RegistryUnavailable: x"));
        assert!(matches!(err, Error::Status { .. }));
        let err = Error::from_status("PullImage", Status::unknown("RegistryUnavailableX"));
        assert!(matches!(err, Error::Status { .. }));
    }

    #[test]
    fn exec_sync_deadline_is_its_own_variant() {
        let err = Error::from_status("ExecSync", Status::deadline_exceeded("timeout 1s"));
        assert!(matches!(err, Error::ExecSyncTimeout { .. }));
        assert_eq!(err.code(), Some(Code::DeadlineExceeded));
        let err = Error::from_status("StopContainer", Status::deadline_exceeded("x"));
        assert!(matches!(err, Error::Status { .. }));
    }

    #[test]
    fn codes_are_preserved() {
        let err = Error::from_status("ContainerStatus", Status::not_found("gone"));
        assert!(err.is_not_found());
        assert_eq!(err.status().unwrap().message(), "gone");
        let err = Error::from_status("Exec", Status::unimplemented("no"));
        assert!(err.is_unimplemented());
        assert_eq!(err.to_string(), "Exec: no (Unimplemented)");
    }
}
