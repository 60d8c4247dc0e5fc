//! Seccomp: our `RuntimeDefault` profile, node-local profile files, and the choice between
//! them.
//!
//! The reasoning behind the default profile is on [`default_seccomp_profile`].

use std::path::Path;

use cri_api::v1::SecurityProfile;
use cri_api::v1::security_profile::ProfileType;
use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg,
    LinuxSeccompArgBuilder, LinuxSeccompOperator, LinuxSyscall,
};

use super::Host;
use super::host::kernel_at_least;
use super::security::{Choice, parse_capability};
use crate::{Error, Result};

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
const CLONE_NEWUSER: u64 = 0x1000_0000;

/// One deny rule of the default profile.
struct Rule {
    names: &'static [&'static str],
    /// The rule is left out when any of these capabilities is granted.
    unless: &'static [Capability],
    errno: u32,
    /// `(argument index, flag)`: deny only when the flag bit is set in the argument.
    flag: Option<(usize, u64)>,
}

const fn deny(names: &'static [&'static str], unless: &'static [Capability]) -> Rule {
    Rule {
        names,
        unless,
        errno: EPERM,
        flag: None,
    }
}

/// The `personality(2)` flags we refuse: they disable address-space randomisation, make
/// readable memory executable, or allow mapping page zero.
const PERSONALITY_FLAGS: [u64; 4] = [
    0x0004_0000, // ADDR_NO_RANDOMIZE
    0x0010_0000, // MMAP_PAGE_ZERO
    0x0020_0000, // ADDR_COMPAT_LAYOUT
    0x0040_0000, // READ_IMPLIES_EXEC
];

const RULES: &[Rule] = &[
    deny(&["keyctl", "add_key", "request_key"], &[]),
    deny(
        &[
            "create_module",
            "get_kernel_syms",
            "query_module",
            "uselib",
            "nfsservctl",
            "_sysctl",
            "vm86",
            "vm86old",
        ],
        &[],
    ),
    deny(
        &["kexec_load", "kexec_file_load", "reboot"],
        &[Capability::SysBoot],
    ),
    deny(
        &["init_module", "finit_module", "delete_module"],
        &[Capability::SysModule],
    ),
    deny(&["acct"], &[Capability::SysPacct]),
    deny(
        &[
            "settimeofday",
            "stime",
            "clock_settime",
            "clock_settime64",
            "clock_adjtime",
            "clock_adjtime64",
            "adjtimex",
        ],
        &[Capability::SysTime],
    ),
    deny(&["bpf"], &[Capability::SysAdmin, Capability::Bpf]),
    deny(
        &["perf_event_open"],
        &[Capability::SysAdmin, Capability::Perfmon],
    ),
    deny(&["userfaultfd"], &[Capability::SysPtrace]),
    deny(
        &["open_by_handle_at", "name_to_handle_at"],
        &[Capability::DacReadSearch],
    ),
    deny(&["iopl", "ioperm"], &[Capability::SysRawio]),
    deny(&["syslog"], &[Capability::Syslog]),
    deny(
        &[
            "mount",
            "umount",
            "umount2",
            "pivot_root",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
            "mount_setattr",
            "swapon",
            "swapoff",
            "quotactl",
            "quotactl_fd",
            "lookup_dcookie",
        ],
        &[Capability::SysAdmin],
    ),
    Rule {
        names: &["unshare"],
        unless: &[Capability::SysAdmin],
        errno: EPERM,
        flag: Some((0, CLONE_NEWUSER)),
    },
    Rule {
        names: &["clone"],
        unless: &[Capability::SysAdmin],
        errno: EPERM,
        flag: Some((CLONE_FLAGS_ARG, CLONE_NEWUSER)),
    },
    Rule {
        names: &["clone3"],
        unless: &[Capability::SysAdmin],
        errno: ENOSYS,
        flag: None,
    },
];

/// Which argument of `clone(2)` holds the flags (s390 swaps the first two).
const CLONE_FLAGS_ARG: usize = if cfg!(target_arch = "s390x") { 1 } else { 0 };

