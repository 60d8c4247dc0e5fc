//! Runs generated specs with a real `runc`: a pod sandbox (busybox `sleep`) and a container
//! that joins its namespaces, under our seccomp profile and without capabilities.
//!
//! Needs root, `runc` on PATH and a statically linked busybox at `/bin/busybox` (Debian's
//! `busybox-static`); without them the test says why on stderr and does nothing else.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cri_api::v1::security_profile::ProfileType;
use cri_api::v1::{
    Capability, ContainerConfig, LinuxContainerConfig, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, PodSandboxConfig, PodSandboxMetadata,
    SecurityProfile,
};
use cri_oci::spec::{
    ContainerRequest, Host, SandboxFiles, SandboxRequest, container_spec, sandbox_spec,
};
use oci_spec::image::{ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder};

const BUSYBOX: &str = "/bin/busybox";

fn missing_prerequisite() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root".into());
    }
    if Command::new("runc")
        .arg("--version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        return Some("runc is not installed".into());
    }
    if !std::fs::read(BUSYBOX).is_ok_and(|elf| is_static_elf64(&elf)) {
        return Some(format!("no static busybox at {BUSYBOX}"));
    }
    None
}

/// A little-endian ELF64 executable without a program interpreter (`PT_INTERP`).
fn is_static_elf64(elf: &[u8]) -> bool {
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    if !elf.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..phnum).all(|i| {
        let at = phoff as usize + i * phentsize;
        elf.get(at..at + 4)
            .is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != 3)
    })
}

fn rootfs(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    for sub in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(rootfs.join(sub)).unwrap();
    }
    std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\napp:x:1000:\nvideo:x:44:app\n",
    )
    .unwrap();
    rootfs
}

fn image(entrypoint: &[&str]) -> ImageConfiguration {
    let config = ConfigBuilder::default()
        .entrypoint(entrypoint.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .unwrap();
    ImageConfigurationBuilder::default()
        .config(config)
        .build()
        .unwrap()
}

/// Runs runc with a private state directory; removes what it started, and the test's
/// parent cgroup, when dropped.
struct Runc {
    state: PathBuf,
    started: Vec<String>,
    cgroup_parent: String,
}

impl Runc {
    fn command(&self) -> Command {
        let mut command = Command::new("runc");
        command.arg("--root").arg(&self.state);
        command
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        for id in self.started.iter().rev() {
            let _ = self
                .command()
                .args(["delete", "--force", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // cgroup v2, or every v1 hierarchy: the (now empty) parent directory.
        let parent = self.cgroup_parent.trim_start_matches('/');
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(parent));
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(hierarchy.path().join(parent));
        }
    }
}

#[test]
fn runc_runs_a_pod() {
    if let Some(reason) = missing_prerequisite() {
        eprintln!("runc_runs_a_pod: skipped: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let suffix = std::process::id();
    let (sandbox_id, container_id) = (
        format!("cri-oci-test-sb-{suffix}"),
        format!("cri-oci-test-c-{suffix}"),
    );
    let mut host = Host::detect();
    host.cgroup_parent = format!("/cri-oci-test-{suffix}");
    let mut runc = Runc {
        state: dir.path().join("state"),
        started: Vec::new(),
        cgroup_parent: host.cgroup_parent.clone(),
    };

    let runtime_default = Some(SecurityProfile {
        profile_type: ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    });
    let sandbox = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "p".into(),
            namespace: "ns".into(),
            uid: "u".into(),
            attempt: 0,
        }),
        hostname: "pod-host".into(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                seccomp: runtime_default.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let files = SandboxFiles::default();

    // The sandbox: busybox sleep as the pause process.
    let sandbox_bundle = dir.path().join("sandbox");
    let sandbox_rootfs = rootfs(&sandbox_bundle);
    let pause = image(&["/bin/busybox", "sleep", "300"]);
    let spec = sandbox_spec(
        &host,
        &SandboxRequest::new(&sandbox_id, &sandbox, &pause, &sandbox_rootfs, &files),
    )
    .unwrap();
    spec.save(sandbox_bundle.join("config.json")).unwrap();
    let status = runc
        .command()
        .args(["run", "--detach", "--bundle"])
        .arg(&sandbox_bundle)
        .arg(&sandbox_id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    runc.started.push(sandbox_id.clone());
    assert!(status.success(), "runc run of the sandbox failed");
    let state = runc
        .command()
        .args(["state", &sandbox_id])
        .output()
        .unwrap();
    let state: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
    let pid = u32::try_from(state["pid"].as_u64().unwrap()).unwrap();

    // A container in the pod: unprivileged user, no capabilities, our seccomp profile.
    let container_bundle = dir.path().join("container");
    let container_rootfs = rootfs(&container_bundle);
    let config = ContainerConfig {
        command: vec!["/bin/busybox".into(), "sh".into(), "-c".into()],
        args: vec![
            "id -u; id -G; hostname; grep Seccomp: /proc/self/status; cat /proc/1/cmdline | tr '\\0' ' '; echo; \
             /bin/busybox unshare -U /bin/busybox true 2>/dev/null; echo unshare=$?"
                .into(),
        ],
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                run_as_username: "app".into(),
                capabilities: Some(Capability { drop_capabilities: vec!["ALL".into()], ..Default::default() }),
                seccomp: runtime_default,
                no_new_privs: true,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let app = image(&[]);
    let request = ContainerRequest::new(
        &container_id,
        &config,
        &sandbox_id,
        &sandbox,
        &app,
        &container_rootfs,
        &files,
    )
    .with_sandbox_pid(pid);
    let spec = container_spec(&host, &request).unwrap();
    spec.save(container_bundle.join("config.json")).unwrap();
    runc.started.push(container_id.clone());
    let output = runc
        .command()
        .args(["run", "--bundle"])
        .arg(&container_bundle)
        .arg(&container_id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "runc run failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "1000", "{stdout}");
    assert_eq!(lines[1], "1000 44", "{stdout}");
    assert_eq!(lines[2], "pod-host", "the pod's UTS namespace: {stdout}");
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["Seccomp:", "2"],
        "{stdout}"
    );
    assert_eq!(
        lines[4].trim(),
        "/bin/busybox sleep 300",
        "the pod's PID namespace: {stdout}"
    );
    assert_eq!(
        lines[5], "unshare=1",
        "creating a user namespace is denied: {stdout}"
    );
}
