//! The local terminal during `exec -it` and `attach -it`: raw mode while the session runs
//! (restored on every exit path) and the window size, sent at the start and on every
//! `SIGWINCH`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use cri_client::streaming::TerminalSize;
use rustix::termios::{self, OptionalActions, Termios};
use tokio::sync::mpsc;

/// Puts a terminal in raw mode and puts the saved settings back when dropped, so the user's
/// shell is usable again whether the session ends, fails or panics.
pub(crate) struct RawMode {
    fd: BorrowedFd<'static>,
    saved: Termios,
}

impl RawMode {
    /// Switches `fd` to raw mode when it is a terminal; `None` when it is not (a pipe or a
    /// file: nothing to change).
    pub(crate) fn enable(fd: BorrowedFd<'static>) -> io::Result<Option<Self>> {
        if !termios::isatty(fd) {
            return Ok(None);
        }
        let saved = termios::tcgetattr(fd)?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(fd, OptionalActions::Now, &raw)?;
        Ok(Some(Self { fd, saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Drain so output already written keeps its cooked-mode newline handling.
        if let Err(e) = termios::tcsetattr(self.fd, OptionalActions::Drain, &self.saved) {
            tracing::warn!("could not restore the terminal: {e}");
        }
    }
}

/// The size of the terminal on `fd`, if it is one and reports a size.
pub(crate) fn size(fd: impl AsFd) -> Option<TerminalSize> {
    let fd = fd.as_fd();
    if !termios::isatty(fd) {
        return None;
    }
    let ws = termios::tcgetwinsize(fd).ok()?;
    (ws.ws_col > 0 && ws.ws_row > 0).then_some(TerminalSize {
        width: ws.ws_col,
        height: ws.ws_row,
    })
}

/// Sizes of the terminal on stdout for the session: the current one first, then one per
/// window change. `None` when stdout is not a terminal. The watcher stops when the session
/// drops the receiver.
pub(crate) fn watch_size() -> Option<mpsc::Receiver<TerminalSize>> {
    let stdout = io::stdout();
    let first = size(&stdout)?;
    let (tx, rx) = mpsc::channel(8);
    let _ = tx.try_send(first);
    let mut changes =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) {
            Ok(signal) => signal,
            Err(e) => {
                tracing::warn!("terminal resizes will not be forwarded: {e}");
                return Some(rx);
            }
        };
    tokio::spawn(async move {
        let mut last = first;
        loop {
            tokio::select! {
                () = tx.closed() => return,
                changed = changes.recv() => {
                    if changed.is_none() {
                        return;
                    }
                }
            }
            if let Some(now) = size(io::stdout()) {
                if now != last && tx.send(now).await.is_err() {
                    return;
                }
                last = now;
            }
        }
    });
    Some(rx)
}
