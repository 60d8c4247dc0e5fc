//! The verbs, one module per group, and what they share: the context, id resolution,
//! filters and config files.

mod containers;
mod events;
mod images;
mod logs;
mod pods;
mod runtime;
mod stats;
mod watch;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use cri_api::v1::{ContainerFilter, PodSandboxFilter};
use cri_client::Client;
use serde::de::DeserializeOwned;

use crate::cli::Command;
use crate::error::{CliError, Result};
use watch::Listing;

/// What a verb runs with.
pub(crate) struct Ctx<'a> {
    /// The connected client.
    pub(crate) client: Client,
    /// Standard output.
    pub(crate) out: &'a mut dyn Write,
    /// Standard error.
    pub(crate) err: &'a mut dyn Write,
}

/// Runs one verb; returns the exit code.
pub(crate) async fn dispatch(command: Command, ctx: &mut Ctx<'_>) -> Result<i32> {
    match command {
        Command::Version { output } => runtime::version(ctx, output).await,
        Command::Info { output, quiet } => runtime::info(ctx, output, quiet).await,
        Command::RuntimeConfig { output } => runtime::runtime_config(ctx, output).await,
        Command::Pods(args) if args.watch => watch::run(ctx, Listing::Pods(args)).await,
        Command::Pods(args) => pods::list(ctx, args).await,
        Command::Inspectp(args) => pods::inspect(ctx, args).await,
        Command::Runp(args) => pods::run(ctx, args).await,
        Command::Stopp(args) => pods::stop(ctx, args).await,
        Command::Rmp(args) => pods::remove(ctx, args).await,
        Command::Ps(args) if args.watch => watch::run(ctx, Listing::Containers(args)).await,
        Command::Ps(args) => containers::list(ctx, args).await,
        Command::Inspect(args) => containers::inspect(ctx, args).await,
        Command::Create(args) => containers::create(ctx, args).await,
        Command::Run(args) => containers::run(ctx, args).await,
        Command::Start(args) => containers::start(ctx, args).await,
        Command::Stop(args) => containers::stop(ctx, args).await,
        Command::Rm(args) => containers::remove(ctx, args).await,
        Command::Exec(args) => containers::exec(ctx, args).await,
        Command::Attach(args) => containers::attach(ctx, args).await,
        Command::PortForward(args) => pods::port_forward(ctx, args).await,
        Command::Update(args) => containers::update(ctx, args).await,
        Command::Images(args) => images::list(ctx, args).await,
        Command::Inspecti(args) => images::inspect(ctx, args).await,
        Command::Pull(args) => images::pull(ctx, args).await,
        Command::Rmi(args) => images::remove(ctx, args).await,
        Command::Imagefsinfo { output } => images::fs_info(ctx, output).await,
        Command::Logs(args) => logs::logs(ctx, args).await,
        Command::Stats(args) => stats::containers(ctx, args).await,
        Command::Statsp(args) => stats::pods(ctx, args).await,
        Command::Events { output } => events::stream(ctx, output).await,
        // Answered before connecting (see `crate::run`).
        Command::Completion { .. } => Ok(0),
    }
}

/// Picks the one id among `candidates` that `given` names: itself, or the only one it
/// prefixes.
fn pick_id<'a>(
    kind: &str,
    given: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Result<String> {
    if given.is_empty() {
        return Err(CliError::msg(format!("an empty {kind} id matches nothing")));
    }
    let matching: Vec<&str> = candidates
        .into_iter()
        .filter(|id| id.starts_with(given))
        .collect();
    if matching.contains(&given) {
        return Ok(given.to_string());
    }
    match matching.as_slice() {
        [] => Err(CliError::msg(format!("no {kind} with id {given:?}"))),
        [one] => Ok((*one).to_string()),
        many => Err(CliError::msg(format!(
            "{kind} id prefix {given:?} is ambiguous: it matches {} {kind}s",
            many.len()
        ))),
    }
}

/// The full id of the container `given` names (an id or a unique prefix).
pub(crate) async fn container_id(client: &Client, given: &str) -> Result<String> {
    let filter = ContainerFilter {
        id: given.to_string(),
        ..Default::default()
    };
    let containers = client.list_containers(Some(filter)).await?;
    pick_id("container", given, containers.iter().map(|c| c.id.as_str()))
}

/// The full id of the pod sandbox `given` names (an id or a unique prefix).
pub(crate) async fn pod_id(client: &Client, given: &str) -> Result<String> {
    let filter = PodSandboxFilter {
        id: given.to_string(),
        ..Default::default()
    };
    let pods = client.list_pod_sandbox(Some(filter)).await?;
    pick_id("pod sandbox", given, pods.iter().map(|p| p.id.as_str()))
}

/// `key=value` labels as a selector.
pub(crate) fn labels(pairs: &[String]) -> Result<HashMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            _ => Err(CliError::msg(format!(
                "invalid label {pair:?}: expected key=value"
            ))),
        })
        .collect()
}

/// Whether `text` matches `pattern`: a substring, anchored by a leading `^` and/or a
/// trailing `$` (the regex forms people type most).
pub(crate) fn matches_pattern(text: &str, pattern: &str) -> bool {
    let (start, rest) = match pattern.strip_prefix('^') {
        Some(rest) => (true, rest),
        None => (false, pattern),
    };
    let (end, needle) = match rest.strip_suffix('$') {
        Some(needle) => (true, needle),
        None => (false, rest),
    };
    match (start, end) {
        (true, true) => text == needle,
        (true, false) => text.starts_with(needle),
        (false, true) => text.ends_with(needle),
        (false, false) => text.contains(needle),
    }
}

