//! Namespaces: host PID/IPC/network namespaces, pod- and container-scoped PID namespaces,
//! joining a target container's PID namespace, the pod's hostname and DNS configuration.
//!
//! Namespace identities are compared through `readlink /proc/self/ns/<kind>` in containers
//! and the suite process's own links: the suite runs on the runtime's host.

use cri_client::cri_api::v1::*;

use super::case;
use crate::conformance::ctx::{check, expect_eq, skip};
use crate::conformance::{Case, Ctx, Stop};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "namespaces",
            "host-pid",
            "pid NODE: a container is in the host's PID namespace",
            host_pid
        ),
        case!(
            "namespaces",
            "host-ipc",
            "ipc NODE: a container is in the host's IPC namespace",
            host_ipc
        ),
        case!(
            "namespaces",
            "host-network",
            "network NODE: a container is in the host's network namespace",
            host_network
        ),
        case!(
            "namespaces",
            "pod-pid-shared",
            "pid POD: two containers of a pod share one PID namespace, not the host's",
            pod_pid_shared
        ),
        case!(
            "namespaces",
            "container-pid-private",
            "pid CONTAINER: each container has its own PID namespace with its main process as PID 1",
            container_pid_private
        ),
        case!(
            "namespaces",
            "target-pid",
            "pid TARGET: a container joins the PID namespace of the container named by target_id",
            target_pid
        ),
        case!(
            "namespaces",
            "hostname",
            "a pod with its own UTS namespace has the sandbox's hostname",
            hostname
        ),
        case!(
            "namespaces",
            "dns-config",
            "DNSConfig servers, searches and options appear in the container's /etc/resolv.conf",
            dns_config
        ),
    ]
}

/// The sandbox's namespace options (keeping the configured network mode), for `edit`.
fn sandbox_namespaces(config: &mut PodSandboxConfig) -> &mut NamespaceOption {
    config
        .linux
        .get_or_insert_default()
        .security_context
        .get_or_insert_default()
        .namespace_options
        .get_or_insert_default()
}

/// Runs a sandbox whose namespace options `edit` sets.
async fn pod_with(
    ctx: &Ctx,
    edit: impl FnOnce(&mut NamespaceOption),
) -> Result<(String, PodSandboxConfig), Stop> {
    ctx.run_sandbox_with("pod", |c| edit(sandbox_namespaces(c)))
        .await
}

/// The sandbox's namespace options, as the kubelet copies them into each container.
fn pod_namespaces(sandbox: &(String, PodSandboxConfig)) -> NamespaceOption {
    sandbox
        .1
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

/// Starts a sleeping container (`sleep <seconds>`) whose namespace options are the pod's
/// changed by `edit`.
async fn start_in(
    ctx: &Ctx,
    sandbox: &(String, PodSandboxConfig),
    name: &str,
    seconds: &str,
    edit: impl FnOnce(&mut NamespaceOption),
) -> Result<String, Stop> {
    let mut namespaces = pod_namespaces(sandbox);
    edit(&mut namespaces);
    ctx.start_container_with(sandbox, name, &["sleep", seconds], |c| {
        c.linux
            .get_or_insert_default()
            .security_context
            .get_or_insert_default()
            .namespace_options = Some(namespaces);
    })
    .await
}

/// The namespace `kind` of a process in the container (`pid:[4026531836]`).
async fn container_ns(ctx: &Ctx, id: &str, kind: &str) -> Result<String, Stop> {
    let link = ctx
        .exec_ok(id, &["readlink", &format!("/proc/self/ns/{kind}")])
        .await?;
    Ok(link.trim().to_string())
}

/// The namespace `kind` of the suite process, on the runtime's host.
fn host_ns(kind: &str) -> Result<String, Stop> {
    let path = format!("/proc/self/ns/{kind}");
    match std::fs::read_link(&path) {
        Ok(link) => Ok(link.display().to_string()),
        Err(e) => skip(format!("the suite cannot read its own {path}: {e}")),
    }
}

/// A container in a pod whose `kind` namespace is the host's (as `edit` sets) is in the
/// suite's namespace.
async fn host_namespace(
    ctx: Ctx,
    kind: &str,
    edit: impl FnOnce(&mut PodSandboxConfig),
) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox_with("pod", edit).await?;
    let id = start_in(&ctx, &sandbox, "host", "3600", |_| {}).await?;
    let inside = container_ns(&ctx, &id, kind).await?;
    let host = host_ns(kind)?;
    expect_eq(
        &format!("/proc/self/ns/{kind} in the container equals the host's"),
        host,
        inside,
    )
}

async fn host_pid(ctx: Ctx) -> Result<(), Stop> {
    host_namespace(ctx, "pid", |c| {
        sandbox_namespaces(c).pid = NamespaceMode::Node as i32;
    })
    .await
}

async fn host_ipc(ctx: Ctx) -> Result<(), Stop> {
    host_namespace(ctx, "ipc", |c| {
        sandbox_namespaces(c).ipc = NamespaceMode::Node as i32;
    })
    .await
}

async fn host_network(ctx: Ctx) -> Result<(), Stop> {
    host_namespace(ctx, "net", |c| {
        sandbox_namespaces(c).network = NamespaceMode::Node as i32;
        // No UTS namespace of its own either: the kubelet sends no hostname then.
        c.hostname = String::new();
    })
    .await
}

