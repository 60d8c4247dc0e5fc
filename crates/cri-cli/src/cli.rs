//! The command line's shape: global flags and one clap type per verb, named and flagged as
//! crictl's so that a crictl user is at home.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::parse_duration;
use crate::output::Document;

/// `cri`: talk to a Kubernetes CRI runtime (containerd, CRI-O, ...) the way crictl does.
#[derive(Parser, Debug)]
#[command(
    name = "cri",
    version,
    about = "Inspect and drive Kubernetes CRI runtimes (a crictl-compatible command line)",
    after_help = "Global flags go before the verb: cri -r unix:///run/crio/crio.sock ps -a"
)]
pub(crate) struct Cli {
    /// Flags every verb shares.
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    /// The verb.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags every verb shares; given before the verb.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct GlobalArgs {
    /// Runtime endpoint: unix:///path/to.sock or a plain path [default: the first of the
    /// containerd, CRI-O and cri-dockerd sockets that exists]
    #[arg(
        long,
        short = 'r',
        env = "CONTAINER_RUNTIME_ENDPOINT",
        value_name = "ENDPOINT"
    )]
    pub(crate) runtime_endpoint: Option<String>,
    /// Image service endpoint [default: the runtime endpoint]
    #[arg(
        long,
        short = 'i',
        env = "IMAGE_SERVICE_ENDPOINT",
        value_name = "ENDPOINT"
    )]
    pub(crate) image_endpoint: Option<String>,
    /// Per-call timeout: 2m, 30s, 500ms, 1m30s or plain seconds; 0 for none [default: 2m,
    /// the kubelet's]
    #[arg(long, short = 't', value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) timeout: Option<Duration>,
    /// Log the gRPC traffic to stderr
    #[arg(long, short = 'D')]
    pub(crate) debug: bool,
    /// Config file (crictl.yaml keys: runtime-endpoint, image-endpoint, timeout, debug)
    /// [default: /etc/crictl.yaml]
    #[arg(long, env = "CRI_CONFIG_FILE", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

/// Output of list verbs.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum ListFormat {
    /// Aligned columns
    #[default]
    Table,
    /// The List*Response message as proto3 JSON
    Json,
    /// The same value as YAML
    Yaml,
    /// Full ids, one per line (as -q)
    Id,
}

/// Output of the inspect verbs and stats.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DocFormat {
    /// proto3 JSON
    Json,
    /// YAML
    Yaml,
    /// Readable text
    Table,
}

/// Output of verbs that print one message.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum DataFormat {
    /// proto3 JSON
    #[default]
    Json,
    /// YAML
    Yaml,
}

impl ListFormat {
    /// The document format, for the formats that print one.
    pub(crate) fn document(self) -> Option<Document> {
        match self {
            Self::Json => Some(Document::Json),
            Self::Yaml => Some(Document::Yaml),
            Self::Table | Self::Id => None,
        }
    }
}

impl DocFormat {
    /// The document format, for the formats that print one.
    pub(crate) fn document(self) -> Option<Document> {
        match self {
            Self::Json => Some(Document::Json),
            Self::Yaml => Some(Document::Yaml),
            Self::Table => None,
        }
    }
}

impl DataFormat {
    /// The document format.
    pub(crate) fn document(self) -> Document {
        match self {
            Self::Json => Document::Json,
            Self::Yaml => Document::Yaml,
        }
    }
}

/// Output of `events`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum EventFormat {
    /// One proto3 JSON object per line
    #[default]
    Json,
    /// One readable row per event
    Table,
}

