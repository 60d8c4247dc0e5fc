//! Behaviour the conformance suite does not pin down: log rotation, ExecSync timeouts that
//! kill the command, real stats, resource updates reaching the cgroup, the OOM-kill reason,
//! a negative `oom_score_adj` clamped on a host without CAP_SYS_RESOURCE, and which
//! executable runs the monitors.

mod common;

use std::time::Duration;

use common::{Pod, Runtime, status, wait_for};
use cri_client::cri_api::log::Record;
use cri_client::cri_api::v1::*;

/// Helpers to run containers in the pod.
impl Pod {
    async fn run(&self, config: ContainerConfig) -> String {
        let id = self
            .runtime
            .client
            .create_container(&self.id, config, Some(self.config.clone()))
            .await
            .unwrap();
        self.runtime.client.start_container(&id).await.unwrap();
        id
    }

    fn config(&self, name: &str, command: &[&str]) -> ContainerConfig {
        Runtime::container_config(name, &self.image, command)
    }

    /// The cgroupfs path of a container (`linux.cgroupsPath` of its spec).
    async fn cgroup(&self, id: &str) -> String {
        let info = self
            .runtime
            .client
            .container_status(id, true)
            .await
            .unwrap()
            .info;
        let info: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
        info["cgroupPath"].as_str().unwrap().to_string()
    }
}

