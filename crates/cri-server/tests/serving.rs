//! The server over a real Unix socket, called by the generated tonic clients.

mod common;

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use cri_server::cri_api::v1::*;
use cri_server::{Error, Server};
use futures_util::StreamExt;
use tonic::Code;

fn my_uid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

fn pod_request(name: &str) -> RunPodSandboxRequest {
    RunPodSandboxRequest {
        config: Some(PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                namespace: "default".into(),
                uid: "uid-1".into(),
                attempt: 0,
            }),
            ..Default::default()
        }),
        runtime_handler: String::new(),
    }
}

fn exec(cmd: &[&str]) -> ExecSyncRequest {
    ExecSyncRequest {
        container_id: "c1".into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout: 0,
    }
}

#[tokio::test]
async fn unimplemented_methods_answer_unimplemented() {
    let server = serve(Server::builder().runtime(MinimalRuntime).build().unwrap());
    let mut runtime = server.runtime().await;
    assert_eq!(
        runtime
            .version(VersionRequest::default())
            .await
            .unwrap()
            .into_inner(),
        version()
    );

    let err = runtime.exec_sync(exec(&["true"])).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert_eq!(err.message(), "ExecSync is not implemented by this runtime");

    let err = runtime.status(StatusRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);

    // A derived Stream* method inherits Unimplemented from its List* method.
    let err = runtime
        .stream_containers(StreamContainersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert_eq!(
        err.message(),
        "ListContainers is not implemented by this runtime"
    );

    // No image service configured: the whole service is Unimplemented.
    let mut image = server.image().await;
    let err = image
        .list_images(ListImagesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
}

#[tokio::test]
async fn stream_methods_are_derived_from_list_methods() {
    for n in [0usize, 1, 256, 1000] {
        let server = serve(
            Server::builder()
                .runtime_shared(test_runtime(n))
                .build()
                .unwrap(),
        );
        let mut runtime = server.runtime().await;
        let mut stream = runtime
            .stream_containers(StreamContainersRequest::default())
            .await
            .unwrap()
            .into_inner();
        let mut seen = HashSet::new();
        let mut batches = 0;
        while let Some(batch) = stream.next().await {
            let batch = batch.unwrap();
            assert!(!batch.containers.is_empty(), "no empty batch");
            assert!(batch.containers.len() <= cri_server::stream::BATCH_SIZE);
            for c in batch.containers {
                assert!(seen.insert(c.id), "each item in exactly one batch");
            }
            batches += 1;
        }
        assert_eq!(seen.len(), n);
        assert_eq!(batches, n.div_ceil(cri_server::stream::BATCH_SIZE));
        let listed = runtime
            .list_containers(ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert_eq!(listed.len(), n, "stream equals list");
    }
}

#[tokio::test]
async fn invalid_requests_never_reach_the_runtime() {
    let rt = test_runtime(0);
    let server = serve(
        Server::builder()
            .runtime_shared(rt.clone())
            .build()
            .unwrap(),
    );
    let mut runtime = server.runtime().await;

    let cases: Vec<(tonic::Status, &str)> = vec![
        (
            runtime
                .run_pod_sandbox(RunPodSandboxRequest::default())
                .await
                .unwrap_err(),
            "RunPodSandbox: config is required",
        ),
        (
            runtime.run_pod_sandbox(pod_request("")).await.unwrap_err(),
            "RunPodSandbox: config.metadata.name is required",
        ),
        (
            runtime
                .container_status(ContainerStatusRequest::default())
                .await
                .unwrap_err(),
            "ContainerStatus: container_id is required",
        ),
        (
            runtime
                .exec_sync(ExecSyncRequest {
                    container_id: "c".into(),
                    ..Default::default()
                })
                .await
                .unwrap_err(),
            "ExecSync: cmd is required",
        ),
        (
            runtime
                .exec(ExecRequest {
                    container_id: "c".into(),
                    cmd: vec!["sh".into()],
                    tty: true,
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                })
                .await
                .unwrap_err(),
            "Exec: tty and stderr cannot both be set (a terminal has one output stream)",
        ),
        (
            runtime
                .port_forward(PortForwardRequest {
                    pod_sandbox_id: "p".into(),
                    port: vec![70000],
                })
                .await
                .unwrap_err(),
            "PortForward: port 70000 is outside 1..=65535",
        ),
        (
            runtime
                .stop_container(StopContainerRequest {
                    container_id: "c".into(),
                    timeout: -3,
                })
                .await
                .unwrap_err(),
            "StopContainer: timeout must not be negative (got -3)",
        ),
    ];
    for (status, message) in cases {
        assert_eq!(status.code(), Code::InvalidArgument, "{message}");
        assert_eq!(status.message(), message);
    }
    assert_eq!(
        rt.calls.load(Ordering::SeqCst),
        0,
        "the runtime saw none of them"
    );

    let ok = runtime.run_pod_sandbox(pod_request("web")).await.unwrap();
    assert_eq!(ok.into_inner().pod_sandbox_id, "sandbox-web");
    assert_eq!(rt.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn runtime_errors_keep_their_codes_over_the_wire() {
    let server = serve(Server::builder().service(test_runtime(0)).build().unwrap());
    let mut runtime = server.runtime().await;
    let err = runtime
        .container_status(ContainerStatusRequest {
            container_id: "nope".into(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "container \"nope\" not found");

    let mut image = server.image().await;
    let err = image
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unknown);
    assert_eq!(
        err.message(),
        "RegistryUnavailable: cannot reach registry for busybox"
    );

    // A missing image is a success with no image.
    let status = image
        .image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: "missing:latest".into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(status.image.is_none());
}

#[tokio::test]
async fn a_panicking_method_answers_internal_and_the_server_keeps_serving() {
    let server = serve(Server::builder().service(test_runtime(0)).build().unwrap());
    let mut runtime = server.runtime().await;
    let err = runtime.exec_sync(exec(&["panic"])).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(
        err.message().contains("boom in exec_sync"),
        "{}",
        err.message()
    );
    let out = runtime
        .exec_sync(exec(&["echo", "still", "here"]))
        .await
        .unwrap();
    assert_eq!(out.into_inner().stdout, b"still here");
}

#[tokio::test]
async fn the_client_deadline_is_enforced_by_the_server() {
    // Called in-process so that no client-side timer races the server's.
    use http_body_util::BodyExt;
    use prost::Message;
    use tower::ServiceExt;

    let routes = Server::builder()
        .service(test_runtime(0))
        .build()
        .unwrap()
        .into_routes();
    let message = exec(&["sleep", "5000"]).encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    let request = http::Request::post("/runtime.v1.RuntimeService/ExecSync")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "200m")
        .body(http_body_util::Full::new(bytes::Bytes::from(framed)))
        .unwrap();
    let started = std::time::Instant::now();
    let response = routes.oneshot(request).await.unwrap();
    let status = match tonic::Status::from_header_map(response.headers()) {
        Some(status) => status,
        None => {
            let trailers = response
                .into_body()
                .collect()
                .await
                .unwrap()
                .trailers()
                .cloned();
            tonic::Status::from_header_map(&trailers.unwrap()).unwrap()
        }
    };
    assert_eq!(
        status.code(),
        Code::DeadlineExceeded,
        "{}",
        status.message()
    );
    assert_eq!(status.message(), "ExecSync: deadline exceeded");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn peer_credentials_and_request_ids_reach_the_runtime() {
    let server = serve(Server::builder().service(test_runtime(0)).build().unwrap());
    let mut runtime = server.runtime().await;
    let mut request = tonic::Request::new(exec(&["whoami"]));
    request
        .metadata_mut()
        .insert("x-request-id", "req-42".parse().unwrap());
    let out = runtime
        .exec_sync(request)
        .await
        .unwrap()
        .into_inner()
        .stdout;
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("Some({}) req-42", my_uid())
    );
}

#[tokio::test]
async fn socket_mode_defaults_to_0660_and_is_configurable() {
    let server = serve(Server::builder().runtime(MinimalRuntime).build().unwrap());
    let mode = std::fs::metadata(&server.path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);

    let server = serve(
        Server::builder()
            .runtime(MinimalRuntime)
            .socket_mode(0o600)
            .build()
            .unwrap(),
    );
    let mode = std::fs::metadata(&server.path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn uid_allowlist_admits_listed_uids_only() {
    let allowed = serve(
        Server::builder()
            .runtime(MinimalRuntime)
            .allow_uids([my_uid()])
            .build()
            .unwrap(),
    );
    allowed
        .runtime()
        .await
        .version(VersionRequest::default())
        .await
        .unwrap();

    let denied = serve(
        Server::builder()
            .runtime(MinimalRuntime)
            .allow_uids([my_uid().wrapping_add(1)])
            .build()
            .unwrap(),
    );
    let err = denied
        .runtime()
        .await
        .version(VersionRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains(&format!("uid {}", my_uid())));
}

#[tokio::test]
async fn a_stale_socket_is_replaced_but_a_live_one_is_never_stolen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cri.sock");

    // Stale: a socket file nobody listens on any more.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let bound = Server::builder()
        .runtime(MinimalRuntime)
        .build()
        .unwrap()
        .bind(&path)
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bound.serve_with_shutdown(async move {
        let _ = stopped.await;
    }));
    let mut client = cri_server::cri_api::v1::runtime_service_client::RuntimeServiceClient::new(
        connect(&path).await,
    );
    client.version(VersionRequest::default()).await.unwrap();

    // Live: a second server must not take the socket of the first.
    let err = Server::builder()
        .runtime(MinimalRuntime)
        .build()
        .unwrap()
        .bind(&path)
        .unwrap_err();
    assert!(matches!(err, Error::SocketInUse(_)), "{err}");
    client.version(VersionRequest::default()).await.unwrap();

    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert!(!path.exists(), "the socket is removed on shutdown");

    // Not a socket: never removed.
    std::fs::write(&path, "precious").unwrap();
    let err = Server::builder()
        .runtime(MinimalRuntime)
        .build()
        .unwrap()
        .bind(&path)
        .unwrap_err();
    assert!(err.to_string().contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

#[tokio::test]
async fn a_ten_mib_response_works_and_a_twenty_mib_request_is_resource_exhausted() {
    let rt = Arc::new(TestRuntime {
        containers: 10,
        padding: 1 << 20, // ~10 MiB in total
        ..Default::default()
    });
    let server = serve(Server::builder().runtime_shared(rt).build().unwrap());
    let mut runtime = server.runtime().await;
    let listed = runtime
        .list_containers(ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.containers.len(), 10);
    assert!(prost::Message::encoded_len(&listed) > 10 << 20);

    let huge = "y".repeat(20 << 20);
    let err = runtime.exec_sync(exec(&["echo", &huge])).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    // The connection is still good.
    runtime.version(VersionRequest::default()).await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_lets_a_call_in_flight_finish() {
    let mut server = serve(Server::builder().service(test_runtime(0)).build().unwrap());
    let mut runtime = server.runtime().await;
    let in_flight = tokio::spawn(async move { runtime.exec_sync(exec(&["sleep", "700"])).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.trigger_shutdown();
    let response = in_flight.await.unwrap();
    assert!(
        response.is_ok(),
        "the in-flight call finished: {response:?}"
    );
    server.task.take().unwrap().await.unwrap().unwrap();
    assert!(!server.path.exists(), "socket removed");
    assert!(tokio::net::UnixStream::connect(&server.path).await.is_err());
}

#[tokio::test]
async fn the_drain_timeout_bounds_shutdown() {
    let mut server = serve(
        Server::builder()
            .service(test_runtime(0))
            .drain_timeout(Some(Duration::from_millis(300)))
            .build()
            .unwrap(),
    );
    let mut runtime = server.runtime().await;
    let in_flight = tokio::spawn(async move { runtime.exec_sync(exec(&["sleep", "60000"])).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    server.trigger_shutdown();
    server.task.take().unwrap().await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    in_flight.abort();
}

#[tokio::test]
async fn container_events_fan_out_to_subscribers() {
    let rt = test_runtime(0);
    let server = serve(
        Server::builder()
            .runtime_shared(rt.clone())
            .build()
            .unwrap(),
    );
    let mut a = server
        .runtime()
        .await
        .get_container_events(GetEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut b = server
        .runtime()
        .await
        .get_container_events(GetEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    // Subscriptions are registered once the call has reached the runtime.
    while rt.events.subscribers() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for i in 0..3 {
        rt.events.publish(ContainerEventResponse {
            container_id: format!("c{i}"),
            container_event_type: ContainerEventType::ContainerStartedEvent as i32,
            ..Default::default()
        });
    }
    for stream in [&mut a, &mut b] {
        for i in 0..3 {
            let event = stream.next().await.unwrap().unwrap();
            assert_eq!(event.container_id, format!("c{i}"));
        }
    }
}

#[tokio::test]
async fn metrics_count_calls_by_method_and_code() {
    let server = serve(Server::builder().service(test_runtime(0)).build().unwrap());
    let mut runtime = server.runtime().await;
    for _ in 0..3 {
        runtime.version(VersionRequest::default()).await.unwrap();
    }
    let _ = runtime
        .container_status(ContainerStatusRequest::default())
        .await;
    let stats = server.metrics.snapshot();
    let version = stats.iter().find(|m| m.method == "Version").unwrap();
    assert_eq!(version.calls, 3);
    assert_eq!(version.errors(), 0);
    let status = stats
        .iter()
        .find(|m| m.method == "ContainerStatus")
        .unwrap();
    assert_eq!(status.by_code, vec![(Code::InvalidArgument, 1)]);
    let text = server.metrics.render_prometheus();
    assert!(text.contains(
        "cri_server_calls_total{service=\"RuntimeService\",method=\"Version\",code=\"OK\"} 3"
    ));
}

#[tokio::test]
async fn tower_layers_wrap_every_call() {
    #[derive(Clone)]
    struct Count<S>(S, Arc<std::sync::atomic::AtomicUsize>);
    impl<S: tower::Service<R>, R> tower::Service<R> for Count<S> {
        type Response = S::Response;
        type Error = S::Error;
        type Future = S::Future;
        fn poll_ready(
            &mut self,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), S::Error>> {
            self.0.poll_ready(cx)
        }
        fn call(&mut self, req: R) -> S::Future {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.call(req)
        }
    }
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let layer_counter = counter.clone();
    let server = Server::builder()
        .runtime(MinimalRuntime)
        .layer(tower::layer::layer_fn(move |inner| {
            Count(inner, layer_counter.clone())
        }))
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layered.sock");
    let bound = server.bind(&path).unwrap();
    let task = tokio::spawn(bound.serve_with_shutdown(std::future::pending()));
    let mut client = cri_server::cri_api::v1::runtime_service_client::RuntimeServiceClient::new(
        connect(&path).await,
    );
    client.version(VersionRequest::default()).await.unwrap();
    client.version(VersionRequest::default()).await.unwrap();
    assert_eq!(counter.load(Ordering::SeqCst), 2);
    task.abort();
}

#[test]
fn building_without_any_service_is_an_error() {
    let err = Server::builder().build().unwrap_err();
    assert!(matches!(err, Error::Config(_)));
}
