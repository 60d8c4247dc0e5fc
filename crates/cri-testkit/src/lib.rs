#![doc = include_str!("../README.md")]

pub mod bench;
pub mod conformance;
mod fake;
mod harness;
pub mod kubelet;
pub mod peer;
pub mod registry;
pub mod workload;

pub use fake::{CallRecord, FakeBuilder, FakeRuntime, normalize_image_reference};
pub use harness::{Harness, HarnessError};

/// The crates the kit is built on, for naming their types.
pub use cri_client;
/// See [`cri_client`].
pub use cri_server;
