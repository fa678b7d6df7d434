//! The access handler's Redis path: the request is parked while the Redis
//! thread fetches and decides, then resumed to act on the answer exactly
//! as the local path does. Sessions live in Redis; the local zone keeps
//! the counters and, under `sessions_redis_unavailable local`, the
//! sessions started while Redis was unreachable.

use nginx_sys::NGX_LOG_ALERT;
use ngx::core::Status;
use ngx::http::{HTTPStatus, Request};
use ngx::ngx_log_error;
use sessions_core::config::redis_conf::Unavailable;
use sessions_core::engine::store::{Event, Store, StoreKind};
use sessions_core::engine::Presented;
use sessions_core::model::record::Entry;
use sessions_core::primitives::id::RandomPool;
use sessions_core::stores::redis::view::{touch_interval, View};
use sessions_core::{resolve, Facts, Keyring, SessionId};

use crate::config::conf::{LocConf, MainConf};
use crate::phases::cookies::{self, SCRATCH};
use crate::phases::decide;
use crate::phases::park::{self, Wake};
use crate::phases::request::Ctx;
use sessions_sidecar::{Answer, Job, Keys, Lookup};

pub fn access(r: &mut Request, lc: &LocConf, main: &MainConf) -> Status {
    match park::resumed(r) {
        Some(Wake::Answer(a)) => return answered(r, lc, main, a),
        Some(Wake::Retry) | None => {}
    }
    if !park::running() {
        return unavailable(r, lc, main);
    }
    let Some((keys, name)) = lc.keys_and_name(main) else {
        // `random` secret or name not adopted from Redis yet.
        if park::adoption_failed(crate::clock::now_ms()) || park::saturated() {
            return unavailable(r, lc, main);
        }
        return if park::park(r, None) {
            Status::NGX_AGAIN
        } else {
            Status::NGX_ERROR
        };
    };
    let (presented, key) = cookies::presented(r, keys, name);
    // A session started here while Redis was down stays here.
    if lc.unavailable == Some(Unavailable::Local) {
        if let (Presented::Id { id, .. }, Some(table)) = (presented, main.table) {
            if matches!(table.with(|t| t.get(&id)), Some(Entry::Live(_))) {
                return decide::local(r, lc, main, keys, name, presented);
            }
        }
    }
    let (now, ip, ip_len, ua) = cookies::facts(r);
    let facts = Facts {
        now,
        ip: &ip[..ip_len],
        ua,
    };
    let here = match (presented, key) {
        (Presented::Id { id, stale_key: false }, 0) => near_hit(lc, main, id, presented, &facts),
        (Presented::Nothing | Presented::Invalid, _) => start_here(lc, main, keys, presented, &facts),
        _ => None,
    };
    if let Some(outcome) = here {
        return decide::conclude(r, lc, keys, name, &outcome, StoreKind::Redis, 0);
    }
    let read = keys.key(usize::from(key)).seal().clone();
    let job = Lookup {
        presented,
        keys: Keys {
            write: keys.primary().seal().clone(),
            migrate: key != 0,
            read,
        },
        now,
        ip: (ip, ip_len),
        ua,
        policy: lc.policy,
    };
    if park::saturated() {
        return unavailable(r, lc, main);
    }
    if park::park(r, Some(Job::Lookup(Box::new(job)))) {
        Status::NGX_AGAIN
    } else {
        Status::NGX_ERROR
    }
}

