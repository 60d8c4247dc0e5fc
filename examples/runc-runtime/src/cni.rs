//! A small CNI client: the network configuration in `--cni-conf-dir`, and its plugins run on
//! a pod's network namespace (CNI 0.4.0 and 1.0.0; results of older versions are read too).
//!
//! A plugin is the executable its config's `type` names, looked up in the bin directories.
//! It learns the operation from its environment (`CNI_COMMAND`, `CNI_CONTAINERID`,
//! `CNI_NETNS`, `CNI_IFNAME`, `CNI_PATH`, `CNI_ARGS`) and reads its own config on stdin, with
//! the list's `name` and `cniVersion` added and, after the first plugin of a chain, the result
//! so far as `prevResult`. It answers on stdout: a result, or an error object
//! (`code`, `msg`, `details`) together with a non-zero exit status.
//!
//! ADD runs the list in order, each plugin getting the previous one's result; the last result
//! is the attachment's. DEL runs it in reverse with that result as `prevResult`, goes on past
//! a failing plugin (so that IPAM still releases the address), and tolerates the answers that
//! mean "already gone".

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The name of the interface a pod gets.
pub(crate) const IFNAME: &str = "eth0";
/// How long one plugin may run before it is killed.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The config file extensions CNI loaders read (`*.conflist` holds a list, the others one
/// plugin).
const EXTENSIONS: [&str; 3] = ["conflist", "conf", "json"];
/// The CNI error code for "container unknown or does not exist".
const CODE_UNKNOWN_CONTAINER: i64 = 3;

/// What can go wrong loading the configuration or running a plugin.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CniError {
    /// `--cni-conf-dir` was not given.
    #[error("CNI is not configured (no --cni-conf-dir)")]
    NotConfigured,
    /// The directory holds no config file.
    #[error("no CNI network config (*.conflist, *.conf, *.json) in {0}")]
    NoConfig(PathBuf),
    /// The directory cannot be read.
    #[error("reading the CNI config directory {dir}: {source}")]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No file in the directory holds a usable network; each one's reason.
    #[error("no usable CNI network config in {dir}: {reasons}")]
    Invalid {
        /// The directory.
        dir: PathBuf,
        /// `file: why`, for each file, `; `-separated.
        reasons: String,
    },
    /// A plugin's executable is in none of the bin directories.
    #[error("CNI plugin {plugin:?} not found in {dirs}")]
    PluginNotFound {
        /// The plugin type.
        plugin: String,
        /// The directories searched, `:`-separated.
        dirs: String,
    },
    /// A plugin failed, or answered something unreadable.
    #[error("CNI plugin {plugin:?} failed on {command}: {message}")]
    Failed {
        /// The plugin type.
        plugin: String,
        /// ADD or DEL.
        command: &'static str,
        /// Its error (code, msg, details), or its stderr.
        message: String,
        /// The CNI error code, when it gave one.
        code: Option<i64>,
    },
    /// A plugin ran longer than allowed and was killed.
    #[error("CNI plugin {plugin:?} did not finish {command} within {} s; killed", limit.as_secs())]
    Timeout {
        /// The plugin type.
        plugin: String,
        /// ADD or DEL.
        command: &'static str,
        /// The limit.
        limit: Duration,
    },
    /// A plugin could not be started or talked to.
    #[error("running CNI plugin {plugin:?} ({command}): {source}")]
    Io {
        /// The plugin type.
        plugin: String,
        /// ADD or DEL.
        command: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

impl CniError {
    /// Whether the error is about the configuration (the network is not ready) rather than a
    /// plugin run.
    pub(crate) fn is_config(&self) -> bool {
        matches!(
            self,
            Self::NotConfigured | Self::NoConfig(_) | Self::ReadDir { .. } | Self::Invalid { .. }
        )
    }

    /// Whether a DEL failure means the thing to delete is already gone.
    fn is_gone(&self) -> bool {
        match self {
            Self::Failed { message, code, .. } => {
                let message = message.to_lowercase();
                *code == Some(CODE_UNKNOWN_CONTAINER)
                    || ["not found", "no such", "does not exist"]
                        .iter()
                        .any(|m| message.contains(m))
            }
            _ => false,
        }
    }
}

/// A network configuration list, as loaded (a single-plugin `.conf` is wrapped into one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct NetworkList {
    /// The network's name.
    pub(crate) name: String,
    /// The CNI version the plugins are spoken to in.
    #[serde(rename = "cniVersion")]
    pub(crate) cni_version: String,
    /// Each plugin's config, in order (each has a string `type`).
    pub(crate) plugins: Vec<Map<String, Value>>,
    /// The file it came from.
    #[serde(default)]
    pub(crate) source: PathBuf,
}

