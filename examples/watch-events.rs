//! Follows a runtime's container events (`GetContainerEvents`) and reconnects when the stream
//! ends, resyncing with a full list first — the pattern `cri-client` documents.
//!
//! Run:
//!   cargo run -p cri-examples --example watch-events -- -r unix:///tmp/memory-runtime.sock
//! `--count N` stops after N events (for scripts and tests).

use std::time::Duration;

use clap::Parser;
use cri_client::Client;
use cri_examples::ClientFlags;
use futures_util::StreamExt;

/// Follows a runtime's container events, resubscribing (after a full list) when the stream
/// ends.
#[derive(Parser, Debug)]
#[command(name = "watch-events", version, about)]
struct Args {
    #[command(flatten)]
    client: ClientFlags,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    count: Option<usize>,
}

#[tokio::main]
async fn main() -> Result<(), cri_client::Error> {
    let args = Args::parse();
    let limit = args.count;
    let client = Client::connect(args.client.runtime_endpoint).await?;
    let mut seen = 0;
    loop {
        let mut events = match client.events().await {
            Ok(events) => events,
            Err(err) if err.is_unimplemented() => {
                eprintln!("the runtime does not implement GetContainerEvents");
                return Err(err);
            }
            Err(err) => {
                eprintln!("subscribing failed ({err}); retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Events missed while disconnected are gone: resync from a full list.
        let containers = client.list_containers(None).await?;
        eprintln!("watching; {} containers now", containers.len());
        println!("ready");
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    let state = event
                        .containers_statuses
                        .first()
                        .map(|s| s.state().as_str_name())
                        .unwrap_or("-");
                    println!(
                        "{} {} {}",
                        event.container_event_type().as_str_name(),
                        event.container_id,
                        state
                    );
                    seen += 1;
                    if limit.is_some_and(|limit| seen >= limit) {
                        return Ok(());
                    }
                }
                Err(err) => {
                    eprintln!("stream ended: {err}; resubscribing");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
