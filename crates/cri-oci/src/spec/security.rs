//! Capabilities, masked and read-only paths, AppArmor and SELinux.

use std::collections::HashSet;

use cri_api::v1::security_profile::ProfileType;
use cri_api::v1::{Capability as CriCapability, SeLinuxOption, SecurityProfile};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use super::Host;
use crate::{Error, Result};

/// The capabilities a container gets when its security context adds and drops none: the
/// classic Docker default set.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability by its kernel name (without the `CAP_` prefix) and number.
const NAMES: [(&str, Capability, u32); 41] = [
    ("AUDIT_CONTROL", Capability::AuditControl, 30),
    ("AUDIT_READ", Capability::AuditRead, 37),
    ("AUDIT_WRITE", Capability::AuditWrite, 29),
    ("BLOCK_SUSPEND", Capability::BlockSuspend, 36),
    ("BPF", Capability::Bpf, 39),
    ("CHECKPOINT_RESTORE", Capability::CheckpointRestore, 40),
    ("CHOWN", Capability::Chown, 0),
    ("DAC_OVERRIDE", Capability::DacOverride, 1),
    ("DAC_READ_SEARCH", Capability::DacReadSearch, 2),
    ("FOWNER", Capability::Fowner, 3),
    ("FSETID", Capability::Fsetid, 4),
    ("IPC_LOCK", Capability::IpcLock, 14),
    ("IPC_OWNER", Capability::IpcOwner, 15),
    ("KILL", Capability::Kill, 5),
    ("LEASE", Capability::Lease, 28),
    ("LINUX_IMMUTABLE", Capability::LinuxImmutable, 9),
    ("MAC_ADMIN", Capability::MacAdmin, 33),
    ("MAC_OVERRIDE", Capability::MacOverride, 32),
    ("MKNOD", Capability::Mknod, 27),
    ("NET_ADMIN", Capability::NetAdmin, 12),
    ("NET_BIND_SERVICE", Capability::NetBindService, 10),
    ("NET_BROADCAST", Capability::NetBroadcast, 11),
    ("NET_RAW", Capability::NetRaw, 13),
    ("PERFMON", Capability::Perfmon, 38),
    ("SETGID", Capability::Setgid, 6),
    ("SETFCAP", Capability::Setfcap, 31),
    ("SETPCAP", Capability::Setpcap, 8),
    ("SETUID", Capability::Setuid, 7),
    ("SYS_ADMIN", Capability::SysAdmin, 21),
    ("SYS_BOOT", Capability::SysBoot, 22),
    ("SYS_CHROOT", Capability::SysChroot, 18),
    ("SYS_MODULE", Capability::SysModule, 16),
    ("SYS_NICE", Capability::SysNice, 23),
    ("SYS_PACCT", Capability::SysPacct, 20),
    ("SYS_PTRACE", Capability::SysPtrace, 19),
    ("SYS_RAWIO", Capability::SysRawio, 17),
    ("SYS_RESOURCE", Capability::SysResource, 24),
    ("SYS_TIME", Capability::SysTime, 25),
    ("SYS_TTY_CONFIG", Capability::SysTtyConfig, 26),
    ("SYSLOG", Capability::Syslog, 34),
    ("WAKE_ALARM", Capability::WakeAlarm, 35),
];

/// Every capability this crate knows (what a privileged container gets).
pub fn all_capabilities() -> Capabilities {
    NAMES.iter().map(|(_, cap, _)| *cap).collect()
}

/// The capabilities whose bits are set in a kernel capability mask (as in the `CapBnd:` line
/// of `/proc/<pid>/status`); bits of capabilities this crate does not know are ignored.
pub(crate) fn capabilities_of_mask(mask: u64) -> Capabilities {
    NAMES
        .iter()
        .filter(|(_, _, bit)| mask & (1 << bit) != 0)
        .map(|(_, cap, _)| *cap)
        .collect()
}

/// The kernel name of a capability, without `CAP_`.
fn name_of(cap: Capability) -> &'static str {
    NAMES
        .iter()
        .find(|(_, c, _)| *c == cap)
        .map_or("?", |(name, _, _)| name)
}

/// Parses a capability name as Kubernetes writes it: case-insensitive, with or without the
/// `CAP_` prefix. `ALL` is not a capability and gives `None`.
///
/// ```
/// use cri_oci::spec::parse_capability;
/// use oci_spec::runtime::Capability;
///
/// assert_eq!(parse_capability("net_admin"), Some(Capability::NetAdmin));
/// assert_eq!(parse_capability("CAP_SYS_ADMIN"), Some(Capability::SysAdmin));
/// assert_eq!(parse_capability("CAP_FOO"), None);
/// ```
pub fn parse_capability(name: &str) -> Option<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES
        .iter()
        .find(|(n, _, _)| *n == bare)
        .map(|(_, cap, _)| *cap)
}

