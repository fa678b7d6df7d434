//! Unpadded base64url (RFC 4648 §5), the alphabet that is safe in a cookie.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Encoded length of `n` bytes without padding.
pub const fn encoded_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

/// Appends the encoding of `src` to `out`.
pub fn encode_into(src: &[u8], out: &mut Vec<u8>) {
    out.reserve(encoded_len(src.len()));
    for chunk in src.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]);
        }
    }
}

fn value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    } as u32)
}

/// Decodes exactly `N` bytes; any other length, padding or stray bits fail.
pub fn decode_exact<const N: usize>(src: &[u8]) -> Option<[u8; N]> {
    if src.len() != encoded_len(N) {
        return None;
    }
    let mut out = [0u8; N];
    let mut o = 0;
    for chunk in src.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = chunk.len() - 1;
        // Bits past the last whole byte must be zero: one encoding per value.
        if n & ((1 << (24 - 8 * bytes)) - 1) != 0 {
            return None;
        }
        for i in 0..bytes {
            out[o] = (n >> (16 - 8 * i)) as u8;
            o += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(b: &[u8]) -> String {
        let mut v = Vec::new();
        encode_into(b, &mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn rfc4648_vectors() {
        assert_eq!(enc(b"f"), "Zg");
        assert_eq!(enc(b"fo"), "Zm8");
        assert_eq!(enc(b"foo"), "Zm9v");
        assert_eq!(enc(b"foob"), "Zm9vYg");
        assert_eq!(enc(b"fooba"), "Zm9vYmE");
        assert_eq!(enc(b"foobar"), "Zm9vYmFy");
        assert_eq!(enc(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn round_trip_all_lengths_used() {
        let data: [u8; 32] = core::array::from_fn(|i| (i * 37 + 11) as u8);
        let e = enc(&data);
        assert_eq!(e.len(), encoded_len(32));
        assert_eq!(decode_exact::<32>(e.as_bytes()), Some(data));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(decode_exact::<3>(b"Zm9"), None); // wrong length
        assert_eq!(decode_exact::<2>(b"Zm+"), None); // standard alphabet
        assert_eq!(decode_exact::<2>(b"Zm9="), None); // padding
        assert_eq!(decode_exact::<1>(b"Zh"), None); // non-zero trailing bits
        assert_eq!(decode_exact::<1>(b"Zg"), Some(*b"f"));
    }
}
