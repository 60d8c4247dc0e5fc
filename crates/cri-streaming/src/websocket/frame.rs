//! One channel message in each direction: how a payload becomes a WebSocket message and
//! back, for binary and base64 protocols.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;

use super::{Error, Protocol, channel};

/// Standard alphabet; encodes with padding, decodes with or without it.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A decoded incoming channel message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// Payload for a channel (possibly empty, which carries no data).
    Data { channel: u8, payload: Bytes },
    /// v5: the peer will not write `channel` any more.
    Close { channel: u8 },
}

/// Decodes the bytes of a data message (binary or text frame alike) received under
/// `protocol`.
pub(crate) fn decode(protocol: Protocol, message: Bytes) -> Result<Incoming, Error> {
    let Some(&first) = message.first() else {
        return Err(Error::EmptyMessage);
    };
    if protocol.is_base64() {
        if !first.is_ascii_digit() {
            return Err(Error::BadChannel(first));
        }
        let channel = first - b'0';
        let payload = BASE64
            .decode(&message[1..])
            .map_err(|source| Error::BadBase64 { channel, source })?;
        return Ok(Incoming::Data {
            channel,
            payload: Bytes::from(payload),
        });
    }
    if protocol.supports_close() && first == channel::CLOSE {
        return match message.len() {
            2 => Ok(Incoming::Close {
                channel: message[1],
            }),
            n => Err(Error::BadClose { len: n - 1 }),
        };
    }
    Ok(Incoming::Data {
        channel: first,
        payload: message.slice(1..),
    })
}

/// Encodes `payload` as one message on `channel`. The caller has checked
/// [`Protocol::carries_channel`].
pub(crate) fn encode(protocol: Protocol, channel: u8, payload: &[u8]) -> Message {
    if protocol.is_base64() {
        let mut text = String::with_capacity(1 + payload.len().div_ceil(3) * 4);
        text.push(char::from(b'0' + channel));
        BASE64.encode_string(payload, &mut text);
        Message::text(text)
    } else {
        let mut data = Vec::with_capacity(1 + payload.len());
        data.push(channel);
        data.extend_from_slice(payload);
        Message::binary(data)
    }
}

/// The v5 message half-closing `channel`.
pub(crate) fn encode_close(channel: u8) -> Message {
    Message::binary(vec![channel::CLOSE, channel])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_bytes() -> Vec<u8> {
        (0..=255u8).collect()
    }

    fn bytes_of(message: Message) -> Bytes {
        match message {
            Message::Binary(b) => b,
            Message::Text(t) => t.into(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn round_trip_every_protocol_every_byte_value() {
        for &p in Protocol::all() {
            for channel in [0u8, 1, 2, 3, 4, 9] {
                for payload in [Vec::new(), vec![0], all_bytes(), all_bytes().repeat(3)] {
                    let message = encode(p, channel, &payload);
                    assert_eq!(message.is_text(), p.is_base64(), "{p}");
                    assert_eq!(
                        decode(p, bytes_of(message)).unwrap(),
                        Incoming::Data {
                            channel,
                            payload: Bytes::from(payload.clone())
                        },
                        "{p} channel {channel}"
                    );
                }
            }
        }
    }

    #[test]
    fn wire_formats() {
        assert_eq!(
            bytes_of(encode(Protocol::V4, 1, b"hi")),
            Bytes::from_static(b"\x01hi")
        );
        assert_eq!(
            bytes_of(encode(Protocol::V1Base64, 2, b"hi")),
            Bytes::from_static(b"2aGk=")
        );
        assert_eq!(
            bytes_of(encode(Protocol::V4Base64, 0, &[0xff, 0xfe, 0xfd])),
            Bytes::from_static(b"0//79")
        );
        assert_eq!(bytes_of(encode_close(0)), Bytes::from_static(&[255, 0]));
        // Padding may be omitted by the peer.
        assert_eq!(
            decode(Protocol::V4Base64, Bytes::from_static(b"1aGk")).unwrap(),
            Incoming::Data {
                channel: 1,
                payload: Bytes::from_static(b"hi")
            }
        );
    }

    #[test]
    fn close_only_in_v5() {
        let msg = Bytes::from_static(&[255, 2]);
        assert_eq!(
            decode(Protocol::V5, msg.clone()).unwrap(),
            Incoming::Close { channel: 2 }
        );
        // Before v5, 255 is an ordinary (unknown) channel.
        for p in [Protocol::V4, Protocol::V1] {
            assert_eq!(
                decode(p, msg.clone()).unwrap(),
                Incoming::Data {
                    channel: 255,
                    payload: Bytes::from_static(&[2])
                }
            );
        }
    }

    #[test]
    fn malformed_messages_are_errors() {
        for &p in Protocol::all() {
            assert!(matches!(decode(p, Bytes::new()), Err(Error::EmptyMessage)));
        }
        assert!(matches!(
            decode(Protocol::V4Base64, Bytes::from_static(b"x")),
            Err(Error::BadChannel(b'x'))
        ));
        assert!(matches!(
            decode(Protocol::V1Base64, Bytes::from_static(&[1, b'A'])),
            Err(Error::BadChannel(1))
        ));
        assert!(matches!(
            decode(Protocol::V4Base64, Bytes::from_static(b"1!!!!")),
            Err(Error::BadBase64 { channel: 1, .. })
        ));
        assert!(matches!(
            decode(Protocol::V1Base64, Bytes::from_static(b"2a")),
            Err(Error::BadBase64 { channel: 2, .. })
        ));
        assert!(matches!(
            decode(Protocol::V5, Bytes::from_static(&[255])),
            Err(Error::BadClose { len: 0 })
        ));
        assert!(matches!(
            decode(Protocol::V5, Bytes::from_static(&[255, 1, 2])),
            Err(Error::BadClose { len: 2 })
        ));
    }
}
