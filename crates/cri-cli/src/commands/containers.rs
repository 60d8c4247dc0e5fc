//! `ps`, `inspect`, `create`, `start`, `stop`, `rm`, `exec` and `update`: containers.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use cri_api::v1::{
    ContainerConfig, ContainerFilter, ContainerState, ContainerStateValue, ContainerStatusResponse,
    ImageSpec, LinuxContainerResources, ListContainersResponse, PodSandboxConfig, PullImageRequest,
    UpdateContainerResourcesRequest,
};

use crate::cli::{
    AttachArgs, CreateArgs, ExecArgs, IdsArgs, InspectArgs, ListFormat, PsArgs, RemoveArgs,
    RunArgs, StopArgs, UpdateArgs,
};
use crate::commands::pods::write_map;
use crate::commands::{
    Ctx, container_id, for_each_id, keep_newest, labels, matches_pattern, pod_id, read_message,
};
use crate::error::{CliError, Result};
use crate::output::{self, Table, short_id, to_json};

/// Parses `--state` of `ps`.
pub(crate) fn parse_state(text: &str) -> Result<ContainerState> {
    let lower = text.to_ascii_lowercase();
    match lower.strip_prefix("container_").unwrap_or(&lower) {
        "created" => Ok(ContainerState::ContainerCreated),
        "running" => Ok(ContainerState::ContainerRunning),
        "exited" => Ok(ContainerState::ContainerExited),
        "unknown" => Ok(ContainerState::ContainerUnknown),
        _ => Err(CliError::msg(format!(
            "invalid container state {text:?}: expected created, running, exited or unknown"
        ))),
    }
}

/// `ps`.
pub(crate) async fn list(ctx: &mut Ctx<'_>, args: PsArgs) -> Result<i32> {
    let any_state = args.all || args.latest || args.last.is_some();
    let state = match (&args.state, any_state) {
        (Some(state), _) => Some(parse_state(state)?),
        (None, true) => None,
        (None, false) => Some(ContainerState::ContainerRunning),
    };
    let pod_sandbox_id = match &args.pod {
        Some(pod) => pod_id(&ctx.client, pod).await?,
        None => String::new(),
    };
    let filter = ContainerFilter {
        id: args.id.clone().unwrap_or_default(),
        state: state.map(|s| ContainerStateValue { state: s as i32 }),
        pod_sandbox_id,
        label_selector: labels(&args.label)?,
    };
    let mut containers = ctx.client.list_containers(Some(filter)).await?;
    if let Some(pattern) = &args.name {
        containers
            .retain(|c| matches_pattern(&c.metadata.clone().unwrap_or_default().name, pattern));
    }
    containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    keep_newest(&mut containers, args.latest, args.last);

    let format = if args.quiet {
        ListFormat::Id
    } else {
        args.output
    };
    match format {
        ListFormat::Id => {
            for container in &containers {
                writeln!(ctx.out, "{}", container.id)?;
            }
        }
        ListFormat::Json | ListFormat::Yaml => {
            let doc = to_json(&ListContainersResponse { containers })?;
            if let Some(document) = format.document() {
                output::write_document(ctx.out, &doc, document)?;
            }
        }
        ListFormat::Table => {
            let pod_names: HashMap<String, String> = ctx
                .client
                .list_pod_sandbox(None)
                .await?
                .into_iter()
                .map(|p| (p.id, p.metadata.unwrap_or_default().name))
                .collect();
            let now = output::now_nanos();
            let mut table = Table::new(&[
                "CONTAINER",
                "IMAGE",
                "CREATED",
                "STATE",
                "NAME",
                "ATTEMPT",
                "POD ID",
                "POD",
            ]);
            for container in &containers {
                let metadata = container.metadata.clone().unwrap_or_default();
                let image = container.image.clone().unwrap_or_default().image;
                let image = if image.starts_with("sha256:") {
                    short_id(&image, args.no_trunc)
                } else {
                    image
                };
                table.row(vec![
                    short_id(&container.id, args.no_trunc),
                    image,
                    output::age(container.created_at, now),
                    output::container_state(container.state).to_string(),
                    metadata.name,
                    metadata.attempt.to_string(),
                    short_id(&container.pod_sandbox_id, args.no_trunc),
                    pod_names
                        .get(&container.pod_sandbox_id)
                        .cloned()
                        .unwrap_or_default(),
                ]);
            }
            table.write(ctx.out)?;
        }
    }
    Ok(0)
}

