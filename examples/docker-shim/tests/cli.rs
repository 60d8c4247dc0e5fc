//! crictl-format flows through the `cri` CLI (its library entry point, in process) against
//! docker-shim: run a pod from a config file, create and start a container, `exec -s`,
//! streaming exec, logs, inspect, stop, remove.

mod common;

use std::time::Duration;

use common::Shim;

/// One `cri` invocation (with an empty config file, whatever CRI_CONFIG_FILE or
/// /etc/crictl.yaml say): exit code, stdout, stderr.
async fn cri(endpoint: &str, args: &[&str]) -> (i32, String, String) {
    let config = std::env::temp_dir().join(format!("docker-shim-cli-{}.yaml", std::process::id()));
    std::fs::write(&config, "").unwrap();
    let mut full = vec![
        "cri".to_string(),
        "-r".to_string(),
        endpoint.to_string(),
        "--config".to_string(),
        config.display().to_string(),
    ];
    full.extend(args.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = cri_cli::run(full, &mut out, &mut err);
        (
            code,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    })
    .await
    .unwrap()
}

async fn ok(endpoint: &str, args: &[&str]) -> String {
    let (code, out, err) = cri(endpoint, args).await;
    assert_eq!(code, 0, "cri {args:?}: {err}{out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crictl_style_flow_through_the_cri_cli() {
    let Some(engine) = common::requirements() else {
        return;
    };
    let shim = Shim::start(&engine, &[]).await;
    let endpoint = format!("unix://{}", shim.socket.display());
    let endpoint = endpoint.as_str();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let version = ok(endpoint, &["version"]).await;
    assert!(version.contains("docker-shim"), "{version}");
    ok(endpoint, &["pull", &engine.busybox]).await;

    let logs = shim.log_root.join("cli");
    std::fs::create_dir_all(&logs).unwrap();
    let pod_file = write(
        "pod.json",
        &format!(
            r#"{{"metadata": {{"name": "cli-flow", "namespace": "docker-shim", "uid": "uid-cli-{}", "attempt": 0}},
                "log_directory": "{}",
                "linux": {{"security_context": {{"namespace_options": {{"network": 2}}}}}}}}"#,
            std::process::id(),
            logs.display()
        ),
    );
    let container_file = write(
        "container.yaml",
        &format!(
            "metadata:\n  name: talker\nimage:\n  image: {}\ncommand: [sh, -c, 'echo hello-from-docker; sleep 3600']\nlog_path: talker.log\n",
            engine.busybox
        ),
    );
    let pod = ok(endpoint, &["runp", &pod_file]).await.trim().to_string();
    assert_eq!(pod.len(), 64, "{pod}");
    let pods = ok(endpoint, &["pods", "-o", "json"]).await;
    assert!(pods.contains(&pod), "{pods}");
    let inspectp = ok(endpoint, &["inspectp", &pod]).await;
    assert!(inspectp.contains("SANDBOX_READY"), "{inspectp}");

    let container = ok(endpoint, &["create", &pod, &container_file, &pod_file])
        .await
        .trim()
        .to_string();
    ok(endpoint, &["start", &container]).await;
    let ps = ok(endpoint, &["ps", "--pod", &pod]).await;
    assert!(ps.contains(&container[..13]), "{ps}");
    let inspect = ok(endpoint, &["inspect", &container]).await;
    assert!(inspect.contains("CONTAINER_RUNNING"), "{inspect}");

    // exec -s: output and exit code.
    let (code, out, err) = cri(
        endpoint,
        &["exec", "--sync", &container, "sh", "-c", "echo out; exit 3"],
    )
    .await;
    assert_eq!((code, out.as_str()), (3, "out\n"), "{err}");
    // Streaming exec (through the shim's streaming server).
    let (code, out, err) = cri(endpoint, &["exec", &container, "echo", "streamed"]).await;
    assert_eq!((code, out.as_str()), (0, "streamed\n"), "{err}");

    // logs: from the CRI log file the shim writes.
    let mut text = String::new();
    for _ in 0..100 {
        text = ok(endpoint, &["logs", &container]).await;
        if !text.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(text, "hello-from-docker\n");

    let stopped = ok(endpoint, &["stop", &container]).await;
    assert!(stopped.contains(&container), "{stopped}");
    let exited = ok(
        endpoint,
        &["ps", "-a", "--state", "exited", "-o", "json", "--pod", &pod],
    )
    .await;
    assert!(exited.contains(&container), "{exited}");
    ok(endpoint, &["rm", &container]).await;
    let (code, _, _) = cri(endpoint, &["inspect", &container]).await;
    assert_ne!(code, 0, "inspect of a removed container");
    ok(endpoint, &["stopp", &pod]).await;
    ok(endpoint, &["rmp", &pod]).await;
    let pods = ok(endpoint, &["pods", "-q"]).await;
    assert!(!pods.contains(&pod), "{pods}");
    shim.shutdown().await;
}
