//! The image module end to end: reference parsing, pulls from the loopback registry of
//! cri-testkit (auth, mirrors, platforms, failures), the store, layer unpacking and rootfs.
//!
//! Images are built in the tests with the `tar` crate as OCI layout archives, the format
//! `cargo xtask oci-image` writes.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use cri_oci::Error;
use cri_oci::image::{
    Platform, Reference, RegistryConfig, RootfsKind, RootfsMode, Store, cleanup_rootfs,
};
use cri_testkit::registry::Registry;

mod support {
    use std::path::Path;

    use sha2::{Digest as _, Sha256};

    /// One entry of a layer tar.
    pub(crate) enum E<'a> {
        Dir(&'a str, u32),
        File(&'a str, u32, &'a [u8]),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
        /// A file whose name is written into the header as is (for hostile names).
        RawName(&'a str),
        CharDevice(&'a str, u32, u32),
    }

    pub(crate) fn sha(data: &[u8]) -> String {
        format!(
            "sha256:{}",
            Sha256::digest(data)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        h
    }

    pub(crate) fn layer(entries: &[E<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for entry in entries {
            match *entry {
                E::Dir(path, mode) => {
                    let mut h = header(tar::EntryType::Directory, mode, 0);
                    h.set_path(path).unwrap();
                    h.set_cksum();
                    b.append(&h, &[][..]).unwrap();
                }
                E::File(path, mode, data) => {
                    let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
                    h.set_path(path).unwrap();
                    h.set_cksum();
                    b.append(&h, data).unwrap();
                }
                E::Symlink(path, target) => {
                    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                    h.set_path(path).unwrap();
                    h.set_link_name(target).unwrap();
                    h.set_cksum();
                    b.append(&h, &[][..]).unwrap();
                }
                E::Hardlink(path, target) => {
                    let mut h = header(tar::EntryType::Link, 0o644, 0);
                    h.set_path(path).unwrap();
                    h.set_link_name(target).unwrap();
                    h.set_cksum();
                    b.append(&h, &[][..]).unwrap();
                }
                E::RawName(name) => {
                    let mut h = header(tar::EntryType::Regular, 0o644, 4);
                    let field = &mut h.as_old_mut().name;
                    field[..name.len()].copy_from_slice(name.as_bytes());
                    h.set_cksum();
                    b.append(&h, &b"evil"[..]).unwrap();
                }
                E::CharDevice(path, major, minor) => {
                    let mut h = header(tar::EntryType::Char, 0o666, 0);
                    h.set_path(path).unwrap();
                    h.set_device_major(major).unwrap();
                    h.set_device_minor(minor).unwrap();
                    h.set_cksum();
                    b.append(&h, &[][..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A manifest (or index) and every blob it needs.
    #[derive(Clone)]
    pub(crate) struct Built {
        pub(crate) digest: String,
        pub(crate) media_type: &'static str,
        pub(crate) size: usize,
        pub(crate) blobs: Vec<(String, Vec<u8>)>,
        pub(crate) config_digest: String,
        pub(crate) layer_digests: Vec<String>,
        pub(crate) diff_ids: Vec<String>,
    }

    impl Built {
        pub(crate) fn blob_size(&self, digest: &str) -> u64 {
            self.blobs
                .iter()
                .find(|(d, _)| d == digest)
                .map_or(0, |(_, b)| b.len() as u64)
        }

        /// Flips a byte of a blob, keeping its name: the registry then serves corrupt content.
        pub(crate) fn corrupt(mut self, digest: &str) -> Self {
            let blob = self.blobs.iter_mut().find(|(d, _)| d == digest).unwrap();
            let last = blob.1.len() - 1;
            blob.1[last] ^= 0xff;
            self
        }
    }

    pub(crate) struct Opts<'a> {
        pub(crate) gzip: bool,
        pub(crate) user: Option<&'a str>,
        pub(crate) os: String,
        pub(crate) arch: String,
        /// Docker v2 media types instead of OCI ones.
        pub(crate) docker: bool,
    }

    impl Default for Opts<'_> {
        fn default() -> Self {
            let host = cri_oci::image::Platform::host();
            Self {
                gzip: true,
                user: None,
                os: host.os,
                arch: host.architecture,
                docker: false,
            }
        }
    }

    pub(crate) fn image(layers: &[Vec<u8>], opts: Opts<'_>) -> Built {
        let mut blobs = Vec::new();
        let mut layer_descs = Vec::new();
        let mut diff_ids = Vec::new();
        let mut layer_digests = Vec::new();
        for tar in layers {
            diff_ids.push(sha(tar));
            let (blob, media_type) = match (opts.gzip, opts.docker) {
                (true, false) => (gzip(tar), "application/vnd.oci.image.layer.v1.tar+gzip"),
                (false, false) => (tar.clone(), "application/vnd.oci.image.layer.v1.tar"),
                (_, true) => (
                    gzip(tar),
                    "application/vnd.docker.image.rootfs.diff.tar.gzip",
                ),
            };
            let digest = sha(&blob);
            layer_descs.push(serde_json::json!({ "mediaType": media_type, "digest": digest, "size": blob.len() }));
            layer_digests.push(digest.clone());
            blobs.push((digest, blob));
        }
        let mut inner = serde_json::json!({ "Env": ["PATH=/bin"], "Cmd": ["sh"] });
        if let Some(user) = opts.user {
            inner["User"] = serde_json::json!(user);
        }
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": opts.arch, "os": opts.os,
            "config": inner,
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        }))
        .unwrap();
        let config_digest = sha(&config);
        let (manifest_type, config_type) = if opts.docker {
            (
                "application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.docker.container.image.v1+json",
            )
        } else {
            (
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.oci.image.config.v1+json",
            )
        };
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": { "mediaType": config_type, "digest": config_digest, "size": config.len() },
            "layers": layer_descs,
        }))
        .unwrap();
        let digest = sha(&manifest);
        blobs.push((config_digest.clone(), config));
        blobs.push((digest.clone(), manifest.clone()));
        Built {
            digest,
            media_type: manifest_type,
            size: manifest.len(),
            blobs,
            config_digest,
            layer_digests,
            diff_ids,
        }
    }

    /// An index over `images` with the given platforms ("os/arch[/variant]").
    pub(crate) fn index(images: &[(&Built, &str)]) -> Built {
        let list_type = if images.iter().any(|(i, _)| i.media_type.contains("docker")) {
            "application/vnd.docker.distribution.manifest.list.v2+json"
        } else {
            "application/vnd.oci.image.index.v1+json"
        };
        let mut blobs = Vec::new();
        let mut entries = Vec::new();
        for (image, platform) in images {
            let parts: Vec<&str> = platform.split('/').collect();
            let mut p = serde_json::json!({ "os": parts[0], "architecture": parts[1] });
            if let Some(v) = parts.get(2) {
                p["variant"] = serde_json::json!(v);
            }
            entries.push(serde_json::json!({
                "mediaType": image.media_type, "digest": image.digest, "size": image.size, "platform": p,
            }));
            blobs.extend(image.blobs.iter().cloned());
        }
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": list_type,
            "manifests": entries,
        }))
        .unwrap();
        let digest = sha(&index);
        blobs.push((digest.clone(), index.clone()));
        Built {
            digest,
            media_type: list_type,
            size: index.len(),
            blobs,
            config_digest: String::new(),
            layer_digests: Vec::new(),
            diff_ids: Vec::new(),
        }
    }

    /// Writes an OCI layout tar naming each image as `cargo xtask oci-image` does
    /// (`io.containerd.image.name` + a tag-only `ref.name`), or not at all.
    pub(crate) fn layout(path: &Path, images: &[(Option<&str>, &Built)]) {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
            h.set_path(name).unwrap();
            h.set_cksum();
            b.append(&h, data).unwrap();
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        let mut entries = Vec::new();
        let mut written = std::collections::HashSet::new();
        let mut blob_list = Vec::new();
        for (name, image) in images {
            let mut entry = serde_json::json!({ "mediaType": image.media_type, "digest": image.digest, "size": image.size });
            if let Some(name) = name {
                let tag = name.rsplit_once(':').map_or("latest", |(_, t)| t);
                entry["annotations"] = serde_json::json!({
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": tag,
                });
            }
            entries.push(entry);
            for (digest, blob) in &image.blobs {
                if written.insert(digest.clone()) {
                    blob_list.push((digest.clone(), blob.clone()));
                }
            }
        }
        let index =
            serde_json::to_vec(&serde_json::json!({ "schemaVersion": 2, "manifests": entries }))
                .unwrap();
        add("index.json", &index);
        for (digest, blob) in blob_list {
            add(
                &format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")),
                &blob,
            );
        }
        std::fs::write(path, b.into_inner().unwrap()).unwrap();
    }
}

