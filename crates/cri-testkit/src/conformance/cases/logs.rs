//! Container logs: the CRI log format, partial lines, reopening after rotation.

use std::path::Path;
use std::time::Duration;

use cri_client::cri_api::log::{Record, Tag};

use super::case;
use crate::conformance::ctx::{check, expect_eq};
use crate::conformance::{Case, Ctx, Stop};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "logs",
            "cri-format",
            "every log line is `<RFC3339Nano> <stdout|stderr> <F|P> <text>`, with both streams",
            cri_format
        ),
        case!(
            "logs",
            "partial-lines",
            "a 40000-byte line is logged as P records then an F record that concatenate to it",
            partial_lines
        ),
        case!(
            "logs",
            "reopen-rotation",
            "after the log file is renamed, ReopenContainerLog sends new output to a new file at log_path",
            reopen_rotation
        ),
    ]
}

/// Whether `t` is an RFC 3339 timestamp as Go's RFC3339Nano writes it:
/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (1 to 9 fraction digits).
fn is_rfc3339_nano(t: &str) -> bool {
    let b = t.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    let head = digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && b.get(10) == Some(&b'T')
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19);
    if !head {
        return false;
    }
    let mut rest = &t[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=9).contains(&n) {
            return false;
        }
        rest = &fraction[n..];
    }
    rest == "Z"
        || (rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':'
            && rest[1..3]
                .bytes()
                .chain(rest[4..6].bytes())
                .all(|c| c.is_ascii_digit()))
}

/// The log file's text once `ready` holds for it (10 s at most).
async fn wait_for_log(
    ctx: &Ctx,
    path: &Path,
    what: &str,
    ready: impl Fn(&str) -> bool,
) -> Result<String, Stop> {
    ctx.wait_for(what, Duration::from_secs(10), || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let done = ready(&text);
        async move { Ok(done.then_some(text)) }
    })
    .await
}

/// Parses every line, failing on the first that is not a CRI log record.
fn records(text: &str) -> Result<Vec<Record<'_>>, Stop> {
    text.lines()
        .map(|line| {
            Record::parse(line).map_err(|e| {
                Stop::Fail(crate::conformance::Failure {
                    check: "each log line is a CRI log record".into(),
                    expected: "<RFC3339Nano> <stdout|stderr> <F|P> <text>".into(),
                    got: format!("{e}: {line:?}"),
                })
            })
        })
        .collect()
}

async fn cri_format(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let id = ctx
        .start_container(
            &sandbox,
            "both",
            &[
                "sh",
                "-c",
                "echo out-one; echo err-one >&2; echo out-two; echo err-two >&2",
            ],
        )
        .await?;
    let status = ctx.wait_exited(&id).await?;
    let path = status.log_path.clone();
    check(!path.is_empty(), "log_path is reported", "non-empty", &path)?;
    let text = wait_for_log(&ctx, Path::new(&path), "all four lines are logged", |t| {
        t.lines().count() >= 4
    })
    .await?;
    let records = records(&text)?;
    for record in &records {
        check(
            is_rfc3339_nano(record.timestamp),
            "the timestamp is RFC3339Nano",
            "YYYY-MM-DDTHH:MM:SS[.n]Z or ±HH:MM",
            record.timestamp,
        )?;
        expect_eq("tag of a newline-terminated line", Tag::Full, record.tag)?;
    }
    let of = |stream: &str| -> Vec<&str> {
        records
            .iter()
            .filter(|r| r.stream == stream)
            .map(|r| r.content)
            .collect()
    };
    expect_eq("stdout records", vec!["out-one", "out-two"], of("stdout"))?;
    expect_eq("stderr records", vec!["err-one", "err-two"], of("stderr"))
}

/// The long line: 40000 bytes, no two consecutive 10-byte blocks alike so that a lost or
/// repeated chunk shows.
fn long_line() -> String {
    (0..4000)
        .map(|i| format!("{:09}-", i * 7 % 100_000))
        .collect()
}

async fn partial_lines(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let line = long_line();
    let script = format!("echo {line}; echo after-long-line");
    let id = ctx
        .start_container(&sandbox, "long", &["sh", "-c", &script])
        .await?;
    let status = ctx.wait_exited(&id).await?;
    let path = status.log_path.clone();
    check(!path.is_empty(), "log_path is reported", "non-empty", &path)?;
    let text = wait_for_log(&ctx, Path::new(&path), "the line after is logged", |t| {
        t.contains("after-long-line")
    })
    .await?;
    let records: Vec<Record<'_>> = records(&text)?
        .into_iter()
        .filter(|r| r.stream == "stdout")
        .collect();
    let tags: Vec<Tag> = records.iter().map(|r| r.tag).collect();
    let full = tags.iter().position(|t| *t == Tag::Full);
    check(
        full.is_some_and(|i| i > 0),
        "records of the 40000-byte line",
        "one or more P records, then an F record",
        format!(
            "tags {tags:?}, lengths {:?}",
            records.iter().map(|r| r.content.len()).collect::<Vec<_>>()
        ),
    )?;
    let full = full.expect("checked");
    let joined: String = records[..=full].iter().map(|r| r.content).collect();
    check(
        joined == line,
        "the P records and the F record concatenated",
        "the 40000-byte line",
        format!(
            "{} bytes, first difference at byte {:?}",
            joined.len(),
            joined.bytes().zip(line.bytes()).position(|(a, b)| a != b)
        ),
    )?;
    expect_eq(
        "the record after the long line",
        Some(("after-long-line", Tag::Full)),
        records.get(full + 1).map(|r| (r.content, r.tag)),
    )
}

async fn reopen_rotation(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let id = ctx
        .start_container(
            &sandbox,
            "rotated",
            &[
                "sh",
                "-c",
                "echo before-rotation; sleep 4; echo after-rotation; sleep 3600",
            ],
        )
        .await?;
    let path = std::path::PathBuf::from(ctx.container_status(&id).await?.log_path);
    check(
        !path.as_os_str().is_empty(),
        "log_path is reported",
        "non-empty",
        &path,
    )?;
    wait_for_log(&ctx, &path, "the first line is logged", |t| {
        t.contains("before-rotation")
    })
    .await?;
    let rotated = path.with_extension("log.1");
    std::fs::rename(&path, &rotated).map_err(|e| {
        Stop::Skip(format!(
            "cannot rename {} on the host (the suite must run on the runtime's host): {e}",
            path.display()
        ))
    })?;
    ctx.client().reopen_container_log(&id).await?;
    let new = wait_for_log(
        &ctx,
        &path,
        "output after ReopenContainerLog lands in a new file at log_path",
        |t| t.contains("after-rotation"),
    )
    .await?;
    let contents = |text: &str| -> Result<Vec<String>, Stop> {
        Ok(records(text)?
            .iter()
            .map(|r| r.content.to_string())
            .collect())
    };
    expect_eq(
        "records in the new file",
        vec!["after-rotation".to_string()],
        contents(&new)?,
    )?;
    let old = std::fs::read_to_string(&rotated).unwrap_or_default();
    expect_eq(
        "records in the renamed file",
        vec!["before-rotation".to_string()],
        contents(&old)?,
    )
}
