//! Security contexts: privileged pods and containers, capabilities, users and groups,
//! read-only root filesystems, `no_new_privs`, seccomp, AppArmor, masked and read-only
//! paths, sysctls.
//!
//! What these cases check lives in the kernel (`/proc/self/status`, `/proc/self/mountinfo`,
//! `/proc/sys`), so they read it through [`Ctx::exec_ok`] and are skipped on a runtime that
//! runs no real processes. The one CRI-level rule (a privileged container needs a privileged
//! sandbox) holds on any runtime.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;

use cri_client::cri_api::v1::security_profile::ProfileType;
use cri_client::cri_api::v1::*;

use super::case;
use crate::conformance::ctx::{check, expect_eq, skip};
use crate::conformance::{Case, Ctx, Failure, Stop};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "security",
            "privileged-sandbox",
            "a privileged sandbox runs; a privileged container in it has CapEff == CapBnd and more than the 14 default capabilities",
            privileged_sandbox
        ),
        case!(
            "security",
            "privileged-container-refused-in-unprivileged-sandbox",
            "CreateContainer with privileged=true in a sandbox that is not privileged fails and leaves no container",
            privileged_refused
        ),
        case!(
            "security",
            "privileged-devices",
            "a privileged container sees the host's devices beyond the default /dev set",
            privileged_devices
        ),
        case!(
            "security",
            "privileged-no-masked-paths",
            "a privileged container has no masked paths (/proc/kcore, ...) and a writable /proc/sys",
            privileged_no_masked_paths
        ),
        case!(
            "security",
            "privileged-seccomp-ignored",
            "a privileged container asking for seccomp RuntimeDefault runs without a filter (Seccomp: 0)",
            privileged_seccomp_ignored
        ),
        case!(
            "security",
            "privileged-sysfs-writable",
            "a privileged container has /sys and /sys/fs/cgroup mounted read-write",
            privileged_sysfs_writable
        ),
        case!(
            "security",
            "capabilities-add",
            "capabilities.add_capabilities NET_ADMIN appears in CapEff",
            capabilities_add
        ),
        case!(
            "security",
            "capabilities-drop",
            "capabilities.drop_capabilities CHOWN removes it from CapEff and keeps the other defaults",
            capabilities_drop
        ),
        case!(
            "security",
            "capabilities-add-all",
            "add_capabilities ALL gives CapEff == CapBnd, beyond the 14 defaults",
            capabilities_add_all
        ),
        case!(
            "security",
            "capabilities-drop-all",
            "drop_capabilities ALL leaves CapEff empty",
            capabilities_drop_all
        ),
        case!(
            "security",
            "capabilities-drop-all-add-one",
            "drop ALL plus add NET_BIND_SERVICE leaves exactly that capability",
            capabilities_drop_all_add_one
        ),
        case!(
            "security",
            "run-as-user",
            "run_as_user 1234: `id -u` prints 1234",
            run_as_user
        ),
        case!(
            "security",
            "run-as-group",
            "run_as_user 1234 with run_as_group 5678: `id -g` prints 5678",
            run_as_group
        ),
        case!(
            "security",
            "run-as-username",
            "run_as_username naming a user of the image's /etc/passwd runs as its uid and gid",
            run_as_username
        ),
        case!(
            "security",
            "supplemental-groups",
            "supplemental_groups appear in `id -G`",
            supplemental_groups
        ),
        case!(
            "security",
            "readonly-rootfs",
            "readonly_rootfs: / is mounted read-only and writing there fails; a host mount stays writable",
            readonly_rootfs
        ),
        case!(
            "security",
            "no-new-privs",
            "no_new_privs: /proc/self/status shows NoNewPrivs: 1",
            no_new_privs
        ),
        case!(
            "security",
            "seccomp-runtime-default",
            "seccomp RuntimeDefault installs a filter (Seccomp: 2)",
            seccomp_runtime_default
        ),
        case!(
            "security",
            "seccomp-unconfined",
            "seccomp Unconfined installs no filter (Seccomp: 0)",
            seccomp_unconfined
        ),
        case!(
            "security",
            "seccomp-localhost",
            "a node-local seccomp profile file denying mkdir is applied: mkdir fails, other writes work",
            seccomp_localhost
        ),
        case!(
            "security",
            "apparmor",
            "apparmor RuntimeDefault confines the container with a profile (on AppArmor hosts)",
            apparmor
        ),
        case!(
            "security",
            "masked-paths",
            "explicit masked_paths/readonly_paths are applied (e.g. /proc/kcore masked, /proc/sys read-only)",
            masked_paths
        ),
        case!(
            "security",
            "masked-paths-empty",
            "empty masked_paths/readonly_paths mean none (the kubelet's procMount Unmasked), not a default list",
            masked_paths_empty
        ),
        case!(
            "security",
            "sysctls",
            "sandbox sysctls (IPC; net.* with its own network namespace) read back in a container",
            sysctls
        ),
    ]
}

