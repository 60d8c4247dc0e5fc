//! The conformance suite: CRI behaviour checks that run against any runtime through
//! [`cri_client::Client`].
//!
//! Each [`Case`] belongs to an area (`runtime`, `sandbox`, `container`, ...) and ends
//! [`Outcome::Passed`], [`Outcome::Skipped`] with the reason (typically: the runtime answers
//! `Unimplemented`, or the configuration lacks what the case needs), or [`Outcome::Failed`]
//! with the evidence. Cases clean up the sandboxes they create, even when they fail.
//!
//! ```
//! use cri_testkit::conformance::{Config, Suite};
//! use cri_testkit::{FakeRuntime, Harness};
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let harness = Harness::fake(FakeRuntime::builder().image("busybox").build()).await.unwrap();
//! let suite = Suite::new(Config::default()).focus(["sandbox/"]);
//! let report = suite.run(&harness.client).await;
//! report.assert_passed();
//! # });
//! ```

mod cases;
mod ctx;
mod report;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cri_client::Client;
use futures_util::StreamExt;

pub use ctx::{CASE_LABEL, Ctx, RUN_LABEL, check, expect_eq, skip};
pub use report::{CaseResult, Report, Summary};

/// What the suite needs to know about the runtime under test.
#[derive(Clone, Debug)]
pub struct Config {
    /// The image containers run (must be present, or pullable, and have `sh`, `echo`,
    /// `sleep`, `true`, `false`). Default `busybox`.
    pub image: String,
    /// An image the image cases may pull; `None` on an offline runtime that cannot pull (the
    /// pull cases are then skipped). Default `Some("busybox")`.
    pub pull_image: Option<String>,
    /// An image the remove case may delete; `None` skips that case.
    pub removable_image: Option<String>,
    /// Run sandboxes in the host network namespace (for runtimes without a CNI
    /// configuration). Default `false`.
    pub host_network: bool,
    /// The runtime handler to request (empty: the runtime's default).
    pub runtime_handler: String,
    /// Where sandboxes' log directories are created (a fresh temporary directory when
    /// `None`). Must be on the runtime's host.
    pub log_root: Option<PathBuf>,
    /// The longest a single case may run. Default 60 s.
    pub case_timeout: Duration,
    /// How many cases run at once. Default 4.
    pub parallelism: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            image: "busybox".into(),
            pull_image: Some("busybox".into()),
            removable_image: Some("cri-testkit.invalid/removable:1".into()),
            host_network: false,
            runtime_handler: String::new(),
            log_root: None,
            case_timeout: Duration::from_secs(60),
            parallelism: 4,
        }
    }
}

/// How a case ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every check held.
    Passed,
    /// The case could not run; the reason says why.
    Skipped(String),
    /// A check failed.
    Failed(Failure),
}

/// The evidence of a failed case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What was checked.
    pub check: String,
    /// What CRI requires.
    pub expected: String,
    /// What the runtime did.
    pub got: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: expected {}, got {}",
            self.check, self.expected, self.got
        )
    }
}

/// Why a case stopped early: failure or skip. Client errors convert with `?`: `Unimplemented`
/// becomes a skip, anything else a failure.
#[derive(Clone, Debug)]
pub enum Stop {
    /// The case failed.
    Fail(Failure),
    /// The case cannot run.
    Skip(String),
}

impl From<cri_client::Error> for Stop {
    fn from(error: cri_client::Error) -> Self {
        if error.is_unimplemented() {
            return Stop::Skip(format!("the runtime answers Unimplemented: {error}"));
        }
        Stop::Fail(Failure {
            check: "call succeeds".into(),
            expected: "success".into(),
            got: error.to_string(),
        })
    }
}

/// The future a case body returns.
pub type CaseFuture = Pin<Box<dyn Future<Output = Result<(), Stop>> + Send>>;

/// One conformance check.
#[derive(Clone, Copy)]
pub struct Case {
    /// The area, e.g. `"container"`.
    pub area: &'static str,
    /// The name within the area, e.g. `"exit-code"`.
    pub name: &'static str,
    /// What the case verifies.
    pub description: &'static str,
    pub(crate) run: fn(Ctx) -> CaseFuture,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.id())
    }
}

impl Case {
    /// A case of your own, to add to a suite with [`Suite::with_case`].
    ///
    /// ```
    /// use cri_testkit::conformance::{Case, Config, Ctx, Stop, Suite, check};
    ///
    /// async fn hostname_is_set(ctx: Ctx) -> Result<(), Stop> {
    ///     let (id, _) = ctx.run_sandbox("host").await?;
    ///     let status = ctx.client().pod_sandbox_status(&id, false).await?;
    ///     check(status.status.is_some(), "a status", "Some", &status)
    /// }
    ///
    /// let suite = Suite::new(Config::default())
    ///     .with_case(Case::new("custom", "hostname", "sandboxes report a status", |ctx| {
    ///         Box::pin(hostname_is_set(ctx))
    ///     }));
    /// assert!(suite.cases().iter().any(|c| c.id() == "custom/hostname"));
    /// ```
    pub fn new(
        area: &'static str,
        name: &'static str,
        description: &'static str,
        run: fn(Ctx) -> CaseFuture,
    ) -> Self {
        Self {
            area,
            name,
            description,
            run,
        }
    }

