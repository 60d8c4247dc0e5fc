//! WebSocket frames from a Kubernetes client (`kubectl exec` over WebSocket): the first byte
//! picks the negotiated channel protocol (v5, v4, v4.base64, channel.k8s.io,
//! base64.channel.k8s.io), the rest is the raw frame stream sent after the upgrade. Reaches
//! frame and message decoding, channel demultiplexing, base64 and v5 CLOSE handling.
#![no_main]

use std::sync::LazyLock;

use cri_streaming::websocket::Protocol;
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;

static RUNTIME: LazyLock<Runtime> = LazyLock::new(cri_fuzz::paused_runtime);

fuzz_target!(|data: &[u8]| {
    let Some((&mode, wire)) = data.split_first() else {
        return;
    };
    let all = Protocol::all();
    let protocol = all[usize::from(mode) % all.len()];
    RUNTIME.block_on(cri_fuzz::websocket_session(wire, protocol));
});