/// The verbs.
#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Show the runtime's name and versions
    Version {
        /// Output format [default: text]
        #[arg(short, long)]
        output: Option<DataFormat>,
    },
    /// Show the runtime's status (conditions and details)
    Info {
        /// Output format
        #[arg(short, long, default_value = "json")]
        output: DataFormat,
        /// Leave out the runtime's verbose details
        #[arg(short, long)]
        quiet: bool,
    },
    /// List pod sandboxes
    Pods(PodsArgs),
    /// List containers (running ones unless -a)
    Ps(PsArgs),
    /// List images
    #[command(visible_alias = "image", visible_alias = "img")]
    Images(ImagesArgs),
    /// Show the status of containers
    Inspect(InspectArgs),
    /// Show the status of pod sandboxes
    Inspectp(InspectArgs),
    /// Show the status of images
    Inspecti(InspectArgs),
    /// Run a pod sandbox from a config file (JSON or YAML, crictl's format)
    Runp(RunpArgs),
    /// Run a pod and a container in it in one step: run the pod, pull the image when it is
    /// missing, create and start the container; prints the container id
    Run(RunArgs),
    /// Create a container in a pod from config files
    Create(CreateArgs),
    /// Start created containers
    Start(IdsArgs),
    /// Stop running containers
    Stop(StopArgs),
    /// Remove containers
    Rm(RemoveArgs),
    /// Stop pod sandboxes (and their containers)
    Stopp(IdsArgs),
    /// Remove pod sandboxes (and their containers)
    Rmp(RemoveArgs),
    /// Pull an image
    Pull(PullArgs),
    /// Remove images
    Rmi(RmiArgs),
    /// Run a command in a running container
    Exec(ExecArgs),
    /// Attach to a running container's main process
    Attach(AttachArgs),
    /// Forward local TCP ports to ports in a pod sandbox
    PortForward(PortForwardArgs),
    /// Print a container's logs
    Logs(LogsArgs),
    /// Show resource usage of containers
    Stats(StatsArgs),
    /// Show resource usage of pod sandboxes
    Statsp(StatspArgs),
    /// Stream container events until interrupted
    Events {
        /// Output format
        #[arg(short, long, default_value = "json")]
        output: EventFormat,
    },
    /// Print a shell completion script (e.g. `cri completion bash > /etc/bash_completion.d/cri`)
    Completion {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Show usage of the image filesystems
    Imagefsinfo {
        /// Output format
        #[arg(short, long, default_value = "json")]
        output: DataFormat,
    },
    /// Update the resources of running containers
    Update(UpdateArgs),
    /// Show the runtime's configuration (cgroup driver)
    RuntimeConfig {
        /// Output format
        #[arg(short, long, default_value = "json")]
        output: DataFormat,
    },
}

/// Flags of `pods`.
#[derive(Args, Debug, Default, Clone)]
pub(crate) struct PodsArgs {
    /// Only pods whose id starts with this
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// Only pods whose name contains this (^ and $ anchor it)
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Only pods whose namespace contains this (^ and $ anchor it)
    #[arg(long)]
    pub(crate) namespace: Option<String>,
    /// Only pods in this state: ready or notready
    #[arg(long, short = 's')]
    pub(crate) state: Option<String>,
    /// Only pods with this label (key=value; repeatable)
    #[arg(long, value_name = "KEY=VALUE")]
    pub(crate) label: Vec<String>,
    /// Only the most recently created pod
    #[arg(long, short = 'l')]
    pub(crate) latest: bool,
    /// Only the N most recently created pods
    #[arg(long, value_name = "N")]
    pub(crate) last: Option<usize>,
    /// Print full ids only
    #[arg(long, short = 'q')]
    pub(crate) quiet: bool,
    /// Output format
    #[arg(long, short = 'o', default_value = "table")]
    pub(crate) output: ListFormat,
    /// Show full ids
    #[arg(long)]
    pub(crate) no_trunc: bool,
    /// Keep the listing on screen and redraw it on every container event (when the runtime
    /// streams them) or every --watch-interval, until interrupted
    #[arg(long, short = 'w')]
    pub(crate) watch: bool,
    /// Seconds between redraws when watching (also the most an event-driven redraw waits)
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 2.0,
        requires = "watch"
    )]
    pub(crate) watch_interval: f64,
}

