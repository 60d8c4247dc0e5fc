//! Lists the pod sandboxes of a runtime with their containers, using `cri-client`.
//!
//! Run (against any CRI runtime, e.g. the memory-runtime example):
//!   cargo run -p cri-examples --example list-pods -- -r unix:///tmp/memory-runtime.sock

use clap::Parser;
use cri_client::Client;
use cri_client::cri_api::v1::ContainerFilter;
use cri_examples::ClientFlags;

/// Lists a runtime's pod sandboxes with their containers.
#[derive(Parser, Debug)]
#[command(name = "list-pods", version, about)]
struct Args {
    #[command(flatten)]
    client: ClientFlags,
}

#[tokio::main]
async fn main() -> Result<(), cri_client::Error> {
    let args = Args::parse();
    // Connecting checks `Version` as the kubelet does.
    let client = Client::connect(args.client.runtime_endpoint).await?;
    let pods = client.list_pod_sandbox(None).await?;
    if pods.is_empty() {
        println!("no pods");
    }
    for pod in pods {
        let meta = pod.metadata.clone().unwrap_or_default();
        println!(
            "{} {}/{} {:?}",
            &pod.id[..pod.id.len().min(13)],
            meta.namespace,
            meta.name,
            pod.state()
        );
        let filter = ContainerFilter {
            pod_sandbox_id: pod.id.clone(),
            ..Default::default()
        };
        for c in client.list_containers(Some(filter)).await? {
            let name = c.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("");
            println!("  {} {name} {:?}", &c.id[..c.id.len().min(13)], c.state());
        }
    }
    Ok(())
}
