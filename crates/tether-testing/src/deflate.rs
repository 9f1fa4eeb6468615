//! Compression bombs: small permessage-deflate data that inflates to a great
//! many bytes. The load generator's own ([`tether_bench::deflate_bomb`]), so
//! that the tests and `tether bench bombs` send the same thing.

pub use tether_bench::deflate_bomb;

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
