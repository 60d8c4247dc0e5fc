//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use cri_server::logging::LogFormat;

/// A CRI runtime over Docker Engine.
#[derive(Parser, Debug, Clone)]
#[command(name = "docker-shim", version, about)]
pub(crate) struct Args {
    /// The CRI Unix socket.
    #[arg(long, value_name = "PATH", default_value = "/run/docker-shim/cri.sock")]
    pub(crate) socket: PathBuf,
    /// The Docker Engine endpoint (a Unix socket).
    #[arg(
        long,
        value_name = "URL",
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    pub(crate) docker_host: String,
    /// Where the shim keeps its own files (nothing of the pods' state: that lives in Docker's
    /// labels).
    #[arg(long, default_value = "/var/lib/docker-shim")]
    pub(crate) root: PathBuf,
    /// The image pods' pause containers run.
    #[arg(long, default_value = "registry.k8s.io/pause:3.10")]
    pub(crate) pause_image: String,
    /// Where the streaming server (exec, attach, port-forward) listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub(crate) streaming_addr: SocketAddr,
    /// A CNI network config directory: pods with their own network namespace get their
    /// network from the first config in it (`*.conflist`, `*.conf`, `*.json` by name).
    /// Without it, there is no CNI: such pods have only `lo`.
    #[arg(long, value_name = "DIR")]
    pub(crate) cni_conf_dir: Option<PathBuf>,
    /// Where CNI plugins are looked for (repeatable, or a colon-separated list).
    #[arg(
        long = "cni-bin-dir",
        value_name = "DIR",
        value_delimiter = ':',
        default_value = "/opt/cni/bin:/usr/lib/cni"
    )]
    pub(crate) cni_bin_dirs: Vec<PathBuf>,
    /// Log lines as `text` (coloured only on a terminal, never with NO_COLOR) or `json`
    /// (one object per line). The level comes from RUST_LOG (default info).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = parse_log_format)]
    pub(crate) log_format: LogFormat,
}

fn parse_log_format(value: &str) -> Result<LogFormat, String> {
    value.parse()
}

/// The path of a `unix://` Docker host, or an error for anything else.
pub(crate) fn unix_socket(host: &str) -> Result<&str, String> {
    host.strip_prefix("unix://")
        .filter(|path| !path.is_empty())
        .ok_or_else(|| format!("--docker-host {host:?}: only unix:// endpoints are supported"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let args = Args::try_parse_from(["docker-shim"]).unwrap();
        assert_eq!(args.pause_image, "registry.k8s.io/pause:3.10");
        assert_eq!(args.log_format, LogFormat::Text);
        assert_eq!(args.cni_conf_dir, None);
        assert_eq!(args.streaming_addr.port(), 0);
    }

    #[test]
    fn docker_host_must_be_a_unix_socket() {
        assert_eq!(
            unix_socket("unix:///var/run/docker.sock"),
            Ok("/var/run/docker.sock")
        );
        assert!(unix_socket("tcp://127.0.0.1:2375").is_err());
        assert!(unix_socket("unix://").is_err());
    }

    #[test]
    fn log_format_is_text_or_json() {
        let args = Args::try_parse_from(["docker-shim", "--log-format", "json"]).unwrap();
        assert_eq!(args.log_format, LogFormat::Json);
        assert!(Args::try_parse_from(["docker-shim", "--log-format", "color"]).is_err());
    }
}
