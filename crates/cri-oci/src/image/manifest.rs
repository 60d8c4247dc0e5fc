//! The JSON documents of the distribution and image specs that pulls and imports read:
//! indexes (manifest lists), manifests and descriptors, OCI and Docker v2 flavours alike.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::Platform;
use crate::{Error, Result};

/// OCI image index.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker v2 manifest list.
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker v2 schema 2 manifest.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// What a pull asks registries for, in order of preference.
pub(crate) const ACCEPTED_MANIFESTS: &[&str] =
    &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// The annotation naming the image an index entry of an OCI layout is (full or tag only).
pub(crate) const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation with the full image name, next to a tag-only `ref.name`.
pub(crate) const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";

/// A content descriptor: what a manifest or index points at.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub(crate) media_type: String,
    pub(crate) digest: String,
    pub(crate) size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) platform: Option<PlatformSpec>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// The size, refusing negative ones.
    pub(crate) fn size(&self) -> Result<u64> {
        u64::try_from(self.size).map_err(|_| Error::Corrupt {
            digest: self.digest.clone(),
            reason: format!("negative size {} in a descriptor", self.size),
        })
    }

    /// Checks the digest is a well-formed `sha256:<hex>` one (the only algorithm stored).
    pub(crate) fn check_digest(&self) -> Result<()> {
        check_sha256(&self.digest)
    }
}

/// Checks `digest` is `sha256:` and 64 lowercase hex digits.
pub(crate) fn check_sha256(digest: &str) -> Result<()> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(())
        }
        _ if digest.contains(':') && !digest.starts_with("sha256:") => Err(Error::Unsupported(
            format!("digest {digest:?}: only sha256 content is supported"),
        )),
        _ => Err(Error::Corrupt {
            digest: digest.to_string(),
            reason: "malformed digest, expected sha256:<64 hex digits>".into(),
        }),
    }
}

/// The platform of an index entry.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub(crate) struct PlatformSpec {
    #[serde(default)]
    pub(crate) architecture: String,
    #[serde(default)]
    pub(crate) os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) variant: Option<String>,
}

