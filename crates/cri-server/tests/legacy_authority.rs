//! Clients that send the Unix socket path as `:authority` (grpc-go before 2024), spoken with
//! raw HTTP/2 frames so that nothing in between can fix the header for us.

mod common;

use common::*;
use cri_server::Server;
use cri_server::cri_api::v1::{VersionRequest, VersionResponse};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[derive(Debug, PartialEq)]
enum Outcome {
    /// The call completed: grpc-status and the decoded response.
    Answered(String, Option<VersionResponse>),
    /// The server reset the stream with this HTTP/2 error code.
    Reset(u32),
}

/// Sends `requests` Version calls on one connection with the given `:authority`, the way
/// grpc-go does (HPACK with its dynamic table), and returns what happened to each.
async fn call_version(path: &std::path::Path, authority: &str, requests: u32) -> Vec<Outcome> {
    let mut socket = UnixStream::connect(path).await.unwrap();
    let mut encoder = loona_hpack::Encoder::new();
    let mut out = PREFACE.to_vec();
    out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    let body = VersionRequest {
        version: "v1".into(),
    }
    .encode_to_vec();
    let mut grpc = vec![0];
    grpc.extend_from_slice(&(body.len() as u32).to_be_bytes());
    grpc.extend_from_slice(&body);
    for i in 0..requests {
        let stream = 1 + 2 * i;
        let headers: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/runtime.v1.RuntimeService/Version"),
            (b":authority", authority.as_bytes()),
            (b"content-type", b"application/grpc"),
            (b"user-agent", b"grpc-go/1.51.0"),
            (b"te", b"trailers"),
        ];
        out.extend(frame(0x1, 0x4, stream, &encoder.encode(headers)));
        out.extend(frame(0x0, 0x1, stream, &grpc));
    }
    socket.write_all(&out).await.unwrap();

    let mut decoder = loona_hpack::Decoder::new();
    let mut outcomes: Vec<Option<Outcome>> = (0..requests).map(|_| None).collect();
    let mut data: Vec<Vec<u8>> = vec![Vec::new(); requests as usize];
    while outcomes.iter().any(Option::is_none) {
        let mut header = [0u8; 9];
        socket.read_exact(&mut header).await.unwrap();
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let (kind, flags) = (header[3], header[4]);
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        socket.read_exact(&mut payload).await.unwrap();
        if kind == 0x4 && flags & 0x1 == 0 {
            socket.write_all(&frame(0x4, 0x1, 0, &[])).await.unwrap(); // SETTINGS ACK
        }
        if stream == 0 || stream % 2 == 0 {
            continue;
        }
        let slot = ((stream - 1) / 2) as usize;
        match kind {
            0x0 => data[slot].extend_from_slice(&payload),
            0x1 => {
                let headers = decoder.decode(&payload).unwrap();
                let status = headers
                    .iter()
                    .find(|(n, _)| n == b"grpc-status")
                    .map(|(_, v)| String::from_utf8(v.clone()).unwrap());
                if let Some(status) = status {
                    let response = (data[slot].len() >= 5)
                        .then(|| VersionResponse::decode(&data[slot][5..]).unwrap());
                    outcomes[slot] = Some(Outcome::Answered(status, response));
                }
            }
            0x3 => {
                let code = u32::from_be_bytes(payload[..4].try_into().unwrap());
                outcomes[slot] = Some(Outcome::Reset(code));
            }
            _ => {}
        }
    }
    outcomes.into_iter().map(Option::unwrap).collect()
}

#[tokio::test]
async fn socket_path_authorities_are_served() {
    let server = serve(Server::builder().runtime(MinimalRuntime).build().unwrap());
    let plain = server.path.to_str().unwrap().to_string();
    let encoded = plain.replace('/', "%2F");
    for authority in [plain.as_str(), encoded.as_str(), "localhost"] {
        let outcomes = call_version(&server.path, authority, 3).await;
        for outcome in outcomes {
            assert_eq!(
                outcome,
                Outcome::Answered("0".into(), Some(version())),
                "authority {authority:?}"
            );
        }
    }
}

#[tokio::test]
async fn without_the_fix_h2_resets_such_streams() {
    // Proves the test above exercises a real problem: with the rewriting switched off, h2
    // rejects the header with PROTOCOL_ERROR (0x1), as a plain tonic server does.
    let server = serve(
        Server::builder()
            .runtime(MinimalRuntime)
            .legacy_authority(false)
            .build()
            .unwrap(),
    );
    let plain = server.path.to_str().unwrap().to_string();
    let outcomes = call_version(&server.path, &plain, 1).await;
    assert_eq!(outcomes, vec![Outcome::Reset(0x1)]);
    let outcomes = call_version(&server.path, "localhost", 1).await;
    assert_eq!(
        outcomes,
        vec![Outcome::Answered("0".into(), Some(version()))]
    );
}
