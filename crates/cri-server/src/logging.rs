//! Log set-up for runtime binaries (feature `logging`): what a daemon's logs need to be read
//! by people on a terminal and by log shippers from a file.
//!
//! - `text`: one human-readable line per event; colour only when stderr is a terminal and
//!   `NO_COLOR` is unset or empty, so a log redirected to a file has no escape sequences;
//! - `json`: one JSON object per line (timestamp, level, target, fields, span), for shippers.
//!
//! The level filter comes from `RUST_LOG` (default `info`). Text logs format fields with
//! [`TextFields`]: the same text as `tracing-subscriber`'s default, at a fraction of the cost
//! for the plain fields every call's span carries.
//!
//! ```no_run
//! use cri_server::logging::{self, LogFormat};
//!
//! let format: LogFormat = "json".parse().unwrap();
//! logging::init(format);
//! tracing::info!(socket = "/run/my-runtime.sock", "serving");
//! ```

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;

use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, coloured only on a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The names [`LogFormat`] parses from, for command-line help.
    pub const NAMES: [&'static str; 2] = ["text", "json"];
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?} (expected one of: {})",
                Self::NAMES.join(", ")
            )),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// Whether text logs get colour: only on a terminal, and never when `NO_COLOR` holds a
/// non-empty value (the `NO_COLOR` convention).
///
/// ```
/// use cri_server::logging::use_colour;
///
/// assert!(use_colour(true, None));
/// assert!(!use_colour(false, None), "a file or a pipe");
/// assert!(!use_colour(true, Some("1")));
/// assert!(use_colour(true, Some("")), "an empty NO_COLOR does not count");
/// ```
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<&str>) -> bool {
    stderr_is_terminal && no_color.is_none_or(str::is_empty)
}

/// Installs a global subscriber writing to stderr in `format`, filtered by `RUST_LOG`
/// (default `info`). Does nothing when a subscriber is already installed.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Fails only when a subscriber is already installed; the first one stays.
    let _ = match format {
        LogFormat::Text => {
            let no_color = std::env::var("NO_COLOR").ok();
            builder
                .fmt_fields(TextFields)
                .with_ansi(use_colour(
                    std::io::stderr().is_terminal(),
                    no_color.as_deref(),
                ))
                .try_init()
        }
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

/// The field formatter of text logs: writes exactly what `tracing-subscriber`'s
/// [`DefaultFields`] writes, without its cost for plain fields.
///
/// `DefaultFields` formats every field through `fmt` machinery into a `String` that grows as it
/// goes; a span's fields are formatted when the span is created and again at each record, every
/// time, whether a line is ever written or not. That was most of what a call's span cost
/// `cri-server` (`docs/performance.md`). This formatter writes fields whose text is plain
/// (strings of printable ASCII without `"` or `\`, integers, booleans; not the `message`) into a
/// buffer on the stack and hands them over in one write. Anything else, and colour output, is
/// left to `DefaultFields`, so the text is the same in every case.
///
/// [`init`] installs it for [`LogFormat::Text`]; a runtime building its own subscriber can use
/// it the same way:
///
/// ```
/// use cri_server::logging::TextFields;
///
/// let subscriber = tracing_subscriber::fmt()
///     .fmt_fields(TextFields)
///     .with_writer(std::io::sink)
///     .finish();
/// tracing::subscriber::with_default(subscriber, || {
///     let span = tracing::info_span!("cri", method = "Version", request_id = "1a-2");
///     let _entered = span.enter();
///     tracing::info!(attempt = 1, "ok");
/// });
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct TextFields;

impl<'writer> FormatFields<'writer> for TextFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        if !writer.has_ansi_escapes() {
            let mut plain = PlainFields::default();
            fields.record(&mut plain);
            if let Some(text) = plain.text() {
                return writer.write_str(text);
            }
        }
        DefaultFields::new().format_fields(writer, fields)
    }
}

/// Room for the plain fields of one span or event; more goes to `DefaultFields`.
const PLAIN_CAPACITY: usize = 256;

