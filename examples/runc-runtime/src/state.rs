//! What the runtime persists under `--root`, so that a restarted runtime finds its pods and
//! containers again:
//!
//! ```text
//! <root>/pods/<pod id>/pod.json                 PodRecord (+ the pause container's bundle,
//!                                               monitor files, exit.json and the pinned
//!                                               network namespace `netns` under CNI)
//! <root>/containers/<container id>/container.json  ContainerRecord (+ bundle, rootfs,
//!                                               monitor files and exit.json)
//! ```
//!
//! CRI configs are stored in their proto3 JSON form (cri-api's `serde` feature). A record is
//! written atomically once the object exists in runc; a directory without its record is a
//! creation that never finished, and is cleaned up at start. A pod's creation first writes
//! `<pod dir>/intent.json` ([`PodIntent`]: the cgroups and the CNI network it is about to
//! create), so that cleaning up an unfinished one, after a failure or a crash, undoes them.

use std::io;
use std::path::{Path, PathBuf};

use cri_api::v1::{ContainerConfig, LinuxContainerResources, PodSandboxConfig};
use serde::{Deserialize, Serialize};

use crate::cni::NetworkList;
use crate::monitor::protocol::write_json_atomic;

/// A pod's record file name.
pub(crate) const POD_FILE: &str = "pod.json";
/// A container's record file name.
pub(crate) const CONTAINER_FILE: &str = "container.json";

/// A pod sandbox as persisted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct PodRecord {
    /// The sandbox id (also the pause container's runc id).
    pub(crate) id: String,
    /// The config it was created with.
    pub(crate) config: PodSandboxConfig,
    /// The runtime handler asked for.
    #[serde(default)]
    pub(crate) runtime_handler: String,
    /// Creation time, nanoseconds since the epoch.
    pub(crate) created_at: i64,
    /// Cleared by StopPodSandbox.
    pub(crate) ready: bool,
    /// The pause container's init pid (its namespaces are the pod's).
    pub(crate) pause_pid: u32,
    /// The cgroup parent the pod's containers live under.
    pub(crate) cgroup_parent: String,
    /// The cgroups on the way to `cgroup_parent` that did not exist before the pod (runc
    /// created them), deepest first; they are removed with the pod.
    #[serde(default)]
    pub(crate) created_cgroups: Vec<String>,
    /// The pause image's id.
    #[serde(default)]
    pub(crate) pause_image: String,
    /// The pod's CNI attachment (pods with their own network, when CNI is configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) network: Option<PodNetwork>,
}

/// A pod's CNI attachment: what DEL needs, even from a restarted runtime whose config
/// directory changed since.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct PodNetwork {
    /// The pinned network namespace (`<pod dir>/netns`).
    pub(crate) netns: PathBuf,
    /// The network list ADD ran.
    pub(crate) config: NetworkList,
    /// ADD's result (DEL's `prevResult`).
    pub(crate) result: serde_json::Value,
    /// The pod's addresses from the result, first one first.
    pub(crate) ips: Vec<String>,
    /// Set once DEL succeeded (StopPodSandbox); the addresses are released.
    #[serde(default)]
    pub(crate) torn_down: bool,
}

/// A pod creation's side effects outside its directory, written before they happen.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct PodIntent {
    /// The pod's config (CNI DEL names the pod by it).
    pub(crate) config: PodSandboxConfig,
    /// The pause container's own cgroup (cgroupfs path), the pod's alone.
    #[serde(default)]
    pub(crate) cgroup_path: String,
    /// The cgroups on the way to it that the pod's creation makes (runc creates them),
    /// deepest first; shared ones are only removed once empty.
    pub(crate) created_cgroups: Vec<String>,
    /// The network list ADD runs on the pinned namespace, when the pod gets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) network: Option<NetworkList>,
}

/// A pod creation's intent file name.
pub(crate) const INTENT_FILE: &str = "intent.json";

/// A container as persisted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct ContainerRecord {
    /// The container id (also its runc id).
    pub(crate) id: String,
    /// Its pod.
    pub(crate) pod_id: String,
    /// The config it was created with.
    pub(crate) config: ContainerConfig,
    /// The image's id (`sha256:...`).
    pub(crate) image_id: String,
    /// What `image_ref` reports: a repo digest when the image has one, else the id.
    pub(crate) image_ref: String,
    /// Creation time, nanoseconds.
    pub(crate) created_at: i64,
    /// Start time, nanoseconds; 0 until StartContainer.
    #[serde(default)]
    pub(crate) started_at: i64,
    /// The log file (empty: none).
    #[serde(default)]
    pub(crate) log_path: String,
    /// The init pid.
    pub(crate) pid: u32,
    /// The cgroup (cgroupfs path) from the spec.
    #[serde(default)]
    pub(crate) cgroup_path: String,
    /// The resources in force (from the config, then UpdateContainerResources).
    #[serde(default)]
    pub(crate) resources: Option<LinuxContainerResources>,
}

/// Writes `record` as `<dir>/<file>` atomically.
pub(crate) fn save<T: Serialize>(dir: &Path, file: &str, record: &T) -> io::Result<()> {
    write_json_atomic(&dir.join(file), record)
}

