//! Session identifiers: 128 random bits from the OS CSPRNG, never chosen by a client.

use core::fmt;

/// The secret half of a session: the storage key, carried only in the signed cookie.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct SessionId(pub [u8; 16]);

/// A stable, non-secret name for a session, for logs and `$session_id`.
/// Random and unrelated to the id, so the cookie cannot be rebuilt from it;
/// it survives rolling renewal.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
#[repr(transparent)]
pub struct Handle(pub [u8; 8]);

/// The OS random source failed; the caller must not invent an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomError;

impl fmt::Display for RandomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the system random source failed")
    }
}

impl std::error::Error for RandomError {}

/// Fills `buf` from the OS CSPRNG.
pub fn fill_random(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(|_| RandomError)
}

/// OS random bytes read ahead in one system call and handed out in pieces.
/// Every byte still comes from the OS CSPRNG and is used once. A process
/// must start with an empty pool (`clear` after fork), or two workers would
/// hand out the same bytes.
pub struct RandomPool {
    buf: [u8; 4096],
    pos: usize,
}

impl Default for RandomPool {
    fn default() -> Self {
        Self::new()
    }
}

impl RandomPool {
    pub const fn new() -> Self {
        Self {
            buf: [0; 4096],
            pos: 4096,
        }
    }

    /// Forgets unread bytes: the next read goes to the OS.
    pub fn clear(&mut self) {
        self.buf.fill(0);
        self.pos = self.buf.len();
    }

    pub fn fill(&mut self, out: &mut [u8]) -> Result<(), RandomError> {
        if out.len() > self.buf.len() {
            return fill_random(out);
        }
        if self.buf.len() - self.pos < out.len() {
            fill_random(&mut self.buf)?;
            self.pos = 0;
        }
        let end = self.pos + out.len();
        out.copy_from_slice(&self.buf[self.pos..end]);
        // Bytes handed out are not kept.
        self.buf[self.pos..end].fill(0);
        self.pos = end;
        Ok(())
    }
}

impl SessionId {
    pub fn generate() -> Result<Self, RandomError> {
        let mut b = [0u8; 16];
        fill_random(&mut b)?;
        Ok(Self(b))
    }

    pub fn from_pool(pool: &mut RandomPool) -> Result<Self, RandomError> {
        let mut b = [0u8; 16];
        pool.fill(&mut b)?;
        Ok(Self(b))
    }

    /// Bucket hash: ids are uniformly random, so their leading bytes already are.
    #[inline]
    pub fn bucket_hash(&self) -> u32 {
        u32::from_le_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }
}

impl fmt::Debug for SessionId {
    // The id is a bearer secret: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(..)")
    }
}

impl Handle {
    pub fn generate() -> Result<Self, RandomError> {
        let mut b = [0u8; 8];
        fill_random(&mut b)?;
        Ok(Self(b))
    }

    pub fn from_pool(pool: &mut RandomPool) -> Result<Self, RandomError> {
        let mut b = [0u8; 8];
        pool.fill(&mut b)?;
        Ok(Self(b))
    }

    /// Parses the 16 hex characters of `to_hex`.
    pub fn from_hex(s: &[u8]) -> Option<Self> {
        if s.len() != 16 {
            return None;
        }
        let mut out = [0u8; 8];
        for (i, pair) in s.chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(Self(out))
    }

    /// Lower-case hex, 16 characters.
    pub fn to_hex(self) -> [u8; 16] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 16];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = HEX[usize::from(b >> 4)];
            out[2 * i + 1] = HEX[usize::from(b & 15)];
        }
        out
    }
}

/// `n` characters from [0-9A-Za-z], as BunkerWeb's `random` secret and name.
pub fn random_alnum<const N: usize>() -> Result<[u8; N], RandomError> {
    const SET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        let mut buf = [0u8; 32];
        fill_random(&mut buf)?;
        // Rejection sampling keeps the distribution uniform.
        for b in buf {
            if b < 248 && i < N {
                out[i] = SET[usize::from(b % 62)];
                i += 1;
            }
        }
    }
    Ok(out)
}

/// The `random` secret kept in Redis for every instance: 256 random bits
/// as 64 lowercase hex digits.
pub fn random_secret_hex() -> Result<[u8; 64], RandomError> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut raw = [0u8; 32];
    fill_random(&mut raw)?;
    let mut out = [0u8; 64];
    for (i, b) in raw.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    Ok(out)
}

/// Whether a secret read back from Redis is one `random_secret_hex` makes.
pub fn is_random_secret(v: &[u8]) -> bool {
    v.len() == 64 && v.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether a cookie name read back from Redis is one `random_alnum::<16>`
/// makes: anything else could carry cookie attributes or header lines.
pub fn is_random_name(v: &[u8]) -> bool {
    v.len() == 16 && v.iter().all(u8::is_ascii_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_hidden() {
        let a = SessionId::generate().unwrap();
        let b = SessionId::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "SessionId(..)");
    }

    #[test]
    fn pool_hands_out_each_byte_once() {
        let mut pool = RandomPool::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            assert!(seen.insert(SessionId::from_pool(&mut pool).unwrap().0));
        }
        let mut big = [0u8; 5000];
        pool.fill(&mut big).unwrap();
        assert!(big.iter().any(|&b| b != 0));
        pool.clear();
        assert_eq!(pool.pos, pool.buf.len());
    }

    #[test]
    fn handle_hex() {
        let h = Handle([0x00, 0x01, 0xab, 0xff, 0x10, 0x20, 0x30, 0x4f]);
        assert_eq!(&h.to_hex(), b"0001abff1020304f");
        assert_eq!(Handle::from_hex(b"0001abff1020304f"), Some(h));
        assert_eq!(Handle::from_hex(b"0001ABFF1020304F"), Some(h));
        assert_eq!(Handle::from_hex(b"0001abff1020304"), None);
        assert_eq!(Handle::from_hex(b"0001abff1020304g"), None);
    }

    #[test]
    fn values_kept_in_redis_are_checked_as_written() {
        let s = random_secret_hex().unwrap();
        assert!(is_random_secret(&s));
        assert_ne!(s, random_secret_hex().unwrap());
        assert!(!is_random_secret(&s[..63]) && !is_random_secret(&[b'A'; 64]) && !is_random_secret(b""));
        assert!(is_random_name(&random_alnum::<16>().unwrap()));
        for bad in [
            &b""[..],
            b"a\r\nX-Injected: yes",
            b"abcdefgh;Domain=x",
            &[b'a'; 5000],
            b"abcdefghijklmno",
        ] {
            assert!(!is_random_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn alnum_charset() {
        let s = random_alnum::<16>().unwrap();
        assert!(s.iter().all(u8::is_ascii_alphanumeric));
        assert_ne!(s, random_alnum::<16>().unwrap());
    }
}
