//! CNI networking (`--cni-conf-dir`), with Debian's containernetworking-plugins: pods with
//! their own network namespace get an address on a bridge (`bridge` + `host-local`), reach
//! each other and are reached from the host, keep their addresses across a runtime restart
//! and give them back when stopped; a configured directory without a usable network makes
//! NetworkReady false; and the conformance suite passes with CNI on.
//!
//! Each test uses its own bridge (`crirs<pid>n<k>`) and subnet (`10.<237+k>.<pid % 200>.0/24`),
//! deleted on drop even when the test fails.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::cni::{Network, PLUGINS, requirements};
use common::{Runtime, wait_for};
use cri_client::cri_api::v1::*;
use cri_client::cri_api::well_known::condition;
use cri_testkit::conformance::{Config, Outcome, Suite};

/// The pod's `(ip, additional_ips)` from PodSandboxStatus.
async fn pod_ips(runtime: &Runtime, id: &str) -> (String, Vec<String>) {
    let network = runtime
        .client
        .pod_sandbox_status(id, false)
        .await
        .unwrap()
        .status
        .and_then(|s| s.network)
        .unwrap_or_default();
    (
        network.ip,
        network.additional_ips.into_iter().map(|i| i.ip).collect(),
    )
}

async fn network_condition(runtime: &Runtime) -> RuntimeCondition {
    runtime
        .client
        .status(false)
        .await
        .unwrap()
        .status
        .unwrap_or_default()
        .conditions
        .into_iter()
        .find(|c| c.r#type == condition::NETWORK_READY)
        .expect("a NetworkReady condition")
}

/// The NAT rules of every table, as `iptables-save` prints them.
fn nat_rules() -> String {
    let out = Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .expect("iptables-save (apt-get install iptables)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a pod may leave on the host: NAT rules naming it, mounts of its directory, and
/// its cgroups.
fn traces_of(runtime: &Runtime, pod_id: &str, config: &PodSandboxConfig) -> Vec<String> {
    let mut traces: Vec<String> = nat_rules()
        .lines()
        .filter(|l| l.contains(pod_id))
        .map(str::to_string)
        .collect();
    let pod_dir = runtime.root.join("pods").join(pod_id);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    traces.extend(
        mounts
            .lines()
            .filter(|l| l.contains(&pod_dir.display().to_string()))
            .map(|l| format!("mount: {l}")),
    );
    let parent = config
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .unwrap_or_default();
    for controller in ["memory", "cpu", "pids", "devices"] {
        let path = Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(parent.trim_start_matches('/'));
        if path.exists() {
            traces.push(format!("cgroup: {}", path.display()));
        }
    }
    traces
}

/// `GET /index.html` from `ip:port`, from the host's network namespace.
fn http_get(ip: &str, port: u16) -> std::io::Result<String> {
    let address = SocketAddr::new(ip.parse().map_err(std::io::Error::other)?, port);
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_addresses_on_a_bridge() {
    let Some(images) = requirements() else {
        return;
    };
    let network = Network::new(0);
    let mut runtime = Runtime::start(common::Options {
        imports: vec![images.dir.join("busybox.tar"), images.dir.join("pause.tar")],
        args: network.args(),
        ..Default::default()
    })
    .await;
    let ready = network_condition(&runtime).await;
    assert!(ready.status, "{ready:?}\n{}", runtime.log());

    let config_a = runtime.pod_config("cni-a", true);
    let config_b = runtime.pod_config("cni-b", true);
    let a = runtime
        .client
        .run_pod_sandbox(config_a.clone(), "")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", runtime.log()));
    let b = runtime
        .client
        .run_pod_sandbox(config_b.clone(), "")
        .await
        .unwrap();
    let (ip_a, more_a) = pod_ips(&runtime, &a).await;
    let (ip_b, _) = pod_ips(&runtime, &b).await;
    assert!(ip_a.starts_with(&network.prefix), "{ip_a}");
    assert!(ip_b.starts_with(&network.prefix), "{ip_b}");
    assert_ne!(ip_a, ip_b);
    assert!(more_a.is_empty(), "{more_a:?}");
    let mut both = vec![ip_a.clone(), ip_b.clone()];
    both.sort();
    assert_eq!(network.leases(), both);

    // A host-network pod never touches CNI.
    let host_pod = runtime
        .client
        .run_pod_sandbox(runtime.pod_config("cni-host", false), "")
        .await
        .unwrap();
    assert_eq!(pod_ips(&runtime, &host_pod).await.0, "");
    assert_eq!(network.leases().len(), 2);

    // Pod B serves HTTP on its address; pod A and the host fetch from it.
    let server = runtime
        .client
        .create_container(
            &b,
            Runtime::container_config(
                "server",
                &images.busybox,
                &[
                    "sh",
                    "-c",
                    "mkdir -p /www && echo pong-from-b > /www/index.html && exec httpd -f -p 8080 -h /www",
                ],
            ),
            Some(config_b.clone()),
        )
        .await
        .unwrap();
    runtime.client.start_container(&server).await.unwrap();
    let client = runtime
        .client
        .create_container(
            &a,
            Runtime::container_config("client", &images.busybox, &["sleep", "3600"]),
            Some(config_a.clone()),
        )
        .await
        .unwrap();
    runtime.client.start_container(&client).await.unwrap();

    let url = format!("http://{ip_b}:8080/index.html");
    let fetched = wait_for("pod A to fetch from pod B", Duration::from_secs(30), || {
        let (runtime, client, url) = (&runtime, &client, &url);
        async move {
            let out = runtime
                .client
                .exec_sync(
                    client,
                    ["wget", "-q", "-O", "-", url.as_str()],
                    Duration::from_secs(10),
                )
                .await
                .ok()?;
            out.success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        }
    })
    .await;
    assert_eq!(fetched.trim(), "pong-from-b");
    // Pod A's eth0 has its address.
    let addresses = runtime
        .client
        .exec_sync(
            &client,
            ["ip", "-4", "addr", "show", "eth0"],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&addresses.stdout).contains(&format!("inet {ip_a}/24")),
        "{addresses:?}"
    );
    let ip = ip_b.clone();
    let answer = tokio::task::spawn_blocking(move || http_get(&ip, 8080))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.contains("pong-from-b"), "{answer}");

    // A restarted runtime still reports the addresses, and releases them.
    runtime.kill();
    runtime.spawn().await;
    assert_eq!(pod_ips(&runtime, &a).await.0, ip_a);
    assert_eq!(pod_ips(&runtime, &b).await.0, ip_b);

    for (id, ip) in [(&a, &ip_a), (&b, &ip_b)] {
        runtime.client.stop_pod_sandbox(id).await.unwrap();
        assert!(!network.leases().contains(ip), "{ip} still leased");
        assert_eq!(pod_ips(&runtime, id).await.0, "");
        // Idempotent: a second stop runs no DEL and succeeds.
        runtime.client.stop_pod_sandbox(id).await.unwrap();
    }
    assert_eq!(network.leases(), Vec::<String>::new());

    // Removal unpins the namespaces: nothing stays mounted under the pods.
    for id in [&a, &b, &host_pod] {
        runtime.client.remove_pod_sandbox(id).await.unwrap();
    }
    let pods = format!("{}/", runtime.root.join("pods").display());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.lines().any(|l| l.contains(&pods)),
        "left mounted under {pods}"
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_is_not_ready_without_a_usable_config() {
    let Some(images) = requirements() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    let runtime = Runtime::start(common::Options {
        imports: vec![images.dir.join("busybox.tar"), images.dir.join("pause.tar")],
        args: vec![
            "--cni-conf-dir".into(),
            conf.display().to_string(),
            "--cni-bin-dir".into(),
            PLUGINS.into(),
        ],
        ..Default::default()
    })
    .await;
    let empty = network_condition(&runtime).await;
    assert!(!empty.status);
    assert_eq!(empty.reason, "NetworkPluginNotReady");
    assert!(
        empty.message.contains(&conf.display().to_string()),
        "{empty:?}"
    );

    // A pod that needs the network is refused, and leaves nothing behind.
    let err = runtime
        .client
        .run_pod_sandbox(runtime.pod_config("cni-refused", true), "")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not ready"), "{err}");
    assert!(
        runtime
            .client
            .list_pod_sandbox(None)
            .await
            .unwrap()
            .is_empty()
    );
    // A host-network pod does not need it.
    let host_pod = runtime
        .client
        .run_pod_sandbox(runtime.pod_config("cni-host-only", false), "")
        .await
        .unwrap();
    runtime.client.stop_pod_sandbox(&host_pod).await.unwrap();
    runtime.client.remove_pod_sandbox(&host_pod).await.unwrap();

    // An invalid config is named with its field; a valid one makes the network ready.
    std::fs::write(
        conf.join("10-bad.conflist"),
        r#"{"cniVersion":"1.0.0","name":"x"}"#,
    )
    .unwrap();
    let invalid = network_condition(&runtime).await;
    assert!(!invalid.status);
    assert!(
        invalid
            .message
            .contains("10-bad.conflist: plugins: missing"),
        "{invalid:?}"
    );
    std::fs::write(
        conf.join("20-good.conf"),
        r#"{"cniVersion":"1.0.0","name":"good","type":"bridge","bridge":"unused0"}"#,
    )
    .unwrap();
    assert!(network_condition(&runtime).await.status);
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_cni() {
    let Some(images) = requirements() else {
        return;
    };
    // Bridge + portmap: the host-port cases run too.
    let network = Network::with_plugins(
        1,
        vec![serde_json::json!({
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "snat": true,
        })],
    );
    let registry = common::registry(&images).await;
    let runtime = Runtime::start(common::Options {
        registry: Some(registry.endpoint()),
        args: network.args(),
        ..Default::default()
    })
    .await;
    let config = Config {
        image: images.busybox.clone(),
        pull_image: Some(images.busybox.clone()),
        removable_image: Some(images.removable.clone()),
        host_network: false,
        log_root: Some(runtime.log_root.clone()),
        ..Default::default()
    };
    let report = Suite::new(config).run(&runtime.client).await;
    println!("{}", report.human(false));
    let s = report.summary();
    println!(
        "runc-runtime (CNI bridge): {} passed, {} skipped, {} failed",
        s.passed, s.skipped, s.failed
    );
    // Only what this host or runtime lacks skips: AppArmor, image volumes.
    let not_passed: Vec<String> = report
        .results
        .iter()
        .filter(|r| !matches!(r.outcome, Outcome::Passed))
        .map(|r| r.id.clone())
        .filter(|id| id != "security/apparmor" && id != "mounts/image-volume")
        .collect();
    let log = runtime.log();
    runtime.shutdown().await;
    registry.shutdown().await;
    assert!(
        not_passed.is_empty(),
        "not passed: {not_passed:?}\n{}\nruntime log:\n{log}",
        report.human(false)
    );
    assert!(s.passed >= 114, "{s:?}");
    // Every pod's address went back.
    assert_eq!(network.leases(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_ports_reach_the_pod_and_leave_nothing_behind() {
    let Some(images) = requirements() else {
        return;
    };
    let network = Network::with_plugins(
        2,
        vec![serde_json::json!({
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "snat": true,
        })],
    );
    let runtime = Runtime::start(common::Options {
        imports: vec![images.dir.join("busybox.tar"), images.dir.join("pause.tar")],
        args: network.args(),
        ..Default::default()
    })
    .await;
    let host_port = 12000 + (std::process::id() % 1000) as i32;
    let mut config = runtime.pod_config("ports", true);
    config.port_mappings = vec![
        PortMapping {
            protocol: Protocol::Tcp as i32,
            container_port: 80,
            host_port,
            host_ip: String::new(),
        },
        // A container port alone needs no plumbing.
        PortMapping {
            protocol: Protocol::Tcp as i32,
            container_port: 8080,
            ..Default::default()
        },
    ];
    let pod = runtime
        .client
        .run_pod_sandbox(config.clone(), "")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", runtime.log()));
    let server = runtime
        .client
        .create_container(
            &pod,
            Runtime::container_config(
                "web",
                &images.busybox,
                &[
                    "sh",
                    "-c",
                    "mkdir -p /www && echo hello-through-host-port > /www/index.html && exec httpd -f -p 80 -h /www",
                ],
            ),
            Some(config.clone()),
        )
        .await
        .unwrap();
    runtime.client.start_container(&server).await.unwrap();
    // The pod's own chains: the targets of the rules that name it.
    let own_chains: Vec<String> = nat_rules()
        .lines()
        .filter(|l| l.contains(&pod))
        .filter_map(|l| l.split(" -j ").nth(1))
        .map(|target| target.split(' ').next().unwrap_or_default().to_string())
        .filter(|target| target.starts_with("CNI-DN-"))
        .collect();
    assert!(
        !own_chains.is_empty(),
        "portmap wrote a DNAT chain for the pod\n{}\n{}",
        nat_rules(),
        runtime.log()
    );
    let (pod_ip, _) = pod_ips(&runtime, &pod).await;
    assert!(nat_rules().contains(&format!("{pod_ip}:80")));

    let port = host_port as u16;
    let answer = wait_for(
        "the host port to answer",
        Duration::from_secs(30),
        || async move {
            tokio::task::spawn_blocking(move || http_get("127.0.0.1", port).ok())
                .await
                .unwrap()
        },
    )
    .await;
    assert!(answer.contains("hello-through-host-port"), "{answer}");

    runtime.client.stop_pod_sandbox(&pod).await.unwrap();
    runtime.client.remove_pod_sandbox(&pod).await.unwrap();
    let traces = traces_of(&runtime, &pod, &config);
    assert!(traces.is_empty(), "left behind: {traces:#?}");
    assert_eq!(network.leases(), Vec::<String>::new());
    // portmap's shared chains (CNI-HOSTPORT-*) stay, as with every runtime; nothing of the
    // pod may: not its DNAT chain, nor a rule with its address.
    let after = nat_rules();
    let leftovers: Vec<&str> = after
        .lines()
        .filter(|l| own_chains.iter().any(|c| l.contains(c.as_str())) || l.contains(&pod_ip))
        .collect();
    assert!(
        leftovers.is_empty(),
        "NAT rules of the pod left: {leftovers:#?}"
    );
    assert!(
        http_get("127.0.0.1", port).is_err(),
        "the host port still answers"
    );
    runtime.shutdown().await;
}
