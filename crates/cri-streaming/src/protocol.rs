//! Facts of the Kubernetes remote-command and port-forward protocols shared by both
//! transports: versions, stream types, the exit status document.

use serde::{Deserialize, Serialize};

/// `X-Stream-Protocol-Version` values for exec and attach, strongest first.
pub const REMOTECOMMAND_VERSIONS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// The SPDY protocol value for port-forward.
pub const PORTFORWARD_VERSION: &str = "portforward.k8s.io";

/// Header naming a SPDY stream's role.
pub const STREAM_TYPE: &str = "streamtype";
/// Port-forward header: the port.
pub const PORT: &str = "port";
/// Port-forward header: pairs the data and error streams of one connection.
pub const REQUEST_ID: &str = "requestid";

/// Stream types.
pub mod stream_type {
    /// The final status (v2+: JSON in v4, text before).
    pub const ERROR: &str = "error";
    /// Standard input.
    pub const STDIN: &str = "stdin";
    /// Standard output.
    pub const STDOUT: &str = "stdout";
    /// Standard error.
    pub const STDERR: &str = "stderr";
    /// Terminal resize events (v3+).
    pub const RESIZE: &str = "resize";
    /// Port-forward payload.
    pub const DATA: &str = "data";
}

/// The remote-command protocol versions this crate speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// `channel.k8s.io`: streams, no resize, the error stream carries text.
    V1,
    /// `v2.channel.k8s.io`: like v1 with a dedicated error stream.
    V2,
    /// `v3.channel.k8s.io`: adds the resize stream.
    V3,
    /// `v4.channel.k8s.io`: the error stream carries a JSON status with the exit code.
    V4,
}

impl Version {
    /// The protocol name.
    pub fn name(self) -> &'static str {
        match self {
            Self::V4 => REMOTECOMMAND_VERSIONS[0],
            Self::V3 => REMOTECOMMAND_VERSIONS[1],
            Self::V2 => REMOTECOMMAND_VERSIONS[2],
            Self::V1 => REMOTECOMMAND_VERSIONS[3],
        }
    }

    /// Parses a protocol name.
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim() {
            "v4.channel.k8s.io" => Some(Self::V4),
            "v3.channel.k8s.io" => Some(Self::V3),
            "v2.channel.k8s.io" => Some(Self::V2),
            "channel.k8s.io" => Some(Self::V1),
            _ => None,
        }
    }

    /// The strongest version both sides speak, from the client's offer.
    pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        offered.into_iter().filter_map(Self::parse).max()
    }

    /// Whether the client can send terminal resizes.
    pub fn has_resize(self) -> bool {
        self >= Self::V3
    }
}

/// The status document the server writes on the error stream (v4).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Always empty; present for compatibility.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// `Success` or `Failure`.
    pub status: String,
    /// Human-readable text on failure.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// `NonZeroExitCode` for a command that exited non-zero; `InternalError` otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The exit code, as a cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
}

/// Details of a failure status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusDetails {
    /// Causes; the exit code is `{reason: "ExitCode", message: "<n>"}`.
    #[serde(default)]
    pub causes: Vec<StatusCause>,
}

/// One cause of a failure.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCause {
    /// The kind of cause.
    #[serde(default)]
    pub reason: String,
    /// Its value.
    #[serde(default)]
    pub message: String,
}

impl Status {
    /// The status for a finished command.
    pub fn exit(code: i32) -> Self {
        if code == 0 {
            return Self {
                status: "Success".into(),
                ..Default::default()
            };
        }
        Self {
            status: "Failure".into(),
            message: format!(
                "command terminated with non-zero exit code: error executing command, exit status {code}"
            ),
            reason: "NonZeroExitCode".into(),
            details: Some(StatusDetails {
                causes: vec![StatusCause {
                    reason: "ExitCode".into(),
                    message: code.to_string(),
                }],
            }),
            ..Default::default()
        }
    }

    /// The status for a session that failed before or instead of an exit code.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            status: "Failure".into(),
            message: message.into(),
            reason: "InternalError".into(),
            ..Default::default()
        }
    }

    /// The exit code this status reports: `Some(0)` on success, the code of a
    /// `NonZeroExitCode` failure, `None` for other failures.
    pub fn exit_code(&self) -> Option<i32> {
        if self.status == "Success" {
            return Some(0);
        }
        if self.reason != "NonZeroExitCode" {
            return None;
        }
        self.details
            .as_ref()?
            .causes
            .iter()
            .find(|c| c.reason == "ExitCode")
            .and_then(|c| c.message.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_the_strongest_known_version() {
        assert_eq!(
            Version::negotiate(["channel.k8s.io", "v4.channel.k8s.io"]),
            Some(Version::V4)
        );
        assert_eq!(
            Version::negotiate(["v2.channel.k8s.io", "bogus"]),
            Some(Version::V2)
        );
        assert_eq!(Version::negotiate(["bogus"]), None);
        assert!(Version::V3.has_resize() && !Version::V2.has_resize());
    }

    #[test]
    fn exit_status_documents_round_trip() {
        let failure = Status::exit(7);
        let json = serde_json::to_value(&failure).unwrap();
        assert_eq!(json["status"], "Failure");
        assert_eq!(json["reason"], "NonZeroExitCode");
        assert_eq!(
            json["details"]["causes"][0],
            serde_json::json!({"reason": "ExitCode", "message": "7"})
        );
        assert_eq!(
            serde_json::from_value::<Status>(json).unwrap().exit_code(),
            Some(7)
        );
        let success = serde_json::to_string(&Status::exit(0)).unwrap();
        assert_eq!(success, r#"{"metadata":{},"status":"Success"}"#);
        assert_eq!(Status::error("boom").exit_code(), None);
    }
}
