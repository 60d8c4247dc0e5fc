//! Failures read as one `cri: ` line with exit code 1, never a panic.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::common::{BIN, Env};

#[tokio::test(flavor = "multi_thread")]
async fn unknown_ids_are_readable_errors() {
    let env = Env::new().await;
    for verb in [
        &["inspect", "nope"][..],
        &["start", "nope"],
        &["stop", "nope"],
        &["rm", "nope"],
        &["logs", "nope"],
        &["exec", "--sync", "nope", "true"],
        &["update", "--cpu-shares", "2", "nope"],
        &["stats", "nope"],
    ] {
        let out = env.cri(verb).await;
        assert_eq!(
            out.failed(),
            "cri: no container with id \"nope\"",
            "{verb:?}"
        );
        assert_eq!(out.stdout, "", "{verb:?}");
    }
    for verb in [
        &["inspectp", "nope"][..],
        &["stopp", "nope"],
        &["rmp", "nope"],
        &["statsp", "nope"],
    ] {
        let out = env.cri(verb).await;
        assert_eq!(
            out.failed(),
            "cri: no pod sandbox with id \"nope\"",
            "{verb:?}"
        );
    }
    let out = env.cri(&["ps", "--pod", "nope"]).await;
    assert_eq!(out.failed(), "cri: no pod sandbox with id \"nope\"");
}

#[tokio::test(flavor = "multi_thread")]
async fn runtime_errors_keep_method_message_and_code() {
    let env = Env::new().await;
    env.fake.fail_next(
        "ListPodSandbox",
        cri_testkit::cri_server::Error::unavailable("injected outage"),
    );
    let out = env.cri(&["pods"]).await;
    assert_eq!(
        out.failed(),
        "cri: ListPodSandbox: injected outage (Unavailable)"
    );

    let pod = env.pod("p").await;
    let out = env
        .cri(&[
            "create",
            &pod,
            &env.write(
                "c.json",
                r#"{"metadata": {"name": "c"}, "image": {"image": "alpine"}}"#,
            ),
            &env.write("p.json", "{}"),
        ])
        .await;
    let err = out.failed();
    assert!(
        err.starts_with("cri: CreateContainer: ") && err.ends_with("(NotFound)"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_and_endpoint_errors() {
    let env = Env::new().await;
    let out = env.cri(&["ps", "--bogus"]).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--bogus"), "{out:#?}");
    let out = env.cri(&["inspect"]).await;
    assert_eq!(out.code, 2, "ids are required");

    let out = crate::common::run(
        vec!["-r".into(), "tcp://127.0.0.1:1".into(), "version".into()],
        vec![],
    )
    .await;
    assert!(out.failed().contains("invalid endpoint"), "{out:#?}");
    let help = crate::common::run(vec!["help".into(), "logs".into()], vec![]).await;
    assert!(help.ok().contains("--timestamps"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_pipe_ends_quietly() {
    let env = Env::new().await;
    for n in 0..1500 {
        env.fake
            .add_image(&format!("registry.example/team/image-number-{n}:v1"));
    }
    let endpoint = env.endpoint.clone();
    let config = env.write("c.yaml", "");
    let (status, stderr, first) = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(BIN)
            .args(["-r", &endpoint, "--config", &config, "images"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        drop(reader); // like `| head -1`
        let output = child.wait_with_output().unwrap();
        (
            output.status,
            String::from_utf8_lossy(&output.stderr).into_owned(),
            first,
        )
    })
    .await
    .unwrap();
    assert!(first.starts_with("IMAGE"), "{first}");
    assert!(status.success(), "{status:?}: {stderr}");
    assert_eq!(stderr, "", "no panic, no error line");
}
