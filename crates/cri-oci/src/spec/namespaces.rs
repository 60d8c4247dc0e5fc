//! Linux namespaces of sandboxes and containers, user-namespace mappings, and sysctls (which
//! are only valid for namespaces the pod owns).

use std::collections::HashMap;
use std::path::PathBuf;

use cri_api::v1::{IdMapping, NamespaceMode, NamespaceOption};
use oci_spec::runtime::{
    LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType,
};

use crate::{Error, Result};

/// The namespace modes of a request, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Modes {
    pub(crate) network: NamespaceMode,
    pub(crate) pid: NamespaceMode,
    pub(crate) ipc: NamespaceMode,
    /// `Some(Pod)` when the pod has its own user namespace; `None` (or `Node`) for the host's.
    pub(crate) user: Option<NamespaceMode>,
}

fn mode(value: i32, field: &str) -> Result<NamespaceMode> {
    NamespaceMode::try_from(value)
        .map_err(|_| Error::invalid(field, format!("unknown namespace mode {value}")))
}

impl Modes {
    pub(crate) fn decode(options: Option<&NamespaceOption>, prefix: &str) -> Result<Self> {
        let Some(options) = options else {
            return Ok(Self {
                network: NamespaceMode::Pod,
                pid: NamespaceMode::Pod,
                ipc: NamespaceMode::Pod,
                user: None,
            });
        };
        let user = match &options.userns_options {
            Some(userns) => Some(mode(userns.mode, &format!("{prefix}.userns_options.mode"))?),
            None => None,
        };
        Ok(Self {
            network: mode(options.network, &format!("{prefix}.network"))?,
            pid: mode(options.pid, &format!("{prefix}.pid"))?,
            ipc: mode(options.ipc, &format!("{prefix}.ipc"))?,
            user,
        })
    }

    pub(crate) fn host_network(&self) -> bool {
        self.network == NamespaceMode::Node
    }

    pub(crate) fn host_ipc(&self) -> bool {
        self.ipc == NamespaceMode::Node
    }

    pub(crate) fn pod_userns(&self) -> bool {
        self.user == Some(NamespaceMode::Pod)
    }

    /// Rejects modes that have no meaning for the network, IPC and user namespaces.
    fn check_common(&self, prefix: &str) -> Result<()> {
        match self.network {
            NamespaceMode::Pod | NamespaceMode::Node => {}
            other => {
                return Err(Error::invalid(
                    format!("{prefix}.network"),
                    format!(
                        "mode {} is not valid for the network namespace (POD or NODE)",
                        other.as_str_name()
                    ),
                ));
            }
        }
        if self.ipc == NamespaceMode::Target {
            return Err(Error::invalid(
                format!("{prefix}.ipc"),
                "mode TARGET is only valid for the PID namespace",
            ));
        }
        match self.user {
            None | Some(NamespaceMode::Node) | Some(NamespaceMode::Pod) => {}
            Some(other) => {
                return Err(Error::invalid(
                    format!("{prefix}.userns_options.mode"),
                    format!(
                        "mode {} is not valid for the user namespace (POD or NODE)",
                        other.as_str_name()
                    ),
                ));
            }
        }
        if self.pod_userns() {
            for (name, host) in [
                ("network", self.host_network()),
                ("pid", self.pid == NamespaceMode::Node),
                ("ipc", self.host_ipc()),
            ] {
                if host {
                    return Err(Error::invalid(
                        format!("{prefix}.{name}"),
                        "a pod with its own user namespace cannot share the host's namespaces",
                    ));
                }
            }
        }
        Ok(())
    }
}

fn ns(typ: LinuxNamespaceType, path: Option<PathBuf>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns.set_path(path);
    ns
}

