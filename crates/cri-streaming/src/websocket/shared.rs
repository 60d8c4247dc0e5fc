//! State shared between the socket task and the handles (socket, readers, writers), under
//! one mutex. Every wait registers its waker under the lock and every state change wakes
//! under the same lock, so no wake-up is lost.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use bytes::{Buf as _, Bytes};
use tokio_tungstenite::tungstenite::Message;

use super::{Config, Error, Protocol};

/// Messages the writers may queue ahead of the socket task; each is at most
/// `max_message` bytes of payload, so this bounds the writers' queue in bytes too.
pub(crate) const OUTBOX_MESSAGES: usize = 8;

/// Bytes kept, across all channels, for channels nobody has taken a reader for yet.
pub(crate) const UNCLAIMED_LIMIT: usize = 64 * 1024;

pub(crate) struct Shared {
    pub(crate) protocol: Protocol,
    pub(crate) config: Config,
    state: Mutex<State>,
}

impl Shared {
    pub(crate) fn new(protocol: Protocol, config: Config) -> Shared {
        Shared {
            protocol,
            config,
            state: Mutex::new(State::default()),
        }
    }

    /// The state; a panic elsewhere while holding the lock leaves it usable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Who reads a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum Claim {
    /// Nobody yet: data is kept up to [`UNCLAIMED_LIMIT`] for a reader taken later; beyond
    /// that the socket task stops reading until the reader is taken.
    #[default]
    Unclaimed,
    /// A live [`ChannelReader`](super::ChannelReader).
    Claimed,
    /// The reader was dropped, or can no longer be taken: data is discarded.
    Dropped,
}

/// What has arrived on one channel and not been read yet.
#[derive(Default)]
pub(crate) struct Inbox {
    pub(crate) queue: VecDeque<Bytes>,
    pub(crate) buffered: usize,
    pub(crate) claim: Claim,
    /// The peer half-closed the channel (v5 CLOSE).
    pub(crate) eof: bool,
    pub(crate) reader: Option<Waker>,
    /// The most bytes ever buffered, for tests of the bound.
    #[cfg(test)]
    pub(crate) peak: usize,
}

impl Inbox {
    fn push(&mut self, payload: Bytes) {
        self.buffered += payload.len();
        self.queue.push_back(payload);
        #[cfg(test)]
        {
            self.peak = self.peak.max(self.buffered);
        }
        if let Some(w) = &self.reader {
            w.wake_by_ref();
        }
    }

    /// Copies queued bytes into `dst`; returns how many.
    pub(crate) fn take_into(&mut self, dst: &mut tokio::io::ReadBuf<'_>) -> usize {
        let mut copied = 0;
        while dst.remaining() > 0 {
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            let n = front.len().min(dst.remaining());
            dst.put_slice(&front[..n]);
            front.advance(n);
            if front.is_empty() {
                self.queue.pop_front();
            }
            copied += n;
        }
        self.buffered -= copied;
        copied
    }

    fn discard(&mut self) -> usize {
        let n = self.buffered;
        self.queue.clear();
        self.buffered = 0;
        n
    }
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) inboxes: HashMap<u8, Inbox>,
    unclaimed_bytes: usize,
    /// Whether the `ChannelSocket` still exists, i.e. whether readers can still be taken.
    pub(crate) claimable: bool,
    /// The channel whose full buffer holds back the socket task, if any.
    pub(crate) blocked_on: Option<u8>,

    pub(crate) outbox: VecDeque<Message>,
    /// Messages ever queued by writers (sequence number of the last one).
    pub(crate) enqueued: u64,
    /// Messages written and flushed to the transport.
    pub(crate) flushed: u64,
    write_wakers: Vec<Waker>,
    flush_wakers: Vec<Waker>,
    close_wakers: Vec<Waker>,
    driver: Option<Waker>,

    /// Live handles: the socket, readers and writers. At zero the socket closes itself.
    pub(crate) handles: usize,
    /// A close frame should be sent once the outbox is empty.
    pub(crate) close_requested: bool,
    /// The close handshake is under way: our close frame is flushed, or the peer's arrived.
    pub(crate) closing_done: bool,
    /// Why writes fail from now on (close requested, closed, failed).
    pub(crate) write_error: Option<Error>,
    /// No queued message will be flushed any more.
    pub(crate) writes_done: bool,
    /// How reading ended for every channel: EOF, or an error after the buffered data.
    pub(crate) read_end: Option<Result<(), Error>>,
    /// The socket task has exited.
    pub(crate) finished: bool,
}

fn add_waker(list: &mut Vec<Waker>, waker: &Waker) {
    if !list.iter().any(|w| w.will_wake(waker)) {
        list.push(waker.clone());
    }
}

fn wake_all(list: &mut Vec<Waker>) {
    for w in list.drain(..) {
        w.wake();
    }
}

impl State {
    pub(crate) fn new_handle(&mut self) {
        self.handles += 1;
    }

    /// Drops one handle; the last one asks the socket task to close.
    pub(crate) fn release_handle(&mut self) {
        self.handles = self.handles.saturating_sub(1);
        if self.handles == 0 {
            self.request_close();
        }
    }

    /// Queues a close frame behind the messages already queued; writes fail from now on.
    pub(crate) fn request_close(&mut self) {
        self.close_requested = true;
        if self.write_error.is_none() {
            self.write_error = Some(Error::Closed);
        }
        wake_all(&mut self.write_wakers);
        self.wake_driver();
    }