/// How many capabilities a default container has (CHOWN, DAC_OVERRIDE, FSETID, FOWNER, MKNOD,
/// NET_RAW, SETGID, SETUID, SETFCAP, SETPCAP, NET_BIND_SERVICE, SYS_CHROOT, KILL,
/// AUDIT_WRITE).
const DEFAULT_CAPABILITY_COUNT: u32 = 14;
const CAP_CHOWN: u32 = 0;
const CAP_NET_BIND_SERVICE: u32 = 10;
const CAP_NET_ADMIN: u32 = 12;

/// Paths the runtimes mask by default (none of them may be masked when privileged).
const DEFAULT_MASKED: [&str; 11] = [
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

/// Device nodes every container gets, privileged or not.
const DEFAULT_DEVICES: [&str; 8] = [
    "null", "zero", "full", "random", "urandom", "tty", "console", "ptmx",
];

fn fail<T>(what: &str, expected: impl Debug, got: impl Debug) -> Result<T, Stop> {
    Err(Stop::Fail(Failure {
        check: what.to_string(),
        expected: format!("{expected:?}"),
        got: format!("{got:?}"),
    }))
}

fn container_sc(config: &mut ContainerConfig) -> &mut LinuxContainerSecurityContext {
    config
        .linux
        .get_or_insert_default()
        .security_context
        .get_or_insert_default()
}

fn sandbox_sc(config: &mut PodSandboxConfig) -> &mut LinuxSandboxSecurityContext {
    config
        .linux
        .get_or_insert_default()
        .security_context
        .get_or_insert_default()
}

fn profile(profile_type: ProfileType, localhost_ref: &str) -> Option<SecurityProfile> {
    Some(SecurityProfile {
        profile_type: profile_type as i32,
        localhost_ref: localhost_ref.to_string(),
    })
}

/// A privileged sandbox (keeping the configured network mode).
async fn privileged_pod(ctx: &Ctx) -> Result<(String, PodSandboxConfig), Stop> {
    ctx.run_sandbox_with("priv", |c| sandbox_sc(c).privileged = true)
        .await
}

/// A privileged container in a privileged sandbox, further changed by `edit`.
async fn privileged_container(
    ctx: &Ctx,
    edit: impl FnOnce(&mut ContainerConfig),
) -> Result<String, Stop> {
    let sandbox = privileged_pod(ctx).await?;
    ctx.start_container_with(&sandbox, "privileged", ctx.sleeper(), |c| {
        container_sc(c).privileged = true;
        edit(c);
    })
    .await
}

/// A container in a fresh sandbox whose security context `edit` sets.
async fn container_with(
    ctx: &Ctx,
    edit: impl FnOnce(&mut LinuxContainerSecurityContext),
) -> Result<String, Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    ctx.start_container_with(&sandbox, "secured", ctx.sleeper(), |c| {
        edit(container_sc(c));
    })
    .await
}

/// The value of a `Name:` line of `/proc/self/status` of a process in the container.
async fn status_field(ctx: &Ctx, id: &str, name: &str) -> Result<String, Stop> {
    let status = ctx.exec_ok(id, &["cat", "/proc/self/status"]).await?;
    field(&status, name)
}

fn field(status: &str, name: &str) -> Result<String, Stop> {
    let prefix = format!("{name}:");
    match status.lines().find_map(|l| l.strip_prefix(&prefix)) {
        Some(value) => Ok(value.trim().to_string()),
        None => fail(
            &format!("/proc/self/status has a {name}: line"),
            name,
            status,
        ),
    }
}

