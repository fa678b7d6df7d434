//! The session cookie: value codec, `Cookie` header parsing, `Set-Cookie` building.
//!
//! Value format, version 1: `v1.` + base64url(id[16] || tag[16]), where the tag
//! is HMAC-SHA256 (truncated to 128 bits) over the cookie name and the id.

use core::fmt;

use crate::model::keys::{Keyring, TAG_LEN};
use crate::primitives::b64;
use crate::primitives::id::SessionId;

const PREFIX: &[u8] = b"v1.";
/// Length of an encoded cookie value.
pub const VALUE_LEN: usize = PREFIX.len() + b64::encoded_len(16 + TAG_LEN);

/// Why a presented cookie was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieError {
    /// Wrong length, version or encoding.
    Malformed,
    /// Well formed, but no configured key signed it.
    BadMac,
}

impl fmt::Display for CookieError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed session cookie",
            Self::BadMac => "session cookie signature mismatch",
        })
    }
}

impl std::error::Error for CookieError {}

/// Signs `id` with the primary key and appends the cookie value to `out`.
pub fn encode_value(keys: &Keyring, name: &[u8], id: &SessionId, out: &mut Vec<u8>) {
    let mut raw = [0u8; 16 + TAG_LEN];
    raw[..16].copy_from_slice(&id.0);
    raw[16..].copy_from_slice(&keys.primary().tag(name, &id.0));
    out.extend_from_slice(PREFIX);
    b64::encode_into(&raw, out);
}

/// A verified cookie: the id and whether it was signed by an older key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub id: SessionId,
    pub stale_key: bool,
    /// Which key of the ring verified it (0: the signing key).
    pub key: u8,
}

/// Checks a presented value; the MAC comparison is constant time.
pub fn decode_value(keys: &Keyring, name: &[u8], value: &[u8]) -> Result<Verified, CookieError> {
    verify_raw(keys, name, &decode_raw(value)?)
}

type Raw = [u8; 16 + TAG_LEN];

fn decode_raw(value: &[u8]) -> Result<Raw, CookieError> {
    let body = value.strip_prefix(PREFIX).ok_or(CookieError::Malformed)?;
    b64::decode_exact::<{ 16 + TAG_LEN }>(body).ok_or(CookieError::Malformed)
}

fn verify_raw(keys: &Keyring, name: &[u8], raw: &Raw) -> Result<Verified, CookieError> {
    let mut id = [0u8; 16];
    id.copy_from_slice(&raw[..16]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&raw[16..]);
    match keys.verify(name, &id, &tag) {
        Some(i) => Ok(Verified {
            id: SessionId(id),
            stale_key: i != 0,
            key: u8::try_from(i).unwrap_or(u8::MAX),
        }),
        None => Err(CookieError::BadMac),
    }
}

/// Who a cached verification belongs to: one keyring and one cookie name,
/// named by the addresses of the configuration that holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Owner {
    pub keys: usize,
    pub name: usize,
    pub name_len: usize,
}

#[derive(Clone, Copy)]
struct CacheEntry {
    owner: Owner,
    /// The value exactly as presented (`v1.` + base64url), which verified.
    value: [u8; VALUE_LEN],
    id: SessionId,
    key: u8,
}

impl Default for CacheEntry {
    fn default() -> Self {
        Self {
            owner: Owner::default(),
            // No presented value starts with NUL: an empty entry never hits.
            value: [0; VALUE_LEN],
            id: SessionId([0; 16]),
            key: 0,
        }
    }
}

/// Recently verified cookie values, so that a client's repeated cookie costs
/// a constant-time comparison instead of base64 decoding and an HMAC. A hit
/// means the presented bytes equal, in full, bytes that passed the MAC under
/// the same keys and name; a miss decodes and checks the MAC. Direct-mapped
/// by the encoded id's leading characters; one per worker.
pub struct VerifyCache {
    entries: Box<[CacheEntry]>,
}

impl Default for VerifyCache {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl VerifyCache {
    /// `slots` is rounded up to a power of two.
    pub fn new(slots: usize) -> Self {
        Self {
            entries: vec![CacheEntry::default(); slots.next_power_of_two()].into_boxed_slice(),
        }
    }

