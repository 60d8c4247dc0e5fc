//! Container root filesystems built from stored images: an overlay mount over layers unpacked
//! once, or a private copy.
//!
//! Next to a rootfs at `<dir>/<name>` live `<name>.rootfs.json` (what was built, for
//! [`cleanup_rootfs`] after a restart) and, for overlay, `<name>.upper` and `<name>.work`.

use std::ffi::CString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Image;
use super::fsutil::{
    TempPath, create_dir_all, read_dir_names, remove_tree, sha256_digest, write_atomic,
};
use super::store::{Record, Store};
use super::unpack::{Spent, Unpacker, Whiteouts};
use crate::{Error, Result};

/// The longest mount option string the kernel takes (one page, less the terminator).
const MAX_MOUNT_DATA: usize = 4095;

/// How [`Store::prepare_rootfs`] builds a root filesystem.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RootfsMode {
    /// Overlay when this process may mount (root, overlayfs available), else a copy.
    #[default]
    Auto,
    /// An overlayfs mount: the image's layers, each unpacked once under the store's
    /// `layers/`, as read-only lower dirs; a private upper dir next to the target. Needs root.
    ///
    /// Each layer is unpacked on its own (as docker's overlay2 does), so a tar entry that
    /// reaches a path through a *lower* layer's symlink (`lib/x` over `lib -> usr/lib`) lands
    /// in a real directory of its own layer, masking the symlink. Images built by diffing a
    /// filesystem (docker, buildkit) never hold such entries; [`Copy`](Self::Copy) follows the
    /// symlink instead.
    Overlay,
    /// The layers applied in order into the target directory: no mount, works as any user
    /// (ownership and device nodes are then not restored).
    Copy,
}

/// What a [`Rootfs`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootfsKind {
    /// An overlayfs mount.
    Overlay,
    /// A plain directory.
    Copy,
}

/// A container root filesystem made by [`Store::prepare_rootfs`].
#[derive(Debug)]
pub struct Rootfs {
    /// The root directory to hand to the OCI runtime (`root.path` of the spec).
    pub path: PathBuf,
    kind: RootfsKind,
}

impl Rootfs {
    /// Overlay or copy.
    pub fn kind(&self) -> RootfsKind {
        self.kind
    }

    /// Unmounts (overlay) and deletes the rootfs with its upper/work dirs.
    pub fn remove(self) -> Result<()> {
        cleanup_rootfs(&self.path)
    }
}

/// The marker next to a rootfs.
#[derive(Serialize, Deserialize)]
struct Marker {
    kind: RootfsKind,
    image: String,
    /// The store's reference file that keeps the layers from the GC (overlay only).
    #[serde(default)]
    store_ref: Option<PathBuf>,
}

/// The reference an overlay rootfs keeps in the store.
#[derive(Serialize, Deserialize)]
struct StoreRef {
    target: PathBuf,
    layers: Vec<String>,
}

fn sibling(target: &Path, suffix: &str) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    target.with_file_name(name)
}

fn marker_path(target: &Path) -> PathBuf {
    sibling(target, ".rootfs.json")
}

