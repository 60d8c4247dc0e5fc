//! A complete CRI runtime held in memory — a simulator for testing kubelet-facing tools
//! (crictl, the `cri` CLI, monitoring agents), not a container runtime.
//!
//! Pods, containers and images follow the CRI state machine (it is the testkit's
//! `FakeRuntime`); container commands are simulated by a small built-in shell (`echo`, `cat`,
//! `sleep`, `true`, `false`, `exit N`, `env`, `hostname`, `pwd`, `sh -c "a; b && c"`), so
//! logs are real CRI log files and `ExecSync` prints real output. Events and stats work, and
//! so do `Exec`/`Attach`/`PortForward` through a streaming server on loopback (SPDY and
//! WebSocket): `cat` echoes stdin, a bare `sh` runs lines interactively, port-forward
//! reaches a loopback TCP port.
//!
//! Run:
//!   cargo run -p cri-examples --example memory-runtime -- --socket /tmp/memory-runtime.sock
//! then, for instance:
//!   crictl -r unix:///tmp/memory-runtime.sock pull busybox
//!   crictl -r unix:///tmp/memory-runtime.sock runp pod.json

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use cri_server::Server;
use cri_testkit::FakeRuntime;

#[derive(Parser, Debug)]
#[command(about = "An in-memory CRI runtime simulator")]
struct Args {
    /// Unix socket to serve on.
    #[arg(long, default_value = "/tmp/memory-runtime.sock")]
    socket: PathBuf,
    /// Images present from the start (repeatable).
    #[arg(long = "image", default_values_t = ["busybox".to_string(), "registry.k8s.io/pause:3.10".to_string()])]
    images: Vec<String>,
    /// Ids derived from a counter (reproducible runs).
    #[arg(long)]
    deterministic_ids: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    cri_examples::init_logging();
    let args = Args::parse();
    let mut builder = FakeRuntime::builder().name("memory-runtime", env!("CARGO_PKG_VERSION"));
    for image in &args.images {
        builder = builder.image(image);
    }
    if args.deterministic_ids {
        builder = builder.deterministic_ids();
    }
    let runtime = Arc::new(builder.build());
    let bound = Server::builder()
        .service(runtime)
        .build()?
        .bind(&args.socket)?;
    tracing::info!(socket = %args.socket.display(), "memory-runtime serving (SIGTERM or Ctrl-C to stop)");
    bound.serve().await?;
    Ok(())
}
