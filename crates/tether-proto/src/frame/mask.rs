//! Payload masking (RFC 6455 §5.3).
//!
//! Masking is an XOR with a repeating 4-byte key. It runs over every byte a client
//! sends, so it works a machine word at a time; the compiler turns the 8-byte loop
//! into SIMD where the target has it.

/// XORs `buf` with `key`, as if `buf` started `offset` bytes into the masked payload.
///
/// The offset lets a decoder unmask a payload piecewise as it arrives.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // The key as it lines up with `buf`: starting `offset % 4` bytes into it.
    let key = u32::from_le_bytes(key)
        .rotate_right(8 * (offset & 3) as u32)
        .to_le_bytes();
    let word = u32::from_ne_bytes(key) as u64;
    let word = word | (word << 32);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let value = u64::from_ne_bytes(bytes) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(i + offset) % 4];
        }
    }

    #[test]
    fn matches_bytewise_masking_for_every_length_and_offset() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..70 {
            for offset in 0..4 {
                let data: Vec<u8> = (0..len as u8).collect();
                let mut fast = data.clone();
                let mut slow = data.clone();
                apply_mask(&mut fast, key, offset);
                naive(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn unmasks_rfc_example_hello() {
        // RFC 6455 §5.7: a masked "Hello" from a client.
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }

    #[test]
    fn piecewise_unmasking_equals_whole() {
        let key = [1, 2, 3, 4];
        let mut whole: Vec<u8> = (0..100).collect();
        let mut parts = whole.clone();
        apply_mask(&mut whole, key, 0);
        let (a, rest) = parts.split_at_mut(7);
        let (b, c) = rest.split_at_mut(30);
        apply_mask(a, key, 0);
        apply_mask(b, key, 7);
        apply_mask(c, key, 37);
        assert_eq!(whole, parts);
    }
}
