//! The streaming server's in-process ceiling: a large stdout through exec sessions served by
//! a runtime that writes zeros (no container behind it), read by our client, in MiB/s.
//!
//! With the containerd peer running, its column shows containerd's server fed by a real
//! container (`head -c N /dev/zero` in busybox). That is *not* the same work, so its ratio is
//! not a comparison of the two servers; for that, with a real container on both sides, run
//! `cargo bench -p runc-runtime --bench streaming`.
//!
//! Run: `cargo bench -p cri-client --bench streaming` (optionally after
//! `scripts/containerd-peer start` with its `env` exported).

use std::sync::Arc;
use std::time::Instant;

use cri_client::Client;
use cri_client::cri_api::v1::*;
use cri_client::streaming::{Streams, Transport};
use cri_streaming::{Session, StreamError, StreamingRuntime, async_trait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 256;

struct Zeros;

#[async_trait]
impl StreamingRuntime for Zeros {
    async fn exec(&self, _: &str, _: Vec<String>, mut s: Session) -> Result<i32, StreamError> {
        let chunk = vec![0u8; 64 * 1024];
        if let Some(out) = s.stdout.as_mut() {
            for _ in 0..MIB * 16 {
                out.write_all(&chunk)
                    .await
                    .map_err(|e| StreamError::Failed(e.to_string()))?;
            }
        }
        Ok(0)
    }
}

/// Runs one session whose stdout is counted and thrown away; returns MiB/s.
async fn measure(run: impl std::future::Future<Output = (usize, f64)>) -> f64 {
    let (bytes, secs) = run.await;
    assert_eq!(bytes, MIB << 20, "all bytes arrived");
    bytes as f64 / (1 << 20) as f64 / secs
}

async fn session(url: &str, transport: Transport) -> (usize, f64) {
    let (writer, mut reader) = tokio::io::duplex(256 * 1024);
    let counter = tokio::spawn(async move {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0;
        loop {
            let n = reader.read(&mut buf).await.unwrap();
            if n == 0 {
                return total;
            }
            total += n;
        }
    });
    let started = Instant::now();
    let code = cri_streaming::run(
        url,
        transport,
        Streams {
            stdout: Some(Box::pin(writer)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let total = counter.await.unwrap();
    assert_eq!(code, 0);
    (total, started.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ours = cri_streaming::Server::start(Arc::new(Zeros), cri_streaming::Config::default())
            .await
            .unwrap();
        let request = ExecRequest {
            container_id: "c".into(),
            cmd: vec!["zeros".into()],
            stdout: true,
            ..Default::default()
        };
        let peer = cri_testkit::peer::containerd();
        let containerd = match &peer {
            Some(peer) => {
                let client = Client::connect(&peer.endpoint).await.unwrap();
                let config = PodSandboxConfig {
                    metadata: Some(PodSandboxMetadata {
                        name: "bench".into(),
                        namespace: "bench".into(),
                        uid: format!("bench-{}", std::process::id()),
                        attempt: 0,
                    }),
                    linux: Some(LinuxPodSandboxConfig {
                        cgroup_parent: format!("/cri-bench/pod-{}", std::process::id()),
                        security_context: Some(LinuxSandboxSecurityContext {
                            namespace_options: Some(NamespaceOption {
                                network: NamespaceMode::Node as i32,
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let pod = client.run_pod_sandbox(config.clone(), "").await.unwrap();
                let container = ContainerConfig {
                    metadata: Some(ContainerMetadata {
                        name: "zeros".into(),
                        attempt: 0,
                    }),
                    image: Some(ImageSpec {
                        image: peer.image.clone(),
                        ..Default::default()
                    }),
                    command: vec!["sleep".into(), "3600".into()],
                    ..Default::default()
                };
                let id = client
                    .create_container(&pod, container, Some(config))
                    .await
                    .unwrap();
                client.start_container(&id).await.unwrap();
                Some((client, pod, id))
            }
            None => None,
        };
        println!(
            "{MIB} MiB of stdout per session, median of 3, MiB/s; ours = in-process ceiling \
             (no container), containerd = a real container: not like with like"
        );
        println!(
            "{:<10} {:>14} {:>14} {:>8}",
            "transport", "ours", "containerd", "ratio"
        );
        for transport in [Transport::Spdy, Transport::WebSocket] {
            let mut ours_runs = Vec::new();
            let mut theirs_runs = Vec::new();
            for _ in 0..3 {
                let url = ours.exec_url(request.clone()).unwrap();
                ours_runs.push(measure(session(&url, transport)).await);
                if let Some((client, _, id)) = &containerd {
                    let url = client
                        .call(ExecRequest {
                            container_id: id.clone(),
                            cmd: vec![
                                "head".into(),
                                "-c".into(),
                                (MIB << 20).to_string(),
                                "/dev/zero".into(),
                            ],
                            stdout: true,
                            ..Default::default()
                        })
                        .await
                        .unwrap()
                        .url;
                    theirs_runs.push(measure(session(&url, transport)).await);
                }
            }
            let (o, t) = (
                median(ours_runs),
                (!theirs_runs.is_empty()).then(|| median(theirs_runs)),
            );
            match t {
                Some(t) => println!(
                    "{:<10} {:>14.0} {:>14.0} {:>7.2}x",
                    format!("{transport:?}"),
                    o,
                    t,
                    o / t
                ),
                None => println!(
                    "{:<10} {:>14.0} {:>14} {:>8}",
                    format!("{transport:?}"),
                    o,
                    "-",
                    "-"
                ),
            }
        }
        if let Some((client, pod, _)) = containerd {
            let _ = client.stop_pod_sandbox(&pod).await;
            let _ = client.remove_pod_sandbox(&pod).await;
        }
    });
}