fn hex_field(status: &str, name: &str) -> Result<u64, Stop> {
    let value = field(status, name)?;
    u64::from_str_radix(&value, 16).or_else(|_| {
        fail(
            &format!("{name} in /proc/self/status is a hexadecimal mask"),
            "hex digits",
            &value,
        )
    })
}

/// `(CapEff, CapBnd)` of a process in the container.
async fn capabilities(ctx: &Ctx, id: &str) -> Result<(u64, u64), Stop> {
    let status = ctx.exec_ok(id, &["cat", "/proc/self/status"]).await?;
    Ok((hex_field(&status, "CapEff")?, hex_field(&status, "CapBnd")?))
}

fn has_cap(mask: u64, cap: u32) -> bool {
    mask & (1 << cap) != 0
}

/// Fails unless CapEff equals CapBnd and holds more than the default capabilities.
fn expect_full_capabilities(what: &str, eff: u64, bnd: u64) -> Result<(), Stop> {
    expect_eq(
        &format!("{what}: CapEff equals CapBnd"),
        format!("{bnd:016x}"),
        format!("{eff:016x}"),
    )?;
    check(
        eff.count_ones() > DEFAULT_CAPABILITY_COUNT,
        &format!("{what}: more capabilities than the {DEFAULT_CAPABILITY_COUNT} defaults"),
        format!("> {DEFAULT_CAPABILITY_COUNT}"),
        format!("{} (CapEff {eff:016x})", eff.count_ones()),
    )
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug)]
struct MountEntry {
    point: String,
    options: String,
}

impl MountEntry {
    fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

async fn mountinfo(ctx: &Ctx, id: &str) -> Result<Vec<MountEntry>, Stop> {
    let text = ctx.exec_ok(id, &["cat", "/proc/self/mountinfo"]).await?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some(MountEntry {
                point: fields.get(4)?.replace("\\040", " "),
                options: fields.get(5)?.to_string(),
            })
        })
        .collect())
}

/// The mount visible at `point` (the last one stacked there), if any.
fn top<'a>(mounts: &'a [MountEntry], point: &str) -> Option<&'a MountEntry> {
    mounts.iter().rev().find(|m| m.point == point)
}

/// Runs a command that must fail for a kernel reason; skips on a simulator.
async fn exec_fails(ctx: &Ctx, id: &str, cmd: &[&str], what: &str) -> Result<String, Stop> {
    let out = ctx.exec(id, cmd).await?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if out.exit_code == 127 && stderr.contains("not found") {
        return skip(format!(
            "the runtime runs no real processes ({cmd:?} answers {stderr:?}): a simulator cannot show kernel state"
        ));
    }
    check(
        out.exit_code != 0,
        what,
        "a non-zero exit status",
        format!(
            "exit {}: {}",
            out.exit_code,
            String::from_utf8_lossy(&out.stdout).trim()
        ),
    )?;
    Ok(stderr)
}

/// Skips unless the host (where the suite and the runtime run) supports seccomp filters.
fn require_host_seccomp() -> Result<(), Stop> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if status.lines().any(|l| l.starts_with("Seccomp:")) {
        Ok(())
    } else {
        skip("the host kernel has no seccomp support (no Seccomp: line in /proc/self/status)")
    }
}

async fn privileged_sandbox(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = privileged_pod(&ctx).await?;
    let status = ctx.client().pod_sandbox_status(&sandbox.0, false).await?;
    expect_eq(
        "state of a privileged sandbox",
        Some(PodSandboxState::SandboxReady),
        status.status.as_ref().map(PodSandboxStatus::state),
    )?;
    let id = ctx
        .start_container_with(&sandbox, "privileged", ctx.sleeper(), |c| {
            container_sc(c).privileged = true;
        })
        .await?;
    let (eff, bnd) = capabilities(&ctx, &id).await?;
    expect_full_capabilities("privileged container", eff, bnd)
}

