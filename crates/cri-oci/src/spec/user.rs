//! The user a process runs as: CRI security context plus the image's `User`, resolved against
//! the image's own `/etc/passwd` and `/etc/group`.
//!
//! The files are read through [`resolve_in_root`], which follows symbolic links as if the
//! rootfs were `/`: an image whose `/etc/passwd` is a link to `/etc/shadow` reads the image's
//! shadow file, never the host's.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use cri_api::v1::{LinuxContainerSecurityContext, SupplementalGroupsPolicy};

use crate::{Error, Result};

/// The user a process runs as, resolved.
///
/// Exposed because a runtime needs the same answer for `exec` and for the container status
/// it reports (`ContainerStatus.user`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResolvedUser {
    /// User ID.
    pub uid: u32,
    /// Primary group ID.
    pub gid: u32,
    /// Supplementary group IDs. The primary group comes first, as the Go runtimes report it.
    pub additional_gids: Vec<u32>,
    /// The user's name when the image's `/etc/passwd` knows the UID.
    pub username: Option<String>,
    /// The user's home directory from `/etc/passwd`, when known.
    pub home: Option<String>,
}

/// The UID/GID fields of a sandbox or container security context, with the field path
/// prefix used in error messages.
pub(crate) struct UserRequest<'a> {
    pub(crate) run_as_user: Option<i64>,
    pub(crate) run_as_username: &'a str,
    pub(crate) run_as_group: Option<i64>,
    pub(crate) supplemental_groups: &'a [i64],
    pub(crate) policy: i32,
    /// e.g. `linux.security_context`
    pub(crate) prefix: &'a str,
}

impl<'a> UserRequest<'a> {
    pub(crate) fn from_container(security: Option<&'a LinuxContainerSecurityContext>) -> Self {
        match security {
            Some(sc) => Self {
                run_as_user: sc.run_as_user.as_ref().map(|v| v.value),
                run_as_username: &sc.run_as_username,
                run_as_group: sc.run_as_group.as_ref().map(|v| v.value),
                supplemental_groups: &sc.supplemental_groups,
                policy: sc.supplemental_groups_policy,
                prefix: "linux.security_context",
            },
            None => Self {
                run_as_user: None,
                run_as_username: "",
                run_as_group: None,
                supplemental_groups: &[],
                policy: SupplementalGroupsPolicy::Merge as i32,
                prefix: "linux.security_context",
            },
        }
    }
}

/// Resolves the user of a container process.
///
/// `image_user` is the image config's `User` (`""`, `uid`, `uid:gid`, `name`, `name:group`,
/// `uid:group`, `name:gid`); `security` is the container's security context, whose
/// `run_as_user` / `run_as_username` override it and whose `run_as_group` overrides the group.
/// Names are looked up in `<rootfs>/etc/passwd` and `<rootfs>/etc/group`.
///
/// Supplementary groups: the primary group, then (policy `Merge`) every group of
/// `/etc/group` that lists the user by name, then `supplemental_groups`; policy `Strict`
/// skips `/etc/group`.
///
/// ```
/// use cri_oci::spec::resolve_user;
///
/// let rootfs = tempfile::tempdir().unwrap();
/// std::fs::create_dir(rootfs.path().join("etc")).unwrap();
/// std::fs::write(rootfs.path().join("etc/passwd"), "app:x:1000:1000::/home/app:/bin/sh\n").unwrap();
/// std::fs::write(rootfs.path().join("etc/group"), "app:x:1000:\nvideo:x:44:app\n").unwrap();
///
/// let user = resolve_user(rootfs.path(), "app", None).unwrap();
/// assert_eq!((user.uid, user.gid), (1000, 1000));
/// assert_eq!(user.additional_gids, vec![1000, 44]);
/// assert_eq!(user.home.as_deref(), Some("/home/app"));
/// ```
pub fn resolve_user(
    rootfs: &Path,
    image_user: &str,
    security: Option<&LinuxContainerSecurityContext>,
) -> Result<ResolvedUser> {
    resolve(rootfs, image_user, &UserRequest::from_container(security))
}

