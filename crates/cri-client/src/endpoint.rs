//! Where endpoints are parsed and Unix-socket channels are opened.

use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{Error, Result};

/// Parses a CRI endpoint: `unix:///path/to.sock` or a plain path.
///
/// ```
/// use std::path::Path;
/// let path = cri_client::parse_endpoint("unix:///run/containerd/containerd.sock").unwrap();
/// assert_eq!(path, Path::new("/run/containerd/containerd.sock"));
/// assert_eq!(cri_client::parse_endpoint("/run/crio/crio.sock").unwrap(), Path::new("/run/crio/crio.sock"));
/// assert!(cri_client::parse_endpoint("tcp://127.0.0.1:1234").is_err());
/// ```
///
/// # Errors
///
/// [`Error::InvalidEndpoint`] for other schemes and empty paths.
pub fn parse_endpoint(endpoint: &str) -> Result<PathBuf> {
    let invalid = |reason: &str| Error::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let path = match endpoint.split_once("://") {
        Some(("unix", path)) => path,
        Some((scheme, _)) => {
            return Err(invalid(&format!(
                "scheme {scheme:?} is not supported; CRI endpoints are unix:// sockets"
            )));
        }
        None => endpoint,
    };
    if path.is_empty() {
        return Err(invalid("the socket path is empty"));
    }
    Ok(PathBuf::from(path))
}

/// Opens an HTTP/2 channel to the socket at `endpoint`, with `:authority` `localhost` (what
/// the kubelet sends), connecting eagerly within `connect_timeout`.
pub(crate) async fn connect(endpoint: &str, connect_timeout: Duration) -> Result<Channel> {
    let path = parse_endpoint(endpoint)?;
    let connector = tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move { UnixStream::connect(path).await.map(TokioIo::new) }
    });
    let endpoint_config =
        Endpoint::from_static("http://localhost").connect_timeout(connect_timeout);
    let connecting = endpoint_config.connect_with_connector(connector);
    match tokio::time::timeout(connect_timeout, connecting).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(source)) => Err(Error::Connect {
            endpoint: endpoint.to_string(),
            source,
        }),
        Err(_) => Err(Error::InvalidEndpoint {
            endpoint: endpoint.to_string(),
            reason: format!("no connection within {connect_timeout:?}"),
        }),
    }
}
