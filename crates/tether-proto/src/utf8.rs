//! UTF-8: an incremental validator for text that arrives in pieces, and
//! [`Utf8Bytes`], shared bytes known to be valid UTF-8.

use bytes::Bytes;

use crate::error::ProtocolError;

/// Validates UTF-8 fed in arbitrary pieces (frames, or parts of a frame as they come
/// off the socket) and fails at the first piece that contains an invalid byte, not at
/// the end of the message (RFC 6455 §8.1 lets an endpoint fail fast).
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    /// The start of a code point split across pieces (at most 3 bytes).
    pending: [u8; 4],
    pending_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a text.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next piece of the text.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), ProtocolError> {
        while self.pending_len > 0 {
            let Some((&byte, rest)) = data.split_first() else {
                return Ok(());
            };
            data = rest;
            self.pending[self.pending_len as usize] = byte;
            self.pending_len += 1;
            match std::str::from_utf8(&self.pending[..self.pending_len as usize]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_some() => return Err(ProtocolError::InvalidUtf8),
                Err(_) => {}
            }
        }
        match simdutf8::compat::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(ProtocolError::InvalidUtf8),
            Err(e) => {
                // A code point cut at the end of the piece: keep its start for the next one.
                let tail = &data[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// Ends the text: a code point left unfinished is an error.
    pub fn finish(&mut self) -> Result<(), ProtocolError> {
        let complete = self.pending_len == 0;
        self.pending_len = 0;
        if complete {
            Ok(())
        } else {
            Err(ProtocolError::InvalidUtf8)
        }
    }
}

/// Shared, immutable bytes that are valid UTF-8: a text message's payload, handed
/// out without copying.
#[derive(Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Wraps bytes already known to be UTF-8.
    ///
    /// Only for callers inside this crate that validated them.
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Self(bytes)
    }

    /// A static string, without copying.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor validates or receives validated UTF-8.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The shared bytes, for sending without a copy.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl std::ops::Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl std::fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = ProtocolError;
    fn try_from(bytes: Bytes) -> Result<Self, ProtocolError> {
        simdutf8::basic::from_utf8(&bytes).map_err(|_| ProtocolError::InvalidUtf8)?;
        Ok(Self(bytes))
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(s: Utf8Bytes) -> Bytes {
        s.0
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_split(text: &[u8], at: &[usize]) -> Result<(), ProtocolError> {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &cut in at {
            v.feed(&text[start..cut])?;
            start = cut;
        }
        v.feed(&text[start..])?;
        v.finish()
    }

    #[test]
    fn accepts_code_points_split_at_every_byte() {
        let text = "κόσμε 😀 hello".as_bytes();
        for cut in 0..=text.len() {
            assert_eq!(feed_split(text, &[cut]), Ok(()), "cut at {cut}");
        }
        let every: Vec<usize> = (1..text.len()).collect();
        assert_eq!(feed_split(text, &every), Ok(()));
    }

    #[test]
    fn fails_at_the_piece_with_the_invalid_byte() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed("κόσμε".as_bytes()), Ok(()));
        assert_eq!(v.feed(&[0xce, 0xba, 0xe1, 0xbd]), Ok(()));
        // 0xed 0xa0 0x80 would be a UTF-16 surrogate: invalid as soon as 0xa0 arrives.
        assert_eq!(
            v.feed(&[0xb9, 0xcf, 0x83, 0xed, 0xa0]),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn detects_invalid_continuation_of_a_split_code_point() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xe2]), Ok(()));
        assert_eq!(v.feed(&[0x28]), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn rejects_truncated_code_point_at_the_end() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xf0, 0x9f, 0x98]), Ok(()));
        assert_eq!(v.finish(), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn rejects_overlong_and_out_of_range_encodings() {
        for bad in [
            &[0xc0, 0xaf][..],
            &[0xf4, 0x90, 0x80, 0x80],
            &[0xff],
            &[0xed, 0xbf, 0xbf],
        ] {
            assert_eq!(
                feed_split(bad, &[]),
                Err(ProtocolError::InvalidUtf8),
                "{bad:x?}"
            );
        }
    }

    #[test]
    fn utf8_bytes_rejects_invalid_input() {
        assert!(Utf8Bytes::try_from(Bytes::from_static(b"\xff")).is_err());
        assert_eq!(
            Utf8Bytes::try_from(Bytes::from_static(b"ok")).unwrap(),
            "ok"
        );
    }
}