pub(crate) fn resolve(
    rootfs: &Path,
    image_user: &str,
    req: &UserRequest<'_>,
) -> Result<ResolvedUser> {
    let prefix = req.prefix;
    if req.run_as_group.is_some() && req.run_as_user.is_none() && req.run_as_username.is_empty() {
        return Err(Error::invalid(
            format!("{prefix}.run_as_group"),
            "run_as_group requires run_as_user or run_as_username",
        ));
    }
    let mut files = Files::new(rootfs);

    let (uid, entry, image_gid) = if let Some(value) = req.run_as_user {
        let uid = id_from_i64(value, &format!("{prefix}.run_as_user"))?;
        let entry = files.passwd()?.iter().find(|e| e.uid == uid).cloned();
        (uid, entry, None)
    } else if !req.run_as_username.is_empty() {
        let name = req.run_as_username;
        let field = format!("{prefix}.run_as_username");
        match files.passwd()?.iter().find(|e| e.name == name).cloned() {
            Some(entry) => (entry.uid, Some(entry), None),
            None => {
                return Err(Error::invalid(
                    field,
                    format!("user {name:?} not found in the image's /etc/passwd"),
                ));
            }
        }
    } else {
        parse_image_user(&mut files, image_user)?
    };

    let gid = match req.run_as_group {
        Some(value) => id_from_i64(value, &format!("{prefix}.run_as_group"))?,
        None => image_gid.or(entry.as_ref().map(|e| e.gid)).unwrap_or(0),
    };

    let mut additional_gids = vec![gid];
    let policy = SupplementalGroupsPolicy::try_from(req.policy).map_err(|_| {
        Error::invalid(
            format!("{prefix}.supplemental_groups_policy"),
            format!("unknown policy {}", req.policy),
        )
    })?;
    if policy == SupplementalGroupsPolicy::Merge
        && let Some(entry) = &entry
    {
        for group in files.group()? {
            if group.members.contains(&entry.name) && !additional_gids.contains(&group.gid) {
                additional_gids.push(group.gid);
            }
        }
    }
    for (i, value) in req.supplemental_groups.iter().enumerate() {
        let gid = id_from_i64(*value, &format!("{prefix}.supplemental_groups[{i}]"))?;
        if !additional_gids.contains(&gid) {
            additional_gids.push(gid);
        }
    }

    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home: entry
            .as_ref()
            .map(|e| e.home.clone())
            .filter(|h| !h.is_empty()),
        username: entry.map(|e| e.name),
    })
}

/// Parses the image's `User` field: `(uid, passwd entry, explicit gid)`.
fn parse_image_user(
    files: &mut Files<'_>,
    image_user: &str,
) -> Result<(u32, Option<PasswdEntry>, Option<u32>)> {
    const FIELD: &str = "image config User";
    let (user, group) = match image_user.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (image_user, None),
    };
    let (uid, entry) = if user.is_empty() {
        let entry = files.passwd()?.iter().find(|e| e.uid == 0).cloned();
        (0, entry)
    } else if let Ok(uid) = user.parse::<u32>() {
        let entry = files.passwd()?.iter().find(|e| e.uid == uid).cloned();
        (uid, entry)
    } else {
        match files.passwd()?.iter().find(|e| e.name == user).cloned() {
            Some(entry) => (entry.uid, Some(entry)),
            None => {
                return Err(Error::invalid(
                    FIELD,
                    format!("user {user:?} not found in the image's /etc/passwd"),
                ));
            }
        }
    };
    let gid = match group {
        None | Some("") => None,
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => Some(gid),
            Err(_) => match files.group()?.iter().find(|g| g.name == group) {
                Some(g) => Some(g.gid),
                None => {
                    return Err(Error::invalid(
                        FIELD,
                        format!("group {group:?} not found in the image's /etc/group"),
                    ));
                }
            },
        },
    };
    Ok((uid, entry, gid))
}

/// A UID or GID from a CRI int64: 0 to 2^32-2 (2^32-1 is the kernel's "no ID").
fn id_from_i64(value: i64, field: &str) -> Result<u32> {
    match u32::try_from(value) {
        Ok(id) if id != u32::MAX => Ok(id),
        _ => Err(Error::invalid(field, format!("{value} is not a valid ID"))),
    }
}

#[derive(Clone, Debug)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

#[derive(Clone, Debug)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Lazily read `/etc/passwd` and `/etc/group` of one rootfs.
struct Files<'a> {
    rootfs: &'a Path,
    passwd: Option<Vec<PasswdEntry>>,
    group: Option<Vec<GroupEntry>>,
}

impl<'a> Files<'a> {
    fn new(rootfs: &'a Path) -> Self {
        Self {
            rootfs,
            passwd: None,
            group: None,
        }
    }

    fn passwd(&mut self) -> Result<&[PasswdEntry]> {
        if self.passwd.is_none() {
            let text = read_rootfs_file(self.rootfs, "/etc/passwd")?.unwrap_or_default();
            self.passwd = Some(parse_passwd(&text));
        }
        Ok(self.passwd.as_deref().unwrap_or_default())
    }

