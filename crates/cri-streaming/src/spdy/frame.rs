//! SPDY/3 frame layouts: the 8-byte frame header, parsing of control frame payloads, and
//! serialization of the frames this side sends. No I/O and no session state here.
//!
//! ```text
//! control: |1| version (15) | type (16) | flags (8) | length (24) | payload
//! data:    |0| stream id (31)           | flags (8) | length (24) | payload
//! ```

use super::Headers;
use super::headers::{Compressor, encode_block};

/// The protocol version carried by every control frame.
pub(super) const VERSION: u16 = 3;
/// Size of the common frame header.
pub(super) const HEADER_LEN: usize = 8;
/// Largest length the 24-bit length field can express.
pub(super) const MAX_LENGTH: usize = 0xff_ffff;
/// Largest stream id, window or delta (31 bits).
pub(super) const MAX_31: u32 = 0x7fff_ffff;

pub(super) const TYPE_SYN_STREAM: u16 = 1;
pub(super) const TYPE_SYN_REPLY: u16 = 2;
pub(super) const TYPE_RST_STREAM: u16 = 3;
pub(super) const TYPE_SETTINGS: u16 = 4;
pub(super) const TYPE_PING: u16 = 6;
pub(super) const TYPE_GOAWAY: u16 = 7;
pub(super) const TYPE_HEADERS: u16 = 8;
pub(super) const TYPE_WINDOW_UPDATE: u16 = 9;

/// FIN: the sender will send nothing more on the stream.
pub(super) const FLAG_FIN: u8 = 0x01;
/// UNIDIRECTIONAL (SYN_STREAM only): the recipient may not send on the stream.
pub(super) const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// SETTINGS id of the initial per-stream window.
pub(super) const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

/// GOAWAY status codes.
pub(super) const GOAWAY_OK: u32 = 0;
pub(super) const GOAWAY_PROTOCOL_ERROR: u32 = 1;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Head {
    /// A control frame; `length` bytes of payload follow.
    Control {
        version: u16,
        kind: u16,
        flags: u8,
        length: usize,
    },
    /// A data frame; `length` bytes of payload follow.
    Data {
        stream: u32,
        flags: u8,
        length: usize,
    },
}

/// Decodes the 8-byte frame header.
pub(super) fn parse_head(bytes: &[u8; HEADER_LEN]) -> Head {
    let flags = bytes[4];
    let length = u32::from_be_bytes([0, bytes[5], bytes[6], bytes[7]]) as usize;
    if bytes[0] & 0x80 != 0 {
        Head::Control {
            version: u16::from_be_bytes([bytes[0] & 0x7f, bytes[1]]),
            kind: u16::from_be_bytes([bytes[2], bytes[3]]),
            flags,
            length,
        }
    } else {
        Head::Data {
            stream: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            flags,
            length,
        }
    }
}

/// A control frame as received. Header blocks are still compressed: the session inflates
/// them in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Received {
    SynStream {
        stream: u32,
        flags: u8,
        block: Vec<u8>,
    },
    SynReply {
        stream: u32,
        flags: u8,
        block: Vec<u8>,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    /// `(id, value)` pairs; per-entry flags are not needed.
    Settings(Vec<(u32, u32)>),
    Ping(u32),
    GoAway {
        last_good: u32,
        status: u32,
    },
    Headers {
        stream: u32,
        flags: u8,
        block: Vec<u8>,
    },
    WindowUpdate {
        stream: u32,
        delta: u32,
    },
    /// A type this implementation does not know (e.g. CREDENTIAL); it is ignored.
    Unknown,
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn exact(payload: &[u8], len: usize, what: &'static str) -> Result<(), &'static str> {
    if payload.len() == len {
        Ok(())
    } else {
        Err(what)
    }
}

/// Parses a control frame payload. Errors are session-level protocol errors.
pub(super) fn parse_control(
    kind: u16,
    flags: u8,
    payload: Vec<u8>,
) -> Result<Received, &'static str> {
    let p = &payload[..];
    Ok(match kind {
        TYPE_SYN_STREAM => {
            if p.len() < 10 {
                return Err("SYN_STREAM shorter than 10 bytes");
            }
            Received::SynStream {
                stream: be32(p, 0) & MAX_31,
                flags,
                block: payload[10..].to_vec(),
            }
        }
        TYPE_SYN_REPLY | TYPE_HEADERS => {
            if p.len() < 4 {
                return Err("SYN_REPLY/HEADERS shorter than 4 bytes");
            }
            let stream = be32(p, 0) & MAX_31;
            let block = payload[4..].to_vec();
            if kind == TYPE_SYN_REPLY {
                Received::SynReply {
                    stream,
                    flags,
                    block,
                }
            } else {
                Received::Headers {
                    stream,
                    flags,
                    block,
                }
            }
        }
        TYPE_RST_STREAM => {
            exact(p, 8, "RST_STREAM length is not 8")?;
            Received::RstStream {
                stream: be32(p, 0) & MAX_31,
                status: be32(p, 4),
            }
        }
        TYPE_SETTINGS => {
            if p.len() < 4 {
                return Err("SETTINGS shorter than 4 bytes");
            }
            let count = be32(p, 0) as usize;
            if count.checked_mul(8).and_then(|n| n.checked_add(4)) != Some(p.len()) {
                return Err("SETTINGS length does not match its entry count");
            }
            let entries = (0..count)
                .map(|i| {
                    let at = 4 + i * 8;
                    (be32(p, at) & 0x00ff_ffff, be32(p, at + 4))
                })
                .collect();
            Received::Settings(entries)
        }
        TYPE_PING => {
            exact(p, 4, "PING length is not 4")?;
            Received::Ping(be32(p, 0))
        }
        TYPE_GOAWAY => {
            exact(p, 8, "GOAWAY length is not 8")?;
            Received::GoAway {
                last_good: be32(p, 0) & MAX_31,
                status: be32(p, 4),
            }
        }
        TYPE_WINDOW_UPDATE => {
            exact(p, 8, "WINDOW_UPDATE length is not 8")?;
            Received::WindowUpdate {
                stream: be32(p, 0) & MAX_31,
                delta: be32(p, 4) & MAX_31,
            }
        }
        _ => Received::Unknown,
    })
}

/// A control frame to send. Header blocks are compressed when the writer serializes the
/// frame, so compression order always equals wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outgoing {
    SynStream { stream: u32, headers: Headers },
    SynReply { stream: u32, headers: Headers },
    RstStream { stream: u32, status: u32 },
    Settings(Vec<(u32, u32)>),
    Ping(u32),
    GoAway { last_good: u32, status: u32 },
    WindowUpdate { stream: u32, delta: u32 },
}

