//! The bounded queue between the reader tasks and the writer task.
//!
//! Readers push without ever waiting; when the queued records would pass the limit the oldest
//! queued chunks are dropped and remembered as a gap, which the writer reports in a marker
//! record in the place the records would have gone. Requests (flush, reopen, close) travel in
//! the same queue so they are handled after every record queued before them.

use std::collections::VecDeque;
use std::io;

use tokio::sync::oneshot;

use super::split::Chunk;

/// Records and content bytes that never reached the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Dropped {
    /// Whole records.
    pub(super) records: u64,
    /// Container output bytes in them.
    pub(super) bytes: u64,
}

impl Dropped {
    pub(super) fn add(&mut self, records: u64, bytes: u64) {
        self.records += records;
        self.bytes += bytes;
    }

    pub(super) fn is_empty(&self) -> bool {
        self.records == 0 && self.bytes == 0
    }
}

/// A request handled by the writer once everything queued before it is written.
#[derive(Debug)]
pub(super) enum Control {
    /// Flush the sink and answer.
    Flush(oneshot::Sender<io::Result<()>>),
    /// Reopen the sink and answer with the outcome.
    Reopen(oneshot::Sender<io::Result<()>>),
    /// Flush, close the sink and stop.
    Close(oneshot::Sender<()>),
}

#[derive(Debug)]
enum Entry {
    Chunk(Chunk),
    Control(Control),
}

/// What the writer does next.
#[derive(Debug)]
pub(super) enum Work {
    /// Write a marker for `gap` (when not empty) and then `chunks`.
    Write {
        /// Dropped since the last marker, reported before `chunks`.
        gap: Dropped,
        /// Records to write, oldest first.
        chunks: Vec<Chunk>,
    },
    /// Handle a request.
    Control(Control),
}

/// The queue itself; the caller holds it under its lock.
#[derive(Debug)]
pub(super) struct Queue {
    entries: VecDeque<Entry>,
    /// Bytes of the chunks in `entries`.
    queued: usize,
    limit: usize,
    /// Dropped since the last marker was handed to the writer.
    gap: Dropped,
}

