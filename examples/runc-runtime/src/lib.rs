//! The code of `runc-runtime`, a CRI runtime that runs pods and containers with runc, built
//! only from the cri-rs crates (see README.md and docs/runc-runtime.md). It is not an API: a
//! library only so that its two executables share it.
//!
//! - `runc-runtime` ([`main()`]): the runtime, and its `monitor` subcommand.
//! - `runc-runtime-monitor` ([`monitor()`]): only the monitor, one process per container. It
//!   links the monitor's code and nothing else, so each of the hundreds of copies a node runs
//!   maps (and relocates at start) a fraction of the runtime's binary; the runtime prefers it
//!   when it lies beside its own binary.
//!
//! Run (as root):
//!   cargo build -p runc-runtime && target/debug/runc-runtime --socket /run/runc-runtime/cri.sock --root /var/lib/runc-runtime
//! then, for instance:
//!   crictl -r unix:///run/runc-runtime/cri.sock pull busybox

mod cgroups;
mod cli;
mod cni;
mod drain;
mod error;
mod images;
mod monitor;
mod netns;
mod propagation;
mod runc;
mod runtime;
mod server;
mod state;
mod streaming;

use std::process::ExitCode;

use clap::Parser;

/// The `runc-runtime` command line: serves CRI, or runs a monitor (`runc-runtime monitor DIR`).
pub fn main() -> ExitCode {
    let args = cli::Args::parse();
    match args.command {
        Some(cli::Command::Monitor { dir }) => monitor::main(dir),
        None => serve(args.serve),
    }
}

/// Runs the monitor of the container whose directory is `dir` (the runtime starts it as
/// `<executable> monitor DIR`; never by hand).
pub fn monitor(dir: std::path::PathBuf) -> ExitCode {
    monitor::main(dir)
}

fn serve(args: cli::ServeArgs) -> ExitCode {
    cri_server::logging::init(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("runc-runtime: starting tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runc-runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
