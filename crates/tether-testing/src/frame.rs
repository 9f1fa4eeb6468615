//! WebSocket frames written by hand, for tests that send what no client
//! library would.

/// A client frame: `first` (FIN, RSV bits and opcode), the payload length,
/// the mask key `key`, and `payload` masked with it (RFC 6455 §5.2, §5.3).
pub fn masked_frame(first: u8, key: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(first);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_take_their_three_forms() {
        assert_eq!(
            masked_frame(0x81, [0; 4], b"hi"),
            [0x81, 0x82, 0, 0, 0, 0, b'h', b'i']
        );
        let medium = masked_frame(0x82, [0; 4], &[7; 300]);
        assert_eq!(&medium[..4], [0x82, 0x80 | 126, 1, 44]);
        let large = masked_frame(0x82, [0; 4], &[7; 70_000]);
        assert_eq!(&large[..10], [0x82, 0xff, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        let masked = masked_frame(0x81, [1, 2, 3, 4], b"aaaa");
        assert_eq!(&masked[6..], [b'a' ^ 1, b'a' ^ 2, b'a' ^ 3, b'a' ^ 4]);
    }
}