/// Unmounts (when mounted) and deletes the rootfs at `target` with its upper/work dirs and
/// marker; usable after a restart, when only the path is known. A missing rootfs is fine.
pub fn cleanup_rootfs(target: &Path) -> Result<()> {
    let target = std::path::absolute(target)
        .map_err(|e| Error::io(format!("resolving {}", target.display()), e))?;
    let marker_path = marker_path(&target);
    let marker: Option<Marker> = fs::read(&marker_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    unmount(&target)?;
    remove_tree(&target)?;
    remove_tree(&sibling(&target, ".upper"))?;
    remove_tree(&sibling(&target, ".work"))?;
    if let Some(store_ref) = marker.and_then(|m| m.store_ref) {
        remove_tree(&store_ref)?;
    }
    remove_tree(&marker_path)?;
    Ok(())
}

fn unmount(target: &Path) -> Result<()> {
    use rustix::io::Errno;
    use rustix::mount::UnmountFlags;
    match rustix::mount::unmount(target, UnmountFlags::empty()) {
        // Not mounted, gone, or not ours to unmount (no privileges: then it is not a mount we made).
        Ok(()) | Err(Errno::INVAL | Errno::NOENT | Errno::PERM) => Ok(()),
        Err(Errno::BUSY) => rustix::mount::unmount(target, UnmountFlags::DETACH)
            .map_err(|e| Error::io(format!("unmounting {}", target.display()), e.into())),
        Err(e) => Err(Error::io(
            format!("unmounting {}", target.display()),
            e.into(),
        )),
    }
}

/// Builds the rootfs; see [`Store::prepare_rootfs`].
pub(crate) fn prepare(
    store: &Store,
    image: &Image,
    target: &Path,
    mode: RootfsMode,
) -> Result<Rootfs> {
    let target = std::path::absolute(target)
        .map_err(|e| Error::io(format!("resolving {}", target.display()), e))?;
    if target.file_name().is_none() {
        return Err(Error::invalid(
            "target",
            format!("{} names no directory", target.display()),
        ));
    }
    match fs::read_dir(&target) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::invalid(
                    "target",
                    format!(
                        "{} exists and is not empty (cleanup_rootfs first)",
                        target.display()
                    ),
                ));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("inspecting {}", target.display()), e)),
    }
    if let Some(parent) = target.parent() {
        create_dir_all(parent)?;
    }
    let record = store.record(&image.id)?;
    let privileged = rustix::process::geteuid().is_root();

    let kind = match mode {
        RootfsMode::Copy => RootfsKind::Copy,
        RootfsMode::Overlay if !privileged => {
            return Err(Error::Unsupported("an overlay rootfs needs root".into()));
        }
        RootfsMode::Overlay => RootfsKind::Overlay,
        RootfsMode::Auto if privileged && !record.layers.is_empty() => {
            match overlay(store, &record, &target) {
                Ok(()) => {
                    return Ok(Rootfs {
                        path: target,
                        kind: RootfsKind::Overlay,
                    });
                }
                Err(e @ (Error::Io { .. } | Error::Unsupported(_))) => {
                    tracing::info!(target = %target.display(), error = %e, "overlay rootfs failed, copying instead");
                    cleanup_rootfs(&target)?;
                    RootfsKind::Copy
                }
                Err(e) => {
                    let _ = cleanup_rootfs(&target);
                    return Err(e);
                }
            }
        }
        RootfsMode::Auto => RootfsKind::Copy,
    };
    let result = match kind {
        RootfsKind::Overlay => overlay(store, &record, &target),
        RootfsKind::Copy => copy(store, &record, &target, privileged),
    };
    if let Err(e) = result {
        let _ = cleanup_rootfs(&target);
        return Err(e);
    }
    Ok(Rootfs { path: target, kind })
}

fn copy(store: &Store, record: &Record, target: &Path, privileged: bool) -> Result<()> {
    let _lease = store.lease(record.layers.iter().map(|l| l.blob.digest.as_str()));
    write_atomic(
        &marker_path(target),
        &marker_bytes(&Marker {
            kind: RootfsKind::Copy,
            image: record.id.clone(),
            store_ref: None,
        })?,
    )?;
    let mut unpacker = Unpacker::new(target, Whiteouts::Apply, privileged)?
        .with_limits(store.limits(), Spent::default());
    for layer in &record.layers {
        unpacker.apply_blob(
            &store.blob_path(&layer.blob.digest),
            &layer.blob.media_type,
            &layer.blob.digest,
            &layer.diff_id,
        )?;
    }
    unpacker.finish()
}

