//! Serving: the Docker client, the runtime, its streaming server and the CRI socket.

use std::sync::Arc;

use bollard::Docker;

use crate::cli::{Args, unix_socket};
use crate::runtime::{Config, Runtime};

/// Runs the shim until SIGTERM or SIGINT. Pods and containers keep running in Docker after
/// it stops; the next start finds them through their labels.
pub(crate) async fn run(args: Args) -> Result<(), String> {
    let socket = unix_socket(&args.docker_host)?;
    let docker = Docker::connect_with_unix(socket, 120, bollard::API_DEFAULT_VERSION)
        .map_err(|e| format!("connecting to Docker Engine at {}: {e}", args.docker_host))?
        .negotiate_version()
        .await
        .map_err(|e| format!("negotiating the API version with {}: {e}", args.docker_host))?;
    std::fs::create_dir_all(&args.root)
        .map_err(|e| format!("creating {}: {e}", args.root.display()))?;
    let config = Config {
        root: args.root.clone(),
        pause_image: args.pause_image.clone(),
        cni: crate::cni::Cni::new(args.cni_conf_dir.clone(), args.cni_bin_dirs.clone()),
    };
    match (config.cni.conf_dir(), config.cni.load()) {
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
    let host = cri_oci::spec::Host::detect();
    let runtime = Runtime::open(config, docker, host)
        .await
        .map_err(|e| format!("reading the state from Docker Engine: {e}"))?;
    tracing::info!(
        engine = %runtime.engine_version,
        api = %runtime.docker.client_version(),
        "connected to Docker Engine"
    );
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
    if let Some(dir) = args.socket.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let bound = cri_server::Server::builder()
        .service(runtime.clone())
        .streaming(streaming.clone())
        .build()
        .and_then(|server| server.bind(&args.socket))
        .map_err(|e| e.to_string())?;
    tracing::info!(socket = %args.socket.display(), streaming = %streaming.local_addr(), "serving");
    let served = bound.serve().await.map_err(|e| e.to_string());
    streaming.shutdown();
    tracing::info!("stopped; pods and containers keep running in Docker");
    served
}