impl NetworkList {
    /// Reads a list from a config file's `bytes`; `path` decides the format (`.conflist`: a
    /// list; otherwise one plugin, or a list if it has `plugins`). Errors name the field.
    pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<NetworkList, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let Value::Object(object) = value else {
            return Err("not a JSON object".into());
        };
        let text = |field: &str| -> Result<String, String> {
            match object.get(field) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(_) => Err(format!("{field}: must be a non-empty string")),
                None => Err(format!("{field}: missing")),
            }
        };
        let is_list =
            path.extension().is_some_and(|e| e == "conflist") || object.contains_key("plugins");
        let (name, cni_version) = (text("name")?, text("cniVersion")?);
        let plugins = if is_list {
            match object.get("plugins") {
                Some(Value::Array(plugins)) if !plugins.is_empty() => plugins
                    .iter()
                    .enumerate()
                    .map(|(i, p)| match p {
                        Value::Object(p) => Ok(p.clone()),
                        _ => Err(format!("plugins[{i}]: not an object")),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                Some(_) => return Err("plugins: must be a non-empty array".into()),
                None => return Err("plugins: missing".into()),
            }
        } else {
            vec![object.clone()]
        };
        for (i, plugin) in plugins.iter().enumerate() {
            plugin_type(plugin).map_err(|why| format!("plugins[{i}].{why}"))?;
        }
        Ok(NetworkList {
            name,
            cni_version,
            plugins,
            source: path.to_path_buf(),
        })
    }
}

/// A plugin config's `type`: a plain file name.
fn plugin_type(plugin: &Map<String, Value>) -> Result<&str, String> {
    match plugin.get("type") {
        Some(Value::String(t)) if !t.is_empty() && !t.contains('/') && t != "." && t != ".." => {
            Ok(t)
        }
        Some(_) => Err("type: must be a plugin file name".into()),
        None => Err("type: missing".into()),
    }
}

/// What one ADD or DEL is about: the container (the pod), its network namespace, the
/// interface and the Kubernetes identity passed in `CNI_ARGS`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Attachment {
    /// `CNI_CONTAINERID`: the pod sandbox id.
    pub(crate) container_id: String,
    /// `CNI_NETNS`: a path to the network namespace.
    pub(crate) netns: PathBuf,
    /// `CNI_IFNAME`.
    pub(crate) ifname: String,
    /// `CNI_ARGS` pairs (after `IgnoreUnknown=1`).
    pub(crate) args: Vec<(String, String)>,
    /// Capability arguments by capability name (`portMappings`): given, as
    /// `runtimeConfig.<name>`, to each plugin whose config declares
    /// `"capabilities": {"<name>": true}`, on ADD and DEL alike.
    pub(crate) capability_args: Map<String, Value>,
}

