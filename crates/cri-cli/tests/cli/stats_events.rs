//! `stats`, `statsp` and `events`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use cri_api::v1::{ContainerStats, UInt64Value};

use crate::common::{BIN, Env, assert_aligned, wait_for};

fn uint(value: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value })
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_table_json_and_yaml() {
    let env = Env::new().await;
    let pod = env.pod("p").await;
    let running = env
        .container(&pod, "app", &["sleep", "infinity"], true)
        .await;
    let created = env.container(&pod, "idle", &[], false).await;
    let mut stats: ContainerStats = env.client().container_stats(&running).await.unwrap();
    stats.cpu.as_mut().unwrap().usage_nano_cores = uint(250_000_000);
    stats.memory.as_mut().unwrap().working_set_bytes = uint(12_340_000);
    let disk = stats.writable_layer.as_mut().unwrap();
    disk.used_bytes = uint(4_096_000);
    disk.inodes_used = uint(42);
    env.fake.set_container_stats(&running, stats.clone());

    let out = env.cri(&["stats"]).await;
    let table = out.ok();
    assert_aligned(
        table,
        &["CONTAINER", "NAME", "CPU %", "MEM", "DISK", "INODES"],
    );
    assert_eq!(out.lines().len(), 2, "running only: {table}");
    let cells: Vec<&str> = out.lines()[1].split_whitespace().collect();
    assert_eq!(
        cells,
        [&running[..13], "app", "25.00", "12.3MB", "4.1MB", "42"]
    );

    let all = env.cri(&["stats", "-a", "--no-trunc"]).await;
    assert_eq!(all.lines().len(), 3);
    assert!(all.stdout.contains(&created), "{}", all.stdout);
    let one = env.cri(&["stats", "--no-trunc", &created[..8]]).await;
    assert_eq!(one.lines().len(), 2, "an explicit id shows it in any state");

    let json = env.cri(&["stats", "-o", "json"]).await.json();
    assert_eq!(
        json,
        serde_json::json!({"stats": [crate::common::json_of(&stats)]})
    );
    assert_eq!(
        json["stats"][0]["cpu"]["usageNanoCores"]["value"],
        "250000000"
    );
    assert_eq!(env.cri(&["stats", "-o", "yaml"]).await.yaml(), json);
}

#[tokio::test(flavor = "multi_thread")]
async fn statsp_table_json_and_yaml() {
    let env = Env::new().await;
    let pod = env.pod("web").await;
    let mut stats = env.client().pod_sandbox_stats(&pod).await.unwrap();
    let linux = stats.linux.as_mut().unwrap();
    linux.cpu.as_mut().unwrap().usage_nano_cores = uint(5_000_000);
    linux.memory.as_mut().unwrap().working_set_bytes = uint(2_000_000);
    env.fake.set_sandbox_stats(&pod, stats.clone());

    let out = env.cri(&["statsp"]).await;
    assert_aligned(out.ok(), &["POD", "POD ID", "CPU %", "MEM"]);
    let cells: Vec<&str> = out.lines()[1].split_whitespace().collect();
    assert_eq!(cells, ["web", &pod[..13], "0.50", "2MB"]);
    let full = env.cri(&["statsp", "--no-trunc", &pod[..6]]).await;
    assert!(full.ok().contains(&pod));

    let json = env.cri(&["statsp", "-o", "json"]).await.json();
    assert_eq!(
        json,
        serde_json::json!({"stats": [crate::common::json_of(&stats)]})
    );
    assert_eq!(env.cri(&["statsp", "-o", "yaml"]).await.yaml(), json);
}

/// Starts `cri events` and returns the child once the runtime has its subscription.
async fn spawn_events(env: &Env, output: &str) -> std::process::Child {
    let child = Command::new(BIN)
        .args([
            "-r",
            &env.endpoint,
            "--config",
            &env.write("c.yaml", ""),
            "events",
            "-o",
            output,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let before = env.fake.events().subscribers();
    wait_for(|| async { env.fake.events().subscribers() > before }).await;
    child
}

async fn read_lines(child: &mut std::process::Child, count: usize) -> Vec<String> {
    let stdout = child.stdout.take().unwrap();
    tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .take(count)
            .map(Result::unwrap)
            .collect()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn events_stream_json_lines_and_table_rows() {
    let env = Env::new().await;
    let pod = env.pod("p").await;

    let mut json_child = spawn_events(&env, "json").await;
    let mut table_child = spawn_events(&env, "table").await;
    let id = env
        .container(&pod, "app", &["sleep", "infinity"], true)
        .await;

    let lines = read_lines(&mut json_child, 2).await;
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["containerId"], id.as_str());
    assert_eq!(events[0]["containerEventType"], "CONTAINER_CREATED_EVENT");
    assert_eq!(events[1]["containerEventType"], "CONTAINER_STARTED_EVENT");
    assert_eq!(events[1]["podSandboxStatus"]["id"], pod.as_str());

    let rows = read_lines(&mut table_child, 3).await;
    assert!(
        rows[0].starts_with("TIME") && rows[0].contains("EVENT"),
        "{rows:?}"
    );
    assert!(
        rows[1].contains(&id[..13]) && rows[1].contains("Created"),
        "{rows:?}"
    );
    assert!(
        rows[2].contains("Started") && rows[2].contains(&pod[..13]),
        "{rows:?}"
    );
    assert_eq!(
        rows[1].find("Created"),
        rows[2].find("Started"),
        "fixed columns"
    );

    for mut child in [json_child, table_child] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
