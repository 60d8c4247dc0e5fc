//! Layer tars applied into a temporary root, as an image's root filesystem is made: the
//! input is `[mode]` then up to three `u16`-length-prefixed layer blobs (plain tar or
//! tar+gzip; bit `i` of `mode` labels layer `i` as gzip, and a plain-labelled blob with the
//! gzip magic is decompressed too). The root is `<fresh temp dir>/root`, the blobs live in
//! a second temp dir; afterwards the first must hold only `root` and the second only the
//! blobs: nothing may be written outside the root.
//!
//! When run as root, the unpack runs with the thread's filesystem uid and gid set to
//! `nobody`, so an escape could not touch anything but world-writable places.
#![no_main]

use std::fs;
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let layers = cri_fuzz::length_prefixed(rest, 3);
    let dirs = cri_fuzz::as_nobody(|| {
        let work = tempfile::Builder::new()
            .prefix("fuzz-unpack-")
            .tempdir()
            .expect("tempdir");
        let blobs = tempfile::Builder::new()
            .prefix("fuzz-blobs-")
            .tempdir()
            .expect("tempdir");
        let mut files: Vec<(PathBuf, &str)> = Vec::new();
        for (i, layer) in layers.iter().enumerate() {
            let path = blobs.path().join(format!("layer{i}"));
            fs::write(&path, layer).expect("write blob");
            let media_type = if mode & (1 << i) != 0 {
                "application/vnd.oci.image.layer.v1.tar+gzip"
            } else {
                "application/vnd.oci.image.layer.v1.tar"
            };
            files.push((path, media_type));
        }
        let root = work.path().join("root");
        let blobs_ref: Vec<(&std::path::Path, &str)> =
            files.iter().map(|(p, m)| (p.as_path(), *m)).collect();
        let _ = cri_oci::fuzzing::unpack_layers(&root, &blobs_ref);
        assert_eq!(names(work.path()), ["root"], "written next to the root");
        let expected: Vec<String> = (0..files.len()).map(|i| format!("layer{i}")).collect();
        assert_eq!(names(blobs.path()), expected, "written among the blobs");
        (work, blobs)
    });
    drop(dirs); // removed with full rights
});