impl Attachment {
    /// The attachment of pod `id` (with `config`) on the namespace at `netns`. The pod's
    /// port mappings that name a host port become the `portMappings` capability argument
    /// (`hostPort`, `containerPort`, lower-case `protocol`, `hostIP`); the others only
    /// document the container's ports and need no plumbing.
    pub(crate) fn for_pod(id: &str, netns: &Path, config: &cri_api::v1::PodSandboxConfig) -> Self {
        let m = config.metadata.clone().unwrap_or_default();
        let mut capability_args = Map::new();
        let mappings: Vec<Value> = config
            .port_mappings
            .iter()
            .filter(|p| p.host_port > 0)
            .map(|p| {
                let protocol = cri_api::v1::Protocol::try_from(p.protocol)
                    .unwrap_or(cri_api::v1::Protocol::Tcp)
                    .as_str_name()
                    .to_ascii_lowercase();
                serde_json::json!({
                    "hostPort": p.host_port,
                    "containerPort": p.container_port,
                    "protocol": protocol,
                    "hostIP": p.host_ip,
                })
            })
            .collect();
        if !mappings.is_empty() {
            capability_args.insert("portMappings".into(), Value::Array(mappings));
        }
        Attachment {
            container_id: id.to_string(),
            netns: netns.to_path_buf(),
            ifname: IFNAME.to_string(),
            args: vec![
                ("K8S_POD_NAMESPACE".into(), m.namespace),
                ("K8S_POD_NAME".into(), m.name),
                ("K8S_POD_INFRA_CONTAINER_ID".into(), id.to_string()),
                ("K8S_POD_UID".into(), m.uid),
            ],
            capability_args,
        }
    }

    /// `CNI_ARGS`: `IgnoreUnknown=1;K=V;...` (`;` and `=` in values would break the format,
    /// so they are dropped from them).
    fn cni_args(&self) -> String {
        let mut text = String::from("IgnoreUnknown=1");
        for (key, value) in &self.args {
            let value: String = value.chars().filter(|c| !matches!(c, ';' | '=')).collect();
            text.push_str(&format!(";{key}={value}"));
        }
        text
    }
}

/// The addresses of a CNI result, without prefix lengths (`ips[].address` since 0.3.0,
/// `ip4.ip` / `ip6.ip` before).
pub(crate) fn result_ips(result: &Value) -> Vec<String> {
    let strip = |v: &Value| {
        v.as_str()
            .map(|a| a.split_once('/').map_or(a, |(ip, _)| ip).to_string())
    };
    let mut ips: Vec<String> = result
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.get("address").and_then(strip))
        .collect();
    if ips.is_empty() {
        ips = ["ip4", "ip6"]
            .iter()
            .filter_map(|family| result.get(*family)?.get("ip").and_then(strip))
            .collect();
    }
    ips
}

/// The CNI configuration of the runtime: where network configs and plugins are.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cni {
    conf_dir: Option<PathBuf>,
    bin_dirs: Vec<PathBuf>,
    timeout: Option<Duration>,
}

impl Cni {
    /// CNI with configs from `conf_dir` (`None`: not configured) and plugins from `bin_dirs`.
    pub(crate) fn new(conf_dir: Option<PathBuf>, bin_dirs: Vec<PathBuf>) -> Self {
        Cni {
            conf_dir,
            bin_dirs,
            timeout: None,
        }
    }

    /// The config directory, when CNI is configured.
    pub(crate) fn conf_dir(&self) -> Option<&Path> {
        self.conf_dir.as_deref()
    }

    /// Where plugins are looked for.
    pub(crate) fn bin_dirs(&self) -> &[PathBuf] {
        &self.bin_dirs
    }

    fn limit(&self) -> Duration {
        self.timeout.unwrap_or(PLUGIN_TIMEOUT)
    }

