//! The task that owns the WebSocket: it alternates between sending what writers queued and
//! handing received payloads to readers, and runs the close handshake.

use std::future::{Future as _, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message, protocol::CloseFrame};
use tungstenite::protocol::frame::coding::CloseCode;

use super::Error;
use super::frame::{self, Incoming};
use super::shared::Shared;

/// How long to wait for the peer's answer to our close frame.
const CLOSE_LINGER: Duration = Duration::from_secs(5);

/// Messages sent between flushes, so writers waiting on a flush see progress.
const FLUSH_EVERY: usize = 16;

/// Steps (one message in or out) per poll before yielding to other tasks.
const BUDGET: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Data flows both ways.
    Open,
    /// Our close frame is handed to the WebSocket and is being flushed.
    CloseQueued,
    /// The close handshake is under way: nothing more is sent; reading until the peer ends
    /// the connection.
    Draining,
}

pub(crate) struct Driver<S> {
    ws: WebSocketStream<S>,
    shared: Arc<Shared>,
    /// A received payload waiting for room in its reader's buffer.
    pending: Option<(u8, Bytes)>,
    /// Messages handed to the WebSocket so far (matches writers' sequence numbers).
    sent: u64,
    need_flush: bool,
    phase: Phase,
    /// Close frame to send instead of a plain one (after a malformed message).
    close_frame: Option<CloseFrame>,
    /// The peer broke the channel framing: its further data is discarded.
    failure: Option<Error>,
    linger: Option<Pin<Box<Sleep>>>,
    finished: bool,
}

