//! The embedded descriptor set describes the whole `runtime.v1` API.

use prost::Message;
use prost_types::FileDescriptorSet;

fn file() -> prost_types::FileDescriptorProto {
    let set = FileDescriptorSet::decode(cri_api::v1::FILE_DESCRIPTOR_SET).expect("decodes");
    assert_eq!(set.file.len(), 1, "one file, no imports");
    set.file.into_iter().next().unwrap()
}

#[test]
fn counts_match_kubernetes_1_37() {
    let file = file();
    assert_eq!(file.package(), "runtime.v1");
    assert_eq!(file.message_type.len(), 175);
    assert_eq!(file.enum_type.len(), 10);
    let services: Vec<_> = file
        .service
        .iter()
        .map(|s| (s.name(), s.method.len()))
        .collect();
    assert_eq!(services, vec![("RuntimeService", 37), ("ImageService", 6)]);
    assert!(file.source_code_info.is_none(), "source info is stripped");
}

#[test]
fn server_streaming_rpcs_are_exactly_the_seven_upstream_ones() {
    let file = file();
    let mut streaming: Vec<_> = file
        .service
        .iter()
        .flat_map(|s| s.method.iter())
        .filter(|m| m.server_streaming())
        .map(|m| m.name().to_string())
        .collect();
    streaming.sort();
    assert_eq!(
        streaming,
        [
            "GetContainerEvents",
            "StreamContainerStats",
            "StreamContainers",
            "StreamImages",
            "StreamPodSandboxMetrics",
            "StreamPodSandboxStats",
            "StreamPodSandboxes",
        ]
    );
    assert!(
        file.service
            .iter()
            .flat_map(|s| s.method.iter())
            .all(|m| !m.client_streaming())
    );
}

#[test]
fn auth_config_secrets_carry_debug_redact() {
    // prost-types does not model `debug_redact`; read the descriptor set reflectively to prove
    // the option survived encoding.
    let pool = prost_reflect::DescriptorPool::decode(cri_api::v1::FILE_DESCRIPTOR_SET).unwrap();
    let auth = pool.get_message_by_name("runtime.v1.AuthConfig").unwrap();
    let mut redacted: Vec<String> = auth
        .fields()
        .filter(|f| {
            f.options()
                .get_field_by_name("debug_redact")
                .is_some_and(|v| v.as_bool() == Some(true))
        })
        .map(|f| f.name().to_string())
        .collect();
    redacted.sort();
    assert_eq!(
        redacted,
        ["auth", "identity_token", "password", "registry_token"]
    );
}

#[test]
fn generated_paths_are_public_under_v1() {
    // Compiles only if the stubs and newest messages are reachable where the docs say.
    use cri_api::v1::{
        CheckpointPodRequest, RestorePodRequest, Signal, image_service_client::ImageServiceClient,
        image_service_server::ImageServiceServer, runtime_service_client::RuntimeServiceClient,
        runtime_service_server::RuntimeServiceServer,
    };
    let _ = (
        std::any::type_name::<RuntimeServiceClient<()>>(),
        std::any::type_name::<ImageServiceClient<()>>(),
        std::any::type_name::<RuntimeServiceServer<()>>(),
        std::any::type_name::<ImageServiceServer<()>>(),
    );
    assert_eq!(CheckpointPodRequest::default().pod_sandbox_id, "");
    assert_eq!(RestorePodRequest::default().checkpoint_path, "");
    assert_eq!(Signal::Sigkill.as_str_name(), "SIGNAL_SIGKILL");
}

#[test]
fn key_value_value_is_bytes() {
    let kv = cri_api::v1::KeyValue {
        key: "k".into(),
        value: b"v".to_vec(),
    };
    let decoded = cri_api::v1::KeyValue::decode(kv.encode_to_vec().as_slice()).unwrap();
    assert_eq!(decoded, kv);
}