/// Namespaces of a pod's infra process: a new one of each kind unless the pod shares the
/// host's. A private cgroup namespace is added unless `privileged`.
pub(crate) fn sandbox_namespaces(modes: &Modes, privileged: bool) -> Result<Vec<LinuxNamespace>> {
    const PREFIX: &str = "linux.security_context.namespace_options";
    modes.check_common(PREFIX)?;
    if modes.pid == NamespaceMode::Target {
        return Err(Error::invalid(
            format!("{PREFIX}.pid"),
            "mode TARGET is only valid for containers",
        ));
    }
    let mut out = vec![ns(LinuxNamespaceType::Mount, None)];
    if !modes.host_network() {
        out.push(ns(LinuxNamespaceType::Network, None));
        out.push(ns(LinuxNamespaceType::Uts, None));
    }
    if !modes.host_ipc() {
        out.push(ns(LinuxNamespaceType::Ipc, None));
    }
    if modes.pid != NamespaceMode::Node {
        out.push(ns(LinuxNamespaceType::Pid, None));
    }
    if modes.pod_userns() {
        out.push(ns(LinuxNamespaceType::User, None));
    }
    if !privileged {
        out.push(ns(LinuxNamespaceType::Cgroup, None));
    }
    Ok(out)
}

/// Namespaces of a container: the pod's are joined through `/proc/<sandbox_pid>/ns/*`.
pub(crate) fn container_namespaces(
    modes: &Modes,
    sandbox_pid: Option<u32>,
    target_pid: Option<u32>,
    privileged: bool,
) -> Result<Vec<LinuxNamespace>> {
    const PREFIX: &str = "linux.security_context.namespace_options";
    modes.check_common(PREFIX)?;
    let pod = |name: &str, field: &str| -> Result<Option<PathBuf>> {
        match sandbox_pid {
            Some(pid) => Ok(Some(PathBuf::from(format!("/proc/{pid}/ns/{name}")))),
            None => Err(Error::invalid(
                format!("{PREFIX}.{field}"),
                "joining the pod's namespace needs the sandbox's process ID (sandbox_pid)",
            )),
        }
    };
    let mut out = vec![ns(LinuxNamespaceType::Mount, None)];
    if !modes.host_network() {
        out.push(ns(LinuxNamespaceType::Network, pod("net", "network")?));
        out.push(ns(LinuxNamespaceType::Uts, pod("uts", "network")?));
    }
    match modes.ipc {
        NamespaceMode::Pod => out.push(ns(LinuxNamespaceType::Ipc, pod("ipc", "ipc")?)),
        NamespaceMode::Container => out.push(ns(LinuxNamespaceType::Ipc, None)),
        _ => {}
    }
    match modes.pid {
        NamespaceMode::Pod => out.push(ns(LinuxNamespaceType::Pid, pod("pid", "pid")?)),
        NamespaceMode::Container => out.push(ns(LinuxNamespaceType::Pid, None)),
        NamespaceMode::Node => {}
        NamespaceMode::Target => match target_pid {
            Some(pid) => out.push(ns(
                LinuxNamespaceType::Pid,
                Some(PathBuf::from(format!("/proc/{pid}/ns/pid"))),
            )),
            None => {
                return Err(Error::invalid(
                    format!("{PREFIX}.target_id"),
                    "PID mode TARGET needs the target container's process ID (target_pid)",
                ));
            }
        },
    }
    if modes.pod_userns() {
        out.push(ns(LinuxNamespaceType::User, pod("user", "userns_options")?));
    }
    if !privileged {
        out.push(ns(LinuxNamespaceType::Cgroup, None));
    }
    Ok(out)
}

/// The UID and GID mappings of a pod user namespace (mode POD), validated: exactly one
/// non-empty range each, not wrapping around the 32-bit ID space.
pub(crate) fn user_mappings(
    options: Option<&NamespaceOption>,
    prefix: &str,
) -> Result<Option<(Vec<LinuxIdMapping>, Vec<LinuxIdMapping>)>> {
    let Some(userns) = options.and_then(|o| o.userns_options.as_ref()) else {
        return Ok(None);
    };
    if userns.mode != NamespaceMode::Pod as i32 {
        if !userns.uids.is_empty() || !userns.gids.is_empty() {
            return Err(Error::invalid(
                format!("{prefix}.userns_options"),
                "ID mappings are only valid with mode POD",
            ));
        }
        return Ok(None);
    }
    let uids = one_mapping(&userns.uids, &format!("{prefix}.userns_options.uids"))?;
    let gids = one_mapping(&userns.gids, &format!("{prefix}.userns_options.gids"))?;
    Ok(Some((vec![uids], vec![gids])))
}