async fn privileged_refused(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("unprivileged").await?;
    ctx.ensure_image().await?;
    let mut config = ctx.container_config("privileged", ctx.sleeper());
    container_sc(&mut config).privileged = true;
    let created = ctx
        .client()
        .create_container(&sandbox.0, config, Some(sandbox.1.clone()))
        .await;
    match created {
        Ok(id) => {
            return fail(
                "CreateContainer with privileged=true in a sandbox that is not privileged",
                "an error: a privileged container needs a privileged sandbox",
                format!("created container {id}"),
            );
        }
        Err(e) if e.is_unimplemented() => return Err(e.into()),
        Err(_) => {}
    }
    let left = ctx
        .client()
        .list_containers(Some(ContainerFilter {
            pod_sandbox_id: sandbox.0.clone(),
            ..Default::default()
        }))
        .await?;
    // Filtered again here: other cases run concurrently, and list filtering has cases of its
    // own; this one checks only that the refusal left nothing behind.
    let ids: Vec<&str> = left
        .iter()
        .filter(|c| c.pod_sandbox_id == sandbox.0)
        .map(|c| c.id.as_str())
        .collect();
    check(
        ids.is_empty(),
        "no container is left in the sandbox after the refused CreateContainer",
        "none",
        ids,
    )
}

/// Top-level device nodes of the host's `/dev` beyond the default set.
fn host_devices() -> BTreeSet<String> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(entries) = std::fs::read_dir("/dev") else {
        return BTreeSet::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_type()
                .is_ok_and(|t| t.is_char_device() || t.is_block_device())
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| !DEFAULT_DEVICES.contains(&name.as_str()))
        .collect()
}

async fn privileged_devices(ctx: Ctx) -> Result<(), Stop> {
    // Devices come and go: only those present before and after the container are expected.
    let before = host_devices();
    if before.is_empty() {
        return skip("the host's /dev has no device node beyond the default set");
    }
    let id = privileged_container(&ctx, |_| {}).await?;
    let listing = ctx.exec_ok(&id, &["ls", "-1", "/dev"]).await?;
    let after = host_devices();
    let seen: BTreeSet<&str> = listing.lines().map(str::trim).collect();
    let missing: Vec<&String> = before
        .intersection(&after)
        .filter(|name| !seen.contains(name.as_str()))
        .collect();
    check(
        missing.is_empty(),
        "every host device node is in a privileged container's /dev",
        "none missing",
        format!("missing {missing:?}; the container has {seen:?}"),
    )
}

async fn privileged_no_masked_paths(ctx: Ctx) -> Result<(), Stop> {
    // The kubelet sends its masked and read-only lists for privileged containers too; a
    // privileged container gets none of them.
    let id = privileged_container(&ctx, |c| {
        let sc = container_sc(c);
        sc.masked_paths = DEFAULT_MASKED.iter().map(|p| p.to_string()).collect();
        sc.readonly_paths = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"]
            .iter()
            .map(|p| p.to_string())
            .collect();
    })
    .await?;
    let mounts = mountinfo(&ctx, &id).await?;
    let masked: Vec<&str> = DEFAULT_MASKED
        .iter()
        .copied()
        .filter(|p| top(&mounts, p).is_some())
        .collect();
    check(
        masked.is_empty(),
        "no masking mount over the default masked paths in a privileged container",
        "none",
        masked,
    )?;
    for point in ["/proc", "/proc/sys"] {
        if let Some(mount) = top(&mounts, point) {
            check(
                !mount.read_only(),
                &format!("{point} is writable in a privileged container"),
                "rw",
                mount,
            )?;
        }
    }
    Ok(())
}

async fn privileged_seccomp_ignored(ctx: Ctx) -> Result<(), Stop> {
    require_host_seccomp()?;
    let id = privileged_container(&ctx, |c| {
        container_sc(c).seccomp = profile(ProfileType::RuntimeDefault, "");
    })
    .await?;
    let mode = status_field(&ctx, &id, "Seccomp").await?;
    expect_eq(
        "Seccomp mode of a privileged container asking for RuntimeDefault",
        "0",
        mode.as_str(),
    )
}

async fn privileged_sysfs_writable(ctx: Ctx) -> Result<(), Stop> {
    let id = privileged_container(&ctx, |_| {}).await?;
    let mounts = mountinfo(&ctx, &id).await?;
    let Some(sys) = top(&mounts, "/sys") else {
        return fail(
            "/sys is mounted in the container",
            "a mount at /sys",
            mounts,
        );
    };
    check(
        !sys.read_only(),
        "/sys is read-write in a privileged container",
        "rw",
        sys,
    )?;
    let cgroup: Vec<&MountEntry> = mounts
        .iter()
        .filter(|m| m.point == "/sys/fs/cgroup" || m.point.starts_with("/sys/fs/cgroup/"))
        .collect();
    check(
        !cgroup.is_empty(),
        "/sys/fs/cgroup is mounted in a privileged container",
        "a mount at /sys/fs/cgroup",
        &mounts,
    )?;
    let read_only: Vec<&&MountEntry> = cgroup.iter().filter(|m| m.read_only()).collect();
    check(
        read_only.is_empty(),
        "/sys/fs/cgroup is read-write in a privileged container",
        "rw",
        read_only,
    )
}

