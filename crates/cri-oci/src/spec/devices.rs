//! Devices: CRI host devices, every host device for privileged containers, and CDI devices.
//!
//! CDI (Container Device Interface) specs are JSON or YAML files (`.json`, `.yaml`, `.yml`)
//! in [`Host::cdi_spec_dirs`]; a device `vendor.com/class=name` is looked up by its spec's
//! `kind` and the device's `name`, and the spec's and device's `containerEdits` (environment,
//! device nodes, mounts, hooks, additional GIDs) are applied. Later directories override
//! earlier ones. A spec file that does not parse is named in the error of a device that is
//! not found elsewhere.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use cri_api::v1::{ContainerConfig, Device};
use oci_spec::runtime::{Hook, Hooks, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, Mount};
use serde::Deserialize;

use super::Host;
use crate::{Error, Result};

/// The annotation prefix through which the kubelet (device plugins) can also ask for CDI
/// devices: `cdi.k8s.io/<anything>` = comma-separated fully qualified device names.
pub const CDI_ANNOTATION_PREFIX: &str = "cdi.k8s.io/";

/// Everything the devices of a container add to its spec.
#[derive(Default, Debug)]
pub(crate) struct DeviceEdits {
    pub(crate) devices: Vec<LinuxDevice>,
    pub(crate) rules: Vec<LinuxDeviceCgroup>,
    pub(crate) env: Vec<String>,
    pub(crate) mounts: Vec<Mount>,
    pub(crate) hooks: Hooks,
    pub(crate) additional_gids: Vec<u32>,
}

impl DeviceEdits {
    fn add_device(&mut self, device: LinuxDevice, access: &str) {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(device.typ()));
        rule.set_major(Some(device.major()));
        rule.set_minor(Some(device.minor()));
        rule.set_access(Some(access.to_string()));
        self.devices.retain(|d| d.path() != device.path());
        self.devices.push(device);
        self.rules.push(rule);
    }
}

/// The device cgroup rule that denies everything; explicit allows follow it.
pub(crate) fn deny_all() -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(false);
    rule.set_access(Some("rwm".to_string()));
    rule
}

fn allow_all() -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(true);
    rule.set_access(Some("rwm".to_string()));
    rule
}

/// All device edits of a container: privileged host devices, CRI devices, CDI devices.
pub(crate) fn container_devices(
    host: &Host,
    config: &ContainerConfig,
    privileged: bool,
) -> Result<DeviceEdits> {
    let mut edits = DeviceEdits::default();
    edits.rules.push(deny_all());
    if privileged {
        edits.devices = host_devices(&host.device_root)?;
        edits.rules = vec![allow_all()];
    }
    for (i, device) in config.devices.iter().enumerate() {
        add_cri_device(&mut edits, device, &format!("devices[{i}]"))?;
    }
    let requests = cdi_requests(config)?;
    if !requests.is_empty() {
        apply_cdi(host, &requests, &mut edits)?;
    }
    if privileged {
        // Every device is allowed already; the per-device rules are noise.
        edits.rules = vec![allow_all()];
    }
    Ok(edits)
}

/// Validates a device cgroup access string: a non-repeating subset of `rwm`; empty is `rwm`.
fn access(permissions: &str, field: &str) -> Result<String> {
    if permissions.is_empty() {
        return Ok("rwm".to_string());
    }
    let mut seen = String::new();
    for c in permissions.chars() {
        if !matches!(c, 'r' | 'w' | 'm') || seen.contains(c) {
            return Err(Error::invalid(
                field,
                format!("{permissions:?} is not a combination of r, w and m"),
            ));
        }
        seen.push(c);
    }
    Ok(seen)
}

