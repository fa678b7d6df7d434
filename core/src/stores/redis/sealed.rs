//! Session records sealed for a store outside this process (Redis).
//!
//! Whoever reads the store must learn nothing and forge nothing:
//! - the key is `prefix` + HMAC(index key, id), so it does not reveal the id;
//! - the value is ChaCha20-Poly1305 under a key derived from the secret and
//!   the session id, which only the cookie carries: the secret alone does
//!   not open a dump, and a value copied to another key fails to open;
//! - the key name is bound as associated data.
//!
//! A logged-in session is also listed in its user's index (a hash: session
//! key -> summary) so that the admin endpoint can list and revoke it. The
//! summary is the record without data, sealed under a key derived from the
//! secret alone (the admin has no cookie), bound to its session key; the
//! index's own key, and a pointer from the session's public handle to it,
//! are keyed hashes that show neither user nor handle.

use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use hmac::Mac;

use crate::model::keys::SealKeys;
use crate::model::record::{Entry, Record};
pub use crate::primitives::crypto::Unsealed;
use crate::primitives::crypto::{aead_open, aead_seal, AEAD_OVERHEAD};
use crate::primitives::id::{Handle, RandomError, RandomPool, SessionId};

/// Associated data of a shared cookie-store record: no summary's address
/// (those start with the key prefix) is this.
const SHARED_AAD: &[u8] = b"\0ngx-sessions v1 shared record";
const VERSION: u8 = 1;
const LIVE: u8 = 1;
const GRACE: u8 = 2;

impl SealKeys {
    /// Which secret these keys come from, as the journal records it.
    pub fn tag(&self) -> u64 {
        self.tag
    }

    /// Appends the store key of session `id` to `out`, after `prefix`.
    pub fn address(&self, prefix: &[u8], id: &SessionId, out: &mut Vec<u8>) {
        let h = self.index.clone().chain_update(id.0).finalize().into_bytes();
        out.extend_from_slice(prefix);
        crate::primitives::b64::encode_into(&h, out);
    }

    /// Appends the key of `user`'s index (a hash: session key -> summary,
    /// for the admin endpoint), after `prefix`. Keyed like session keys: it
    /// does not show the user name.
    pub fn user_index(&self, prefix: &[u8], user: &[u8], out: &mut Vec<u8>) {
        self.keyed_name(prefix, b"user", user, out);
    }

    /// Appends the key that leads from a logged-in session's handle (as in
    /// `$session_id`) to its user's index, after `prefix`.
    pub fn handle_pointer(&self, prefix: &[u8], handle: &Handle, out: &mut Vec<u8>) {
        self.keyed_name(prefix, b"handle", &handle.0, out);
    }

    /// `prefix` `kind` `:` base64url(HMAC(index key, `kind` NUL `value`)).
    fn keyed_name(&self, prefix: &[u8], kind: &[u8], value: &[u8], out: &mut Vec<u8>) {
        let h = self
            .index
            .clone()
            .chain_update(kind)
            .chain_update([0])
            .chain_update(value)
            .finalize()
            .into_bytes();
        out.extend_from_slice(prefix);
        out.extend_from_slice(kind);
        out.push(b':');
        crate::primitives::b64::encode_into(&h, out);
    }

    /// A cookie-store record as instances share it through Redis: sealed
    /// like a summary (so it shows neither the ended id nor the hash of a
    /// user name) and bound to its purpose, then base64url. Whoever can
    /// write Redis cannot make one that `open_shared` accepts.
    pub fn seal_shared(
        &self,
        r: &crate::stores::zone::revoked::SharedRecord,
        rng: &mut RandomPool,
    ) -> Result<Vec<u8>, RandomError> {
        let sealed = seal_with(&self.summary, SHARED_AAD, &r.encode(), rng)?;
        let mut out = Vec::with_capacity(crate::primitives::b64::encoded_len(sealed.len()));
        crate::primitives::b64::encode_into(&sealed, &mut out);
        Ok(out)
    }

    /// Opens what `seal_shared` made.
    pub fn open_shared(&self, member: &[u8]) -> Option<crate::stores::zone::revoked::SharedRecord> {
        let sealed = crate::primitives::b64::decode_vec(member)?;
        let plain = open_with(&self.summary, SHARED_AAD, &sealed).ok()?;
        crate::stores::zone::revoked::SharedRecord::decode(&plain)
    }

    /// The summary of `rec` kept in its user's index under `address`.
    pub fn seal_summary(
        &self,
        address: &[u8],
        rec: &Record,
        rng: &mut RandomPool,
    ) -> Result<Vec<u8>, RandomError> {
        let mut plain = Vec::with_capacity(96);
        rec.encode(&mut plain);
        seal_with(&self.summary, address, &plain, rng)
    }