use support::{Built, E, Opts};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn busybox_like() -> Built {
    support::image(
        &[
            support::layer(&[
                E::Dir("bin", 0o755),
                E::File("bin/sh", 0o755, b"#!fake shell\n"),
                E::Symlink("bin/ls", "sh"),
                E::Dir("etc", 0o755),
                E::File("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n"),
            ]),
            support::layer(&[E::File("etc/hostname", 0o644, b"test\n")]),
        ],
        Opts::default(),
    )
}

/// A registry serving `images` (name, image) from one archive in `dir`.
async fn serve(
    dir: &Path,
    images: &[(Option<&str>, &Built)],
    configure: impl FnOnce(
        cri_testkit::registry::RegistryBuilder,
    ) -> cri_testkit::registry::RegistryBuilder,
) -> Registry {
    let archive = dir.join(format!("served-{}.tar", images.len()));
    support::layout(&archive, images);
    configure(Registry::builder().archive(&archive))
        .start()
        .await
        .unwrap()
}

fn plain(registry: &Registry) -> RegistryConfig {
    RegistryConfig {
        plain_http: vec![registry.host()],
        ..RegistryConfig::default()
    }
}

fn auth(f: impl FnOnce(&mut cri_api::v1::AuthConfig)) -> cri_api::v1::AuthConfig {
    let mut a = cri_api::v1::AuthConfig::default();
    f(&mut a);
    a
}

fn blob_exists(store: &Store, digest: &str) -> bool {
    store
        .root()
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
        .exists()
}

// ---------------------------------------------------------------- references

