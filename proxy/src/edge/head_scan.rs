//! [`HeadScan`]: counts the `Content-Length` fields of a request head as its bytes are read,
//! for a front end whose parser does not keep them. hyper's HTTP/1 parser drops a
//! `Content-Length` that comes with `Transfer-Encoding` and merges two equal ones, both
//! ambiguous framings that [`crate::framing::smuggling`] refuses; this count is what tells the
//! hyper front end they were there.
//!
//! The scan looks at the bytes of one head only: from the start of a head (accept, or the
//! first byte after an idle wait) to its empty line, so body bytes that happen to hold
//! `\ncontent-length:` (a multipart body's part headers) are never counted. A head that
//! arrives pipelined while the previous request is served is not scanned: hyper re-frames
//! every body it forwards (one `Content-Length` or chunked, as it decoded it), so a missed
//! field cannot make the backend read the body otherwise.

/// The field name, lower case, with its colon (a space before the colon is a parse error).
const FIELD: &[u8] = b"content-length:";

/// Where the scan of one head is.
#[derive(Debug, Default, Clone, Copy)]
pub struct HeadScan {
    /// Bytes of the current line so far (not counting `\r`).
    line_len: usize,
    /// The current line still matches [`FIELD`] up to `line_len`.
    matching: bool,
    /// A line with text was seen (leading empty lines before a request line are allowed).
    started: bool,
    /// The head's empty line was seen: nothing more to count.
    done: bool,
    /// `Content-Length` fields counted.
    found: u8,
}

impl HeadScan {
    /// A scan at the start of a head.
    pub fn new() -> Self {
        HeadScan {
            matching: true,
            ..HeadScan::default()
        }
    }

    /// Whether the head's end was seen.
    pub fn done(&self) -> bool {
        self.done
    }

    /// `Content-Length` fields counted so far.
    pub fn found(&self) -> u8 {
        self.found
    }

    /// Scan the next bytes read.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.done {
                return;
            }
            match b {
                b'\n' => {
                    if self.line_len == 0 && self.started {
                        self.done = true;
                    }
                    self.started |= self.line_len > 0;
                    self.line_len = 0;
                    self.matching = true;
                }
                b'\r' => {}
                _ => {
                    if self.matching {
                        match FIELD.get(self.line_len) {
                            Some(&f) if b.to_ascii_lowercase() == f => {
                                if self.line_len + 1 == FIELD.len() {
                                    self.found = self.found.saturating_add(1);
                                    self.matching = false;
                                }
                            }
                            _ => self.matching = false,
                        }
                    }
                    self.line_len += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(parts: &[&[u8]]) -> (u8, bool) {
        let mut s = HeadScan::new();
        for p in parts {
            s.feed(p);
        }
        (s.found(), s.done())
    }

    #[test]
    fn counts_the_fields_of_one_head_only() {
        let head: &[u8] =
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-LENGTH: 5\r\n\r\n";
        assert_eq!(count(&[head]), (2, true));
        // Split anywhere, the same.
        for at in 0..head.len() {
            assert_eq!(
                count(&[&head[..at], &head[at..]]),
                (2, true),
                "split at {at}"
            );
        }
        // The body (and a pipelined head after it) is not looked at.
        let with_body = [head, b"x\r\nContent-Length: 9\r\n\r\n"].concat();
        assert_eq!(count(&[&with_body]), (2, true));
        // Not a field name at the start of a line.
        assert_eq!(
            count(&[b"GET /content-length: HTTP/1.1\r\nX-A: content-length: 1\r\n\r\n"]),
            (0, true)
        );
        assert_eq!(
            count(&[b"\r\nGET / HTTP/1.1\nContent-Length: 1\n"]),
            (1, false)
        );
    }
}
