#![doc = include_str!("../README.md")]

mod cli;
mod commands;
mod config;
mod error;
/// Internal: entry points for the fuzz targets (`fuzz/`), no stability promise.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod output;
mod terminal;

use std::ffi::OsString;
use std::io::Write;

use clap::Parser;

use crate::cli::Cli;
use crate::config::{ConfigFile, Settings};
use crate::error::CliError;

/// Runs the command line `args` (the program name first, as `std::env::args_os` gives it),
/// writing to `stdout` and `stderr`, and returns the process exit code.
///
/// The code is 0 on success, 1 when a command failed (after one `cri: <message>` line on
/// `stderr`), 2 for usage errors, and the command's own exit code for `exec --sync`. A
/// closed output pipe (`cri ps | head -1`) ends the command quietly with 0.
///
/// ```
/// let mut out = Vec::new();
/// let mut err = Vec::new();
/// let code = cri_cli::run(["cri", "--version"], &mut out, &mut err);
/// assert_eq!(code, 0);
/// assert!(String::from_utf8_lossy(&out).starts_with("cri "));
///
/// let code = cri_cli::run(["cri", "-r", "unix:///nonexistent.sock", "ps"], &mut out, &mut err);
/// assert_eq!(code, 1);
/// assert!(String::from_utf8(err).unwrap().starts_with("cri: "));
/// ```
pub fn run<I, T>(args: I, stdout: &mut dyn Write, stderr: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let text = err.render().to_string();
            let _ = if err.use_stderr() {
                stderr.write_all(text.as_bytes())
            } else {
                stdout.write_all(text.as_bytes())
            };
            return err.exit_code();
        }
    };
    // Needs no runtime: answered without connecting.
    if let cli::Command::Completion { shell } = cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut command, "cri", stdout);
        let _ = stdout.flush();
        return 0;
    }
    // Two workers: a streaming session's tasks (the transport's reader and writer, the copy
    // of each stream) run beside the copy to this process's stdout, not in turns with it
    // (`scripts/stream-cli-bench`: `cri exec` stdout over SPDY 590-700 MiB/s on one thread,
    // about 820 on two).
    let result = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => {
            let result = runtime.block_on(execute(cli, stdout, stderr));
            // A read of an interactive stdin may still be pending on a blocking thread when
            // the session ends (the remote side finished first); it must not keep the
            // command alive until the user presses a key.
            runtime.shutdown_background();
            result
        }
        Err(err) => Err(CliError::from(err)),
    };
    let _ = stdout.flush();
    match result {
        Ok(code) => code,
        Err(err) if err.is_broken_pipe() => 0,
        Err(err) => {
            let _ = writeln!(stderr, "cri: {err}");
            1
        }
    }
}

async fn execute(cli: Cli, stdout: &mut dyn Write, stderr: &mut dyn Write) -> error::Result<i32> {
    let file = ConfigFile::load(cli.global.config.as_deref())?;
    let settings = config::resolve(&cli.global, &file, |path| path.exists())?;
    if settings.debug {
        init_debug_logging();
    }
    tracing::debug!(?settings, command = ?cli.command, "resolved settings");
    let client = connect(&settings).await?;
    let mut ctx = commands::Ctx {
        client,
        out: stdout,
        err: stderr,
    };
    commands::dispatch(cli.command, &mut ctx).await
}

async fn connect(settings: &Settings) -> error::Result<cri_client::Client> {
    let client = cri_client::Client::builder(settings.runtime_endpoint.clone())
        .image_endpoint(settings.image_endpoint.clone())
        .timeout(settings.timeout)
        .connect_timeout(settings.connect_timeout())
        // One call per command, as crictl: the `version` verb shows the runtime's answer.
        .verify_version(false)
        .connect()
        .await?;
    Ok(client)
}

fn init_debug_logging() {
    // Fails only when a subscriber is already installed (several runs in one process).
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .try_init();
}