/// Appends a control frame header.
pub(super) fn put_control_head(out: &mut Vec<u8>, kind: u16, flags: u8, length: usize) {
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(length as u32).to_be_bytes()[1..]);
}

/// Appends a data frame header.
pub(super) fn put_data_head(out: &mut Vec<u8>, stream: u32, flags: u8, length: usize) {
    out.extend_from_slice(&(stream & MAX_31).to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(length as u32).to_be_bytes()[1..]);
}

/// Failure to serialize a frame; it ends the session.
#[derive(Debug)]
pub(super) enum EncodeError {
    Compression,
    TooLarge,
}

/// Appends `frame` to `out`, compressing header blocks with `compressor`.
pub(super) fn encode_control(
    frame: &Outgoing,
    compressor: &mut Compressor,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let mut eight = |kind: u16, a: u32, b: u32| {
        put_control_head(out, kind, 0, 8);
        out.extend_from_slice(&a.to_be_bytes());
        out.extend_from_slice(&b.to_be_bytes());
    };
    match frame {
        Outgoing::RstStream { stream, status } => eight(TYPE_RST_STREAM, *stream, *status),
        Outgoing::GoAway { last_good, status } => eight(TYPE_GOAWAY, *last_good, *status),
        Outgoing::WindowUpdate { stream, delta } => eight(TYPE_WINDOW_UPDATE, *stream, *delta),
        Outgoing::Ping(id) => {
            put_control_head(out, TYPE_PING, 0, 4);
            out.extend_from_slice(&id.to_be_bytes());
        }
        Outgoing::Settings(entries) => {
            put_control_head(out, TYPE_SETTINGS, 0, 4 + 8 * entries.len());
            out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
            for (id, value) in entries {
                out.extend_from_slice(&(id & 0x00ff_ffff).to_be_bytes());
                out.extend_from_slice(&value.to_be_bytes());
            }
        }
        Outgoing::SynStream { stream, headers } => {
            // stream id, associated-to id (none), priority 0 and slot 0.
            let mut fixed = [0u8; 10];
            fixed[..4].copy_from_slice(&stream.to_be_bytes());
            put_block_frame(out, TYPE_SYN_STREAM, &fixed, headers, compressor)?;
        }
        Outgoing::SynReply { stream, headers } => {
            put_block_frame(
                out,
                TYPE_SYN_REPLY,
                &stream.to_be_bytes(),
                headers,
                compressor,
            )?;
        }
    }
    Ok(())
}

fn put_block_frame(
    out: &mut Vec<u8>,
    kind: u16,
    fixed: &[u8],
    headers: &Headers,
    compressor: &mut Compressor,
) -> Result<(), EncodeError> {
    let mut compressed = Vec::new();
    compressor
        .compress(&encode_block(headers), &mut compressed)
        .map_err(|_| EncodeError::Compression)?;
    let length = fixed.len() + compressed.len();
    if length > MAX_LENGTH {
        return Err(EncodeError::TooLarge);
    }
    put_control_head(out, kind, 0, length);
    out.extend_from_slice(fixed);
    out.extend_from_slice(&compressed);
    Ok(())
}
