//! `runc-runtime`: a CRI runtime that runs pods and containers with runc, built only from the
//! cri-rs crates (see README.md and docs/runc-runtime.md).
//!
//! Run (as root):
//!   cargo run -p runc-runtime -- --socket /run/runc-runtime/cri.sock --root /var/lib/runc-runtime
//! then, for instance:
//!   crictl -r unix:///run/runc-runtime/cri.sock pull busybox

mod cgroups;
mod cli;
mod cni;
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

fn main() -> ExitCode {
    let args = cli::Args::parse();
    match args.command {
        Some(cli::Command::Monitor { dir }) => monitor::main(dir),
        None => serve(args.serve),
    }
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
