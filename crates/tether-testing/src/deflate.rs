//! Compression bombs: small permessage-deflate data that inflates to a great
//! many bytes.

use flate2::{Compress, Compression, FlushCompress};

/// Raw deflate of `zeros` zero bytes, sync-flushed, its 4-byte tail stripped
/// as RFC 7692 sends a message; made in 1 MiB chunks, so the test holds only
/// the compressed bytes (about a thousandth of `zeros`).
pub fn deflate_bomb(zeros: usize) -> Vec<u8> {
    let mut compress = Compress::new(Compression::best(), false);
    let chunk = vec![0u8; 1 << 20];
    let mut out = Vec::with_capacity(zeros / 500 + (1 << 16));
    while (compress.total_in() as usize) < zeros {
        let left = zeros - compress.total_in() as usize;
        if out.capacity() - out.len() < 1 << 12 {
            out.reserve(1 << 16);
        }
        compress
            .compress_vec(
                &chunk[..left.min(chunk.len())],
                &mut out,
                FlushCompress::None,
            )
            .expect("deflate takes zeros");
    }
    loop {
        out.reserve(1 << 16);
        let before = compress.total_out();
        compress
            .compress_vec(&[], &mut out, FlushCompress::Sync)
            .expect("deflate flushes");
        if compress.total_out() == before {
            break;
        }
    }
    // RFC 7692 §7.2.1: the sender removes the sync flush's 00 00 ff ff.
    out.truncate(out.len() - 4);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bomb_inflates_to_exactly_its_zeros() {
        let bomb = deflate_bomb(3 << 20);
        assert!(bomb.len() < 8 << 10, "{} bytes", bomb.len());
        let mut inflate = flate2::Decompress::new(false);
        let mut input = bomb;
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(4 << 20);
        inflate
            .decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
            .unwrap();
        assert_eq!(out.len(), 3 << 20);
        assert!(out.iter().all(|&b| b == 0));
    }
}
