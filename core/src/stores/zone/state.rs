//! The zone's state file: the live sessions (logins and data included) and
//! the `random` secret and name, written at shutdown and periodically, read
//! back when a fresh zone is made, so that sessions survive a restart.
//!
//! The file is `MAGIC`, a format version, how it is protected, then the
//! snapshot sealed with ChaCha20-Poly1305 (the header is associated data):
//! - under a key derived from the configured secret: a copy of the file is
//!   useless without that secret, and an altered one does not open;
//! - with `random` (no configured secret), under a key derived from the
//!   zone's random secret, which the header carries: then only the file's
//!   permissions protect it.
//!
//! What is read back is checked as strictly as a request's cookie: records
//! and data as the module writes them, and nothing past the end.

use chacha20poly1305::aead::KeyInit as _;
use chacha20poly1305::ChaCha20Poly1305;

use crate::model::keys::{state_key, Keyring};
use crate::model::record::{Entry, Record};
use crate::primitives::crypto::{aead_open, aead_seal};
use crate::primitives::id::{RandomError, RandomPool, SessionId};
pub use crate::stores::zone::table::Saved;

const MAGIC: &[u8; 8] = b"NGXSSTAT";
/// The format version this module writes and reads.
pub const VERSION: u8 = 1;
const UNDER_SECRET: u8 = 0;
const UNDER_RANDOM: u8 = 1;
const LIVE: u8 = 1;
const GRACE: u8 = 2;
/// Set in the kind byte of an entry in the protected segment.
const PROTECTED: u8 = 0x80;

/// What a state file holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub random_secret: [u8; 32],
    pub random_name: [u8; 16],
    /// Least recently used first, as they are to be inserted again.
    pub saved: Vec<Saved>,
}

/// Why a state file was not loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateError {
    NotOurs,
    Version(u8),
    /// Written with `random`; this configuration has a secret.
    WrittenWithRandom,
    /// Sealed under a secret; this configuration has none.
    WrittenUnderSecret,
    /// Truncated, altered, or sealed under another secret.
    DoesNotOpen,
    /// Opened, but holds what the module never writes.
    Corrupt,
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotOurs => f.write_str("is not a sessions state file"),
            Self::Version(v) => write!(f, "was written in format {v}, this module reads format {VERSION}"),
            Self::WrittenWithRandom => {
                f.write_str("was written with a random secret, and this configuration sets sessions_secret")
            }
            Self::WrittenUnderSecret => {
                f.write_str("was sealed under a sessions_secret, and this configuration has none")
            }
            Self::DoesNotOpen => {
                f.write_str("does not open: truncated, altered, or sealed under another secret")
            }
            Self::Corrupt => f.write_str("is corrupt"),
        }
    }
}

