//! The tower service that answers every CRI call: uid allowlist, dispatch to the two
//! generated services, and the gRPC code for oversized messages.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use cri_api::v1::image_service_server::ImageServiceServer;
use cri_api::v1::runtime_service_server::RuntimeServiceServer;
use tonic::body::Body;
use tonic::{Code, Status};
use tower_service::Service;

use crate::PeerCredentials;
use crate::error::BoxError;
use crate::service::{ImageAdapter, RuntimeAdapter};

const RUNTIME_PREFIX: &str = "/runtime.v1.RuntimeService/";
const IMAGE_PREFIX: &str = "/runtime.v1.ImageService/";

/// Every CRI call of a server, as one cloneable tower service over `http` requests.
///
/// This is what [`Server`](crate::Server) serves; get it with
/// [`Server::into_routes`](crate::Server::into_routes) to mount CRI inside another hyper or
/// tonic setup. Calls for a service the server was built without, or for unknown paths,
/// answer `Unimplemented`.
#[derive(Clone)]
pub struct Routes {
    runtime: Option<RuntimeServiceServer<RuntimeAdapter>>,
    image: Option<ImageServiceServer<ImageAdapter>>,
    allowed_uids: Option<Arc<[u32]>>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("runtime", &self.runtime.is_some())
            .field("image", &self.image.is_some())
            .field("allowed_uids", &self.allowed_uids)
            .finish()
    }
}

impl Routes {
    pub(crate) fn new(
        runtime: Option<RuntimeServiceServer<RuntimeAdapter>>,
        image: Option<ImageServiceServer<ImageAdapter>>,
        allowed_uids: Option<Arc<[u32]>>,
    ) -> Self {
        Self {
            runtime,
            image,
            allowed_uids,
        }
    }

    fn denied(&self, peer: Option<&PeerCredentials>) -> Option<Status> {
        let allowed = self.allowed_uids.as_ref()?;
        match peer {
            Some(peer) if allowed.contains(&peer.uid) => None,
            Some(peer) => Some(Status::permission_denied(format!(
                "uid {} is not allowed to use this CRI socket",
                peer.uid
            ))),
            None => Some(Status::permission_denied(
                "the caller's uid is unknown and an allowlist is configured",
            )),
        }
    }
}

/// The future of a [`Routes`] call.
pub type RoutesFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send + 'static>>;

impl<B> Service<http::Request<B>> for Routes
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = RoutesFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if let Some(status) = self.denied(request.extensions().get::<PeerCredentials>()) {
            return answer(status);
        }
        let path = request.uri().path();
        if path.starts_with(RUNTIME_PREFIX) {
            if let Some(runtime) = &mut self.runtime {
                let call = runtime.call(request);
                return Box::pin(async move { call.await.map(oversize_is_resource_exhausted) });
            }
        } else if path.starts_with(IMAGE_PREFIX)
            && let Some(image) = &mut self.image
        {
            let call = image.call(request);
            return Box::pin(async move { call.await.map(oversize_is_resource_exhausted) });
        }
        let status = Status::unimplemented(format!("this server does not serve {path}"));
        answer(status)
    }
}

fn answer(status: Status) -> RoutesFuture {
    let response: Ready<Result<_, Infallible>> = ready(Ok(status.into_http()));
    Box::pin(response)
}

/// tonic reports a request larger than the message limit as `OUT_OF_RANGE`; gRPC's other
/// implementations, and so the kubelet, use `RESOURCE_EXHAUSTED`. Only that exact
/// trailers-only answer is changed.
fn oversize_is_resource_exhausted(response: http::Response<Body>) -> http::Response<Body> {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    if status.code() == Code::OutOfRange && status.message().contains("message length too large") {
        return Status::resource_exhausted(status.message().to_string()).into_http();
    }
    response
}
