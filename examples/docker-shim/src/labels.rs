//! The Docker labels that carry every piece of CRI state, so that a restarted shim finds its
//! pods and containers again with the same ids and state (nothing lives only in memory):
//!
//! | label                                   | on        | value                                   |
//! |-----------------------------------------|-----------|-----------------------------------------|
//! | `io.cri-rs.docker-shim.kind`            | both      | `sandbox` or `container`                |
//! | `io.cri-rs.docker-shim.config`          | both      | the CRI config, proto3 JSON             |
//! | `io.cri-rs.docker-shim.created`         | both      | creation time, ns since the epoch       |
//! | `io.cri-rs.docker-shim.pod-id`          | container | the sandbox id (its pause container id) |
//! | `io.cri-rs.docker-shim.log-path`        | container | `log_directory/log_path`, or empty      |
//! | `io.cri-rs.docker-shim.image-ref`       | container | the image id it was created from        |
//! | `io.cri-rs.docker-shim.runtime-handler` | sandbox   | the runtime handler asked for           |
//!
//! The CRI id of a pod or a container is its Docker container id.

use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// `sandbox` or `container`.
pub(crate) const KIND: &str = "io.cri-rs.docker-shim.kind";
/// The CRI config (proto3 JSON).
pub(crate) const CONFIG: &str = "io.cri-rs.docker-shim.config";
/// Creation time in nanoseconds.
pub(crate) const CREATED: &str = "io.cri-rs.docker-shim.created";
/// A container's sandbox id.
pub(crate) const POD_ID: &str = "io.cri-rs.docker-shim.pod-id";
/// A container's CRI log file.
pub(crate) const LOG_PATH: &str = "io.cri-rs.docker-shim.log-path";
/// The image id a container was created from.
pub(crate) const IMAGE_REF: &str = "io.cri-rs.docker-shim.image-ref";
/// A sandbox's runtime handler.
pub(crate) const RUNTIME_HANDLER: &str = "io.cri-rs.docker-shim.runtime-handler";

/// The `kind` of a pause container.
pub(crate) const SANDBOX: &str = "sandbox";
/// The `kind` of a workload container.
pub(crate) const CONTAINER: &str = "container";

/// Encodes a CRI config for the `config` label.
pub(crate) fn encode<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Decodes the `config` label (the default config when missing or unreadable).
pub(crate) fn decode<T: DeserializeOwned + Default>(labels: &HashMap<String, String>) -> T {
    labels
        .get(CONFIG)
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

/// A label parsed as an integer (0 when missing).
pub(crate) fn int(labels: &HashMap<String, String>, key: &str) -> i64 {
    labels.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// A label's text (empty when missing).
pub(crate) fn text(labels: &HashMap<String, String>, key: &str) -> String {
    labels.get(key).cloned().unwrap_or_default()
}

/// Now, in nanoseconds since the epoch.
pub(crate) fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A Docker timestamp (RFC 3339 with up to nine fraction digits, `Z` or an offset) in
/// nanoseconds since the epoch; 0 for Docker's "never" (`0001-01-01T00:00:00Z`) and for
/// anything unreadable.
pub(crate) fn parse_time(value: &str) -> i64 {
    parse_rfc3339(value).filter(|n| *n > 0).unwrap_or(0)
}

fn parse_rfc3339(value: &str) -> Option<i64> {
    let b = value.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> { value.get(range)?.parse().ok() };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &value[19..];
    let mut nanos = 0i64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        let mut text = fraction[..digits].to_string();
        text.truncate(9);
        while text.len() < 9 {
            text.push('0');
        }
        nanos = text.parse().ok()?;
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (h * 3600 + m * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A Docker container name from CRI metadata: only `[a-zA-Z0-9_.-]`, other characters
/// become `-`.
pub(crate) fn docker_name(parts: &[&str]) -> String {
    let joined = parts.join("_");
    joined
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_times_parse() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), 1_000_000_000);
        assert_eq!(
            parse_time("2024-01-02T03:04:05.123456789Z"),
            1_704_164_645_123_456_789
        );
        assert_eq!(
            parse_time("2024-01-02T04:04:05.5+01:00"),
            1_704_164_645_500_000_000
        );
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), 0);
        assert_eq!(parse_time(""), 0);
        assert_eq!(parse_time("yesterday"), 0);
    }

    #[test]
    fn names_are_docker_safe() {
        assert_eq!(
            docker_name(&["k8s", "POD", "a b", "ns/x"]),
            "k8s_POD_a-b_ns-x"
        );
    }

    #[test]
    fn configs_round_trip() {
        let config = cri_api::v1::PodSandboxConfig {
            hostname: "h".into(),
            ..Default::default()
        };
        let labels = HashMap::from([(CONFIG.to_string(), encode(&config))]);
        assert_eq!(decode::<cri_api::v1::PodSandboxConfig>(&labels), config);
        assert_eq!(int(&labels, CREATED), 0);
    }
}
