//! Mounts: the standard Linux filesystems, the pod's shared files, and the CRI mounts.

use std::path::{Component, Path, PathBuf};

use cri_api::v1::{Mount as CriMount, MountPropagation};
use oci_spec::runtime::Mount;

use super::namespaces::{check_no_overlap, id_mapping};
use super::{Host, SandboxFiles};
use crate::{Error, Result};

/// Where `/dev/shm` comes from.
#[derive(Clone, Debug)]
pub(crate) enum Shm {
    /// A private tmpfs of 64 MiB.
    Private,
    /// A bind mount of an existing directory (the pod's shm, or the host's `/dev/shm`).
    Bind(PathBuf),
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

fn bind(destination: &str, source: &Path, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination));
    m.set_typ(Some("bind".to_string()));
    m.set_source(Some(source.to_path_buf()));
    m.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

/// `/proc`, `/dev`, `/dev/pts`, `/dev/mqueue`, `/sys`, `/sys/fs/cgroup` and `/dev/shm`.
/// `/sys` and the cgroup filesystem are read-only unless `privileged`.
pub(crate) fn default_mounts(privileged: bool, shm: &Shm) -> Vec<Mount> {
    let ro_or_rw = if privileged { "rw" } else { "ro" };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", ro_or_rw],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", ro_or_rw],
        ),
    ];
    mounts.push(match shm {
        Shm::Private => mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        Shm::Bind(source) => bind("/dev/shm", source, &["rbind", "nosuid", "noexec", "nodev"]),
    });
    mounts
}

/// `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` from the sandbox directory,
/// read-only when the container's rootfs is.
pub(crate) fn sandbox_file_mounts(files: &SandboxFiles, readonly: bool) -> Vec<Mount> {
    let mode = if readonly { "ro" } else { "rw" };
    [
        ("/etc/hostname", &files.hostname),
        ("/etc/hosts", &files.hosts),
        ("/etc/resolv.conf", &files.resolv_conf),
    ]
    .into_iter()
    .filter_map(|(dest, source)| {
        source
            .as_ref()
            .map(|s| bind(dest, s, &["rbind", "rprivate", mode]))
    })
    .collect()
}

