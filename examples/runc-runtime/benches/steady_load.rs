//! The kubelet's steady load — relist of pods and containers every second, stats every 10 s —
//! against runc-runtime and containerd 1.6 holding the same pods: CPU per second and memory
//! of each runtime's processes.
//!
//! `cargo bench -p runc-runtime --bench steady_load` (as root, with the containerd peer
//! running: `scripts/containerd-peer start` and its `env` exported). Each runtime gets
//! `STEADY_PODS` kubelet-shaped pods (`cri_testkit::kubelet`; host network, one busybox
//! `sleep` container each). Then, in alternating windows of equal length (`STEADY_ROUNDS`
//! rounds, `STEADY_SECONDS` measured seconds per runtime in all, the order rotating each
//! round), one runtime gets the load while the other idles:
//!
//! - every second `ListPodSandbox` and `ListContainers`, unfiltered (the PLEG relist);
//! - every 10 s `ListContainerStats` and `ListPodSandboxStats`, unfiltered.
//!
//! Measured per runtime, for the daemon alone and for the daemon with its per-container
//! helpers (runc-runtime: its `runc-runtime-monitor` processes, one per container and pause
//! container; containerd: the `containerd-shim-runc-v2` processes of these pods, one per
//! pod): CPU seconds per second from `/proc/<pid>/stat` (user + system, plus that of reaped
//! children such as `runc` invocations), and at the end of every window `VmRSS` and, from
//! `smaps_rollup`, PSS (shared pages split between the processes sharing them). The
//! containers' own processes (pause, sleep) are the same on both sides and not counted. The
//! other runtime's CPU in the same window is its idle cost, printed too.
//!
//! Environment: `STEADY_PODS` (default 100), `STEADY_SECONDS` (per runtime, default 60),
//! `STEADY_ROUNDS` (default 2).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cri_api::v1::{Image, PodSandboxFilter};
use cri_testkit::bench::percentile;
use cri_testkit::cri_client::Client;
use cri_testkit::kubelet::{Container, Pod, Profile};

/// Label put on every pod of this bench (value: this process's id), for cleanup.
const BENCH_LABEL: &str = "cri-rs.dev/steady-load";
/// The kubelet cgroup root of the pods (`<root>/kubepods/besteffort/pod<uid>`).
const CGROUP_ROOT: &str = "/cri-rs-steady-load";
/// Pods created at the same time.
const CREATE_PARALLEL: usize = 4;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

// ----- processes -----

fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// Processes whose command line satisfies `wanted`.
fn pids_where(wanted: impl Fn(&[String]) -> bool) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|pid| cmdline(*pid).is_some_and(|args| wanted(&args)))
        .collect();
    pids.sort_unstable();
    pids
}

fn program_is(args: &[String], name: &str) -> bool {
    args.first()
        .is_some_and(|a| Path::new(a).file_name().is_some_and(|f| f == name))
}

fn has_pair(args: &[String], flag: &str, value: &str) -> bool {
    args.windows(2).any(|w| w[0] == flag && w[1] == value)
}

/// The process sets of one runtime.
struct Processes {
    daemon: Vec<i32>,
    helpers: Vec<i32>,
}

/// How to find a runtime's processes (looked up again at every sample).
enum Finder {
    Ours {
        root: PathBuf,
        socket: PathBuf,
    },
    Containerd {
        socket: String,
        pods: HashSet<String>,
    },
}

impl Finder {
    fn find(&self) -> Processes {
        match self {
            Finder::Ours { root, socket } => {
                let socket = socket.display().to_string();
                Processes {
                    daemon: pids_where(|a| {
                        program_is(a, "runc-runtime") && has_pair(a, "--socket", &socket)
                    }),
                    helpers: common::monitors_of(root)
                        .into_iter()
                        .map(|p| p.as_raw_nonzero().get())
                        .collect(),
                }
            }
            Finder::Containerd { socket, pods } => {
                let config = Path::new(socket)
                    .with_file_name("config.toml")
                    .display()
                    .to_string();
                Processes {
                    daemon: pids_where(|a| program_is(a, "containerd") && a.contains(&config)),
                    helpers: pids_where(|a| {
                        program_is(a, "containerd-shim-runc-v2")
                            && has_pair(a, "-address", socket)
                            && a.windows(2).any(|w| w[0] == "-id" && pods.contains(&w[1]))
                    }),
                }
            }
        }
    }
}

