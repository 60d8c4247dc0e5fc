//! cgroup resources, the OOM score and the cgroup path.

use cri_api::v1::{HugepageLimit, LinuxContainerResources, PodSandboxConfig};
use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};

use super::Host;
use crate::{Error, Result};

/// The OOM score adjustment of a pod's infra process: it is tiny and must outlive the pod's
/// containers, so it is nearly the last thing the OOM killer picks.
pub const SANDBOX_OOM_SCORE_ADJ: i64 = -998;

/// The CPU shares of a pod's infra process (the minimum: it only sleeps).
pub const SANDBOX_CPU_SHARES: u64 = 2;

/// `oom_score_adj` checked against the kernel's range and clamped by
/// [`Host::restrict_oom_score_adj`].
pub(crate) fn oom_score_adj(host: &Host, value: i64, field: &str) -> Result<i32> {
    if !(-1000..=1000).contains(&value) {
        return Err(Error::invalid(
            field,
            format!("{value} is outside -1000..=1000"),
        ));
    }
    let value = if host.restrict_oom_score_adj {
        value.max(host.min_oom_score_adj.clamp(-1000, 1000))
    } else {
        value
    };
    // In range -1000..=1000 by now.
    Ok(value as i32)
}

fn positive(value: i64, field: &str) -> Result<Option<i64>> {
    match value {
        0 => Ok(None),
        v if v > 0 => Ok(Some(v)),
        v => Err(Error::invalid(field, format!("{v} must not be negative"))),
    }
}

/// The hugepage limits a runtime can pass to its OCI runtime, from the request's
/// (`prefix` is the field path of the resources, e.g. `linux.resources`).
///
/// The kubelet sends one limit for every huge page size the node has, zero for the sizes a
/// pod does not request. Where the hugetlb controller is missing
/// ([`Host::hugetlb_supported`] false), those zero limits are dropped, since the OCI runtime
/// could not write them and nothing needs enforcing; a non-zero limit is refused because it
/// could not be enforced.
///
/// ```
/// use cri_api::v1::HugepageLimit;
/// use cri_oci::spec::{Host, hugepage_limits};
///
/// let kubelet = [
///     HugepageLimit { page_size: "2MB".into(), limit: 0 },
///     HugepageLimit { page_size: "1GB".into(), limit: 0 },
/// ];
/// let mut host = Host::default();
/// assert_eq!(hugepage_limits(&host, &kubelet, "linux.resources").unwrap().len(), 2);
/// host.hugetlb_supported = false;
/// assert!(hugepage_limits(&host, &kubelet, "linux.resources").unwrap().is_empty());
/// let asked = [HugepageLimit { page_size: "2MB".into(), limit: 4 << 20 }];
/// assert!(hugepage_limits(&host, &asked, "linux.resources").is_err());
/// ```
///
/// # Errors
///
/// [`Error::InvalidArgument`] for a malformed page size or a limit over 63 bits;
/// [`Error::Unsupported`] for a non-zero limit without the hugetlb controller.
pub fn hugepage_limits(
    host: &Host,
    limits: &[HugepageLimit],
    prefix: &str,
) -> Result<Vec<LinuxHugepageLimit>> {
    let mut out = Vec::with_capacity(limits.len());
    for (i, h) in limits.iter().enumerate() {
        let field = format!("{prefix}.hugepage_limits[{i}]");
        check_page_size(&h.page_size, &format!("{field}.page_size"))?;
        let limit = i64::try_from(h.limit).map_err(|_| {
            Error::invalid(
                format!("{field}.limit"),
                "the limit does not fit in 63 bits",
            )
        })?;
        if !host.hugetlb_supported {
            if limit == 0 {
                continue;
            }
            return Err(Error::Unsupported(format!(
                "{field}: a limit of {limit} bytes of {} pages cannot be enforced: the hugetlb cgroup controller is not available on this host",
                h.page_size
            )));
        }
        let mut limit_out = LinuxHugepageLimit::default();
        limit_out.set_page_size(h.page_size.clone());
        limit_out.set_limit(limit);
        out.push(limit_out);
    }
    Ok(out)
}

