//! Serving gRPC clients that send the Unix socket path as the HTTP/2 `:authority`.
//!
//! grpc-go clients from before 2024 (the kubelet and crictl of that era, and many tools) put
//! the socket path in `:authority`, either plain (`/run/containerd/containerd.sock`) or
//! percent-encoded. Neither is a valid URI authority, and the `h2` crate under hyper resets
//! every such stream with `PROTOCOL_ERROR` before a service sees it. Patching `h2` would not
//! reach our users, so the fix sits below it, on the connection's bytes.
//!
//! [`LegacyAuthority`] wraps the accepted socket and reads the client's first header block:
//!
//! - If its `:authority` is valid (or absent), the connection switches to **pass-through**:
//!   every byte goes to h2 untouched and nothing is parsed again. Modern clients pay for one
//!   HPACK decode per connection.
//! - If it is not, the connection switches to **rewrite**: every header block the client sends
//!   is decoded (keeping the client's HPACK dynamic table in step) and re-encoded for h2 as
//!   literals that never touch h2's dynamic table, with an invalid `:authority` replaced by
//!   `localhost`. Only HEADERS and CONTINUATION frames are touched; all other frames are
//!   forwarded as they are.
//!
//! Clients use one authority for all calls on a connection, so the first block decides.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The HPACK dynamic table size h2 advertises (the HTTP/2 default); clients may not exceed it.
const HEADER_TABLE_SIZE: usize = 4096;
/// Largest frame payload we emit; the HTTP/2 minimum, which every peer accepts.
const MAX_FRAME_PAYLOAD: usize = 16_384;
/// What replaces an invalid `:authority`.
const REPLACEMENT: &[u8] = b"localhost";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Waiting for the 24-byte connection preface.
    Preface,
    /// Forwarding frames until the first header block decides the mode.
    Inspect,
    /// Re-encoding every header block.
    Rewrite,
    /// Forwarding bytes untouched.
    PassThrough,
}

/// A header block spread over a HEADERS frame and its CONTINUATION frames.
struct PendingBlock {
    stream_id: u32,
    /// END_STREAM and PRIORITY of the HEADERS frame.
    flags: u8,
    priority: Option<[u8; 5]>,
    fragment: BytesMut,
    /// The frames as received, for pass-through.
    original: BytesMut,
}

/// A connection wrapper that makes h2 accept legacy `:authority` values; see the module docs.
pub(crate) struct LegacyAuthority<T> {
    inner: T,
    mode: Mode,
    /// Bytes read from the client and not yet processed.
    raw: BytesMut,
    /// Processed bytes waiting to be read by h2.
    out: BytesMut,
    decoder: loona_hpack::Decoder<'static>,
    pending: Option<PendingBlock>,
    eof: bool,
    /// Largest header block (encoded, and decoded as HTTP/2 counts it) held for inspection.
    max_block: usize,
}

