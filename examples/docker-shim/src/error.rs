//! The one place where Docker Engine failures become CRI errors.

use cri_server::Error;

/// A Docker Engine failure while doing `what`: 404 → `NotFound`, 409 → `AlreadyExists` (a
/// name in use) or `FailedPrecondition` (an object in use), 400 → `InvalidArgument`,
/// unreachable engine → `Unavailable`, anything else `Internal`; Docker's words are kept.
pub(crate) fn docker(what: &str, err: bollard::errors::Error) -> Error {
    use bollard::errors::Error as E;
    match err {
        E::DockerResponseServerError {
            status_code,
            message,
        } => {
            let message = format!("{what}: {message}");
            match status_code {
                404 => Error::not_found(message),
                409 if message.contains("already in use") => Error::already_exists(message),
                409 => Error::failed_precondition(message),
                400 => Error::invalid_argument(message),
                _ => Error::internal(format!("{message} (Docker Engine answered {status_code})")),
            }
        }
        E::SocketNotFoundError(path) => {
            Error::unavailable(format!("{what}: the Docker socket {path} does not exist"))
        }
        E::HyperResponseError { .. } | E::IOError { .. } => {
            Error::unavailable(format!("{what}: reaching Docker Engine: {err}"))
        }
        E::RequestTimeoutError => {
            Error::deadline_exceeded(format!("{what}: Docker Engine did not answer in time"))
        }
        other => Error::internal_from(what.to_string(), other),
    }
}

/// Whether `err` is Docker's 404.
pub(crate) fn is_not_found(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Whether `err` is Docker's 304 (already started or stopped).
pub(crate) fn is_not_modified(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 304,
            ..
        }
    )
}

/// A `cri_oci` failure as the CRI status its crate chose.
pub(crate) fn oci(err: cri_oci::Error) -> Error {
    Error::Status(err.to_status())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_server::tonic::Code;

    fn server(status_code: u16, message: &str) -> bollard::errors::Error {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message: message.into(),
        }
    }

    #[test]
    fn docker_statuses_map_to_cri_codes() {
        let code = |e| cri_server::tonic::Status::from(e).code();
        assert_eq!(
            code(docker("x", server(404, "no such container"))),
            Code::NotFound
        );
        assert_eq!(
            code(docker(
                "x",
                server(409, "Conflict. The container name \"/a\" is already in use")
            )),
            Code::AlreadyExists
        );
        assert_eq!(
            code(docker(
                "x",
                server(409, "image is being used by stopped container")
            )),
            Code::FailedPrecondition
        );
        assert_eq!(code(docker("x", server(400, "bad"))), Code::InvalidArgument);
        assert_eq!(code(docker("x", server(500, "boom"))), Code::Internal);
        assert!(is_not_found(&server(404, "")));
        assert!(is_not_modified(&server(304, "")));
    }
}
