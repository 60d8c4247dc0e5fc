//! A complete CRI runtime held in memory — a simulator for testing kubelet-facing tools
//! (crictl, the `cri` CLI, monitoring agents), not a container runtime.
//!
//! Pods, containers and images follow the CRI state machine (it is the testkit's
//! `FakeRuntime`); container commands are simulated by a small built-in shell (`echo`, `cat`,
//! `sleep`, `true`, `false`, `exit N`, `env`, `hostname`, `pwd`, `sh -c "a; b && c"`), so
//! logs are real CRI log files and `ExecSync` prints real output. Events and stats work, and
//! so do `Exec`/`Attach`/`PortForward` through a streaming server on loopback
//! (`--streaming-addr`, SPDY and WebSocket): `cat` echoes stdin, a bare `sh` runs lines
//! interactively, attach echoes stdin, port-forward reaches a loopback TCP port of this
//! machine.
//!
//! Run:
//!   cargo run -p cri-examples --example memory-runtime -- --socket /tmp/memory-runtime.sock
//! then, for instance:
//!   crictl -r unix:///tmp/memory-runtime.sock pull busybox
//!   crictl -r unix:///tmp/memory-runtime.sock runp pod.json
//!   crictl -r unix:///tmp/memory-runtime.sock exec -i <container> cat

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use cri_examples::ServeFlags;
use cri_server::Server;
use cri_testkit::FakeRuntime;

/// An in-memory CRI runtime simulator, with streaming (exec, attach, port-forward).
#[derive(Parser, Debug)]
#[command(name = "memory-runtime", version, about)]
struct Args {
    #[command(flatten)]
    serve: ServeFlags,
    /// Where the streaming server (exec, attach, port-forward) listens; keep it on loopback:
    /// its only protection is the single-use tokens in its URLs.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    streaming_addr: SocketAddr,
    /// Images present from the start (repeatable).
    #[arg(long = "image", default_values_t = ["busybox".to_string(), "registry.k8s.io/pause:3.10".to_string()])]
    images: Vec<String>,
    /// Ids derived from a counter (reproducible runs).
    #[arg(long)]
    deterministic_ids: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    args.serve.init_logging();
    let mut builder = FakeRuntime::builder().name("memory-runtime", env!("CARGO_PKG_VERSION"));
    for image in &args.images {
        builder = builder.image(image);
    }
    if args.deterministic_ids {
        builder = builder.deterministic_ids();
    }
    let runtime = Arc::new(builder.build());
    let streaming = cri_server::cri_streaming::Server::start(
        runtime.clone(),
        cri_server::cri_streaming::Config {
            addr: args.streaming_addr,
            ..Default::default()
        },
    )
    .await?;
    let bound = Server::builder()
        .service(runtime)
        .streaming(streaming.clone())
        .build()?
        .bind(&args.serve.socket)?;
    tracing::info!(
        socket = %args.serve.socket.display(),
        streaming = %streaming.local_addr(),
        "memory-runtime serving (SIGTERM or Ctrl-C to stop)"
    );
    bound.serve().await?;
    Ok(())
}
