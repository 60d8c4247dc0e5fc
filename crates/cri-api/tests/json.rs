//! proto3 JSON mapping: crictl's shapes, snake_case input, round trips.
#![cfg(feature = "serde")]

use std::collections::HashMap;

use cri_api::v1::*;
use serde_json::json;

fn pod_config() -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "nginx-sandbox".into(),
            uid: "hdishd83djaidwnduwk28bcsb".into(),
            namespace: "default".into(),
            attempt: 1,
        }),
        hostname: "nginx".into(),
        log_directory: "/var/log/pods/default_nginx_hdishd83djaidwnduwk28bcsb".into(),
        dns_config: Some(DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["default.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        port_mappings: vec![PortMapping {
            protocol: Protocol::Tcp as i32,
            container_port: 80,
            host_port: 8080,
            host_ip: "127.0.0.1".into(),
        }],
        labels: HashMap::from([("app".into(), "nginx".into())]),
        annotations: HashMap::from([("kubernetes.io/config.source".into(), "api".into())]),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: "/kubepods/besteffort/podhdishd83".into(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    pid: NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                run_as_user: Some(Int64Value { value: 65534 }),
                ..Default::default()
            }),
            sysctls: HashMap::from([("net.ipv4.ip_forward".into(), "1".into())]),
            ..Default::default()
        }),
        windows: None,
    }
}

fn container_status() -> ContainerStatus {
    ContainerStatus {
        id: "3b6a5f1c0d9e".into(),
        metadata: Some(ContainerMetadata {
            name: "app".into(),
            attempt: 2,
        }),
        state: ContainerState::ContainerExited as i32,
        created_at: 1_732_847_000_123_456_789,
        started_at: 1_732_847_001_000_000_000,
        finished_at: 1_732_847_099_000_000_000,
        exit_code: 137,
        image: Some(ImageSpec {
            image: "docker.io/library/busybox:1.36".into(),
            ..Default::default()
        }),
        image_ref: "sha256:9b1c9a1e4b".into(),
        reason: "OOMKilled".into(),
        labels: HashMap::from([("io.kubernetes.container.name".into(), "app".into())]),
        mounts: vec![Mount {
            container_path: "/data".into(),
            host_path: "/var/lib/data".into(),
            readonly: true,
            propagation: MountPropagation::PropagationHostToContainer as i32,
            ..Default::default()
        }],
        log_path: "app/2.log".into(),
        ..Default::default()
    }
}

#[test]
fn container_status_uses_crictl_shape() {
    let value = serde_json::to_value(container_status()).unwrap();
    assert_eq!(value["id"], "3b6a5f1c0d9e");
    assert_eq!(value["state"], "CONTAINER_EXITED");
    assert_eq!(value["createdAt"], "1732847000123456789", "int64 as string");
    assert_eq!(value["exitCode"], 137, "int32 as number");
    assert_eq!(value["imageRef"], "sha256:9b1c9a1e4b");
    assert_eq!(value["metadata"], json!({"name": "app", "attempt": 2}));
    assert_eq!(value["mounts"][0]["containerPath"], "/data");
    assert_eq!(
        value["mounts"][0]["propagation"],
        "PROPAGATION_HOST_TO_CONTAINER"
    );
    assert_eq!(value["labels"]["io.kubernetes.container.name"], "app");
    assert!(value.get("message").is_none(), "defaults are omitted");
}

#[test]
fn round_trips_preserve_every_field() {
    let pod = pod_config();
    let text = serde_json::to_string(&pod).unwrap();
    assert_eq!(
        serde_json::from_str::<PodSandboxConfig>(&text).unwrap(),
        pod
    );

    let status = container_status();
    let text = serde_json::to_string_pretty(&status).unwrap();
    assert_eq!(
        serde_json::from_str::<ContainerStatus>(&text).unwrap(),
        status
    );

    let response = ListContainersResponse {
        containers: vec![Container {
            id: "c1".into(),
            pod_sandbox_id: "p1".into(),
            state: ContainerState::ContainerRunning as i32,
            created_at: i64::MAX,
            ..Default::default()
        }],
    };
    let text = serde_json::to_string(&response).unwrap();
    assert!(text.contains("\"9223372036854775807\""), "{text}");
    assert_eq!(
        serde_json::from_str::<ListContainersResponse>(&text).unwrap(),
        response
    );
}

