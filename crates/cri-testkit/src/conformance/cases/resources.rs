//! Resources: `UpdateContainerResources`, CPU, memory and huge page limits in the
//! container's cgroup, the OOM killer.

use std::time::Duration;

use cri_client::cri_api::v1::*;

use super::case;
use crate::conformance::ctx::{check, expect_eq, skip};
use crate::conformance::{Case, Ctx, Stop};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "resources",
            "update-container",
            "UpdateContainerResources on a running container is applied and reported",
            update
        ),
        case!(
            "resources",
            "cpu-limits-cgroup",
            "cpu_period, cpu_quota and cpu_shares show in the container's cgroup (v1 cpu.cfs_*, cpu.shares; v2 cpu.max, cpu.weight)",
            cpu_limits_cgroup
        ),
        case!(
            "resources",
            "memory-limit-cgroup",
            "memory_limit_in_bytes shows in the container's cgroup (v1 memory.limit_in_bytes, v2 memory.max)",
            memory_limit_cgroup
        ),
        case!(
            "resources",
            "hugepage-limits-as-kubelet",
            "a container with the kubelet's hugepage_limits (one per host page size, limit 0) starts and runs",
            hugepage_limits_as_kubelet
        ),
        case!(
            "resources",
            "update-container-cgroup",
            "a memory limit set by UpdateContainerResources shows in the cgroup afterwards",
            update_container_cgroup
        ),
        case!(
            "resources",
            "oom-killed",
            "a container past its 16 MiB memory limit ends with reason OOMKilled and exit code 137",
            oom_killed
        ),
    ]
}

async fn update(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let id = ctx
        .start_container(&sandbox, "limited", ctx.sleeper())
        .await?;
    let resources = LinuxContainerResources {
        cpu_shares: 512,
        cpu_period: 100_000,
        cpu_quota: 50_000,
        memory_limit_in_bytes: 256 << 20,
        ..Default::default()
    };
    ctx.client()
        .call(UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(resources.clone()),
            ..Default::default()
        })
        .await?;
    let status = ctx.container_status(&id).await?;
    let Some(reported) = status.resources.and_then(|r| r.linux) else {
        return skip(
            "the runtime applied the update but does not report resources in ContainerStatus",
        );
    };
    expect_eq("cpu_shares", resources.cpu_shares, reported.cpu_shares)?;
    expect_eq("cpu_quota", resources.cpu_quota, reported.cpu_quota)?;
    expect_eq(
        "memory_limit_in_bytes",
        resources.memory_limit_in_bytes,
        reported.memory_limit_in_bytes,
    )
}

/// The container's cgroup as its own processes see it (`/proc/self/cgroup`).
#[derive(Debug)]
enum Cgroup {
    /// The unified hierarchy: the path (`/` in a private cgroup namespace).
    V2(String),
    /// Legacy hierarchies: (controllers, path) per line.
    V1(Vec<(String, String)>),
}

/// Reads the container's cgroup; skips on a simulator (no real processes).
async fn cgroup_of(ctx: &Ctx, id: &str) -> Result<Cgroup, Stop> {
    let text = ctx.exec_ok(id, &["cat", "/proc/self/cgroup"]).await?;
    let lines: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _hierarchy = parts.next()?;
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect();
    let legacy: Vec<(String, String)> = lines
        .iter()
        .filter(|(controllers, _)| !controllers.is_empty() && !controllers.starts_with("name="))
        .cloned()
        .collect();
    if !legacy.is_empty() {
        return Ok(Cgroup::V1(legacy));
    }
    match lines.iter().find(|(controllers, _)| controllers.is_empty()) {
        Some((_, path)) => Ok(Cgroup::V2(path.clone())),
        None => check(
            false,
            "/proc/self/cgroup names the container's cgroup",
            "hierarchy:controllers:path lines",
            &text,
        )
        .map(|()| Cgroup::V2("/".into())),
    }
}

