//! Cutting a SIP byte stream into messages (RFC 3261 §18.3): a message ends after its blank
//! line (CRLF, or a bare LF as RFC 4475 §3.1.1.9 allows) plus `Content-Length` bytes of body;
//! several `Content-Length` values that disagree leave the boundary unknown. CRLF keep-alives
//! between messages (RFC 5626 §3.5.1) are skipped. A message larger than the cap, or a header block that never ends within it,
//! is a framing error: the connection cannot be resynchronised and must be closed.

use bytes::{Buf, Bytes, BytesMut};

use crate::sip::msg::{MAX_MESSAGE_SIZE, find_head_end};

/// Why a stream cannot be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("SIP message larger than {MAX_MESSAGE_SIZE} bytes")]
    TooLarge,
    #[error("invalid Content-Length on a stream")]
    BadContentLength,
}

/// Accumulates stream bytes and yields complete messages.
#[derive(Debug, Default)]
pub struct Framer {
    buffer: BytesMut,
}

impl Framer {
    pub fn new() -> Framer {
        Framer {
            buffer: BytesMut::with_capacity(4096),
        }
    }

    /// Space for the next read.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buffer
    }

    /// The next complete message, if the buffer holds one.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, FramingError> {
        let leading = self
            .buffer
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        self.buffer.advance(leading);
        let Some((head_end, body_start)) = find_head_end(&self.buffer) else {
            if self.buffer.len() > MAX_MESSAGE_SIZE {
                return Err(FramingError::TooLarge);
            }
            return Ok(None);
        };
        let body_len = content_length(&self.buffer[..head_end])?;
        let total = body_start + body_len;
        if total > MAX_MESSAGE_SIZE {
            return Err(FramingError::TooLarge);
        }
        if self.buffer.len() < total {
            return Ok(None);
        }
        Ok(Some(self.buffer.split_to(total).freeze()))
    }
}

/// The `Content-Length` (or compact `l`) of a header block; absent means 0. Several that
/// disagree leave the message boundary unknown: the stream cannot be framed.
fn content_length(head: &[u8]) -> Result<usize, FramingError> {
    let mut found: Option<usize> = None;
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let value = std::str::from_utf8(line[colon + 1..].trim_ascii())
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(FramingError::BadContentLength)?;
            match found {
                Some(earlier) if earlier != value => return Err(FramingError::BadContentLength),
                _ => found = Some(value),
            }
        }
    }
    Ok(found.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(framer: &mut Framer, bytes: &[u8]) {
        framer.buffer_mut().extend_from_slice(bytes);
    }

    #[test]
    fn splits_back_to_back_messages_and_partial_reads() {
        let a = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 3\r\n\r\nabc";
        let b = b"BYE sip:b SIP/2.0\r\nl: 0\r\n\r\n";
        let mut stream = Vec::new();
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(a);
        stream.extend_from_slice(b);
        let mut framer = Framer::new();
        let mut out = Vec::new();
        for chunk in stream.chunks(7) {
            feed(&mut framer, chunk);
            while let Some(m) = framer.next_message().unwrap() {
                out.push(m);
            }
        }
        assert_eq!(out, vec![Bytes::from_static(a), Bytes::from_static(b)]);
    }

    #[test]
    fn refuses_oversize_messages_and_bad_lengths() {
        let mut framer = Framer::new();
        feed(
            &mut framer,
            b"INVITE sip:a SIP/2.0\r\nContent-Length: 100000\r\n\r\n",
        );
        assert_eq!(framer.next_message(), Err(FramingError::TooLarge));

        let mut framer = Framer::new();
        feed(&mut framer, &vec![b'a'; MAX_MESSAGE_SIZE + 1]);
        assert_eq!(framer.next_message(), Err(FramingError::TooLarge));

        let mut framer = Framer::new();
        feed(
            &mut framer,
            b"INVITE sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n",
        );
        assert_eq!(framer.next_message(), Err(FramingError::BadContentLength));

        let mut framer = Framer::new();
        feed(
            &mut framer,
            b"INVITE sip:a SIP/2.0\r\nContent-Length: 3\r\nl: 4\r\n\r\nabcd",
        );
        assert_eq!(framer.next_message(), Err(FramingError::BadContentLength));
    }

    #[test]
    fn bare_lf_messages_and_repeated_equal_lengths_are_framed() {
        let bare = b"OPTIONS sip:a SIP/2.0\nContent-Length: 2\n\nok";
        let repeated = b"BYE sip:b SIP/2.0\r\nContent-Length: 1\r\nl: 1\r\n\r\nx";
        let mut framer = Framer::new();
        feed(&mut framer, bare);
        feed(&mut framer, repeated);
        assert_eq!(
            framer.next_message().unwrap(),
            Some(Bytes::from_static(bare))
        );
        assert_eq!(
            framer.next_message().unwrap(),
            Some(Bytes::from_static(repeated))
        );
        assert_eq!(framer.next_message().unwrap(), None);
    }
}
