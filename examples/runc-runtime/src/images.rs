//! CRI's `ImageService` on the image store.

use std::collections::HashMap;

use cri_api::v1::*;
use cri_server::{Context, Error, ImageService, Result, async_trait};

use crate::error;
use crate::monitor::protocol::now_nanos;
use crate::runtime::Runtime;

impl Runtime {
    /// Whether a pod or container (live or exited, not yet removed) uses image `id`.
    fn image_in_use(&self, id: &str) -> bool {
        self.all_containers()
            .iter()
            .any(|c| c.record().image_id == id)
            || self.all_pods().iter().any(|p| p.record().pause_image == id)
    }
}

#[async_trait]
impl ImageService for Runtime {
    async fn list_images(
        &self,
        _ctx: Context,
        req: ListImagesRequest,
    ) -> Result<ListImagesResponse> {
        let wanted = req
            .filter
            .and_then(|f| f.image)
            .map(|spec| spec.image)
            .filter(|image| !image.is_empty());
        let images = match wanted {
            // A filter names one image, by any of the names ImageStatus takes.
            Some(name) => match self.images.get(&name) {
                Ok(image) => vec![image.to_cri()],
                Err(cri_oci::Error::ImageNotFound(_) | cri_oci::Error::InvalidReference { .. }) => {
                    Vec::new()
                }
                Err(e) => return Err(error::oci(e)),
            },
            None => self.images.list().iter().map(|i| i.to_cri()).collect(),
        };
        Ok(ListImagesResponse { images })
    }

    async fn image_status(
        &self,
        _ctx: Context,
        req: ImageStatusRequest,
    ) -> Result<ImageStatusResponse> {
        let name = req.image.map(|i| i.image).unwrap_or_default();
        let image = match self.images.get(&name) {
            Ok(image) => image,
            // Missing is not an error for ImageStatus, and neither is a name that cannot
            // exist.
            Err(cri_oci::Error::ImageNotFound(_) | cri_oci::Error::InvalidReference { .. }) => {
                return Ok(ImageStatusResponse::default());
            }
            Err(e) => return Err(error::oci(e)),
        };
        let mut info = HashMap::new();
        if req.verbose {
            let config = serde_json::to_string(&image.config).unwrap_or_default();
            info.insert("info".to_string(), format!("{{\"imageSpec\":{config}}}"));
        }
        Ok(ImageStatusResponse {
            image: Some(image.to_cri()),
            info,
        })
    }

    async fn pull_image(&self, _ctx: Context, req: PullImageRequest) -> Result<PullImageResponse> {
        let name = req.image.map(|i| i.image).unwrap_or_default();
        let image = self.pull(&name, req.auth).await?;
        tracing::info!(image = %name, id = %image.id, "pulled");
        Ok(PullImageResponse {
            image_ref: image.id,
        })
    }

    async fn remove_image(
        &self,
        _ctx: Context,
        req: RemoveImageRequest,
    ) -> Result<RemoveImageResponse> {
        let name = req.image.map(|i| i.image).unwrap_or_default();
        let image = match self.images.get(&name) {
            Ok(image) => image,
            Err(cri_oci::Error::ImageNotFound(_) | cri_oci::Error::InvalidReference { .. }) => {
                return Ok(RemoveImageResponse {});
            }
            Err(e) => return Err(error::oci(e)),
        };
        if self.image_in_use(&image.id) {
            return Err(Error::failed_precondition(format!(
                "image {name:?} ({}) is used by a container or pod; remove them first",
                image.id
            )));
        }
        match self.images.remove(&image.id) {
            Ok(()) | Err(cri_oci::Error::ImageNotFound(_)) => Ok(RemoveImageResponse {}),
            Err(e) => Err(error::oci(e)),
        }
    }

    async fn image_fs_info(
        &self,
        _ctx: Context,
        _req: ImageFsInfoRequest,
    ) -> Result<ImageFsInfoResponse> {
        let images = self.images.clone();
        let usage = tokio::task::spawn_blocking(move || images.usage())
            .await
            .map_err(|e| Error::internal(format!("measuring the image store: {e}")))?
            .map_err(error::oci)?;
        let now = now_nanos();
        let containers_dir = self.config.root.join("containers");
        let (bytes, inodes) =
            tokio::task::spawn_blocking(move || crate::runtime::disk_usage(&containers_dir))
                .await
                .unwrap_or((0, 0));
        Ok(ImageFsInfoResponse {
            image_filesystems: vec![usage.to_cri(now)],
            container_filesystems: vec![FilesystemUsage {
                timestamp: now,
                fs_id: Some(FilesystemIdentifier {
                    mountpoint: self.config.root.join("containers").display().to_string(),
                }),
                used_bytes: Some(UInt64Value { value: bytes }),
                inodes_used: Some(UInt64Value { value: inodes }),
            }],
        })
    }
}
