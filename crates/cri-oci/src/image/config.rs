//! Where and how to pull from: mirrors, plain-HTTP hosts, the platform and timeouts.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::{Error, Result};

/// How to reach registries, in the spirit of containerd's `registry.mirrors` settings.
///
/// ```
/// use cri_oci::image::RegistryConfig;
///
/// // docker.io images come from a loopback registry first, then from Docker Hub.
/// let mut config = RegistryConfig::default();
/// config.mirrors.insert("docker.io".into(), vec!["http://127.0.0.1:5000".into()]);
/// let endpoints = config.endpoints("docker.io").unwrap();
/// assert_eq!(endpoints[0].to_string(), "http://127.0.0.1:5000");
/// assert_eq!(endpoints[1].to_string(), "https://docker.io");
/// ```
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Registry host → mirror endpoints (`http://127.0.0.1:5000`, `https://mirror.example`,
    /// or a bare `host:port`, spoken to over HTTPS unless listed in
    /// [`plain_http`](Self::plain_http)). Mirrors are tried in order, then the registry itself.
    /// The key `*` applies to registries without an entry of their own. Endpoints may not carry
    /// a path.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Hosts (`host` or `host:port`) spoken to over plain HTTP, e.g. loopback registries.
    pub plain_http: Vec<String>,
    /// The platform whose manifest is picked from a multi-platform index.
    pub platform: Platform,
    /// The longest a connection attempt, or a wait for the next bytes of a response, may take.
    /// [`Duration::ZERO`] means no limit. Default: 30 seconds.
    pub timeout: Duration,
    /// How many layers of one image are downloaded at once. Default: 3.
    pub max_concurrent_downloads: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            mirrors: BTreeMap::new(),
            plain_http: Vec::new(),
            platform: Platform::host(),
            timeout: Duration::from_secs(30),
            max_concurrent_downloads: 3,
        }
    }
}

/// One place to fetch an image from: a mirror or the registry itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `host` or `host:port`.
    pub host: String,
    /// Spoken to over plain HTTP rather than HTTPS.
    pub plain_http: bool,
    /// A mirror rather than the image's own registry.
    pub mirror: bool,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.plain_http { "http" } else { "https" };
        write!(f, "{scheme}://{}", self.host)
    }
}

impl RegistryConfig {
    /// The endpoints to try for images of `registry`, in order: its mirrors, then itself.
    ///
    /// A mirror URL with a path, a query or an unknown scheme is an
    /// [`Error::InvalidArgument`] naming `mirrors[<registry>]`.
    pub fn endpoints(&self, registry: &str) -> Result<Vec<Endpoint>> {
        let mut endpoints = Vec::new();
        let (key, mirrors) = match self.mirrors.get(registry) {
            Some(list) => (registry, Some(list)),
            None => ("*", self.mirrors.get("*")),
        };
        for url in mirrors.into_iter().flatten() {
            let field = format!("mirrors[{key}]");
            let (plain_http, rest) = if let Some(rest) = url.strip_prefix("http://") {
                (true, rest)
            } else if let Some(rest) = url.strip_prefix("https://") {
                (false, rest)
            } else if url.contains("://") {
                return Err(Error::invalid(
                    field,
                    format!("{url:?}: scheme must be http or https"),
                ));
            } else {
                (self.is_plain_http(url.trim_end_matches('/')), url.as_str())
            };
            let host = rest.trim_end_matches('/');
            if host.is_empty() || host.contains(['/', '?', '#', '@']) {
                return Err(Error::invalid(
                    field,
                    format!("{url:?}: a mirror endpoint is scheme://host[:port], without a path"),
                ));
            }
            let host = host.to_string();
            if host != registry && !endpoints.iter().any(|e: &Endpoint| e.host == host) {
                endpoints.push(Endpoint {
                    host,
                    plain_http,
                    mirror: true,
                });
            }
        }
        endpoints.push(Endpoint {
            host: registry.to_string(),
            plain_http: self.is_plain_http(registry),
            mirror: false,
        });
        Ok(endpoints)
    }

    fn is_plain_http(&self, host: &str) -> bool {
        self.plain_http.iter().any(|h| h == host)
    }
}

/// An OS / CPU architecture (/ variant) triple in the Go names OCI indexes use.
///
/// ```
/// use cri_oci::image::Platform;
///
/// let p: Platform = "linux/arm64/v8".parse().unwrap();
/// assert_eq!((p.os.as_str(), p.architecture.as_str(), p.variant.as_deref()), ("linux", "arm64", Some("v8")));
/// assert_eq!(p.to_string(), "linux/arm64/v8");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `linux`, `windows`, ... (Go's `GOOS`).
    pub os: String,
    /// `amd64`, `arm64`, `arm`, ... (Go's `GOARCH`).
    pub architecture: String,
    /// `v7`, `v8`, ... when the architecture has variants.
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Self {
        Self::host()
    }
}

