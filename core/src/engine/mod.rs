//! One request's session decision over a store: cookie in, outcome out.

pub mod binding;
pub mod status;
pub mod store;

pub use binding::{fingerprint, IpBinding, Mode, Ua, UaBinding};
pub use status::Status;

use crate::engine::store::{Event, Store};
use crate::model::record::{Entry, Record};
use crate::model::timeouts::{Timeouts, Verdict};
use crate::primitives::id::{Handle, RandomError, RandomPool, SessionId};

/// Per-location settings that shape the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub timeouts: Timeouts,
    pub check_ip: IpBinding,
    pub check_ua: UaBinding,
    /// How long a renewed id stays valid, in ms.
    pub grace: u64,
    /// Lifetime of a "remember me" login, in ms: it replaces the idle,
    /// rolling and absolute limits of such a session.
    pub remember: u64,
    /// `sessions_max_per_user`.
    pub per_user: Option<PerUser>,
}

/// `sessions_max_per_user N [end_oldest | refuse]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerUser {
    pub max: u32,
    pub at_limit: AtLimit,
}

/// What a login beyond the limit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtLimit {
    /// The user's oldest sessions end.
    EndOldest,
    /// The new login is refused (or, where sessions are counted only after
    /// it, ended at once).
    Refuse,
}

impl PerUser {
    /// Of a user's sessions (`(id, record)`), those to end to keep within the
    /// limit: the oldest (created first) or the newest, as `at_limit` says.
    /// `sessions` may come in any order; ties fall to the id.
    pub fn excess<T, K: Ord>(
        &self,
        mut sessions: Vec<(T, Record)>,
        key: impl Fn(&T) -> K,
    ) -> Vec<(T, Record)> {
        let over = sessions.len().saturating_sub(self.max as usize);
        sessions.sort_by_key(|(t, r)| (r.created, key(t)));
        match self.at_limit {
            AtLimit::EndOldest => sessions.truncate(over),
            AtLimit::Refuse => {
                sessions.drain(..sessions.len() - over);
            }
        }
        sessions
    }
}

impl Policy {
    /// The longest any session may live, in ms (`None`: no limit). Only
    /// the absolute timeout bounds an active session (rolling renewal and
    /// activity push the others on); a remembered one lives `remember`.
    pub fn longest_life(&self) -> Option<u64> {
        let absolute = self.timeouts.absolute;
        (absolute != 0).then(|| absolute.max(self.remember))
    }

    /// The limits that apply to `rec`.
    pub fn timeouts_for(&self, rec: &Record) -> Timeouts {
        if rec.remembered() {
            Timeouts {
                idle: self.remember,
                rolling: self.remember,
                absolute: self.remember,
            }
        } else {
            self.timeouts
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            timeouts: Timeouts::default(),
            check_ip: IpBinding::default(),
            check_ua: UaBinding::default(),
            grace: 10_000,
            remember: 30 * 86_400_000,
            per_user: None,
        }
    }
}

/// What the request brings.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub now: u64,
    pub ip: &'a [u8],
    pub ua: Ua<'a>,
}

/// What the client presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    /// No session cookie.
    Nothing,
    /// A cookie that failed decoding or the MAC.
    Invalid,
    /// A verified id; `stale_key` when an old secret signed it.
    Id { id: SessionId, stale_key: bool },
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub id: SessionId,
    pub record: Record,
    /// The client must be sent a cookie for `id`.
    pub issue_cookie: bool,
    /// Sessions removed from a full table to make room.
    pub evicted: u32,
    /// When the session ends if unused (`Timeouts::deadline`).
    pub deadline: Option<u64>,
    /// A difference from the session's client that a check in `Mode::Log`
    /// let through (`IpMismatch`, `UaMismatch`), to be logged.
    pub tolerated: Option<Status>,
}

