//! A CNI bridge network for the tests that need one (Debian's containernetworking-plugins:
//! `bridge`, `host-local`, `portmap`), each on its own bridge and subnet, deleted on drop.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where Debian installs the plugins.
pub(crate) const PLUGINS: &str = "/usr/lib/cni";

/// The common preconditions, plus the plugins these tests use.
pub(crate) fn requirements() -> Option<super::Images> {
    let images = super::requirements()?;
    let missing = ["bridge", "host-local", "portmap"]
        .into_iter()
        .find(|p| !Path::new(PLUGINS).join(p).exists());
    if let Some(plugin) = missing {
        let why =
            format!("{PLUGINS}/{plugin} is missing (apt-get install containernetworking-plugins)");
        if std::env::var("CRI_PEER_REQUIRED").is_ok_and(|v| v == "1") {
            panic!("CRI_PEER_REQUIRED=1 but the CNI tests cannot run: {why}");
        }
        eprintln!("\n*** SKIPPED: runc-runtime CNI test — {why} ***\n");
        return None;
    }
    Some(images)
}

/// A bridge network written into a temp dir (the conflist and host-local's data); the
/// bridge link is deleted on drop.
pub(crate) struct Network {
    dir: tempfile::TempDir,
    pub(crate) name: String,
    pub(crate) bridge: String,
    /// `10.x.y.`
    pub(crate) prefix: String,
}

impl Network {
    pub(crate) fn new(k: u32) -> Network {
        Network::with_plugins(k, Vec::new())
    }

    /// The bridge network followed by `chained` plugins (e.g. `portmap`).
    pub(crate) fn with_plugins(k: u32, chained: Vec<serde_json::Value>) -> Network {
        let pid = std::process::id();
        let dir = tempfile::Builder::new()
            .prefix("runc-rt-cni-")
            .tempdir()
            .unwrap();
        let network = Network {
            name: format!("cri-rs-test-{k}"),
            bridge: format!("crirs{}n{k}", pid % 100_000),
            prefix: format!("10.{}.{}.", 237 + k, pid % 200),
            dir,
        };
        std::fs::create_dir(network.conf_dir()).unwrap();
        let mut conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": network.name,
            "plugins": [{
                "type": "bridge",
                "bridge": network.bridge,
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": format!("{}0/24", network.prefix)}]],
                    "dataDir": network.dir.path().join("ipam"),
                },
            }],
        });
        conflist["plugins"].as_array_mut().unwrap().extend(chained);
        std::fs::write(
            network.conf_dir().join("10-cri-rs-test.conflist"),
            conflist.to_string(),
        )
        .unwrap();
        network
    }

    pub(crate) fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("conf")
    }

    /// The runtime's flags for this network.
    pub(crate) fn args(&self) -> Vec<String> {
        vec![
            "--cni-conf-dir".into(),
            self.conf_dir().display().to_string(),
            "--cni-bin-dir".into(),
            PLUGINS.into(),
        ]
    }

    /// The addresses host-local has handed out (one file per address).
    pub(crate) fn leases(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("ipam").join(&self.name)) else {
            return Vec::new();
        };
        let mut leases: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|name| name.parse::<IpAddr>().is_ok())
            .collect();
        leases.sort();
        leases
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