impl<T> LegacyAuthority<T> {
    /// Wraps `inner`; header blocks larger than `max_header_list_size` are not buffered but
    /// handed to h2, which refuses them.
    pub(crate) fn new(inner: T, max_header_list_size: usize) -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Self {
            inner,
            mode: Mode::Preface,
            raw: BytesMut::new(),
            out: BytesMut::new(),
            decoder,
            pending: None,
            eof: false,
            max_block: max_header_list_size.max(MAX_FRAME_PAYLOAD),
        }
    }

    /// Whether this connection is rewriting header blocks (for tests and logs).
    #[cfg(test)]
    fn rewriting(&self) -> bool {
        self.mode == Mode::Rewrite
    }

    /// Moves every complete unit of `raw` to `out`, transformed as the mode requires.
    fn process(&mut self) -> io::Result<()> {
        loop {
            match self.mode {
                Mode::PassThrough => {
                    self.out.unsplit(self.raw.split());
                    return Ok(());
                }
                Mode::Preface => {
                    let n = self.raw.len().min(PREFACE.len());
                    if self.raw[..n] != PREFACE[..n] {
                        // Not HTTP/2 with prior knowledge; let h2 report it.
                        self.mode = Mode::PassThrough;
                    } else if n == PREFACE.len() {
                        self.out.unsplit(self.raw.split_to(n));
                        self.mode = Mode::Inspect;
                    } else {
                        return Ok(());
                    }
                }
                Mode::Inspect | Mode::Rewrite => {
                    if self.raw.len() < FRAME_HEADER {
                        return Ok(());
                    }
                    let len = usize::from(self.raw[0]) << 16
                        | usize::from(self.raw[1]) << 8
                        | usize::from(self.raw[2]);
                    if len > crate::server::MAX_FRAME_SIZE as usize {
                        // Larger than h2 accepts: do not buffer it, let h2 reject it.
                        return self.give_up("an oversized frame");
                    }
                    if self.raw.len() < FRAME_HEADER + len {
                        return Ok(());
                    }
                    let frame = self.raw.split_to(FRAME_HEADER + len);
                    self.frame(frame)?;
                }
            }
        }
    }

    fn frame(&mut self, frame: BytesMut) -> io::Result<()> {
        let kind = frame[3];
        let flags = frame[4];
        let stream_id = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        match (kind, self.pending.as_mut()) {
            (HEADERS, None) => {
                let mut payload = &frame[FRAME_HEADER..];
                let mut pad = 0;
                if flags & PADDED != 0 {
                    pad = usize::from(*payload.first().ok_or_else(malformed)?);
                    payload = &payload[1..];
                }
                let mut priority = None;
                if flags & PRIORITY != 0 {
                    let bytes: [u8; 5] = payload
                        .get(..5)
                        .ok_or_else(malformed)?
                        .try_into()
                        .map_err(|_| malformed())?;
                    priority = Some(bytes);
                    payload = &payload[5..];
                }
                let end = payload.len().checked_sub(pad).ok_or_else(malformed)?;
                let block = PendingBlock {
                    stream_id,
                    flags: flags & (END_STREAM | PRIORITY),
                    priority,
                    fragment: BytesMut::from(&payload[..end]),
                    original: frame,
                };
                self.pending = Some(block);
                if flags & END_HEADERS != 0 {
                    self.finish_block()?;
                }
            }
            (CONTINUATION, Some(block)) if block.stream_id == stream_id => {
                block.fragment.extend_from_slice(&frame[FRAME_HEADER..]);
                block.original.unsplit(frame);
                if block.fragment.len() > self.max_block {
                    // A CONTINUATION flood or a huge block: stop buffering it.
                    return self.give_up("an oversized header block");
                }
                if flags & END_HEADERS != 0 {
                    self.finish_block()?;
                }
            }
            (_, Some(_)) => {
                // Anything but the block's CONTINUATION here is a connection error that h2
                // reports; hand it the bytes as they came.
                let block = self.pending.take().expect("matched Some");
                self.out.unsplit(block.original);
                self.out.unsplit(frame);
                self.mode = Mode::PassThrough;
            }
            (_, None) => self.out.unsplit(frame),
        }
        Ok(())
    }

    /// Stops inspecting: what is buffered and everything after it goes to h2 untouched. While
    /// inspecting that is exactly what the client sent, which h2 then judges by its own limits;
    /// once rewriting, the client's HPACK state is no longer h2's, so the connection ends.
    fn give_up(&mut self, what: &str) -> io::Result<()> {
        if self.mode == Mode::Rewrite {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the client sent {what}"),
            ));
        }
        if let Some(block) = self.pending.take() {
            self.out.unsplit(block.original);
        }
        self.out.unsplit(self.raw.split());
        self.mode = Mode::PassThrough;
        Ok(())
    }

    fn finish_block(&mut self) -> io::Result<()> {
        let block = self.pending.take().expect("a block is pending");
        let mut headers = Vec::new();
        // HPACK lets a few bytes name a large table entry many times: bound what is kept.
        let mut size = 0usize;
        let limit = self.max_block;
        self.decoder
            .decode_with_cb(&block.fragment, |name, value| {
                size = size.saturating_add(name.len() + value.len() + 32);
                if size <= limit {
                    headers.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("malformed HPACK header block: {e:?}"),
                )
            })?;
        if size > limit {
            if self.mode == Mode::Rewrite {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("header list of {size} bytes exceeds the limit of {limit}"),
                ));
            }
            // h2 decodes the block itself and refuses it by its own limit.
            self.out.unsplit(block.original);
            self.mode = Mode::PassThrough;
            self.decoder = loona_hpack::Decoder::new();
            return Ok(());
        }
        let invalid = headers
            .iter()
            .any(|(name, value)| name == b":authority" && !valid_authority(value));
        if self.mode == Mode::Inspect && !invalid {
            self.out.unsplit(block.original);
            self.mode = Mode::PassThrough;
            self.decoder = loona_hpack::Decoder::new();
            return Ok(());
        }
        if self.mode == Mode::Inspect {
            tracing::debug!(
                "client sent a socket path as :authority; rewriting its headers for h2"
            );
            self.mode = Mode::Rewrite;
        }
        let mut encoded = BytesMut::new();
        for (name, value) in &headers {
            let value = if name == b":authority" && !valid_authority(value) {
                REPLACEMENT
            } else {
                value.as_slice()
            };
            encode_literal(&mut encoded, name, value);
        }
        write_header_frames(&mut self.out, &block, encoded);
        Ok(())
    }
}