/// Resolves the request's session, creating, renewing or destroying as needed.
pub fn resolve<S: Store + ?Sized>(
    table: &mut S,
    presented: Presented,
    facts: &Facts<'_>,
    policy: &Policy,
    rng: &mut RandomPool,
) -> Result<Outcome, RandomError> {
    let (mut id, stale_key) = match presented {
        Presented::Nothing => return create(table, Status::New, facts, policy, rng),
        Presented::Invalid => return create(table, Status::Invalid, facts, policy, rng),
        Presented::Id { id, stale_key } => (id, stale_key),
    };
    let mut issue_cookie = stale_key;

    // Follow a renewed id to its successor while its grace lasts.
    let mut rec = None;
    for _ in 0..3 {
        match table.get(&id) {
            None => break,
            Some(Entry::Live(r)) => {
                rec = Some(r);
                break;
            }
            Some(e @ Entry::Grace { until, .. }) if e.is_ended() => {
                if facts.now > until {
                    table.remove(&id);
                }
                return create(table, Status::Ended, facts, policy, rng);
            }
            Some(Entry::Grace { successor, until }) if facts.now <= until => {
                id = successor;
                issue_cookie = true;
            }
            Some(Entry::Grace { .. }) => {
                table.remove(&id);
                return create(table, Status::ExpiredRolling, facts, policy, rng);
            }
        }
    }
    let Some(mut rec) = rec else {
        return create(table, Status::Unknown, facts, policy, rng);
    };
    let t = &policy.timeouts_for(&rec);

    let verdict = t.judge(rec.times(), facts.now);
    let expired = match verdict {
        Verdict::ExpiredIdle => Some(Status::ExpiredIdle),
        Verdict::ExpiredRolling => Some(Status::ExpiredRolling),
        Verdict::ExpiredAbsolute => Some(Status::ExpiredAbsolute),
        _ => None,
    };
    if let Some(status) = expired {
        table.expire(&id);
        return create(table, status, facts, policy, rng);
    }
    let ip = &policy.check_ip;
    let ua = &policy.check_ua;
    let differs = [
        (ip.mode, !ip.same(rec.ip(), facts.ip), Status::IpMismatch),
        (
            ua.mode,
            ua.mode != Mode::Off && !ua.same(rec.ua, &facts.ua),
            Status::UaMismatch,
        ),
    ];
    if let Some(&(_, _, status)) = differs
        .iter()
        .find(|(mode, differ, _)| *mode == Mode::On && *differ)
    {
        table.remove(&id);
        return create(table, status, facts, policy, rng);
    }
    let mut tolerated = None;
    for &(_, _, status) in differs
        .iter()
        .filter(|(mode, differ, _)| *mode == Mode::Log && *differ)
    {
        table.count(Event::Tolerated(status));
        tolerated.get_or_insert(status);
    }

    rec.last_seen = facts.now;
    if verdict == Verdict::Renew {
        let new_id = fresh_id(table, rng)?;
        rec.renewed = facts.now;
        let deadline = t.deadline(rec.times());
        table.retire(&id, new_id, facts.now.saturating_add(policy.grace));
        let evicted = table.insert(new_id, &rec, deadline, facts.now);
        table.count(Event::Renewed);
        return Ok(Outcome {
            status: Status::Renewed,
            id: new_id,
            record: rec,
            issue_cookie: true,
            evicted,
            deadline,
            tolerated,
        });
    }
    let deadline = t.deadline(rec.times());
    table.touch(&id, facts.now, deadline);
    Ok(Outcome {
        status: Status::Valid,
        id,
        record: rec,
        issue_cookie,
        evicted: 0,
        deadline,
        tolerated,
    })
}

/// What an application asked for in its response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control<'a> {
    /// Log in as `user`; always issues a new id (no session fixation).
    LogIn { user: &'a [u8], remember: bool },
    /// Issue a new id, keeping the session.
    Regenerate,
    /// End the session.
    Destroy,
}

/// Why a control request could not be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlError {
    /// The session is gone (destroyed, evicted, expired) since the request began.
    NoSession,
    UserTooLong,
    Random(RandomError),
    /// `sessions_max_per_user ... refuse`: the user has as many sessions as allowed.
    LimitReached,
}

