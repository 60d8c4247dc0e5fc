//! Hand-written `Debug` impls for messages that carry secrets.
//!
//! Upstream marks `AuthConfig.password`, `auth`, `identity_token` and `registry_token` with
//! `debug_redact = true`; prost ignores that option, so the code generator is told to skip
//! `Debug` for `AuthConfig` and the impl below prints those fields redacted. Every message that
//! nests an `AuthConfig` (such as `PullImageRequest`) goes through this impl too.

use std::fmt;

use crate::v1::AuthConfig;

/// What a secret prints as. Empty secrets print as `""` so that their absence stays visible.
struct Redacted<'a>(&'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("<redacted>")
        }
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("password", &Redacted(&self.password))
            .field("auth", &Redacted(&self.auth))
            .field("server_address", &self.server_address)
            .field("identity_token", &Redacted(&self.identity_token))
            .field("registry_token", &Redacted(&self.registry_token))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use crate::v1::{AuthConfig, ImageSpec, PullImageRequest};

    fn secret_auth() -> AuthConfig {
        AuthConfig {
            username: "alice".into(),
            password: "hunter2-password".into(),
            auth: "YWxpY2U6aHVudGVyMg==".into(),
            server_address: "registry.example".into(),
            identity_token: "identity-token-secret".into(),
            registry_token: "registry-token-secret".into(),
        }
    }

    const SECRETS: [&str; 4] = [
        "hunter2-password",
        "YWxpY2U6aHVudGVyMg==",
        "identity-token-secret",
        "registry-token-secret",
    ];

    #[test]
    fn auth_config_debug_redacts_every_secret() {
        let text = format!("{:?}", secret_auth());
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(
            text.contains("alice"),
            "non-secret fields stay visible: {text}"
        );
        assert!(text.contains("registry.example"), "{text}");
        assert_eq!(text.matches("<redacted>").count(), 4, "{text}");
    }

    #[test]
    fn nested_auth_config_is_redacted_in_plain_and_pretty_debug() {
        let request = PullImageRequest {
            image: Some(ImageSpec {
                image: "busybox:latest".into(),
                ..Default::default()
            }),
            auth: Some(secret_auth()),
            sandbox_config: None,
        };
        for text in [format!("{request:?}"), format!("{request:#?}")] {
            for secret in SECRETS {
                assert!(!text.contains(secret), "{secret} leaked: {text}");
            }
            assert!(text.contains("busybox:latest"), "{text}");
        }
    }

    #[test]
    fn empty_secrets_print_as_empty_strings() {
        let text = format!("{:?}", AuthConfig::default());
        assert!(!text.contains("<redacted>"), "{text}");
        assert!(text.contains("password: \"\""), "{text}");
    }
}
