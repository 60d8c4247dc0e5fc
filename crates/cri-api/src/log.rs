//! The CRI container log format: one record per line,
//! `<RFC 3339 time> <stdout|stderr> <F|P> <content>`, where `P` marks a partial line continued
//! by the next record and `F` a full one.
//!
//! ```
//! use cri_api::log::{Record, Tag};
//!
//! let record = Record::parse("2024-01-02T03:04:05.123456789Z stdout F hello world").unwrap();
//! assert_eq!(record.stream, "stdout");
//! assert_eq!(record.tag, Tag::Full);
//! assert_eq!(record.content, "hello world");
//!
//! let line = cri_api::log::format_record(1_704_164_645_123_456_789, "stderr", Tag::Partial, "par");
//! assert_eq!(line, "2024-01-02T03:04:05.123456789Z stderr P par\n");
//! ```

use std::fmt;

/// Whether a record ends its line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    /// `F`: the record ends a line.
    Full,
    /// `P`: the line continues in the next record.
    Partial,
}

/// One parsed log record, borrowing from the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The timestamp as written (RFC 3339 with nanoseconds).
    pub timestamp: &'a str,
    /// `stdout` or `stderr`.
    pub stream: &'a str,
    /// Full or partial line.
    pub tag: Tag,
    /// The text, without the trailing newline.
    pub content: &'a str,
}

/// Why a line is not a CRI log record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    reason: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a CRI log record: {}", self.reason)
    }
}

impl std::error::Error for ParseError {}

impl<'a> Record<'a> {
    /// Parses one line (a trailing `\n` is ignored).
    ///
    /// # Errors
    ///
    /// When a field is missing, the stream is not `stdout`/`stderr`, the tag is not `F`/`P`,
    /// or the timestamp does not look like RFC 3339.
    pub fn parse(line: &'a str) -> Result<Self, ParseError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let mut parts = line.splitn(4, ' ');
        let timestamp = parts.next().filter(|t| !t.is_empty()).ok_or(ParseError {
            reason: "missing timestamp",
        })?;
        let looks_rfc3339 = timestamp.len() >= 20
            && timestamp.as_bytes()[4] == b'-'
            && timestamp.as_bytes()[10] == b'T';
        if !looks_rfc3339 {
            return Err(ParseError {
                reason: "timestamp is not RFC 3339",
            });
        }
        let stream = match parts.next() {
            Some(s @ ("stdout" | "stderr")) => s,
            _ => {
                return Err(ParseError {
                    reason: "stream is not stdout or stderr",
                });
            }
        };
        let tag = match parts.next() {
            Some("F") => Tag::Full,
            Some("P") => Tag::Partial,
            _ => {
                return Err(ParseError {
                    reason: "tag is not F or P",
                });
            }
        };
        Ok(Self {
            timestamp,
            stream,
            tag,
            content: parts.next().unwrap_or(""),
        })
    }
}

/// Formats one record for a log file, newline included. `unix_nanos` is the time in
/// nanoseconds since the Unix epoch, written in UTC with nine fractional digits.
pub fn format_record(unix_nanos: i64, stream: &str, tag: Tag, content: &str) -> String {
    let tag = match tag {
        Tag::Full => 'F',
        Tag::Partial => 'P',
    };
    format!("{} {stream} {tag} {content}\n", rfc3339_nanos(unix_nanos))
}

/// `unix_nanos` as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (UTC).
pub fn rfc3339_nanos(unix_nanos: i64) -> String {
    let secs = unix_nanos.div_euclid(1_000_000_000);
    let nanos = unix_nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift to an era-based calendar starting on 0000-03-01 so leap days fall at year end.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_nanos(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(
            rfc3339_nanos(1_709_164_799_999_999_999),
            "2024-02-28T23:59:59.999999999Z"
        );
        assert_eq!(rfc3339_nanos(-1), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn round_trips_through_parse() {
        let line = format_record(1_700_000_000_000_000_000, "stdout", Tag::Full, "a b  c");
        let record = Record::parse(&line).unwrap();
        assert_eq!(record.timestamp, "2023-11-14T22:13:20.000000000Z");
        assert_eq!(record.content, "a b  c");
        let empty = format_record(0, "stderr", Tag::Full, "");
        assert_eq!(Record::parse(&empty).unwrap().content, "");
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            "",
            "hello",
            "2024-01-02T03:04:05Z stdin F x",
            "2024-01-02T03:04:05Z stdout X x",
            "yesterday stdout F x",
        ] {
            assert!(Record::parse(bad).is_err(), "{bad:?}");
        }
    }
}