    /// The network: the first config file, in file name order, that holds a usable one. Read
    /// anew on each call, so a config written after the start is picked up.
    pub(crate) fn load(&self) -> Result<NetworkList, CniError> {
        let dir = self.conf_dir.as_deref().ok_or(CniError::NotConfigured)?;
        let entries = std::fs::read_dir(dir).map_err(|source| CniError::ReadDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| EXTENSIONS.contains(&e))
            })
            .collect();
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        if files.is_empty() {
            return Err(CniError::NoConfig(dir.to_path_buf()));
        }
        let mut reasons = Vec::new();
        for file in files {
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
            let name = name.unwrap_or_default();
            match std::fs::read(&file)
                .map_err(|e| e.to_string())
                .and_then(|bytes| NetworkList::parse(&file, &bytes))
            {
                Ok(list) => return Ok(list),
                Err(why) => reasons.push(format!("{name}: {why}")),
            }
        }
        Err(CniError::Invalid {
            dir: dir.to_path_buf(),
            reasons: reasons.join("; "),
        })
    }

    /// ADD: attaches `attachment` to `network`, plugin after plugin; returns the final
    /// result. On a failure the plugins that ran are not undone: the caller runs
    /// [`Cni::del`].
    pub(crate) async fn add(
        &self,
        network: &NetworkList,
        attachment: &Attachment,
    ) -> Result<Value, CniError> {
        let mut result: Option<Value> = None;
        for plugin in &network.plugins {
            let answer = self
                .exec("ADD", plugin, network, attachment, result.as_ref())
                .await?;
            // A plugin that prints nothing leaves the result as it was.
            if answer.is_some() {
                result = answer;
            }
        }
        Ok(result.unwrap_or_else(|| Value::Object(Map::new())))
    }

    /// DEL: detaches `attachment` from `network`, plugins in reverse order, with `prev` (the
    /// ADD result) as `prevResult`. Every plugin runs even when one fails; "already gone"
    /// answers are not failures. Returns the first real failure.
    pub(crate) async fn del(
        &self,
        network: &NetworkList,
        attachment: &Attachment,
        prev: Option<&Value>,
    ) -> Result<(), CniError> {
        let mut first_failure = None;
        for plugin in network.plugins.iter().rev() {
            match self.exec("DEL", plugin, network, attachment, prev).await {
                Ok(_) => {}
                Err(e) if e.is_gone() => {
                    tracing::info!(id = %attachment.container_id, error = %e, "CNI DEL: already gone");
                }
                Err(e) => {
                    tracing::warn!(id = %attachment.container_id, error = %e, "CNI DEL");
                    first_failure.get_or_insert(e);
                }
            }
        }
        first_failure.map_or(Ok(()), Err)
    }

    /// The executable of plugin type `kind`.
    fn find(&self, kind: &str) -> Result<PathBuf, CniError> {
        self.bin_dirs
            .iter()
            .map(|dir| dir.join(kind))
            .find(|path| path.is_file())
            .ok_or_else(|| CniError::PluginNotFound {
                plugin: kind.to_string(),
                dirs: self.cni_path(),
            })
    }

    fn cni_path(&self) -> String {
        let dirs: Vec<String> = self
            .bin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        dirs.join(":")
    }

    /// Runs one plugin; `Ok(None)` when it printed nothing.
    async fn exec(
        &self,
        command: &'static str,
        plugin: &Map<String, Value>,
        network: &NetworkList,
        attachment: &Attachment,
        prev: Option<&Value>,
    ) -> Result<Option<Value>, CniError> {
        let kind = plugin_type(plugin)
            .map_err(|why| CniError::Failed {
                plugin: String::new(),
                command,
                message: format!("invalid plugin config: {why}"),
                code: None,
            })?
            .to_string();
        let exe = self.find(&kind)?;
        let mut config = plugin.clone();
        config.insert("name".into(), Value::String(network.name.clone()));
        config.insert(
            "cniVersion".into(),
            Value::String(network.cni_version.clone()),
        );
        if let Some(prev) = prev {
            config.insert("prevResult".into(), prev.clone());
        }
        let runtime_config: Map<String, Value> = attachment
            .capability_args
            .iter()
            .filter(|(name, _)| {
                plugin
                    .get("capabilities")
                    .and_then(|c| c.get(name.as_str()))
                    .and_then(Value::as_bool)
                    == Some(true)
            })
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        if !runtime_config.is_empty() {
            config.insert("runtimeConfig".into(), Value::Object(runtime_config));
        }
        let input = Value::Object(config).to_string().into_bytes();
        let io = |source| CniError::Io {
            plugin: kind.clone(),
            command,
            source,
        };
        let env: HashMap<&str, String> = [
            ("CNI_COMMAND", command.to_string()),
            ("CNI_CONTAINERID", attachment.container_id.clone()),
            ("CNI_NETNS", attachment.netns.display().to_string()),
            ("CNI_IFNAME", attachment.ifname.clone()),
            ("CNI_PATH", self.cni_path()),
            ("CNI_ARGS", attachment.cni_args()),
        ]
        .into();
        let mut child = spawn(&exe, &env).await.map_err(io)?;
        let stdin = child.stdin.take();
        let run = async move {
            if let Some(mut stdin) = stdin {
                use tokio::io::AsyncWriteExt;
                // A plugin may exit without reading its config; its answer says why.
                let _ = stdin.write_all(&input).await;
            }
            child.wait_with_output().await
        };
        let output = match tokio::time::timeout(self.limit(), run).await {
            Ok(output) => output.map_err(io)?,
            // Dropping the future drops the child, which kills it (`kill_on_drop`).
            Err(_) => {
                return Err(CniError::Timeout {
                    plugin: kind,
                    command,
                    limit: self.limit(),
                });
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            let (message, code) = describe_failure(&stdout, &output.stderr, output.status);
            return Err(CniError::Failed {
                plugin: kind,
                command,
                message,
                code,
            });
        }
        // DEL answers nothing worth reading (and some plugins print anyway).
        if command == "DEL" || stdout.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&stdout)
            .map(Some)
            .map_err(|e| CniError::Failed {
                plugin: kind,
                command,
                message: format!("unreadable result {:?}: {e}", stdout.trim()),
                code: None,
            })
    }
}