/// Clock ticks (user + system, own and of reaped children) of each process.
fn ticks(pids: &[i32]) -> HashMap<i32, u64> {
    pids.iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command name: state is field 3; utime..cstime are 14..17.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let sum = fields
                .get(11..15)?
                .iter()
                .map(|f| f.parse::<u64>().unwrap_or(0))
                .sum();
            Some((*pid, sum))
        })
        .collect()
}

/// CPU seconds spent by `pids` between two readings (a process new at the end counts whole).
fn cpu_seconds(before: &HashMap<i32, u64>, after: &HashMap<i32, u64>, tick: f64) -> f64 {
    after
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum::<u64>() as f64
        / tick
}

fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Summed VmRSS and PSS (KiB) of `pids`.
fn memory(pids: &[i32]) -> (u64, u64) {
    let mut rss = 0;
    let mut pss = 0;
    for pid in pids {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            rss += kib_field(&status, "VmRSS:").unwrap_or(0);
        }
        if let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            pss += kib_field(&rollup, "Pss:").unwrap_or(0);
        }
    }
    (rss, pss)
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

// ----- the pods -----

/// One runtime under test.
struct Subject {
    name: &'static str,
    client: Client,
    pod_ids: Vec<String>,
    finder: Finder,
}

/// The bench's pods on one runtime (`tag` tells the runtimes' pods apart): host network,
/// one `sleep` container, labelled for cleanup.
fn bench_pods(image: &str, count: usize, tag: &str) -> Vec<Pod> {
    (0..count)
        .map(|i| {
            Pod::new(
                format!("steady-{i:03}"),
                "steady-load",
                format!("{tag}-{:05}-{i:04}", std::process::id()),
            )
            .host_network(true)
            .grace_period(1)
            .label(BENCH_LABEL, std::process::id().to_string())
            .container(Container::new("main", image, &["sleep", "86400"]))
        })
        .collect()
}

/// Creates `count` kubelet-shaped pods ([`bench_pods`]) with one `sleep` container each;
/// returns their sandbox ids.
async fn create_pods(
    client: &Client,
    profile: &Profile,
    image: &str,
    count: usize,
    tag: &str,
) -> Result<Vec<String>, String> {
    let status: Image = client
        .image_status(image)
        .await
        .map_err(|e| format!("ImageStatus {image}: {e}"))?
        .ok_or_else(|| format!("image {image} is not present"))?;
    let pods = bench_pods(image, count, tag);
    let mut ids = Vec::with_capacity(count);
    for chunk in pods.chunks(CREATE_PARALLEL) {
        let started = futures_util::future::join_all(chunk.iter().map(|pod| async {
            profile
                .prepare_sandbox(pod)
                .map_err(|e| format!("pod log directory: {e}"))?;
            let sandbox = profile.sandbox_config(pod, 0);
            let id = client
                .run_pod_sandbox(sandbox.clone(), "")
                .await
                .map_err(|e| format!("RunPodSandbox {}: {e}", pod.name))?;
            let container = &pod.containers[0];
            profile
                .prepare_container(pod, container, 0)
                .map_err(|e| format!("container files: {e}"))?;
            let config = profile.container_config(pod, container, 0, &status.id, Some(&status));
            let container_id = client
                .create_container(&id, config, Some(sandbox))
                .await
                .map_err(|e| format!("CreateContainer in {}: {e}", pod.name))?;
            client
                .start_container(&container_id)
                .await
                .map_err(|e| format!("StartContainer in {}: {e}", pod.name))?;
            Ok::<String, String>(id)
        }))
        .await;
        for result in started {
            ids.push(result?);
        }
    }
    Ok(ids)
}

/// Stops and removes this bench's pods on `client`, and the pods' cgroups (best effort).
async fn remove_pods(client: &Client, profile: &Profile, pods: &[Pod]) {
    let filter = PodSandboxFilter {
        label_selector: HashMap::from([(BENCH_LABEL.to_string(), std::process::id().to_string())]),
        ..Default::default()
    };
    if let Ok(sandboxes) = client.list_pod_sandbox(Some(filter)).await {
        for chunk in sandboxes.chunks(CREATE_PARALLEL * 2) {
            futures_util::future::join_all(chunk.iter().map(|pod| async {
                let _ = client.stop_pod_sandbox(&pod.id).await;
                let _ = client.remove_pod_sandbox(&pod.id).await;
            }))
            .await;
        }
    }
    for pod in pods {
        profile.remove_pod_cgroup(pod);
    }
}

