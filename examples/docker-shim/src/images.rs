//! CRI's `ImageService` through the engine's image API. Docker shortens names of Docker
//! Hub images (`busybox:1.35`); the shim answers with the full names CRI clients expect
//! (`docker.io/library/busybox:1.35`).

use std::collections::HashMap;

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use bollard::models::ImageInspect;
use bollard::query_parameters::{
    CreateImageOptions, ListContainersOptions, ListImagesOptions, RemoveImageOptions,
};
use cri_api::v1::*;
use cri_server::{Context, Error, ImageService, Result, async_trait};
use futures_util::StreamExt;

use crate::error;
use crate::labels;
use crate::runtime::Runtime;

/// A Docker image name in its full form: `busybox:1` → `docker.io/library/busybox:1`,
/// `me/app` → `docker.io/me/app`; names with a registry host stay as they are.
pub(crate) fn full_name(name: &str) -> String {
    let (first, _) = name.split_once('/').unwrap_or(("", name));
    let has_host =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_host {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    }
}

/// `(repository, tag)` for a pull: the tag `latest` when the name has neither a tag nor a
/// digest (Docker would otherwise pull every tag).
fn pull_parts(name: &str) -> (String, String) {
    if name.contains('@') {
        return (name.to_string(), String::new());
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.rsplit_once(':') {
        Some((_, tag)) => {
            let repository = &name[..name.len() - tag.len() - 1];
            (repository.to_string(), tag.to_string())
        }
        None => (name.to_string(), "latest".to_string()),
    }
}

fn credentials(auth: AuthConfig) -> Result<DockerCredentials> {
    let (mut username, mut password) = (auth.username, auth.password);
    if !auth.auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.auth.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| Error::invalid_argument("auth.auth is not base64 of user:password"))?;
        let (u, p) = decoded
            .split_once(':')
            .ok_or_else(|| Error::invalid_argument("auth.auth is not base64 of user:password"))?;
        username = u.to_string();
        password = p.to_string();
    }
    let some = |s: String| (!s.is_empty()).then_some(s);
    Ok(DockerCredentials {
        username: some(username),
        password: some(password),
        serveraddress: some(auth.server_address),
        identitytoken: some(auth.identity_token),
        registrytoken: some(auth.registry_token),
        ..Default::default()
    })
}

/// A CRI image from Docker's inspect.
fn to_cri(image: &ImageInspect) -> Image {
    let user = image
        .config
        .as_ref()
        .and_then(|c| c.user.clone())
        .unwrap_or_default();
    let name = user.split(':').next().unwrap_or("");
    let (uid, username) = match name.parse::<i64>() {
        Ok(uid) => (Some(Int64Value { value: uid }), String::new()),
        Err(_) => (None, name.to_string()),
    };
    Image {
        id: image.id.clone().unwrap_or_default(),
        repo_tags: image
            .repo_tags
            .iter()
            .flatten()
            .map(|t| full_name(t))
            .collect(),
        repo_digests: image
            .repo_digests
            .iter()
            .flatten()
            .map(|t| full_name(t))
            .collect(),
        size: u64::try_from(image.size.unwrap_or(0)).unwrap_or(0),
        uid,
        username,
        spec: None,
        pinned: false,
    }
}

impl Runtime {
    /// Inspects image `name`; `None` when Docker does not have it.
    pub(crate) async fn find_image(&self, name: &str) -> Result<Option<ImageInspect>> {
        if name.is_empty() {
            return Ok(None);
        }
        match self.docker.inspect_image(name).await {
            Ok(image) => Ok(Some(image)),
            Err(e) if error::is_not_found(&e) => Ok(None),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 400, ..
            }) => Ok(None),
            Err(e) => Err(error::docker(&format!("inspecting image {name}"), e)),
        }
    }

    /// Pulls `name` (with `auth`); returns the image id.
    pub(crate) async fn pull(&self, name: &str, auth: Option<AuthConfig>) -> Result<String> {
        if name.is_empty() {
            return Err(Error::invalid_argument("image.image must not be empty"));
        }
        let (repository, tag) = pull_parts(name);
        let credentials = auth.map(credentials).transpose()?;
        let mut stream = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(repository),
                tag: (!tag.is_empty()).then_some(tag),
                ..Default::default()
            }),
            None,
            credentials,
        );
        while let Some(progress) = stream.next().await {
            match progress {
                Ok(info) => {
                    if let Some(e) = info.error_detail.and_then(|d| d.message) {
                        return Err(Error::internal(format!("pulling {name}: {e}")));
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(pull_error(name, &error));
                }
                Err(e) => return Err(error::docker(&format!("pulling {name}"), e)),
            }
        }
        let image = self.find_image(name).await?.ok_or_else(|| {
            Error::internal(format!("pulled {name}, but Docker does not have it"))
        })?;
        Ok(image.id.unwrap_or_default())
    }
}