#[test]
fn reference_parsing_table() {
    let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let ok: &[(&str, &str, &str, Option<&str>, bool)] = &[
        // input, registry, repository, tag, has digest
        (
            "busybox",
            "docker.io",
            "library/busybox",
            Some("latest"),
            false,
        ),
        (
            "busybox:1.36",
            "docker.io",
            "library/busybox",
            Some("1.36"),
            false,
        ),
        (
            "library/busybox",
            "docker.io",
            "library/busybox",
            Some("latest"),
            false,
        ),
        (
            "docker.io/busybox",
            "docker.io",
            "library/busybox",
            Some("latest"),
            false,
        ),
        (
            "index.docker.io/library/busybox:1",
            "docker.io",
            "library/busybox",
            Some("1"),
            false,
        ),
        ("x/y", "docker.io", "x/y", Some("latest"), false),
        (
            "x/y/z:v1.2-rc_3",
            "docker.io",
            "x/y/z",
            Some("v1.2-rc_3"),
            false,
        ),
        (
            "quay.io/prometheus/node-exporter",
            "quay.io",
            "prometheus/node-exporter",
            Some("latest"),
            false,
        ),
        ("localhost/app", "localhost", "app", Some("latest"), false),
        (
            "localhost:5000/app:dev",
            "localhost:5000",
            "app",
            Some("dev"),
            false,
        ),
        (
            "127.0.0.1:5000/team/app:1",
            "127.0.0.1:5000",
            "team/app",
            Some("1"),
            false,
        ),
        ("[::1]:5000/app", "[::1]:5000", "app", Some("latest"), false),
        (
            "registry.k8s.io/pause:3.10",
            "registry.k8s.io",
            "pause",
            Some("3.10"),
            false,
        ),
        (
            "a.b-c.d/x__y/z.w--v",
            "a.b-c.d",
            "x__y/z.w--v",
            Some("latest"),
            false,
        ),
    ];
    for &(input, registry, repository, tag, digest) in ok {
        let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(r.registry(), registry, "{input}");
        assert_eq!(r.repository(), repository, "{input}");
        assert_eq!(r.tag(), tag, "{input}");
        assert_eq!(r.digest().is_some(), digest, "{input}");
    }
    // Digests: no tag is invented; a tag given with one is kept.
    let r = Reference::parse(&format!("busybox@{d}")).unwrap();
    assert_eq!((r.tag(), r.digest()), (None, Some(d)));
    assert_eq!(r.to_string(), format!("docker.io/library/busybox@{d}"));
    let r = Reference::parse(&format!("quay.io/a/b:1.0@{d}")).unwrap();
    assert_eq!((r.tag(), r.digest()), (Some("1.0"), Some(d)));
    assert_eq!(r.to_string(), format!("quay.io/a/b:1.0@{d}"));
    assert_eq!(
        Reference::parse("busybox").unwrap().to_string(),
        "docker.io/library/busybox:latest"
    );

    let bad: &[(&str, &str)] = &[
        ("", "empty"),
        ("Busybox", "lowercase"),
        ("docker.io/Library/busybox", "lowercase"),
        ("busybox:", "invalid tag"),
        ("busybox:-x", "invalid tag"),
        ("busybox::1", "invalid"),
        ("busybox@sha256:abc", "64 lowercase"),
        ("busybox@md5", "algorithm:hex"),
        (
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "image id",
        ),
        ("a//b", "empty path component"),
        ("-a/b", "separators"),
        ("a_/b", "must end"),
        ("a b", "whitespace"),
        ("host:port/x", "port must be a number"),
        ("local_host:5000/x", "invalid registry host"),
    ];
    for &(input, fragment) in bad {
        let err = Reference::parse(input).expect_err(input);
        assert!(
            matches!(err, Error::InvalidReference { .. }),
            "{input}: {err:?}"
        );
        assert!(err.to_string().contains(fragment), "{input}: {err}");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }
    let long = format!("x/{}", "a".repeat(260));
    assert!(
        Reference::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("255")
    );
}

// ---------------------------------------------------------------- pulls

#[tokio::test]
async fn pull_by_tag_and_by_digest() {
    let dir = tempfile::tempdir().unwrap();
    let image = busybox_like();
    let registry = serve(
        dir.path(),
        &[(Some("docker.io/library/busybox:1.35"), &image)],
        |b| b,
    )
    .await;
    let store = Store::open(dir.path().join("store")).unwrap();
    let config = plain(&registry);
    let host = registry.host();

    let pulled = store
        .pull(&format!("{host}/library/busybox:1.35"), None, &config)
        .await
        .unwrap();
    assert_eq!(pulled.id, image.config_digest);
    assert_eq!(pulled.repo_tags, [format!("{host}/library/busybox:1.35")]);
    assert_eq!(
        pulled.repo_digests,
        [format!("{host}/library/busybox@{}", image.digest)]
    );
    assert_eq!(pulled.layers, image.diff_ids);
    let expected_size = image.blob_size(&image.config_digest)
        + image
            .layer_digests
            .iter()
            .map(|d| image.blob_size(d))
            .sum::<u64>();
    assert_eq!(pulled.size, expected_size);
    for digest in image
        .layer_digests
        .iter()
        .chain([&image.config_digest, &image.digest])
    {
        assert!(blob_exists(&store, digest), "{digest} stored");
    }
    assert_eq!(
        store
            .get(&format!("{host}/library/busybox:1.35"))
            .unwrap()
            .id,
        pulled.id
    );

    // By digest: the same image, recorded with a digest and no new tag.
    let other = Store::open(dir.path().join("store2")).unwrap();
    let by_digest = other
        .pull(
            &format!("{host}/library/busybox@{}", image.digest),
            None,
            &config,
        )
        .await
        .unwrap();
    assert_eq!(by_digest.id, image.config_digest);
    assert!(by_digest.repo_tags.is_empty());
    assert_eq!(by_digest.repo_digests, pulled.repo_digests);
    assert!(
        registry
            .request_log()
            .iter()
            .any(|r| r.contains(&format!("/manifests/{}", image.digest)))
    );
}

#[tokio::test]
async fn pull_with_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let image = busybox_like();
    let registry = serve(dir.path(), &[(Some("docker.io/team/app:1"), &image)], |b| {
        b.basic_auth("user", "s3cret")
    })
    .await;
    let store = Store::open(dir.path().join("store")).unwrap();
    let config = plain(&registry);
    let name = format!("{}/team/app:1", registry.host());

    let err = store.pull(&name, None, &config).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    let wrong = auth(|a| {
        a.username = "user".into();
        a.password = "nope".into();
    });
    let err = store.pull(&name, Some(&wrong), &config).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert!(store.list().is_empty());

    let right = auth(|a| {
        a.username = "user".into();
        a.password = "s3cret".into();
    });
    assert_eq!(
        store.pull(&name, Some(&right), &config).await.unwrap().id,
        image.config_digest
    );
    // The docker config form: base64("user:s3cret").
    let encoded = auth(|a| a.auth = "dXNlcjpzM2NyZXQ=".into());
    let store2 = Store::open(dir.path().join("store2")).unwrap();
    assert_eq!(
        store2
            .pull(&name, Some(&encoded), &config)
            .await
            .unwrap()
            .id,
        image.config_digest
    );
}

