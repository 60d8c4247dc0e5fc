//! `docker-shim`: a CRI runtime over Docker Engine — the dockershim pattern rebuilt on the
//! cri-rs crates (see README.md and docs/docker-shim.md).
//!
//! Run (as root, beside a running dockerd):
//!   cargo run -p docker-shim -- --socket /run/docker-shim/cri.sock --root /var/lib/docker-shim
//! then, for instance:
//!   crictl -r unix:///run/docker-shim/cri.sock pods

mod cli;
mod cni;
mod error;
mod images;
mod labels;
mod propagation;
mod runtime;
mod server;
mod streaming;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    cri_server::logging::init(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("docker-shim: starting tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("docker-shim: {e}");
            ExitCode::FAILURE
        }
    }
}