fn overlay(store: &Store, record: &Record, target: &Path) -> Result<()> {
    if record.layers.is_empty() {
        return Err(Error::Unsupported(
            "an overlay rootfs needs at least one layer".into(),
        ));
    }
    let mut lease = store.lease(record.layers.iter().map(|l| l.blob.digest.as_str()));
    lease.extend(record.layers.iter().map(|l| l.diff_id.as_str()));
    let mut lower = Vec::new();
    // One budget for all the layers this rootfs unpacks.
    let mut spent = Spent::default();
    for layer in record.layers.iter().rev() {
        lower.push(unpacked_layer(store, layer, &mut spent)?);
    }

    let upper = sibling(target, ".upper");
    let work = sibling(target, ".work");
    let mut options = String::from("lowerdir=");
    for (i, dir) in lower.iter().enumerate() {
        if i > 0 {
            options.push(':');
        }
        options.push_str(&mount_path(dir)?);
    }
    options.push_str(&format!(
        ",upperdir={},workdir={}",
        mount_path(&upper)?,
        mount_path(&work)?
    ));
    if options.len() > MAX_MOUNT_DATA {
        return Err(Error::Unsupported(format!(
            "{} layers make an overlay mount option of {} bytes, over the kernel's {MAX_MOUNT_DATA}",
            lower.len(),
            options.len()
        )));
    }

    for dir in [target, upper.as_path(), work.as_path()] {
        create_dir_all(dir)?;
    }
    // Record the layers in the store before mounting, so the GC never deletes a lower dir
    // (the GC drops references whose target does not exist: it does by now).
    let store_ref = store.root().join("rootfs").join(format!(
        "{}.json",
        &sha256_digest(target.as_os_str().as_encoded_bytes())[7..39]
    ));
    let layers = record.layers.iter().map(|l| l.diff_id.clone()).collect();
    let ref_bytes = serde_json::to_vec(&StoreRef {
        target: target.to_path_buf(),
        layers,
    })
    .map_err(|e| Error::io("encoding a rootfs reference", io::Error::other(e)))?;
    write_atomic(&store_ref, &ref_bytes)?;
    write_atomic(
        &marker_path(target),
        &marker_bytes(&Marker {
            kind: RootfsKind::Overlay,
            image: record.id.clone(),
            store_ref: Some(store_ref),
        })?,
    )?;
    let data =
        CString::new(options).map_err(|_| Error::invalid("target", "path holds a NUL byte"))?;
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        rustix::mount::MountFlags::empty(),
        data.as_c_str(),
    )
    .map_err(|e| {
        Error::io(
            format!("mounting overlay on {}", target.display()),
            e.into(),
        )
    })?;
    Ok(())
}

/// A path as an overlay mount option: `:` and `,` separate options and lower dirs.
fn mount_path(path: &Path) -> Result<String> {
    let s = path
        .to_str()
        .ok_or_else(|| Error::Unsupported(format!("{} is not UTF-8", path.display())))?;
    if s.contains([':', ',']) {
        return Err(Error::Unsupported(format!(
            "{s}: overlay paths may not contain ':' or ','"
        )));
    }
    Ok(s.to_string())
}

fn marker_bytes(marker: &Marker) -> Result<Vec<u8>> {
    serde_json::to_vec(marker)
        .map_err(|e| Error::io("encoding a rootfs marker", io::Error::other(e)))
}

/// The layer unpacked in overlay form under `layers/`, unpacking it first when needed.
/// A half-unpacked layer is removed (it never gets its final name).
fn unpacked_layer(
    store: &Store,
    layer: &super::store::LayerRecord,
    spent: &mut Spent,
) -> Result<PathBuf> {
    let dir = store.layer_dir(&layer.diff_id);
    if dir.is_dir() {
        return Ok(dir);
    }
    let tmp = TempPath::new(store.temp_path("layer"));
    let mut unpacker =
        Unpacker::new(tmp.path(), Whiteouts::Overlay, true)?.with_limits(store.limits(), *spent);
    unpacker.apply_blob(
        &store.blob_path(&layer.blob.digest),
        &layer.blob.media_type,
        &layer.blob.digest,
        &layer.diff_id,
    )?;
    *spent = unpacker.spent();
    unpacker.finish()?;
    match fs::rename(tmp.path(), &dir) {
        Ok(()) => tmp.keep(),
        // Another rootfs unpacked the same layer meanwhile: theirs is as good (ours goes).
        Err(_) if dir.is_dir() => {}
        Err(e) => return Err(Error::io(format!("storing layer {}", dir.display()), e)),
    }
    Ok(dir)
}

/// The diff ids that mounted overlay rootfs use; references whose rootfs is gone are deleted.
pub(crate) fn live_layers(refs_dir: &Path) -> Result<Vec<String>> {
    let mut layers = Vec::new();
    for (name, path) in read_dir_names(refs_dir)? {
        if !name.ends_with(".json") {
            continue;
        }
        let parsed: Option<StoreRef> = fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        match parsed {
            Some(r) if r.target.exists() => layers.extend(r.layers),
            _ => remove_tree(&path)?,
        }
    }
    Ok(layers)
}
