//! The fake runtime's exec, attach and port-forward through the harness's streaming server.

use cri_client::cri_api::v1::*;
use cri_client::streaming::{Streams, Transport, Writer};
use cri_testkit::{FakeRuntime, Harness};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn capture() -> (Writer, tokio::task::JoinHandle<Vec<u8>>) {
    let (writer, mut reader) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(async move {
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        out
    });
    (Box::pin(writer), task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_attach_and_port_forward_work_on_the_fake() {
    let fake = FakeRuntime::builder().image("busybox").build();
    let h = Harness::fake(fake.clone()).await.unwrap();
    let c = &h.client;
    let pod = c
        .run_pod_sandbox(
            PodSandboxConfig {
                metadata: Some(PodSandboxMetadata {
                    name: "s".into(),
                    namespace: "n".into(),
                    uid: "u".into(),
                    attempt: 0,
                }),
                hostname: "stream-host".into(),
                ..Default::default()
            },
            "",
        )
        .await
        .unwrap();
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "c".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "infinity".into()],
        ..Default::default()
    };
    let id = c.create_container(&pod, config, None).await.unwrap();
    c.start_container(&id).await.unwrap();

    for transport in [Transport::Spdy, Transport::WebSocket] {
        let (stdout, out) = capture();
        let (stderr, err) = capture();
        let code = c
            .exec(
                &id,
                ["sh", "-c", "hostname; echo oops >&2; exit 4"],
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
            (4, b"stream-host\n".to_vec(), b"oops\n".to_vec())
        );
    }
    // An interactive shell over SPDY: lines in, output out, `exit 2` ends it.
    let (stdout, out) = capture();
    let stdin: cri_client::streaming::Reader = Box::pin(std::io::Cursor::new(
        b"echo one\necho two\nexit 2\n".to_vec(),
    ));
    let code = c
        .exec(
            &id,
            ["sh"],
            Transport::Spdy,
            Streams {
                stdin: Some(stdin),
                stdout: Some(stdout),
                tty: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((code, out.await.unwrap()), (2, b"one\ntwo\n".to_vec()));

    // Attach echoes stdin.
    let (stdout, out) = capture();
    let stdin: cri_client::streaming::Reader = Box::pin(std::io::Cursor::new(b"attached".to_vec()));
    c.attach(
        &id,
        Transport::Spdy,
        Streams {
            stdin: Some(stdin),
            stdout: Some(stdout),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(out.await.unwrap(), b"attached");

    // Port-forward reaches a loopback listener.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        conn.write_all(b"hello through port-forward").await.unwrap();
    });
    let forward = c
        .port_forward(&pod, &[port], Transport::Spdy)
        .await
        .unwrap();
    let mut conn = forward.connect(port).await.unwrap();
    let mut got = Vec::new();
    conn.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"hello through port-forward");
}
