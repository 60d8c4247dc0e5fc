//! Containers: lifecycle, attributes, filters, exit codes, logs, exec.

use std::time::Duration;

use cri_client::cri_api::log::{Record, Tag};
use cri_client::cri_api::v1::*;

use super::case;
use crate::conformance::ctx::{check, expect_eq, skip};
use crate::conformance::{Case, Ctx, Stop};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "container",
            "lifecycle",
            "create → CREATED, start → RUNNING, stop → EXITED, remove → NotFound",
            lifecycle
        ),
        case!(
            "container",
            "attributes",
            "metadata, image, labels, annotations and log path come back unchanged",
            attributes
        ),
        case!(
            "container",
            "list-filters",
            "ListContainers filters by id, state, sandbox and labels",
            filters
        ),
        case!(
            "container",
            "exit-code",
            "a command's exit code and finish time are reported",
            exit_code
        ),
        case!(
            "container",
            "logs",
            "stdout reaches log_directory/log_path as CRI log records",
            logs
        ),
        case!(
            "container",
            "exec-sync",
            "ExecSync returns stdout, stderr and the exit code",
            exec_sync
        ),
        case!(
            "container",
            "exec-sync-timeout",
            "ExecSync past its timeout answers DeadlineExceeded",
            exec_sync_timeout
        ),
        case!(
            "container",
            "reopen-log",
            "ReopenContainerLog succeeds on a running container",
            reopen_log
        ),
    ]
}

async fn lifecycle(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let id = ctx
        .create_container(&sandbox, "life", ctx.sleeper())
        .await?;
    let status = ctx.container_status(&id).await?;
    expect_eq(
        "state after CreateContainer",
        ContainerState::ContainerCreated,
        status.state(),
    )?;
    check(
        status.created_at > 0,
        "created_at is set",
        "> 0",
        status.created_at,
    )?;

    ctx.client().start_container(&id).await?;
    let status = ctx.container_status(&id).await?;
    expect_eq(
        "state after StartContainer",
        ContainerState::ContainerRunning,
        status.state(),
    )?;
    check(
        status.started_at >= status.created_at,
        "started_at ≥ created_at",
        status.created_at,
        status.started_at,
    )?;

    ctx.client()
        .stop_container(&id, Duration::from_secs(2))
        .await?;
    let status = ctx.container_status(&id).await?;
    expect_eq(
        "state after StopContainer",
        ContainerState::ContainerExited,
        status.state(),
    )?;
    check(
        status.finished_at >= status.started_at,
        "finished_at ≥ started_at",
        status.started_at,
        status.finished_at,
    )?;

    ctx.client().remove_container(&id).await?;
    let gone = ctx.client().container_status(&id, false).await;
    check(
        gone.as_ref().is_err_and(cri_client::Error::is_not_found),
        "ContainerStatus after RemoveContainer",
        "NotFound",
        gone.map(|_| "a status").map_err(|e| e.to_string()),
    )
}

async fn attributes(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let config = ctx.container_config("attrs", ctx.sleeper());
    let id = ctx
        .create_container(&sandbox, "attrs", ctx.sleeper())
        .await?;
    let status = ctx.container_status(&id).await?;
    expect_eq(
        "metadata",
        config.metadata.as_ref(),
        status.metadata.as_ref(),
    )?;
    for (k, v) in &config.labels {
        expect_eq(&format!("label {k}"), Some(v), status.labels.get(k))?;
    }
    for (k, v) in &config.annotations {
        expect_eq(
            &format!("annotation {k}"),
            Some(v),
            status.annotations.get(k),
        )?;
    }
    check(
        !status.image_ref.is_empty(),
        "image_ref is set",
        "non-empty",
        &status.image_ref,
    )?;
    let expected_log = std::path::Path::new(&sandbox.1.log_directory).join(&config.log_path);
    expect_eq(
        "log_path",
        expected_log.display().to_string(),
        status.log_path,
    )?;
    let listed = ctx
        .client()
        .list_containers(Some(ContainerFilter {
            id: id.clone(),
            ..Default::default()
        }))
        .await?;
    let item = listed.iter().find(|c| c.id == id);
    check(item.is_some(), "the container is listed", &id, &listed)?;
    let item = item.expect("checked");
    expect_eq(
        "listed pod_sandbox_id",
        sandbox.0.as_str(),
        item.pod_sandbox_id.as_str(),
    )?;
    expect_eq(
        "listed metadata",
        config.metadata.as_ref(),
        item.metadata.as_ref(),
    )
}