/// Any of the four manifest documents, read leniently.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    #[serde(default)]
    schema_version: Option<i64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// A parsed manifest document.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// An index / manifest list: one entry per platform.
    Index(Vec<Descriptor>),
    /// An image manifest.
    Manifest {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

/// Parses a manifest or index fetched under `digest`.
pub(crate) fn parse(bytes: &[u8], digest: &str) -> Result<Parsed> {
    let corrupt = |reason: String| Error::Corrupt {
        digest: digest.to_string(),
        reason,
    };
    let doc: Document = serde_json::from_slice(bytes)
        .map_err(|e| corrupt(format!("manifest is not valid JSON: {e}")))?;
    if doc.schema_version == Some(1) {
        return Err(Error::Unsupported(format!(
            "manifest {digest}: Docker image manifest schema 1 is deprecated and not supported"
        )));
    }
    let media_type = doc.media_type.as_deref().unwrap_or_default();
    let is_index = match media_type {
        OCI_INDEX | DOCKER_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        "" => doc.manifests.is_some(),
        other => {
            return Err(Error::Unsupported(format!(
                "manifest {digest}: media type {other:?} is not an image"
            )));
        }
    };
    if is_index {
        let entries = doc
            .manifests
            .ok_or_else(|| corrupt("index without \"manifests\"".into()))?;
        for entry in &entries {
            entry.check_digest()?;
            entry.size()?;
        }
        return Ok(Parsed::Index(entries));
    }
    let config = doc
        .config
        .ok_or_else(|| corrupt("manifest without \"config\"".into()))?;
    config.check_digest()?;
    config.size()?;
    let layers = doc.layers.unwrap_or_default();
    for layer in &layers {
        layer.check_digest()?;
        layer.size()?;
    }
    Ok(Parsed::Manifest { config, layers })
}

/// Picks the entry of an index that best suits `platform`.
///
/// Entries without a platform (attestations, artifacts) are never picked. When nothing
/// matches the error is [`Error::NotInRegistry`] listing what the index offers.
pub(crate) fn select_platform(
    entries: &[Descriptor],
    platform: &Platform,
    reference: &str,
) -> Result<Descriptor> {
    let mut best: Option<(u32, &Descriptor)> = None;
    for entry in entries {
        let Some(p) = &entry.platform else { continue };
        if entry
            .annotations
            .get("vnd.docker.reference.type")
            .is_some_and(|t| t == "attestation-manifest")
        {
            continue;
        }
        if let Some(score) = platform.score(&p.os, &p.architecture, p.variant.as_deref())
            && best.is_none_or(|(s, _)| score > s)
        {
            best = Some((score, entry));
        }
    }
    match best {
        Some((_, entry)) => Ok(entry.clone()),
        None => {
            let offered: Vec<String> = entries
                .iter()
                .filter_map(|e| e.platform.as_ref())
                .map(|p| match &p.variant {
                    Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                    None => format!("{}/{}", p.os, p.architecture),
                })
                .collect();
            Err(Error::NotInRegistry {
                reference: reference.to_string(),
                reason: format!(
                    "no manifest for platform {platform} (the index has: {})",
                    if offered.is_empty() {
                        "none".to_string()
                    } else {
                        offered.join(", ")
                    }
                ),
            })
        }
    }
}

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compression {
    /// A plain tar.
    None,
    /// tar+gzip.
    Gzip,
}

/// The compression of a layer of media type `media_type`; anything that is not a filesystem
/// layer this crate can apply is [`Error::Unsupported`].
pub(crate) fn layer_compression(media_type: &str, digest: &str) -> Result<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Ok(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
            Err(Error::Unsupported(format!(
                "layer {digest}: zstd-compressed layers are not supported yet"
            )))
        }
        other => Err(Error::Unsupported(format!(
            "layer {digest}: media type {other:?} is not a filesystem layer"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(os: &str, arch: &str, variant: Option<&str>, n: u8) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", format!("{n:02x}").repeat(32)),
            size: 1,
            platform: Some(PlatformSpec {
                architecture: arch.into(),
                os: os.into(),
                variant: variant.map(String::from),
            }),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn picks_the_matching_platform_or_says_what_exists() {
        let entries = [
            entry("linux", "arm", Some("v6"), 1),
            entry("linux", "arm64", Some("v8"), 2),
            entry("linux", "arm", Some("v7"), 3),
        ];
        let arm: Platform = "linux/arm/v7".parse().unwrap();
        assert_eq!(select_platform(&entries, &arm, "x").unwrap(), entries[2]);
        let amd64: Platform = "linux/amd64".parse().unwrap();
        let err = select_platform(&entries, &amd64, "x").unwrap_err();
        assert!(matches!(err, Error::NotInRegistry { .. }));
        assert!(err.to_string().contains("linux/arm64/v8"), "{err}");
    }

    #[test]
    fn layer_media_types() {
        let d = "sha256:00";
        assert_eq!(
            layer_compression("application/vnd.docker.image.rootfs.diff.tar.gzip", d).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar", d).unwrap(),
            Compression::None
        );
        let err = layer_compression("application/vnd.oci.image.layer.v1.tar+zstd", d).unwrap_err();
        assert!(
            matches!(err, Error::Unsupported(_)) && err.to_string().contains("zstd"),
            "{err}"
        );
        let err = layer_compression("application/vnd.cncf.helm.chart.content.v1.tar+gzip", d)
            .unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err}");
    }

    #[test]
    fn schema1_and_garbage_are_refused() {
        let digest = format!("sha256:{}", "0".repeat(64));
        assert!(matches!(
            parse(br#"{"schemaVersion":1,"fsLayers":[]}"#, &digest),
            Err(Error::Unsupported(_))
        ));
        assert!(matches!(
            parse(b"not json", &digest),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            parse(
                br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#,
                &digest
            ),
            Err(Error::Corrupt { .. })
        ));
    }
}
