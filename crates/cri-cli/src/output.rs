//! Rendering: proto3 JSON and YAML documents, aligned tables, truncated ids, human sizes,
//! ages and durations.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::error::{CliError, Result};

/// How many characters of an id a table shows unless `--no-trunc` is given (crictl's).
pub(crate) const TRUNCATED_ID_LEN: usize = 13;

/// A message as crictl prints it: proto3 JSON with every field, defaults included.
pub(crate) fn to_json<M>(message: &M) -> Result<Value>
where
    M: serde::Serialize + prost::Name,
{
    Ok(cri_api::json::to_value_with_defaults(message)?)
}

/// Prints the responses of an inspect verb: one JSON/YAML document list, or each response as
/// text (`text`) with a blank line between them.
pub(crate) fn write_inspected<R>(
    out: &mut dyn Write,
    responses: &[R],
    format: crate::cli::DocFormat,
    text: impl Fn(&mut dyn Write, &R) -> Result<()>,
) -> Result<()>
where
    R: serde::Serialize + prost::Name,
{
    if let Some(document) = format.document() {
        let docs = responses.iter().map(to_json).collect::<Result<Vec<_>>>()?;
        return write_documents(out, &docs, document);
    }
    for (i, response) in responses.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        text(out, response)?;
    }
    Ok(())
}

/// The document formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Document {
    /// Pretty-printed JSON (two-space indent).
    Json,
    /// YAML.
    Yaml,
}

/// Writes `value` as one document.
pub(crate) fn write_document(out: &mut dyn Write, value: &Value, format: Document) -> Result<()> {
    match format {
        Document::Json => {
            let text = serde_json::to_string_pretty(value)?;
            writeln!(out, "{text}")?;
        }
        Document::Yaml => {
            let text = serde_norway::to_string(value)
                .map_err(|err| CliError::msg(format!("cannot render YAML: {err}")))?;
            out.write_all(text.as_bytes())?;
        }
    }
    Ok(())
}

/// Writes several documents: JSON ones one after the other, YAML ones separated by `---`.
pub(crate) fn write_documents(
    out: &mut dyn Write,
    values: &[Value],
    format: Document,
) -> Result<()> {
    for (i, value) in values.iter().enumerate() {
        if i > 0 && format == Document::Yaml {
            writeln!(out, "---")?;
        }
        write_document(out, value, format)?;
    }
    Ok(())
}

/// A table with a header row, aligned like crictl's (Go tabwriter: minimum width 20,
/// padding 3, spaces).
#[derive(Debug)]
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub(crate) fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| (*h).to_string()).collect()],
        }
    }

    /// Adds a row; tabs and newlines inside cells become spaces.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        let cells = cells
            .into_iter()
            .map(|c| c.replace(['\t', '\n', '\r'], " "))
            .collect();
        self.rows.push(cells);
    }

    /// The aligned text, one line per row.
    pub(crate) fn render(&self) -> String {
        let mut text = String::new();
        for row in &self.rows {
            text.push_str(&row.join("\t"));
            text.push('\n');
        }
        // Go's minimum width includes the padding; this crate's does not: 17 + 3 = 20.
        let mut writer = tabwriter::TabWriter::new(Vec::new())
            .minwidth(17)
            .padding(3);
        // Writing to a Vec cannot fail.
        let _ = writer.write_all(text.as_bytes());
        let bytes = writer.into_inner().unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Writes the aligned table.
    pub(crate) fn write(&self, out: &mut dyn Write) -> Result<()> {
        out.write_all(self.render().as_bytes())?;
        Ok(())
    }
}

/// `id` as a table shows it: without a `sha256:` prefix and cut to 13 characters, unless
/// `no_trunc`.
pub(crate) fn short_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        return id.to_string();
    }
    let bare = id.strip_prefix("sha256:").unwrap_or(id);
    bare.chars().take(TRUNCATED_ID_LEN).collect()
}

/// A size in decimal units with three significant digits, like crictl's `1.02MB`, `740kB`.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    #[allow(clippy::cast_precision_loss)] // three significant digits are shown
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 999.5 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let decimals = if value >= 99.95 {
        0
    } else if value >= 9.995 {
        1
    } else {
        2
    };
    let mut number = format!("{value:.decimals$}");
    if number.contains('.') {
        number = number
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string();
    }
    format!("{number}{}", UNITS[unit])
}

/// Nanoseconds since the Unix epoch, now.
pub(crate) fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// How long ago `created_at` (Unix nanoseconds) was, in words: `5 seconds ago`,
/// `About a minute ago`, `3 hours ago`.
pub(crate) fn age(created_at: i64, now: i64) -> String {
    if created_at <= 0 {
        return "Unknown".to_string();
    }
    let elapsed = Duration::from_nanos(u64::try_from(now - created_at).unwrap_or(0));
    format!("{} ago", human_duration(elapsed))
}

/// A rough, readable length of time (`Less than a second`, `42 seconds`, `About an hour`,
/// `3 days`).
pub(crate) fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let minutes = secs / 60;
    let hours = (secs + 1800) / 3600;
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..60 => format!("{secs} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 14 => format!("{} days", hours / 24),
        _ if hours < 24 * 60 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 730 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

/// A duration as the `--timeout` flag accepts it: `2m`, `1m30s`, `500ms`.
pub(crate) fn duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let mut text = String::new();
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        text.push_str(&format!("{h}h"));
    }
    if m > 0 {
        text.push_str(&format!("{m}m"));
    }
    if s > 0 {
        text.push_str(&format!("{s}s"));
    }
    let ms = d.subsec_millis();
    if ms > 0 {
        text.push_str(&format!("{ms}ms"));
    }
    if text.is_empty() {
        text = format!("{}ns", d.subsec_nanos());
    }
    text
}