impl<S> Driver<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    pub(crate) fn new(ws: WebSocketStream<S>, shared: Arc<Shared>) -> Driver<S> {
        Driver {
            ws,
            shared,
            pending: None,
            sent: 0,
            need_flush: false,
            phase: Phase::Open,
            close_frame: None,
            failure: None,
            linger: None,
            finished: false,
        }
    }

    pub(crate) async fn run(mut self) {
        let outcome = poll_fn(|cx| self.poll_drive(cx)).await;
        let outcome = match outcome {
            _ if self.failure.is_some() => Err(self.failure.clone().unwrap_or(Error::Closed)),
            Ok(()) => Ok(()),
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => Ok(()),
            // Once the close handshake started, the peer may just drop the connection.
            Err(_) if self.phase == Phase::Draining => Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, "websocket channel socket failed");
                Err(Error::from(e))
            }
        };
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Result<(), Error>) {
        self.finished = true;
        self.shared.lock().finish(outcome);
    }

    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), tungstenite::Error>> {
        self.shared.lock().set_driver(cx.waker());
        for _ in 0..BUDGET {
            let wrote = self.poll_write_side(cx)?;
            let read = match self.poll_read_side(cx)? {
                ReadStep::Ended => return Poll::Ready(Ok(())),
                ReadStep::Progress => true,
                ReadStep::Idle => false,
            };
            if let Some(linger) = &mut self.linger
                && linger.as_mut().poll(cx).is_ready()
            {
                tracing::debug!("peer did not answer the close frame in time");
                return Poll::Ready(Ok(()));
            }
            if !wrote && !read {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Sends queued messages (then the close frame, when asked) and flushes. Returns whether
    /// anything moved.
    fn poll_write_side(&mut self, cx: &mut Context<'_>) -> Result<bool, tungstenite::Error> {
        let mut progress = false;
        let mut batch = 0;
        while self.phase == Phase::Open && batch < FLUSH_EVERY {
            {
                let st = self.shared.lock();
                if st.outbox.is_empty() && !st.close_requested {
                    break;
                }
            }
            match self.ws.poll_ready_unpin(cx) {
                Poll::Pending => break,
                Poll::Ready(r) => r?,
            }
            let next = self.shared.lock().dequeue();
            match next {
                Some(message) => {
                    self.ws.start_send_unpin(message)?;
                    self.sent += 1;
                }
                None => {
                    self.ws
                        .start_send_unpin(Message::Close(self.close_frame.take()))?;
                    self.phase = Phase::CloseQueued;
                }
            }
            self.need_flush = true;
            progress = true;
            batch += 1;
        }
        if self.need_flush
            && let Poll::Ready(r) = self.ws.poll_flush_unpin(cx)
        {
            r?;
            self.need_flush = false;
            progress = true;
            let mut st = self.shared.lock();
            st.mark_flushed(self.sent);
            if self.phase == Phase::CloseQueued {
                st.mark_closing();
                drop(st);
                self.phase = Phase::Draining;
                self.start_linger();
            }
        }
        Ok(progress)
    }

    /// Delivers received payloads while their readers have room.
    fn poll_read_side(&mut self, cx: &mut Context<'_>) -> Result<ReadStep, tungstenite::Error> {
        let read_buffer = self.shared.config.read_buffer;
        let mut progress = false;
        for _ in 0..BUDGET {
            if let Some((channel, payload)) = self.pending.take() {
                let mut st = self.shared.lock();
                match st.deliver(channel, payload, read_buffer) {
                    Ok(()) => {
                        st.blocked_on = None;
                        progress = true;
                    }
                    Err(payload) => {
                        st.blocked_on = Some(channel);
                        self.pending = Some((channel, payload));
                        return Ok(ReadStep::from(progress));
                    }
                }
            }
            match self.ws.poll_next_unpin(cx) {
                Poll::Pending => return Ok(ReadStep::from(progress)),
                Poll::Ready(None) => return Ok(ReadStep::Ended),
                Poll::Ready(Some(Err(e))) => return Err(e),
                Poll::Ready(Some(Ok(message))) => {
                    progress = true;
                    self.on_message(message);
                }
            }
        }
        Ok(ReadStep::from(progress))
    }

    fn on_message(&mut self, message: Message) {
        let data = match message {
            Message::Binary(data) => data,
            Message::Text(text) => Bytes::from(text),
            Message::Close(_) => return self.on_peer_close(),
            // Pongs to pings are queued by tungstenite itself.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return,
        };
        if self.failure.is_some() {
            return;
        }
        match frame::decode(self.shared.protocol, data) {
            // A payload-less message carries nothing (peers send them to announce channels).
            Ok(Incoming::Data { payload, .. }) if payload.is_empty() => {}
            Ok(Incoming::Data { channel, payload }) => self.pending = Some((channel, payload)),
            Ok(Incoming::Close { channel }) => self.shared.lock().half_close(channel),
            Err(e) => self.fail(e),
        }
    }

    /// The peer sent its close frame: tungstenite queued the answer; nothing else can be
    /// sent, and nothing more will arrive.
    fn on_peer_close(&mut self) {
        let mut st = self.shared.lock();
        st.end_reads(Ok(()));
        st.end_writes(Error::Closed);
        st.mark_closing();
        drop(st);
        if self.phase != Phase::Draining {
            self.phase = Phase::Draining;
            self.start_linger();
        }
        self.need_flush = true;
    }

    /// The peer broke the framing: fail every reader and writer and close with 1002.
    fn fail(&mut self, error: Error) {
        tracing::debug!(%error, "closing websocket channel socket");
        let mut reason = error.to_string();
        // A close frame's reason must fit in 123 bytes.
        while reason.len() > 123 {
            reason.pop();
        }
        self.close_frame = Some(CloseFrame {
            code: CloseCode::Protocol,
            reason: reason.into(),
        });
        let mut st = self.shared.lock();
        st.end_reads(Err(error.clone()));
        st.end_writes(error.clone());
        st.request_close();
        self.failure = Some(error);
    }

    fn start_linger(&mut self) {
        if self.linger.is_none() {
            self.linger = Some(Box::pin(tokio::time::sleep(CLOSE_LINGER)));
        }
    }
}

impl<S> Drop for Driver<S> {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.lock().finish(Err(Error::TaskStopped));
        }
    }
}

enum ReadStep {
    /// Something was received or delivered.
    Progress,
    /// Waiting for the peer, or for room in a reader's buffer.
    Idle,
    /// The WebSocket ended cleanly.
    Ended,
}

impl From<bool> for ReadStep {
    fn from(progress: bool) -> ReadStep {
        if progress {
            ReadStep::Progress
        } else {
            ReadStep::Idle
        }
    }
}
