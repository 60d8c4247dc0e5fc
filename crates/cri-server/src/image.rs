//! The trait a container runtime implements to serve CRI's `ImageService`.

use async_trait::async_trait;
use cri_api::v1::*;

use crate::stream::{BATCH_SIZE, ResponseStream, batches};
use crate::{Context, Error, Result};

/// CRI's `ImageService`: listing, inspecting, pulling and removing images.
///
/// Every method answers `Unimplemented` by default; `stream_images` is derived from
/// `list_images`. One type may implement both this trait and
/// [`RuntimeService`](crate::RuntimeService).
///
/// ```
/// use cri_server::{Context, ImageService, Result, async_trait};
/// use cri_server::cri_api::v1::{ImageStatusRequest, ImageStatusResponse};
///
/// struct NoImages;
///
/// #[async_trait]
/// impl ImageService for NoImages {
///     async fn image_status(&self, _: Context, _: ImageStatusRequest) -> Result<ImageStatusResponse> {
///         // A missing image is a success with `image` unset, never NotFound.
///         Ok(ImageStatusResponse::default())
///     }
/// }
/// ```
#[async_trait]
pub trait ImageService: Send + Sync + 'static {
    /// All images matching the optional filter (by image reference).
    async fn list_images(
        &self,
        ctx: Context,
        req: ListImagesRequest,
    ) -> Result<ListImagesResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("ListImages"))
    }

    /// Streaming form of [`list_images`](Self::list_images), derived by default.
    async fn stream_images(
        &self,
        ctx: Context,
        req: StreamImagesRequest,
    ) -> Result<ResponseStream<StreamImagesResponse>> {
        let list = ListImagesRequest { filter: req.filter };
        let items = self.list_images(ctx, list).await?.images;
        Ok(batches(items, BATCH_SIZE, |images| StreamImagesResponse {
            images,
        }))
    }

    /// Status of one image, by tag, id or digest (`image.image` is guaranteed non-empty).
    /// A missing image is **not** an error: succeed with `image` unset.
    async fn image_status(
        &self,
        ctx: Context,
        req: ImageStatusRequest,
    ) -> Result<ImageStatusResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("ImageStatus"))
    }

    /// Pulls an image with optional credentials and returns its reference (`image_ref`, must
    /// be non-empty). Registry failures should use
    /// [`Error::RegistryUnavailable`](crate::Error::RegistryUnavailable). Clients give pulls
    /// no deadline.
    async fn pull_image(&self, ctx: Context, req: PullImageRequest) -> Result<PullImageResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("PullImage"))
    }

    /// Removes an image. Idempotent: removing a missing image succeeds.
    async fn remove_image(
        &self,
        ctx: Context,
        req: RemoveImageRequest,
    ) -> Result<RemoveImageResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("RemoveImage"))
    }

    /// Usage of the filesystems that hold images and container layers.
    async fn image_fs_info(
        &self,
        ctx: Context,
        req: ImageFsInfoRequest,
    ) -> Result<ImageFsInfoResponse> {
        let _ = (ctx, req);
        Err(Error::unimplemented("ImageFsInfo"))
    }
}
