//! The session: state shared by the handles and the background task, the task itself (one
//! reader and one writer over the split transport), and flow control.
//!
//! All state sits behind one `std` mutex that is never held across an `.await`. Handles
//! (`Stream`, `Incoming`, ...) change it from `poll_*` methods; the reader changes it as
//! frames arrive. Frames to send go into two queues: control frames first, then DATA in
//! arrival order. The writer drains both, compressing header blocks as it serializes them,
//! so compression order is wire order. Wakers and notifications collected while the lock is
//! held run after it is released ([`Shared::with`]).
//!
//! Flow control follows SPDY/3.1 with one allowance for legacy SPDY/3 peers (Kubernetes'
//! moby/spdystream neither sends nor honours SETTINGS and WINDOW_UPDATE): a peer counts as
//! flow-controlled once it sends either frame. Until then our DATA is limited by the
//! transport's backpressure instead of windows (else we would stall after 64 KiB), and the
//! peer's DATA beyond our window is not an error: the reader stops reading the transport
//! until the application drains the stream.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf,
};
use tokio::sync::{Notify, oneshot, watch};

use super::error::{Error, Failure, ResetReason};
use super::frame::{self, Head, Outgoing, Received};
use super::headers::{Compressor, Decompressor, decode_block};
use super::{Config, Headers, Role};

/// SPDY's initial stream and session window before any SETTINGS or WINDOW_UPDATE.
pub(super) const DEFAULT_WINDOW: i64 = 65_536;
/// Control frames queued before the reader stops reading (bounds replies to PING floods).
const CONTROL_QUEUE_LIMIT: usize = 1024;
/// Bytes of frames the writer serializes per transport write.
const BATCH_BYTES: usize = 256 * 1024;
/// DATA payloads are read (and buffered) in pieces of at most this size: one piece per DATA
/// frame of our own default size.
const READ_CHUNK: usize = 32 * 1024;
/// Peer-opened streams waiting in `Incoming`; more are refused.
const MAX_PENDING_ACCEPT: usize = 1024;
/// Time the writer gets to flush queued frames once the session is closing.
const FINAL_FLUSH: Duration = Duration::from_secs(10);
/// Largest uncompressed header block this side sends.
pub(super) const MAX_SEND_BLOCK: usize = 8 * 1024 * 1024;

/// The configuration, normalized to what the protocol can express.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    initial_window: i64,
    session_window: i64,
    max_frame: usize,
    pub(super) max_control: usize,
    /// DATA bytes queued or being written before writers wait: two batches, so that the
    /// handles fill the next batch while the writer task writes the current one (with one,
    /// producer and writer took turns).
    queue_limit: usize,
    /// How far a flow-controlled peer may overrun a stream window smaller than 64 KiB (it
    /// may have sent before it saw our SETTINGS).
    slack: i64,
}

impl Limits {
    fn new(config: &Config) -> Self {
        let initial_window = i64::from(config.initial_window.clamp(1, frame::MAX_31));
        let session_window = i64::from(
            config
                .session_window
                .clamp(DEFAULT_WINDOW as u32, frame::MAX_31),
        );
        let max_frame = config.max_frame.clamp(1, frame::MAX_LENGTH);
        Limits {
            initial_window,
            session_window,
            max_frame,
            max_control: config.max_control_frame.clamp(256, frame::MAX_LENGTH),
            queue_limit: (2 * BATCH_BYTES).max(2 * max_frame),
            slack: (DEFAULT_WINDOW - initial_window).max(0),
        }
    }
}

/// One DATA frame waiting for the writer.
#[derive(Debug)]
pub(super) struct DataOut {
    stream: u32,
    data: Bytes,
    fin: bool,
}

/// What the writer takes from the queues.
#[derive(Debug)]
pub(super) enum Item {
    Control(Outgoing),
    Data(DataOut),
}

/// The writer's next step.
enum Next {
    Write,
    Wait,
    Shutdown,
}

/// How the reader stopped.
pub(super) enum ReadEnd {
    Eof,
    Truncated,
    Io(io::Error),
    Protocol(String),
}

fn protocol(message: impl Into<String>) -> ReadEnd {
    ReadEnd::Protocol(message.into())
}

/// Per-stream state.
pub(super) struct StreamState {
    /// Opened by this side.
    local: bool,
    /// For a stream we opened: completes `open()` with the SYN_REPLY headers.
    reply: Option<oneshot::Sender<Result<Headers, Error>>>,
    /// For a stream the peer opened: its headers until `Incoming` hands them out.
    pending_headers: Option<Headers>,
    recv: VecDeque<Bytes>,
    buffered: usize,
    high_water: usize,
    /// Bytes the peer may still send before our next WINDOW_UPDATE.
    recv_window: i64,
    /// Bytes read by the application and not yet returned with a WINDOW_UPDATE.
    consumed: i64,
    remote_fin: bool,
    local_fin: bool,
    /// The peer opened the stream as unidirectional: no SYN_REPLY, no DATA from us.
    unidirectional: bool,
    reset: Option<(ResetReason, bool)>,
    send_window: i64,
    /// Our frames of this stream not yet written to the transport.
    unwritten: usize,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    flush_waker: Option<Waker>,
    /// A handle (pending `open`, queued or handed-out `IncomingStream`, `Stream`) exists.
    attached: bool,
}

impl StreamState {
    fn new(local: bool, limits: &Limits, peer_initial_window: i64) -> Self {
        StreamState {
            local,
            reply: None,
            pending_headers: None,
            recv: VecDeque::new(),
            buffered: 0,
            high_water: 0,
            recv_window: limits.initial_window,
            consumed: 0,
            remote_fin: false,
            local_fin: false,
            unidirectional: false,
            reset: None,
            send_window: peer_initial_window,
            unwritten: 0,
            read_waker: None,
            write_waker: None,
            flush_waker: None,
            attached: true,
        }
    }

    /// Both directions are finished (or the stream was reset).
    fn done(&self) -> bool {
        self.reset.is_some() || (self.local_fin && self.remote_fin)
    }

