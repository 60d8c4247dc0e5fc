//! The suite's report: human-readable, JUnit XML, JSON.

use std::fmt::Write as _;
use std::time::Duration;

use super::Outcome;

/// The outcome of one case.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseResult {
    /// `area/name`.
    pub id: String,
    /// The area.
    pub area: &'static str,
    /// What the case verifies.
    pub description: &'static str,
    /// How it ended.
    pub outcome: Outcome,
    /// How long it took (cleanup included).
    pub duration: Duration,
}

/// Counts of a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that were skipped.
    pub skipped: usize,
    /// Cases that failed.
    pub failed: usize,
}

/// Everything a suite run found.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// One result per case, in suite order.
    pub results: Vec<CaseResult>,
    /// Wall time of the whole run.
    pub duration: Duration,
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c == '\t' || c == '\n' || c == '\r' || !c.is_control() => out.push(c),
            c => {
                let _ = write!(out, "&#x{:x};", c as u32);
            }
        }
    }
    out
}

impl Report {
    /// Counts by outcome.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary::default();
        for result in &self.results {
            match result.outcome {
                Outcome::Passed => summary.passed += 1,
                Outcome::Skipped(_) => summary.skipped += 1,
                Outcome::Failed(_) => summary.failed += 1,
            }
        }
        summary
    }

    /// Whether nothing failed.
    pub fn success(&self) -> bool {
        self.summary().failed == 0
    }

    /// The failed results.
    pub fn failures(&self) -> impl Iterator<Item = &CaseResult> {
        self.results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
    }

    /// Panics, listing every failed case with its evidence, unless nothing failed.
    ///
    /// # Panics
    ///
    /// When a case failed.
    pub fn assert_passed(&self) {
        if !self.success() {
            panic!("CRI conformance failures:\n{}", self.human(false));
        }
    }

    /// The report for a terminal: one line per case, evidence under failures, a summary.
    /// `colour` adds ANSI colours.
    pub fn human(&self, colour: bool) -> String {
        let paint = |code: &str, text: &str| {
            if colour {
                format!("\x1b[{code}m{text}\x1b[0m")
            } else {
                text.to_string()
            }
        };
        let mut out = String::new();
        for r in &self.results {
            let millis = r.duration.as_millis();
            match &r.outcome {
                Outcome::Passed => {
                    let _ = writeln!(out, "{} {} ({millis} ms)", paint("32", "PASS"), r.id);
                }
                Outcome::Skipped(reason) => {
                    let _ = writeln!(out, "{} {} — {reason}", paint("33", "SKIP"), r.id);
                }
                Outcome::Failed(failure) => {
                    let _ = writeln!(out, "{} {} ({millis} ms)", paint("31;1", "FAIL"), r.id);
                    let _ = writeln!(out, "     check:    {}", failure.check);
                    let _ = writeln!(out, "     expected: {}", failure.expected);
                    let _ = writeln!(out, "     got:      {}", failure.got);
                }
            }
        }
        let s = self.summary();
        let _ = writeln!(
            out,
            "\n{} passed, {} failed, {} skipped ({} cases in {:.2} s)",
            s.passed,
            s.failed,
            s.skipped,
            self.results.len(),
            self.duration.as_secs_f64()
        );
        out
    }

    /// The report as JUnit XML: one `<testsuite>` per area, `<skipped>` and `<failure>`
    /// elements with the reason and evidence.
    pub fn junit(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let s = self.summary();
        let _ = writeln!(
            out,
            "<testsuites name=\"cri-conformance\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" errors=\"0\" time=\"{:.3}\">",
            self.results.len(),
            s.failed,
            s.skipped,
            self.duration.as_secs_f64()
        );
        let mut areas: Vec<&str> = self.results.iter().map(|r| r.area).collect();
        areas.dedup();
        for area in areas {
            let results: Vec<&CaseResult> =
                self.results.iter().filter(|r| r.area == area).collect();
            let failed = results
                .iter()
                .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
                .count();
            let skipped = results
                .iter()
                .filter(|r| matches!(r.outcome, Outcome::Skipped(_)))
                .count();
            let time: f64 = results.iter().map(|r| r.duration.as_secs_f64()).sum();
            let _ = writeln!(
                out,
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" skipped=\"{skipped}\" errors=\"0\" time=\"{time:.3}\">",
                xml_escape(area),
                results.len()
            );
            for r in results {
                let _ = write!(
                    out,
                    "    <testcase classname=\"cri-conformance.{}\" name=\"{}\" time=\"{:.3}\"",
                    xml_escape(area),
                    xml_escape(&r.id),
                    r.duration.as_secs_f64()
                );
                match &r.outcome {
                    Outcome::Passed => out.push_str("/>\n"),
                    Outcome::Skipped(reason) => {
                        let _ = writeln!(
                            out,
                            ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                            xml_escape(reason)
                        );
                    }
                    Outcome::Failed(f) => {
                        let _ = writeln!(
                            out,
                            ">\n      <failure message=\"{}\" type=\"conformance\">expected: {}\ngot: {}</failure>\n    </testcase>",
                            xml_escape(&f.check),
                            xml_escape(&f.expected),
                            xml_escape(&f.got)
                        );
                    }
                }
            }
            out.push_str("  </testsuite>\n");
        }
        out.push_str("</testsuites>\n");
        out
    }

    /// The report as JSON (see `docs/conformance.md` for the schema):
    /// `{"summary": {...}, "durationSeconds": f, "cases": [{"id", "area", "description",
    /// "outcome": "passed"|"skipped"|"failed", "durationSeconds", "reason"?, "failure"?}]}`.
    pub fn json(&self) -> serde_json::Value {
        let s = self.summary();
        let cases: Vec<serde_json::Value> = self
            .results
            .iter()
            .map(|r| {
                let mut case = serde_json::json!({
                    "id": r.id,
                    "area": r.area,
                    "description": r.description,
                    "durationSeconds": r.duration.as_secs_f64(),
                });
                match &r.outcome {
                    Outcome::Passed => case["outcome"] = "passed".into(),
                    Outcome::Skipped(reason) => {
                        case["outcome"] = "skipped".into();
                        case["reason"] = reason.as_str().into();
                    }
                    Outcome::Failed(f) => {
                        case["outcome"] = "failed".into();
                        case["failure"] = serde_json::json!({
                            "check": f.check, "expected": f.expected, "got": f.got,
                        });
                    }
                }
                case
            })
            .collect();
        serde_json::json!({
            "summary": { "passed": s.passed, "failed": s.failed, "skipped": s.skipped, "total": self.results.len() },
            "durationSeconds": self.duration.as_secs_f64(),
            "cases": cases,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Failure;
    use super::*;

    fn report() -> Report {
        let case = |id: &str, area: &'static str, outcome| CaseResult {
            id: id.into(),
            area,
            description: "d",
            outcome,
            duration: Duration::from_millis(5),
        };
        Report {
            results: vec![
                case("runtime/version", "runtime", Outcome::Passed),
                case(
                    "events/x",
                    "events",
                    Outcome::Skipped("not <implemented>".into()),
                ),
                case(
                    "container/y",
                    "container",
                    Outcome::Failed(Failure {
                        check: "exit & code".into(),
                        expected: "3".into(),
                        got: "\"0\"".into(),
                    }),
                ),
            ],
            duration: Duration::from_secs(1),
        }
    }

    #[test]
    fn counts_and_human_output() {
        let r = report();
        assert_eq!(
            r.summary(),
            Summary {
                passed: 1,
                skipped: 1,
                failed: 1
            }
        );
        assert!(!r.success());
        let text = r.human(false);
        assert!(text.contains("FAIL container/y"));
        assert!(text.contains("expected: 3"));
        assert!(text.contains("1 passed, 1 failed, 1 skipped"));
        assert!(r.human(true).contains("\x1b[31;1mFAIL"));
    }

    #[test]
    fn junit_is_escaped_and_counted() {
        let xml = report().junit();
        assert!(xml.starts_with("<?xml version=\"1.0\""));
        assert!(xml.contains("tests=\"3\" failures=\"1\" skipped=\"1\""));
        assert!(xml.contains("<skipped message=\"not &lt;implemented&gt;\"/>"));
        assert!(xml.contains("message=\"exit &amp; code\""));
        assert!(xml.contains("got: &quot;0&quot;"));
        assert_eq!(xml.matches("<testsuite ").count(), 3);
    }

    #[test]
    fn json_shape() {
        let json = report().json();
        assert_eq!(json["summary"]["failed"], 1);
        assert_eq!(json["cases"][1]["outcome"], "skipped");
        assert_eq!(json["cases"][2]["failure"]["expected"], "3");
    }

    #[test]
    #[should_panic(expected = "FAIL container/y")]
    fn assert_passed_lists_failures() {
        report().assert_passed();
    }
}