async fn capabilities_add(ctx: Ctx) -> Result<(), Stop> {
    let id = container_with(&ctx, |sc| {
        sc.capabilities = Some(Capability {
            add_capabilities: vec!["NET_ADMIN".into()],
            ..Default::default()
        });
    })
    .await?;
    let (eff, _) = capabilities(&ctx, &id).await?;
    check(
        has_cap(eff, CAP_NET_ADMIN),
        "CAP_NET_ADMIN (bit 12) is in CapEff after add_capabilities NET_ADMIN",
        "bit 12 set",
        format!("CapEff {eff:016x}"),
    )?;
    check(
        has_cap(eff, CAP_CHOWN),
        "the default CAP_CHOWN is kept when adding",
        "bit 0 set",
        format!("CapEff {eff:016x}"),
    )
}

async fn capabilities_drop(ctx: Ctx) -> Result<(), Stop> {
    let id = container_with(&ctx, |sc| {
        sc.capabilities = Some(Capability {
            drop_capabilities: vec!["CHOWN".into()],
            ..Default::default()
        });
    })
    .await?;
    let (eff, _) = capabilities(&ctx, &id).await?;
    check(
        !has_cap(eff, CAP_CHOWN),
        "CAP_CHOWN (bit 0) is gone from CapEff after drop_capabilities CHOWN",
        "bit 0 clear",
        format!("CapEff {eff:016x}"),
    )?;
    check(
        has_cap(eff, CAP_NET_BIND_SERVICE),
        "the default CAP_NET_BIND_SERVICE is kept when dropping CHOWN",
        "bit 10 set",
        format!("CapEff {eff:016x}"),
    )
}

async fn capabilities_add_all(ctx: Ctx) -> Result<(), Stop> {
    let id = container_with(&ctx, |sc| {
        sc.capabilities = Some(Capability {
            add_capabilities: vec!["ALL".into()],
            ..Default::default()
        });
    })
    .await?;
    let (eff, bnd) = capabilities(&ctx, &id).await?;
    expect_full_capabilities("add_capabilities ALL", eff, bnd)
}

async fn capabilities_drop_all(ctx: Ctx) -> Result<(), Stop> {
    let id = container_with(&ctx, |sc| {
        sc.capabilities = Some(Capability {
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        });
    })
    .await?;
    let (eff, _) = capabilities(&ctx, &id).await?;
    expect_eq(
        "CapEff after drop_capabilities ALL",
        format!("{:016x}", 0),
        format!("{eff:016x}"),
    )
}

async fn capabilities_drop_all_add_one(ctx: Ctx) -> Result<(), Stop> {
    let id = container_with(&ctx, |sc| {
        sc.capabilities = Some(Capability {
            add_capabilities: vec!["NET_BIND_SERVICE".into()],
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        });
    })
    .await?;
    let (eff, _) = capabilities(&ctx, &id).await?;
    expect_eq(
        "CapEff after drop ALL, add NET_BIND_SERVICE",
        format!("{:016x}", 1u64 << CAP_NET_BIND_SERVICE),
        format!("{eff:016x}"),
    )
}

async fn id_output(ctx: &Ctx, id: &str, flag: &str) -> Result<String, Stop> {
    Ok(ctx.exec_ok(id, &["id", flag]).await?.trim().to_string())
}

async fn run_as_user(ctx: Ctx) -> Result<(), Stop> {
    let id = container_with(&ctx, |sc| {
        sc.run_as_user = Some(Int64Value { value: 1234 });
    })
    .await?;
    let uid = id_output(&ctx, &id, "-u").await?;
    expect_eq("`id -u` with run_as_user 1234", "1234", uid.as_str())
}

