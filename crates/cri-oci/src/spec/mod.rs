//! CRI pod and container configuration to an OCI runtime spec.
//!
//! [`sandbox_spec`] turns a `PodSandboxConfig` (and the pause image's config) into the spec of
//! the pod's infra process, which owns the pod's namespaces; [`container_spec`] turns a
//! `ContainerConfig` into the spec of a container that joins them through
//! `/proc/<sandbox_pid>/ns/*`. The result is an [`oci_spec::runtime::Spec`] to write as the
//! bundle's `config.json` for `runc create`.
//!
//! What comes from where:
//!
//! | spec part | source |
//! | --- | --- |
//! | `process.args` | `command`/`args` merged with the image's `Entrypoint`/`Cmd` by the Kubernetes rule |
//! | `process.env` | default `PATH`, `HOSTNAME`, image `Env`, CRI `envs`, CDI edits, `TERM` (tty), `HOME` (from `/etc/passwd`) |
//! | `process.user` | [`resolve_user`]: security context, image `User`, the image's `/etc/passwd` and `/etc/group` |
//! | `process.capabilities` | [`DEFAULT_CAPABILITIES`] with the context's add/drop, everything when privileged |
//! | `linux.seccomp` | our deny-list [`default_seccomp_profile`], a node-local file, or none |
//! | `mounts` | standard filesystems, `/dev/shm`, the pod's `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`, CRI mounts, CDI mounts |
//! | `linux.namespaces` | `NamespaceOption` (see [`sandbox_spec`] and [`container_spec`]) |
//! | `linux.resources` | `LinuxContainerResources`, device cgroup rules |
//! | `linux.cgroupsPath` | [`cgroups_path`] |
//! | `annotations` | CRI annotations plus the [`annotations`] keys |
//!
//! Things left to the runtime: creating missing host directories of mounts, SELinux
//! relabeling of `selinux_relabel` mounts, checking that a host path's mount is shared before
//! an `rshared`/`rslave` mount, loading the AppArmor profile named
//! [`APPARMOR_DEFAULT_PROFILE`], and image-declared `VOLUME`s (not mounted).
//!
//! # Example
//!
//! ```
//! use std::collections::HashMap;
//! use cri_api::v1::{
//!     Capability, ContainerConfig, KeyValue, LinuxContainerConfig, LinuxContainerSecurityContext,
//!     PodSandboxConfig, PodSandboxMetadata,
//! };
//! use cri_oci::spec::{ContainerRequest, Host, SandboxFiles, container_spec};
//! use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};
//! use oci_spec::runtime::{Capability as Cap, LinuxNamespaceType};
//!
//! let sandbox = PodSandboxConfig {
//!     metadata: Some(PodSandboxMetadata { name: "web".into(), namespace: "default".into(), uid: "u1".into(), attempt: 0 }),
//!     hostname: "web".into(),
//!     ..Default::default()
//! };
//! let container = ContainerConfig {
//!     args: vec!["-g".into(), "daemon off;".into()],
//!     envs: vec![KeyValue { key: "MODE".into(), value: b"prod".to_vec() }],
//!     linux: Some(LinuxContainerConfig {
//!         security_context: Some(LinuxContainerSecurityContext {
//!             capabilities: Some(Capability { drop_capabilities: vec!["ALL".into()], add_capabilities: vec!["NET_BIND_SERVICE".into()], ..Default::default() }),
//!             ..Default::default()
//!         }),
//!         ..Default::default()
//!     }),
//!     ..Default::default()
//! };
//! let image = ImageConfigurationBuilder::default()
//!     .config(ConfigBuilder::default().entrypoint(vec!["nginx".to_string()]).env(vec!["PATH=/usr/bin:/bin".to_string()]).build().unwrap())
//!     .build()
//!     .unwrap();
//! let rootfs = std::path::Path::new("/run/bundles/c1/rootfs"); // no /etc/passwd needed for root
//! let files = SandboxFiles::default();
//!
//! let request = ContainerRequest::new("c1", &container, "s1", &sandbox, &image, rootfs, &files).with_sandbox_pid(4242);
//! let spec = container_spec(&Host::default(), &request).unwrap();
//!
//! let process = spec.process().as_ref().unwrap();
//! assert_eq!(process.args().as_deref().unwrap(), ["nginx", "-g", "daemon off;"]);
//! assert!(process.env().as_ref().unwrap().contains(&"MODE=prod".to_string()));
//! let caps = process.capabilities().as_ref().unwrap();
//! assert_eq!(caps.effective().as_ref().unwrap().iter().collect::<Vec<_>>(), [&Cap::NetBindService]);
//! let net = spec.linux().as_ref().unwrap().namespaces().as_ref().unwrap()
//!     .iter().find(|ns| ns.typ() == LinuxNamespaceType::Network).unwrap();
//! assert_eq!(net.path().as_deref(), Some(std::path::Path::new("/proc/4242/ns/net")));
//! assert_eq!(spec.annotations().as_ref().unwrap()["io.kubernetes.cri.sandbox-id"], "s1");
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cri_api::v1::{
    ContainerConfig, LinuxContainerSecurityContext, NamespaceMode, PodSandboxConfig,
};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{Linux, LinuxCpu, Process, Root, Spec, User};

