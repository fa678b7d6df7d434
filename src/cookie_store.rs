//! The access handler's cookie-store path (`sessions_store cookie`): the
//! session is opened from the request's own cookies, checked against the
//! zone's records of ended sessions, decided by the engine as the zone's
//! are, and sealed again into the response's cookies when it changed.

use std::cell::RefCell;
use std::ptr;

use nginx_sys::{NGX_LOG_ALERT, NGX_LOG_ERR};
use ngx::core::Status;
use ngx::http::Request;
use ngx::ngx_log_error;
use sessions_core::cookie::Owner;
use sessions_core::cookie_store::{self, Contents, CookieResult, CookieSealer, CookieSession, SealError};
use sessions_core::engine::Presented;
use sessions_core::id::RandomPool;
use sessions_core::store::{Store, StoreKind};
use sessions_core::{resolve, revoked, Facts, Keyring, Policy, Record, Table};

use crate::conf::{LocConf, MainConf};
use crate::handler::{self, SCRATCH};
use crate::request::{self, Ctx};

thread_local! {
    /// The sealing keys of the last (secret, name) used: derived once, not
    /// per request (HKDF costs more than the whole decision).
    static SEALERS: RefCell<Option<(Owner, Vec<CookieSealer>)>> = const { RefCell::new(None) };
}

/// Runs `f` with the sealers of `keys` (the signing key's first) for `name`.
fn with_sealers<R>(keys: &Keyring, name: &[u8], f: impl FnOnce(&[CookieSealer]) -> R) -> R {
    let owner = Owner {
        keys: ptr::from_ref(keys).addr(),
        name: name.as_ptr().addr(),
        name_len: name.len(),
    };
    SEALERS.with_borrow_mut(|cache| {
        if cache.as_ref().is_none_or(|(o, _)| *o != owner) {
            let sealers = keys.iter().map(|k| k.cookie_sealer(name)).collect();
            *cache = Some((owner, sealers));
        }
        f(&cache.as_ref().expect("just set").1)
    })
}

/// When a copy of a session's cookie stops opening by itself: after that
/// no record is needed to keep it dead.
fn lifetime_end(policy: &Policy, rec: &Record) -> u64 {
    policy.timeouts_for(rec).deadline(rec.times()).unwrap_or(u64::MAX)
}

/// Keeps the sessions a request ended dead and its logged-in session
/// listed (see `revoked`), and counts what happened. `resealed`: the
/// session's cookie is sent again.
fn settle(
    t: &mut Table<'_>,
    s: &CookieSession<'_>,
    policy: &Policy,
    ended: &Record,
    resealed: bool,
    now: u64,
) {
    for &e in s.events() {
        t.count(e);
    }
    for &id in s.ended() {
        revoked::end(t, id, lifetime_end(policy, ended), now);
    }
    if let (Some((id, rec)), true) = (s.current_session(), resealed) {
        if rec.user().is_some() {
            let deadline = policy.timeouts_for(&rec).deadline(rec.times());
            revoked::index(t, id, &rec, deadline, now);
        }
    }
}

pub fn access(r: &mut Request, lc: &LocConf, main: &MainConf, keys: &Keyring, name: &[u8]) -> Status {
    let Some(table) = main.table else {
        return Status::NGX_DECLINED;
    };
    let gathered = cookie_store::gather(request::cookie_headers(r), name);
    let opened = with_sealers(keys, name, |s| gathered.open(s, name).ok());
    let presented = match &opened {
        Some((c, key)) => Presented::Id {
            id: c.id,
            stale_key: *key != 0,
        },
        None if gathered.firsts.is_empty() => Presented::Nothing,
        None => Presented::Invalid,
    };
    let (now, ip, ip_len, ua) = handler::facts(r);
    let facts = Facts {
        now,
        ip: &ip[..ip_len],
        ua,
    };
    let policy = &lc.policy;
    let decided = SCRATCH.with_borrow_mut(|s| {
        s.data.clear();
        table.with(|t| {
            let opened = opened
                .map(|(c, _)| c)
                .filter(|c| !revoked::is_revoked(t, &c.id, &c.record));
            let before = opened.as_ref().map_or(Record::EMPTY, |c| c.record);
            let mut session = CookieSession::new(policy, opened, lc.cookie_max_data());
            let mut o = resolve(&mut session, presented, &facts, policy, &mut s.rng)?;
            o.id = session.id().unwrap_or(o.id);
            let issue = matches!(session.result(o.issue_cookie), CookieResult::Seal(_));
            settle(t, &session, policy, &before, issue, now);
            session.read_data(&o.record, &mut s.data);
            Ok::<_, sessions_core::id::RandomError>((o, issue))
        })
    });
    match decided {
        Ok((mut o, issue)) => {
            o.issue_cookie = issue;
            let chunks = u8::try_from(gathered.present).unwrap_or(u8::MAX);
            handler::conclude(r, lc, keys, name, &o, StoreKind::Cookie, chunks)
        }
        Err(e) => {
            ngx_log_error!(
                NGX_LOG_ALERT,
                r.log(),
                "sessions: {e}, request served without a session"
            );
            Status::NGX_DECLINED
        }
    }
}

/// Runs `f` over the request's cookie-store session (as `remote::on_store`
/// does for the other stores); the ids it ends are recorded in the zone.
pub fn on_session<R>(
    main: &MainConf,
    lc: &LocConf,
    ctx: &Ctx,
    now: u64,
    f: impl FnOnce(&mut dyn Store, &mut RandomPool, &mut Vec<u8>) -> R,
) -> Option<R> {
    let table = main.table?;
    let contents = Contents {
        id: ctx.id,
        record: ctx.record,
        data: ctx.data.as_bytes().to_vec(),
    };
    let mut session = CookieSession::new(&lc.policy, Some(contents), lc.cookie_max_data());
    let result = SCRATCH.with_borrow_mut(|s| f(&mut session, &mut s.rng, &mut s.data));
    let resealed = matches!(session.result(false), CookieResult::Seal(_));
    table.with(|t| settle(t, &session, &lc.policy, &ctx.record, resealed, now));
    Some(result)
}

/// The `Set-Cookie` values (one per line) that carry session `id` with
/// `rec` and `data`, and delete the chunks beyond them among the `present`
/// ones the request carried.
#[allow(clippy::too_many_arguments)]
pub fn set_cookies(
    r: &Request,
    lc: &LocConf,
    keys: &Keyring,
    name: &[u8],
    c: &Contents,
    present: u8,
    https: bool,
    max_age: Option<u64>,
    rng: &mut RandomPool,
    out: &mut Vec<u8>,
) -> bool {
    let sealed = with_sealers(keys, name, |s| {
        cookie_store::set_cookies(
            &s[0],
            name,
            c,
            usize::from(present),
            &lc.attrs,
            https,
            max_age,
            rng,
            out,
        )
    });
    match sealed {
        Ok(()) => true,
        Err(SealError::TooLarge) => {
            ngx_log_error!(
                NGX_LOG_ERR,
                r.log(),
                "sessions: the session does not fit in {} cookies; cookie not sent",
                cookie_store::MAX_CHUNKS
            );
            false
        }
        Err(SealError::Random(e)) => {
            ngx_log_error!(NGX_LOG_ALERT, r.log(), "sessions: {e}, cookie not sent");
            false
        }
    }
}

/// The `Set-Cookie` values that delete the session's cookies.
pub fn deleted(name: &[u8], lc: &LocConf, present: u8, https: bool, out: &mut Vec<u8>) {
    cookie_store::delete_cookies(name, usize::from(present), &lc.attrs, https, out);
}
