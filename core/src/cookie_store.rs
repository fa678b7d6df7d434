//! The cookie store: a whole session sealed in its own cookie, no server
//! state. Building block of `sessions_store cookie` (not wired to nginx yet).
//!
//! - The session id, the record (times, address, User-Agent fingerprint,
//!   login, remember flag) and the data are sealed with ChaCha20-Poly1305
//!   under a key derived (HKDF-SHA256) from the secret and the cookie name;
//!   the name and the chunk count are the associated data. The client can
//!   neither read nor change any of it, and a value moved to another cookie
//!   name does not open.
//! - A sealed value that would make a cookie longer than `MAX_COOKIE` bytes
//!   (`NAME=VALUE`, what browsers keep whole) is split over `NAME`,
//!   `NAME_1`, `NAME_2`, ... (at most `MAX_CHUNKS`). The first value says
//!   how many there are; a missing, altered, reordered or foreign chunk
//!   fails the seal, and cookies past the count are stale (the caller
//!   deletes them).
//! - base64url is decoded strictly (one encoding per byte string), so a
//!   changed character anywhere is refused, never read as the same value.
//! - The last-seen time is refreshed at most every tenth of the idle
//!   timeout (`touch_due`): each refresh is a new cookie.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};

use crate::id::{RandomError, RandomPool, SessionId};
use crate::keys::hkdf_sha256_parts;
use crate::table::Record;

const KEY_INFO: &[u8] = b"ngx-sessions v1 cookie store\0";
/// Marks a cookie-store value (the zone's and Redis's cookies start `v1.`).
pub const PREFIX: &[u8] = b"s1.";
/// Longest `NAME=VALUE` of one cookie: browsers keep 4096 bytes, with room
/// left for the attributes some of them count.
pub const MAX_COOKIE: usize = 4000;
/// Most cookies one session may take.
pub const MAX_CHUNKS: usize = 8;
const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// The sealing key for one secret and one cookie name.
#[derive(Clone)]
pub struct CookieSealer {
    aead: ChaCha20Poly1305,
}

impl core::fmt::Debug for CookieSealer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("CookieSealer(..)")
    }
}

/// What a cookie-store session holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    pub id: SessionId,
    pub record: Record,
    /// The session's data, encoded as `crate::data` encodes it.
    pub data: Vec<u8>,
}

/// Why sealing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealError {
    Random(RandomError),
    /// The sealed session would need more than `MAX_CHUNKS` cookies.
    TooLarge,
}

/// The cookies did not open: altered, truncated, under another name or an
/// unknown secret, or not a cookie-store value at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

impl CookieSealer {
    pub fn derive(secret: &[u8], name: &[u8]) -> Self {
        let key = hkdf_sha256_parts(secret, &[KEY_INFO, name]);
        Self {
            aead: ChaCha20Poly1305::new_from_slice(&key).expect("32-byte key"),
        }
    }
}

/// The name of chunk `i` of cookie `name`: `name` itself, then `name_1`, ...
pub fn chunk_name(name: &[u8], i: usize) -> Vec<u8> {
    let mut n = name.to_vec();
    if i > 0 {
        n.push(b'_');
        n.extend_from_slice(i.to_string().as_bytes());
    }
    n
}

/// Whether a session last seen at `last_seen` (ms) should be sealed again
/// to record `now`: at most once per tenth of the idle timeout. `None`: no
/// idle timeout, nothing to record.
pub fn touch_due(last_seen: u64, now: u64, idle_ms: Option<u64>) -> bool {
    idle_ms.is_some_and(|idle| now.saturating_sub(last_seen) >= (idle / 10).max(1))
}

/// Seals `c` into the values of the cookies `name`, `name_1`, ... in order.
pub fn seal(
    sealer: &CookieSealer,
    name: &[u8],
    c: &Contents,
    rng: &mut RandomPool,
) -> Result<Vec<Vec<u8>>, SealError> {
    let data_len = u16::try_from(c.data.len()).map_err(|_| SealError::TooLarge)?;
    let mut plain = Vec::with_capacity(128 + c.data.len());
    plain.push(VERSION);
    plain.extend_from_slice(&c.id.0);
    c.record.encode(&mut plain);
    plain.extend_from_slice(&data_len.to_le_bytes());
    plain.extend_from_slice(&c.data);

    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce).map_err(SealError::Random)?;
    // The chunk count is known before sealing: it depends on lengths only.
    let sealed_len = NONCE_LEN + plain.len() + TAG_LEN;
    let encoded = crate::b64::encoded_len(sealed_len);
    let count = chunks_for(name, encoded).ok_or(SealError::TooLarge)?;
    let ct = sealer
        .aead
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &plain,
                aad: &aad(name, count),
            },
        )
        .expect("ChaCha20-Poly1305 seals any length used here");
    let mut blob = nonce.to_vec();
    blob.extend_from_slice(&ct);
    let mut text = Vec::with_capacity(encoded);
    crate::b64::encode_into(&blob, &mut text);

    let mut out = Vec::with_capacity(count);
    let mut rest = &text[..];
    for i in 0..count {
        let mut v = Vec::new();
        let room = if i == 0 {
            v.extend_from_slice(PREFIX);
            v.push(b'0' + count as u8);
            v.push(b'.');
            first_room(name)
        } else {
            room(name, i)
        };
        let take = rest.len().min(room);
        v.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        out.push(v);
    }
    debug_assert!(rest.is_empty());
    Ok(out)
}

