//! How a message's buffer grows: as a vector does while it is small, then once
//! to the most the message may need.
//!
//! A vector that doubles copies what it holds each time, and a large message
//! then briefly needs room for twice what it has, the old copy resident until
//! the allocator gives it back. Untouched capacity costs address space, not
//! memory, so a buffer that grows past [`LARGE`] is sized for the largest
//! message the limit allows: no later copy, and resident memory follows what
//! was written.

use bytes::BytesMut;

/// Past this size a growing message buffer is sized for its limit at once.
pub(crate) const LARGE: usize = 1 << 20;

/// Makes room in `buf` for `additional` more bytes of a message that may hold
/// at most `max` bytes in all.
pub(crate) fn reserve(buf: &mut BytesMut, additional: usize, max: usize) {
    let needed = buf.len().saturating_add(additional);
    if needed <= buf.capacity() {
        return;
    }
    if needed > LARGE {
        buf.reserve(max.max(needed) - buf.len());
    } else {
        buf.reserve(additional);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_buffers_grow_as_vectors_do() {
        let mut buf = BytesMut::new();
        reserve(&mut buf, 100, 64 << 20);
        assert!(buf.capacity() >= 100 && buf.capacity() < LARGE);
    }

    #[test]
    fn large_buffers_are_sized_once_for_the_limit() {
        let mut buf = BytesMut::from(&vec![1u8; LARGE][..]);
        reserve(&mut buf, 1, 8 << 20);
        assert!(buf.capacity() >= 8 << 20);
        let before = buf.as_ptr();
        buf.extend_from_slice(&vec![2u8; (8 << 20) - LARGE]);
        assert_eq!(buf.as_ptr(), before, "no second allocation");
    }
}