impl Queue {
    /// An empty queue holding at most `limit` bytes of records (or one chunk, if a single chunk
    /// is larger).
    pub(super) fn new(limit: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            queued: 0,
            limit,
            gap: Dropped::default(),
        }
    }

    /// Queues a chunk, first dropping the oldest queued chunks it would not fit beside.
    /// Returns what was dropped.
    pub(super) fn push_chunk(&mut self, chunk: Chunk) -> Dropped {
        let mut dropped = Dropped::default();
        while self.queued + chunk.bytes.len() > self.limit {
            let Some(oldest) = self
                .entries
                .iter()
                .position(|entry| matches!(entry, Entry::Chunk(_)))
            else {
                break;
            };
            if let Some(Entry::Chunk(old)) = self.entries.remove(oldest) {
                self.queued -= old.bytes.len();
                dropped.add(old.records, old.content);
            }
        }
        self.gap.add(dropped.records, dropped.bytes);
        self.queued += chunk.bytes.len();
        self.entries.push_back(Entry::Chunk(chunk));
        dropped
    }

    /// Queues a request behind everything queued so far.
    pub(super) fn push_control(&mut self, control: Control) {
        self.entries.push_back(Entry::Control(control));
    }

    /// Records that were taken for writing but did not make it: reported in the next marker.
    pub(super) fn add_gap(&mut self, dropped: Dropped) {
        self.gap.add(dropped.records, dropped.bytes);
    }

    /// The next work: a request at the front, or the chunks up to the next request (at least
    /// one, then more while the batch is under `max_batch` bytes).
    ///
    /// An outstanding gap is reported with the next chunks, or on its own before a request so
    /// that a flush or close leaves it in the file.
    pub(super) fn take(&mut self, max_batch: usize) -> Option<Work> {
        match self.entries.front()? {
            Entry::Control(_) if !self.gap.is_empty() => {
                return Some(Work::Write {
                    gap: std::mem::take(&mut self.gap),
                    chunks: Vec::new(),
                });
            }
            Entry::Control(_) => {
                return match self.entries.pop_front() {
                    Some(Entry::Control(control)) => Some(Work::Control(control)),
                    _ => None,
                };
            }
            Entry::Chunk(_) => {}
        }
        let mut chunks = Vec::new();
        let mut batch = 0;
        while batch < max_batch && matches!(self.entries.front(), Some(Entry::Chunk(_))) {
            if let Some(Entry::Chunk(chunk)) = self.entries.pop_front() {
                batch += chunk.bytes.len();
                self.queued -= chunk.bytes.len();
                chunks.push(chunk);
            }
        }
        Some(Work::Write {
            gap: std::mem::take(&mut self.gap),
            chunks,
        })
    }

    /// Empties the queue when the writer stops. Returns the requests still waiting (dropping
    /// them answers "closed" to whoever waits) and the records that will never be written.
    pub(super) fn drain(&mut self) -> (Vec<Control>, Dropped) {
        let mut controls = Vec::new();
        let mut dropped = Dropped::default();
        for entry in self.entries.drain(..) {
            match entry {
                Entry::Chunk(chunk) => dropped.add(chunk.records, chunk.content),
                Entry::Control(control) => controls.push(control),
            }
        }
        self.queued = 0;
        (controls, dropped)
    }

    /// Bytes of records waiting.
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(len: usize, records: u64) -> Chunk {
        Chunk {
            bytes: vec![b'x'; len],
            records,
            content: len as u64 / 2,
            unix_nanos: 0,
            header_len: 0,
        }
    }

    fn written(work: Option<Work>) -> (Dropped, Vec<usize>) {
        match work {
            Some(Work::Write { gap, chunks }) => {
                (gap, chunks.iter().map(|c| c.bytes.len()).collect())
            }
            other => panic!("expected records, got {other:?}"),
        }
    }

    #[test]
    fn drops_the_oldest_chunks_and_reports_the_gap_once() {
        let mut queue = Queue::new(100);
        assert!(queue.push_chunk(chunk(40, 1)).is_empty());
        assert!(queue.push_chunk(chunk(40, 2)).is_empty());
        let dropped = queue.push_chunk(chunk(40, 3));
        assert_eq!(
            dropped,
            Dropped {
                records: 1,
                bytes: 20
            }
        );
        assert_eq!(queue.queued(), 80);
        let dropped = queue.push_chunk(chunk(90, 4));
        assert_eq!(
            dropped,
            Dropped {
                records: 5,
                bytes: 40
            }
        );

        let (gap, chunks) = written(queue.take(usize::MAX));
        assert_eq!(
            gap,
            Dropped {
                records: 6,
                bytes: 60
            }
        );
        assert_eq!(chunks, [90]);
        assert!(queue.take(usize::MAX).is_none());
    }

    #[test]
    fn an_oversized_chunk_is_still_queued() {
        let mut queue = Queue::new(10);
        assert!(queue.push_chunk(chunk(50, 1)).is_empty());
        assert_eq!(queue.queued(), 50);
        let (gap, chunks) = written(queue.take(usize::MAX));
        assert!(gap.is_empty());
        assert_eq!(chunks, [50]);
    }

    #[test]
    fn requests_keep_their_place_and_are_never_dropped() {
        let mut queue = Queue::new(100);
        queue.push_chunk(chunk(60, 1));
        let (tx, _rx) = oneshot::channel();
        queue.push_control(Control::Flush(tx));
        queue.push_chunk(chunk(60, 1)); // drops the first chunk, not the request

        // The gap is written before the request, the request before the later chunk.
        let (gap, chunks) = written(queue.take(usize::MAX));
        assert_eq!(gap.records, 1);
        assert!(chunks.is_empty());
        assert!(matches!(
            queue.take(usize::MAX),
            Some(Work::Control(Control::Flush(_)))
        ));
        let (gap, chunks) = written(queue.take(usize::MAX));
        assert!(gap.is_empty());
        assert_eq!(chunks, [60]);
    }

    #[test]
    fn batches_stop_at_the_size_limit() {
        let mut queue = Queue::new(1000);
        for _ in 0..5 {
            queue.push_chunk(chunk(30, 1));
        }
        assert_eq!(written(queue.take(50)).1, [30, 30]);
        assert_eq!(written(queue.take(1)).1, [30]);
        assert_eq!(written(queue.take(1000)).1, [30, 30]);
    }

    #[test]
    fn draining_hands_back_requests_and_counts_records() {
        let mut queue = Queue::new(1000);
        queue.push_chunk(chunk(30, 2));
        let (tx, mut rx) = oneshot::channel();
        queue.push_control(Control::Flush(tx));
        let (controls, dropped) = queue.drain();
        assert_eq!(
            dropped,
            Dropped {
                records: 2,
                bytes: 15
            }
        );
        assert_eq!(controls.len(), 1);
        drop(controls);
        assert!(rx.try_recv().is_err());
        assert!(queue.take(usize::MAX).is_none());
        assert_eq!(queue.queued(), 0);
    }
}
