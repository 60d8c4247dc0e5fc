//! Facts about the node that a CRI request does not carry.

use std::path::PathBuf;

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
    /// - `seccomp_enabled` when `/proc/self/status` reports a `Seccomp:` line.
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
        host.restrict_oom_score_adj = match effective_capabilities(&status) {
            Some(caps) => caps & (1 << CAP_SYS_RESOURCE) == 0,
            None => !rustix::process::geteuid().is_root(),
        };
        host
    }
}

/// The capability that allows lowering `oom_score_adj`.
const CAP_SYS_RESOURCE: u32 = 24;

/// The `CapEff:` mask of a `/proc/<pid>/status` text.
fn effective_capabilities(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?;
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
    fn effective_capabilities_parse() {
        let status = "Name:\tx\nCapEff:\t000001ffffffffff\nCapBnd:\t0\n";
        assert_eq!(effective_capabilities(status), Some(0x1ff_ffff_ffff));
        assert_eq!(effective_capabilities("Name:\tx\n"), None);
    }

    #[test]
    fn detect_reads_this_process() {
        let host = Host::detect();
        assert!((-1000..=1000).contains(&host.min_oom_score_adj));
        assert_eq!(host.device_root, PathBuf::from("/dev"));
    }
}
