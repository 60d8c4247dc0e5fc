//! Channel sockets end to end over in-memory pipes (and one loopback TCP test for
//! `connect`): both sides as `ChannelSocket`s, or one side as a raw WebSocket to control
//! and inspect the exact frames.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream, duplex};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::channel::{ERROR, RESIZE, STDERR, STDIN, STDOUT};
use super::*;

type Raw = WebSocketStream<DuplexStream>;

/// Fails the test instead of hanging it.
async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
}

/// A server and a client socket joined by an in-memory pipe.
async fn pair(protocol: Protocol, config: Config) -> (ChannelSocket, ChannelSocket) {
    let (a, b) = duplex(64 * 1024);
    let server = server(a, protocol, config).await;
    let client = ChannelSocket::new(
        WebSocketStream::from_raw_socket(b, Role::Client, None).await,
        protocol,
        config,
    );
    (server, client)
}

/// A server socket whose peer is a raw WebSocket client.
async fn against_raw(protocol: Protocol, config: Config) -> (ChannelSocket, Raw) {
    let (a, b) = duplex(64 * 1024);
    let server = server(a, protocol, config).await;
    let raw = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
    (server, raw)
}

/// `len` bytes cycling through all 256 values, starting at `seed`.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_add(seed)).collect()
}

async fn read_exactly(reader: &mut ChannelReader, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    reader.read_exact(&mut buf).await.unwrap();
    buf
}

/// The next data or close message the raw peer receives (skipping pings and pongs).
async fn next_message(raw: &mut Raw) -> Option<Message> {
    loop {
        match raw.next().await? {
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(m) => return Some(m),
            Err(_) => return None,
        }
    }
}

/// The error a reader ended with, as this module's `Error`.
fn inner(e: &io::Error) -> &Error {
    e.get_ref()
        .and_then(|e| e.downcast_ref::<Error>())
        .unwrap_or_else(|| panic!("not a websocket error: {e:?}"))
}

