//! Images: references, registry pulls, the content store, layer unpacking and container
//! root filesystems.
//!
//! - [`Reference`] parses and normalises image names as the kubelet does.
//! - [`Store`] keeps images on disk, content-addressed: [`Store::pull`] fetches from a
//!   registry (via mirrors and plain-HTTP endpoints of a [`RegistryConfig`]),
//!   [`Store::import_archive`] reads OCI layout tars, [`Store::get`], [`Store::list`] and
//!   [`Store::remove`] serve the CRI image service, [`Store::usage`] its `ImageFsInfo`, and
//!   [`Store::prepare_rootfs`] makes a container's root filesystem.
//! - [`Image::to_cri`] is the CRI view of a stored image.
//!
//! # Pulls
//!
//! Endpoints are tried in order (mirrors, then the registry); the first that serves the image
//! wins. Credentials come from the CRI `AuthConfig`: `registry_token` (sent as a Bearer token),
//! `identity_token` (an OAuth2 refresh token, traded for an access token at the registry's
//! token realm), `username`/`password`, or `auth` (base64 `user:pass`); none means anonymous.
//! They go to the image's own registry, and to a mirror only when `server_address` names it.
//! An index picks the manifest of [`RegistryConfig::platform`]. Every blob is checked against
//! its digest and size, every layer's uncompressed content against the config's diff id,
//! before it is renamed into the store; the image is recorded only when all its blobs are in.
//! Concurrent pulls of the same content download each blob once.
//!
//! Failures map onto [`Error`](crate::Error) so the kubelet sees what it expects:
//!
//! | what happened | error |
//! |---|---|
//! | connection refused, DNS, timeout, HTTP 5xx/429 | [`RegistryUnavailable`](crate::Error::RegistryUnavailable) (kubelet reason prefix) |
//! | HTTP 401/403, refused token | [`Unauthorized`](crate::Error::Unauthorized) |
//! | HTTP 404, unknown manifest/name, no manifest for the platform | [`NotInRegistry`](crate::Error::NotInRegistry) |
//! | content not matching its digest, size or diff id; malformed JSON; a manifest or config over 8 MiB | [`Corrupt`](crate::Error::Corrupt) |
//! | declared blob sizes, or a layer's uncompressed size, over [`UnpackLimits::max_bytes`] | [`LimitExceeded`](crate::Error::LimitExceeded) (`ResourceExhausted`) |
//! | schema 1 manifests, zstd layers, non-image artifacts | [`Unsupported`](crate::Error::Unsupported) |
//!
//! # Hostile images
//!
//! Layer entries stay inside the root filesystem: absolute names, `..` and symlinks climbing
//! out of it (followed as the container would see them, chains included) are
//! [`Corrupt`](crate::Error::Corrupt); hard links only reach files of the same root; an entry
//! replaces whatever was at its path rather than writing through it. What one pull, import
//! or rootfs may write is bounded by the store's [`UnpackLimits`] (bytes, tar entries, and
//! what device nodes become), set with [`Store::open_with_limits`]. A refused rootfs or
//! layer is removed; a refused pull stores no layer. `docs/reliability.md` lists every attack
//! with its test.
//!
//! # Sizes and digests
//!
//! [`Image::size`] is the config plus the compressed layers, as stored (the manifest and index
//! are not counted). Pulled images have a repo digest `name@<digest the reference resolved
//! to>` (the index digest for multi-platform images, as containerd reports). Imported images
//! have one when the archive names them (`name@<index.json entry digest>`).

mod archive;
mod config;
mod cri;
mod fsutil;
/// Internal: entry points for the fuzz targets (`fuzz/`), no stability promise.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod manifest;
mod pull;
mod reference;
mod rootfs;
mod store;
mod unpack;

pub use config::{Endpoint, Platform, RegistryConfig};
pub use reference::{DEFAULT_REGISTRY, DEFAULT_TAG, Reference};
pub use rootfs::{Rootfs, RootfsKind, RootfsMode, cleanup_rootfs};
pub use store::{GcStats, Store, Usage};
pub use unpack::{DeviceNodes, UnpackLimits};

/// A stored image.
#[derive(Clone, Debug)]
pub struct Image {
    /// `sha256:<hex of the config blob's digest>`.
    pub id: String,
    /// Normalised tag references, e.g. `docker.io/library/busybox:1.36`.
    pub repo_tags: Vec<String>,
    /// Digest references, e.g. `docker.io/library/busybox@sha256:...`.
    pub repo_digests: Vec<String>,
    /// Bytes: the config blob plus the compressed layers.
    pub size: u64,
    /// The image configuration (entrypoint, env, user, working dir, ...).
    pub config: oci_spec::image::ImageConfiguration,
    /// The layers' diff ids (digests of the uncompressed tars), base layer first.
    pub layers: Vec<String>,
}
