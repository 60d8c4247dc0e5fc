//! Streaming HTTP requests (WebSocket and SPDY upgrades and everything else) sent to the
//! streaming server on loopback: the first byte picks exec, attach or port-forward (a fresh
//! token is minted each time and put where the request says `@PATH@`), the rest is the raw
//! request with whatever frames follow it. Reaches request parsing, subprotocol negotiation
//! (`Sec-WebSocket-Protocol`, `X-Stream-Protocol-Version`), `Sec-WebSocket-Key`, and the
//! session that starts after the upgrade.
#![no_main]

use std::time::Duration;

use cri_fuzz::{Kind, Streaming};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, raw)) = data.split_first() else {
        return;
    };
    let kind = match mode % 3 {
        0 => Kind::Exec,
        1 => Kind::Attach,
        _ => Kind::PortForward,
    };
    let answer = Streaming::get().request(kind, raw, Duration::from_secs(1));
    // Whatever came back is HTTP (or nothing, for a connection closed on garbage).
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1."),
        "{answer:?}"
    );
});
