//! Network: port mappings and the pod IP.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use cri_client::cri_api::v1::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::case;
use crate::conformance::ctx::{check, expect_eq, skip};
use crate::conformance::{Case, Ctx, Stop};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "network",
            "port-mapping-container-port",
            "a sandbox with a port mapping for container port 80/TCP runs and reports READY",
            port_mapping_container_port
        ),
        case!(
            "network",
            "port-mapping-host-port",
            "a host port mapping (own network namespace) forwards 127.0.0.1:host_port to the pod's port 80",
            port_mapping_host_port
        ),
        case!(
            "network",
            "pod-ip",
            "PodSandboxStatus reports the pod IP, and the container's interfaces carry it",
            pod_ip
        ),
    ]
}

/// Skips in host-network mode: the case needs the pod's own network namespace.
fn require_own_network(ctx: &Ctx, what: &str) -> Result<(), Stop> {
    if ctx.config().host_network {
        return skip(format!(
            "the suite runs pods in the host network (Config.host_network): {what} needs the pod's own network namespace"
        ));
    }
    Ok(())
}

/// Skips when the runtime reports its network is not ready (Status NetworkReady false).
async fn require_network_ready(ctx: &Ctx) -> Result<(), Stop> {
    let status = ctx.client().status(false).await?;
    let condition = status
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.r#type == "NetworkReady");
    match condition {
        Some(c) if !c.status => skip(format!(
            "the runtime's network is not ready (Status NetworkReady false: {} {})",
            c.reason, c.message
        )),
        _ => Ok(()),
    }
}

/// Starts a container that only sleeps and shows it runs real processes (skips on a
/// simulator, whose pods have no network).
async fn require_real_processes(
    ctx: &Ctx,
    sandbox: &(String, PodSandboxConfig),
) -> Result<String, Stop> {
    let probe = ctx.start_container(sandbox, "probe", ctx.sleeper()).await?;
    ctx.exec_ok(&probe, &["cat", "/proc/self/cgroup"]).await?;
    Ok(probe)
}

async fn port_mapping_container_port(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx
        .run_sandbox_with("pod", |c| {
            c.port_mappings = vec![PortMapping {
                protocol: Protocol::Tcp as i32,
                container_port: 80,
                ..Default::default()
            }];
        })
        .await?;
    let status = ctx
        .client()
        .pod_sandbox_status(&sandbox.0, false)
        .await?
        .status;
    expect_eq(
        "sandbox state",
        Some(PodSandboxState::SandboxReady),
        status.as_ref().map(PodSandboxStatus::state),
    )?;
    let id = ctx.start_container(&sandbox, "app", ctx.sleeper()).await?;
    expect_eq(
        "a container in the sandbox",
        ContainerState::ContainerRunning,
        ctx.container_status(&id).await?.state(),
    )
}

/// A host port unlikely to be in use: 12000 + a few bits of the clock.
fn random_host_port() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    12_000 + (nanos / 1000 % 8000) as u16
}

/// One HTTP/1.0 GET to `host:port`; the whole answer.
async fn http_get(host: &str, port: u16) -> std::io::Result<String> {
    let mut stream = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no connection in 3 s"))??;
    stream
        .write_all(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut answer))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 3 s"))??;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