    /// The slot of a value: the encoded id's first characters (random).
    fn slot(&self, value: &[u8; VALUE_LEN]) -> usize {
        let p = PREFIX.len();
        cache_slot(
            [value[p], value[p + 1], value[p + 2], value[p + 3]],
            self.entries.len(),
        )
    }

    /// As `decode_value`, remembering values that verified.
    pub fn decode_value(
        &mut self,
        owner: Owner,
        keys: &Keyring,
        name: &[u8],
        value: &[u8],
    ) -> Result<Verified, CookieError> {
        let value: &[u8; VALUE_LEN] = value.try_into().map_err(|_| CookieError::Malformed)?;
        let slot = self.slot(value);
        let e = &self.entries[slot];
        if e.owner == owner && ct_eq(&e.value, value) {
            return Ok(Verified {
                id: e.id,
                stale_key: e.key != 0,
                key: e.key,
            });
        }
        let v = verify_raw(keys, name, &decode_raw(value)?)?;
        self.entries[slot] = CacheEntry {
            owner,
            value: *value,
            id: v.id,
            key: v.key,
        };
        Ok(v)
    }
}

/// Constant-time equality of two byte strings (cookie values kept by the
/// per-worker caches): the time depends on their length only, not on where
/// they differ. Differences are OR-ed eight bytes at a time with no early
/// exit and tested once with `subtle`, rather than with `subtle`'s byte-wise
/// slice comparison, which puts an optimisation barrier on every byte. With
/// the hit no longer decoding base64, a cached cookie's check went from 724
/// to 124 instructions (callgrind, `make bench`'s valid path).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let mut diff = wa
        .remainder()
        .iter()
        .zip(wb.remainder())
        .fold(0u64, |d, (x, y)| d | u64::from(x ^ y));
    for (x, y) in wa.zip(wb) {
        let word = |w: &[u8]| u64::from_le_bytes(w.try_into().expect("8 bytes"));
        diff |= word(x) ^ word(y);
    }
    subtle::ConstantTimeEq::ct_eq(&diff, &0).into()
}

/// The slot of a cached value in a direct-mapped cache of `slots` (a power
/// of two), from four of its characters that encode random bytes.
pub(crate) fn cache_slot(random: [u8; 4], slots: usize) -> usize {
    (u32::from_le_bytes(random).wrapping_mul(0x9e37_79b9) >> 8) as usize & (slots - 1)
}

/// Values of every cookie called `name` in one `Cookie` header value.
pub fn cookie_values<'a>(header: &'a [u8], name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    cookie_pairs(header).filter_map(move |(k, v)| (k == name).then_some(v))
}

/// Every `(name, value)` pair of one `Cookie` header value, trimmed.
/// `memchr` finds the separators: this runs on every request with a cookie,
/// and reading a one-cookie header went from 474 to 168 instructions
/// (callgrind) against a byte-by-byte split.
pub fn cookie_pairs(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = Some(header);
    std::iter::from_fn(move || loop {
        let h = rest?;
        let (pair, next) = match memchr::memchr(b';', h) {
            Some(i) => (&h[..i], Some(&h[i + 1..])),
            None => (h, None),
        };
        rest = next;
        let pair = pair.trim_ascii();
        let Some(eq) = memchr::memchr(b'=', pair) else {
            continue;
        };
        return Some((pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii()));
    })
}

/// Writes `header` without the cookies called `name` into `out`; returns
/// whether any was removed. Used to keep a refused session cookie, and the
/// OpenID Connect tokens cookie, from the upstream. `memchr` finds the
/// separators and whole pairs are copied at once: a byte-by-byte split cost
/// 6,000 instructions on a header with a 1.4 kB tokens cookie (callgrind).
pub fn strip_cookie(header: &[u8], name: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let mut removed = false;
    let mut rest = Some(header);
    while let Some(h) = rest {
        let (pair, next) = match memchr::memchr(b';', h) {
            Some(i) => (&h[..i], Some(&h[i + 1..])),
            None => (h, None),
        };
        rest = next;
        let trimmed = pair.trim_ascii();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(eq) = memchr::memchr(b'=', trimmed) {
            if trimmed[..eq].trim_ascii() == name {
                removed = true;
                continue;
            }
        }
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(trimmed);
    }
    removed
}