mod devices;
mod host;
mod mounts;
mod namespaces;
mod process;
mod resources;
mod seccomp;
mod security;
mod user;

pub use devices::CDI_ANNOTATION_PREFIX;
pub use host::Host;
pub use process::{DEFAULT_PATH, process_for_exec};
pub use resources::{SANDBOX_CPU_SHARES, SANDBOX_OOM_SCORE_ADJ, cgroups_path, hugepage_limits};
pub use seccomp::{default_seccomp_profile, host_architectures, load_seccomp_profile};
pub use security::{
    APPARMOR_DEFAULT_PROFILE, DEFAULT_CAPABILITIES, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS,
    all_capabilities, parse_capability,
};
pub use user::{ResolvedUser, resolve_user};

use crate::{Error, Result};
use mounts::Shm;
use namespaces::Modes;
use process::{Env, ImageProcess};
use user::UserRequest;

/// The OCI runtime-spec version written into `ociVersion`.
pub const OCI_VERSION: &str = "1.1.0";

/// Annotation keys this module writes into every spec (public facts: OCI hooks and tools
/// such as NRI plugins read them).
pub mod annotations {
    /// `sandbox` or `container`.
    pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
    /// The value of [`CONTAINER_TYPE`] for a pod's infra process.
    pub const CONTAINER_TYPE_SANDBOX: &str = "sandbox";
    /// The value of [`CONTAINER_TYPE`] for an application container.
    pub const CONTAINER_TYPE_CONTAINER: &str = "container";
    /// The pod sandbox's ID.
    pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
    /// The pod's name.
    pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
    /// The pod's namespace.
    pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
    /// The pod's UID.
    pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
    /// The pod's log directory (sandbox spec only).
    pub const SANDBOX_LOG_DIRECTORY: &str = "io.kubernetes.cri.sandbox-log-directory";
    /// The container's name (container spec only).
    pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
    /// The container's image as the kubelet named it (container spec only).
    pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
}

/// Files and paths the runtime prepared for a pod (in its sandbox directory).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SandboxFiles {
    /// Bind-mounted at `/etc/hostname` in containers.
    pub hostname: Option<PathBuf>,
    /// Bind-mounted at `/etc/hosts` in containers.
    pub hosts: Option<PathBuf>,
    /// Bind-mounted at `/etc/resolv.conf` in containers.
    pub resolv_conf: Option<PathBuf>,
    /// A pod-wide `/dev/shm` (a tmpfs the runtime mounted); `None` gives each container (and
    /// the sandbox) a private 64 MiB tmpfs.
    pub shm: Option<PathBuf>,
}

/// Everything [`sandbox_spec`] needs.
#[non_exhaustive]
pub struct SandboxRequest<'a> {
    /// The sandbox ID.
    pub id: &'a str,
    /// The kubelet's sandbox config.
    pub config: &'a PodSandboxConfig,
    /// The pause image's config.
    pub image: &'a ImageConfiguration,
    /// The unpacked pause image.
    pub rootfs: &'a Path,
    /// Files the runtime prepared for the pod.
    pub files: &'a SandboxFiles,
}

impl<'a> SandboxRequest<'a> {
    /// A request with every field given.
    pub fn new(
        id: &'a str,
        config: &'a PodSandboxConfig,
        image: &'a ImageConfiguration,
        rootfs: &'a Path,
        files: &'a SandboxFiles,
    ) -> Self {
        Self {
            id,
            config,
            image,
            rootfs,
            files,
        }
    }
}