fn is_all(name: &str) -> bool {
    let upper = name.trim().to_ascii_uppercase();
    upper == "ALL" || upper == "CAP_ALL"
}

/// The process capabilities for a security context.
///
/// Order of operations, as the Go runtimes apply them: start from [`DEFAULT_CAPABILITIES`];
/// `ALL` in `add` gives every capability; `ALL` in `drop` then empties the set; the named
/// additions are added and the named drops removed. Ambient capabilities are also added to
/// the bounding, effective, permitted and inheritable sets (the kernel keeps an ambient
/// capability only while it is permitted and inheritable). Otherwise the inheritable set
/// stays empty, so that file capabilities of executed programs cannot pick up more.
///
/// "Every capability" (privileged, `ALL`) means every capability the runtime holds,
/// [`Host::capabilities`]; defaults it does not hold are left out quietly, and a capability
/// the request names that it does not hold is refused, naming it.
pub(crate) fn capabilities(
    host: &Host,
    cri: Option<&CriCapability>,
    privileged: bool,
) -> Result<LinuxCapabilities> {
    const PREFIX: &str = "linux.security_context.capabilities";
    let empty = CriCapability::default();
    let cri = cri.unwrap_or(&empty);
    let held = &host.capabilities;
    let mut set: Capabilities = if privileged {
        held.clone()
    } else {
        DEFAULT_CAPABILITIES
            .into_iter()
            .filter(|cap| held.contains(cap))
            .collect()
    };

    let parse_list = |names: &[String], field: &str| -> Result<(bool, Vec<Capability>)> {
        let mut all = false;
        let mut caps = Vec::new();
        for (i, name) in names.iter().enumerate() {
            if is_all(name) {
                all = true;
            } else {
                caps.push(parse_capability(name).ok_or_else(|| {
                    Error::invalid(
                        format!("{PREFIX}.{field}[{i}]"),
                        format!("unknown capability {name:?}"),
                    )
                })?);
            }
        }
        Ok((all, caps))
    };
    let grantable = |caps: &[Capability], field: &str| -> Result<()> {
        match caps.iter().find(|cap| !held.contains(cap)) {
            Some(cap) => Err(Error::Unsupported(format!(
                "{PREFIX}.{field}: CAP_{} cannot be granted: the runtime does not hold it in its bounding set",
                name_of(*cap)
            ))),
            None => Ok(()),
        }
    };
    let (add_all, add) = parse_list(&cri.add_capabilities, "add_capabilities")?;
    let (drop_all, drop) = parse_list(&cri.drop_capabilities, "drop_capabilities")?;
    let (ambient_all, ambient) =
        parse_list(&cri.add_ambient_capabilities, "add_ambient_capabilities")?;
    if ambient_all {
        return Err(Error::invalid(
            format!("{PREFIX}.add_ambient_capabilities"),
            "ALL is not accepted for ambient capabilities; name them",
        ));
    }
    grantable(&ambient, "add_ambient_capabilities")?;

    if !privileged {
        grantable(&add, "add_capabilities")?;
        if add_all {
            set = held.clone();
        }
        if drop_all {
            set.clear();
        }
        set.extend(add);
        for cap in &drop {
            set.remove(cap);
        }
    }
    set.extend(ambient.iter().copied());
    let ambient: Capabilities = ambient.into_iter().collect();

    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    caps.set_inheritable(Some(ambient.clone()));
    caps.set_ambient(Some(ambient));
    Ok(caps)
}

/// Paths hidden from a pod's unprivileged pause process (containers get exactly the paths
/// their request names; the kubelet's list is much the same).
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Paths made read-only in a pod's unprivileged pause process (containers: see
/// [`DEFAULT_MASKED_PATHS`]).
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A container's masked and read-only paths: none when privileged, otherwise exactly the
/// request's. Empty lists mean none: the kubelet always sends its full lists, and sends them
/// empty on purpose for `procMount: Unmasked` (containerd applies the request's lists the
/// same way). The pause process, which has no such fields, gets [`DEFAULT_MASKED_PATHS`]
/// and [`DEFAULT_READONLY_PATHS`] from [`sandbox_masked_and_readonly`].
pub(crate) fn masked_and_readonly(
    masked: &[String],
    readonly: &[String],
    privileged: bool,
) -> Result<(Vec<String>, Vec<String>)> {
    if privileged {
        return Ok((Vec::new(), Vec::new()));
    }
    let check = |given: &[String], field: &str| -> Result<Vec<String>> {
        for (i, path) in given.iter().enumerate() {
            if !path.starts_with('/') {
                return Err(Error::invalid(
                    format!("linux.security_context.{field}[{i}]"),
                    format!("{path:?} is not an absolute path"),
                ));
            }
        }
        Ok(given.to_vec())
    };
    Ok((
        check(masked, "masked_paths")?,
        check(readonly, "readonly_paths")?,
    ))
}

