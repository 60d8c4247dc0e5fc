//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): thin wrappers around
//! the crate-internal parsers, so that they need not be public. No stability promise.

use std::path::Path;

use super::config::Platform;
use super::manifest::{self, Parsed};
use super::store;
use super::unpack::{Unpacker, Whiteouts, open_layer};
use crate::Result;

/// The digest fuzzed documents are said to have been fetched under.
const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// Parses a manifest or index as a pull does; for an index also picks the entry for
/// `platform` (or the host's), for a manifest also classifies every layer's compression.
/// Returns the number of entries (index) or layers (manifest).
pub fn parse_manifest(bytes: &[u8], platform: Option<&Platform>) -> Result<usize> {
    match manifest::parse(bytes, DIGEST)? {
        Parsed::Index(entries) => {
            let host = Platform::host();
            let _ = manifest::select_platform(&entries, platform.unwrap_or(&host), "fuzz")?;
            Ok(entries.len())
        }
        Parsed::Manifest { layers, .. } => {
            for layer in &layers {
                let _ = manifest::layer_compression(&layer.media_type, &layer.digest)?;
            }
            Ok(layers.len())
        }
    }
}

/// Parses an image config as a pull does and checks its diff ids against `layers` layers.
/// Returns the diff ids.
pub fn parse_config(bytes: &[u8], layers: usize) -> Result<Vec<String>> {
    let config = store::parse_config(bytes, DIGEST)?;
    store::diff_ids(&config, DIGEST, layers)
}

/// Applies the layer blobs (files, with their media types) one after the other into `root`
/// (copy-rootfs mode, unprivileged), as an image's root filesystem is made.
pub fn unpack_layers(root: &Path, blobs: &[(&Path, &str)]) -> Result<()> {
    let mut unpacker = Unpacker::new(root, Whiteouts::Apply, false)?;
    for (blob, media_type) in blobs {
        let reader = open_layer(blob, media_type, DIGEST)?;
        unpacker.apply(reader, DIGEST)?;
    }
    unpacker.finish()
}
