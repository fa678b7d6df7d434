//! What is known about one session, wherever it is stored: the record
//! (times, address, User-Agent fingerprint, login), its portable encoding,
//! and what a store hands the engine.

use crate::model::timeouts::Times;
use crate::primitives::id::{Handle, SessionId};

/// `Record::data` of a record without data (the table's empty link).
pub(crate) const NO_DATA: u32 = u32::MAX;

/// Longest user name a session can carry.
pub const MAX_USER: usize = 64;

const FLAG_AUTHENTICATED: u8 = 1;
const FLAG_REMEMBER: u8 = 2;

/// What is stored about one session.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub handle: Handle,
    pub created: u64,
    pub last_seen: u64,
    pub renewed: u64,
    /// Fingerprint of the User-Agent.
    pub ua: u64,
    /// Client address: 4 or 16 bytes used.
    pub ip: [u8; 16],
    /// First chunk of the session's data, `NIL` for none; owned by the slot.
    pub(crate) data: u32,
    pub(crate) data_len: u16,
    pub ip_len: u8,
    pub(crate) flags: u8,
    pub(crate) user_len: u8,
    pub(crate) _pad: [u8; 7],
    /// In a grace slot: the id that replaced this one.
    pub successor: SessionId,
    pub(crate) user: [u8; MAX_USER],
}

impl Default for Record {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl Record {
    /// No session: all zero, no data.
    pub const EMPTY: Self = Self {
        handle: Handle([0; 8]),
        created: 0,
        last_seen: 0,
        renewed: 0,
        ua: 0,
        ip: [0; 16],
        data: NO_DATA,
        data_len: 0,
        ip_len: 0,
        flags: 0,
        user_len: 0,
        _pad: [0; 7],
        successor: SessionId([0; 16]),
        user: [0; MAX_USER],
    };

    pub fn new(handle: Handle, now: u64, ip: &[u8], ua: u64) -> Self {
        let mut r = Self {
            handle,
            created: now,
            last_seen: now,
            renewed: now,
            ua,
            ..Default::default()
        };
        r.set_ip(ip);
        r
    }

    pub fn set_ip(&mut self, ip: &[u8]) {
        let n = ip.len().min(16);
        self.ip = [0; 16];
        self.ip[..n].copy_from_slice(&ip[..n]);
        self.ip_len = n as u8;
    }

    pub fn ip(&self) -> &[u8] {
        &self.ip[..usize::from(self.ip_len)]
    }

    /// The authenticated user, if any.
    pub fn user(&self) -> Option<&[u8]> {
        (self.flags & FLAG_AUTHENTICATED != 0).then(|| &self.user[..usize::from(self.user_len)])
    }

    /// Marks the session as logged in as `user` (at most `MAX_USER` bytes).
    pub fn log_in(&mut self, user: &[u8], remember: bool) -> Result<(), UserTooLong> {
        if user.len() > MAX_USER {
            return Err(UserTooLong);
        }
        self.user = [0; MAX_USER];
        self.user[..user.len()].copy_from_slice(user);
        self.user_len = user.len() as u8;
        self.flags = FLAG_AUTHENTICATED | if remember { FLAG_REMEMBER } else { 0 };
        Ok(())
    }

    pub fn remembered(&self) -> bool {
        self.flags & FLAG_REMEMBER != 0
    }

    /// Whether the session carries data (read it with `Table::read_data`).
    pub fn has_data(&self) -> bool {
        self.data != NO_DATA
    }

    /// Appends the record's fields (not its data) in a portable layout, for
    /// a store outside this table.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.handle.0);
        for t in [self.created, self.last_seen, self.renewed, self.ua] {
            out.extend_from_slice(&t.to_le_bytes());
        }
        out.push(self.ip_len);
        out.extend_from_slice(&self.ip);
        out.push(self.flags);
        out.push(self.user_len);
        out.extend_from_slice(&self.user[..usize::from(self.user_len)]);
    }

