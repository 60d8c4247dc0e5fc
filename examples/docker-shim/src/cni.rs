//! CNI for pods with their own network namespace: the plugins of the first network config in
//! `--cni-conf-dir` run against the pause container's namespace (`/proc/<pid>/ns/net`),
//! ADD once it runs, DEL before it stops. What DEL needs later (the network as it was used,
//! the ADD result) is kept in `<root>/cni/<pod id>.json`, so a restarted shim — or one whose
//! config directory changed meanwhile — tears down exactly what it set up.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cri_api::v1::{PodSandboxConfig, Protocol};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A network: its name, CNI version and plugin configs, in order.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Network {
    /// `name`.
    pub(crate) name: String,
    /// `cniVersion`.
    pub(crate) cni_version: String,
    /// The plugin configs.
    pub(crate) plugins: Vec<Value>,
    /// The file it came from.
    pub(crate) source: PathBuf,
}

/// A pod's attachment, as persisted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Attachment {
    /// The network as used for ADD.
    pub(crate) network: Network,
    /// The final ADD result.
    pub(crate) result: Value,
    /// The pod's addresses (without prefix length), first the primary one.
    pub(crate) ips: Vec<String>,
    /// `CNI_ARGS` of ADD (DEL passes the same).
    pub(crate) args: String,
    /// DEL succeeded.
    #[serde(default)]
    pub(crate) torn_down: bool,
}

/// The CNI configuration of the shim.
#[derive(Clone, Debug)]
pub(crate) struct Cni {
    conf_dir: Option<PathBuf>,
    bin_dirs: Vec<PathBuf>,
}

/// What every plugin run of one ADD or DEL shares.
#[derive(Clone, Copy)]
struct Call<'a> {
    network: &'a Network,
    pod_id: &'a str,
    netns: &'a str,
    args: &'a str,
    runtime_config: &'a Value,
}

/// The interface name inside the pod.
const IFNAME: &str = "eth0";

impl Cni {
    pub(crate) fn new(conf_dir: Option<PathBuf>, bin_dirs: Vec<PathBuf>) -> Self {
        Self { conf_dir, bin_dirs }
    }

    /// `--cni-conf-dir`, when CNI is on.
    pub(crate) fn conf_dir(&self) -> Option<&Path> {
        self.conf_dir.as_deref()
    }

