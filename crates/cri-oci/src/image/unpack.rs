//! Applying layer tars to a directory: whiteouts, metadata and path safety.
//!
//! Two targets:
//!
//! - [`Whiteouts::Apply`] (copy rootfs): layers are applied in order into one directory;
//!   `.wh.<name>` deletes `<name>` from the layers below, `.wh..wh..opq` empties a directory of
//!   what the layers below put there.
//! - [`Whiteouts::Overlay`] (one directory per layer, used as overlay lower dirs): whiteouts
//!   become what overlayfs reads: a `0:0` character device for a deleted name and the
//!   `trusted.overlay.opaque=y` xattr on an opaque directory. Both need root.
//!
//! Entry names are confined to the target: absolute names and `..` components are
//! [`Error::Corrupt`]; symlinks met on the way to an entry are followed as the container would
//! see them (absolute targets from the target's root), and one that climbs out of it is
//! [`Error::Corrupt`] too. Modes, mtimes and symlinks are always kept; ownership, device nodes
//! and xattrs need root (xattrs are best effort; `trusted.overlay.*` ones from a tar are
//! dropped, as they would steer overlayfs). Device nodes follow [`DeviceNodes`].
//!
//! What one unpacker writes is bounded by its [`UnpackLimits`]: the uncompressed tar bytes it
//! reads, the file content it writes (a sparse file counts at its full size) and the entries
//! it applies; going over is [`Error::LimitExceeded`].

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};

use super::fsutil::{HashingReader, remove_tree};
use super::manifest::{Compression, layer_compression};
use crate::{Error, Result};

/// How whiteout entries are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Whiteouts {
    /// Delete what they name (layers applied in order into one directory).
    Apply,
    /// Convert them to overlayfs's form (one directory per layer).
    Overlay,
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// More symlinks than this on the way to one entry is a loop.
const MAX_SYMLINKS: usize = 40;

/// Bounds on what one image may make a [`Store`](super::Store) write, and what becomes of the
/// device nodes in its layers. Set with [`Store::open_with_limits`](super::Store::open_with_limits).
///
/// The defaults stop hostile images (decompression bombs, sparse files declaring terabytes,
/// millions of empty files) long before a disk or inode table fills, and are far above what
/// real images need: the largest mainstream images (CUDA and ML framework images) unpack to
/// 10 to 25 GiB and a few hundred thousand files.
///
/// ```
/// use cri_oci::image::{DeviceNodes, UnpackLimits};
///
/// let limits = UnpackLimits::default();
/// assert_eq!(limits.max_bytes, 64 << 30);
/// assert_eq!(limits.max_entries, 1_000_000);
/// assert_eq!(limits.devices, DeviceNodes::CreateWhenRoot);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Bytes. A pull refuses, before downloading anything, an image whose config and
    /// compressed layers add up to more (as its manifest declares them; a registry sending
    /// more than declared is [`Error::Corrupt`]); an import stops when the blobs it stores add
    /// up to more. Either refuses a layer whose uncompressed tar is larger (a decompression
    /// bomb stops there, and its blob is not stored). [`Store::prepare_rootfs`] stops when the
    /// uncompressed layers it applies, or the file content it writes (a sparse file counted at
    /// its full size), add up to more.
    ///
    /// Default [`UnpackLimits::DEFAULT_MAX_BYTES`]: 64 GiB.
    ///
    /// [`Store::prepare_rootfs`]: super::Store::prepare_rootfs
    pub max_bytes: u64,
    /// Tar entries (files, directories, links, whiteouts, devices...) one
    /// [`Store::prepare_rootfs`] applies, over all the layers it unpacks (with an overlay
    /// rootfs, layers unpacked for an earlier container cost nothing).
    ///
    /// Default [`UnpackLimits::DEFAULT_MAX_ENTRIES`]: one million.
    ///
    /// [`Store::prepare_rootfs`]: super::Store::prepare_rootfs
    pub max_entries: u64,
    /// What character and block devices in layers become. Default
    /// [`DeviceNodes::CreateWhenRoot`].
    pub devices: DeviceNodes,
}

