//! Every `cri` verb against a real containerd (see `scripts/containerd-peer`); JSON output is
//! compared with what the runtime returns to the library.

use std::time::Duration;

use cri_client::Client;
use serde_json::Value;

use crate::common::{Out, run};

struct Peer {
    endpoint: String,
    image: String,
    removable: Option<String>,
    client: Client,
    dir: tempfile::TempDir,
    config: String,
}

impl Peer {
    async fn cri(&self, args: &[&str]) -> Out {
        let mut full = vec![
            "-r".to_string(),
            self.endpoint.clone(),
            "--config".to_string(),
            self.config.clone(),
        ];
        full.extend(args.iter().map(|a| a.to_string()));
        run(full, Vec::new()).await
    }

    fn write(&self, name: &str, content: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    }
}

fn ids(value: &Value, key: &str) -> Vec<String> {
    let mut ids: Vec<String> = value[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_verb_against_containerd() {
    let Some(peer) = cri_testkit::peer::containerd() else {
        return;
    };
    peer.reimport_images().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("empty.yaml");
    std::fs::write(&config, "").unwrap();
    let p = Peer {
        client: Client::connect(&peer.endpoint).await.unwrap(),
        endpoint: peer.endpoint.clone(),
        image: peer.image.clone(),
        removable: peer.removable_image.clone(),
        config: config.display().to_string(),
        dir,
    };

    // Runtime information.
    let version = p.cri(&["version"]).await;
    assert!(
        version.ok().contains("RuntimeName:  containerd"),
        "{version:?}"
    );
    let info = p.cri(&["info"]).await.json();
    assert_eq!(info["status"]["conditions"][0]["type"], "RuntimeReady");
    let unimplemented = p.cri(&["runtime-config"]).await;
    assert!(
        unimplemented.failed().contains("Unimplemented")
            || unimplemented.failed().contains("unknown method"),
        "{unimplemented:?}"
    );

    // Images, compared with the library's view.
    let images = p.cri(&["images", "-o", "json"]).await.json();
    let listed = p.client.list_images(None).await.unwrap();
    let mut expected: Vec<String> = listed.iter().map(|i| i.id.clone()).collect();
    expected.sort();
    assert_eq!(ids(&images, "images"), expected);
    let table = p.cri(&["images"]).await;
    assert!(table.lines()[0].starts_with("IMAGE"), "{table:?}");
    let inspecti = p.cri(&["inspecti", &p.image]).await.json();
    let status = p.client.image_status(&p.image).await.unwrap().unwrap();
    assert_eq!(inspecti["image"]["id"], status.id.as_str());
    assert!(
        p.cri(&["imagefsinfo"])
            .await
            .json()
            .to_string()
            .contains("mountpoint")
    );
    let offline_pull = p.cri(&["pull", "cri-rs.invalid/none:1"]).await;
    offline_pull.failed();

    // A pod (host network: no CNI here) and a container, from crictl-style config files.
    let logs = p.dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let pod_file = p.write(
        "pod.json",
        &format!(
            r#"{{"metadata": {{"name": "cli-interop", "namespace": "cri-cli", "uid": "uid-cli-{}", "attempt": 0}},
                "log_directory": "{}",
                "linux": {{"cgroup_parent": "/cri-cli-test/pod-{}",
                          "security_context": {{"namespace_options": {{"network": 2}}}}}}}}"#,
            std::process::id(),
            logs.display(),
            std::process::id()
        ),
    );
    let container_file = p.write(
        "container.yaml",
        &format!(
            "metadata:\n  name: talker\nimage:\n  image: {}\ncommand: [sh, -c, 'echo hello-from-containerd; sleep 3600']\nlog_path: talker.log\n",
            p.image
        ),
    );
    let pod = p.cri(&["runp", &pod_file]).await.ok().trim().to_string();
    let result = async {
        let pods = p.cri(&["pods", "-o", "json"]).await.json();
        assert!(ids(&pods, "items").contains(&pod), "{pods}");
        let inspectp = p.cri(&["inspectp", &pod]).await.json();
        let sandbox = p
            .client
            .pod_sandbox_status(&pod, false)
            .await
            .unwrap()
            .status
            .unwrap();
        assert_eq!(inspectp["status"]["id"], sandbox.id.as_str());
        assert_eq!(inspectp["status"]["state"], "SANDBOX_READY");
        assert_eq!(inspectp["status"]["metadata"]["name"], "cli-interop");

        let container = p
            .cri(&["create", &pod, &container_file, &pod_file])
            .await
            .ok()
            .trim()
            .to_string();
        p.cri(&["start", &container]).await.ok();
        let ps = p.cri(&["ps", "-o", "json", "--pod", &pod]).await.json();
        let listed = p.client.list_containers(None).await.unwrap();
        assert_eq!(ids(&ps, "containers"), vec![container.clone()]);
        assert!(listed.iter().any(|c| c.id == container));
        let inspect = p.cri(&["inspect", &container]).await.json();
        let status = p
            .client
            .container_status(&container, false)
            .await
            .unwrap()
            .status
            .unwrap();
        assert_eq!(inspect["status"]["id"], status.id.as_str());
        assert_eq!(inspect["status"]["state"], "CONTAINER_RUNNING");
        assert_eq!(inspect["status"]["imageRef"], status.image_ref.as_str());
        let short = &container[..13];
        let table = p.cri(&["ps"]).await;
        assert!(table.ok().contains(short), "{table:?}");

        let exec = p
            .cri(&["exec", "--sync", &container, "sh", "-c", "echo out; exit 3"])
            .await;
        assert_eq!((exec.code, exec.stdout.as_str()), (3, "out\n"), "{exec:?}");
        // logs: the container's stdout, from containerd's CRI log file.
        let mut text = String::new();
        for _ in 0..100 {
            text = p.cri(&["logs", &container]).await.ok().to_string();
            if !text.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(text, "hello-from-containerd\n");
        let stamped = p.cri(&["logs", "--timestamps", &container]).await;
        assert!(
            stamped.ok().contains("Z hello-from-containerd"),
            "{stamped:?}"
        );

        let stats = p
            .cri(&["stats", "-o", "json", "--id", &container])
            .await
            .json();
        assert_eq!(stats["stats"][0]["attributes"]["id"], container.as_str());
        let statsp = p.cri(&["statsp", "-o", "json", &pod]).await;
        assert_eq!(statsp.json()["stats"][0]["attributes"]["id"], pod.as_str());
        p.cri(&[
            "update",
            "--cpu-shares",
            "512",
            "--memory",
            "134217728",
            &container,
        ])
        .await
        .ok();

        let stopped = p.cri(&["stop", &container]).await;
        assert!(stopped.ok().contains(&container), "{stopped:?}");
        let exited = p
            .cri(&["ps", "-a", "-o", "json", "--state", "exited", "--pod", &pod])
            .await
            .json();
        assert_eq!(ids(&exited, "containers"), vec![container.clone()]);
        p.cri(&["rm", &container]).await.ok();
        let gone = p.cri(&["inspect", &container]).await;
        gone.failed();

        let events = p.cri(&["events"]).await;
        assert!(events.failed().contains("GetContainerEvents"), "{events:?}");
        Ok::<_, String>(())
    }
    .await;
    let stopp = p.cri(&["stopp", &pod]).await;
    let rmp = p.cri(&["rmp", &pod]).await;
    result.unwrap();
    stopp.ok();
    rmp.ok();

    if let Some(removable) = &p.removable {
        let out = p.cri(&["rmi", removable]).await;
        out.ok();
        assert!(p.client.image_status(removable).await.unwrap().is_none());
    }
}