/// The pause process's masked and read-only paths: ours, none when privileged.
pub(crate) fn sandbox_masked_and_readonly(privileged: bool) -> (Vec<String>, Vec<String>) {
    if privileged {
        return (Vec::new(), Vec::new());
    }
    let own = |paths: &[&str]| paths.iter().map(|p| p.to_string()).collect();
    (own(&DEFAULT_MASKED_PATHS), own(&DEFAULT_READONLY_PATHS))
}

/// The AppArmor profile name the runtime is expected to load for `RuntimeDefault`.
pub const APPARMOR_DEFAULT_PROFILE: &str = "cri-rs-default";

/// The AppArmor profile for a process, or `None` for unconfined / AppArmor disabled.
///
/// `profile` wins over the deprecated string form (`runtime/default`, `unconfined`,
/// `localhost/<name>`). A privileged container with `RuntimeDefault` runs unconfined.
pub(crate) fn apparmor_profile(
    host: &Host,
    profile: Option<&SecurityProfile>,
    deprecated: &str,
    privileged: bool,
    field: &str,
) -> Result<Option<String>> {
    if !host.apparmor_enabled {
        return Ok(None);
    }
    let choice = match profile {
        Some(p) => match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::RuntimeDefault) => Choice::RuntimeDefault,
            Ok(ProfileType::Unconfined) => Choice::Unconfined,
            Ok(ProfileType::Localhost) => Choice::Localhost(p.localhost_ref.clone()),
            Err(_) => {
                return Err(Error::invalid(
                    format!("{field}.profile_type"),
                    format!("unknown profile type {}", p.profile_type),
                ));
            }
        },
        None => match deprecated {
            "" | "unconfined" => Choice::Unconfined,
            "runtime/default" => Choice::RuntimeDefault,
            other => match other.strip_prefix("localhost/") {
                Some(name) => Choice::Localhost(name.to_string()),
                None => {
                    return Err(Error::invalid(
                        "linux.security_context.apparmor_profile",
                        format!("unknown AppArmor profile {other:?}"),
                    ));
                }
            },
        },
    };
    Ok(match choice {
        Choice::Unconfined => None,
        Choice::RuntimeDefault if privileged => None,
        Choice::RuntimeDefault => Some(APPARMOR_DEFAULT_PROFILE.to_string()),
        Choice::Localhost(name) => {
            let name = name.strip_prefix("localhost/").unwrap_or(&name).to_string();
            if name.is_empty() {
                return Err(Error::invalid(
                    format!("{field}.localhost_ref"),
                    "a Localhost profile needs a name",
                ));
            }
            Some(name)
        }
    })
}

/// A profile selection, from either the structured or the deprecated string form.
pub(crate) enum Choice {
    RuntimeDefault,
    Unconfined,
    Localhost(String),
}

/// SELinux process label and mount label, when SELinux is enabled and options are given.
///
/// Parts left empty take the container defaults (`system_u`, `system_r`, `container_t`,
/// level `s0`); the mount label uses the same user and level with `object_r` and
/// `container_file_t`.
pub(crate) fn selinux_labels(
    host: &Host,
    options: Option<&SeLinuxOption>,
) -> Option<(String, String)> {
    if !host.selinux_enabled {
        return None;
    }
    let options = options?;
    let or = |value: &str, default: &str| {
        if value.is_empty() {
            default.to_string()
        } else {
            value.to_string()
        }
    };
    let user = or(&options.user, "system_u");
    let level = or(&options.level, "s0");
    let process = format!(
        "{user}:{}:{}:{level}",
        or(&options.role, "system_r"),
        or(&options.r#type, "container_t")
    );
    let mount = format!("{user}:object_r:container_file_t:{level}");
    Some((process, mount))
}

/// The effective capability set, for the seccomp profile's capability-dependent rules.
pub(crate) fn effective(caps: &LinuxCapabilities) -> HashSet<Capability> {
    caps.effective().clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_capability_has_a_name() {
        assert_eq!(all_capabilities().len(), NAMES.len());
        for (name, cap, _) in NAMES {
            assert_eq!(
                parse_capability(&format!("cap_{}", name.to_lowercase())),
                Some(cap)
            );
            assert_eq!(
                cap.to_string(),
                name,
                "oci-spec's Display agrees with our table"
            );
        }
    }
}