/// Reads a cgroup file of the container: `v1_controller`'s hierarchy on cgroup v1, the
/// unified one on v2. The path below the container's cgroup is tried first (the cgroup
/// namespace is the host's), then the mount's root (a private cgroup namespace, or the
/// container's own cgroup bind-mounted there).
async fn read_cgroup_file(
    ctx: &Ctx,
    id: &str,
    cgroup: &Cgroup,
    v1_controller: &str,
    file: &str,
) -> Result<String, Stop> {
    let mut candidates = Vec::new();
    match cgroup {
        Cgroup::V2(path) => {
            if path != "/" {
                candidates.push(format!("/sys/fs/cgroup{path}/{file}"));
            }
            candidates.push(format!("/sys/fs/cgroup/{file}"));
        }
        Cgroup::V1(lines) => {
            let Some((controllers, path)) = lines
                .iter()
                .find(|(c, _)| c.split(',').any(|c| c == v1_controller))
            else {
                return skip(format!(
                    "the container is in no cgroup v1 hierarchy with the {v1_controller} controller: {lines:?}"
                ));
            };
            let mut dirs = vec![controllers.as_str()];
            if controllers != v1_controller {
                dirs.push(v1_controller);
            }
            if path != "/" {
                for dir in &dirs {
                    candidates.push(format!("/sys/fs/cgroup/{dir}{path}/{file}"));
                }
            }
            for dir in &dirs {
                candidates.push(format!("/sys/fs/cgroup/{dir}/{file}"));
            }
        }
    }
    for candidate in &candidates {
        let out = ctx.exec(id, &["cat", candidate]).await?;
        if out.exit_code == 0 {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
    }
    check(
        false,
        &format!("the container's cgroup file {file} is readable inside"),
        &candidates,
        format!("none readable; /proc/self/cgroup: {cgroup:?}"),
    )
    .map(|()| String::new())
}

fn with_resources(resources: LinuxContainerResources) -> impl FnOnce(&mut ContainerConfig) {
    move |config| {
        config.linux.get_or_insert_default().resources = Some(resources);
    }
}

async fn cpu_limits_cgroup(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let id = ctx
        .start_container_with(
            &sandbox,
            "cpu",
            ctx.sleeper(),
            with_resources(LinuxContainerResources {
                cpu_period: 100_000,
                cpu_quota: 50_000,
                cpu_shares: 512,
                ..Default::default()
            }),
        )
        .await?;
    let cgroup = cgroup_of(&ctx, &id).await?;
    match cgroup {
        Cgroup::V1(_) => {
            let read = |file| read_cgroup_file(&ctx, &id, &cgroup, "cpu", file);
            expect_eq(
                "cpu.cfs_period_us",
                "100000",
                &read("cpu.cfs_period_us").await?,
            )?;
            expect_eq(
                "cpu.cfs_quota_us",
                "50000",
                &read("cpu.cfs_quota_us").await?,
            )?;
            expect_eq("cpu.shares", "512", &read("cpu.shares").await?)
        }
        Cgroup::V2(_) => {
            let read = |file| read_cgroup_file(&ctx, &id, &cgroup, "cpu", file);
            expect_eq("cpu.max", "50000 100000", &read("cpu.max").await?)?;
            let weight = read("cpu.weight").await?;
            // runc's shares→weight conversion changed over time (20 or 59 for 512): both
            // are below the default weight 100, as 512 shares are below the default 1024.
            check(
                weight.parse::<u64>().is_ok_and(|w| (1..100).contains(&w)),
                "cpu.weight for cpu_shares 512",
                "1..100 (below the default 100)",
                &weight,
            )
        }
    }
}

async fn memory_limit_cgroup(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let limit: i64 = 64 << 20;
    let id = ctx
        .start_container_with(
            &sandbox,
            "memory",
            ctx.sleeper(),
            with_resources(LinuxContainerResources {
                memory_limit_in_bytes: limit,
                ..Default::default()
            }),
        )
        .await?;
    let cgroup = cgroup_of(&ctx, &id).await?;
    let file = match cgroup {
        Cgroup::V1(_) => "memory.limit_in_bytes",
        Cgroup::V2(_) => "memory.max",
    };
    let value = read_cgroup_file(&ctx, &id, &cgroup, "memory", file).await?;
    expect_eq(file, limit.to_string(), value)
}

/// The page size as the kubelet names it: the size in the largest binary unit that divides
/// it (`hugepages-2048kB` → `2MB`, `hugepages-1048576kB` → `1GB`).
fn kubelet_page_size(directory: &str) -> Option<String> {
    let kib: u64 = directory
        .strip_prefix("hugepages-")?
        .strip_suffix("kB")?
        .parse()
        .ok()?;
    let mut size = kib.checked_mul(1024)?;
    let units = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut unit = 0;
    while size >= 1024 && size % 1024 == 0 && unit + 1 < units.len() {
        size /= 1024;
        unit += 1;
    }
    Some(format!("{size}{}", units[unit]))
}

async fn hugepage_limits_as_kubelet(ctx: Ctx) -> Result<(), Stop> {
    let dir = "/sys/kernel/mm/hugepages";
    let mut sizes: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| kubelet_page_size(&e.file_name().to_string_lossy()))
            .collect(),
        Err(e) => {
            return skip(format!(
                "the host has no huge pages ({dir}: {e}): the kubelet sends no hugepage_limits"
            ));
        }
    };
    if sizes.is_empty() {
        return skip(format!(
            "the host lists no huge page sizes in {dir}: the kubelet sends no hugepage_limits"
        ));
    }
    sizes.sort();
    let limits: Vec<HugepageLimit> = sizes
        .iter()
        .map(|page_size| HugepageLimit {
            page_size: page_size.clone(),
            limit: 0,
        })
        .collect();
    let sandbox = ctx.run_sandbox("pod").await?;
    let id = ctx
        .start_container_with(
            &sandbox,
            "hugepages",
            ctx.sleeper(),
            with_resources(LinuxContainerResources {
                cpu_shares: 2,
                memory_limit_in_bytes: 128 << 20,
                hugepage_limits: limits.clone(),
                ..Default::default()
            }),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = ctx.container_status(&id).await?;
    check(
        status.state() == ContainerState::ContainerRunning,
        &format!("a container with hugepage_limits {limits:?}"),
        "RUNNING",
        format!(
            "{:?} exit {} {} {}",
            status.state(),
            status.exit_code,
            status.reason,
            status.message
        ),
    )?;
    let out = ctx.exec(&id, &["echo", "alive"]).await?;
    expect_eq(
        "ExecSync echo in the container",
        "alive\n",
        String::from_utf8_lossy(&out.stdout).as_ref(),
    )
}

