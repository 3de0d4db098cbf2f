//! Framing of the wire protocol's typed messages: one type byte, then a big-endian `i32`
//! length that counts itself and the body, then the body.
//!
//! `postgres-protocol` parses what servers send but not what clients send, and the router must
//! judge client input before trusting it. This module owns that judgement:
//!
//! - [`frontend_limit`] is the longest body PostgreSQL itself accepts for each client message
//!   type (the same numbers as `SocketBackend` in `postgres.c`), so a client declaring a 1 GB
//!   `Sync` is refused at its header, before a byte of the body is read.
//! - [`decode`] takes one whole message off a buffer (login and authentication, where messages
//!   are small and must be read whole); [`peek`] checks the header of the message at the front
//!   of a buffer and says whether all of it is there (transaction pooling, which splits whole
//!   messages off its buffers itself); [`put`] appends one.
//! - [`Scanner`] follows message boundaries through a byte stream without buffering bodies,
//!   for the relay: it lets bytes through as they arrive, stops before a message the caller
//!   wants to handle itself (`Terminate`), and remembers the last `ReadyForQuery` status.

use bytes::{Buf, BufMut, BytesMut};

/// Length of a typed message's header: the type byte and the `i32` length.
pub const HEADER_LEN: usize = 5;

/// PostgreSQL's `PQ_SMALL_MESSAGE_LIMIT`: the cap for messages that carry only names.
pub const SMALL_LIMIT: usize = 10_000;

/// PostgreSQL's `PQ_LARGE_MESSAGE_LIMIT` (`MaxAllocSize - 1`): queries, binds, copy data.
pub const LARGE_LIMIT: usize = 0x3fff_fffe;

/// PostgreSQL's `PG_MAX_AUTH_TOKEN_LENGTH`: password and SASL messages.
pub const AUTH_LIMIT: usize = 65_535;

/// Why a byte stream is not a valid sequence of messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("invalid frontend message type {}", describe_tag(*.0))]
    UnknownType(u8),
    #[error("invalid message length {len} for message type {}", describe_tag(*.tag))]
    BadLength { tag: u8, len: i32 },
    #[error("message of type {} is {len} bytes long; at most {max} are allowed", describe_tag(*.tag))]
    TooLong { tag: u8, len: usize, max: usize },
}

fn describe_tag(tag: u8) -> String {
    if tag.is_ascii_graphic() {
        format!("'{}'", tag as char)
    } else {
        format!("{tag}")
    }
}

/// Longest body a client may send in a message of type `tag` once logged in, or `None` for a
/// type clients never send.
#[inline]
pub fn frontend_limit(tag: u8) -> Option<usize> {
    match tag {
        // Query, FunctionCall, Bind, Parse, CopyData.
        b'Q' | b'F' | b'B' | b'P' | b'd' => Some(LARGE_LIMIT),
        // Terminate, Close, Describe, Execute, Flush, Sync, CopyDone, CopyFail.
        b'X' | b'C' | b'D' | b'E' | b'H' | b'S' | b'c' | b'f' => Some(SMALL_LIMIT),
        _ => None,
    }
}

/// Limit while a client authenticates: only `p` (password, SASL) and `X` (Terminate).
#[inline]
pub fn auth_limit(tag: u8) -> Option<usize> {
    match tag {
        b'p' => Some(AUTH_LIMIT),
        b'X' => Some(SMALL_LIMIT),
        _ => None,
    }
}

/// Limit for server messages: any type, up to the large limit (servers are trusted to speak
/// the protocol, not to be bug-free).
#[inline]
pub fn backend_limit(_tag: u8) -> Option<usize> {
    Some(LARGE_LIMIT)
}

/// Check a message header; returns the body length.
#[inline]
pub fn check_header(
    header: &[u8; HEADER_LEN],
    limit: impl Fn(u8) -> Option<usize>,
) -> Result<usize, FrameError> {
    let tag = header[0];
    let max = limit(tag).ok_or(FrameError::UnknownType(tag))?;
    let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    if len < 4 {
        return Err(FrameError::BadLength { tag, len });
    }
    let body = len as usize - 4;
    if body > max {
        return Err(FrameError::TooLong {
            tag,
            len: body,
            max,
        });
    }
    Ok(body)
}

/// One whole message: its type and its body (without the header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub tag: u8,
    pub body: BytesMut,
}

