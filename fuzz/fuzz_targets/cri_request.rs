//! CRI calls as any local client could send them, through the real server stack in process
//! (the `Routes` tower service: tonic's generated services, prost decoding, validation,
//! the adapter and the fake runtime), no socket. The input is a sequence of up to eight
//! calls, each `[method][u16 length][protobuf bytes]`; they go to one fresh `FakeRuntime`
//! (deterministic ids, so a create can be followed by a start of the same id). No call may
//! panic (a panic aborts, even when the server would catch it), and none may answer
//! `Internal` because the runtime panicked.
#![no_main]

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;
use tower_service::Service;

static RUNTIME: LazyLock<Runtime> = LazyLock::new(cri_fuzz::paused_runtime);

const METHODS: &[&str] = &[
    "/runtime.v1.RuntimeService/Version",
    "/runtime.v1.RuntimeService/RunPodSandbox",
    "/runtime.v1.RuntimeService/StopPodSandbox",
    "/runtime.v1.RuntimeService/RemovePodSandbox",
    "/runtime.v1.RuntimeService/PodSandboxStatus",
    "/runtime.v1.RuntimeService/ListPodSandbox",
    "/runtime.v1.RuntimeService/CreateContainer",
    "/runtime.v1.RuntimeService/StartContainer",
    "/runtime.v1.RuntimeService/StopContainer",
    "/runtime.v1.RuntimeService/RemoveContainer",
    "/runtime.v1.RuntimeService/ListContainers",
    "/runtime.v1.RuntimeService/ContainerStatus",
    "/runtime.v1.RuntimeService/UpdateContainerResources",
    "/runtime.v1.RuntimeService/ReopenContainerLog",
    "/runtime.v1.RuntimeService/ExecSync",
    "/runtime.v1.RuntimeService/Exec",
    "/runtime.v1.RuntimeService/Attach",
    "/runtime.v1.RuntimeService/PortForward",
    "/runtime.v1.RuntimeService/ContainerStats",
    "/runtime.v1.RuntimeService/ListContainerStats",
    "/runtime.v1.RuntimeService/PodSandboxStats",
    "/runtime.v1.RuntimeService/ListPodSandboxStats",
    "/runtime.v1.RuntimeService/UpdateRuntimeConfig",
    "/runtime.v1.RuntimeService/Status",
    "/runtime.v1.RuntimeService/CheckpointContainer",
    "/runtime.v1.RuntimeService/GetContainerEvents",
    "/runtime.v1.RuntimeService/ListMetricDescriptors",
    "/runtime.v1.RuntimeService/ListPodSandboxMetrics",
    "/runtime.v1.RuntimeService/RuntimeConfig",
    "/runtime.v1.RuntimeService/UpdatePodSandboxResources",
    "/runtime.v1.RuntimeService/StreamPodSandboxes",
    "/runtime.v1.RuntimeService/StreamContainers",
    "/runtime.v1.RuntimeService/StreamContainerStats",
    "/runtime.v1.RuntimeService/StreamPodSandboxStats",
    "/runtime.v1.RuntimeService/StreamPodSandboxMetrics",
    "/runtime.v1.RuntimeService/CheckpointPod",
    "/runtime.v1.RuntimeService/RestorePod",
    "/runtime.v1.ImageService/ListImages",
    "/runtime.v1.ImageService/ImageStatus",
    "/runtime.v1.ImageService/PullImage",
    "/runtime.v1.ImageService/RemoveImage",
    "/runtime.v1.ImageService/ImageFsInfo",
    "/runtime.v1.ImageService/StreamImages",
];

fn check_status(headers: &http::HeaderMap) {
    if headers.get("grpc-status").map(|v| v.as_bytes()) == Some(b"13") {
        let message = headers
            .get("grpc-message")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        assert!(!message.contains("panicked"), "Internal: {message}");
    }
}

fuzz_target!(|data: &[u8]| {
    RUNTIME.block_on(async {
        let fake = cri_testkit::FakeRuntime::builder()
            .deterministic_ids()
            .image("busybox")
            .build();
        let server = cri_server::Server::builder()
            .service(Arc::new(fake))
            .build()
            .expect("server");
        let mut routes = server.into_routes();
        let mut rest = data;
        let mut calls = 0;
        while rest.len() >= 3 && calls < 8 {
            calls += 1;
            let method = METHODS[usize::from(rest[0]) % METHODS.len()];
            let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
            let payload = &rest[3..3 + len];
            rest = &rest[3 + len..];
            let mut body = Vec::with_capacity(5 + len);
            body.push(0);
            body.extend_from_slice(&(len as u32).to_be_bytes());
            body.extend_from_slice(payload);
            let request = http::Request::builder()
                .method("POST")
                .uri(format!("http://localhost{method}"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(Full::new(Bytes::from(body)))
                .expect("request");
            let response = match routes.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            check_status(response.headers());
            let mut body = response.into_body();
            // Streaming answers may never end: read a few frames at most.
            for _ in 0..4 {
                match tokio::time::timeout(Duration::from_secs(1), body.frame()).await {
                    Ok(Some(Ok(frame))) => {
                        if let Some(trailers) = frame.trailers_ref() {
                            check_status(trailers);
                        }
                    }
                    _ => break,
                }
            }
        }
    });
});
