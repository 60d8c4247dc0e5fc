//! Hostile images: layers and manifests built to escape the root filesystem, exhaust the disk
//! or lie about their content. Each attack is refused ([`Error::Corrupt`], or
//! [`Error::LimitExceeded`] for the size bounds) or confined inside the rootfs; a refused
//! rootfs leaves nothing behind, and nothing outside the rootfs changes.
//!
//! Layers are built here with the `tar` crate, plain and gzipped, imported as OCI layouts
//! (or served by cri-testkit's loopback registry for pull-level attacks), then applied with
//! [`Store::prepare_rootfs`]: as a copy, and as an overlay too when running as root.
//! The table in `docs/reliability.md` ("Hostile images") names these tests.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use cri_oci::Error;
use cri_oci::image::{
    DeviceNodes, Image, RegistryConfig, RootfsMode, Store, UnpackLimits, cleanup_rootfs,
};
use cri_testkit::registry::Registry;
use sha2::{Digest as _, Sha256};

// ---------------------------------------------------------------- building layers and images

fn sha(data: &[u8]) -> String {
    format!(
        "sha256:{}",
        Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// One entry of a layer tar.
enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    /// A regular file whose name goes into the ustar header as is (`..`, absolute).
    RawName(&'a str),
    /// A regular file whose name comes from a PAX `path` record, bytes as given.
    PaxName(&'a [u8]),
    Char(&'a str, u32, u32),
    Block(&'a str, u32, u32),
    /// A GNU sparse file of `real_size` bytes: a hole, then 512 bytes of `x`.
    Sparse(&'a str, u64),
    /// A regular file whose header declares `declared` bytes, followed by only a few.
    Declared(&'a str, u64),
}

fn header(kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_000_000);
    h
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "<len> <key>=<value>\n", where <len> counts itself.
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len += 1;
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

fn layer(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for entry in entries {
        match *entry {
            E::Dir(path) => {
                let mut h = header(tar::EntryType::Directory, 0);
                h.set_path(path).unwrap();
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            E::File(path, data) => {
                let mut h = header(tar::EntryType::Regular, data.len() as u64);
                h.set_path(path).unwrap();
                h.set_cksum();
                b.append(&h, data).unwrap();
            }
            E::Symlink(path, target) | E::Hardlink(path, target) => {
                let kind = if matches!(entry, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                let mut h = header(kind, 0);
                h.set_path(path).unwrap();
                h.set_link_name(target).unwrap();
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            E::RawName(name) => {
                let mut h = header(tar::EntryType::Regular, 6);
                h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                h.set_cksum();
                b.append(&h, &b"pwned\n"[..]).unwrap();
            }
            E::PaxName(name) => {
                let record = pax_record("path", name);
                let mut x = header(tar::EntryType::XHeader, record.len() as u64);
                x.set_path("PaxHeaders/x").unwrap();
                x.set_cksum();
                b.append(&x, &record[..]).unwrap();
                let mut h = header(tar::EntryType::Regular, 6);
                h.set_path("placeholder").unwrap();
                h.set_cksum();
                b.append(&h, &b"pwned\n"[..]).unwrap();
            }
            E::Char(path, major, minor) | E::Block(path, major, minor) => {
                let kind = if matches!(entry, E::Char(..)) {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                };
                let mut h = header(kind, 0);
                h.set_mode(0o666);
                h.set_path(path).unwrap();
                h.set_device_major(major).unwrap();
                h.set_device_minor(minor).unwrap();
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            E::Sparse(path, real_size) => {
                let mut h = header(tar::EntryType::GNUSparse, 512);
                h.set_path(path).unwrap();
                let gnu = h.as_gnu_mut().unwrap();
                gnu.sparse[0].set_offset(real_size - 512);
                gnu.sparse[0].set_length(512);
                gnu.set_real_size(real_size);
                h.set_cksum();
                b.append(&h, &[b'x'; 512][..]).unwrap();
            }
            E::Declared(path, declared) => {
                // Written by hand: the builder would want all the declared bytes.
                let mut h = header(tar::EntryType::Regular, declared);
                h.set_path(path).unwrap();
                h.set_cksum();
                let out = b.get_mut();
                out.extend_from_slice(h.as_bytes());
                out.extend_from_slice(&[b'y'; 512]);
            }
        }
    }
    b.into_inner().unwrap()
}

/// A decompression bomb: a gzip stream of a tar of one file of `size` zero bytes, with
/// `trailing_zeros` more zero bytes after the tar's end. Built from one compressed MiB of zeros
/// repeated as gzip members (a multi-member stream is one stream to readers), so it costs
/// nothing to make. The diff id is not the content's: the store's limit trips before the
/// hash is compared.
fn bomb(size: u64, trailing_zeros: u64) -> Blob {
    let mut h = header(tar::EntryType::Regular, size);
    h.set_path("zeros").unwrap();
    h.set_cksum();
    let mut data = gzip(h.as_bytes());
    let mib = gzip(&vec![0u8; 1 << 20]);
    let total = size.div_ceil(512) * 512 + 1024 + trailing_zeros;
    for _ in 0..total.div_ceil(1 << 20) {
        data.extend_from_slice(&mib);
    }
    Blob {
        data,
        diff_id: sha(b"not the content"),
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
    }
}

/// A manifest and every blob it needs.
#[derive(Clone)]
struct Built {
    digest: String,
    manifest: Vec<u8>,
    blobs: Vec<(String, Vec<u8>)>,
    layer_digests: Vec<String>,
}

/// A layer blob as it goes into an image: content, diff id, media type.
struct Blob {
    data: Vec<u8>,
    diff_id: String,
    media_type: &'static str,
}

fn blob(tar: &[u8], gz: bool) -> Blob {
    if gz {
        Blob {
            data: gzip(tar),
            diff_id: sha(tar),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
        }
    } else {
        Blob {
            data: tar.to_vec(),
            diff_id: sha(tar),
            media_type: "application/vnd.oci.image.layer.v1.tar",
        }
    }
}

/// An image of `layers`; `tamper` may edit the config JSON, then the manifest JSON.
fn image_with(
    layers: Vec<Blob>,
    tamper_config: impl FnOnce(&mut serde_json::Value),
    tamper_manifest: impl FnOnce(&mut serde_json::Value),
) -> Built {
    let host = cri_oci::image::Platform::host();
    let mut blobs = Vec::new();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    let mut layer_digests = Vec::new();
    for layer in layers {
        let digest = sha(&layer.data);
        descs.push(serde_json::json!({
            "mediaType": layer.media_type, "digest": digest, "size": layer.data.len(),
        }));
        diff_ids.push(layer.diff_id);
        layer_digests.push(digest.clone());
        blobs.push((digest, layer.data));
    }
    let mut config = serde_json::json!({
        "architecture": host.architecture, "os": host.os,
        "config": { "Cmd": ["sh"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    tamper_config(&mut config);
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = sha(&config);
    let mut manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest, "size": config.len(),
        },
        "layers": descs,
    });
    tamper_manifest(&mut manifest);
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let digest = sha(&manifest);
    blobs.push((config_digest, config));
    blobs.push((digest.clone(), manifest.clone()));
    Built {
        digest,
        manifest,
        blobs,
        layer_digests,
    }
}

fn image(layers: &[Vec<u8>], gz: bool) -> Built {
    image_with(layers.iter().map(|l| blob(l, gz)).collect(), |_| {}, |_| {})
}

/// Writes an OCI layout tar naming `image` `name`.
fn layout(path: &Path, name: &str, image: &Built) {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = header(tar::EntryType::Regular, data.len() as u64);
        h.set_path(name).unwrap();
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": image.digest, "size": image.manifest.len(),
            "annotations": { "io.containerd.image.name": name },
        }],
    }))
    .unwrap();
    add("index.json", &index);
    for (digest, blob) in &image.blobs {
        add(
            &format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")),
            blob,
        );
    }
    fs::write(path, b.into_inner().unwrap()).unwrap();
}

// ---------------------------------------------------------------- the world around a rootfs

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

const VICTIM: &[u8] = b"precious\n";
const NAME: &str = "docker.io/library/hostile:1";

/// A temporary world: a victim file and directory next to the store and the rootfs, which
/// sits three levels down (`a/b/rootfs`) so `../../..` from inside it reaches the victim.
struct World {
    dir: tempfile::TempDir,
    store: Store,
    /// Filled in by [`World::import`].
    image: Option<Image>,
}

impl World {
    fn new(limits: UnpackLimits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("victim"), VICTIM).unwrap();
        fs::create_dir(dir.path().join("victim-dir")).unwrap();
        fs::write(dir.path().join("victim-dir/keep"), VICTIM).unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        let store = Store::open_with_limits(dir.path().join("store"), limits).unwrap();
        Self {
            dir,
            store,
            image: None,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn target(&self, mode: RootfsMode) -> PathBuf {
        let name = if mode == RootfsMode::Overlay {
            "overlay"
        } else {
            "rootfs"
        };
        self.path().join("a/b").join(name)
    }

    fn import(&mut self, image: &Built) -> cri_oci::Result<()> {
        let archive = self.path().join("image.tar");
        layout(&archive, NAME, image);
        self.store.import_archive(&archive)?;
        self.image = Some(self.store.get(NAME).unwrap());
        Ok(())
    }

    /// Every path outside the store and the rootfs, with what it holds.
    fn outside(&self) -> BTreeMap<PathBuf, String> {
        let skip: Vec<PathBuf> = [RootfsMode::Copy, RootfsMode::Overlay]
            .iter()
            .flat_map(|m| {
                let t = self.target(*m);
                ["", ".rootfs.json", ".upper", ".work"].map(|s| {
                    let mut p = t.clone().into_os_string();
                    p.push(s);
                    PathBuf::from(p)
                })
            })
            .chain([self.path().join("store"), self.path().join("image.tar")])
            .collect();
        let mut out = BTreeMap::new();
        walk(self.path(), &skip, &mut out);
        out
    }

    fn store_is_clean(&self) {
        let count = |d: &str| fs::read_dir(self.store.root().join(d)).unwrap().count();
        assert_eq!(count("tmp"), 0, "temporary leftovers in the store");
        assert_eq!(count("layers"), 0, "a half-unpacked layer was kept");
    }

    /// Builds the rootfs as a copy; must fail. Also as an overlay when root, which must fail
    /// or stay confined. Returns the copy's error.
    fn refused(&self) -> Error {
        let image = self.image.as_ref().unwrap();
        let before = self.outside();
        let target = self.target(RootfsMode::Copy);
        let err = self
            .store
            .prepare_rootfs(image, &target, RootfsMode::Copy)
            .unwrap_err();
        assert!(!target.exists(), "a refused rootfs is removed: {err}");
        assert!(
            !self.path().join("a/b/rootfs.rootfs.json").exists(),
            "its marker too"
        );
        assert_eq!(before, self.outside(), "something outside changed: {err}");
        self.store_is_clean();
        self.overlay_refused_or_confined(&before);
        err
    }

    /// Builds the rootfs as a copy; must succeed without touching anything outside. Also as
    /// an overlay when root, which must fail or stay confined.
    fn confined(&self) -> PathBuf {
        let image = self.image.as_ref().unwrap();
        let before = self.outside();
        let target = self.target(RootfsMode::Copy);
        let rootfs = self
            .store
            .prepare_rootfs(image, &target, RootfsMode::Copy)
            .unwrap_or_else(|e| panic!("expected a confined rootfs: {e:?}"));
        assert_eq!(before, self.outside(), "something outside changed");
        self.overlay_refused_or_confined(&before);
        rootfs.path
    }

    fn overlay_refused_or_confined(&self, before: &BTreeMap<PathBuf, String>) {
        if !is_root() {
            return;
        }
        let target = self.target(RootfsMode::Overlay);
        let result =
            self.store
                .prepare_rootfs(self.image.as_ref().unwrap(), &target, RootfsMode::Overlay);
        let _ = cleanup_rootfs(&target);
        assert_eq!(
            *before,
            self.outside(),
            "overlay: something outside changed ({result:?})"
        );
        if result.is_err() {
            assert!(!target.exists(), "overlay: a refused rootfs is removed");
            assert_eq!(
                fs::read_dir(self.store.root().join("tmp")).unwrap().count(),
                0,
                "overlay: temporary leftovers"
            );
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = cleanup_rootfs(&self.target(RootfsMode::Overlay));
    }
}

fn walk(dir: &Path, skip: &[PathBuf], out: &mut BTreeMap<PathBuf, String>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if skip.contains(&path) {
            continue;
        }
        let meta = fs::symlink_metadata(&path).unwrap();
        let what = if meta.is_dir() {
            walk(&path, skip, out);
            format!("dir {:o}", meta.mode())
        } else if meta.file_type().is_symlink() {
            format!("symlink {}", fs::read_link(&path).unwrap().display())
        } else if meta.is_file() {
            format!(
                "file {:o} nlink {} {}",
                meta.mode(),
                meta.nlink(),
                sha(&fs::read(&path).unwrap())
            )
        } else {
            format!("special {:o}", meta.mode())
        };
        out.insert(path, what);
    }
}

/// Runs `attack` on a plain and on a gzipped image of `layers`.
fn both_compressions(layers: &[Vec<u8>], attack: impl Fn(&World, bool)) {
    for gz in [false, true] {
        let mut world = World::new(UnpackLimits::default());
        world.import(&image(layers, gz)).unwrap();
        attack(&world, gz);
    }
}

fn assert_corrupt(err: &Error, what: &str) {
    assert!(matches!(err, Error::Corrupt { .. }), "{what}: {err:?}");
    assert_eq!(err.code(), tonic::Code::Internal);
}

fn assert_limit(err: &Error, what: &str) {
    assert!(
        matches!(err, Error::LimitExceeded { .. }),
        "{what}: {err:?}"
    );
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
}

fn assert_victims_intact(world: &World) {
    assert_eq!(fs::read(world.path().join("victim")).unwrap(), VICTIM);
    assert_eq!(
        fs::read(world.path().join("victim-dir/keep")).unwrap(),
        VICTIM
    );
}

// ---------------------------------------------------------------- symlinks

#[test]
fn symlink_escape_relative_then_file_written_through_it() {
    let layers = [layer(&[
        E::Symlink("esc", "../../.."),
        E::File("esc/victim", b"pwned\n"),
    ])];
    both_compressions(&layers, |world, gz| {
        let err = world.refused();
        assert_corrupt(&err, &format!("gz={gz}"));
        assert!(err.to_string().contains("escapes the root"), "{err}");
        assert_victims_intact(world);
    });
}

#[test]
fn symlink_escape_absolute_is_confined() {
    // Absolute targets resolve from the rootfs, as the container sees them: a link to the
    // host path of the victim's directory leads to that path *inside* the rootfs.
    let mut world = World::new(UnpackLimits::default());
    let host_dir = world.path().display().to_string();
    let layers = [layer(&[
        E::Symlink("esc", &host_dir),
        E::File("esc/victim", b"pwned\n"),
        E::Symlink("slash", "/"),
        E::File("slash/etc/passwd", b"pwned\n"),
    ])];
    world.import(&image(&layers, true)).unwrap();
    let root = world.confined();
    assert_victims_intact(&world);
    let inside = root.join(host_dir.trim_start_matches('/')).join("victim");
    assert_eq!(fs::read(inside).unwrap(), b"pwned\n");
    assert_eq!(fs::read(root.join("etc/passwd")).unwrap(), b"pwned\n");
    // The links themselves are kept as the image has them.
    assert_eq!(
        fs::read_link(root.join("esc")).unwrap(),
        Path::new(&host_dir)
    );
}

#[test]
fn symlink_chain_escape() {
    // a -> b -> c/d -> ../../.. (from c: one level too many), in one layer and across layers.
    let chain = [
        E::Dir("c"),
        E::Symlink("c/d", "../../../.."),
        E::Symlink("b", "c/d"),
        E::Symlink("a", "b"),
    ];
    let write = E::File("a/victim", b"pwned\n");
    let one_layer = [layer(&[
        E::Dir("c"),
        E::Symlink("c/d", "../../../.."),
        E::Symlink("b", "c/d"),
        E::Symlink("a", "b"),
        E::File("a/victim", b"pwned\n"),
    ])];
    both_compressions(&one_layer, |world, gz| {
        assert_corrupt(&world.refused(), &format!("one layer, gz={gz}"));
        assert_victims_intact(world);
    });
    let two_layers = [layer(&chain), layer(&[write])];
    both_compressions(&two_layers, |world, gz| {
        assert_corrupt(&world.refused(), &format!("two layers, gz={gz}"));
        assert_victims_intact(world);
    });
    // Absolute links in the chain: `/c/../..` climbs above the root too.
    let absolute = [layer(&[
        E::Dir("c"),
        E::Symlink("x", "/c/../.."),
        E::Symlink("y", "/x"),
        E::File("y/victim", b"pwned\n"),
    ])];
    both_compressions(&absolute, |world, gz| {
        assert_corrupt(&world.refused(), &format!("absolute chain, gz={gz}"));
        assert_victims_intact(world);
    });
}

#[test]
fn symlink_loop_is_corrupt() {
    let layers = [layer(&[
        E::Symlink("a", "b"),
        E::Symlink("b", "a"),
        E::File("a/x", b"x"),
    ])];
    both_compressions(&layers, |world, _| {
        let err = world.refused();
        assert_corrupt(&err, "loop");
        assert!(err.to_string().contains("too many symlinks"), "{err}");
    });
}

// ---------------------------------------------------------------- hard links

#[test]
fn hardlink_target_outside() {
    for target in ["../../../victim", "/victim", "a/../../../../victim"] {
        let layers = [layer(&[E::Dir("a"), E::Hardlink("h", target)])];
        both_compressions(&layers, |world, gz| {
            let err = world.refused();
            assert_corrupt(&err, &format!("{target}, gz={gz}"));
            assert_victims_intact(world);
            let nlink = fs::metadata(world.path().join("victim")).unwrap().nlink();
            assert_eq!(nlink, 1, "nobody linked the victim");
        });
    }
}

#[test]
fn hardlink_target_via_a_symlinked_dir() {
    // Through a directory symlink that climbs out: refused.
    let escaping = [layer(&[
        E::Symlink("lnk", "../../.."),
        E::Hardlink("h", "lnk/victim"),
    ])];
    both_compressions(&escaping, |world, gz| {
        assert_corrupt(&world.refused(), &format!("gz={gz}"));
        assert_eq!(
            fs::metadata(world.path().join("victim")).unwrap().nlink(),
            1
        );
    });
    // Through an absolute one: the file inside the rootfs.
    let mut world = World::new(UnpackLimits::default());
    let victim = world.path().join("victim").display().to_string();
    let layers = [layer(&[
        E::Dir("etc"),
        E::File("etc/passwd", b"inside\n"),
        E::Symlink("lnk", "/etc"),
        E::Hardlink("h", "lnk/passwd"),
        // A hard link to a symlink that points outside links the symlink, not its target.
        E::Symlink("s", &victim),
        E::Hardlink("h2", "s"),
    ])];
    world.import(&image(&layers, false)).unwrap();
    let root = world.confined();
    assert_eq!(
        fs::metadata(root.join("h")).unwrap().ino(),
        fs::metadata(root.join("etc/passwd")).unwrap().ino()
    );
    assert!(
        fs::symlink_metadata(root.join("h2"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        fs::metadata(world.path().join("victim")).unwrap().nlink(),
        1
    );
    assert_victims_intact(&world);
}

// ---------------------------------------------------------------- names

#[test]
fn dotdot_entry_names() {
    for name in ["../victim", "a/../../victim", "./../../../victim"] {
        let layers = [layer(&[E::Dir("a"), E::RawName(name)])];
        both_compressions(&layers, |world, gz| {
            let err = world.refused();
            assert_corrupt(&err, &format!("{name}, gz={gz}"));
            assert!(err.to_string().contains("'..'"), "{err}");
            assert_victims_intact(world);
        });
    }
    // The same through a PAX path record, which overrides the header's name.
    let layers = [layer(&[E::PaxName(b"../../../victim")])];
    both_compressions(&layers, |world, _| {
        assert_corrupt(&world.refused(), "pax ..");
        assert_victims_intact(world);
    });
}

#[test]
fn absolute_entry_names() {
    let layers = [layer(&[E::RawName("/victim")])];
    both_compressions(&layers, |world, gz| {
        let err = world.refused();
        assert_corrupt(&err, &format!("gz={gz}"));
        assert!(err.to_string().contains("absolute"), "{err}");
    });
    let host = World::new(UnpackLimits::default())
        .path()
        .join("victim")
        .display()
        .to_string();
    let layers = [layer(&[E::PaxName(host.as_bytes())])];
    both_compressions(&layers, |world, _| {
        assert_corrupt(&world.refused(), "pax absolute");
    });
}

#[test]
fn nul_bytes_in_entry_names() {
    let layers = [layer(&[E::PaxName(b"etc/pass\0wd")])];
    both_compressions(&layers, |world, _| {
        let err = world.refused();
        assert_corrupt(&err, "NUL");
        assert!(err.to_string().contains("NUL"), "{err}");
    });
}

// ---------------------------------------------------------------- device nodes

/// Whether this process may create a device node (root with `CAP_MKNOD`).
fn can_mknod() -> bool {
    let dir = tempfile::tempdir().unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.path().join("null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o600),
        rustix::fs::makedev(1, 3),
    )
    .is_ok()
}

#[test]
fn device_nodes_follow_the_policy() {
    let layers = [layer(&[
        E::Dir("dev"),
        E::Char("dev/null", 1, 3),
        E::Block("dev/sda", 8, 0),
        E::File("ok", b"ok\n"),
    ])];
    let node_kinds = |root: &Path| {
        ["dev/null", "dev/sda"].map(|p| {
            fs::symlink_metadata(root.join(p)).ok().map(|m| {
                (
                    m.file_type().is_char_device(),
                    m.file_type().is_block_device(),
                    m.rdev(),
                )
            })
        })
    };
    for gz in [false, true] {
        // Default: created by root that may mknod, skipped otherwise.
        let mut world = World::new(UnpackLimits::default());
        world.import(&image(&layers, gz)).unwrap();
        let root = world.confined();
        assert_eq!(fs::read(root.join("ok")).unwrap(), b"ok\n");
        if is_root() && can_mknod() {
            assert_eq!(
                node_kinds(&root),
                [
                    Some((true, false, rustix::fs::makedev(1, 3))),
                    Some((false, true, rustix::fs::makedev(8, 0)))
                ]
            );
        } else {
            assert_eq!(node_kinds(&root), [None, None], "skipped without CAP_MKNOD");
        }

        // Skip: never created, the rest applies.
        let mut world = World::new(UnpackLimits {
            devices: DeviceNodes::Skip,
            ..UnpackLimits::default()
        });
        world.import(&image(&layers, gz)).unwrap();
        let root = world.confined();
        assert_eq!(node_kinds(&root), [None, None]);
        assert_eq!(fs::read(root.join("ok")).unwrap(), b"ok\n");

        // Refuse: the layer is corrupt for this store.
        let mut world = World::new(UnpackLimits {
            devices: DeviceNodes::Refuse,
            ..UnpackLimits::default()
        });
        world.import(&image(&layers, gz)).unwrap();
        let err = world.refused();
        assert_corrupt(&err, "refused device");
        assert!(err.to_string().contains("dev/null"), "{err}");
    }
}

// ---------------------------------------------------------------- whiteouts

#[test]
fn whiteout_with_dotdot_is_corrupt() {
    for name in [
        "../.wh.victim",
        "a/../../../.wh.victim",
        "../../../victim-dir/.wh..wh..opq",
    ] {
        let layers = [layer(&[E::Dir("a")]), layer(&[E::RawName(name)])];
        both_compressions(&layers, |world, gz| {
            assert_corrupt(&world.refused(), &format!("{name}, gz={gz}"));
            assert_victims_intact(world);
        });
    }
    // A whiteout naming `..` itself.
    let layers = [layer(&[E::Dir("a")]), layer(&[E::File("a/.wh...", b"")])];
    both_compressions(&layers, |world, _| {
        let err = world.refused();
        assert_corrupt(&err, ".wh...");
        assert!(err.to_string().contains("bad whiteout name"), "{err}");
    });
}

#[test]
fn whiteout_through_a_symlinked_parent() {
    // The parent climbs out: refused, the victims stay.
    for name in ["lnk/.wh.victim", "lnk/victim-dir/.wh..wh..opq"] {
        let layers = [
            layer(&[E::Symlink("lnk", "../../..")]),
            layer(&[E::File(name, b"")]),
        ];
        for gz in [false, true] {
            let mut world = World::new(UnpackLimits::default());
            world.import(&image(&layers, gz)).unwrap();
            assert_corrupt(&world.refused(), &format!("{name}, gz={gz}"));
            assert_victims_intact(&world);
        }
    }
    // An absolute parent: resolved inside the rootfs, deleting only what is there.
    let mut world = World::new(UnpackLimits::default());
    let host_dir = world.path().display().to_string();
    let inside = format!("{}/victim", host_dir.trim_start_matches('/'));
    let layers = [
        layer(&[
            E::File("keep", b"keep\n"),
            E::File("gone", b"gone\n"),
            E::File(&inside, b"inside\n"),
            E::Symlink("lnk", "/"),
            E::Symlink("host", &host_dir),
        ]),
        layer(&[
            E::File("lnk/.wh.gone", b""),
            E::File("host/.wh.victim", b""),
        ]),
    ];
    world.import(&image(&layers, true)).unwrap();
    let root = world.confined();
    assert!(!root.join("gone").exists());
    assert!(!root.join(&inside).exists());
    assert_eq!(fs::read(root.join("keep")).unwrap(), b"keep\n");
    assert_victims_intact(&world);
}

// ---------------------------------------------------------------- replacing across layers

#[test]
fn symlink_replaced_by_directory_in_a_later_layer() {
    let layers = [
        layer(&[E::Symlink("d", "../../.."), E::Symlink("e", "/etc")]),
        layer(&[
            E::Dir("d"),
            E::File("d/victim", b"inside\n"),
            E::Dir("e"),
            E::File("e/passwd", b"inside\n"),
        ]),
    ];
    both_compressions(&layers, |world, _| {
        let root = world.confined();
        for dir in ["d", "e"] {
            assert!(
                fs::symlink_metadata(root.join(dir)).unwrap().is_dir(),
                "{dir}"
            );
        }
        assert_eq!(fs::read(root.join("d/victim")).unwrap(), b"inside\n");
        assert_eq!(fs::read(root.join("e/passwd")).unwrap(), b"inside\n");
        assert!(!root.join("etc/passwd").exists());
        assert_victims_intact(world);
    });
}

#[test]
fn directory_replaced_by_symlink_then_written_through() {
    // The new link climbs out: refused.
    let escaping = [
        layer(&[E::Dir("d"), E::File("d/f", b"f\n")]),
        layer(&[E::Symlink("d", "../../.."), E::File("d/victim", b"pwned\n")]),
    ];
    both_compressions(&escaping, |world, gz| {
        assert_corrupt(&world.refused(), &format!("gz={gz}"));
        assert_victims_intact(world);
    });
    // An absolute one: the directory goes, the file lands under the link's target inside.
    let inside = [
        layer(&[E::Dir("d"), E::File("d/f", b"f\n"), E::Dir("etc")]),
        layer(&[E::Symlink("d", "/etc"), E::File("d/new", b"new\n")]),
    ];
    both_compressions(&inside, |world, _| {
        let root = world.confined();
        assert!(
            fs::symlink_metadata(root.join("d"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(root.join("etc/new")).unwrap(), b"new\n");
        assert!(!root.join("etc/f").exists());
        assert_victims_intact(world);
    });
}

// ---------------------------------------------------------------- sizes

#[test]
fn huge_sparse_file_is_bounded() {
    // A GNU sparse file declaring 1 TiB: refused by the default limit before a byte is written.
    let layers = [layer(&[
        E::File("before", b"b\n"),
        E::Sparse("huge", 1 << 40),
    ])];
    both_compressions(&layers, |world, gz| {
        let err = world.refused();
        assert_limit(&err, &format!("gz={gz}"));
        assert!(err.to_string().contains("huge"), "{err}");
    });
    // A plain file whose header declares 100 GiB (and holds 512 bytes).
    let layers = [layer(&[E::Declared("liar", 100 << 30)])];
    for gz in [false, true] {
        let mut world = World::new(UnpackLimits::default());
        // The diff id is of the short stream, so the import accepts it.
        world.import(&image(&layers, gz)).unwrap();
        assert_limit(&world.refused(), "declared size");
    }
    // Under a small limit: 8 MiB refused at 4 MiB, written in full at 16 MiB.
    let layers = [layer(&[E::Sparse("sparse", 8 << 20)])];
    let limits = |max_bytes| UnpackLimits {
        max_bytes,
        ..UnpackLimits::default()
    };
    let mut world = World::new(limits(4 << 20));
    world.import(&image(&layers, true)).unwrap();
    assert_limit(&world.refused(), "8 MiB under 4 MiB");
    let mut world = World::new(limits(16 << 20));
    world.import(&image(&layers, true)).unwrap();
    let root = world.confined();
    let data = fs::read(root.join("sparse")).unwrap();
    assert_eq!(data.len(), 8 << 20);
    assert!(data[..(8 << 20) - 512].iter().all(|&b| b == 0));
    assert!(data[(8 << 20) - 512..].iter().all(|&b| b == b'x'));
}

fn small(max_bytes: u64) -> UnpackLimits {
    UnpackLimits {
        max_bytes,
        ..UnpackLimits::default()
    }
}

#[test]
fn decompression_bomb_is_bounded() {
    // 64 MiB of zeros gzip to well under 1 MiB; the store allows 8 MiB.
    let layer = bomb(64 << 20, 0);
    assert!(layer.data.len() < 1 << 20);
    let built = image_with(vec![layer], |_| {}, |_| {});
    let mut world = World::new(small(8 << 20));
    let err = world.import(&built).unwrap_err();
    assert_limit(&err, "bomb at import");
    assert!(err.to_string().contains(&built.layer_digests[0]), "{err}");
    assert!(world.store.list().is_empty(), "the image is not recorded");
    world.store_is_clean();

    // A small tar followed by a stream of zeros after its end: bounded too.
    let built = image_with(vec![bomb(1024, 64 << 20)], |_| {}, |_| {});
    let mut world = World::new(small(8 << 20));
    assert_limit(&world.import(&built).unwrap_err(), "trailing bomb");
}

#[test]
fn layers_together_over_the_byte_limit() {
    // Each layer fits the limit (the import checks layers one by one), the rootfs does not:
    // it is removed, and so is the half-unpacked layer of an overlay.
    let first = layer(&[E::File("zeros", &[0u8; 768 << 10])]);
    let second = layer(&[E::File("ones", &[1u8; 768 << 10])]);
    let built = image_with(
        vec![blob(&first, true), blob(&second, false)],
        |_| {},
        |_| {},
    );
    let mut world = World::new(small(1 << 20));
    world.import(&built).unwrap();
    let err = world.refused();
    assert_limit(&err, "two layers");
    assert!(
        err.to_string().contains("1048576"),
        "names the limit: {err}"
    );
    // The store keeps the image: a bigger limit builds it.
    let store = Store::open_with_limits(world.store.root(), small(4 << 20)).unwrap();
    let image = store.get(NAME).unwrap();
    let target = world.path().join("a/b/rootfs");
    let rootfs = store
        .prepare_rootfs(&image, &target, RootfsMode::Copy)
        .unwrap();
    assert_eq!(fs::metadata(target.join("zeros")).unwrap().len(), 768 << 10);
    assert_eq!(fs::metadata(target.join("ones")).unwrap().len(), 768 << 10);
    rootfs.remove().unwrap();
}

#[test]
fn too_many_entries() {
    let names: Vec<String> = (0..100).map(|i| format!("f{i}")).collect();
    let entries: Vec<E<'_>> = names.iter().map(|n| E::File(n, b"")).collect();
    let layers = [layer(&entries)];
    for gz in [false, true] {
        let mut world = World::new(UnpackLimits {
            max_entries: 50,
            ..UnpackLimits::default()
        });
        world.import(&image(&layers, gz)).unwrap();
        let err = world.refused();
        assert_limit(&err, "entries");
        assert!(err.to_string().contains("50 tar entries"), "{err}");

        let mut world = World::new(UnpackLimits {
            max_entries: 100,
            ..UnpackLimits::default()
        });
        world.import(&image(&layers, gz)).unwrap();
        let root = world.confined();
        assert_eq!(fs::read_dir(root).unwrap().count(), 100);
    }
}

// ---------------------------------------------------------------- lying manifests (pulls)

async fn serve(dir: &Path, built: &Built) -> Registry {
    let archive = dir.join("served.tar");
    layout(&archive, NAME, built);
    Registry::builder().archive(&archive).start().await.unwrap()
}

fn plain(registry: &Registry) -> RegistryConfig {
    RegistryConfig {
        plain_http: vec![registry.host()],
        ..RegistryConfig::default()
    }
}

/// Pulls `built` from a loopback registry into a fresh store with `limits`; the pull must
/// fail and leave no image, no temporary file and no layer blob behind.
async fn pull_refused(built: &Built, limits: UnpackLimits) -> (Error, Registry) {
    let dir = tempfile::tempdir().unwrap();
    let registry = serve(dir.path(), built).await;
    let store = Store::open_with_limits(dir.path().join("store"), limits).unwrap();
    let err = store
        .pull(
            &format!("{}/library/hostile:1", registry.host()),
            None,
            &plain(&registry),
        )
        .await
        .unwrap_err();
    assert!(store.list().is_empty());
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    for layer in &built.layer_digests {
        let path = store
            .root()
            .join("blobs/sha256")
            .join(layer.trim_start_matches("sha256:"));
        assert!(!path.exists(), "layer {layer} was stored");
    }
    (err, registry)
}

fn one_layer() -> Vec<Blob> {
    vec![blob(&layer(&[E::File("etc/hostname", b"x\n")]), true)]
}

#[tokio::test]
async fn manifest_lies_about_layer_sizes() {
    for delta in [-1i64, 1, 1000] {
        let built = image_with(
            one_layer(),
            |_| {},
            |m| {
                let size = m["layers"][0]["size"].as_i64().unwrap();
                m["layers"][0]["size"] = serde_json::json!(size + delta);
            },
        );
        let (err, _) = pull_refused(&built, UnpackLimits::default()).await;
        assert_corrupt(&err, &format!("size {delta:+}"));
        assert!(err.to_string().contains(&built.layer_digests[0]), "{err}");
    }
    let built = image_with(
        one_layer(),
        |_| {},
        |m| {
            m["layers"][0]["size"] = serde_json::json!(-5);
        },
    );
    assert_corrupt(
        &pull_refused(&built, UnpackLimits::default()).await.0,
        "negative",
    );
}

#[tokio::test]
async fn manifest_lies_about_layer_digests() {
    // The registry serves other bytes under the layer's name.
    let mut built = image(&[layer(&[E::File("a", b"a\n")])], true);
    let digest = built.layer_digests[0].clone();
    let blob = built.blobs.iter_mut().find(|(d, _)| *d == digest).unwrap();
    blob.1 = gzip(&layer(&[E::File("a", b"b\n")]));
    let (err, _) = pull_refused(&built, UnpackLimits::default()).await;
    assert_corrupt(&err, "digest");
    // A layer whose bytes match the manifest but not the config's diff id.
    let built = image_with(
        one_layer(),
        |c| {
            c["rootfs"]["diff_ids"][0] = serde_json::json!(sha(b"something else"));
        },
        |_| {},
    );
    let (err, _) = pull_refused(&built, UnpackLimits::default()).await;
    assert_corrupt(&err, "diff id");
    assert!(err.to_string().contains("the config says"), "{err}");
}

#[tokio::test]
async fn manifest_over_the_size_cap() {
    // 9 MiB of annotations: over the 8 MiB cap on manifests.
    let built = image_with(
        one_layer(),
        |_| {},
        |m| {
            m["annotations"] = serde_json::json!({ "pad": "x".repeat(9 << 20) });
        },
    );
    let (err, registry) = pull_refused(&built, UnpackLimits::default()).await;
    assert_corrupt(&err, "huge manifest");
    assert!(err.to_string().contains("too large"), "{err}");
    assert!(
        !registry.request_log().iter().any(|r| r.contains("/blobs/")),
        "no blob fetched: {:?}",
        registry.request_log()
    );
}

#[tokio::test]
async fn manifest_content_not_matching_its_digest() {
    // Pulled by digest, the registry answers with a different (valid) manifest.
    let honest = image_with(one_layer(), |_| {}, |_| {});
    let other = image_with(
        one_layer(),
        |_| {},
        |m| {
            m["annotations"] = serde_json::json!({ "x": "y" });
        },
    );
    let mut built = honest.clone();
    for (digest, blob) in &mut built.blobs {
        if *digest == honest.digest {
            blob.clone_from(&other.manifest);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = serve(dir.path(), &built).await;
    let store = Store::open(dir.path().join("store")).unwrap();
    let err = store
        .pull(
            &format!("{}/library/hostile@{}", registry.host(), honest.digest),
            None,
            &plain(&registry),
        )
        .await
        .unwrap_err();
    assert_corrupt(&err, "manifest digest");
    assert!(store.list().is_empty());
}

#[tokio::test]
async fn config_lies() {
    // Bigger than its descriptor says.
    let built = image_with(
        one_layer(),
        |_| {},
        |m| {
            let size = m["config"]["size"].as_i64().unwrap();
            m["config"]["size"] = serde_json::json!(size - 10);
        },
    );
    let (err, _) = pull_refused(&built, UnpackLimits::default()).await;
    assert_corrupt(&err, "config size");
    // Declaring more than the 8 MiB cap on configs.
    let built = image_with(
        one_layer(),
        |_| {},
        |m| {
            m["config"]["size"] = serde_json::json!(64 << 20);
        },
    );
    let (err, registry) = pull_refused(&built, UnpackLimits::default()).await;
    assert_corrupt(&err, "config cap");
    assert!(
        !registry.request_log().iter().any(|r| r.contains("/blobs/")),
        "nothing fetched"
    );
    // Naming fewer diff ids than there are layers.
    let built = image_with(
        one_layer(),
        |c| {
            c["rootfs"]["diff_ids"] = serde_json::json!([]);
        },
        |_| {},
    );
    let (err, _) = pull_refused(&built, UnpackLimits::default()).await;
    assert_corrupt(&err, "diff id count");
    // Not JSON at all.
    let mut built = image_with(one_layer(), |_| {}, |_| {});
    let config_digest = built.blobs[built.blobs.len() - 2].0.clone();
    let garbage = b"\x00\x01 not json".to_vec();
    let fixed = sha(&garbage);
    let config_at = built.blobs.len() - 2;
    built.blobs[config_at] = (fixed.clone(), garbage.clone());
    let manifest = String::from_utf8(built.manifest.clone())
        .unwrap()
        .replace(&config_digest, &fixed);
    let manifest = manifest.replacen(
        &format!("\"size\":{}", built_config_size(&built.manifest)),
        &format!("\"size\":{}", garbage.len()),
        1,
    );
    built.digest = sha(manifest.as_bytes());
    built.manifest = manifest.into_bytes();
    let last = built.blobs.len() - 1;
    built.blobs[last] = (built.digest.clone(), built.manifest.clone());
    let (err, _) = pull_refused(&built, UnpackLimits::default()).await;
    assert_corrupt(&err, "config not JSON");
    assert!(err.to_string().contains("does not parse"), "{err}");
}

fn built_config_size(manifest: &[u8]) -> i64 {
    let m: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    m["config"]["size"].as_i64().unwrap()
}

#[tokio::test]
async fn declared_sizes_over_the_limit_fetch_nothing() {
    // A manifest declaring a 100 GiB layer, under the default 64 GiB limit.
    let built = image_with(
        one_layer(),
        |_| {},
        |m| {
            m["layers"][0]["size"] = serde_json::json!(100i64 << 30);
        },
    );
    let (err, registry) = pull_refused(&built, UnpackLimits::default()).await;
    assert_limit(&err, "declared");
    assert!(err.to_string().contains("declares"), "{err}");
    assert!(
        !registry.request_log().iter().any(|r| r.contains("/blobs/")),
        "no blob fetched: {:?}",
        registry.request_log()
    );
}

#[tokio::test]
async fn decompression_bomb_pulled_is_not_stored() {
    let built = image_with(vec![bomb(64 << 20, 0)], |_| {}, |_| {});
    let (err, _) = pull_refused(&built, small(8 << 20)).await;
    assert_limit(&err, "pulled bomb");
    assert!(err.to_string().contains(&built.layer_digests[0]), "{err}");
}

/// A loopback "registry" whose manifests never end: a chunked body of zeros, cut off by
/// the server after 64 MiB (so the test ends whatever the client does). Returns its host and
/// the body bytes it managed to send.
async fn endless_manifest_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request: its head, up to the blank line.
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    buf.drain(..head_end);
                    if !head.contains("/manifests/") {
                        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}";
                        if conn.write_all(ok.as_bytes()).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    let start = "HTTP/1.1 200 OK\r\ncontent-type: application/vnd.oci.image.manifest.v1+json\r\ntransfer-encoding: chunked\r\n\r\n";
                    if conn.write_all(start.as_bytes()).await.is_err() {
                        return;
                    }
                    let mut chunk = format!("{:x}\r\n", 64 << 10).into_bytes();
                    chunk.extend_from_slice(&vec![b' '; 64 << 10]);
                    chunk.extend_from_slice(b"\r\n");
                    for _ in 0..1024 {
                        if conn.write_all(&chunk).await.is_err() {
                            return;
                        }
                        counter.fetch_add(64 << 10, Ordering::Relaxed);
                    }
                    let _ = conn.write_all(b"0\r\n\r\n").await;
                }
            });
        }
    });
    (host, sent)
}

#[tokio::test]
async fn manifest_with_an_endless_body_is_cut_at_the_cap() {
    let (host, sent) = endless_manifest_server().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let config = RegistryConfig {
        plain_http: vec![host.clone()],
        ..RegistryConfig::default()
    };
    let err = store
        .pull(&format!("{host}/library/endless:1"), None, &config)
        .await
        .unwrap_err();
    assert_corrupt(&err, "endless manifest");
    assert!(err.to_string().contains("too large"), "{err}");
    // The pull stopped reading at the 8 MiB cap: the server, which would send 64 MiB, got
    // no further than the cap plus what the socket buffers held.
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(sent < 40 << 20, "{sent} bytes sent before the pull gave up");
    assert!(store.list().is_empty());
}