    /// `area/name`, the id used by focus, skip and reports.
    pub fn id(&self) -> String {
        format!("{}/{}", self.area, self.name)
    }
}

/// A selection of cases and the configuration to run them with.
#[derive(Clone, Debug)]
pub struct Suite {
    cases: Vec<Case>,
    config: Arc<Config>,
}

impl Suite {
    /// Every case, with `config`.
    pub fn new(config: Config) -> Self {
        Self {
            cases: cases::all(),
            config: Arc::new(config),
        }
    }

    /// Keeps only the cases whose id (`area/name`) contains one of `patterns` (all when
    /// `patterns` is empty).
    #[must_use]
    pub fn focus<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let patterns: Vec<String> = patterns
            .into_iter()
            .map(|p| p.as_ref().to_string())
            .collect();
        if !patterns.is_empty() {
            self.cases
                .retain(|c| patterns.iter().any(|p| c.id().contains(p.as_str())));
        }
        self
    }

    /// Drops the cases whose id contains one of `patterns`.
    #[must_use]
    pub fn skip<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let patterns: Vec<String> = patterns
            .into_iter()
            .map(|p| p.as_ref().to_string())
            .collect();
        self.cases
            .retain(|c| !patterns.iter().any(|p| c.id().contains(p.as_str())));
        self
    }

    /// Adds a case of your own at the end.
    #[must_use]
    pub fn with_case(mut self, case: Case) -> Self {
        self.cases.push(case);
        self
    }

    /// The selected cases, in order.
    pub fn cases(&self) -> &[Case] {
        &self.cases
    }

    /// Runs the selected cases against `client` and reports every outcome. Never panics on
    /// a runtime's misbehaviour: that is what the report is for.
    pub async fn run(&self, client: &Client) -> Report {
        let started = Instant::now();
        let temp = match &self.config.log_root {
            Some(_) => None,
            None => tempfile::Builder::new()
                .prefix("cri-conformance-")
                .tempdir()
                .ok(),
        };
        let log_root = self
            .config
            .log_root
            .clone()
            .or_else(|| temp.as_ref().map(|t| t.path().to_path_buf()))
            .unwrap_or_else(std::env::temp_dir);
        let run_id = ctx::run_id();
        let results: Vec<CaseResult> = futures_util::stream::iter(self.cases.iter().copied())
            .map(|case| {
                let ctx = Ctx::new(
                    client.clone(),
                    self.config.clone(),
                    log_root.clone(),
                    &run_id,
                    case,
                );
                run_case(case, ctx, self.config.case_timeout)
            })
            .buffered(self.config.parallelism.max(1))
            .collect()
            .await;
        Report {
            results,
            duration: started.elapsed(),
        }
    }
}

async fn run_case(case: Case, ctx: Ctx, timeout: Duration) -> CaseResult {
    let started = Instant::now();
    let cleanup = ctx.clone();
    let body = tokio::spawn((case.run)(ctx));
    let outcome = match tokio::time::timeout(timeout, body).await {
        Ok(Ok(Ok(()))) => Outcome::Passed,
        Ok(Ok(Err(Stop::Skip(reason)))) => Outcome::Skipped(reason),
        Ok(Ok(Err(Stop::Fail(failure)))) => Outcome::Failed(failure),
        Ok(Err(join)) => Outcome::Failed(Failure {
            check: "the case runs to completion".into(),
            expected: "no panic".into(),
            got: format!("the case panicked: {join}"),
        }),
        Err(_) => Outcome::Failed(Failure {
            check: "the case finishes in time".into(),
            expected: format!("at most {timeout:?}"),
            got: "still running; abandoned".into(),
        }),
    };
    cleanup.cleanup().await;
    CaseResult {
        id: case.id(),
        area: case.area,
        description: case.description,
        outcome,
        duration: started.elapsed(),
    }
}

/// Runs the whole suite (or the cases matching `focus`) against a runtime served in this
/// process, for use from an ordinary `#[tokio::test]`:
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// let server = cri_server::Server::builder()
///     .service(std::sync::Arc::new(cri_testkit::FakeRuntime::builder().image("busybox").build()))
///     .build()
///     .unwrap();
/// let report = cri_testkit::conformance::run_in_process(server, &["runtime/"], Default::default()).await;
/// report.assert_passed(); // panics listing the failed cases, if any
/// # });
/// ```
///
/// # Panics
///
/// When the server cannot be started (the report covers everything after that).
pub async fn run_in_process(server: cri_server::Server, focus: &[&str], config: Config) -> Report {
    let harness = crate::Harness::start(server)
        .await
        .expect("the runtime under test serves on a temporary socket");
    let report = Suite::new(config)
        .focus(focus.iter().copied())
        .run(&harness.client)
        .await;
    harness.shutdown().await;
    report
}
