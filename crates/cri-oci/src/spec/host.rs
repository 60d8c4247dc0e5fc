//! Facts about the node that a CRI request does not carry.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Capabilities;

use super::security::{all_capabilities, capabilities_of_mask};

/// Facts about the host that are not in the CRI request.
///
/// [`Host::default`] is a conservative description of a typical node; [`Host::detect`] reads
/// what it can from the running kernel. Fields are public so a runtime can override any of them
/// from its own configuration:
///
/// ```
/// use cri_oci::spec::Host;
///
/// let mut host = Host::default();
/// host.cgroup_parent = "/my-runtime".into();
/// host.apparmor_enabled = true;
/// assert!(host.seccomp_enabled);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Host {
    /// Parent cgroup used when the sandbox config names none (cgroupfs layout, e.g. `/cri-rs`).
    pub cgroup_parent: String,
    /// Clamp every `oom_score_adj` to at least [`Host::min_oom_score_adj`] (for runtimes that
    /// cannot lower the score below their own, e.g. rootless ones).
    pub restrict_oom_score_adj: bool,
    /// The lowest `oom_score_adj` a process may get when [`Host::restrict_oom_score_adj`] is set.
    pub min_oom_score_adj: i64,
    /// The kernel supports seccomp filters; when false, any profile other than unconfined is
    /// refused rather than silently dropped.
    pub seccomp_enabled: bool,
    /// AppArmor is enabled and the runtime loads the `cri-rs-default` profile.
    pub apparmor_enabled: bool,
    /// SELinux is enabled; labels from the request are written into the spec.
    pub selinux_enabled: bool,
    /// The kernel (>= 5.12) and the OCI runtime support recursive read-only (`rro`) mounts.
    pub recursive_read_only_supported: bool,
    /// Directories holding CDI spec files, lowest priority first.
    pub cdi_spec_dirs: Vec<PathBuf>,
    /// Where host devices are looked up for privileged containers (normally `/dev`).
    pub device_root: PathBuf,
    /// The capabilities the runtime can hand to a container: its own bounding set. A
    /// privileged container and `ALL` get exactly these; a capability named in a request
    /// and missing here is refused with an error naming it (the kernel would refuse it
    /// anyway, with a message that names nothing).
    pub capabilities: Capabilities,
    /// The hugetlb cgroup controller is available to the OCI runtime. Without it, the
    /// zero hugepage limits the kubelet sends for every page size are dropped, and a
    /// non-zero limit is refused (it could not be enforced).
    pub hugetlb_supported: bool,
}

impl Default for Host {
    fn default() -> Self {
        Self {
            cgroup_parent: "/cri-rs".to_string(),
            restrict_oom_score_adj: false,
            min_oom_score_adj: 0,
            seccomp_enabled: true,
            apparmor_enabled: false,
            selinux_enabled: false,
            recursive_read_only_supported: false,
            cdi_spec_dirs: vec![PathBuf::from("/etc/cdi"), PathBuf::from("/var/run/cdi")],
            device_root: PathBuf::from("/dev"),
            capabilities: all_capabilities(),
            hugetlb_supported: true,
        }
    }
}

impl Host {
    /// [`Host::default`] adjusted to the running kernel and process:
    ///
    /// - `min_oom_score_adj` from `/proc/self/oom_score_adj`, and `restrict_oom_score_adj`
    ///   when this process lacks `CAP_SYS_RESOURCE` (without it, even root cannot lower a
    ///   score below its own);
    /// - `recursive_read_only_supported` when the kernel is 5.12 or newer (the OCI runtime
    ///   must support `rro` too: runc 1.1 and later do);
    /// - `seccomp_enabled` when `/proc/self/status` reports a `Seccomp:` line;
    /// - `capabilities` from this process's bounding set (`CapBnd:` in `/proc/self/status`);
    /// - `hugetlb_supported` when a cgroup v1 hierarchy has the `hugetlb` controller mounted,
    ///   or, on a unified (v2) host, when the root's `cgroup.controllers` lists it.
    ///
    /// AppArmor and SELinux stay disabled: enabling them is the runtime's decision because it
    /// must also load the profile or hold the policy.
    pub fn detect() -> Self {
        let mut host = Self::default();
        if let Ok(text) = std::fs::read_to_string("/proc/self/oom_score_adj")
            && let Ok(value) = text.trim().parse::<i64>()
        {
            host.min_oom_score_adj = value;
        }
        let uname = rustix::system::uname();
        let release = uname.release().to_string_lossy();
        host.recursive_read_only_supported = kernel_at_least(&release, (5, 12));
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        host.seccomp_enabled = status.lines().any(|line| line.starts_with("Seccomp:"));
        host.restrict_oom_score_adj = match capability_mask(&status, "CapEff:") {
            Some(caps) => caps & (1 << CAP_SYS_RESOURCE) == 0,
            None => !rustix::process::geteuid().is_root(),
        };
        if let Some(bounding) = capability_mask(&status, "CapBnd:") {
            host.capabilities = capabilities_of_mask(bounding);
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        host.hugetlb_supported = hugetlb_available(&mountinfo, Path::new("/sys/fs/cgroup"));
        host
    }
}

/// Whether the hugetlb controller is usable, from `/proc/self/mountinfo` and the cgroup root.
///
/// A cgroup v2 filesystem mounted at `cgroup_root` means a unified host: its
/// `cgroup.controllers` must list `hugetlb`. Otherwise (v1 or hybrid, where OCI runtimes use
/// the v1 hierarchies) some `cgroup` mount must carry the `hugetlb` super option.
pub(crate) fn hugetlb_available(mountinfo: &str, cgroup_root: &Path) -> bool {
    let mut unified_root = false;
    for line in mountinfo.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = before.split(' ').nth(4).unwrap_or_default();
        let mut fields = after.split(' ');
        let fstype = fields.next().unwrap_or_default();
        let super_options = fields.nth(1).unwrap_or_default();
        match fstype {
            "cgroup" if super_options.split(',').any(|o| o == "hugetlb") => return true,
            "cgroup2" if Path::new(mount_point) == cgroup_root => unified_root = true,
            _ => {}
        }
    }
    unified_root
        && std::fs::read_to_string(cgroup_root.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "hugetlb"))
}