impl Snapshot {
    /// The plain bytes to seal.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(56 + self.saved.len() * 128);
        out.extend_from_slice(&self.random_secret);
        out.extend_from_slice(&self.random_name);
        out.extend_from_slice(&(self.saved.len() as u64).to_le_bytes());
        let mut rec = Vec::with_capacity(160);
        for s in &self.saved {
            let kind = match s.entry {
                Entry::Live(_) => LIVE,
                Entry::Grace { .. } => GRACE,
            };
            out.push(if s.protected { kind | PROTECTED } else { kind });
            out.extend_from_slice(&s.id.0);
            out.extend_from_slice(&s.deadline.unwrap_or(u64::MAX).to_le_bytes());
            match &s.entry {
                Entry::Live(r) => {
                    rec.clear();
                    r.encode(&mut rec);
                    out.extend_from_slice(&(rec.len() as u16).to_le_bytes());
                    out.extend_from_slice(&rec);
                    out.extend_from_slice(&(s.data.len() as u16).to_le_bytes());
                    out.extend_from_slice(&s.data);
                }
                Entry::Grace { successor, .. } => out.extend_from_slice(&successor.0),
            }
        }
        out
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        let mut r = Reader(b);
        let mut snap = Snapshot {
            random_secret: r.take(32)?.try_into().ok()?,
            random_name: r.take(16)?.try_into().ok()?,
            saved: Vec::new(),
        };
        // The name goes into every Set-Cookie: only what the zone makes.
        if !crate::primitives::id::is_random_name(&snap.random_name) {
            return None;
        }
        let count = r.u64()?;
        // Every entry takes at least 41 bytes: a count beyond that is a lie.
        if count > (b.len() / 41) as u64 {
            return None;
        }
        snap.saved.reserve(count as usize);
        for _ in 0..count {
            let kind = r.take(1)?[0];
            let protected = kind & PROTECTED != 0;
            let id = SessionId(r.take(16)?.try_into().ok()?);
            let deadline = Some(r.u64()?).filter(|&d| d != u64::MAX);
            let (entry, data) = match kind & !PROTECTED {
                LIVE => {
                    let n = usize::from(r.u16()?);
                    let (rec, used) = Record::decode(r.take(n)?)?;
                    if used != n {
                        return None;
                    }
                    let n = usize::from(r.u16()?);
                    let data = r.take(n)?;
                    if !crate::model::data::valid_blob(data) {
                        return None;
                    }
                    (Entry::Live(rec), data.to_vec())
                }
                GRACE => {
                    let successor = SessionId(r.take(16)?.try_into().ok()?);
                    let until = deadline?;
                    (Entry::Grace { successor, until }, Vec::new())
                }
                _ => return None,
            };
            snap.saved.push(Saved {
                id,
                entry,
                deadline,
                data,
                protected,
            });
        }
        r.0.is_empty().then_some(snap)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// The file for `snap`: sealed under the first configured secret of
/// `keys`, or, without any, under the snapshot's own random secret.
pub fn seal(snap: &Snapshot, keys: &[Keyring], rng: &mut RandomPool) -> Result<Vec<u8>, RandomError> {
    let mut head = Vec::with_capacity(MAGIC.len() + 2 + 32);
    head.extend_from_slice(MAGIC);
    head.push(VERSION);
    let key = match keys.first() {
        Some(k) => {
            head.push(UNDER_SECRET);
            *k.primary().state_key()
        }
        None => {
            head.push(UNDER_RANDOM);
            head.extend_from_slice(&snap.random_secret);
            state_key(&snap.random_secret)
        }
    };
    let cipher = ChaCha20Poly1305::new_from_slice(&key).expect("32-byte key");
    let mut out = head.clone();
    aead_seal(&cipher, &head, &snap.encode(), rng, &mut out)?;
    Ok(out)
}

/// Opens a state file with any of the configured secrets (none: `random`).
pub fn open(file: &[u8], keys: &[Keyring]) -> Result<Snapshot, StateError> {
    let rest = file.strip_prefix(MAGIC).ok_or(StateError::NotOurs)?;
    let (&version, rest) = rest.split_first().ok_or(StateError::NotOurs)?;
    if version != VERSION {
        return Err(StateError::Version(version));
    }
    let (&mode, rest) = rest.split_first().ok_or(StateError::DoesNotOpen)?;
    let (candidates, rest): (Vec<[u8; 32]>, &[u8]) = match (mode, keys.is_empty()) {
        (UNDER_SECRET, false) => (
            keys.iter()
                .flat_map(|k| k.iter().map(|k| *k.state_key()))
                .collect(),
            rest,
        ),
        (UNDER_SECRET, true) => return Err(StateError::WrittenUnderSecret),
        (UNDER_RANDOM, false) => return Err(StateError::WrittenWithRandom),
        (UNDER_RANDOM, true) => {
            let secret = rest.get(..32).ok_or(StateError::DoesNotOpen)?;
            (vec![state_key(secret)], &rest[32..])
        }
        _ => return Err(StateError::NotOurs),
    };
    let head = &file[..file.len() - rest.len()];
    let plain = candidates
        .iter()
        .find_map(|key| {
            let cipher = ChaCha20Poly1305::new_from_slice(key).expect("32-byte key");
            aead_open(&cipher, head, rest).ok()
        })
        .ok_or(StateError::DoesNotOpen)?;
    Snapshot::decode(&plain).ok_or(StateError::Corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primitives::id::Handle;

    fn snapshot() -> Snapshot {
        let mut alice = Record::new(Handle([1; 8]), 1_000, &[127, 0, 0, 1], 7);
        alice.log_in(b"alice", true).unwrap();
        alice.last_seen = 2_000;
        Snapshot {
            random_secret: [9; 32],
            random_name: *b"abcdefghABCDEFGH",
            saved: vec![
                Saved {
                    id: SessionId([1; 16]),
                    entry: Entry::Live(alice),
                    deadline: Some(5_000),
                    data: vec![1, b'k', 1, 0, b'v'],
                    protected: true,
                },
                Saved {
                    id: SessionId([2; 16]),
                    entry: Entry::Live(Record::new(Handle([2; 8]), 1, &[], 0)),
                    deadline: None,
                    data: Vec::new(),
                    protected: false,
                },
                Saved {
                    id: SessionId([3; 16]),
                    entry: Entry::Grace {
                        successor: SessionId([1; 16]),
                        until: 3_000,
                    },
                    deadline: Some(3_000),
                    data: Vec::new(),
                    protected: true,
                },
            ],
        }
    }

    #[test]
    fn round_trip_under_a_secret_and_under_random() {
        let keys = Keyring::from_secrets(&["new", "old"]).unwrap();
        let old = Keyring::from_secrets(&["old"]).unwrap();
        let mut rng = RandomPool::new();
        let file = seal(&snapshot(), &[old], &mut rng).unwrap();
        let opened = open(&file, std::slice::from_ref(&keys));
        assert_eq!(opened, Ok(snapshot()), "an older secret still opens");
        let other = Keyring::from_secrets(&["another server's"]).unwrap();
        assert_eq!(open(&file, &[other, keys.clone()]), Ok(snapshot()));
        assert!(!file.windows(5).any(|w| w == b"alice"));
        let file = seal(&snapshot(), &[], &mut rng).unwrap();
        assert_eq!(open(&file, &[]), Ok(snapshot()));
        assert_eq!(open(&file, &[keys]), Err(StateError::WrittenWithRandom));
    }

    #[test]
    fn every_damage_is_refused() {
        let keys = [Keyring::from_secrets(&["s"]).unwrap()];
        let file = seal(&snapshot(), &keys, &mut RandomPool::new()).unwrap();
        for n in 0..file.len() {
            assert!(open(&file[..n], &keys).is_err(), "truncated at {n}");
        }
        for i in 0..file.len() {
            let mut t = file.clone();
            t[i] ^= 1;
            assert!(open(&t, &keys).is_err(), "byte {i} flipped");
        }
        let other = Keyring::from_secrets(&["other"]).unwrap();
        assert_eq!(open(&file, &[other]), Err(StateError::DoesNotOpen));
        assert_eq!(open(&file, &[]), Err(StateError::WrittenUnderSecret));
        let mut v2 = file.clone();
        v2[8] = 2;
        assert_eq!(open(&v2, &keys), Err(StateError::Version(2)));
        assert_eq!(open(b"hello", &keys), Err(StateError::NotOurs));
    }

    #[test]
    fn a_well_sealed_file_with_what_the_module_never_writes_is_corrupt() {
        let keys = [Keyring::from_secrets(&["s"]).unwrap()];
        let mut snap = snapshot();
        snap.saved[0].data = b"\r\nX: y".to_vec();
        let file = seal(&snap, &keys, &mut RandomPool::new()).unwrap();
        assert_eq!(open(&file, &keys), Err(StateError::Corrupt));
        let mut snap = snapshot();
        if let Entry::Live(r) = &mut snap.saved[0].entry {
            r.log_in(b"a\nb", false).unwrap();
        }
        let file = seal(&snap, &keys, &mut RandomPool::new()).unwrap();
        assert_eq!(open(&file, &keys), Err(StateError::Corrupt));
        let mut snap = snapshot();
        snap.random_name = *b"abc\r\nX-Injected:";
        let file = seal(&snap, &[], &mut RandomPool::new()).unwrap();
        assert_eq!(
            open(&file, &[]),
            Err(StateError::Corrupt),
            "a random name with CR/LF"
        );
    }
}