/// Removes a pod's or a container's directory, its record `<dir>/<file>` first: a runtime
/// killed part-way then finds a directory without its record, which it discards at start
/// like an unfinished creation. Removing the tree in whatever order the file system lists
/// it could leave the record without the exit file beside it, and the object would come
/// back as running. A directory already gone is not an error.
pub(crate) fn remove_dir(dir: &Path, file: &str) -> io::Result<()> {
    for result in [
        std::fs::remove_file(dir.join(file)),
        std::fs::remove_dir_all(dir),
    ] {
        match result {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Every `<parent>/*/<file>` record: `(dir, Ok(record))`, or `(dir, Err(why))` for a directory
/// whose record is missing or unreadable.
pub(crate) fn load_all<T>(parent: &Path, file: &str) -> Vec<(PathBuf, Result<T, String>)>
where
    T: for<'de> Deserialize<'de>,
{
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<_> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| {
            let dir = e.path();
            let record = std::fs::read(dir.join(file))
                .map_err(|e| format!("{file}: {e}"))
                .and_then(|bytes| {
                    serde_json::from_slice(&bytes).map_err(|e| format!("{file}: {e}"))
                });
            (dir, record)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_api::v1::{ContainerMetadata, PodSandboxMetadata};

    #[test]
    fn records_survive_a_round_trip_and_incomplete_dirs_are_reported() {
        let root = tempfile::tempdir().unwrap();
        let pod = PodRecord {
            id: "p1".into(),
            config: PodSandboxConfig {
                metadata: Some(PodSandboxMetadata {
                    name: "web".into(),
                    namespace: "default".into(),
                    uid: "u1".into(),
                    attempt: 2,
                }),
                labels: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            },
            runtime_handler: String::new(),
            created_at: 1_700_000_000_000_000_000,
            ready: true,
            pause_pid: 42,
            cgroup_parent: "/kubepods/pod-u1".into(),
            created_cgroups: vec!["/kubepods/pod-u1".into()],
            pause_image: "sha256:abc".into(),
            network: Some(PodNetwork {
                netns: "/r/pods/p1/netns".into(),
                config: NetworkList {
                    name: "net".into(),
                    cni_version: "1.0.0".into(),
                    plugins: vec![serde_json::from_str(r#"{"type":"bridge"}"#).unwrap()],
                    source: "/etc/cni/net.d/10-net.conflist".into(),
                },
                result: serde_json::json!({"ips": [{"address": "10.1.0.2/24"}]}),
                ips: vec!["10.1.0.2".into()],
                torn_down: false,
            }),
        };
        let dir = root.path().join("p1");
        std::fs::create_dir(&dir).unwrap();
        save(&dir, POD_FILE, &pod).unwrap();
        std::fs::create_dir(root.path().join("p2")).unwrap();

        let loaded = load_all::<PodRecord>(root.path(), POD_FILE);
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0].1.as_ref().unwrap(), &pod);
        assert!(loaded[1].1.is_err(), "p2 has no record");

        let container = ContainerRecord {
            id: "c1".into(),
            pod_id: "p1".into(),
            config: ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "app".into(),
                    attempt: 0,
                }),
                command: vec!["sleep".into(), "1".into()],
                ..Default::default()
            },
            image_id: "sha256:abc".into(),
            image_ref: "docker.io/library/busybox@sha256:def".into(),
            created_at: 1,
            started_at: 2,
            log_path: "/var/log/pods/x/app/0.log".into(),
            pid: 43,
            cgroup_path: "/kubepods/pod-u1/c1".into(),
            resources: Some(LinuxContainerResources {
                cpu_shares: 512,
                ..Default::default()
            }),
        };
        let cdir = root.path().join("c1");
        std::fs::create_dir(&cdir).unwrap();
        save(&cdir, CONTAINER_FILE, &container).unwrap();
        let loaded = load_all::<ContainerRecord>(root.path(), CONTAINER_FILE);
        let found: Vec<_> = loaded.into_iter().filter_map(|(_, r)| r.ok()).collect();
        assert_eq!(found, [container]);
    }

    /// A removal cut off part-way leaves a directory without its record, never a record
    /// without the rest. Cut off here by a mount point inside the directory (busy, so the
    /// tree cannot go): needs root, and says so when it cannot run.
    #[test]
    fn a_removal_cut_off_leaves_no_record() {
        use rustix::mount::{MountFlags, UnmountFlags, mount, unmount};
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("c1");
        std::fs::create_dir_all(dir.join("busy")).unwrap();
        std::fs::write(dir.join(CONTAINER_FILE), b"{}").unwrap();
        std::fs::write(dir.join("exit.json"), b"{}").unwrap();
        if let Err(e) = mount(
            "tmpfs",
            dir.join("busy"),
            "tmpfs",
            MountFlags::empty(),
            None,
        ) {
            eprintln!("skipped: mounting a tmpfs needs root ({e})");
            return;
        }
        let cut_off = remove_dir(&dir, CONTAINER_FILE);
        unmount(dir.join("busy"), UnmountFlags::DETACH).unwrap();
        assert!(cut_off.is_err(), "a busy mount point cannot be removed");
        assert!(!dir.join(CONTAINER_FILE).exists(), "the record goes first");
        let found = load_all::<ContainerRecord>(root.path(), CONTAINER_FILE);
        assert!(matches!(found.as_slice(), [(d, Err(_))] if d == &dir));

        remove_dir(&dir, CONTAINER_FILE).unwrap();
        assert!(!dir.exists());
        remove_dir(&dir, CONTAINER_FILE).expect("a directory already gone is not an error");
    }
}