/// The seccomp architectures of this host: the native one and the ABIs it can also run.
pub fn host_architectures() -> Vec<Arch> {
    match std::env::consts::ARCH {
        "x86_64" => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        "x86" => vec![Arch::ScmpArchX86],
        "aarch64" => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        "arm" => vec![Arch::ScmpArchArm],
        "s390x" => vec![Arch::ScmpArchS390x, Arch::ScmpArchS390],
        "powerpc64" => vec![Arch::ScmpArchPpc64le],
        "riscv64" => vec![Arch::ScmpArchRiscv64],
        "loongarch64" => vec![Arch::ScmpArchLoongarch64],
        _ => vec![Arch::ScmpArchNative],
    }
}

/// Our `RuntimeDefault` seccomp profile for a process holding the `granted` capabilities.
///
/// # A deny-list
///
/// The profile allows every system call except a short list that a container
/// has no business making: loading kernel modules or new kernels, rebooting, setting the
/// clock, swap, process accounting, the kernel keyring (it is not namespaced), BPF and perf
/// events, `userfaultfd`, file handles (`open_by_handle_at` is a classic escape), raw port
/// I/O, obsolete calls, and `personality` flags that switch off ASLR or NX. Without
/// `CAP_SYS_ADMIN` it also denies `mount` and its relatives, `pivot_root` (runc calls it
/// before the filter is installed, so the container's setup is unaffected), and creating user
/// namespaces through `unshare`/`clone` (`clone3` answers `ENOSYS` so that libc falls back to
/// `clone`, whose flags the filter can see).
///
/// Many of the denied calls are gated by a capability; when the container is granted that
/// capability (say `SYS_TIME` for `settimeofday`), the rule is left out, so adding a
/// capability does what its name says.
///
/// Docker's and containerd's profiles are allow-lists of several hundred calls. A deny-list is
/// shorter to review, keeps working for system calls added to the kernel after the profile
/// was written (an allow-list breaks new glibc versions until it is updated), and still
/// closes the calls behind most container escapes; the price is that a newly added
/// *dangerous* call is allowed until it is listed. The filter covers every ABI the host can
/// run (x86-64, x86 and x32 on x86-64; AArch64 and Arm on AArch64), because a deny-list that
/// named only the native ABI could be bypassed through the 32-bit entry points.
///
/// # Example
///
/// ```
/// use cri_oci::spec::{DEFAULT_CAPABILITIES, default_seccomp_profile};
/// use oci_spec::runtime::{Capability, LinuxSeccompAction};
///
/// let caps = DEFAULT_CAPABILITIES.into_iter().collect();
/// let profile = default_seccomp_profile(&caps);
/// assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActAllow);
/// let denied: Vec<&String> = profile.syscalls().iter().flatten().flat_map(|s| s.names()).collect();
/// assert!(denied.iter().any(|n| *n == "kexec_load"));
/// assert!(denied.iter().any(|n| *n == "mount"));
///
/// let mut admin = caps.clone();
/// admin.insert(Capability::SysAdmin);
/// let profile = default_seccomp_profile(&admin);
/// let denied: Vec<&String> = profile.syscalls().iter().flatten().flat_map(|s| s.names()).collect();
/// assert!(!denied.iter().any(|n| *n == "mount"));
/// ```
pub fn default_seccomp_profile(granted: &Capabilities) -> LinuxSeccomp {
    let mut syscalls = Vec::new();
    for rule in RULES {
        if rule.unless.iter().any(|cap| granted.contains(cap)) {
            continue;
        }
        let mut syscall = LinuxSyscall::default();
        syscall.set_names(rule.names.iter().map(|n| n.to_string()).collect());
        syscall.set_action(LinuxSeccompAction::ScmpActErrno);
        syscall.set_errno_ret(Some(rule.errno));
        if let Some((index, flag)) = rule.flag {
            syscall.set_args(Some(vec![masked_eq(index, flag, flag)]));
        }
        syscalls.push(syscall);
    }
    // One rule per flag: conditions on the same argument would be OR-ed by runc anyway. The
    // mask includes bit 31 so that the query `personality(0xffffffff)` is never matched.
    for flag in PERSONALITY_FLAGS {
        let mut syscall = LinuxSyscall::default();
        syscall.set_names(vec!["personality".to_string()]);
        syscall.set_action(LinuxSeccompAction::ScmpActErrno);
        syscall.set_errno_ret(Some(EPERM));
        syscall.set_args(Some(vec![masked_eq(0, flag | 0x8000_0000, flag)]));
        syscalls.push(syscall);
    }
    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActAllow);
    profile.set_architectures(Some(host_architectures()));
    profile.set_syscalls(Some(syscalls));
    profile
}

