//! The client against in-process servers: kubelet timeouts, version and status checks,
//! list streaming fallback, events.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cri_client::cri_api::v1::*;
use cri_client::{Client, Error};
use cri_server::{Context, ImageService, ResponseStream, RuntimeService, Server, async_trait};
use cri_testkit::{FakeRuntime, Harness};
use futures_util::StreamExt;

/// A runtime with knobs for every client behaviour under test.
#[derive(Default)]
struct Knobs {
    version: Option<VersionResponse>,
    slow_list: Duration,
    slow_pull: Duration,
    streams_unimplemented: bool,
    incomplete_statuses: bool,
    empty_pull_ref: bool,
    stream_calls: AtomicUsize,
    list_calls: AtomicUsize,
}

fn good_version() -> VersionResponse {
    VersionResponse {
        version: "0.1.0".into(),
        runtime_name: "knobs".into(),
        runtime_version: "1.0".into(),
        runtime_api_version: "v1".into(),
    }
}

fn containers() -> Vec<Container> {
    (0..600)
        .map(|i| Container {
            id: format!("c{i:03}"),
            ..Default::default()
        })
        .collect()
}

#[async_trait]
impl RuntimeService for Knobs {
    async fn version(&self, _: Context, _: VersionRequest) -> cri_server::Result<VersionResponse> {
        Ok(self.version.clone().unwrap_or_else(good_version))
    }

    async fn list_containers(
        &self,
        _: Context,
        _: ListContainersRequest,
    ) -> cri_server::Result<ListContainersResponse> {
        self.list_calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.slow_list).await;
        Ok(ListContainersResponse {
            containers: containers(),
        })
    }

    async fn stream_containers(
        &self,
        ctx: Context,
        req: StreamContainersRequest,
    ) -> cri_server::Result<ResponseStream<StreamContainersResponse>> {
        self.stream_calls.fetch_add(1, Ordering::SeqCst);
        if self.streams_unimplemented {
            return Err(cri_server::Error::unimplemented("StreamContainers"));
        }
        let items = self
            .list_containers(ctx, ListContainersRequest { filter: req.filter })
            .await?
            .containers;
        Ok(cri_server::stream::batches(items, 100, |containers| {
            StreamContainersResponse { containers }
        }))
    }

    async fn container_status(
        &self,
        _: Context,
        req: ContainerStatusRequest,
    ) -> cri_server::Result<ContainerStatusResponse> {
        let mut status = ContainerStatus {
            id: req.container_id,
            metadata: Some(ContainerMetadata {
                name: "n".into(),
                attempt: 0,
            }),
            created_at: 1,
            image: Some(ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            image_ref: "sha256:1".into(),
            ..Default::default()
        };
        if self.incomplete_statuses {
            status.image_ref.clear();
        }
        Ok(ContainerStatusResponse {
            status: Some(status),
            ..Default::default()
        })
    }

    async fn pod_sandbox_status(
        &self,
        _: Context,
        req: PodSandboxStatusRequest,
    ) -> cri_server::Result<PodSandboxStatusResponse> {
        let mut status = PodSandboxStatus {
            id: req.pod_sandbox_id,
            metadata: Some(PodSandboxMetadata {
                name: "n".into(),
                namespace: "ns".into(),
                uid: "u".into(),
                attempt: 0,
            }),
            created_at: 1,
            ..Default::default()
        };
        if self.incomplete_statuses {
            status.metadata.as_mut().unwrap().namespace.clear();
        }
        Ok(PodSandboxStatusResponse {
            status: Some(status),
            ..Default::default()
        })
    }
}

#[async_trait]
impl ImageService for Knobs {
    async fn pull_image(
        &self,
        _: Context,
        _: PullImageRequest,
    ) -> cri_server::Result<PullImageResponse> {
        tokio::time::sleep(self.slow_pull).await;
        let image_ref = if self.empty_pull_ref {
            String::new()
        } else {
            "sha256:abc".into()
        };
        Ok(PullImageResponse { image_ref })
    }
}

async fn serve(knobs: Knobs) -> (Arc<Knobs>, cri_testkit::Harness) {
    let knobs = Arc::new(knobs);
    let server = Server::builder().service(knobs.clone()).build().unwrap();
    (knobs, Harness::start(server).await.unwrap())
}

async fn client(h: &Harness) -> cri_client::Builder {
    Client::builder(h.endpoint().expect("a Unix-socket harness"))
}

