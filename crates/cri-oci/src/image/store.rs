//! The content-addressed image store on disk.
//!
//! ```text
//! <root>/index.json            the images: id, manifest, config, layers, tags, digests
//! <root>/blobs/sha256/<hex>     every manifest, index, config and layer blob, verified
//! <root>/layers/<diff id hex>   layers unpacked once, in overlay form (overlay rootfs only)
//! <root>/rootfs/<hash>.json     overlay rootfs built from the layers above (kept by the GC)
//! <root>/tmp/                   downloads and unpacks in progress (cleared by `open`)
//! ```
//!
//! Blobs and layer directories appear only by `rename` after they were verified, and
//! `index.json` is rewritten atomically after the blobs it names are in place, so a crash or a
//! failed pull leaves nothing half-visible: at worst unreferenced blobs that the next garbage
//! collection removes. One process owns a root at a time; inside it the store is safe to share
//! (`Clone` shares one handle).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

use super::fsutil::{self, create_dir_all, read_dir_names, remove_tree, write_atomic};
use super::manifest::Descriptor;
use super::reference::Reference;
use super::rootfs::{self, Rootfs, RootfsMode};
use super::unpack::UnpackLimits;
use super::{Image, RegistryConfig};
use crate::{Error, Result};

/// The version of `index.json`'s layout this code writes and reads.
const INDEX_VERSION: u32 = 1;

/// A content-addressed image store on disk: pulls, imports, lookups, removal with garbage
/// collection, and container root filesystems.
///
/// ```
/// use cri_oci::image::Store;
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path()).unwrap();
/// assert!(store.list().is_empty());
/// assert!(matches!(store.get("busybox"), Err(cri_oci::Error::ImageNotFound(_))));
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

struct Inner {
    root: PathBuf,
    limits: UnpackLimits,
    state: Mutex<State>,
    /// Per-digest locks held while a blob downloads, so concurrent pulls fetch it once.
    downloads: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    /// Digests (blobs and diff ids) that operations in flight rely on; the GC keeps them.
    leases: Mutex<HashMap<String, usize>>,
}

#[derive(Default)]
struct State {
    records: BTreeMap<String, Record>,
    images: BTreeMap<String, Image>,
}

/// What `index.json` holds.
#[derive(Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    images: Vec<Record>,
}

/// One image as stored: what the GC must keep and what [`Image`] is built from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    /// `sha256:<config digest hex>`.
    pub(crate) id: String,
    /// The platform manifest.
    pub(crate) manifest: Descriptor,
    /// The config blob.
    pub(crate) config: Descriptor,
    /// The layer blobs with their diff ids, base first.
    pub(crate) layers: Vec<LayerRecord>,
    /// Indexes (manifest lists) that repo digests point at, kept for inspection.
    #[serde(default)]
    pub(crate) indexes: Vec<String>,
    pub(crate) repo_tags: Vec<String>,
    pub(crate) repo_digests: Vec<String>,
}

/// A layer blob and the digest of its uncompressed tar.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LayerRecord {
    pub(crate) blob: Descriptor,
    pub(crate) diff_id: String,
}

impl Record {
    fn blobs(&self) -> impl Iterator<Item = &str> {
        [self.manifest.digest.as_str(), self.config.digest.as_str()]
            .into_iter()
            .chain(self.layers.iter().map(|l| l.blob.digest.as_str()))
            .chain(self.indexes.iter().map(String::as_str))
    }

    fn image(&self, config: ImageConfiguration) -> Image {
        let size = self.config.size.max(0) as u64
            + self
                .layers
                .iter()
                .map(|l| l.blob.size.max(0) as u64)
                .sum::<u64>();
        Image {
            id: self.id.clone(),
            repo_tags: self.repo_tags.clone(),
            repo_digests: self.repo_digests.clone(),
            size,
            config,
            layers: self.layers.iter().map(|l| l.diff_id.clone()).collect(),
        }
    }
}

/// An image ready to be recorded: its record (tags and digests to add) and parsed config.
pub(crate) struct NewImage {
    pub(crate) record: Record,
    pub(crate) config: ImageConfiguration,
}

/// Space used under a store's root, for CRI `ImageFsInfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    /// The store's root directory (the CRI `FilesystemIdentifier.mountpoint`).
    pub root: PathBuf,
    /// Bytes allocated on disk (hard links counted once).
    pub used_bytes: u64,
    /// Inodes used (files, directories, links...).
    pub inodes_used: u64,
}

