//! Image references: parsing and normalisation as the kubelet, docker and containerd do it.
//!
//! The grammar is the distribution project's (`[domain/]path[:tag][@digest]`); normalisation
//! fills in `docker.io`, the `library/` namespace of official images and the `latest` tag.

use std::fmt;

use crate::{Error, Result};

/// The registry that references without a domain name refer to.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The namespace of Docker Hub's official images (`busybox` → `library/busybox`).
const OFFICIAL_NAMESPACE: &str = "library";
/// The tag of references that name neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";
/// The longest repository name (domain included) the distribution grammar allows.
const MAX_NAME_LEN: usize = 255;
/// The longest tag the distribution grammar allows.
const MAX_TAG_LEN: usize = 128;

/// A normalised image reference: registry, repository, tag and/or digest.
///
/// ```
/// use cri_oci::image::Reference;
///
/// let r = Reference::parse("busybox").unwrap();
/// assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
/// assert_eq!((r.registry(), r.repository(), r.tag()), ("docker.io", "library/busybox", Some("latest")));
///
/// let r = Reference::parse("localhost:5000/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef").unwrap();
/// assert_eq!(r.registry(), "localhost:5000");
/// assert_eq!(r.tag(), None);
/// assert!(r.digest().unwrap().starts_with("sha256:0123"));
///
/// assert!(Reference::parse("Busybox").is_err()); // repositories are lowercase
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Parses and normalises `s`.
    ///
    /// `busybox` → `docker.io/library/busybox:latest`, `x/y` → `docker.io/x/y:latest`,
    /// `index.docker.io/x/y` → `docker.io/x/y:latest`; a reference with a digest and no tag gets
    /// no tag. Anything outside the grammar is an [`Error::InvalidReference`] saying why.
    pub fn parse(s: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidReference {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(invalid("empty reference"));
        }
        if s.trim() != s || s.chars().any(char::is_whitespace) {
            return Err(invalid("contains whitespace"));
        }
        if is_hex(s) && s.len() == 64 {
            return Err(invalid(
                "a 64-character hexadecimal string is an image id, not a repository name",
            ));
        }

        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => {
                validate_digest(digest).map_err(|reason| invalid(&reason))?;
                (rest, Some(digest.to_string()))
            }
            None => (s, None),
        };
        // A tag is a ':' after the last '/': a ':' before it belongs to a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag).map_err(|reason| invalid(&reason))?;
        }
        if name.is_empty() {
            return Err(invalid("empty repository name"));
        }

        let (registry, path) = split_domain(name);
        if let Some(registry) = registry {
            validate_domain(registry).map_err(|reason| invalid(&reason))?;
        }
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid("repository name must be lowercase"));
        }
        validate_path(path).map_err(|reason| invalid(&reason))?;

        let registry = match registry {
            None | Some("index.docker.io") => DEFAULT_REGISTRY,
            Some(domain) => domain,
        };
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{path}")
        } else {
            path.to_string()
        };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(invalid("repository name longer than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// The registry host (with port when there is one), e.g. `docker.io`, `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag; `latest` when the reference named neither a tag nor a digest.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:<hex>`) when the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `registry/repository`, the name without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same name with this digest and no tag: the CRI `repo_digests` form.
    pub fn with_digest(&self, digest: &str) -> Self {
        Self {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest.to_string()),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// Splits `name` into its domain (when the first component looks like one) and its path.
fn split_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn validate_tag(tag: &str) -> std::result::Result<(), String> {
    let mut chars = tag.chars();
    let valid_first = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_first || !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Err(format!(
            "invalid tag {tag:?}: a tag is [A-Za-z0-9_][A-Za-z0-9_.-]*"
        ));
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(format!("tag longer than {MAX_TAG_LEN} characters"));
    }
    Ok(())
}

/// Checks a `algorithm:hex` digest; `sha256` must have 64 lowercase hex digits.
pub(crate) fn validate_digest(digest: &str) -> std::result::Result<(), String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(format!("invalid digest {digest:?}: expected algorithm:hex"));
    };
    let algorithm_ok = !algorithm.is_empty()
        && algorithm.split(['+', '.', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if !algorithm_ok {
        return Err(format!("invalid digest algorithm {algorithm:?}"));
    }
    if algorithm == "sha256" {
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!(
                "invalid sha256 digest {digest:?}: expected 64 lowercase hexadecimal digits"
            ));
        }
    } else if hex.len() < 32 || !is_hex(hex) {
        return Err(format!(
            "invalid digest {digest:?}: expected at least 32 hexadecimal digits"
        ));
    }
    Ok(())
}

fn validate_domain(domain: &str) -> std::result::Result<(), String> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        // An IPv6 literal: [::1]:5000.
        let Some((addr, after)) = rest.split_once(']') else {
            return Err(format!("invalid registry {domain:?}: unclosed '['"));
        };
        if addr.is_empty()
            || !addr
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(format!("invalid registry {domain:?}: bad IPv6 address"));
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return Err(format!("invalid registry {domain:?}")),
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "invalid registry {domain:?}: port must be a number"
        ));
    }
    if let Some(host) = host {
        let ok = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            return Err(format!("invalid registry host {host:?}"));
        }
    }
    Ok(())
}

/// Checks the repository path: `/`-separated components of `[a-z0-9]+` joined by `.`, `_`,
/// `__` or runs of `-`.
fn validate_path(path: &str) -> std::result::Result<(), String> {
    for component in path.split('/') {
        if component.is_empty() {
            return Err("empty path component in repository name".to_string());
        }
        let bytes = component.as_bytes();
        let mut i = 0;
        let mut expect_alnum = true;
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii_lowercase() || b.is_ascii_digit() {
                expect_alnum = false;
                i += 1;
                continue;
            }
            if expect_alnum {
                return Err(format!(
                    "invalid repository component {component:?}: separators must sit between letters or digits"
                ));
            }
            // A separator: '.', '_', '__' or one or more '-'.
            let len = match b {
                b'.' => 1,
                b'_' if bytes.get(i + 1) == Some(&b'_') => 2,
                b'_' => 1,
                b'-' => bytes[i..].iter().take_while(|&&c| c == b'-').count(),
                _ => {
                    return Err(format!(
                        "invalid character {:?} in repository component {component:?}",
                        b as char
                    ));
                }
            };
            i += len;
            expect_alnum = true;
        }
        if expect_alnum {
            return Err(format!(
                "invalid repository component {component:?}: must end with a letter or digit"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_round_trips() {
        for s in [
            "docker.io/library/busybox:latest",
            "quay.io/a/b:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "localhost:5000/x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(Reference::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn errors_name_the_reference() {
        let err = Reference::parse("a/B").unwrap_err();
        assert!(err.to_string().contains("\"a/B\""), "{err}");
        assert!(err.to_string().contains("lowercase"), "{err}");
    }
}
