#![doc = include_str!("../README.md")]

mod client;
mod connector;
mod io;
pub mod protocol;
mod runtime;
mod server;
pub mod spdy;
#[cfg(feature = "tls")]
mod tls;
mod token;
pub mod websocket;

pub use async_trait::async_trait;
pub use client::{
    ClientError, Forwarded, PortForward, Streams, Transport, run, run_with, run_with_protocols,
};
pub use connector::Connector;
pub use io::{COPY_BUFFER, copy, forward};
pub use runtime::{
    Duplex, DuplexStream, Reader, Session, StreamError, StreamingRuntime, TerminalSize, Writer,
};
pub use server::{Config, Server};
#[cfg(feature = "tls")]
pub use tls::{ClientTls, TlsError, TlsServerConfig};
pub use token::{Pending, TokenError};

/// The TLS library of the `tls` feature, for building custom configurations
/// ([`TlsServerConfig::new`], [`ClientTls::from_config`]) against the same version.
#[cfg(feature = "tls")]
pub use rustls;