    /// Opens what `seal_summary` wrote for `address`.
    pub fn open_summary(&self, address: &[u8], value: &[u8]) -> Result<Record, Unsealed> {
        let plain = open_with(&self.summary, address, value)?;
        match Record::decode(&plain) {
            Some((rec, used)) if used == plain.len() => Ok(rec),
            _ => Err(Unsealed),
        }
    }

    /// What a revocation leaves at a session's `address` in place of its
    /// record: the revocation knows addresses, not ids, so this is sealed
    /// under the summary key, bound to the address (and to its purpose).
    /// Its cookie is then answered `ended` until the key expires.
    pub fn seal_ended(&self, address: &[u8], rng: &mut RandomPool) -> Result<Vec<u8>, RandomError> {
        seal_with(&self.summary, &ended_aad(address), ENDED_PLAIN, rng)
    }

    /// Whether `value` is what `seal_ended` wrote for `address`.
    pub fn is_ended(&self, address: &[u8], value: &[u8]) -> bool {
        open_with(&self.summary, &ended_aad(address), value).is_ok_and(|p| p == ENDED_PLAIN)
    }

    fn cipher(&self, id: &SessionId) -> ChaCha20Poly1305 {
        let k = self.seal.clone().chain_update(id.0).finalize().into_bytes();
        ChaCha20Poly1305::new_from_slice(&k).expect("32-byte key")
    }

    /// The value to store for `entry` (with `data` when live) under `address`.
    pub fn seal(
        &self,
        id: &SessionId,
        address: &[u8],
        entry: &Entry,
        data: &[u8],
        rng: &mut RandomPool,
    ) -> Result<Vec<u8>, RandomError> {
        seal_with(&self.cipher(id), address, &entry_plaintext(entry, data), rng)
    }

    /// Opens what `seal` wrote: the entry and, for a live one, its data.
    pub fn open(&self, id: &SessionId, address: &[u8], value: &[u8]) -> Result<(Entry, Vec<u8>), Unsealed> {
        parse_entry(&open_with(&self.cipher(id), address, value)?)
    }
}

/// What `SealKeys::seal` seals of `entry` (and `data`, when live).
pub(crate) fn entry_plaintext(entry: &Entry, data: &[u8]) -> Vec<u8> {
    let mut plain = Vec::with_capacity(160 + data.len());
    match entry {
        Entry::Live(rec) => {
            plain.push(LIVE);
            rec.encode(&mut plain);
            plain.extend_from_slice(data);
        }
        Entry::Grace { successor, until } => {
            plain.push(GRACE);
            plain.extend_from_slice(&successor.0);
            plain.extend_from_slice(&until.to_le_bytes());
        }
    }
    plain
}

/// Reads what `entry_plaintext` wrote, as strictly.
pub(crate) fn parse_entry(plain: &[u8]) -> Result<(Entry, Vec<u8>), Unsealed> {
    match plain.split_first() {
        Some((&LIVE, body)) => {
            let (rec, used) = Record::decode(body).ok_or(Unsealed)?;
            let data = &body[used..];
            if !crate::model::data::valid_blob(data) {
                return Err(Unsealed);
            }
            Ok((Entry::Live(rec), data.to_vec()))
        }
        Some((&GRACE, body)) if body.len() == 24 => {
            let successor = SessionId(body[..16].try_into().expect("16 bytes"));
            let until = u64::from_le_bytes(body[16..].try_into().expect("8 bytes"));
            Ok((Entry::Grace { successor, until }, Vec::new()))
        }
        _ => Err(Unsealed),
    }
}

const ENDED_PLAIN: &[u8] = b"revoked";

fn ended_aad(address: &[u8]) -> Vec<u8> {
    [b"\0ngx-sessions v1 revoked\0", address].concat()
}

/// `VERSION`, then `plain` sealed with `aad` bound (see `aead_seal`).
fn seal_with(
    cipher: &ChaCha20Poly1305,
    aad: &[u8],
    plain: &[u8],
    rng: &mut RandomPool,
) -> Result<Vec<u8>, RandomError> {
    let mut out = Vec::with_capacity(1 + AEAD_OVERHEAD + plain.len());
    out.push(VERSION);
    aead_seal(cipher, aad, plain, rng, &mut out)?;
    Ok(out)
}

