//! What the examples share: the flags every runtime example takes (`--socket`,
//! `--log-format`), the flag every client example takes (`--runtime-endpoint`), and the log
//! set-up. The examples themselves are the files next to this one; run them with
//! `cargo run -p cri-examples --example NAME -- --help`.

use std::path::PathBuf;

pub use cri_server::logging::LogFormat;

/// Flags of every runtime example: where to serve and how to log.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeFlags {
    /// The Unix socket to serve CRI on.
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// Log lines as `text` (coloured only on a terminal, never with NO_COLOR) or `json`
    /// (one object per line, for log shippers). The level comes from RUST_LOG (default info).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = parse_log_format)]
    pub log_format: LogFormat,
}

impl ServeFlags {
    /// Installs the logger these flags ask for.
    pub fn init_logging(&self) {
        cri_server::logging::init(self.log_format);
    }
}

/// Flags of every client example: which runtime to talk to.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientFlags {
    /// The runtime's CRI endpoint (`unix:///path` or a socket path), as crictl's `-r`.
    #[arg(
        short = 'r',
        long,
        value_name = "ENDPOINT",
        env = "CONTAINER_RUNTIME_ENDPOINT",
        default_value = cri_client::cri_api::well_known::socket::DEFAULT_ENDPOINTS[0]
    )]
    pub runtime_endpoint: String,
}

fn parse_log_format(value: &str) -> Result<LogFormat, String> {
    value.parse()
}
