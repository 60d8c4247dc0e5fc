//! The JSON documents of a pull: the first byte picks an image manifest or index (an index
//! also has the host's platform picked from it, a manifest its layers' compressions
//! classified) or an image config (its diff ids checked against a layer count taken from
//! the same byte); the rest is the document.
#![no_main]

use cri_oci::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, doc)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let _ = fuzzing::parse_manifest(doc, None);
    } else if let Ok(diff_ids) = fuzzing::parse_config(doc, usize::from(mode >> 1)) {
        assert_eq!(diff_ids.len(), usize::from(mode >> 1));
    }
});