impl Usage {
    /// The CRI view, stamped with `timestamp` (nanoseconds since the epoch).
    pub fn to_cri(&self, timestamp: i64) -> cri_api::v1::FilesystemUsage {
        cri_api::v1::FilesystemUsage {
            timestamp,
            fs_id: Some(cri_api::v1::FilesystemIdentifier {
                mountpoint: self.root.display().to_string(),
            }),
            used_bytes: Some(cri_api::v1::UInt64Value {
                value: self.used_bytes,
            }),
            inodes_used: Some(cri_api::v1::UInt64Value {
                value: self.inodes_used,
            }),
        }
    }
}

/// What a garbage collection removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Blobs deleted.
    pub blobs: usize,
    /// Unpacked layer directories deleted.
    pub layers: usize,
}

/// Keeps digests away from the garbage collector while an operation needs them.
pub(crate) struct Lease {
    inner: Arc<Inner>,
    digests: Vec<String>,
}

impl Lease {
    /// Adds more digests to this lease.
    pub(crate) fn extend<'a>(&mut self, digests: impl IntoIterator<Item = &'a str>) {
        let mut leases = lock(&self.inner.leases);
        for digest in digests {
            *leases.entry(digest.to_string()).or_default() += 1;
            self.digests.push(digest.to_string());
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut leases = lock(&self.inner.leases);
        for digest in &self.digests {
            if let Some(n) = leases.get_mut(digest) {
                *n -= 1;
                if *n == 0 {
                    leases.remove(digest);
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// Opens (creating when needed) the store at `root` and loads its images.
    ///
    /// Leftovers of interrupted operations under `root/tmp` are removed. Images with a missing
    /// blob or an unreadable config are dropped with a warning rather than failing the open.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        Self::open_with_limits(root, UnpackLimits::default())
    }

    /// [`Store::open`] with `limits` on what each pull, import and root filesystem may write
    /// (see [`UnpackLimits`]; [`Store::open`] uses its defaults).
    ///
    /// ```
    /// use cri_oci::image::{DeviceNodes, Store, UnpackLimits};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let limits = UnpackLimits {
    ///     max_bytes: 1 << 30,
    ///     devices: DeviceNodes::Refuse,
    ///     ..UnpackLimits::default()
    /// };
    /// let store = Store::open_with_limits(dir.path(), limits.clone()).unwrap();
    /// assert_eq!(store.limits(), &limits);
    /// ```
    pub fn open_with_limits(root: impl Into<PathBuf>, limits: UnpackLimits) -> Result<Self> {
        let root = root.into();
        for dir in ["blobs/sha256", "layers", "rootfs", "tmp"] {
            create_dir_all(&root.join(dir))?;
        }
        for (_, path) in read_dir_names(&root.join("tmp"))? {
            remove_tree(&path)?;
        }
        let store = Self {
            inner: Arc::new(Inner {
                root,
                limits,
                state: Mutex::new(State::default()),
                downloads: Mutex::new(HashMap::new()),
                leases: Mutex::new(HashMap::new()),
            }),
        };
        store.load()?;
        Ok(store)
    }

    fn load(&self) -> Result<()> {
        let path = self.index_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let file: IndexFile = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            digest: path.display().to_string(),
            reason: format!("the store's index does not parse: {e}"),
        })?;
        if file.version != INDEX_VERSION {
            return Err(Error::Unsupported(format!(
                "{}: index version {} (this build reads {INDEX_VERSION})",
                path.display(),
                file.version
            )));
        }
        let mut state = lock(&self.inner.state);
        for record in file.images {
            if let Some(missing) = record.blobs().find(|d| !self.has_blob(d)) {
                tracing::warn!(image = %record.id, blob = %missing, "dropping an image with a missing blob");
                continue;
            }
            match self.read_config(&record.config.digest) {
                Ok(config) => {
                    state.images.insert(record.id.clone(), record.image(config));
                    state.records.insert(record.id.clone(), record);
                }
                Err(e) => {
                    tracing::warn!(image = %record.id, error = %e, "dropping unreadable image")
                }
            }
        }
        Ok(())
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The bounds on what each pull, import and root filesystem of this store may write.
    pub fn limits(&self) -> &UnpackLimits {
        &self.inner.limits
    }

    /// Pulls `reference` from its registry (or a mirror) and records it; the image is
    /// returned as stored.
    ///
    /// See [the module docs](super) for auth, platforms and errors.
    pub async fn pull(
        &self,
        reference: &str,
        auth: Option<&cri_api::v1::AuthConfig>,
        config: &RegistryConfig,
    ) -> Result<Image> {
        super::pull::pull(self, reference, auth, config).await
    }

    /// Imports the images of an OCI image layout tar (as `cargo xtask oci-image` or
    /// `ctr images export` write them).
    ///
    /// Each `index.json` entry becomes an image named by its `io.containerd.image.name`
    /// annotation, or by `org.opencontainers.image.ref.name` when that is a full reference
    /// (one holding a `/` or `:`); a bare tag there names nothing, and the image is stored
    /// with no tags. Named images get a repo digest `name@<entry digest>`. Entries that are
    /// indexes resolve to the host's platform. Every blob is verified.
    pub fn import_archive(&self, tar: &Path) -> Result<Vec<Image>> {
        super::archive::import(self, tar)
    }

    /// Every image, ordered by id.
    pub fn list(&self) -> Vec<Image> {
        lock(&self.inner.state).images.values().cloned().collect()
    }

    /// Finds an image by tag reference (normalised: `busybox` finds
    /// `docker.io/library/busybox:latest`), digest reference (`name@sha256:...`), full id
    /// (`sha256:<hex>`) or unique id prefix (with or without `sha256:`).
    ///
    /// Nothing found is [`Error::ImageNotFound`]; a prefix of several ids is
    /// [`Error::InvalidArgument`].
    pub fn get(&self, reference_or_id: &str) -> Result<Image> {
        let state = lock(&self.inner.state);
        let id = resolve(&state, reference_or_id)?;
        state
            .images
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::ImageNotFound(reference_or_id.to_string()))
    }

    /// Adds the tag `new_reference` (normalised) to the image `reference_or_id` names,
    /// moving it from any other image.
    pub fn tag(&self, reference_or_id: &str, new_reference: &str) -> Result<Image> {
        let tag = Reference::parse(new_reference)?;
        if tag.digest().is_some() {
            return Err(Error::invalid(
                "reference",
                format!("{new_reference:?}: a tag cannot carry a digest"),
            ));
        }
        let tag = tag.to_string();
        let mut state = lock(&self.inner.state);
        let id = resolve(&state, reference_or_id)?;
        let mut records = state.records.clone();
        for record in records.values_mut() {
            record.repo_tags.retain(|t| *t != tag);
        }
        if let Some(record) = records.get_mut(&id) {
            record.repo_tags.push(tag);
            record.repo_tags.sort();
        }
        self.persist(&records)?;
        apply_records(&mut state, records);
        state
            .images
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::ImageNotFound(reference_or_id.to_string()))
    }

    /// Removes the image `reference_or_id` names, all its tags and digests, then collects
    /// garbage: blobs and unpacked layers no other image uses are deleted.
    pub fn remove(&self, reference_or_id: &str) -> Result<()> {
        let mut state = lock(&self.inner.state);
        let id = resolve(&state, reference_or_id)?;
        let mut records = state.records.clone();
        records.remove(&id);
        self.persist(&records)?;
        apply_records(&mut state, records);
        self.gc_locked(&state)?;
        Ok(())
    }

    /// Deletes blobs and unpacked layers that no image, operation in flight or mounted
    /// overlay rootfs uses.
    pub fn gc(&self) -> Result<GcStats> {
        let state = lock(&self.inner.state);
        self.gc_locked(&state)
    }

    fn gc_locked(&self, state: &State) -> Result<GcStats> {
        // Held throughout: an operation leasing a digest waits until the deletions are done
        // and then sees the store as it is.
        let leases = lock(&self.inner.leases);
        let mut keep: HashSet<&str> = leases.keys().map(String::as_str).collect();
        for record in state.records.values() {
            keep.extend(record.blobs());
            keep.extend(record.layers.iter().map(|l| l.diff_id.as_str()));
        }
        let rootfs_layers = rootfs::live_layers(&self.inner.root.join("rootfs"))?;
        keep.extend(rootfs_layers.iter().map(String::as_str));

        let mut stats = GcStats::default();
        for (name, path) in read_dir_names(&self.inner.root.join("blobs/sha256"))? {
            if !keep.contains(format!("sha256:{name}").as_str()) {
                remove_tree(&path)?;
                stats.blobs += 1;
            }
        }
        for (name, path) in read_dir_names(&self.inner.root.join("layers"))? {
            if !keep.contains(format!("sha256:{name}").as_str()) {
                remove_tree(&path)?;
                stats.layers += 1;
            }
        }
        if stats != GcStats::default() {
            tracing::debug!(blobs = stats.blobs, layers = stats.layers, "image store gc");
        }
        Ok(stats)
    }

    /// Bytes and inodes used under the root (hard links counted once).
    pub fn usage(&self) -> Result<Usage> {
        let mut seen = HashSet::new();
        let (mut bytes, mut inodes) = (0, 0);
        walk_usage(&self.inner.root, &mut seen, &mut bytes, &mut inodes)?;
        Ok(Usage {
            root: self.inner.root.clone(),
            used_bytes: bytes,
            inodes_used: inodes,
        })
    }

    /// Builds a container root filesystem of `image` at `target` (which must not exist or be
    /// an empty directory). See [`RootfsMode`] for how.
    pub fn prepare_rootfs(&self, image: &Image, target: &Path, mode: RootfsMode) -> Result<Rootfs> {
        rootfs::prepare(self, image, target, mode)
    }

    // ---- for the pull, import and rootfs code ----

    pub(crate) fn record(&self, id: &str) -> Result<Record> {
        lock(&self.inner.state)
            .records
            .get(id)
            .cloned()
            .ok_or_else(|| Error::ImageNotFound(id.to_string()))
    }

    /// The path of a blob (whether or not it exists). The digest must be a checked sha256.
    pub(crate) fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.inner.root.join("blobs/sha256").join(hex)
    }

    /// The directory a layer is unpacked into for overlay use.
    pub(crate) fn layer_dir(&self, diff_id: &str) -> PathBuf {
        let hex = diff_id.strip_prefix("sha256:").unwrap_or(diff_id);
        self.inner.root.join("layers").join(hex)
    }

    pub(crate) fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_file()
    }

    /// A fresh path under `root/tmp` (same filesystem as the blobs, so renames are atomic).
    pub(crate) fn temp_path(&self, prefix: &str) -> PathBuf {
        self.inner
            .root
            .join("tmp")
            .join(fsutil::unique_name(prefix))
    }

    /// Moves a verified temporary file into place as blob `digest`.
    pub(crate) fn commit_blob(&self, tmp: &Path, digest: &str) -> Result<()> {
        let path = self.blob_path(digest);
        fs::rename(tmp, &path).map_err(|e| {
            let _ = fs::remove_file(tmp);
            Error::io(format!("storing blob {}", path.display()), e)
        })?;
        Ok(())
    }

    /// Stores a small verified blob held in memory.
    pub(crate) fn write_blob(&self, digest: &str, data: &[u8]) -> Result<()> {
        if self.has_blob(digest) {
            return Ok(());
        }
        let tmp = fsutil::TempPath::new(self.temp_path("blob"));
        fs::write(tmp.path(), data)
            .map_err(|e| Error::io(format!("writing {}", tmp.path().display()), e))?;
        self.commit_blob(tmp.path(), digest)?;
        tmp.keep();
        Ok(())
    }

    /// Reads and parses a config blob.
    pub(crate) fn read_config(&self, digest: &str) -> Result<ImageConfiguration> {
        let path = self.blob_path(digest);
        let bytes =
            fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        parse_config(&bytes, digest)
    }

    /// Protects `digests` from the garbage collector until the lease is dropped.
    pub(crate) fn lease<'a>(&self, digests: impl IntoIterator<Item = &'a str>) -> Lease {
        let mut lease = Lease {
            inner: self.inner.clone(),
            digests: Vec::new(),
        };
        lease.extend(digests);
        lease
    }

    /// The download lock of `digest`.
    pub(crate) async fn download_lock(&self, digest: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let mutex = {
            let mut map = lock(&self.inner.downloads);
            map.retain(|_, weak| weak.strong_count() > 0);
            match map.get(digest).and_then(Weak::upgrade) {
                Some(mutex) => mutex,
                None => {
                    let mutex = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(digest.to_string(), Arc::downgrade(&mutex));
                    mutex
                }
            }
        };
        mutex.lock_owned().await
    }

    /// Records an image whose blobs are all in place: merges with an existing record of the
    /// same id, moves its tags away from other images, and persists the index.
    pub(crate) fn commit(&self, new: NewImage) -> Result<Image> {
        let NewImage { record, config } = new;
        let mut state = lock(&self.inner.state);
        let mut records = state.records.clone();
        for other in records.values_mut() {
            if other.id != record.id {
                other.repo_tags.retain(|t| !record.repo_tags.contains(t));
            }
        }
        let merged = match records.remove(&record.id) {
            Some(mut old) => {
                old.repo_tags.extend(record.repo_tags);
                old.repo_digests.extend(record.repo_digests);
                old.indexes.extend(record.indexes);
                old.manifest = record.manifest;
                old.config = record.config;
                old.layers = record.layers;
                old
            }
            None => record,
        };
        let mut merged = merged;
        for list in [
            &mut merged.repo_tags,
            &mut merged.repo_digests,
            &mut merged.indexes,
        ] {
            list.sort();
            list.dedup();
        }
        let id = merged.id.clone();
        records.insert(id.clone(), merged);
        self.persist(&records)?;
        apply_records(&mut state, records);
        // The config of this id is the same content whatever the pull; keep the parsed one.
        if let Some(image) = state.images.get_mut(&id) {
            image.config = config;
        }
        state
            .images
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::ImageNotFound(id.clone()))
    }

    fn index_path(&self) -> PathBuf {
        self.inner.root.join("index.json")
    }

    fn persist(&self, records: &BTreeMap<String, Record>) -> Result<()> {
        let file = IndexFile {
            version: INDEX_VERSION,
            images: records.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| Error::io("encoding the store index", io::Error::other(e)))?;
        write_atomic(&self.index_path(), &bytes)
    }
}

