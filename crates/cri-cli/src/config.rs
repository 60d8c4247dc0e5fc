//! Where the endpoints, the timeout and debug logging come from: flag > environment >
//! config file (crictl.yaml) > default.
//!
//! The environment (`CONTAINER_RUNTIME_ENDPOINT`, `IMAGE_SERVICE_ENDPOINT`,
//! `CRI_CONFIG_FILE`) is read by clap into the same fields as the flags, flags first; this
//! module adds the config file and the defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::GlobalArgs;
use crate::error::{CliError, Result};

/// The config file read when `--config` is not given (crictl's).
pub(crate) const DEFAULT_CONFIG_PATH: &str = "/etc/crictl.yaml";

/// The per-call timeout when none is configured: the kubelet's 2 minutes. (crictl's 2 s
/// default is a known source of `DeadlineExceeded` on `runp` and `pull`.)
pub(crate) const DEFAULT_TIMEOUT: Duration = cri_client::DEFAULT_TIMEOUT;

/// The longest a connection attempt may take.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The settings a command runs with, every source applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    /// The runtime service's endpoint.
    pub(crate) runtime_endpoint: String,
    /// The image service's endpoint.
    pub(crate) image_endpoint: String,
    /// The base per-call timeout; `None` for no deadline.
    pub(crate) timeout: Option<Duration>,
    /// Whether to log to stderr.
    pub(crate) debug: bool,
}

impl Settings {
    /// How long connecting may take: the timeout, at most 10 s.
    pub(crate) fn connect_timeout(&self) -> Duration {
        self.timeout
            .map_or(MAX_CONNECT_TIMEOUT, |t| t.min(MAX_CONNECT_TIMEOUT))
    }
}

/// The keys of crictl.yaml this tool reads (others, such as `pull-image-on-create`, are
/// accepted and ignored).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct ConfigFile {
    /// `runtime-endpoint`.
    #[serde(default)]
    pub(crate) runtime_endpoint: Option<String>,
    /// `image-endpoint`.
    #[serde(default)]
    pub(crate) image_endpoint: Option<String>,
    /// `timeout`: seconds (crictl's) or a duration such as `2m`; 0 means unset.
    #[serde(default)]
    pub(crate) timeout: Option<TimeoutValue>,
    /// `debug`.
    #[serde(default)]
    pub(crate) debug: Option<bool>,
}

/// A `timeout` as the config file may give it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub(crate) enum TimeoutValue {
    /// Seconds, as crictl writes it.
    Seconds(u64),
    /// A duration text: `2m`, `30s`.
    Text(String),
}

impl ConfigFile {
    /// Parses the YAML text of a config file.
    pub(crate) fn parse(text: &str, path: &Path) -> Result<Self> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_norway::from_str(text)
            .map_err(|err| CliError::msg(format!("invalid config file {}: {err}", path.display())))
    }

    /// Reads the config file: `path` when given (it must exist), else
    /// [`DEFAULT_CONFIG_PATH`] when it exists.
    pub(crate) fn load(path: Option<&Path>) -> Result<Self> {
        let (path, required) = match path {
            Some(path) => (path.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path),
            Err(err) if !required && err.kind() == std::io::ErrorKind::NotFound => {
                Ok(Self::default())
            }
            Err(err) => Err(CliError::msg(format!(
                "cannot read config file {}: {err}",
                path.display()
            ))),
        }
    }

    fn timeout(&self) -> Result<Option<Duration>> {
        match &self.timeout {
            None | Some(TimeoutValue::Seconds(0)) => Ok(None),
            Some(TimeoutValue::Seconds(secs)) => Ok(Some(Duration::from_secs(*secs))),
            Some(TimeoutValue::Text(text)) => {
                let d = parse_duration(text)
                    .map_err(|err| CliError::msg(format!("config file timeout: {err}")))?;
                Ok((!d.is_zero()).then_some(d))
            }
        }
    }
}

fn non_empty(value: Option<&String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty()).cloned()
}