/// Applies `control` to session `id`. Returns the new id and record, or
/// `None` when the session was destroyed.
pub fn apply<S: Store + ?Sized>(
    table: &mut S,
    id: &SessionId,
    control: Control<'_>,
    now: u64,
    policy: &Policy,
    rng: &mut RandomPool,
) -> Result<Option<(SessionId, Record)>, ControlError> {
    let Some(Entry::Live(rec)) = table.get(id) else {
        return Err(ControlError::NoSession);
    };
    match control {
        Control::Destroy => {
            if rec.user().is_some() {
                table.end(id, ended_until(&rec, now, policy));
                table.count(Event::Logout);
            } else {
                table.remove(id);
            }
            return Ok(None);
        }
        Control::LogIn { user, .. } if user.len() > crate::model::record::MAX_USER => {
            return Err(ControlError::UserTooLong);
        }
        _ => {}
    }
    // The user's other sessions, where the store can count them at once.
    let others = match (control, policy.per_user) {
        (Control::LogIn { user, .. }, Some(limit)) => table.sessions_of_user(user).map(|mut all| {
            all.retain(|(other, _)| other != id);
            (limit, all)
        }),
        _ => None,
    };
    if let Some((limit, all)) = &others {
        if limit.at_limit == AtLimit::Refuse && all.len() >= limit.max as usize {
            table.count(Event::LimitRefused);
            return Err(ControlError::LimitReached);
        }
    }
    let new_id = fresh_id(table, rng).map_err(ControlError::Random)?;
    // The old id stops working at once: no grace for a pre-login cookie.
    // `take` hands over the record with its data.
    let Some(mut rec) = table.take(id) else {
        return Err(ControlError::NoSession);
    };
    if let Control::LogIn { user, remember } = control {
        rec.log_in(user, remember)
            .map_err(|_| ControlError::UserTooLong)?;
        table.count(Event::Login);
    }
    rec.renewed = now;
    rec.last_seen = now;
    table.insert(new_id, &rec, policy.timeouts_for(&rec).deadline(rec.times()), now);
    if let Some((limit, mut all)) = others {
        all.push((new_id, rec));
        for (old, old_rec) in limit.excess(all, |id| id.0) {
            table.end(&old, ended_until(&old_rec, now, policy));
            table.count(Event::LimitEnded);
        }
    }
    Ok(Some((new_id, rec)))
}

/// Why session data could not be changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataUpdateError {
    NoSession,
    Invalid(crate::model::data::DataError),
    /// The zone's data area is full.
    Full,
}

/// Sets (`Some`) and removes (`None`) keys of session `id`'s data; on
/// success `out` holds the new encoded map.
pub fn update_data<S: Store + ?Sized>(
    table: &mut S,
    id: &SessionId,
    changes: &[(&[u8], Option<&[u8]>)],
    out: &mut Vec<u8>,
) -> Result<(), DataUpdateError> {
    let Some(Entry::Live(rec)) = table.get(id) else {
        return Err(DataUpdateError::NoSession);
    };
    let mut current = Vec::new();
    table.read_data(&rec, &mut current);
    crate::model::data::update_within(&current, changes, out, table.data_limit())
        .map_err(DataUpdateError::Invalid)?;
    table.set_data(id, out).map_err(|_| DataUpdateError::Full)
}

/// The longest an ended session's record is kept.
pub const ENDED_KEPT_MAX: u64 = 86_400_000;

/// Until when the record that `rec`'s session ended is kept: while its id
/// could otherwise still have been valid (in use, only the rolling and
/// absolute limits end an id), at most `ENDED_KEPT_MAX`.
pub fn ended_until(rec: &Record, now: u64, policy: &Policy) -> u64 {
    let last = now.saturating_add(ENDED_KEPT_MAX);
    let in_use = Timeouts {
        idle: 0,
        ..policy.timeouts_for(rec)
    };
    in_use.deadline(rec.times()).map_or(last, |d| d.clamp(now, last))
}

fn fresh_id<S: Store + ?Sized>(table: &mut S, rng: &mut RandomPool) -> Result<SessionId, RandomError> {
    loop {
        let id = SessionId::from_pool(rng)?;
        if id != crate::model::record::ENDED && table.get(&id).is_none() {
            return Ok(id);
        }
    }
}