/// Decides on this thread, over the near cache's copy of session `id`, a
/// request that changes nothing in Redis (the session is valid and its
/// last-seen time not due). `None` sends it to Redis as usual: not kept,
/// a write this nginx recorded since it was read, or a decision that writes (a
/// touch, a renewal, an expiry, a refused address...). The session's data
/// is left in `SCRATCH`.
fn near_hit(
    lc: &LocConf,
    main: &MainConf,
    id: SessionId,
    presented: Presented,
    facts: &Facts<'_>,
) -> Option<sessions_core::Outcome> {
    let (rec, data, generation) = park::near_session(&id)?;
    // A write this nginx recorded for Redis since the copy was read (a
    // logout, a login, data, on any worker) voids it: it may have reached
    // Redis before Redis's push reached this worker. (A write pending at the
    // read was never kept.)
    if main
        .journal
        .as_ref()
        .is_some_and(|j| j.with(|j| j.generation()) != generation)
    {
        return None;
    }
    let mut view = View::new(facts.now, touch_interval(lc.policy.timeouts.idle));
    view.preload(id, Entry::Live(rec), data, None);
    SCRATCH.with_borrow_mut(|s| {
        let outcome = resolve(&mut view, presented, facts, &lc.policy, &mut s.rng).ok()?;
        if !view.finish().is_empty() {
            return None;
        }
        count(main, &view.events);
        s.data.clear();
        s.data.extend_from_slice(view.data_of(outcome.record.handle));
        Some(outcome)
    })
}

/// Starts a session on this thread for a request that presents none (or
/// a cookie that does not verify): its first write needs no read, so it is
/// recorded in the journal, as a login is, and sent by the flusher while
/// the request is answered. `None` parks it as before: the last answer
/// was not Redis's (down, slow or refusing: the policy then applies as to
/// any request), a secret the flushers
/// do not know (`random`, adopted), or new sessions already holding half
/// the journal (`Journal::record_new`).
fn start_here(
    lc: &LocConf,
    main: &MainConf,
    keys: &Keyring,
    presented: Presented,
    facts: &Facts<'_>,
) -> Option<sessions_core::Outcome> {
    let tag = keys.primary().seal().tag();
    if !park::redis_reached() || !main.redis_seals.iter().any(|s| s.tag() == tag) {
        return None;
    }
    let mut view = View::new(facts.now, touch_interval(lc.policy.timeouts.idle));
    SCRATCH.with_borrow_mut(|s| {
        let outcome = resolve(&mut view, presented, facts, &lc.policy, &mut s.rng).ok()?;
        if !park::record_new(main, &view.finish(), tag, facts.now) {
            return None;
        }
        count(main, &view.events);
        s.data.clear();
        Some(outcome)
    })
}

fn answered(r: &mut Request, lc: &LocConf, main: &MainConf, answer: Answer) -> Status {
    match answer {
        Answer::Resolved {
            outcome,
            data,
            events,
        } => {
            count(main, &events);
            let Some((keys, name)) = lc.keys_and_name(main) else {
                return Status::NGX_ERROR;
            };
            SCRATCH.with_borrow_mut(|s| {
                s.data.clear();
                s.data.extend_from_slice(&data);
            });
            decide::conclude(r, lc, keys, name, &outcome, StoreKind::Redis, 0)
        }
        Answer::NoRandom => {
            ngx_log_error!(
                NGX_LOG_ALERT,
                r.log(),
                "sessions: the system random source failed, request served without a session"
            );
            Status::NGX_DECLINED
        }
        _ => unavailable(r, lc, main),
    }
}

/// Redis cannot answer: 503, or a session in the local zone.
fn unavailable(r: &mut Request, lc: &LocConf, main: &MainConf) -> Status {
    // A logout needs no read: `sessions_logout` ends the session in the
    // journal, whatever the policy.
    if lc.logout {
        return Status::NGX_DECLINED;
    }
    let local = lc.unavailable == Some(Unavailable::Local);
    count(main, &[Event::RedisUnavailable { local }]);
    if !local {
        return HTTPStatus::SERVICE_UNAVAILABLE.into();
    }
    let Some((keys, name)) = lc.keys_and_name(main).or_else(|| lc.local_keys_and_name(main)) else {
        return Status::NGX_DECLINED;
    };
    let presented = cookies::presented(r, keys, name).0;
    // A cookie that is not one of the zone's sessions is a Redis session's:
    // it stays as it is, valid again once Redis is back. The request goes
    // on without a session; a login it needs cannot be checked.
    if let (Presented::Id { id, .. }, Some(table)) = (presented, main.table) {
        if table.with(|t| t.get(&id)).is_none() {
            return if lc.require_login() {
                HTTPStatus::SERVICE_UNAVAILABLE.into()
            } else {
                Status::NGX_DECLINED
            };
        }
    }
    decide::local(r, lc, main, keys, name, presented)
}

