//! Tests: two sessions talking over `tokio::io::duplex`, and a hand-driven "raw" peer that
//! writes and reads frames directly to exercise flow control, PING, GOAWAY and bad input.

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::frame::{self, Head, Outgoing, Received};
use super::headers::{Compressor, Decompressor, decode_block, dictionary, encode_block};
use super::{Config, Connection, Error, Headers, Incoming, ResetReason, Role, Stream};

const LIMIT: Duration = Duration::from_secs(60);

/// Runs a test body with a deadline, so a hang fails instead of blocking the suite.
async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("test did not finish in time")
}

fn h(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

struct Pair {
    client: Connection,
    client_incoming: Incoming,
    server: Connection,
    server_incoming: Incoming,
}

fn pair_with(client: Config, server: Config) -> Pair {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (client, client_incoming) = Connection::new(a, Role::Client, client);
    let (server, server_incoming) = Connection::new(b, Role::Server, server);
    Pair {
        client,
        client_incoming,
        server,
        server_incoming,
    }
}

fn pair() -> Pair {
    pair_with(Config::default(), Config::default())
}

/// Opens a stream from the client and accepts it on the server.
async fn open_accepted(p: &mut Pair, headers: Headers) -> (Stream, Stream) {
    let client = p.client.clone();
    let opening = tokio::spawn(async move { client.open(headers).await });
    let incoming = p.server_incoming.next().await.expect("incoming stream");
    let server_side = incoming.accept().await.expect("accept");
    let client_side = opening.await.unwrap().expect("open");
    (client_side, server_side)
}

async fn read_all(stream: &mut Stream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await?;
    Ok(out)
}

fn pattern(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

// ---- the raw peer ------------------------------------------------------------------------

/// A frame as the raw peer reads it.
#[derive(Debug)]
enum RawFrame {
    Control(Received, Option<Headers>),
    Data {
        stream: u32,
        flags: u8,
        data: Vec<u8>,
    },
}

/// One end of a duplex driven frame by frame by the test.
struct Raw {
    io: DuplexStream,
    compressor: Compressor,
    decompressor: Decompressor,
}

impl Raw {
    fn new(io: DuplexStream) -> Self {
        Raw {
            io,
            compressor: Compressor::new(),
            decompressor: Decompressor::new(),
        }
    }

    async fn send(&mut self, frame: Outgoing) {
        let mut buf = Vec::new();
        frame::encode_control(&frame, &mut self.compressor, &mut buf).unwrap();
        self.io.write_all(&buf).await.unwrap();
    }

    async fn send_data(&mut self, stream: u32, fin: bool, data: &[u8]) {
        let mut buf = Vec::new();
        let flags = if fin { frame::FLAG_FIN } else { 0 };
        frame::put_data_head(&mut buf, stream, flags, data.len());
        buf.extend_from_slice(data);
        self.io.write_all(&buf).await.unwrap();
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        // The session may already have hung up; that is fine.
        let _ = self.io.write_all(bytes).await;
    }

    /// The next frame, or `None` at end of file.
    async fn recv(&mut self) -> Option<RawFrame> {
        let mut head = [0u8; frame::HEADER_LEN];
        match self.io.read_exact(&mut head).await {
            Ok(_) => {}
            Err(_) => return None,
        }
        match frame::parse_head(&head) {
            Head::Control {
                version,
                kind,
                flags,
                length,
            } => {
                assert_eq!(version, 3);
                let mut payload = vec![0; length];
                self.io.read_exact(&mut payload).await.ok()?;
                let received = frame::parse_control(kind, flags, payload).unwrap();
                let headers = match &received {
                    Received::SynStream { block, .. }
                    | Received::SynReply { block, .. }
                    | Received::Headers { block, .. } => Some(
                        decode_block(&self.decompressor.decompress(block, 1 << 20).unwrap())
                            .unwrap(),
                    ),
                    _ => None,
                };
                Some(RawFrame::Control(received, headers))
            }
            Head::Data {
                stream,
                flags,
                length,
            } => {
                let mut data = vec![0; length];
                self.io.read_exact(&mut data).await.ok()?;
                Some(RawFrame::Data {
                    stream,
                    flags,
                    data,
                })
            }
        }
    }

    /// The next frame that is not SETTINGS or WINDOW_UPDATE.
    async fn recv_significant(&mut self) -> Option<RawFrame> {
        loop {
            match self.recv().await? {
                RawFrame::Control(Received::Settings(_) | Received::WindowUpdate { .. }, _) => {}
                other => return Some(other),
            }
        }
    }

    /// The next frame, or `None` if none arrives within `wait`.
    async fn recv_within(&mut self, wait: Duration) -> Option<RawFrame> {
        tokio::time::timeout(wait, self.recv()).await.ok().flatten()
    }

    /// Reads frames until the session hangs up; returns the GOAWAY status if one came.
    async fn goaway_then_eof(&mut self) -> Option<u32> {
        let mut status = None;
        while let Some(frame) = self.recv().await {
            if let RawFrame::Control(Received::GoAway { status: s, .. }, _) = frame {
                status = Some(s);
            }
        }
        status
    }
}

/// A session under test with a raw peer on the other end.
fn raw_peer(role: Role, config: Config) -> (Connection, Incoming, Raw) {
    let (a, b) = tokio::io::duplex(256 * 1024);
    let (conn, incoming) = Connection::new(a, role, config);
    (conn, incoming, Raw::new(b))
}

/// Reads the SETTINGS and session WINDOW_UPDATE every session starts with.
async fn expect_preface(raw: &mut Raw, config: &Config) {
    match raw.recv().await {
        Some(RawFrame::Control(Received::Settings(entries), _)) => {
            assert_eq!(
                entries,
                vec![(frame::SETTINGS_INITIAL_WINDOW_SIZE, config.initial_window)]
            );
        }
        other => panic!("expected SETTINGS first, got {other:?}"),
    }
    match raw.recv().await {
        Some(RawFrame::Control(Received::WindowUpdate { stream: 0, delta }, _)) => {
            assert_eq!(delta, config.session_window - 65_536);
        }
        other => panic!("expected the session WINDOW_UPDATE, got {other:?}"),
    }
}

// ---- dictionary and header blocks ----------------------------------------------------------

#[test]
fn dictionary_is_the_spdy3_dictionary() {
    use sha2::{Digest, Sha256};
    let dict = dictionary();
    assert_eq!(dict.len(), 1423);
    let digest: String = Sha256::digest(dict)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        digest,
        "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"
    );
}

#[test]
fn header_block_round_trip_merges_and_splits_values() {
    let headers = h(&[
        ("StreamType", "stdout"),
        ("x-multi", "a"),
        ("port", "8080"),
        ("x-multi", "b"),
        ("empty", ""),
    ]);
    let block = encode_block(&headers);
    // Four distinct names: the repeated one travels once with a NUL between its values.
    assert_eq!(&block[..4], &4u32.to_be_bytes());
    let decoded = decode_block(&block).unwrap();
    assert_eq!(
        decoded,
        h(&[
            ("streamtype", "stdout"),
            ("x-multi", "a"),
            ("x-multi", "b"),
            ("port", "8080"),
            ("empty", ""),
        ])
    );
}

#[test]
fn header_block_rejects_malformed_input() {
    assert!(decode_block(&[]).is_err());
    assert!(decode_block(&[0, 0, 0, 1]).is_err());
    // A count far beyond the bytes present.
    assert!(decode_block(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]).is_err());
    // A name length running past the end.
    assert!(decode_block(&[0, 0, 0, 1, 0, 0, 0, 9, b'a']).is_err());
    // Trailing garbage.
    let mut block = encode_block(&h(&[("a", "b")]));
    block.push(0);
    assert!(decode_block(&block).is_err());
    // Empty name.
    assert!(decode_block(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
}

#[test]
fn compression_context_is_carried_across_many_blocks() {
    let mut compressor = Compressor::new();
    let mut decompressor = Decompressor::new();
    let mut sizes = Vec::new();
    let mut blocks = Vec::new();
    for i in 0..500 {
        let headers = h(&[
            ("streamtype", if i % 2 == 0 { "stdout" } else { "stderr" }),
            ("requestid", &i.to_string()),
            (
                "x-long",
                "a fairly long header value that repeats in every single block",
            ),
        ]);
        let mut compressed = Vec::new();
        compressor
            .compress(&encode_block(&headers), &mut compressed)
            .unwrap();
        sizes.push(compressed.len());
        blocks.push(compressed.clone());
        let raw = decompressor.decompress(&compressed, 1 << 20).unwrap();
        assert_eq!(decode_block(&raw).unwrap(), headers, "block {i}");
    }
    // Later blocks refer back to earlier ones, so they are much smaller than the first...
    assert!(
        sizes[499] * 2 < sizes[0],
        "sizes: first {} last {}",
        sizes[0],
        sizes[499]
    );
    // ...and cannot be read by a fresh context.
    let mut fresh = Decompressor::new();
    let late = fresh.decompress(&blocks[400], 1 << 20);
    assert!(late.is_err() || decode_block(&late.unwrap()).is_err());
}

#[test]
fn decompression_is_bounded() {
    let big = h(&[("x", &"y".repeat(100_000))]);
    let mut compressed = Vec::new();
    Compressor::new()
        .compress(&encode_block(&big), &mut compressed)
        .unwrap();
    assert!(compressed.len() < 2_000);
    let result = Decompressor::new().decompress(&compressed, 10_000);
    assert!(matches!(result, Err(super::headers::BlockError::TooLarge)));
    assert!(
        Decompressor::new()
            .decompress(b"not zlib at all", 10_000)
            .is_err()
    );
}

#[test]
fn reset_reason_codes_round_trip() {
    for code in 0..16 {
        assert_eq!(ResetReason::from_code(code).code(), code);
    }
    assert_eq!(ResetReason::Cancel.code(), 5);
    assert_eq!(
        ResetReason::FlowControlError.to_string(),
        "FLOW_CONTROL_ERROR"
    );
}

#[test]
fn errors_map_to_io_kinds() {
    use std::io::ErrorKind;
    let reset = Error::Reset {
        stream: 1,
        reason: ResetReason::Cancel,
        by_peer: true,
    };
    assert_eq!(reset.io_kind(), ErrorKind::ConnectionReset);
    assert_eq!(Error::WriteClosed(1).io_kind(), ErrorKind::BrokenPipe);
    assert_eq!(
        Error::Protocol("x".into()).io_kind(),
        ErrorKind::InvalidData
    );
    assert_eq!(Error::Closed.io_kind(), ErrorKind::ConnectionAborted);
    let io: std::io::Error = reset.into();
    let inner = io.into_inner().unwrap().downcast::<Error>().unwrap();
    assert!(matches!(*inner, Error::Reset { by_peer: true, .. }));
}

// ---- two sessions ------------------------------------------------------------------------

#[tokio::test]
async fn open_accept_reply_with_headers() {
    within(async {
        let mut p = pair();
        let client = p.client.clone();
        let opening = tokio::spawn(async move {
            client
                .open(h(&[
                    ("streamType", "stdout"),
                    ("x-multi", "1"),
                    ("x-multi", "2"),
                ]))
                .await
        });
        let incoming = p.server_incoming.next().await.unwrap();
        assert_eq!(incoming.id(), 1);
        assert_eq!(incoming.header("streamtype"), Some("stdout"));
        assert_eq!(incoming.header("StreamType"), Some("stdout"));
        assert_eq!(
            incoming.headers(),
            &h(&[("streamtype", "stdout"), ("x-multi", "1"), ("x-multi", "2")])
        );
        let server_side = incoming
            .accept_with(h(&[("x-reply", "yes")]))
            .await
            .unwrap();
        let client_side = opening.await.unwrap().unwrap();
        assert_eq!(client_side.id(), 1);
        assert_eq!(client_side.headers(), &h(&[("x-reply", "yes")]));
        assert_eq!(server_side.header("streamtype"), Some("stdout"));

        // The next stream gets the next odd id; an empty reply gives empty headers.
        let (c2, _s2) = open_accepted(&mut p, h(&[("streamtype", "stderr")])).await;
        assert_eq!(c2.id(), 3);
        assert!(c2.headers().is_empty());
    })
    .await;
}

#[tokio::test]
async fn server_can_open_streams_too() {
    within(async {
        let mut p = pair();
        let server = p.server.clone();
        let opening = tokio::spawn(async move { server.open(h(&[("a", "b")])).await });
        let incoming = p.client_incoming.next().await.unwrap();
        assert_eq!(incoming.id(), 2);
        let mut client_side = incoming.accept().await.unwrap();
        let mut server_side = opening.await.unwrap().unwrap();
        server_side.write_all(b"from server").await.unwrap();
        server_side.shutdown().await.unwrap();
        assert_eq!(read_all(&mut client_side).await.unwrap(), b"from server");
    })
    .await;
}

#[tokio::test]
async fn bidirectional_data() {
    within(async {
        let mut p = pair();
        let (c, s) = open_accepted(&mut p, h(&[("streamtype", "stdin")])).await;
        let up = pattern(1, 3_000_000);
        let down = pattern(2, 5_000_000);
        // Both sides write and read at the same time, from separate tasks.
        async fn exchange(stream: Stream, send: Vec<u8>) -> Vec<u8> {
            let (mut r, mut w) = tokio::io::split(stream);
            let writer = tokio::spawn(async move {
                w.write_all(&send).await.unwrap();
                w.shutdown().await.unwrap();
                w
            });
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            writer.await.unwrap();
            got
        }
        let client_task = tokio::spawn(exchange(c, up.clone()));
        let got_up = exchange(s, down.clone()).await;
        assert_eq!(got_up, up);
        assert_eq!(client_task.await.unwrap(), down);
    })
    .await;
}

#[tokio::test]
async fn fin_half_closes_each_direction() {
    within(async {
        let mut p = pair();
        // Client finishes first; the server can still send.
        let (mut c, mut s) = open_accepted(&mut p, h(&[("streamtype", "stdin")])).await;
        c.write_all(b"input").await.unwrap();
        c.shutdown().await.unwrap();
        assert!(
            c.write_all(b"more").await.is_err(),
            "write after FIN must fail"
        );
        assert_eq!(read_all(&mut s).await.unwrap(), b"input");
        // EOF again after EOF.
        assert_eq!(s.read(&mut [0u8; 8]).await.unwrap(), 0);
        s.write_all(b"output after the client's FIN").await.unwrap();
        s.shutdown().await.unwrap();
        assert_eq!(
            read_all(&mut c).await.unwrap(),
            b"output after the client's FIN"
        );

        // Server finishes first; the client can still send.
        let (mut c, mut s) = open_accepted(&mut p, h(&[("streamtype", "stdout")])).await;
        s.write_all(b"done").await.unwrap();
        s.shutdown().await.unwrap();
        assert_eq!(read_all(&mut c).await.unwrap(), b"done");
        c.write_all(b"late input").await.unwrap();
        c.shutdown().await.unwrap();
        assert_eq!(read_all(&mut s).await.unwrap(), b"late input");
    })
    .await;
}

#[tokio::test]
async fn large_transfer_respects_small_windows() {
    within(async {
        let small = Config {
            initial_window: 64 * 1024,
            session_window: 64 * 1024,
            ..Config::default()
        };
        let mut p = pair_with(small.clone(), small);
        let (c, mut s) = open_accepted(&mut p, h(&[("streamtype", "stdout")])).await;
        const TOTAL: usize = 64 * 1024 * 1024;
        let writer = tokio::spawn(async move {
            let block = pattern(7, 1024 * 1024);
            for _ in 0..TOTAL / block.len() {
                s.write_all(&block).await.unwrap();
            }
            s.shutdown().await.unwrap();
            s
        });
        let mut c = c;
        let expected = pattern(7, 1024 * 1024);
        let mut buf = vec![0u8; 8 * 1024];
        let mut total = 0usize;
        let mut reads = 0u64;
        loop {
            let n = c.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            // Compare against the repeating block, across its wrap-around if need be.
            let offset = total % expected.len();
            let first = n.min(expected.len() - offset);
            assert_eq!(
                &buf[..first],
                &expected[offset..offset + first],
                "at byte {total}"
            );
            assert_eq!(&buf[first..n], &expected[..n - first], "at byte {total}");
            total += n;
            reads += 1;
            // Let the buffer fill up now and then.
            if reads.is_multiple_of(512) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        assert_eq!(total, TOTAL);
        let high = c.high_water();
        assert!(high <= 64 * 1024, "receive buffer reached {high} bytes");
        assert!(high > 0);
        writer.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn many_concurrent_streams() {
    within(async {
        let p = pair();
        let Pair {
            client,
            mut server_incoming,
            server: _server,
            client_incoming: _ci,
        } = p;
        // Echo server: each stream's input comes back reversed in chunks.
        let server_task = tokio::spawn(async move {
            let mut handlers = Vec::new();
            while let Some(incoming) = server_incoming.next().await {
                handlers.push(tokio::spawn(async move {
                    let mut s = incoming.accept().await.unwrap();
                    let mut data = Vec::new();
                    s.read_to_end(&mut data).await.unwrap();
                    s.write_all(&data).await.unwrap();
                    s.shutdown().await.unwrap();
                }));
                if handlers.len() == 100 {
                    break;
                }
            }
            for handler in handlers {
                handler.await.unwrap();
            }
        });
        let mut tasks = Vec::new();
        for i in 0..100u32 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = client
                    .open(h(&[("requestid", &i.to_string())]))
                    .await
                    .unwrap();
                let data = pattern(i, 20_000 + i as usize * 500);
                s.write_all(&data).await.unwrap();
                s.shutdown().await.unwrap();
                let back = read_all(&mut s).await.unwrap();
                assert_eq!(back, data, "stream {i}");
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        server_task.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn header_compression_state_across_many_streams() {
    within(async {
        let mut p = pair();
        for i in 0..300 {
            let headers = h(&[
                (
                    "streamtype",
                    ["stdin", "stdout", "stderr", "error", "resize"][i % 5],
                ),
                ("requestid", &i.to_string()),
                ("port", &(8000 + i).to_string()),
            ]);
            let client = p.client.clone();
            let sent = headers.clone();
            let opening = tokio::spawn(async move { client.open(sent).await });
            let incoming = p.server_incoming.next().await.unwrap();
            assert_eq!(incoming.headers(), &headers, "stream {i}");
            let reply = h(&[("x-index", &i.to_string())]);
            let _server_side = incoming.accept_with(reply.clone()).await.unwrap();
            let client_side = opening.await.unwrap().unwrap();
            assert_eq!(client_side.headers(), &reply);
        }
    })
    .await;
}

#[tokio::test]
async fn ping_round_trip() {
    within(async {
        let p = pair();
        let rtt = p.client.ping().await.unwrap();
        assert!(rtt < LIMIT);
        p.server.ping().await.unwrap();
        p.client.ping().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn buffered_reads_hand_over_the_received_pieces() {
    within(async {
        let small = Config {
            initial_window: 64 * 1024,
            session_window: 64 * 1024,
            ..Config::default()
        };
        let mut p = pair_with(small.clone(), small);
        let (mut c, mut s) = open_accepted(&mut p, h(&[("streamtype", "stdout")])).await;
        // 4 MiB through a 64 KiB window: every piece is taken (and returned to the window)
        // as the copy goes, mixed with plain reads, and arrives whole and in order.
        const TOTAL: usize = 4 * 1024 * 1024;
        let sent = pattern(11, TOTAL);
        let expected = sent.clone();
        let writer = tokio::spawn(async move {
            s.write_all(&sent).await.unwrap();
            s.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        let mut first = [0u8; 100];
        c.read_exact(&mut first).await.unwrap();
        got.extend_from_slice(&first);
        // A partly consumed piece, then a plain read of the rest of it.
        let piece = c.fill_buf().await.unwrap().len();
        assert!(piece > 10, "a received piece, not {piece} bytes");
        got.extend_from_slice(&c.fill_buf().await.unwrap()[..10]);
        c.consume(10);
        let mut rest = vec![0u8; piece - 10];
        c.read_exact(&mut rest).await.unwrap();
        got.extend_from_slice(&rest);
        tokio::io::copy_buf(&mut c, &mut got).await.unwrap();
        assert_eq!(got.len(), TOTAL);
        assert!(got == expected, "the bytes arrived in order");
        assert!(c.fill_buf().await.unwrap().is_empty(), "end of file stays");
        writer.await.unwrap();

        // A reset drops what was taken and fails buffered reads.
        let (mut c, mut s) = open_accepted(&mut p, h(&[("streamtype", "y")])).await;
        s.write_all(b"taken, then dropped").await.unwrap();
        assert_eq!(c.fill_buf().await.unwrap(), b"taken, then dropped");
        c.reset();
        assert!(c.fill_buf().await.is_err());
        let err = c.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    })
    .await;
}

#[tokio::test]
async fn reset_by_peer_fails_reads_and_writes() {
    within(async {
        let mut p = pair();
        let (mut c, s) = open_accepted(&mut p, h(&[("streamtype", "stdout")])).await;
        s.reset();
        let err = c.read(&mut [0u8; 16]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
        let inner = err.into_inner().unwrap().downcast::<Error>().unwrap();
        assert!(
            matches!(
                *inner,
                Error::Reset {
                    stream: 1,
                    reason: ResetReason::Cancel,
                    by_peer: true
                }
            ),
            "{inner:?}"
        );
        assert!(c.write_all(b"x").await.is_err());
        // The local side sees its own reset too.
        let mut s = s;
        let err = s.write_all(b"x").await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);

        // A rejected stream fails open().
        let client = p.client.clone();
        let opening = tokio::spawn(async move { client.open(h(&[("streamtype", "x")])).await });
        p.server_incoming.next().await.unwrap().reject();
        let err = opening.await.unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Reset {
                    reason: ResetReason::RefusedStream,
                    by_peer: true,
                    ..
                }
            ),
            "{err:?}"
        );
        // The session is unaffected.
        let (mut c, mut s) = open_accepted(&mut p, h(&[("streamtype", "y")])).await;
        s.write_all(b"still fine").await.unwrap();
        s.shutdown().await.unwrap();
        assert_eq!(read_all(&mut c).await.unwrap(), b"still fine");
    })
    .await;
}

#[tokio::test]
async fn close_sends_goaway_and_ends_both_sessions() {
    within(async {
        let mut p = pair();
        let (mut c, mut s) = open_accepted(&mut p, h(&[("streamtype", "stdout")])).await;
        s.write_all(b"queued before close").await.unwrap();
        p.server.close();
        // Data queued before close() still arrives; then the stream errors (no FIN came).
        let mut got = vec![0u8; 19];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"queued before close");
        assert!(c.read(&mut [0u8; 8]).await.is_err());
        p.server.closed().await;
        p.client.closed().await;
        assert!(p.client.is_closed() && p.server.is_closed());
        assert!(p.server.error().is_none(), "{:?}", p.server.error());
        assert!(p.client.error().is_none(), "{:?}", p.client.error());
        assert!(p.server_incoming.next().await.is_none());
        assert!(p.client.open(Vec::new()).await.is_err());
        assert!(s.write_all(b"x").await.is_err());
    })
    .await;
}

#[tokio::test]
async fn dropping_every_handle_ends_the_session() {
    within(async {
        let p = pair();
        let Pair {
            client,
            client_incoming,
            server,
            server_incoming,
        } = p;
        drop(server);
        drop(server_incoming);
        client.closed().await;
        assert!(client.error().is_none());
        drop(client_incoming);
    })
    .await;
}

#[tokio::test]
async fn dropped_stream_finishes_gracefully() {
    within(async {
        let mut p = pair();
        let (mut c, mut s) = open_accepted(&mut p, h(&[("streamtype", "stdout")])).await;
        s.write_all(b"last words").await.unwrap();
        drop(s); // half-closes after the queued data
        assert_eq!(read_all(&mut c).await.unwrap(), b"last words");
        // The peer can still send; the dropped side drains it without stalling.
        let big = pattern(3, 3 * 1024 * 1024);
        c.write_all(&big).await.unwrap();
        c.shutdown().await.unwrap();
        c.flush().await.unwrap();
    })
    .await;
}

// ---- a raw peer --------------------------------------------------------------------------

#[tokio::test]
async fn preface_settings_then_window_update() {
    within(async {
        let config = Config::default();
        let (_conn, _incoming, mut raw) = raw_peer(Role::Server, config.clone());
        expect_preface(&mut raw, &config).await;
    })
    .await;
}

#[tokio::test]
async fn ping_echo_and_parity() {
    within(async {
        let config = Config::default();
        let (conn, _incoming, mut raw) = raw_peer(Role::Server, config.clone());
        expect_preface(&mut raw, &config).await;
        // A client-parity (odd) ping is echoed.
        raw.send(Outgoing::Ping(7)).await;
        match raw.recv_significant().await {
            Some(RawFrame::Control(Received::Ping(7), _)) => {}
            other => panic!("expected the echo, got {other:?}"),
        }
        // An even ping would be a reply to one of the server's own: not echoed.
        raw.send(Outgoing::Ping(8)).await;
        assert!(raw.recv_within(Duration::from_millis(200)).await.is_none());
        // The server's own ping uses even ids and completes on the echo.
        let pinging = tokio::spawn(async move { conn.ping().await });
        let id = match raw.recv_significant().await {
            Some(RawFrame::Control(Received::Ping(id), _)) => id,
            other => panic!("expected a ping, got {other:?}"),
        };
        assert_eq!(id % 2, 0);
        raw.send(Outgoing::Ping(id)).await;
        pinging.await.unwrap().unwrap();
    })
    .await;
}

/// Counts the DATA a raw peer receives.
#[derive(Default)]
struct Tally {
    bytes: usize,
    fins: usize,
}

impl Tally {
    fn add(&mut self, received: RawFrame) {
        if let RawFrame::Data { data, flags, .. } = received {
            self.bytes += data.len();
            self.fins += usize::from(flags & frame::FLAG_FIN != 0);
        }
    }

    /// Reads until `target` bytes have arrived, then checks that no more DATA follows
    /// (an empty FIN frame excepted).
    async fn until(&mut self, raw: &mut Raw, target: usize) {
        while self.bytes < target {
            let next = raw.recv().await.expect("session ended early");
            self.add(next);
        }
        self.quiet(raw).await;
        assert_eq!(self.bytes, target);
    }

    /// Checks that no DATA payload arrives for a while.
    async fn quiet(&mut self, raw: &mut Raw) {
        let before = self.bytes;
        while let Some(next) = raw.recv_within(Duration::from_millis(200)).await {
            self.add(next);
        }
        assert_eq!(self.bytes, before, "DATA beyond the window");
    }
}

#[tokio::test]
async fn settings_change_the_send_window_mid_stream() {
    within(async {
        let config = Config::default();
        let (_conn, mut incoming, mut raw) = raw_peer(Role::Server, config.clone());
        expect_preface(&mut raw, &config).await;
        raw.send(Outgoing::Settings(vec![(
            frame::SETTINGS_INITIAL_WINDOW_SIZE,
            1000,
        )]))
        .await;
        raw.send(Outgoing::SynStream {
            stream: 1,
            headers: h(&[("streamtype", "stdout")]),
        })
        .await;
        let mut s = incoming.next().await.unwrap().accept().await.unwrap();
        match raw.recv_significant().await {
            Some(RawFrame::Control(Received::SynReply { stream: 1, .. }, Some(headers))) => {
                assert!(headers.is_empty());
            }
            other => panic!("expected SYN_REPLY, got {other:?}"),
        }
        let writer = tokio::spawn(async move {
            s.write_all(&pattern(9, 10_000)).await.unwrap();
            s.shutdown().await.unwrap();
            s
        });
        let mut tally = Tally::default();
        tally.until(&mut raw, 1000).await;
        // Growing the initial window applies the delta to the open stream.
        raw.send(Outgoing::Settings(vec![(
            frame::SETTINGS_INITIAL_WINDOW_SIZE,
            3000,
        )]))
        .await;
        tally.until(&mut raw, 3000).await;
        // Shrinking it makes the window negative (-2000): updates must refill it first.
        raw.send(Outgoing::Settings(vec![(
            frame::SETTINGS_INITIAL_WINDOW_SIZE,
            1000,
        )]))
        .await;
        raw.send(Outgoing::WindowUpdate {
            stream: 1,
            delta: 1500,
        })
        .await;
        tally.quiet(&mut raw).await;
        raw.send(Outgoing::WindowUpdate {
            stream: 1,
            delta: 1500,
        })
        .await;
        tally.until(&mut raw, 4000).await;
        // The session window (64 KiB, never grown by this peer) is not the limit here.
        raw.send(Outgoing::WindowUpdate {
            stream: 1,
            delta: 100_000,
        })
        .await;
        tally.until(&mut raw, 10_000).await;
        assert_eq!(tally.fins, 1);
        writer.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn session_window_limits_all_streams() {
    within(async {
        let config = Config::default();
        let (_conn, mut incoming, mut raw) = raw_peer(Role::Server, config.clone());
        expect_preface(&mut raw, &config).await;
        // Huge stream windows: only the 64 KiB session window limits.
        raw.send(Outgoing::Settings(vec![(
            frame::SETTINGS_INITIAL_WINDOW_SIZE,
            1 << 30,
        )]))
        .await;
        for id in [1, 3] {
            raw.send(Outgoing::SynStream {
                stream: id,
                headers: h(&[("n", &id.to_string())]),
            })
            .await;
        }
        let mut writers = Vec::new();
        for _ in 0..2 {
            let mut s = incoming.next().await.unwrap().accept().await.unwrap();
            writers.push(tokio::spawn(async move {
                s.write_all(&pattern(1, 100_000)).await.unwrap();
                s.shutdown().await.unwrap();
                s
            }));
        }
        let mut tally = Tally::default();
        tally.until(&mut raw, 65_536).await;
        raw.send(Outgoing::WindowUpdate {
            stream: 0,
            delta: 1 << 20,
        })
        .await;
        tally.until(&mut raw, 200_000).await;
        assert_eq!(tally.fins, 2);
        for writer in writers {
            writer.await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn receive_window_updates_and_flow_control_violation() {
    within(async {
        let config = Config {
            initial_window: 64 * 1024,
            ..Config::default()
        };
        let (_conn, mut incoming, mut raw) = raw_peer(Role::Server, config.clone());
        expect_preface(&mut raw, &config).await;
        raw.send(Outgoing::Settings(Vec::new())).await; // a flow-controlled peer
        raw.send(Outgoing::SynStream {
            stream: 1,
            headers: h(&[("streamtype", "stdin")]),
        })
        .await;
        let mut s = incoming.next().await.unwrap().accept().await.unwrap();
        let _ = raw.recv_significant().await; // SYN_REPLY
        // Fill the window exactly, then read half of it: one WINDOW_UPDATE for 32 KiB.
        raw.send_data(1, false, &vec![1u8; 64 * 1024]).await;
        let mut buf = vec![0u8; 32 * 1024];
        s.read_exact(&mut buf).await.unwrap();
        match raw.recv().await {
            Some(RawFrame::Control(Received::WindowUpdate { stream: 1, delta }, _)) => {
                assert_eq!(delta, 32 * 1024);
            }
            other => panic!("expected a stream WINDOW_UPDATE, got {other:?}"),
        }
        // 32 KiB + 1 more overruns the reopened 32 KiB: FLOW_CONTROL_ERROR.
        raw.send_data(1, false, &vec![2u8; 32 * 1024 + 1]).await;
        match raw.recv_significant().await {
            Some(RawFrame::Control(Received::RstStream { stream: 1, status }, _)) => {
                assert_eq!(status, ResetReason::FlowControlError.code());
            }
            other => panic!("expected RST_STREAM, got {other:?}"),
        }
        let err = s.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    })
    .await;
}

#[tokio::test]
async fn goaway_from_peer_lets_open_streams_finish() {
    within(async {
        let config = Config::default();
        let (conn, _incoming, mut raw) = raw_peer(Role::Client, config.clone());
        expect_preface(&mut raw, &config).await;
        raw.send(Outgoing::Settings(Vec::new())).await;
        let c1 = conn.clone();
        let first = tokio::spawn(async move { c1.open(h(&[("n", "1")])).await });
        let Some(RawFrame::Control(Received::SynStream { stream: 1, .. }, _)) =
            raw.recv_significant().await
        else {
            panic!("expected SYN_STREAM 1");
        };
        raw.send(Outgoing::SynReply {
            stream: 1,
            headers: Vec::new(),
        })
        .await;
        let mut s1 = first.await.unwrap().unwrap();
        let c3 = conn.clone();
        let second = tokio::spawn(async move { c3.open(h(&[("n", "3")])).await });
        let Some(RawFrame::Control(Received::SynStream { stream: 3, .. }, _)) =
            raw.recv_significant().await
        else {
            panic!("expected SYN_STREAM 3");
        };
        // The peer goes away having processed stream 1 only.
        raw.send(Outgoing::GoAway {
            last_good: 1,
            status: 0,
        })
        .await;
        let err = second.await.unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Reset {
                    stream: 3,
                    reason: ResetReason::RefusedStream,
                    by_peer: true
                }
            ),
            "{err:?}"
        );
        assert!(matches!(conn.open(Vec::new()).await, Err(Error::GoingAway)));
        // Stream 1 still works both ways.
        raw.send_data(1, true, b"result").await;
        assert_eq!(read_all(&mut s1).await.unwrap(), b"result");
        assert!(!conn.is_closed());
        s1.write_all(b"bye").await.unwrap();
        s1.shutdown().await.unwrap();
        match raw.recv_significant().await {
            Some(RawFrame::Data {
                stream: 1, data, ..
            }) => assert_eq!(data, b"bye"),
            other => panic!("expected DATA, got {other:?}"),
        }
        // With every stream finished the session ends and the transport is shut down.
        conn.closed().await;
        assert!(conn.error().is_none());
        loop {
            match raw.recv().await {
                None => break,
                Some(RawFrame::Data {
                    stream: 1,
                    data,
                    flags,
                }) => {
                    assert!(data.is_empty() && flags & frame::FLAG_FIN != 0);
                }
                Some(other) => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn data_on_unknown_stream_is_reset_and_session_survives() {
    within(async {
        let config = Config::default();
        let (conn, mut incoming, mut raw) = raw_peer(Role::Server, config.clone());
        expect_preface(&mut raw, &config).await;
        raw.send_data(5, false, b"nobody home").await;
        match raw.recv_significant().await {
            Some(RawFrame::Control(Received::RstStream { stream: 5, status }, _)) => {
                assert_eq!(status, ResetReason::InvalidStream.code());
            }
            other => panic!("expected RST_STREAM INVALID_STREAM, got {other:?}"),
        }
        // SYN_REPLY for a stream that never existed is answered the same way.
        raw.send(Outgoing::SynReply {
            stream: 9,
            headers: Vec::new(),
        })
        .await;
        match raw.recv_significant().await {
            Some(RawFrame::Control(Received::RstStream { stream: 9, status }, _)) => {
                assert_eq!(status, ResetReason::InvalidStream.code());
            }
            other => panic!("expected RST_STREAM INVALID_STREAM, got {other:?}"),
        }
        raw.send(Outgoing::SynStream {
            stream: 1,
            headers: h(&[("ok", "1")]),
        })
        .await;
        let s = incoming.next().await.unwrap();
        assert_eq!(s.header("ok"), Some("1"));
        assert!(!conn.is_closed());
    })
    .await;
}

#[tokio::test]
async fn duplicate_stream_id_is_a_protocol_error() {
    within(async {
        let config = Config::default();
        let (conn, mut incoming, mut raw) = raw_peer(Role::Server, config.clone());
        expect_preface(&mut raw, &config).await;
        raw.send(Outgoing::SynStream {
            stream: 1,
            headers: h(&[("n", "1")]),
        })
        .await;
        let mut s = incoming.next().await.unwrap().accept().await.unwrap();
        let _ = raw.recv_significant().await; // SYN_REPLY
        raw.send(Outgoing::SynStream {
            stream: 1,
            headers: h(&[("n", "again")]),
        })
        .await;
        match raw.recv_significant().await {
            Some(RawFrame::Control(Received::RstStream { stream: 1, status }, _)) => {
                assert_eq!(status, ResetReason::ProtocolError.code());
            }
            other => panic!("expected RST_STREAM PROTOCOL_ERROR, got {other:?}"),
        }
        assert!(s.read(&mut [0u8; 4]).await.is_err());
        // A stream id going backwards is a session error.
        raw.send(Outgoing::SynStream {
            stream: 5,
            headers: Vec::new(),
        })
        .await;
        let _ = incoming.next().await.unwrap();
        raw.send(Outgoing::SynStream {
            stream: 3,
            headers: Vec::new(),
        })
        .await;
        assert_eq!(
            raw.goaway_then_eof().await,
            Some(frame::GOAWAY_PROTOCOL_ERROR)
        );
        conn.closed().await;
        assert!(matches!(conn.error(), Some(Error::Protocol(_))));
    })
    .await;
}

#[tokio::test]
async fn legacy_peer_without_flow_control() {
    // moby/spdystream never sends SETTINGS or WINDOW_UPDATE and ignores ours.
    within(async {
        let config = Config {
            initial_window: 64 * 1024,
            session_window: 128 * 1024,
            ..Config::default()
        };
        let (_conn, mut incoming, mut raw) = raw_peer(Role::Server, config.clone());
        expect_preface(&mut raw, &config).await;
        raw.send(Outgoing::SynStream {
            stream: 1,
            headers: h(&[("streamtype", "stdout")]),
        })
        .await;
        raw.send(Outgoing::SynStream {
            stream: 3,
            headers: h(&[("streamtype", "stdin")]),
        })
        .await;
        let mut out = incoming.next().await.unwrap().accept().await.unwrap();
        let mut input = incoming.next().await.unwrap().accept().await.unwrap();
        // Our writes are not held to the 64 KiB default window.
        let sent = pattern(4, 1024 * 1024);
        let expected = sent.clone();
        let writer = tokio::spawn(async move {
            out.write_all(&sent).await.unwrap();
            out.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        loop {
            match raw.recv_significant().await {
                Some(RawFrame::Data {
                    stream: 1,
                    data,
                    flags,
                }) => {
                    got.extend_from_slice(&data);
                    if flags & frame::FLAG_FIN != 0 {
                        break;
                    }
                }
                Some(RawFrame::Control(Received::SynReply { .. }, _)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, expected);
        writer.await.unwrap();
        // Their writes beyond our window are accepted and paced by reading instead.
        let big = pattern(5, 1024 * 1024);
        let chunks: Vec<Vec<u8>> = big.chunks(32 * 1024).map(<[u8]>::to_vec).collect();
        let feeder = tokio::spawn(async move {
            let count = chunks.len();
            for (i, chunk) in chunks.into_iter().enumerate() {
                raw.send_data(3, i + 1 == count, &chunk).await;
            }
            raw
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut received = Vec::new();
        input.read_to_end(&mut received).await.unwrap();
        assert_eq!(received, big);
        let high = input.high_water();
        assert!(high <= 64 * 1024 + 16 * 1024, "buffered {high} bytes");
        let mut raw = feeder.await.unwrap();
        // No RST_STREAM was sent.
        while let Some(frame) = raw.recv_within(Duration::from_millis(100)).await {
            assert!(
                !matches!(frame, RawFrame::Control(Received::RstStream { .. }, _)),
                "{frame:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn flush_means_handed_to_the_transport() {
    within(async {
        let config = Config::default();
        let (_conn, mut incoming, mut raw) = raw_peer(Role::Server, config.clone());
        expect_preface(&mut raw, &config).await;
        raw.send(Outgoing::Settings(Vec::new())).await;
        raw.send(Outgoing::SynStream {
            stream: 1,
            headers: Vec::new(),
        })
        .await;
        let mut s = incoming.next().await.unwrap().accept().await.unwrap();
        let _ = raw.recv_significant().await; // SYN_REPLY
        // 60 000 bytes fit in SPDY's default 64 KiB window.
        s.write_all(&[7u8; 60_000]).await.unwrap();
        s.flush().await.unwrap();
        // Everything is in the transport already.
        let mut got = 0;
        let mut frames = 0;
        while got < 60_000 {
            match raw.recv_within(Duration::from_millis(500)).await {
                Some(RawFrame::Data { data, .. }) => {
                    assert!(data.len() <= 32 * 1024, "frames are at most max_frame");
                    got += data.len();
                    frames += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, 60_000);
        assert_eq!(frames, 2);
        // Beyond the window, a write waits for WINDOW_UPDATE.
        let blocked =
            tokio::time::timeout(Duration::from_millis(200), s.write_all(&[8u8; 10_000])).await;
        assert!(blocked.is_err(), "the write must wait for the window");
        raw.send(Outgoing::WindowUpdate {
            stream: 1,
            delta: 20_000,
        })
        .await;
        raw.send(Outgoing::WindowUpdate {
            stream: 0,
            delta: 20_000,
        })
        .await;
        s.write_all(&[8u8; 10_000]).await.unwrap();
        s.flush().await.unwrap();
    })
    .await;
}

// ---- malformed input ---------------------------------------------------------------------

/// Feeds `bytes` to a fresh server session, then checks the session ends with an error,
/// `closed()` resolves and an open stream fails. Returns the GOAWAY status seen, if any.
async fn feed_bad_input(bytes: &[u8], hang_up: bool) -> (Option<u32>, Option<Error>) {
    let config = Config::default();
    let (conn, mut incoming, mut raw) = raw_peer(Role::Server, config);
    raw.send(Outgoing::SynStream {
        stream: 1,
        headers: h(&[("streamtype", "stdout")]),
    })
    .await;
    let mut s = incoming.next().await.unwrap().accept().await.unwrap();
    raw.send_raw(bytes).await;
    if hang_up {
        let _ = raw.io.shutdown().await;
    }
    let goaway = raw.goaway_then_eof().await;
    conn.closed().await;
    assert!(conn.is_closed());
    assert!(
        s.read(&mut [0u8; 4]).await.is_err(),
        "an open stream must fail"
    );
    assert!(s.write_all(b"x").await.is_err());
    assert!(incoming.next().await.is_none());
    (goaway, conn.error())
}

#[tokio::test]
async fn garbage_bytes_end_the_session() {
    within(async {
        let (goaway, error) = feed_bad_input(&[0xff; 64], false).await;
        assert_eq!(goaway, Some(frame::GOAWAY_PROTOCOL_ERROR));
        assert!(matches!(error, Some(Error::Protocol(_))), "{error:?}");
    })
    .await;
}

#[tokio::test]
async fn wrong_version_ends_the_session() {
    within(async {
        let mut bytes = Vec::new();
        frame::put_control_head(&mut bytes, frame::TYPE_PING, 0, 4);
        bytes[1] = 2; // SPDY/2
        bytes.extend_from_slice(&1u32.to_be_bytes());
        let (goaway, error) = feed_bad_input(&bytes, false).await;
        assert_eq!(goaway, Some(frame::GOAWAY_PROTOCOL_ERROR));
        let Some(Error::Protocol(message)) = error else {
            panic!("{error:?}")
        };
        assert!(message.contains("version"), "{message}");
    })
    .await;
}

#[tokio::test]
async fn huge_control_frame_ends_the_session() {
    within(async {
        let mut bytes = Vec::new();
        frame::put_control_head(&mut bytes, frame::TYPE_SYN_STREAM, 0, frame::MAX_LENGTH);
        let (goaway, error) = feed_bad_input(&bytes, false).await;
        assert_eq!(goaway, Some(frame::GOAWAY_PROTOCOL_ERROR));
        assert!(matches!(error, Some(Error::Protocol(_))), "{error:?}");
    })
    .await;
}

#[tokio::test]
async fn short_control_frame_ends_the_session() {
    within(async {
        let mut bytes = Vec::new();
        frame::put_control_head(&mut bytes, frame::TYPE_WINDOW_UPDATE, 0, 4);
        bytes.extend_from_slice(&1u32.to_be_bytes());
        let (goaway, error) = feed_bad_input(&bytes, false).await;
        assert_eq!(goaway, Some(frame::GOAWAY_PROTOCOL_ERROR));
        assert!(matches!(error, Some(Error::Protocol(_))), "{error:?}");
    })
    .await;
}

#[tokio::test]
async fn bad_header_block_ends_the_session() {
    within(async {
        let mut bytes = Vec::new();
        let junk = b"definitely not zlib";
        frame::put_control_head(&mut bytes, frame::TYPE_SYN_STREAM, 0, 10 + junk.len());
        bytes.extend_from_slice(&3u32.to_be_bytes());
        bytes.extend_from_slice(&[0; 6]);
        bytes.extend_from_slice(junk);
        let (goaway, error) = feed_bad_input(&bytes, false).await;
        assert_eq!(goaway, Some(frame::GOAWAY_PROTOCOL_ERROR));
        assert!(matches!(error, Some(Error::Protocol(_))), "{error:?}");
    })
    .await;
}

#[tokio::test]
async fn oversized_data_frame_ends_the_session() {
    within(async {
        // 16 MiB of DATA against a 4 MiB session window from a flow-controlled peer.
        let mut bytes = Vec::new();
        frame::put_control_head(&mut bytes, frame::TYPE_SETTINGS, 0, 4);
        bytes.extend_from_slice(&0u32.to_be_bytes());
        frame::put_data_head(&mut bytes, 1, 0, frame::MAX_LENGTH);
        let (goaway, error) = feed_bad_input(&bytes, false).await;
        assert_eq!(goaway, Some(frame::GOAWAY_PROTOCOL_ERROR));
        assert!(matches!(error, Some(Error::Protocol(_))), "{error:?}");
    })
    .await;
}

#[tokio::test]
async fn truncated_frame_ends_the_session() {
    within(async {
        let mut bytes = Vec::new();
        frame::put_data_head(&mut bytes, 1, 0, 1000);
        bytes.extend_from_slice(&[0; 10]);
        let (goaway, error) = feed_bad_input(&bytes, true).await;
        assert_eq!(goaway, None, "nobody to tell");
        match error {
            Some(Error::Io(err)) => assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof),
            other => panic!("{other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn eof_between_frames_is_a_clean_end() {
    within(async {
        let (goaway, error) = feed_bad_input(&[], true).await;
        assert_eq!(goaway, None);
        assert!(error.is_none(), "{error:?}");
    })
    .await;
}

#[tokio::test]
async fn random_input_never_panics() {
    within(async {
        // A valid opening followed by noise, and pure noise, from a fixed generator.
        for seed in 0..200u32 {
            let len = (seed as usize * 37) % 600 + 1;
            let mut bytes = pattern(seed, len);
            if seed % 2 == 0 {
                // Make it start like a control frame of version 3 to get past the header.
                bytes[0] = 0x80;
                if bytes.len() > 1 {
                    bytes[1] = 3;
                }
            }
            let config = Config::default();
            let (conn, incoming, mut raw) = raw_peer(
                if seed % 3 == 0 {
                    Role::Client
                } else {
                    Role::Server
                },
                config,
            );
            raw.send_raw(&bytes).await;
            let _ = raw.io.shutdown().await;
            while raw.recv().await.is_some() {}
            conn.closed().await;
            drop(incoming);
        }
    })
    .await;
}

#[tokio::test]
async fn mutated_valid_traffic_never_panics() {
    within(async {
        // Capture what a real client writes, then corrupt one byte at a time.
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let (client, _incoming) = Connection::new(a, Role::Client, Config::default());
        let opener = {
            let client = client.clone();
            tokio::spawn(async move {
                let _ = client.open(h(&[("streamtype", "stdin"), ("x", "y")])).await;
            })
        };
        let mut captured = Vec::new();
        let mut chunk = vec![0u8; 4096];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(300), b.read(&mut chunk)).await
        {
            if n == 0 {
                break;
            }
            captured.extend_from_slice(&chunk[..n]);
        }
        assert!(
            captured.len() > 30,
            "SETTINGS, WINDOW_UPDATE and SYN_STREAM"
        );
        opener.abort();
        drop(client);
        for i in 0..captured.len().min(120) {
            let mut bytes = captured.clone();
            bytes[i] ^= 0x5a;
            let (conn, incoming, mut raw) = raw_peer(Role::Server, Config::default());
            raw.send_raw(&bytes).await;
            let _ = raw.io.shutdown().await;
            while raw.recv().await.is_some() {}
            conn.closed().await;
            drop(incoming);
        }
    })
    .await;
}

// ---- edge cases --------------------------------------------------------------------------

#[tokio::test]
async fn cancelled_open_resets_the_stream() {
    within(async {
        let config = Config::default();
        let (conn, _incoming, mut raw) = raw_peer(Role::Client, config.clone());
        expect_preface(&mut raw, &config).await;
        let opening = tokio::spawn(async move { conn.open(h(&[("n", "1")])).await });
        match raw.recv_significant().await {
            Some(RawFrame::Control(Received::SynStream { stream: 1, .. }, Some(headers))) => {
                assert_eq!(headers, h(&[("n", "1")]));
            }
            other => panic!("expected SYN_STREAM, got {other:?}"),
        }
        opening.abort();
        let _ = opening.await;
        match raw.recv_significant().await {
            Some(RawFrame::Control(Received::RstStream { stream: 1, status }, _)) => {
                assert_eq!(status, ResetReason::Cancel.code());
            }
            other => panic!("expected RST_STREAM CANCEL, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn dropped_incoming_refuses_new_streams() {
    within(async {
        let config = Config::default();
        let (conn, incoming, mut raw) = raw_peer(Role::Server, config.clone());
        expect_preface(&mut raw, &config).await;
        drop(incoming);
        raw.send(Outgoing::SynStream {
            stream: 1,
            headers: Vec::new(),
        })
        .await;
        match raw.recv_significant().await {
            Some(RawFrame::Control(Received::RstStream { stream: 1, status }, _)) => {
                assert_eq!(status, ResetReason::RefusedStream.code());
            }
            other => panic!("expected RST_STREAM REFUSED_STREAM, got {other:?}"),
        }
        assert!(!conn.is_closed());
    })
    .await;
}

#[tokio::test]
async fn syn_stream_flags_fin_and_unidirectional() {
    within(async {
        let config = Config::default();
        let (_conn, mut incoming, mut raw) = raw_peer(Role::Server, config.clone());
        expect_preface(&mut raw, &config).await;
        // SYN_STREAM 1 with FIN: nothing to read. SYN_STREAM 3 unidirectional: no reply.
        for (id, flags) in [(1u32, frame::FLAG_FIN), (3, frame::FLAG_UNIDIRECTIONAL)] {
            let mut bytes = Vec::new();
            frame::encode_control(
                &Outgoing::SynStream {
                    stream: id,
                    headers: h(&[("id", &id.to_string())]),
                },
                &mut raw.compressor,
                &mut bytes,
            )
            .unwrap();
            bytes[4] = flags;
            raw.send_raw(&bytes).await;
        }
        let mut first = incoming.next().await.unwrap().accept().await.unwrap();
        assert_eq!(read_all(&mut first).await.unwrap(), b"");
        first.write_all(b"reply").await.unwrap();
        first.shutdown().await.unwrap();
        let mut third = incoming.next().await.unwrap().accept().await.unwrap();
        let err = third.write_all(b"x").await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
        raw.send_data(3, true, b"one way").await;
        assert_eq!(read_all(&mut third).await.unwrap(), b"one way");
        // Only stream 1 got a SYN_REPLY; then its DATA and FIN.
        let mut replies = Vec::new();
        let mut data = Vec::new();
        while let Some(next) = raw.recv_within(Duration::from_millis(300)).await {
            match next {
                RawFrame::Control(Received::SynReply { stream, .. }, _) => replies.push(stream),
                RawFrame::Data {
                    stream, data: d, ..
                } => {
                    assert_eq!(stream, 1);
                    data.extend_from_slice(&d);
                }
                _ => {}
            }
        }
        assert_eq!(replies, vec![1]);
        assert_eq!(data, b"reply");
    })
    .await;
}

#[tokio::test]
async fn ping_flood_is_answered_with_bounded_queues() {
    within(async {
        let config = Config::default();
        let (conn, _incoming, raw) = raw_peer(Role::Server, config.clone());
        let (mut reader, mut writer) = tokio::io::split(raw.io);
        let mut compressor = raw.compressor;
        const PINGS: u32 = 60_000;
        // Writes far more pings than the transport buffers hold, without reading.
        let flood = tokio::spawn(async move {
            let mut bytes = Vec::new();
            for i in 0..PINGS {
                frame::encode_control(&Outgoing::Ping(2 * i + 1), &mut compressor, &mut bytes)
                    .unwrap();
                if bytes.len() > 64 * 1024 {
                    writer.write_all(&bytes).await.unwrap();
                    bytes.clear();
                }
            }
            writer.write_all(&bytes).await.unwrap();
            writer
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The session stopped reading instead of queueing every reply.
        let queued = conn.shared.with(|st| st.queued_control());
        assert!(queued <= 1100, "{queued} control frames queued");
        assert!(!flood.is_finished(), "the flood should be held back");
        // Now read: every ping is answered, in order.
        let mut echoed = 0;
        let mut head = [0u8; frame::HEADER_LEN];
        while echoed < PINGS {
            reader.read_exact(&mut head).await.unwrap();
            let Head::Control { kind, length, .. } = frame::parse_head(&head) else {
                panic!("unexpected DATA");
            };
            let mut payload = vec![0; length];
            reader.read_exact(&mut payload).await.unwrap();
            if let Received::Ping(id) = frame::parse_control(kind, 0, payload).unwrap() {
                assert_eq!(id, 2 * echoed + 1);
                echoed += 1;
            }
        }
        flood.await.unwrap();
        assert!(!conn.is_closed());
    })
    .await;
}

/// A transport whose writes start failing (broken pipe) when told to, while reads go on.
struct WritesFail {
    io: DuplexStream,
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl tokio::io::AsyncRead for WritesFail {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for WritesFail {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bytes: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.failing.load(std::sync::atomic::Ordering::Acquire) {
            return std::task::Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        std::pin::Pin::new(&mut self.io).poll_write(cx, bytes)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn what_the_peer_sent_before_hanging_up_is_read_after_a_write_fails() {
    // containerd (Go) closes an exec's connection right after the exit status; with our
    // WINDOW_UPDATEs unread on its side the connection is reset, and our next write fails
    // while its last frames are still on their way in.
    within(async {
        let config = Config::default();
        let (a, b) = tokio::io::duplex(256 * 1024);
        let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let io = WritesFail {
            io: a,
            failing: failing.clone(),
        };
        let (conn, _incoming) = Connection::new(io, Role::Client, config.clone());
        let mut raw = Raw::new(b);
        expect_preface(&mut raw, &config).await;
        let opening = {
            let conn = conn.clone();
            tokio::spawn(async move { conn.open(h(&[("streamtype", "error")])).await })
        };
        match raw.recv_significant().await {
            Some(RawFrame::Control(Received::SynStream { stream: 1, .. }, _)) => {}
            other => panic!("expected SYN_STREAM 1, got {other:?}"),
        }
        raw.send(Outgoing::SynReply {
            stream: 1,
            headers: h(&[]),
        })
        .await;
        let mut status = opening.await.unwrap().expect("open");

        failing.store(true, std::sync::atomic::Ordering::Release);
        // Our half-close is the write that fails: it is reported, without waiting for the
        // session to end.
        let shutdown = tokio::time::timeout(Duration::from_secs(5), status.shutdown()).await;
        let err = shutdown
            .expect("the failed write is reported at once")
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{err}");
        raw.send_data(1, true, b"{\"status\":\"Success\"}").await;
        drop(raw);

        assert_eq!(
            read_all(&mut status).await.expect("the status arrives"),
            b"{\"status\":\"Success\"}"
        );
        // The session has ended; it accepts nothing more.
        assert!(conn.open(h(&[("streamtype", "stdout")])).await.is_err());
    })
    .await;
}
