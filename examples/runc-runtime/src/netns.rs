//! Pinning a pod's network namespace to a file: `/proc/<pause pid>/ns/net` bind-mounted onto
//! `<pod dir>/netns`. The pin keeps the namespace (and what CNI put in it) alive after the
//! pause process dies, so that CNI DEL still finds it; it is unmounted when the pod is
//! removed.

use std::io;
use std::path::Path;

use rustix::mount::{UnmountFlags, mount_bind, unmount};

/// The pin's file name in the pod directory.
pub(crate) const FILE: &str = "netns";

/// Bind-mounts the network namespace of process `pid` onto `target` (created empty first).
pub(crate) fn pin(pid: u32, target: &Path) -> io::Result<()> {
    std::fs::File::create(target)?;
    let source = format!("/proc/{pid}/ns/net");
    if let Err(e) = mount_bind(source.as_str(), target) {
        let _ = std::fs::remove_file(target);
        return Err(io::Error::new(
            io::Error::from(e).kind(),
            format!("bind-mounting {source} onto {}: {e}", target.display()),
        ));
    }
    Ok(())
}

/// Unmounts the pin at `target` (when mounted) and removes the file. A missing pin is fine.
pub(crate) fn unpin(target: &Path) -> io::Result<()> {
    match unmount(target, UnmountFlags::DETACH) {
        // EINVAL: not a mount point; ENOENT: no file.
        Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => {
            return Err(io::Error::new(
                io::Error::from(e).kind(),
                format!("unmounting {}: {e}", target.display()),
            ));
        }
    }
    match std::fs::remove_file(target) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpinning_nothing_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        unpin(&dir.path().join(FILE)).unwrap();
        // A plain file (a pin whose mount is gone) is removed.
        std::fs::write(dir.path().join(FILE), "").unwrap();
        unpin(&dir.path().join(FILE)).unwrap();
        assert!(!dir.path().join(FILE).exists());
    }

    #[test]
    fn a_pin_holds_the_namespace() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: mounting needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join(FILE);
        pin(std::process::id(), &target).unwrap();
        let ours = std::fs::metadata("/proc/self/ns/net").unwrap();
        let pinned = std::fs::metadata(&target).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((pinned.dev(), pinned.ino()), (ours.dev(), ours.ino()));
        unpin(&target).unwrap();
        assert!(!target.exists());
    }
}