/// Starts `exe` with `env` added and all three stdio streams piped. A plugin binary being
/// replaced (`ETXTBSY`) is retried a few times.
async fn spawn(exe: &Path, env: &HashMap<&str, String>) -> std::io::Result<tokio::process::Child> {
    const ETXTBSY: i32 = 26;
    let mut attempts = 0;
    loop {
        let spawned = tokio::process::Command::new(exe)
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        match spawned {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && attempts < 5 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

/// A failed plugin's words: its error object (`code`, `msg`, `details`) from stdout, else its
/// stderr or stdout, else its exit status.
fn describe_failure(
    stdout: &str,
    stderr: &[u8],
    status: std::process::ExitStatus,
) -> (String, Option<i64>) {
    if let Ok(Value::Object(error)) = serde_json::from_str::<Value>(stdout) {
        let code = error.get("code").and_then(Value::as_i64);
        let msg = error.get("msg").and_then(Value::as_str).unwrap_or_default();
        let details = error
            .get("details")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut text = match code {
            Some(code) => format!("error {code}: {msg}"),
            None => msg.to_string(),
        };
        if !details.is_empty() {
            text.push_str(&format!(" ({details})"));
        }
        if !text.is_empty() {
            return (text, code);
        }
    }
    let stderr = String::from_utf8_lossy(stderr);
    let text = [stderr.trim(), stdout.trim()]
        .into_iter()
        .find(|t| !t.is_empty())
        .map_or_else(|| format!("exited with {status}"), str::to_string);
    (text, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn list(plugins: &[&str]) -> NetworkList {
        NetworkList {
            name: "testnet".into(),
            cni_version: "1.0.0".into(),
            plugins: plugins
                .iter()
                .map(|t| {
                    let mut p = Map::new();
                    p.insert("type".into(), Value::String(t.to_string()));
                    p.insert("custom".into(), Value::String(format!("{t}-setting")));
                    p
                })
                .collect(),
            source: PathBuf::new(),
        }
    }

    /// A fake plugin: records its call (`calls`), its stdin (`<name>.<COMMAND>.json`) and its
    /// environment (`<name>.<COMMAND>.env`) next to itself, then runs `body`.
    fn plugin(dir: &Path, name: &str, body: &str) {
        let path = dir.join(name);
        let script = format!(
            "#!/bin/sh\n\
             d=$(dirname \"$0\")\n\
             input=$(cat)\n\
             echo \"{name} $CNI_COMMAND\" >> \"$d/calls\"\n\
             printf '%s' \"$input\" > \"$d/{name}.$CNI_COMMAND.json\"\n\
             echo \"$CNI_CONTAINERID|$CNI_NETNS|$CNI_IFNAME|$CNI_ARGS|$CNI_PATH\" > \"$d/{name}.$CNI_COMMAND.env\"\n\
             {body}\n"
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn read_json(path: PathBuf) -> Value {
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn attachment() -> Attachment {
        Attachment::for_pod(
            "pod1",
            Path::new("/run/pods/pod1/netns"),
            &cri_api::v1::PodSandboxConfig {
                metadata: Some(cri_api::v1::PodSandboxMetadata {
                    name: "web".into(),
                    namespace: "default".into(),
                    uid: "u-1".into(),
                    attempt: 0,
                }),
                ..Default::default()
            },
        )
    }

    const RESULT: &str =
        r#"{"cniVersion":"1.0.0","ips":[{"address":"10.9.0.5/24"},{"address":"fd00::5/64"}]}"#;

    #[test]
    fn the_first_usable_config_in_name_order_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let cni = Cni::new(Some(dir.path().to_path_buf()), vec![]);
        assert!(matches!(cni.load(), Err(CniError::NoConfig(_))));
        assert!(Cni::default().load().unwrap_err().is_config());

        std::fs::write(dir.path().join("README"), "not a config").unwrap();
        std::fs::write(
            dir.path().join("20-single.conf"),
            r#"{"cniVersion":"0.4.0","name":"single","type":"bridge","bridge":"br0"}"#,
        )
        .unwrap();
        let single = cni.load().unwrap();
        assert_eq!(single.name, "single");
        assert_eq!(single.cni_version, "0.4.0");
        assert_eq!(single.plugins.len(), 1);
        assert_eq!(single.plugins[0]["bridge"], "br0");

        std::fs::write(
            dir.path().join("10-list.conflist"),
            r#"{"cniVersion":"1.0.0","name":"list","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
        )
        .unwrap();
        let loaded = cni.load().unwrap();
        assert_eq!(loaded.name, "list");
        assert_eq!(loaded.plugins.len(), 2);
        assert_eq!(loaded.source, dir.path().join("10-list.conflist"));

        // An invalid first file is passed over; with none usable, each reason is given.
        std::fs::write(dir.path().join("05-bad.conflist"), r#"{"name":"x"}"#).unwrap();
        assert_eq!(cni.load().unwrap().name, "list");
        std::fs::remove_file(dir.path().join("10-list.conflist")).unwrap();
        std::fs::remove_file(dir.path().join("20-single.conf")).unwrap();
        let err = cni.load().unwrap_err();
        assert!(err.is_config());
        assert!(
            err.to_string()
                .contains("05-bad.conflist: cniVersion: missing"),
            "{err}"
        );
    }

    #[test]
    fn bad_configs_name_the_field() {
        let conflist = Path::new("x.conflist");
        let cases = [
            ("[]", "not a JSON object"),
            ("{", "not JSON"),
            (r#"{"cniVersion":"1.0.0","plugins":[]}"#, "name: missing"),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
                "plugins: must be a non-empty array",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"ok"},3]}"#,
                "plugins[1]: not an object",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../sh"}]}"#,
                "plugins[0].type: must be a plugin file name",
            ),
            (r#"{"cniVersion":"1.0.0","name":"n"}"#, "plugins: missing"),
            (r#"{"cniVersion":1,"name":"n"}"#, "cniVersion: must be"),
        ];
        for (text, want) in cases {
            let err = NetworkList::parse(conflist, text.as_bytes()).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        let err = NetworkList::parse(Path::new("x.conf"), br#"{"cniVersion":"1.0.0","name":"n"}"#)
            .unwrap_err();
        assert_eq!(err, "plugins[0].type: missing");
    }

    #[test]
    fn results_give_their_addresses() {
        let current: Value = serde_json::from_str(RESULT).unwrap();
        assert_eq!(result_ips(&current), ["10.9.0.5", "fd00::5"]);
        let old: Value = serde_json::from_str(
            r#"{"cniVersion":"0.2.0","ip4":{"ip":"10.1.0.7/16"},"ip6":{"ip":"fd00::7/64"}}"#,
        )
        .unwrap();
        assert_eq!(result_ips(&old), ["10.1.0.7", "fd00::7"]);
        assert!(result_ips(&serde_json::json!({})).is_empty());
    }

    #[test]
    fn cni_args_carry_the_pod_identity() {
        let mut a = attachment();
        assert_eq!(
            a.cni_args(),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;\
             K8S_POD_INFRA_CONTAINER_ID=pod1;K8S_POD_UID=u-1"
        );
        a.args = vec![("K".into(), "a;b=c".into())];
        assert_eq!(a.cni_args(), "IgnoreUnknown=1;K=abc");
    }

    #[tokio::test]
    async fn add_chains_results_and_del_runs_in_reverse() {
        let bin = tempfile::tempdir().unwrap();
        plugin(
            bin.path(),
            "first",
            &format!("if [ \"$CNI_COMMAND\" = ADD ]; then echo '{RESULT}'; fi"),
        );
        // A chained plugin that passes the result on as it is (by printing nothing).
        plugin(bin.path(), "second", "");
        let empty = tempfile::tempdir().unwrap();
        let cni = Cni::new(None, vec![empty.path().into(), bin.path().into()]);
        let network = list(&["first", "second"]);

        let result = cni.add(&network, &attachment()).await.unwrap();
        assert_eq!(result_ips(&result), ["10.9.0.5", "fd00::5"]);
        let first = read_json(bin.path().join("first.ADD.json"));
        assert_eq!(first["name"], "testnet");
        assert_eq!(first["cniVersion"], "1.0.0");
        assert_eq!(first["custom"], "first-setting");
        assert!(first.get("prevResult").is_none());
        let second = read_json(bin.path().join("second.ADD.json"));
        assert_eq!(second["prevResult"], result);
        assert_eq!(second["custom"], "second-setting");
        let env = std::fs::read_to_string(bin.path().join("first.ADD.env")).unwrap();
        assert_eq!(
            env.trim(),
            format!(
                "pod1|/run/pods/pod1/netns|eth0|{}|{}:{}",
                attachment().cni_args(),
                empty.path().display(),
                bin.path().display()
            )
        );

        cni.del(&network, &attachment(), Some(&result))
            .await
            .unwrap();
        let calls = std::fs::read_to_string(bin.path().join("calls")).unwrap();
        assert_eq!(calls, "first ADD\nsecond ADD\nsecond DEL\nfirst DEL\n");
        assert_eq!(
            read_json(bin.path().join("first.DEL.json"))["prevResult"],
            result
        );
    }

    #[tokio::test]
    async fn port_mappings_reach_only_plugins_that_declare_the_capability() {
        let bin = tempfile::tempdir().unwrap();
        plugin(
            bin.path(),
            "first",
            &format!("if [ \"$CNI_COMMAND\" = ADD ]; then echo '{RESULT}'; fi"),
        );
        plugin(bin.path(), "second", "");
        let cni = Cni::new(None, vec![bin.path().into()]);
        let mut network = list(&["first", "second"]);
        network.plugins[1].insert(
            "capabilities".into(),
            serde_json::json!({"portMappings": true}),
        );
        let config = cri_api::v1::PodSandboxConfig {
            port_mappings: vec![
                cri_api::v1::PortMapping {
                    protocol: cri_api::v1::Protocol::Tcp as i32,
                    container_port: 80,
                    host_port: 12000,
                    host_ip: "127.0.0.1".into(),
                },
                cri_api::v1::PortMapping {
                    protocol: cri_api::v1::Protocol::Udp as i32,
                    container_port: 53,
                    host_port: 12053,
                    host_ip: String::new(),
                },
                // A container port alone asks for no plumbing.
                cri_api::v1::PortMapping {
                    container_port: 8080,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let attachment = Attachment::for_pod("pod1", Path::new("/run/netns"), &config);
        let result = cni.add(&network, &attachment).await.unwrap();
        cni.del(&network, &attachment, Some(&result)).await.unwrap();
        let want = serde_json::json!({"portMappings": [
            {"hostPort": 12000, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"},
            {"hostPort": 12053, "containerPort": 53, "protocol": "udp", "hostIP": ""},
        ]});
        for command in ["ADD", "DEL"] {
            let second = read_json(bin.path().join(format!("second.{command}.json")));
            assert_eq!(second["runtimeConfig"], want, "{command}");
            let first = read_json(bin.path().join(format!("first.{command}.json")));
            assert!(first.get("runtimeConfig").is_none(), "{command}");
        }
    }

    #[tokio::test]
    async fn plugin_errors_are_reported_with_the_plugin_name() {
        let bin = tempfile::tempdir().unwrap();
        plugin(
            bin.path(),
            "broken",
            r#"echo '{"code":11,"msg":"address pool exhausted","details":"10.9.0.0/24"}'; exit 1"#,
        );
        plugin(bin.path(), "mute", "echo 'plain words' >&2; exit 2");
        plugin(bin.path(), "garbled", "echo 'not json'");
        plugin(
            bin.path(),
            "gone",
            r#"if [ "$CNI_COMMAND" = DEL ]; then echo '{"code":3,"msg":"netns missing"}'; exit 1; fi"#,
        );
        let cni = Cni::new(None, vec![bin.path().into()]);

        let err = cni
            .add(&list(&["broken"]), &attachment())
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "CNI plugin \"broken\" failed on ADD: error 11: address pool exhausted (10.9.0.0/24)"
        );
        assert!(!err.is_config());
        let err = cni.add(&list(&["mute"]), &attachment()).await.unwrap_err();
        assert!(
            err.to_string().ends_with("failed on ADD: plain words"),
            "{err}"
        );
        let err = cni
            .add(&list(&["garbled"]), &attachment())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("unreadable result"), "{err}");
        let err = cni
            .add(&list(&["absent"]), &attachment())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, CniError::PluginNotFound { plugin, .. } if plugin == "absent"),
            "{err}"
        );

        // DEL goes on past a failure, tolerates "already gone", reports the real failure.
        std::fs::remove_file(bin.path().join("calls")).unwrap();
        cni.del(&list(&["gone"]), &attachment(), None)
            .await
            .unwrap();
        let err = cni
            .del(&list(&["gone", "broken", "garbled"]), &attachment(), None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("\"broken\""), "{err}");
        let calls = std::fs::read_to_string(bin.path().join("calls")).unwrap();
        assert_eq!(
            calls, "gone DEL\ngarbled DEL\nbroken DEL\ngone DEL\n",
            "every plugin ran"
        );
    }

    #[tokio::test]
    async fn a_hanging_plugin_is_killed() {
        let bin = tempfile::tempdir().unwrap();
        plugin(bin.path(), "hang", "exec sleep 600");
        let mut cni = Cni::new(None, vec![bin.path().into()]);
        cni.timeout = Some(Duration::from_millis(300));
        let err = cni.add(&list(&["hang"]), &attachment()).await.unwrap_err();
        assert!(
            matches!(&err, CniError::Timeout { plugin, command: "ADD", .. } if plugin == "hang"),
            "{err}"
        );
    }
}