/// Applies flag/environment values over the config file over the defaults. Without an
/// endpoint anywhere, the first default socket for which `exists` holds is used.
pub(crate) fn resolve(
    global: &GlobalArgs,
    file: &ConfigFile,
    exists: impl Fn(&Path) -> bool,
) -> Result<Settings> {
    let runtime_endpoint = match non_empty(global.runtime_endpoint.as_ref())
        .or_else(|| non_empty(file.runtime_endpoint.as_ref()))
    {
        Some(endpoint) => endpoint,
        None => default_endpoint(&exists)?,
    };
    let image_endpoint = non_empty(global.image_endpoint.as_ref())
        .or_else(|| non_empty(file.image_endpoint.as_ref()))
        .unwrap_or_else(|| runtime_endpoint.clone());
    let timeout = match global.timeout {
        Some(flag) => (!flag.is_zero()).then_some(flag),
        None => Some(file.timeout()?.unwrap_or(DEFAULT_TIMEOUT)),
    };
    Ok(Settings {
        runtime_endpoint,
        image_endpoint,
        timeout,
        debug: global.debug || file.debug.unwrap_or(false),
    })
}

fn default_endpoint(exists: &impl Fn(&Path) -> bool) -> Result<String> {
    use cri_api::well_known::socket::DEFAULT_ENDPOINTS;
    DEFAULT_ENDPOINTS
        .iter()
        .find(|endpoint| cri_client::parse_endpoint(endpoint).is_ok_and(|path| exists(&path)))
        .map(|endpoint| (*endpoint).to_string())
        .ok_or_else(|| {
            CliError::msg(format!(
                "no runtime endpoint configured and none of the default sockets exists ({}); \
                 set one with --runtime-endpoint, CONTAINER_RUNTIME_ENDPOINT or runtime-endpoint \
                 in {DEFAULT_CONFIG_PATH}",
                DEFAULT_ENDPOINTS.join(", ")
            ))
        })
}

/// Parses a duration: `2m`, `30s`, `500ms`, `1h`, `1m30s`, or plain (fractional) seconds.
pub(crate) fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let invalid = || format!("invalid duration {text:?} (try 30s, 2m, 1m30s, 500ms or 45)");
    if text.is_empty() {
        return Err(invalid());
    }
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        if digits == 0 {
            return Err(invalid());
        }
        let number: f64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        let part = Duration::try_from_secs_f64(number * scale).map_err(|_| invalid())?;
        total = total.checked_add(part).ok_or_else(invalid)?;
    }
    Ok(total)
}

