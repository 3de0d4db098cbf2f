//! Reading whole protocol units off a stream: one typed message ([`read_frame`]) or one
//! startup packet ([`read_startup`]), each checked by `switchyard-pgwire` as soon as its
//! header is in, so a declared length is judged before a byte of the body is read.

use bytes::BytesMut;
use switchyard_pgwire::frame::{self, Frame, FrameError};
use switchyard_pgwire::startup::{self, Packet, StartupError};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why a whole message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Read one whole message through `buf` (which keeps whatever follows it).
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    limit: impl Fn(u8) -> Option<usize> + Copy,
) -> Result<Frame, ReadError> {
    loop {
        if let Some(frame) = frame::decode(buf, limit)? {
            return Ok(frame);
        }
        if r.read_buf(buf).await? == 0 {
            return Err(ReadError::Closed);
        }
    }
}

/// Read one startup packet: its length, bounded, then its body.
pub async fn read_startup<R: AsyncRead + Unpin>(r: &mut R) -> Result<Packet, StartupError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(StartupError::Closed)
        }
        Err(e) => return Err(e.into()),
    }
    let mut body = vec![0u8; startup::body_len(len)?];
    match r.read_exact(&mut body).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(StartupError::Closed)
        }
        Err(e) => return Err(e.into()),
    }
    startup::parse(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_bounds_the_length_before_reading_the_body() {
        let mut garbage: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
        assert!(matches!(
            read_startup(&mut garbage).await,
            Err(StartupError::BadLength(_))
        ));
        let mut short: &[u8] = &[0, 0, 0, 4];
        assert!(matches!(
            read_startup(&mut short).await,
            Err(StartupError::BadLength(4))
        ));
        let mut eof: &[u8] = &[0, 0];
        assert!(matches!(
            read_startup(&mut eof).await,
            Err(StartupError::Closed)
        ));
    }
}