/// Replaces the records and rebuilds the image views, reusing parsed configs.
fn apply_records(state: &mut State, records: BTreeMap<String, Record>) {
    let mut images = BTreeMap::new();
    for (id, record) in &records {
        let config = match state.images.get(id) {
            Some(image) => image.config.clone(),
            None => ImageConfiguration::default(),
        };
        images.insert(id.clone(), record.image(config));
    }
    state.records = records;
    state.images = images;
}

/// Parses an image config blob.
pub(crate) fn parse_config(bytes: &[u8], digest: &str) -> Result<ImageConfiguration> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        digest: digest.to_string(),
        reason: format!("image config does not parse: {e}"),
    })
}

/// The layer diff ids of an image config, checked against the manifest's layer count and for
/// being sha256 digests.
pub(crate) fn diff_ids(
    config: &ImageConfiguration,
    config_digest: &str,
    layers: usize,
) -> Result<Vec<String>> {
    let diff_ids = config.rootfs().diff_ids().clone();
    if diff_ids.len() != layers {
        return Err(Error::Corrupt {
            digest: config_digest.to_string(),
            reason: format!(
                "the config lists {} diff ids for {layers} layers",
                diff_ids.len()
            ),
        });
    }
    for diff_id in &diff_ids {
        super::manifest::check_sha256(diff_id)?;
    }
    Ok(diff_ids)
}