#[test]
fn crictl_style_snake_case_pod_config_parses() {
    // The shape of a crictl `runp` config file.
    let text = r#"{
        "metadata": {"name": "nginx-sandbox", "namespace": "default", "attempt": 1,
                     "uid": "hdishd83djaidwnduwk28bcsb"},
        "log_directory": "/tmp",
        "dns_config": {"servers": ["10.96.0.10"]},
        "port_mappings": [{"protocol": "TCP", "container_port": 80, "host_port": 8080}],
        "linux": {"security_context": {"namespace_options": {"network": 2}}}
    }"#;
    let pod: PodSandboxConfig = serde_json::from_str(text).unwrap();
    assert_eq!(
        pod.metadata.as_ref().unwrap().uid,
        "hdishd83djaidwnduwk28bcsb"
    );
    assert_eq!(pod.log_directory, "/tmp");
    assert_eq!(pod.port_mappings[0].container_port, 80);
    assert_eq!(pod.port_mappings[0].protocol(), Protocol::Tcp);
    let ns = pod
        .linux
        .unwrap()
        .security_context
        .unwrap()
        .namespace_options
        .unwrap();
    assert_eq!(ns.network(), NamespaceMode::Node, "enum numbers parse too");
}

#[test]
fn crictl_style_container_config_parses() {
    let text = r#"{
        "metadata": {"name": "busybox"},
        "image": {"image": "busybox"},
        "command": ["top"],
        "envs": [{"key": "GREETING", "value": "hello"}],
        "log_path": "busybox.0.log",
        "linux": {"resources": {"memory_limit_in_bytes": "67108864", "cpu_shares": 512}}
    }"#;
    let config: ContainerConfig = serde_json::from_str(text).unwrap();
    assert_eq!(config.command, ["top"]);
    assert_eq!(config.envs[0].value, b"hello");
    let resources = config.linux.unwrap().resources.unwrap();
    assert_eq!(
        resources.memory_limit_in_bytes,
        64 << 20,
        "int64 from a string"
    );
    assert_eq!(resources.cpu_shares, 512, "int64 from a number");
}

#[test]
fn key_value_value_is_a_plain_string() {
    let options = KeyValue {
        key: "runtime.v1.checkpoint.compress".into(),
        value: b"zstd".to_vec(),
    };
    let value = serde_json::to_value(&options).unwrap();
    assert_eq!(
        value,
        json!({"key": "runtime.v1.checkpoint.compress", "value": "zstd"})
    );
    assert_eq!(serde_json::from_value::<KeyValue>(value).unwrap(), options);
    assert_eq!(
        serde_json::to_value(KeyValue::default()).unwrap(),
        json!({})
    );
    assert!(serde_json::from_str::<KeyValue>(r#"{"key":"a","bogus":1}"#).is_err());
    assert!(serde_json::from_str::<KeyValue>(r#"{"key":"a","key":"b"}"#).is_err());
}

#[test]
fn other_bytes_fields_are_base64() {
    let out = ExecSyncResponse {
        stdout: b"hello\n".to_vec(),
        stderr: vec![0xff, 0x00],
        exit_code: 0,
    };
    let value = serde_json::to_value(&out).unwrap();
    assert_eq!(value["stdout"], "aGVsbG8K");
    assert_eq!(
        serde_json::from_value::<ExecSyncResponse>(value).unwrap(),
        out
    );
}

#[test]
fn secrets_survive_json_untouched() {
    // JSON is an explicit serialisation, not a log: it must not lose the credentials.
    let auth = AuthConfig {
        username: "u".into(),
        password: "p".into(),
        ..Default::default()
    };
    let back: AuthConfig = serde_json::from_value(serde_json::to_value(&auth).unwrap()).unwrap();
    assert_eq!(back.password, "p");
}

#[test]
fn defaults_are_emitted_when_asked() {
    let value = cri_api::json::to_value_with_defaults(&container_status()).unwrap();
    assert_eq!(value["message"], "");
    assert_eq!(
        value["resources"],
        serde_json::Value::Null,
        "unset message is null"
    );
    assert_eq!(value["annotations"], json!({}), "map");
    assert_eq!(value["state"], "CONTAINER_EXITED", "set values untouched");
    // Nested messages are filled too.
    assert_eq!(value["image"]["annotations"], json!({}));
    assert_eq!(value["image"]["userSpecifiedImage"], "");
    assert_eq!(value["mounts"][0]["selinuxRelabel"], false);
    assert_eq!(value["mounts"][0]["mountOptions"], json!([]));

    let value = cri_api::json::to_value_with_defaults(&Container::default()).unwrap();
    assert_eq!(value["state"], "CONTAINER_CREATED", "enum zero by name");
    assert_eq!(value["createdAt"], "0", "int64 zero as string");
    // The filled form still parses back to the same message.
    assert_eq!(
        serde_json::from_value::<Container>(value).unwrap(),
        Container::default()
    );

    let pod = PodSandboxStatusResponse {
        status: Some(PodSandboxStatus::default()),
        ..Default::default()
    };
    let value = cri_api::json::to_value_with_defaults(&pod).unwrap();
    assert_eq!(value["status"]["network"], serde_json::Value::Null);
    assert_eq!(value["info"], json!({}));
    assert_eq!(value["containersStatuses"], json!([]));
}

#[test]
fn unknown_fields_are_rejected_with_their_name() {
    let err = serde_json::from_str::<VersionRequest>(r#"{"versoin": "v1"}"#).unwrap_err();
    assert!(err.to_string().contains("versoin"), "{err}");
}