/// Flags of `ps`.
#[derive(Args, Debug, Default, Clone)]
pub(crate) struct PsArgs {
    /// Show containers in every state (default: running only)
    #[arg(long, short = 'a')]
    pub(crate) all: bool,
    /// Only containers whose id starts with this
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// Only containers of this pod (id or unique prefix)
    #[arg(long, short = 'p')]
    pub(crate) pod: Option<String>,
    /// Only containers whose name contains this (^ and $ anchor it)
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Only containers in this state: created, running, exited or unknown
    #[arg(long, short = 's')]
    pub(crate) state: Option<String>,
    /// Only containers with this label (key=value; repeatable)
    #[arg(long, value_name = "KEY=VALUE")]
    pub(crate) label: Vec<String>,
    /// Only the most recently created container (any state)
    #[arg(long, short = 'l')]
    pub(crate) latest: bool,
    /// Only the N most recently created containers (any state)
    #[arg(long, value_name = "N")]
    pub(crate) last: Option<usize>,
    /// Print full ids only
    #[arg(long, short = 'q')]
    pub(crate) quiet: bool,
    /// Output format
    #[arg(long, short = 'o', default_value = "table")]
    pub(crate) output: ListFormat,
    /// Show full ids
    #[arg(long)]
    pub(crate) no_trunc: bool,
    /// Keep the listing on screen and redraw it on every container event (when the runtime
    /// streams them) or every --watch-interval, until interrupted
    #[arg(long, short = 'w')]
    pub(crate) watch: bool,
    /// Seconds between redraws when watching (also the most an event-driven redraw waits)
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 2.0,
        requires = "watch"
    )]
    pub(crate) watch_interval: f64,
}

/// Flags of `images`.
#[derive(Args, Debug, Default)]
pub(crate) struct ImagesArgs {
    /// Only this image (name, tag, id or digest)
    pub(crate) image: Option<String>,
    /// Show digests
    #[arg(long)]
    pub(crate) digests: bool,
    /// Print full image ids only
    #[arg(long, short = 'q')]
    pub(crate) quiet: bool,
    /// Output format
    #[arg(long, short = 'o', default_value = "table")]
    pub(crate) output: ListFormat,
    /// Show full ids
    #[arg(long)]
    pub(crate) no_trunc: bool,
}

/// Flags of `inspect`, `inspectp` and `inspecti`.
#[derive(Args, Debug)]
pub(crate) struct InspectArgs {
    /// Ids (or unique prefixes); image names for inspecti
    #[arg(required = true)]
    pub(crate) ids: Vec<String>,
    /// Output format
    #[arg(long, short = 'o', default_value = "json")]
    pub(crate) output: DocFormat,
    /// Leave out the runtime's verbose details (the info map)
    #[arg(long, short = 'q')]
    pub(crate) quiet: bool,
}

/// Flags of `runp`.
#[derive(Args, Debug)]
pub(crate) struct RunpArgs {
    /// Pod sandbox config file (.json, .yaml or .yml)
    pub(crate) config: PathBuf,
    /// Runtime handler to use (empty: the runtime's default)
    #[arg(long, short = 'r', default_value = "")]
    pub(crate) runtime: String,
}

/// Flags of `run`.
#[derive(Args, Debug)]
pub(crate) struct RunArgs {
    /// Container config file (.json, .yaml or .yml)
    pub(crate) container_config: PathBuf,
    /// Pod sandbox config file (.json, .yaml or .yml)
    pub(crate) pod_config: PathBuf,
    /// Runtime handler to use (empty: the runtime's default)
    #[arg(long, short = 'r', default_value = "")]
    pub(crate) runtime: String,
    /// Always pull the image first (default: only when it is missing)
    #[arg(long, conflicts_with = "no_pull")]
    pub(crate) with_pull: bool,
    /// Never pull; fail when the image is missing
    #[arg(long)]
    pub(crate) no_pull: bool,
}

/// Flags of `create`.
#[derive(Args, Debug)]
pub(crate) struct CreateArgs {
    /// The pod sandbox (id or unique prefix)
    pub(crate) pod: String,
    /// Container config file (.json, .yaml or .yml)
    pub(crate) container_config: PathBuf,
    /// The pod's sandbox config file, as given to runp
    pub(crate) pod_config: PathBuf,
    /// Pull the image before creating the container
    #[arg(long)]
    pub(crate) with_pull: bool,
}

