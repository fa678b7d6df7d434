//! What keeps a cookie-store session dead once it ended: the cookie itself
//! cannot be taken back, so the zone remembers
//!
//! - an ended session's id (logout, destroy, login's old id, a refused
//!   address), until the session would have expired anyway;
//! - a user's "not valid before" time ("log out everywhere"): a session of
//!   that user logged in or renewed before it is refused.
//!
//! Both are kept in the zone's table as grace entries that point nowhere:
//! they expire with their deadline and travel in the state file like any
//! entry. A record of a logged-in session and a "not valid before" are
//! protected from eviction like logged-in sessions; a record of a session
//! that never logged in waits in probation, so that the records anyone can
//! make without logging in (start a session, log it out, again) push out
//! only each other, never the ones that protect a user. When
//! the instance has Redis, each record made here is also sent there
//! (`SharedRecord`, MAC'd) and copied into every other instance's zone
//! (`apply`), so a logout holds across instances.

use sha2::{Digest, Sha256};

use crate::engine::Policy;
use crate::model::record::{Entry, Record};
use crate::model::timeouts::Times;
use crate::primitives::id::{Handle, SessionId};
use crate::stores::zone::table::Table;

/// A request already in flight when a session ends may still seal a copy
/// of its cookie a moment later: records outlast the session by this much.
const IN_FLIGHT_MS: u64 = 60_000;

/// Until when a record must keep every copy of the session `rec` dead, as
/// known at `now`. No copy carries a last-seen or renewal time later than
/// `now`, whatever `rec` says (a listed record lags its cookie), so none
/// outlives the deadline counted from `now`.
pub fn copies_end(policy: &Policy, rec: &Record, now: u64) -> u64 {
    let latest = Times {
        created: rec.created,
        last_seen: now,
        renewed: now,
    };
    policy
        .timeouts_for(rec)
        .deadline(latest)
        .map_or(u64::MAX, |d| d.saturating_add(IN_FLIGHT_MS))
}

/// Until when a "not valid before" set at `now` must be kept: the longest
/// any session may live from `now`.
pub fn not_before_end(policy: &Policy, now: u64) -> u64 {
    policy
        .longest_life()
        .map_or(u64::MAX, |l| now.saturating_add(l).saturating_add(IN_FLIGHT_MS))
}

/// The successor of an ended id: no session has it.
pub use crate::model::record::ENDED;

/// The successor of an ended id of a session that never logged in: kept in
/// probation (see the module's comment).
pub const ENDED_ANONYMOUS: SessionId = SessionId([0xfe; 16]);

/// Whether `successor` ends its id; `Some(protected)` if so.
fn ends(successor: &SessionId) -> Option<bool> {
    match *successor {
        ENDED => Some(true),
        ENDED_ANONYMOUS => Some(false),
        _ => None,
    }
}

/// Marks a "not valid before" record; its time is in the first 8 bytes.
const NOT_BEFORE: [u8; 8] = *b"notbefor";

/// The table key of `user`'s "not valid before" record: never an id a
/// session could have, short of a SHA-256 collision with random ids.
pub fn user_key(user: &[u8]) -> SessionId {
    let d = Sha256::new()
        .chain_update(b"ngx-sessions v1 not before\0")
        .chain_update(user)
        .finalize();
    SessionId(d[..16].try_into().expect("16 bytes"))
}

/// The table key of a back-channel logout token's `jti` from `issuer`.
pub fn jti_key(issuer: &[u8], jti: &[u8]) -> SessionId {
    let d = Sha256::new()
        .chain_update(b"ngx-sessions v1 logout jti\0")
        .chain_update(issuer)
        .chain_update(b"\0")
        .chain_update(jti)
        .finalize();
    SessionId(d[..16].try_into().expect("16 bytes"))
}

/// The zone's key of session `handle`'s token refresh: the lock one
/// worker takes (`first_use`) before it refreshes the session's tokens.
pub fn refresh_lock_key(handle: &Handle) -> SessionId {
    let d = Sha256::new()
        .chain_update(b"ngx-sessions v1 oidc refresh\0")
        .chain_update(handle.0)
        .finalize();
    SessionId(d[..16].try_into().expect("16 bytes"))
}