impl Frame {
    /// The message as it travels: header and body.
    pub fn to_wire(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(HEADER_LEN + self.body.len());
        out.extend_from_slice(&[self.tag]);
        out.extend_from_slice(&((self.body.len() + 4) as i32).to_be_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

/// Take one whole message off the front of `buf`, or `None` if more bytes are needed. The
/// header is checked as soon as it is complete, so an oversized message fails at once.
pub fn decode(
    buf: &mut BytesMut,
    limit: impl Fn(u8) -> Option<usize>,
) -> Result<Option<Frame>, FrameError> {
    let Some((tag, body)) = peek(buf, limit)? else {
        return Ok(None);
    };
    buf.advance(HEADER_LEN);
    Ok(Some(Frame {
        tag,
        body: buf.split_to(body),
    }))
}

/// Check a message header at the front of `buf`: `Some((tag, body length))` once all of the
/// message is there, `None` while more bytes are needed (room for them is reserved, in steps:
/// a declared length is no promise).
pub fn peek(
    buf: &mut BytesMut,
    limit: impl Fn(u8) -> Option<usize>,
) -> Result<Option<(u8, usize)>, FrameError> {
    let Some(h) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(h);
    let len = check_header(&header, limit)?;
    if buf.len() < HEADER_LEN + len {
        buf.reserve((HEADER_LEN + len - buf.len()).min(64 * 1024));
        return Ok(None);
    }
    Ok(Some((header[0], len)))
}

/// Append one message: `tag`, length, then `parts` one after the other.
#[inline]
pub fn put(out: &mut BytesMut, tag: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum::<usize>() + 4;
    out.reserve(HEADER_LEN + len);
    out.put_u8(tag);
    out.put_i32(len as i32);
    for p in parts {
        out.put_slice(p);
    }
}

/// What [`Scanner::feed`] found in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Bytes from the front of the buffer that may be passed on. What is left is an
    /// incomplete header (fewer than five bytes) or, when `stopped`, the message the caller
    /// asked to stop at.
    pub forward: usize,
    /// The caller's `stop_at` said stop, at the header that starts at `forward`.
    pub stopped: bool,
}

/// Follows message boundaries through a stream without holding message bodies.
#[derive(Debug)]
pub struct Scanner {
    limit: fn(u8) -> Option<usize>,
    /// Type of the message whose body is passing.
    tag: u8,
    /// Body bytes of that message not seen yet.
    remaining: usize,
    /// The next body byte is the first one of its message.
    at_body_start: bool,
    /// Status byte of the last `ReadyForQuery` seen (`I`, `T`, `E`).
    ready: Option<u8>,
}

impl Scanner {
    pub fn new(limit: fn(u8) -> Option<usize>) -> Self {
        Scanner {
            limit,
            tag: 0,
            remaining: 0,
            at_body_start: false,
            ready: None,
        }
    }

    /// Walk `buf` from the start. `stop_at(tag)` is asked at each header; `true` stops
    /// before that message. Call again with what was left plus new bytes.
    pub fn feed(
        &mut self,
        buf: &[u8],
        mut stop_at: impl FnMut(u8) -> bool,
    ) -> Result<Scan, FrameError> {
        let mut i = 0;
        while i < buf.len() {
            if self.remaining > 0 {
                if self.at_body_start && self.tag == b'Z' {
                    self.ready = Some(buf[i]);
                }
                self.at_body_start = false;
                let take = self.remaining.min(buf.len() - i);
                self.remaining -= take;
                i += take;
                continue;
            }
            let Some(header) = buf.get(i..i + HEADER_LEN) else {
                break;
            };
            let mut h = [0u8; HEADER_LEN];
            h.copy_from_slice(header);
            let body = check_header(&h, self.limit)?;
            if stop_at(h[0]) {
                return Ok(Scan {
                    forward: i,
                    stopped: true,
                });
            }
            self.tag = h[0];
            self.remaining = body;
            self.at_body_start = true;
            i += HEADER_LEN;
        }
        Ok(Scan {
            forward: i,
            stopped: false,
        })
    }

    /// Whether the stream is between messages (given the caller holds no partial header).
    pub fn at_boundary(&self) -> bool {
        self.remaining == 0
    }

    /// Status of the last `ReadyForQuery` that went by.
    pub fn ready_status(&self) -> Option<u8> {
        self.ready
    }
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