/// Verbs that take container or pod ids only.
#[derive(Args, Debug)]
pub(crate) struct IdsArgs {
    /// Ids (or unique prefixes)
    #[arg(required = true)]
    pub(crate) ids: Vec<String>,
}

/// Flags of `stop`.
#[derive(Args, Debug)]
pub(crate) struct StopArgs {
    /// Container ids (or unique prefixes)
    #[arg(required = true)]
    pub(crate) ids: Vec<String>,
    /// Seconds the container gets to exit before it is killed
    #[arg(long, short = 't', default_value_t = 0)]
    pub(crate) timeout: u64,
}

/// Flags of `rm` and `rmp`.
#[derive(Args, Debug)]
pub(crate) struct RemoveArgs {
    /// Ids (or unique prefixes)
    #[arg(required_unless_present = "all")]
    pub(crate) ids: Vec<String>,
    /// Remove even when running (stops first)
    #[arg(long, short = 'f')]
    pub(crate) force: bool,
    /// Remove all of them
    #[arg(long, short = 'a')]
    pub(crate) all: bool,
}

/// Flags of `pull`.
#[derive(Args, Debug)]
pub(crate) struct PullArgs {
    /// The image reference
    pub(crate) image: String,
    /// Registry credentials as USERNAME[:PASSWORD]
    #[arg(long, value_name = "USERNAME[:PASSWORD]")]
    pub(crate) creds: Option<String>,
    /// Registry credentials as base64 of USERNAME:PASSWORD
    #[arg(long, value_name = "BASE64")]
    pub(crate) auth: Option<String>,
    /// The sandbox config of the pod the image is for
    #[arg(long, short = 'p', value_name = "FILE")]
    pub(crate) pod_config: Option<PathBuf>,
}

/// Flags of `rmi`.
#[derive(Args, Debug)]
pub(crate) struct RmiArgs {
    /// Image names, tags, ids or digests
    #[arg(required_unless_present = "all")]
    pub(crate) images: Vec<String>,
    /// Remove every image
    #[arg(long, short = 'a')]
    pub(crate) all: bool,
}

/// How streaming sessions reach the runtime's streaming server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum StreamTransport {
    /// SPDY/3.1 (crictl's default)
    #[default]
    Spdy,
    /// WebSocket
    Websocket,
}

impl From<StreamTransport> for cri_client::streaming::Transport {
    fn from(t: StreamTransport) -> Self {
        match t {
            StreamTransport::Spdy => Self::Spdy,
            StreamTransport::Websocket => Self::WebSocket,
        }
    }
}

/// TLS flags of the streaming verbs, for runtimes whose streaming URLs are `https://`.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct StreamTlsArgs {
    /// Trust the CA certificates in this PEM file for an https streaming server
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// Accept any certificate from an https streaming server. DANGEROUS: the session is
    /// encrypted but not authenticated, anyone on the path can read and change it
    #[arg(long, conflicts_with = "tls_ca")]
    pub(crate) insecure_skip_tls_verify: bool,
}

impl StreamTlsArgs {
    /// How the session connects: plain TCP, plus TLS when a flag asks for it.
    pub(crate) fn connector(&self) -> crate::error::Result<cri_client::streaming::Connector> {
        #[cfg(feature = "tls")]
        {
            use cri_client::streaming::{ClientTls, Connector};
            if self.insecure_skip_tls_verify {
                return Ok(Connector::tls(ClientTls::insecure_skip_verify()));
            }
            if let Some(ca) = &self.tls_ca {
                let tls = ClientTls::from_ca_pem_file(ca)
                    .map_err(|e| crate::error::CliError::msg(format!("--tls-ca: {e}")))?;
                return Ok(Connector::tls(tls));
            }
            Ok(Connector::default())
        }
        #[cfg(not(feature = "tls"))]
        {
            if self.insecure_skip_tls_verify || self.tls_ca.is_some() {
                return Err(crate::error::CliError::msg(
                    "--tls-ca and --insecure-skip-tls-verify need cri built with its `tls` feature",
                ));
            }
            Ok(cri_client::streaming::Connector::default())
        }
    }
}