#[tokio::test]
async fn pull_with_bearer_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let image = busybox_like();
    let registry = serve(dir.path(), &[(Some("docker.io/team/app:1"), &image)], |b| {
        b.token_auth("user", "pw")
    })
    .await;
    let config = plain(&registry);
    let name = format!("{}/team/app:1", registry.host());
    let fresh = |n: &str| Store::open(dir.path().join(n)).unwrap();

    let err = fresh("anon").pull(&name, None, &config).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    // Username/password through the token flow.
    let basic = auth(|a| {
        a.username = "user".into();
        a.password = "pw".into();
    });
    fresh("basic")
        .pull(&name, Some(&basic), &config)
        .await
        .unwrap();
    assert!(
        registry
            .request_log()
            .iter()
            .any(|r| r.starts_with("GET /token"))
    );
    // A registry token is sent as is.
    let token = auth(|a| a.registry_token = registry.token().into());
    fresh("token")
        .pull(&name, Some(&token), &config)
        .await
        .unwrap();
    // An identity token is traded for an access token.
    let identity = auth(|a| a.identity_token = registry.refresh_token().into());
    fresh("identity")
        .pull(&name, Some(&identity), &config)
        .await
        .unwrap();
    assert!(registry.request_log().iter().any(|r| r == "POST /token"));
    let bad = auth(|a| a.identity_token = "forged".into());
    let err = fresh("forged")
        .pull(&name, Some(&bad), &config)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
}

#[tokio::test]
async fn pull_through_a_mirror_for_docker_io() {
    let dir = tempfile::tempdir().unwrap();
    let image = busybox_like();
    let registry = serve(
        dir.path(),
        &[(Some("docker.io/library/busybox:1.35"), &image)],
        |b| b,
    )
    .await;
    let store = Store::open(dir.path().join("store")).unwrap();
    let mut config = RegistryConfig::default();
    config
        .mirrors
        .insert("docker.io".into(), vec![registry.endpoint()]);

    let pulled = store.pull("busybox:1.35", None, &config).await.unwrap();
    assert_eq!(pulled.repo_tags, ["docker.io/library/busybox:1.35"]);
    assert_eq!(
        pulled.repo_digests,
        [format!("docker.io/library/busybox@{}", image.digest)]
    );
    assert!(
        registry
            .request_log()
            .iter()
            .any(|r| r == "GET /v2/library/busybox/manifests/1.35")
    );
    assert_eq!(store.get("busybox:1.35").unwrap().id, image.config_digest);
}

#[tokio::test]
async fn unreachable_and_failing_registries_are_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = RegistryConfig {
        plain_http: vec![format!("127.0.0.1:{port}")],
        ..RegistryConfig::default()
    };
    let err = store
        .pull(&format!("127.0.0.1:{port}/x/y:1"), None, &config)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RegistryUnavailable(_)), "{err:?}");
    let status = err.to_status();
    assert!(
        status.message().starts_with("RegistryUnavailable: "),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains(&format!("127.0.0.1:{port}")),
        "{}",
        status.message()
    );

    let image = busybox_like();
    let registry = serve(dir.path(), &[(Some("docker.io/x/y:1"), &image)], |b| b).await;
    registry.fail_with(Some(503));
    let err = store
        .pull(
            &format!("{}/x/y:1", registry.host()),
            None,
            &plain(&registry),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RegistryUnavailable(_)), "{err:?}");
    assert!(err.to_string().contains("503"), "{err}");
    registry.fail_with(None);
    store
        .pull(
            &format!("{}/x/y:1", registry.host()),
            None,
            &plain(&registry),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_names_and_tags_are_not_in_registry() {
    let dir = tempfile::tempdir().unwrap();
    let image = busybox_like();
    let registry = serve(
        dir.path(),
        &[(Some("docker.io/library/busybox:1.35"), &image)],
        |b| b,
    )
    .await;
    let store = Store::open(dir.path().join("store")).unwrap();
    let config = plain(&registry);
    for name in ["library/busybox:9.99", "library/nothere:1"] {
        let err = store
            .pull(&format!("{}/{name}", registry.host()), None, &config)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::NotInRegistry { .. }),
            "{name}: {err:?}"
        );
        assert_eq!(err.code(), tonic::Code::NotFound);
    }
}