    fn reset_error(&self, stream: u32) -> Option<Error> {
        self.reset.map(|(reason, by_peer)| Error::Reset {
            stream,
            reason,
            by_peer,
        })
    }
}

/// Work to do once the lock is released.
#[derive(Default)]
struct Effects {
    wakers: Vec<Waker>,
    writer: bool,
    reader: bool,
    closing: bool,
}

/// The session state.
pub(super) struct State {
    role: Role,
    limits: Limits,
    streams: HashMap<u32, StreamState>,
    next_local_id: u32,
    last_peer_id: u32,
    control: VecDeque<Outgoing>,
    data: VecDeque<DataOut>,
    queued_data: usize,
    blocked_writers: Vec<u32>,
    /// The peer has shown (with SETTINGS or WINDOW_UPDATE) that it does flow control.
    peer_flow_control: bool,
    peer_initial_window: i64,
    session_send_window: i64,
    session_recv_window: i64,
    session_consumed: i64,
    total_buffered: usize,
    goaway_received: bool,
    /// No new streams; the writer shuts the transport down once its queues are empty.
    closing: bool,
    /// The session is over: `Some(None)` after a clean end, `Some(Some(_))` after a failure.
    ended: Option<Option<Failure>>,
    /// Writing the transport failed (the reader may still be going): what is unwritten never
    /// will be.
    write_failed: Option<Failure>,
    accept_queue: VecDeque<u32>,
    incoming_waker: Option<Waker>,
    incoming_alive: bool,
    pings: HashMap<u32, oneshot::Sender<()>>,
    next_ping_id: u32,
    reader_waiting: bool,
    fx: Effects,
}

/// State plus the notifications around it; owned jointly by the handles and the task.
pub(super) struct Shared {
    state: Mutex<State>,
    writer_wake: Notify,
    reader_wake: Notify,
    closing: watch::Sender<bool>,
    closed: watch::Sender<bool>,
    pub(super) limits: Limits,
}

impl Shared {
    pub(super) fn new(role: Role, config: &Config) -> Arc<Self> {
        let limits = Limits::new(config);
        let (first_id, first_ping) = match role {
            Role::Client => (1, 1),
            Role::Server => (2, 2),
        };
        let mut control = VecDeque::new();
        // SETTINGS first, then grow the session window from SPDY's 64 KiB to ours.
        control.push_back(Outgoing::Settings(vec![(
            frame::SETTINGS_INITIAL_WINDOW_SIZE,
            limits.initial_window as u32,
        )]));
        if limits.session_window > DEFAULT_WINDOW {
            control.push_back(Outgoing::WindowUpdate {
                stream: 0,
                delta: (limits.session_window - DEFAULT_WINDOW) as u32,
            });
        }
        let state = State {
            role,
            limits,
            streams: HashMap::new(),
            next_local_id: first_id,
            last_peer_id: 0,
            control,
            data: VecDeque::new(),
            queued_data: 0,
            blocked_writers: Vec::new(),
            peer_flow_control: false,
            peer_initial_window: DEFAULT_WINDOW,
            session_send_window: DEFAULT_WINDOW,
            session_recv_window: limits.session_window,
            session_consumed: 0,
            total_buffered: 0,
            goaway_received: false,
            closing: false,
            ended: None,
            write_failed: None,
            accept_queue: VecDeque::new(),
            incoming_waker: None,
            incoming_alive: true,
            pings: HashMap::new(),
            next_ping_id: first_ping,
            reader_waiting: false,
            fx: Effects::default(),
        };
        Arc::new(Shared {
            state: Mutex::new(state),
            writer_wake: Notify::new(),
            reader_wake: Notify::new(),
            closing: watch::Sender::new(false),
            closed: watch::Sender::new(false),
            limits,
        })
    }

    /// Runs `f` under the lock, then wakes whatever it asked to wake.
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let (result, fx) = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let result = f(&mut state);
            (result, std::mem::take(&mut state.fx))
        };
        for waker in fx.wakers {
            waker.wake();
        }
        if fx.writer {
            self.writer_wake.notify_one();
        }
        if fx.reader {
            self.reader_wake.notify_one();
        }
        if fx.closing {
            self.closing.send_replace(true);
        }
        result
    }

    /// Resolves once the background task has finished.
    pub(super) async fn closed(&self) {
        let mut rx = self.closed.subscribe();
        // The sender lives in `self`, so this only returns once the flag is set.
        let _ = rx.wait_for(|closed| *closed).await;
    }

    pub(super) fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }
}

/// Closes the session when the last user-facing handle is dropped.
pub(super) struct Liveness(pub(super) Arc<Shared>);

impl Drop for Liveness {
    fn drop(&mut self) {
        self.0.with(State::close_local);
    }
}

impl State {
    fn is_local_id(&self, id: u32) -> bool {
        match self.role {
            Role::Client => !id.is_multiple_of(2),
            Role::Server => id.is_multiple_of(2),
        }
    }

    /// The id was opened at some point (so a frame for it, if the stream is gone, is late
    /// rather than bogus).
    fn id_used(&self, id: u32) -> bool {
        if self.is_local_id(id) {
            id < self.next_local_id
        } else {
            id <= self.last_peer_id
        }
    }

    pub(super) fn ended_error(&self) -> Option<Error> {
        self.ended
            .as_ref()
            .map(|failure| failure.as_ref().map_or(Error::Closed, Failure::to_error))
    }

    /// The failure the session ended with, if it failed.
    pub(super) fn failure(&self) -> Option<Error> {
        self.ended.as_ref()?.as_ref().map(Failure::to_error)
    }

    fn push_control(&mut self, frame: Outgoing) {
        if self.ended.is_none() {
            self.control.push_back(frame);
            self.fx.writer = true;
        }
    }

    fn wake_blocked_writers(&mut self) {
        for id in std::mem::take(&mut self.blocked_writers) {
            if let Some(waker) = self.streams.get_mut(&id).and_then(|s| s.write_waker.take()) {
                self.fx.wakers.push(waker);
            }
        }
    }

