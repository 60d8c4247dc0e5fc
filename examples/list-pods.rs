//! Lists the pod sandboxes of a runtime with their containers, using `cri-client`.
//!
//! Run (against any CRI runtime, e.g. the memory-runtime example):
//!   cargo run -p cri-examples --example list-pods -- unix:///tmp/memory-runtime.sock

use cri_client::Client;
use cri_client::cri_api::v1::ContainerFilter;

#[tokio::main]
async fn main() -> Result<(), cri_client::Error> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| cri_client::cri_api::well_known::socket::DEFAULT_ENDPOINTS[0].into());
    // Connecting checks `Version` as the kubelet does.
    let client = Client::connect(endpoint).await?;
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
