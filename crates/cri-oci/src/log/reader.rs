//! The reader tasks: one per attached stream, draining it into the queue as fast as it
//! produces, never waiting for the file.

use std::future::poll_fn;
use std::io;
use std::pin::{Pin, pin};
use std::task::Poll;

use tokio::io::{AsyncRead, ReadBuf};

use super::split::LineSplitter;
use super::{LogWriter, Stream};
use crate::{Error, Result};

/// Bytes asked for per read: two default Linux pipes, so a busy stream is drained in few
/// reads (each read costs a wake-up and a pass of the line splitter).
const READ_SIZE: usize = 128 * 1024;

/// Counts the reader as active while it exists, so `close` can wait for it.
struct Active<'a>(&'a LogWriter);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.inner.shared.readers.send_modify(|n| *n -= 1);
    }
}

/// Copies `reader` into the queue until end of file, a read error or the writer closing.
/// The caller has already counted this reader in `readers`.
pub(super) async fn pump<R>(writer: LogWriter, stream: Stream, mut reader: R) -> Result<u64>
where
    R: AsyncRead + Unpin,
{
    let _active = Active(&writer);
    let shared = &writer.inner.shared;
    let mut shutdown = shared.shutdown.subscribe();
    let mut splitter = LineSplitter::new(shared.options.max_line, !shared.options.keep_cr);
    let mut buf = vec![0; READ_SIZE];
    let mut total = 0u64;
    loop {
        if *shutdown.borrow_and_update() {
            break;
        }
        let read = {
            let mut stop = pin!(shutdown.changed());
            poll_fn(|cx| {
                if stop.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                let mut filled = ReadBuf::new(&mut buf);
                match Pin::new(&mut reader).poll_read(cx, &mut filled) {
                    Poll::Ready(Ok(())) => Poll::Ready(Some(Ok(filled.filled().len()))),
                    Poll::Ready(Err(error)) => Poll::Ready(Some(Err(error))),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await
        };
        match read {
            // Closing: stop reading; the pending part of a line is written below.
            None => break,
            Some(Ok(0)) => break,
            Some(Ok(n)) => {
                total += n as u64;
                shared.enqueue(stream, &mut splitter, &buf[..n], false);
            }
            Some(Err(error)) if error.kind() == io::ErrorKind::Interrupted => {}
            Some(Err(error)) => {
                shared.enqueue(stream, &mut splitter, &[], true);
                return Err(Error::io(
                    format!("reading container {stream} for {}", shared.label),
                    error,
                ));
            }
        }
    }
    shared.enqueue(stream, &mut splitter, &[], true);
    Ok(total)
}
