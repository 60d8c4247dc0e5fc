//! Reading container and pod usage from cgroupfs (v1 or unified v2), OOM-kill counters, and
//! removing pod cgroups the runtime created.
//!
//! Paths are cgroupfs paths as in an OCI spec's `linux.cgroupsPath` (`/parent/leaf`); on a v1
//! host they are looked up under each controller's hierarchy (`/sys/fs/cgroup/<controller>`),
//! on a v2 host under the one unified hierarchy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The cgroup layout of this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cgroups {
    root: PathBuf,
    unified: bool,
}

/// What one cgroup has used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Cumulative CPU time, nanoseconds.
    pub(crate) cpu_nanos: Option<u64>,
    /// Memory in use, bytes (page cache included).
    pub(crate) memory_usage: Option<u64>,
    /// Usage minus inactive file pages: what the kubelet evicts on.
    pub(crate) working_set: Option<u64>,
    /// Anonymous and swap-backed memory.
    pub(crate) rss: Option<u64>,
    /// Page faults.
    pub(crate) page_faults: Option<u64>,
    /// Major page faults.
    pub(crate) major_page_faults: Option<u64>,
    /// Processes in the cgroup (and below).
    pub(crate) pids: Option<u64>,
}

impl Default for Cgroups {
    fn default() -> Self {
        Self::at(CGROUP_ROOT)
    }
}

impl Cgroups {
    /// The layout under `root` (a v2 host has `cgroup.controllers` at its root).
    pub(crate) fn at(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let unified = root.join("cgroup.controllers").exists();
        Self { root, unified }
    }

    /// Whether this is a cgroup v2 (unified) host.
    pub(crate) fn is_unified(&self) -> bool {
        self.unified
    }

    /// The directory of `path` for `controller` (ignored on v2).
    pub(crate) fn dir(&self, controller: &str, path: &str) -> PathBuf {
        let relative = path.trim_start_matches('/');
        if self.unified {
            self.root.join(relative)
        } else {
            self.root.join(controller).join(relative)
        }
    }

    /// Whether the cgroup `path` exists (in the memory hierarchy on v1).
    pub(crate) fn exists(&self, path: &str) -> bool {
        self.dir("memory", path).is_dir()
    }

    /// Usage of the cgroup `path`; `None` when it does not exist.
    pub(crate) fn usage(&self, path: &str) -> Option<Usage> {
        if !self.exists(path) {
            return None;
        }
        Some(if self.unified {
            self.usage_v2(path)
        } else {
            self.usage_v1(path)
        })
    }

    fn usage_v1(&self, path: &str) -> Usage {
        let memory = self.dir("memory", path);
        let stat = read_keyed(&memory.join("memory.stat"));
        let usage = read_u64(&memory.join("memory.usage_in_bytes"));
        let inactive = stat.get("total_inactive_file").copied().unwrap_or(0);
        Usage {
            cpu_nanos: read_u64(&self.dir("cpuacct", path).join("cpuacct.usage")),
            memory_usage: usage,
            working_set: usage.map(|u| u.saturating_sub(inactive)),
            rss: stat.get("total_rss").copied(),
            page_faults: stat.get("total_pgfault").copied(),
            major_page_faults: stat.get("total_pgmajfault").copied(),
            pids: read_u64(&self.dir("pids", path).join("pids.current")),
        }
    }

    fn usage_v2(&self, path: &str) -> Usage {
        let dir = self.dir("", path);
        let stat = read_keyed(&dir.join("memory.stat"));
        let cpu = read_keyed(&dir.join("cpu.stat"));
        let usage = read_u64(&dir.join("memory.current"));
        let inactive = stat.get("inactive_file").copied().unwrap_or(0);
        Usage {
            cpu_nanos: cpu.get("usage_usec").map(|u| u.saturating_mul(1000)),
            memory_usage: usage,
            working_set: usage.map(|u| u.saturating_sub(inactive)),
            rss: stat.get("anon").copied(),
            page_faults: stat.get("pgfault").copied(),
            major_page_faults: stat.get("pgmajfault").copied(),
            pids: read_u64(&dir.join("pids.current")),
        }
    }

    /// How many times the OOM killer struck in the cgroup `path` (0 when unknown).
    pub(crate) fn oom_kills(&self, path: &str) -> u64 {
        if self.unified {
            read_keyed(&self.dir("", path).join("memory.events"))
                .get("oom_kill")
                .copied()
                .unwrap_or(0)
        } else {
            read_keyed(&self.dir("memory", path).join("memory.oom_control"))
                .get("oom_kill")
                .copied()
                .unwrap_or(0)
        }
    }