/// Parses a memory size: bytes, or a number with a `k`, `m`, `g` or `t` suffix (powers of
/// 1024; a trailing `b`/`i`/`ib` is accepted: `512m`, `1Gi`, `2GB`).
pub(crate) fn parse_memory(text: &str) -> std::result::Result<i64, String> {
    let invalid = || format!("invalid memory size {text:?} (try 536870912, 512m or 1g)");
    let lower = text.trim().to_ascii_lowercase();
    let stripped = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .or_else(|| lower.strip_suffix('i'))
        .unwrap_or(&lower);
    let (number, shift) = match stripped.chars().last() {
        Some('k') => (&stripped[..stripped.len() - 1], 10),
        Some('m') => (&stripped[..stripped.len() - 1], 20),
        Some('g') => (&stripped[..stripped.len() - 1], 30),
        Some('t') => (&stripped[..stripped.len() - 1], 40),
        _ => (stripped, 0),
    };
    let value: i64 = number.trim().parse().map_err(|_| invalid())?;
    if value < 0 {
        return Err(invalid());
    }
    value.checked_mul(1 << shift).ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(runtime: Option<&str>, image: Option<&str>, timeout: Option<Duration>) -> GlobalArgs {
        GlobalArgs {
            runtime_endpoint: runtime.map(Into::into),
            image_endpoint: image.map(Into::into),
            timeout,
            debug: false,
            config: None,
        }
    }

    fn file(text: &str) -> ConfigFile {
        ConfigFile::parse(text, Path::new("test.yaml")).unwrap()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "s", "10x", "-1", "1m-", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    /// Found by fuzzing (fuzz target `cli_parsers`): parts that fit a `Duration` one by one
    /// but not summed overflowed the addition and panicked.
    #[test]
    fn durations_too_long_in_sum_are_errors() {
        let max = "18446744073709551615s";
        assert!(parse_duration("10000000000000000000s10000000000000000000s").is_err());
        assert!(parse_duration(&format!("{max}1s")).is_err());
        assert!(parse_duration("5124095576030431h1h").is_err());
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("1024"), Ok(1024));
        assert_eq!(parse_memory("512m"), Ok(512 << 20));
        assert_eq!(parse_memory("1Gi"), Ok(1 << 30));
        assert_eq!(parse_memory("2GB"), Ok(2 << 30));
        assert_eq!(parse_memory("64k"), Ok(64 << 10));
        assert!(parse_memory("-1").is_err());
        assert!(parse_memory("lots").is_err());
    }

    #[test]
    fn crictl_yaml_keys() {
        let config = file(
            "runtime-endpoint: unix:///run/crio/crio.sock\nimage-endpoint: \"\"\ntimeout: 10\ndebug: true\npull-image-on-create: false\n",
        );
        assert_eq!(
            config.runtime_endpoint.as_deref(),
            Some("unix:///run/crio/crio.sock")
        );
        assert_eq!(config.timeout, Some(TimeoutValue::Seconds(10)));
        let settings = resolve(&global(None, None, None), &config, |_| false).unwrap();
        assert_eq!(settings.runtime_endpoint, "unix:///run/crio/crio.sock");
        assert_eq!(
            settings.image_endpoint, settings.runtime_endpoint,
            "empty = unset"
        );
        assert_eq!(settings.timeout, Some(Duration::from_secs(10)));
        assert!(settings.debug);
        assert_eq!(
            file("timeout: 2m").timeout().unwrap(),
            Some(Duration::from_secs(120))
        );
        assert_eq!(file("").timeout().unwrap(), None);
        assert!(ConfigFile::parse("timeout: [1]", Path::new("x.yaml")).is_err());
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let config =
            file("runtime-endpoint: /file.sock\nimage-endpoint: /file-img.sock\ntimeout: 7\n");
        let flags = global(
            Some("/flag.sock"),
            Some("/flag-img.sock"),
            Some(Duration::from_secs(3)),
        );
        let settings = resolve(&flags, &config, |_| false).unwrap();
        assert_eq!(settings.runtime_endpoint, "/flag.sock");
        assert_eq!(settings.image_endpoint, "/flag-img.sock");
        assert_eq!(settings.timeout, Some(Duration::from_secs(3)));

        let settings = resolve(&global(None, None, None), &config, |_| false).unwrap();
        assert_eq!(settings.runtime_endpoint, "/file.sock");
        assert_eq!(settings.image_endpoint, "/file-img.sock");
        assert_eq!(settings.timeout, Some(Duration::from_secs(7)));
    }

    #[test]
    fn the_default_timeout_is_the_kubelets_and_zero_means_none() {
        let settings = resolve(&global(Some("/s"), None, None), &file("timeout: 0"), |_| {
            false
        })
        .unwrap();
        assert_eq!(settings.timeout, Some(Duration::from_secs(120)));
        let settings = resolve(
            &global(Some("/s"), None, Some(Duration::ZERO)),
            &ConfigFile::default(),
            |_| false,
        )
        .unwrap();
        assert_eq!(settings.timeout, None);
        assert_eq!(settings.connect_timeout(), Duration::from_secs(10));
    }

    #[test]
    fn without_an_endpoint_the_first_existing_default_socket_wins() {
        let settings = resolve(&global(None, None, None), &ConfigFile::default(), |path| {
            path == Path::new("/run/crio/crio.sock")
        })
        .unwrap();
        assert_eq!(settings.runtime_endpoint, "unix:///run/crio/crio.sock");
        let settings =
            resolve(&global(None, None, None), &ConfigFile::default(), |_| true).unwrap();
        assert_eq!(
            settings.runtime_endpoint,
            "unix:///run/containerd/containerd.sock"
        );
        let err =
            resolve(&global(None, None, None), &ConfigFile::default(), |_| false).unwrap_err();
        assert!(err.to_string().contains("--runtime-endpoint"), "{err}");
    }

    #[test]
    fn a_missing_default_config_file_is_fine_but_a_named_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.yaml");
        let err = ConfigFile::load(Some(&missing)).unwrap_err();
        assert!(err.to_string().contains("nope.yaml"), "{err}");
    }
}