/// Removes the (empty) cgroups above the pods' in every hierarchy.
fn remove_cgroup_root() {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let relative = CGROUP_ROOT.trim_start_matches('/');
    for hierarchy in hierarchies.flatten() {
        let base = hierarchy.path().join(relative);
        for dir in [
            base.join("kubepods/besteffort"),
            base.join("kubepods"),
            base.clone(),
        ] {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

// ----- the load -----

/// What one window measured, for the loaded runtime and the idle one.
#[derive(Default)]
struct Totals {
    seconds: f64,
    daemon_cpu: f64,
    helpers_cpu: f64,
    idle_seconds: f64,
    idle_daemon_cpu: f64,
    idle_helpers_cpu: f64,
    /// (daemon RSS, daemon PSS, helpers RSS, helpers PSS) at the end of each window, KiB.
    memory: Vec<(u64, u64, u64, u64)>,
    processes: (usize, usize),
    relist_ns: Vec<i64>,
    stats_ns: Vec<i64>,
    listed: (usize, usize),
}

/// One kubelet relist; returns the numbers of pods and containers listed.
async fn relist(client: &Client) -> Result<(usize, usize), String> {
    let pods = client
        .list_pod_sandbox(None)
        .await
        .map_err(|e| format!("ListPodSandbox: {e}"))?;
    let containers = client
        .list_containers(None)
        .await
        .map_err(|e| format!("ListContainers: {e}"))?;
    Ok((pods.len(), containers.len()))
}

/// The kubelet's stats pass; returns the numbers of container and pod stats.
async fn stats(client: &Client) -> Result<(usize, usize), String> {
    let containers = client
        .list_container_stats(None)
        .await
        .map_err(|e| format!("ListContainerStats: {e}"))?;
    let pods = client
        .list_pod_sandbox_stats(None)
        .await
        .map_err(|e| format!("ListPodSandboxStats: {e}"))?;
    Ok((containers.len(), pods.len()))
}

/// Loads `subject` for `seconds` while sampling it and `idle`.
async fn window(
    subject: &Subject,
    idle: &Subject,
    seconds: u64,
    tick: f64,
    totals: &mut Totals,
    idle_totals: &mut Totals,
) -> Result<(), String> {
    let loaded = subject.finder.find();
    let resting = idle.finder.find();
    let before = (
        ticks(&loaded.daemon),
        ticks(&loaded.helpers),
        ticks(&resting.daemon),
        ticks(&resting.helpers),
    );
    let started = Instant::now();
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for second in 0..seconds {
        interval.tick().await;
        let call = Instant::now();
        let listed = relist(&subject.client).await?;
        totals.relist_ns.push(call.elapsed().as_nanos() as i64);
        if listed.0 < subject.pod_ids.len() || listed.1 < subject.pod_ids.len() {
            return Err(format!(
                "{} listed {} pods and {} containers, fewer than the {} created",
                subject.name,
                listed.0,
                listed.1,
                subject.pod_ids.len()
            ));
        }
        totals.listed = listed;
        if second % 10 == 0 {
            let call = Instant::now();
            let (containers, pods) = stats(&subject.client).await?;
            totals.stats_ns.push(call.elapsed().as_nanos() as i64);
            if containers < subject.pod_ids.len() || pods < subject.pod_ids.len() {
                return Err(format!(
                    "{} gave stats of {containers} containers and {pods} pods, fewer than {}",
                    subject.name,
                    subject.pod_ids.len()
                ));
            }
        }
    }
    tokio::time::sleep_until((started + Duration::from_secs(seconds)).into()).await;
    let loaded_after = subject.finder.find();
    let resting_after = idle.finder.find();
    let elapsed = started.elapsed().as_secs_f64();
    totals.seconds += elapsed;
    totals.daemon_cpu += cpu_seconds(&before.0, &ticks(&loaded_after.daemon), tick);
    totals.helpers_cpu += cpu_seconds(&before.1, &ticks(&loaded_after.helpers), tick);
    idle_totals.idle_seconds += elapsed;
    idle_totals.idle_daemon_cpu += cpu_seconds(&before.2, &ticks(&resting_after.daemon), tick);
    idle_totals.idle_helpers_cpu += cpu_seconds(&before.3, &ticks(&resting_after.helpers), tick);
    let (daemon_rss, daemon_pss) = memory(&loaded_after.daemon);
    let (helpers_rss, helpers_pss) = memory(&loaded_after.helpers);
    totals
        .memory
        .push((daemon_rss, daemon_pss, helpers_rss, helpers_pss));
    totals.processes = (loaded_after.daemon.len(), loaded_after.helpers.len());
    Ok(())
}

async fn measure(
    subjects: &[Subject; 2],
    seconds: usize,
    rounds: usize,
) -> Result<[Totals; 2], String> {
    let tick = clock_ticks();
    let per_window = seconds.div_ceil(rounds) as u64;
    let mut totals = [Totals::default(), Totals::default()];
    // One short unmeasured pass each: first-use costs (connections, caches) stay out.
    for subject in subjects {
        relist(&subject.client).await?;
        stats(&subject.client).await?;
    }
    for round in 0..rounds {
        for k in 0..2 {
            let index = (round + k) % 2;
            let [a, b] = &mut totals;
            let (loaded, idle) = if index == 0 { (a, b) } else { (b, a) };
            eprintln!(
                "round {}/{rounds}: loading {} for {per_window} s",
                round + 1,
                subjects[index].name
            );
            window(
                &subjects[index],
                &subjects[1 - index],
                per_window,
                tick,
                loaded,
                idle,
            )
            .await?;
        }
    }
    Ok(totals)
}

fn mean(values: impl Iterator<Item = u64>) -> f64 {
    let values: Vec<u64> = values.collect();
    if values.is_empty() {
        return 0.0;
    }
    values.iter().sum::<u64>() as f64 / values.len() as f64
}

fn print_table(subjects: &[Subject; 2], totals: &[Totals; 2], rounds: usize) {
    let pods = subjects[0].pod_ids.len();
    println!(
        "\nsteady load: {pods} pods per runtime (host network, 1 busybox sleep container each); \
         relist (ListPodSandbox + ListContainers) every 1 s, ListContainerStats + \
         ListPodSandboxStats every 10 s; {rounds} alternating windows per runtime, {:.0} s \
         measured per runtime\n",
        totals[0].seconds
    );
    let per_s = |cpu: f64, seconds: f64| {
        if seconds > 0.0 {
            cpu * 1000.0 / seconds
        } else {
            0.0
        }
    };
    let mib = |kib: f64| kib / 1024.0;
    type Row = (&'static str, Box<dyn Fn(&Totals) -> f64>);
    let rows: Vec<Row> = vec![
        (
            "CPU, daemon (ms/s)",
            Box::new(move |t: &Totals| per_s(t.daemon_cpu, t.seconds)),
        ),
        (
            "CPU, daemon + helpers (ms/s)",
            Box::new(move |t: &Totals| per_s(t.daemon_cpu + t.helpers_cpu, t.seconds)),
        ),
        (
            "RSS, daemon (MiB)",
            Box::new(move |t: &Totals| mib(mean(t.memory.iter().map(|m| m.0)))),
        ),
        (
            "RSS, daemon + helpers (MiB)",
            Box::new(move |t: &Totals| mib(mean(t.memory.iter().map(|m| m.0 + m.2)))),
        ),
        (
            "PSS, daemon (MiB)",
            Box::new(move |t: &Totals| mib(mean(t.memory.iter().map(|m| m.1)))),
        ),
        (
            "PSS, daemon + helpers (MiB)",
            Box::new(move |t: &Totals| mib(mean(t.memory.iter().map(|m| m.1 + m.3)))),
        ),
        (
            "idle CPU, daemon (ms/s)",
            Box::new(move |t: &Totals| per_s(t.idle_daemon_cpu, t.idle_seconds)),
        ),
        (
            "idle CPU, daemon + helpers (ms/s)",
            Box::new(move |t: &Totals| {
                per_s(t.idle_daemon_cpu + t.idle_helpers_cpu, t.idle_seconds)
            }),
        ),
        (
            "relist p50 (ms)",
            Box::new(|t: &Totals| percentile(&t.relist_ns, 50.0).unwrap_or(0) as f64 / 1e6),
        ),
        (
            "relist p99 (ms)",
            Box::new(|t: &Totals| percentile(&t.relist_ns, 99.0).unwrap_or(0) as f64 / 1e6),
        ),
        (
            "stats pass p50 (ms)",
            Box::new(|t: &Totals| percentile(&t.stats_ns, 50.0).unwrap_or(0) as f64 / 1e6),
        ),
    ];
    println!(
        "{:<34} {:>14} {:>14} {:>8}",
        "", subjects[0].name, subjects[1].name, "ratio"
    );
    for (label, value) in rows {
        let ours = value(&totals[0]);
        let theirs = value(&totals[1]);
        let ratio = if theirs > 0.0 {
            format!("{:.2}x", ours / theirs)
        } else {
            "-".to_string()
        };
        println!("{label:<34} {ours:>14.2} {theirs:>14.2} {ratio:>8}");
    }
    for (subject, total) in subjects.iter().zip(totals) {
        println!(
            "{}: {} daemon process(es), {} helper processes counted; last relist listed {} \
             pods and {} containers",
            subject.name, total.processes.0, total.processes.1, total.listed.0, total.listed.1
        );
    }
    println!("ratio = runc-runtime / containerd (the goal is at most 0.5x for CPU and memory)");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    common::until_interrupted(run()).await;
}

async fn run() {
    let Some(images) = common::requirements() else {
        return;
    };
    let Some(peer) = cri_testkit::peer::containerd() else {
        eprintln!("no containerd peer: nothing to compare against");
        return;
    };
    peer.reimport_images()
        .expect("importing images into containerd");
    let containerd = Client::connect(&peer.endpoint)
        .await
        .expect("connecting to containerd");
    let count = env_usize("STEADY_PODS", 100);
    let seconds = env_usize("STEADY_SECONDS", 60);
    let rounds = env_usize("STEADY_ROUNDS", 2).min(seconds);

    let registry = common::registry(&images).await;
    let ours = common::Runtime::start(common::Options {
        registry: Some(registry.endpoint()),
        ..Default::default()
    })
    .await;
    ours.client
        .pull_image(&images.busybox, None)
        .await
        .expect("pulling busybox into runc-runtime");
    let logs = tempfile::Builder::new()
        .prefix("steady-load-")
        .tempdir()
        .expect("temp dir");
    let profile =
        |client_dir: &str| Profile::new(logs.path().join(client_dir)).cgroup_root(CGROUP_ROOT);
    let ours_profile = profile("runc-runtime");
    let containerd_profile = profile("containerd");

    let run = {
        let ours_client = ours.client.clone();
        let containerd = containerd.clone();
        let (ours_profile, containerd_profile) = (ours_profile.clone(), containerd_profile.clone());
        let image = images.busybox.clone();
        let ours_finder = Finder::Ours {
            root: ours.root.clone(),
            socket: ours.socket.clone(),
        };
        let socket = peer.endpoint.trim_start_matches("unix://").to_string();
        async move {
            let started = Instant::now();
            let pod_ids = create_pods(&ours_client, &ours_profile, &image, count, "rr").await?;
            eprintln!(
                "runc-runtime: {count} pods running after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            let ours = Subject {
                name: "runc-runtime",
                client: ours_client,
                pod_ids,
                finder: ours_finder,
            };
            let started = Instant::now();
            let pod_ids =
                create_pods(&containerd, &containerd_profile, &image, count, "cd").await?;
            eprintln!(
                "containerd: {count} pods running after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            let theirs = Subject {
                name: "containerd",
                client: containerd,
                finder: Finder::Containerd {
                    socket,
                    pods: pod_ids.iter().cloned().collect(),
                },
                pod_ids,
            };
            let subjects = [ours, theirs];
            let totals = measure(&subjects, seconds, rounds).await?;
            print_table(&subjects, &totals, rounds);
            Ok::<_, String>(subjects)
        }
    };
    // On a panic or an error: the cleanup below still runs.
    let outcome = tokio::spawn(run).await;

    eprintln!("removing the pods");
    remove_pods(
        &containerd,
        &containerd_profile,
        &bench_pods(&images.busybox, count, "cd"),
    )
    .await;
    remove_pods(
        &ours.client,
        &ours_profile,
        &bench_pods(&images.busybox, count, "rr"),
    )
    .await;
    ours.shutdown().await;
    remove_cgroup_root();
    registry.shutdown().await;
    match outcome {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => panic!("steady load: {error}"),
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(join) => panic!("steady load: {join}"),
    }
}
