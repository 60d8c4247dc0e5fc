//! Header blocks: the name/value encoding of SYN_STREAM, SYN_REPLY and HEADERS, and its
//! zlib compression with the SPDY/3 dictionary.
//!
//! A block is a `u32` pair count followed by, per pair, a `u32`-length name and a
//! `u32`-length value (all big-endian); several values of one name travel as one value with
//! NUL bytes between them. Each direction of a session owns one zlib stream: every block is
//! compressed (or inflated) in the same context as the blocks before it and ends with a sync
//! flush, so the two sides must process blocks in exactly the order they are on the wire.

use std::sync::OnceLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::Headers;

/// Words that open the dictionary, each written with a big-endian `u32` length before it.
const DICTIONARY_WORDS: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// Raw text that follows the words, without length prefixes or separators.
const DICTIONARY_TEXT: [&str; 6] = [
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized",
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,",
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
];

/// The SPDY/3 zlib dictionary (1423 bytes), built once from the lists above.
pub(super) fn dictionary() -> &'static [u8] {
    static DICTIONARY: OnceLock<Vec<u8>> = OnceLock::new();
    DICTIONARY.get_or_init(|| {
        let mut dict = Vec::with_capacity(1423);
        for word in DICTIONARY_WORDS {
            dict.extend_from_slice(&(word.len() as u32).to_be_bytes());
            dict.extend_from_slice(word.as_bytes());
        }
        for text in DICTIONARY_TEXT {
            dict.extend_from_slice(text.as_bytes());
        }
        dict
    })
}

/// Why a header block could not be read. Any of these ends the session: the shared zlib
/// context cannot be trusted after a bad block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BlockError {
    /// The zlib data is corrupt, uses another dictionary, or ended the zlib stream.
    Compression,
    /// The block inflates to more than the configured limit.
    TooLarge,
    /// The inflated block is not a well-formed pair list.
    Malformed(&'static str),
}

impl std::fmt::Display for BlockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlockError::Compression => f.write_str("header block is not valid zlib data"),
            BlockError::TooLarge => f.write_str("header block inflates beyond the size limit"),
            BlockError::Malformed(why) => write!(f, "malformed header block: {why}"),
        }
    }
}

/// Serializes headers into an (uncompressed) block. Names are lowercased; repeated names are
/// merged into one pair with NUL-separated values, since a name may appear only once in a
/// block (Go's framer rejects the whole frame otherwise).
pub(super) fn encode_block(headers: &[(String, String)]) -> Vec<u8> {
    let mut merged: Vec<(String, Vec<u8>)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => {
                values.push(0);
                values.extend_from_slice(value.as_bytes());
            }
            None => merged.push((name, value.as_bytes().to_vec())),
        }
    }
    let size = 4 + merged
        .iter()
        .map(|(n, v)| 8 + n.len() + v.len())
        .sum::<usize>();
    let mut block = Vec::with_capacity(size);
    block.extend_from_slice(&(merged.len() as u32).to_be_bytes());
    for (name, value) in &merged {
        block.extend_from_slice(&(name.len() as u32).to_be_bytes());
        block.extend_from_slice(name.as_bytes());
        block.extend_from_slice(&(value.len() as u32).to_be_bytes());
        block.extend_from_slice(value);
    }
    block
}

/// Takes a big-endian `u32` from the front of `input`.
fn take_u32(input: &mut &[u8]) -> Result<u32, BlockError> {
    let (head, rest) = input
        .split_first_chunk::<4>()
        .ok_or(BlockError::Malformed("truncated length"))?;
    *input = rest;
    Ok(u32::from_be_bytes(*head))
}

/// Takes `len` bytes from the front of `input`.
fn take<'a>(input: &mut &'a [u8], len: u32) -> Result<&'a [u8], BlockError> {
    let len = usize::try_from(len).map_err(|_| BlockError::Malformed("length overflow"))?;
    if input.len() < len {
        return Err(BlockError::Malformed(
            "string runs past the end of the block",
        ));
    }
    let (head, rest) = input.split_at(len);
    *input = rest;
    Ok(head)
}