/// `(arg[index] & mask) == value`.
fn masked_eq(index: usize, mask: u64, value: u64) -> LinuxSeccompArg {
    LinuxSeccompArgBuilder::default()
        .index(index)
        .value(mask)
        .value_two(value)
        .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
        .build()
        .expect("every field of a seccomp argument is given")
}

/// The seccomp filter of a process, or `None` for unconfined.
///
/// `profile` wins over the deprecated path string (`runtime/default`, `docker/default`,
/// `unconfined`, `localhost/<path>`); neither given means unconfined, as in the Go runtimes.
/// Privileged processes are never filtered. `field` names the profile field in errors.
pub(crate) fn seccomp(
    host: &Host,
    profile: Option<&SecurityProfile>,
    deprecated: &str,
    privileged: bool,
    granted: &Capabilities,
    field: &str,
) -> Result<Option<LinuxSeccomp>> {
    if privileged {
        return Ok(None);
    }
    let (choice, ref_field) = match profile {
        Some(p) => {
            let choice = match ProfileType::try_from(p.profile_type) {
                Ok(ProfileType::RuntimeDefault) => Choice::RuntimeDefault,
                Ok(ProfileType::Unconfined) => Choice::Unconfined,
                Ok(ProfileType::Localhost) => Choice::Localhost(p.localhost_ref.clone()),
                Err(_) => {
                    return Err(Error::invalid(
                        format!("{field}.profile_type"),
                        format!("unknown profile type {}", p.profile_type),
                    ));
                }
            };
            (choice, format!("{field}.localhost_ref"))
        }
        None => {
            let path_field = field.replace(".seccomp", ".seccomp_profile_path");
            let choice = match deprecated {
                "" | "unconfined" => Choice::Unconfined,
                "runtime/default" | "docker/default" => Choice::RuntimeDefault,
                other => match other.strip_prefix("localhost/") {
                    Some(path) => Choice::Localhost(path.to_string()),
                    None => {
                        return Err(Error::invalid(
                            path_field,
                            format!("unknown seccomp profile {other:?}"),
                        ));
                    }
                },
            };
            (choice, path_field)
        }
    };
    if !matches!(choice, Choice::Unconfined) && !host.seccomp_enabled {
        return Err(Error::Unsupported(format!(
            "{field}: seccomp is not enabled on this host"
        )));
    }
    match choice {
        Choice::Unconfined => Ok(None),
        Choice::RuntimeDefault => Ok(Some(default_seccomp_profile(granted))),
        Choice::Localhost(path) => {
            if !path.starts_with('/') {
                return Err(Error::invalid(
                    ref_field,
                    format!("{path:?} is not an absolute path"),
                ));
            }
            load_seccomp_profile(Path::new(&path), granted)
                .map(Some)
                .map_err(|reason| Error::invalid(ref_field, reason))
        }
    }
}

/// Reads a node-local seccomp profile file.
///
/// The file is an OCI `linux.seccomp` object. The Docker/containerd profile format is
/// accepted too: `archMap` selects the architectures of this host, a single `name` stands for
/// `names`, and rules with `includes`/`excludes` (`caps`, `arches`, `minKernel`) are kept or
/// dropped for the `granted` capabilities and this host. The error is a sentence naming the
/// file.
pub fn load_seccomp_profile(
    path: &Path,
    granted: &Capabilities,
) -> std::result::Result<LinuxSeccomp, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read seccomp profile {shown}: {e}"))?;
    let mut value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("seccomp profile {shown} is not valid JSON: {e}"))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| format!("seccomp profile {shown} is not a JSON object"))?;
    convert_docker_profile(object, granted).map_err(|e| format!("seccomp profile {shown}: {e}"))?;
    serde_json::from_value(value)
        .map_err(|e| format!("seccomp profile {shown} is not a valid profile: {e}"))
}