fn add_cri_device(edits: &mut DeviceEdits, device: &Device, field: &str) -> Result<()> {
    let access = access(&device.permissions, &format!("{field}.permissions"))?;
    if !device.container_path.starts_with('/') {
        return Err(Error::invalid(
            format!("{field}.container_path"),
            format!("{:?} is not an absolute path", device.container_path),
        ));
    }
    let host_path = Path::new(&device.host_path);
    let meta = std::fs::metadata(host_path).map_err(|e| {
        Error::invalid(
            format!("{field}.host_path"),
            format!("cannot stat {}: {e}", device.host_path),
        )
    })?;
    if meta.is_dir() {
        // A directory of devices (e.g. /dev/snd): every device below it, at the same place
        // below container_path.
        let found =
            walk_devices(host_path, Path::new(&device.container_path), &[]).map_err(|e| {
                Error::invalid(
                    format!("{field}.host_path"),
                    format!("cannot read {}: {e}", device.host_path),
                )
            })?;
        for device in found {
            edits.add_device(device, &access);
        }
        return Ok(());
    }
    let device =
        device_from_metadata(&meta, Path::new(&device.container_path)).ok_or_else(|| {
            Error::invalid(
                format!("{field}.host_path"),
                format!("{} is not a device", device.host_path),
            )
        })?;
    edits.add_device(device, &access);
    Ok(())
}

/// A device node description from `stat` data, or `None` for anything but a device or FIFO.
fn device_from_metadata(meta: &std::fs::Metadata, container_path: &Path) -> Option<LinuxDevice> {
    let file_type = meta.file_type();
    let typ = if file_type.is_char_device() {
        LinuxDeviceType::C
    } else if file_type.is_block_device() {
        LinuxDeviceType::B
    } else if file_type.is_fifo() {
        LinuxDeviceType::P
    } else {
        return None;
    };
    let rdev = meta.rdev();
    let mut device = LinuxDevice::default();
    device.set_path(container_path.to_path_buf());
    device.set_typ(typ);
    device.set_major(i64::from(rustix::fs::major(rdev)));
    device.set_minor(i64::from(rustix::fs::minor(rdev)));
    device.set_file_mode(Some(meta.mode() & 0o777));
    device.set_uid(Some(meta.uid()));
    device.set_gid(Some(meta.gid()));
    Some(device)
}

/// Directories of `/dev` that hold no device a container should get.
const SKIPPED_DIRS: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// Every device node below `device_root`, as `/dev/<relative path>`, for privileged
/// containers. The console is left out (the OCI runtime provides its own), and so are
/// symbolic links and the pseudo-filesystem directories.
pub(crate) fn host_devices(device_root: &Path) -> Result<Vec<LinuxDevice>> {
    let mut devices = walk_devices(device_root, Path::new("/dev"), &SKIPPED_DIRS)
        .map_err(|e| Error::io(format!("listing devices in {}", device_root.display()), e))?;
    devices.retain(|d| d.path() != Path::new("/dev/console"));
    Ok(devices)
}

fn walk_devices(
    dir: &Path,
    container_dir: &Path,
    skip: &[&str],
) -> std::io::Result<Vec<LinuxDevice>> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        // Devices come and go; an entry that vanished or cannot be read is skipped.
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        let name = entry.file_name();
        let container_path = container_dir.join(&name);
        if meta.is_dir() {
            if skip.iter().any(|s| name == *s) {
                continue;
            }
            if let Ok(found) = walk_devices(&entry.path(), &container_path, &[]) {
                out.extend(found);
            }
        } else if let Some(device) = device_from_metadata(&meta, &container_path) {
            out.push(device);
        }
    }
    Ok(out)
}

/// The CDI devices a container asks for, with the field that asked, deduplicated.
fn cdi_requests(config: &ContainerConfig) -> Result<Vec<(String, String)>> {
    let mut requests: Vec<(String, String)> = Vec::new();
    let mut push = |name: &str, field: String| {
        if !requests.iter().any(|(n, _)| n == name) {
            requests.push((name.to_string(), field));
        }
    };
    for (i, device) in config.cdi_devices.iter().enumerate() {
        push(&device.name, format!("cdi_devices[{i}].name"));
    }
    let mut keys: Vec<&String> = config
        .annotations
        .keys()
        .filter(|k| k.starts_with(CDI_ANNOTATION_PREFIX))
        .collect();
    keys.sort();
    for key in keys {
        for name in config.annotations[key]
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            push(name, format!("annotations[{key:?}]"));
        }
    }
    for (name, field) in &requests {
        parse_cdi_name(name).map_err(|reason| Error::invalid(field.as_str(), reason))?;
    }
    Ok(requests)
}

