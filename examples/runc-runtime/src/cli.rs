//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use cri_server::logging::LogFormat;

/// A CRI runtime that runs pods and containers with runc.
#[derive(Parser, Debug)]
#[command(name = "runc-runtime", version, about)]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// Internal subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Runs the monitor of one container (started by the runtime, not by hand).
    #[command(hide = true)]
    Monitor {
        /// The container's directory (holds monitor.json).
        dir: PathBuf,
    },
}

/// How the runtime serves.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ServeArgs {
    /// The CRI Unix socket.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/run/runc-runtime/cri.sock"
    )]
    pub(crate) socket: PathBuf,
    /// Log lines as `text` (coloured only on a terminal, never with NO_COLOR) or `json`
    /// (one object per line, for log shippers). The level comes from RUST_LOG (default info).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = parse_log_format)]
    pub(crate) log_format: LogFormat,
    /// Where pods, containers, images and runc's state are kept.
    #[arg(long, default_value = "/var/lib/runc-runtime")]
    pub(crate) root: PathBuf,
    /// The runc binary.
    #[arg(long, default_value = "runc")]
    pub(crate) runc: PathBuf,
    /// runc's state directory (default: `<root>/runc`; never the system's /run/runc).
    #[arg(long)]
    pub(crate) runc_root: Option<PathBuf>,
    /// The image pods' pause containers run.
    #[arg(long, default_value = "registry.k8s.io/pause:3.10")]
    pub(crate) pause_image: String,
    /// `HOST=ENDPOINT`: pull images of registry HOST from ENDPOINT first (repeatable; e.g.
    /// `docker.io=http://127.0.0.1:5000`).
    #[arg(long = "registry-mirror", value_name = "HOST=ENDPOINT", value_parser = parse_mirror)]
    pub(crate) registry_mirrors: Vec<(String, String)>,
    /// Talk plain HTTP to this registry host (repeatable; loopback registries).
    #[arg(long = "plain-http", value_name = "HOST")]
    pub(crate) plain_http: Vec<String>,
    /// Import an OCI image archive at start (repeatable).
    #[arg(long = "import", value_name = "ARCHIVE")]
    pub(crate) imports: Vec<PathBuf>,
    /// Where the streaming server (exec, attach, port-forward) listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub(crate) streaming_addr: SocketAddr,
    /// The cgroup parent of pods that name none (cgroupfs layout).
    #[arg(long, default_value = "/runc-runtime")]
    pub(crate) cgroup_parent: String,
    /// A CNI network config directory: pods with their own network namespace get their
    /// network from the first config in it (`*.conflist`, `*.conf`, `*.json` by name). Without
    /// it, there is no CNI: such pods have only `lo`.
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
}

impl ServeArgs {
    /// runc's `--root`.
    pub(crate) fn runc_root(&self) -> PathBuf {
        self.runc_root
            .clone()
            .unwrap_or_else(|| self.root.join("runc"))
    }
}

fn parse_log_format(value: &str) -> Result<LogFormat, String> {
    value.parse()
}

fn parse_mirror(value: &str) -> Result<(String, String), String> {
    let (host, endpoint) = value
        .split_once('=')
        .ok_or_else(|| format!("expected HOST=ENDPOINT, got {value:?}"))?;
    if host.is_empty() || endpoint.is_empty() {
        return Err(format!("expected HOST=ENDPOINT, got {value:?}"));
    }
    Ok((host.to_string(), endpoint.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse() {
        let args = Args::try_parse_from([
            "runc-runtime",
            "--root",
            "/tmp/r",
            "--registry-mirror",
            "docker.io=http://127.0.0.1:5000",
            "--registry-mirror",
            "registry.k8s.io=http://127.0.0.1:5000",
            "--plain-http",
            "127.0.0.1:5000",
            "--import",
            "a.tar",
        ])
        .unwrap();
        assert!(args.command.is_none());
        assert_eq!(args.serve.log_format, LogFormat::Text);
        assert_eq!(args.serve.runc_root(), PathBuf::from("/tmp/r/runc"));
        assert_eq!(
            args.serve.registry_mirrors,
            [
                ("docker.io".to_string(), "http://127.0.0.1:5000".to_string()),
                (
                    "registry.k8s.io".to_string(),
                    "http://127.0.0.1:5000".to_string()
                )
            ]
        );
        assert_eq!(args.serve.plain_http, ["127.0.0.1:5000"]);
    }

    #[test]
    fn cni_is_off_unless_a_config_directory_is_given() {
        let args = Args::try_parse_from(["runc-runtime"]).unwrap();
        assert_eq!(args.serve.cni_conf_dir, None);
        assert_eq!(
            args.serve.cni_bin_dirs,
            [PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        let args = Args::try_parse_from([
            "runc-runtime",
            "--cni-conf-dir",
            "/etc/cni/net.d",
            "--cni-bin-dir",
            "/a:/b",
            "--cni-bin-dir",
            "/c",
        ])
        .unwrap();
        assert_eq!(
            args.serve.cni_conf_dir,
            Some(PathBuf::from("/etc/cni/net.d"))
        );
        assert_eq!(
            args.serve.cni_bin_dirs,
            [
                PathBuf::from("/a"),
                PathBuf::from("/b"),
                PathBuf::from("/c")
            ]
        );
    }

    #[test]
    fn log_format_is_text_or_json() {
        let args = Args::try_parse_from(["runc-runtime", "--log-format", "json"]).unwrap();
        assert_eq!(args.serve.log_format, LogFormat::Json);
        assert!(Args::try_parse_from(["runc-runtime", "--log-format", "color"]).is_err());
    }

    #[test]
    fn bad_mirrors_are_refused() {
        for bad in ["docker.io", "=http://x", "docker.io="] {
            assert!(
                Args::try_parse_from(["runc-runtime", "--registry-mirror", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_monitor_subcommand_takes_a_directory() {
        let args = Args::try_parse_from(["runc-runtime", "monitor", "/x/c1"]).unwrap();
        assert!(
            matches!(args.command, Some(Command::Monitor { dir }) if dir == std::path::Path::new("/x/c1"))
        );
    }
}
