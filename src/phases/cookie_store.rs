//! The access handler's cookie-store path (`sessions_store cookie`): the
//! session is opened from the request's own cookies, checked against the
//! zone's records of ended sessions, decided by the engine as the zone's
//! are, and sealed again into the response's cookies when it changed.

use nginx_sys::{ngx_str_t, NGX_LOG_ERR};
use ngx::core::Status;
use ngx::http::Request;
use ngx::ngx_log_error;
use sessions_core::access::admin::AdminRequest;
use sessions_core::engine::store::{Event, Store, StoreKind};
use sessions_core::engine::{AtLimit, Presented};
use sessions_core::stores::cookie::{self as cookie_store, Contents, CookieSession};
use sessions_core::{resolve, stores::zone::revoked, Facts, Keyring, Policy, Record, SessionId, Table};

use crate::config::conf::{LocConf, MainConf};
use crate::nginx::park;
use crate::nginx::request::{self, Ctx};
use crate::phases::cookies::{self, with_sealers, SCRATCH};
use crate::phases::decide;
use crate::phases::store::{SessionStore, Work};

/// Keeps the sessions a request ended dead and its logged-in session
/// listed (see `revoked`), and counts what happened. `resealed`: the
/// session's cookie is sent again. `unsent`: a session this request started,
/// whose cookie never left nginx, so nothing needs to keep it dead.
/// Returns the records made, to share.
fn settle(
    t: &mut Table<'_>,
    s: &CookieSession<'_>,
    policy: &Policy,
    ended: &Record,
    resealed: bool,
    now: u64,
    unsent: Option<SessionId>,
) -> Vec<revoked::SharedRecord> {
    for &e in s.events() {
        t.count(e);
    }
    let mut made = Vec::new();
    // A session that was logged in, or whose end is a login (its old id),
    // protects a user: its record is protected too.
    let logged_in = ended.user().is_some() || s.current_session().is_some_and(|(_, r)| r.user().is_some());
    for &id in s.ended().iter().filter(|&&id| Some(id) != unsent) {
        let until = revoked::copies_end(policy, ended, now);
        revoked::end(t, id, until, now, logged_in, &mut made);
    }
    if let (Some((id, rec)), true) = (s.current_session(), resealed) {
        if rec.user().is_some() {
            let deadline = policy.timeouts_for(&rec).deadline(rec.times());
            revoked::index(t, id, &rec, deadline, now);
        }
    }
    keep_within_limit(t, s, policy, now, &mut made);
    made
}

/// `sessions_max_per_user` after a login: the user's sessions this nginx
/// lists (the login among them) beyond the limit end, oldest first, or with
/// `refuse` newest first (the login itself).
fn keep_within_limit(
    t: &mut Table<'_>,
    s: &CookieSession<'_>,
    policy: &Policy,
    now: u64,
    made: &mut Vec<revoked::SharedRecord>,
) {
    let (Some(limit), Some((_, rec))) = (policy.per_user, s.current_session()) else {
        return;
    };
    let (Some(user), true) = (rec.user(), s.events().contains(&Event::Login)) else {
        return;
    };
    for (id, old) in limit.excess(t.sessions_of(user), |id| id.0) {
        revoked::end(t, id, revoked::copies_end(policy, &old, now), now, true, made);
        // With `refuse` those ended are the newest: logins refused.
        t.count(match limit.at_limit {
            AtLimit::Refuse => Event::LimitRefused,
            AtLimit::EndOldest => Event::LimitEnded,
        });
    }
}

/// The cookie store: the whole session sealed in the response's cookies.
pub struct Cookie;

impl SessionStore for Cookie {
    fn kind(&self) -> StoreKind {
        StoreKind::Cookie
    }

    fn access(&self, r: &mut Request, lc: &LocConf, main: &MainConf) -> Status {
        let Some((keys, name)) = lc.keys_and_name(main) else {
            return Status::NGX_DECLINED;
        };
        access(r, lc, main, keys, name)
    }

