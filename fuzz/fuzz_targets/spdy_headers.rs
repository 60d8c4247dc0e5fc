//! SPDY header blocks: the input is a list of `u16`-length-prefixed zlib blocks (one zlib
//! stream with the SPDY/3 dictionary, as a peer compresses them), each sent to a server
//! session in a SYN_STREAM frame. Every accepted stream's header names must come out
//! lowercase.
#![no_main]

use std::sync::LazyLock;

use cri_streaming::spdy::Role;
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;

static RUNTIME: LazyLock<Runtime> = LazyLock::new(cri_fuzz::paused_runtime);

fuzz_target!(|data: &[u8]| {
    let blocks = cri_fuzz::length_prefixed(data, 32);
    let wire = cri_fuzz::syn_streams(&blocks);
    let seen = RUNTIME.block_on(cri_fuzz::spdy_session(&wire, Role::Server));
    assert!(seen.len() <= blocks.len());
    for headers in &seen {
        for (name, _) in headers {
            assert_eq!(
                *name,
                name.to_ascii_lowercase(),
                "header name not lowercased"
            );
            assert!(!name.is_empty(), "empty header name accepted");
        }
    }
});
