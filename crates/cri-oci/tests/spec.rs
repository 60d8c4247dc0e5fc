//! Table-driven tests of `cri_oci::spec`: each case builds a CRI config, generates a sandbox
//! or container spec, and asserts on the result (or on the error's field).

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use cri_api::v1::security_profile::ProfileType;
use cri_api::v1::{
    CdiDevice, ContainerConfig, ContainerMetadata, Device, HugepageLimit, IdMapping, ImageSpec,
    Int64Value, KeyValue, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount as CriMount, MountPropagation,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, SeLinuxOption,
    SecurityProfile, SupplementalGroupsPolicy, UserNamespace,
};
use cri_oci::Error;
use cri_oci::spec::{
    ContainerRequest, DEFAULT_CAPABILITIES, DEFAULT_MASKED_PATHS, Host, SandboxFiles,
    SandboxRequest, container_spec, process_for_exec, sandbox_spec,
};
use oci_spec::image::{ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder};
use oci_spec::runtime::{
    Capability, LinuxDeviceType, LinuxNamespace, LinuxNamespaceType, LinuxSeccompAction, Mount,
    Spec,
};

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
app:x:1000:1000:App:/home/app:/bin/sh\n\
svc:x:1001:1001::/srv:/bin/false\n\
nohome:x:1002:1002:::/bin/sh\n";

const GROUP: &str =
    "root:x:0:\napp:x:1000:\nsvc:x:1001:\nvideo:x:44:app,svc\naudio:x:29:app\nstaff:x:50:svc\n";

/// Everything a case can change before the spec is generated.
struct Input {
    dir: tempfile::TempDir,
    rootfs: PathBuf,
    host: Host,
    sandbox: PodSandboxConfig,
    container: ContainerConfig,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    image_env: Vec<String>,
    image_user: String,
    image_workdir: String,
    files: SandboxFiles,
    sandbox_pid: Option<u32>,
    target_pid: Option<u32>,
}