fn count(main: &MainConf, events: &[Event]) {
    if let (Some(table), false) = (main.table, events.is_empty()) {
        table.with(|t| events.iter().for_each(|&e| t.count(e)));
    }
}

/// Runs `f` over the store that holds the request's session: the local
/// zone under its lock, or a view of the Redis record whose changes are
/// then sent to Redis (nobody waits for them: a response header filter
/// cannot). `f` gets the worker's random pool and data buffer.
pub fn on_store<R>(
    main: &MainConf,
    lc: &LocConf,
    ctx: &Ctx,
    now: u64,
    f: impl FnOnce(&mut dyn Store, &mut RandomPool, &mut Vec<u8>) -> R,
) -> Option<R> {
    match ctx.store {
        StoreKind::Shm => {
            let table = main.table?;
            return Some(SCRATCH.with_borrow_mut(|s| table.with(|t| f(t, &mut s.rng, &mut s.data))));
        }
        StoreKind::Cookie => return crate::phases::cookie_store::on_session(main, lc, ctx, now, f),
        StoreKind::Redis => {}
    }
    let seal = lc.keys_and_name(main)?.0.primary().seal().clone();
    let mut view = View::new(now, 0);
    let deadline = (ctx.expires_ms != u64::MAX).then_some(ctx.expires_ms);
    view.preload(
        ctx.id,
        Entry::Live(ctx.record),
        ctx.data.as_bytes().to_vec(),
        deadline,
    );
    let result = SCRATCH.with_borrow_mut(|s| f(&mut view, &mut s.rng, &mut s.data));
    count(main, &view.events);
    let writes = view.finish();
    if !writes.is_empty() {
        park::keep(main, writes, seal, now);
    }
    Some(result)
}

/// `sessions_logout` while Redis cannot say what the session is: the
/// presented session is deleted through the journal, at once for this
/// nginx and in Redis when it is back. `false` when that cannot be kept.
pub fn end_presented(r: &Request, lc: &LocConf, main: &MainConf) -> bool {
    let Some((keys, name)) = lc.keys_and_name(main) else {
        return false;
    };
    let (Presented::Id { id, .. }, key) = cookies::presented(r, keys, name) else {
        return true; // no session to end
    };
    let tag = keys.key(usize::from(key)).seal().tag();
    let writes = [sessions_core::stores::redis::view::Write::Delete { id }];
    park::record(main, &writes, tag, crate::clock::now_ms())
}

/// How long a leaving worker waits for the journal to empty: on a
/// graceful stop or reload, and on a fast stop (SIGTERM), after which the
/// master kills workers that are still there at about 1.5 s.
const DRAIN_AT_QUIT: std::time::Duration = std::time::Duration::from_secs(2);
const DRAIN_AT_TERMINATE: std::time::Duration = std::time::Duration::from_millis(1_000);

/// Waits a moment until no write waits for Redis, with one more try for
/// those backing off: the event loop is over, nothing else is served.
pub fn drain_at_exit(main: &MainConf) {
    let Some(j) = main.journal.as_ref() else { return };
    if !park::running() {
        return;
    }
    j.with(|j| j.hurry());
    // SAFETY: a flag nginx sets from its signal handler, read once here.
    let fast = unsafe { nginx_sys::ngx_terminate } != 0;
    let end = std::time::Instant::now() + if fast { DRAIN_AT_TERMINATE } else { DRAIN_AT_QUIT };
    while j.with(|j| !j.is_empty()) && std::time::Instant::now() < end {
        park::submit(Job::Flush);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
