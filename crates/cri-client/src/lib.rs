#![doc = include_str!("../README.md")]

mod call;
mod client;
mod endpoint;
mod error;
mod verify;

pub use call::Call;
#[doc(hidden)]
pub use call::{Answer, Stubs};
pub use client::{
    Builder, Client, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, EventStream, ExecOutput,
};
pub use endpoint::parse_endpoint;
pub use error::{Error, Result};

/// The API crate this client is built on; name its types through here to stay in step.
pub use cri_api;
/// The gRPC crate this client is built on.
pub use tonic;

/// Interactive streaming sessions: the types [`Client::exec`], [`Client::attach`] and
/// [`Client::port_forward`] take and return, and the [`Connector`](streaming::Connector)
/// they connect with (set with [`Builder::streaming_connector`]; TLS with the `tls`
/// feature).
pub mod streaming {
    pub use cri_streaming::{
        COPY_BUFFER, ClientError, Connector, Forwarded, PortForward, Reader, Streams, TerminalSize,
        Transport, Writer, copy,
    };
    #[cfg(feature = "tls")]
    pub use cri_streaming::{ClientTls, TlsError};
}