    fn group(&mut self) -> Result<&[GroupEntry]> {
        if self.group.is_none() {
            let text = read_rootfs_file(self.rootfs, "/etc/group")?.unwrap_or_default();
            self.group = Some(parse_group(&text));
        }
        Ok(self.group.as_deref().unwrap_or_default())
    }
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|line| !line.starts_with(['#', '+', '-']))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 || fields[0].is_empty() {
                return None;
            }
            Some(PasswdEntry {
                name: fields[0].to_string(),
                uid: fields[2].trim().parse().ok()?,
                gid: fields[3].trim().parse().ok()?,
                home: fields.get(5).map(|h| h.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|line| !line.starts_with(['#', '+', '-']))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 3 || fields[0].is_empty() {
                return None;
            }
            Some(GroupEntry {
                name: fields[0].to_string(),
                gid: fields[2].trim().parse().ok()?,
                members: fields
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The largest account database we are willing to read.
const MAX_FILE: u64 = 16 << 20;

/// Reads a file of the rootfs (symbolic links resolved inside it); `None` when it is missing.
pub(crate) fn read_rootfs_file(rootfs: &Path, path: &str) -> Result<Option<String>> {
    let host_path = resolve_in_root(rootfs, Path::new(path))
        .map_err(|e| Error::io(format!("resolving {path} in {}", rootfs.display()), e))?;
    // Non-blocking and without following a final link (resolve_in_root resolved them): an
    // image may ship a FIFO or a device node here, whose open or read could block forever.
    use std::os::unix::fs::OpenOptionsExt as _;
    let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(&host_path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("opening {}", host_path.display()), e)),
    };
    let is_file = file
        .metadata()
        .map_err(|e| Error::io(format!("inspecting {}", host_path.display()), e))?
        .is_file();
    if !is_file {
        return Err(Error::invalid(
            path,
            format!("{path} in the image is not a regular file"),
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("reading {}", host_path.display()), e))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// The host path of `path` inside `root`, with every symbolic link on the way resolved as if
/// `root` were `/` (absolute targets restart at `root`, `..` never climbs above it).
///
/// Components that do not exist are kept as they are, so the result names the file that
/// would be opened. More than 40 links is an `ELOOP` error, as in the kernel.
pub(crate) fn resolve_in_root(root: &Path, path: &Path) -> std::io::Result<PathBuf> {
    let mut pending: VecDeque<OsString> = VecDeque::new();
    push_components(&mut pending, path, false);
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        let host = root.join(&candidate);
        match std::fs::symlink_metadata(&host) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(std::io::Error::from_raw_os_error(
                        rustix::io::Errno::LOOP.raw_os_error(),
                    ));
                }
                let target = std::fs::read_link(&host)?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                push_components(&mut pending, &target, true);
            }
            _ => resolved = candidate,
        }
    }
    Ok(root.join(resolved))
}

/// Queues the normal and `..` components of `path` (at the front when `front`).
fn push_components(pending: &mut VecDeque<OsString>, path: &Path, front: bool) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    if front {
        for part in parts.into_iter().rev() {
            pending.push_front(part);
        }
    } else {
        pending.extend(parts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/real"), "inside").unwrap();
        std::os::unix::fs::symlink("/etc/real", root.join("etc/abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/real", root.join("etc/rel")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("etc/loop")).unwrap();
        assert_eq!(
            resolve_in_root(root, Path::new("/etc/abs")).unwrap(),
            root.join("etc/real")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/etc/rel")).unwrap(),
            root.join("etc/real")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/../etc/missing")).unwrap(),
            root.join("etc/missing")
        );
        assert!(resolve_in_root(root, Path::new("/etc/loop")).is_err());
        // An escaping link to the host's passwd reads the image's (missing) file instead.
        std::os::unix::fs::symlink(
            "/etc/hostname-does-not-exist-in-root",
            root.join("etc/passwd"),
        )
        .unwrap();
        assert_eq!(read_rootfs_file(root, "/etc/passwd").unwrap(), None);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let users = parse_passwd(
            "# comment\nroot:x:0:0:root:/root:/bin/sh\nbroken\nbad:x:notanumber:0::/:\n+nis\n",
        );
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].home, "/root");
        let groups = parse_group("wheel:x:10:root, admin\nnomembers:x:11\n");
        assert_eq!(groups[0].members, vec!["root", "admin"]);
        assert!(groups[1].members.is_empty());
    }

    #[test]
    fn ids_are_range_checked() {
        assert_eq!(id_from_i64(0, "f").unwrap(), 0);
        assert!(id_from_i64(-1, "f").is_err());
        assert!(id_from_i64(u32::MAX as i64, "f").is_err());
        assert!(id_from_i64(1 << 40, "f").is_err());
    }

    #[test]
    fn a_fifo_in_place_of_an_account_file_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("etc/passwd"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let err = read_rootfs_file(dir.path(), "/etc/passwd").unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
