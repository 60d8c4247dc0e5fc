//! The `cri` command line's own parsers: the first byte picks the `--timeout` duration
//! parser, the `--memory` size parser, or the crictl.yaml config file parser (with the
//! settings resolved from it); the rest is the text.
#![no_main]

use cri_cli::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match mode % 3 {
        0 => {
            let _ = fuzzing::parse_duration(&text);
        }
        1 => {
            if let Ok(bytes) = fuzzing::parse_memory(&text) {
                assert!(bytes >= 0, "{text:?} -> {bytes}");
            }
        }
        _ => {
            let _ = fuzzing::parse_config(&text);
        }
    }
});