    /// Returns `n` consumed bytes to the session window, batching WINDOW_UPDATEs.
    fn credit_session(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.session_consumed += n as i64;
        if self.session_consumed >= self.limits.session_window / 2 {
            let delta = std::mem::take(&mut self.session_consumed);
            self.session_recv_window += delta;
            self.push_control(Outgoing::WindowUpdate {
                stream: 0,
                delta: delta as u32,
            });
        }
    }

    /// The application consumed `n` bytes of stream `id`: return them to both windows.
    fn consume(&mut self, id: u32, n: usize) {
        let threshold = (self.limits.initial_window / 2).max(1);
        let mut update = None;
        if let Some(s) = self.streams.get_mut(&id) {
            s.consumed += n as i64;
            if !s.remote_fin && s.reset.is_none() && s.consumed >= threshold {
                let delta = std::mem::take(&mut s.consumed);
                s.recv_window += delta;
                update = Some(delta);
            }
        }
        if let Some(delta) = update {
            self.push_control(Outgoing::WindowUpdate {
                stream: id,
                delta: delta as u32,
            });
        }
        self.credit_session(n);
    }

    /// Ends stream `id` with `reason`, optionally telling the peer with RST_STREAM.
    fn reset_stream(&mut self, id: u32, reason: ResetReason, by_peer: bool, send: bool) {
        match self.streams.get(&id) {
            Some(s) if s.reset.is_some() => return,
            Some(_) => {}
            None => {
                if send {
                    self.push_control(Outgoing::RstStream {
                        stream: id,
                        status: reason.code(),
                    });
                }
                return;
            }
        }
        if send {
            self.push_control(Outgoing::RstStream {
                stream: id,
                status: reason.code(),
            });
        }
        // Our queued DATA for the stream is pointless now.
        let mut purged_bytes = 0;
        let mut purged_frames = 0;
        self.data.retain(|d| {
            if d.stream == id {
                purged_bytes += d.data.len();
                purged_frames += 1;
                false
            } else {
                true
            }
        });
        self.queued_data = self.queued_data.saturating_sub(purged_bytes);
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.reset = Some((reason, by_peer));
        s.unwritten = s.unwritten.saturating_sub(purged_frames);
        // Data the peer sent before resetting stays readable (Kubernetes servers reset
        // streams as they close a session, right after writing the exit status); our own
        // reset discards it.
        let dropped = if by_peer {
            0
        } else {
            s.recv.clear();
            std::mem::take(&mut s.buffered)
        };
        if let Some(tx) = s.reply.take() {
            let _ = tx.send(Err(Error::Reset {
                stream: id,
                reason,
                by_peer,
            }));
        }
        let wakers = [
            s.read_waker.take(),
            s.write_waker.take(),
            s.flush_waker.take(),
        ];
        self.fx.wakers.extend(wakers.into_iter().flatten());
        self.total_buffered -= dropped;
        self.credit_session(dropped);
        self.fx.reader = true;
        if purged_bytes > 0 {
            self.wake_blocked_writers();
        }
        self.maybe_remove(id);
        self.check_finish();
    }

    /// Forgets a stream nobody can observe any more.
    fn maybe_remove(&mut self, id: u32) {
        if self
            .streams
            .get(&id)
            .is_some_and(|s| !s.attached && s.done())
            && let Some(s) = self.streams.remove(&id)
        {
            self.total_buffered -= s.buffered;
        }
    }

    /// After the peer's GOAWAY, closes the session once every stream has finished.
    fn check_finish(&mut self) {
        if self.goaway_received
            && !self.closing
            && self.accept_queue.is_empty()
            && self.streams.values().all(StreamState::done)
        {
            self.begin_closing();
        }
    }

    fn begin_closing(&mut self) {
        self.closing = true;
        self.fx.closing = true;
        self.fx.writer = true;
        if let Some(waker) = self.incoming_waker.take() {
            self.fx.wakers.push(waker);
        }
        self.wake_blocked_writers();
    }

    /// The transport can no longer be written: nothing more is queued (writes and new streams
    /// fail, flushes of what was unwritten fail), while the reader goes on.
    fn stop_writing(&mut self, failure: Failure) {
        self.control.clear();
        self.data.clear();
        self.queued_data = 0;
        self.write_failed = Some(failure);
        for s in self.streams.values_mut() {
            let wakers = [s.write_waker.take(), s.flush_waker.take()];
            self.fx.wakers.extend(wakers.into_iter().flatten());
        }
        if self.reader_waiting {
            self.reader_waiting = false;
            self.fx.reader = true;
        }
        self.begin_closing();
    }

    /// `Connection::close`: GOAWAY, then the writer drains its queues and shuts down.
    pub(super) fn close_local(&mut self) {
        if self.closing || self.ended.is_some() {
            return;
        }
        self.push_control(Outgoing::GoAway {
            last_good: self.last_peer_id,
            status: frame::GOAWAY_OK,
        });
        self.begin_closing();
    }

    /// Ends the session: every handle sees EOF (where the peer finished) or an error.
    fn terminate(&mut self, failure: Option<Failure>) {
        if self.ended.is_some() {
            return;
        }
        let error = || failure.as_ref().map_or(Error::Closed, Failure::to_error);
        self.data.clear();
        self.queued_data = 0;
        for s in self.streams.values_mut() {
            let wakers = [
                s.read_waker.take(),
                s.write_waker.take(),
                s.flush_waker.take(),
            ];
            self.fx.wakers.extend(wakers.into_iter().flatten());
            if let Some(tx) = s.reply.take() {
                let _ = tx.send(Err(error()));
            }
        }
        self.pings.clear();
        if let Some(waker) = self.incoming_waker.take() {
            self.fx.wakers.push(waker);
        }
        self.blocked_writers.clear();
        self.ended = Some(failure);
        self.closing = true;
        self.fx.closing = true;
        self.fx.writer = true;
        self.fx.reader = true;
    }