/// Everything [`container_spec`] needs.
#[non_exhaustive]
pub struct ContainerRequest<'a> {
    /// The container ID.
    pub id: &'a str,
    /// The kubelet's container config.
    pub config: &'a ContainerConfig,
    /// The ID of the sandbox the container belongs to.
    pub sandbox_id: &'a str,
    /// The sandbox's config.
    pub sandbox: &'a PodSandboxConfig,
    /// The container image's config.
    pub image: &'a ImageConfiguration,
    /// The container's root filesystem; users and groups are resolved from its
    /// `/etc/passwd` and `/etc/group`.
    pub rootfs: &'a Path,
    /// Files the runtime prepared for the pod.
    pub files: &'a SandboxFiles,
    /// The pod's infra process: the pod's namespaces are joined via `/proc/<pid>/ns/*`.
    pub sandbox_pid: Option<u32>,
    /// The process of the container named by `namespace_options.target_id`, for PID mode
    /// TARGET.
    pub target_pid: Option<u32>,
}

impl<'a> ContainerRequest<'a> {
    /// A request without process IDs; add them with [`ContainerRequest::with_sandbox_pid`]
    /// and [`ContainerRequest::with_target_pid`].
    pub fn new(
        id: &'a str,
        config: &'a ContainerConfig,
        sandbox_id: &'a str,
        sandbox: &'a PodSandboxConfig,
        image: &'a ImageConfiguration,
        rootfs: &'a Path,
        files: &'a SandboxFiles,
    ) -> Self {
        Self {
            id,
            config,
            sandbox_id,
            sandbox,
            image,
            rootfs,
            files,
            sandbox_pid: None,
            target_pid: None,
        }
    }

    /// Sets the pod infra process's PID.
    pub fn with_sandbox_pid(mut self, pid: u32) -> Self {
        self.sandbox_pid = Some(pid);
        self
    }

    /// Sets the PID of the target container (PID mode TARGET).
    pub fn with_target_pid(mut self, pid: u32) -> Self {
        self.target_pid = Some(pid);
        self
    }
}

const SC: &str = "linux.security_context";
const NS: &str = "linux.security_context.namespace_options";