    /// The session opened from the context; the ids it ends are recorded
    /// in the zone (and shared).
    fn with_session(&self, main: &MainConf, lc: &LocConf, ctx: &Ctx, now: u64, f: Work<'_>) -> bool {
        let Some(table) = main.table else { return false };
        let contents = Contents {
            id: ctx.id,
            record: ctx.record,
            data: ctx.data.as_bytes().to_vec(),
        };
        let mut session = CookieSession::new(&lc.policy, Some(contents), lc.cookie_max_data());
        SCRATCH.with_borrow_mut(|s| f(&mut session, &mut s.rng, &mut s.data));
        let resealed = session.needs_cookie(false);
        let unsent = (ctx.status == sessions_core::Status::New && !ctx.cookie_sent).then_some(ctx.id);
        let made = table.with(|t| settle(t, &session, &lc.policy, &ctx.record, resealed, now, unsent));
        if let Some((keys, _)) = lc.keys_and_name(main) {
            park::share(main, keys, &made, now);
        }
        true
    }

    fn session_cookie(
        &self,
        r: &mut Request,
        lc: &LocConf,
        keys: &Keyring,
        name: &[u8],
        ctx: &Ctx,
    ) -> Option<ngx_str_t> {
        cookies::sealed_cookie(r, lc, keys, name, ctx)
    }

    fn deleted_cookie(&self, r: &mut Request, lc: &LocConf, name: &[u8], chunks: u8) -> Option<ngx_str_t> {
        cookies::deleted_sealed_cookies(r, lc, name, chunks)
    }

    /// The cookie carries the data: it is sealed again.
    fn data_changed(&self, r: &mut Request, lc: &LocConf, main: &MainConf, ctx: &mut Ctx) -> Option<()> {
        let (keys, name) = lc.keys_and_name(main)?;
        ctx.set_cookie = self.session_cookie(r, lc, keys, name, ctx)?;
        ctx.cookie_sent = false;
        Some(())
    }

    fn data_full(&self, r: &Request, lc: &LocConf) {
        ngx_log_error!(
            NGX_LOG_ERR,
            r.log(),
            "sessions: session data would pass \"sessions_cookie_max_data\" ({} bytes); \
             not stored, the session is kept",
            lc.cookie_max_data()
        );
    }

    /// Cookie-store sessions cannot be taken back: records in the zone end
    /// them (see `revoked`).
    fn admin(&self, r: &mut Request, lc: &LocConf, main: &MainConf, req: AdminRequest) -> Status {
        decide::admin_on_table(r, lc, main, req)
    }

    fn revoke_unanswered(&self, r: &Request, lc: &LocConf, main: &MainConf, req: AdminRequest) {
        decide::revoke_on_table(r, lc, main, req);
    }
}

fn access(r: &mut Request, lc: &LocConf, main: &MainConf, keys: &Keyring, name: &[u8]) -> Status {
    let Some(table) = main.table else {
        return Status::NGX_DECLINED;
    };
    let gathered = cookie_store::gather(request::cookie_headers(r), name);
    let owner = cookies::owner(keys, name);
    let opened = with_sealers(keys, name, |sealers| {
        SCRATCH.with_borrow_mut(|s| gathered.open_cached(&mut s.opened, owner, sealers, name).ok())
    });
    let presented = match &opened {
        Some((c, key)) => Presented::Id {
            id: c.id,
            stale_key: *key != 0,
        },
        None if gathered.firsts.is_empty() => Presented::Nothing,
        None => Presented::Invalid,
    };
    let (now, ip, ip_len, ua) = cookies::facts(r);
    let facts = Facts {
        now,
        ip: &ip[..ip_len],
        ua,
    };
    let policy = &lc.policy;
    let decided = SCRATCH.with_borrow_mut(|s| {
        s.data.clear();
        table.with(|t| {
            let (opened, ended) = match opened.map(|(c, _)| c) {
                Some(c) if revoked::is_revoked(t, &c.id, &c.record) => (None, c.record.user().map(|_| c.id)),
                opened => (opened, None),
            };
            let before = opened.as_ref().map_or(Record::EMPTY, |c| c.record);
            let mut session = CookieSession::new(policy, opened, lc.cookie_max_data());
            if let Some(id) = ended {
                session.end_presented(id);
            }
            let mut o = resolve(&mut session, presented, &facts, policy, &mut s.rng)?;
            o.id = session.id().unwrap_or(o.id);
            let issue = session.needs_cookie(o.issue_cookie);
            let made = settle(t, &session, policy, &before, issue, now, None);
            session.read_data(&o.record, &mut s.data);
            o.issue_cookie = issue;
            Ok((o, made))
        })
    });
    let decided = decided.map(|(o, made)| {
        park::share(main, keys, &made, now);
        o
    });
    let chunks = u8::try_from(gathered.present).unwrap_or(u8::MAX);
    decide::conclude_or_serve(r, lc, keys, name, decided, &Cookie, chunks)
}