/// Collects fields as `DefaultFields` writes them (`name=value`, separated by one space) while
/// each is plain; gives up at the first one that is not.
struct PlainFields {
    text: [u8; PLAIN_CAPACITY],
    len: usize,
    plain: bool,
}

impl Default for PlainFields {
    fn default() -> Self {
        Self {
            text: [0; PLAIN_CAPACITY],
            len: 0,
            plain: true,
        }
    }
}

impl PlainFields {
    /// The fields' text, if every field was plain and it fitted.
    fn text(&self) -> Option<&str> {
        if !self.plain {
            return None;
        }
        // Only ASCII is ever added.
        std::str::from_utf8(&self.text[..self.len]).ok()
    }

    /// Adds `name=value`, the value in quotes when `quoted`; gives up when `DefaultFields`
    /// treats the name specially or the buffer is full. `value` is plain ASCII.
    fn add(&mut self, field: &Field, quoted: bool, value: &[u8]) {
        let name = field.name().as_bytes();
        let special = name == b"message"
            || name.starts_with(b"r#")
            || name.starts_with(b"log.")
            || !name.is_ascii();
        // At most: a space, the name, `=`, two quotes, the value.
        if !self.plain || special || self.len + name.len() + value.len() + 4 > PLAIN_CAPACITY {
            self.plain = false;
            return;
        }
        let text = &mut self.text;
        let mut at = self.len;
        if at > 0 {
            text[at] = b' ';
            at += 1;
        }
        text[at..at + name.len()].copy_from_slice(name);
        at += name.len();
        text[at] = b'=';
        at += 1;
        if quoted {
            text[at] = b'"';
            at += 1;
        }
        text[at..at + value.len()].copy_from_slice(value);
        at += value.len();
        if quoted {
            text[at] = b'"';
            at += 1;
        }
        self.len = at;
    }