/// How many chunks the request's first cookie says the session takes, or
/// `None` when it is not a cookie-store value.
pub fn chunk_count(first: &[u8]) -> Option<usize> {
    let rest = first.strip_prefix(PREFIX)?;
    match rest {
        [d @ b'1'..=b'8', b'.', ..] => Some(usize::from(d - b'0')),
        _ => None,
    }
}

/// Opens the chunks of cookie `name` (`values[0]` is `name`'s own value).
/// Tries each sealer in order (the first is the current secret) and says
/// which one opened it, so an old secret's cookie can be sealed again.
pub fn open(sealers: &[CookieSealer], name: &[u8], values: &[&[u8]]) -> Result<(Contents, usize), Refused> {
    let first = *values.first().ok_or(Refused)?;
    let count = chunk_count(first).ok_or(Refused)?;
    if values.len() != count {
        return Err(Refused);
    }
    let mut text = first[PREFIX.len() + 2..].to_vec();
    for v in &values[1..] {
        text.extend_from_slice(v);
    }
    let blob = crate::b64::decode_vec(&text).ok_or(Refused)?;
    if blob.len() < NONCE_LEN + TAG_LEN {
        return Err(Refused);
    }
    let (nonce, ct) = blob.split_at(NONCE_LEN);
    let nonce = Nonce::try_from(nonce).map_err(|_| Refused)?;
    let aad = aad(name, count);
    for (i, s) in sealers.iter().enumerate() {
        let payload = Payload { msg: ct, aad: &aad };
        if let Ok(plain) = s.aead.decrypt(&nonce, payload) {
            return parse(&plain).map(|c| (c, i));
        }
    }
    Err(Refused)
}

fn parse(plain: &[u8]) -> Result<Contents, Refused> {
    let (&version, rest) = plain.split_first().ok_or(Refused)?;
    if version != VERSION || rest.len() < 16 {
        return Err(Refused);
    }
    let id = SessionId(rest[..16].try_into().expect("16 bytes"));
    let (record, used) = Record::decode(&rest[16..]).ok_or(Refused)?;
    let rest = &rest[16 + used..];
    let len = usize::from(u16::from_le_bytes(
        rest.get(..2).ok_or(Refused)?.try_into().expect("2 bytes"),
    ));
    let data = rest.get(2..).filter(|d| d.len() == len).ok_or(Refused)?;
    Ok(Contents {
        id,
        record,
        data: data.to_vec(),
    })
}

fn aad(name: &[u8], count: usize) -> Vec<u8> {
    let mut a = name.to_vec();
    a.push(0);
    a.push(count as u8);
    a
}

/// Characters of sealed text the first cookie holds after `NAME=s1.N.`.
fn first_room(name: &[u8]) -> usize {
    MAX_COOKIE.saturating_sub(name.len() + 1 + PREFIX.len() + 2)
}

/// Characters chunk `i` (from 1) holds after `NAME_i=`.
fn room(name: &[u8], i: usize) -> usize {
    MAX_COOKIE.saturating_sub(chunk_name(name, i).len() + 1)
}