impl Input {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::write(rootfs.join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(rootfs.join("etc/group"), GROUP).unwrap();
        let mut host = Host::default();
        host.cdi_spec_dirs = vec![dir.path().join("cdi")];
        Self {
            rootfs,
            host,
            sandbox: PodSandboxConfig {
                metadata: Some(PodSandboxMetadata {
                    name: "web".into(),
                    uid: "uid-1".into(),
                    namespace: "prod".into(),
                    attempt: 0,
                }),
                hostname: "pod-host".into(),
                log_directory: "/var/log/pods/web".into(),
                ..Default::default()
            },
            container: ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "app".into(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: "docker.io/library/app:1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            entrypoint: strings(&["/entry"]),
            cmd: strings(&["default"]),
            image_env: strings(&["PATH=/image/bin", "IMG=1"]),
            image_user: String::new(),
            image_workdir: String::new(),
            files: SandboxFiles::default(),
            sandbox_pid: Some(42),
            target_pid: None,
            dir,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn sc(&mut self) -> &mut LinuxContainerSecurityContext {
        self.container
            .linux
            .get_or_insert_with(Default::default)
            .security_context
            .get_or_insert_with(Default::default)
    }

    fn resources(&mut self) -> &mut LinuxContainerResources {
        self.container
            .linux
            .get_or_insert_with(Default::default)
            .resources
            .get_or_insert_with(Default::default)
    }

    fn sandbox_linux(&mut self) -> &mut LinuxPodSandboxConfig {
        self.sandbox.linux.get_or_insert_with(Default::default)
    }

    fn sandbox_sc(&mut self) -> &mut LinuxSandboxSecurityContext {
        self.sandbox_linux()
            .security_context
            .get_or_insert_with(Default::default)
    }

    /// Sets the same namespace options on the sandbox and the container, as the kubelet does.
    fn namespaces(&mut self, options: NamespaceOption) {
        self.sandbox_sc().namespace_options = Some(options.clone());
        self.sc().namespace_options = Some(options);
    }

    fn image(&self) -> ImageConfiguration {
        let config = ConfigBuilder::default()
            .entrypoint(self.entrypoint.clone())
            .cmd(self.cmd.clone())
            .env(self.image_env.clone())
            .user(self.image_user.clone())
            .working_dir(self.image_workdir.clone())
            .build()
            .unwrap();
        ImageConfigurationBuilder::default()
            .config(config)
            .build()
            .unwrap()
    }

    fn run(&self, target: Target) -> cri_oci::Result<Spec> {
        let image = self.image();
        match target {
            Target::Sandbox => sandbox_spec(
                &self.host,
                &SandboxRequest::new("sb1", &self.sandbox, &image, &self.rootfs, &self.files),
            ),
            Target::Container => {
                let mut req = ContainerRequest::new(
                    "ctr1",
                    &self.container,
                    "sb1",
                    &self.sandbox,
                    &image,
                    &self.rootfs,
                    &self.files,
                );
                if let Some(pid) = self.sandbox_pid {
                    req = req.with_sandbox_pid(pid);
                }
                if let Some(pid) = self.target_pid {
                    req = req.with_target_pid(pid);
                }
                container_spec(&self.host, &req)
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Target {
    Sandbox,
    Container,
}
use Target::{Container as C, Sandbox as S};

struct Case {
    name: &'static str,
    target: Target,
    setup: fn(&mut Input),
    check: fn(&Input, cri_oci::Result<Spec>),
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn ok(result: cri_oci::Result<Spec>) -> Spec {
    match result {
        Ok(spec) => spec,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn invalid(result: cri_oci::Result<Spec>, field: &str) {
    match result {
        Err(Error::InvalidArgument { field: f, .. }) if f == field => {}
        Err(e) => panic!("expected an invalid {field}, got {e:?}"),
        Ok(_) => panic!("expected an invalid {field}, got a spec"),
    }
}

fn unsupported(result: cri_oci::Result<Spec>, needle: &str) {
    match result {
        Err(Error::Unsupported(msg)) if msg.contains(needle) => {}
        Err(e) => panic!("expected Unsupported mentioning {needle:?}, got {e:?}"),
        Ok(_) => panic!("expected Unsupported, got a spec"),
    }
}

fn args(spec: &Spec) -> Vec<String> {
    spec.process().as_ref().unwrap().args().clone().unwrap()
}

fn env(spec: &Spec) -> Vec<String> {
    spec.process().as_ref().unwrap().env().clone().unwrap()
}

fn env_var(spec: &Spec, key: &str) -> Option<String> {
    env(spec)
        .iter()
        .find_map(|e| e.strip_prefix(&format!("{key}=")).map(String::from))
}

fn user(spec: &Spec) -> (u32, u32, Vec<u32>) {
    let u = spec.process().as_ref().unwrap().user();
    (
        u.uid(),
        u.gid(),
        u.additional_gids().clone().unwrap_or_default(),
    )
}

fn namespaces(spec: &Spec) -> Vec<LinuxNamespace> {
    spec.linux().as_ref().unwrap().namespaces().clone().unwrap()
}

fn ns(spec: &Spec, typ: LinuxNamespaceType) -> Option<Option<PathBuf>> {
    namespaces(spec)
        .into_iter()
        .find(|n| n.typ() == typ)
        .map(|n| n.path().clone())
}

fn mount<'a>(spec: &'a Spec, dest: &str) -> Option<&'a Mount> {
    spec.mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new(dest))
}

fn options(spec: &Spec, dest: &str) -> Vec<String> {
    mount(spec, dest)
        .unwrap_or_else(|| panic!("no mount at {dest}"))
        .options()
        .clone()
        .unwrap_or_default()
}

/// One limit per page size of a node with 2 MiB and 1 GiB pages, as the kubelet sends them.
fn kubelet_hugepages(limit_2mb: u64) -> Vec<HugepageLimit> {
    vec![
        HugepageLimit {
            page_size: "2MB".into(),
            limit: limit_2mb,
        },
        HugepageLimit {
            page_size: "1GB".into(),
            limit: 0,
        },
    ]
}

fn caps(spec: &Spec) -> HashSet<Capability> {
    spec.process()
        .as_ref()
        .unwrap()
        .capabilities()
        .as_ref()
        .unwrap()
        .effective()
        .clone()
        .unwrap()
}

fn linux(spec: &Spec) -> &oci_spec::runtime::Linux {
    spec.linux().as_ref().unwrap()
}

fn denied_syscalls(spec: &Spec) -> Vec<String> {
    linux(spec)
        .seccomp()
        .as_ref()
        .unwrap()
        .syscalls()
        .iter()
        .flatten()
        .flat_map(|s| s.names().clone())
        .collect()
}

fn profile(profile_type: ProfileType, localhost_ref: &str) -> Option<SecurityProfile> {
    Some(SecurityProfile {
        profile_type: profile_type as i32,
        localhost_ref: localhost_ref.into(),
    })
}

fn bind(container_path: &str, host_path: &str) -> CriMount {
    CriMount {
        container_path: container_path.into(),
        host_path: host_path.into(),
        ..Default::default()
    }
}

fn pod_userns() -> NamespaceOption {
    NamespaceOption {
        userns_options: Some(UserNamespace {
            mode: NamespaceMode::Pod as i32,
            uids: vec![IdMapping {
                host_id: 100_000,
                container_id: 0,
                length: 65536,
            }],
            gids: vec![IdMapping {
                host_id: 200_000,
                container_id: 0,
                length: 65536,
            }],
        }),
        ..Default::default()
    }
}

const CDI_SPEC: &str = r#"{
  "cdiVersion": "0.6.0",
  "kind": "vendor.com/gpu",
  "containerEdits": { "env": ["VENDOR_SPEC=1"] },
  "devices": [
    {
      "name": "0",
      "containerEdits": {
        "env": ["GPU=0"],
        "deviceNodes": [{ "path": "/dev/gpu0", "type": "c", "major": 195, "minor": 0, "permissions": "rw" }],
        "mounts": [{ "hostPath": "/usr/lib/vendor", "containerPath": "/usr/lib/vendor", "options": ["ro", "nosuid", "nodev", "bind"] }],
        "hooks": [{ "hookName": "createContainer", "path": "/usr/bin/vendor-hook", "args": ["vendor-hook", "update"] }],
        "additionalGids": [4444]
      }
    },
    {
      "name": "null",
      "containerEdits": { "deviceNodes": [{ "path": "/dev/vendor-null", "hostPath": "/dev/null" }] }
    }
  ]
}"#;

const CDI_YAML_SPEC: &str = "cdiVersion: 0.6.0
kind: other.com/dev
devices:
  - name: a
    containerEdits:
      env: [FROM_YAML=yes]
      deviceNodes:
        - path: /dev/other-a
          type: c
          major: 240
          minor: 1
";

fn cases() -> Vec<Case> {
    vec![
        // ---- process: arguments -------------------------------------------------------
        Case {
            name: "image entrypoint and cmd when the config has neither",
            target: C,
            setup: |_| {},
            check: |_, r| assert_eq!(args(&ok(r)), ["/entry", "default"]),
        },
        Case {
            name: "args alone replace the image cmd",
            target: C,
            setup: |i| i.container.args = strings(&["a1", "a2"]),
            check: |_, r| assert_eq!(args(&ok(r)), ["/entry", "a1", "a2"]),
        },
        Case {
            name: "command replaces the entrypoint and drops the image cmd",
            target: C,
            setup: |i| i.container.command = strings(&["/bin/cmd"]),
            check: |_, r| assert_eq!(args(&ok(r)), ["/bin/cmd"]),
        },
        Case {
            name: "command and args",
            target: C,
            setup: |i| {
                i.container.command = strings(&["/bin/cmd"]);
                i.container.args = strings(&["x"]);
            },
            check: |_, r| assert_eq!(args(&ok(r)), ["/bin/cmd", "x"]),
        },
        Case {
            name: "no command anywhere is an error",
            target: C,
            setup: |i| {
                i.entrypoint.clear();
                i.cmd.clear();
            },
            check: |_, r| invalid(r, "command"),
        },
        // ---- process: environment and cwd ----------------------------------------------
        Case {
            name: "CRI envs override the image's by key, in place",
            target: C,
            setup: |i| {
                i.container.envs = vec![
                    KeyValue {
                        key: "IMG".into(),
                        value: b"2".to_vec(),
                    },
                    KeyValue {
                        key: "NEW".into(),
                        value: b"x=y".to_vec(),
                    },
                ];
            },
            check: |_, r| {
                let spec = ok(r);
                let env = env(&spec);
                assert_eq!(
                    env[..4],
                    ["PATH=/image/bin", "HOSTNAME=pod-host", "IMG=2", "NEW=x=y"],
                    "{env:?}"
                );
            },
        },
        Case {
            name: "default PATH when the image has none",
            target: C,
            setup: |i| i.image_env.clear(),
            check: |_, r| {
                assert_eq!(
                    env_var(&ok(r), "PATH").as_deref(),
                    Some(cri_oci::spec::DEFAULT_PATH)
                )
            },
        },
        Case {
            name: "a non-UTF-8 env value names the field",
            target: C,
            setup: |i| {
                i.container.envs = vec![KeyValue {
                    key: "K".into(),
                    value: vec![0xff, 0xfe],
                }]
            },
            check: |_, r| invalid(r, "envs[0].value"),
        },
        Case {
            name: "an env key with '=' names the field",
            target: C,
            setup: |i| {
                i.container.envs = vec![KeyValue {
                    key: "A=B".into(),
                    value: b"1".to_vec(),
                }]
            },
            check: |_, r| invalid(r, "envs[0].key"),
        },
        Case {
            name: "working_dir wins over the image's",
            target: C,
            setup: |i| {
                i.container.working_dir = "/work".into();
                i.image_workdir = "/img".into();
            },
            check: |_, r| assert_eq!(ok(r).process().as_ref().unwrap().cwd(), Path::new("/work")),
        },
        Case {
            name: "image WorkingDir, then /",
            target: C,
            setup: |i| i.image_workdir = "/img".into(),
            check: |_, r| assert_eq!(ok(r).process().as_ref().unwrap().cwd(), Path::new("/img")),
        },
        Case {
            name: "cwd defaults to /",
            target: C,
            setup: |_| {},
            check: |_, r| assert_eq!(ok(r).process().as_ref().unwrap().cwd(), Path::new("/")),
        },
        Case {
            name: "a relative working_dir is an error",
            target: C,
            setup: |i| i.container.working_dir = "work".into(),
            check: |_, r| invalid(r, "working_dir"),
        },
        Case {
            name: "tty gives a terminal and TERM",
            target: C,
            setup: |i| i.container.tty = true,
            check: |_, r| {
                let spec = ok(r);
                assert_eq!(spec.process().as_ref().unwrap().terminal(), Some(true));
                assert_eq!(env_var(&spec, "TERM").as_deref(), Some("xterm"));
            },
        },
        Case {
            name: "HOME from /etc/passwd unless the config sets it",
            target: C,
            setup: |i| i.image_user = "app".into(),
            check: |_, r| assert_eq!(env_var(&ok(r), "HOME").as_deref(), Some("/home/app")),
        },
        Case {
            name: "HOME from the config wins",
            target: C,
            setup: |i| {
                i.image_user = "app".into();
                i.container.envs = vec![KeyValue {
                    key: "HOME".into(),
                    value: b"/custom".to_vec(),
                }];
            },
            check: |_, r| assert_eq!(env_var(&ok(r), "HOME").as_deref(), Some("/custom")),
        },
        Case {
            name: "no HOME for a UID that /etc/passwd does not know",
            target: C,
            setup: |i| i.image_user = "4242".into(),
            check: |_, r| assert_eq!(env_var(&ok(r), "HOME"), None),
        },
        // ---- process: user ----------------------------------------------------------
        Case {
            name: "empty image user is root",
            target: C,
            setup: |_| {},
            check: |_, r| assert_eq!(user(&ok(r)), (0, 0, vec![0])),
        },
        Case {
            name: "image user by name, groups from /etc/group merged",
            target: C,
            setup: |i| i.image_user = "app".into(),
            check: |_, r| assert_eq!(user(&ok(r)), (1000, 1000, vec![1000, 44, 29])),
        },
        Case {
            name: "image user by UID finds the name for group membership",
            target: C,
            setup: |i| i.image_user = "1001".into(),
            check: |_, r| assert_eq!(user(&ok(r)), (1001, 1001, vec![1001, 44, 50])),
        },
        Case {
            name: "image user uid:gid sets the primary group",
            target: C,
            setup: |i| i.image_user = "1001:50".into(),
            check: |_, r| assert_eq!(user(&ok(r)), (1001, 50, vec![50, 44])),
        },
        Case {
            name: "image user name:group",
            target: C,
            setup: |i| i.image_user = "svc:audio".into(),
            check: |_, r| assert_eq!(user(&ok(r)), (1001, 29, vec![29, 44, 50])),
        },
        Case {
            name: "an unknown image user name is an error",
            target: C,
            setup: |i| i.image_user = "ghost".into(),
            check: |_, r| invalid(r, "image config User"),
        },
        Case {
            name: "an unknown image group name is an error",
            target: C,
            setup: |i| i.image_user = "app:nogroup".into(),
            check: |_, r| invalid(r, "image config User"),
        },
        Case {
            name: "run_as_user overrides the image user; gid from /etc/passwd",
            target: C,
            setup: |i| {
                i.image_user = "app".into();
                i.sc().run_as_user = Some(Int64Value { value: 1001 });
            },
            check: |_, r| assert_eq!(user(&ok(r)), (1001, 1001, vec![1001, 44, 50])),
        },
        Case {
            name: "run_as_user unknown to /etc/passwd gets gid 0",
            target: C,
            setup: |i| i.sc().run_as_user = Some(Int64Value { value: 5000 }),
            check: |_, r| assert_eq!(user(&ok(r)), (5000, 0, vec![0])),
        },
        Case {
            name: "run_as_username resolves through /etc/passwd",
            target: C,
            setup: |i| i.sc().run_as_username = "svc".into(),
            check: |_, r| assert_eq!(user(&ok(r)).0, 1001),
        },
        Case {
            name: "an unknown run_as_username is an error",
            target: C,
            setup: |i| i.sc().run_as_username = "ghost".into(),
            check: |_, r| invalid(r, "linux.security_context.run_as_username"),
        },
        Case {
            name: "run_as_group without a user is an error",
            target: C,
            setup: |i| i.sc().run_as_group = Some(Int64Value { value: 10 }),
            check: |_, r| invalid(r, "linux.security_context.run_as_group"),
        },
        Case {
            name: "run_as_user with run_as_group",
            target: C,
            setup: |i| {
                i.sc().run_as_user = Some(Int64Value { value: 1000 });
                i.sc().run_as_group = Some(Int64Value { value: 3000 });
            },
            check: |_, r| assert_eq!(user(&ok(r)), (1000, 3000, vec![3000, 44, 29])),
        },
        Case {
            name: "a negative run_as_user is an error",
            target: C,
            setup: |i| i.sc().run_as_user = Some(Int64Value { value: -1 }),
            check: |_, r| invalid(r, "linux.security_context.run_as_user"),
        },
        Case {
            name: "supplemental groups with policy Merge",
            target: C,
            setup: |i| {
                i.image_user = "app".into();
                i.sc().supplemental_groups = vec![3000, 44];
            },
            check: |_, r| assert_eq!(user(&ok(r)).2, vec![1000, 44, 29, 3000]),
        },
        Case {
            name: "supplemental groups with policy Strict ignore /etc/group",
            target: C,
            setup: |i| {
                i.image_user = "app".into();
                i.sc().supplemental_groups = vec![3000];
                i.sc().supplemental_groups_policy = SupplementalGroupsPolicy::Strict as i32;
            },
            check: |_, r| assert_eq!(user(&ok(r)).2, vec![1000, 3000]),
        },
        // ---- hostname and namespaces -------------------------------------------------
        Case {
            name: "sandbox: hostname and a new namespace of each kind",
            target: S,
            setup: |_| {},
            check: |_, r| {
                let spec = ok(r);
                assert_eq!(spec.hostname().as_deref(), Some("pod-host"));
                for typ in [
                    LinuxNamespaceType::Mount,
                    LinuxNamespaceType::Network,
                    LinuxNamespaceType::Uts,
                    LinuxNamespaceType::Ipc,
                    LinuxNamespaceType::Pid,
                    LinuxNamespaceType::Cgroup,
                ] {
                    assert_eq!(ns(&spec, typ), Some(None), "{typ:?}");
                }
                assert_eq!(ns(&spec, LinuxNamespaceType::User), None);
            },
        },
        Case {
            name: "sandbox: host network keeps the host's hostname and UTS",
            target: S,
            setup: |i| {
                i.namespaces(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    ..Default::default()
                })
            },
            check: |_, r| {
                let spec = ok(r);
                assert_eq!(spec.hostname(), &None);
                assert_eq!(ns(&spec, LinuxNamespaceType::Network), None);
                assert_eq!(ns(&spec, LinuxNamespaceType::Uts), None);
            },
        },
        Case {
            name: "sandbox: host PID and IPC; host /dev/shm",
            target: S,
            setup: |i| {
                i.namespaces(NamespaceOption {
                    pid: NamespaceMode::Node as i32,
                    ipc: NamespaceMode::Node as i32,
                    ..Default::default()
                })
            },
            check: |_, r| {
                let spec = ok(r);
                assert_eq!(ns(&spec, LinuxNamespaceType::Pid), None);
                assert_eq!(ns(&spec, LinuxNamespaceType::Ipc), None);
                assert_eq!(
                    mount(&spec, "/dev/shm").unwrap().source().as_deref(),
                    Some(Path::new("/dev/shm"))
                );
            },
        },
        Case {
            name: "container: the pod's namespaces are joined through the sandbox PID",
            target: C,
            setup: |_| {},
            check: |_, r| {
                let spec = ok(r);
                for (typ, name) in [
                    (LinuxNamespaceType::Network, "net"),
                    (LinuxNamespaceType::Uts, "uts"),
                    (LinuxNamespaceType::Ipc, "ipc"),
                    (LinuxNamespaceType::Pid, "pid"),
                ] {
                    assert_eq!(
                        ns(&spec, typ),
                        Some(Some(PathBuf::from(format!("/proc/42/ns/{name}"))))
                    );
                }
                assert_eq!(ns(&spec, LinuxNamespaceType::Mount), Some(None));
                assert_eq!(
                    spec.hostname(),
                    &None,
                    "the UTS namespace is joined, not set up"
                );
            },
        },
        Case {
            name: "container: PID mode CONTAINER is a new namespace",
            target: C,
            setup: |i| {
                i.namespaces(NamespaceOption {
                    pid: NamespaceMode::Container as i32,
                    ..Default::default()
                })
            },
            check: |_, r| assert_eq!(ns(&ok(r), LinuxNamespaceType::Pid), Some(None)),
        },
        Case {
            name: "container: PID mode TARGET joins the target",
            target: C,
            setup: |i| {
                i.namespaces(NamespaceOption {
                    pid: NamespaceMode::Target as i32,
                    target_id: "other".into(),
                    ..Default::default()
                });
                i.target_pid = Some(77);
            },
            check: |_, r| {
                assert_eq!(
                    ns(&ok(r), LinuxNamespaceType::Pid),
                    Some(Some(PathBuf::from("/proc/77/ns/pid")))
                )
            },
        },
        Case {
            name: "container: PID mode TARGET without target_pid",
            target: C,
            setup: |i| {
                i.namespaces(NamespaceOption {
                    pid: NamespaceMode::Target as i32,
                    ..Default::default()
                })
            },
            check: |_, r| invalid(r, "linux.security_context.namespace_options.target_id"),
        },
        Case {
            name: "container: network mode TARGET is impossible",
            target: C,
            setup: |i| {
                i.namespaces(NamespaceOption {
                    network: NamespaceMode::Target as i32,
                    ..Default::default()
                })
            },
            check: |_, r| invalid(r, "linux.security_context.namespace_options.network"),
        },
        Case {
            name: "container: joining the pod without a sandbox PID",
            target: C,
            setup: |i| i.sandbox_pid = None,
            check: |_, r| invalid(r, "linux.security_context.namespace_options.network"),
        },
        Case {
            name: "container: host network has no network/UTS namespace and the node's HOSTNAME",
            target: C,
            setup: |i| {
                i.namespaces(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    ..Default::default()
                })
            },
            check: |_, r| {
                let spec = ok(r);
                assert_eq!(ns(&spec, LinuxNamespaceType::Network), None);
                assert_eq!(ns(&spec, LinuxNamespaceType::Uts), None);
                let node = rustix::system::uname()
                    .nodename()
                    .to_string_lossy()
                    .into_owned();
                assert_eq!(env_var(&spec, "HOSTNAME"), Some(node));
            },
        },
        Case {
            name: "sandbox: user namespace with the pod's mappings",
            target: S,
            setup: |i| i.namespaces(pod_userns()),
            check: |_, r| {
                let spec = ok(r);
                assert_eq!(ns(&spec, LinuxNamespaceType::User), Some(None));
                let uids = linux(&spec).uid_mappings().clone().unwrap();
                assert_eq!(
                    (uids[0].host_id(), uids[0].container_id(), uids[0].size()),
                    (100_000, 0, 65536)
                );
                assert_eq!(
                    linux(&spec).gid_mappings().clone().unwrap()[0].host_id(),
                    200_000
                );
            },
        },
        Case {
            name: "container: joins the pod's user namespace, mappings repeated for runc",
            target: C,
            setup: |i| i.namespaces(pod_userns()),
            check: |_, r| {
                let spec = ok(r);
                assert_eq!(
                    ns(&spec, LinuxNamespaceType::User),
                    Some(Some(PathBuf::from("/proc/42/ns/user")))
                );
                assert_eq!(
                    linux(&spec).uid_mappings().clone().unwrap()[0].host_id(),
                    100_000
                );
            },
        },
        Case {
            name: "user namespace: more than one UID mapping",
            target: S,
            setup: |i| {
                let mut options = pod_userns();
                let userns = options.userns_options.as_mut().unwrap();
                userns.uids.push(IdMapping {
                    host_id: 300_000,
                    container_id: 65536,
                    length: 10,
                });
                i.namespaces(options);
            },
            check: |_, r| {
                invalid(
                    r,
                    "linux.security_context.namespace_options.userns_options.uids",
                )
            },
        },
        Case {
            name: "user namespace: empty GID mapping",
            target: S,
            setup: |i| {
                let mut options = pod_userns();
                options.userns_options.as_mut().unwrap().gids[0].length = 0;
                i.namespaces(options);
            },
            check: |_, r| {
                invalid(
                    r,
                    "linux.security_context.namespace_options.userns_options.gids",
                )
            },
        },
        Case {
            name: "user namespace with host network is refused",
            target: S,
            setup: |i| {
                let mut options = pod_userns();
                options.network = NamespaceMode::Node as i32;
                i.namespaces(options);
            },
            check: |_, r| invalid(r, "linux.security_context.namespace_options.network"),
        },
        // ---- mounts --------------------------------------------------------------------
        Case {
            name: "default mounts, parents first, /sys read-only, private /dev/shm",
            target: C,
            setup: |_| {},
            check: |_, r| {
                let spec = ok(r);
                let dests: Vec<String> = spec
                    .mounts()
                    .as_ref()
                    .unwrap()
                    .iter()
                    .map(|m| m.destination().display().to_string())
                    .collect();
                assert_eq!(
                    dests,
                    [
                        "/proc",
                        "/dev",
                        "/sys",
                        "/dev/pts",
                        "/dev/mqueue",
                        "/dev/shm",
                        "/sys/fs/cgroup"
                    ]
                );
                assert!(options(&spec, "/sys").contains(&"ro".to_string()));
                assert!(options(&spec, "/sys/fs/cgroup").contains(&"ro".to_string()));
                assert_eq!(
                    mount(&spec, "/dev/shm").unwrap().typ().as_deref(),
                    Some("tmpfs")
                );
                assert!(options(&spec, "/dev/shm").contains(&"size=65536k".to_string()));
            },
        },
        Case {
            name: "the pod's shm is bind-mounted",
            target: C,
            setup: |i| i.files.shm = Some(PathBuf::from("/run/pods/sb1/shm")),
            check: |_, r| {
                let spec = ok(r);
                let shm = mount(&spec, "/dev/shm").unwrap();
                assert_eq!(shm.typ().as_deref(), Some("bind"));
                assert_eq!(
                    shm.source().as_deref(),
                    Some(Path::new("/run/pods/sb1/shm"))
                );
            },
        },
        Case {
            name: "sandbox files, read-only with a read-only rootfs",
            target: C,
            setup: |i| {
                i.files.hosts = Some("/run/pods/sb1/hosts".into());
                i.files.resolv_conf = Some("/run/pods/sb1/resolv.conf".into());
                i.files.hostname = Some("/run/pods/sb1/hostname".into());
                i.sc().readonly_rootfs = true;
            },
            check: |_, r| {
                let spec = ok(r);
                for dest in ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"] {
                    assert_eq!(options(&spec, dest), ["rbind", "rprivate", "ro"], "{dest}");
                }
                assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
            },
        },
        Case {
            name: "a container mount of /etc/hosts replaces the pod's",
            target: C,
            setup: |i| {
                i.files.hosts = Some("/run/pods/sb1/hosts".into());
                i.container.mounts = vec![bind("/etc/hosts", "/mine/hosts")];
            },
            check: |_, r| {
                let spec = ok(r);
                let hosts: Vec<&Mount> = spec
                    .mounts()
                    .as_ref()
                    .unwrap()
                    .iter()
                    .filter(|m| m.destination() == Path::new("/etc/hosts"))
                    .collect();
                assert_eq!(hosts.len(), 1);
                assert_eq!(hosts[0].source().as_deref(), Some(Path::new("/mine/hosts")));
            },
        },
        Case {
            name: "CRI bind mount: readonly, private",
            target: C,
            setup: |i| {
                i.container.mounts = vec![CriMount {
                    readonly: true,
                    ..bind("/data", "/srv/data")
                }]
            },
            check: |_, r| {
                let spec = ok(r);
                assert_eq!(options(&spec, "/data"), ["rbind", "rprivate", "ro"]);
                assert_eq!(linux(&spec).rootfs_propagation(), &None);
            },
        },
        Case {
            name: "host-to-container propagation is rslave, rootfs rslave",
            target: C,
            setup: |i| {
                i.container.mounts = vec![CriMount {
                    propagation: MountPropagation::PropagationHostToContainer as i32,
                    ..bind("/data", "/srv")
                }]
            },
            check: |_, r| {
                let spec = ok(r);
                assert_eq!(options(&spec, "/data"), ["rbind", "rslave", "rw"]);
                assert_eq!(linux(&spec).rootfs_propagation().as_deref(), Some("rslave"));
            },
        },
        Case {
            name: "bidirectional propagation makes the rootfs rshared",
            target: C,
            setup: |i| {
                i.container.mounts = vec![
                    CriMount {
                        propagation: MountPropagation::PropagationHostToContainer as i32,
                        ..bind("/a", "/srv/a")
                    },
                    CriMount {
                        propagation: MountPropagation::PropagationBidirectional as i32,
                        ..bind("/b", "/srv/b")
                    },
                ]
            },
            check: |_, r| {
                let spec = ok(r);
                assert!(options(&spec, "/b").contains(&"rshared".to_string()));
                assert_eq!(
                    linux(&spec).rootfs_propagation().as_deref(),
                    Some("rshared")
                );
            },
        },
        Case {
            name: "recursive read-only on a host without support",
            target: C,
            setup: |i| {
                i.container.mounts = vec![CriMount {
                    readonly: true,
                    recursive_read_only: true,
                    ..bind("/data", "/srv")
                }]
            },
            check: |_, r| {
                let err = r.expect_err("an error");
                assert!(
                    matches!(err, Error::RecursiveReadOnlyUnsupported(_)),
                    "{err:?}"
                );
                assert!(err.to_status().message().starts_with("RROUnsupported: "));
            },
        },
        Case {
            name: "recursive read-only where supported",
            target: C,
            setup: |i| {
                i.host.recursive_read_only_supported = true;
                i.container.mounts = vec![CriMount {
                    readonly: true,
                    recursive_read_only: true,
                    ..bind("/data", "/srv")
                }];
            },
            check: |_, r| assert_eq!(options(&ok(r), "/data"), ["rbind", "rprivate", "ro", "rro"]),
        },
        Case {
            name: "recursive read-only needs readonly",
            target: C,
            setup: |i| {
                i.host.recursive_read_only_supported = true;
                i.container.mounts = vec![CriMount {
                    recursive_read_only: true,
                    ..bind("/data", "/srv")
                }];
            },
            check: |_, r| invalid(r, "mounts[0].recursive_read_only"),
        },
        Case {
            name: "recursive read-only needs private propagation",
            target: C,
            setup: |i| {
                i.host.recursive_read_only_supported = true;
                i.container.mounts = vec![CriMount {
                    readonly: true,
                    recursive_read_only: true,
                    propagation: MountPropagation::PropagationHostToContainer as i32,
                    ..bind("/data", "/srv")
                }];
            },
            check: |_, r| invalid(r, "mounts[0].recursive_read_only"),
        },
        Case {
            name: "image volume mounts are unsupported",
            target: C,
            setup: |i| {
                i.container.mounts = vec![CriMount {
                    image: Some(ImageSpec {
                        image: "docker.io/library/data:1".into(),
                        ..Default::default()
                    }),
                    ..bind("/data", "")
                }]
            },
            check: |_, r| unsupported(r, "mounts[0].image"),
        },
        Case {
            name: "ID-mapped mounts carry their mappings",
            target: C,
            setup: |i| {
                let map = IdMapping {
                    host_id: 100_000,
                    container_id: 0,
                    length: 65536,
                };
                i.container.mounts = vec![CriMount {
                    uid_mappings: vec![map],
                    gid_mappings: vec![map],
                    ..bind("/data", "/srv")
                }];
            },
            check: |_, r| {
                let spec = ok(r);
                let m = mount(&spec, "/data").unwrap();
                assert_eq!(m.uid_mappings().as_ref().unwrap()[0].host_id(), 100_000);
                assert_eq!(m.gid_mappings().as_ref().unwrap()[0].size(), 65536);
                let json = serde_json::to_value(m).unwrap();
                assert_eq!(json["uidMappings"][0]["hostID"], 100_000);
            },
        },
        Case {
            name: "an ID-mapped mount needs both mappings",
            target: C,
            setup: |i| {
                i.container.mounts = vec![CriMount {
                    uid_mappings: vec![IdMapping {
                        host_id: 1,
                        container_id: 0,
                        length: 1,
                    }],
                    ..bind("/data", "/srv")
                }]
            },
            check: |_, r| invalid(r, "mounts[0].uid_mappings"),
        },
        Case {
            name: "a relative container path is an error",
            target: C,
            setup: |i| i.container.mounts = vec![bind("data", "/srv")],
            check: |_, r| invalid(r, "mounts[0].container_path"),
        },
        Case {
            name: "nested CRI mounts are ordered parent first",
            target: C,
            setup: |i| {
                i.container.mounts = vec![
                    bind("/data/sub/leaf", "/a"),
                    bind("/data", "/b"),
                    bind("/data/sub", "/c"),
                ]
            },
            check: |_, r| {
                let spec = ok(r);
                let order: Vec<PathBuf> = spec
                    .mounts()
                    .as_ref()
                    .unwrap()
                    .iter()
                    .map(|m| m.destination().clone())
                    .filter(|d| d.starts_with("/data"))
                    .collect();
                assert_eq!(
                    order,
                    [
                        PathBuf::from("/data"),
                        "/data/sub".into(),
                        "/data/sub/leaf".into()
                    ]
                );
            },
        },
        Case {
            name: "selinux_relabel is ignored with SELinux disabled",
            target: C,
            setup: |i| {
                i.container.mounts = vec![CriMount {
                    selinux_relabel: true,
                    ..bind("/data", "/srv")
                }]
            },
            check: |_, r| {
                let spec = ok(r);
                assert_eq!(options(&spec, "/data"), ["rbind", "rprivate", "rw"]);
                assert_eq!(linux(&spec).mount_label(), &None);
            },
        },
        // ---- security ------------------------------------------------------------------
        Case {
            name: "the default capabilities are the classic 14",
            target: C,
            setup: |_| {},
            check: |_, r| {
                let spec = ok(r);
                assert_eq!(caps(&spec), DEFAULT_CAPABILITIES.into_iter().collect());
                let all = spec
                    .process()
                    .as_ref()
                    .unwrap()
                    .capabilities()
                    .clone()
                    .unwrap();
                assert_eq!(all.bounding(), all.effective());
                assert_eq!(all.inheritable().as_ref().map(|s| s.len()), Some(0));
            },
        },
        Case {
            name: "add and drop, any case, with or without CAP_",
            target: C,
            setup: |i| {
                i.sc().capabilities = Some(cri_api::v1::Capability {
                    add_capabilities: strings(&["cap_sys_admin", "Net_Admin"]),
                    drop_capabilities: strings(&["NET_RAW", "CAP_MKNOD"]),
                    ..Default::default()
                })
            },
            check: |_, r| {
                let caps = caps(&ok(r));
                assert!(
                    caps.contains(&Capability::SysAdmin) && caps.contains(&Capability::NetAdmin)
                );
                assert!(!caps.contains(&Capability::NetRaw) && !caps.contains(&Capability::Mknod));
                assert_eq!(caps.len(), 14);
            },
        },
        Case {
            name: "drop ALL then add one",
            target: C,
            setup: |i| {
                i.sc().capabilities = Some(cri_api::v1::Capability {
                    add_capabilities: strings(&["NET_BIND_SERVICE"]),
                    drop_capabilities: strings(&["ALL"]),
                    ..Default::default()
                })
            },
            check: |_, r| assert_eq!(caps(&ok(r)), HashSet::from([Capability::NetBindService])),
        },
        Case {
            name: "add ALL and drop one",
            target: C,
            setup: |i| {
                i.sc().capabilities = Some(cri_api::v1::Capability {
                    add_capabilities: strings(&["all"]),
                    drop_capabilities: strings(&["CHOWN"]),
                    ..Default::default()
                })
            },
            check: |_, r| {
                let caps = caps(&ok(r));
                assert_eq!(caps.len(), cri_oci::spec::all_capabilities().len() - 1);
                assert!(!caps.contains(&Capability::Chown));
            },
        },
        Case {
            name: "an unknown capability names the list entry",
            target: C,
            setup: |i| {
                i.sc().capabilities = Some(cri_api::v1::Capability {
                    add_capabilities: strings(&["CHOWN", "CAP_FOO"]),
                    ..Default::default()
                })
            },
            check: |_, r| invalid(r, "linux.security_context.capabilities.add_capabilities[1]"),
        },
        Case {
            name: "ambient capabilities are also inheritable and permitted",
            target: C,
            setup: |i| {
                i.sc().capabilities = Some(cri_api::v1::Capability {
                    add_ambient_capabilities: strings(&["NET_ADMIN"]),
                    ..Default::default()
                })
            },
            check: |_, r| {
                let spec = ok(r);
                let c = spec
                    .process()
                    .as_ref()
                    .unwrap()
                    .capabilities()
                    .clone()
                    .unwrap();
                for set in [c.ambient(), c.inheritable(), c.permitted(), c.effective()] {
                    assert!(set.as_ref().unwrap().contains(&Capability::NetAdmin));
                }
                assert_eq!(c.ambient().as_ref().unwrap().len(), 1);
            },
        },
        Case {
            name: "privileged: all capabilities, host devices, no confinement, rw /sys",
            target: C,
            setup: |i| {
                i.sandbox_sc().privileged = true;
                i.sc().privileged = true;
                i.sc().seccomp = profile(ProfileType::RuntimeDefault, "");
            },
            check: |_, r| {
                let spec = ok(r);
                assert_eq!(caps(&spec), cri_oci::spec::all_capabilities());
                assert_eq!(linux(&spec).seccomp(), &None);
                assert_eq!(linux(&spec).masked_paths().as_deref(), Some(&[][..]));
                assert_eq!(linux(&spec).readonly_paths().as_deref(), Some(&[][..]));
                assert!(options(&spec, "/sys").contains(&"rw".to_string()));
                assert!(options(&spec, "/sys/fs/cgroup").contains(&"rw".to_string()));
                let null = linux(&spec)
                    .devices()
                    .iter()
                    .flatten()
                    .find(|d| d.path() == Path::new("/dev/null"))
                    .expect("/dev/null");
                assert_eq!(
                    (null.typ(), null.major(), null.minor()),
                    (LinuxDeviceType::C, 1, 3)
                );
                let rules = linux(&spec)
                    .resources()
                    .as_ref()
                    .unwrap()
                    .devices()
                    .clone()
                    .unwrap();
                assert_eq!(rules.len(), 1);
                assert!(rules[0].allow());
                assert_eq!(ns(&spec, LinuxNamespaceType::Cgroup), None);
            },
        },
        Case {
            name: "privileged: every capability the runtime holds, no more",
            target: C,
            setup: |i| {
                i.host.capabilities.remove(&Capability::SysResource);
                i.sandbox_sc().privileged = true;
                i.sc().privileged = true;
            },
            check: |i, r| {
                let caps = caps(&ok(r));
                assert_eq!(caps, i.host.capabilities);
                assert!(!caps.contains(&Capability::SysResource));
                assert!(caps.contains(&Capability::SysAdmin));
            },
        },
        Case {
            name: "a privileged sandbox gets the runtime's capabilities",
            target: S,
            setup: |i| {
                i.host.capabilities.remove(&Capability::SysResource);
                i.sandbox_sc().privileged = true;
            },
            check: |i, r| assert_eq!(caps(&ok(r)), i.host.capabilities),
        },
        Case {
            name: "add ALL means the runtime's capabilities",
            target: C,
            setup: |i| {
                i.host.capabilities.remove(&Capability::SysResource);
                i.sc().capabilities = Some(cri_api::v1::Capability {
                    add_capabilities: strings(&["ALL"]),
                    ..Default::default()
                })
            },
            check: |i, r| assert_eq!(caps(&ok(r)), i.host.capabilities),
        },
        Case {
            name: "a named capability the runtime lacks is refused by name",
            target: C,
            setup: |i| {
                i.host.capabilities.remove(&Capability::SysResource);
                i.sc().capabilities = Some(cri_api::v1::Capability {
                    add_capabilities: strings(&["NET_ADMIN", "sys_resource"]),
                    ..Default::default()
                })
            },
            check: |_, r| unsupported(r, "CAP_SYS_RESOURCE cannot be granted"),
        },
        Case {
            name: "defaults the runtime lacks are left out quietly",
            target: C,
            setup: |i| {
                i.host.capabilities.remove(&Capability::AuditWrite);
            },
            check: |_, r| {
                let caps = caps(&ok(r));
                assert_eq!(caps.len(), cri_oci::spec::DEFAULT_CAPABILITIES.len() - 1);
                assert!(!caps.contains(&Capability::AuditWrite));
            },
        },
        Case {
            name: "dropping a capability the runtime lacks is fine",
            target: C,
            setup: |i| {
                i.host.capabilities.remove(&Capability::SysResource);
                i.sc().capabilities = Some(cri_api::v1::Capability {
                    drop_capabilities: strings(&["SYS_RESOURCE", "CHOWN"]),
                    ..Default::default()
                })
            },
            check: |_, r| assert!(!caps(&ok(r)).contains(&Capability::Chown)),
        },
        Case {
            name: "a privileged container needs a privileged sandbox",
            target: C,
            setup: |i| i.sc().privileged = true,
            check: |_, r| invalid(r, "linux.security_context.privileged"),
        },
        Case {
            name: "masked and read-only paths: exactly the request's",
            target: C,
            setup: |i| i.sc().readonly_paths = strings(&["/proc/sys"]),
            check: |_, r| {
                let spec = ok(r);
                // Empty means none (the kubelet's procMount Unmasked), as in containerd.
                assert_eq!(linux(&spec).masked_paths().as_deref(), Some(&[][..]));
                assert_eq!(
                    linux(&spec).readonly_paths().clone().unwrap(),
                    ["/proc/sys"]
                );
            },
        },
        Case {
            name: "the pause process gets the default masked and read-only paths",
            target: S,
            setup: |_| {},
            check: |_, r| {
                let spec = ok(r);
                assert_eq!(
                    linux(&spec).masked_paths().clone().unwrap(),
                    DEFAULT_MASKED_PATHS
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                );
                assert_eq!(
                    linux(&spec).readonly_paths().clone().unwrap().len(),
                    cri_oci::spec::DEFAULT_READONLY_PATHS.len()
                );
            },
        },
        Case {
            name: "no_new_privs",
            target: C,
            setup: |i| i.sc().no_new_privs = true,
            check: |_, r| {
                assert_eq!(
                    ok(r).process().as_ref().unwrap().no_new_privileges(),
                    Some(true)
                )
            },
        },
        Case {
            name: "seccomp RuntimeDefault: our deny-list",
            target: C,
            setup: |i| i.sc().seccomp = profile(ProfileType::RuntimeDefault, ""),
            check: |_, r| {
                let spec = ok(r);
                let seccomp = linux(&spec).seccomp().clone().unwrap();
                assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActAllow);
                let denied = denied_syscalls(&spec);
                for name in [
                    "kexec_load",
                    "init_module",
                    "bpf",
                    "keyctl",
                    "open_by_handle_at",
                    "mount",
                    "unshare",
                    "personality",
                ] {
                    assert!(denied.iter().any(|d| d == name), "{name} is not denied");
                }
                assert!(!denied.iter().any(|d| d == "read"));
            },
        },
        Case {
            name: "seccomp RuntimeDefault with SYS_ADMIN allows mount",
            target: C,
            setup: |i| {
                i.sc().seccomp = profile(ProfileType::RuntimeDefault, "");
                i.sc().capabilities = Some(cri_api::v1::Capability {
                    add_capabilities: strings(&["SYS_ADMIN", "SYS_TIME"]),
                    ..Default::default()
                });
            },
            check: |_, r| {
                let denied = denied_syscalls(&ok(r));
                for allowed in ["mount", "umount2", "unshare", "settimeofday"] {
                    assert!(!denied.iter().any(|d| d == allowed), "{allowed} is denied");
                }
                assert!(denied.iter().any(|d| d == "kexec_load"));
            },
        },
        Case {
            name: "seccomp Unconfined, and no profile at all",
            target: C,
            setup: |i| i.sc().seccomp = profile(ProfileType::Unconfined, ""),
            check: |_, r| assert_eq!(linux(&ok(r)).seccomp(), &None),
        },
        Case {
            name: "seccomp Localhost: an OCI profile file",
            target: C,
            setup: |i| {
                let path = i.write(
                    "profiles/oci.json",
                    r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,"architectures":["SCMP_ARCH_X86_64"],
                        "syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"}]}"#,
                );
                i.sc().seccomp = profile(ProfileType::Localhost, path.to_str().unwrap());
            },
            check: |_, r| {
                let spec = ok(r);
                let seccomp = linux(&spec).seccomp().clone().unwrap();
                assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno);
                assert_eq!(seccomp.default_errno_ret(), Some(1));
                assert_eq!(denied_syscalls(&spec), ["read", "write"]);
            },
        },
        Case {
            name: "seccomp Localhost: a Docker-format profile",
            target: C,
            setup: |i| {
                let path = i.write(
                    "profiles/docker.json",
                    r#"{"defaultAction":"SCMP_ACT_ERRNO",
                        "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86","SCMP_ARCH_X32"]},
                                   {"architecture":"SCMP_ARCH_AARCH64","subArchitectures":["SCMP_ARCH_ARM"]}],
                        "syscalls":[{"name":"read","action":"SCMP_ACT_ALLOW","comment":"always"},
                                    {"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}},
                                    {"names":["chown"],"action":"SCMP_ACT_ALLOW","excludes":{"caps":["CAP_SYS_ADMIN"]}}]}"#,
                );
                i.sc().seccomp = profile(ProfileType::Localhost, path.to_str().unwrap());
            },
            check: |_, r| {
                let spec = ok(r);
                assert_eq!(denied_syscalls(&spec), ["read", "chown"]);
                let arches = linux(&spec)
                    .seccomp()
                    .as_ref()
                    .unwrap()
                    .architectures()
                    .clone()
                    .unwrap();
                assert_eq!(arches, cri_oci::spec::host_architectures());
            },
        },
        Case {
            name: "seccomp Localhost: a missing file names localhost_ref",
            target: C,
            setup: |i| {
                i.sc().seccomp = profile(ProfileType::Localhost, "/nonexistent/profile.json")
            },
            check: |_, r| invalid(r, "linux.security_context.seccomp.localhost_ref"),
        },
        Case {
            name: "seccomp Localhost: a file that is not a profile",
            target: C,
            setup: |i| {
                let path = i.write("profiles/bad.json", r#"{"defaultAction": 7}"#);
                i.sc().seccomp = profile(ProfileType::Localhost, path.to_str().unwrap());
            },
            check: |_, r| invalid(r, "linux.security_context.seccomp.localhost_ref"),
        },
        Case {
            name: "deprecated seccomp_profile_path docker/default",
            target: C,
            setup: |i| {
                #[allow(deprecated)]
                {
                    i.sc().seccomp_profile_path = "docker/default".into();
                }
            },
            check: |_, r| assert!(denied_syscalls(&ok(r)).iter().any(|d| d == "kexec_load")),
        },
        Case {
            name: "deprecated seccomp_profile_path localhost/<path>",
            target: C,
            setup: |i| {
                let path = i.write("profiles/p.json", r#"{"defaultAction":"SCMP_ACT_LOG"}"#);
                #[allow(deprecated)]
                {
                    i.sc().seccomp_profile_path = format!("localhost/{}", path.display());
                }
            },
            check: |_, r| {
                let spec = ok(r);
                assert_eq!(
                    linux(&spec).seccomp().as_ref().unwrap().default_action(),
                    LinuxSeccompAction::ScmpActLog
                )
            },
        },
        Case {
            name: "deprecated seccomp_profile_path with an unknown form",
            target: C,
            setup: |i| {
                #[allow(deprecated)]
                {
                    i.sc().seccomp_profile_path = "bogus".into();
                }
            },
            check: |_, r| invalid(r, "linux.security_context.seccomp_profile_path"),
        },
        Case {
            name: "seccomp asked for on a host without seccomp",
            target: C,
            setup: |i| {
                i.host.seccomp_enabled = false;
                i.sc().seccomp = profile(ProfileType::RuntimeDefault, "");
            },
            check: |_, r| unsupported(r, "seccomp"),
        },
        Case {
            name: "AppArmor RuntimeDefault when enabled",
            target: C,
            setup: |i| {
                i.host.apparmor_enabled = true;
                i.sc().apparmor = profile(ProfileType::RuntimeDefault, "");
            },
            check: |_, r| {
                assert_eq!(
                    ok(r)
                        .process()
                        .as_ref()
                        .unwrap()
                        .apparmor_profile()
                        .as_deref(),
                    Some("cri-rs-default")
                )
            },
        },
        Case {
            name: "AppArmor Localhost when enabled",
            target: C,
            setup: |i| {
                i.host.apparmor_enabled = true;
                i.sc().apparmor = profile(ProfileType::Localhost, "localhost/my-profile");
            },
            check: |_, r| {
                assert_eq!(
                    ok(r)
                        .process()
                        .as_ref()
                        .unwrap()
                        .apparmor_profile()
                        .as_deref(),
                    Some("my-profile")
                )
            },
        },
        Case {
            name: "AppArmor is ignored when disabled",
            target: C,
            setup: |i| i.sc().apparmor = profile(ProfileType::Localhost, "my-profile"),
            check: |_, r| assert_eq!(ok(r).process().as_ref().unwrap().apparmor_profile(), &None),
        },
        Case {
            name: "SELinux labels when enabled",
            target: C,
            setup: |i| {
                i.host.selinux_enabled = true;
                i.sc().selinux_options = Some(SeLinuxOption {
                    user: "system_u".into(),
                    role: "system_r".into(),
                    r#type: "spc_t".into(),
                    level: "s0:c1,c2".into(),
                });
            },
            check: |_, r| {
                let spec = ok(r);
                assert_eq!(
                    spec.process().as_ref().unwrap().selinux_label().as_deref(),
                    Some("system_u:system_r:spc_t:s0:c1,c2")
                );
                assert_eq!(
                    linux(&spec).mount_label().as_deref(),
                    Some("system_u:object_r:container_file_t:s0:c1,c2")
                );
            },
        },
        Case {
            name: "SELinux options are ignored when disabled",
            target: C,
            setup: |i| {
                i.sc().selinux_options = Some(SeLinuxOption {
                    level: "s0:c1".into(),
                    ..Default::default()
                })
            },
            check: |_, r| assert_eq!(ok(r).process().as_ref().unwrap().selinux_label(), &None),
        },
        // ---- sysctls ------------------------------------------------------------------
        Case {
            name: "namespaced sysctls pass through to the sandbox",
            target: S,
            setup: |i| {
                let sysctls = &mut i.sandbox_linux().sysctls;
                sysctls.insert("net.ipv4.ip_unprivileged_port_start".into(), "0".into());
                sysctls.insert("kernel.shm_rmid_forced".into(), "1".into());
            },
            check: |_, r| {
                let spec = ok(r);
                let sysctl = linux(&spec).sysctl().clone().unwrap();
                assert_eq!(sysctl["net.ipv4.ip_unprivileged_port_start"], "0");
                assert_eq!(sysctl.len(), 2);
            },
        },
        Case {
            name: "net sysctls with host network are refused",
            target: S,
            setup: |i| {
                i.namespaces(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    ..Default::default()
                });
                i.sandbox_linux()
                    .sysctls
                    .insert("net.core.somaxconn".into(), "1024".into());
            },
            check: |_, r| invalid(r, "linux.sysctls[\"net.core.somaxconn\"]"),
        },
        Case {
            name: "IPC sysctls with host IPC are refused",
            target: S,
            setup: |i| {
                i.namespaces(NamespaceOption {
                    ipc: NamespaceMode::Node as i32,
                    ..Default::default()
                });
                i.sandbox_linux()
                    .sysctls
                    .insert("kernel.shmmax".into(), "1".into());
            },
            check: |_, r| invalid(r, "linux.sysctls[\"kernel.shmmax\"]"),
        },
        Case {
            name: "node-wide sysctls are refused",
            target: S,
            setup: |i| {
                i.sandbox_linux()
                    .sysctls
                    .insert("kernel.panic".into(), "1".into());
            },
            check: |_, r| invalid(r, "linux.sysctls[\"kernel.panic\"]"),
        },
        // ---- devices ------------------------------------------------------------------
        Case {
            name: "a host device becomes a device node and a cgroup rule",
            target: C,
            setup: |i| {
                i.container.devices = vec![Device {
                    container_path: "/dev/mynull".into(),
                    host_path: "/dev/null".into(),
                    permissions: "rw".into(),
                }]
            },
            check: |_, r| {
                let spec = ok(r);
                let devices = linux(&spec).devices().clone().unwrap();
                assert_eq!(devices.len(), 1);
                assert_eq!(devices[0].path(), Path::new("/dev/mynull"));
                assert_eq!(
                    (devices[0].typ(), devices[0].major(), devices[0].minor()),
                    (LinuxDeviceType::C, 1, 3)
                );
                let rules = linux(&spec)
                    .resources()
                    .as_ref()
                    .unwrap()
                    .devices()
                    .clone()
                    .unwrap();
                assert!(!rules[0].allow(), "deny everything first");
                assert_eq!(rules[1].access().as_deref(), Some("rw"));
                assert_eq!((rules[1].major(), rules[1].minor()), (Some(1), Some(3)));
            },
        },
        Case {
            name: "device permissions must be r, w and m",
            target: C,
            setup: |i| {
                i.container.devices = vec![Device {
                    container_path: "/dev/x".into(),
                    host_path: "/dev/null".into(),
                    permissions: "rwx".into(),
                }]
            },
            check: |_, r| invalid(r, "devices[0].permissions"),
        },
        Case {
            name: "a host path that is not a device",
            target: C,
            setup: |i| {
                let path = i.write("notadevice", "");
                i.container.devices = vec![Device {
                    container_path: "/dev/x".into(),
                    host_path: path.display().to_string(),
                    permissions: "r".into(),
                }]
            },
            check: |_, r| invalid(r, "devices[0].host_path"),
        },
        Case {
            name: "CDI device: env, device nodes, mounts, hooks, GIDs",
            target: C,
            setup: |i| {
                i.write("cdi/vendor.json", CDI_SPEC);
                i.container.cdi_devices = vec![CdiDevice {
                    name: "vendor.com/gpu=0".into(),
                }];
            },
            check: |_, r| {
                let spec = ok(r);
                assert_eq!(env_var(&spec, "GPU").as_deref(), Some("0"));
                assert_eq!(env_var(&spec, "VENDOR_SPEC").as_deref(), Some("1"));
                let gpu = linux(&spec)
                    .devices()
                    .iter()
                    .flatten()
                    .find(|d| d.path() == Path::new("/dev/gpu0"))
                    .unwrap();
                assert_eq!((gpu.major(), gpu.minor()), (195, 0));
                assert!(options(&spec, "/usr/lib/vendor").contains(&"ro".to_string()));
                let hooks = spec
                    .hooks()
                    .as_ref()
                    .unwrap()
                    .create_container()
                    .clone()
                    .unwrap();
                assert_eq!(hooks[0].path(), Path::new("/usr/bin/vendor-hook"));
                assert!(user(&spec).2.contains(&4444));
            },
        },
        Case {
            name: "CDI device through the annotation form, node completed from the host",
            target: C,
            setup: |i| {
                i.write("cdi/vendor.json", CDI_SPEC);
                i.container
                    .annotations
                    .insert("cdi.k8s.io/vendor".into(), "vendor.com/gpu=null".into());
            },
            check: |_, r| {
                let spec = ok(r);
                let dev = linux(&spec)
                    .devices()
                    .iter()
                    .flatten()
                    .find(|d| d.path() == Path::new("/dev/vendor-null"))
                    .unwrap();
                assert_eq!((dev.major(), dev.minor()), (1, 3));
                assert_eq!(env_var(&spec, "GPU"), None);
            },
        },
        Case {
            name: "an unknown CDI device",
            target: C,
            setup: |i| {
                i.write("cdi/vendor.json", CDI_SPEC);
                i.container.cdi_devices = vec![CdiDevice {
                    name: "vendor.com/gpu=7".into(),
                }];
            },
            check: |_, r| invalid(r, "cdi_devices[0].name"),
        },
        Case {
            name: "CDI device from a YAML spec",
            target: C,
            setup: |i| {
                i.write("cdi/other.yaml", CDI_YAML_SPEC);
                i.container.cdi_devices = vec![CdiDevice {
                    name: "other.com/dev=a".into(),
                }];
            },
            check: |_, r| {
                let spec = ok(r);
                assert_eq!(env_var(&spec, "FROM_YAML").as_deref(), Some("yes"));
                let dev = linux(&spec)
                    .devices()
                    .iter()
                    .flatten()
                    .find(|d| d.path() == Path::new("/dev/other-a"))
                    .unwrap();
                assert_eq!((dev.major(), dev.minor()), (240, 1));
            },
        },
        Case {
            name: "a CDI spec that does not parse is named when its device is missing",
            target: C,
            setup: |i| {
                i.write("cdi/broken.yaml", "cdiVersion: [\n");
                i.container.cdi_devices = vec![CdiDevice {
                    name: "other.com/dev=a".into(),
                }];
            },
            check: |_, r| match r {
                Err(Error::InvalidArgument { field, reason }) => {
                    assert_eq!(field, "cdi_devices[0].name");
                    assert!(reason.contains("broken.yaml"), "{reason}");
                }
                other => panic!("expected an invalid cdi_devices[0].name, got {other:?}"),
            },
        },
        // ---- resources ----------------------------------------------------------------
        Case {
            name: "CPU, memory, hugepages and unified",
            target: C,
            setup: |i| {
                let r = i.resources();
                r.cpu_shares = 512;
                r.cpu_quota = 50_000;
                r.cpu_period = 100_000;
                r.cpuset_cpus = "0-1".into();
                r.cpuset_mems = "0".into();
                r.memory_limit_in_bytes = 1 << 30;
                r.memory_swap_limit_in_bytes = 2 << 30;
                r.hugepage_limits = vec![HugepageLimit {
                    page_size: "2MB".into(),
                    limit: 1 << 21,
                }];
                r.unified.insert("pids.max".into(), "100".into());
            },
            check: |_, r| {
                let spec = ok(r);
                let res = linux(&spec).resources().clone().unwrap();
                let cpu = res.cpu().clone().unwrap();
                assert_eq!(
                    (cpu.shares(), cpu.quota(), cpu.period()),
                    (Some(512), Some(50_000), Some(100_000))
                );
                assert_eq!(
                    (cpu.cpus().as_deref(), cpu.mems().as_deref()),
                    (Some("0-1"), Some("0"))
                );
                let memory = res.memory().unwrap();
                assert_eq!(
                    (memory.limit(), memory.swap()),
                    (Some(1 << 30), Some(2 << 30))
                );
                assert_eq!(res.hugepage_limits().clone().unwrap()[0].page_size(), "2MB");
                assert_eq!(res.unified().clone().unwrap()["pids.max"], "100");
            },
        },
        Case {
            name: "a negative CPU quota",
            target: C,
            setup: |i| i.resources().cpu_quota = -5,
            check: |_, r| invalid(r, "linux.resources.cpu_quota"),
        },
        Case {
            name: "the kubelet's zero hugepage limits are kept where hugetlb exists",
            target: C,
            setup: |i| i.resources().hugepage_limits = kubelet_hugepages(0),
            check: |_, r| {
                let spec = ok(r);
                let limits = linux(&spec)
                    .resources()
                    .as_ref()
                    .unwrap()
                    .hugepage_limits()
                    .clone()
                    .unwrap();
                assert_eq!(limits.len(), 2);
                assert!(limits.iter().all(|l| l.limit() == 0));
            },
        },
        Case {
            name: "the kubelet's zero hugepage limits are dropped without hugetlb",
            target: C,
            setup: |i| {
                i.host.hugetlb_supported = false;
                i.resources().hugepage_limits = kubelet_hugepages(0);
            },
            check: |_, r| {
                let spec = ok(r);
                let resources = linux(&spec).resources().clone().unwrap();
                assert_eq!(resources.hugepage_limits(), &None);
            },
        },
        Case {
            name: "a non-zero hugepage limit without hugetlb is refused",
            target: C,
            setup: |i| {
                i.host.hugetlb_supported = false;
                i.resources().hugepage_limits = kubelet_hugepages(4 << 20);
            },
            check: |_, r| {
                unsupported(
                    r,
                    "hugepage_limits[0]: a limit of 4194304 bytes of 2MB pages cannot be enforced",
                )
            },
        },
        Case {
            name: "a bad huge page size is refused even without hugetlb",
            target: C,
            setup: |i| {
                i.host.hugetlb_supported = false;
                i.resources().hugepage_limits = vec![HugepageLimit {
                    page_size: "2M".into(),
                    limit: 0,
                }]
            },
            check: |_, r| invalid(r, "linux.resources.hugepage_limits[0].page_size"),
        },
        Case {
            name: "a bad huge page size",
            target: C,
            setup: |i| {
                i.resources().hugepage_limits = vec![HugepageLimit {
                    page_size: "3MB".into(),
                    limit: 1,
                }]
            },
            check: |_, r| invalid(r, "linux.resources.hugepage_limits[0].page_size"),
        },
        Case {
            name: "swap below the memory limit",
            target: C,
            setup: |i| {
                i.resources().memory_limit_in_bytes = 2 << 20;
                i.resources().memory_swap_limit_in_bytes = 1 << 20;
            },
            check: |_, r| invalid(r, "linux.resources.memory_swap_limit_in_bytes"),
        },
        Case {
            name: "a bad cpuset",
            target: C,
            setup: |i| i.resources().cpuset_cpus = "3-1".into(),
            check: |_, r| invalid(r, "linux.resources.cpuset_cpus"),
        },
        Case {
            name: "oom_score_adj is passed on",
            target: C,
            setup: |i| i.resources().oom_score_adj = -500,
            check: |_, r| {
                assert_eq!(
                    ok(r).process().as_ref().unwrap().oom_score_adj(),
                    Some(-500)
                )
            },
        },
        Case {
            name: "oom_score_adj is clamped on a restricted host",
            target: C,
            setup: |i| {
                i.host.restrict_oom_score_adj = true;
                i.host.min_oom_score_adj = 100;
                i.resources().oom_score_adj = -500;
            },
            check: |_, r| assert_eq!(ok(r).process().as_ref().unwrap().oom_score_adj(), Some(100)),
        },
        Case {
            name: "oom_score_adj out of range",
            target: C,
            setup: |i| i.resources().oom_score_adj = 1001,
            check: |_, r| invalid(r, "linux.resources.oom_score_adj"),
        },
        Case {
            name: "cgroups path under the sandbox's parent",
            target: C,
            setup: |i| i.sandbox_linux().cgroup_parent = "/kubepods/burstable/pod-uid-1".into(),
            check: |_, r| {
                assert_eq!(
                    linux(&ok(r)).cgroups_path().as_deref(),
                    Some(Path::new("/kubepods/burstable/pod-uid-1/ctr1"))
                )
            },
        },
        Case {
            name: "cgroups path under the host's parent",
            target: S,
            setup: |_| {},
            check: |_, r| {
                assert_eq!(
                    linux(&ok(r)).cgroups_path().as_deref(),
                    Some(Path::new("/cri-rs/sb1"))
                )
            },
        },
        Case {
            name: "cgroups path for a systemd slice",
            target: C,
            setup: |i| i.sandbox_linux().cgroup_parent = "kubepods-besteffort-poduid.slice".into(),
            check: |_, r| {
                assert_eq!(
                    linux(&ok(r)).cgroups_path().as_deref(),
                    Some(Path::new("kubepods-besteffort-poduid.slice:cri-rs:ctr1"))
                )
            },
        },
        // ---- annotations --------------------------------------------------------------
        Case {
            name: "container annotations pass through; ours cannot be spoofed",
            target: C,
            setup: |i| {
                i.container
                    .annotations
                    .insert("example.com/a".into(), "1".into());
                i.container
                    .annotations
                    .insert("io.kubernetes.cri.sandbox-id".into(), "forged".into());
            },
            check: |_, r| {
                let spec = ok(r);
                let a = spec.annotations().clone().unwrap();
                assert_eq!(a["example.com/a"], "1");
                assert_eq!(a["io.kubernetes.cri.container-type"], "container");
                assert_eq!(a["io.kubernetes.cri.sandbox-id"], "sb1");
                assert_eq!(a["io.kubernetes.cri.sandbox-name"], "web");
                assert_eq!(a["io.kubernetes.cri.sandbox-namespace"], "prod");
                assert_eq!(a["io.kubernetes.cri.sandbox-uid"], "uid-1");
                assert_eq!(a["io.kubernetes.cri.container-name"], "app");
                assert_eq!(a["io.kubernetes.cri.image-name"], "docker.io/library/app:1");
            },
        },
        Case {
            name: "sandbox annotations",
            target: S,
            setup: |i| {
                i.sandbox
                    .annotations
                    .insert("example.com/pod".into(), "x".into());
            },
            check: |_, r| {
                let spec = ok(r);
                let a = spec.annotations().clone().unwrap();
                assert_eq!(a["example.com/pod"], "x");
                assert_eq!(a["io.kubernetes.cri.container-type"], "sandbox");
                assert_eq!(a["io.kubernetes.cri.sandbox-id"], "sb1");
                assert_eq!(
                    a["io.kubernetes.cri.sandbox-log-directory"],
                    "/var/log/pods/web"
                );
            },
        },
        // ---- the sandbox process --------------------------------------------------------
        Case {
            name: "sandbox: the pause process, confined and read-only",
            target: S,
            setup: |i| {
                i.entrypoint = strings(&["/pause"]);
                i.cmd.clear();
                i.image_user = "65535:65535".into();
                i.sandbox_sc().seccomp = profile(ProfileType::RuntimeDefault, "");
            },
            check: |_, r| {
                let spec = ok(r);
                let p = spec.process().as_ref().unwrap();
                assert_eq!(args(&spec), ["/pause"]);
                assert_eq!(user(&spec), (65535, 65535, vec![65535]));
                assert_eq!(p.no_new_privileges(), Some(true));
                assert_eq!(p.oom_score_adj(), Some(-998));
                assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
                assert_eq!(
                    linux(&spec)
                        .resources()
                        .as_ref()
                        .unwrap()
                        .cpu()
                        .as_ref()
                        .unwrap()
                        .shares(),
                    Some(2)
                );
                assert!(linux(&spec).seccomp().is_some());
            },
        },
        Case {
            name: "sandbox: run_as_user and run_as_group",
            target: S,
            setup: |i| {
                i.sandbox_sc().run_as_user = Some(Int64Value { value: 1000 });
                i.sandbox_sc().run_as_group = Some(Int64Value { value: 2000 });
            },
            check: |_, r| assert_eq!(user(&ok(r)), (1000, 2000, vec![2000, 44, 29])),
        },
        Case {
            name: "sandbox: an image without a command",
            target: S,
            setup: |i| {
                i.entrypoint.clear();
                i.cmd.clear();
            },
            check: |_, r| invalid(r, "image"),
        },
    ]
}