/// The table key of an OpenID Provider's session `sid` from `issuer`.
pub fn sid_key(issuer: &[u8], sid: &[u8]) -> SessionId {
    let d = Sha256::new()
        .chain_update(b"ngx-sessions v1 oidc sid\0")
        .chain_update(issuer)
        .chain_update(b"\0")
        .chain_update(sid)
        .finalize();
    SessionId(d[..16].try_into().expect("16 bytes"))
}

/// Marks a provider-session record: the session's handle is in the first 8 bytes.
const OIDC_SID: [u8; 8] = *b"oidc-sid";

/// Remembers, until `until`, that the provider's session `key` (a
/// `sid_key`) logged in this nginx's session `handle`: a back-channel
/// logout naming only the `sid` finds it so. Kept here, not shared.
pub fn remember_sid(t: &mut Table<'_>, key: SessionId, handle: &Handle, until: u64, now: u64) {
    if until > now {
        let mut mark = [0u8; 16];
        mark[..8].copy_from_slice(&handle.0);
        mark[8..].copy_from_slice(&OIDC_SID);
        put(
            t,
            SharedRecord {
                key,
                successor: SessionId(mark),
                until,
            },
            now,
        );
    }
}

/// The session the provider's session `key` logged in, if remembered.
pub fn sid_handle(t: &Table<'_>, key: &SessionId) -> Option<Handle> {
    match t.get(key)? {
        Entry::Grace { successor, .. } if successor.0[8..] == OIDC_SID => {
            Some(Handle(successor.0[..8].try_into().expect("8 bytes")))
        }
        _ => None,
    }
}

/// Whether `key` (a `jti_key`, a `refresh_lock_key`) is new to the zone; then it is kept until
/// `until`, protected as a logged-in session's record is, and the record
/// made goes to `out`, to be shared. Every worker, and every instance the
/// records reach, refuses the same token after.
pub fn first_use(
    t: &mut Table<'_>,
    key: SessionId,
    until: u64,
    now: u64,
    out: &mut Vec<SharedRecord>,
) -> bool {
    if matches!(t.get(&key), Some(Entry::Grace { successor, .. }) if ends(&successor).is_some()) {
        return false;
    }
    end(t, key, until, now, true, out);
    true
}

/// One record as the zone keeps it and as instances share it: `successor`
/// (`ENDED`, or a "not valid before" mark) under `key` until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedRecord {
    pub key: SessionId,
    pub successor: SessionId,
    pub until: u64,
}

/// The bytes of a `SharedRecord` record, before its MAC.
pub const SHARED_LEN: usize = 40;

impl SharedRecord {
    pub fn encode(&self) -> [u8; SHARED_LEN] {
        let mut b = [0u8; SHARED_LEN];
        b[..16].copy_from_slice(&self.key.0);
        b[16..32].copy_from_slice(&self.successor.0);
        b[32..].copy_from_slice(&self.until.to_le_bytes());
        b
    }

    /// Reads a record back (its MAC already checked), as strictly as it was
    /// made: an ended id or a "not valid before" mark, nothing else.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let b: &[u8; SHARED_LEN] = b.try_into().ok()?;
        let r = Self {
            key: SessionId(b[..16].try_into().ok()?),
            successor: SessionId(b[16..32].try_into().ok()?),
            until: u64::from_le_bytes(b[32..].try_into().ok()?),
        };
        (ends(&r.successor).is_some() || mark_time(&r.successor).is_some()).then_some(r)
    }
}

fn mark_time(successor: &SessionId) -> Option<u64> {
    (successor.0[8..] == NOT_BEFORE)
        .then(|| u64::from_le_bytes(successor.0[..8].try_into().expect("8 bytes")))
}

/// Stores `successor` under `id` until `until`, replacing what was there.
fn put(t: &mut Table<'_>, r: SharedRecord, now: u64) {
    t.remove(&r.key);
    // A logout of a logged-in session is protected, as that session was:
    // a flood of new visitors must not push it out of the zone.
    let protected = ends(&r.successor).unwrap_or(true);
    t.insert_in(r.key, &Record::EMPTY, Some(r.until), now, protected);
    t.retire(&r.key, r.successor, r.until);
}

/// Keeps `id` dead until `until` (when it would have expired); the record
/// made goes to `out`, to be shared. `logged_in`: the session was (or the
/// request that ended it logged in), so its record is protected.
pub fn end(
    t: &mut Table<'_>,
    id: SessionId,
    until: u64,
    now: u64,
    logged_in: bool,
    out: &mut Vec<SharedRecord>,
) {
    if until > now {
        let r = SharedRecord {
            key: id,
            successor: if logged_in { ENDED } else { ENDED_ANONYMOUS },
            until,
        };
        put(t, r, now);
        out.push(r);
    }
}

