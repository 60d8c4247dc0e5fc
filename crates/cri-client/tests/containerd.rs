//! The client against a real containerd (see `scripts/containerd-peer`): typed calls and the
//! kubelet's status verification on real responses.

use std::time::Duration;

use cri_client::Client;
use cri_client::cri_api::v1::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_calls_against_containerd() {
    let Some(peer) = cri_testkit::peer::containerd() else {
        return;
    };
    // Connecting checks Version like the kubelet.
    let client = Client::builder(&peer.endpoint)
        .list_streaming(true)
        .connect()
        .await
        .unwrap();
    let version = client.version().await.unwrap();
    assert_eq!(version.runtime_name, "containerd");
    assert_eq!(version.runtime_api_version, "v1");

    let status = client.status(false).await.unwrap().status.unwrap();
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.r#type == "RuntimeReady" && c.status)
    );

    // A pod in the host network (no CNI here) with a container running the local image.
    let config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "client-interop".into(),
            namespace: "cri-client".into(),
            uid: format!("uid-{}", std::process::id()),
            attempt: 0,
        }),
        log_directory: tempfile::tempdir().unwrap().keep().display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("/cri-client-test/pod-{}", std::process::id()),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = client.run_pod_sandbox(config.clone(), "").await.unwrap();
    let result = async {
        // Verified by the client: id, metadata, created_at.
        let sandbox = client
            .pod_sandbox_status(&pod, false)
            .await?
            .status
            .unwrap();
        assert_eq!(sandbox.state(), PodSandboxState::SandboxReady);

        let container = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "sleeper".into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: peer.image.clone(),
                ..Default::default()
            }),
            command: vec!["sleep".into(), "3600".into()],
            log_path: "sleeper.log".into(),
            ..Default::default()
        };
        let id = client
            .create_container(&pod, container, Some(config.clone()))
            .await?;
        client.start_container(&id).await?;
        // Verified: id, name, created_at, image, image_ref.
        let status = client.container_status(&id, true).await?;
        assert_eq!(
            status.status.as_ref().unwrap().state(),
            ContainerState::ContainerRunning
        );
        assert!(
            status.info.contains_key("info"),
            "verbose info from containerd"
        );

        let out = client
            .exec_sync(
                &id,
                ["sh", "-c", "echo out; echo err >&2; exit 4"],
                Duration::from_secs(10),
            )
            .await?;
        assert_eq!(
            (out.stdout.as_slice(), out.stderr.as_slice(), out.exit_code),
            (&b"out\n"[..], &b"err\n"[..], 4)
        );
        let timed_out = client
            .exec_sync(&id, ["sleep", "10"], Duration::from_secs(1))
            .await;
        assert!(
            matches!(timed_out, Err(cri_client::Error::ExecSyncTimeout { .. })),
            "{timed_out:?}"
        );

        // Lists fall back from Stream* (not in containerd 1.6) to the unary calls.
        let listed = client
            .list_containers(Some(ContainerFilter {
                pod_sandbox_id: pod.clone(),
                ..Default::default()
            }))
            .await?;
        assert_eq!(listed.len(), 1);
        assert_eq!(
            client
                .list_pod_sandbox(Some(PodSandboxFilter {
                    id: pod.clone(),
                    ..Default::default()
                }))
                .await?
                .len(),
            1
        );

        let stats = client.container_stats(&id).await?;
        assert_eq!(stats.attributes.unwrap().id, id);
        assert!(client.image_status(&peer.image).await?.is_some());
        assert!(
            client
                .image_status("cri-client.invalid/missing:1")
                .await?
                .is_none()
        );
        let fs = client.image_fs_info().await?;
        assert!(!fs.image_filesystems.is_empty());

        client.stop_container(&id, Duration::from_secs(2)).await?;
        client.stop_container(&id, Duration::from_secs(2)).await?;
        client.remove_container(&id).await?;
        client.remove_container(&id).await?;
        let gone = client.container_status(&id, false).await.unwrap_err();
        assert!(gone.is_not_found(), "{gone:?}");
        Ok::<_, cri_client::Error>(())
    }
    .await;
    client.stop_pod_sandbox(&pod).await.unwrap();
    client.remove_pod_sandbox(&pod).await.unwrap();
    result.unwrap();
}
