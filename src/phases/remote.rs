//! The access handler's Redis path: the request is parked while the Redis
//! thread fetches and decides, then resumed to act on the answer exactly
//! as the local path does. Sessions live in Redis; the local zone keeps
//! the counters and, under `sessions_redis_unavailable local`, the
//! sessions started while Redis was unreachable.

use nginx_sys::{NGX_LOG_ALERT, NGX_LOG_ERR, NGX_LOG_INFO};
use ngx::core::Status;
use ngx::http::{HTTPStatus, HttpModuleLocationConf, HttpModuleMainConf, Request};
use ngx::ngx_log_error;
use sessions_core::access::admin::{self, AdminRequest};
use sessions_core::config::redis_conf::Unavailable;
use sessions_core::engine::store::{Event, Store, StoreKind};
use sessions_core::engine::{Presented, Ua};
use sessions_core::model::record::Entry;
use sessions_core::stores::redis::view::{others_key, touch_interval, View, Write};
use sessions_core::{resolve, Facts, Keyring, Record, SessionId};

use crate::config::conf::{LocConf, MainConf};
use crate::config::module::Module;
use crate::nginx::park::{self, Wake};
use crate::nginx::request::{self, Ctx};
use crate::phases::answers;
use crate::phases::cookies::{self, SCRATCH};
use crate::phases::decide;
use crate::phases::store::{SessionStore, Work};
use sessions_sidecar::{Answer, Job, Keys, Lookup};

/// Redis: sessions kept there, decided on the side-car.
pub struct Redis;

impl SessionStore for Redis {
    fn kind(&self) -> StoreKind {
        StoreKind::Redis
    }

    fn access(&self, r: &mut Request, lc: &LocConf, main: &MainConf) -> Status {
        access(r, lc, main)
    }

    /// A view of the Redis record, whose changes are then kept in the
    /// journal and sent to Redis (a response header filter cannot wait).
    fn with_session(&self, main: &MainConf, lc: &LocConf, ctx: &Ctx, now: u64, f: Work<'_>) -> bool {
        let Some((keys, _)) = lc.keys_and_name(main) else {
            return false;
        };
        let seal = keys.primary().seal().clone();
        let mut view = View::new(now, 0);
        let deadline = (ctx.expires_ms != u64::MAX).then_some(ctx.expires_ms);
        view.preload(
            ctx.id,
            Entry::Live(ctx.record),
            ctx.data.as_bytes().to_vec(),
            deadline,
        );
        SCRATCH.with_borrow_mut(|s| f(&mut view, &mut s.rng, &mut s.data));
        count(main, &view.events);
        let writes = view.finish();
        if !writes.is_empty() {
            park::keep(main, writes, seal, now);
        }
        true
    }

    /// The presented session is deleted through the journal, at once for
    /// this nginx and in Redis when it is back.
    fn end_undecided(&self, r: &mut Request, lc: &LocConf, main: &MainConf) -> Result<(), Status> {
        if !lc.enabled() {
            return Ok(());
        }
        if !end_presented(r, lc, main) {
            return Err(HTTPStatus::SERVICE_UNAVAILABLE.into());
        }
        ngx_log_error!(
            NGX_LOG_INFO,
            r.log(),
            "sessions: session ended by logout while Redis is unavailable"
        );
        if let Some((_, name)) = lc.keys_and_name(main) {
            let c = self.deleted_cookie(r, lc, name, 0).ok_or(Status::NGX_ERROR)?;
            request::add_set_cookie(r, c).ok_or(Status::NGX_ERROR)?;
        }
        Ok(())
    }

    fn admin(&self, r: &mut Request, lc: &LocConf, main: &MainConf, req: AdminRequest) -> Status {
        admin_on_redis(r, lc, main, req)
    }

    /// Handed to the side-car, which counts the user's sessions once the
    /// login is in Redis.
    fn after_login(&self, r: &Request, lc: &LocConf, main: &MainConf, id: SessionId, rec: &Record) {
        let (Some(limit), Some(user)) = (lc.policy.per_user, rec.user()) else {
            return;
        };
        let Some((keys, _)) = lc.keys_and_name(main) else {
            return;
        };
        let job = Job::KeepLimit {
            user: user.to_vec(),
            id,
            limit,
            keys: keys.primary().seal().clone(),
        };
        if !park::keep_limit(job) {
            ngx_log_error!(
                NGX_LOG_ERR,
                r.log(),
                "sessions: sessions_max_per_user not kept after a login: the side-car is not available"
            );
        }
    }