/// Refuses `user`'s sessions logged in or renewed before `at`, until `until`
/// (when the longest of them would have expired).
pub fn set_not_before(
    t: &mut Table<'_>,
    user: &[u8],
    at: u64,
    until: u64,
    now: u64,
    out: &mut Vec<SharedRecord>,
) {
    let mut mark = [0u8; 16];
    mark[..8].copy_from_slice(&at.to_le_bytes());
    mark[8..].copy_from_slice(&NOT_BEFORE);
    let r = SharedRecord {
        key: user_key(user),
        successor: SessionId(mark),
        until,
    };
    put(t, r, now);
    out.push(r);
}

/// Copies a record another instance made into the zone, unless the zone
/// already holds one that refuses at least as much: an ended id kept as
/// long, or a later "not valid before" time.
pub fn apply(t: &mut Table<'_>, r: SharedRecord, now: u64) {
    if r.until <= now {
        return;
    }
    let kept = match t.get(&r.key) {
        Some(Entry::Grace { successor, until }) if ends(&successor).is_some() => {
            // Kept if it lasts as long and is protected at least as much.
            matches!((ends(&successor), ends(&r.successor)),
                (Some(have), Some(new)) if until >= r.until && (have || !new))
        }
        Some(Entry::Grace { successor, until }) => match (mark_time(&successor), mark_time(&r.successor)) {
            (Some(have), Some(new)) => have > new || (have == new && until >= r.until),
            _ => false,
        },
        _ => false,
    };
    if !kept {
        put(t, r, now);
    }
}

/// `user`'s "not valid before" time, if one is kept.
pub fn not_before(t: &Table<'_>, user: &[u8]) -> Option<u64> {
    match t.get(&user_key(user))? {
        Entry::Grace { successor, .. } => mark_time(&successor),
        _ => None,
    }
}

/// Whether the session `id` with record `rec`, opened from a cookie, was
/// ended or logged out everywhere. Entries that expired still count until
/// reclaimed: they only ever outlive the session they refuse.
pub fn is_revoked(t: &Table<'_>, id: &SessionId, rec: &Record) -> bool {
    if matches!(t.get(id), Some(Entry::Grace { successor, .. }) if ends(&successor).is_some()) {
        return true;
    }
    rec.user()
        .and_then(|u| not_before(t, u))
        // In the very millisecond of the revocation too: a login another
        // instance made just before it may carry the same time.
        .is_some_and(|at| rec.renewed <= at)
}

/// Keeps a logged-in cookie-store session listed in the zone (without its
/// data), so that `sessions_admin` can list and revoke it as it does the
/// zone's own sessions. Refreshed when the session's cookie is.
pub fn index(t: &mut Table<'_>, id: SessionId, rec: &Record, deadline: Option<u64>, now: u64) {
    if matches!(t.get(&id), Some(Entry::Live(_))) {
        t.update(&id, rec, deadline);
    } else if t.get(&id).is_none() {
        t.insert(id, rec, deadline, now);
    }
}

/// Ends every session of `user` the zone lists, and refuses every one it
/// does not (cookies on other instances, or no longer listed) for as long
/// as a session may live. Returns how many were listed.
pub fn revoke_user(
    t: &mut Table<'_>,
    user: &[u8],
    policy: &Policy,
    now: u64,
    out: &mut Vec<SharedRecord>,
) -> usize {
    let listed = t.sessions_of(user);
    for (id, rec) in &listed {
        end(t, *id, copies_end(policy, rec, now), now, true, out);
    }
    set_not_before(t, user, now, not_before_end(policy, now), now, out);
    listed.len()
}

/// Ends the session whose handle is `handle`, if the zone lists it (with
/// `owner`, only as that user's: `sessions_self`).
pub fn revoke_handle(
    t: &mut Table<'_>,
    handle: &crate::primitives::id::Handle,
    owner: Option<&[u8]>,
    policy: &Policy,
    now: u64,
    out: &mut Vec<SharedRecord>,
) -> bool {
    let Some(id) = t.find_handle(handle) else {
        return false;
    };
    let Some(Entry::Live(rec)) = t.get(&id) else {
        return false;
    };
    if owner.is_some_and(|u| rec.user() != Some(u)) {
        return false;
    }
    t.remove(&id);
    end(t, id, copies_end(policy, &rec, now), now, true, out);
    true
}

