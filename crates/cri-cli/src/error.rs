//! The one error type of the command line: every failure becomes one readable line
//! (`cri: <message>`) and an exit code.

use std::fmt;
use std::io;

/// What a command can fail with.
#[derive(Debug)]
pub(crate) enum CliError {
    /// A CRI call or the connection failed.
    Client(cri_client::Error),
    /// Reading a file or writing the output failed.
    Io(io::Error),
    /// Anything else, already worded for the user.
    Message(String),
}

/// The result of a command.
pub(crate) type Result<T, E = CliError> = std::result::Result<T, E>;

impl CliError {
    /// An error with a message worded for the user.
    pub(crate) fn msg(message: impl Into<String>) -> Self {
        Self::Message(message.into())
    }

    /// Whether this is a write to a closed pipe (`cri ps | head`): not worth reporting.
    pub(crate) fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::Io(err) if err.kind() == io::ErrorKind::BrokenPipe)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Client(err) => f.write_str(&describe_client_error(err)),
            Self::Io(err) => write!(f, "{err}"),
            Self::Message(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for CliError {}

impl From<cri_client::Error> for CliError {
    fn from(err: cri_client::Error) -> Self {
        Self::Client(err)
    }
}

impl From<io::Error> for CliError {
    fn from(err: io::Error) -> Self {
        Self::Io(err)
    }
}

impl From<serde_json::Error> for CliError {
    fn from(err: serde_json::Error) -> Self {
        Self::Message(format!("cannot render JSON: {err}"))
    }
}

/// A client error in one line, with its sources (transport errors say little on their own)
/// and a hint where one helps.
pub(crate) fn describe_client_error(err: &cri_client::Error) -> String {
    if let cri_client::Error::DeadlineExceeded { method, timeout } = err {
        return format!(
            "{method}: DeadlineExceeded: no answer within {} (raise it with --timeout, e.g. -t 5m)",
            crate::output::duration(*timeout)
        );
    }
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    if let cri_client::Error::Streaming(cri_client::streaming::ClientError::Tls { .. }) = err {
        message.push_str(" (trust the server's CA with --tls-ca FILE)");
    }
    message
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn deadline_names_the_method_and_the_flag() {
        let err = CliError::from(cri_client::Error::DeadlineExceeded {
            method: "ListContainers",
            timeout: Duration::from_secs(1),
        });
        let text = err.to_string();
        assert!(
            text.starts_with("ListContainers: DeadlineExceeded: no answer within 1s"),
            "{text}"
        );
        assert!(text.contains("--timeout"), "{text}");
    }

    #[test]
    fn broken_pipes_are_recognised() {
        assert!(CliError::from(io::Error::from(io::ErrorKind::BrokenPipe)).is_broken_pipe());
        assert!(!CliError::msg("x").is_broken_pipe());
    }

    #[test]
    fn statuses_read_as_one_line() {
        let err = CliError::from(cri_client::Error::from_status(
            "ContainerStatus",
            cri_client::tonic::Status::not_found("container \"x\" not found"),
        ));
        assert_eq!(
            err.to_string(),
            "ContainerStatus: container \"x\" not found (NotFound)"
        );
    }
}
