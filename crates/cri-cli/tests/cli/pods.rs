//! `pods`, `runp`, `inspectp`, `stopp` and `rmp`.

use cri_api::v1::{PodSandboxState, PodSandboxStatusResponse};
use serde_json::{Value, json};

use crate::common::{Env, assert_aligned, json_of, pod_config};

const POD_COLUMNS: [&str; 7] = [
    "POD ID",
    "CREATED",
    "STATE",
    "NAME",
    "NAMESPACE",
    "ATTEMPT",
    "RUNTIME",
];

#[tokio::test(flavor = "multi_thread")]
async fn pods_table_is_aligned_truncated_and_newest_first() {
    let env = Env::new().await;
    let first = env.pod("web").await;
    let second = env.pod("a-pod-with-a-rather-long-name-indeed").await;
    env.client().stop_pod_sandbox(&first).await.unwrap();

    let out = env.cri(&["pods"]).await;
    let table = out.ok();
    assert_aligned(table, &POD_COLUMNS);
    let lines = out.lines();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[1].starts_with(&format!("{}   ", &second[..13])),
        "newest first: {table}"
    );
    assert!(
        lines[2].starts_with(&format!("{}   ", &first[..13])),
        "{table}"
    );
    assert!(!table.contains(&second[..14]), "ids are cut to 13: {table}");
    assert!(
        lines[1].contains("Ready") && lines[1].contains("(default)"),
        "{table}"
    );
    assert!(lines[2].contains("NotReady"), "{table}");
    assert!(lines[1].contains(" ago"), "{table}");

    let full = env.cri(&["pods", "--no-trunc"]).await;
    assert_aligned(full.ok(), &POD_COLUMNS);
    assert!(
        full.lines()[1].starts_with(&format!("{second}   ")),
        "{}",
        full.stdout
    );

    let quiet = env.cri(&["pods", "-q"]).await;
    assert_eq!(quiet.ok(), format!("{second}\n{first}\n"));
    assert_eq!(env.cri(&["pods", "-o", "id"]).await.ok(), quiet.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_json_and_yaml_are_the_list_response() {
    let env = Env::new().await;
    env.pod("one").await;
    env.pod("two").await;
    let mut items = env.client().list_pod_sandbox(None).await.unwrap();
    items.sort_by_key(|p| std::cmp::Reverse(p.created_at));
    let expected = json_of(&cri_api::v1::ListPodSandboxResponse { items });
    let json = env.cri(&["pods", "-o", "json"]).await.json();
    assert_eq!(json, expected);
    assert_eq!(json["items"][0]["state"], "SANDBOX_READY");
    assert!(json["items"][0]["createdAt"].is_string(), "int64 as string");
    assert_eq!(env.cri(&["pods", "-o", "yaml"]).await.yaml(), expected);
}

async fn ids(env: &Env, args: &[&str]) -> Vec<String> {
    let mut full = vec!["pods", "-q"];
    full.extend_from_slice(args);
    env.cri(&full)
        .await
        .ok()
        .lines()
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_filters() {
    let env = Env::new().await;
    let web = env.pod("web").await;
    let db = env
        .client()
        .run_pod_sandbox(
            cri_api::v1::PodSandboxConfig {
                labels: [("tier".to_string(), "data".to_string())].into(),
                ..pod_config("db", "storage", &env.log_dir())
            },
            "",
        )
        .await
        .unwrap();
    let old = env.pod("old-web").await;
    env.client().stop_pod_sandbox(&old).await.unwrap();

    assert_eq!(
        ids(&env, &["--name", "web"]).await,
        [old.as_str(), web.as_str()]
    );
    assert_eq!(ids(&env, &["--name", "^web$"]).await, [web.as_str()]);
    assert_eq!(ids(&env, &["--namespace", "storage"]).await, [db.as_str()]);
    assert_eq!(
        ids(&env, &["--state", "ready"]).await,
        [db.as_str(), web.as_str()]
    );
    assert_eq!(ids(&env, &["--state", "NotReady"]).await, [old.as_str()]);
    assert_eq!(ids(&env, &["--label", "tier=data"]).await, [db.as_str()]);
    assert_eq!(ids(&env, &["--id", &web[..8]]).await, [web.as_str()]);
    assert_eq!(ids(&env, &["--latest"]).await, [old.as_str()]);
    assert_eq!(
        ids(&env, &["--last", "2"]).await,
        [old.as_str(), db.as_str()]
    );
    assert!(
        env.cri(&["pods", "--state", "bogus"])
            .await
            .failed()
            .contains("ready or notready")
    );
    assert!(
        env.cri(&["pods", "--label", "nokey"])
            .await
            .failed()
            .contains("key=value")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn runp_reads_crictl_json_and_yaml_configs() {
    let env = Env::new().await;
    let log_dir = env.log_dir().display().to_string();
    let json_config = env.write(
        "pod.json",
        &format!(
            r#"{{
  "metadata": {{"name": "json-pod", "namespace": "default", "uid": "uid-json", "attempt": 1}},
  "log_directory": "{log_dir}",
  "labels": {{"app": "json"}},
  "linux": {{"security_context": {{"namespace_options": {{"network": 2}}}}}}
}}"#
        ),
    );
    let out = env.cri(&["runp", &json_config]).await;
    let id = out.ok().trim().to_string();
    assert_eq!(id.len(), 64, "{out:#?}");
    let status = env
        .client()
        .pod_sandbox_status(&id, false)
        .await
        .unwrap()
        .status
        .unwrap();
    let metadata = status.metadata.clone().unwrap();
    assert_eq!((metadata.name.as_str(), metadata.attempt), ("json-pod", 1));
    assert_eq!(status.labels["app"], "json");
    assert_eq!(
        status.network.unwrap().ip,
        "",
        "host network from namespace_options"
    );

    let yaml_config = env.write(
        "pod.yaml",
        &format!(
            "metadata:\n  name: yaml-pod\n  namespace: default\n  uid: uid-yaml\n  attempt: 0\nlog_directory: {log_dir}\nlabels:\n  app: yaml\n"
        ),
    );
    let out = env.cri(&["runp", "--runtime", "runc", &yaml_config]).await;
    let id = out.ok().trim().to_string();
    let status = env
        .client()
        .pod_sandbox_status(&id, false)
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.metadata.unwrap().name, "yaml-pod");
    assert_eq!(status.runtime_handler, "runc");
    assert_eq!(status.labels["app"], "yaml");

    let bad = env.write(
        "bad.json",
        r#"{"metadata": {"name": "x"}, "not_a_field": 1}"#,
    );
    let err = env.cri(&["runp", &bad]).await;
    assert!(
        err.failed().contains("invalid pod sandbox config"),
        "{err:#?}"
    );
}

/// A status response without its per-call timestamp.
fn stable(mut value: Value) -> Value {
    value["timestamp"] = Value::Null;
    value
}

#[tokio::test(flavor = "multi_thread")]
async fn inspectp_prints_the_status_response() {
    let env = Env::new().await;
    let id = env.pod("web").await;
    let expected: PodSandboxStatusResponse =
        env.client().pod_sandbox_status(&id, true).await.unwrap();

    let json = env.cri(&["inspectp", &id[..6]]).await.json();
    assert_eq!(stable(json.clone()), stable(json_of(&expected)));
    assert_eq!(json["status"]["id"], id.as_str());
    assert!(
        json["info"]["info"].is_string(),
        "verbose by default: {json}"
    );
    let quiet = env.cri(&["inspectp", "-q", &id]).await.json();
    assert_eq!(quiet["info"], json!({}));

    let yaml = env.cri(&["inspectp", "-o", "yaml", &id]).await.yaml();
    assert_eq!(stable(yaml), stable(json_of(&expected)));

    let table = env.cri(&["inspectp", "-o", "table", &id]).await;
    let text = table.ok();
    assert!(text.contains(&format!("ID: {id}\n")), "{text}");
    assert!(
        text.contains("Name: web\n") && text.contains("Status: SANDBOX_READY\n"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stopp_and_rmp_take_several_ids() {
    let env = Env::new().await;
    let a = env.pod("a").await;
    let b = env.pod("b").await;
    let c = env.pod("c").await;

    let out = env.cri(&["stopp", &a[..10], &b]).await;
    assert_eq!(out.ok(), format!("{a}\n{b}\n"));
    for id in [&a, &b] {
        let status = env.client().pod_sandbox_status(id, false).await.unwrap();
        assert_eq!(
            status.status.unwrap().state(),
            PodSandboxState::SandboxNotready
        );
    }

    // A ready pod needs --force; the others are still removed and the exit code says 1.
    let out = env.cri(&["rmp", &a, &c]).await;
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(out.stdout, format!("{a}\n"));
    assert!(out.stderr.contains("--force"), "{out:#?}");
    assert_eq!(env.fake.sandbox_ids().len(), 2);

    let out = env.cri(&["rmp", "-f", &c]).await;
    assert_eq!(out.ok(), format!("{c}\n"));
    let out = env.cri(&["rmp", "--all", "--force"]).await;
    assert_eq!(out.ok(), format!("{b}\n"));
    assert!(env.fake.sandbox_ids().is_empty());
}