    fn on_reader_end(&mut self, end: ReadEnd) {
        match end {
            ReadEnd::Eof => self.terminate(None),
            ReadEnd::Truncated => self.terminate(Some(Failure::Io(
                io::ErrorKind::UnexpectedEof,
                "transport closed in the middle of a frame".into(),
            ))),
            ReadEnd::Io(err) => self.terminate(Some(Failure::Io(err.kind(), err.to_string()))),
            ReadEnd::Protocol(message) => {
                tracing::debug!(%message, "SPDY protocol error, sending GOAWAY");
                self.push_control(Outgoing::GoAway {
                    last_good: self.last_peer_id,
                    status: frame::GOAWAY_PROTOCOL_ERROR,
                });
                self.terminate(Some(Failure::Protocol(message)));
            }
        }
    }

    // ---- operations of the handles -------------------------------------------------

    pub(super) fn open(
        &mut self,
        headers: Headers,
    ) -> Result<(u32, oneshot::Receiver<Result<Headers, Error>>), Error> {
        if let Some(err) = self.ended_error() {
            return Err(err);
        }
        if self.closing || self.goaway_received {
            return Err(Error::GoingAway);
        }
        let id = self.next_local_id;
        if id > frame::MAX_31 {
            return Err(Error::StreamIdsExhausted);
        }
        self.next_local_id += 2;
        let (tx, rx) = oneshot::channel();
        let mut s = StreamState::new(true, &self.limits, self.peer_initial_window);
        s.reply = Some(tx);
        self.streams.insert(id, s);
        self.push_control(Outgoing::SynStream {
            stream: id,
            headers,
        });
        Ok((id, rx))
    }

    /// A pending `open` was dropped before the reply: cancel the stream.
    pub(super) fn abandon(&mut self, id: u32, reason: ResetReason) {
        let ended = self.ended.is_some();
        if let Some(s) = self.streams.get_mut(&id) {
            s.attached = false;
            if s.reset.is_none() && !ended && !s.done() {
                self.reset_stream(id, reason, false, true);
            }
        }
        self.maybe_remove(id);
        self.check_finish();
    }

