//! Port-forward sessions sent to the streaming server on loopback: the raw upgrade request
//! (`@PATH@` is replaced by a fresh port-forward token's path) followed by SPDY frames whose
//! SYN_STREAMs carry `streamtype`, `port` and `requestID` headers, or WebSocket frames with
//! the port prefixes of `v4.channel.k8s.io`, or `?port=` query parameters. Reaches the
//! pairing of data and error streams and the port checks.
#![no_main]

use std::time::Duration;

use cri_fuzz::{Kind, Streaming};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let answer = Streaming::get().request(Kind::PortForward, data, Duration::from_secs(1));
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1."),
        "{answer:?}"
    );
});
