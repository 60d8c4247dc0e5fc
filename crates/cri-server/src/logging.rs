//! Log set-up for runtime binaries (feature `logging`): what a daemon's logs need to be read
//! by people on a terminal and by log shippers from a file.
//!
//! - `text`: one human-readable line per event; colour only when stderr is a terminal and
//!   `NO_COLOR` is unset or empty, so a log redirected to a file has no escape sequences;
//! - `json`: one JSON object per line (timestamp, level, target, fields, span), for shippers.
//!
//! The level filter comes from `RUST_LOG` (default `info`).
//!
//! ```no_run
//! use cri_server::logging::{self, LogFormat};
//!
//! let format: LogFormat = "json".parse().unwrap();
//! logging::init(format);
//! tracing::info!(socket = "/run/my-runtime.sock", "serving");
//! ```

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, coloured only on a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The names [`LogFormat`] parses from, for command-line help.
    pub const NAMES: [&'static str; 2] = ["text", "json"];
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?} (expected one of: {})",
                Self::NAMES.join(", ")
            )),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// Whether text logs get colour: only on a terminal, and never when `NO_COLOR` holds a
/// non-empty value (the `NO_COLOR` convention).
///
/// ```
/// use cri_server::logging::use_colour;
///
/// assert!(use_colour(true, None));
/// assert!(!use_colour(false, None), "a file or a pipe");
/// assert!(!use_colour(true, Some("1")));
/// assert!(use_colour(true, Some("")), "an empty NO_COLOR does not count");
/// ```
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<&str>) -> bool {
    stderr_is_terminal && no_color.is_none_or(str::is_empty)
}

/// Installs a global subscriber writing to stderr in `format`, filtered by `RUST_LOG`
/// (default `info`). Does nothing when a subscriber is already installed.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Fails only when a subscriber is already installed; the first one stays.
    let _ = match format {
        LogFormat::Text => {
            let no_color = std::env::var("NO_COLOR").ok();
            builder
                .with_ansi(use_colour(
                    std::io::stderr().is_terminal(),
                    no_color.as_deref(),
                ))
                .try_init()
        }
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_print() {
        for name in LogFormat::NAMES {
            assert_eq!(name.parse::<LogFormat>().unwrap().to_string(), name);
        }
        let err = "yaml".parse::<LogFormat>().unwrap_err();
        assert!(err.contains("text, json"), "{err}");
    }
}