#[tokio::test]
async fn round_trips_on_every_channel_for_every_protocol() {
    for &protocol in Protocol::all() {
        within(protocol.name(), async {
            let (mut server, mut client) = pair(protocol, Config::default()).await;
            let all = pattern(256 * 4, 0);

            let mut stdin = client.writer(STDIN);
            let mut resize = client.writer(RESIZE);
            stdin.write_all(&all).await.unwrap();
            resize
                .write_all(br#"{"Width":80,"Height":24}"#)
                .await
                .unwrap();
            assert_eq!(
                read_exactly(&mut server.reader(STDIN), all.len()).await,
                all
            );
            assert_eq!(
                read_exactly(&mut server.reader(RESIZE), 24).await,
                br#"{"Width":80,"Height":24}"#
            );

            let mut readers = [STDOUT, STDERR, ERROR].map(|c| client.reader(c));
            for (seed, channel) in [STDOUT, STDERR, ERROR].into_iter().enumerate() {
                let mut w = server.writer(channel);
                w.write_all(&pattern(1000, seed as u8)).await.unwrap();
                w.flush().await.unwrap();
            }
            for (seed, reader) in readers.iter_mut().enumerate() {
                assert_eq!(read_exactly(reader, 1000).await, pattern(1000, seed as u8));
            }

            // Every channel the protocol can carry works, port-forward style high ones too.
            let high = if protocol.is_base64() { 9 } else { 254 };
            let mut up = client.writer(high);
            let mut down = server.reader(high);
            up.write_all(&all).await.unwrap();
            assert_eq!(read_exactly(&mut down, all.len()).await, all);
            client.close().await;
            assert_eq!(down.read(&mut [0; 8]).await.unwrap(), 0, "EOF after close");
        })
        .await;
    }
}

#[tokio::test]
async fn writes_are_split_at_max_message_and_framed_per_protocol() {
    for &protocol in Protocol::all() {
        within(protocol.name(), async {
            let config = Config::default().with_max_message(100);
            let (mut server, mut raw) = against_raw(protocol, config).await;
            let data = pattern(250, 7);
            let mut w = server.writer(STDOUT);
            w.write_all(&data).await.unwrap();
            w.flush().await.unwrap();
            let mut got = Vec::new();
            for expected_len in [100, 100, 50] {
                let body = match next_message(&mut raw).await.unwrap() {
                    Message::Binary(b) if !protocol.is_base64() => b.to_vec(),
                    Message::Text(t) if protocol.is_base64() => {
                        let (digit, b64) = t.as_str().split_at(1);
                        let mut body = digit.as_bytes().to_vec();
                        body[0] -= b'0';
                        body.extend(
                            base64::engine::general_purpose::STANDARD
                                .decode(b64)
                                .unwrap(),
                        );
                        body
                    }
                    other => panic!("{protocol}: unexpected {other:?}"),
                };
                assert_eq!(body[0], STDOUT);
                assert_eq!(body.len() - 1, expected_len);
                got.extend_from_slice(&body[1..]);
            }
            assert_eq!(got, data);
        })
        .await;
    }
}

#[tokio::test]
async fn raw_peer_messages_are_decoded_and_unknown_or_empty_ones_ignored() {
    let b64 = |p: &[u8]| base64::engine::general_purpose::STANDARD.encode(p);
    let all = pattern(256, 0);
    for &protocol in Protocol::all() {
        within(protocol.name(), async {
            let (mut server, mut raw) = against_raw(protocol, Config::default()).await;
            let mut stdin = server.reader(STDIN);
            let messages = if protocol.is_base64() {
                vec![
                    Message::text("0"),                       // empty payload
                    Message::text(format!("7{}", b64(b"?"))), // nobody reads channel 7
                    Message::text(format!("0{}", b64(&all))),
                    // Unpadded base64 is accepted too.
                    Message::text(format!("0{}", b64(b"ok").trim_end_matches('='))),
                ]
            } else {
                let mut first = vec![STDIN];
                first.extend_from_slice(&all);
                vec![
                    Message::binary(vec![STDIN]),        // empty payload
                    Message::binary(vec![200, 1, 2, 3]), // nobody reads channel 200
                    Message::binary(first),
                    Message::binary(vec![STDIN, b'o', b'k']),
                ]
            };
            for m in messages {
                raw.send(m).await.unwrap();
            }
            let mut expected = all.clone();
            expected.extend_from_slice(b"ok");
            assert_eq!(read_exactly(&mut stdin, expected.len()).await, expected);
            // Still healthy: pings are answered and data keeps flowing.
            raw.send(Message::Ping(vec![1, 2].into())).await.unwrap();
            match raw.next().await.unwrap().unwrap() {
                Message::Pong(p) => assert_eq!(&p[..], [1, 2]),
                other => panic!("unexpected {other:?}"),
            }
        })
        .await;
    }
}

#[tokio::test]
async fn v5_close_half_closes_one_channel_only() {
    within("v5", async {
        let (mut server, mut client) = pair(Protocol::V5, Config::default()).await;
        let mut stdin = client.writer(STDIN);
        let mut resize = client.writer(RESIZE);
        let mut server_stdin = server.reader(STDIN);
        let mut server_resize = server.reader(RESIZE);
        stdin.write_all(b"abc").await.unwrap();
        stdin.shutdown().await.unwrap();
        let mut got = Vec::new();
        server_stdin.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"abc", "stdin ends at the CLOSE");
        let e = stdin.write_all(b"more").await.unwrap_err();
        assert!(matches!(inner(&e), Error::WriteAfterShutdown(STDIN)));

        // Other channels keep flowing both ways.
        resize.write_all(b"{}").await.unwrap();
        assert_eq!(read_exactly(&mut server_resize, 2).await, b"{}");
        let mut out = server.writer(STDOUT);
        let mut err = server.writer(STDERR);
        let mut client_out = client.reader(STDOUT);
        let mut client_err = client.reader(STDERR);
        out.write_all(b"out").await.unwrap();
        out.shutdown().await.unwrap();
        let mut got = Vec::new();
        client_out.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"out");
        err.write_all(b"err after stdout closed").await.unwrap();
        assert_eq!(
            read_exactly(&mut client_err, 23).await,
            b"err after stdout closed"
        );
        // A half-closed channel stays at EOF.
        assert_eq!(server_stdin.read(&mut [0; 4]).await.unwrap(), 0);
    })
    .await;
}