async fn update_container_cgroup(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let id = ctx
        .start_container_with(
            &sandbox,
            "updated",
            ctx.sleeper(),
            with_resources(LinuxContainerResources {
                memory_limit_in_bytes: 128 << 20,
                ..Default::default()
            }),
        )
        .await?;
    let cgroup = cgroup_of(&ctx, &id).await?;
    let file = match cgroup {
        Cgroup::V1(_) => "memory.limit_in_bytes",
        Cgroup::V2(_) => "memory.max",
    };
    let before = read_cgroup_file(&ctx, &id, &cgroup, "memory", file).await?;
    expect_eq(
        &format!("{file} before the update"),
        (128i64 << 20).to_string(),
        before,
    )?;
    let limit: i64 = 96 << 20;
    ctx.client()
        .call(UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(LinuxContainerResources {
                memory_limit_in_bytes: limit,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    let after = read_cgroup_file(&ctx, &id, &cgroup, "memory", file).await?;
    expect_eq(
        &format!("{file} after the update"),
        limit.to_string(),
        after,
    )
}

async fn oom_killed(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    // A simulator has no memory to exhaust: skip before anything is expected of it.
    let probe = ctx
        .start_container(&sandbox, "probe", ctx.sleeper())
        .await?;
    cgroup_of(&ctx, &probe).await?;
    let limit: i64 = 16 << 20;
    let id = ctx
        .start_container_with(
            &sandbox,
            "hog",
            &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
            with_resources(LinuxContainerResources {
                memory_limit_in_bytes: limit,
                memory_swap_limit_in_bytes: limit,
                ..Default::default()
            }),
        )
        .await?;
    let status = ctx.wait_exited(&id).await?;
    expect_eq(
        "reason and exit code of a container killed past its 16 MiB limit",
        ("OOMKilled", 137),
        (status.reason.as_str(), status.exit_code),
    )
}
