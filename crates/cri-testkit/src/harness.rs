//! One call to get a served runtime and a connected client.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cri_client::Client;
use cri_server::Server;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Endpoint, Uri};

use crate::FakeRuntime;

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// The server could not be built or bound.
    #[error("server: {0}")]
    Server(#[from] cri_server::Error),
    /// The client could not connect.
    #[error("client: {0}")]
    Client(#[from] cri_client::Error),
    /// The temporary directory could not be created.
    #[error("temporary directory: {0}")]
    TempDir(#[from] std::io::Error),
    /// The in-memory channel could not be set up.
    #[error("in-memory transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A server running in this process and a client connected to it. Dropping it stops the
/// server; [`Harness::shutdown`] stops it gracefully and waits.
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// let harness = cri_testkit::Harness::fake(cri_testkit::FakeRuntime::default()).await.unwrap();
/// let version = harness.client.version().await.unwrap();
/// assert_eq!(version.runtime_api_version, "v1");
/// harness.shutdown().await;
/// # });
/// ```
#[derive(Debug)]
pub struct Harness {
    /// A client connected to the server, with the kubelet's defaults.
    pub client: Client,
    socket: Option<PathBuf>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    streaming: Option<cri_streaming::Server>,
    _dir: Option<tempfile::TempDir>,
}

impl Harness {
    /// Serves `server` on a Unix socket in a fresh temporary directory and connects a client.
    pub async fn start(server: Server) -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new().prefix("cri-testkit-").tempdir()?;
        let socket = dir.path().join("cri.sock");
        let bound = server.bind(&socket)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(error) = bound.serve_with_shutdown(shutdown).await {
                tracing::warn!(%error, "harness server ended with an error");
            }
        });
        let client = Client::connect(format!("unix://{}", socket.display())).await?;
        Ok(Self {
            client,
            socket: Some(socket),
            stop: Some(stop),
            task: Some(task),
            streaming: None,
            _dir: Some(dir),
        })
    }

    /// Serves `runtime` (both services) on a temporary Unix socket, with a streaming server
    /// on loopback for `Exec`, `Attach` and `PortForward`.
    pub async fn fake(runtime: FakeRuntime) -> Result<Self, HarnessError> {
        let runtime = Arc::new(runtime);
        let streaming =
            cri_streaming::Server::start(runtime.clone(), cri_streaming::Config::default()).await?;
        let mut harness = Self::start(
            Server::builder()
                .service(runtime)
                .streaming(streaming.clone())
                .build()?,
        )
        .await?;
        harness.streaming = Some(streaming);
        Ok(harness)
    }

    /// The streaming server, for harnesses that run one.
    pub fn streaming(&self) -> Option<&cri_streaming::Server> {
        self.streaming.as_ref()
    }

    /// Serves `server` over in-memory pipes instead of a socket: each client connection is a
    /// `tokio::io::duplex` pair served by the server in this process.
    pub async fn in_memory(server: Server) -> Result<Self, HarnessError> {
        let server = Arc::new(server);
        let connector = tower::service_fn(move |_: Uri| {
            let server = server.clone();
            async move {
                let (client_io, server_io) = tokio::io::duplex(1 << 20);
                tokio::spawn(async move {
                    if let Err(error) = server.serve_connection(server_io, None).await {
                        tracing::debug!(%error, "in-memory connection ended");
                    }
                });
                Ok::<_, std::io::Error>(TokioIo::new(client_io))
            }
        });
        let channel = Endpoint::from_static("http://localhost")
            .connect_with_connector(connector)
            .await?;
        let client = Client::from_channel(channel.clone(), channel);
        client.version().await?;
        Ok(Self {
            client,
            socket: None,
            stop: None,
            task: None,
            streaming: None,
            _dir: None,
        })
    }

    /// The socket path, for Unix-socket harnesses (e.g. to run a CLI against it).
    pub fn socket(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    /// The endpoint URL (`unix:///…`) of a Unix-socket harness.
    pub fn endpoint(&self) -> Option<String> {
        self.socket
            .as_ref()
            .map(|s| format!("unix://{}", s.display()))
    }

    /// Stops the server gracefully and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(streaming) = self.streaming.take() {
            streaming.shutdown();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(streaming) = self.streaming.take() {
            streaming.shutdown();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