/// Ends `user`'s sessions the zone lists but `except` (a handle), without a
/// "not valid before" (it would end `except` too). Returns how many.
pub fn revoke_others(
    t: &mut Table<'_>,
    user: &[u8],
    except: &crate::primitives::id::Handle,
    policy: &Policy,
    now: u64,
    out: &mut Vec<SharedRecord>,
) -> usize {
    let others: Vec<_> = t
        .sessions_of(user)
        .into_iter()
        .filter(|(_, r)| r.handle != *except)
        .collect();
    for (id, rec) in &others {
        end(t, *id, copies_end(policy, rec, now), now, true, out);
    }
    others.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::zone::table::tests::Mem;

    fn logged_in(user: &[u8], renewed: u64) -> Record {
        let mut r = Record::EMPTY;
        r.log_in(user, false).unwrap();
        r.renewed = renewed;
        r
    }

    #[test]
    fn a_logout_token_is_taken_once_and_its_record_shared() {
        let mut m = Mem::new(16, 8);
        let mut t = m.table();
        let key = jti_key(b"https://id.example", b"jti-1");
        assert_ne!(key, jti_key(b"https://other.example", b"jti-1"), "per issuer");
        assert_ne!(key, jti_key(b"https://id.example", b"jti-2"));
        let mut out = Vec::new();
        assert!(first_use(&mut t, key, 1_000, 100, &mut out));
        assert_eq!(
            out,
            vec![SharedRecord {
                key,
                successor: ENDED,
                until: 1_000
            }]
        );
        assert!(
            !first_use(&mut t, key, 1_000, 200, &mut out),
            "the same token again"
        );
        assert_eq!(out.len(), 1, "nothing new to share");
        // Another instance's record refuses it here too.
        let mut m2 = Mem::new(16, 8);
        let mut t2 = m2.table();
        apply(&mut t2, out[0], 300);
        assert!(!first_use(&mut t2, key, 1_000, 300, &mut Vec::new()));
    }

    #[test]
    fn a_provider_session_leads_to_the_session_it_logged_in_and_refuses_nothing() {
        let mut m = Mem::new(16, 8);
        let mut t = m.table();
        let key = sid_key(b"https://id.example", b"sid-1");
        assert_ne!(key, sid_key(b"https://other.example", b"sid-1"), "per issuer");
        assert_ne!(key, jti_key(b"https://id.example", b"sid-1"), "not a jti's key");
        assert_eq!(sid_handle(&t, &key), None);
        remember_sid(&mut t, key, &Handle([9; 8]), 1_000, 100);
        assert_eq!(sid_handle(&t, &key), Some(Handle([9; 8])));
        // A later login of the same provider session replaces it.
        remember_sid(&mut t, key, &Handle([7; 8]), 2_000, 200);
        assert_eq!(sid_handle(&t, &key), Some(Handle([7; 8])));
        // It is no revocation: no id is ended by it, and it is not a jti.
        assert!(!is_revoked(&t, &key, &Record::EMPTY));
        assert!(first_use(
            &mut t,
            jti_key(b"https://id.example", b"sid-1"),
            1_000,
            300,
            &mut Vec::new()
        ));
        // Past its time, nothing is remembered.
        remember_sid(&mut t, sid_key(b"i", b"s"), &Handle([1; 8]), 100, 100);
        assert_eq!(sid_handle(&t, &sid_key(b"i", b"s")), None);
    }

    #[test]
    fn an_ended_id_stays_refused_until_its_deadline() {
        let mut m = Mem::new(16, 8);
        let mut t = m.table();
        let id = SessionId([3; 16]);
        let rec = logged_in(b"alice", 10);
        assert!(!is_revoked(&t, &id, &rec));
        end(&mut t, id, 1_000, 100, true, &mut Vec::new());
        assert!(is_revoked(&t, &id, &rec));
        assert!(!is_revoked(&t, &SessionId([4; 16]), &rec));
        // An end already past needs no record.
        end(&mut t, SessionId([5; 16]), 100, 100, true, &mut Vec::new());
        assert!(t.get(&SessionId([5; 16])).is_none());
    }

    #[test]
    fn not_before_refuses_older_logins_of_that_user_only() {
        let mut m = Mem::new(16, 8);
        let mut t = m.table();
        set_not_before(&mut t, b"alice", 500, 10_000, 500, &mut Vec::new());
        let id = SessionId([3; 16]);
        assert!(is_revoked(&t, &id, &logged_in(b"alice", 499)));
        assert!(is_revoked(&t, &id, &logged_in(b"alice", 500)));
        assert!(!is_revoked(&t, &id, &logged_in(b"alice", 501)));
        assert!(!is_revoked(&t, &id, &logged_in(b"bob", 1)));
        assert!(!is_revoked(&t, &id, &Record::EMPTY));
        // A later "log out everywhere" moves the time on.
        set_not_before(&mut t, b"alice", 900, 10_000, 900, &mut Vec::new());
        assert_eq!(not_before(&t, b"alice"), Some(900));
        assert!(is_revoked(&t, &id, &logged_in(b"alice", 600)));
    }

    #[test]
    fn records_outlive_every_copy_however_stale_the_record() {
        let mut p = Policy {
            remember: 3_600_000, // shorter than the absolute day
            ..Policy::default()
        };
        let mut rec = logged_in(b"alice", 0);
        rec.created = 0;
        rec.last_seen = 0;
        // Listed at 0, revoked an hour later: the cookie may have been
        // refreshed until then, so its idle deadline counts from now.
        let now = 3_600_000;
        assert!(copies_end(&p, &rec, now) > now + p.timeouts.idle);
        // An active session lives until its absolute timeout (a day), not
        // its shortest one: a "not valid before" must be kept that long.
        assert_eq!(p.longest_life(), Some(86_400_000));
        assert!(not_before_end(&p, now) >= now + 86_400_000);
        p.timeouts.absolute = 0;
        assert_eq!(not_before_end(&p, now), u64::MAX);
        let mut m = Mem::new(16, 8);
        let mut t = m.table();
        assert_eq!(revoke_user(&mut t, b"alice", &p, now, &mut Vec::new()), 0);
        assert!(is_revoked(&t, &SessionId([9; 16]), &logged_in(b"alice", now - 1)));
    }

    #[test]
    fn records_survive_a_flood_of_new_sessions() {
        let mut m = Mem::new(16, 8);
        let mut t = m.table();
        end(&mut t, SessionId([3; 16]), u64::MAX, 0, true, &mut Vec::new());
        for i in 0..200u8 {
            t.insert(SessionId([i.wrapping_add(10); 16]), &Record::EMPTY, None, 1);
        }
        assert!(is_revoked(&t, &SessionId([3; 16]), &Record::EMPTY));
    }

    #[test]
    fn shared_records_round_trip_and_apply_only_what_refuses_more() {
        let mut out = Vec::new();
        let mut a = Mem::new(16, 8);
        let mut ta = a.table();
        end(&mut ta, SessionId([3; 16]), 5_000, 100, true, &mut out);
        set_not_before(&mut ta, b"alice", 400, 9_000, 400, &mut out);
        set_not_before(&mut ta, b"alice", 300, 9_500, 400, &mut out);
        assert_eq!(out.len(), 3);
        for r in &out {
            assert_eq!(SharedRecord::decode(&r.encode()), Some(*r));
        }
        // Anything but an ended id or a "not valid before" mark is refused.
        let mut bad = out[0].encode();
        bad[20] ^= 1;
        assert_eq!(SharedRecord::decode(&bad), None);
        assert_eq!(SharedRecord::decode(&bad[1..]), None);

        // Another instance: in any order, the later time wins.
        let mut b = Mem::new(16, 8);
        let mut tb = b.table();
        for r in out.iter().rev() {
            apply(&mut tb, *r, 500);
        }
        assert!(is_revoked(&tb, &SessionId([3; 16]), &Record::EMPTY));
        assert_eq!(not_before(&tb, b"alice"), Some(400));
        apply(&mut tb, out[2], 500);
        assert_eq!(not_before(&tb, b"alice"), Some(400));
        // A record already past is not copied.
        let past = SharedRecord { until: 400, ..out[0] };
        let mut c = Mem::new(16, 8);
        let mut tc = c.table();
        apply(&mut tc, past, 500);
        assert!(tc.get(&past.key).is_none());
        // A listed session is ended by the record of its id.
        let live = SessionId([7; 16]);
        tc.insert(live, &logged_in(b"bob", 1), None, 1);
        apply(&mut tc, SharedRecord { key: live, ..out[0] }, 500);
        assert!(is_revoked(&tc, &live, &Record::EMPTY));
    }
}
