//! The request cache: each `Exec`/`Attach`/`PortForward` RPC stores its validated request
//! under a single-use, unguessable token that the URL carries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use cri_api::v1::{AttachRequest, ExecRequest, PortForwardRequest};

/// A stored request.
#[derive(Clone, Debug, PartialEq)]
pub enum Pending {
    /// An exec session.
    Exec(ExecRequest),
    /// An attach session.
    Attach(AttachRequest),
    /// A port-forward session.
    PortForward(PortForwardRequest),
}

impl Pending {
    /// The URL path segment: `exec`, `attach` or `portforward`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Exec(_) => "exec",
            Self::Attach(_) => "attach",
            Self::PortForward(_) => "portforward",
        }
    }
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Never issued, already used, or expired.
    #[error("unknown, used or expired token")]
    Unknown,
    /// The cache is full.
    #[error("too many pending streaming requests")]
    Full,
}

/// Tokens → requests, bounded in number and lifetime.
#[derive(Debug)]
pub(crate) struct Cache {
    entries: Mutex<HashMap<String, (Pending, Instant)>>,
    ttl: Duration,
    capacity: usize,
}

/// A token: 32 random bytes, URL-safe base64 (43 characters).
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system provides randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Cache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            ttl,
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Pending, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores `request`; returns its token.
    pub(crate) fn insert(&self, request: Pending) -> Result<String, TokenError> {
        let now = Instant::now();
        let mut entries = self.lock();
        entries.retain(|_, (_, expires)| *expires > now);
        if entries.len() >= self.capacity {
            return Err(TokenError::Full);
        }
        let token = new_token();
        entries.insert(token.clone(), (request, now + self.ttl));
        Ok(token)
    }

    /// Takes the request stored under `token` (single use).
    pub(crate) fn take(&self, token: &str) -> Result<Pending, TokenError> {
        let now = Instant::now();
        match self.lock().remove(token) {
            Some((request, expires)) if expires > now => Ok(request),
            _ => Err(TokenError::Unknown),
        }
    }

    pub(crate) fn len(&self) -> usize {
        let now = Instant::now();
        self.lock().values().filter(|(_, e)| *e > now).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec() -> Pending {
        Pending::Exec(ExecRequest {
            container_id: "c".into(),
            ..Default::default()
        })
    }

    #[test]
    fn tokens_are_single_use_and_unguessable() {
        let cache = Cache::new(Duration::from_secs(60), 10);
        let a = cache.insert(exec()).unwrap();
        let b = cache.insert(exec()).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(cache.take(&a), Ok(exec()));
        assert_eq!(cache.take(&a), Err(TokenError::Unknown), "used");
        assert_eq!(cache.take("made-up"), Err(TokenError::Unknown));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn tokens_expire_and_the_cache_is_bounded() {
        let cache = Cache::new(Duration::from_millis(20), 2);
        let a = cache.insert(exec()).unwrap();
        cache.insert(exec()).unwrap();
        assert_eq!(cache.insert(exec()), Err(TokenError::Full));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(cache.take(&a), Err(TokenError::Unknown), "expired");
        cache
            .insert(exec())
            .expect("expired entries free their slots");
    }
}