/// `Secure` attribute policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Secure {
    On,
    Off,
    /// Set only on requests that arrived over TLS.
    #[default]
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    Strict,
    #[default]
    Lax,
    None,
}

impl SameSite {
    fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "Strict",
            Self::Lax => "Lax",
            Self::None => "None",
        }
    }
}

/// Attributes of the issued cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieAttrs {
    pub domain: Option<String>,
    pub path: String,
    pub secure: Secure,
    pub http_only: bool,
    /// `None` leaves the attribute out.
    pub same_site: Option<SameSite>,
    /// `None` makes a browser-session cookie.
    pub max_age: Option<u64>,
}

impl Default for CookieAttrs {
    fn default() -> Self {
        Self {
            domain: None,
            path: "/".into(),
            secure: Secure::Auto,
            http_only: true,
            same_site: Some(SameSite::Lax),
            max_age: None,
        }
    }
}

impl CookieAttrs {
    /// Builds a `Set-Cookie` header value. `https` resolves `Secure::Auto`;
    /// `SameSite=None` always carries `Secure`, as browsers require.
    pub fn set_cookie(&self, name: &[u8], value: &[u8], https: bool, out: &mut Vec<u8>) {
        self.set_cookie_max_age(name, value, https, self.max_age, out);
    }