/// The capability that allows lowering `oom_score_adj`.
const CAP_SYS_RESOURCE: u32 = 24;

/// A capability mask (`CapEff:`, `CapBnd:`, ...) of a `/proc/<pid>/status` text.
fn capability_mask(status: &str, key: &str) -> Option<u64> {
    let hex = status.lines().find_map(|line| line.strip_prefix(key))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Whether a kernel release string such as `6.1.0-13-amd64` is at least `major.minor`.
pub(crate) fn kernel_at_least(release: &str, wanted: (u32, u32)) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    match (major, minor) {
        (Some(major), Some(minor)) => (major, minor) >= wanted,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_compare_numerically() {
        assert!(kernel_at_least("5.12.0", (5, 12)));
        assert!(kernel_at_least("6.1.0-13-amd64", (5, 12)));
        assert!(kernel_at_least("10.0", (5, 12)));
        assert!(!kernel_at_least("5.4.0-150-generic", (5, 12)));
        assert!(!kernel_at_least("4.19", (5, 12)));
        assert!(!kernel_at_least("garbage", (5, 12)));
    }

    #[test]
    fn capability_masks_parse() {
        let status = "Name:\tx\nCapEff:\t000001ffffffffff\nCapBnd:\t0\n";
        assert_eq!(capability_mask(status, "CapEff:"), Some(0x1ff_ffff_ffff));
        assert_eq!(capability_mask(status, "CapBnd:"), Some(0));
        assert_eq!(capability_mask("Name:\tx\n", "CapEff:"), None);
    }

    const V1_WITHOUT_HUGETLB: &str = "\
25 1 0:23 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
26 25 0:24 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
27 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
28 25 0:26 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hugetlb_is_missing_on_v1_without_the_controller() {
        let root = tempfile::tempdir().unwrap();
        // A hybrid host's unified mount is not the cgroup root: its controllers don't count.
        std::fs::write(root.path().join("cgroup.controllers"), "hugetlb\n").unwrap();
        assert!(!hugetlb_available(V1_WITHOUT_HUGETLB, root.path()));
    }

    #[test]
    fn hugetlb_is_found_on_v1_with_the_controller() {
        let mountinfo = format!(
            "{V1_WITHOUT_HUGETLB}29 25 0:27 / /sys/fs/cgroup/hugetlb rw,relatime - cgroup cgroup rw,hugetlb\n"
        );
        assert!(hugetlb_available(&mountinfo, Path::new("/nonexistent")));
    }

    #[test]
    fn hugetlb_on_a_unified_host_follows_the_root_controllers() {
        let root = tempfile::tempdir().unwrap();
        let mountinfo = format!(
            "30 1 0:28 / {} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
            root.path().display()
        );
        std::fs::write(
            root.path().join("cgroup.controllers"),
            "cpu io memory pids\n",
        )
        .unwrap();
        assert!(!hugetlb_available(&mountinfo, root.path()));
        std::fs::write(
            root.path().join("cgroup.controllers"),
            "cpu memory hugetlb pids\n",
        )
        .unwrap();
        assert!(hugetlb_available(&mountinfo, root.path()));
    }

    #[test]
    fn detect_reads_the_bounding_set() {
        let host = Host::detect();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let bounding = capability_mask(&status, "CapBnd:").unwrap();
        assert_eq!(host.capabilities, capabilities_of_mask(bounding));
    }

    #[test]
    fn detect_reads_this_process() {
        let host = Host::detect();
        assert!((-1000..=1000).contains(&host.min_oom_score_adj));
        assert_eq!(host.device_root, PathBuf::from("/dev"));
    }
}