/// `CONTAINER_RUNNING` → `Running`, as crictl's tables show states.
pub(crate) fn container_state(state: i32) -> &'static str {
    use cri_api::v1::ContainerState;
    match ContainerState::try_from(state) {
        Ok(ContainerState::ContainerCreated) => "Created",
        Ok(ContainerState::ContainerRunning) => "Running",
        Ok(ContainerState::ContainerExited) => "Exited",
        _ => "Unknown",
    }
}

/// `SANDBOX_READY` → `Ready`, `SANDBOX_NOTREADY` → `NotReady`.
pub(crate) fn pod_state(state: i32) -> &'static str {
    use cri_api::v1::PodSandboxState;
    match PodSandboxState::try_from(state) {
        Ok(PodSandboxState::SandboxReady) => "Ready",
        _ => "NotReady",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_the_widest_cell() {
        let mut table = Table::new(&["ID", "NAME"]);
        table.row(vec!["a".into(), "first".into()]);
        table.row(vec!["a-much-longer-identifier".into(), "second".into()]);
        let text = table.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let column = lines[0].find("NAME").unwrap();
        assert_eq!(lines[1].find("first"), Some(column));
        assert_eq!(lines[2].find("second"), Some(column));
        assert_eq!(column, "a-much-longer-identifier".len() + 3);
        // Narrow columns are at least 20 wide (crictl's minimum).
        let mut narrow = Table::new(&["A", "B"]);
        narrow.row(vec!["x".into(), "y".into()]);
        assert_eq!(narrow.render().lines().next().unwrap().find('B'), Some(20));
    }

    #[test]
    fn cells_stay_on_one_line() {
        let mut table = Table::new(&["A", "B"]);
        table.row(vec!["x\ty".into(), "multi\nline".into()]);
        assert_eq!(table.render().lines().count(), 2);
    }

    #[test]
    fn ids_are_cut_to_thirteen() {
        let id = "0123456789abcdef0123";
        assert_eq!(short_id(id, false), "0123456789abc");
        assert_eq!(short_id(id, true), id);
        assert_eq!(short_id("sha256:abcdef0123456789", false), "abcdef0123456");
        assert_eq!(short_id("short", false), "short");
    }

    #[test]
    fn sizes_read_like_crictl() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_000), "1kB");
        assert_eq!(human_size(740_200), "740kB");
        assert_eq!(human_size(1_024_000), "1.02MB");
        assert_eq!(human_size(1_200_000), "1.2MB");
        assert_eq!(human_size(12_340_000), "12.3MB");
        assert_eq!(human_size(4_270_000_000), "4.27GB");
        assert_eq!(human_size(999_999), "1MB");
    }

    #[test]
    fn ages_are_words() {
        let second = 1_000_000_000;
        let now = 10_000 * 86_400 * second;
        assert_eq!(age(now, now), "Less than a second ago");
        assert_eq!(age(now - second, now), "1 second ago");
        assert_eq!(age(now - 42 * second, now), "42 seconds ago");
        assert_eq!(age(now - 90 * second, now), "About a minute ago");
        assert_eq!(age(now - 30 * 60 * second, now), "30 minutes ago");
        assert_eq!(age(now - 3600 * second, now), "About an hour ago");
        assert_eq!(age(now - 5 * 3600 * second, now), "5 hours ago");
        assert_eq!(age(now - 3 * 86_400 * second, now), "3 days ago");
        assert_eq!(age(now - 21 * 86_400 * second, now), "3 weeks ago");
        assert_eq!(age(now - 90 * 86_400 * second, now), "3 months ago");
        assert_eq!(age(now - 800 * 86_400 * second, now), "2 years ago");
        assert_eq!(age(0, now), "Unknown");
        assert_eq!(
            age(now + second, now),
            "Less than a second ago",
            "clock skew"
        );
    }

    #[test]
    fn durations_read_like_the_flag() {
        assert_eq!(duration(Duration::from_secs(120)), "2m");
        assert_eq!(duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(duration(Duration::from_secs(7200)), "2h");
        assert_eq!(duration(Duration::ZERO), "0s");
    }

    #[test]
    fn states_are_short() {
        use cri_api::v1::{ContainerState, PodSandboxState};
        assert_eq!(
            container_state(ContainerState::ContainerRunning as i32),
            "Running"
        );
        assert_eq!(
            container_state(ContainerState::ContainerExited as i32),
            "Exited"
        );
        assert_eq!(container_state(99), "Unknown");
        assert_eq!(pod_state(PodSandboxState::SandboxReady as i32), "Ready");
        assert_eq!(
            pod_state(PodSandboxState::SandboxNotready as i32),
            "NotReady"
        );
    }

    #[test]
    fn documents_render() {
        let value = serde_json::json!({"a": {"b": "1"}});
        let mut out = Vec::new();
        write_documents(&mut out, &[value.clone(), value.clone()], Document::Yaml).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("---").count(), 1, "{text}");
        let mut out = Vec::new();
        write_document(&mut out, &value, Document::Json).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\n  \"a\": {\n    \"b\": \"1\"\n  }\n}\n"
        );
    }
}
