//! SPDY/3.1 frames from a peer: the first byte picks this side's role (bit 0: server as in
//! the kubelet's streaming server, or client as in `kubectl exec`), the rest is the byte
//! stream the peer sends. Reaches the frame header and control frame parsers, header block
//! inflation and the session state machine (streams, windows, SETTINGS, PING, GOAWAY).
#![no_main]

use std::sync::LazyLock;

use cri_streaming::spdy::Role;
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;

static RUNTIME: LazyLock<Runtime> = LazyLock::new(cri_fuzz::paused_runtime);

fuzz_target!(|data: &[u8]| {
    let Some((&mode, wire)) = data.split_first() else {
        return;
    };
    let role = if mode & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    RUNTIME.block_on(cri_fuzz::spdy_session(wire, role));
});
