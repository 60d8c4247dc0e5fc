//! `run` (pod and container in one step), `completion`, and `ps`/`pods --watch`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use cri_api::v1::{ContainerState, PodSandboxState};

use crate::common::{BIN, Env, container_config, pod_config};

/// Writes a pod and a container config (JSON) running `cmd` with `image`.
fn configs(env: &Env, name: &str, image: &str, cmd: &[&str]) -> (String, String) {
    let pod = serde_json::to_string(
        &cri_api::json::to_value_with_defaults(&pod_config(name, "default", &env.log_dir()))
            .unwrap(),
    )
    .unwrap();
    let mut container = container_config(name, cmd);
    container.image.as_mut().unwrap().image = image.to_string();
    let container =
        serde_json::to_string(&cri_api::json::to_value_with_defaults(&container).unwrap()).unwrap();
    (
        env.write(&format!("{name}-container.json"), &container),
        env.write(&format!("{name}-pod.json"), &pod),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn run_starts_a_pod_and_a_container_pulling_only_when_needed() {
    let env = Env::new().await;
    let (container, pod) = configs(&env, "present", "busybox", &["sleep", "3600"]);
    let id = env
        .cri(&["run", &container, &pod])
        .await
        .ok()
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    let status = env
        .client()
        .container_status(&id, false)
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.state(), ContainerState::ContainerRunning);
    let pods = env.client().list_pod_sandbox(None).await.unwrap();
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].state(), PodSandboxState::SandboxReady);
    assert_eq!(env.fake.call_count("PullImage"), 0, "busybox was present");

    // A missing image is pulled, with the pod's config.
    let (container, pod) = configs(&env, "missing", "docker.io/library/alpine:3", &["true"]);
    env.cri(&["run", &container, &pod]).await.ok();
    assert_eq!(env.fake.call_count("PullImage"), 1);
    assert!(env.fake.has_image("docker.io/library/alpine:3"));

    // --with-pull pulls a present image again.
    let (container, pod) = configs(&env, "again", "busybox", &["true"]);
    env.cri(&["run", "--with-pull", &container, &pod])
        .await
        .ok();
    assert_eq!(env.fake.call_count("PullImage"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_run_leaves_no_pod_behind() {
    let env = Env::new().await;
    let (container, pod) = configs(&env, "nopull", "quay.io/never/pulled:1", &["true"]);
    let err = env.cri(&["run", "--no-pull", &container, &pod]).await;
    let line = err.failed();
    assert!(line.contains("quay.io/never/pulled:1"), "{line}");
    assert!(
        env.client()
            .list_pod_sandbox(None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(env.fake.call_count("PullImage"), 0);

    let both = env
        .cri(&["run", "--no-pull", "--with-pull", &container, &pod])
        .await;
    assert_eq!(both.code, 2, "{both:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn completion_scripts_for_each_shell() {
    // No runtime is needed: the endpoint does not exist.
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef cri"),
        ("fish", "complete -c cri"),
    ] {
        let out = crate::common::run(
            vec![
                "-r".into(),
                "unix:///nonexistent/cri.sock".into(),
                "completion".into(),
                shell.into(),
            ],
            Vec::new(),
        )
        .await;
        let script = out.ok();
        assert!(script.contains(marker), "{shell}: {script}");
        for verb in ["runp", "exec", "completion"] {
            assert!(script.contains(verb), "{shell} lacks {verb}");
        }
    }
    let wrong = crate::common::run(vec!["completion".into(), "tcsh".into()], Vec::new()).await;
    assert_eq!(wrong.code, 2);
}

/// `cri … VERB --watch` as a child; yields its stdout lines; killed on drop.
struct Watching {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Watching {
    fn start(env: &Env, args: &[&str]) -> Watching {
        let mut child = Command::new(BIN)
            .args(["-r", &env.endpoint])
            .args(args)
            .env_remove("CONTAINER_RUNTIME_ENDPOINT")
            .env_remove("CRI_CONFIG_FILE")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Watching { child, lines }
    }

    /// Waits (at most 10 s) for a line containing `needle`.
    async fn until(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    assert!(!left.is_zero(), "no line with {needle:?} within 10 s");
                    tokio::task::yield_now().await;
                }
                Err(e) => panic!("cri --watch ended: {e}"),
            }
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ps_watch_redraws_on_container_events() {
    let env = Env::new().await;
    let pod = env.pod("watched").await;
    // A long interval: only an event can explain a prompt redraw.
    let watch = Watching::start(&env, &["ps", "-a", "--watch", "--watch-interval", "60"]);
    watch.until("CONTAINER").await;
    let id = env
        .container(&pod, "appears", &["sleep", "3600"], true)
        .await;
    let row = watch.until(&id[..13]).await;
    assert!(row.contains("appears"), "{row}");
    env.client()
        .stop_container(&id, Duration::ZERO)
        .await
        .unwrap();
    let row = watch.until("Exited").await;
    assert!(row.contains(&id[..13]), "{row}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_watch_polls_when_the_runtime_has_no_events() {
    // A runtime without GetContainerEvents: the listing is polled.
    let env = Env::new().await;
    env.fake.fail_next(
        "GetContainerEvents",
        cri_testkit::cri_server::Error::unimplemented("GetContainerEvents"),
    );
    let watch = Watching::start(&env, &["pods", "--watch", "--watch-interval", "0.2"]);
    watch.until("POD ID").await;
    env.pod("polled").await;
    let row = watch.until("polled").await;
    assert!(row.contains("Ready"), "{row}");

    let bad = env.cri(&["pods", "--watch", "--watch-interval", "0"]).await;
    assert!(bad.failed().contains("--watch-interval"), "{bad:?}");
    let alone = env.cri(&["pods", "--watch-interval", "1"]).await;
    assert_eq!(alone.code, 2, "--watch-interval needs --watch: {alone:?}");
}