/// A pull failure Docker reported in its progress stream.
fn pull_error(name: &str, message: &str) -> Error {
    let lower = message.to_lowercase();
    if lower.contains("unauthorized") || lower.contains("authentication required") {
        Error::PermissionDenied(format!("pulling {name}: {message}"))
    } else if lower.contains("not found") || lower.contains("manifest unknown") {
        Error::not_found(format!("pulling {name}: {message}"))
    } else {
        Error::internal(format!("pulling {name}: {message}"))
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
            Some(name) => self.find_image(&name).await?.iter().map(to_cri).collect(),
            None => {
                let summaries = self
                    .docker
                    .list_images(Some(ListImagesOptions::default()))
                    .await
                    .map_err(|e| error::docker("listing images", e))?;
                let mut images = Vec::new();
                for summary in summaries {
                    if let Some(image) = self.find_image(&summary.id).await? {
                        images.push(to_cri(&image));
                    }
                }
                images
            }
        };
        Ok(ListImagesResponse { images })
    }

    async fn image_status(
        &self,
        _ctx: Context,
        req: ImageStatusRequest,
    ) -> Result<ImageStatusResponse> {
        let name = req.image.map(|i| i.image).unwrap_or_default();
        let Some(image) = self.find_image(&name).await? else {
            return Ok(ImageStatusResponse::default());
        };
        let mut info = HashMap::new();
        if req.verbose {
            let config = image
                .config
                .as_ref()
                .map(|c| serde_json::to_value(c).unwrap_or_default())
                .unwrap_or_default();
            info.insert(
                "info".to_string(),
                serde_json::json!({ "imageSpec": { "config": config } }).to_string(),
            );
        }
        Ok(ImageStatusResponse {
            image: Some(to_cri(&image)),
            info,
        })
    }

    async fn pull_image(&self, _ctx: Context, req: PullImageRequest) -> Result<PullImageResponse> {
        let name = req.image.map(|i| i.image).unwrap_or_default();
        let image_ref = self.pull(&name, req.auth).await?;
        tracing::info!(image = %name, id = %image_ref, "pulled");
        Ok(PullImageResponse { image_ref })
    }

    async fn remove_image(
        &self,
        _ctx: Context,
        req: RemoveImageRequest,
    ) -> Result<RemoveImageResponse> {
        let name = req.image.map(|i| i.image).unwrap_or_default();
        let Some(image) = self.find_image(&name).await? else {
            return Ok(RemoveImageResponse {});
        };
        let id = image.id.clone().unwrap_or_default();
        // Every tag, then the id: the image goes, whatever name it was given by.
        let mut names: Vec<String> = image.repo_tags.clone().unwrap_or_default();
        names.push(id.clone());
        for name in names {
            match self
                .docker
                .remove_image(&name, None::<RemoveImageOptions>, None)
                .await
            {
                Ok(_) => {}
                Err(e) if error::is_not_found(&e) => {}
                Err(e) => return Err(error::docker(&format!("removing image {name}"), e)),
            }
        }
        Ok(RemoveImageResponse {})
    }

    async fn image_fs_info(
        &self,
        _ctx: Context,
        _req: ImageFsInfoRequest,
    ) -> Result<ImageFsInfoResponse> {
        let now = labels::now_nanos();
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| error::docker("asking Docker Engine for its info", e))?;
        let root = info.docker_root_dir.unwrap_or_default();
        let driver = info.driver.unwrap_or_default();
        let images = self
            .docker
            .list_images(Some(ListImagesOptions::default()))
            .await
            .map_err(|e| error::docker("listing images", e))?;
        let image_bytes: i64 = images.iter().map(|i| i.size.max(0)).sum();
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                size: true,
                ..Default::default()
            }))
            .await
            .map_err(|e| error::docker("listing containers", e))?;
        let container_bytes: i64 = containers
            .iter()
            .map(|c| c.size_rw.unwrap_or(0).max(0))
            .sum();
        let usage = |mountpoint: String, bytes: i64| FilesystemUsage {
            timestamp: now,
            fs_id: Some(FilesystemIdentifier { mountpoint }),
            used_bytes: Some(UInt64Value {
                value: u64::try_from(bytes).unwrap_or(0),
            }),
            inodes_used: None,
        };
        Ok(ImageFsInfoResponse {
            image_filesystems: vec![usage(format!("{root}/{driver}"), image_bytes)],
            container_filesystems: vec![usage(format!("{root}/containers"), container_bytes)],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_given_in_full() {
        assert_eq!(full_name("busybox:1.35"), "docker.io/library/busybox:1.35");
        assert_eq!(full_name("me/app:1"), "docker.io/me/app:1");
        assert_eq!(
            full_name("registry.k8s.io/pause:3.10"),
            "registry.k8s.io/pause:3.10"
        );
        assert_eq!(full_name("localhost/x:1"), "localhost/x:1");
        assert_eq!(full_name("127.0.0.1:5000/x:1"), "127.0.0.1:5000/x:1");
        assert_eq!(
            full_name("busybox@sha256:abc"),
            "docker.io/library/busybox@sha256:abc"
        );
    }

    #[test]
    fn pulls_name_a_tag() {
        assert_eq!(pull_parts("busybox"), ("busybox".into(), "latest".into()));
        assert_eq!(pull_parts("busybox:1"), ("busybox".into(), "1".into()));
        assert_eq!(
            pull_parts("127.0.0.1:5000/x"),
            ("127.0.0.1:5000/x".into(), "latest".into())
        );
        assert_eq!(
            pull_parts("a@sha256:00"),
            ("a@sha256:00".into(), String::new())
        );
    }

    #[test]
    fn auth_is_decoded() {
        let creds = credentials(AuthConfig {
            auth: base64::engine::general_purpose::STANDARD.encode("u:p"),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(creds.username.as_deref(), Some("u"));
        assert_eq!(creds.password.as_deref(), Some("p"));
        assert!(
            credentials(AuthConfig {
                auth: "!!".into(),
                ..Default::default()
            })
            .is_err()
        );
    }
}
