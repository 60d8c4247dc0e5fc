//! Constants every CRI implementation and client ends up re-typing.
//!
//! ```
//! use cri_api::well_known::{error_prefix, labels, socket};
//!
//! assert_eq!(cri_api::API_VERSION, "v1");
//! assert_eq!(labels::POD_NAMESPACE, "io.kubernetes.pod.namespace");
//! assert_eq!(socket::CONTAINERD, "/run/containerd/containerd.sock");
//! assert!("RegistryUnavailable: connection refused".starts_with(error_prefix::REGISTRY_UNAVAILABLE));
//! ```

/// The CRI API version served by this crate, as `VersionResponse.runtime_api_version` must
/// report it. The kubelet refuses any other value.
pub const API_VERSION: &str = "v1";

/// The gRPC message size limit the kubelet uses in both directions: 16 MiB.
///
/// gRPC libraries (tonic included) default to 4 MiB, which a node with many pods or a large
/// `ExecSync` output exceeds.
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// Label keys the kubelet sets on the sandboxes and containers it creates.
///
/// Runtimes must store and return labels unchanged; these keys let tools map CRI objects back
/// to Kubernetes objects.
pub mod labels {
    /// Name of the pod (on sandboxes and containers).
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    /// Namespace of the pod (on sandboxes and containers).
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    /// UID of the pod (on sandboxes and containers).
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    /// Name of the container within its pod (on containers).
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
}

/// Annotation keys the kubelet sets on the sandboxes and containers it creates.
pub mod annotations {
    /// Hash of the container spec, used by the kubelet to detect changes.
    pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
    /// How many times the kubelet has restarted this container.
    pub const CONTAINER_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
    /// Path of the container's termination message file.
    pub const CONTAINER_TERMINATION_MESSAGE_PATH: &str =
        "io.kubernetes.container.terminationMessagePath";
    /// Termination message policy (`File` or `FallbackToLogsOnError`).
    pub const CONTAINER_TERMINATION_MESSAGE_POLICY: &str =
        "io.kubernetes.container.terminationMessagePolicy";
    /// JSON of the container's pre-stop lifecycle handler.
    pub const CONTAINER_PRE_STOP_HANDLER: &str = "io.kubernetes.container.preStopHandler";
    /// JSON of the container's declared ports.
    pub const CONTAINER_PORTS: &str = "io.kubernetes.container.ports";
    /// The pod's termination grace period, in seconds.
    pub const POD_TERMINATION_GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
    /// Where the kubelet first saw the pod (`api`, `file`, `http`).
    pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
    /// When the kubelet first saw the pod (RFC 3339).
    pub const CONFIG_SEEN: &str = "kubernetes.io/config.seen";
}

/// Message prefixes of the failures the kubelet recognises.
///
/// They travel as gRPC code `Unknown` with the message `"<prefix>: <detail>"`: the kubelet
/// strips the `Unknown` status and matches the prefix to choose a pod condition or event.
pub mod error_prefix {
    /// The image registry could not be reached (pull).
    pub const REGISTRY_UNAVAILABLE: &str = "RegistryUnavailable";
    /// The image signature did not validate (pull).
    pub const SIGNATURE_VALIDATION_FAILED: &str = "SignatureValidationFailed";
    /// The runtime cannot make a mount recursively read-only.
    pub const RRO_UNSUPPORTED: &str = "RROUnsupported";
    /// An image volume could not be mounted.
    pub const IMAGE_VOLUME_MOUNT_FAILED: &str = "ImageVolumeMountFailed";

    /// All prefixes above, for matching.
    pub const ALL: [&str; 4] = [
        REGISTRY_UNAVAILABLE,
        SIGNATURE_VALIDATION_FAILED,
        RRO_UNSUPPORTED,
        IMAGE_VOLUME_MOUNT_FAILED,
    ];
}

/// Runtime condition types that `Status` must report (`RuntimeStatus.conditions`).
pub mod condition {
    /// The runtime is up and able to run containers.
    pub const RUNTIME_READY: &str = "RuntimeReady";
    /// The runtime's network is ready for pods.
    pub const NETWORK_READY: &str = "NetworkReady";
}

/// Conventional CRI socket paths of well-known runtimes.
pub mod socket {
    /// containerd's CRI socket.
    pub const CONTAINERD: &str = "/run/containerd/containerd.sock";
    /// CRI-O's socket.
    pub const CRIO: &str = "/run/crio/crio.sock";
    /// cri-dockerd's socket (the successor of the dockershim).
    pub const CRI_DOCKERD: &str = "/var/run/cri-dockerd.sock";

    /// The endpoints crictl tries in order when none is configured, as `unix://` URLs.
    pub const DEFAULT_ENDPOINTS: [&str; 3] = [
        "unix:///run/containerd/containerd.sock",
        "unix:///run/crio/crio.sock",
        "unix:///var/run/cri-dockerd.sock",
    ];
}

/// Stream names used in CRI container log files (`<time> <stream> <tag> <text>`).
pub mod log {
    /// The container's standard output.
    pub const STDOUT: &str = "stdout";
    /// The container's standard error.
    pub const STDERR: &str = "stderr";
    /// Tag of a record that ends a line.
    pub const TAG_FULL: &str = "F";
    /// Tag of a record that is part of a longer line continued in the next record.
    pub const TAG_PARTIAL: &str = "P";
}

/// The reason a container status reports after an out-of-memory kill.
pub const REASON_OOM_KILLED: &str = "OOMKilled";