/// Flags of `exec`.
#[derive(Args, Debug)]
pub(crate) struct ExecArgs {
    /// Run the command synchronously with ExecSync instead of a streaming session
    #[arg(long, short = 's')]
    pub(crate) sync: bool,
    /// Seconds the command may run with --sync (0: no limit)
    #[arg(long, default_value_t = 0)]
    pub(crate) timeout: u64,
    /// Pass stdin to the command (streaming)
    #[arg(long, short = 'i')]
    pub(crate) interactive: bool,
    /// Allocate a TTY (streaming; stderr is merged into stdout)
    #[arg(long, short = 't')]
    pub(crate) tty: bool,
    /// Protocol of the streaming session
    #[arg(long, value_enum, default_value_t = StreamTransport::Spdy)]
    pub(crate) transport: StreamTransport,
    /// TLS for the streaming session
    #[command(flatten)]
    pub(crate) tls: StreamTlsArgs,
    /// The container (id or unique prefix)
    pub(crate) container: String,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) cmd: Vec<String>,
}

/// Flags of `attach`.
#[derive(Args, Debug)]
pub(crate) struct AttachArgs {
    /// Pass stdin to the process
    #[arg(long, short = 'i')]
    pub(crate) interactive: bool,
    /// The container has a TTY (stderr is merged into stdout)
    #[arg(long, short = 't')]
    pub(crate) tty: bool,
    /// Protocol of the streaming session
    #[arg(long, value_enum, default_value_t = StreamTransport::Spdy)]
    pub(crate) transport: StreamTransport,
    /// TLS for the streaming session
    #[command(flatten)]
    pub(crate) tls: StreamTlsArgs,
    /// The container (id or unique prefix)
    pub(crate) container: String,
}

/// Flags of `port-forward`.
#[derive(Args, Debug)]
pub(crate) struct PortForwardArgs {
    /// Protocol of the streaming session
    #[arg(long, value_enum, default_value_t = StreamTransport::Spdy)]
    pub(crate) transport: StreamTransport,
    /// TLS for the streaming session
    #[command(flatten)]
    pub(crate) tls: StreamTlsArgs,
    /// Local address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) address: std::net::IpAddr,
    /// The pod sandbox (id or unique prefix)
    pub(crate) pod: String,
    /// Port pairs LOCAL:REMOTE (LOCAL 0 picks a free port; a single number means both)
    #[arg(required = true)]
    pub(crate) ports: Vec<String>,
}

/// Flags of `logs`.
#[derive(Args, Debug)]
pub(crate) struct LogsArgs {
    /// The container (id or unique prefix)
    pub(crate) container: String,
    /// Only the last N lines (-1: all)
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub(crate) tail: i64,
    /// Keep printing new lines until the container exits or you interrupt
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
    /// Prefix each line with its timestamp
    #[arg(long, short = 't')]
    pub(crate) timestamps: bool,
}

/// Flags of `stats`.
#[derive(Args, Debug)]
pub(crate) struct StatsArgs {
    /// Only this container (id or unique prefix)
    pub(crate) container: Option<String>,
    /// Show containers in every state (default: running only)
    #[arg(long, short = 'a')]
    pub(crate) all: bool,
    /// Only containers whose id starts with this
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// Only containers of this pod (id or unique prefix)
    #[arg(long, short = 'p')]
    pub(crate) pod: Option<String>,
    /// Only containers with this label (key=value; repeatable)
    #[arg(long, value_name = "KEY=VALUE")]
    pub(crate) label: Vec<String>,
    /// Output format
    #[arg(long, short = 'o', default_value = "table")]
    pub(crate) output: DocFormat,
    /// Show full ids
    #[arg(long)]
    pub(crate) no_trunc: bool,
}