#[tokio::test]
async fn a_slow_call_hits_the_deadline_but_a_slow_pull_does_not() {
    let (_k, h) = serve(Knobs {
        slow_list: Duration::from_secs(30),
        slow_pull: Duration::from_millis(1500),
        ..Default::default()
    })
    .await;
    let c = client(&h)
        .await
        .timeout(Some(Duration::from_millis(500)))
        .connect()
        .await
        .unwrap();
    let started = Instant::now();
    let err = c.list_containers(None).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::DeadlineExceeded {
                method: "ListContainers",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // PullImage has no deadline: 1.5 s with a 0.5 s timeout still succeeds.
    let image_ref = c.pull_image("busybox", None).await.unwrap();
    assert_eq!(image_ref, "sha256:abc");

    // Per-call override.
    let err = c
        .with_timeout(Some(Duration::from_millis(100)))
        .list_containers(None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DeadlineExceeded { .. }));
}

#[tokio::test]
async fn runtimes_the_kubelet_would_refuse_are_refused() {
    for (bad, expected) in [
        (
            VersionResponse {
                runtime_name: String::new(),
                ..good_version()
            },
            "empty runtime_name",
        ),
        (
            VersionResponse {
                runtime_api_version: "v1alpha2".into(),
                ..good_version()
            },
            "\"v1alpha2\" is not supported",
        ),
    ] {
        let knobs = Arc::new(Knobs {
            version: Some(bad.clone()),
            ..Default::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("cri.sock");
        let bound = Server::builder()
            .service(knobs)
            .build()
            .unwrap()
            .bind(&socket)
            .unwrap();
        let task = tokio::spawn(bound.serve_with_shutdown(std::future::pending()));
        let endpoint = format!("unix://{}", socket.display());
        let err = Client::connect(&endpoint).await.unwrap_err();
        assert!(matches!(err, Error::UnsupportedRuntime(_)), "{err:?}");
        assert!(err.to_string().contains(expected), "{err}");
        // Opting out of the check connects anyway.
        let c = Client::builder(&endpoint)
            .verify_version(false)
            .connect()
            .await
            .unwrap();
        assert_eq!(
            c.runtime_client()
                .version(VersionRequest::default())
                .await
                .unwrap()
                .into_inner(),
            bad
        );
        task.abort();
    }
}

#[tokio::test]
async fn harness_refuses_when_versions_are_bad() {
    let knobs = Arc::new(Knobs {
        version: Some(VersionResponse::default()),
        ..Default::default()
    });
    let server = Server::builder().service(knobs).build().unwrap();
    let err = Harness::start(server).await.unwrap_err();
    assert!(err.to_string().contains("unsupported runtime"), "{err}");
}

#[tokio::test]
async fn statuses_are_verified_like_the_kubelet_does() {
    let (_k, h) = serve(Knobs {
        incomplete_statuses: true,
        empty_pull_ref: true,
        ..Default::default()
    })
    .await;
    let c = &h.client;
    let err = c.container_status("c1", false).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "ContainerStatus: invalid response: status.image_ref is empty"
    );
    let err = c.pod_sandbox_status("p1", false).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "PodSandboxStatus: invalid response: status.metadata.namespace is empty"
    );
    let err = c.pull_image("busybox", None).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "PullImage: invalid response: image_ref is empty"
    );

    let (_k, h) = serve(Knobs::default()).await;
    h.client.container_status("c1", false).await.unwrap();
    h.client.pod_sandbox_status("p1", false).await.unwrap();
}

