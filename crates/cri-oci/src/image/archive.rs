//! Importing OCI image layout archives (`oci-layout`, `index.json`, `blobs/sha256/*` in a tar).

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use super::config::Platform;
use super::fsutil::{HashingWriter, TempPath, sha256_digest};
use super::manifest::{self, CONTAINERD_NAME_ANNOTATION, Descriptor, Parsed, REF_NAME_ANNOTATION};
use super::reference::Reference;
use super::store::{LayerRecord, NewImage, Record, Store, diff_ids, parse_config};
use super::{Image, unpack};
use crate::{Error, Result};

/// `index.json` and manifests larger than this are refused.
const MAX_DOCUMENT_SIZE: u64 = 8 << 20;
const MAX_INDEX_DEPTH: usize = 4;

pub(crate) fn import(store: &Store, tar: &Path) -> Result<Vec<Image>> {
    let archive_name = tar.display().to_string();
    let corrupt = |reason: String| Error::Corrupt {
        digest: archive_name.clone(),
        reason,
    };
    let file =
        fs::File::open(tar).map_err(|e| Error::io(format!("opening {}", tar.display()), e))?;
    let mut archive = tar::Archive::new(io::BufReader::with_capacity(256 * 1024, file));
    let mut lease = store.lease([]);
    // Bytes of blobs this import stored, bounded by the store's limit.
    let mut stored = 0u64;
    let mut index_json = None;
    let mut saw_layout = false;
    let mut docker_manifest = false;
    // Blobs this import stored (their diff ids still need checking).
    let mut fresh = HashSet::new();

    let entries = archive
        .entries()
        .map_err(|e| corrupt(format!("not a tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(format!("bad tar entry: {e}")))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = clean(
            &entry
                .path()
                .map_err(|e| corrupt(format!("bad entry name: {e}")))?,
        );
        let Some(path) = path else { continue };
        match path.to_str() {
            Some("oci-layout") => saw_layout = true,
            Some("index.json") => {
                let mut data = Vec::new();
                entry
                    .by_ref()
                    .take(MAX_DOCUMENT_SIZE + 1)
                    .read_to_end(&mut data)
                    .map_err(|e| corrupt(format!("reading index.json: {e}")))?;
                if data.len() as u64 > MAX_DOCUMENT_SIZE {
                    return Err(corrupt("index.json is too large".into()));
                }
                index_json = Some(data);
            }
            Some("manifest.json") => docker_manifest = true,
            Some(p) => {
                if let Some(hex) = p.strip_prefix("blobs/sha256/") {
                    let digest = format!("sha256:{hex}");
                    manifest::check_sha256(&digest)?;
                    lease.extend([digest.as_str()]);
                    if !store.has_blob(&digest) {
                        let left = store.limits().max_bytes.saturating_sub(stored);
                        stored += store_blob(store, &mut entry, &digest, left)?;
                        fresh.insert(digest);
                    }
                }
            }
            None => {}
        }
    }
    let Some(index_json) = index_json else {
        return Err(if docker_manifest && !saw_layout {
            Error::Unsupported(format!(
                "{archive_name}: a `docker save` archive without an OCI layout; only OCI image layouts import"
            ))
        } else {
            corrupt("no index.json: not an OCI image layout".into())
        });
    };
    let Parsed::Index(entries) = manifest::parse(&index_json, "index.json")? else {
        return Err(corrupt("index.json is not an image index".into()));
    };

    let platform = Platform::host();
    let mut images = Vec::new();
    for entry in entries {
        let name = entry_name(&entry.annotations)?;
        let display = name
            .as_ref()
            .map_or_else(|| entry.digest.clone(), ToString::to_string);
        let new = resolve_entry(store, &entry, &platform, &display, &fresh, &mut lease)?;
        let mut record = new.record;
        if let Some(name) = &name {
            if name.digest().is_none() {
                record.repo_tags.push(name.to_string());
            }
            record
                .repo_digests
                .push(name.with_digest(&entry.digest).to_string());
        }
        let image = store.commit(NewImage {
            record,
            config: new.config,
        })?;
        images.push(image);
    }
    drop(lease);
    Ok(images)
}

/// A tar entry name as a relative path (`None` for names climbing out or absolute ones, which
/// are no layout file anyway).
fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Copies a blob out of the archive into the store, verifying its digest; a blob over
/// `max_bytes` is [`Error::LimitExceeded`] (nothing written). Returns its size.
fn store_blob(
    store: &Store,
    entry: &mut tar::Entry<'_, impl Read>,
    digest: &str,
    max_bytes: u64,
) -> Result<u64> {
    if entry.size() > max_bytes {
        return Err(Error::LimitExceeded {
            digest: digest.to_string(),
            reason: format!(
                "the archive's blob of {} bytes takes the import over the limit of {} bytes",
                entry.size(),
                store.limits().max_bytes
            ),
        });
    }
    let tmp = TempPath::new(store.temp_path("import"));
    let file = fs::File::create(tmp.path())
        .map_err(|e| Error::io(format!("creating {}", tmp.path().display()), e))?;
    let mut writer = HashingWriter::new(io::BufWriter::new(file));
    io::copy(entry, &mut writer).map_err(|e| Error::Corrupt {
        digest: digest.to_string(),
        reason: format!("reading the blob from the archive: {e}"),
    })?;
    let (buffered, actual, size) = writer.finish();
    let file = buffered
        .into_inner()
        .map_err(|e| Error::io(format!("writing {}", tmp.path().display()), e.into_error()))?;
    file.sync_all()
        .map_err(|e| Error::io(format!("syncing {}", tmp.path().display()), e))?;
    if actual != digest {
        return Err(Error::Corrupt {
            digest: digest.to_string(),
            reason: format!("the archive's blob hashes to {actual}"),
        });
    }
    store.commit_blob(tmp.path(), digest)?;
    tmp.keep();
    Ok(size)
}

/// The name an index entry gives its image, if it gives one.
fn entry_name(annotations: &BTreeMap<String, String>) -> Result<Option<Reference>> {
    if let Some(name) = annotations.get(CONTAINERD_NAME_ANNOTATION) {
        return Reference::parse(name).map(Some);
    }
    match annotations.get(REF_NAME_ANNOTATION) {
        // A bare tag ("1.35") names no repository.
        Some(name) if name.contains(['/', ':', '@']) => Reference::parse(name).map(Some),
        _ => Ok(None),
    }
}

/// Reads a manifest or index blob the archive brought.
fn read_document(store: &Store, desc: &Descriptor) -> Result<Vec<u8>> {
    desc.check_digest()?;
    let path = store.blob_path(&desc.digest);
    let meta = fs::metadata(&path).map_err(|_| Error::Corrupt {
        digest: desc.digest.clone(),
        reason: "blob missing from the archive".into(),
    })?;
    if meta.len() > MAX_DOCUMENT_SIZE {
        return Err(Error::Corrupt {
            digest: desc.digest.clone(),
            reason: format!("document of {} bytes is too large", meta.len()),
        });
    }
    fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
}

/// Follows an index entry to an image manifest and checks everything it needs is present.
fn resolve_entry(
    store: &Store,
    entry: &Descriptor,
    platform: &Platform,
    display: &str,
    fresh: &HashSet<String>,
    lease: &mut super::store::Lease,
) -> Result<NewImage> {
    let mut indexes = Vec::new();
    let mut desc = entry.clone();
    let (bytes, config_desc, layers) = loop {
        let bytes = read_document(store, &desc)?;
        if sha256_digest(&bytes) != desc.digest {
            return Err(Error::Corrupt {
                digest: desc.digest.clone(),
                reason: "content does not match its digest".into(),
            });
        }
        match manifest::parse(&bytes, &desc.digest)? {
            Parsed::Manifest { config, layers } => break (bytes, config, layers),
            Parsed::Index(entries) => {
                if indexes.len() >= MAX_INDEX_DEPTH {
                    return Err(Error::Corrupt {
                        digest: desc.digest.clone(),
                        reason: "indexes nested too deep".into(),
                    });
                }
                indexes.push(desc.digest.clone());
                desc = manifest::select_platform(&entries, platform, display)?;
            }
        }
    };
    let config_bytes = read_document(store, &config_desc)?;
    let config = parse_config(&config_bytes, &config_desc.digest)?;
    let diff_ids = diff_ids(&config, &config_desc.digest, layers.len())?;
    lease.extend(diff_ids.iter().map(String::as_str));
    for (layer, diff_id) in layers.iter().zip(&diff_ids) {
        if !store.has_blob(&layer.digest) {
            return Err(Error::Corrupt {
                digest: layer.digest.clone(),
                reason: "layer blob missing from the archive".into(),
            });
        }
        if fresh.contains(&layer.digest) {
            unpack::verify_diff_id(
                &store.blob_path(&layer.digest),
                &layer.media_type,
                &layer.digest,
                diff_id,
                store.limits().max_bytes,
            )?;
        } else {
            manifest::layer_compression(&layer.media_type, &layer.digest)?;
        }
    }
    let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|m| m.as_str())
                .map(String::from)
        })
        .unwrap_or_else(|| manifest::OCI_MANIFEST.to_string());
    Ok(NewImage {
        record: Record {
            id: config_desc.digest.clone(),
            manifest: Descriptor {
                media_type,
                digest: desc.digest.clone(),
                size: bytes.len() as i64,
                platform: None,
                annotations: BTreeMap::new(),
            },
            config: config_desc,
            layers: layers
                .into_iter()
                .zip(diff_ids)
                .map(|(blob, diff_id)| LayerRecord { blob, diff_id })
                .collect(),
            indexes,
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
        },
        config,
    })
}