async fn filters(ctx: Ctx) -> Result<(), Stop> {
    let a = ctx.run_sandbox("a").await?;
    let b = ctx.run_sandbox("b").await?;
    let running = ctx.start_container(&a, "running", ctx.sleeper()).await?;
    let created = ctx.create_container(&a, "created", ctx.sleeper()).await?;
    let other = ctx.create_container(&b, "other", ctx.sleeper()).await?;
    let ids = |list: Vec<Container>| {
        let mut ids: Vec<String> = list.into_iter().map(|c| c.id).collect();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let mine = ContainerFilter {
        label_selector: ctx.labels(),
        ..Default::default()
    };
    expect_eq(
        "filter by labels",
        sorted(vec![running.clone(), created.clone(), other.clone()]),
        ids(ctx.client().list_containers(Some(mine)).await?),
    )?;
    let by_sandbox = ContainerFilter {
        pod_sandbox_id: a.0.clone(),
        ..Default::default()
    };
    expect_eq(
        "filter by sandbox",
        sorted(vec![running.clone(), created.clone()]),
        ids(ctx.client().list_containers(Some(by_sandbox)).await?),
    )?;
    let by_state = ContainerFilter {
        state: Some(ContainerStateValue {
            state: ContainerState::ContainerRunning as i32,
        }),
        label_selector: ctx.labels(),
        ..Default::default()
    };
    expect_eq(
        "filter by state RUNNING",
        vec![running],
        ids(ctx.client().list_containers(Some(by_state)).await?),
    )?;
    let by_id = ContainerFilter {
        id: other.clone(),
        ..Default::default()
    };
    expect_eq(
        "filter by id",
        vec![other],
        ids(ctx.client().list_containers(Some(by_id)).await?),
    )
}

async fn exit_code(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let failing = ctx
        .start_container(&sandbox, "fails", &["sh", "-c", "exit 3"])
        .await?;
    let status = ctx.wait_exited(&failing).await?;
    expect_eq("exit code of `exit 3`", 3, status.exit_code)?;
    check(
        status.finished_at > 0,
        "finished_at is set",
        "> 0",
        status.finished_at,
    )?;
    let ok = ctx.start_container(&sandbox, "succeeds", &["true"]).await?;
    let status = ctx.wait_exited(&ok).await?;
    expect_eq("exit code of `true`", 0, status.exit_code)
}

async fn logs(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let id = ctx
        .start_container(
            &sandbox,
            "talker",
            &["sh", "-c", "echo hello-cri-testkit; echo second line"],
        )
        .await?;
    let status = ctx.wait_exited(&id).await?;
    let path = status.log_path.clone();
    check(!path.is_empty(), "log_path is reported", "non-empty", &path)?;
    let text = ctx
        .wait_for(
            "the log file has both lines",
            Duration::from_secs(10),
            || {
                let path = path.clone();
                async move {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    Ok((text.lines().count() >= 2).then_some(text))
                }
            },
        )
        .await?;
    let mut contents = Vec::new();
    for line in text.lines() {
        let record = Record::parse(line);
        check(
            record.is_ok(),
            "each line is a CRI log record",
            "<time> <stream> <F|P> <text>",
            line,
        )?;
        let record = record.expect("checked");
        expect_eq("stream", "stdout", record.stream)?;
        expect_eq("tag", Tag::Full, record.tag)?;
        contents.push(record.content.to_string());
    }
    expect_eq(
        "log contents",
        vec!["hello-cri-testkit".to_string(), "second line".to_string()],
        contents,
    )
}

async fn exec_sync(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let id = ctx.start_container(&sandbox, "exec", ctx.sleeper()).await?;
    let out = ctx
        .client()
        .exec_sync(&id, ["echo", "exec-output"], Duration::from_secs(10))
        .await?;
    expect_eq(
        "stdout",
        "exec-output\n",
        String::from_utf8_lossy(&out.stdout).as_ref(),
    )?;
    expect_eq("exit code", 0, out.exit_code)?;
    let out = ctx
        .client()
        .exec_sync(
            &id,
            ["sh", "-c", "echo to-stderr >&2; exit 5"],
            Duration::from_secs(10),
        )
        .await?;
    expect_eq("exit code of `exit 5`", 5, out.exit_code)?;
    expect_eq(
        "stderr",
        "to-stderr\n",
        String::from_utf8_lossy(&out.stderr).as_ref(),
    )
}

async fn exec_sync_timeout(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let id = ctx.start_container(&sandbox, "slow", ctx.sleeper()).await?;
    let result = ctx
        .client()
        .exec_sync(&id, ["sleep", "30"], Duration::from_secs(1))
        .await;
    match result {
        Err(cri_client::Error::ExecSyncTimeout { .. }) => Ok(()),
        Err(e) if e.is_unimplemented() => skip(format!("ExecSync is not implemented: {e}")),
        other => check(
            false,
            "ExecSync of `sleep 30` with a 1 s timeout",
            "DeadlineExceeded",
            other.map(|o| o.exit_code).map_err(|e| e.to_string()),
        ),
    }
}

async fn reopen_log(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let id = ctx
        .start_container(&sandbox, "reopen", ctx.sleeper())
        .await?;
    ctx.client().reopen_container_log(&id).await?;
    Ok(())
}