/// Keeps the newest `latest`/`last` items of a list sorted newest first.
pub(crate) fn keep_newest<T>(items: &mut Vec<T>, latest: bool, last: Option<usize>) {
    let keep = match (latest, last) {
        (true, _) => Some(1),
        (false, Some(n)) => Some(n),
        (false, None) => None,
    };
    if let Some(keep) = keep {
        items.truncate(keep);
    }
}

/// Reads a CRI message from a crictl-style config file: JSON or YAML, snake_case or
/// camelCase keys. YAML is read into a JSON value first, then into the message.
pub(crate) fn read_message<M: DeserializeOwned>(path: &Path, what: &str) -> Result<M> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| CliError::msg(format!("cannot read {what} {}: {err}", path.display())))?;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let yaml = || -> std::result::Result<serde_json::Value, String> {
        serde_norway::from_str(&text).map_err(|err| err.to_string())
    };
    let value = match extension.as_deref() {
        Some("json") => serde_json::from_str(&text).map_err(|err| err.to_string()),
        Some("yaml" | "yml") => yaml(),
        _ => serde_json::from_str(&text).or_else(|_| yaml()),
    }
    .map_err(|err| CliError::msg(format!("cannot parse {what} {}: {err}", path.display())))?;
    serde_json::from_value(value)
        .map_err(|err| CliError::msg(format!("invalid {what} {}: {err}", path.display())))
}

/// Runs `action` for every id, printing each id that succeeded and one `cri:` line for each
/// that failed; returns 1 when any failed.
pub(crate) async fn for_each_id<F, Fut>(
    ctx: &mut Ctx<'_>,
    ids: &[String],
    mut action: F,
) -> Result<i32>
where
    F: FnMut(Client, String) -> Fut,
    Fut: std::future::Future<Output = Result<String>>,
{
    let mut failed = false;
    for id in ids {
        match action(ctx.client.clone(), id.clone()).await {
            Ok(done) => writeln!(ctx.out, "{done}")?,
            Err(err) if err.is_broken_pipe() => return Err(err),
            Err(err) => {
                failed = true;
                writeln!(ctx.err, "cri: {err}")?;
            }
        }
    }
    Ok(i32::from(failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_resolve_exactly_or_by_unique_prefix() {
        let ids = ["abc123", "abd456", "abc"];
        assert_eq!(
            pick_id("container", "abc", ids).unwrap(),
            "abc",
            "exact wins"
        );
        assert_eq!(pick_id("container", "abd", ids).unwrap(), "abd456");
        let err = pick_id("container", "ab", ids).unwrap_err().to_string();
        assert!(
            err.contains("ambiguous") && err.contains("3 containers"),
            "{err}"
        );
        let err = pick_id("container", "zz", ids).unwrap_err().to_string();
        assert_eq!(err, "no container with id \"zz\"");
        assert!(pick_id("container", "", ids).is_err());
    }

    #[test]
    fn label_selectors() {
        let selector = labels(&["app=web".into(), "tier=".into()]).unwrap();
        assert_eq!(selector["app"], "web");
        assert_eq!(selector["tier"], "");
        assert!(labels(&["novalue".into()]).is_err());
        assert!(labels(&["=x".into()]).is_err());
    }

    #[test]
    fn name_patterns() {
        assert!(matches_pattern("nginx-web", "web"));
        assert!(matches_pattern("nginx-web", "^nginx"));
        assert!(!matches_pattern("nginx-web", "^web"));
        assert!(matches_pattern("nginx-web", "web$"));
        assert!(matches_pattern("nginx", "^nginx$"));
        assert!(!matches_pattern("nginx-web", "^nginx$"));
        assert!(matches_pattern("anything", ""));
    }

    #[test]
    fn newest_items() {
        let mut items = vec![3, 2, 1];
        keep_newest(&mut items, false, None);
        assert_eq!(items, [3, 2, 1]);
        keep_newest(&mut items, false, Some(2));
        assert_eq!(items, [3, 2]);
        keep_newest(&mut items, true, Some(2));
        assert_eq!(items, [3]);
    }

    #[test]
    fn config_files_in_json_and_yaml() {
        use cri_api::v1::PodSandboxConfig;
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("pod.json");
        std::fs::write(&json, r#"{"metadata": {"name": "p", "namespace": "ns", "uid": "u", "attempt": 1}, "log_directory": "/tmp/x"}"#).unwrap();
        let pod: PodSandboxConfig = read_message(&json, "pod config").unwrap();
        assert_eq!(pod.metadata.unwrap().attempt, 1);
        assert_eq!(pod.log_directory, "/tmp/x");

        let yaml = dir.path().join("pod.yaml");
        std::fs::write(&yaml, "metadata:\n  name: p\n  uid: u\nlinux:\n  security_context:\n    namespace_options:\n      network: 2\n").unwrap();
        let pod: PodSandboxConfig = read_message(&yaml, "pod config").unwrap();
        assert_eq!(pod.metadata.unwrap().name, "p");

        std::fs::write(&yaml, "metadata: [").unwrap();
        let err = read_message::<PodSandboxConfig>(&yaml, "pod config").unwrap_err();
        assert!(
            err.to_string().starts_with("cannot parse pod config"),
            "{err}"
        );
        std::fs::write(&json, r#"{"no_such_field": 1}"#).unwrap();
        let err = read_message::<PodSandboxConfig>(&json, "pod config").unwrap_err();
        assert!(err.to_string().starts_with("invalid pod config"), "{err}");
    }
}
