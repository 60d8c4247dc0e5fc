#![doc = include_str!("../README.md")]

mod authority;
mod context;
mod error;
mod events;
mod image;
#[cfg(feature = "logging")]
pub mod logging;
mod metrics;
mod routes;
mod runtime;
mod server;
mod service;
mod socket;
pub mod stream;
pub mod validate;

pub use async_trait::async_trait;
pub use context::{Context, PeerCredentials, REQUEST_ID_HEADER};
pub use error::{BoxError, Error, Result};
pub use events::EventBroadcaster;
pub use image::ImageService;
pub use metrics::{LATENCY_BUCKETS, MethodStats, Metrics};
pub use routes::{Routes, RoutesFuture};
pub use runtime::RuntimeService;
pub use server::{
    Bound, Builder, DEFAULT_DRAIN_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_KEEPALIVE_INTERVAL,
    DEFAULT_KEEPALIVE_TIMEOUT, DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_MAX_HEADER_LIST_SIZE,
    DEFAULT_SOCKET_MODE, Server,
};
pub use stream::ResponseStream;

/// The API crate this server is built on; name its types through here to stay in step.
pub use cri_api;
/// The streaming crate (`Exec`/`Attach`/`PortForward` over SPDY and WebSocket).
pub use cri_streaming;
/// The gRPC crate this server is built on.
pub use tonic;