#[tokio::test]
async fn list_streaming_collects_batches_when_supported() {
    let (k, h) = serve(Knobs::default()).await;
    let c = client(&h)
        .await
        .list_streaming(true)
        .connect()
        .await
        .unwrap();
    let listed = c.list_containers(None).await.unwrap();
    assert_eq!(
        listed,
        containers(),
        "all 600 items across 6 batches, in order"
    );
    assert_eq!(k.stream_calls.load(Ordering::SeqCst), 1);

    // Off by default.
    let plain = client(&h).await.connect().await.unwrap();
    plain.list_containers(None).await.unwrap();
    assert_eq!(k.stream_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unimplemented_streams_fall_back_to_unary_for_good() {
    let (k, h) = serve(Knobs {
        streams_unimplemented: true,
        ..Default::default()
    })
    .await;
    let c = client(&h)
        .await
        .list_streaming(true)
        .connect()
        .await
        .unwrap();
    let clone = c.clone();
    assert_eq!(c.list_containers(None).await.unwrap().len(), 600);
    assert_eq!(clone.list_containers(None).await.unwrap().len(), 600);
    assert_eq!(c.list_containers(None).await.unwrap().len(), 600);
    assert_eq!(
        k.stream_calls.load(Ordering::SeqCst),
        1,
        "streams tried once, then never again"
    );
    assert_eq!(k.list_calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn unimplemented_at_first_receive_also_falls_back() {
    // A stream that fails on its first message (as grpc-go servers report Unimplemented).
    struct LateFailure;
    #[async_trait]
    impl RuntimeService for LateFailure {
        async fn version(
            &self,
            _: Context,
            _: VersionRequest,
        ) -> cri_server::Result<VersionResponse> {
            Ok(good_version())
        }
        async fn list_pod_sandbox(
            &self,
            _: Context,
            _: ListPodSandboxRequest,
        ) -> cri_server::Result<ListPodSandboxResponse> {
            Ok(ListPodSandboxResponse {
                items: vec![PodSandbox {
                    id: "p".into(),
                    ..Default::default()
                }],
            })
        }
        async fn stream_pod_sandboxes(
            &self,
            _: Context,
            _: StreamPodSandboxesRequest,
        ) -> cri_server::Result<ResponseStream<StreamPodSandboxesResponse>> {
            Ok(Box::pin(futures_util::stream::once(async {
                Err(cri_server::Error::unimplemented("StreamPodSandboxes"))
            })))
        }
    }
    let server = Server::builder().runtime(LateFailure).build().unwrap();
    let h = Harness::start(server).await.unwrap();
    let c = client(&h)
        .await
        .list_streaming(true)
        .connect()
        .await
        .unwrap();
    let pods = c.list_pod_sandbox(None).await.unwrap();
    assert_eq!(pods.len(), 1);
}

#[tokio::test]
async fn events_stream_and_reconnect_pattern() {
    let fake = FakeRuntime::builder().image("busybox").build();
    let h = Harness::fake(fake.clone()).await.unwrap();
    let mut events = h.client.events().await.unwrap();
    let pod_id = h
        .client
        .run_pod_sandbox(
            PodSandboxConfig {
                metadata: Some(PodSandboxMetadata {
                    name: "e".into(),
                    namespace: "n".into(),
                    uid: "u".into(),
                    attempt: 0,
                }),
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
        ..Default::default()
    };
    let id = h
        .client
        .create_container(&pod_id, config, None)
        .await
        .unwrap();
    let event = events.next().await.unwrap().unwrap();
    assert_eq!(
        (event.container_id.as_str(), event.container_event_type()),
        (id.as_str(), ContainerEventType::ContainerCreatedEvent)
    );

    // When the runtime cuts a lagging subscriber off, the stream says so and a new
    // subscription works: the documented reconnect pattern.
    for _ in 0..2000 {
        fake.events().publish(ContainerEventResponse {
            container_id: "flood".into(),
            ..Default::default()
        });
    }
    let mut saw_error = false;
    while let Some(item) = events.next().await {
        if let Err(err) = item {
            assert_eq!(err.code(), Some(tonic::Code::ResourceExhausted));
            saw_error = true;
            break;
        }
    }
    assert!(saw_error);
    let mut resubscribed = h.client.events().await.unwrap();
    h.client.start_container(&id).await.unwrap();
    let event = resubscribed.next().await.unwrap().unwrap();
    assert_eq!(
        event.container_event_type(),
        ContainerEventType::ContainerStartedEvent
    );
}

#[tokio::test]
async fn typed_and_full_request_forms_and_raw_escape_hatch() {
    let fake = FakeRuntime::builder().image("busybox").build();
    let h = Harness::fake(fake.clone()).await.unwrap();
    let c = &h.client;
    // Full request form through `call`.
    let response = c.call(StatusRequest { verbose: true }).await.unwrap();
    assert!(response.status.is_some());
    // Raw generated client.
    let raw = c
        .runtime_client()
        .version(VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(raw.runtime_api_version, "v1");
    // Unimplemented keeps its code.
    let err = c
        .call(CheckpointContainerRequest {
            container_id: "c".into(),
            location: "/tmp/x".into(),
            timeout: 0,
        })
        .await
        .unwrap_err();
    assert!(err.is_unimplemented());
    assert_eq!(fake.call_count("Status"), 1);
}

#[tokio::test]
async fn endpoints_are_validated_and_unreachable_sockets_fail_fast() {
    let err = Client::connect("tcp://127.0.0.1:1").await.unwrap_err();
    assert!(matches!(err, Error::InvalidEndpoint { .. }));
    let err = Client::builder("unix:///nonexistent/cri.sock")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn separate_image_endpoint() {
    let runtime = Harness::fake(FakeRuntime::builder().name("runtime-side", "1").build())
        .await
        .unwrap();
    let images = Harness::fake(FakeRuntime::builder().image("busybox").build())
        .await
        .unwrap();
    let c = Client::builder(runtime.endpoint().unwrap())
        .image_endpoint(images.endpoint().unwrap())
        .connect()
        .await
        .unwrap();
    assert_eq!(c.version().await.unwrap().runtime_name, "runtime-side");
    assert_eq!(
        c.list_images(None).await.unwrap().len(),
        1,
        "images come from the other endpoint"
    );
}
