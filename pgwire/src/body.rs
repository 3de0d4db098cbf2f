//! Reading one message body front to back ([`Reader`]), every read checked: a body shorter
//! than its layout, or a string without its terminating NUL, is [`Malformed`], never a panic.

/// A message whose body does not have the layout its type requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed {} message", *.0 as char)]
pub struct Malformed(pub u8);

/// Reads one message body front to back.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    tag: u8,
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader of the body `buf` of a message of type `tag` (named in errors).
    #[inline]
    pub fn new(tag: u8, buf: &'a [u8]) -> Self {
        Reader { tag, buf }
    }

    /// A NUL-terminated string, without its NUL.
    #[inline]
    pub fn cstr(&mut self) -> Result<&'a [u8], Malformed> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(Malformed(self.tag))?;
        let (s, rest) = self.buf.split_at(end);
        self.buf = rest.get(1..).unwrap_or_default();
        Ok(s)
    }

    #[inline]
    pub fn byte(&mut self) -> Result<u8, Malformed> {
        let (&b, rest) = self.buf.split_first().ok_or(Malformed(self.tag))?;
        self.buf = rest;
        Ok(b)
    }

    #[inline]
    pub fn i16(&mut self) -> Result<i16, Malformed> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    #[inline]
    pub fn i32(&mut self) -> Result<i32, Malformed> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    #[inline]
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.buf.len() < n {
            return Err(Malformed(self.tag));
        }
        let (s, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(s)
    }

    /// Everything not read yet.
    #[inline]
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }
}