/// The spec of a pod's infra (pause) process.
///
/// Namespaces: a new mount namespace; new network and UTS namespaces unless the pod uses the
/// host network; new IPC and PID namespaces unless the pod uses the host's; a new user
/// namespace with the pod's mappings for `userns_options` mode POD; a private cgroup
/// namespace unless privileged. The process is the image's `Entrypoint` + `Cmd` as the
/// sandbox's `run_as_user`/`run_as_group` or the image's user, with no new privileges, the
/// default capabilities, the sandbox's seccomp and AppArmor profiles, OOM score
/// [`SANDBOX_OOM_SCORE_ADJ`], a read-only rootfs, and [`SANDBOX_CPU_SHARES`]. The pod's
/// sysctls are set here (they are per network/IPC namespace, which the containers share).
/// The pod's overhead and resource totals are not applied to the pause process: they belong
/// to the pod cgroup the kubelet manages (`cgroup_parent`).
pub fn sandbox_spec(host: &Host, req: &SandboxRequest<'_>) -> Result<Spec> {
    let config = req.config;
    let linux = config.linux.as_ref();
    let sc = linux.and_then(|l| l.security_context.as_ref());
    let ns_options = sc.and_then(|s| s.namespace_options.as_ref());
    let modes = Modes::decode(ns_options, NS)?;
    let privileged = sc.is_some_and(|s| s.privileged);

    let namespaces = namespaces::sandbox_namespaces(&modes, privileged)?;
    let mappings = namespaces::user_mappings(ns_options, NS)?;
    let sysctls =
        namespaces::sysctls(linux.map(|l| &l.sysctls).unwrap_or(&HashMap::new()), &modes)?;

    let image = ImageProcess::of(req.image);
    let args = process::merge_args(&[], &[], &image)
        .map_err(|_| Error::invalid("image", "the sandbox image has no Entrypoint or Cmd"))?;
    let user = user::resolve(
        req.rootfs,
        image.user,
        &UserRequest {
            run_as_user: sc.and_then(|s| s.run_as_user.as_ref()).map(|v| v.value),
            run_as_username: "",
            run_as_group: sc.and_then(|s| s.run_as_group.as_ref()).map(|v| v.value),
            supplemental_groups: sc
                .map(|s| s.supplemental_groups.as_slice())
                .unwrap_or_default(),
            policy: sc.map(|s| s.supplemental_groups_policy).unwrap_or_default(),
            prefix: SC,
        },
    )?;
    let mut env = Env::default();
    env.set("PATH", DEFAULT_PATH);
    env.extend_entries(image.env);
    if let Some(home) = &user.home {
        env.set_default("HOME", home);
    }

    let caps = security::capabilities(host, None, privileged)?;
    #[allow(deprecated)]
    let deprecated_seccomp = sc
        .map(|s| s.seccomp_profile_path.as_str())
        .unwrap_or_default();
    let seccomp = seccomp::seccomp(
        host,
        sc.and_then(|s| s.seccomp.as_ref()),
        deprecated_seccomp,
        privileged,
        &security::effective(&caps),
        &format!("{SC}.seccomp"),
    )?;
    let apparmor = security::apparmor_profile(
        host,
        sc.and_then(|s| s.apparmor.as_ref()),
        "",
        privileged,
        &format!("{SC}.apparmor"),
    )?;
    let selinux = security::selinux_labels(host, sc.and_then(|s| s.selinux_options.as_ref()));
    let (masked, readonly) = security::sandbox_masked_and_readonly(privileged);

    let shm = if modes.host_ipc() {
        Shm::Bind(PathBuf::from("/dev/shm"))
    } else {
        req.files.shm.clone().map_or(Shm::Private, Shm::Bind)
    };
    let mounts = mounts::merge(mounts::default_mounts(privileged, &shm), Vec::new());

    let mut process = Process::default();
    process.set_terminal(Some(false));
    process.set_args(Some(args));
    process.set_env(Some(env.into_entries()));
    process.set_cwd(PathBuf::from(process::working_dir("", &image)?));
    process.set_user(oci_user(&user));
    process.set_capabilities(Some(caps));
    process.set_no_new_privileges(Some(true));
    process.set_rlimits(None);
    process.set_apparmor_profile(apparmor);
    process.set_selinux_label(selinux.as_ref().map(|(p, _)| p.clone()));
    process.set_oom_score_adj(Some(resources::oom_score_adj(
        host,
        SANDBOX_OOM_SCORE_ADJ,
        "sandbox oom_score_adj",
    )?));

    let mut resources = oci_spec::runtime::LinuxResources::default();
    let mut cpu = LinuxCpu::default();
    cpu.set_shares(Some(SANDBOX_CPU_SHARES));
    resources.set_cpu(Some(cpu));
    resources.set_devices(Some(vec![devices::deny_all()]));

    let mut linux = Linux::default();
    linux.set_namespaces(Some(namespaces));
    linux.set_resources(Some(resources));
    linux.set_cgroups_path(Some(PathBuf::from(cgroups_path(host, config, req.id))));
    linux.set_sysctl((!sysctls.is_empty()).then_some(sysctls));
    linux.set_seccomp(seccomp);
    linux.set_masked_paths(Some(masked));
    linux.set_readonly_paths(Some(readonly));
    linux.set_mount_label(selinux.map(|(_, m)| m));
    linux.set_devices(None);
    if let Some((uids, gids)) = mappings {
        linux.set_uid_mappings(Some(uids));
        linux.set_gid_mappings(Some(gids));
    }

    let mut annotations = config.annotations.clone();
    annotations.insert(
        annotations::CONTAINER_TYPE.into(),
        annotations::CONTAINER_TYPE_SANDBOX.into(),
    );
    annotations.insert(annotations::SANDBOX_ID.into(), req.id.into());
    insert_pod_identity(&mut annotations, config);
    annotations.insert(
        annotations::SANDBOX_LOG_DIRECTORY.into(),
        config.log_directory.clone(),
    );

    let hostname =
        (!modes.host_network() && !config.hostname.is_empty()).then(|| config.hostname.clone());
    Ok(assemble(
        req.rootfs,
        true,
        process,
        mounts,
        hostname,
        annotations,
        linux,
        None,
    ))
}