/// The container's cgroup settings (without devices, which [`super::devices`] adds).
pub(crate) fn container_resources(
    host: &Host,
    resources: Option<&LinuxContainerResources>,
    prefix: &str,
) -> Result<LinuxResources> {
    let mut out = LinuxResources::default();
    let Some(r) = resources else {
        return Ok(out);
    };
    let field = |name: &str| format!("{prefix}.{name}");

    let mut cpu = LinuxCpu::default();
    let mut cpu_set = false;
    if let Some(shares) = positive(r.cpu_shares, &field("cpu_shares"))? {
        cpu.set_shares(Some(shares as u64));
        cpu_set = true;
    }
    if let Some(quota) = positive(r.cpu_quota, &field("cpu_quota"))? {
        cpu.set_quota(Some(quota));
        cpu_set = true;
    }
    if let Some(period) = positive(r.cpu_period, &field("cpu_period"))? {
        cpu.set_period(Some(period as u64));
        cpu_set = true;
    }
    if !r.cpuset_cpus.is_empty() {
        check_cpuset(&r.cpuset_cpus, &field("cpuset_cpus"))?;
        cpu.set_cpus(Some(r.cpuset_cpus.clone()));
        cpu_set = true;
    }
    if !r.cpuset_mems.is_empty() {
        check_cpuset(&r.cpuset_mems, &field("cpuset_mems"))?;
        cpu.set_mems(Some(r.cpuset_mems.clone()));
        cpu_set = true;
    }
    if cpu_set {
        out.set_cpu(Some(cpu));
    }

    let limit = positive(r.memory_limit_in_bytes, &field("memory_limit_in_bytes"))?;
    // -1 is the kernel's "unlimited" and is passed on; other negative values are errors.
    let swap = match r.memory_swap_limit_in_bytes {
        -1 => Some(-1),
        v => positive(v, &field("memory_swap_limit_in_bytes"))?,
    };
    if let (Some(limit), Some(swap)) = (limit, swap)
        && swap != -1
        && swap < limit
    {
        return Err(Error::invalid(
            field("memory_swap_limit_in_bytes"),
            format!("{swap} is below the memory limit {limit} (it counts memory plus swap)"),
        ));
    }
    if limit.is_some() || swap.is_some() {
        let mut memory = LinuxMemory::default();
        memory.set_limit(limit);
        memory.set_swap(swap);
        out.set_memory(Some(memory));
    }

    let hugepages = hugepage_limits(host, &r.hugepage_limits, prefix)?;
    if !hugepages.is_empty() {
        out.set_hugepage_limits(Some(hugepages));
    }

    if !r.unified.is_empty() {
        let mut keys: Vec<&String> = r.unified.keys().collect();
        keys.sort();
        for key in keys {
            let (controller, file) = key.split_once('.').unwrap_or(("", ""));
            if controller.is_empty() || file.is_empty() || key.contains('/') {
                return Err(Error::invalid(
                    field(&format!("unified[{key:?}]")),
                    "not a cgroup v2 interface file name (controller.file)",
                ));
            }
        }
        out.set_unified(Some(r.unified.clone()));
    }
    Ok(out)
}

/// Checks cpuset list syntax: `0-3,8,10-11`.
fn check_cpuset(list: &str, field: &str) -> Result<()> {
    let bad = || {
        Error::invalid(
            field,
            format!("{list:?} is not a cpuset list such as \"0-3,8\""),
        )
    };
    for part in list.split(',') {
        let (start, end) = part.split_once('-').unwrap_or((part, part));
        let number = |s: &str| -> Result<u32> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse().map_err(|_| bad())
        };
        if number(start)? > number(end)? {
            return Err(bad());
        }
    }
    Ok(())
}

/// Checks a hugetlb page size: a power of two followed by `KB`, `MB`, `GB`, `TB` or `PB`.
fn check_page_size(size: &str, field: &str) -> Result<()> {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    let ok = matches!(unit, "KB" | "MB" | "GB" | "TB" | "PB")
        && digits.parse::<u64>().is_ok_and(|n| n.is_power_of_two())
        && !digits.starts_with('0');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{size:?} is not a huge page size such as \"2MB\" or \"1GB\""),
        ))
    }
}

/// The cgroup path of a sandbox or container `id`: under the sandbox's `cgroup_parent`, or
/// [`Host::cgroup_parent`] when it names none.
///
/// A parent in systemd's form (`kubepods-burstable-pod<uid>.slice`) gives
/// `<slice>:cri-rs:<id>`, the form runc's systemd driver takes. Otherwise the path is
/// `<parent>/<id>` for the cgroupfs driver, so a pod's sandbox and containers are siblings
/// under the pod's cgroup.
pub fn cgroups_path(host: &Host, sandbox: &PodSandboxConfig, id: &str) -> String {
    let parent = sandbox
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.as_str())
        .filter(|p| !p.is_empty())
        .unwrap_or(&host.cgroup_parent);
    if parent.ends_with(".slice") && !parent.contains('/') {
        return format!("{parent}:cri-rs:{id}");
    }
    let parent = parent.trim_end_matches('/');
    if parent.starts_with('/') {
        format!("{parent}/{id}")
    } else {
        format!("/{parent}/{id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpusets() {
        for ok in ["0", "0-3", "0-3,8", "1,2,3", "10-11"] {
            check_cpuset(ok, "f").unwrap();
        }
        for bad in ["", "a", "3-1", "0-", ",", "0 - 3", "-1"] {
            assert!(check_cpuset(bad, "f").is_err(), "{bad}");
        }
    }

    #[test]
    fn page_sizes() {
        for ok in ["2MB", "1GB", "64KB", "32MB", "16GB"] {
            check_page_size(ok, "f").unwrap();
        }
        for bad in ["2M", "3MB", "MB", "0MB", "2mb", "1.5GB", "02MB"] {
            assert!(check_page_size(bad, "f").is_err(), "{bad}");
        }
    }
}
