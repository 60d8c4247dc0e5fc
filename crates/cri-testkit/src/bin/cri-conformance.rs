//! `cri-conformance`: runs the CRI conformance suite against any runtime, or against the
//! embedded fake runtime when no endpoint is given.
//!
//! ```text
//! cri-conformance                                   # the embedded runtime, full report
//! cri-conformance --endpoint unix:///run/containerd/containerd.sock --host-network
//! cri-conformance --focus container/ --skip exec --junit report.xml --json report.json
//! cri-conformance --list
//! cri-conformance bench --pods 100 --containers 100 --parallel 10 --json bench.json
//! ```
//!
//! Exit code: 0 when no case failed, 1 when one did, 2 on usage or setup errors.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use cri_testkit::bench::{self, Lifecycle};
use cri_testkit::conformance::{Config, Suite};
use cri_testkit::{FakeRuntime, Harness};

#[derive(Parser, Debug)]
#[command(
    name = "cri-conformance",
    version,
    about = "CRI conformance suite and lifecycle benchmarks"
)]
struct Args {
    /// Runtime endpoint (unix:///path). Without one, the embedded fake runtime is started.
    #[arg(long, short = 'r', global = true)]
    endpoint: Option<String>,
    /// Image service endpoint, when it differs from the runtime's.
    #[arg(long, short = 'i', global = true)]
    image_endpoint: Option<String>,
    /// Image the containers run (needs sh, echo, sleep, true).
    #[arg(long, default_value = "busybox", global = true)]
    image: String,
    /// Image the pull cases pull (default: the container image).
    #[arg(long)]
    pull_image: Option<String>,
    /// Never pull (offline runtimes): the pull cases are skipped.
    #[arg(long)]
    no_pull: bool,
    /// Image the remove case may delete.
    #[arg(long)]
    removable_image: Option<String>,
    /// Run sandboxes in the host network (runtimes without CNI).
    #[arg(long, global = true)]
    host_network: bool,
    /// Runtime handler to request.
    #[arg(long, default_value = "", global = true)]
    runtime_handler: String,
    /// Directory for sandbox log directories (must be on the runtime's host).
    #[arg(long)]
    log_root: Option<PathBuf>,
    /// Run only cases whose id (area/name) contains one of these.
    #[arg(long)]
    focus: Vec<String>,
    /// Skip cases whose id contains one of these.
    #[arg(long)]
    skip: Vec<String>,
    /// List the selected cases and exit.
    #[arg(long)]
    list: bool,
    /// Seconds one case may run.
    #[arg(long, default_value_t = 60)]
    case_timeout: u64,
    /// Cases run at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Write a JUnit XML report.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Write a JSON report.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Colours in the terminal report.
    #[arg(long, value_enum, default_value_t = Colour::Auto)]
    color: Colour,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Colour {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Pod and container lifecycle latencies (p50/p90/p99).
    Bench {
        /// Pod lifecycles to run (0 to skip).
        #[arg(long, default_value_t = 50)]
        pods: usize,
        /// Container lifecycles to run (0 to skip).
        #[arg(long, default_value_t = 50)]
        containers: usize,
        /// Lifecycles in parallel.
        #[arg(long, default_value_t = 1)]
        parallel: usize,
        /// Write results (percentiles and critest datapoints) as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn config(args: &Args) -> Config {
    Config {
        image: args.image.clone(),
        pull_image: if args.no_pull {
            None
        } else {
            Some(
                args.pull_image
                    .clone()
                    .unwrap_or_else(|| args.image.clone()),
            )
        },
        removable_image: match (&args.removable_image, &args.endpoint) {
            (Some(image), _) => Some(image.clone()),
            // The embedded runtime can "pull" anything; a real one needs to be told.
            (None, None) => Config::default().removable_image,
            (None, Some(_)) => None,
        },
        host_network: args.host_network,
        runtime_handler: args.runtime_handler.clone(),
        log_root: args.log_root.clone(),
        case_timeout: Duration::from_secs(args.case_timeout),
        parallelism: args.parallel,
    }
}

async fn connect(
    args: &Args,
) -> Result<(cri_testkit::cri_client::Client, Option<Harness>), String> {
    match &args.endpoint {
        Some(endpoint) => {
            let mut builder = cri_testkit::cri_client::Client::builder(endpoint);
            if let Some(image) = &args.image_endpoint {
                builder = builder.image_endpoint(image);
            }
            let client = builder.connect().await.map_err(|e| e.to_string())?;
            Ok((client, None))
        }
        None => {
            // With its streaming server, so the exec cases run too.
            let fake = FakeRuntime::builder().image(&args.image).build();
            let harness = Harness::fake(fake).await.map_err(|e| e.to_string())?;
            Ok((harness.client.clone(), Some(harness)))
        }
    }
}

/// Prints to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn emit(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn write(path: &PathBuf, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

async fn run(args: Args) -> Result<bool, String> {
    let config = config(&args);
    if let Some(Command::Bench {
        pods,
        containers,
        parallel,
        json,
    }) = &args.command
    {
        let (client, harness) = connect(&args).await?;
        let target = args
            .endpoint
            .as_deref()
            .unwrap_or("the embedded fake runtime");
        emit(&format!("lifecycle benchmarks against {target}\n\n"));
        let mut results = Vec::new();
        for (lifecycle, n) in [(Lifecycle::Pod, *pods), (Lifecycle::Container, *containers)] {
            if n == 0 {
                continue;
            }
            let result = bench::run(&client, lifecycle, n, *parallel, &config)
                .await
                .map_err(|e| e.to_string())?;
            emit(&format!("{lifecycle:?} lifecycle\n{}\n", result.table()));
            results.push(result.json());
        }
        if let Some(path) = json {
            let text = serde_json::to_string_pretty(
                &serde_json::json!({ "target": target, "results": results }),
            )
            .map_err(|e| e.to_string())?;
            write(path, &text)?;
        }
        if let Some(harness) = harness {
            harness.shutdown().await;
        }
        return Ok(true);
    }

    let suite = Suite::new(config).focus(&args.focus).skip(&args.skip);
    if args.list {
        for case in suite.cases() {
            emit(&format!("{:<40} {}\n", case.id(), case.description));
        }
        return Ok(true);
    }
    let (client, harness) = connect(&args).await?;
    let target = args
        .endpoint
        .clone()
        .unwrap_or_else(|| "the embedded fake runtime".into());
    let version = client.version().await.map_err(|e| e.to_string())?;
    emit(&format!(
        "CRI conformance: {} cases against {target} ({} {})\n\n",
        suite.cases().len(),
        version.runtime_name,
        version.runtime_version
    ));
    let report = suite.run(&client).await;
    let colour = match args.color {
        Colour::Always => true,
        Colour::Never => false,
        Colour::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    emit(&report.human(colour));
    if let Some(path) = &args.junit {
        write(path, &report.junit())?;
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.json()).map_err(|e| e.to_string())?;
        write(path, &text)?;
    }
    if let Some(harness) = harness {
        harness.shutdown().await;
    }
    Ok(report.success())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cri-conformance: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("cri-conformance: {message}");
            ExitCode::from(2)
        }
    }
}