/// Flags of `statsp`.
#[derive(Args, Debug)]
pub(crate) struct StatspArgs {
    /// Only this pod (id or unique prefix)
    pub(crate) pod: Option<String>,
    /// Only pods with this label (key=value; repeatable)
    #[arg(long, value_name = "KEY=VALUE")]
    pub(crate) label: Vec<String>,
    /// Output format
    #[arg(long, short = 'o', default_value = "table")]
    pub(crate) output: DocFormat,
    /// Show full ids
    #[arg(long)]
    pub(crate) no_trunc: bool,
}

/// Flags of `update`.
#[derive(Args, Debug)]
pub(crate) struct UpdateArgs {
    /// Container ids (or unique prefixes)
    #[arg(required = true)]
    pub(crate) ids: Vec<String>,
    /// CPU shares (relative weight)
    #[arg(long)]
    pub(crate) cpu_shares: Option<i64>,
    /// CPU CFS quota in microseconds
    #[arg(long)]
    pub(crate) cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds
    #[arg(long)]
    pub(crate) cpu_period: Option<i64>,
    /// Memory limit: bytes, or with a k, m or g suffix (powers of 1024)
    #[arg(long, value_parser = crate::config::parse_memory)]
    pub(crate) memory: Option<i64>,
    /// CPUs the container may use (e.g. 0-3 or 0,2)
    #[arg(long)]
    pub(crate) cpuset_cpus: Option<String>,
    /// Memory nodes the container may use (e.g. 0-1)
    #[arg(long)]
    pub(crate) cpuset_mems: Option<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_the_verb() {
        let cli =
            Cli::try_parse_from(["cri", "-r", "/s.sock", "-t", "5s", "-D", "ps", "-a"]).unwrap();
        assert_eq!(cli.global.runtime_endpoint.as_deref(), Some("/s.sock"));
        assert_eq!(cli.global.timeout, Some(Duration::from_secs(5)));
        assert!(cli.global.debug);
        assert!(matches!(cli.command, Command::Ps(PsArgs { all: true, .. })));
    }

    #[test]
    fn verbs_reuse_short_flags_of_global_ones() {
        let cli = Cli::try_parse_from(["cri", "logs", "-t", "-f", "c1"]).unwrap();
        let Command::Logs(logs) = cli.command else {
            panic!()
        };
        assert!(logs.timestamps && logs.follow);
        assert_eq!(logs.tail, -1);
        let cli = Cli::try_parse_from(["cri", "stop", "-t", "10", "a", "b"]).unwrap();
        let Command::Stop(stop) = cli.command else {
            panic!()
        };
        assert_eq!((stop.timeout, stop.ids.len()), (10, 2));
    }

    #[test]
    fn exec_keeps_the_command_whole() {
        let cli = Cli::try_parse_from([
            "cri",
            "exec",
            "-s",
            "--timeout",
            "3",
            "c1",
            "sh",
            "-c",
            "echo -n x",
        ])
        .unwrap();
        let Command::Exec(exec) = cli.command else {
            panic!()
        };
        assert!(exec.sync);
        assert_eq!(exec.timeout, 3);
        assert_eq!(exec.container, "c1");
        assert_eq!(exec.cmd, ["sh", "-c", "echo -n x"]);
    }

    #[test]
    fn list_formats() {
        let cli = Cli::try_parse_from([
            "cri", "pods", "-o", "id", "--label", "a=b", "--label", "c=d",
        ])
        .unwrap();
        let Command::Pods(pods) = cli.command else {
            panic!()
        };
        assert_eq!(pods.output, ListFormat::Id);
        assert_eq!(pods.label, ["a=b", "c=d"]);
        assert!(Cli::try_parse_from(["cri", "ps", "-o", "xml"]).is_err());
        assert!(Cli::try_parse_from(["cri", "rm"]).is_err(), "ids or --all");
        assert!(Cli::try_parse_from(["cri", "rm", "-a"]).is_ok());
    }
}