#[tokio::test]
async fn corrupt_blobs_are_refused_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let image = busybox_like();
    let bad_layer = image.layer_digests[1].clone();
    let corrupt = image.clone().corrupt(&bad_layer);
    let registry = serve(
        dir.path(),
        &[(Some("docker.io/library/busybox:bad"), &corrupt)],
        |b| b,
    )
    .await;
    let store = Store::open(dir.path().join("store")).unwrap();
    let err = store
        .pull(
            &format!("{}/library/busybox:bad", registry.host()),
            None,
            &plain(&registry),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains(&bad_layer), "{err}");
    assert!(store.list().is_empty());
    assert!(!blob_exists(&store, &bad_layer));
    assert_eq!(
        fs::read_dir(store.root().join("tmp")).unwrap().count(),
        0,
        "no temporary leftovers"
    );
    // The garbage of the failed pull (config, first layer) goes at the next collection.
    let stats = store.gc().unwrap();
    assert!(stats.blobs >= 1, "{stats:?}");
    assert_eq!(
        fs::read_dir(store.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn concurrent_pulls_of_one_image_fetch_each_layer_once() {
    let dir = tempfile::tempdir().unwrap();
    let image = busybox_like();
    let registry = serve(
        dir.path(),
        &[(Some("docker.io/library/busybox:1.35"), &image)],
        |b| b,
    )
    .await;
    let store = Store::open(dir.path().join("store")).unwrap();
    let config = plain(&registry);
    let name = format!("{}/library/busybox:1.35", registry.host());
    let twin = store.clone();
    let (a, b) = tokio::join!(
        store.pull(&name, None, &config),
        twin.pull(&name, None, &config)
    );
    assert_eq!(a.unwrap().id, b.unwrap().id);
    assert_eq!(store.list().len(), 1);
    for layer in &image.layer_digests {
        let gets = registry
            .request_log()
            .iter()
            .filter(|r| **r == format!("GET /v2/library/busybox/blobs/{layer}"))
            .count();
        assert_eq!(gets, 1, "{layer} downloaded once");
    }
    let image_now = store.get(&name).unwrap();
    let rootfs = store
        .prepare_rootfs(&image_now, &dir.path().join("rootfs"), RootfsMode::Copy)
        .unwrap();
    assert_eq!(
        fs::read(rootfs.path.join("etc/hostname")).unwrap(),
        b"test\n"
    );
    rootfs.remove().unwrap();
}

#[tokio::test]
async fn multi_platform_index_picks_the_host_platform() {
    let dir = tempfile::tempdir().unwrap();
    let host = Platform::host();
    let mk = |arch: &str| {
        support::image(
            &[support::layer(&[E::File(
                &format!("arch-{arch}"),
                0o644,
                arch.as_bytes(),
            )])],
            Opts {
                arch: arch.to_string(),
                ..Opts::default()
            },
        )
    };
    let others = if host.architecture == "s390x" {
        ["arm64", "ppc64le"]
    } else {
        ["arm64", "s390x"]
    };
    let other = if host.architecture == "arm64" {
        mk("riscv64")
    } else {
        mk(others[0])
    };
    let native = mk(&host.architecture);
    let third = mk(others[1]);
    let other_platform = format!(
        "linux/{}",
        if host.architecture == "arm64" {
            "riscv64"
        } else {
            others[0]
        }
    );
    let host_platform = host.to_string();
    let third_platform = format!("linux/{}", others[1]);
    let index = support::index(&[
        (&other, &other_platform),
        (&native, &host_platform),
        (&third, &third_platform),
    ]);
    let registry = serve(
        dir.path(),
        &[(Some("docker.io/library/multi:1"), &index)],
        |b| b,
    )
    .await;
    let store = Store::open(dir.path().join("store")).unwrap();
    let name = format!("{}/library/multi:1", registry.host());

    let pulled = store.pull(&name, None, &plain(&registry)).await.unwrap();
    assert_eq!(pulled.id, native.config_digest);
    assert_eq!(pulled.config.architecture().to_string(), host.architecture);
    // The repo digest is the index's, as containerd reports it.
    assert_eq!(
        pulled.repo_digests,
        [format!(
            "{}/library/multi@{}",
            registry.host(),
            index.digest
        )]
    );
    assert!(blob_exists(&store, &index.digest));
    assert!(!blob_exists(&store, &other.config_digest));

    let mut config = plain(&registry);
    config.platform = "plan9/amd64".parse().unwrap();
    let err = Store::open(dir.path().join("store2"))
        .unwrap()
        .pull(&name, None, &config)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotInRegistry { .. }), "{err:?}");
    assert!(
        err.to_string().contains("plan9/amd64") && err.to_string().contains(&third_platform),
        "{err}"
    );
}

#[tokio::test]
async fn docker_v2_manifest_lists_pull_too() {
    let dir = tempfile::tempdir().unwrap();
    let host = Platform::host();
    let docker = |arch: &str| Opts {
        docker: true,
        arch: arch.to_string(),
        ..Opts::default()
    };
    let native = support::image(
        &[support::layer(&[E::File("native", 0o644, b"n")])],
        docker(&host.architecture),
    );
    let foreign_arch = if host.architecture == "s390x" {
        "ppc64le"
    } else {
        "s390x"
    };
    let foreign = support::image(
        &[support::layer(&[E::File("foreign", 0o644, b"f")])],
        docker(foreign_arch),
    );
    let list = support::index(&[
        (&foreign, &format!("linux/{foreign_arch}")),
        (&native, &host.to_string()),
    ]);
    assert!(list.media_type.contains("manifest.list"));
    let registry = serve(
        dir.path(),
        &[(Some("docker.io/library/dockerish:1"), &list)],
        |b| b,
    )
    .await;
    let store = Store::open(dir.path().join("store")).unwrap();
    let pulled = store
        .pull(
            &format!("{}/library/dockerish:1", registry.host()),
            None,
            &plain(&registry),
        )
        .await
        .unwrap();
    assert_eq!(pulled.id, native.config_digest);
    let rootfs = store
        .prepare_rootfs(&pulled, &dir.path().join("rootfs"), RootfsMode::Copy)
        .unwrap();
    assert_eq!(fs::read(rootfs.path.join("native")).unwrap(), b"n");
    rootfs.remove().unwrap();
}

// ---------------------------------------------------------------- store

fn shared_layer_images() -> (Built, Built) {
    let base = support::layer(&[
        E::Dir("base", 0o755),
        E::File("base/file", 0o644, b"shared\n"),
    ]);
    let a = support::image(
        &[base.clone(), support::layer(&[E::File("a", 0o644, b"a\n")])],
        Opts {
            user: Some("1000:1000"),
            ..Opts::default()
        },
    );
    let b = support::image(
        &[base, support::layer(&[E::File("b", 0o644, b"b\n")])],
        Opts {
            user: Some("nobody"),
            ..Opts::default()
        },
    );
    (a, b)
}

