//! The crate's error type and the one place where errors become gRPC statuses.

use tonic::{Code, Status};

/// A boxed error kept as the source of an [`Error::Internal`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result of every runtime and image method.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a runtime method, the request validation or the server itself can fail with.
///
/// Each variant maps to exactly one gRPC status (see `impl From<Error> for tonic::Status`);
/// the mapping is what the kubelet and crictl expect from a CRI runtime:
///
/// | variant | gRPC code | message |
/// |---|---|---|
/// | `NotFound` | `NOT_FOUND` | the text |
/// | `AlreadyExists` | `ALREADY_EXISTS` | the text |
/// | `InvalidArgument` | `INVALID_ARGUMENT` | the text |
/// | `FailedPrecondition` | `FAILED_PRECONDITION` | the text |
/// | `Unimplemented` | `UNIMPLEMENTED` | the text |
/// | `DeadlineExceeded` | `DEADLINE_EXCEEDED` | the text |
/// | `ResourceExhausted` | `RESOURCE_EXHAUSTED` | the text |
/// | `Unavailable` | `UNAVAILABLE` | the text |
/// | `PermissionDenied` | `PERMISSION_DENIED` | the text |
/// | `Internal` | `INTERNAL` | the text and its source chain |
/// | `RegistryUnavailable` | `UNKNOWN` | `RegistryUnavailable: <detail>` |
/// | `SignatureValidationFailed` | `UNKNOWN` | `SignatureValidationFailed: <detail>` |
/// | `RroUnsupported` | `UNKNOWN` | `RROUnsupported: <detail>` |
/// | `ImageVolumeMountFailed` | `UNKNOWN` | `ImageVolumeMountFailed: <detail>` |
/// | `Status` | as given | as given |
/// | `SocketInUse` | `UNAVAILABLE` | the text |
/// | `Io`, `Config` | `INTERNAL` | the text |
///
/// The last four travel as `UNKNOWN` because the kubelet strips `UNKNOWN` statuses and matches
/// the message prefix to classify the failure.
///
/// ```
/// use cri_server::Error;
///
/// let status: tonic::Status = Error::not_found("container \"c1\"").into();
/// assert_eq!(status.code(), tonic::Code::NotFound);
///
/// let status: tonic::Status = Error::RegistryUnavailable("dial tcp: refused".into()).into();
/// assert_eq!(status.code(), tonic::Code::Unknown);
/// assert_eq!(status.message(), "RegistryUnavailable: dial tcp: refused");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object the request names does not exist (e.g. `ContainerStatus` of an unknown id).
    #[error("{0}")]
    NotFound(String),
    /// The object to create exists already (e.g. a sandbox name reused while the old one lives).
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is malformed: a required field is missing or a combination is forbidden.
    #[error("{0}")]
    InvalidArgument(String),
    /// The object is in the wrong state for the request (e.g. starting a running container).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The runtime does not implement this method.
    #[error("{0}")]
    Unimplemented(String),
    /// The call ran out of time (e.g. `ExecSync` past its timeout).
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A limit was hit (message size, a full queue, a lagging event subscriber).
    #[error("{0}")]
    ResourceExhausted(String),
    /// The runtime cannot serve now but may later (starting up, shutting down).
    #[error("{0}")]
    Unavailable(String),
    /// The caller is not allowed to make this call (e.g. a uid outside the allowlist).
    #[error("{0}")]
    PermissionDenied(String),
    /// Anything else went wrong inside the runtime; the source is kept for logs.
    #[error("{message}")]
    Internal {
        /// What failed, for the caller.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// An image registry could not be reached (kubelet prefix `RegistryUnavailable`).
    #[error("RegistryUnavailable: {0}")]
    RegistryUnavailable(String),
    /// An image signature did not validate (kubelet prefix `SignatureValidationFailed`).
    #[error("SignatureValidationFailed: {0}")]
    SignatureValidationFailed(String),
    /// A recursive read-only mount is not supported (kubelet prefix `RROUnsupported`).
    #[error("RROUnsupported: {0}")]
    RroUnsupported(String),
    /// An image volume could not be mounted (kubelet prefix `ImageVolumeMountFailed`).
    #[error("ImageVolumeMountFailed: {0}")]
    ImageVolumeMountFailed(String),
    /// A ready-made gRPC status, passed through unchanged (escape hatch).
    #[error("{}", .0.message())]
    Status(Status),
    /// Serving: the socket path belongs to a server that is still listening.
    #[error("{} is in use by a live server; refusing to take it over", .0.display())]
    SocketInUse(std::path::PathBuf),
    /// Serving: an operating-system call failed (creating directories, binding, chmod).
    #[error("{context}: {source}")]
    Io {
        /// What the server was doing.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Serving: the server was configured in a way that cannot work.
    #[error("invalid server configuration: {0}")]
    Config(String),
}

impl Error {
    /// [`Error::NotFound`] with the given text.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    /// [`Error::AlreadyExists`] with the given text.
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::AlreadyExists(message.into())
    }

    /// [`Error::InvalidArgument`] with the given text.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::InvalidArgument(message.into())
    }

    /// [`Error::FailedPrecondition`] with the given text.
    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::FailedPrecondition(message.into())
    }

    /// [`Error::Unimplemented`] naming the CRI method (`"ExecSync"`) that is not implemented.
    pub fn unimplemented(method: &str) -> Self {
        Self::Unimplemented(format!("{method} is not implemented by this runtime"))
    }

    /// [`Error::DeadlineExceeded`] with the given text.
    pub fn deadline_exceeded(message: impl Into<String>) -> Self {
        Self::DeadlineExceeded(message.into())
    }

    /// [`Error::ResourceExhausted`] with the given text.
    pub fn resource_exhausted(message: impl Into<String>) -> Self {
        Self::ResourceExhausted(message.into())
    }

    /// [`Error::Unavailable`] with the given text.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(message.into())
    }

    /// [`Error::Internal`] with a message and no source.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal {
            message: message.into(),
            source: None,
        }
    }

    /// [`Error::Internal`] that keeps `source` for logs; the caller sees
    /// `"<message>: <source>"`.
    pub fn internal_from(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Internal {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The gRPC code this error is sent with.
    pub fn code(&self) -> Code {
        match self {
            Self::NotFound(_) => Code::NotFound,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::Unimplemented(_) => Code::Unimplemented,
            Self::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::Unavailable(_) => Code::Unavailable,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::Internal { .. } => Code::Internal,
            Self::RegistryUnavailable(_)
            | Self::SignatureValidationFailed(_)
            | Self::RroUnsupported(_)
            | Self::ImageVolumeMountFailed(_) => Code::Unknown,
            Self::Status(status) => status.code(),
            Self::SocketInUse(_) => Code::Unavailable,
            Self::Io { .. } | Self::Config(_) => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::Status(status) => status,
            Error::Internal {
                message,
                source: Some(source),
            } => Status::internal(format!("{message}: {source}")),
            other => Status::new(other.code(), other.to_string()),
        }
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        Self::Status(status)
    }
}

#[cfg(test)]
mod tests {
    use cri_api::well_known::error_prefix;

    use super::*;

    fn status(error: Error) -> (Code, String) {
        let status = Status::from(error);
        (status.code(), status.message().to_string())
    }

    #[test]
    fn plain_variants_keep_their_text_and_code() {
        let cases = [
            (Error::not_found("a"), Code::NotFound),
            (Error::already_exists("a"), Code::AlreadyExists),
            (Error::invalid_argument("a"), Code::InvalidArgument),
            (Error::failed_precondition("a"), Code::FailedPrecondition),
            (Error::deadline_exceeded("a"), Code::DeadlineExceeded),
            (Error::resource_exhausted("a"), Code::ResourceExhausted),
            (Error::unavailable("a"), Code::Unavailable),
            (Error::PermissionDenied("a".into()), Code::PermissionDenied),
            (Error::internal("a"), Code::Internal),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code);
            assert_eq!(status(error), (code, "a".to_string()));
        }
    }

    #[test]
    fn unimplemented_names_the_method() {
        assert_eq!(
            status(Error::unimplemented("ExecSync")),
            (
                Code::Unimplemented,
                "ExecSync is not implemented by this runtime".to_string()
            )
        );
    }

    #[test]
    fn internal_keeps_its_source() {
        let io = std::io::Error::other("disk on fire");
        let error = Error::internal_from("writing state", io);
        assert!(std::error::Error::source(&error).is_some());
        assert_eq!(
            status(error),
            (Code::Internal, "writing state: disk on fire".to_string())
        );
    }

    #[test]
    fn kubelet_prefixes_travel_as_unknown() {
        let cases = [
            (
                Error::RegistryUnavailable("dial tcp 10.0.0.1:443".into()),
                "RegistryUnavailable: dial tcp 10.0.0.1:443",
            ),
            (
                Error::SignatureValidationFailed("no valid signature".into()),
                "SignatureValidationFailed: no valid signature",
            ),
            (
                Error::RroUnsupported("kernel too old".into()),
                "RROUnsupported: kernel too old",
            ),
            (
                Error::ImageVolumeMountFailed("layer missing".into()),
                "ImageVolumeMountFailed: layer missing",
            ),
        ];
        for ((error, message), prefix) in cases.into_iter().zip(error_prefix::ALL) {
            assert!(message.starts_with(&format!("{prefix}: ")));
            assert_eq!(status(error), (Code::Unknown, message.to_string()));
        }
    }

    #[test]
    fn serving_errors_have_codes_too() {
        let in_use = Error::SocketInUse("/run/x.sock".into());
        assert_eq!(in_use.code(), Code::Unavailable);
        assert!(in_use.to_string().contains("/run/x.sock"));
        let io = Error::Io {
            context: "binding /run/x.sock".into(),
            source: std::io::Error::other("denied"),
        };
        assert_eq!(
            status(io),
            (Code::Internal, "binding /run/x.sock: denied".into())
        );
        assert_eq!(Error::Config("x".into()).code(), Code::Internal);
    }

    #[test]
    fn status_passes_through_unchanged() {
        let original = Status::aborted("retry");
        let back = Status::from(Error::from(original));
        assert_eq!((back.code(), back.message()), (Code::Aborted, "retry"));
    }
}