/// Splits `vendor.com/class=name` into kind and name.
fn parse_cdi_name(name: &str) -> std::result::Result<(&str, &str), String> {
    let bad = || format!("{name:?} is not a CDI device name (vendor.com/class=name)");
    let (kind, device) = name.split_once('=').ok_or_else(bad)?;
    let (vendor, class) = kind.split_once('/').ok_or_else(bad)?;
    if vendor.is_empty() || class.is_empty() || class.contains('/') || device.is_empty() {
        return Err(bad());
    }
    Ok((kind, device))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CdiSpec {
    #[allow(dead_code)]
    cdi_version: String,
    kind: String,
    #[serde(default)]
    devices: Vec<CdiSpecDevice>,
    #[serde(default)]
    container_edits: ContainerEdits,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CdiSpecDevice {
    name: String,
    #[serde(default)]
    container_edits: ContainerEdits,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct ContainerEdits {
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    device_nodes: Vec<CdiDeviceNode>,
    #[serde(default)]
    mounts: Vec<CdiMount>,
    #[serde(default)]
    hooks: Vec<CdiHook>,
    #[serde(default)]
    additional_gids: Vec<u32>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct CdiDeviceNode {
    path: String,
    host_path: Option<String>,
    #[serde(rename = "type")]
    typ: Option<String>,
    major: Option<i64>,
    minor: Option<i64>,
    file_mode: Option<u32>,
    permissions: Option<String>,
    uid: Option<u32>,
    gid: Option<u32>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct CdiMount {
    host_path: String,
    container_path: String,
    #[serde(rename = "type")]
    typ: Option<String>,
    #[serde(default)]
    options: Vec<String>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct CdiHook {
    hook_name: String,
    path: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    timeout: Option<i64>,
}

/// The specs found, plus the files that could not be used (for error messages).
#[derive(Default)]
struct Registry {
    /// Qualified device name to (spec file, spec edits, device edits).
    devices: HashMap<String, (PathBuf, ContainerEdits, ContainerEdits)>,
    broken: Vec<String>,
}

/// Parses a CDI spec file by its extension; `None` for files that are not specs.
fn parse_spec(path: &Path) -> Option<std::result::Result<CdiSpec, String>> {
    let yaml = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => false,
        Some("yaml" | "yml") => true,
        _ => return None,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return Some(Err(e.to_string())),
    };
    Some(if yaml {
        serde_norway::from_str::<CdiSpec>(&text).map_err(|e| e.to_string())
    } else {
        serde_json::from_str::<CdiSpec>(&text).map_err(|e| e.to_string())
    })
}

fn load_registry(dirs: &[PathBuf]) -> Registry {
    let mut registry = Registry::default();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            match parse_spec(&path) {
                None => {}
                Some(Ok(spec)) => {
                    for device in spec.devices {
                        registry.devices.insert(
                            format!("{}={}", spec.kind, device.name),
                            (
                                path.clone(),
                                spec.container_edits.clone(),
                                device.container_edits,
                            ),
                        );
                    }
                }
                Some(Err(e)) => registry.broken.push(format!("{}: {e}", path.display())),
            }
        }
    }
    registry
}

fn apply_cdi(host: &Host, requests: &[(String, String)], edits: &mut DeviceEdits) -> Result<()> {
    let registry = load_registry(&host.cdi_spec_dirs);
    let mut specs_applied: Vec<PathBuf> = Vec::new();
    for (name, field) in requests {
        let Some((file, spec_edits, device_edits)) = registry.devices.get(name) else {
            let mut reason = format!("unknown CDI device {name:?}");
            if !registry.broken.is_empty() {
                reason.push_str(&format!(
                    " (unreadable specs: {})",
                    registry.broken.join("; ")
                ));
            }
            return Err(Error::invalid(field.as_str(), reason));
        };
        let context = format!("{field}: CDI spec {}", file.display());
        if !specs_applied.contains(file) {
            apply_edits(spec_edits, edits, &context)?;
            specs_applied.push(file.clone());
        }
        apply_edits(device_edits, edits, &context)?;
    }
    Ok(())
}

fn apply_edits(cdi: &ContainerEdits, edits: &mut DeviceEdits, context: &str) -> Result<()> {
    let bad = |what: String| Error::invalid(context, what);
    edits.env.extend(cdi.env.iter().cloned());
    for node in &cdi.device_nodes {
        let device = cdi_device(node).map_err(bad)?;
        let access = access(node.permissions.as_deref().unwrap_or(""), context)?;
        edits.add_device(device, &access);
    }
    for m in &cdi.mounts {
        if !m.container_path.starts_with('/') {
            return Err(bad(format!(
                "mount container path {:?} is not absolute",
                m.container_path
            )));
        }
        let mut mount = Mount::default();
        mount.set_destination(PathBuf::from(&m.container_path));
        mount.set_source(Some(PathBuf::from(&m.host_path)));
        mount.set_typ(Some(m.typ.clone().unwrap_or_else(|| "bind".to_string())));
        mount.set_options(Some(m.options.clone()));
        edits.mounts.push(mount);
    }
    for h in &cdi.hooks {
        let mut hook = Hook::default();
        hook.set_path(PathBuf::from(&h.path));
        hook.set_args((!h.args.is_empty()).then(|| h.args.clone()));
        hook.set_env((!h.env.is_empty()).then(|| h.env.clone()));
        hook.set_timeout(h.timeout);
        let hooks = &mut edits.hooks;
        let list = match h.hook_name.as_str() {
            "prestart" => hooks.prestart_mut(),
            "createRuntime" => hooks.create_runtime_mut(),
            "createContainer" => hooks.create_container_mut(),
            "startContainer" => hooks.start_container_mut(),
            "poststart" => hooks.poststart_mut(),
            "poststop" => hooks.poststop_mut(),
            other => return Err(bad(format!("unknown hook name {other:?}"))),
        };
        list.get_or_insert_with(Vec::new).push(hook);
    }
    for gid in &cdi.additional_gids {
        if !edits.additional_gids.contains(gid) {
            edits.additional_gids.push(*gid);
        }
    }
    Ok(())
}

/// A CDI device node: what the spec says, completed from the host node when it leaves out
/// the type or numbers.
fn cdi_device(node: &CdiDeviceNode) -> std::result::Result<LinuxDevice, String> {
    if !node.path.starts_with('/') {
        return Err(format!("device node path {:?} is not absolute", node.path));
    }
    let host_path = node.host_path.as_deref().unwrap_or(&node.path);
    let container_path = Path::new(&node.path);
    let mut device = match (node.major, node.minor) {
        (Some(major), Some(minor)) => {
            let mut device = LinuxDevice::default();
            device.set_path(container_path.to_path_buf());
            device.set_typ(LinuxDeviceType::C);
            device.set_major(major);
            device.set_minor(minor);
            device
        }
        _ => {
            let meta = std::fs::metadata(host_path)
                .map_err(|e| format!("cannot stat device {host_path}: {e}"))?;
            device_from_metadata(&meta, container_path)
                .ok_or_else(|| format!("{host_path} is not a device"))?
        }
    };
    if let Some(typ) = &node.typ {
        device.set_typ(match typ.as_str() {
            "c" | "u" => LinuxDeviceType::C,
            "b" => LinuxDeviceType::B,
            "p" => LinuxDeviceType::P,
            other => return Err(format!("unknown device type {other:?}")),
        });
    }
    if let Some(mode) = node.file_mode {
        device.set_file_mode(Some(mode));
    }
    if let Some(uid) = node.uid {
        device.set_uid(Some(uid));
    }
    if let Some(gid) = node.gid {
        device.set_gid(Some(gid));
    }
    Ok(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_strings() {
        assert_eq!(access("", "f").unwrap(), "rwm");
        assert_eq!(access("mrw", "f").unwrap(), "mrw");
        assert!(access("rr", "f").is_err());
        assert!(access("rx", "f").is_err());
    }

    #[test]
    fn cdi_names() {
        assert_eq!(
            parse_cdi_name("nvidia.com/gpu=0").unwrap(),
            ("nvidia.com/gpu", "0")
        );
        assert!(parse_cdi_name("nvidia.com/gpu").is_err());
        assert!(parse_cdi_name("gpu=0").is_err());
        assert!(parse_cdi_name("a/b/c=0").is_err());
        assert!(parse_cdi_name("a/b=").is_err());
    }
}
