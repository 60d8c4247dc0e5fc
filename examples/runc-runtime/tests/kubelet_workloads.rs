//! What a real kubelet sends, on real runc: hugepage limits for every page size of the node,
//! privileged pods and containers, `ALL` and named capabilities bounded by what the runtime
//! holds, and mount propagation both ways with its precondition.
//!
//! These ran into runc errors before ("cannot set hugetlb limit", "unable to apply caps")
//! because the runtime asked runc for what the host cannot give.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Pod, Runtime, wait_for};
use cri_client::cri_api::v1::*;

impl Pod {
    /// A host-network pod, privileged when asked.
    async fn start_privileged(name: &str, privileged: bool) -> Option<Pod> {
        Pod::start_with(name, |config| {
            if let Some(sc) = config
                .linux
                .as_mut()
                .and_then(|l| l.security_context.as_mut())
            {
                sc.privileged = privileged;
            }
        })
        .await
    }

    fn config(&self, name: &str, edit: impl FnOnce(&mut LinuxContainerConfig)) -> ContainerConfig {
        let mut config = Runtime::container_config(name, &self.image, &["sleep", "3600"]);
        edit(config.linux.get_or_insert_with(Default::default));
        config
    }

    async fn create(&self, config: ContainerConfig) -> cri_client::Result<String> {
        self.runtime
            .client
            .create_container(&self.id, config, Some(self.config.clone()))
            .await
    }

    async fn run(&self, config: ContainerConfig) -> String {
        let id = self
            .create(config)
            .await
            .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", self.runtime.log()));
        self.runtime.client.start_container(&id).await.unwrap();
        id
    }

    async fn sh(&self, id: &str, script: &str) -> (i32, String) {
        let out = self
            .runtime
            .client
            .exec_sync(id, ["sh", "-c", script], Duration::from_secs(10))
            .await
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.exit_code, text)
    }

    async fn status_field(&self, id: &str, key: &str) -> u64 {
        let (_, status) = self.sh(id, "cat /proc/self/status").await;
        let value = status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {status}"))
            .trim();
        u64::from_str_radix(value, 16).unwrap_or_else(|_| value.parse().unwrap())
    }
}

fn security(linux: &mut LinuxContainerConfig) -> &mut LinuxContainerSecurityContext {
    linux.security_context.get_or_insert_with(Default::default)
}

/// This process's bounding set: what the runtime (started by us, same credentials) holds.
fn own_bounding_set() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

/// The node's huge page sizes as the kubelet names them, from /sys/kernel/mm/hugepages.
fn kubelet_hugepage_limits(limit: u64) -> Vec<HugepageLimit> {
    let mut sizes: Vec<u64> = std::fs::read_dir("/sys/kernel/mm/hugepages")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    name.strip_prefix("hugepages-")?
                        .strip_suffix("kB")?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default();
    sizes.sort();
    sizes
        .into_iter()
        .map(|kib| HugepageLimit {
            page_size: match kib {
                k if k % (1 << 20) == 0 => format!("{}GB", k >> 20),
                k if k % (1 << 10) == 0 => format!("{}MB", k >> 10),
                k => format!("{k}KB"),
            },
            limit,
        })
        .collect()
}

