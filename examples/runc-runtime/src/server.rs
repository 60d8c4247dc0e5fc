//! Serving: the runtime, its streaming server and the CRI socket, wired together.

use std::path::PathBuf;
use std::sync::Arc;

use cri_oci::image::RegistryConfig;

use crate::cli::ServeArgs;
use crate::cni::Cni;
use crate::runc::Runc;
use crate::runtime::{Config, Runtime, detect_host};

/// Runs the runtime until SIGTERM or SIGINT. Containers keep running after it stops: their
/// monitors own them, and the next start finds them again.
pub(crate) async fn run(args: ServeArgs) -> Result<(), String> {
    // Processes of `runc exec --detach` (terminal execs) are orphaned when runc exits; as a
    // child subreaper this runtime inherits and waits for them.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .map_err(|e| format!("becoming a child subreaper: {e}"))?;
    let mut registry = RegistryConfig::default();
    for (host, endpoint) in &args.registry_mirrors {
        registry
            .mirrors
            .entry(host.clone())
            .or_default()
            .push(endpoint.clone());
    }
    registry.plain_http = args.plain_http.clone();
    let config = Config {
        root: args.root.clone(),
        pause_image: args.pause_image.clone(),
        registry,
        monitor_exe: monitor_exe()?,
        cni: Cni::new(args.cni_conf_dir.clone(), args.cni_bin_dirs.clone()),
    };
    let runc = Runc::new(&args.runc, args.runc_root());
    let host = detect_host(&args.cgroup_parent);
    tracing::info!(
        root = %args.root.display(),
        runc_root = %runc.root().display(),
        restrict_oom_score_adj = host.restrict_oom_score_adj,
        capabilities = host.capabilities.len(),
        monitor = %config.monitor_exe.display(),
        "starting"
    );
    if host.hugetlb_supported {
        tracing::info!("hugetlb cgroup controller found: hugepage limits are enforced");
    } else {
        tracing::warn!(
            "no hugetlb cgroup controller: zero hugepage limits (as the kubelet sends for every page size) are dropped, non-zero ones refused"
        );
    }
    match (&config.cni.conf_dir(), config.cni.load()) {
        (None, _) => tracing::info!("no CNI: pods with their own network have only lo"),
        (Some(dir), Ok(network)) => tracing::info!(
            conf_dir = %dir.display(),
            network = %network.name,
            source = %network.source.display(),
            "CNI network"
        ),
        (Some(dir), Err(e)) => {
            tracing::warn!(conf_dir = %dir.display(), error = %e, "CNI network not ready yet")
        }
    }
    let runtime = Runtime::open(config, runc, host)
        .await
        .map_err(|e| format!("opening the state under {}: {e}", args.root.display()))?;
    for archive in &args.imports {
        let images = runtime.images.clone();
        let path = archive.clone();
        let imported = tokio::task::spawn_blocking(move || images.import_archive(&path))
            .await
            .map_err(|e| format!("importing {}: {e}", archive.display()))?
            .map_err(|e| format!("importing {}: {e}", archive.display()))?;
        for image in imported {
            tracing::info!(archive = %archive.display(), id = %image.id, tags = ?image.repo_tags, "imported");
        }
    }
    let streaming = cri_streaming::Server::start(
        runtime.clone() as Arc<dyn cri_streaming::StreamingRuntime>,
        cri_streaming::Config {
            addr: args.streaming_addr,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| {
        format!(
            "starting the streaming server on {}: {e}",
            args.streaming_addr
        )
    })?;
    let bound = cri_server::Server::builder()
        .service(runtime.clone())
        .streaming(streaming.clone())
        .build()
        .and_then(|server| server.bind(&args.socket))
        .map_err(|e| e.to_string())?;
    tracing::info!(socket = %args.socket.display(), streaming = %streaming.local_addr(), "serving");
    let served = bound.serve().await.map_err(|e| e.to_string());
    streaming.shutdown();
    tracing::info!("stopped; containers keep running under their monitors");
    served
}

/// The executable that runs container monitors: `runc-runtime-monitor` beside this binary
/// (what `cargo build -p runc-runtime` builds), else this binary's own `monitor` subcommand
/// (e.g. under `cargo run`, which builds only this one). Both take `monitor DIR`.
fn monitor_exe() -> Result<PathBuf, String> {
    let this = std::env::current_exe()
        .map_err(|e| format!("finding this binary (to start monitors): {e}"))?;
    let small = this.with_file_name(MONITOR_EXE);
    Ok(if small.is_file() { small } else { this })
}

/// The file name of the monitor-only executable.
const MONITOR_EXE: &str = "runc-runtime-monitor";