async fn port_mapping_host_port(ctx: Ctx) -> Result<(), Stop> {
    require_own_network(&ctx, "a host port mapping")?;
    require_network_ready(&ctx).await?;
    let host_port = random_host_port();
    let sandbox = ctx
        .run_sandbox_with("pod", |c| {
            c.port_mappings = vec![PortMapping {
                protocol: Protocol::Tcp as i32,
                container_port: 80,
                host_port: i32::from(host_port),
                ..Default::default()
            }];
        })
        .await?;
    let ip = ctx
        .client()
        .pod_sandbox_status(&sandbox.0, false)
        .await?
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default();
    if ip.is_empty() {
        return skip(
            "the pod has no IP (PodSandboxStatus.network.ip empty: a loopback-only network, no CNI): no host port can reach it",
        );
    }
    require_real_processes(&ctx, &sandbox).await?;
    let server = ctx
        .start_container(
            &sandbox,
            "server",
            &[
                "sh",
                "-c",
                "mkdir -p /www && echo hello-from-the-pod > /www/index.html && exec httpd -f -p 80 -h /www",
            ],
        )
        .await?;
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(15) {
        match http_get("127.0.0.1", host_port).await {
            Ok(answer) if answer.contains("hello-from-the-pod") => return Ok(()),
            Ok(answer) => last = format!("answer {answer:?}"),
            Err(e) => last = e.to_string(),
        }
        let status = ctx.container_status(&server).await?;
        if status.state() == ContainerState::ContainerExited {
            return check(
                false,
                "the httpd container serves",
                "running",
                format!(
                    "exited {} ({}); log {}",
                    status.exit_code,
                    status.reason,
                    std::fs::read_to_string(&status.log_path).unwrap_or_default()
                ),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Whether the pod itself serves tells a missing forward from a silent server.
    let direct = match http_get(&ip, 80).await {
        Ok(answer) if answer.contains("hello-from-the-pod") => format!(
            "the pod answers at {ip}:80, so nothing forwards the host port: does the runtime's CNI network chain a plugin with the portMappings capability, such as portmap?"
        ),
        Ok(answer) => format!("{ip}:80 answers {answer:?}"),
        Err(e) => format!("{ip}:80 does not answer either: {e}"),
    };
    check(
        false,
        &format!("GET http://127.0.0.1:{host_port}/ (host port → pod port 80)"),
        "hello-from-the-pod within 15 s",
        format!("{last}; {direct}"),
    )
}

/// How `ip` shows in the container's interface tables: `/proc/net/fib_trie` lists IPv4
/// local addresses as `|-- a.b.c.d`, `/proc/net/if_inet6` IPv6 ones as 32 hex digits.
fn address_listed(ip: IpAddr, fib_trie: &str, if_inet6: &str) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let needle = format!("|-- {v4}");
            fib_trie.lines().any(|l| l.trim() == needle)
        }
        IpAddr::V6(v6) => {
            let hex: String = v6.octets().iter().map(|b| format!("{b:02x}")).collect();
            if_inet6
                .lines()
                .any(|l| l.split_whitespace().next() == Some(hex.as_str()))
        }
    }
}

async fn pod_ip(ctx: Ctx) -> Result<(), Stop> {
    require_own_network(&ctx, "the pod IP")?;
    require_network_ready(&ctx).await?;
    let sandbox = ctx.run_sandbox("pod").await?;
    let status = ctx
        .client()
        .pod_sandbox_status(&sandbox.0, false)
        .await?
        .status
        .unwrap_or_default();
    let ip = status.network.map(|n| n.ip).unwrap_or_default();
    if ip.is_empty() {
        return skip(
            "the runtime reports no pod IP (PodSandboxStatus.network.ip empty): no CNI network",
        );
    }
    let parsed: Result<IpAddr, _> = ip.parse();
    check(
        parsed.is_ok(),
        "PodSandboxStatus.network.ip is an IP address",
        "an IPv4 or IPv6 address",
        &ip,
    )?;
    let parsed = parsed.expect("checked");
    if parsed.is_loopback() || parsed.is_unspecified() {
        return skip(format!(
            "the runtime reports only {ip} for the pod: a loopback-only network, no CNI address"
        ));
    }
    let probe = require_real_processes(&ctx, &sandbox).await?;
    let fib_trie = ctx
        .exec(&probe, &["cat", "/proc/net/fib_trie"])
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())?;
    let if_inet6 = ctx
        .exec(&probe, &["cat", "/proc/net/if_inet6"])
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())?;
    check(
        address_listed(parsed, &fib_trie, &if_inet6),
        &format!("the pod IP {ip} is an address of the container's interfaces"),
        &ip,
        format!("fib_trie:\n{fib_trie}\nif_inet6:\n{if_inet6}"),
    )
}