/// The spec of a container in a pod.
///
/// Namespaces: a new mount namespace; the pod's network and UTS namespaces (unless the pod
/// uses the host network), IPC namespace (POD; CONTAINER gives a private one; NODE the
/// host's), PID namespace (POD the pod's; CONTAINER a new one; NODE the host's; TARGET the
/// namespace of [`ContainerRequest::target_pid`]) and user namespace (pod mode POD), all
/// joined through `/proc/<sandbox_pid>/ns/*`; a private cgroup namespace unless privileged.
/// The container's `namespace_options` are used, or the sandbox's when it has none.
///
/// A privileged container needs a privileged sandbox, as in the kubelet's own validation.
///
/// Resources: `linux.resources.unified` is passed through as it is (this is how a pids limit,
/// `pids.max`, reaches the container); runc refuses unified keys on cgroup v1 hosts, so a
/// runtime on such a host should not send them. No rlimits are set: the process inherits the
/// OCI runtime's.
pub fn container_spec(host: &Host, req: &ContainerRequest<'_>) -> Result<Spec> {
    let config = req.config;
    let sandbox_sc = req
        .sandbox
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref());
    let sc: Option<&LinuxContainerSecurityContext> = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref());
    let privileged = sc.is_some_and(|s| s.privileged);
    if privileged && !sandbox_sc.is_some_and(|s| s.privileged) {
        return Err(Error::invalid(
            format!("{SC}.privileged"),
            "a privileged container needs a privileged sandbox",
        ));
    }
    let ns_options = sc
        .and_then(|s| s.namespace_options.as_ref())
        .or_else(|| sandbox_sc.and_then(|s| s.namespace_options.as_ref()));
    let modes = Modes::decode(ns_options, NS)?;
    let namespaces =
        namespaces::container_namespaces(&modes, req.sandbox_pid, req.target_pid, privileged)?;
    let mappings = namespaces::user_mappings(ns_options, NS)?;

    let image = ImageProcess::of(req.image);
    let args = process::merge_args(&config.command, &config.args, &image)?;
    let mut user = user::resolve(req.rootfs, image.user, &UserRequest::from_container(sc))?;
    let device_edits = devices::container_devices(host, config, privileged)?;
    for gid in &device_edits.additional_gids {
        if !user.additional_gids.contains(gid) {
            user.additional_gids.push(*gid);
        }
    }

    let mut env = Env::default();
    env.set("PATH", DEFAULT_PATH);
    let hostname = if modes.host_network() {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    } else {
        req.sandbox.hostname.clone()
    };
    if !hostname.is_empty() {
        env.set("HOSTNAME", &hostname);
    }
    env.extend_entries(image.env);
    for (key, value) in process::cri_envs(&config.envs)? {
        env.set(&key, &value);
    }
    env.extend_entries(&device_edits.env);
    if config.tty {
        env.set_default("TERM", "xterm");
    }
    if let Some(home) = &user.home {
        env.set_default("HOME", home);
    }

    let caps = security::capabilities(host, sc.and_then(|s| s.capabilities.as_ref()), privileged)?;
    #[allow(deprecated)]
    let (deprecated_seccomp, deprecated_apparmor) = sc
        .map(|s| (s.seccomp_profile_path.as_str(), s.apparmor_profile.as_str()))
        .unwrap_or_default();
    let seccomp = seccomp::seccomp(
        host,
        sc.and_then(|s| s.seccomp.as_ref()),
        deprecated_seccomp,
        privileged,
        &security::effective(&caps),
        &format!("{SC}.seccomp"),
    )?;
    let apparmor = security::apparmor_profile(
        host,
        sc.and_then(|s| s.apparmor.as_ref()),
        deprecated_apparmor,
        privileged,
        &format!("{SC}.apparmor"),
    )?;
    let selinux = security::selinux_labels(
        host,
        sc.and_then(|s| s.selinux_options.as_ref())
            .or_else(|| sandbox_sc.and_then(|s| s.selinux_options.as_ref())),
    );
    let empty = Vec::new();
    let (masked, readonly_paths) = security::masked_and_readonly(
        sc.map_or(&empty, |s| &s.masked_paths),
        sc.map_or(&empty, |s| &s.readonly_paths),
        privileged,
    )?;
    let readonly_rootfs = sc.is_some_and(|s| s.readonly_rootfs);

    let shm = match modes.ipc {
        NamespaceMode::Node => Shm::Bind(PathBuf::from("/dev/shm")),
        NamespaceMode::Pod => req.files.shm.clone().map_or(Shm::Private, Shm::Bind),
        _ => Shm::Private,
    };
    let mut base = mounts::default_mounts(privileged, &shm);
    base.extend(mounts::sandbox_file_mounts(req.files, readonly_rootfs));
    let (mut extra, rootfs_propagation) = mounts::cri_mounts(host, &config.mounts)?;
    for cdi in device_edits.mounts {
        extra.retain(|m| m.destination() != cdi.destination());
        extra.push(cdi);
    }
    let mounts = mounts::merge(base, extra);

    let resources_field = "linux.resources";
    let cri_resources = config.linux.as_ref().and_then(|l| l.resources.as_ref());
    let mut resources = resources::container_resources(host, cri_resources, resources_field)?;
    resources.set_devices(Some(device_edits.rules));
    let oom = resources::oom_score_adj(
        host,
        cri_resources.map(|r| r.oom_score_adj).unwrap_or_default(),
        &format!("{resources_field}.oom_score_adj"),
    )?;

    let mut process = Process::default();
    process.set_terminal(Some(config.tty));
    process.set_args(Some(args));
    process.set_env(Some(env.into_entries()));
    process.set_cwd(PathBuf::from(process::working_dir(
        &config.working_dir,
        &image,
    )?));
    process.set_user(oci_user(&user));
    process.set_capabilities(Some(caps));
    process.set_no_new_privileges(Some(sc.is_some_and(|s| s.no_new_privs)));
    process.set_rlimits(None);
    process.set_apparmor_profile(apparmor);
    process.set_selinux_label(selinux.as_ref().map(|(p, _)| p.clone()));
    process.set_oom_score_adj(Some(oom));

    let mut linux = Linux::default();
    linux.set_namespaces(Some(namespaces));
    linux.set_resources(Some(resources));
    linux.set_cgroups_path(Some(PathBuf::from(cgroups_path(host, req.sandbox, req.id))));
    linux.set_sysctl(None);
    linux.set_seccomp(seccomp);
    linux.set_masked_paths(Some(masked));
    linux.set_readonly_paths(Some(readonly_paths));
    linux.set_mount_label(selinux.map(|(_, m)| m));
    linux.set_rootfs_propagation(rootfs_propagation.map(String::from));
    linux.set_devices((!device_edits.devices.is_empty()).then_some(device_edits.devices));
    if let Some((uids, gids)) = mappings {
        linux.set_uid_mappings(Some(uids));
        linux.set_gid_mappings(Some(gids));
    }

    let mut annotations = config.annotations.clone();
    annotations.insert(
        annotations::CONTAINER_TYPE.into(),
        annotations::CONTAINER_TYPE_CONTAINER.into(),
    );
    annotations.insert(annotations::SANDBOX_ID.into(), req.sandbox_id.into());
    insert_pod_identity(&mut annotations, req.sandbox);
    if let Some(metadata) = &config.metadata {
        annotations.insert(annotations::CONTAINER_NAME.into(), metadata.name.clone());
    }
    if let Some(image) = &config.image {
        let name = if image.user_specified_image.is_empty() {
            &image.image
        } else {
            &image.user_specified_image
        };
        annotations.insert(annotations::IMAGE_NAME.into(), name.clone());
    }

    let hooks = device_edits.hooks;
    let has_hooks = hooks.prestart().is_some()
        || hooks.create_runtime().is_some()
        || hooks.create_container().is_some()
        || hooks.start_container().is_some()
        || hooks.poststart().is_some()
        || hooks.poststop().is_some();
    Ok(assemble(
        req.rootfs,
        readonly_rootfs,
        process,
        mounts,
        None,
        annotations,
        linux,
        has_hooks.then_some(hooks),
    ))
}