impl UnpackLimits {
    /// The default [`max_bytes`](Self::max_bytes): 64 GiB, over twice the largest
    /// mainstream images, and a bound a store's disk can be sized for.
    pub const DEFAULT_MAX_BYTES: u64 = 64 << 30;
    /// The default [`max_entries`](Self::max_entries): one million, a few times the file
    /// count of the largest mainstream images; a million inodes is a few hundred MiB of
    /// filesystem metadata.
    pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_entries: Self::DEFAULT_MAX_ENTRIES,
            devices: DeviceNodes::default(),
        }
    }
}

/// What a character or block device node in a layer becomes.
///
/// A device node in a container's root filesystem lets whoever may open it reach that
/// device (a `0666` node of the host's disk is the host's disk), unless the runtime's device
/// cgroup denies it; on a copy rootfs it also exists on the host. Images rarely need their
/// own (runtimes mount `/dev`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceNodes {
    /// Created when this process runs as root and the kernel lets it (`CAP_MKNOD` in the
    /// initial user namespace); skipped otherwise, with a log line. What docker and containerd
    /// do.
    #[default]
    CreateWhenRoot,
    /// Never created: the entry is skipped, the rest of the layer applies.
    Skip,
    /// A layer holding one is refused with [`Error::Corrupt`].
    Refuse,
}

/// Mode and mtime of a directory, applied once everything inside it is written.
struct DirMeta {
    mode: u32,
    mtime: u64,
}

/// Applies layer tars to `root`, one after the other.
pub(crate) struct Unpacker {
    root: PathBuf,
    whiteouts: Whiteouts,
    privileged: bool,
    dirs: BTreeMap<PathBuf, DirMeta>,
    /// Paths the current layer wrote, with their ancestors (only tracked with
    /// [`Whiteouts::Apply`]).
    written: HashSet<PathBuf>,
    /// The digest of the layer being applied, for errors.
    layer: String,
    limits: UnpackLimits,
    spent: Spent,
}

/// What an unpacker has used of its [`UnpackLimits`], carried from one unpacker to the next
/// when one operation uses several (an overlay rootfs unpacks each layer on its own).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Spent {
    /// Uncompressed tar bytes read.
    stream_bytes: u64,
    /// File content written.
    file_bytes: u64,
    /// Tar entries applied.
    entries: u64,
}