/// Parses an inflated block. A value holding NUL bytes becomes one pair per part. Names are
/// lowercased; names and values that are not UTF-8 are converted lossily.
pub(super) fn decode_block(mut input: &[u8]) -> Result<Headers, BlockError> {
    let count = take_u32(&mut input)?;
    // Every pair needs at least its two length fields: reject impossible counts before
    // reserving anything.
    if u64::from(count) * 8 > input.len() as u64 {
        return Err(BlockError::Malformed("pair count exceeds the block"));
    }
    let mut headers = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let name_len = take_u32(&mut input)?;
        let name = take(&mut input, name_len)?;
        if name.is_empty() {
            return Err(BlockError::Malformed("empty header name"));
        }
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        let value_len = take_u32(&mut input)?;
        let value = take(&mut input, value_len)?;
        for part in value.split(|b| *b == 0) {
            headers.push((name.clone(), String::from_utf8_lossy(part).into_owned()));
        }
    }
    if !input.is_empty() {
        return Err(BlockError::Malformed("trailing bytes after the last pair"));
    }
    Ok(headers)
}

/// The sending half's zlib context.
pub(super) struct Compressor {
    zlib: Compress,
    primed: bool,
}

impl Compressor {
    /// A fresh context; the dictionary is installed before the first block.
    pub(super) fn new() -> Self {
        Compressor {
            zlib: Compress::new(Compression::default(), true),
            primed: false,
        }
    }

    /// Compresses one block and appends it, sync-flushed, to `out`.
    pub(super) fn compress(
        &mut self,
        block: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), flate2::CompressError> {
        if !self.primed {
            self.zlib.set_dictionary(dictionary())?;
            self.primed = true;
        }
        let mut input = block;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(input.len() / 2 + 256);
            }
            let (in_before, out_before) = (self.zlib.total_in(), out.len());
            self.zlib.compress_vec(input, out, FlushCompress::Sync)?;
            let used = (self.zlib.total_in() - in_before) as usize;
            input = &input[used..];
            // zlib has finished a sync flush once it returns with output space left over.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
            if used == 0 && out.len() == out_before && out.len() < out.capacity() {
                // No progress although there was room: nothing more will come.
                return Ok(());
            }
        }
    }
}

/// The receiving half's zlib context.
pub(super) struct Decompressor {
    zlib: Decompress,
}

impl Decompressor {
    /// A fresh context; the dictionary is installed when the stream asks for it.
    pub(super) fn new() -> Self {
        Decompressor {
            zlib: Decompress::new(true),
        }
    }

    /// Inflates one block (all of `input`), refusing output beyond `limit` bytes.
    pub(super) fn decompress(
        &mut self,
        mut input: &[u8],
        limit: usize,
    ) -> Result<Vec<u8>, BlockError> {
        let mut out = Vec::with_capacity(input.len().saturating_mul(4).clamp(64, limit.max(64)));
        loop {
            if out.len() == out.capacity() {
                if out.len() > limit {
                    return Err(BlockError::TooLarge);
                }
                let extra = out.capacity().clamp(64, (limit + 1 - out.len()).max(64));
                out.reserve(extra);
            }
            let (in_before, out_before) = (self.zlib.total_in(), out.len());
            let mut dictionary_set = false;
            match self
                .zlib
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
            {
                // The peer finished its zlib stream: no later block could be read.
                Ok(Status::StreamEnd) => return Err(BlockError::Compression),
                Ok(_) => {}
                Err(err) if err.needs_dictionary().is_some() => {
                    self.zlib
                        .set_dictionary(dictionary())
                        .map_err(|_| BlockError::Compression)?;
                    dictionary_set = true;
                }
                Err(_) => return Err(BlockError::Compression),
            }
            let used = (self.zlib.total_in() - in_before) as usize;
            input = &input[used..];
            if out.len() > limit {
                return Err(BlockError::TooLarge);
            }
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
            let stuck = used == 0 && out.len() == out_before && out.len() < out.capacity();
            if stuck && !dictionary_set {
                return Err(BlockError::Compression);
            }
        }
    }
}
