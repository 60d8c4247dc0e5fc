//! `ps --watch` and `pods --watch`: the listing redrawn after every container event, or every
//! interval when the runtime streams no events, until interrupted or the output is closed.
//!
//! On a terminal each frame replaces the last (cursor home, clear screen); into a pipe or a
//! file the frames follow each other, separated by a blank line.

use std::io::IsTerminal;
use std::time::Duration;

use futures_util::{FutureExt as _, StreamExt};

use crate::cli::{PodsArgs, PsArgs};
use crate::commands::{Ctx, containers, pods};
use crate::error::{CliError, Result};

/// What is redrawn.
pub(crate) enum Listing {
    /// `pods --watch`.
    Pods(PodsArgs),
    /// `ps --watch`.
    Containers(PsArgs),
}

impl Listing {
    fn interval(&self) -> f64 {
        match self {
            Listing::Pods(args) => args.watch_interval,
            Listing::Containers(args) => args.watch_interval,
        }
    }

    async fn draw(&self, ctx: &mut Ctx<'_>) -> Result<i32> {
        match self {
            Listing::Pods(args) => pods::list(ctx, args.clone()).await,
            Listing::Containers(args) => containers::list(ctx, args.clone()).await,
        }
    }
}

/// Redraws `listing` until interrupted (Ctrl-C ends the process) or the output is closed.
pub(crate) async fn run(ctx: &mut Ctx<'_>, listing: Listing) -> Result<i32> {
    let seconds = listing.interval();
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(CliError::msg(format!(
            "--watch-interval must be a positive number of seconds, got {seconds}"
        )));
    }
    let interval = Duration::from_secs_f64(seconds);
    let terminal = std::io::stdout().is_terminal();
    // Events make the redraw immediate; without them (Unimplemented, or the stream ended)
    // the interval alone paces it.
    let mut events = match ctx.client.events().await {
        Ok(events) => Some(events),
        Err(err) => {
            tracing::debug!(%err, "no container events: redrawing every interval");
            None
        }
    };
    let mut first = true;
    loop {
        if terminal {
            write!(ctx.out, "\x1b[H\x1b[2J")?;
        } else if !first {
            writeln!(ctx.out)?;
        }
        first = false;
        listing.draw(ctx).await?;
        ctx.out.flush()?;
        match events.as_mut() {
            Some(stream) => {
                tokio::select! {
                    event = stream.next() => match event {
                        Some(Ok(_)) => {
                            // A burst of events (create, start) makes one redraw.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            while let Some(Some(Ok(_))) = stream.next().now_or_never() {}
                        }
                        Some(Err(_)) | None => events = None,
                    },
                    () = tokio::time::sleep(interval) => {}
                }
            }
            None => tokio::time::sleep(interval).await,
        }
    }
}