fn insert_pod_identity(annotations: &mut HashMap<String, String>, sandbox: &PodSandboxConfig) {
    if let Some(metadata) = &sandbox.metadata {
        annotations.insert(annotations::SANDBOX_NAME.into(), metadata.name.clone());
        annotations.insert(
            annotations::SANDBOX_NAMESPACE.into(),
            metadata.namespace.clone(),
        );
        annotations.insert(annotations::SANDBOX_UID.into(), metadata.uid.clone());
    }
}

fn oci_user(user: &ResolvedUser) -> User {
    let mut out = User::default();
    out.set_uid(user.uid);
    out.set_gid(user.gid);
    out.set_additional_gids(
        (!user.additional_gids.is_empty()).then(|| user.additional_gids.clone()),
    );
    out
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    rootfs: &Path,
    readonly: bool,
    process: Process,
    mounts: Vec<oci_spec::runtime::Mount>,
    hostname: Option<String>,
    annotations: HashMap<String, String>,
    linux: Linux,
    hooks: Option<oci_spec::runtime::Hooks>,
) -> Spec {
    let mut root = Root::default();
    root.set_path(rootfs.to_path_buf());
    root.set_readonly(Some(readonly));
    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_string());
    spec.set_root(Some(root));
    spec.set_process(Some(process));
    spec.set_mounts(Some(mounts));
    spec.set_hostname(hostname);
    spec.set_domainname(None);
    spec.set_annotations(Some(annotations));
    spec.set_linux(Some(linux));
    spec.set_hooks(hooks);
    spec
}