fn convert_docker_profile(
    object: &mut serde_json::Map<String, serde_json::Value>,
    granted: &Capabilities,
) -> std::result::Result<(), String> {
    use serde_json::Value;
    if let Some(arch_map) = object.remove("archMap")
        && !object.contains_key("architectures")
    {
        // The name as it appears in JSON, which is what the archMap entries hold.
        let native = host_architectures()
            .first()
            .and_then(|a| serde_json::to_value(a).ok())
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let entries = arch_map.as_array().cloned().unwrap_or_default();
        if let Some(entry) = entries
            .iter()
            .find(|e| e.get("architecture").and_then(Value::as_str) == Some(native.as_str()))
        {
            let mut arches = vec![Value::String(native.clone())];
            if let Some(subs) = entry.get("subArchitectures").and_then(Value::as_array) {
                arches.extend(subs.iter().cloned());
            }
            object.insert("architectures".into(), Value::Array(arches));
        }
    }
    let Some(Value::Array(syscalls)) = object.get_mut("syscalls") else {
        return Ok(());
    };
    let mut kept = Vec::new();
    for (i, mut syscall) in std::mem::take(syscalls).into_iter().enumerate() {
        let Some(rule) = syscall.as_object_mut() else {
            return Err(format!("syscalls[{i}] is not an object"));
        };
        if let Some(Value::String(name)) = rule.remove("name")
            && !rule.contains_key("names")
        {
            rule.insert("names".into(), Value::Array(vec![Value::String(name)]));
        }
        rule.remove("comment");
        let include = match rule.remove("includes") {
            Some(filter) => filter_matches(&filter, granted)
                .map_err(|e| format!("syscalls[{i}].includes: {e}"))?,
            None => true,
        };
        let exclude = match rule.remove("excludes") {
            Some(filter) => filter_matches_any(&filter, granted)
                .map_err(|e| format!("syscalls[{i}].excludes: {e}"))?,
            None => false,
        };
        if include && !exclude {
            kept.push(syscall);
        }
    }
    *syscalls = kept;
    Ok(())
}

/// This host's architecture in Go's spelling, as Docker profiles name it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

fn string_list(value: &serde_json::Value, key: &str) -> std::result::Result<Vec<String>, String> {
    match value.get(key) {
        None => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .ok_or_else(|| format!("{key} must list strings"))
            })
            .collect(),
        Some(_) => Err(format!("{key} must be a list")),
    }
}

fn check_keys(filter: &serde_json::Value) -> std::result::Result<(), String> {
    let object = filter.as_object().ok_or("must be an object")?;
    match object
        .keys()
        .find(|k| !matches!(k.as_str(), "caps" | "arches" | "minKernel"))
    {
        Some(key) => Err(format!("unsupported condition {key:?}")),
        None => Ok(()),
    }
}

fn has_cap(name: &str, granted: &Capabilities) -> std::result::Result<bool, String> {
    let cap = parse_capability(name).ok_or_else(|| format!("unknown capability {name:?}"))?;
    Ok(granted.contains(&cap))
}

/// `includes`: every condition given holds.
fn filter_matches(
    filter: &serde_json::Value,
    granted: &Capabilities,
) -> std::result::Result<bool, String> {
    check_keys(filter)?;
    for cap in string_list(filter, "caps")? {
        if !has_cap(&cap, granted)? {
            return Ok(false);
        }
    }
    let arches = string_list(filter, "arches")?;
    if !arches.is_empty() && !arches.iter().any(|a| a == go_arch()) {
        return Ok(false);
    }
    if let Some(min) = filter.get("minKernel").and_then(|v| v.as_str()) {
        let release = rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned();
        let mut parts = min.split('.').map(|p| p.parse::<u32>());
        let wanted = match (parts.next(), parts.next()) {
            (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
            _ => return Err(format!("minKernel {min:?} is not MAJOR.MINOR")),
        };
        if !kernel_at_least(&release, wanted) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `excludes`: any condition given holds.
fn filter_matches_any(
    filter: &serde_json::Value,
    granted: &Capabilities,
) -> std::result::Result<bool, String> {
    check_keys(filter)?;
    if filter.get("minKernel").is_some() {
        return Err("minKernel is not supported in excludes".into());
    }
    for cap in string_list(filter, "caps")? {
        if has_cap(&cap, granted)? {
            return Ok(true);
        }
    }
    Ok(string_list(filter, "arches")?
        .iter()
        .any(|a| a == go_arch()))
}
