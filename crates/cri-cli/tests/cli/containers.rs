//! `create`, `start`, `ps`, `inspect`, `stop`, `rm`, `exec` and `update`.

use cri_api::v1::ContainerState;
use serde_json::json;

use crate::common::{BIN, Env, assert_aligned, json_of};

const PS_COLUMNS: [&str; 8] = [
    "CONTAINER",
    "IMAGE",
    "CREATED",
    "STATE",
    "NAME",
    "ATTEMPT",
    "POD ID",
    "POD",
];

fn configs(env: &Env, name: &str) -> (String, String, String, String) {
    let log_dir = env.log_dir().display().to_string();
    let pod_json = env.write(
        &format!("{name}-pod.json"),
        &format!(
            r#"{{"metadata": {{"name": "{name}-pod", "namespace": "default", "uid": "u-{name}"}}, "log_directory": "{log_dir}"}}"#
        ),
    );
    let pod_yaml = env.write(
        &format!("{name}-pod.yaml"),
        &format!("metadata:\n  name: {name}-pod\n  namespace: default\n  uid: u-{name}\nlog_directory: {log_dir}\n"),
    );
    let container_json = env.write(
        &format!("{name}-json.json"),
        &format!(
            r#"{{"metadata": {{"name": "{name}-json"}}, "image": {{"image": "busybox"}}, "command": ["sleep", "infinity"], "log_path": "{name}-json.log", "labels": {{"from": "json"}}}}"#
        ),
    );
    let container_yaml = env.write(
        &format!("{name}-yaml.yml"),
        &format!(
            "metadata:\n  name: {name}-yaml\n  attempt: 2\nimage:\n  image: busybox\ncommand:\n- sleep\n- infinity\nlog_path: {name}-yaml.log\nlabels:\n  from: yaml\nenvs:\n- key: A\n  value: \"1\"\n"
        ),
    );
    (pod_json, pod_yaml, container_json, container_yaml)
}

#[tokio::test(flavor = "multi_thread")]
async fn create_and_start_from_json_and_yaml_configs() {
    let env = Env::new().await;
    let (pod_json, pod_yaml, container_json, container_yaml) = configs(&env, "app");
    let pod = env.cri(&["runp", &pod_json]).await.ok().trim().to_string();

    let from_json = env
        .cri(&["create", &pod[..12], &container_json, &pod_json])
        .await;
    let from_json = from_json.ok().trim().to_string();
    let from_yaml = env.cri(&["create", &pod, &container_yaml, &pod_yaml]).await;
    let from_yaml = from_yaml.ok().trim().to_string();
    assert_eq!((from_json.len(), from_yaml.len()), (64, 64));

    let status = env
        .client()
        .container_status(&from_yaml, false)
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.metadata.clone().unwrap().attempt, 2);
    assert_eq!(status.labels["from"], "yaml");
    assert_eq!(status.state(), ContainerState::ContainerCreated);
    assert!(status.log_path.ends_with("app-yaml.log"), "{status:?}");
    let out = env.cri(&["start", &from_json, &from_yaml[..10]]).await;
    assert_eq!(out.ok(), format!("{from_json}\n{from_yaml}\n"));
    for id in [&from_json, &from_yaml] {
        let status = env
            .client()
            .container_status(id, false)
            .await
            .unwrap()
            .status
            .unwrap();
        assert_eq!(status.state(), ContainerState::ContainerRunning);
    }
    let env_out = env.cri(&["exec", "--sync", &from_yaml, "env"]).await;
    assert_eq!(env_out.ok(), "A=1\n", "envs from YAML reach the container");

    // --with-pull pulls the image named in the config first.
    env.client().remove_image("busybox").await.unwrap();
    let container = env.write(
        "pulled.json",
        r#"{"metadata": {"name": "pulled"}, "image": {"image": "busybox"}}"#,
    );
    let err = env.cri(&["create", &pod, &container, &pod_json]).await;
    assert!(err.failed().contains("not found"), "{err:#?}");
    env.cri(&["create", "--with-pull", &pod, &container, &pod_json])
        .await
        .ok();
    assert!(env.fake.has_image("busybox"));
}

