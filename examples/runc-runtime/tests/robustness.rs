//! Requests that arrive at bad moments or carry bad values: a create cut off by its deadline,
//! creates racing the pod's removal, a log path that points outside the log directory.

mod common;

use std::time::Duration;

use common::{Pod, Runtime};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_path_outside_the_log_directory_is_refused() {
    let Some(Pod {
        runtime,
        id: pod,
        config,
        image,
    }) = Pod::start("logpath").await
    else {
        return;
    };
    let outside = runtime.root.with_file_name("escaped.log");
    for log_path in [
        outside.display().to_string(),
        "../escaped.log".to_string(),
        "c/../../escaped.log".to_string(),
    ] {
        let mut container = Runtime::container_config("c", &image, &["true"]);
        container.log_path = log_path.clone();
        let err = runtime
            .client
            .create_container(&pod, container, Some(config.clone()))
            .await
            .expect_err(&log_path);
        assert_eq!(
            err.code(),
            Some(cri_client::tonic::Code::InvalidArgument),
            "{log_path}: {err}"
        );
    }
    assert!(!outside.exists(), "nothing was written outside");
    let escaped = std::path::Path::new(&config.log_directory).join("../escaped.log");
    assert!(
        !escaped.exists(),
        "nothing was written beside the log directory"
    );
    // The name was never reserved: a well-formed create with it succeeds.
    let mut container = Runtime::container_config("c", &image, &["true"]);
    container.log_path = "c/0.log".into();
    runtime
        .client
        .create_container(&pod, container, Some(config))
        .await
        .unwrap();
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_cut_off_by_its_deadline_leaves_a_tracked_container() {
    let Some(Pod {
        runtime,
        id: pod,
        config,
        image,
    }) = Pod::start("deadline").await
    else {
        return;
    };
    let container = Runtime::container_config("late", &image, &["sleep", "30"]);
    // A deadline far shorter than a runc create: the server drops the call. The creation
    // runs to its end anyway: the container is listed (so the kubelet can find and remove
    // it), and its name is taken by it rather than by a lost reservation. The client's own
    // timer can also fire before the request is even sent (seen in CI on a loaded machine;
    // then nothing is created), so a create that left nothing behind is sent again; every
    // attempt is cut off the same way, and the name allows one container at most.
    let hurried = runtime.client.with_timeout(Some(Duration::from_millis(1)));
    let listed = 'found: {
        for _ in 0..10 {
            let _ = hurried
                .create_container(&pod, container.clone(), Some(config.clone()))
                .await;
            let found = common::poll_for(Duration::from_secs(6), || async {
                let all = runtime.client.list_containers(None).await.unwrap();
                all.into_iter()
                    .find(|c| c.metadata.as_ref().is_some_and(|m| m.name == "late"))
            })
            .await;
            if let Some(found) = found {
                break 'found found;
            }
        }
        panic!("ten cut-off creates left no container behind");
    };
    let again = runtime
        .client
        .create_container(&pod, container.clone(), Some(config.clone()))
        .await
        .expect_err("the name is in use by the listed container");
    assert_eq!(
        again.code(),
        Some(cri_client::tonic::Code::AlreadyExists),
        "{again}"
    );
    runtime.client.remove_container(&listed.id).await.unwrap();
    runtime
        .client
        .create_container(&pod, container, Some(config))
        .await
        .expect("the name is free once its container is removed");
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_racing_the_pods_removal_leave_nothing_behind() {
    let Some(Pod {
        runtime,
        id: pod,
        config,
        image,
    }) = Pod::start("race").await
    else {
        return;
    };
    let mut creates = Vec::new();
    for i in 0..4 {
        let client = runtime.client.clone();
        let (pod, config) = (pod.clone(), config.clone());
        let container = Runtime::container_config(&format!("c{i}"), &image, &["sleep", "30"]);
        creates.push(tokio::spawn(async move {
            client.create_container(&pod, container, Some(config)).await
        }));
    }
    runtime.client.remove_pod_sandbox(&pod).await.unwrap();
    for create in creates {
        // Each create either won (and its container was removed with the pod) or lost
        // cleanly (the pod was gone or not ready).
        let _ = create.await.unwrap();
    }
    let left: Vec<_> = runtime
        .client
        .list_containers(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.pod_sandbox_id == pod)
        .collect();
    assert!(left.is_empty(), "containers outlived their pod: {left:?}");
    let runc_left = std::process::Command::new("runc")
        .arg("--root")
        .arg(runtime.runc_root())
        .args(["list", "-q"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&runc_left.stdout).trim(),
        "",
        "runc containers outlived their pod"
    );
    runtime.shutdown().await;
}
