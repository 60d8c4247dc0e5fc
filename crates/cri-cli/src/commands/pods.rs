//! `pods`, `inspectp`, `runp`, `stopp` and `rmp`: pod sandboxes.

use std::io::Write;

use cri_api::v1::{
    ListPodSandboxResponse, PodSandboxConfig, PodSandboxFilter, PodSandboxState,
    PodSandboxStateValue, PodSandboxStatusResponse,
};

use crate::cli::{IdsArgs, InspectArgs, ListFormat, PodsArgs, RemoveArgs, RunpArgs};
use crate::commands::{
    Ctx, for_each_id, keep_newest, labels, matches_pattern, pod_id, read_message,
};
use crate::error::{CliError, Result};
use crate::output::{self, Table, short_id, to_json};

/// Parses `--state` of `pods`.
pub(crate) fn parse_state(text: &str) -> Result<PodSandboxState> {
    match text.to_ascii_lowercase().replace(['_', '-'], "").as_str() {
        "ready" | "sandboxready" => Ok(PodSandboxState::SandboxReady),
        "notready" | "sandboxnotready" => Ok(PodSandboxState::SandboxNotready),
        _ => Err(CliError::msg(format!(
            "invalid pod state {text:?}: expected ready or notready"
        ))),
    }
}

/// `pods`.
pub(crate) async fn list(ctx: &mut Ctx<'_>, args: PodsArgs) -> Result<i32> {
    let state = args.state.as_deref().map(parse_state).transpose()?;
    let filter = PodSandboxFilter {
        id: args.id.clone().unwrap_or_default(),
        state: state.map(|s| PodSandboxStateValue { state: s as i32 }),
        label_selector: labels(&args.label)?,
    };
    let mut items = ctx.client.list_pod_sandbox(Some(filter)).await?;
    items.retain(|pod| {
        let metadata = pod.metadata.clone().unwrap_or_default();
        args.name
            .as_deref()
            .is_none_or(|p| matches_pattern(&metadata.name, p))
            && args
                .namespace
                .as_deref()
                .is_none_or(|p| matches_pattern(&metadata.namespace, p))
    });
    items.sort_by_key(|p| std::cmp::Reverse(p.created_at));
    keep_newest(&mut items, args.latest, args.last);

    let format = if args.quiet {
        ListFormat::Id
    } else {
        args.output
    };
    match format {
        ListFormat::Id => {
            for pod in &items {
                writeln!(ctx.out, "{}", pod.id)?;
            }
        }
        ListFormat::Json | ListFormat::Yaml => {
            let doc = to_json(&ListPodSandboxResponse { items })?;
            if let Some(document) = format.document() {
                output::write_document(ctx.out, &doc, document)?;
            }
        }
        ListFormat::Table => {
            let now = output::now_nanos();
            let mut table = Table::new(&[
                "POD ID",
                "CREATED",
                "STATE",
                "NAME",
                "NAMESPACE",
                "ATTEMPT",
                "RUNTIME",
            ]);
            for pod in &items {
                let metadata = pod.metadata.clone().unwrap_or_default();
                let runtime = if pod.runtime_handler.is_empty() {
                    "(default)".to_string()
                } else {
                    pod.runtime_handler.clone()
                };
                table.row(vec![
                    short_id(&pod.id, args.no_trunc),
                    output::age(pod.created_at, now),
                    output::pod_state(pod.state).to_string(),
                    metadata.name,
                    metadata.namespace,
                    metadata.attempt.to_string(),
                    runtime,
                ]);
            }
            table.write(ctx.out)?;
        }
    }
    Ok(0)
}

/// `inspectp`: the `PodSandboxStatusResponse` of each pod.
pub(crate) async fn inspect(ctx: &mut Ctx<'_>, args: InspectArgs) -> Result<i32> {
    let mut responses = Vec::new();
    for given in &args.ids {
        let id = pod_id(&ctx.client, given).await?;
        responses.push(ctx.client.pod_sandbox_status(id, !args.quiet).await?);
    }
    output::write_inspected(ctx.out, &responses, args.output, write_status_text)?;
    Ok(0)
}

fn write_status_text(out: &mut dyn Write, response: &PodSandboxStatusResponse) -> Result<()> {
    let status = response.status.clone().unwrap_or_default();
    let metadata = status.metadata.clone().unwrap_or_default();
    writeln!(out, "ID: {}", status.id)?;
    writeln!(out, "Name: {}", metadata.name)?;
    writeln!(out, "UID: {}", metadata.uid)?;
    writeln!(out, "Namespace: {}", metadata.namespace)?;
    writeln!(out, "Attempt: {}", metadata.attempt)?;
    writeln!(out, "Status: {}", status.state().as_str_name())?;
    writeln!(
        out,
        "Created: {}",
        cri_api::log::rfc3339_nanos(status.created_at)
    )?;
    if let Some(network) = &status.network {
        let mut ips = vec![network.ip.clone()];
        ips.extend(network.additional_ips.iter().map(|ip| ip.ip.clone()));
        ips.retain(|ip| !ip.is_empty());
        writeln!(out, "IP Addresses: {}", ips.join(", "))?;
    }
    let handler = if status.runtime_handler.is_empty() {
        "(default)"
    } else {
        &status.runtime_handler
    };
    writeln!(out, "Runtime: {handler}")?;
    write_map(out, "Labels", &status.labels)?;
    write_map(out, "Annotations", &status.annotations)?;
    writeln!(out, "Containers: {}", response.containers_statuses.len())?;
    Ok(())
}

