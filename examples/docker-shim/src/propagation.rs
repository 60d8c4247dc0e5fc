//! A `HOST_TO_CONTAINER` (`rslave`) or `BIDIRECTIONAL` (`rshared`) mount needs a source on a
//! propagating mount. Docker finds out only when the container starts; the shim refuses such
//! a container at CreateContainer instead, as containerd does.

use std::path::{Path, PathBuf};

use cri_api::v1::{Mount, MountPropagation};
use cri_server::{Error, Result};

/// How the mount holding a path propagates: `(mount point, shared, slave)`.
fn holder(mountinfo: &str, path: &Path) -> Option<(PathBuf, bool, bool)> {
    let mut best: Option<(PathBuf, bool, bool)> = None;
    for line in mountinfo.lines() {
        let Some((head, _)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = head.split(' ').collect();
        let Some(point) = fields.get(4) else { continue };
        let point = PathBuf::from(point.replace("\\040", " "));
        if !path.starts_with(&point) {
            continue;
        }
        let tags = fields.get(6..).unwrap_or_default();
        let shared = tags.iter().any(|t| t.starts_with("shared:"));
        let slave = tags.iter().any(|t| t.starts_with("master:"));
        // The deepest mount point wins; at equal depth, the later (upper) mount.
        if best
            .as_ref()
            .is_none_or(|(b, _, _)| point.components().count() >= b.components().count())
        {
            best = Some((point, shared, slave));
        }
    }
    best
}

/// Refuses mounts whose propagation their source cannot give (mountinfo of this process).
pub(crate) fn check(mounts: &[Mount], mountinfo: &str) -> Result<()> {
    for (i, m) in mounts.iter().enumerate() {
        let propagation = MountPropagation::try_from(m.propagation)
            .unwrap_or(MountPropagation::PropagationPrivate);
        if propagation == MountPropagation::PropagationPrivate {
            continue;
        }
        // A source that does not exist yet is created by Docker on the mount holding it.
        let Ok(path) = std::fs::canonicalize(&m.host_path) else {
            continue;
        };
        let Some((point, shared, slave)) = holder(mountinfo, &path) else {
            continue;
        };
        let ok = match propagation {
            MountPropagation::PropagationBidirectional => shared,
            _ => shared || slave,
        };
        if !ok {
            let needs = if propagation == MountPropagation::PropagationBidirectional {
                "a shared mount"
            } else {
                "a shared or slave mount"
            };
            return Err(Error::invalid_argument(format!(
                "mounts[{i}]: {:?} propagation of {} needs {needs}, but {} is private",
                propagation.as_str_name(),
                m.host_path,
                point.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:30 / /tmp rw,relatime - tmpfs tmpfs rw
31 22 0:31 / /mnt/slave rw,relatime master:1 - tmpfs tmpfs rw
";

    #[test]
    fn the_deepest_mount_decides() {
        assert_eq!(
            holder(INFO, Path::new("/tmp/x")),
            Some((PathBuf::from("/tmp"), false, false))
        );
        assert_eq!(
            holder(INFO, Path::new("/etc")),
            Some((PathBuf::from("/"), true, false))
        );
        assert_eq!(
            holder(INFO, Path::new("/mnt/slave/a")),
            Some((PathBuf::from("/mnt/slave"), false, true))
        );
    }

    #[test]
    fn private_sources_are_refused() {
        let mount = |path: &str, p: MountPropagation| Mount {
            host_path: path.into(),
            container_path: "/x".into(),
            propagation: p as i32,
            ..Default::default()
        };
        assert!(
            check(
                &[mount("/tmp", MountPropagation::PropagationBidirectional)],
                INFO
            )
            .is_err()
        );
        assert!(
            check(
                &[mount("/tmp", MountPropagation::PropagationHostToContainer)],
                INFO
            )
            .is_err()
        );
        assert!(check(&[mount("/tmp", MountPropagation::PropagationPrivate)], INFO).is_ok());
        assert!(
            check(
                &[mount("/", MountPropagation::PropagationBidirectional)],
                INFO
            )
            .is_ok()
        );
    }
}
