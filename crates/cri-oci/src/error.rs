//! The crate's one error type and its mapping to gRPC codes and kubelet reasons.

use tonic::Code;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong turning CRI requests into OCI artifacts.
///
/// [`Error::code`] and [`Error::reason`] are the one reviewed place where these become gRPC
/// statuses; a runtime maps them into its server error without looking at the variants.
///
/// ```
/// use cri_oci::Error;
///
/// let err = Error::invalid("linux.security_context.capabilities.add_capabilities", "unknown capability \"CAP_FOO\"");
/// assert_eq!(err.code(), tonic::Code::InvalidArgument);
/// assert_eq!(err.reason(), None);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A request field holds a value that cannot be turned into a spec (names the field).
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The CRI field path, e.g. `linux.resources.cpu_quota`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request asks for something this host or this crate does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A recursive read-only mount was asked for and the host cannot do it
    /// (kubelet reason `RROUnsupported`).
    #[error("recursive read-only mount unsupported: {0}")]
    RecursiveReadOnlyUnsupported(String),
    /// The image is not in the store.
    #[error("image {0:?} not found")]
    ImageNotFound(String),
    /// An image reference does not parse.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The registry could not be reached or answered with a server error
    /// (kubelet reason `RegistryUnavailable`).
    #[error("registry unavailable: {0}")]
    RegistryUnavailable(String),
    /// The registry refused the credentials.
    #[error("registry denied access to {reference}: {reason}")]
    Unauthorized {
        /// The image reference.
        reference: String,
        /// What the registry said.
        reason: String,
    },
    /// The registry has no such repository, tag or digest, or no manifest for this platform.
    #[error("image {reference:?} not found in the registry: {reason}")]
    NotInRegistry {
        /// The image reference.
        reference: String,
        /// What the registry said.
        reason: String,
    },
    /// Content does not match its digest, or a manifest/config/layer is malformed.
    #[error("corrupt content {digest}: {reason}")]
    Corrupt {
        /// The digest of the blob.
        digest: String,
        /// What is wrong.
        reason: String,
    },
    /// An image goes over a bound of the store's [`UnpackLimits`](crate::image::UnpackLimits):
    /// more bytes or tar entries than one pull, import or root filesystem may write.
    #[error("limit exceeded by {digest}: {reason}")]
    LimitExceeded {
        /// The digest of the blob (or the image) that went over.
        digest: String,
        /// Which limit, and by how much.
        reason: String,
    },
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// An [`Error::InvalidArgument`] naming the field.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Io`] with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The gRPC code a CRI server should answer with.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument { .. } | Self::InvalidReference { .. } => Code::InvalidArgument,
            Self::Unsupported(_) => Code::InvalidArgument,
            Self::ImageNotFound(_) | Self::NotInRegistry { .. } => Code::NotFound,
            Self::Unauthorized { .. } => Code::PermissionDenied,
            // The kubelet reads these from the message prefix; the code stays Unknown as in
            // the Go runtimes.
            Self::RegistryUnavailable(_) | Self::RecursiveReadOnlyUnsupported(_) => Code::Unknown,
            Self::LimitExceeded { .. } => Code::ResourceExhausted,
            Self::Corrupt { .. } | Self::Io { .. } => Code::Internal,
        }
    }

    /// The kubelet's well-known reason this error carries as a message prefix, if any
    /// (see [`cri_api::well_known::error_prefix`]).
    pub fn reason(&self) -> Option<&'static str> {
        use cri_api::well_known::error_prefix;
        match self {
            Self::RegistryUnavailable(_) => Some(error_prefix::REGISTRY_UNAVAILABLE),
            Self::RecursiveReadOnlyUnsupported(_) => Some(error_prefix::RRO_UNSUPPORTED),
            _ => None,
        }
    }

    /// The error as a gRPC status: the code from [`Error::code`], the message prefixed with
    /// [`Error::reason`] when there is one.
    pub fn to_status(&self) -> tonic::Status {
        match self.reason() {
            Some(reason) => tonic::Status::new(self.code(), format!("{reason}: {self}")),
            None => tonic::Status::new(self.code(), self.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_errors_carry_the_kubelet_prefix() {
        let status =
            Error::RegistryUnavailable("dial tcp 127.0.0.1:5000: refused".into()).to_status();
        assert_eq!(status.code(), Code::Unknown);
        assert!(
            status.message().starts_with("RegistryUnavailable: "),
            "{}",
            status.message()
        );
    }

    #[test]
    fn limits_are_resource_exhausted() {
        let status = Error::LimitExceeded {
            digest: "sha256:00".into(),
            reason: "more than 10 tar entries".into(),
        }
        .to_status();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(
            status.message().contains("10 tar entries"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn field_errors_name_the_field() {
        let status =
            Error::invalid("linux.resources.cpu_quota", "must not be negative").to_status();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "invalid linux.resources.cpu_quota: must not be negative"
        );
    }
}