fn open_with(cipher: &ChaCha20Poly1305, aad: &[u8], value: &[u8]) -> Result<Vec<u8>, Unsealed> {
    match value.split_first() {
        Some((&VERSION, sealed)) => aead_open(cipher, aad, sealed),
        _ => Err(Unsealed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Record {
        let mut r = Record::new(Handle([9; 8]), 1_000, &[127, 0, 0, 1], 77);
        r.log_in(b"alice", true).unwrap();
        r.last_seen = 2_000;
        r
    }

    #[test]
    fn live_and_grace_round_trip() {
        let k = SealKeys::derive(b"secret");
        let id = SessionId([1; 16]);
        let mut addr = Vec::new();
        k.address(b"s:", &id, &mut addr);
        let mut rng = RandomPool::new();
        let blob = [1, b'a', 1, 0, b'1']; // a=1
        let v = k.seal(&id, &addr, &Entry::Live(rec()), &blob, &mut rng).unwrap();
        let (e, data) = k.open(&id, &addr, &v).unwrap();
        assert_eq!(e, Entry::Live(rec()));
        assert_eq!(data, blob);
        let g = Entry::Grace {
            successor: SessionId([2; 16]),
            until: 55,
        };
        let v = k.seal(&id, &addr, &g, b"", &mut rng).unwrap();
        assert_eq!(k.open(&id, &addr, &v).unwrap().0, g);
    }

    #[test]
    fn a_revocation_mark_opens_only_at_its_address() {
        let k = SealKeys::derive(b"secret");
        let mut rng = RandomPool::new();
        let v = k.seal_ended(b"s:abc", &mut rng).unwrap();
        assert!(k.is_ended(b"s:abc", &v));
        assert!(!k.is_ended(b"s:abd", &v), "moved to another session");
        assert!(!SealKeys::derive(b"other").is_ended(b"s:abc", &v));
        // Neither a summary nor a record is a mark, nor a mark a summary.
        let summary = k.seal_summary(b"s:abc", &rec(), &mut rng).unwrap();
        assert!(!k.is_ended(b"s:abc", &summary));
        assert!(k.open_summary(b"s:abc", &v).is_err());
        let id = SessionId([1; 16]);
        assert!(k.open(&id, b"s:abc", &v).is_err());
        let mut flipped = v.clone();
        flipped[5] ^= 1;
        assert!(!k.is_ended(b"s:abc", &flipped));
    }

    #[test]
    fn address_hides_the_id_and_depends_on_the_secret() {
        let id = SessionId([0xab; 16]);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        SealKeys::derive(b"one").address(b"p:", &id, &mut a);
        SealKeys::derive(b"two").address(b"p:", &id, &mut b);
        assert_ne!(a, b);
        assert!(a.starts_with(b"p:"));
        let mut hex_b64 = Vec::new();
        crate::primitives::b64::encode_into(&id.0, &mut hex_b64);
        assert!(!a.windows(hex_b64.len()).any(|w| w == hex_b64.as_slice()));
    }

    #[test]
    fn user_index_is_keyed_and_hides_the_name() {
        let k = SealKeys::derive(b"secret");
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        k.user_index(b"p:", b"alice", &mut a);
        k.user_index(b"p:", b"bob", &mut b);
        SealKeys::derive(b"other").user_index(b"p:", b"alice", &mut c);
        assert!(a.starts_with(b"p:user:"));
        assert!(a != b && a != c);
        assert!(!a.windows(5).any(|w| w == b"alice"));
    }

    #[test]
    fn value_opens_only_for_its_id_key_and_secret() {
        let k = SealKeys::derive(b"secret");
        let (id, other) = (SessionId([1; 16]), SessionId([2; 16]));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        k.address(b"", &id, &mut a);
        k.address(b"", &other, &mut b);
        let v = k
            .seal(&id, &a, &Entry::Live(rec()), b"x", &mut RandomPool::new())
            .unwrap();
        assert!(!v.windows(5).any(|w| w == b"alice"));
        assert_eq!(k.open(&other, &b, &v), Err(Unsealed)); // copied to another key
        assert_eq!(k.open(&id, &b, &v), Err(Unsealed)); // right id, wrong key name
        assert_eq!(SealKeys::derive(b"other").open(&id, &a, &v), Err(Unsealed));
        for i in 0..v.len() {
            let mut t = v.clone();
            t[i] ^= 1;
            assert_eq!(k.open(&id, &a, &t), Err(Unsealed));
        }
        assert_eq!(k.open(&id, &a, &[]), Err(Unsealed));
    }

    #[test]
    fn summary_opens_only_under_its_session_key_and_secret() {
        let k = SealKeys::derive(b"secret");
        let mut rng = RandomPool::new();
        let v = k.seal_summary(b"p:a", &rec(), &mut rng).unwrap();
        assert_eq!(k.open_summary(b"p:a", &v), Ok(rec()));
        assert!(!v.windows(5).any(|w| w == b"alice"));
        assert_eq!(k.open_summary(b"p:b", &v), Err(Unsealed)); // moved to another session
        assert_eq!(SealKeys::derive(b"other").open_summary(b"p:a", &v), Err(Unsealed));
        for i in 0..v.len() {
            let mut t = v.clone();
            t[i] ^= 1;
            assert_eq!(k.open_summary(b"p:a", &t), Err(Unsealed));
        }
        // A session value is not a summary, nor the other way round.
        let id = SessionId([1; 16]);
        let s = k.seal(&id, b"p:a", &Entry::Live(rec()), b"", &mut rng).unwrap();
        assert_eq!(k.open_summary(b"p:a", &s), Err(Unsealed));
        assert!(k.open(&id, b"p:a", &v).is_err());
    }

    #[test]
    fn handle_pointer_is_keyed_and_hides_the_handle() {
        let h = Handle([0x5a; 8]);
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        SealKeys::derive(b"one").handle_pointer(b"p:", &h, &mut a);
        SealKeys::derive(b"two").handle_pointer(b"p:", &h, &mut b);
        SealKeys::derive(b"one").handle_pointer(b"p:", &Handle([0x5b; 8]), &mut c);
        assert!(a.starts_with(b"p:handle:"));
        assert!(a != b && a != c);
        assert!(!String::from_utf8_lossy(&a).contains("5a5a5a5a"));
    }

    #[test]
    fn a_well_sealed_value_with_what_the_module_never_writes_does_not_open() {
        // Whoever holds the secret (`random` kept in Redis) can seal
        // anything: what opens must still be what the module writes.
        let k = SealKeys::derive(b"secret");
        let id = SessionId([1; 16]);
        let mut rng = RandomPool::new();
        let mut bad_user = rec();
        bad_user.log_in(b"a\r\nX-Injected: yes", false).unwrap();
        let v = k
            .seal(&id, b"p:a", &Entry::Live(bad_user), b"", &mut rng)
            .unwrap();
        assert_eq!(k.open(&id, b"p:a", &v), Err(Unsealed));
        let v = k.seal_summary(b"p:a", &bad_user, &mut rng).unwrap();
        assert_eq!(k.open_summary(b"p:a", &v), Err(Unsealed));
        let mut empty_user = rec();
        empty_user.log_in(b"", false).unwrap();
        let v = k
            .seal(&id, b"p:a", &Entry::Live(empty_user), b"", &mut rng)
            .unwrap();
        assert_eq!(k.open(&id, b"p:a", &v), Err(Unsealed));
        let bad_data = [1, b'k', 3, 0, b'\r', b'\n', b'x'];
        let v = k
            .seal(&id, b"p:a", &Entry::Live(rec()), &bad_data, &mut rng)
            .unwrap();
        assert_eq!(k.open(&id, b"p:a", &v), Err(Unsealed));
        let good_data = [1, b'k', 1, 0, b'x'];
        let v = k
            .seal(&id, b"p:a", &Entry::Live(rec()), &good_data, &mut rng)
            .unwrap();
        assert_eq!(k.open(&id, b"p:a", &v).map(|(_, d)| d), Ok(good_data.to_vec()));
    }

    #[test]
    fn record_decode_refuses_what_encode_never_writes() {
        let mut b = Vec::new();
        rec().encode(&mut b);
        let at = |i: usize, v: u8| {
            let mut t = b.clone();
            t[i] = v;
            Record::decode(&t)
        };
        assert!(at(40, 5).is_none(), "an address of 5 bytes");
        assert!(at(40, 0).is_none(), "bytes past the address length");
        assert!(at(57, 4).is_none(), "an unknown flag");
        assert!(at(57, 0).is_none(), "a user without the logged-in flag");
        assert!(at(59, b'\n').is_none(), "a control character in the user");
        assert!(Record::decode(&b).is_some());
    }

    #[test]
    fn record_decode_refuses_truncation() {
        let mut b = Vec::new();
        rec().encode(&mut b);
        assert_eq!(Record::decode(&b).unwrap().1, b.len());
        for n in 0..b.len() {
            assert!(Record::decode(&b[..n]).is_none());
        }
    }

    #[test]
    fn shared_records_open_only_under_the_keys_that_made_them() {
        let k = SealKeys::derive(b"secret");
        let r = crate::stores::zone::revoked::SharedRecord {
            key: SessionId([3; 16]),
            successor: crate::stores::zone::revoked::ENDED,
            until: 123_456,
        };
        let m = k.seal_shared(&r, &mut RandomPool::new()).unwrap();
        assert_eq!(k.open_shared(&m), Some(r));
        assert_eq!(SealKeys::derive(b"other").open_shared(&m), None);
        for i in 0..m.len() {
            let mut bad = m.clone();
            bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
            assert_eq!(k.open_shared(&bad), None, "changed at {i}");
        }
        assert_eq!(k.open_shared(&m[1..]), None);
    }
}