impl Platform {
    /// This machine's platform, in Go's names.
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "loongarch64" => ("loong64", None),
            "mips64" if cfg!(target_endian = "little") => ("mips64le", None),
            other => (other, None),
        };
        Self {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(String::from),
        }
    }

    /// How well an index entry's platform suits this one: `None` when it cannot run here,
    /// higher is better.
    pub(crate) fn score(&self, os: &str, architecture: &str, variant: Option<&str>) -> Option<u32> {
        if !os.eq_ignore_ascii_case(&self.os) {
            return None;
        }
        let (architecture, variant) = normalize_arch(architecture, variant);
        let (want_arch, want_variant) = normalize_arch(&self.architecture, self.variant.as_deref());
        if architecture != want_arch {
            return None;
        }
        match (want_variant, variant) {
            (want, have) if want == have => Some(100),
            (_, None) => Some(50),
            (None, Some(_)) => Some(10),
            // arm/v7 runs v6 and v5 binaries: the closer the better.
            (Some(want), Some(have)) => {
                let version = |v: &str| v.strip_prefix('v').and_then(|n| n.parse::<u32>().ok());
                match (version(&want), version(&have)) {
                    (Some(w), Some(h)) if want_arch == "arm" && h < w => Some(40 - (w - h).min(39)),
                    _ => None,
                }
            }
        }
    }
}

/// Folds architecture aliases (`x86_64`, `aarch64`) and the default arm64 variant.
fn normalize_arch(architecture: &str, variant: Option<&str>) -> (String, Option<String>) {
    let architecture = match architecture.to_ascii_lowercase().as_str() {
        "x86_64" | "x86-64" => "amd64".to_string(),
        "aarch64" => "arm64".to_string(),
        "i386" => "386".to_string(),
        other => other.to_string(),
    };
    let variant = variant
        .filter(|v| !v.is_empty())
        .map(str::to_ascii_lowercase);
    let variant = match (architecture.as_str(), variant) {
        ("arm64", Some(v)) if v == "v8" => None,
        ("amd64", Some(v)) if v == "v1" => None,
        (_, v) => v,
    };
    (architecture, variant)
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Platform {
    type Err = Error;

    /// Parses `os/arch` or `os/arch/variant`.
    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Self {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Self {
                    os: os.to_string(),
                    architecture: arch.to_string(),
                    variant: Some(variant.to_string()),
                })
            }
            _ => Err(Error::invalid(
                "platform",
                format!("{s:?}: expected os/architecture[/variant]"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn scores_prefer_exact_then_compatible() {
        let arm64 = p("linux/arm64/v8");
        assert_eq!(arm64.score("linux", "arm64", None), Some(100));
        assert_eq!(arm64.score("linux", "aarch64", Some("v8")), Some(100));
        assert_eq!(arm64.score("linux", "amd64", None), None);
        assert_eq!(arm64.score("windows", "arm64", None), None);
        let armv7 = p("linux/arm/v7");
        assert_eq!(armv7.score("linux", "arm", Some("v7")), Some(100));
        assert!(armv7.score("linux", "arm", Some("v6")) > armv7.score("linux", "arm", Some("v5")));
        assert_eq!(armv7.score("linux", "arm", Some("v8")), None);
        let amd64 = p("linux/amd64");
        assert_eq!(amd64.score("linux", "x86_64", None), Some(100));
    }

    #[test]
    fn endpoints_mirrors_then_upstream() {
        let mut config = RegistryConfig::default();
        config.plain_http.push("reg.local:5000".into());
        config.mirrors.insert(
            "docker.io".into(),
            vec!["http://127.0.0.1:5000/".into(), "mirror.example".into()],
        );
        config
            .mirrors
            .insert("*".into(), vec!["reg.local:5000".into()]);
        let list: Vec<String> = config
            .endpoints("docker.io")
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            list,
            [
                "http://127.0.0.1:5000",
                "https://mirror.example",
                "https://docker.io"
            ]
        );
        let list: Vec<String> = config
            .endpoints("quay.io")
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(list, ["http://reg.local:5000", "https://quay.io"]);

        config
            .mirrors
            .insert("x.io".into(), vec!["https://m.example/v2/prefix".into()]);
        let err = config.endpoints("x.io").unwrap_err();
        assert!(err.to_string().contains("mirrors[x.io]"), "{err}");
    }
}