/// `inspect`: the `ContainerStatusResponse` of each container.
pub(crate) async fn inspect(ctx: &mut Ctx<'_>, args: InspectArgs) -> Result<i32> {
    let mut responses = Vec::new();
    for given in &args.ids {
        let id = container_id(&ctx.client, given).await?;
        responses.push(ctx.client.container_status(id, !args.quiet).await?);
    }
    output::write_inspected(ctx.out, &responses, args.output, write_status_text)?;
    Ok(0)
}

fn write_status_text(out: &mut dyn Write, response: &ContainerStatusResponse) -> Result<()> {
    let status = response.status.clone().unwrap_or_default();
    let metadata = status.metadata.clone().unwrap_or_default();
    let time = cri_api::log::rfc3339_nanos;
    writeln!(out, "ID: {}", status.id)?;
    writeln!(out, "Name: {}", metadata.name)?;
    writeln!(out, "Attempt: {}", metadata.attempt)?;
    writeln!(out, "State: {}", status.state().as_str_name())?;
    writeln!(out, "Created: {}", time(status.created_at))?;
    if status.started_at > 0 {
        writeln!(out, "Started: {}", time(status.started_at))?;
    }
    if status.finished_at > 0 {
        writeln!(out, "Finished: {}", time(status.finished_at))?;
        writeln!(out, "Exit Code: {}", status.exit_code)?;
    }
    if !status.reason.is_empty() {
        writeln!(out, "Reason: {}", status.reason)?;
    }
    if !status.message.is_empty() {
        writeln!(out, "Message: {}", status.message)?;
    }
    writeln!(
        out,
        "Image: {}",
        status.image.clone().unwrap_or_default().image
    )?;
    writeln!(out, "Image Ref: {}", status.image_ref)?;
    if !status.log_path.is_empty() {
        writeln!(out, "Log Path: {}", status.log_path)?;
    }
    write_map(out, "Labels", &status.labels)?;
    write_map(out, "Annotations", &status.annotations)?;
    Ok(())
}

/// `create`: creates a container in a pod from config files and prints its id.
pub(crate) async fn create(ctx: &mut Ctx<'_>, args: CreateArgs) -> Result<i32> {
    let pod = pod_id(&ctx.client, &args.pod).await?;
    let config: ContainerConfig = read_message(&args.container_config, "container config")?;
    let pod_config: PodSandboxConfig = read_message(&args.pod_config, "pod sandbox config")?;
    if args.with_pull {
        let image = config.image.clone().unwrap_or_default().image;
        if image.is_empty() {
            return Err(CliError::msg("the container config names no image to pull"));
        }
        ctx.client
            .call(PullImageRequest {
                image: Some(ImageSpec {
                    image,
                    ..Default::default()
                }),
                auth: None,
                sandbox_config: Some(pod_config.clone()),
            })
            .await?;
    }
    let id = ctx
        .client
        .create_container(pod, config, Some(pod_config))
        .await?;
    writeln!(ctx.out, "{id}")?;
    Ok(0)
}

/// `run`: a pod and a container in it in one step. The image is pulled when missing (always
/// with `--with-pull`, never with `--no-pull`). When a step after the pod fails, the pod is
/// stopped and removed again, so a failed `run` leaves nothing behind.
pub(crate) async fn run(ctx: &mut Ctx<'_>, args: RunArgs) -> Result<i32> {
    let config: ContainerConfig = read_message(&args.container_config, "container config")?;
    let pod_config: PodSandboxConfig = read_message(&args.pod_config, "pod sandbox config")?;
    let image = config.image.clone().unwrap_or_default().image;
    if image.is_empty() {
        return Err(CliError::msg("the container config names no image"));
    }
    let pod = ctx
        .client
        .run_pod_sandbox(pod_config.clone(), args.runtime)
        .await?;
    let started = async {
        let pull = if args.with_pull {
            true
        } else {
            !args.no_pull && ctx.client.image_status(&image).await?.is_none()
        };
        if pull {
            ctx.client
                .call(PullImageRequest {
                    image: Some(ImageSpec {
                        image: image.clone(),
                        ..Default::default()
                    }),
                    auth: None,
                    sandbox_config: Some(pod_config.clone()),
                })
                .await?;
        }
        let id = ctx
            .client
            .create_container(&pod, config, Some(pod_config))
            .await?;
        ctx.client.start_container(&id).await?;
        Ok::<_, CliError>(id)
    }
    .await;
    match started {
        Ok(id) => {
            writeln!(ctx.out, "{id}")?;
            Ok(0)
        }
        Err(err) => {
            // Best effort: the error worth reporting is the one that stopped the run.
            let _ = ctx.client.stop_pod_sandbox(&pod).await;
            let _ = ctx.client.remove_pod_sandbox(&pod).await;
            Err(err)
        }
    }
}