/// The CRI mounts as OCI bind mounts, and the rootfs propagation they need.
pub(crate) fn cri_mounts(
    host: &Host,
    mounts: &[CriMount],
) -> Result<(Vec<Mount>, Option<&'static str>)> {
    let mut out: Vec<Mount> = Vec::with_capacity(mounts.len());
    let mut rootfs_propagation = None;
    for (i, m) in mounts.iter().enumerate() {
        let field = format!("mounts[{i}]");
        if m.image.is_some() {
            return Err(Error::Unsupported(format!(
                "{field}.image: image volume mounts are not supported"
            )));
        }
        if !m.container_path.starts_with('/') {
            return Err(Error::invalid(
                format!("{field}.container_path"),
                format!("{:?} is not an absolute path", m.container_path),
            ));
        }
        if m.host_path.is_empty() {
            return Err(Error::invalid(
                format!("{field}.host_path"),
                "the host path is empty",
            ));
        }
        let destination = clean(&m.container_path);
        if out.iter().any(|o| o.destination() == &destination) {
            return Err(Error::invalid(
                format!("{field}.container_path"),
                format!("{} is mounted more than once", destination.display()),
            ));
        }
        let propagation = MountPropagation::try_from(m.propagation).map_err(|_| {
            Error::invalid(
                format!("{field}.propagation"),
                format!("unknown propagation {}", m.propagation),
            )
        })?;
        let propagation_option = match propagation {
            MountPropagation::PropagationPrivate => "rprivate",
            MountPropagation::PropagationHostToContainer => {
                if rootfs_propagation.is_none() {
                    rootfs_propagation = Some("rslave");
                }
                "rslave"
            }
            MountPropagation::PropagationBidirectional => {
                rootfs_propagation = Some("rshared");
                "rshared"
            }
        };
        let mut options = vec!["rbind".to_string(), propagation_option.to_string()];
        options.push(if m.readonly { "ro" } else { "rw" }.to_string());
        if m.recursive_read_only {
            let rro_field = format!("{field}.recursive_read_only");
            if !m.readonly {
                return Err(Error::invalid(
                    rro_field,
                    "recursive read-only requires readonly",
                ));
            }
            if propagation != MountPropagation::PropagationPrivate {
                return Err(Error::invalid(
                    rro_field,
                    "recursive read-only requires private propagation",
                ));
            }
            if !host.recursive_read_only_supported {
                return Err(Error::RecursiveReadOnlyUnsupported(format!(
                    "{field} ({}): the kernel or OCI runtime cannot make mounts read-only recursively (needs Linux 5.12)",
                    m.container_path
                )));
            }
            options.push("rro".to_string());
        }
        for (j, option) in m.mount_options.iter().enumerate() {
            if option.is_empty() || option.contains(',') {
                return Err(Error::invalid(
                    format!("{field}.mount_options[{j}]"),
                    format!("{option:?} is not a single mount option"),
                ));
            }
            options.push(option.clone());
        }

        let mut mount = Mount::default();
        mount.set_destination(destination);
        mount.set_typ(Some("bind".to_string()));
        mount.set_source(Some(PathBuf::from(&m.host_path)));
        mount.set_options(Some(options));
        match (m.uid_mappings.is_empty(), m.gid_mappings.is_empty()) {
            (true, true) => {}
            (false, false) => {
                let uids = m
                    .uid_mappings
                    .iter()
                    .enumerate()
                    .map(|(j, id)| id_mapping(id, &format!("{field}.uid_mappings[{j}]")))
                    .collect::<Result<Vec<_>>>()?;
                let gids = m
                    .gid_mappings
                    .iter()
                    .enumerate()
                    .map(|(j, id)| id_mapping(id, &format!("{field}.gid_mappings[{j}]")))
                    .collect::<Result<Vec<_>>>()?;
                check_no_overlap(&uids, &format!("{field}.uid_mappings"))?;
                check_no_overlap(&gids, &format!("{field}.gid_mappings"))?;
                mount.set_uid_mappings(Some(uids));
                mount.set_gid_mappings(Some(gids));
            }
            _ => {
                return Err(Error::invalid(
                    format!("{field}.uid_mappings"),
                    "an ID-mapped mount needs both uid_mappings and gid_mappings",
                ));
            }
        }
        out.push(mount);
    }
    Ok((out, rootfs_propagation))
}

/// Puts the mounts together: `extra` replace `base` mounts with the same destination, and a
/// stable sort by depth makes every parent come before its children.
pub(crate) fn merge(base: Vec<Mount>, extra: Vec<Mount>) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = base
        .into_iter()
        .filter(|b| {
            !extra
                .iter()
                .any(|e| clean_path(e.destination()) == clean_path(b.destination()))
        })
        .collect();
    mounts.extend(extra);
    mounts.sort_by_key(|m| depth(m.destination()));
    mounts
}

fn depth(path: &Path) -> usize {
    clean_path(path)
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

/// A container path made absolute and lexically clean (`.` and `..` resolved, no trailing `/`).
pub(crate) fn clean(path: &str) -> PathBuf {
    clean_path(Path::new(path))
}

fn clean_path(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        assert_eq!(clean("/a/b/../c/./d/"), PathBuf::from("/a/c/d"));
        assert_eq!(clean("/../.."), PathBuf::from("/"));
    }

    #[test]
    fn parents_come_first() {
        let sorted = merge(
            vec![
                mount("/dev/pts", "devpts", "devpts", &[]),
                mount("/dev", "tmpfs", "tmpfs", &[]),
            ],
            vec![
                bind("/data/sub", Path::new("/x"), &[]),
                bind("/data", Path::new("/y"), &[]),
                bind("/dev/pts/", Path::new("/z"), &[]),
            ],
        );
        let dests: Vec<_> = sorted
            .iter()
            .map(|m| m.destination().display().to_string())
            .collect();
        assert_eq!(dests, vec!["/dev", "/data", "/data/sub", "/dev/pts/"]);
        assert_eq!(
            sorted[3].typ().as_deref(),
            Some("bind"),
            "the CRI mount replaced the default"
        );
    }
}