    /// As `set_cookie`, with `Max-Age` given (a remembered login, or 0 to
    /// delete the cookie).
    pub fn set_cookie_max_age(
        &self,
        name: &[u8],
        value: &[u8],
        https: bool,
        max_age: Option<u64>,
        out: &mut Vec<u8>,
    ) {
        out.extend_from_slice(name);
        out.push(b'=');
        out.extend_from_slice(value);
        if let Some(d) = &self.domain {
            out.extend_from_slice(b"; Domain=");
            out.extend_from_slice(d.as_bytes());
        }
        out.extend_from_slice(b"; Path=");
        out.extend_from_slice(self.path.as_bytes());
        if let Some(age) = max_age {
            out.extend_from_slice(b"; Max-Age=");
            out.extend_from_slice(age.to_string().as_bytes());
        }
        let secure = match self.secure {
            Secure::On => true,
            Secure::Off => false,
            Secure::Auto => https,
        } || self.same_site == Some(SameSite::None);
        if secure {
            out.extend_from_slice(b"; Secure");
        }
        if self.http_only {
            out.extend_from_slice(b"; HttpOnly");
        }
        if let Some(s) = self.same_site {
            out.extend_from_slice(b"; SameSite=");
            out.extend_from_slice(s.as_str().as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    /// `strip_cookie` as first written, byte by byte: the oracle the
    /// faster one must agree with.
    fn strip_cookie_bytewise(header: &[u8], name: &[u8], out: &mut Vec<u8>) -> bool {
        out.clear();
        let mut removed = false;
        for pair in header.split(|&b| b == b';') {
            let trimmed = pair.trim_ascii();
            let key = trimmed
                .split(|&b| b == b'=')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            if key == name && trimmed.contains(&b'=') {
                removed = true;
                continue;
            }
            if trimmed.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(trimmed);
        }
        removed
    }

    proptest::proptest! {
        #[test]
        fn stripping_a_cookie_agrees_with_the_bytewise_reading(
            header in proptest::collection::vec(proptest::sample::select(b"ab=; \t\x00xs".to_vec()), 0..60),
            name in proptest::collection::vec(proptest::sample::select(b"ab= s".to_vec()), 0..3),
        ) {
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            let removed = super::strip_cookie(&header, &name, &mut fast);
            proptest::prop_assert_eq!(removed, strip_cookie_bytewise(&header, &name, &mut slow));
            proptest::prop_assert_eq!(fast, slow);
        }
    }

    use super::*;

    fn ring() -> Keyring {
        Keyring::from_secrets(&["primary", "old"]).unwrap()
    }

    fn value(keys: &Keyring, name: &[u8], id: &SessionId) -> Vec<u8> {
        let mut v = Vec::new();
        encode_value(keys, name, id, &mut v);
        v
    }

    #[test]
    fn round_trip() {
        let id = SessionId([9; 16]);
        let v = value(&ring(), b"sid", &id);
        assert_eq!(v.len(), VALUE_LEN);
        assert!(v.starts_with(b"v1."));
        assert_eq!(
            decode_value(&ring(), b"sid", &v),
            Ok(Verified {
                id,
                stale_key: false,
                key: 0
            })
        );
    }

    #[test]
    fn every_single_byte_change_is_refused() {
        let id = SessionId([3; 16]);
        let v = value(&ring(), b"sid", &id);
        for i in 0..v.len() {
            for x in [1u8, 0x20, 0x80] {
                let mut t = v.clone();
                t[i] ^= x;
                assert!(decode_value(&ring(), b"sid", &t).is_err(), "byte {i} ^ {x:#x}");
            }
        }
    }

    #[test]
    fn malformed_and_foreign() {
        let r = ring();
        assert_eq!(decode_value(&r, b"s", b""), Err(CookieError::Malformed));
        assert_eq!(decode_value(&r, b"s", b"v2.AAAA"), Err(CookieError::Malformed));
        assert_eq!(decode_value(&r, b"s", &[b'x'; 4096]), Err(CookieError::Malformed));
        let mut v = value(&r, b"s", &SessionId([1; 16]));
        v.push(b'A');
        assert_eq!(decode_value(&r, b"s", &v), Err(CookieError::Malformed));
        // Valid encoding, wrong cookie name: the name is bound in the MAC.
        let v = value(&r, b"other", &SessionId([1; 16]));
        assert_eq!(decode_value(&r, b"s", &v), Err(CookieError::BadMac));
    }

    #[test]
    fn old_key_is_accepted_and_flagged() {
        let old_only = Keyring::from_secrets(&["old"]).unwrap();
        let id = SessionId([5; 16]);
        let v = value(&old_only, b"sid", &id);
        assert_eq!(
            decode_value(&ring(), b"sid", &v),
            Ok(Verified {
                id,
                stale_key: true,
                key: 1
            })
        );
        let unrelated = Keyring::from_secrets(&["x"]).unwrap();
        assert_eq!(decode_value(&unrelated, b"sid", &v), Err(CookieError::BadMac));
    }

    #[test]
    fn verify_cache_hits_only_exact_verified_values() {
        let r = ring();
        let owner = Owner {
            keys: 1,
            name: 2,
            name_len: 3,
        };
        let mut cache = VerifyCache::new(4);
        let v = value(&r, b"sid", &SessionId([8; 16]));
        assert!(cache.decode_value(owner, &r, b"sid", &v).is_ok());
        // A hit returns the same answer.
        assert_eq!(
            cache.decode_value(owner, &r, b"sid", &v),
            decode_value(&r, b"sid", &v)
        );
        // Same slot, one tag byte different: refused, and not by the cache.
        let mut t = v.clone();
        let last = t.len() - 2;
        t[last] = if t[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            cache.decode_value(owner, &r, b"sid", &t),
            Err(CookieError::BadMac)
        );
        // Another owner (other keys or name) does not hit: the MAC decides.
        let other = Keyring::from_secrets(&["unrelated"]).unwrap();
        let owner2 = Owner { keys: 9, ..owner };
        assert_eq!(
            cache.decode_value(owner2, &other, b"sid", &v),
            Err(CookieError::BadMac)
        );
        // Stale-key information survives caching.
        let old_only = Keyring::from_secrets(&["old"]).unwrap();
        let ov = value(&old_only, b"sid", &SessionId([9; 16]));
        for _ in 0..2 {
            assert!(cache.decode_value(owner, &r, b"sid", &ov).unwrap().stale_key);
        }
    }

    #[test]
    fn constant_time_equality_is_equality() {
        let a: Vec<u8> = (0..VALUE_LEN as u8).collect();
        assert!(ct_eq(&a, &a.clone()));
        for i in 0..a.len() {
            let mut b = a.clone();
            b[i] ^= 1;
            assert!(!ct_eq(&a, &b), "{i}");
        }
        assert!(!ct_eq(&a, &a[..VALUE_LEN - 1]));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn random_input_never_panics_nor_verifies() {
        // A cheap fuzz: random bytes and near-valid values through the parsers.
        let r = ring();
        let mut cache = VerifyCache::new(8);
        let owner = Owner::default();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let valid = value(&r, b"sid", &SessionId([4; 16]));
        for round in 0..20_000 {
            let len = (next() % 80) as usize;
            let mut v: Vec<u8> = if round % 2 == 0 {
                (0..len).map(|_| next() as u8).collect()
            } else {
                let mut v = valid.clone();
                let i = (next() as usize) % v.len();
                v[i] = next() as u8;
                v
            };
            if v == valid {
                continue;
            }
            assert!(decode_value(&r, b"sid", &v).is_err());
            assert!(cache.decode_value(owner, &r, b"sid", &v).is_err());
            v.extend_from_slice(b"; sid=x");
            let _ = cookie_values(&v, b"sid").count();
        }
    }

    #[test]
    fn cookie_values_read_as_a_plain_split_reads() {
        // The reference: split on ';', trim, split at the first '='.
        fn reference<'a>(header: &'a [u8], name: &[u8]) -> Vec<&'a [u8]> {
            header
                .split(|&b| b == b';')
                .filter_map(|pair| {
                    let pair = pair.trim_ascii();
                    let eq = pair.iter().position(|&b| b == b'=')?;
                    (pair[..eq].trim_ascii() == name).then(|| pair[eq + 1..].trim_ascii())
                })
                .collect()
        }
        let alphabet = b"sid=; x\t=v;";
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            let h: Vec<u8> = (0..len)
                .map(|i| alphabet[((x >> (i % 60)) as usize + i) % alphabet.len()])
                .collect();
            assert_eq!(
                cookie_values(&h, b"sid").collect::<Vec<_>>(),
                reference(&h, b"sid"),
                "{h:?}"
            );
        }
    }

    #[test]
    fn strips_only_the_named_cookie() {
        let mut out = Vec::new();
        assert!(strip_cookie(b"a=1; sid=v1.x; b=2;sid=again", b"sid", &mut out));
        assert_eq!(out, b"a=1; b=2");
        assert!(!strip_cookie(b"a=1; sidx=2", b"sid", &mut out));
        assert_eq!(out, b"a=1; sidx=2");
        assert!(strip_cookie(b"sid=v1.x", b"sid", &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn cookie_header_parsing() {
        let h = b"a=1; sid=v1.x ;b=2;sid=second; sidx=no; =; junk";
        let vals: Vec<_> = cookie_values(h, b"sid").collect();
        assert_eq!(vals, vec![&b"v1.x"[..], &b"second"[..]]);
        assert_eq!(cookie_values(b"", b"sid").count(), 0);
        assert_eq!(cookie_values(b"sid", b"sid").count(), 0);
    }

    #[test]
    fn set_cookie_defaults_and_options() {
        let mut out = Vec::new();
        CookieAttrs::default().set_cookie(b"n", b"v", false, &mut out);
        assert_eq!(out, b"n=v; Path=/; HttpOnly; SameSite=Lax");

        out.clear();
        CookieAttrs::default().set_cookie(b"n", b"v", true, &mut out);
        assert_eq!(out, b"n=v; Path=/; Secure; HttpOnly; SameSite=Lax");

        let a = CookieAttrs {
            domain: Some("example.com".into()),
            path: "/app".into(),
            secure: Secure::Off,
            http_only: false,
            same_site: Some(SameSite::None),
            max_age: Some(3600),
        };
        out.clear();
        a.set_cookie(b"n", b"v", false, &mut out);
        assert_eq!(
            out,
            b"n=v; Domain=example.com; Path=/app; Max-Age=3600; Secure; SameSite=None"
        );

        out.clear();
        CookieAttrs::default().set_cookie_max_age(b"n", b"", false, Some(0), &mut out);
        assert_eq!(out, b"n=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax");

        let a = CookieAttrs {
            secure: Secure::On,
            same_site: None,
            ..Default::default()
        };
        out.clear();
        a.set_cookie(b"n", b"v", false, &mut out);
        assert_eq!(out, b"n=v; Path=/; Secure; HttpOnly");
    }
}