fn one_mapping(mappings: &[IdMapping], field: &str) -> Result<LinuxIdMapping> {
    let [mapping] = mappings else {
        return Err(Error::invalid(
            field,
            format!("exactly one mapping is supported, got {}", mappings.len()),
        ));
    };
    id_mapping(mapping, field)
}

/// One CRI ID mapping as an OCI one, checked for an empty or wrapping range.
pub(crate) fn id_mapping(mapping: &IdMapping, field: &str) -> Result<LinuxIdMapping> {
    if mapping.length == 0 {
        return Err(Error::invalid(
            field,
            "a mapping's length must be greater than 0",
        ));
    }
    if mapping.host_id.checked_add(mapping.length - 1).is_none()
        || mapping
            .container_id
            .checked_add(mapping.length - 1)
            .is_none()
    {
        return Err(Error::invalid(
            field,
            "the mapping runs past the largest 32-bit ID",
        ));
    }
    LinuxIdMappingBuilder::default()
        .host_id(mapping.host_id)
        .container_id(mapping.container_id)
        .size(mapping.length)
        .build()
        .map_err(|e| Error::invalid(field, e.to_string()))
}

/// Checks several mappings (of one mount) for overlapping container or host ranges.
pub(crate) fn check_no_overlap(mappings: &[LinuxIdMapping], field: &str) -> Result<()> {
    for (i, a) in mappings.iter().enumerate() {
        for b in &mappings[i + 1..] {
            let overlaps = |x: u32, y: u32| {
                let (xs, xe) = (u64::from(x), u64::from(x) + u64::from(a.size()));
                let (ys, ye) = (u64::from(y), u64::from(y) + u64::from(b.size()));
                xs < ye && ys < xe
            };
            if overlaps(a.container_id(), b.container_id()) || overlaps(a.host_id(), b.host_id()) {
                return Err(Error::invalid(field, "ID mappings overlap"));
            }
        }
    }
    Ok(())
}

/// IPC-namespace sysctls (besides the `fs.mqueue.` prefix).
const IPC_SYSCTLS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Validates the pod's sysctls: only namespaced ones, and only for namespaces the pod owns.
pub(crate) fn sysctls(
    sysctls: &HashMap<String, String>,
    modes: &Modes,
) -> Result<HashMap<String, String>> {
    let mut names: Vec<&String> = sysctls.keys().collect();
    names.sort();
    for name in names {
        let field = format!("linux.sysctls[{name:?}]");
        if name.contains('/') {
            return Err(Error::invalid(
                field,
                "use dots, not slashes, to separate sysctl name parts",
            ));
        }
        if IPC_SYSCTLS.contains(&name.as_str()) || name.starts_with("fs.mqueue.") {
            if modes.host_ipc() {
                return Err(Error::invalid(
                    field,
                    "an IPC sysctl cannot be set in a pod that uses the host's IPC namespace",
                ));
            }
        } else if name.starts_with("net.") {
            if modes.host_network() {
                return Err(Error::invalid(
                    field,
                    "a net.* sysctl cannot be set in a pod that uses the host's network",
                ));
            }
        } else if name == "kernel.hostname" || name == "kernel.domainname" {
            if modes.host_network() {
                return Err(Error::invalid(
                    field,
                    "a UTS sysctl cannot be set in a pod that uses the host's network",
                ));
            }
        } else {
            return Err(Error::invalid(
                field,
                "not a namespaced sysctl; it would change the whole node",
            ));
        }
    }
    Ok(sysctls.clone())
}