async fn run_as_group(ctx: Ctx) -> Result<(), Stop> {
    let id = container_with(&ctx, |sc| {
        sc.run_as_user = Some(Int64Value { value: 1234 });
        sc.run_as_group = Some(Int64Value { value: 5678 });
    })
    .await?;
    let gid = id_output(&ctx, &id, "-g").await?;
    expect_eq("`id -g` with run_as_group 5678", "5678", gid.as_str())
}

async fn run_as_username(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let probe = ctx
        .start_container(&sandbox, "probe", ctx.sleeper())
        .await?;
    let out = ctx.exec(&probe, &["cat", "/etc/passwd"]).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.exit_code == 127 && stderr.contains("not found") {
        return skip(format!(
            "the runtime runs no real processes (cat /etc/passwd answers {:?}): a simulator has no image files",
            stderr.trim()
        ));
    }
    if out.exit_code != 0 {
        return skip(format!(
            "image {:?} has no readable /etc/passwd ({})",
            ctx.config().image,
            stderr.trim()
        ));
    }
    let passwd = String::from_utf8_lossy(&out.stdout).into_owned();
    // name:password:uid:gid:...; prefer `nobody`, else any user other than root.
    let users: Vec<(String, String, String)> = passwd
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let (name, uid, gid) = (fields.first()?, fields.get(2)?, fields.get(3)?);
            (*uid != "0" && uid.parse::<u32>().is_ok() && gid.parse::<u32>().is_ok())
                .then(|| (name.to_string(), uid.to_string(), gid.to_string()))
        })
        .collect();
    let Some((name, uid, gid)) = users
        .iter()
        .find(|(name, _, _)| name == "nobody")
        .or_else(|| users.first())
        .cloned()
    else {
        return skip(format!(
            "image {:?} names no user other than root in /etc/passwd",
            ctx.config().image
        ));
    };
    let id = ctx
        .start_container_with(&sandbox, "named", ctx.sleeper(), |c| {
            container_sc(c).run_as_username = name.clone();
        })
        .await?;
    let got_uid = id_output(&ctx, &id, "-u").await?;
    expect_eq(
        &format!("`id -u` with run_as_username {name:?}"),
        uid.as_str(),
        got_uid.as_str(),
    )?;
    let got_gid = id_output(&ctx, &id, "-g").await?;
    expect_eq(
        &format!("`id -g` with run_as_username {name:?} (its /etc/passwd group)"),
        gid.as_str(),
        got_gid.as_str(),
    )
}

async fn supplemental_groups(ctx: Ctx) -> Result<(), Stop> {
    let id = container_with(&ctx, |sc| {
        sc.run_as_user = Some(Int64Value { value: 1234 });
        sc.supplemental_groups = vec![5555, 6666];
    })
    .await?;
    let groups = id_output(&ctx, &id, "-G").await?;
    let listed: Vec<&str> = groups.split_whitespace().collect();
    check(
        listed.contains(&"5555") && listed.contains(&"6666"),
        "`id -G` lists supplemental_groups 5555 and 6666",
        ["5555", "6666"],
        listed,
    )
}

async fn readonly_rootfs(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let data = std::path::Path::new(&sandbox.1.log_directory).join("readonly-rootfs-data");
    if let Err(e) = std::fs::create_dir_all(&data) {
        return skip(format!(
            "cannot create the host directory {}: {e}",
            data.display()
        ));
    }
    let host_path = data.display().to_string();
    let id = ctx
        .start_container_with(&sandbox, "readonly", ctx.sleeper(), |c| {
            container_sc(c).readonly_rootfs = true;
            c.mounts.push(Mount {
                container_path: "/data".into(),
                host_path,
                ..Default::default()
            });
        })
        .await?;
    let mounts = mountinfo(&ctx, &id).await?;
    let Some(root) = top(&mounts, "/") else {
        return fail("/ is in mountinfo", "a mount at /", mounts);
    };
    check(
        root.read_only(),
        "the root filesystem is mounted read-only",
        "ro",
        root,
    )?;
    let stderr = exec_fails(
        &ctx,
        &id,
        &["touch", "/cri-testkit-probe"],
        "writing to / of a readonly_rootfs container fails",
    )
    .await?;
    check(
        !stderr.contains("not found"),
        "touch fails for the read-only filesystem, not for a missing tool",
        "Read-only file system",
        &stderr,
    )?;
    ctx.exec_ok(&id, &["touch", "/data/written"]).await?;
    check(
        data.join("written").exists(),
        "a file written to a host mount of a readonly_rootfs container reaches the host",
        data.join("written"),
        "missing",
    )
}