    /// Reads what `encode` wrote; returns the record and the bytes used.
    pub fn decode(b: &[u8]) -> Option<(Self, usize)> {
        const FIXED: usize = 8 + 4 * 8 + 1 + 16 + 2;
        let fixed = b.get(..FIXED)?;
        let u64_at = |i: usize| u64::from_le_bytes(fixed[i..i + 8].try_into().expect("8 bytes"));
        let mut r = Self::EMPTY;
        r.handle = Handle(fixed[..8].try_into().expect("8 bytes"));
        r.created = u64_at(8);
        r.last_seen = u64_at(16);
        r.renewed = u64_at(24);
        r.ua = u64_at(32);
        r.ip_len = fixed[40];
        r.ip.copy_from_slice(&fixed[41..57]);
        r.flags = fixed[57];
        r.user_len = fixed[58];
        let n = usize::from(r.user_len);
        if usize::from(r.ip_len) > 16 || n > MAX_USER {
            return None;
        }
        r.user[..n].copy_from_slice(b.get(FIXED..FIXED + n)?);
        // Only what this module writes: a record read back from outside
        // (Redis) is as untrusted as a request header.
        let sound = matches!(r.ip_len, 0 | 4 | 16)
            && r.ip[usize::from(r.ip_len)..].iter().all(|&b| b == 0)
            && match r.flags {
                0 => n == 0,
                f if f & !FLAG_REMEMBER == FLAG_AUTHENTICATED => valid_user(&r.user[..n]),
                _ => false,
            };
        sound.then_some((r, FIXED + n))
    }

    pub fn times(&self) -> Times {
        Times {
            created: self.created,
            last_seen: self.last_seen,
            renewed: self.renewed,
        }
    }
}

/// The data area has no room for a session's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFull;

/// A user name longer than `MAX_USER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserTooLong;

/// A slot as the engine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Live(Record),
    Grace { successor: SessionId, until: u64 },
}

/// The successor of an ended session: a grace pointer to it is the record
/// that a logged-in session was logged out or revoked, kept so that its
/// cookie is answered `ended` rather than `unknown`. Every store keeps and
/// expires grace pointers already; no session is ever given this id
/// (`engine::fresh_id`). The cookie store's records of ended sessions
/// (`stores::zone::revoked`) are the same pointers.
pub const ENDED: SessionId = SessionId([0xff; 16]);

impl Entry {
    /// The record of a session ended by a logout or a revocation.
    pub const fn ended(until: u64) -> Self {
        Self::Grace {
            successor: ENDED,
            until,
        }
    }

    pub fn is_ended(&self) -> bool {
        matches!(self, Self::Grace { successor, .. } if *successor == ENDED)
    }
}

/// A user name that can travel in headers and logs: printable, no controls.
pub fn valid_user(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= MAX_USER && v.iter().all(|&b| b >= 0x20 && b != 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        assert!(valid_user(b"alice@example.com") && valid_user("zoë".as_bytes()));
        assert!(
            !valid_user(b"") && !valid_user(b"a\x01b") && !valid_user(b"a\rb") && !valid_user(&[b'a'; 65])
        );
    }

    #[test]
    fn login_state() {
        let mut r = Record::new(Handle([1; 8]), 1, &[127, 0, 0, 1], 7);
        assert_eq!(r.user(), None);
        r.log_in(b"alice", true).unwrap();
        assert_eq!(r.user(), Some(&b"alice"[..]));
        assert!(r.remembered());
        r.log_in(b"bob", false).unwrap();
        assert_eq!(r.user(), Some(&b"bob"[..]));
        assert!(!r.remembered());
        assert_eq!(r.log_in(&[b'x'; MAX_USER + 1], false), Err(UserTooLong));
        assert!(r.log_in(&[b'x'; MAX_USER], false).is_ok());
    }
}
