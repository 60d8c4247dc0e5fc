//! Mount propagation of CRI mounts: a `HOST_TO_CONTAINER` or `BIDIRECTIONAL` mount only works
//! when its source sits on a mount that propagates (shared, or a slave of a shared one).
//! Otherwise the bind would be quietly private, and the pod would never see what it asked
//! for, so the container is refused instead, as containerd does.

use std::path::{Path, PathBuf};

use cri_api::v1::{Mount, MountPropagation};

/// How the mount holding a path propagates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MountInfo {
    /// The mount point holding the path.
    pub(crate) mount_point: PathBuf,
    /// It is in a peer group (`shared:N`).
    pub(crate) shared: bool,
    /// It receives from a peer group (`master:N`).
    pub(crate) slave: bool,
}

/// The mount that holds `path` (already canonical), from a `/proc/self/mountinfo` text: the
/// last-mounted entry with the longest mount point that is a prefix of `path`.
pub(crate) fn mount_of(mountinfo: &str, path: &Path) -> Option<MountInfo> {
    let mut best: Option<MountInfo> = None;
    for line in mountinfo.lines() {
        let Some((before, _)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = before.split(' ').collect();
        let Some(mount_point) = fields.get(4).map(|m| unescape(m)) else {
            continue;
        };
        if !path.starts_with(&mount_point) {
            continue;
        }
        let optional = fields.get(6..).unwrap_or_default();
        let candidate = MountInfo {
            shared: optional.iter().any(|f| f.starts_with("shared:")),
            slave: optional.iter().any(|f| f.starts_with("master:")),
            mount_point,
        };
        // Later lines are mounted on top of earlier ones at the same point.
        if best.as_ref().is_none_or(|b| {
            candidate.mount_point.components().count() >= b.mount_point.components().count()
        }) {
            best = Some(candidate);
        }
    }
    best
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(code) = u8::from_str_radix(&field[i + 1..i + 4], 8)
        {
            out.push(code);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from(
        String::from_utf8_lossy(&out).into_owned(),
    ))
}

/// Checks every mount of a container that asks for propagation against `mountinfo`;
/// the error names the mount, the mount point holding its source and what is missing.
pub(crate) fn check_mounts(mounts: &[Mount], mountinfo: &str) -> Result<(), String> {
    for (i, m) in mounts.iter().enumerate() {
        let wanted = MountPropagation::try_from(m.propagation)
            .unwrap_or(MountPropagation::PropagationPrivate);
        if wanted == MountPropagation::PropagationPrivate || m.image.is_some() {
            continue;
        }
        let source = std::fs::canonicalize(&m.host_path)
            .map_err(|e| format!("mounts[{i}]: resolving the source {:?}: {e}", m.host_path))?;
        let Some(info) = mount_of(mountinfo, &source) else {
            return Err(format!(
                "mounts[{i}]: no mount holds the source {}",
                source.display()
            ));
        };
        let ok = match wanted {
            MountPropagation::PropagationBidirectional => info.shared,
            _ => info.shared || info.slave,
        };
        if !ok {
            let needed = if wanted == MountPropagation::PropagationBidirectional {
                "a shared mount"
            } else {
                "a shared or slave mount"
            };
            return Err(format!(
                "mounts[{i}]: path {:?} is mounted on {:?} but it is not {needed}",
                source.display().to_string(),
                info.mount_point.display().to_string()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime - ext4 /dev/vda rw
30 22 0:40 / /mnt/shared rw,relatime shared:7 - tmpfs tmpfs rw
31 22 0:41 / /mnt/slave rw,relatime master:7 - tmpfs tmpfs rw
32 22 0:42 / /mnt/with\\040space rw,relatime shared:9 - tmpfs tmpfs rw
33 30 0:43 / /mnt/shared/private rw,relatime - tmpfs tmpfs rw
";

    fn mount(host_path: &Path, propagation: MountPropagation) -> Mount {
        Mount {
            container_path: "/data".into(),
            host_path: host_path.display().to_string(),
            propagation: propagation as i32,
            ..Default::default()
        }
    }

    #[test]
    fn the_deepest_mount_holds_a_path() {
        let info = |p: &str| mount_of(MOUNTINFO, Path::new(p)).unwrap();
        assert_eq!(info("/etc/hosts").mount_point, Path::new("/"));
        assert!(!info("/etc").shared);
        assert!(info("/mnt/shared/x").shared);
        assert!(!info("/mnt/shared/private/x").shared);
        assert!(info("/mnt/slave").slave);
        assert!(!info("/mnt/sharedish").shared, "a prefix by component only");
        assert!(info("/mnt/with space/a").shared);
    }

    #[test]
    fn propagation_needs_a_propagating_source() {
        let dir = tempfile::tempdir().unwrap();
        let source = std::fs::canonicalize(dir.path()).unwrap();
        let mountinfo = format!(
            "22 1 8:1 / / rw - ext4 /dev/vda rw\n40 22 0:50 / {} rw master:3 - tmpfs t rw\n",
            source.display()
        );
        let private = "22 1 8:1 / / rw - ext4 /dev/vda rw\n";

        let ok = [mount(&source, MountPropagation::PropagationPrivate)];
        assert_eq!(check_mounts(&ok, private), Ok(()));

        let h2c = [mount(&source, MountPropagation::PropagationHostToContainer)];
        assert_eq!(check_mounts(&h2c, &mountinfo), Ok(()));
        let err = check_mounts(&h2c, private).unwrap_err();
        assert_eq!(
            err,
            format!(
                "mounts[0]: path {:?} is mounted on \"/\" but it is not a shared or slave mount",
                source.display().to_string()
            )
        );

        let bidi = [mount(&source, MountPropagation::PropagationBidirectional)];
        let err = check_mounts(&bidi, &mountinfo).unwrap_err();
        assert!(err.ends_with("but it is not a shared mount"), "{err}");
    }
}
