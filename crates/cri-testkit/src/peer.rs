//! Real runtimes as test peers: which one the environment provides, and a loud skip when
//! none does.
//!
//! `scripts/containerd-peer start` runs containerd on a private socket and prints the
//! variables below (`scripts/test` exports them). Tests call [`containerd`]:
//!
//! ```
//! let Some(peer) = cri_testkit::peer::containerd() else {
//!     return; // skipped, and said so on stderr
//! };
//! println!("testing against {}", peer.endpoint);
//! ```
//!
//! | variable | meaning |
//! |---|---|
//! | `CRI_PEER_ENDPOINT` | the peer's CRI endpoint (`unix:///…`) |
//! | `CRI_PEER_IMAGE` | a local busybox-like image (sh, echo, cat, sleep) |
//! | `CRI_PEER_REMOVABLE_IMAGE` | a local image tests may delete |
//! | `CRI_PEER_IMAGES` | directory of the image archives (for re-importing) |
//! | `CRI_PEER_REQUIRED` | `1`: a missing peer fails the test instead of skipping it (CI) |

/// A real runtime to test against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its CRI endpoint.
    pub endpoint: String,
    /// A local image with `sh`, `echo`, `cat`, `sleep`.
    pub image: String,
    /// A local image that may be removed.
    pub removable_image: Option<String>,
    /// Directory of the OCI archives the images came from.
    pub images: Option<std::path::PathBuf>,
}

impl Peer {
    /// Imports the image archives again (after a test removed an image), with containerd's
    /// `ctr` into the CRI namespace.
    ///
    /// # Errors
    ///
    /// When there is no archive directory or `ctr` fails.
    pub fn reimport_images(&self) -> Result<(), String> {
        let dir = self.images.as_ref().ok_or("CRI_PEER_IMAGES is not set")?;
        let address = self.endpoint.trim_start_matches("unix://");
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let status = std::process::Command::new("ctr")
                .args([
                    "--address",
                    address,
                    "-n",
                    "k8s.io",
                    "images",
                    "import",
                    "--all-platforms",
                ])
                .arg(entry.path())
                .stdout(std::process::Stdio::null())
                .status()
                .map_err(|e| format!("running ctr: {e}"))?;
            if !status.success() {
                return Err(format!("ctr import {} failed", entry.path().display()));
            }
        }
        Ok(())
    }

    /// The conformance configuration for this peer: its local images, no pulls (offline),
    /// host networking (no CNI network on the test machines).
    pub fn conformance_config(&self) -> crate::conformance::Config {
        crate::conformance::Config {
            image: self.image.clone(),
            pull_image: None,
            removable_image: self.removable_image.clone(),
            host_network: true,
            ..Default::default()
        }
    }
}

/// The containerd peer from the environment; `None` (with a loud notice on stderr) when
/// there is none.
///
/// # Panics
///
/// When `CRI_PEER_REQUIRED=1` and no peer is configured: CI must never skip these tests.
pub fn containerd() -> Option<Peer> {
    let endpoint = std::env::var("CRI_PEER_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty());
    let image = std::env::var("CRI_PEER_IMAGE")
        .ok()
        .filter(|e| !e.is_empty());
    match (endpoint, image) {
        (Some(endpoint), Some(image)) => Some(Peer {
            endpoint,
            image,
            removable_image: std::env::var("CRI_PEER_REMOVABLE_IMAGE")
                .ok()
                .filter(|e| !e.is_empty()),
            images: std::env::var_os("CRI_PEER_IMAGES").map(std::path::PathBuf::from),
        }),
        _ => {
            let required = std::env::var("CRI_PEER_REQUIRED").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "CRI_PEER_REQUIRED=1 but no containerd peer is configured (CRI_PEER_ENDPOINT, CRI_PEER_IMAGE)"
            );
            eprintln!(
                "\n*** SKIPPED: containerd interop test — no peer configured. Run \
                 `scripts/containerd-peer start` and export `scripts/containerd-peer env`, \
                 or use scripts/test, which does both. ***\n"
            );
            None
        }
    }
}
