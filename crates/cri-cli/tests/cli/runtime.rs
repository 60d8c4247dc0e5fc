//! `version`, `info`, `runtime-config` and `imagefsinfo`.

use crate::common::{Env, json_of};

#[tokio::test(flavor = "multi_thread")]
async fn version_prints_crictls_four_lines() {
    let env = Env::new().await;
    let out = env.cri(&["version"]).await;
    let version = env.client().version().await.unwrap();
    assert_eq!(
        out.ok(),
        format!(
            "Version:  0.1.0\nRuntimeName:  {}\nRuntimeVersion:  {}\nRuntimeApiVersion:  v1\n",
            version.runtime_name, version.runtime_version
        )
    );
    assert_eq!(
        env.cri(&["version", "-o", "json"]).await.json(),
        json_of(&version)
    );
    assert_eq!(
        env.cri(&["version", "-o", "yaml"]).await.yaml(),
        json_of(&version)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn info_prints_the_status_response() {
    let env = Env::new().await;
    env.fake
        .set_condition("NetworkReady", false, "NoCNI", "no network plugin");
    let json = env.cri(&["info"]).await.json();
    let status = env.client().status(true).await.unwrap();
    assert_eq!(json, json_of(&status));
    assert_eq!(json["status"]["conditions"][1]["reason"], "NoCNI");
    assert!(
        json["info"]["config"].is_string(),
        "verbose info is included: {json}"
    );
    assert_eq!(env.cri(&["info", "-o", "yaml"]).await.yaml(), json);
    let quiet = env.cri(&["info", "-q"]).await.json();
    assert_eq!(quiet["info"], serde_json::json!({}));
}

#[tokio::test(flavor = "multi_thread")]
async fn runtime_config_prints_the_cgroup_driver() {
    let env = Env::new().await;
    let json = env.cri(&["runtime-config"]).await.json();
    assert_eq!(json, json_of(&env.client().runtime_config().await.unwrap()));
    assert_eq!(json["linux"]["cgroupDriver"], "CGROUPFS");
    assert_eq!(
        env.cri(&["runtime-config", "-o", "yaml"]).await.yaml(),
        json
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn imagefsinfo_prints_the_filesystems() {
    let env = Env::new().await;
    let json = env.cri(&["imagefsinfo"]).await.json();
    let expected = json_of(&env.client().image_fs_info().await.unwrap());
    let fs = &json["imageFilesystems"][0];
    assert_eq!(fs["fsId"], expected["imageFilesystems"][0]["fsId"]);
    assert_eq!(
        fs["usedBytes"],
        expected["imageFilesystems"][0]["usedBytes"]
    );
    assert!(
        fs["usedBytes"]["value"].is_string(),
        "uint64 as a string: {fs}"
    );
    let yaml = env.cri(&["imagefsinfo", "-o", "yaml"]).await.yaml();
    assert_eq!(yaml["imageFilesystems"][0]["fsId"], fs["fsId"]);
    assert_eq!(
        yaml["containerFilesystems"][0]["fsId"],
        json["containerFilesystems"][0]["fsId"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn debug_logs_to_stderr() {
    let env = Env::new().await;
    let out = env.cri(&["-D", "version"]).await;
    out.ok();
    assert!(out.stderr.contains("DEBUG"), "{out:#?}");
    let quiet = env.cri(&["version"]).await;
    assert_eq!(quiet.stderr, "");
}