    /// The first network in the config directory (`*.conflist`, `*.conf`, `*.json`, by name).
    pub(crate) fn load(&self) -> Result<Network, String> {
        let dir = self
            .conf_dir
            .as_ref()
            .ok_or_else(|| "no CNI config directory".to_string())?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| format!("reading {}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "conflist" | "conf" | "json"))
            })
            .collect();
        files.sort();
        let file = files.first().ok_or_else(|| {
            format!(
                "no network config (*.conflist, *.conf, *.json) in {}",
                dir.display()
            )
        })?;
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("reading {}: {e}", file.display()))?;
        parse(&text, file)
    }

    fn command(&self, plugin: &str) -> Result<PathBuf, String> {
        if plugin.is_empty() || plugin.contains('/') {
            return Err(format!("bad plugin type {plugin:?}"));
        }
        self.bin_dirs
            .iter()
            .map(|d| d.join(plugin))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                format!(
                    "plugin {plugin:?} not found in {}",
                    self.bin_dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":")
                )
            })
    }

    /// Runs one plugin; its stdout parsed as JSON (`Value::Null` when empty).
    fn exec(
        &self,
        command: &str,
        plugin: &Value,
        call: &Call<'_>,
        prev: Option<&Value>,
    ) -> Result<Value, String> {
        let Call {
            network,
            pod_id: container_id,
            netns,
            args,
            runtime_config,
        } = *call;
        let kind = plugin["type"].as_str().unwrap_or_default();
        let mut config = plugin.clone();
        config["name"] = json!(network.name);
        config["cniVersion"] = json!(network.cni_version);
        if let Some(prev) = prev.filter(|p| !p.is_null()) {
            config["prevResult"] = prev.clone();
        }
        // runtimeConfig carries only the capabilities the plugin declares.
        let mut runtime = serde_json::Map::new();
        if let Some(caps) = plugin["capabilities"].as_object() {
            for (cap, on) in caps {
                if on.as_bool() == Some(true)
                    && let Some(value) = runtime_config.get(cap)
                {
                    runtime.insert(cap.clone(), value.clone());
                }
            }
        }
        if !runtime.is_empty() {
            config["runtimeConfig"] = Value::Object(runtime);
        }
        let path = self.command(kind)?;
        let cni_path = std::env::join_paths(&self.bin_dirs).map_err(|e| e.to_string())?;
        let mut child = Command::new(&path)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", IFNAME)
            .env("CNI_ARGS", args)
            .env("CNI_PATH", cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running plugin {kind:?}: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(config.to_string().as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("waiting for plugin {kind:?}: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let detail = serde_json::from_str::<Value>(&stdout)
                .ok()
                .map(|v| {
                    format!(
                        "error {}: {} {}",
                        v["code"],
                        v["msg"].as_str().unwrap_or_default(),
                        v["details"].as_str().unwrap_or_default()
                    )
                })
                .unwrap_or_else(|| {
                    format!(
                        "{} {}",
                        stdout.trim(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    )
                });
            return Err(format!(
                "plugin {kind:?} failed on {command}: {}",
                detail.trim()
            ));
        }
        if stdout.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&stdout)
            .map_err(|e| format!("plugin {kind:?} answered {command} with bad JSON: {e}"))
    }

    /// ADD of every plugin, in order, into the namespace at `netns`. On failure, DEL of what
    /// was added.
    pub(crate) fn add(
        &self,
        network: &Network,
        pod_id: &str,
        netns: &str,
        config: &PodSandboxConfig,
    ) -> Result<Attachment, String> {
        let args = cni_args(pod_id, config);
        let runtime_config = runtime_config(config);
        let call = Call {
            network,
            pod_id,
            netns,
            args: &args,
            runtime_config: &runtime_config,
        };
        let mut result = Value::Null;
        for (i, plugin) in network.plugins.iter().enumerate() {
            match self.exec("ADD", plugin, &call, Some(&result)) {
                Ok(next) => {
                    if !next.is_null() {
                        result = next;
                    }
                }
                Err(e) => {
                    let partial = Network {
                        plugins: network.plugins[..=i].to_vec(),
                        ..network.clone()
                    };
                    let _ = self.del_plugins(
                        &Call {
                            network: &partial,
                            ..call
                        },
                        &result,
                    );
                    return Err(e);
                }
            }
        }
        Ok(Attachment {
            network: network.clone(),
            ips: ips_of(&result),
            result,
            args,
            torn_down: false,
        })
    }

    fn del_plugins(&self, call: &Call<'_>, result: &Value) -> Result<(), String> {
        let mut first_error = None;
        for plugin in call.network.plugins.iter().rev() {
            if let Err(e) = self.exec("DEL", plugin, call, Some(result)) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// DEL of every plugin, in reverse order (`netns` empty when the namespace is gone).
    pub(crate) fn del(
        &self,
        attachment: &Attachment,
        pod_id: &str,
        netns: &str,
        config: &PodSandboxConfig,
    ) -> Result<(), String> {
        let runtime_config = runtime_config(config);
        let call = Call {
            network: &attachment.network,
            pod_id,
            netns,
            args: &attachment.args,
            runtime_config: &runtime_config,
        };
        self.del_plugins(&call, &attachment.result)
    }
}

/// Parses a `.conflist` (`plugins`) or a single-plugin `.conf`.
pub(crate) fn parse(text: &str, source: &Path) -> Result<Network, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("{}: {e}", source.display()))?;
    let name = value["name"].as_str().unwrap_or_default().to_string();
    if name.is_empty() {
        return Err(format!("{}: name: missing", source.display()));
    }
    let cni_version = value["cniVersion"].as_str().unwrap_or("0.4.0").to_string();
    let plugins = match value.get("plugins") {
        Some(Value::Array(plugins)) if !plugins.is_empty() => plugins.clone(),
        Some(_) => return Err(format!("{}: plugins: missing or empty", source.display())),
        None if value.get("type").is_some() => vec![value.clone()],
        None => return Err(format!("{}: plugins: missing", source.display())),
    };
    if let Some(bad) = plugins
        .iter()
        .position(|p| p["type"].as_str().is_none_or(str::is_empty))
    {
        return Err(format!(
            "{}: plugins[{bad}].type: missing",
            source.display()
        ));
    }
    Ok(Network {
        name,
        cni_version,
        plugins,
        source: source.to_path_buf(),
    })
}

/// The pod's addresses in a CNI result (`ips[].address`, or 0.2.0's `ip4`/`ip6`), without
/// prefix lengths.
pub(crate) fn ips_of(result: &Value) -> Vec<String> {
    let strip = |a: &str| a.split('/').next().unwrap_or_default().to_string();
    let mut ips: Vec<String> = result["ips"]
        .as_array()
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip["address"].as_str().map(strip))
                .collect()
        })
        .unwrap_or_default();
    for key in ["ip4", "ip6"] {
        if let Some(a) = result[key]["ip"].as_str() {
            ips.push(strip(a));
        }
    }
    ips.retain(|ip| !ip.is_empty());
    ips
}

