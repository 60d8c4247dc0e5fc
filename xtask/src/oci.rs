//! `cargo xtask oci-image`: builds a small OCI image archive offline from a static busybox,
//! for runtimes under test (containerd imports it with `ctr images import`).
//!
//! The image has one uncompressed layer: `/bin/busybox`, a symlink per applet, `/etc/passwd`,
//! `/etc/group` and the usual empty directories. Everything is deterministic (fixed mtimes and
//! owners), so the same busybox always yields the same digests.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// What to build.
pub(crate) struct ImageSpec {
    pub(crate) name: String,
    pub(crate) busybox: PathBuf,
    pub(crate) entrypoint: Vec<String>,
    pub(crate) cmd: Vec<String>,
    pub(crate) out: PathBuf,
}

pub(crate) fn parse(args: &[String]) -> Result<ImageSpec, String> {
    let mut spec = ImageSpec {
        name: String::new(),
        busybox: PathBuf::from("/bin/busybox"),
        entrypoint: Vec::new(),
        cmd: vec!["sh".into()],
        out: PathBuf::new(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--name" => spec.name = value()?,
            "--busybox" => spec.busybox = PathBuf::from(value()?),
            "--out" => spec.out = PathBuf::from(value()?),
            "--entrypoint" => {
                spec.entrypoint = value()?.split_whitespace().map(String::from).collect()
            }
            "--cmd" => spec.cmd = value()?.split_whitespace().map(String::from).collect(),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if spec.name.is_empty() || spec.out.as_os_str().is_empty() {
        return Err(
            "usage: cargo xtask oci-image --name REF --out FILE.tar [--busybox PATH] \
                    [--entrypoint 'a b'] [--cmd 'a b']"
                .into(),
        );
    }
    Ok(spec)
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_path(path).expect("short ASCII paths");
    header
}

fn add_file(
    builder: &mut tar::Builder<Vec<u8>>,
    path: &str,
    mode: u32,
    data: &[u8],
) -> Result<(), String> {
    let mut h = header(path, tar::EntryType::Regular, mode, data.len() as u64);
    h.set_cksum();
    builder
        .append(&h, data)
        .map_err(|e| format!("tar {path}: {e}"))
}

fn add_dir(builder: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) -> Result<(), String> {
    let mut h = header(path, tar::EntryType::Directory, mode, 0);
    h.set_cksum();
    builder
        .append(&h, &[][..])
        .map_err(|e| format!("tar {path}: {e}"))
}

fn applets(busybox: &Path) -> Result<Vec<String>, String> {
    let out = Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| format!("running {} --list: {e}", busybox.display()))?;
    if !out.status.success() {
        return Err(format!("{} --list failed", busybox.display()));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(String::from)
        .collect())
}

fn layer(spec: &ImageSpec) -> Result<Vec<u8>, String> {
    let busybox = std::fs::read(&spec.busybox)
        .map_err(|e| format!("reading {}: {e}", spec.busybox.display()))?;
    let mut builder = tar::Builder::new(Vec::new());
    for dir in [
        "bin/", "dev/", "etc/", "proc/", "root/", "sys/", "tmp/", "var/", "var/log/",
    ] {
        add_dir(
            &mut builder,
            dir,
            if dir == "tmp/" { 0o1777 } else { 0o755 },
        )?;
    }
    add_file(&mut builder, "bin/busybox", 0o755, &busybox)?;
    let mut names = applets(&spec.busybox)?;
    names.sort();
    names.dedup();
    for applet in names {
        let mut h = header(&format!("bin/{applet}"), tar::EntryType::Symlink, 0o777, 0);
        h.set_link_name("busybox").map_err(|e| e.to_string())?;
        h.set_cksum();
        builder
            .append(&h, &[][..])
            .map_err(|e| format!("tar bin/{applet}: {e}"))?;
    }
    add_file(
        &mut builder,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    add_file(
        &mut builder,
        "etc/group",
        0o644,
        b"root:x:0:\nnogroup:x:65534:\n",
    )?;
    builder
        .into_inner()
        .map_err(|e| format!("finishing the layer: {e}"))
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Builds the image archive (an OCI image layout in a tar).
pub(crate) fn build(spec: &ImageSpec) -> Result<String, String> {
    let layer = layer(spec)?;
    let layer_digest = format!("sha256:{}", sha256(&layer));
    let tag = spec
        .name
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .map_or("latest", |(_, t)| t);
    let mut image_config = serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "WorkingDir": "/",
    });
    if !spec.entrypoint.is_empty() {
        image_config["Entrypoint"] = serde_json::json!(spec.entrypoint);
    }
    if !spec.cmd.is_empty() {
        image_config["Cmd"] = serde_json::json!(spec.cmd);
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch(),
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": image_config,
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
        "history": [{ "created": "1970-01-01T00:00:00Z", "created_by": "cargo xtask oci-image" }],
    }))
    .map_err(|e| e.to_string())?;
    let config_digest = format!("sha256:{}", sha256(&config));
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    }))
    .map_err(|e| e.to_string())?;
    let manifest_digest = format!("sha256:{}", sha256(&manifest));
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {
                "io.containerd.image.name": spec.name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))
    .map_err(|e| e.to_string())?;

    let mut archive = tar::Builder::new(Vec::new());
    add_file(
        &mut archive,
        "oci-layout",
        0o644,
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    add_file(&mut archive, "index.json", 0o644, &index)?;
    add_dir(&mut archive, "blobs/", 0o755)?;
    add_dir(&mut archive, "blobs/sha256/", 0o755)?;
    for (digest, blob) in [
        (&layer_digest, &layer),
        (&config_digest, &config),
        (&manifest_digest, &manifest),
    ] {
        let hex = digest.trim_start_matches("sha256:");
        add_file(&mut archive, &format!("blobs/sha256/{hex}"), 0o644, blob)?;
    }
    let bytes = archive.into_inner().map_err(|e| e.to_string())?;
    if let Some(parent) = spec.out.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    std::fs::File::create(&spec.out)
        .and_then(|mut f| f.write_all(&bytes))
        .map_err(|e| format!("writing {}: {e}", spec.out.display()))?;
    Ok(manifest_digest)
}