/// `(stream, content)` of each record in the log file at `path`.
fn records(path: &std::path::Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let r = Record::parse(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
            (r.stream.to_string(), r.content.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_survive_rotation() {
    let Some(pod) = Pod::start("logs").await else {
        return;
    };
    let id = pod
        .run(pod.config(
            "talker",
            &[
                "sh",
                "-c",
                "i=0; while true; do echo out-$i; echo err-$i >&2; i=$((i+1)); sleep 0.05; done",
            ],
        ))
        .await;
    let log = std::path::PathBuf::from(status(&pod.runtime.client, &id).await.log_path);
    wait_for("log lines", Duration::from_secs(10), || async {
        (records(&log).len() >= 6).then_some(())
    })
    .await;
    // Rotate as the kubelet does: rename, then ReopenContainerLog.
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).unwrap();
    pod.runtime.client.reopen_container_log(&id).await.unwrap();
    wait_for("lines in the new file", Duration::from_secs(10), || async {
        (records(&log).len() >= 6).then_some(())
    })
    .await;
    pod.runtime
        .client
        .stop_container(&id, Duration::from_secs(5))
        .await
        .unwrap();
    // Across both files, each stream's lines are complete and in order: nothing lost.
    let all: Vec<_> = records(&rotated).into_iter().chain(records(&log)).collect();
    for (stream, prefix) in [("stdout", "out"), ("stderr", "err")] {
        let lines: Vec<&String> = all
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, l)| l)
            .collect();
        assert!(lines.len() >= 6, "{lines:?}");
        for (n, line) in lines.iter().enumerate() {
            assert_eq!(**line, format!("{prefix}-{n}"));
        }
    }
    // A stopped container's log cannot be reopened.
    let err = pod
        .runtime
        .client
        .reopen_container_log(&id)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not running"), "{err}");
    pod.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_timeout_kills_the_command() {
    let Some(pod) = Pod::start("exec-timeout").await else {
        return;
    };
    let id = pod.run(pod.config("sleeper", &["sleep", "3600"])).await;
    let result = pod
        .runtime
        .client
        .exec_sync(&id, ["sleep", "31"], Duration::from_secs(1))
        .await;
    assert!(
        matches!(result, Err(cri_client::Error::ExecSyncTimeout { .. })),
        "{result:?}"
    );
    let ps = pod
        .runtime
        .client
        .exec_sync(&id, ["ps", "-o", "args"], Duration::from_secs(10))
        .await
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(ps.contains("sleep 3600"), "{ps}");
    assert!(
        !ps.contains("sleep 31"),
        "the timed-out command was killed:\n{ps}"
    );
    // Output and exit codes of a normal command.
    let out = pod
        .runtime
        .client
        .exec_sync(
            &id,
            ["sh", "-c", "echo o; echo e >&2; exit 4"],
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(
        (out.stdout, out.stderr, out.exit_code),
        (b"o\n".to_vec(), b"e\n".to_vec(), 4)
    );
    pod.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_resources_and_oom() {
    let Some(pod) = Pod::start("stats").await else {
        return;
    };
    let client = pod.runtime.client.clone();

    // Stats are real numbers: CPU burnt, memory held, bytes written to the writable layer.
    let busy = pod
        .run(pod.config(
            "busy",
            &["sh", "-c", "head -c 3000000 /dev/zero > /filler; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 3600"],
        ))
        .await;
    let stats = wait_for("CPU use to show", Duration::from_secs(20), || async {
        let stats = client.container_stats(&busy).await.unwrap();
        let cpu = stats.cpu.as_ref()?.usage_core_nano_seconds.as_ref()?.value;
        let layer = stats.writable_layer.as_ref()?.used_bytes.as_ref()?.value;
        (cpu > 0 && layer >= 3_000_000).then_some(stats)
    })
    .await;
    let memory = stats.memory.unwrap();
    assert!(memory.working_set_bytes.unwrap().value > 0);
    assert!(memory.usage_bytes.unwrap().value >= memory.working_set_bytes.unwrap().value);
    let pod_stats = client.pod_sandbox_stats(&pod.id).await.unwrap();
    let linux = pod_stats.linux.unwrap();
    assert!(linux.cpu.unwrap().usage_core_nano_seconds.unwrap().value > 0);
    assert_eq!(linux.containers.len(), 1);

    // UpdateContainerResources reaches the cgroup files and ContainerStatus.
    let cgroup = pod.cgroup(&busy).await;
    let file = |controller: &str, name: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{controller}{cgroup}/{name}"))
            .unwrap()
            .trim()
            .to_string()
    };
    client
        .call(UpdateContainerResourcesRequest {
            container_id: busy.clone(),
            linux: Some(LinuxContainerResources {
                cpu_shares: 512,
                cpu_period: 100_000,
                cpu_quota: 50_000,
                memory_limit_in_bytes: 256 << 20,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(file("cpu", "cpu.shares"), "512");
    assert_eq!(file("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(
        file("memory", "memory.limit_in_bytes"),
        (256u64 << 20).to_string()
    );
    let reported = status(&client, &busy)
        .await
        .resources
        .unwrap()
        .linux
        .unwrap();
    assert_eq!(reported.cpu_shares, 512);
    let bad = client
        .call(UpdateContainerResourcesRequest {
            container_id: busy.clone(),
            linux: Some(LinuxContainerResources {
                cpu_shares: -1,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("cpu_shares"), "{bad}");

    // A container over its memory limit is OOM-killed, and says so.
    let mut hog = pod.config("hog", &["sh", "-c", "tail /dev/zero"]);
    hog.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 32 << 20,
            memory_swap_limit_in_bytes: 32 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let hog = pod.run(hog).await;
    let ended = wait_for("the OOM kill", Duration::from_secs(60), || async {
        let s = status(&client, &hog).await;
        (s.state() == ContainerState::ContainerExited).then_some(s)
    })
    .await;
    assert_eq!(
        (ended.reason.as_str(), ended.exit_code),
        ("OOMKilled", 137),
        "{ended:?}"
    );
    pod.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_oom_score_adj_is_clamped() {
    let Some(pod) = Pod::start("oom-score").await else {
        return;
    };
    let ours: i64 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut config = pod.config("important", &["sleep", "3600"]);
    config.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            oom_score_adj: -500,
            ..Default::default()
        }),
        ..Default::default()
    });
    // Without CAP_SYS_RESOURCE runc could not set -500: the runtime clamps it to its own
    // score, and the container starts.
    let id = pod.run(config).await;
    assert_eq!(
        status(&pod.runtime.client, &id).await.state(),
        ContainerState::ContainerRunning
    );
    let out = pod
        .runtime
        .client
        .exec_sync(
            &id,
            ["cat", "/proc/1/oom_score_adj"],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let score: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let info = pod.runtime.client.status(true).await.unwrap().info;
    let clamping = info["config"].contains("\"restrictOomScoreAdj\":true");
    if clamping {
        assert_eq!(score, ours.max(-500), "clamped to the runtime's own score");
    } else {
        assert_eq!(score, -500);
    }
    pod.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_returns_when_the_command_exits() {
    let Some(pod) = Pod::start("exec-background").await else {
        return;
    };
    let id = pod.run(pod.config("sleeper", &["sleep", "3600"])).await;
    // The background sleep keeps the output pipes open long after the command is done;
    // ExecSync answers when the command exits, not when its output ends.
    let out = pod
        .runtime
        .client
        .exec_sync(
            &id,
            ["sh", "-c", "sleep 30 & echo started"],
            Duration::from_secs(10),
        )
        .await;
    let out = match out {
        Ok(out) => out,
        Err(e) => panic!("ExecSync of a command leaving a background child failed: {e}"),
    };
    assert_eq!((out.stdout, out.exit_code), (b"started\n".to_vec(), 0));
    pod.runtime.shutdown().await;
}

/// Monitors run `runc-runtime-monitor` when it lies beside the runtime's binary (as cargo
/// builds them), and the runtime's own `monitor` subcommand when it does not (as under
/// `cargo run`, which builds one binary); containers run and exec either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_run_the_monitor_binary_or_the_subcommand() {
    let Some(images) = common::requirements() else {
        return;
    };
    // A runtime binary alone in its directory: a hard link, on the target's file system.
    let alone = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let lone_exe = alone.path().join("runc-runtime");
    std::fs::hard_link(env!("CARGO_BIN_EXE_runc-runtime"), &lone_exe).unwrap();
    let cases = [
        (
            None,
            std::path::PathBuf::from(env!("CARGO_BIN_EXE_runc-runtime-monitor")),
        ),
        (Some(lone_exe.clone()), lone_exe),
    ];
    for (exe, expected) in cases {
        let runtime = Runtime::start(common::Options {
            imports: vec![images.dir.join("busybox.tar"), images.dir.join("pause.tar")],
            exe,
            ..Default::default()
        })
        .await;
        let config = runtime.pod_config("monitor-exe", false);
        let client = &runtime.client;
        let pod = client.run_pod_sandbox(config.clone(), "").await.unwrap();
        let container = Runtime::container_config("sleeper", &images.busybox, &["sleep", "60"]);
        let id = client
            .create_container(&pod, container, Some(config))
            .await
            .unwrap();
        client.start_container(&id).await.unwrap();
        let out = client
            .exec_sync(&id, ["echo", "alive"], Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!((out.exit_code, out.stdout.as_slice()), (0, &b"alive\n"[..]));
        let monitors = common::monitors_of(&runtime.root);
        assert_eq!(
            monitors.len(),
            2,
            "one for the pause container, one for sleeper"
        );
        for pid in monitors {
            let exe = std::fs::read_link(format!("/proc/{}/exe", pid.as_raw_nonzero())).unwrap();
            assert_eq!(exe, expected, "the executable of monitor {pid:?}");
        }
        runtime.shutdown().await;
    }
}
