//! The fake's image store: reference normalisation and lookup by tag, id or digest.

use std::collections::BTreeMap;

use cri_api::v1::{Image, ImageSpec, Int64Value};
use sha2::{Digest, Sha256};

/// Normalises an image reference the way containerd and docker do:
/// `busybox` → `docker.io/library/busybox:latest`, `quay.io/x/y` → `quay.io/x/y:latest`;
/// references with a digest keep it and get no tag.
pub fn normalize(reference: &str) -> String {
    let (name, digest) = match reference.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (reference, None),
    };
    // A tag is a ':' after the last '/'.
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    let first = repo.split('/').next().unwrap_or("");
    let has_registry =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let repo = if has_registry {
        repo.to_string()
    } else if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    };
    match (digest, tag) {
        (Some(digest), _) => format!("{repo}@{digest}"),
        (None, Some(tag)) => format!("{repo}:{tag}"),
        (None, None) => format!("{repo}:latest"),
    }
}

fn hex_digest(data: &str) -> String {
    let digest = Sha256::digest(data.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn repository(normalized: &str) -> &str {
    if let Some((repo, _)) = normalized.split_once('@') {
        return repo;
    }
    let last_slash = normalized.rfind('/').map_or(0, |i| i + 1);
    match normalized[last_slash..].rfind(':') {
        Some(i) => &normalized[..last_slash + i],
        None => normalized,
    }
}

/// Images by id.
#[derive(Debug, Default)]
pub(crate) struct ImageStore {
    images: BTreeMap<String, Image>,
}

impl ImageStore {
    /// "Pulls" `reference`: the same reference always yields the same id, digest and size.
    /// Returns the image id.
    pub(crate) fn pull(&mut self, reference: &str) -> String {
        if let Some(image) = self.find(reference) {
            return image.id.clone();
        }
        let normalized = normalize(reference);
        let repo = repository(&normalized).to_string();
        let content = hex_digest(&format!("content:{normalized}"));
        let id = format!("sha256:{}", hex_digest(&format!("config:{normalized}")));
        let digest = format!("{repo}@sha256:{content}");
        let tags = if normalized.contains('@') {
            Vec::new()
        } else {
            vec![normalized.clone()]
        };
        let size = 1_000_000 + u64::from_str_radix(&content[..5], 16).unwrap_or(0) * 16;
        let image = self.images.entry(id.clone()).or_insert_with(|| Image {
            id: id.clone(),
            repo_tags: Vec::new(),
            repo_digests: vec![digest],
            size,
            uid: Some(Int64Value { value: 0 }),
            username: String::new(),
            spec: Some(ImageSpec {
                image: id.clone(),
                ..Default::default()
            }),
            pinned: false,
        });
        for tag in tags {
            if !image.repo_tags.contains(&tag) {
                image.repo_tags.push(tag);
            }
        }
        id
    }

    /// Finds an image by id (`sha256:…`, bare hex, or a unique prefix of at least 6
    /// characters), by tag, or by digest reference.
    pub(crate) fn find(&self, reference: &str) -> Option<&Image> {
        if reference.is_empty() {
            return None;
        }
        let bare = reference.strip_prefix("sha256:").unwrap_or(reference);
        if bare.len() >= 6 && bare.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut matches = self
                .images
                .values()
                .filter(|i| i.id.trim_start_matches("sha256:").starts_with(bare));
            if let (Some(image), None) = (matches.next(), matches.next()) {
                return Some(image);
            }
        }
        let normalized = normalize(reference);
        self.images.values().find(|image| {
            image.repo_tags.contains(&normalized) || image.repo_digests.contains(&normalized)
        })
    }

    /// Removes the image `reference` names, with all its tags. Returns whether one existed.
    pub(crate) fn remove(&mut self, reference: &str) -> bool {
        let Some(id) = self.find(reference).map(|i| i.id.clone()) else {
            return false;
        };
        self.images.remove(&id).is_some()
    }

    pub(crate) fn list(&self) -> impl Iterator<Item = &Image> {
        self.images.values()
    }

    pub(crate) fn total_size(&self) -> u64 {
        self.images.values().map(|i| i.size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization() {
        assert_eq!(normalize("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalize("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(
            normalize("library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize("quay.io/coreos/etcd"),
            "quay.io/coreos/etcd:latest"
        );
        assert_eq!(normalize("localhost:5000/app:v2"), "localhost:5000/app:v2");
        assert_eq!(
            normalize("registry.k8s.io/pause:3.10"),
            "registry.k8s.io/pause:3.10"
        );
        assert_eq!(
            normalize("busybox@sha256:abc"),
            "docker.io/library/busybox@sha256:abc"
        );
    }

    #[test]
    fn pull_is_deterministic_and_lookups_work() {
        let mut store = ImageStore::default();
        let id = store.pull("busybox");
        assert_eq!(
            store.pull("docker.io/library/busybox:latest"),
            id,
            "same image"
        );
        let image = store.find("busybox").unwrap().clone();
        assert_eq!(image.repo_tags, ["docker.io/library/busybox:latest"]);
        assert_eq!(store.find(&id).unwrap().id, id);
        assert_eq!(store.find(&id[7..19]).unwrap().id, id, "id prefix");
        assert_eq!(store.find(&image.repo_digests[0]).unwrap().id, id, "digest");
        assert!(store.find("alpine").is_none());

        let other = store.pull("busybox:1.36");
        assert_ne!(other, id);
        assert!(store.remove("busybox"));
        assert!(!store.remove("busybox"));
        assert!(store.find(&other).is_some());
    }
}