    pub(crate) fn set_driver(&mut self, waker: &Waker) {
        if !self.driver.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.driver = Some(waker.clone());
        }
    }

    pub(crate) fn wake_driver(&self) {
        if let Some(w) = &self.driver {
            w.wake_by_ref();
        }
    }

    pub(crate) fn wait_write(&mut self, waker: &Waker) {
        add_waker(&mut self.write_wakers, waker);
    }

    pub(crate) fn wait_flush(&mut self, waker: &Waker) {
        add_waker(&mut self.flush_wakers, waker);
    }

    pub(crate) fn wait_close(&mut self, waker: &Waker) {
        add_waker(&mut self.close_wakers, waker);
    }

    /// A writer queues `message`; returns its sequence number.
    pub(crate) fn enqueue(&mut self, message: Message) -> u64 {
        self.outbox.push_back(message);
        self.enqueued += 1;
        self.wake_driver();
        self.enqueued
    }

    /// The socket task takes the next message to send.
    pub(crate) fn dequeue(&mut self) -> Option<Message> {
        let message = self.outbox.pop_front()?;
        wake_all(&mut self.write_wakers);
        Some(message)
    }

    /// Everything up to `sent` reached the transport.
    pub(crate) fn mark_flushed(&mut self, sent: u64) {
        self.flushed = sent;
        wake_all(&mut self.flush_wakers);
    }

    /// The close handshake started (ours flushed, or the peer's received).
    pub(crate) fn mark_closing(&mut self) {
        self.closing_done = true;
        wake_all(&mut self.close_wakers);
    }

    /// Hands `payload` to `channel`'s reader. `Err` gives it back when that reader's buffer
    /// is full: the socket task must hold it and stop reading until there is room.
    pub(crate) fn deliver(
        &mut self,
        channel: u8,
        payload: Bytes,
        read_buffer: usize,
    ) -> Result<(), Bytes> {
        if payload.is_empty() {
            // Kubernetes servers announce each channel with an empty message; a reader must
            // never mistake it for end of stream.
            return Ok(());
        }
        let inbox = self.inboxes.entry(channel).or_default();
        if inbox.eof {
            tracing::debug!(channel, "dropping data received after the channel's CLOSE");
            return Ok(());
        }
        match inbox.claim {
            Claim::Dropped => {}
            Claim::Unclaimed => {
                if !self.claimable {
                    tracing::debug!(
                        channel,
                        len = payload.len(),
                        "dropping data for a channel nobody can read any more"
                    );
                } else if self.unclaimed_bytes + payload.len() <= UNCLAIMED_LIMIT {
                    self.unclaimed_bytes += payload.len();
                    inbox.push(payload);
                } else {
                    // Hold it and stop reading until a reader is taken (or no reader can be
                    // any more): data that arrives before its reader exists is never lost.
                    return Err(payload);
                }
            }
            Claim::Claimed => {
                if inbox.buffered >= read_buffer {
                    return Err(payload);
                }
                inbox.push(payload);
            }
        }
        Ok(())
    }

    /// A reader is taken for `channel`; `false` if one already was.
    pub(crate) fn claim(&mut self, channel: u8) -> bool {
        let inbox = self.inboxes.entry(channel).or_default();
        if inbox.claim != Claim::Unclaimed {
            return false;
        }
        inbox.claim = Claim::Claimed;
        self.unclaimed_bytes -= inbox.buffered;
        if self.blocked_on == Some(channel) {
            self.wake_driver();
        }
        true
    }

    /// The reader of `channel` went away: its data is discarded from now on.
    pub(crate) fn unclaim(&mut self, channel: u8) {
        if let Some(inbox) = self.inboxes.get_mut(&channel) {
            inbox.claim = Claim::Dropped;
            inbox.reader = None;
            inbox.discard();
        }
        if self.blocked_on == Some(channel) {
            self.wake_driver();
        }
    }

    /// The socket handle went away: no reader can be taken any more.
    pub(crate) fn stop_claims(&mut self) {
        self.claimable = false;
        for inbox in self.inboxes.values_mut() {
            if inbox.claim == Claim::Unclaimed {
                inbox.claim = Claim::Dropped;
                inbox.discard();
            }
        }
        self.unclaimed_bytes = 0;
        if self.blocked_on.is_some() {
            self.wake_driver();
        }
    }

    /// The peer will not write `channel` any more.
    pub(crate) fn half_close(&mut self, channel: u8) {
        let inbox = self.inboxes.entry(channel).or_default();
        inbox.eof = true;
        if let Some(w) = &inbox.reader {
            w.wake_by_ref();
        }
    }

    /// Reading ends on every channel (first call wins).
    pub(crate) fn end_reads(&mut self, end: Result<(), Error>) {
        if self.read_end.is_none() {
            self.read_end = Some(end);
        }
        for inbox in self.inboxes.values_mut() {
            if let Some(w) = inbox.reader.take() {
                w.wake();
            }
        }
    }

    /// Nothing queued will be sent: writes and flushes fail with `error` (unless an earlier
    /// reason was recorded).
    pub(crate) fn end_writes(&mut self, error: Error) {
        if self.write_error.is_none() || matches!(self.write_error, Some(Error::Closed)) {
            self.write_error = Some(error);
        }
        self.writes_done = true;
        self.outbox.clear();
        wake_all(&mut self.write_wakers);
        wake_all(&mut self.flush_wakers);
    }

    /// The socket task exited.
    pub(crate) fn finish(&mut self, outcome: Result<(), Error>) {
        let write_error = outcome.clone().err().unwrap_or(Error::Closed);
        self.end_reads(outcome);
        self.end_writes(write_error);
        self.finished = true;
        self.driver = None;
        wake_all(&mut self.close_wakers);
    }
}