/// The id `reference_or_id` names.
fn resolve(state: &State, reference_or_id: &str) -> Result<String> {
    let not_found = || Error::ImageNotFound(reference_or_id.to_string());
    let s = reference_or_id.trim();
    if s.is_empty() {
        return Err(Error::invalid("image", "empty image reference"));
    }
    if state.records.contains_key(s) {
        return Ok(s.to_string());
    }
    let bare = s.strip_prefix("sha256:");
    if bare.is_none()
        && let Ok(reference) = Reference::parse(s)
    {
        let found = match reference.digest() {
            Some(digest) => {
                let wanted = format!("{}@{digest}", reference.name());
                state
                    .records
                    .values()
                    .find(|r| r.repo_digests.contains(&wanted))
            }
            None => {
                let wanted = reference.to_string();
                state
                    .records
                    .values()
                    .find(|r| r.repo_tags.contains(&wanted))
            }
        };
        if let Some(record) = found {
            return Ok(record.id.clone());
        }
    }
    let prefix = bare.unwrap_or(s);
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let prefix = prefix.to_ascii_lowercase();
    let matches: Vec<&String> = state
        .records
        .keys()
        .filter(|id| {
            id.strip_prefix("sha256:")
                .is_some_and(|hex| hex.starts_with(&prefix))
        })
        .collect();
    match matches.as_slice() {
        [] => Err(not_found()),
        [id] => Ok((*id).clone()),
        many => Err(Error::invalid(
            "image",
            format!("id prefix {s:?} matches {} images", many.len()),
        )),
    }
}

fn walk_usage(
    path: &Path,
    seen: &mut HashSet<(u64, u64)>,
    bytes: &mut u64,
    inodes: &mut u64,
) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        // Something removed meanwhile.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("inspecting {}", path.display()), e)),
    };
    if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
        return Ok(());
    }
    *inodes += 1;
    *bytes += meta.blocks() * 512;
    if meta.is_dir() {
        let entries = match fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format!("listing {}", path.display()), e)),
        };
        for entry in entries.flatten() {
            walk_usage(&entry.path(), seen, bytes, inodes)?;
        }
    }
    Ok(())
}