fn malformed() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "malformed HTTP/2 HEADERS frame")
}

/// The check h2 applies to `:authority`.
fn valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// HPACK integer with an `n`-bit prefix (RFC 7541, 5.1), the prefix byte carrying `flags`.
fn encode_integer(dst: &mut BytesMut, flags: u8, n: u8, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        dst.put_u8(flags | value as u8);
        return;
    }
    dst.put_u8(flags | max as u8);
    value -= max;
    while value >= 128 {
        dst.put_u8((value % 128) as u8 | 0x80);
        value /= 128;
    }
    dst.put_u8(value as u8);
}

/// "Literal header field without indexing, new name" with raw strings (RFC 7541, 6.2.2):
/// nothing enters h2's dynamic table, so the two sides can never disagree about it.
fn encode_literal(dst: &mut BytesMut, name: &[u8], value: &[u8]) {
    dst.put_u8(0);
    encode_integer(dst, 0, 7, name.len());
    dst.extend_from_slice(name);
    encode_integer(dst, 0, 7, value.len());
    dst.extend_from_slice(value);
}

/// Writes a HEADERS frame (and CONTINUATION frames as needed) carrying `block_bytes`.
fn write_header_frames(dst: &mut BytesMut, block: &PendingBlock, mut block_bytes: BytesMut) {
    let priority_len = if block.priority.is_some() { 5 } else { 0 };
    let first = block_bytes.len().min(MAX_FRAME_PAYLOAD - priority_len);
    let mut kind = HEADERS;
    let mut flags = block.flags;
    let mut chunk = block_bytes.split_to(first);
    loop {
        let last = block_bytes.is_empty();
        if last {
            flags |= END_HEADERS;
        }
        let prefix = if kind == HEADERS { priority_len } else { 0 };
        let len = prefix + chunk.len();
        dst.put_uint(len as u64, 3);
        dst.put_u8(kind);
        dst.put_u8(flags);
        dst.put_u32(block.stream_id);
        if let (HEADERS, Some(priority)) = (kind, block.priority) {
            dst.extend_from_slice(&priority);
        }
        dst.unsplit(chunk);
        if last {
            return;
        }
        kind = CONTINUATION;
        flags = 0;
        let n = block_bytes.len().min(MAX_FRAME_PAYLOAD);
        chunk = block_bytes.split_to(n);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for LegacyAuthority<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.mode == Mode::PassThrough && this.raw.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            if this.eof {
                // A truncated frame at EOF: hand over what is left and let h2 judge it.
                this.out.unsplit(this.raw.split());
                if this.out.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            this.raw.reserve(16 * 1024);
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.eof = true;
            } else {
                this.raw.extend_from_slice(read.filled());
                this.process()?;
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for LegacyAuthority<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn block(headers: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut encoder = loona_hpack::Encoder::new();
        encoder.encode(headers.iter().map(|(n, v)| (*n, *v)))
    }

    /// Feeds `input` through the wrapper and returns what h2 would read.
    async fn run(input: Vec<u8>) -> (Vec<u8>, bool) {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(&input).await.unwrap();
        client.shutdown().await.unwrap();
        let mut wrapped = LegacyAuthority::new(server, 64 * 1024);
        let mut out = Vec::new();
        wrapped.read_to_end(&mut out).await.unwrap();
        let rewriting = wrapped.rewriting();
        (out, rewriting)
    }

    /// Decodes every header block in `bytes` (after the preface) with a fresh decoder, as h2
    /// would.
    fn decode_all(bytes: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut decoder = loona_hpack::Decoder::new();
        let mut rest = &bytes[PREFACE.len()..];
        let mut blocks = Vec::new();
        let mut fragment = Vec::new();
        while rest.len() >= FRAME_HEADER {
            let len =
                (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
            let (kind, flags) = (rest[3], rest[4]);
            let payload = &rest[FRAME_HEADER..FRAME_HEADER + len];
            if kind == HEADERS || kind == CONTINUATION {
                let skip = if kind == HEADERS && flags & PRIORITY != 0 {
                    5
                } else {
                    0
                };
                fragment.extend_from_slice(&payload[skip..]);
                if flags & END_HEADERS != 0 {
                    blocks.push(decoder.decode(&fragment).unwrap());
                    fragment.clear();
                }
            }
            rest = &rest[FRAME_HEADER + len..];
        }
        blocks
    }

    fn authority(block: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        block
            .iter()
            .find(|(n, _)| n == b":authority")
            .unwrap()
            .1
            .clone()
    }

    fn request_headers(authority: &[u8]) -> Vec<(&'static [u8], Vec<u8>)> {
        vec![
            (b":method", b"POST".to_vec()),
            (b":scheme", b"http".to_vec()),
            (b":path", b"/runtime.v1.RuntimeService/Version".to_vec()),
            (b":authority", authority.to_vec()),
            (b"content-type", b"application/grpc".to_vec()),
            (b"te", b"trailers".to_vec()),
        ]
    }

    fn connection(authority: &[u8], requests: u32) -> Vec<u8> {
        let mut encoder = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        for i in 0..requests {
            let headers = request_headers(authority);
            let encoded = encoder.encode(headers.iter().map(|(n, v)| (*n, v.as_slice())));
            input.extend(frame(HEADERS, END_HEADERS, 1 + 2 * i, &encoded));
            input.extend(frame(0x0, END_STREAM, 1 + 2 * i, &[0, 0, 0, 0, 0]));
        }
        input
    }

    #[tokio::test]
    async fn valid_authority_passes_through_byte_for_byte() {
        let input = connection(b"localhost", 3);
        let (out, rewriting) = run(input.clone()).await;
        assert_eq!(out, input);
        assert!(!rewriting);
    }

    #[tokio::test]
    async fn socket_path_authority_is_rewritten_on_every_request() {
        for path in [
            &b"/run/containerd/containerd.sock"[..],
            b"%2Frun%2Fcontainerd%2Fcontainerd.sock",
        ] {
            let input = connection(path, 3);
            let (out, rewriting) = run(input).await;
            assert!(rewriting);
            let blocks = decode_all(&out);
            assert_eq!(
                blocks.len(),
                3,
                "all three requests survive (dynamic table in step)"
            );
            for block in &blocks {
                assert_eq!(authority(block), b"localhost");
                assert!(
                    block
                        .iter()
                        .any(|(n, v)| n == b":path" && v == b"/runtime.v1.RuntimeService/Version")
                );
            }
        }
    }

    #[tokio::test]
    async fn continuation_padding_and_priority_are_handled() {
        let encoded = block(&[
            (b":method", b"POST"),
            (b":authority", b"/var/run/crio/crio.sock"),
            (b":path", b"/x"),
            (b"x-big", &[b'a'; 40_000]),
        ]);
        let (a, b) = encoded.split_at(10);
        let mut headers_payload = vec![3]; // pad length
        headers_payload.extend_from_slice(&[0, 0, 0, 0, 16]); // priority
        headers_payload.extend_from_slice(a);
        headers_payload.extend_from_slice(&[0, 0, 0]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(
            HEADERS,
            PADDED | PRIORITY | END_STREAM,
            1,
            &headers_payload,
        ));
        input.extend(frame(CONTINUATION, END_HEADERS, 1, b));
        let (out, rewriting) = run(input).await;
        assert!(rewriting);
        let blocks = decode_all(&out);
        assert_eq!(blocks.len(), 1);
        assert_eq!(authority(&blocks[0]), b"localhost");
        let big = blocks[0].iter().find(|(n, _)| n == b"x-big").unwrap();
        assert_eq!(big.1.len(), 40_000);
        // The first emitted frame keeps END_STREAM and PRIORITY, and no frame is oversized.
        assert_eq!(out[PREFACE.len() + 3], HEADERS);
        assert_eq!(out[PREFACE.len() + 4], END_STREAM | PRIORITY);
    }

    #[tokio::test]
    async fn garbage_is_forwarded_for_h2_to_reject() {
        let input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        let (out, _) = run(input.clone()).await;
        assert_eq!(out, input);
    }

    #[tokio::test]
    async fn malformed_hpack_in_rewrite_mode_is_an_error_not_a_panic() {
        let mut input = connection(b"/run/x.sock", 1);
        input.extend(frame(
            HEADERS,
            END_HEADERS,
            3,
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ));
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(&input).await.unwrap();
        client.shutdown().await.unwrap();
        let mut wrapped = LegacyAuthority::new(server, 16 * 1024);
        let mut out = Vec::new();
        let err = wrapped.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn blocks_over_the_limit_go_to_h2_untouched_or_end_a_rewriting_connection() {
        let big = [b'a'; 20_000];
        let encoded = block(&[(b":path", b"/x"), (b"x-big", &big)]);
        let (a, b) = encoded.split_at(10);
        let oversized = |stream| {
            let mut frames = frame(HEADERS, 0, stream, a);
            frames.extend(frame(CONTINUATION, END_HEADERS, stream, b));
            frames
        };
        // Inspecting: the block is passed on byte for byte, for h2 to refuse.
        let mut input = PREFACE.to_vec();
        input.extend(oversized(1));
        let (out, rewriting) = run_limited(input.clone(), 16 * 1024).await.unwrap();
        assert!(!rewriting);
        assert_eq!(out, input);
        // Rewriting: the client's HPACK state is not h2's, so the connection ends.
        let mut input = connection(b"/run/x.sock", 1);
        input.extend(oversized(3));
        let err = run_limited(input, 16 * 1024).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    async fn run_limited(input: Vec<u8>, limit: usize) -> io::Result<(Vec<u8>, bool)> {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(&input).await.unwrap();
        client.shutdown().await.unwrap();
        let mut wrapped = LegacyAuthority::new(server, limit);
        let mut out = Vec::new();
        wrapped.read_to_end(&mut out).await?;
        Ok((out, wrapped.rewriting()))
    }

    #[test]
    fn integers_use_continuation_bytes_past_the_prefix() {
        let mut out = BytesMut::new();
        encode_integer(&mut out, 0, 5, 1337);
        assert_eq!(&out[..], &[31, 154, 10]); // RFC 7541 C.1.2
        out.clear();
        encode_integer(&mut out, 0, 5, 10);
        assert_eq!(&out[..], &[10]);
    }
}