impl Unpacker {
    /// An unpacker into `root` (created when missing). Ownership, devices and xattrs are
    /// restored when `privileged`.
    pub(crate) fn new(root: &Path, whiteouts: Whiteouts, privileged: bool) -> Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(root)
            .map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
        Ok(Self {
            root: root.to_path_buf(),
            whiteouts,
            privileged,
            dirs: BTreeMap::new(),
            written: HashSet::new(),
            layer: String::new(),
            limits: UnpackLimits::default(),
            spent: Spent::default(),
        })
    }

    /// The same unpacker, bounded by `limits` rather than the defaults, with `spent` of them
    /// already used.
    pub(crate) fn with_limits(mut self, limits: &UnpackLimits, spent: Spent) -> Self {
        self.limits = limits.clone();
        self.spent = spent;
        self
    }

    /// What this unpacker has used of its limits so far.
    pub(crate) fn spent(&self) -> Spent {
        self.spent
    }

    /// A reader of `reader` that stops this unpacker's byte budget from being overrun.
    fn bounded<R: Read>(&self, reader: R) -> Bounded<R> {
        Bounded::new(
            reader,
            self.limits
                .max_bytes
                .saturating_sub(self.spent.stream_bytes),
        )
    }

    fn over_bytes(&self, digest: &str) -> Error {
        limit_exceeded(
            digest,
            format!(
                "the uncompressed layers take more than the limit of {} bytes",
                self.limits.max_bytes
            ),
        )
    }

    /// Applies the layer blob at `blob` (`media_type` says how it is compressed) and checks
    /// that its uncompressed content hashes to `diff_id`.
    pub(crate) fn apply_blob(
        &mut self,
        blob: &Path,
        media_type: &str,
        digest: &str,
        diff_id: &str,
    ) -> Result<()> {
        let reader = open_layer(blob, media_type, digest)?;
        let bounded = self.bounded(reader);
        let tripped = bounded.tripped.clone();
        let hashing = HashingReader::new(bounded);
        let result = self.apply_entries(hashing, digest).and_then(|hashing| {
            hashing
                .finish()
                .map_err(|e| corrupt(digest, format!("reading the layer: {e}")))
        });
        if tripped.load(Ordering::Relaxed) {
            return Err(self.over_bytes(digest));
        }
        let (actual, count) = result?;
        self.spent.stream_bytes += count;
        if actual != diff_id {
            return Err(corrupt(
                digest,
                format!("uncompressed content is {actual}, the config says {diff_id}"),
            ));
        }
        Ok(())
    }

    /// Applies one layer tar (the fuzz targets' entry; the store goes through the callers
    /// that verify digests first).
    #[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
    pub(crate) fn apply(&mut self, reader: impl Read, layer: &str) -> Result<()> {
        let bounded = self.bounded(reader);
        let tripped = bounded.tripped.clone();
        let result = self.apply_entries(bounded, layer);
        if tripped.load(Ordering::Relaxed) {
            return Err(self.over_bytes(layer));
        }
        self.spent.stream_bytes += result?.read;
        Ok(())
    }

    /// Applies the entries of one layer tar; the reader is handed back.
    fn apply_entries<R: Read>(&mut self, reader: R, layer: &str) -> Result<R> {
        self.layer = layer.to_string();
        self.written.clear();
        let mut archive = tar::Archive::new(reader);
        let entries = archive
            .entries()
            .map_err(|e| corrupt(layer, format!("not a tar: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| corrupt(layer, format!("bad tar entry: {e}")))?;
            self.entry(&mut entry)?;
        }
        Ok(archive.into_inner())
    }

    /// Sets the modes and mtimes of the directories written, deepest first.
    pub(crate) fn finish(self) -> Result<()> {
        for (rel, meta) in self.dirs.iter().rev() {
            let path = self.root.join(rel);
            // Only real directories: never a mode through a symlink.
            if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            fs::set_permissions(&path, fs::Permissions::from_mode(meta.mode))
                .map_err(|e| Error::io(format!("chmod {}", path.display()), e))?;
            set_mtime(&path, meta.mtime);
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        self.spent.entries += 1;
        if self.spent.entries > self.limits.max_entries {
            return Err(limit_exceeded(
                &self.layer,
                format!(
                    "the layers hold more than the limit of {} tar entries",
                    self.limits.max_entries
                ),
            ));
        }
        let raw = entry.path_bytes().into_owned();
        let rel = self.clean_name(&raw)?;
        let kind = entry.header().entry_type();
        let Some(name) = rel.file_name().map(OsStr::to_os_string) else {
            // The layer's root directory ("./"): its metadata goes on the target itself.
            if kind.is_dir() {
                let meta = self.header_meta(entry)?;
                self.chown(&self.root.clone(), &meta);
                self.dirs.insert(
                    PathBuf::new(),
                    DirMeta {
                        mode: meta.mode,
                        mtime: meta.mtime,
                    },
                );
            }
            return Ok(());
        };
        let parent = rel.parent().unwrap_or(Path::new(""));
        let name_str = name.to_string_lossy();
        if let Some(hidden) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            // Deleting needs no new directories; overlay whiteouts need their directory.
            let create = self.whiteouts == Whiteouts::Overlay;
            return match self.resolve_parent(parent, create)? {
                Some(parent_rel) => self.whiteout(&parent_rel, &name_str, hidden),
                None => Ok(()),
            };
        }
        let parent_rel = self.resolve_parent(parent, true)?.unwrap_or_default();

        let rel = parent_rel.join(&name);
        let path = self.root.join(&rel);
        let meta = self.header_meta(entry)?;
        match kind {
            tar::EntryType::Directory => {
                match fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        self.remove(&rel)?;
                        mkdir(&path)?;
                    }
                    Err(_) => mkdir(&path)?,
                }
                self.chown(&path, &meta);
                self.xattrs(&path, entry);
                self.dirs.insert(
                    rel.clone(),
                    DirMeta {
                        mode: meta.mode,
                        mtime: meta.mtime,
                    },
                );
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                // The size the file will have (a sparse file's full size): refused before
                // anything is written when it would take the content over the limit.
                let size = entry.size();
                if size > self.limits.max_bytes.saturating_sub(self.spent.file_bytes) {
                    return Err(limit_exceeded(
                        &self.layer,
                        format!(
                            "{} is {size} bytes, which takes the content written over the limit of {} bytes",
                            rel.display(),
                            self.limits.max_bytes
                        ),
                    ));
                }
                self.remove(&rel)?;
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
                let copied = io::copy(entry, &mut file).map_err(|e| {
                    if e.kind() == io::ErrorKind::UnexpectedEof
                        || e.kind() == io::ErrorKind::InvalidData
                    {
                        corrupt(&self.layer, format!("reading {}: {e}", rel.display()))
                    } else {
                        Error::io(format!("writing {}", path.display()), e)
                    }
                })?;
                self.spent.file_bytes += copied;
                drop(file);
                self.chown(&path, &meta);
                fs::set_permissions(&path, fs::Permissions::from_mode(meta.mode))
                    .map_err(|e| Error::io(format!("chmod {}", path.display()), e))?;
                self.xattrs(&path, entry);
                set_mtime(&path, meta.mtime);
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| {
                        corrupt(
                            &self.layer,
                            format!("symlink {} without a target", rel.display()),
                        )
                    })?
                    .into_owned();
                if target.is_empty() || target.contains(&0) {
                    return Err(corrupt(
                        &self.layer,
                        format!("symlink {} with a bad target {target:?}", rel.display()),
                    ));
                }
                self.remove(&rel)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(|e| Error::io(format!("symlink {}", path.display()), e))?;
                self.chown(&path, &meta);
                self.xattrs(&path, entry);
                set_mtime(&path, meta.mtime);
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| {
                        corrupt(
                            &self.layer,
                            format!("hard link {} without a target", rel.display()),
                        )
                    })?
                    .into_owned();
                let target_rel = self.clean_name(&target)?;
                let target_name = target_rel
                    .file_name()
                    .ok_or_else(|| {
                        corrupt(
                            &self.layer,
                            format!("hard link {} to the root", rel.display()),
                        )
                    })?
                    .to_os_string();
                let target_parent =
                    self.resolve_parent(target_rel.parent().unwrap_or(Path::new("")), false)?;
                let target_path = target_parent.map(|p| self.root.join(p.join(target_name)));
                match target_path.as_deref().map(fs::symlink_metadata) {
                    Some(Ok(m)) if !m.is_dir() => {}
                    _ => {
                        return Err(corrupt(
                            &self.layer,
                            format!(
                                "hard link {} points at {}, which is not a file of this root",
                                rel.display(),
                                target_rel.display()
                            ),
                        ));
                    }
                }
                let target_path = target_path.unwrap_or_default();
                if target_path != path {
                    self.remove(&rel)?;
                    fs::hard_link(&target_path, &path)
                        .map_err(|e| Error::io(format!("linking {}", path.display()), e))?;
                }
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let create = match self.limits.devices {
                    DeviceNodes::Refuse => {
                        return Err(corrupt(
                            &self.layer,
                            format!(
                                "device node {} in a layer, refused (DeviceNodes::Refuse)",
                                rel.display()
                            ),
                        ));
                    }
                    DeviceNodes::Skip => false,
                    DeviceNodes::CreateWhenRoot => self.privileged,
                };
                if !create {
                    tracing::debug!(path = %rel.display(), policy = ?self.limits.devices, privileged = self.privileged, "skipping a device node");
                    return Ok(());
                }
                self.remove(&rel)?;
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                let file_type = if kind == tar::EntryType::Char {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                match rustix::fs::mknodat(
                    CWD,
                    &path,
                    file_type,
                    Mode::from_raw_mode(meta.mode),
                    rustix::fs::makedev(major, minor),
                ) {
                    Ok(()) => {}
                    // Root without CAP_MKNOD (a user namespace, a dropped capability).
                    Err(rustix::io::Errno::PERM) => {
                        tracing::warn!(path = %rel.display(), "skipping a device node: mknod not permitted");
                        return Ok(());
                    }
                    Err(e) => {
                        return Err(Error::io(format!("mknod {}", path.display()), e.into()));
                    }
                }
                self.chown(&path, &meta);
                self.xattrs(&path, entry);
                set_mtime(&path, meta.mtime);
            }
            tar::EntryType::Fifo => {
                self.remove(&rel)?;
                rustix::fs::mknodat(
                    CWD,
                    &path,
                    FileType::Fifo,
                    Mode::from_raw_mode(meta.mode),
                    0,
                )
                .map_err(|e| Error::io(format!("mkfifo {}", path.display()), e.into()))?;
                self.chown(&path, &meta);
                set_mtime(&path, meta.mtime);
            }
            other => {
                tracing::debug!(path = %rel.display(), kind = ?other, "skipping a tar entry of an unsupported type");
                return Ok(());
            }
        }
        if self.whiteouts == Whiteouts::Apply {
            // The directories on the way count as this layer's too: an opaque marker above
            // must keep them (their lower-layer content still goes).
            for ancestor in rel.ancestors() {
                if ancestor.as_os_str().is_empty() || !self.written.insert(ancestor.to_path_buf()) {
                    break;
                }
            }
        }
        Ok(())
    }

    fn whiteout(&mut self, parent_rel: &Path, name: &str, hidden: &str) -> Result<()> {
        let dir = self.root.join(parent_rel);
        if name == OPAQUE_MARKER {
            match self.whiteouts {
                Whiteouts::Apply => self.make_opaque(parent_rel)?,
                Whiteouts::Overlay => {
                    if !dir.is_dir() {
                        mkdir(&dir)?;
                        self.dirs
                            .entry(parent_rel.to_path_buf())
                            .or_insert(DirMeta {
                                mode: 0o755,
                                mtime: 0,
                            });
                    }
                    rustix::fs::lsetxattr(&dir, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
                        .map_err(|e| {
                            Error::io(format!("marking {} opaque", dir.display()), e.into())
                        })?;
                }
            }
            return Ok(());
        }
        if hidden.starts_with(WHITEOUT_PREFIX) {
            // Other `.wh..wh.` names are aufs bookkeeping (hard link directories): not content.
            return Ok(());
        }
        if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
            return Err(corrupt(&self.layer, format!("bad whiteout name {name:?}")));
        }
        let rel = parent_rel.join(hidden);
        match self.whiteouts {
            Whiteouts::Apply => {
                // A whiteout hides what lower layers have, never this layer's own files.
                if !self.written.contains(&rel) {
                    self.remove(&rel)?;
                }
            }
            Whiteouts::Overlay => {
                self.remove(&rel)?;
                let path = self.root.join(&rel);
                rustix::fs::mknodat(
                    CWD,
                    &path,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .map_err(|e| Error::io(format!("writing whiteout {}", path.display()), e.into()))?;
            }
        }
        Ok(())
    }

    /// Deletes from directory `rel` everything the current layer did not write.
    fn make_opaque(&mut self, rel: &Path) -> Result<()> {
        let dir = self.root.join(rel);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
            let child = rel.join(entry.file_name());
            if !self.written.contains(&child) {
                self.remove(&child)?;
            } else if entry.file_type().is_ok_and(|t| t.is_dir()) {
                self.make_opaque(&child)?;
            }
        }
        Ok(())
    }

    /// Removes whatever is at `rel` (a tree included) and forgets its pending metadata.
    fn remove(&mut self, rel: &Path) -> Result<()> {
        if rel.as_os_str().is_empty() {
            return Err(corrupt(
                &self.layer,
                "an entry replaces the root directory".into(),
            ));
        }
        remove_tree(&self.root.join(rel))?;
        self.dirs.retain(|p, _| !p.starts_with(rel));
        Ok(())
    }

    /// The entry name as a relative path, refusing absolute names, `..` and NUL bytes.
    fn clean_name(&self, raw: &[u8]) -> Result<PathBuf> {
        if raw.contains(&0) {
            return Err(corrupt(
                &self.layer,
                format!(
                    "entry name {:?} holds a NUL byte",
                    String::from_utf8_lossy(raw)
                ),
            ));
        }
        let path = Path::new(OsStr::from_bytes(raw));
        let mut out = PathBuf::new();
        for component in path.components() {
            match component {
                Component::Normal(c) => out.push(c),
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => {
                    return Err(corrupt(
                        &self.layer,
                        format!("absolute path {:?} in a layer", path.display()),
                    ));
                }
                Component::ParentDir => {
                    return Err(corrupt(
                        &self.layer,
                        format!("path {:?} climbs out of the root with '..'", path.display()),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Resolves directory `rel` inside the root, following symlinks as the container would.
    /// Missing directories are created when `create`, else the answer is `None`. Returns a
    /// symlink-free relative path.
    fn resolve_parent(&mut self, rel: &Path, create: bool) -> Result<Option<PathBuf>> {
        // Components still to walk, the next one last.
        let mut pending: Vec<PathBuf> = rel
            .components()
            .rev()
            .map(|c| PathBuf::from(c.as_os_str()))
            .collect();
        let mut current = PathBuf::new();
        let mut links = 0;
        while let Some(component) = pending.pop() {
            let candidate = current.join(&component);
            let path = self.root.join(&candidate);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => current = candidate,
                Ok(m) if m.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(corrupt(
                            &self.layer,
                            format!("too many symlinks under {}", rel.display()),
                        ));
                    }
                    let target = fs::read_link(&path)
                        .map_err(|e| Error::io(format!("reading link {}", path.display()), e))?;
                    // `current` holds no symlinks, so `..` may pop it lexically.
                    let mut base = if target.is_absolute() {
                        PathBuf::new()
                    } else {
                        current.clone()
                    };
                    for c in target.components() {
                        match c {
                            Component::Normal(c) => base.push(c),
                            Component::ParentDir => {
                                if !base.pop() {
                                    return Err(corrupt(
                                        &self.layer,
                                        format!(
                                            "symlink {} -> {} escapes the root",
                                            candidate.display(),
                                            target.display()
                                        ),
                                    ));
                                }
                            }
                            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
                        }
                    }
                    // Walk the target again from the top, component by component, so symlinks
                    // inside it are resolved too.
                    for c in base.components().rev() {
                        pending.push(PathBuf::from(c.as_os_str()));
                    }
                    current = PathBuf::new();
                }
                Ok(_) => {
                    return Err(corrupt(
                        &self.layer,
                        format!(
                            "{} is not a directory but has entries under it",
                            candidate.display()
                        ),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if !create {
                        return Ok(None);
                    }
                    mkdir(&path)?;
                    self.dirs.entry(candidate.clone()).or_insert(DirMeta {
                        mode: 0o755,
                        mtime: 0,
                    });
                    current = candidate;
                }
                Err(e) => return Err(Error::io(format!("inspecting {}", path.display()), e)),
            }
        }
        Ok(Some(current))
    }

    fn header_meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Result<Meta> {
        let header = entry.header();
        let mode = header
            .mode()
            .map_err(|e| corrupt(&self.layer, format!("bad mode: {e}")))?
            & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        let mut uid = header.uid().unwrap_or(0);
        let mut gid = header.gid().unwrap_or(0);
        if let Ok(Some(pax)) = entry.pax_extensions() {
            for ext in pax.flatten() {
                let parse = || ext.value().ok().and_then(|v| v.parse::<u64>().ok());
                match ext.key() {
                    Ok("uid") => uid = parse().unwrap_or(uid),
                    Ok("gid") => gid = parse().unwrap_or(gid),
                    _ => {}
                }
            }
        }
        Ok(Meta {
            mode,
            mtime,
            uid,
            gid,
        })
    }

    fn chown(&self, path: &Path, meta: &Meta) {
        if !self.privileged {
            return;
        }
        let (Ok(uid), Ok(gid)) = (u32::try_from(meta.uid), u32::try_from(meta.gid)) else {
            tracing::warn!(path = %path.display(), "owner out of range, left as root");
            return;
        };
        if uid == u32::MAX || gid == u32::MAX {
            return;
        }
        if let Err(e) = rustix::fs::chownat(
            CWD,
            path,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        ) {
            tracing::warn!(path = %path.display(), error = %e, "chown failed");
        }
    }

    /// Restores `SCHILY.xattr.*` records, best effort, root only.
    fn xattrs<R: Read>(&self, path: &Path, entry: &mut tar::Entry<'_, R>) {
        if !self.privileged {
            return;
        }
        let Ok(Some(pax)) = entry.pax_extensions() else {
            return;
        };
        for ext in pax.flatten() {
            let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) else {
                continue;
            };
            if name.starts_with("trusted.overlay.") {
                tracing::debug!(path = %path.display(), name, "dropping an overlay xattr from a layer");
                continue;
            }
            if let Err(e) =
                rustix::fs::lsetxattr(path, name, ext.value_bytes(), XattrFlags::empty())
            {
                tracing::debug!(path = %path.display(), name, error = %e, "xattr not restored");
            }
        }
    }
}

/// Ownership and permission bits of an entry.
struct Meta {
    mode: u32,
    mtime: u64,
    uid: u64,
    gid: u64,
}

fn mkdir(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .mode(0o755)
        .create(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    // The umask may have taken bits away; the final mode is set in `finish`.
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o755));
    Ok(())
}

fn set_mtime(path: &Path, mtime: u64) {
    let secs = i64::try_from(mtime).unwrap_or(0);
    let time = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: time,
        last_modification: time,
    };
    if let Err(e) = rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW) {
        tracing::debug!(path = %path.display(), error = %e, "mtime not restored");
    }
}