    /// The cgroup `path`'s directory in every hierarchy (one on v2; on v1 each real
    /// hierarchy once, skipping the symlinks of joined controllers such as
    /// `cpuacct -> cpu,cpuacct`); none for the root itself.
    fn everywhere(&self, path: &str) -> Vec<PathBuf> {
        let relative = path.trim_matches('/');
        if relative.is_empty() {
            return Vec::new();
        }
        if self.unified {
            return vec![self.root.join(relative)];
        }
        std::fs::read_dir(&self.root)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path().join(relative))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// SIGKILLs every process in the cgroup `path` (in every hierarchy) and removes it once
    /// they are gone (up to 5 s). Only for a cgroup that belongs to one object alone.
    pub(crate) async fn kill_and_remove(&self, path: &str) {
        let dirs = self.everywhere(path);
        let started = std::time::Instant::now();
        loop {
            let mut left = false;
            for dir in dirs.iter().filter(|d| d.is_dir()) {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
                left |= std::fs::remove_dir(dir).is_err() && dir.is_dir();
            }
            if !left || started.elapsed() > std::time::Duration::from_secs(5) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Removes the (empty) cgroup `path` in every hierarchy; errors are ignored (a cgroup
    /// still in use stays).
    pub(crate) fn remove(&self, path: &str) {
        for dir in self.everywhere(path) {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The memory cgroup of process `pid`, as a cgroupfs path, read from `/proc/<pid>/cgroup`:
/// the v1 `memory` line when there is one, else the unified (`0::`) line.
pub(crate) fn memory_cgroup_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    parse_memory_cgroup(&text)
}

fn parse_memory_cgroup(text: &str) -> Option<String> {
    let mut unified = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            return Some(path.to_string());
        }
        if controllers.is_empty() {
            unified = Some(path.to_string());
        }
    }
    unified
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat, memory.oom_control, memory.events).
fn read_keyed(path: &Path) -> HashMap<String, u64> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: PathBuf, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn v1_usage_and_working_set() {
        let root = tempfile::tempdir().unwrap();
        let cg = Cgroups::at(root.path());
        assert!(!cg.is_unified());
        assert_eq!(cg.usage("/pod/c1"), None);
        write(
            root.path().join("memory/pod/c1/memory.usage_in_bytes"),
            "10000\n",
        );
        write(
            root.path().join("memory/pod/c1/memory.stat"),
            "cache 5\ntotal_inactive_file 3000\ntotal_rss 6000\ntotal_pgfault 7\ntotal_pgmajfault 1\n",
        );
        write(root.path().join("cpuacct/pod/c1/cpuacct.usage"), "123456\n");
        write(
            root.path().join("memory/pod/c1/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        let usage = cg.usage("/pod/c1").unwrap();
        assert_eq!(
            usage,
            Usage {
                cpu_nanos: Some(123_456),
                memory_usage: Some(10_000),
                working_set: Some(7_000),
                rss: Some(6_000),
                page_faults: Some(7),
                major_page_faults: Some(1),
                pids: None,
            }
        );
        assert_eq!(cg.oom_kills("/pod/c1"), 2);
        assert_eq!(cg.oom_kills("/pod/none"), 0);
    }

    #[test]
    fn v2_usage() {
        let root = tempfile::tempdir().unwrap();
        write(root.path().join("cgroup.controllers"), "cpu memory pids\n");
        let cg = Cgroups::at(root.path());
        assert!(cg.is_unified());
        write(root.path().join("pod/c1/memory.current"), "9000\n");
        write(
            root.path().join("pod/c1/memory.stat"),
            "anon 4000\ninactive_file 1000\npgfault 3\npgmajfault 0\n",
        );
        write(
            root.path().join("pod/c1/cpu.stat"),
            "usage_usec 5\nuser_usec 4\n",
        );
        write(
            root.path().join("pod/c1/memory.events"),
            "low 0\noom 1\noom_kill 1\n",
        );
        let usage = cg.usage("pod/c1").unwrap();
        assert_eq!(usage.cpu_nanos, Some(5_000));
        assert_eq!(usage.working_set, Some(8_000));
        assert_eq!(usage.rss, Some(4_000));
        assert_eq!(cg.oom_kills("/pod/c1"), 1);
    }

    #[test]
    fn memory_cgroup_lines() {
        let hybrid = "9:name=systemd:/\n4:memory:/a/b\n1:cpu,cpuacct:/a/b\n0::/\n";
        assert_eq!(parse_memory_cgroup(hybrid).as_deref(), Some("/a/b"));
        assert_eq!(parse_memory_cgroup("0::/x/y\n").as_deref(), Some("/x/y"));
        assert_eq!(parse_memory_cgroup("garbage"), None);
    }

    #[test]
    fn remove_visits_every_hierarchy_and_keeps_busy_ones() {
        let root = tempfile::tempdir().unwrap();
        for controller in ["memory", "cpu", "pids"] {
            std::fs::create_dir_all(root.path().join(controller).join("pod")).unwrap();
        }
        write(root.path().join("pids/pod/busy"), "");
        let cg = Cgroups::at(root.path());
        cg.remove("/pod");
        assert!(!root.path().join("memory/pod").exists());
        assert!(!root.path().join("cpu/pod").exists());
        assert!(root.path().join("pids/pod").exists(), "not empty: kept");
        cg.remove("/");
        assert!(
            root.path().join("memory").exists(),
            "the root is never removed"
        );
    }
}