async fn no_new_privs(ctx: Ctx) -> Result<(), Stop> {
    let id = container_with(&ctx, |sc| sc.no_new_privs = true).await?;
    let value = status_field(&ctx, &id, "NoNewPrivs").await?;
    expect_eq("NoNewPrivs with no_new_privs=true", "1", value.as_str())
}

async fn seccomp_runtime_default(ctx: Ctx) -> Result<(), Stop> {
    require_host_seccomp()?;
    let id = container_with(&ctx, |sc| {
        sc.seccomp = profile(ProfileType::RuntimeDefault, "");
    })
    .await?;
    let mode = status_field(&ctx, &id, "Seccomp").await?;
    expect_eq("Seccomp mode with RuntimeDefault", "2", mode.as_str())
}

async fn seccomp_unconfined(ctx: Ctx) -> Result<(), Stop> {
    let id = container_with(&ctx, |sc| {
        sc.seccomp = profile(ProfileType::Unconfined, "");
    })
    .await?;
    let mode = status_field(&ctx, &id, "Seccomp").await?;
    expect_eq("Seccomp mode with Unconfined", "0", mode.as_str())
}

/// An OCI `linux.seccomp` profile that allows everything but creating directories (and
/// setting the hostname, which no case ever tries: it could rename the host).
const DENY_MKDIR_PROFILE: &str = r#"{
  "defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [
    {
      "names": ["mkdir", "mkdirat", "sethostname"],
      "action": "SCMP_ACT_ERRNO",
      "errnoRet": 1
    }
  ]
}
"#;

async fn seccomp_localhost(ctx: Ctx) -> Result<(), Stop> {
    require_host_seccomp()?;
    let sandbox = ctx.run_sandbox("pod").await?;
    let path = std::path::Path::new(&sandbox.1.log_directory).join("seccomp-deny-mkdir.json");
    if let Err(e) = std::fs::write(&path, DENY_MKDIR_PROFILE) {
        return skip(format!(
            "cannot write the seccomp profile {}: {e}",
            path.display()
        ));
    }
    let localhost_ref = path.display().to_string();
    let id = ctx
        .start_container_with(&sandbox, "filtered", ctx.sleeper(), |c| {
            container_sc(c).seccomp = profile(ProfileType::Localhost, &localhost_ref);
        })
        .await?;
    let mode = status_field(&ctx, &id, "Seccomp").await?;
    expect_eq("Seccomp mode with a Localhost profile", "2", mode.as_str())?;
    let stderr = exec_fails(
        &ctx,
        &id,
        &["mkdir", "/tmp/cri-testkit-denied"],
        "mkdir fails under a profile denying mkdir/mkdirat",
    )
    .await?;
    check(
        stderr.contains("not permitted"),
        "mkdir fails with the profile's errno (EPERM)",
        "Operation not permitted",
        &stderr,
    )?;
    ctx.exec_ok(&id, &["touch", "/tmp/cri-testkit-allowed"])
        .await?;
    let listing = ctx.exec_ok(&id, &["ls", "/tmp"]).await?;
    check(
        listing.contains("cri-testkit-allowed") && !listing.contains("cri-testkit-denied"),
        "syscalls the profile allows still work (touch), the denied directory does not exist",
        "cri-testkit-allowed only",
        listing,
    )
}

async fn apparmor(ctx: Ctx) -> Result<(), Stop> {
    const ENABLED: &str = "/sys/module/apparmor/parameters/enabled";
    let enabled = std::fs::read_to_string(ENABLED).unwrap_or_default();
    if enabled.trim() != "Y" {
        return skip(format!(
            "the host has no AppArmor ({ENABLED} is {:?})",
            enabled.trim()
        ));
    }
    let id = container_with(&ctx, |sc| {
        sc.apparmor = profile(ProfileType::RuntimeDefault, "");
    })
    .await?;
    let current = ctx
        .exec_ok(&id, &["cat", "/proc/self/attr/current"])
        .await?;
    let current = current.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    check(
        !current.is_empty() && current != "unconfined",
        "apparmor RuntimeDefault confines the container (/proc/self/attr/current)",
        "a profile name, e.g. \"cri-rs-default (enforce)\"",
        current,
    )
}

