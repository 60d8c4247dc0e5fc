//! The smallest useful CRI runtime: it answers `Version` and `Status`, lists no pods, and
//! everything else answers `Unimplemented` cleanly — the starting point of a real runtime.
//!
//! Run:
//!   cargo run -p cri-examples --example minimal-runtime -- --socket /tmp/minimal.sock
//! then:
//!   crictl -r unix:///tmp/minimal.sock version     # works
//!   crictl -r unix:///tmp/minimal.sock pods        # works: no pods
//!   crictl -r unix:///tmp/minimal.sock ps          # "ListContainers is not implemented by this runtime"

use clap::Parser;
use cri_examples::ServeFlags;
use cri_server::cri_api::v1::*;
use cri_server::cri_api::well_known::condition;
use cri_server::{Context, Result, RuntimeService, Server, async_trait};

/// The smallest useful CRI runtime: Version, Status and an empty pod list; everything else
/// answers Unimplemented.
#[derive(Parser, Debug)]
#[command(name = "minimal-runtime", version, about)]
struct Args {
    #[command(flatten)]
    serve: ServeFlags,
}

struct Minimal;

#[async_trait]
impl RuntimeService for Minimal {
    async fn version(&self, _: Context, _: VersionRequest) -> Result<VersionResponse> {
        Ok(VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "minimal-runtime".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: cri_server::cri_api::API_VERSION.into(),
        })
    }

    async fn status(&self, _: Context, _: StatusRequest) -> Result<StatusResponse> {
        let ready = |kind: &str| RuntimeCondition {
            r#type: kind.into(),
            status: true,
            ..Default::default()
        };
        Ok(StatusResponse {
            status: Some(RuntimeStatus {
                conditions: vec![
                    ready(condition::RUNTIME_READY),
                    ready(condition::NETWORK_READY),
                ],
            }),
            ..Default::default()
        })
    }

    async fn list_pod_sandbox(
        &self,
        _: Context,
        _: ListPodSandboxRequest,
    ) -> Result<ListPodSandboxResponse> {
        Ok(ListPodSandboxResponse::default())
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    args.serve.init_logging();
    tracing::info!(socket = %args.serve.socket.display(), "minimal-runtime serving");
    Server::builder()
        .runtime(Minimal)
        .build()?
        .serve(&args.serve.socket)
        .await
}