#[test]
fn store_lookups_removal_with_shared_layers_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = shared_layer_images();
    let archive = dir.path().join("images.tar");
    support::layout(
        &archive,
        &[
            (Some("docker.io/library/app-a:1"), &a),
            (Some("quay.io/team/app-b:2"), &b),
        ],
    );
    let store = Store::open(dir.path().join("store")).unwrap();
    let imported = store.import_archive(&archive).unwrap();
    assert_eq!(imported.len(), 2);
    assert_eq!(store.list().len(), 2);

    let by_tag = store.get("app-a:1").unwrap();
    assert_eq!(by_tag.id, a.config_digest);
    assert_eq!(by_tag.repo_tags, ["docker.io/library/app-a:1"]);
    assert_eq!(
        by_tag.repo_digests,
        [format!("docker.io/library/app-a@{}", a.digest)]
    );
    assert_eq!(store.get(&a.config_digest).unwrap().id, a.config_digest);
    let hex = a.config_digest.trim_start_matches("sha256:");
    assert_eq!(store.get(&hex[..12]).unwrap().id, a.config_digest);
    assert_eq!(
        store.get(&format!("sha256:{}", &hex[..16])).unwrap().id,
        a.config_digest
    );
    assert_eq!(
        store
            .get(&format!("quay.io/team/app-b@{}", b.digest))
            .unwrap()
            .id,
        b.config_digest
    );
    for missing in [
        "app-a:2",
        "quay.io/team/app-a:1",
        "sha256:ffffffffffffffff",
        "nothing",
    ] {
        assert!(
            matches!(store.get(missing), Err(Error::ImageNotFound(_))),
            "{missing}"
        );
    }

    // Tags move between images.
    store
        .tag("quay.io/team/app-b:2", "docker.io/library/app-a:1")
        .unwrap();
    assert_eq!(store.get("app-a:1").unwrap().id, b.config_digest);
    assert!(store.get(&a.config_digest).unwrap().repo_tags.is_empty());

    // Removing A keeps the shared base layer for B.
    let base_blob = &a.layer_digests[0];
    assert_eq!(base_blob, &b.layer_digests[0]);
    store.remove(&a.config_digest).unwrap();
    assert!(matches!(
        store.get(&a.config_digest),
        Err(Error::ImageNotFound(_))
    ));
    assert!(blob_exists(&store, base_blob));
    assert!(!blob_exists(&store, &a.layer_digests[1]));
    assert!(!blob_exists(&store, &a.config_digest));
    assert!(blob_exists(&store, &b.layer_digests[1]));

    let usage = store.usage().unwrap();
    assert!(usage.used_bytes > 0 && usage.inodes_used > 5, "{usage:?}");
    assert_eq!(usage.root, store.root());
    let cri_usage = usage.to_cri(1);
    assert_eq!(
        cri_usage.fs_id.unwrap().mountpoint,
        store.root().display().to_string()
    );

    // A restart keeps what was recorded.
    let root = store.root().to_path_buf();
    drop(store);
    let store = Store::open(&root).unwrap();
    let images = store.list();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].id, b.config_digest);
    assert_eq!(images[0].user(), Some("nobody"));
    let rootfs = store
        .prepare_rootfs(&images[0], &dir.path().join("rootfs"), RootfsMode::Copy)
        .unwrap();
    assert_eq!(
        fs::read(rootfs.path.join("base/file")).unwrap(),
        b"shared\n"
    );
    assert_eq!(fs::read(rootfs.path.join("b")).unwrap(), b"b\n");
    rootfs.remove().unwrap();
    store.remove("quay.io/team/app-b:2").unwrap();
    assert_eq!(fs::read_dir(root.join("blobs/sha256")).unwrap().count(), 0);
}

#[test]
fn import_checks_digests_and_handles_unnamed_images() {
    let dir = tempfile::tempdir().unwrap();
    let image = busybox_like();
    let store = Store::open(dir.path().join("store")).unwrap();

    let unnamed = dir.path().join("unnamed.tar");
    support::layout(&unnamed, &[(None, &image)]);
    let imported = store.import_archive(&unnamed).unwrap();
    assert!(imported[0].repo_tags.is_empty() && imported[0].repo_digests.is_empty());
    assert_eq!(store.list().len(), 1);

    // A blob lost behind the store's back: the image is dropped at the next open.
    fs::remove_file(
        store
            .root()
            .join("blobs/sha256")
            .join(image.layer_digests[0].trim_start_matches("sha256:")),
    )
    .unwrap();
    let reopened = Store::open(store.root()).unwrap();
    assert!(reopened.list().is_empty());

    let corrupt = dir.path().join("corrupt.tar");
    let bad = image.layer_digests[0].clone();
    support::layout(
        &corrupt,
        &[(Some("docker.io/library/x:1"), &image.clone().corrupt(&bad))],
    );
    let other = Store::open(dir.path().join("store2")).unwrap();
    let err = other.import_archive(&corrupt).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(other.list().is_empty());
}

#[test]
fn to_cri_reports_user_size_tags() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = shared_layer_images();
    let plain_image = busybox_like();
    let archive = dir.path().join("images.tar");
    support::layout(
        &archive,
        &[
            (Some("docker.io/library/a:1"), &a),
            (Some("docker.io/library/b:1"), &b),
            (Some("docker.io/library/c:1"), &plain_image),
        ],
    );
    let store = Store::open(dir.path().join("store")).unwrap();
    store.import_archive(&archive).unwrap();

    let cri = store.get("a:1").unwrap().to_cri();
    assert_eq!(cri.id, a.config_digest);
    assert_eq!(cri.uid.map(|u| u.value), Some(1000));
    assert_eq!(cri.username, "");
    assert_eq!(cri.repo_tags, ["docker.io/library/a:1"]);
    assert_eq!(
        cri.repo_digests,
        [format!("docker.io/library/a@{}", a.digest)]
    );
    assert_eq!(cri.spec.as_ref().unwrap().image, a.config_digest);
    assert!(!cri.pinned);
    let expected =
        a.blob_size(&a.config_digest) + a.layer_digests.iter().map(|d| a.blob_size(d)).sum::<u64>();
    assert_eq!(cri.size, expected);

    let cri = store.get("b:1").unwrap().to_cri();
    assert_eq!((cri.uid, cri.username.as_str()), (None, "nobody"));
    let cri = store.get("c:1").unwrap().to_cri();
    assert_eq!((cri.uid, cri.username.as_str()), (None, ""));
}