/// Paths of every runtime's default masked list that exist on this host: runtimes skip the
/// ones the kernel lacks (e.g. `/proc/kcore` without `CONFIG_PROC_KCORE`).
fn present_default_masked() -> Vec<&'static str> {
    [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/sys/firmware",
    ]
    .into_iter()
    .filter(|p| std::path::Path::new(p).exists())
    .collect()
}

async fn masked_paths(ctx: Ctx) -> Result<(), Stop> {
    let present = present_default_masked();
    let Some(&first) = present.first() else {
        return skip(
            "the host kernel has none of /proc/kcore, /proc/keys, /proc/timer_list, /sys/firmware to mask",
        );
    };
    let masked = [first, "/proc/cmdline"];
    let sandbox = ctx.run_sandbox("pod").await?;
    let explicit = ctx
        .start_container_with(&sandbox, "explicit", ctx.sleeper(), |c| {
            let sc = container_sc(c);
            sc.masked_paths = masked.iter().map(|p| p.to_string()).collect();
            sc.readonly_paths = vec!["/proc/sys".into(), "/proc/loadavg".into()];
        })
        .await?;
    let mounts = mountinfo(&ctx, &explicit).await?;
    for point in masked {
        check(
            top(&mounts, point).is_some(),
            &format!("masked_paths {masked:?}: {point} is masked by a mount"),
            format!("a mount at {point}"),
            &mounts,
        )?;
    }
    let cmdline = ctx.exec_ok(&explicit, &["cat", "/proc/cmdline"]).await?;
    check(
        cmdline.is_empty(),
        "a masked /proc/cmdline reads empty",
        "",
        cmdline,
    )?;
    for point in ["/proc/sys", "/proc/loadavg"] {
        let mount = top(&mounts, point);
        check(
            mount.is_some_and(MountEntry::read_only),
            &format!("readonly_paths: {point} is mounted read-only"),
            format!("a read-only mount at {point}"),
            mount,
        )?;
    }
    Ok(())
}

async fn masked_paths_empty(ctx: Ctx) -> Result<(), Stop> {
    let present = present_default_masked();
    if present.is_empty() {
        return skip(
            "the host kernel has none of /proc/kcore, /proc/keys, /proc/timer_list, /sys/firmware to mask",
        );
    }
    let sandbox = ctx.run_sandbox("pod").await?;
    let id = ctx
        .start_container(&sandbox, "unmasked", ctx.sleeper())
        .await?;
    let mounts = mountinfo(&ctx, &id).await?;
    let masked: Vec<&str> = present
        .iter()
        .copied()
        .filter(|p| top(&mounts, p).is_some())
        .collect();
    check(
        masked.is_empty(),
        "empty masked_paths mask nothing (the kubelet sends empty lists for procMount Unmasked and the full list otherwise)",
        "no masking mount",
        masked,
    )?;
    let sys = top(&mounts, "/proc/sys");
    check(
        !sys.is_some_and(MountEntry::read_only),
        "empty readonly_paths leave /proc/sys as mounted with /proc",
        "no read-only mount at /proc/sys",
        sys,
    )
}

async fn sysctls(ctx: Ctx) -> Result<(), Stop> {
    let own_network = !ctx.config().host_network;
    let mut wanted = HashMap::from([("kernel.shm_rmid_forced".to_string(), "1".to_string())]);
    if own_network {
        wanted.insert(
            "net.ipv4.ip_unprivileged_port_start".to_string(),
            "1000".to_string(),
        );
    }
    let sysctls = wanted.clone();
    let sandbox = ctx
        .run_sandbox_with("pod", |c| c.linux.get_or_insert_default().sysctls = sysctls)
        .await?;
    let id = ctx
        .start_container(&sandbox, "reader", ctx.sleeper())
        .await?;
    let mut names: Vec<&String> = wanted.keys().collect();
    names.sort();
    for name in names {
        let path = format!("/proc/sys/{}", name.replace('.', "/"));
        let value = ctx.exec_ok(&id, &["cat", &path]).await?;
        expect_eq(
            &format!("sysctl {name} set on the sandbox, read in a container"),
            wanted[name].as_str(),
            value.trim(),
        )?;
    }
    Ok(())
}
