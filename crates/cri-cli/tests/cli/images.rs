//! `images`, `inspecti`, `pull` and `rmi`.

use crate::common::{Env, assert_aligned, json_of};

#[tokio::test(flavor = "multi_thread")]
async fn images_table_is_aligned_with_sizes_and_short_ids() {
    let env = Env::new().await;
    env.fake.add_image("registry.k8s.io/pause:3.10");
    let busybox = env.client().image_status("busybox").await.unwrap().unwrap();

    let out = env.cri(&["images"]).await;
    let table = out.ok();
    assert_aligned(table, &["IMAGE", "TAG", "IMAGE ID", "SIZE"]);
    let lines = out.lines();
    assert_eq!(lines.len(), 3, "{table}");
    let row = lines.iter().find(|l| l.contains("busybox")).unwrap();
    let short = &busybox.id[7..20];
    assert!(row.starts_with("docker.io/library/busybox   "), "{row}");
    assert!(row.contains(" latest "), "{row}");
    assert!(row.contains(&format!(" {short} ")), "{short} in {row}");
    assert!(!row.contains("sha256:"), "{row}");
    assert!(row.trim_end().ends_with("MB"), "human size: {row}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("registry.k8s.io/pause") && l.contains(" 3.10 "))
    );

    let full = env.cri(&["images", "--no-trunc"]).await;
    assert!(full.ok().contains(&busybox.id), "{}", full.stdout);
    let digests = env.cri(&["images", "--digests"]).await;
    assert_aligned(
        digests.ok(),
        &["IMAGE", "TAG", "DIGEST", "IMAGE ID", "SIZE"],
    );
    let digest = busybox.repo_digests[0].split_once("@sha256:").unwrap().1;
    assert!(digests.stdout.contains(&digest[..13]), "{}", digests.stdout);

    let filtered = env.cri(&["images", "busybox"]).await;
    assert_eq!(filtered.lines().len(), 2);

    let quiet = env.cri(&["images", "-q"]).await;
    assert_eq!(quiet.lines().len(), 2);
    assert!(quiet.lines().contains(&busybox.id.as_str()));
    assert_eq!(env.cri(&["images", "-o", "id"]).await.ok(), quiet.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn images_json_and_yaml_are_the_list_response() {
    let env = Env::new().await;
    let mut images = env.client().list_images(None).await.unwrap();
    images.sort_by(|a, b| a.repo_tags.first().cmp(&b.repo_tags.first()));
    let expected = json_of(&cri_api::v1::ListImagesResponse { images });
    let json = env.cri(&["images", "-o", "json"]).await.json();
    assert_eq!(json, expected);
    assert!(json["images"][0]["size"].is_string(), "uint64 as a string");
    assert_eq!(env.cri(&["images", "-o", "yaml"]).await.yaml(), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn inspecti_prints_the_status_response() {
    let env = Env::new().await;
    let json = env.cri(&["inspecti", "busybox"]).await.json();
    let expected = env
        .client()
        .call(cri_api::v1::ImageStatusRequest {
            image: Some(cri_api::v1::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            verbose: true,
        })
        .await
        .unwrap();
    assert_eq!(json, json_of(&expected));
    assert_eq!(
        json["image"]["repoTags"][0],
        "docker.io/library/busybox:latest"
    );
    assert!(json["info"]["info"].is_string());
    assert_eq!(
        env.cri(&["inspecti", "-o", "yaml", "busybox"]).await.yaml(),
        json
    );
    let text = env.cri(&["inspecti", "-o", "table", "busybox"]).await;
    assert!(
        text.ok()
            .contains("Tag: docker.io/library/busybox:latest\n"),
        "{text:#?}"
    );

    let err = env.cri(&["inspecti", "alpine"]).await;
    assert_eq!(err.failed(), "cri: no such image \"alpine\"");
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_prints_the_image_reference() {
    let env = Env::new().await;
    let out = env.cri(&["pull", "alpine:3.20"]).await;
    let image = env
        .client()
        .image_status("alpine:3.20")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.ok(), format!("Image is up to date for {}\n", image.id));

    env.cri(&["pull", "--creds", "me:secret", "quay.io/app/one"])
        .await
        .ok();
    env.cri(&["pull", "--auth", "bWU6c2VjcmV0", "quay.io/app/two"])
        .await
        .ok();
    let pulls: Vec<_> = env
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.method == "PullImage")
        .collect();
    assert_eq!(pulls.len(), 3);
    assert!(
        pulls[1].request.contains("username: \"me\""),
        "{}",
        pulls[1].request
    );
    assert!(
        pulls[1].request.contains("password: <redacted>"),
        "{}",
        pulls[1].request
    );
    assert!(
        pulls[2].request.contains("auth: <redacted>"),
        "{}",
        pulls[2].request
    );

    let pod = env.write(
        "pod.yaml",
        "metadata:\n  name: p\n  namespace: n\n  uid: u\n",
    );
    env.cri(&["pull", "--pod-config", &pod, "nginx"]).await.ok();
    assert!(
        env.fake
            .calls()
            .last()
            .unwrap()
            .request
            .contains("sandbox_config: Some")
    );

    assert!(
        env.cri(&["pull", "--creds", "nopassword", "x"])
            .await
            .failed()
            .contains("USERNAME:PASSWORD")
    );
    env.fake.fail_next(
        "PullImage",
        cri_testkit::cri_server::Error::RegistryUnavailable("dial tcp: connection refused".into()),
    );
    let err = env.cri(&["pull", "nginx:1"]).await;
    assert!(
        err.failed()
            .contains("RegistryUnavailable: dial tcp: connection refused"),
        "{err:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rmi_resolves_names_and_removes_several() {
    let env = Env::new().await;
    let pause = env.fake.add_image("registry.k8s.io/pause:3.10");
    env.fake.add_image("alpine");

    let out = env.cri(&["rmi", "busybox", &pause[7..19]]).await;
    assert_eq!(
        out.ok(),
        "Deleted: docker.io/library/busybox:latest\nDeleted: registry.k8s.io/pause:3.10\n"
    );
    assert!(!env.fake.has_image("busybox") && !env.fake.has_image(&pause));

    let out = env.cri(&["rmi", "nope", "alpine"]).await;
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr, "cri: no such image \"nope\"\n");
    assert_eq!(out.stdout, "Deleted: docker.io/library/alpine:latest\n");

    env.fake.add_image("a");
    env.fake.add_image("b");
    assert_eq!(env.cri(&["rmi", "--all"]).await.ok().lines().count(), 2);
    assert!(env.client().list_images(None).await.unwrap().is_empty());
}