#[test]
fn table() {
    let cases = cases();
    let mut failures = Vec::new();
    for case in &cases {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut input = Input::new();
            (case.setup)(&mut input);
            let result = input.run(case.target);
            (case.check)(&input, result);
        }));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{} ({:?}): {message}", case.name, case.target));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert!(cases.len() >= 50);
}

/// The serialized spec has the shape `runc spec` writes and runc reads.
#[test]
fn json_has_the_runc_shape() {
    let mut input = Input::new();
    input.image_user = "app".into();
    input.sc().seccomp = profile(ProfileType::RuntimeDefault, "");
    let spec = container_spec_of(&input);
    let json = serde_json::to_value(&spec).unwrap();

    assert_eq!(json["ociVersion"], "1.1.0");
    assert_eq!(json["root"]["path"], input.rootfs.display().to_string());
    assert_eq!(json["process"]["user"]["uid"], 1000);
    assert_eq!(
        json["process"]["user"]["additionalGids"],
        serde_json::json!([1000, 44, 29])
    );
    assert_eq!(json["process"]["cwd"], "/");
    assert!(
        json["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .contains(&"CAP_CHOWN".into())
    );
    assert_eq!(json["process"]["noNewPrivileges"], false);
    assert_eq!(json["mounts"][0]["destination"], "/proc");
    assert_eq!(json["mounts"][0]["type"], "proc");
    let types: Vec<&str> = json["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["mount", "network", "uts", "ipc", "pid", "cgroup"]);
    assert_eq!(json["linux"]["namespaces"][1]["path"], "/proc/42/ns/net");
    assert_eq!(json["linux"]["cgroupsPath"], "/cri-rs/ctr1");
    assert_eq!(
        json["linux"]["resources"]["devices"][0],
        serde_json::json!({"allow": false, "access": "rwm"})
    );
    assert_eq!(json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
    let arches = json["linux"]["seccomp"]["architectures"]
        .as_array()
        .unwrap();
    assert!(arches[0].as_str().unwrap().starts_with("SCMP_ARCH_"));
    let personality = json["linux"]["seccomp"]["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["names"][0] == "personality")
        .unwrap();
    assert_eq!(personality["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
    assert_eq!(personality["errnoRet"], 1);
    // No defaults of the oci-spec crate leak through.
    assert!(json.get("hostname").is_none());
    assert!(json["process"].get("rlimits").is_none());

    // And it reads back as the same spec.
    let back: Spec = serde_json::from_value(json).unwrap();
    assert_eq!(back, spec);
}

fn container_spec_of(input: &Input) -> Spec {
    input.run(Target::Container).unwrap()
}

#[test]
fn exec_process_keeps_the_confinement() {
    let mut input = Input::new();
    input.image_user = "app".into();
    input.sc().no_new_privs = true;
    let spec = container_spec_of(&input);
    let process = process_for_exec(&spec, &strings(&["sh", "-c", "id"]), true).unwrap();
    assert_eq!(process.args().clone().unwrap(), ["sh", "-c", "id"]);
    assert_eq!(process.terminal(), Some(true));
    assert_eq!(process.user().uid(), 1000);
    assert_eq!(process.no_new_privileges(), Some(true));
    assert!(
        process
            .env()
            .as_ref()
            .unwrap()
            .contains(&"TERM=xterm".to_string())
    );
    assert_eq!(
        process.capabilities(),
        spec.process().as_ref().unwrap().capabilities()
    );

    let err = process_for_exec(&spec, &[], false).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { ref field, .. } if field == "cmd"),
        "{err:?}"
    );
}

#[test]
fn resolve_user_is_public_for_exec() {
    let input = Input::new();
    let sc = LinuxContainerSecurityContext {
        run_as_username: "svc".into(),
        ..Default::default()
    };
    let user = cri_oci::spec::resolve_user(&input.rootfs, "", Some(&sc)).unwrap();
    assert_eq!(
        (user.uid, user.gid, user.username.as_deref()),
        (1001, 1001, Some("svc"))
    );
    assert_eq!(user.additional_gids, [1001, 44, 50]);
    assert_eq!(user.home.as_deref(), Some("/srv"));

    let none = cri_oci::spec::resolve_user(&input.rootfs, "nohome", None).unwrap();
    assert_eq!(none.home, None);
}