fn cni_args(pod_id: &str, config: &PodSandboxConfig) -> String {
    let m = config.metadata.clone().unwrap_or_default();
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={pod_id};K8S_POD_UID={}",
        m.namespace, m.name, m.uid
    )
}

/// The capability arguments: `portMappings` from the pod's port mappings with a host port.
fn runtime_config(config: &PodSandboxConfig) -> Value {
    let mappings: Vec<Value> = config
        .port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| {
            let protocol = match Protocol::try_from(p.protocol).unwrap_or(Protocol::Tcp) {
                Protocol::Tcp => "tcp",
                Protocol::Udp => "udp",
                Protocol::Sctp => "sctp",
            };
            let mut m = json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": protocol,
            });
            if !p.host_ip.is_empty() {
                m["hostIP"] = json!(p.host_ip);
            }
            m
        })
        .collect();
    json!({ "portMappings": mappings })
}

/// Where a pod's attachment is kept.
pub(crate) fn state_file(root: &Path, pod_id: &str) -> PathBuf {
    root.join("cni").join(format!("{pod_id}.json"))
}

/// Reads a pod's attachment (`None` when it has none).
pub(crate) fn read_state(root: &Path, pod_id: &str) -> Option<Attachment> {
    std::fs::read_to_string(state_file(root, pod_id))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
}

/// Writes a pod's attachment atomically.
pub(crate) fn write_state(
    root: &Path,
    pod_id: &str,
    attachment: &Attachment,
) -> std::io::Result<()> {
    let path = state_file(root, pod_id);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(attachment).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflists_and_confs_parse() {
        let list = parse(
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#,
            Path::new("a.conflist"),
        )
        .unwrap();
        assert_eq!(list.plugins.len(), 2);
        let single = parse(r#"{"name":"n","type":"bridge"}"#, Path::new("a.conf")).unwrap();
        assert_eq!(single.cni_version, "0.4.0");
        assert_eq!(single.plugins.len(), 1);
        assert!(parse(r#"{"name":"n"}"#, Path::new("x")).is_err());
        assert!(parse(r#"{"name":"n","plugins":[{}]}"#, Path::new("x")).is_err());
    }

    #[test]
    fn addresses_come_from_the_result() {
        let result = json!({"ips": [{"address": "10.1.0.5/24"}, {"address": "fd00::5/64"}]});
        assert_eq!(ips_of(&result), ["10.1.0.5", "fd00::5"]);
        assert_eq!(ips_of(&json!({"ip4": {"ip": "10.0.0.2/16"}})), ["10.0.0.2"]);
        assert!(ips_of(&Value::Null).is_empty());
    }

    #[test]
    fn port_mappings_become_runtime_config() {
        let config = PodSandboxConfig {
            port_mappings: vec![
                cri_api::v1::PortMapping {
                    protocol: Protocol::Udp as i32,
                    container_port: 53,
                    host_port: 5353,
                    host_ip: String::new(),
                },
                cri_api::v1::PortMapping {
                    container_port: 80,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            runtime_config(&config),
            json!({"portMappings": [{"hostPort": 5353, "containerPort": 53, "protocol": "udp"}]})
        );
    }
}