/// Writes a map as sorted `key -> value` lines under a title (nothing when empty).
pub(crate) fn write_map(
    out: &mut dyn Write,
    title: &str,
    map: &std::collections::HashMap<String, String>,
) -> Result<()> {
    if map.is_empty() {
        return Ok(());
    }
    writeln!(out, "{title}:")?;
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort();
    for (key, value) in entries {
        writeln!(out, "    {key} -> {value}")?;
    }
    Ok(())
}

/// `runp`: runs a sandbox from a config file and prints its id.
pub(crate) async fn run(ctx: &mut Ctx<'_>, args: RunpArgs) -> Result<i32> {
    let config: PodSandboxConfig = read_message(&args.config, "pod sandbox config")?;
    let id = ctx.client.run_pod_sandbox(config, args.runtime).await?;
    writeln!(ctx.out, "{id}")?;
    Ok(0)
}

/// `stopp`: stops each sandbox and prints its id.
pub(crate) async fn stop(ctx: &mut Ctx<'_>, args: IdsArgs) -> Result<i32> {
    for_each_id(ctx, &args.ids, |client, given| async move {
        let id = pod_id(&client, &given).await?;
        client.stop_pod_sandbox(id.clone()).await?;
        Ok(id)
    })
    .await
}

/// `rmp`: removes each sandbox (a ready one only with `--force`) and prints its id.
pub(crate) async fn remove(ctx: &mut Ctx<'_>, args: RemoveArgs) -> Result<i32> {
    let ids = if args.all {
        let pods = ctx.client.list_pod_sandbox(None).await?;
        pods.into_iter().map(|p| p.id).collect()
    } else {
        args.ids
    };
    let force = args.force;
    for_each_id(ctx, &ids, |client, given| async move {
        let id = pod_id(&client, &given).await?;
        if !force {
            let status = client.pod_sandbox_status(id.clone(), false).await?;
            let ready = status
                .status
                .is_some_and(|s| s.state() == PodSandboxState::SandboxReady);
            if ready {
                return Err(CliError::msg(format!(
                    "pod sandbox {id} is ready; stop it first (cri stopp) or use --force"
                )));
            }
        }
        client.remove_pod_sandbox(id.clone()).await?;
        Ok(id)
    })
    .await
}

/// `port-forward POD LOCAL:REMOTE...`: listens locally and forwards each connection into the
/// sandbox through the runtime's streaming server, until interrupted.
pub(crate) async fn port_forward(
    ctx: &mut Ctx<'_>,
    args: crate::cli::PortForwardArgs,
) -> Result<i32> {
    let pod = pod_id(&ctx.client, &args.pod).await?;
    let mut pairs = Vec::new();
    for spec in &args.ports {
        let (local, remote) = spec
            .split_once(':')
            .unwrap_or((spec.as_str(), spec.as_str()));
        let parse = |text: &str| {
            text.parse::<u16>()
                .map_err(|_| CliError::msg(format!("{spec:?} is not LOCAL:REMOTE ports")))
        };
        let (local, remote) = (parse(local)?, parse(remote)?);
        if remote == 0 {
            return Err(CliError::msg(format!(
                "{spec:?}: the remote port cannot be 0"
            )));
        }
        pairs.push((local, remote));
    }
    let remotes: Vec<u16> = pairs.iter().map(|(_, r)| *r).collect();
    let forward = ctx
        .client
        .with_streaming_connector(args.tls.connector()?)
        .port_forward(&pod, &remotes, args.transport.into())
        .await?;
    let forward = std::sync::Arc::new(forward);
    let mut tasks = Vec::new();
    for (local, remote) in pairs {
        let listener = tokio::net::TcpListener::bind((args.address, local)).await?;
        let bound = listener.local_addr()?;
        writeln!(ctx.out, "Forwarding from {bound} -> {remote}")?;
        ctx.out.flush()?;
        let forward = forward.clone();
        tasks.push(tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let forward = forward.clone();
                tokio::spawn(async move {
                    match forward.connect(remote).await {
                        Ok(mut stream) => {
                            let _ = tokio::io::copy_bidirectional_with_sizes(
                                &mut tcp,
                                &mut stream,
                                cri_client::streaming::COPY_BUFFER,
                                cri_client::streaming::COPY_BUFFER,
                            )
                            .await;
                        }
                        Err(error) => {
                            tracing::warn!(%error, remote, "port-forward connection failed")
                        }
                    }
                });
            }
        }));
    }
    let _ = tokio::signal::ctrl_c().await;
    for task in tasks {
        task.abort();
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_states() {
        assert_eq!(parse_state("ready").unwrap(), PodSandboxState::SandboxReady);
        assert_eq!(
            parse_state("NotReady").unwrap(),
            PodSandboxState::SandboxNotready
        );
        assert_eq!(
            parse_state("SANDBOX_NOTREADY").unwrap(),
            PodSandboxState::SandboxNotready
        );
        assert!(parse_state("running").is_err());
    }
}
