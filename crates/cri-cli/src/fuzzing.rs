//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): thin wrappers around
//! the crate-internal parsers, so that they need not be public. No stability promise.

use std::path::Path;
use std::time::Duration;

use crate::cli::GlobalArgs;
use crate::config::{self, ConfigFile};

/// The `--timeout` / config file duration parser.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    config::parse_duration(text)
}

/// The `--memory` size parser.
pub fn parse_memory(text: &str) -> Result<i64, String> {
    config::parse_memory(text)
}

/// Parses a config file's YAML text and resolves the settings from it as a command without
/// flags would (every socket path counts as existing). Returns the error text on failure.
pub fn parse_config(text: &str) -> Result<(), String> {
    let file = ConfigFile::parse(text, Path::new("crictl.yaml")).map_err(|e| e.to_string())?;
    let global = GlobalArgs {
        runtime_endpoint: None,
        image_endpoint: None,
        timeout: None,
        debug: false,
        config: None,
    };
    config::resolve(&global, &file, |_| true)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