/// How many chunks `encoded` characters of sealed text take.
fn chunks_for(name: &[u8], encoded: usize) -> Option<usize> {
    let mut left = encoded.saturating_sub(first_room(name));
    let mut count = 1;
    while left > 0 {
        if count == MAX_CHUNKS {
            return None;
        }
        left = left.saturating_sub(room(name, count));
        count += 1;
    }
    Some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(data_len: usize) -> Contents {
        let mut record = Record::EMPTY;
        record.created = 1_700_000_000_000;
        record.last_seen = 1_700_000_060_000;
        record.renewed = 1_700_000_000_000;
        record.ua = 0x1234_5678_9abc_def0;
        record.ip_len = 4;
        record.ip[..4].copy_from_slice(&[192, 0, 2, 7]);
        record.log_in(b"alice", true).unwrap();
        Contents {
            id: SessionId([7; 16]),
            record,
            data: (0..data_len).map(|i| b'a' + (i % 26) as u8).collect(),
        }
    }

    fn sealed(sealer: &CookieSealer, name: &[u8], c: &Contents) -> Vec<Vec<u8>> {
        seal(sealer, name, c, &mut RandomPool::default()).unwrap()
    }

    fn views(v: &[Vec<u8>]) -> Vec<&[u8]> {
        v.iter().map(|c| &c[..]).collect()
    }

    #[test]
    fn seals_and_opens_everything_the_session_holds() {
        let s = CookieSealer::derive(b"secret", b"sid");
        let c = contents(40);
        let v = sealed(&s, b"sid", &c);
        assert_eq!(v.len(), 1);
        assert!(v[0].starts_with(b"s1.1."));
        assert_eq!(open(&[s], b"sid", &views(&v)), Ok((c, 0)));
    }

    #[test]
    fn nothing_readable_and_a_new_nonce_each_time() {
        let s = CookieSealer::derive(b"secret", b"sid");
        let c = contents(40);
        let (a, b) = (sealed(&s, b"sid", &c), sealed(&s, b"sid", &c));
        assert_ne!(a, b);
        let text = String::from_utf8(a[0].clone()).unwrap();
        assert!(!text.contains("alice") && !text.contains("abcdef"));
    }

    #[test]
    fn a_byte_changed_anywhere_in_any_chunk_is_refused() {
        let s = CookieSealer::derive(b"secret", b"sid");
        let v = sealed(&s, b"sid", &contents(5000));
        assert!(v.len() >= 2);
        for chunk in 0..v.len() {
            for pos in 0..v[chunk].len() {
                for to in [b'A', b'_', b'.', b'0'] {
                    if v[chunk][pos] == to {
                        continue;
                    }
                    let mut w = v.clone();
                    w[chunk][pos] = to;
                    assert_eq!(
                        open(std::slice::from_ref(&s), b"sid", &views(&w)),
                        Err(Refused),
                        "chunk {chunk} byte {pos}"
                    );
                }
            }
        }
    }

    #[test]
    fn chunks_grow_and_shrink_with_the_data() {
        let s = CookieSealer::derive(b"secret", b"session");
        let mut counts = Vec::new();
        for len in [0, 1000, 2800, 3000, 6000, 9000, 2000] {
            let c = contents(len);
            let v = sealed(&s, b"session", &c);
            for (i, value) in v.iter().enumerate() {
                let cookie = chunk_name(b"session", i).len() + 1 + value.len();
                assert!(cookie <= MAX_COOKIE, "{len}: chunk {i} is {cookie} bytes");
            }
            assert_eq!(chunk_count(&v[0]), Some(v.len()));
            assert_eq!(open(std::slice::from_ref(&s), b"session", &views(&v)), Ok((c, 0)));
            counts.push(v.len());
        }
        assert_eq!(counts, [1, 1, 1, 2, 3, 4, 1]);
        assert_eq!(chunk_name(b"session", 0), b"session");
        assert_eq!(chunk_name(b"session", 2), b"session_2");
    }

    #[test]
    fn missing_extra_reordered_or_moved_chunks_are_refused() {
        let s = CookieSealer::derive(b"secret", b"sid");
        let v = sealed(&s, b"sid", &contents(9000));
        assert_eq!(v.len(), 4);
        let all = views(&v);
        assert_eq!(open(std::slice::from_ref(&s), b"sid", &all[..3]), Err(Refused));
        let mut swapped = all.clone();
        swapped.swap(1, 2);
        assert_eq!(open(std::slice::from_ref(&s), b"sid", &swapped), Err(Refused));
        let mut more = all.clone();
        more.push(b"AAAA");
        assert_eq!(open(std::slice::from_ref(&s), b"sid", &more), Err(Refused));
        // The same values under another cookie name do not open.
        let other = CookieSealer::derive(b"secret", b"sid2");
        assert_eq!(open(&[other], b"sid2", &all), Err(Refused));
        assert_eq!(open(std::slice::from_ref(&s), b"sid2", &all), Err(Refused));
    }

    #[test]
    fn an_old_secret_still_opens_and_says_so() {
        let (new, old) = (
            CookieSealer::derive(b"new", b"sid"),
            CookieSealer::derive(b"old", b"sid"),
        );
        let c = contents(10);
        let v = sealed(&old, b"sid", &c);
        assert_eq!(open(&[new.clone(), old], b"sid", &views(&v)), Ok((c, 1)));
        assert_eq!(open(&[new], b"sid", &views(&v)), Err(Refused));
    }

    #[test]
    fn too_much_data_is_refused_before_sealing() {
        let s = CookieSealer::derive(b"secret", b"sid");
        assert_eq!(
            seal(&s, b"sid", &contents(30_000), &mut RandomPool::default()),
            Err(SealError::TooLarge)
        );
    }

    #[test]
    fn garbage_is_refused() {
        let s = CookieSealer::derive(b"secret", b"sid");
        for v in [
            &b""[..],
            b"s1.",
            b"s1.1.",
            b"s1.9.AAAA",
            b"s1.0.AAAA",
            b"v1.abc",
            b"s1.1.!!!!",
            b"s1.1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(
                open(std::slice::from_ref(&s), b"sid", &[v]),
                Err(Refused),
                "{v:?}"
            );
        }
    }

    #[test]
    fn last_seen_is_refreshed_at_most_every_tenth_of_the_idle_timeout() {
        let idle = Some(600_000);
        assert!(!touch_due(1_000, 1_000 + 59_999, idle));
        assert!(touch_due(1_000, 1_000 + 60_000, idle));
        assert!(!touch_due(1_000, 5_000_000, None));
        assert!(touch_due(1_000, 1_001, Some(5)));
    }
}