/// Whether the OCI runtime can use the hugetlb controller on this host (v1 mount or v2 root).
fn host_has_hugetlb() -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo.lines().any(|l| {
        l.split_once(" - ").is_some_and(|(_, after)| {
            after.starts_with("cgroup ")
                && after.split(' ').nth(2).unwrap_or("").contains("hugetlb")
        })
    }) || std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
        .is_ok_and(|c| c.split_whitespace().any(|c| c == "hugetlb"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelets_hugepage_limits_run() {
    let Some(pod) = Pod::start_privileged("hugepages", false).await else {
        return;
    };
    let limits = kubelet_hugepage_limits(0);
    assert!(
        !limits.is_empty(),
        "this kind of machine has huge page sizes"
    );
    // Exactly as the kubelet fills resources for a best-effort container.
    let id = pod
        .run(pod.config("app", |linux| {
            linux.resources = Some(LinuxContainerResources {
                cpu_period: 100_000,
                cpu_shares: 2,
                oom_score_adj: 1000,
                hugepage_limits: limits.clone(),
                ..Default::default()
            });
        }))
        .await;
    let state = pod
        .runtime
        .client
        .container_status(&id, false)
        .await
        .unwrap();
    assert_eq!(
        state.status.unwrap().state(),
        ContainerState::ContainerRunning
    );
    // The decision is logged once at start.
    let log = pod.runtime.log();
    // An update with the same limits is accepted too.
    pod.runtime
        .client
        .call(UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(LinuxContainerResources {
                memory_limit_in_bytes: 128 << 20,
                hugepage_limits: limits.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();

    let asked = pod.config("asks-hugepages", |linux| {
        linux.resources = Some(LinuxContainerResources {
            hugepage_limits: vec![HugepageLimit {
                page_size: limits[0].page_size.clone(),
                limit: 2 << 20,
            }],
            ..Default::default()
        });
    });
    if host_has_hugetlb() {
        assert!(log.contains("hugetlb cgroup controller found"), "{log}");
        pod.run(asked).await;
    } else {
        assert!(log.contains("no hugetlb cgroup controller"), "{log}");
        let err = pod.create(asked).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(cri_client::tonic::Code::InvalidArgument),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("cannot be enforced: the hugetlb cgroup controller is not available"),
            "{err}"
        );
    }
    pod.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_means_everything_the_runtime_holds() {
    let Some(pod) = Pod::start_privileged("privileged", true).await else {
        return;
    };
    let bounding = own_bounding_set();
    let id = pod
        .run(pod.config("admin", |linux| {
            let sc = security(linux);
            sc.privileged = true;
            // Ignored for privileged containers, as in containerd and CRI-O.
            sc.seccomp = Some(SecurityProfile {
                profile_type: security_profile::ProfileType::RuntimeDefault as i32,
                ..Default::default()
            });
            sc.masked_paths = vec!["/proc/kcore".into()];
            sc.readonly_paths = vec!["/proc/sys".into()];
        }))
        .await;
    assert_eq!(pod.status_field(&id, "CapEff:").await, bounding);
    assert_eq!(pod.status_field(&id, "CapBnd:").await, bounding);
    assert_eq!(pod.status_field(&id, "Seccomp:").await, 0);

    let (_, mountinfo) = pod.sh(&id, "cat /proc/self/mountinfo").await;
    let options_of = |target: &str| -> String {
        mountinfo
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(target))
            .map(|l| l.split(' ').nth(5).unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    assert!(options_of("/sys").starts_with("rw"), "{mountinfo}");
    assert!(
        options_of("/sys/fs/cgroup").starts_with("rw"),
        "{mountinfo}"
    );
    assert_eq!(
        options_of("/proc/kcore"),
        "",
        "no masked paths: {mountinfo}"
    );
    assert_eq!(
        options_of("/proc/sys"),
        "",
        "no read-only paths: {mountinfo}"
    );

    // Every host device, e.g. /dev/kmsg and /dev/loop-control where the host has them.
    for device in ["/dev/kmsg", "/dev/loop-control", "/dev/mem"] {
        if Path::new(device).exists() {
            let (code, out) = pod.sh(&id, &format!("test -c {device}")).await;
            assert_eq!(code, 0, "{device} in a privileged container: {out}");
        }
    }

    // The pause process of a privileged sandbox runs with the same set.
    let info = pod
        .runtime
        .client
        .pod_sandbox_status(&pod.id, true)
        .await
        .unwrap()
        .info;
    let info: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    let pid = info["pid"].as_u64().expect("the sandbox reports its pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    assert_eq!(u64::from_str_radix(cap_eff, 16).unwrap(), bounding);
    pod.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_all_and_by_name() {
    let Some(pod) = Pod::start_privileged("capabilities", false).await else {
        return;
    };
    let bounding = own_bounding_set();
    let all = pod
        .run(pod.config("all", |linux| {
            security(linux).capabilities = Some(Capability {
                add_capabilities: vec!["ALL".into()],
                ..Default::default()
            });
        }))
        .await;
    assert_eq!(pod.status_field(&all, "CapEff:").await, bounding);

    let net_admin = 1 << 12;
    let chown = 1;
    let named = pod
        .run(pod.config("named", |linux| {
            security(linux).capabilities = Some(Capability {
                add_capabilities: vec!["NET_ADMIN".into()],
                drop_capabilities: vec!["CHOWN".into()],
                ..Default::default()
            });
        }))
        .await;
    let eff = pod.status_field(&named, "CapEff:").await;
    assert_eq!(eff & net_admin, net_admin);
    assert_eq!(eff & chown, 0);

    let none = pod
        .run(pod.config("none", |linux| {
            security(linux).capabilities = Some(Capability {
                drop_capabilities: vec!["ALL".into()],
                ..Default::default()
            });
        }))
        .await;
    assert_eq!(pod.status_field(&none, "CapEff:").await, 0);

    // A capability outside the runtime's bounding set is refused by name.
    let missing = (0..=40u32).find(|bit| bounding & (1 << bit) == 0);
    if let Some(bit) = missing {
        let name = [
            "CHOWN",
            "DAC_OVERRIDE",
            "DAC_READ_SEARCH",
            "FOWNER",
            "FSETID",
            "KILL",
            "SETGID",
            "SETUID",
            "SETPCAP",
            "LINUX_IMMUTABLE",
            "NET_BIND_SERVICE",
            "NET_BROADCAST",
            "NET_ADMIN",
            "NET_RAW",
            "IPC_LOCK",
            "IPC_OWNER",
            "SYS_MODULE",
            "SYS_RAWIO",
            "SYS_CHROOT",
            "SYS_PTRACE",
            "SYS_PACCT",
            "SYS_ADMIN",
            "SYS_BOOT",
            "SYS_NICE",
            "SYS_RESOURCE",
            "SYS_TIME",
            "SYS_TTY_CONFIG",
            "MKNOD",
            "LEASE",
            "AUDIT_WRITE",
            "AUDIT_CONTROL",
            "SETFCAP",
            "MAC_OVERRIDE",
            "MAC_ADMIN",
            "SYSLOG",
            "WAKE_ALARM",
            "BLOCK_SUSPEND",
            "AUDIT_READ",
            "PERFMON",
            "BPF",
            "CHECKPOINT_RESTORE",
        ][bit as usize];
        let err = pod
            .create(pod.config("impossible", |linux| {
                security(linux).capabilities = Some(Capability {
                    add_capabilities: vec![name.into()],
                    ..Default::default()
                });
            }))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(cri_client::tonic::Code::InvalidArgument),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("CAP_{name} cannot be granted")),
            "{err}"
        );
    } else {
        eprintln!("the runtime holds every capability: no refusal to check here");
    }
    pod.runtime.shutdown().await;
}

/// A tmpfs mounted by the test, with the propagation asked for; unmounted on drop.
struct TestMount {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestMount {
    fn new(propagation: &str) -> TestMount {
        let dir = tempfile::Builder::new()
            .prefix("runc-rt-prop-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("source");
        std::fs::create_dir(&path).unwrap();
        run(&["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs"], &path);
        run(&[&format!("--make-{propagation}")], &path);
        TestMount { path, _dir: dir }
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-R")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

fn run(args: &[&str], path: &Path) {
    let (program, args) = if args[0].starts_with("--") {
        ("mount", args)
    } else {
        (args[0], &args[1..])
    };
    let status = Command::new(program).args(args).arg(path).status().unwrap();
    assert!(status.success(), "{program} {args:?} {}", path.display());
}

fn bind(source: &Path, propagation: MountPropagation) -> Mount {
    Mount {
        container_path: "/data".into(),
        host_path: source.display().to_string(),
        propagation: propagation as i32,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_propagation_both_ways() {
    let Some(pod) = Pod::start_privileged("propagation", true).await else {
        return;
    };
    let shared = TestMount::new("shared");

    // Host to container: a mount made on the host after the start appears inside.
    let mut config = pod.config("h2c", |_| {});
    config.mounts = vec![bind(
        &shared.path,
        MountPropagation::PropagationHostToContainer,
    )];
    let h2c = pod.run(config).await;
    // Private: the same source, but nothing propagates.
    let mut config = pod.config("private", |_| {});
    config.mounts = vec![bind(&shared.path, MountPropagation::PropagationPrivate)];
    let private = pod.run(config).await;
    // Bidirectional (privileged): mounts made inside appear on the host.
    let mut config = pod.config("bidi", |linux| security(linux).privileged = true);
    config.mounts = vec![bind(
        &shared.path,
        MountPropagation::PropagationBidirectional,
    )];
    let bidi = pod.run(config).await;

    let from_host = shared.path.join("from-host");
    std::fs::create_dir(&from_host).unwrap();
    run(
        &["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs"],
        &from_host,
    );
    std::fs::write(from_host.join("marker"), "host").unwrap();
    for id in [&h2c, &bidi] {
        let (code, out) = pod.sh(id, "cat /data/from-host/marker").await;
        assert_eq!((code, out.as_str()), (0, "host"), "in {id}");
    }
    let (_, out) = pod.sh(&private, "cat /data/from-host/marker").await;
    assert!(
        !out.contains("host") || out.contains("No such file"),
        "{out}"
    );

    let (code, out) = pod
        .sh(
            &bidi,
            "mkdir -p /data/from-container && mount -t tmpfs -o size=1m tmpfs /data/from-container && echo container > /data/from-container/marker",
        )
        .await;
    assert_eq!(code, 0, "{out}");
    let seen = shared.path.join("from-container/marker");
    let text = wait_for(
        "the container's mount on the host",
        Duration::from_secs(5),
        || {
            let seen = seen.clone();
            async move { std::fs::read_to_string(&seen).ok() }
        },
    )
    .await;
    assert_eq!(text.trim(), "container");
    // Host to container does not go back: the h2c container's own mount stays inside.
    let (code, out) = pod
        .sh(&h2c, "mkdir -p /data/h2c && mount -t tmpfs tmpfs /data/h2c")
        .await;
    if code == 0 {
        assert!(
            !std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap()
                .contains(&format!("{}/h2c ", shared.path.display())),
            "a host-to-container mount leaked back: {out}"
        );
    }
    pod.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagation_from_a_private_source_is_refused() {
    let Some(pod) = Pod::start_privileged("propagation-private", true).await else {
        return;
    };
    let private = TestMount::new("private");
    for (propagation, needed) in [
        (
            MountPropagation::PropagationHostToContainer,
            "a shared or slave mount",
        ),
        (MountPropagation::PropagationBidirectional, "a shared mount"),
    ] {
        let mut config = pod.config("refused", |linux| security(linux).privileged = true);
        config.mounts = vec![bind(&private.path, propagation)];
        let err = pod.create(config).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(cri_client::tonic::Code::FailedPrecondition),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "is mounted on {:?} but it is not {needed}",
                private.path.display().to_string()
            )),
            "{text}"
        );
    }
    // Nothing half-created is left.
    let listed = pod.runtime.client.list_containers(None).await.unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    pod.runtime.shutdown().await;
}