/// `start`: starts each container and prints its id.
pub(crate) async fn start(ctx: &mut Ctx<'_>, args: IdsArgs) -> Result<i32> {
    for_each_id(ctx, &args.ids, |client, given| async move {
        let id = container_id(&client, &given).await?;
        client.start_container(id.clone()).await?;
        Ok(id)
    })
    .await
}

/// `stop`: stops each container (with `--timeout` seconds of grace) and prints its id.
pub(crate) async fn stop(ctx: &mut Ctx<'_>, args: StopArgs) -> Result<i32> {
    let grace = Duration::from_secs(args.timeout);
    for_each_id(ctx, &args.ids, |client, given| async move {
        let id = container_id(&client, &given).await?;
        client.stop_container(id.clone(), grace).await?;
        Ok(id)
    })
    .await
}

/// `rm`: removes each container (a running one only with `--force`) and prints its id.
pub(crate) async fn remove(ctx: &mut Ctx<'_>, args: RemoveArgs) -> Result<i32> {
    let ids = if args.all {
        let containers = ctx.client.list_containers(None).await?;
        containers.into_iter().map(|c| c.id).collect()
    } else {
        args.ids
    };
    let force = args.force;
    for_each_id(ctx, &ids, |client, given| async move {
        let id = container_id(&client, &given).await?;
        let status = client.container_status(id.clone(), false).await?;
        let running = status
            .status
            .is_some_and(|s| s.state() == ContainerState::ContainerRunning);
        if running {
            if !force {
                return Err(CliError::msg(format!(
                    "container {id} is running; stop it first (cri stop) or use --force"
                )));
            }
            client.stop_container(id.clone(), Duration::ZERO).await?;
        }
        client.remove_container(id.clone()).await?;
        Ok(id)
    })
    .await
}

/// `exec`: with `--sync`, runs the command with ExecSync; otherwise opens a streaming
/// session (SPDY or WebSocket) with stdin when `-i` and a terminal when `-t`. Copies the
/// output and returns the command's exit code.
pub(crate) async fn exec(ctx: &mut Ctx<'_>, args: ExecArgs) -> Result<i32> {
    let id = container_id(&ctx.client, &args.container).await?;
    if !args.sync {
        let client = ctx.client.with_streaming_connector(args.tls.connector()?);
        let transport = args.transport.into();
        return stream_session(ctx, args.interactive, args.tty, move |streams| async move {
            client.exec(id, args.cmd, transport, streams).await
        })
        .await;
    }
    if args.interactive || args.tty {
        return Err(CliError::msg(
            "-i/--interactive and -t/--tty need a streaming session; drop --sync to get one",
        ));
    }
    let output = ctx
        .client
        .exec_sync(id, args.cmd, Duration::from_secs(args.timeout))
        .await?;
    ctx.out.write_all(&output.stdout)?;
    ctx.out.flush()?;
    ctx.err.write_all(&output.stderr)?;
    ctx.err.flush()?;
    Ok(output.exit_code)
}

/// `attach`: a streaming session with the container's main process.
pub(crate) async fn attach(ctx: &mut Ctx<'_>, args: AttachArgs) -> Result<i32> {
    let id = container_id(&ctx.client, &args.container).await?;
    let client = ctx.client.with_streaming_connector(args.tls.connector()?);
    let transport = args.transport.into();
    stream_session(ctx, args.interactive, args.tty, move |streams| async move {
        client.attach(id, transport, streams).await
    })
    .await
}