fn corrupt(digest: &str, reason: String) -> Error {
    Error::Corrupt {
        digest: digest.to_string(),
        reason,
    }
}

fn limit_exceeded(digest: &str, reason: String) -> Error {
    Error::LimitExceeded {
        digest: digest.to_string(),
        reason,
    }
}

/// Reads at most `left` bytes of `inner`; the first byte past them is an error, and `tripped`
/// then tells the limit was hit (rather than the data being bad).
struct Bounded<R> {
    inner: R,
    left: u64,
    /// Bytes read so far.
    read: u64,
    tripped: Arc<AtomicBool>,
}

impl<R> Bounded<R> {
    fn new(inner: R, left: u64) -> Self {
        Self {
            inner,
            left,
            read: 0,
            tripped: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            // At the limit: the end of the stream is fine, one more byte is not.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.tripped.store(true, Ordering::Relaxed);
                    Err(io::Error::other(
                        "the uncompressed layer is over the byte limit",
                    ))
                }
            };
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        self.read += n as u64;
        Ok(n)
    }
}

/// Opens a layer blob as a tar stream, decompressing as its media type says (a gzip blob
/// labelled as plain tar is recognised by its magic number too).
pub(crate) fn open_layer(
    blob: &Path,
    media_type: &str,
    digest: &str,
) -> Result<Box<dyn Read + Send>> {
    let compression = layer_compression(media_type, digest)?;
    let file =
        fs::File::open(blob).map_err(|e| Error::io(format!("opening {}", blob.display()), e))?;
    let mut reader = BufReader::with_capacity(128 * 1024, file);
    let head = reader
        .fill_buf()
        .map_err(|e| Error::io(format!("reading {}", blob.display()), e))?;
    let gzip_magic = head.starts_with(&[0x1f, 0x8b]);
    Ok(match compression {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::None if gzip_magic => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::None => Box::new(reader),
    })
}