fn create<S: Store + ?Sized>(
    table: &mut S,
    status: Status,
    facts: &Facts<'_>,
    policy: &Policy,
    rng: &mut RandomPool,
) -> Result<Outcome, RandomError> {
    let id = fresh_id(table, rng)?;
    let record = Record::new(
        Handle::from_pool(rng)?,
        facts.now,
        facts.ip,
        facts.ua.fingerprint(),
    );
    let deadline = policy.timeouts.deadline(record.times());
    let evicted = table.insert(id, &record, deadline, facts.now);
    table.count(Event::Created);
    if status.is_refusal() {
        table.count(Event::Refused(status));
    }
    Ok(Outcome {
        status,
        id,
        record,
        issue_cookie: true,
        evicted,
        deadline,
        tolerated: None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stores::zone::table::tests::Mem;
    use crate::stores::zone::table::Table;

    const IP: &[u8] = &[10, 0, 0, 1];

    pub(crate) fn facts(now: u64) -> Facts<'static> {
        Facts {
            now,
            ip: IP,
            ua: Ua::Header(b"itest-agent/42"),
        }
    }

    /// 1 s idle, 4 s rolling, 10 s absolute, 0.5 s grace.
    pub(crate) fn policy() -> Policy {
        Policy {
            timeouts: Timeouts {
                idle: 1_000,
                rolling: 4_000,
                absolute: 10_000,
            },
            check_ip: IpBinding::default(),
            check_ua: UaBinding::default(),
            grace: 500,
            remember: 60_000,
            per_user: None,
        }
    }

    /// `policy()` with some timeouts changed.
    fn policy_with(f: impl FnOnce(&mut Timeouts)) -> Policy {
        let mut p = policy();
        f(&mut p.timeouts);
        p
    }

    /// `resolve` with the default test policy and a fresh random pool.
    fn at(t: &mut Table<'_>, presented: Presented, now: u64) -> Outcome {
        resolve(t, presented, &facts(now), &policy(), &mut RandomPool::new()).unwrap()
    }

    /// A verified cookie for `id`, signed by the current key.
    fn by_id(id: SessionId) -> Presented {
        Presented::Id { id, stale_key: false }
    }

    fn present(o: &Outcome) -> Presented {
        by_id(o.id)
    }

    #[test]
    fn new_then_valid_without_cookie() {
        let mut m = Mem::new(16, 8);
        let mut t = m.table();
        let a = at(&mut t, Presented::Nothing, 0);
        assert_eq!(a.status, Status::New);
        assert!(a.issue_cookie);
        let b = at(&mut t, present(&a), 100);
        assert_eq!(b.status, Status::Valid);
        assert!(!b.issue_cookie);
        assert_eq!(b.id, a.id);
        assert_eq!(b.record.handle, a.record.handle);
        assert_eq!(b.record.last_seen, 100);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn invalid_and_unknown_get_fresh_sessions() {
        let mut m = Mem::new(16, 8);
        let mut t = m.table();
        let a = at(&mut t, Presented::Invalid, 0);
        assert_eq!(a.status, Status::Invalid);
        let chosen = SessionId([0x41; 16]);
        let b = at(&mut t, by_id(chosen), 0);
        assert_eq!(b.status, Status::Unknown);
        assert_ne!(b.id, chosen, "never adopt a presented id");
        assert!(t.get(&chosen).is_none());
    }

    #[test]
    fn idle_and_absolute_expiry_destroy_the_old_session() {
        let mut m = Mem::new(16, 8);
        let mut t = m.table();
        let p = policy_with(|t| t.rolling = 0);
        let a = resolve(&mut t, Presented::Nothing, &facts(0), &p, &mut RandomPool::new()).unwrap();
        let b = resolve(&mut t, present(&a), &facts(1_001), &p, &mut RandomPool::new()).unwrap();
        assert_eq!(b.status, Status::ExpiredIdle);
        assert!(t.get(&a.id).is_none());
        // Active every 900 ms, the session lives until its absolute limit.
        let mut now = 1_001;
        let mut cur = b;
        loop {
            now += 900;
            cur = resolve(&mut t, present(&cur), &facts(now), &p, &mut RandomPool::new()).unwrap();
            if cur.status != Status::Valid {
                break;
            }
        }
        assert_eq!(cur.status, Status::ExpiredAbsolute);
        assert!(now > 11_001 && now <= 11_901, "expired at {now}");
    }

    #[test]
    fn rolling_renewal_with_grace() {
        let mut m = Mem::new(16, 8);
        let mut t = m.table();
        let p = policy();
        let mut cur = resolve(&mut t, Presented::Nothing, &facts(0), &p, &mut RandomPool::new()).unwrap();
        let first = cur;
        for now in [900, 1_800, 2_700] {
            cur = resolve(&mut t, present(&cur), &facts(now), &p, &mut RandomPool::new()).unwrap();
            assert_eq!(cur.status, Status::Valid);
        }
        let renewed = resolve(&mut t, present(&cur), &facts(3_000), &p, &mut RandomPool::new()).unwrap();
        assert_eq!(renewed.status, Status::Renewed);
        assert!(renewed.issue_cookie);
        assert_ne!(renewed.id, first.id);
        assert_eq!(renewed.record.handle, first.record.handle, "data carries over");
        assert_eq!(renewed.record.created, 0);
        // In grace the old cookie leads to the new session and re-sends its cookie.
        let old = resolve(&mut t, present(&first), &facts(3_400), &p, &mut RandomPool::new()).unwrap();
        assert_eq!(old.status, Status::Valid);
        assert_eq!(old.id, renewed.id);
        assert!(old.issue_cookie);
        // After the grace the old id is refused.
        let late = resolve(&mut t, present(&first), &facts(3_600), &p, &mut RandomPool::new()).unwrap();
        assert_eq!(late.status, Status::ExpiredRolling);
        assert_ne!(late.record.handle, first.record.handle);
        // The new id keeps working.
        let next = resolve(
            &mut t,
            present(&renewed),
            &facts(3_700),
            &p,
            &mut RandomPool::new(),
        )
        .unwrap();
        assert_eq!(next.status, Status::Valid);
        assert_eq!(t.header().stats.renewed, 1);
    }

    #[test]
    fn session_not_renewed_in_time_expires_rolling() {
        let mut m = Mem::new(16, 8);
        let mut t = m.table();
        let p = policy_with(|t| t.idle = 0);
        let a = resolve(&mut t, Presented::Nothing, &facts(0), &p, &mut RandomPool::new()).unwrap();
        let b = resolve(&mut t, present(&a), &facts(4_001), &p, &mut RandomPool::new()).unwrap();
        assert_eq!(b.status, Status::ExpiredRolling);
    }

    #[test]
    fn log_mode_keeps_the_session_and_counts_each_difference() {
        let mut m = Mem::new(16, 8);
        let mut t = m.table();
        let p = Policy {
            check_ip: IpBinding {
                mode: Mode::Log,
                ..IpBinding::default()
            },
            check_ua: UaBinding {
                mode: Mode::Log,
                ignore_versions: false,
            },
            ..policy()
        };
        let rng = &mut RandomPool::new();
        let a = resolve(&mut t, Presented::Nothing, &facts(0), &p, rng).unwrap();
        let elsewhere = Facts {
            ip: &[10, 9, 9, 9],
            ua: Ua::Header(b"another-agent/7"),
            ..facts(10)
        };
        let b = resolve(&mut t, present(&a), &elsewhere, &p, rng).unwrap();
        assert_eq!(
            (b.status, b.id, b.tolerated),
            (Status::Valid, a.id, Some(Status::IpMismatch))
        );
        assert_eq!(b.record.ip(), IP, "the session keeps the address it began with");
        let s = t.header().stats;
        assert_eq!((s.tolerated_ip, s.tolerated_ua, s.refused_ip), (1, 1, 0));
        // An enforced check still refuses when another only logs.
        let strict_ua = Policy {
            check_ua: UaBinding::default(),
            ..p
        };
        let c = resolve(&mut t, present(&b), &elsewhere, &strict_ua, rng).unwrap();
        assert_eq!((c.status, c.tolerated), (Status::UaMismatch, None));
        assert_eq!(
            t.header().stats.tolerated_ip,
            1,
            "nothing let through when refused"
        );
        let same = resolve(&mut t, present(&c), &elsewhere, &p, rng).unwrap();
        assert_eq!(same.tolerated, None);
    }

    #[test]
    fn ip_and_ua_checks() {
        let mut m = Mem::new(16, 8);
        let mut t = m.table();
        let p = policy();
        let a = resolve(&mut t, Presented::Nothing, &facts(0), &p, &mut RandomPool::new()).unwrap();
        let other_ip = Facts {
            ip: &[10, 0, 0, 2],
            ..facts(10)
        };
        let b = resolve(&mut t, present(&a), &other_ip, &p, &mut RandomPool::new()).unwrap();
        assert_eq!(b.status, Status::IpMismatch);
        assert!(t.get(&a.id).is_none(), "old session destroyed");
        let other_ua = Facts {
            ua: Ua::Header(b"another-agent/7"),
            ..other_ip
        };
        let c = resolve(&mut t, present(&b), &other_ua, &p, &mut RandomPool::new()).unwrap();
        assert_eq!(c.status, Status::UaMismatch);
        // Checks off: both differences pass.
        let off = Policy {
            check_ip: IpBinding {
                mode: Mode::Off,
                ..p.check_ip
            },
            check_ua: UaBinding {
                mode: Mode::Off,
                ..p.check_ua
            },
            ..p
        };
        let d = resolve(&mut t, present(&c), &facts(20), &off, &mut RandomPool::new()).unwrap();
        assert_eq!(d.status, Status::Valid);
    }

    #[test]
    fn stale_key_reissues_same_id() {
        let mut m = Mem::new(16, 8);
        let mut t = m.table();
        let a = at(&mut t, Presented::Nothing, 0);
        let b = at(
            &mut t,
            Presented::Id {
                id: a.id,
                stale_key: true,
            },
            1,
        );
        assert_eq!(b.status, Status::Valid);
        assert_eq!(b.id, a.id);
        assert!(b.issue_cookie);
    }

    #[test]
    fn refusals_are_counted_by_reason() {
        let mut m = Mem::new(16, 8);
        let mut t = m.table();
        let p = policy();
        let rng = &mut RandomPool::new();
        let a = resolve(&mut t, Presented::Nothing, &facts(0), &p, rng).unwrap();
        resolve(&mut t, Presented::Invalid, &facts(0), &p, rng).unwrap();
        let other_ip = Facts {
            ip: &[1, 2, 3, 4],
            ..facts(1)
        };
        let b = resolve(&mut t, present(&a), &other_ip, &p, rng).unwrap();
        resolve(&mut t, present(&a), &facts(2), &p, rng).unwrap(); // destroyed: unknown
        resolve(&mut t, present(&b), &other_ip, &p, rng).unwrap(); // valid
        let c = resolve(&mut t, Presented::Nothing, &facts(10), &p, rng).unwrap();
        resolve(&mut t, present(&c), &facts(2_000), &p, rng).unwrap(); // idle
        let s = t.header().stats;
        assert_eq!(
            (
                s.created,
                s.refused_invalid,
                s.refused_ip,
                s.refused_unknown,
                s.expired_idle
            ),
            (6, 1, 1, 1, 1)
        );
        assert_eq!(
            (s.refused_ua, s.expired_rolling, s.expired_absolute, s.renewed),
            (0, 0, 0, 0)
        );
    }

    #[test]
    fn login_regenerates_and_the_old_id_dies() {
        let mut m = Mem::new(16, 8);
        let mut t = m.table();
        let p = policy();
        let rng = &mut RandomPool::new();
        let a = resolve(&mut t, Presented::Nothing, &facts(0), &p, rng).unwrap();
        let login = Control::LogIn {
            user: b"alice",
            remember: false,
        };
        let (new_id, rec) = apply(&mut t, &a.id, login, 5, &p, rng).unwrap().unwrap();
        assert_ne!(new_id, a.id);
        assert_eq!(rec.user(), Some(&b"alice"[..]));
        assert_eq!(rec.handle, a.record.handle);
        let old = resolve(&mut t, present(&a), &facts(6), &p, rng).unwrap();
        assert_eq!(
            old.status,
            Status::Unknown,
            "the pre-login cookie no longer works"
        );
        let now = resolve(&mut t, by_id(new_id), &facts(7), &p, rng).unwrap();
        assert_eq!(now.status, Status::Valid);
        assert_eq!(now.record.user(), Some(&b"alice"[..]));
        assert_eq!(t.header().stats.logins, 1);
        // Too long a name changes nothing.
        let long = Control::LogIn {
            user: &[b'x'; 65],
            remember: false,
        };
        assert_eq!(
            apply(&mut t, &new_id, long, 8, &p, rng),
            Err(ControlError::UserTooLong)
        );
        // Destroy: logout counted, id gone.
        assert_eq!(apply(&mut t, &new_id, Control::Destroy, 9, &p, rng), Ok(None));
        assert_eq!(t.header().stats.logouts, 1);
        assert_eq!(
            apply(&mut t, &new_id, Control::Regenerate, 9, &p, rng),
            Err(ControlError::NoSession)
        );
    }

    #[test]
    fn a_logged_out_session_is_answered_ended_while_on_record() {
        let mut m = Mem::new(16, 8);
        let mut t = m.table();
        let p = policy(); // rolling 4 s
        let rng = &mut RandomPool::new();
        let a = resolve(&mut t, Presented::Nothing, &facts(0), &p, rng).unwrap();
        let login = Control::LogIn {
            user: b"alice",
            remember: false,
        };
        let (id, _) = apply(&mut t, &a.id, login, 0, &p, rng).unwrap().unwrap();
        assert_eq!(apply(&mut t, &id, Control::Destroy, 100, &p, rng), Ok(None));
        assert!(t.get(&id).is_some_and(|e| e.is_ended()));
        let r = resolve(&mut t, by_id(id), &facts(200), &p, rng).unwrap();
        assert_eq!((r.status, r.record.user()), (Status::Ended, None));
        assert_ne!(r.id, id);
        assert_eq!(
            resolve(&mut t, by_id(id), &facts(300), &p, rng).unwrap().status,
            Status::Ended
        );
        assert_eq!(t.header().stats.refused_ended, 2);
        // Kept while the id could have lived (its rolling limit), then gone.
        let late = resolve(&mut t, by_id(id), &facts(4_001), &p, rng).unwrap();
        assert_eq!(late.status, Status::Ended);
        assert!(t.get(&id).is_none());
        assert_eq!(
            resolve(&mut t, by_id(id), &facts(4_002), &p, rng).unwrap().status,
            Status::Unknown
        );
        // An anonymous session's end is not on record.
        let b = resolve(&mut t, Presented::Nothing, &facts(5_000), &p, rng).unwrap();
        assert_eq!(apply(&mut t, &b.id, Control::Destroy, 5_000, &p, rng), Ok(None));
        assert_eq!(
            resolve(&mut t, present(&b), &facts(5_001), &p, rng)
                .unwrap()
                .status,
            Status::Unknown
        );
        assert_eq!(ended_until(&a.record, 10, &p), 4_000);
    }

    #[test]
    fn a_user_keeps_within_the_limit() {
        let mut m = Mem::new(32, 8);
        let mut t = m.table();
        let rng = &mut RandomPool::new();
        let limited = |at_limit| Policy {
            per_user: Some(PerUser { max: 2, at_limit }),
            ..policy()
        };
        let login = |t: &mut Table<'_>, p: &Policy, now: u64, rng: &mut RandomPool| {
            let a = resolve(t, Presented::Nothing, &facts(now), p, rng).unwrap();
            let user = Control::LogIn {
                user: b"alice",
                remember: false,
            };
            apply(t, &a.id, user, now, p, rng).map(|o| o.unwrap().0)
        };
        let oldest = limited(AtLimit::EndOldest);
        let first = login(&mut t, &oldest, 0, rng).unwrap();
        let second = login(&mut t, &oldest, 10, rng).unwrap();
        let third = login(&mut t, &oldest, 20, rng).unwrap();
        assert!(t.get(&first).is_some_and(|e| e.is_ended()), "the oldest ended");
        for id in [second, third] {
            assert!(matches!(t.get(&id), Some(Entry::Live(_))));
        }
        assert_eq!(t.sessions_of(b"alice").len(), 2);
        assert_eq!(t.header().stats.limit_ended, 1);
        let refuse = limited(AtLimit::Refuse);
        assert_eq!(login(&mut t, &refuse, 30, rng), Err(ControlError::LimitReached));
        assert_eq!(t.sessions_of(b"alice").len(), 2);
        assert_eq!(t.header().stats.limit_refused, 1);
        // Another user is not counted with alice.
        let a = resolve(&mut t, Presented::Nothing, &facts(40), &refuse, rng).unwrap();
        let bob = Control::LogIn {
            user: b"bob",
            remember: false,
        };
        assert!(apply(&mut t, &a.id, bob, 40, &refuse, rng).is_ok());
    }

    #[test]
    fn excess_is_the_oldest_or_the_newest() {
        let at = |created| {
            let mut r = Record::EMPTY;
            r.created = created;
            r
        };
        let all = vec![(3u8, at(30)), (1, at(10)), (2, at(20)), (4, at(10))];
        let keep = |at_limit| PerUser { max: 2, at_limit };
        let ids = |v: Vec<(u8, Record)>| v.into_iter().map(|(i, _)| i).collect::<Vec<_>>();
        assert_eq!(ids(keep(AtLimit::EndOldest).excess(all.clone(), |i| *i)), [1, 4]);
        assert_eq!(ids(keep(AtLimit::Refuse).excess(all.clone(), |i| *i)), [2, 3]);
        assert!(PerUser {
            max: 9,
            at_limit: AtLimit::Refuse
        }
        .excess(all, |i| *i)
        .is_empty());
    }

    #[test]
    fn data_follows_the_session_through_renewal_and_login() {
        let mut m = Mem::new(16, 8);
        let mut t = m.table();
        let p = policy_with(|t| t.idle = 0);
        let rng = &mut RandomPool::new();
        let a = resolve(&mut t, Presented::Nothing, &facts(0), &p, rng).unwrap();
        let mut blob = Vec::new();
        update_data(&mut t, &a.id, &[(b"cart", Some(b"3 items"))], &mut blob).unwrap();
        assert_eq!(
            update_data(&mut t, &a.id, &[(b"bad key", Some(b"x"))], &mut blob),
            Err(DataUpdateError::Invalid(crate::model::data::DataError::BadKey))
        );
        let read = |t: &Table<'_>, id: &SessionId| {
            let Some(Entry::Live(r)) = t.get(id) else {
                panic!("gone")
            };
            let mut out = Vec::new();
            t.read_data(&r, &mut out);
            crate::model::data::get(&out, b"cart").map(<[u8]>::to_vec)
        };
        assert_eq!(read(&t, &a.id), Some(b"3 items".to_vec()));
        // Renewal carries the data; the grace slot's expiry does not free it.
        let r = resolve(&mut t, present(&a), &facts(3_000), &p, rng).unwrap();
        assert_eq!(r.status, Status::Renewed);
        resolve(&mut t, present(&a), &facts(3_600), &p, rng).unwrap(); // grace over: old slot removed
        assert_eq!(read(&t, &r.id), Some(b"3 items".to_vec()));
        // Login keeps the data under the new id.
        let login = Control::LogIn {
            user: b"zoe",
            remember: false,
        };
        let (id, _) = apply(&mut t, &r.id, login, 3_700, &p, rng).unwrap().unwrap();
        assert_eq!(read(&t, &id), Some(b"3 items".to_vec()));
        update_data(&mut t, &id, &[(b"cart", None)], &mut blob).unwrap();
        assert_eq!(read(&t, &id), None);
    }

    #[test]
    fn remember_me_replaces_the_timeouts() {
        let mut m = Mem::new(16, 8);
        let mut t = m.table();
        let p = policy(); // idle 1 s, rolling 4 s, absolute 10 s, remember 60 s
        let rng = &mut RandomPool::new();
        let a = resolve(&mut t, Presented::Nothing, &facts(0), &p, rng).unwrap();
        let login = Control::LogIn {
            user: b"bob",
            remember: true,
        };
        let (id, _) = apply(&mut t, &a.id, login, 0, &p, rng).unwrap().unwrap();
        // Idle for 30 s, far past the 1 s idle timeout: still valid.
        let r = resolve(&mut t, by_id(id), &facts(30_000), &p, rng).unwrap();
        assert_eq!(r.status, Status::Valid);
        assert_eq!(
            r.deadline,
            Some(60_000),
            "the remember lifetime counts from creation"
        );
        // Past the remember lifetime it ends.
        let r = resolve(&mut t, by_id(id), &facts(60_001), &p, rng).unwrap();
        assert_eq!(r.status, Status::ExpiredAbsolute);
    }

    #[test]
    fn full_table_reports_evictions() {
        let mut m = Mem::new(8, 8);
        let mut t = m.table();
        let first = at(&mut t, Presented::Nothing, 0);
        let mut evicted = 0;
        for _ in 0..10 {
            evicted += at(&mut t, Presented::Nothing, 0).evicted;
        }
        assert_eq!(evicted, 3);
        let again = at(&mut t, present(&first), 1);
        assert_eq!(again.status, Status::Unknown);
    }
}
