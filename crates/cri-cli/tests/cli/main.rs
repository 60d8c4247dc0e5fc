//! Integration tests: the real `cri` binary against the fake runtime served on a Unix socket
//! (`cri_testkit::Harness`), one module per verb group.

mod common;

mod config;
mod containerd;
mod containers;
mod errors;
mod images;
mod logs;
mod pods;
mod run_watch;
mod runtime;
mod stats_events;
mod terminal;
#[cfg(feature = "tls")]
mod tls;