// ---------------------------------------------------------------- unpack and rootfs

/// Two layers exercising whiteouts, an opaque directory, symlinks and hard links.
fn layered_image() -> Built {
    let lower = support::layer(&[
        E::Dir("etc", 0o755),
        E::File("etc/a", 0o644, b"a\n"),
        E::File("etc/b", 0o600, b"b\n"),
        E::Dir("opt", 0o755),
        E::File("opt/x", 0o644, b"x\n"),
        E::Dir("opt/sub", 0o755),
        E::File("opt/sub/y", 0o644, b"y\n"),
        E::Dir("usr", 0o755),
        E::Dir("usr/lib", 0o755),
        E::Symlink("lib", "usr/lib"),
        E::Symlink("abs", "/usr"),
        E::Dir("bin", 0o755),
        E::File("bin/tool", 0o4755, b"tool\n"),
        E::Hardlink("bin/tool2", "bin/tool"),
        E::Dir("private", 0o700),
        E::File("private/secret", 0o400, b"s\n"),
        E::File("gone-dir-file", 0o644, b"will be a dir\n"),
    ]);
    let upper = support::layer(&[
        E::File("etc/.wh.a", 0o644, b""),
        E::File("etc/c", 0o644, b"c\n"),
        E::Dir("opt", 0o755),
        // Before the marker, in a directory the lower layer has too: kept, the rest goes.
        E::File("opt/sub/new", 0o644, b"new\n"),
        E::File("opt/.wh..wh..opq", 0o644, b""),
        E::File("opt/z", 0o644, b"z\n"),
        // Through the symlinks of the lower layer.
        E::File("lib/libfoo.so", 0o755, b"foo\n"),
        E::File("abs/lib/libbar.so", 0o755, b"bar\n"),
        E::Dir("gone-dir-file", 0o755),
        E::File("gone-dir-file/inside", 0o644, b"i\n"),
        E::File(".wh.nothing-here", 0o644, b""),
    ]);
    support::image(&[lower, upper], Opts::default())
}

/// What both rootfs kinds show. `copy` adds what only applying layers in order does: entries
/// written through a lower layer's symlink follow it (an overlay layer masks it instead).
fn check_layered(root: &Path, copy: bool) {
    let read = |p: &str| fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert!(!root.join("etc/a").exists(), "whiteout deletes");
    assert_eq!(read("etc/b"), "b\n");
    assert_eq!(read("etc/c"), "c\n");
    assert!(
        !root.join("opt/x").exists() && !root.join("opt/sub/y").exists(),
        "opaque dir hides the lower layer"
    );
    assert_eq!(read("opt/sub/new"), "new\n");
    assert_eq!(read("opt/z"), "z\n");
    assert_eq!(read("lib/libfoo.so"), "foo\n");
    if copy {
        assert_eq!(read("usr/lib/libfoo.so"), "foo\n");
        assert_eq!(read("usr/lib/libbar.so"), "bar\n");
        assert_eq!(
            fs::read_link(root.join("lib")).unwrap(),
            Path::new("usr/lib")
        );
        assert_eq!(fs::read_link(root.join("abs")).unwrap(), Path::new("/usr"));
    } else {
        assert!(
            fs::symlink_metadata(root.join("lib")).unwrap().is_dir(),
            "masked by the upper layer"
        );
        assert_eq!(read("abs/lib/libbar.so"), "bar\n");
    }
    let t1 = fs::metadata(root.join("bin/tool")).unwrap();
    let t2 = fs::metadata(root.join("bin/tool2")).unwrap();
    assert_eq!(t1.ino(), t2.ino(), "hard link");
    assert_eq!(t1.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(
        fs::metadata(root.join("etc/b"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(root.join("private"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert_eq!(read("gone-dir-file/inside"), "i\n");
    assert_eq!(fs::metadata(root.join("etc/c")).unwrap().mtime(), 1_000_000);
}

fn import(dir: &Path, image: &Built, name: &str) -> (Store, cri_oci::image::Image) {
    let archive = dir.join(format!("{}.tar", name.replace(['/', ':'], "_")));
    support::layout(&archive, &[(Some(name), image)]);
    let store = Store::open(dir.join("store")).unwrap();
    store.import_archive(&archive).unwrap();
    let stored = store.get(name).unwrap();
    (store, stored)
}

#[test]
fn copy_rootfs_applies_whiteouts_links_and_modes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, image) = import(dir.path(), &layered_image(), "docker.io/library/layered:1");
    let target = dir.path().join("containers/c1/rootfs");
    let rootfs = store
        .prepare_rootfs(&image, &target, RootfsMode::Copy)
        .unwrap();
    assert_eq!(rootfs.kind(), RootfsKind::Copy);
    assert_eq!(rootfs.path, target);
    check_layered(&target, true);
    // Not empty any more: a second prepare is refused.
    let err = store
        .prepare_rootfs(&image, &target, RootfsMode::Copy)
        .unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    rootfs.remove().unwrap();
    assert!(!target.exists());
    assert!(!dir.path().join("containers/c1/rootfs.rootfs.json").exists());
}

#[test]
fn hostile_layers_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", support::layer(&[E::RawName("../escaped")])),
        (
            "nested-dotdot",
            support::layer(&[E::Dir("a", 0o755), E::RawName("a/../../escaped")]),
        ),
        ("absolute", support::layer(&[E::RawName("/escaped")])),
        (
            "symlink-escape",
            support::layer(&[
                E::Symlink("esc", "../../.."),
                E::File("esc/escaped", 0o644, b"x"),
            ]),
        ),
        (
            "hardlink-outside",
            support::layer(&[E::Hardlink("h", "../../etc/passwd")]),
        ),
    ];
    for (name, layer) in cases {
        let case_dir = dir.path().join(name);
        fs::create_dir_all(&case_dir).unwrap();
        let image = support::image(
            &[layer],
            Opts {
                gzip: false,
                ..Opts::default()
            },
        );
        let (store, stored) = import(&case_dir, &image, "docker.io/library/hostile:1");
        let target = case_dir.join("deep/er/rootfs");
        let err = store
            .prepare_rootfs(&stored, &target, RootfsMode::Copy)
            .unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{name}: {err:?}");
        assert!(!target.exists(), "{name}: a failed rootfs is cleaned up");
        for place in [
            case_dir.join("escaped"),
            case_dir.join("deep/escaped"),
            case_dir.join("deep/er/escaped"),
            dir.path().join("escaped"),
        ] {
            assert!(!place.exists(), "{name}: wrote {}", place.display());
        }
    }
}

struct CleanupOnDrop(Vec<std::path::PathBuf>);

impl Drop for CleanupOnDrop {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = cleanup_rootfs(path);
        }
    }
}

