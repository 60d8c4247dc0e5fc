//! Image references as the kubelet and `crictl pull` hand them over: parse, then check that
//! the normalised form parses again to the same reference.
#![no_main]

use cri_oci::image::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(reference) = Reference::parse(text) else {
        return;
    };
    let _ = (
        reference.registry(),
        reference.repository(),
        reference.name(),
    );
    let shown = reference.to_string();
    let again = Reference::parse(&shown)
        .unwrap_or_else(|e| panic!("{text:?} parsed, its normal form {shown:?} does not: {e}"));
    assert_eq!(again, reference, "{text:?} -> {shown:?}");
    if let Some(digest) = reference.digest() {
        let with = reference.with_digest(digest);
        assert_eq!(with.digest(), Some(digest));
    }
});
