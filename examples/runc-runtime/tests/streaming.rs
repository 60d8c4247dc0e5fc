//! Exec, attach and port-forward through our streaming client, over SPDY and WebSocket, into
//! real runc containers: the same checks the containerd interop test makes, plus a pod with
//! its own network namespace for port-forward and a terminal resize.

mod common;

use std::time::Duration;

use common::{Pod, Runtime, status, wait_for};
use cri_client::streaming::{Reader, Streams, TerminalSize, Transport, Writer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

const TRANSPORTS: [Transport; 2] = [Transport::Spdy, Transport::WebSocket];

/// A client output that takes 16 KiB, then sleeps `pause`, until the end; counts the bytes.
fn slow_reader(pause: Duration) -> (Writer, JoinHandle<usize>) {
    let (writer, mut reader) = tokio::io::duplex(16 * 1024);
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut total = 0;
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
            tokio::time::sleep(pause).await;
        }
    });
    (Box::pin(writer), task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_attach() {
    let Some(images) = common::requirements() else {
        return;
    };
    let runtime = Runtime::start(common::Options {
        imports: vec![images.dir.join("busybox.tar"), images.dir.join("pause.tar")],
        ..Default::default()
    })
    .await;
    let client = runtime.client.clone();
    let pod_config = runtime.pod_config("streams", false);
    let pod = client
        .run_pod_sandbox(pod_config.clone(), "")
        .await
        .unwrap();
    let shell = Runtime::container_config("shell", &images.busybox, &["sleep", "3600"]);
    let id = client
        .create_container(&pod, shell, Some(pod_config.clone()))
        .await
        .unwrap();
    client.start_container(&id).await.unwrap();

    for transport in TRANSPORTS {
        // Pipes: stdout, stderr and the exit code.
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
            .await
            .unwrap();
        assert_eq!(
            (code, out.await.unwrap(), err.await.unwrap()),
            (3, b"out\n".to_vec(), b"err\n".to_vec()),
            "{transport:?}"
        );

        // Stdin to the end (`head -c` ends it where a WebSocket client cannot half-close).
        let (stdout, out) = capture();
        let stdin: Reader = Box::pin(std::io::Cursor::new(b"from stdin\n".to_vec()));
        let code = client
            .exec(
                &id,
                ["head", "-c", "11"],
                transport,
                Streams {
                    stdin: Some(stdin),
                    stdout: Some(stdout),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            (code, out.await.unwrap()),
            (0, b"from stdin\n".to_vec()),
            "{transport:?}"
        );

        // A terminal, resized before the command asks for its size; short-lived output is
        // not lost.
        let (stdout, out) = capture();
        let (resize, sizes) = tokio::sync::mpsc::channel(4);
        resize
            .send(TerminalSize {
                width: 100,
                height: 30,
            })
            .await
            .unwrap();
        let code = client
            .exec(
                &id,
                ["sh", "-c", "sleep 0.3; stty size; tty; exit 2"],
                transport,
                Streams {
                    stdout: Some(stdout),
                    tty: true,
                    resize: Some(sizes),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.await.unwrap()).replace('\r', "");
        assert_eq!(code, 2, "{transport:?}");
        assert!(
            text.starts_with("30 100\n/dev/pts/"),
            "{transport:?}: {text:?}"
        );
    }

    // Attach to a container reading its stdin until "bye"; the session ends when it exits.
    for transport in TRANSPORTS {
        let mut config = Runtime::container_config(
            &format!("attached-{transport:?}").to_lowercase(),
            &images.busybox,
            &[
                "sh",
                "-c",
                r#"while read l; do echo "got $l"; [ "$l" = bye ] && exit 5; done"#,
            ],
        );
        config.stdin = true;
        let attached = client
            .create_container(&pod, config, Some(pod_config.clone()))
            .await
            .unwrap();
        client.start_container(&attached).await.unwrap();
        let (stdout, out) = capture();
        let (mut keyboard, stdin) = tokio::io::duplex(1024);
        keyboard.write_all(b"hello\nbye\n").await.unwrap();
        let stdin: Reader = Box::pin(stdin);
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
        .expect("attach ends when the container exits")
        .unwrap();
        drop(keyboard);
        assert_eq!(
            (code, out.await.unwrap()),
            (5, b"got hello\ngot bye\n".to_vec()),
            "attach over {transport:?}"
        );
        let log = std::fs::read_to_string(status(&client, &attached).await.log_path).unwrap();
        assert!(
            log.contains("stdout F got bye"),
            "attached output is logged too:\n{log}"
        );
    }

    // Attach to a container with a terminal: resize, type, and the session ends with it.
    let mut config = Runtime::container_config("terminal", &images.busybox, &["sh"]);
    config.tty = true;
    config.stdin = true;
    let terminal = client
        .create_container(&pod, config, Some(pod_config.clone()))
        .await
        .unwrap();
    client.start_container(&terminal).await.unwrap();
    let (stdout, out) = capture();
    let (resize, sizes) = tokio::sync::mpsc::channel(4);
    resize
        .send(TerminalSize {
            width: 50,
            height: 20,
        })
        .await
        .unwrap();
    let (mut keyboard, stdin) = tokio::io::duplex(1024);
    let typing = tokio::spawn(async move {
        // Give the resize a moment to land before asking for the size.
        tokio::time::sleep(Duration::from_millis(500)).await;
        keyboard.write_all(b"stty size; exit 3\n").await.unwrap();
        keyboard
    });
    let stdin: Reader = Box::pin(stdin);
    let code = tokio::time::timeout(
        Duration::from_secs(30),
        client.attach(
            &terminal,
            Transport::Spdy,
            Streams {
                stdin: Some(stdin),
                stdout: Some(stdout),
                tty: true,
                resize: Some(sizes),
                ..Default::default()
            },
        ),
    )
    .await
    .expect("attach ends when the shell exits")
    .unwrap();
    drop(typing.await.unwrap());
    let text = String::from_utf8_lossy(&out.await.unwrap()).replace('\r', "");
    assert_eq!(code, 3, "{text:?}");
    assert!(text.contains("\n20 50\n"), "{text:?}");
    runtime.shutdown().await;
}

/// Writes through one forwarded connection and reads as many bytes back.
async fn round_trip(
    forward: &cri_client::streaming::PortForward,
    port: u16,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let mut conn = forward.connect(port).await.ok()?;
    conn.write_all(payload).await.ok()?;
    let mut echoed = vec![0; payload.len()];
    tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut echoed))
        .await
        .ok()?
        .ok()?;
    Some(echoed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_into_host_and_pod_networks() {
    let Some(images) = common::requirements() else {
        return;
    };
    let runtime = Runtime::start(common::Options {
        imports: vec![images.dir.join("busybox.tar"), images.dir.join("pause.tar")],
        ..Default::default()
    })
    .await;
    let client = runtime.client.clone();
    // The host network needs a port no one else uses; a pod network has all of them.
    let host_port = 20_000 + (std::process::id() % 20_000) as u16;
    for (own_network, port) in [(false, host_port), (true, 8080)] {
        let pod_config =
            runtime.pod_config(if own_network { "pf-pod" } else { "pf-host" }, own_network);
        let pod = client
            .run_pod_sandbox(pod_config.clone(), "")
            .await
            .unwrap();
        let listener = Runtime::container_config(
            "echo",
            &images.busybox,
            &["nc", "-ll", "-p", &port.to_string(), "-e", "cat"],
        );
        let listener = client
            .create_container(&pod, listener, Some(pod_config.clone()))
            .await
            .unwrap();
        client.start_container(&listener).await.unwrap();
        for transport in TRANSPORTS {
            let forward = client.port_forward(&pod, &[port], transport).await.unwrap();
            let payload = format!("ping {own_network} {transport:?}\n").into_bytes();
            let echoed = wait_for("the listener", Duration::from_secs(10), || async {
                round_trip(&forward, port, &payload).await
            })
            .await;
            assert_eq!(echoed, payload);
        }
        if own_network {
            // The pod's namespace is not the host's: nothing listens on the host's 8080
            // for this pod (it may for others, but not with our echo).
            let host = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
            if let Ok(mut conn) = host {
                let _ = conn.write_all(b"x").await;
                let mut buf = [0u8; 1];
                let read =
                    tokio::time::timeout(Duration::from_millis(500), conn.read(&mut buf)).await;
                assert!(
                    !matches!(read, Ok(Ok(1)) if buf == *b"x"),
                    "the pod's port leaked to the host"
                );
            }
        }
        client.stop_pod_sandbox(&pod).await.unwrap();
        client.remove_pod_sandbox(&pod).await.unwrap();
    }
    runtime.shutdown().await;
}

/// After the process exits, the runtime waits for a slow client but not for a background
/// process. A client slower than the process still gets every byte: the process exits while
/// a megabyte or more of its output is still in its pipe and the session's queue, which
/// this client takes seconds to read. A background process that holds the output open
/// without writing is cut off once the runtime has waited a while for it, long before it
/// ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_output_waits_for_a_slow_client_not_for_a_background_process() {
    let Some(Pod {
        runtime,
        id: pod,
        config: pod_config,
        image: busybox,
    }) = Pod::start("slow-client").await
    else {
        return;
    };
    let client = runtime.client.clone();
    let shell = Runtime::container_config("shell", &busybox, &["sleep", "3600"]);
    let id = client
        .create_container(&pod, shell, Some(pod_config.clone()))
        .await
        .unwrap();
    client.start_container(&id).await.unwrap();

    // About 530 KiB/s: the last 1.5 MiB or so take about 3 s after the exit.
    const BYTES: usize = 5 << 20;
    let (writer, slow) = slow_reader(Duration::from_millis(30));
    let code = client
        .exec(
            &id,
            ["head", "-c", &BYTES.to_string(), "/dev/zero"],
            Transport::Spdy,
            Streams {
                stdout: Some(writer),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert_eq!(
        slow.await.unwrap(),
        BYTES,
        "every byte reached the slow client"
    );

    let (stdout, out) = capture();
    let exec = client.exec(
        &id,
        ["sh", "-c", "echo started; sleep 600 &"],
        Transport::Spdy,
        Streams {
            stdout: Some(stdout),
            ..Default::default()
        },
    );
    let code = tokio::time::timeout(Duration::from_secs(120), exec)
        .await
        .expect("the exec ends before its background process")
        .unwrap();
    assert_eq!((code, out.await.unwrap()), (0, b"started\n".to_vec()));
    runtime.shutdown().await;
}

/// An attached client slower than the container gets every byte of its output: the
/// container's output waits for it (as under containerd) instead of skipping what the client
/// has not taken yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_attached_client_gets_all_output() {
    let Some(Pod {
        runtime,
        id: pod,
        config: pod_config,
        image: busybox,
    }) = Pod::start("slow-attach").await
    else {
        return;
    };
    let client = runtime.client.clone();
    // Far more than every buffer on the way (pipe, monitor, socket, session, client window).
    const BYTES: usize = 32 << 20;
    let command = format!("read line && head -c {BYTES} /dev/zero");
    let mut config = Runtime::container_config("writer", &busybox, &["sh", "-c", &command]);
    config.stdin = true;
    config.stdin_once = true;
    let id = client
        .create_container(&pod, config, Some(pod_config.clone()))
        .await
        .unwrap();
    client.start_container(&id).await.unwrap();

    // About 8 MiB/s, where head writes hundreds.
    let (writer, slow) = slow_reader(Duration::from_millis(2));
    let (mut keyboard, stdin) = tokio::io::duplex(64);
    keyboard.write_all(b"go\n").await.unwrap();
    let stdin: Reader = Box::pin(stdin);
    let attached = tokio::time::timeout(
        Duration::from_secs(120),
        client.attach(
            &id,
            Transport::Spdy,
            Streams {
                stdin: Some(stdin),
                stdout: Some(writer),
                ..Default::default()
            },
        ),
    )
    .await
    .expect("attach ends when the container exits");
    drop(keyboard);
    attached.unwrap();
    assert_eq!(
        slow.await.unwrap(),
        BYTES,
        "every byte reached the attached client"
    );
    runtime.shutdown().await;
}