    pub(super) fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Option<(u32, Headers)>> {
        while let Some(id) = self.accept_queue.pop_front() {
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            if s.reset.is_some() {
                s.attached = false;
                self.maybe_remove(id);
                continue;
            }
            let headers = s.pending_headers.take().unwrap_or_default();
            return Poll::Ready(Some((id, headers)));
        }
        self.check_finish();
        if self.closing || self.ended.is_some() {
            return Poll::Ready(None);
        }
        self.incoming_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    pub(super) fn incoming_dropped(&mut self) {
        self.incoming_alive = false;
        self.incoming_waker = None;
        for id in std::mem::take(&mut self.accept_queue) {
            self.abandon(id, ResetReason::RefusedStream);
        }
    }

    pub(super) fn accept(&mut self, id: u32, headers: Headers) -> Result<(), Error> {
        if let Some(err) = self.ended_error() {
            return Err(err);
        }
        if self.closing {
            return Err(Error::Closed);
        }
        let Some(s) = self.streams.get(&id) else {
            return Err(Error::Closed);
        };
        if let Some(err) = s.reset_error(id) {
            return Err(err);
        }
        if !s.unidirectional {
            self.push_control(Outgoing::SynReply {
                stream: id,
                headers,
            });
        }
        Ok(())
    }

    /// A `Stream` was dropped: half-close our side gracefully and drain what the peer
    /// still sends.
    pub(super) fn detach(&mut self, id: u32) {
        let ended = self.ended.is_some();
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.attached = false;
        s.read_waker = None;
        s.write_waker = None;
        s.flush_waker = None;
        let mut fin = false;
        if s.reset.is_none() && !s.local_fin && !ended {
            s.local_fin = true;
            s.unwritten += 1;
            fin = true;
        }
        let dropped = std::mem::take(&mut s.buffered);
        s.recv.clear();
        if fin {
            self.data.push_back(DataOut {
                stream: id,
                data: Bytes::new(),
                fin: true,
            });
            self.fx.writer = true;
        }
        self.total_buffered -= dropped;
        if dropped > 0 {
            self.consume(id, dropped);
            self.fx.reader = true;
        }
        self.maybe_remove(id);
        self.check_finish();
    }

    pub(super) fn reset_by_user(&mut self, id: u32) {
        if self.ended.is_none() && self.streams.get(&id).is_some_and(|s| !s.done()) {
            self.reset_stream(id, ResetReason::Cancel, false, true);
        }
    }

    fn stream_error(&self, id: u32) -> Error {
        match self.streams.get(&id).and_then(|s| s.reset_error(id)) {
            Some(err) => err,
            None => self.ended_error().unwrap_or(Error::Closed),
        }
    }

    /// `n` bytes of stream `id` (already taken off its buffer) went to the application: the
    /// session buffers less, the reader may go on, and the windows get them back.
    fn delivered(&mut self, id: u32, n: usize) {
        self.total_buffered -= n;
        if self.reader_waiting {
            self.reader_waiting = false;
            self.fx.reader = true;
        }
        self.consume(id, n);
    }

    /// Takes the next received piece of stream `id` whole (an empty one at end of file),
    /// returning it to the windows as read.
    pub(super) fn poll_take(&mut self, id: u32, cx: &mut Context<'_>) -> Poll<io::Result<Bytes>> {
        let ended = self.ended.is_some();
        let Some(s) = self.streams.get_mut(&id) else {
            return Poll::Ready(Err(self.stream_error(id).into()));
        };
        if s.buffered == 0
            && let Some(err) = s.reset_error(id)
        {
            return Poll::Ready(Err(err.into()));
        }
        // An empty piece would read as end of file.
        while s.recv.front().is_some_and(Bytes::is_empty) {
            s.recv.pop_front();
        }
        if let Some(chunk) = s.recv.pop_front() {
            s.buffered -= chunk.len();
            self.delivered(id, chunk.len());
            return Poll::Ready(Ok(chunk));
        }
        if s.remote_fin {
            return Poll::Ready(Ok(Bytes::new()));
        }
        if ended {
            return Poll::Ready(Err(self.stream_error(id).into()));
        }
        s.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    pub(super) fn poll_read(
        &mut self,
        id: u32,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let ended = self.ended.is_some();
        let Some(s) = self.streams.get_mut(&id) else {
            return Poll::Ready(Err(self.stream_error(id).into()));
        };
        if s.buffered == 0
            && let Some(err) = s.reset_error(id)
        {
            return Poll::Ready(Err(err.into()));
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if s.buffered > 0 {
            let mut n = 0;
            while buf.remaining() > 0 {
                let Some(front) = s.recv.front_mut() else {
                    break;
                };
                let k = front.len().min(buf.remaining());
                buf.put_slice(&front[..k]);
                front.advance(k);
                if front.is_empty() {
                    s.recv.pop_front();
                }
                n += k;
            }
            s.buffered -= n;
            self.delivered(id, n);
            return Poll::Ready(Ok(()));
        }
        if s.remote_fin {
            return Poll::Ready(Ok(()));
        }
        if ended {
            return Poll::Ready(Err(self.stream_error(id).into()));
        }
        s.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    pub(super) fn poll_write(
        &mut self,
        id: u32,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.ended.is_some() || self.closing {
            return Poll::Ready(Err(self.stream_error(id).into()));
        }
        let flow_control = self.peer_flow_control;
        let room = self.limits.queue_limit.saturating_sub(self.queued_data);
        let session_window = self.session_send_window;
        let Some(s) = self.streams.get_mut(&id) else {
            return Poll::Ready(Err(Error::Closed.into()));
        };
        if let Some(err) = s.reset_error(id) {
            return Poll::Ready(Err(err.into()));
        }
        if s.local_fin {
            return Poll::Ready(Err(Error::WriteClosed(id).into()));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut allowed = data.len().min(room);
        if flow_control {
            let window = s.send_window.min(session_window).max(0) as usize;
            allowed = allowed.min(window);
        }
        if allowed == 0 {
            if s.write_waker.replace(cx.waker().clone()).is_none() {
                self.blocked_writers.push(id);
            }
            return Poll::Pending;
        }
        for chunk in data[..allowed].chunks(self.limits.max_frame) {
            self.data.push_back(DataOut {
                stream: id,
                data: Bytes::copy_from_slice(chunk),
                fin: false,
            });
            s.unwritten += 1;
        }
        if flow_control {
            s.send_window -= allowed as i64;
            self.session_send_window -= allowed as i64;
        }
        self.queued_data += allowed;
        self.fx.writer = true;
        Poll::Ready(Ok(allowed))
    }

    pub(super) fn poll_flush(&mut self, id: u32, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let ended = self.ended.is_some();
        let Some(s) = self.streams.get_mut(&id) else {
            return Poll::Ready(Err(self.stream_error(id).into()));
        };
        if let Some(err) = s.reset_error(id) {
            return Poll::Ready(Err(err.into()));
        }
        if s.unwritten == 0 {
            return Poll::Ready(Ok(()));
        }
        if let Some(failure) = &self.write_failed {
            return Poll::Ready(Err(failure.to_error().into()));
        }
        if ended {
            return Poll::Ready(Err(self.stream_error(id).into()));
        }
        s.flush_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    pub(super) fn poll_shutdown(&mut self, id: u32, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let ended = self.ended.is_some();
        let Some(s) = self.streams.get_mut(&id) else {
            return Poll::Ready(Err(self.stream_error(id).into()));
        };
        if let Some(err) = s.reset_error(id) {
            return Poll::Ready(Err(err.into()));
        }
        if !s.local_fin {
            if ended {
                return Poll::Ready(Err(self.stream_error(id).into()));
            }
            s.local_fin = true;
            s.unwritten += 1;
            self.data.push_back(DataOut {
                stream: id,
                data: Bytes::new(),
                fin: true,
            });
            self.fx.writer = true;
            self.check_finish();
        }
        self.poll_flush(id, cx)
    }

    /// Largest number of bytes the stream ever had buffered (for tests).
    #[cfg(test)]
    pub(super) fn high_water(&self, id: u32) -> usize {
        self.streams.get(&id).map_or(0, |s| s.high_water)
    }

    /// Control frames waiting for the writer (for tests).
    #[cfg(test)]
    pub(super) fn queued_control(&self) -> usize {
        self.control.len()
    }

    pub(super) fn ping(&mut self) -> Result<(u32, oneshot::Receiver<()>), Error> {
        if let Some(err) = self.ended_error() {
            return Err(err);
        }
        if self.closing {
            return Err(Error::Closed);
        }
        let id = self.next_ping_id;
        // Keep the parity (odd for clients, even for servers) when wrapping around.
        self.next_ping_id = if id > frame::MAX_31 - 2 {
            2 - id % 2
        } else {
            id + 2
        };
        let (tx, rx) = oneshot::channel();
        self.pings.insert(id, tx);
        self.push_control(Outgoing::Ping(id));
        Ok((id, rx))
    }

    pub(super) fn forget_ping(&mut self, id: u32) {
        self.pings.remove(&id);
    }

    // ---- frames from the peer ------------------------------------------------------

    fn on_syn_stream(&mut self, id: u32, flags: u8, headers: Headers) -> Result<(), ReadEnd> {
        if id == 0 {
            return Err(protocol("SYN_STREAM for stream 0"));
        }
        if self.is_local_id(id) {
            return Err(protocol(format!(
                "SYN_STREAM {id} uses this side's stream ids"
            )));
        }
        if self.streams.contains_key(&id) {
            self.reset_stream(id, ResetReason::ProtocolError, false, true);
            return Ok(());
        }
        if id <= self.last_peer_id {
            return Err(protocol(format!(
                "SYN_STREAM {id} after stream {}: ids must increase",
                self.last_peer_id
            )));
        }
        self.last_peer_id = id;
        if self.closing || self.ended.is_some() {
            // After our GOAWAY new streams are ignored.
            return Ok(());
        }
        if !self.incoming_alive || self.accept_queue.len() >= MAX_PENDING_ACCEPT {
            self.push_control(Outgoing::RstStream {
                stream: id,
                status: ResetReason::RefusedStream.code(),
            });
            return Ok(());
        }
        let mut s = StreamState::new(false, &self.limits, self.peer_initial_window);
        s.remote_fin = flags & frame::FLAG_FIN != 0;
        if flags & frame::FLAG_UNIDIRECTIONAL != 0 {
            s.unidirectional = true;
            s.local_fin = true;
        }
        s.pending_headers = Some(headers);
        self.streams.insert(id, s);
        self.accept_queue.push_back(id);
        if let Some(waker) = self.incoming_waker.take() {
            self.fx.wakers.push(waker);
        }
        Ok(())
    }

    fn on_syn_reply(&mut self, id: u32, flags: u8, headers: Headers) -> Result<(), ReadEnd> {
        let Some(s) = self.streams.get_mut(&id) else {
            if !self.id_used(id) {
                self.push_control(Outgoing::RstStream {
                    stream: id,
                    status: ResetReason::InvalidStream.code(),
                });
            }
            return Ok(());
        };
        if s.reset.is_some() {
            return Ok(());
        }
        if !s.local {
            self.reset_stream(id, ResetReason::ProtocolError, false, true);
            return Ok(());
        }
        match s.reply.take() {
            Some(tx) => {
                if flags & frame::FLAG_FIN != 0 {
                    s.remote_fin = true;
                }
                let _ = tx.send(Ok(headers));
                self.check_finish();
            }
            None => self.reset_stream(id, ResetReason::StreamInUse, false, true),
        }
        Ok(())
    }

    fn on_headers(&mut self, id: u32, flags: u8) -> Result<(), ReadEnd> {
        let used = self.id_used(id);
        let fin = flags & frame::FLAG_FIN != 0;
        match self.streams.get_mut(&id) {
            Some(s) if s.reset.is_none() && fin && !s.remote_fin => {
                s.remote_fin = true;
                if let Some(waker) = s.read_waker.take() {
                    self.fx.wakers.push(waker);
                }
                self.maybe_remove(id);
                self.check_finish();
            }
            Some(_) => {}
            None if !used => self.push_control(Outgoing::RstStream {
                stream: id,
                status: ResetReason::InvalidStream.code(),
            }),
            None => {}
        }
        Ok(())
    }

    fn on_rst(&mut self, id: u32, status: u32) -> Result<(), ReadEnd> {
        if self.streams.contains_key(&id) {
            self.reset_stream(id, ResetReason::from_code(status), true, false);
        }
        Ok(())
    }

    fn on_settings(&mut self, entries: &[(u32, u32)]) -> Result<(), ReadEnd> {
        self.peer_flow_control = true;
        for &(id, value) in entries {
            if id != frame::SETTINGS_INITIAL_WINDOW_SIZE {
                continue;
            }
            if value > frame::MAX_31 {
                return Err(protocol(format!(
                    "SETTINGS initial window {value} exceeds 2^31-1"
                )));
            }
            let delta = i64::from(value) - self.peer_initial_window;
            self.peer_initial_window = i64::from(value);
            for s in self.streams.values_mut() {
                s.send_window += delta;
            }
        }
        self.wake_blocked_writers();
        Ok(())
    }

    fn on_ping(&mut self, id: u32) -> Result<(), ReadEnd> {
        if id == 0 {
            return Ok(());
        }
        if self.is_local_id(id) {
            if let Some(tx) = self.pings.remove(&id) {
                let _ = tx.send(());
            }
        } else {
            self.push_control(Outgoing::Ping(id));
        }
        Ok(())
    }

    fn on_goaway(&mut self, last_good: u32) -> Result<(), ReadEnd> {
        self.goaway_received = true;
        let unprocessed: Vec<u32> = self
            .streams
            .iter()
            .filter(|(id, s)| s.local && **id > last_good && s.reset.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in unprocessed {
            self.reset_stream(id, ResetReason::RefusedStream, true, false);
        }
        self.check_finish();
        Ok(())
    }

    fn on_window_update(&mut self, id: u32, delta: u32) -> Result<(), ReadEnd> {
        self.peer_flow_control = true;
        if delta == 0 {
            return Ok(());
        }
        let delta = i64::from(delta);
        if id == 0 {
            self.session_send_window += delta;
            if self.session_send_window > i64::from(frame::MAX_31) {
                return Err(protocol(
                    "WINDOW_UPDATE grows the session window beyond 2^31-1",
                ));
            }
            self.wake_blocked_writers();
        } else if let Some(s) = self.streams.get_mut(&id) {
            s.send_window += delta;
            if s.send_window > i64::from(frame::MAX_31) {
                self.reset_stream(id, ResetReason::FlowControlError, false, true);
            } else if let Some(waker) = s.write_waker.take() {
                self.fx.wakers.push(waker);
            }
        }
        Ok(())
    }

    /// A DATA frame header arrived. Returns whether its payload is for a live stream
    /// (otherwise it is read and dropped).
    fn data_start(&mut self, id: u32, length: usize) -> Result<bool, ReadEnd> {
        let len = length as i64;
        if self.peer_flow_control && len > self.session_recv_window {
            return Err(protocol(format!(
                "DATA of {length} bytes exceeds the session window ({})",
                self.session_recv_window
            )));
        }
        self.session_recv_window -= len;
        let flow_control = self.peer_flow_control;
        let slack = self.limits.slack;
        let used = self.id_used(id);
        let verdict = match self.streams.get_mut(&id) {
            None if used => None,
            None => Some(ResetReason::InvalidStream),
            Some(s) if s.reset.is_some() => None,
            Some(s) if s.remote_fin => Some(ResetReason::StreamAlreadyClosed),
            Some(s) if flow_control && len > s.recv_window + slack => {
                Some(ResetReason::FlowControlError)
            }
            Some(s) => {
                s.recv_window -= len;
                return Ok(true);
            }
        };
        if let Some(reason) = verdict {
            self.reset_stream(id, reason, false, true);
        }
        self.credit_session(length);
        Ok(false)
    }

    /// Whether the reader may read `n` more payload bytes for stream `id` now. Only
    /// legacy peers (no flow control) are ever held back.
    fn has_room(&mut self, id: u32, n: usize) -> bool {
        if self.peer_flow_control || self.ended.is_some() {
            return true;
        }
        match self.streams.get(&id) {
            Some(s) if s.attached && s.reset.is_none() => {
                let window = self.limits.initial_window as usize;
                let session = self.limits.session_window as usize;
                (s.buffered == 0 || s.buffered + n <= window)
                    && (self.total_buffered == 0 || self.total_buffered + n <= session)
            }
            _ => true,
        }
    }

    fn data_chunk(&mut self, id: u32, chunk: Bytes) {
        let n = chunk.len();
        match self.streams.get_mut(&id) {
            Some(s) if s.reset.is_none() && s.attached => {
                s.recv.push_back(chunk);
                s.buffered += n;
                s.high_water = s.high_water.max(s.buffered);
                self.total_buffered += n;
                if let Some(waker) = s.read_waker.take() {
                    self.fx.wakers.push(waker);
                }
            }
            // Nobody reads the stream any more: keep the peer's windows open.
            Some(s) if s.reset.is_none() => self.consume(id, n),
            _ => self.credit_session(n),
        }
    }

    fn data_fin(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id)
            && s.reset.is_none()
        {
            s.remote_fin = true;
            if let Some(waker) = s.read_waker.take() {
                self.fx.wakers.push(waker);
            }
            self.maybe_remove(id);
            self.check_finish();
        }
    }

    // ---- the writer ----------------------------------------------------------------

    fn take_batch(&mut self, batch: &mut Vec<Item>) -> Next {
        batch.extend(self.control.drain(..).map(Item::Control));
        let mut bytes = 0;
        while bytes < BATCH_BYTES {
            let Some(data) = self.data.pop_front() else {
                break;
            };
            bytes += frame::HEADER_LEN + data.data.len();
            batch.push(Item::Data(data));
        }
        if !batch.is_empty() {
            if self.reader_waiting {
                self.reader_waiting = false;
                self.fx.reader = true;
            }
            Next::Write
        } else if self.closing {
            Next::Shutdown
        } else {
            Next::Wait
        }
    }

    fn on_written(&mut self, batch: &[Item]) {
        let mut drained = 0;
        for item in batch {
            let Item::Data(data) = item else {
                continue;
            };
            drained += data.data.len();
            if let Some(s) = self.streams.get_mut(&data.stream) {
                s.unwritten = s.unwritten.saturating_sub(1);
                if s.unwritten == 0
                    && let Some(waker) = s.flush_waker.take()
                {
                    self.fx.wakers.push(waker);
                }
            }
        }
        if drained > 0 {
            self.queued_data = self.queued_data.saturating_sub(drained);
            self.wake_blocked_writers();
        }
    }
}

// ---- the background task ---------------------------------------------------------------

/// Runs the session over `io` until it ends, then wakes everything waiting on it.
pub(super) async fn run<IO>(io: IO, shared: Arc<Shared>)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (read_half, write_half) = tokio::io::split(io);
    let mut closing = shared.closing.subscribe();
    let reader = read_loop(read_half, &shared);
    let writer = write_loop(write_half, &shared);
    let deadline = async {
        let _ = closing.wait_for(|closing| *closing).await;
        tokio::time::sleep(FINAL_FLUSH).await;
    };
    tokio::pin!(reader, writer, deadline);
    let mut reader_done = false;
    loop {
        tokio::select! {
            end = &mut reader, if !reader_done => {
                reader_done = true;
                shared.with(|st| st.on_reader_end(end));
            }
            result = &mut writer => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "SPDY writer failed");
                    if !reader_done {
                        // The peer may have hung up after its last frames: a Go peer that
                        // closes with our WINDOW_UPDATEs unread resets the connection, and our
                        // next write fails. What it sent before is still readable, so read on
                        // (for at most FINAL_FLUSH) before failing what is left.
                        shared.with(|st| st.stop_writing(Failure::Io(err.kind(), err.to_string())));
                        if let Ok(end) = tokio::time::timeout(FINAL_FLUSH, &mut reader).await {
                            shared.with(|st| st.on_reader_end(end));
                        }
                    }
                    shared.with(|st| st.terminate(Some(Failure::Io(err.kind(), err.to_string()))));
                }
                break;
            }
            () = &mut deadline => {
                tracing::debug!("SPDY session did not flush in time; dropping the transport");
                break;
            }
        }
    }
    shared.with(|st| st.terminate(None));
    shared.closed.send_replace(true);
}

async fn write_loop<W: AsyncWrite + Unpin>(mut io: W, shared: &Shared) -> io::Result<()> {
    let mut compressor = Compressor::new();
    let mut batch = Vec::new();
    let mut buf = Vec::with_capacity(BATCH_BYTES + 64 * 1024);
    loop {
        batch.clear();
        match shared.with(|st| st.take_batch(&mut batch)) {
            Next::Wait => {
                shared.writer_wake.notified().await;
                continue;
            }
            Next::Shutdown => {
                let _ = io.flush().await;
                let _ = io.shutdown().await;
                return Ok(());
            }
            Next::Write => {}
        }
        buf.clear();
        for item in &batch {
            match item {
                Item::Control(control) => frame::encode_control(control, &mut compressor, &mut buf)
                    .map_err(|err| {
                        io::Error::other(format!("cannot encode {control:?}: {err:?}"))
                    })?,
                Item::Data(data) => {
                    let flags = if data.fin { frame::FLAG_FIN } else { 0 };
                    frame::put_data_head(&mut buf, data.stream, flags, data.data.len());
                    buf.extend_from_slice(&data.data);
                }
            }
        }
        io.write_all(&buf).await?;
        io.flush().await?;
        shared.with(|st| st.on_written(&batch));
    }
}

async fn read_loop<R: AsyncRead + Unpin>(io: R, shared: &Shared) -> ReadEnd {
    match read_frames(io, shared).await {
        Ok(()) => ReadEnd::Eof,
        Err(end) => end,
    }
}

/// Waits until `ready` holds (re-checked whenever the state may have changed for it).
async fn wait_until(shared: &Shared, mut ready: impl FnMut(&mut State) -> bool) {
    loop {
        let ok = shared.with(|st| {
            let ok = st.ended.is_some() || ready(st);
            if !ok {
                st.reader_waiting = true;
            }
            ok
        });
        if ok {
            return;
        }
        shared.reader_wake.notified().await;
    }
}

async fn read_full<R: AsyncRead + Unpin>(io: &mut R, buf: &mut [u8]) -> Result<(), ReadEnd> {
    match io.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Err(ReadEnd::Truncated),
        Err(err) => Err(ReadEnd::Io(err)),
    }
}

/// Reads exactly `n` bytes into a new buffer, without zeroing it first.
async fn read_chunk<R: AsyncRead + Unpin>(io: &mut R, n: usize) -> Result<Bytes, ReadEnd> {
    let mut chunk = bytes::BytesMut::with_capacity(n);
    while chunk.len() < n {
        let left = n - chunk.len();
        let mut limited = (&mut chunk).limit(left);
        match io.read_buf(&mut limited).await {
            Ok(0) => return Err(ReadEnd::Truncated),
            Ok(_) => {}
            Err(err) => return Err(ReadEnd::Io(err)),
        }
    }
    Ok(chunk.freeze())
}

async fn read_frames<R: AsyncRead + Unpin>(io: R, shared: &Shared) -> Result<(), ReadEnd> {
    let mut io = BufReader::with_capacity(32 * 1024, io);
    let mut inflater = Decompressor::new();
    let max_control = shared.limits.max_control;
    loop {
        // Replies we owe (PING, RST_STREAM, ...) must not pile up without bound.
        wait_until(shared, |st| st.control.len() < CONTROL_QUEUE_LIMIT).await;
        if io.fill_buf().await.map_err(ReadEnd::Io)?.is_empty() {
            return Ok(());
        }
        let mut head = [0u8; frame::HEADER_LEN];
        read_full(&mut io, &mut head).await?;
        match frame::parse_head(&head) {
            Head::Control {
                version,
                kind,
                flags,
                length,
            } => {
                if version != frame::VERSION {
                    return Err(protocol(format!("unsupported SPDY version {version}")));
                }
                if length > max_control {
                    return Err(protocol(format!(
                        "control frame of {length} bytes exceeds the limit of {max_control}"
                    )));
                }
                let mut payload = vec![0u8; length];
                read_full(&mut io, &mut payload).await?;
                let received = frame::parse_control(kind, flags, payload).map_err(protocol)?;
                on_control(shared, &mut inflater, max_control, received)?;
            }
            Head::Data {
                stream,
                flags,
                length,
            } => on_data(shared, &mut io, stream, flags, length).await?,
        }
    }
}

fn on_control(
    shared: &Shared,
    inflater: &mut Decompressor,
    max_control: usize,
    received: Received,
) -> Result<(), ReadEnd> {
    // Header blocks are inflated even for frames that are then ignored: the zlib context
    // spans the whole session.
    let mut inflate = |block: &[u8]| -> Result<Headers, ReadEnd> {
        let raw = inflater
            .decompress(block, max_control)
            .map_err(|err| protocol(err.to_string()))?;
        decode_block(&raw).map_err(|err| protocol(err.to_string()))
    };
    match received {
        Received::SynStream {
            stream,
            flags,
            block,
        } => {
            let headers = inflate(&block)?;
            shared.with(|st| st.on_syn_stream(stream, flags, headers))
        }
        Received::SynReply {
            stream,
            flags,
            block,
        } => {
            let headers = inflate(&block)?;
            shared.with(|st| st.on_syn_reply(stream, flags, headers))
        }
        Received::Headers {
            stream,
            flags,
            block,
        } => {
            inflate(&block)?;
            shared.with(|st| st.on_headers(stream, flags))
        }
        Received::RstStream { stream, status } => shared.with(|st| st.on_rst(stream, status)),
        Received::Settings(entries) => shared.with(|st| st.on_settings(&entries)),
        Received::Ping(id) => shared.with(|st| st.on_ping(id)),
        Received::GoAway { last_good, .. } => shared.with(|st| st.on_goaway(last_good)),
        Received::WindowUpdate { stream, delta } => {
            shared.with(|st| st.on_window_update(stream, delta))
        }
        Received::Unknown => Ok(()),
    }
}

async fn on_data<R: AsyncRead + Unpin>(
    shared: &Shared,
    io: &mut R,
    stream: u32,
    flags: u8,
    length: usize,
) -> Result<(), ReadEnd> {
    if stream == 0 {
        return Err(protocol("DATA frame on stream 0"));
    }
    let live = shared.with(|st| st.data_start(stream, length))?;
    let mut remaining = length;
    let mut sink = [0u8; READ_CHUNK];
    while remaining > 0 {
        let n = remaining.min(READ_CHUNK);
        if live {
            wait_until(shared, |st| st.has_room(stream, n)).await;
            let chunk = read_chunk(io, n).await?;
            shared.with(|st| st.data_chunk(stream, chunk));
        } else {
            read_full(io, &mut sink[..n]).await?;
        }
        remaining -= n;
    }
    if live && flags & frame::FLAG_FIN != 0 {
        shared.with(|st| st.data_fin(stream));
    }
    Ok(())
}