#[tokio::test]
async fn shutdown_before_v5_only_flushes() {
    for protocol in [
        Protocol::V4,
        Protocol::V4Base64,
        Protocol::V1,
        Protocol::V1Base64,
    ] {
        within(protocol.name(), async {
            let (mut server, mut client) = pair(protocol, Config::default()).await;
            let mut stdin = client.writer(STDIN);
            let mut server_stdin = server.reader(STDIN);
            stdin.write_all(b"abc").await.unwrap();
            stdin.shutdown().await.unwrap();
            assert_eq!(read_exactly(&mut server_stdin, 3).await, b"abc");
            let more =
                tokio::time::timeout(Duration::from_millis(200), server_stdin.read(&mut [0; 4]))
                    .await;
            assert!(more.is_err(), "{protocol}: no half-close, no EOF");
            client.close().await;
            assert_eq!(server_stdin.read(&mut [0; 4]).await.unwrap(), 0);
        })
        .await;
    }
}

/// Streams `total` bytes client stdin -> server, which echoes them on stdout -> client,
/// with small per-channel buffers; checks content and the buffer bound.
async fn echo_transfer(protocol: Protocol, total: usize) {
    let config = Config::default()
        .with_read_buffer(256 * 1024)
        .with_max_message(32 * 1024);
    let (mut server, mut client) = pair(protocol, config).await;
    let mut server_in = server.reader(STDIN);
    let mut server_out = server.writer(STDOUT);
    let echo = tokio::spawn(async move {
        let n = tokio::io::copy(&mut server_in, &mut server_out)
            .await
            .unwrap();
        server_out.shutdown().await.unwrap();
        n
    });
    let mut stdin = client.writer(STDIN);
    let producer = tokio::spawn(async move {
        let chunk = pattern(64 * 1024, 0);
        let mut sent = 0;
        while sent < total {
            let n = chunk.len().min(total - sent);
            stdin.write_all(&chunk[..n]).await.unwrap();
            sent += n;
        }
        stdin.shutdown().await.unwrap();
    });
    let mut stdout = client.reader(STDOUT);
    let mut received = 0usize;
    let mut buf = vec![0; 100_000];
    loop {
        let n = stdout.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        for (i, b) in buf[..n].iter().enumerate() {
            // The producer repeats a 64 KiB pattern, itself a multiple of 256.
            assert_eq!(
                *b,
                (received + i) as u8,
                "{protocol}: byte {}",
                received + i
            );
        }
        received += n;
        if !protocol.supports_close() && received == total {
            break; // no half-close to end stdout
        }
    }
    assert_eq!(received, total);
    producer.await.unwrap();
    if protocol.supports_close() {
        assert_eq!(echo.await.unwrap() as usize, total);
    }
    let bound = config.read_buffer + config.max_message;
    for (side, socket, channel) in [("server", &server, STDIN), ("client", &client, STDOUT)] {
        let peak = socket.peak_buffered(channel);
        assert!(
            peak <= bound,
            "{protocol}: {side} buffered {peak} bytes on channel {channel}, bound {bound}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transfer_completes_with_bounded_buffers() {
    within(
        "32 MiB over v5",
        echo_transfer(Protocol::V5, 32 * 1024 * 1024),
    )
    .await;
    within(
        "4 MiB over v4 base64",
        echo_transfer(Protocol::V4Base64, 4 * 1024 * 1024),
    )
    .await;
}

#[tokio::test]
async fn a_reader_that_does_not_read_holds_back_the_writer() {
    within("backpressure", async {
        let config = Config::default()
            .with_read_buffer(64 * 1024)
            .with_max_message(16 * 1024);
        let (mut server, mut client) = pair(Protocol::V4, config).await;
        let mut slow = server.reader(STDIN);
        let written = Arc::new(AtomicUsize::new(0));
        let mut stdin = client.writer(STDIN);
        let counter = Arc::clone(&written);
        let producer = tokio::spawn(async move {
            let chunk = pattern(16 * 1024, 0);
            loop {
                if stdin.write_all(&chunk).await.is_err() {
                    break;
                }
                counter.fetch_add(chunk.len(), Ordering::Relaxed);
            }
        });
        // Wait until the writer stops making progress.
        let mut last = usize::MAX;
        let stalled_at = loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = written.load(Ordering::Relaxed);
            if now == last {
                break now;
            }
            last = now;
        };
        // The reader's buffer, both sides' queues and WebSocket buffers, and the pipe:
        // roughly 1 MiB at most, nowhere near unbounded.
        assert!(stalled_at > 0);
        assert!(
            stalled_at < 2 * 1024 * 1024,
            "writer got {stalled_at} bytes ahead"
        );
        assert!(server.peak_buffered(STDIN) <= config.read_buffer + config.max_message);

        // Reading releases it, and nothing was lost.
        let target = stalled_at + 4 * 1024 * 1024;
        let mut seen = 0usize;
        let mut buf = vec![0; 64 * 1024];
        while seen < target {
            let n = slow.read(&mut buf).await.unwrap();
            assert!(n > 0);
            for (i, b) in buf[..n].iter().enumerate() {
                assert_eq!(*b, (seen + i) as u8);
            }
            seen += n;
        }
        assert!(written.load(Ordering::Relaxed) >= target - 2 * 1024 * 1024);
        producer.abort();
    })
    .await;
}

#[tokio::test]
async fn port_forward_channels_start_with_the_port() {
    for protocol in Protocol::port_forward_all().iter().copied() {
        within(protocol.name(), async {
            let (mut server, mut client) = pair(protocol, Config::default()).await;
            let ports = [8080u16, 443];
            for (i, port) in ports.into_iter().enumerate() {
                let ch = portforward::channels(i).unwrap();
                portforward::write_port(&mut server.writer(ch.data), port)
                    .await
                    .unwrap();
                portforward::write_port(&mut server.writer(ch.error), port)
                    .await
                    .unwrap();
            }
            let ch = portforward::channels(1).unwrap();
            let (mut data, mut error) = (client.reader(ch.data), client.reader(ch.error));
            assert_eq!(portforward::read_port(&mut data).await.unwrap(), 443);
            assert_eq!(portforward::read_port(&mut error).await.unwrap(), 443);
            let first = portforward::channels(0).unwrap();
            assert_eq!(
                portforward::read_port(&mut client.reader(first.data))
                    .await
                    .unwrap(),
                8080
            );
            // Then the data channel carries the connection both ways.
            let mut up = client.writer(ch.data);
            let mut server_data = server.reader(ch.data);
            up.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
            assert_eq!(
                read_exactly(&mut server_data, 18).await,
                b"GET / HTTP/1.0\r\n\r\n"
            );
            let mut down = server.writer(ch.data);
            down.write_all(b"HTTP/1.0 200 OK\r\n").await.unwrap();
            assert_eq!(read_exactly(&mut data, 17).await, b"HTTP/1.0 200 OK\r\n");
        })
        .await;
    }
}

/// Sends `bad` after one good message, then checks the socket failed as it should.
async fn expect_failure(
    protocol: Protocol,
    good: Message,
    bad: Message,
    check: fn(&Error) -> bool,
) {
    let (mut server, mut raw) = against_raw(protocol, Config::default()).await;
    let mut stdout_reader = server.reader(STDOUT);
    let mut writer = server.writer(STDOUT);
    raw.send(good).await.unwrap();
    raw.send(bad).await.unwrap();
    // Data received before the bad message is still delivered, then the error.
    assert_eq!(read_exactly(&mut stdout_reader, 2).await, b"hi");
    let e = stdout_reader.read(&mut [0; 8]).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{protocol}: {e}");
    assert!(check(inner(&e)), "{protocol}: {e}");
    // The peer is told why (1002), and writers fail from now on.
    match next_message(&mut raw).await {
        Some(Message::Close(Some(frame))) => {
            assert_eq!(frame.code, CloseCode::Protocol);
            assert!(
                frame.reason.as_str().contains("malformed"),
                "{}",
                frame.reason
            );
        }
        other => panic!("{protocol}: expected a close frame, got {other:?}"),
    }
    let e = writer.write_all(b"x").await.unwrap_err();
    assert!(check(inner(&e)), "{protocol}: {e}");
}

#[tokio::test]
async fn malformed_messages_fail_the_socket_without_panicking() {
    within("malformed", async {
        let hi = || Message::text("1aGk=");
        expect_failure(Protocol::V4Base64, hi(), Message::text("1!!!!"), |e| {
            matches!(e, Error::BadBase64 { channel: 1, .. })
        })
        .await;
        expect_failure(Protocol::V1Base64, hi(), Message::text("xaGk="), |e| {
            matches!(e, Error::BadChannel(b'x'))
        })
        .await;
        expect_failure(Protocol::V4Base64, hi(), Message::text(""), |e| {
            matches!(e, Error::EmptyMessage)
        })
        .await;
        let hi = || Message::binary(b"\x01hi".to_vec());
        for protocol in [Protocol::V5, Protocol::V4, Protocol::V1] {
            expect_failure(protocol, hi(), Message::binary(Vec::new()), |e| {
                matches!(e, Error::EmptyMessage)
            })
            .await;
        }
        expect_failure(Protocol::V5, hi(), Message::binary(vec![255]), |e| {
            matches!(e, Error::BadClose { len: 0 })
        })
        .await;
        expect_failure(Protocol::V5, hi(), Message::binary(vec![255, 1, 2]), |e| {
            matches!(e, Error::BadClose { len: 2 })
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn data_for_channels_without_reader_waits_for_the_reader() {
    within("unclaimed", async {
        let (mut server, mut raw) = against_raw(Protocol::V4, Config::default()).await;
        let mut marker = server.reader(STDERR);
        // 100 messages of 1 KiB for stdout, nobody reading it yet: the first 64 KiB are
        // kept, then the socket stops reading until the reader exists. Nothing is lost.
        for i in 0..100u8 {
            let mut m = vec![STDOUT];
            m.extend(std::iter::repeat_n(i, 1024));
            raw.send(Message::binary(m)).await.unwrap();
        }
        raw.send(Message::binary(vec![STDERR, b'!'])).await.unwrap();
        let mut stdout = server.reader(STDOUT);
        assert_eq!(read_exactly(&mut marker, 1).await, b"!");
        raw.send(Message::Close(None)).await.unwrap();
        let mut got = Vec::new();
        stdout.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), 100 * 1024);
        for (i, chunk) in got.chunks(1024).enumerate() {
            assert!(chunk.iter().all(|&b| b as usize == i));
        }
    })
    .await;
}

#[tokio::test]
async fn misuse_is_reported_as_errors() {
    within("misuse", async {
        let (mut server, mut client) = pair(Protocol::V4, Config::default()).await;
        let mut first = server.reader(STDIN);
        let mut second = server.reader(STDIN);
        let e = second.read(&mut [0; 4]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert!(matches!(inner(&e), Error::ReaderTaken(STDIN)));
        drop(second);
        client.writer(STDIN).write_all(b"ok").await.unwrap();
        assert_eq!(read_exactly(&mut first, 2).await, b"ok");

        let (mut b64, _peer) = pair(Protocol::V4Base64, Config::default()).await;
        let e = b64.writer(10).write_all(b"x").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let (mut v5, _peer) = pair(Protocol::V5, Config::default()).await;
        let e = v5.writer(255).write_all(b"x").await.unwrap_err();
        assert!(matches!(
            inner(&e),
            Error::InvalidChannel { channel: 255, .. }
        ));
        // Before v5, 255 is an ordinary channel.
        client.writer(255).write_all(b"x").await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn close_sends_queued_data_first_and_ends_the_peer_with_eof() {
    within("close", async {
        let (mut server, mut client) = pair(Protocol::V4, Config::default()).await;
        let mut server_stdin = server.reader(STDIN);
        let mut server_stdout = server.writer(STDOUT);
        let mut client_stdout = client.reader(STDOUT);
        let data = pattern(1024 * 1024, 3);
        let mut stdin = client.writer(STDIN);
        let writer = tokio::spawn({
            let data = data.clone();
            async move {
                stdin.write_all(&data).await.unwrap();
                stdin // queued, not flushed
            }
        });
        let mut got = Vec::new();
        let reader = tokio::spawn(async move {
            server_stdin.read_to_end(&mut got).await.unwrap();
            got
        });
        let stdin = writer.await.unwrap();
        client.close().await;
        assert_eq!(reader.await.unwrap(), data);
        // Writers of the closed side fail; the peer's writers fail once it saw the close.
        let mut stdin = stdin;
        let e = stdin.write_all(b"x").await.unwrap_err();
        assert!(matches!(inner(&e), Error::Closed));
        assert_eq!(client_stdout.read(&mut [0; 1]).await.unwrap(), 0);
        let e = server_stdout.write_all(b"late").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        server.close().await; // already closed: returns at once
    })
    .await;
}

#[tokio::test]
async fn dropping_every_handle_closes_after_queued_data() {
    within("drop", async {
        let (mut server, mut raw) = against_raw(Protocol::V4, Config::default()).await;
        let mut w = server.writer(STDOUT);
        drop(server);
        w.write_all(b"x").await.unwrap();
        drop(w);
        assert_eq!(
            next_message(&mut raw).await,
            Some(Message::binary(vec![STDOUT, b'x']))
        );
        assert!(matches!(
            next_message(&mut raw).await,
            Some(Message::Close(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn a_connection_lost_without_close_is_an_error() {
    within("reset", async {
        let (mut server, mut raw) = against_raw(Protocol::V4, Config::default()).await;
        let mut stdin = server.reader(STDIN);
        raw.send(Message::binary(vec![STDIN, 1, 2])).await.unwrap();
        drop(raw);
        assert_eq!(read_exactly(&mut stdin, 2).await, [1, 2]);
        let e = stdin.read(&mut [0; 4]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
        assert!(matches!(inner(&e), Error::Transport(_)));
    })
    .await;
}

/// A loopback WebSocket server choosing with `Protocol::negotiate` (or answering with
/// `forced`), echoing stdin to stdout.
#[allow(clippy::result_large_err)] // tungstenite's handshake callback type
async fn echo_server(forced: Option<&'static str>) -> std::net::SocketAddr {
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    use tokio_tungstenite::tungstenite::http::HeaderValue;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut chosen = None;
                let callback = |req: &Request, mut resp: Response| {
                    let offered: Vec<&str> = req
                        .headers()
                        .get_all("sec-websocket-protocol")
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .collect();
                    chosen = Protocol::negotiate(&offered);
                    let answer = forced.or(chosen.map(Protocol::name));
                    if let Some(name) = answer {
                        resp.headers_mut()
                            .insert("sec-websocket-protocol", HeaderValue::from_static(name));
                    }
                    Ok(resp)
                };
                let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
                    return;
                };
                let protocol = chosen.unwrap_or(Protocol::V4);
                let mut socket = ChannelSocket::new(ws, protocol, Config::default());
                let (mut i, mut o) = (socket.reader(STDIN), socket.writer(STDOUT));
                let _ = tokio::io::copy(&mut i, &mut o).await;
                let _ = o.shutdown().await;
                socket.close().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn connect_negotiates_over_tcp() {
    within("connect", async {
        let addr = echo_server(None).await;
        let url = format!("http://{addr}/exec/token?command=sh");
        for (offer, expected) in [
            (&[Protocol::V4Base64, Protocol::V5][..], Protocol::V5),
            (Protocol::all(), Protocol::V5),
            (&[Protocol::V1Base64], Protocol::V1Base64),
            (Protocol::port_forward_all(), Protocol::V4),
        ] {
            let (mut socket, protocol) = connect(&url, offer, Config::default()).await.unwrap();
            assert_eq!(protocol, expected);
            assert_eq!(socket.protocol(), expected);
            let mut stdout = socket.reader(STDOUT);
            let mut stdin = socket.writer(STDIN);
            stdin.write_all(&pattern(300, 9)).await.unwrap();
            assert_eq!(read_exactly(&mut stdout, 300).await, pattern(300, 9));
            socket.close().await;
        }
        let ws_url = format!("ws://{addr}/attach/token");
        assert!(
            connect(&ws_url, &[Protocol::V4], Config::default())
                .await
                .is_ok()
        );

        // A server answering with something that was not offered is refused.
        let liar = echo_server(Some("v4.channel.k8s.io")).await;
        let e = connect(
            &format!("http://{liar}/x"),
            &[Protocol::V5],
            Config::default(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(e, Error::Transport(_) | Error::Negotiation { .. }),
            "{e}"
        );

        assert!(matches!(
            connect(&url, &[], Config::default()).await,
            Err(Error::NoProtocols)
        ));
        assert!(matches!(
            connect("https://127.0.0.1:1/x", &[Protocol::V5], Config::default()).await,
            Err(Error::InvalidUrl { .. })
        ));
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = closed.local_addr().unwrap();
        drop(closed);
        assert!(matches!(
            connect(
                &format!("http://{dead}/x"),
                &[Protocol::V5],
                Config::default()
            )
            .await,
            Err(Error::Connect { .. })
        ));
    })
    .await;
}