#[tokio::test(flavor = "multi_thread")]
async fn ps_table_is_aligned_truncated_and_shows_running_by_default() {
    let env = Env::new().await;
    let pod = env.pod("web-pod").await;
    let running = env
        .container(&pod, "server", &["sleep", "infinity"], true)
        .await;
    let created = env
        .container(&pod, "sidecar-with-a-long-name", &[], false)
        .await;

    let out = env.cri(&["ps"]).await;
    let table = out.ok();
    assert_aligned(table, &PS_COLUMNS);
    let lines = out.lines();
    assert_eq!(lines.len(), 2, "running only: {table}");
    let row = lines[1];
    assert!(
        row.starts_with(&format!("{}   ", &running[..13])),
        "{table}"
    );
    for cell in [
        "busybox",
        "Running",
        "server",
        &pod[..13],
        "web-pod",
        " ago",
    ] {
        assert!(row.contains(cell), "{cell} missing in {row:?}");
    }
    assert!(!row.contains(&pod[..14]), "pod id truncated: {row}");

    let all = env.cri(&["ps", "-a"]).await;
    assert_aligned(all.ok(), &PS_COLUMNS);
    assert_eq!(all.lines().len(), 3);
    assert!(
        all.lines()[1].starts_with(&created[..13]),
        "newest first: {}",
        all.stdout
    );
    assert!(all.lines()[1].contains("Created"));

    let full = env.cri(&["ps", "-a", "--no-trunc"]).await;
    assert_aligned(full.ok(), &PS_COLUMNS);
    assert!(full.lines()[1].starts_with(&format!("{created}   ")));
    assert!(full.lines()[1].contains(&pod));

    assert_eq!(env.cri(&["ps", "-q"]).await.ok(), format!("{running}\n"));
    assert_eq!(
        env.cri(&["ps", "-aq"]).await.ok(),
        format!("{created}\n{running}\n")
    );
    assert_eq!(
        env.cri(&["ps", "-a", "-o", "id"]).await.ok(),
        format!("{created}\n{running}\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ps_json_and_yaml_are_the_list_response() {
    let env = Env::new().await;
    let pod = env.pod("p").await;
    env.container(&pod, "a", &["sleep", "infinity"], true).await;
    env.container(&pod, "b", &[], false).await;
    let mut containers = env.client().list_containers(None).await.unwrap();
    containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    let expected = json_of(&cri_api::v1::ListContainersResponse { containers });
    let json = env.cri(&["ps", "-a", "-o", "json"]).await.json();
    assert_eq!(json, expected);
    assert_eq!(json["containers"][1]["state"], "CONTAINER_RUNNING");
    assert_eq!(json["containers"][0]["metadata"]["name"], "b");
    assert_eq!(env.cri(&["ps", "-a", "-o", "yaml"]).await.yaml(), expected);
    let running = env.cri(&["ps", "-o", "json"]).await.json();
    assert_eq!(running["containers"].as_array().unwrap().len(), 1);
}

async fn ids(env: &Env, args: &[&str]) -> Vec<String> {
    let mut full = vec!["ps", "-q"];
    full.extend_from_slice(args);
    env.cri(&full)
        .await
        .ok()
        .lines()
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn ps_filters() {
    let env = Env::new().await;
    let p1 = env.pod("p1").await;
    let p2 = env.pod("p2").await;
    let web = env
        .container(&p1, "web", &["sleep", "infinity"], true)
        .await;
    let worker = env
        .container(&p2, "web-worker", &["sleep", "infinity"], true)
        .await;
    let done = env.container(&p2, "job", &["true"], true).await;
    crate::common::wait_for(|| async {
        let status = env.client().container_status(&done, false).await.unwrap();
        status.status.unwrap().state() == ContainerState::ContainerExited
    })
    .await;
    let mut config = crate::common::container_config("labelled", &[]);
    config.labels.insert("tier".into(), "cache".into());
    let labelled = env
        .client()
        .create_container(&p1, config, None)
        .await
        .unwrap();

    assert_eq!(ids(&env, &[]).await, [worker.as_str(), web.as_str()]);
    assert_eq!(ids(&env, &["--pod", &p2[..9]]).await, [worker.as_str()]);
    assert_eq!(
        ids(&env, &["-a", "--pod", &p2]).await,
        [done.as_str(), worker.as_str()]
    );
    assert_eq!(
        ids(&env, &["--name", "web"]).await,
        [worker.as_str(), web.as_str()]
    );
    assert_eq!(ids(&env, &["--name", "^web$"]).await, [web.as_str()]);
    assert_eq!(ids(&env, &["--state", "exited"]).await, [done.as_str()]);
    assert_eq!(
        ids(&env, &["--state", "created"]).await,
        [labelled.as_str()]
    );
    assert_eq!(
        ids(&env, &["-a", "--label", "tier=cache"]).await,
        [labelled.as_str()]
    );
    assert_eq!(ids(&env, &["--id", &web[..7]]).await, [web.as_str()]);
    assert_eq!(
        ids(&env, &["--latest"]).await,
        [labelled.as_str()],
        "any state"
    );
    assert_eq!(
        ids(&env, &["--last", "2"]).await,
        [labelled.as_str(), done.as_str()]
    );
    let err = env.cri(&["ps", "--state", "sleeping"]).await;
    assert!(err.failed().contains("created, running, exited or unknown"));
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_prints_the_status_response() {
    let env = Env::new().await;
    let pod = env.pod("p").await;
    let id = env
        .container(&pod, "app", &["sleep", "infinity"], true)
        .await;
    let expected = json_of(&env.client().container_status(&id, true).await.unwrap());

    let json = env.cri(&["inspect", &id[..5]]).await.json();
    assert_eq!(json, expected);
    assert_eq!(json["status"]["state"], "CONTAINER_RUNNING");
    assert!(json["info"]["info"].is_string(), "verbose by default");
    assert_eq!(
        env.cri(&["inspect", "-q", &id]).await.json()["info"],
        json!({})
    );
    assert_eq!(
        env.cri(&["inspect", "-o", "yaml", &id]).await.yaml(),
        expected
    );

    let text = env.cri(&["inspect", "-o", "table", &id]).await;
    let text = text.ok();
    for line in [
        format!("ID: {id}"),
        "Name: app".into(),
        "State: CONTAINER_RUNNING".into(),
        "Image: busybox".into(),
    ] {
        assert!(text.contains(&line), "{line} missing in {text}");
    }

    // Several ids: one JSON document each.
    let other = env.container(&pod, "other", &[], false).await;
    let out = env.cri(&["inspect", &id, &other]).await;
    let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_str(out.ok())
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[1]["status"]["id"], other.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_and_rm_take_several_ids() {
    let env = Env::new().await;
    let pod = env.pod("p").await;
    let a = env.container(&pod, "a", &["sleep", "infinity"], true).await;
    let b = env.container(&pod, "b", &["sleep", "infinity"], true).await;
    let c = env.container(&pod, "c", &["sleep", "infinity"], true).await;

    let out = env.cri(&["stop", "-t", "0", &a[..8], &b]).await;
    assert_eq!(out.ok(), format!("{a}\n{b}\n"));
    for id in [&a, &b] {
        let status = env
            .client()
            .container_status(id, false)
            .await
            .unwrap()
            .status
            .unwrap();
        assert_eq!(status.state(), ContainerState::ContainerExited);
    }

    let out = env.cri(&["rm", &a, &c, &b]).await;
    assert_eq!(out.code, 1, "c is running: {out:#?}");
    assert_eq!(out.stdout, format!("{a}\n{b}\n"));
    assert!(
        out.stderr.contains(&format!("container {c} is running")),
        "{out:#?}"
    );
    assert_eq!(env.fake.container_ids(), [c.as_str()]);

    let out = env.cri(&["rm", "--force", &c]).await;
    assert_eq!(out.ok(), format!("{c}\n"));
    assert!(env.fake.container_ids().is_empty());

    env.container(&pod, "d", &[], false).await;
    env.container(&pod, "e", &[], false).await;
    assert_eq!(env.cri(&["rm", "-a"]).await.ok().lines().count(), 2);
    assert!(env.fake.container_ids().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_sync_copies_output_and_exit_code() {
    let env = Env::new().await;
    let pod = env.pod("p").await;
    let id = env
        .container(&pod, "app", &["sleep", "infinity"], true)
        .await;

    let out = env
        .cri(&["exec", "--sync", &id[..6], "echo", "hello", "world"])
        .await;
    assert_eq!(out.ok(), "hello world\n");
    let out = env
        .cri(&[
            "exec",
            "-s",
            &id,
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ])
        .await;
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (3, "out\n", "err\n")
    );
    let out = env.cri(&["exec", "--sync", &id, "no-such-command"]).await;
    assert_eq!(out.code, 127, "{out:#?}");

    let out = env
        .cri(&["exec", "--sync", "--timeout", "1", &id, "sleep", "5"])
        .await;
    let err = out.failed();
    assert!(err.contains("timed out"), "{err}");

    let err = env.cri(&["exec", "-s", "-it", &id, "sh"]).await;
    assert!(
        err.failed().contains("need a streaming session"),
        "{err:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn streaming_exec_and_attach() {
    let env = Env::new().await;
    let pod = env.pod("p").await;
    let id = env
        .container(&pod, "shell", &["sleep", "infinity"], true)
        .await;
    for transport in ["spdy", "websocket"] {
        let out = env
            .cri(&[
                "exec",
                "--transport",
                transport,
                &id,
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ])
            .await;
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (3, "out\n", "err\n"),
            "{transport}: {out:#?}"
        );
        let out = env
            .cri(&[
                "exec",
                "-t",
                "--transport",
                transport,
                &id,
                "sh",
                "-c",
                "echo merged >&2",
            ])
            .await;
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, "merged\n"),
            "{transport}: {out:#?}"
        );
    }
    // -i passes stdin (here: piped) to the command.
    let endpoint = env.endpoint.clone();
    let container = id.clone();
    let output = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = std::process::Command::new(BIN)
            .args([
                "-r",
                &endpoint,
                "--config",
                "/dev/null",
                "exec",
                "-i",
                &container,
                "cat",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"typed input\n")
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        (output.status.code(), output.stdout.as_slice()),
        (Some(0), &b"typed input\n"[..])
    );
    // attach echoes stdin (the fake's simulated main process); without -i it just ends.
    let out = env.cri(&["attach", &id]).await;
    assert_eq!(out.code, 0, "{out:#?}");
    let out = env
        .cri(&["exec", "--transport", "spdy", "nope", "true"])
        .await;
    out.failed();
}

#[tokio::test(flavor = "multi_thread")]
async fn update_changes_resources() {
    let env = Env::new().await;
    let pod = env.pod("p").await;
    let a = env.container(&pod, "a", &["sleep", "infinity"], true).await;
    let b = env.container(&pod, "b", &["sleep", "infinity"], true).await;
    let out = env
        .cri(&[
            "update",
            "--cpu-shares",
            "512",
            "--cpu-quota",
            "50000",
            "--cpu-period",
            "100000",
            "--memory",
            "256m",
            "--cpuset-cpus",
            "0-1",
            "--cpuset-mems",
            "0",
            &a,
            &b[..7],
        ])
        .await;
    assert_eq!(out.ok(), format!("{a}\n{b}\n"));
    let json = env.cri(&["inspect", &b]).await.json();
    let linux = &json["status"]["resources"]["linux"];
    assert_eq!(linux["cpuShares"], "512");
    assert_eq!(linux["cpuQuota"], "50000");
    assert_eq!(linux["cpuPeriod"], "100000");
    assert_eq!(linux["memoryLimitInBytes"], (256 << 20).to_string());
    assert_eq!(linux["cpusetCpus"], "0-1");
    assert_eq!(linux["cpusetMems"], "0");

    assert!(
        env.cri(&["update", &a])
            .await
            .failed()
            .contains("nothing to update")
    );
    assert_eq!(
        env.cri(&["update", "--memory", "lots", &a]).await.code,
        2,
        "usage error"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn port_forward_forwards_local_connections() {
    use std::io::BufRead as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let env = Env::new().await;
    let pod = env.pod("pf").await;
    // The service inside the "pod": the fake forwards to loopback ports of this machine.
    let service = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let remote = service.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = service.accept().await {
            tokio::spawn(async move {
                conn.write_all(b"hello from the pod\n").await.unwrap();
            });
        }
    });
    for transport in ["spdy", "websocket"] {
        let mut child = std::process::Command::new(BIN)
            .args([
                "-r",
                &env.endpoint,
                "--config",
                "/dev/null",
                "port-forward",
                "--transport",
                transport,
                &pod,
            ])
            .arg(format!("0:{remote}"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .unwrap();
            line
        })
        .await
        .unwrap();
        let local: std::net::SocketAddr = line
            .strip_prefix("Forwarding from ")
            .and_then(|l| l.split(" -> ").next())
            .unwrap_or_else(|| panic!("{line:?}"))
            .parse()
            .unwrap();
        let mut conn = tokio::net::TcpStream::connect(local).await.unwrap();
        let mut got = vec![0u8; 19];
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"hello from the pod\n", "{transport}");
        let _ = child.kill();
        let _ = child.wait();
    }
    let err = env.cri(&["port-forward", &pod, "80:x"]).await;
    assert!(err.failed().contains("is not LOCAL:REMOTE"), "{err:#?}");
}