    /// Adds `name=value` for an integer, with a leading `-` when `negative`.
    fn add_decimal(&mut self, field: &Field, negative: bool, value: u64) {
        let mut digits = [0u8; 21];
        let mut start = digits.len();
        let mut rest = value;
        loop {
            start -= 1;
            // A remainder of 10 is always below 10: the cast keeps its value.
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        if negative {
            start -= 1;
            digits[start] = b'-';
        }
        self.add(field, false, &digits[start..]);
    }
}

/// Whether `Debug` writes `byte` as itself inside a quoted string.
fn is_plain_byte(byte: u8) -> bool {
    matches!(byte, b' '..=b'~') && byte != b'"' && byte != b'\\'
}

impl Visit for PlainFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if value.bytes().all(is_plain_byte) {
            self.add(field, true, value.as_bytes());
        } else {
            self.plain = false;
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.add_decimal(field, false, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.add_decimal(field, value < 0, value.unsigned_abs());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        let text: &[u8] = if value { b"true" } else { b"false" };
        self.add(field, false, text);
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn fmt::Debug) {
        self.plain = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_print() {
        for name in LogFormat::NAMES {
            assert_eq!(name.parse::<LogFormat>().unwrap().to_string(), name);
        }
        let err = "yaml".parse::<LogFormat>().unwrap_err();
        assert!(err.contains("text, json"), "{err}");
    }

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The text `emit` logs through a text subscriber with `fields` (span closes included).
    fn logged<N>(fields: N, ansi: bool, emit: &dyn Fn()) -> String
    where
        N: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(fields)
            .with_ansi(ansi)
            .without_time()
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = capture.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer \"failure\"")]
    struct Outer(#[source] std::io::Error);

    /// Logs one case.
    type Emit<'a> = Box<dyn Fn() + 'a>;

    #[test]
    fn text_fields_write_what_default_fields_write() {
        let long = "x".repeat(PLAIN_CAPACITY);
        let cases: Vec<(&str, Emit<'_>)> = vec![
            (
                "a call's span",
                Box::new(|| {
                    let span = tracing::info_span!(
                        "cri",
                        method = "Version",
                        request_id = "18a2b3c4d5e6f708-1f",
                        peer_uid = Some(0u32),
                        code = tracing::field::Empty,
                        latency_us = tracing::field::Empty,
                    );
                    span.in_scope(|| tracing::warn!(error = "boom", "failed"));
                    span.record("code", "OK");
                    span.record("latency_us", 57u64);
                    span.in_scope(|| tracing::info!("after the record"));
                }),
            ),
            (
                "no peer, a record into an empty span",
                Box::new(|| {
                    let span = tracing::info_span!(
                        "cri",
                        peer_uid = None::<u32>,
                        code = tracing::field::Empty,
                    );
                    span.record("code", "NotFound");
                }),
            ),
            (
                "integers and booleans",
                Box::new(|| {
                    tracing::info!(
                        zero = 0u64,
                        max = u64::MAX,
                        min = i64::MIN,
                        negative = -42i64,
                        yes = true,
                        no = false,
                        "numbers"
                    );
                }),
            ),
            (
                "strings Debug escapes",
                Box::new(|| {
                    for value in [
                        "quote\"d",
                        "back\\slash",
                        "new\nline",
                        "tab\t",
                        "é",
                        "\u{1b}[31m",
                        "\u{7f}",
                        "it's",
                        "",
                    ] {
                        let span = tracing::info_span!("s", value);
                        span.in_scope(|| tracing::info!(value, "event"));
                    }
                }),
            ),
            (
                "names treated specially",
                Box::new(|| {
                    tracing::info!(r#type = "pod", "raw identifier");
                    tracing::info!(message = "a message field", other = 1u64);
                    tracing::info!(other = 1u64, message = "a message field last");
                }),
            ),
            (
                "values that are not plain",
                Box::new(|| {
                    tracing::info!(list = ?vec![1, 2], shown = %"display", ratio = 0.5f64, big = 1u128 << 100, "mixed");
                    let error = Outer(std::io::Error::other("inner"));
                    tracing::error!(
                        error = &error as &(dyn std::error::Error + 'static),
                        "with sources"
                    );
                }),
            ),
            (
                "more than the buffer holds",
                Box::new(|| {
                    tracing::info!(long = long.as_str(), "long");
                    for cut in 0..8 {
                        let near = &long[..PLAIN_CAPACITY - cut];
                        let span = tracing::info_span!("s", a = near);
                        span.in_scope(|| tracing::info!("at the edge"));
                        let span = tracing::info_span!("s", a = 1u64, b = &near[10..]);
                        span.record("c", "d");
                    }
                    let span = tracing::info_span!("s", a = long.as_str(), b = 1u64);
                    span.in_scope(|| tracing::info!(short = "s", "inside"));
                }),
            ),
        ];
        for ansi in [false, true] {
            for (name, emit) in &cases {
                let ours = logged(TextFields, ansi, emit.as_ref());
                let theirs = logged(DefaultFields::new(), ansi, emit.as_ref());
                assert!(!ours.is_empty(), "{name}: nothing logged");
                assert_eq!(ours, theirs, "{name}, ansi {ansi}");
            }
        }
    }

    #[test]
    fn plain_fields_take_the_fast_path() {
        let mut plain = PlainFields::default();
        let fields = tracing::field::FieldSet::new(
            &["method", "peer_uid", "ok", "delta"],
            tracing::callsite::Identifier(&CALLSITE),
        );
        let get = |name| fields.field(name).unwrap();
        plain.record_str(&get("method"), "Version");
        plain.record_u64(&get("peer_uid"), 1000);
        plain.record_bool(&get("ok"), true);
        plain.record_i64(&get("delta"), -7);
        assert_eq!(
            plain.text(),
            Some(r#"method="Version" peer_uid=1000 ok=true delta=-7"#)
        );
        plain.record_str(&get("method"), "needs \"escaping\"");
        assert_eq!(plain.text(), None, "left to DefaultFields");
    }

    struct Callsite;
    static CALLSITE: Callsite = Callsite;
    impl tracing::callsite::Callsite for Callsite {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &tracing::Metadata<'_> {
            unreachable!("not registered")
        }
    }
}