/// Runs a streaming session whose output is copied to this command's stdout and stderr
/// (which are plain `Write`s, so the copy runs here, alongside the session).
async fn stream_session<F, Fut>(
    ctx: &mut Ctx<'_>,
    interactive: bool,
    tty: bool,
    run: F,
) -> Result<i32>
where
    F: FnOnce(cri_client::streaming::Streams) -> Fut,
    Fut: std::future::Future<Output = cri_client::Result<i32>>,
{
    use tokio::io::AsyncReadExt;

    // A terminal session: the local terminal goes raw while it runs (so keys like ^C reach
    // the container) and its size follows the window. Restored when `_raw` drops.
    let resize = if tty {
        crate::terminal::watch_size()
    } else {
        None
    };
    let _raw = if tty && interactive {
        crate::terminal::RawMode::enable(rustix::stdio::stdin())?
    } else {
        None
    };
    let (out_writer, mut out_reader) = tokio::io::duplex(4 * cri_client::streaming::COPY_BUFFER);
    let (err_writer, mut err_reader) = tokio::io::duplex(4 * cri_client::streaming::COPY_BUFFER);
    let streams = cri_client::streaming::Streams {
        stdin: interactive.then(|| Box::pin(tokio::io::stdin()) as cri_client::streaming::Reader),
        stdout: Some(Box::pin(out_writer)),
        stderr: (!tty).then(|| Box::pin(err_writer) as cri_client::streaming::Writer),
        tty,
        resize,
    };
    let session = run(streams);
    let out = &mut *ctx.out;
    let err = &mut *ctx.err;
    let copy_out = async {
        let mut buf = vec![0u8; cri_client::streaming::COPY_BUFFER];
        loop {
            match out_reader.read(&mut buf).await {
                Ok(0) | Err(_) => return Ok::<_, std::io::Error>(()),
                Ok(n) => {
                    out.write_all(&buf[..n])?;
                    out.flush()?;
                }
            }
        }
    };
    let copy_err = async {
        let mut buf = vec![0u8; cri_client::streaming::COPY_BUFFER];
        loop {
            match err_reader.read(&mut buf).await {
                Ok(0) | Err(_) => return Ok::<_, std::io::Error>(()),
                Ok(n) => {
                    err.write_all(&buf[..n])?;
                    err.flush()?;
                }
            }
        }
    };
    let (code, wrote_out, wrote_err) = tokio::join!(session, copy_out, copy_err);
    wrote_out?;
    wrote_err?;
    Ok(code?)
}

/// `update`: changes the Linux resources of each container and prints its id.
pub(crate) async fn update(ctx: &mut Ctx<'_>, args: UpdateArgs) -> Result<i32> {
    let resources = LinuxContainerResources {
        cpu_period: args.cpu_period.unwrap_or_default(),
        cpu_quota: args.cpu_quota.unwrap_or_default(),
        cpu_shares: args.cpu_shares.unwrap_or_default(),
        memory_limit_in_bytes: args.memory.unwrap_or_default(),
        cpuset_cpus: args.cpuset_cpus.clone().unwrap_or_default(),
        cpuset_mems: args.cpuset_mems.clone().unwrap_or_default(),
        ..Default::default()
    };
    if resources == LinuxContainerResources::default() {
        return Err(CliError::msg(
            "nothing to update: give at least one of --cpu-shares, --cpu-quota, --cpu-period, \
             --memory, --cpuset-cpus, --cpuset-mems",
        ));
    }
    for_each_id(ctx, &args.ids, |client, given| {
        let resources = resources.clone();
        async move {
            let id = container_id(&client, &given).await?;
            client
                .call(UpdateContainerResourcesRequest {
                    container_id: id.clone(),
                    linux: Some(resources),
                    ..Default::default()
                })
                .await?;
            Ok(id)
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_states() {
        assert_eq!(
            parse_state("running").unwrap(),
            ContainerState::ContainerRunning
        );
        assert_eq!(
            parse_state("Exited").unwrap(),
            ContainerState::ContainerExited
        );
        assert_eq!(
            parse_state("CONTAINER_CREATED").unwrap(),
            ContainerState::ContainerCreated
        );
        assert_eq!(
            parse_state("unknown").unwrap(),
            ContainerState::ContainerUnknown
        );
        assert!(parse_state("ready").is_err());
    }
}