async fn pod_pid_shared(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = pod_with(&ctx, |ns| ns.pid = NamespaceMode::Pod as i32).await?;
    let a = start_in(&ctx, &sandbox, "first", "3601", |_| {}).await?;
    let b = start_in(&ctx, &sandbox, "second", "3602", |_| {}).await?;
    let ns_a = container_ns(&ctx, &a, "pid").await?;
    let ns_b = container_ns(&ctx, &b, "pid").await?;
    expect_eq(
        "the PID namespaces of two containers of a pid POD pod",
        ns_a.as_str(),
        ns_b.as_str(),
    )?;
    let host = host_ns("pid")?;
    check(
        ns_a != host,
        "the pod's PID namespace is not the host's",
        format!("not {host}"),
        &ns_a,
    )?;
    // Each sees the other's main process.
    let processes = ctx.exec_ok(&b, &["ps"]).await?;
    check(
        processes.contains("sleep 3601") && processes.contains("sleep 3602"),
        "a container of a pid POD pod sees the other container's process",
        "sleep 3601 and sleep 3602",
        processes,
    )
}

/// The command line of PID 1 in the container's PID namespace, arguments joined by spaces.
async fn pid1_cmdline(ctx: &Ctx, id: &str) -> Result<String, Stop> {
    let raw = ctx.exec_ok(id, &["cat", "/proc/1/cmdline"]).await?;
    Ok(raw
        .split('\0')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" "))
}

async fn container_pid_private(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = pod_with(&ctx, |ns| ns.pid = NamespaceMode::Container as i32).await?;
    let a = start_in(&ctx, &sandbox, "first", "3601", |ns| {
        ns.pid = NamespaceMode::Container as i32;
    })
    .await?;
    let b = start_in(&ctx, &sandbox, "second", "3602", |ns| {
        ns.pid = NamespaceMode::Container as i32;
    })
    .await?;
    for (id, expected) in [(&a, "sleep 3601"), (&b, "sleep 3602")] {
        let cmdline = pid1_cmdline(&ctx, id).await?;
        expect_eq(
            "PID 1 in a pid CONTAINER container is its main process",
            expected,
            cmdline.as_str(),
        )?;
    }
    let ns_a = container_ns(&ctx, &a, "pid").await?;
    let ns_b = container_ns(&ctx, &b, "pid").await?;
    check(
        ns_a != ns_b,
        "two pid CONTAINER containers have different PID namespaces",
        format!("not {ns_a}"),
        &ns_b,
    )?;
    let host = host_ns("pid")?;
    check(
        ns_a != host,
        "a pid CONTAINER container is not in the host's PID namespace",
        format!("not {host}"),
        &ns_a,
    )
}

async fn target_pid(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = pod_with(&ctx, |ns| ns.pid = NamespaceMode::Container as i32).await?;
    let target = start_in(&ctx, &sandbox, "target", "3601", |ns| {
        ns.pid = NamespaceMode::Container as i32;
    })
    .await?;
    let target_id = target.clone();
    let joiner = start_in(&ctx, &sandbox, "joiner", "3602", |ns| {
        ns.pid = NamespaceMode::Target as i32;
        ns.target_id = target_id;
    })
    .await?;
    let ns_target = container_ns(&ctx, &target, "pid").await?;
    let ns_joiner = container_ns(&ctx, &joiner, "pid").await?;
    expect_eq(
        "the PID namespace of a pid TARGET container equals its target's",
        ns_target.as_str(),
        ns_joiner.as_str(),
    )?;
    let cmdline = pid1_cmdline(&ctx, &joiner).await?;
    expect_eq(
        "PID 1 seen from the joining container is the target's main process",
        "sleep 3601",
        cmdline.as_str(),
    )
}

async fn hostname(ctx: Ctx) -> Result<(), Stop> {
    if ctx.config().host_network {
        return skip(
            "host_network is configured: pods share the host's UTS namespace, so the hostname is the host's",
        );
    }
    const NAME: &str = "cri-testkit-uts";
    let sandbox = ctx
        .run_sandbox_with("pod", |c| c.hostname = NAME.to_string())
        .await?;
    let id = ctx
        .start_container(&sandbox, "named", ctx.sleeper())
        .await?;
    let name = ctx.exec_ok(&id, &["hostname"]).await?;
    expect_eq("`hostname` in the container", NAME, name.trim())
}

async fn dns_config(ctx: Ctx) -> Result<(), Stop> {
    let servers = ["10.254.0.10", "10.254.0.11"];
    let searches = ["cri-testkit.svc.example", "example.test"];
    let options = ["ndots:3", "timeout:2"];
    let sandbox = ctx
        .run_sandbox_with("pod", |c| {
            c.dns_config = Some(DnsConfig {
                servers: servers.iter().map(|s| s.to_string()).collect(),
                searches: searches.iter().map(|s| s.to_string()).collect(),
                options: options.iter().map(|s| s.to_string()).collect(),
            });
        })
        .await?;
    let id = ctx
        .start_container(&sandbox, "resolver", ctx.sleeper())
        .await?;
    let resolv = ctx.exec_ok(&id, &["cat", "/etc/resolv.conf"]).await?;
    let lines: Vec<Vec<&str>> = resolv
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let nameservers: Vec<&str> = lines
        .iter()
        .filter(|l| l.first() == Some(&"nameserver"))
        .filter_map(|l| l.get(1).copied())
        .collect();
    expect_eq(
        "nameserver lines of /etc/resolv.conf",
        servers.to_vec(),
        nameservers,
    )?;
    let search: Vec<&str> = lines
        .iter()
        .filter(|l| l.first() == Some(&"search"))
        .flat_map(|l| l[1..].iter().copied())
        .collect();
    expect_eq(
        "search domains of /etc/resolv.conf",
        searches.to_vec(),
        search,
    )?;
    let opts: Vec<&str> = lines
        .iter()
        .filter(|l| l.first() == Some(&"options"))
        .flat_map(|l| l[1..].iter().copied())
        .collect();
    check(
        options.iter().all(|o| opts.contains(o)),
        "options of /etc/resolv.conf include DNSConfig.options",
        options,
        &resolv,
    )
}
