//! Our streaming client against containerd's streaming server (real runc containers, see
//! `scripts/containerd-peer`): exec with and without a terminal, attach and port-forward,
//! over SPDY and WebSocket.

use std::time::Duration;

use cri_client::Client;
use cri_client::cri_api::v1::*;
use cri_client::streaming::{Streams, Transport, Writer};
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;

fn capture() -> (Writer, JoinHandle<Vec<u8>>) {
    let (writer, mut reader) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(async move {
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        out
    });
    (Box::pin(writer), task)
}

/// Writes `payload` through one forwarded connection and reads back as many bytes.
async fn forward_round_trip(
    forward: &cri_client::streaming::PortForward,
    port: u16,
    payload: &[u8],
) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
    use tokio::io::AsyncWriteExt;
    let mut conn = forward.connect(port).await?;
    conn.write_all(payload).await?;
    let mut echoed = vec![0; payload.len()];
    tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut echoed)).await??;
    Ok(echoed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_attach_and_port_forward_against_containerd() {
    let Some(peer) = cri_testkit::peer::containerd() else {
        return;
    };
    peer.reimport_images().unwrap();
    let client = Client::connect(&peer.endpoint).await.unwrap();
    let config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "streaming-interop".into(),
            namespace: "cri-client".into(),
            uid: format!("uid-streaming-{}", std::process::id()),
            attempt: 0,
        }),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("/cri-client-test/streaming-{}", std::process::id()),
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
    // The body runs as its own task so that a failed assertion still reaches the cleanup
    // below (a leaked pod would outlive the test in the shared containerd).
    let body = {
        let (client, pod, config) = (client.clone(), pod.clone(), config.clone());
        let image = peer.image.clone();
        tokio::spawn(async move {
            let container = ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "shell".into(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                command: vec!["sleep".into(), "3600".into()],
                ..Default::default()
            };
            let id = client
                .create_container(&pod, container, Some(config.clone()))
                .await?;
            client.start_container(&id).await?;

            for transport in [Transport::Spdy, Transport::WebSocket] {
                // Exec without a terminal: stdout, stderr and the exit code.
                let (stdout, out) = capture();
                let (stderr, err) = capture();
                let code = client
                    .exec(
                        &id,
                        ["sh", "-c", "echo out; echo err >&2; exit 3"],
                        transport,
                        Streams {
                            stdout: Some(stdout),
                            stderr: Some(stderr),
                            ..Default::default()
                        },
                    )
                    .await?;
                assert_eq!(
                    (code, out.await.unwrap(), err.await.unwrap()),
                    (3, b"out\n".to_vec(), b"err\n".to_vec()),
                    "{transport:?}"
                );

                // Stdin through cat (SPDY half-closes stdin; WebSocket needs v5 for that, which
                // containerd 1.6 does not speak, so `head -c` ends the command instead).
                let (stdout, out) = capture();
                let cmd: Vec<&str> = match transport {
                    Transport::Spdy => vec!["cat"],
                    Transport::WebSocket => vec!["head", "-c", "12"],
                };
                let stdin: cri_client::streaming::Reader =
                    Box::pin(std::io::Cursor::new(b"from stdin\n\n".to_vec()));
                let code = client
                    .exec(
                        &id,
                        cmd,
                        transport,
                        Streams {
                            stdin: Some(stdin),
                            stdout: Some(stdout),
                            ..Default::default()
                        },
                    )
                    .await?;
                assert_eq!(
                    (code, out.await.unwrap()),
                    (0, b"from stdin\n\n".to_vec()),
                    "{transport:?}"
                );

                // A terminal: output arrives through the one tty stream, with stdin open as a
                // terminal's is. (Over WebSocket, containerd 1.6 forwards a tty exec's output only
                // while the session has a stdin channel: wire traces of `tty` without stdin show
                // the exit status and no data frame whenever the output comes later than the
                // first moment. SPDY has no such gap; that case is covered below.)
                {
                    let (stdout, out) = capture();
                    let (_keyboard, stdin) = tokio::io::duplex(64);
                    let code = client
                        .exec(
                            &id,
                            ["sh", "-c", "sleep 0.2; echo tty-out; echo tty-err >&2"],
                            transport,
                            Streams {
                                stdin: Some(Box::pin(stdin)),
                                stdout: Some(stdout),
                                tty: true,
                                ..Default::default()
                            },
                        )
                        .await?;
                    let text = String::from_utf8_lossy(&out.await.unwrap()).replace('\r', "");
                    assert_eq!(
                        (code, text.as_str()),
                        (0, "tty-out\ntty-err\n"),
                        "{transport:?}"
                    );
                }
                if transport == Transport::Spdy {
                    let (stdout, out) = capture();
                    let code = client
                        .exec(
                            &id,
                            ["sh", "-c", "sleep 0.2; echo no-stdin"],
                            transport,
                            Streams {
                                stdout: Some(stdout),
                                tty: true,
                                ..Default::default()
                            },
                        )
                        .await?;
                    let text = String::from_utf8_lossy(&out.await.unwrap()).replace('\r', "");
                    assert_eq!(
                        (code, text.as_str()),
                        (0, "no-stdin\n"),
                        "tty without stdin"
                    );
                }
            }

            // Attach: a container reading its stdin answers every line until "bye", then exits,
            // which ends the attach session. One container per transport, since each one exits.
            for transport in [Transport::Spdy, Transport::WebSocket] {
                let attached = ContainerConfig {
                    metadata: Some(ContainerMetadata {
                        name: format!("attached-{transport:?}").to_lowercase(),
                        attempt: 0,
                    }),
                    image: Some(ImageSpec {
                        image: image.clone(),
                        ..Default::default()
                    }),
                    command: vec![
                        "sh".into(),
                        "-c".into(),
                        r#"while read l; do echo "got $l"; [ "$l" = bye ] && exit 0; done"#.into(),
                    ],
                    stdin: true,
                    ..Default::default()
                };
                let attached = client
                    .create_container(&pod, attached, Some(config.clone()))
                    .await?;
                client.start_container(&attached).await?;
                let (stdout, out) = capture();
                // Stdin stays open as a terminal's would: containerd ends an attach session as
                // soon as the client's stdin closes, before the answers come back. The lines
                // are typed once the session is up, as a person would: input already waiting
                // when the session opens can reach the container before containerd has hooked
                // up the session's stdout, and the answers are then lost (seen once in CI, over
                // WebSocket: exit 0, no output).
                let (mut keyboard, stdin) = tokio::io::duplex(1024);
                let typing = tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    tokio::io::AsyncWriteExt::write_all(&mut keyboard, b"hello\nbye\n")
                        .await
                        .unwrap();
                    keyboard
                });
                let stdin: cri_client::streaming::Reader = Box::pin(stdin);
                let code = tokio::time::timeout(
                    Duration::from_secs(30),
                    client.attach(
                        &attached,
                        transport,
                        Streams {
                            stdin: Some(stdin),
                            stdout: Some(stdout),
                            ..Default::default()
                        },
                    ),
                )
                .await
                .expect("attach ends when the container exits")?;
                drop(typing.await.unwrap());
                assert_eq!(
                    (code, out.await.unwrap()),
                    (0, b"got hello\ngot bye\n".to_vec()),
                    "attach over {transport:?}"
                );
            }

            // Port-forward to a listener inside the pod (host network: the pod's namespace is the
            // node's, so the port is picked per run to avoid collisions).
            let port = 20_000 + (std::process::id() % 20_000) as u16;
            let listener = ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "listener".into(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                command: vec![
                    "nc".into(),
                    "-ll".into(),
                    "-p".into(),
                    port.to_string(),
                    "-e".into(),
                    "cat".into(),
                ],
                ..Default::default()
            };
            let listener = client
                .create_container(&pod, listener, Some(config.clone()))
                .await?;
            client.start_container(&listener).await?;
            for transport in [Transport::Spdy, Transport::WebSocket] {
                let forward = client.port_forward(&pod, &[port], transport).await?;
                let mut echoed = None;
                // The listener may still be starting: retry the first connection briefly.
                for _ in 0..50 {
                    match forward_round_trip(&forward, port, b"ping through the pod\n").await {
                        Ok(bytes) if !bytes.is_empty() => {
                            echoed = Some(bytes);
                            break;
                        }
                        _ => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
                assert_eq!(
                    echoed.as_deref(),
                    Some(&b"ping through the pod\n"[..]),
                    "port-forward over {transport:?}"
                );
            }
            Ok::<_, cri_client::Error>(id)
        })
    };
    let result = body.await;
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        client.stop_pod_sandbox(&pod).await.ok();
        client.remove_pod_sandbox(&pod).await.ok();
    })
    .await;
    match result {
        Ok(outcome) => {
            outcome.unwrap();
        }
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