/// Hashes the uncompressed content of a layer blob and compares it with `diff_id`; content
/// over `max_bytes` is [`Error::LimitExceeded`] (read no further). Returns the uncompressed
/// size.
pub(crate) fn verify_diff_id(
    blob: &Path,
    media_type: &str,
    digest: &str,
    diff_id: &str,
    max_bytes: u64,
) -> Result<u64> {
    let reader = open_layer(blob, media_type, digest)?;
    let bounded = Bounded::new(reader, max_bytes);
    let tripped = bounded.tripped.clone();
    let hashing = HashingReader::new(bounded);
    let result = hashing.finish();
    if tripped.load(Ordering::Relaxed) {
        return Err(limit_exceeded(
            digest,
            format!("the layer decompresses to more than the limit of {max_bytes} bytes"),
        ));
    }
    let (actual, size) =
        result.map_err(|e| corrupt(digest, format!("decompressing the layer: {e}")))?;
    if actual != diff_id {
        return Err(corrupt(
            digest,
            format!("uncompressed content is {actual}, the config says {diff_id}"),
        ));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_reads_up_to_the_limit_and_trips_past_it() {
        let mut exact = Bounded::new(&[7u8; 10][..], 10);
        let mut out = Vec::new();
        exact.read_to_end(&mut out).unwrap();
        assert_eq!((out.len(), exact.read), (10, 10));
        assert!(
            !exact.tripped.load(Ordering::Relaxed),
            "the end at the limit is fine"
        );

        let mut over = Bounded::new(&[7u8; 11][..], 10);
        let err = over.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
        assert!(over.tripped.load(Ordering::Relaxed));
        assert_eq!(over.read, 10);
    }

    #[test]
    fn entry_limits_count_across_layers() {
        let dir = tempfile::tempdir().unwrap();
        let tar = |names: &[&str]| {
            let mut b = tar::Builder::new(Vec::new());
            for name in names {
                let mut h = tar::Header::new_ustar();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(1);
                h.set_path(name).unwrap();
                h.set_cksum();
                b.append(&h, &b"x"[..]).unwrap();
            }
            b.into_inner().unwrap()
        };
        let limits = UnpackLimits {
            max_entries: 3,
            ..UnpackLimits::default()
        };
        let mut unpacker = Unpacker::new(dir.path(), Whiteouts::Apply, false)
            .unwrap()
            .with_limits(&limits, Spent::default());
        unpacker.apply(&tar(&["a", "b"])[..], "l1").unwrap();
        assert_eq!(unpacker.spent().entries, 2);
        assert_eq!(unpacker.spent().file_bytes, 2);
        let err = unpacker.apply(&tar(&["c", "d"])[..], "l2").unwrap_err();
        assert!(matches!(err, Error::LimitExceeded { .. }), "{err:?}");
        assert!(err.to_string().contains("l2"), "names the layer: {err}");
    }

    #[test]
    fn names_with_nul_bytes_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let unpacker = Unpacker::new(dir.path(), Whiteouts::Apply, false).unwrap();
        assert!(matches!(
            unpacker.clean_name(b"etc/pass\0wd"),
            Err(Error::Corrupt { .. })
        ));
        assert_eq!(
            unpacker.clean_name(b"./etc//passwd").unwrap(),
            Path::new("etc/passwd")
        );
    }
}