fn mounted(path: &Path) -> bool {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let needle = format!(" {} ", path.display());
    mountinfo.lines().any(|l| l.contains(&needle))
}

#[test]
fn overlay_rootfs_when_root() {
    if !is_root() {
        eprintln!(
            "skipped: an overlay rootfs needs root (running as uid {})",
            rustix::process::geteuid().as_raw()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Unmounts even when an assertion fails (dropped before `dir`).
    let _cleanup = CleanupOnDrop(vec![
        dir.path().join("c1/rootfs"),
        dir.path().join("c2/rootfs"),
    ]);
    let layered = layered_image();
    let (store, image) = import(dir.path(), &layered, "docker.io/library/layered:1");
    let target = dir.path().join("c1/rootfs");
    let rootfs = match store.prepare_rootfs(&image, &target, RootfsMode::Overlay) {
        Ok(rootfs) => rootfs,
        Err(e @ Error::Io { .. }) if e.to_string().contains("mounting overlay") => {
            eprintln!("skipped: root, but this host refuses overlay mounts: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    assert_eq!(rootfs.kind(), RootfsKind::Overlay);
    assert!(mounted(&target));
    check_layered(&target, false);
    // Overlay form of the layers: the whiteout is a 0:0 char device, the opaque dir has the xattr.
    let upper_layer = store
        .root()
        .join("layers")
        .join(layered.diff_ids[1].trim_start_matches("sha256:"));
    let whiteout = fs::symlink_metadata(upper_layer.join("etc/a")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &whiteout.file_type()
    ));
    assert_eq!(whiteout.rdev(), 0);
    let mut buf = [0u8; 8];
    let n =
        rustix::fs::lgetxattr(upper_layer.join("opt"), "trusted.overlay.opaque", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"y");

    // Writes go to the upper dir, never to the shared layers.
    fs::write(target.join("etc/b"), b"changed\n").unwrap();
    assert_eq!(
        fs::read(dir.path().join("c1/rootfs.upper/etc/b")).unwrap(),
        b"changed\n"
    );
    let lower_layer = store
        .root()
        .join("layers")
        .join(layered.diff_ids[0].trim_start_matches("sha256:"));
    assert_eq!(fs::read(lower_layer.join("etc/b")).unwrap(), b"b\n");

    // A second container shares the unpacked layers.
    let second = store
        .prepare_rootfs(&image, &dir.path().join("c2/rootfs"), RootfsMode::Auto)
        .unwrap();
    assert_eq!(second.kind(), RootfsKind::Overlay);
    assert_eq!(fs::read(second.path.join("etc/b")).unwrap(), b"b\n");

    // Removing the image keeps the layers the mounted rootfs use.
    store.remove(&image.id).unwrap();
    assert!(lower_layer.is_dir() && upper_layer.is_dir());
    rootfs.remove().unwrap();
    assert!(!mounted(&target) && !target.exists());
    assert!(
        !dir.path().join("c1/rootfs.upper").exists() && !dir.path().join("c1/rootfs.work").exists()
    );
    // After a "restart" only the path is known.
    let second_path = second.path.clone();
    drop(second);
    cleanup_rootfs(&second_path).unwrap();
    assert!(!mounted(&second_path) && !second_path.exists());
    cleanup_rootfs(&second_path).unwrap();
    let stats = store.gc().unwrap();
    assert_eq!(stats.layers, 2, "{stats:?}");
    assert!(!lower_layer.exists());
}

#[test]
fn device_nodes_need_root() {
    let dir = tempfile::tempdir().unwrap();
    let image = support::image(
        &[support::layer(&[
            E::Dir("dev", 0o755),
            E::CharDevice("dev/null", 1, 3),
        ])],
        Opts::default(),
    );
    let (store, stored) = import(dir.path(), &image, "docker.io/library/dev:1");
    let rootfs = store
        .prepare_rootfs(&stored, &dir.path().join("rootfs"), RootfsMode::Copy)
        .unwrap();
    let node = rootfs.path.join("dev/null");
    if is_root() {
        let meta = fs::symlink_metadata(&node).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(
            &meta.file_type()
        ));
        assert_eq!(meta.rdev(), rustix::fs::makedev(1, 3));
    } else {
        assert!(!node.exists(), "devices are skipped without root");
    }
    rootfs.remove().unwrap();
}

/// Checked by the compiler: runtimes await a pull inside `#[async_trait]` service methods,
/// which need the future to be `Send`.
#[allow(dead_code)]
fn the_pull_future_is_send(store: &cri_oci::image::Store, config: &cri_oci::image::RegistryConfig) {
    fn send<T: Send>(_: T) {}
    send(store.pull("busybox", None, config));
}
