//! `logs`: CRI log files, `--tail`, `--timestamps`, partial lines, stderr and `--follow`.

use std::time::Duration;

use cri_api::log::{Tag, format_record};

use crate::common::{Env, wait_for};

/// A created (not started) container whose log file the test writes itself.
async fn container_with_log(env: &Env, records: &[(i64, &str, Tag, &str)]) -> String {
    let pod = env.pod("logs").await;
    let id = env.container(&pod, "writer", &[], false).await;
    let status = env
        .client()
        .container_status(&id, false)
        .await
        .unwrap()
        .status
        .unwrap();
    let text: String = records
        .iter()
        .map(|(t, stream, tag, content)| format_record(*t, stream, *tag, content))
        .collect();
    std::fs::write(&status.log_path, text).unwrap();
    id
}

const SECOND: i64 = 1_000_000_000;

#[tokio::test(flavor = "multi_thread")]
async fn logs_split_streams_join_partials_and_tail() {
    let env = Env::new().await;
    let id = container_with_log(
        &env,
        &[
            (SECOND, "stdout", Tag::Full, "one"),
            (2 * SECOND, "stderr", Tag::Full, "oops"),
            (3 * SECOND, "stdout", Tag::Partial, "tw"),
            (4 * SECOND, "stdout", Tag::Partial, "o-"),
            (5 * SECOND, "stdout", Tag::Full, "joined"),
            (6 * SECOND, "stdout", Tag::Full, "three"),
        ],
    )
    .await;

    let out = env.cri(&["logs", &id[..6]]).await;
    assert_eq!(out.ok(), "one\ntwo-joined\nthree\n");
    assert_eq!(out.stderr, "oops\n", "stderr records go to stderr");

    let tail = env.cri(&["logs", "--tail", "2", &id]).await;
    assert_eq!(tail.ok(), "two-joined\nthree\n");
    assert_eq!(
        tail.stderr, "",
        "the stderr line is older than the last two"
    );
    let none = env.cri(&["logs", "--tail", "0", &id]).await;
    assert_eq!((none.ok(), none.stderr.as_str()), ("", ""));

    let stamped = env.cri(&["logs", "-t", "--tail", "1", &id]).await;
    assert_eq!(stamped.ok(), "1970-01-01T00:00:06.000000000Z three\n");
    let stamped = env.cri(&["logs", "--timestamps", &id]).await;
    assert!(
        stamped
            .ok()
            .contains("1970-01-01T00:00:03.000000000Z two-joined\n"),
        "a joined line has its first record's time: {}",
        stamped.stdout
    );
    assert_eq!(stamped.stderr, "1970-01-01T00:00:02.000000000Z oops\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_of_a_real_run_and_a_trailing_partial() {
    let env = Env::new().await;
    let pod = env.pod("p").await;
    let id = env
        .container(
            &pod,
            "app",
            &[
                "sh",
                "-c",
                "echo -n par; echo tial; echo bad >&2; echo -n end",
            ],
            true,
        )
        .await;
    wait_for(|| async { env.cri(&["logs", &id]).await.stdout.ends_with("end") }).await;
    let out = env.cri(&["logs", &id]).await;
    assert_eq!(
        out.ok(),
        "partial\nend",
        "the unfinished last line is printed as is"
    );
    assert_eq!(out.stderr, "bad\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_follow_until_the_container_exits() {
    let env = Env::new().await;
    let pod = env.pod("p").await;
    let id = env
        .container(
            &pod,
            "app",
            &["sh", "-c", "echo first; sleep 1; echo second; sleep 0.5"],
            true,
        )
        .await;
    let started = std::time::Instant::now();
    let out = env.cri(&["logs", "-f", &id]).await;
    assert_eq!(out.ok(), "first\nsecond\n");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it waited for the second line"
    );

    let tail = env.cri(&["logs", "-f", "--tail", "1", &id]).await;
    assert_eq!(
        tail.ok(),
        "second\n",
        "an exited container ends --follow at once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_need_a_log_path() {
    let env = Env::new().await;
    let pod = env
        .client()
        .run_pod_sandbox(
            crate::common::pod_config("nolog", "default", std::path::Path::new("")),
            "",
        )
        .await
        .unwrap();
    let id = env.container(&pod, "app", &[], false).await;
    let err = env.cri(&["logs", &id]).await;
    assert!(err.failed().contains("has no log file"), "{err:#?}");
}