    /// Kept in the journal, as a logout is, until Redis has done it.
    fn revoke_unanswered(&self, r: &Request, lc: &LocConf, main: &MainConf, req: AdminRequest) {
        let AdminRequest::RevokeOthers { user, except } = req else {
            return;
        };
        let (Some(ctx), Some((keys, _))) = (request::ctx(r), lc.keys_and_name(main)) else {
            return;
        };
        let rec = ctx.record;
        if rec.user() != Some(&user[..]) || rec.handle != except {
            return;
        }
        let write = Write::EndOthers {
            key: others_key(&except),
            rec,
        };
        park::keep(
            main,
            vec![write],
            keys.primary().seal().clone(),
            crate::clock::now_ms(),
        );
        ngx_log_error!(
            NGX_LOG_INFO,
            r.log(),
            "sessions: the application ended the user's other sessions (kept until Redis has done it)"
        );
    }
}

fn access(r: &mut Request, lc: &LocConf, main: &MainConf) -> Status {
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
        return decide::conclude(r, lc, keys, name, &outcome, &Redis, 0);
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
        // The side-car gets the values, not the header.
        ua: Ua::known(request::user_agent(r)),
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
            decide::conclude(r, lc, keys, name, &outcome, &Redis, 0)
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

/// `sessions_logout` while Redis cannot say what the session is: the
/// presented session is deleted through the journal, at once for this
/// nginx and in Redis when it is back. `false` when that cannot be kept.
fn end_presented(r: &Request, lc: &LocConf, main: &MainConf) -> bool {
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
    let fast = park::terminating();
    let end = std::time::Instant::now() + if fast { DRAIN_AT_TERMINATE } else { DRAIN_AT_QUIT };
    while j.with(|j| !j.is_empty()) && std::time::Instant::now() < end {
        park::submit(Job::Flush);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// With `sessions_store redis` the request goes to the Redis thread. Only
/// logged-in sessions are found: they are the ones listed in a user's
/// index (a Redis record opens only with its session's cookie).
fn admin_on_redis(r: &mut Request, lc: &LocConf, main: &MainConf, req: AdminRequest) -> Status {
    let job = redis_job(lc, main, req)
        .filter(|_| crate::nginx::park::running() && !crate::nginx::park::saturated());
    let Some(job) = job else {
        return answers::unavailable(r);
    };
    if crate::nginx::park::park_admin(r, job, admin_answered) {
        Status::NGX_DONE
    } else {
        Status::NGX_ERROR
    }
}

/// The side-car's job for an admin request; `None` while the secret is not known.
fn redis_job(lc: &LocConf, main: &MainConf, req: AdminRequest) -> Option<Job> {
    let keys = lc.keys_and_name(main)?.0.primary().seal().clone();
    Some(match req {
        AdminRequest::List { user } => Job::List { user, keys },
        AdminRequest::RevokeUser { user } => Job::Revoke { user, keys },
        AdminRequest::RevokeId { id } => Job::RevokeHandle {
            handle: id,
            user: None,
            keys,
        },
        AdminRequest::RevokeOwn { user, id } => Job::RevokeHandle {
            handle: id,
            user: Some(user),
            keys,
        },
        AdminRequest::RevokeOthers { user, except } => Job::RevokeOthers { user, except, keys },
    })
}

/// Sends the Redis thread's answer to a parked admin request.
pub fn admin_answered(r: &mut Request, answer: Answer) -> Status {
    let (status, body, revoked) = match answer {
        Answer::Listed { user, sessions } => match Module::location_conf(r) {
            Some(lc) => (
                HTTPStatus::OK,
                answers::list(r, lc, &user, sessions.into_iter()),
                None,
            ),
            None => return HTTPStatus::NOT_FOUND.into(),
        },
        Answer::Revoked(n) => (HTTPStatus::OK, admin::revoked_json(n), Some(n)),
        Answer::RevokedOne(found) => {
            let (status, body) = answers::revoked_one(found);
            (status, body, Some(usize::from(found)))
        }
        _ => return answers::unavailable(r),
    };
    if let Some(n) = revoked {
        if let Some(table) = Module::main_conf(r).and_then(|m| m.table) {
            table.with(|t| t.header().stats.logouts += n as u64);
        }
        let who = Module::location_conf(r).map_or("admin revocation", answers::who_revoked);
        ngx_log_error!(NGX_LOG_INFO, r.log(), "sessions: {who} in Redis: {body}");
    }
    answers::send(r, status, &body)
}
