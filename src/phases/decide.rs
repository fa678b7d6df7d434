//! The decision over the zone, and what every store's path does with a
//! decision: logs, the request context, the cookie, the login gate.

use nginx_sys::{NGX_LOG_ALERT, NGX_LOG_INFO};
use ngx::core::Status;
use ngx::http::{HTTPStatus, Request};
use ngx::ngx_log_error;
use sessions_core::access::admin;
use sessions_core::access::admin::AdminRequest;
use sessions_core::access::gate::login_redirect;
use sessions_core::engine::store::StoreKind;
use sessions_core::engine::Presented;
use sessions_core::primitives::id::RandomError;
use sessions_core::stores::zone::revoked;
use sessions_core::{resolve, Facts, Keyring, Outcome};

use crate::config::conf::{LocConf, MainConf};
use crate::nginx::park;
use crate::nginx::request::{self, Ctx};
use crate::phases::answers;
use crate::phases::cookies::{self, SCRATCH};
use crate::phases::store::{SessionStore, Work};

/// The zone: sessions in shared memory.
pub struct Zone;

impl SessionStore for Zone {
    fn kind(&self) -> StoreKind {
        StoreKind::Shm
    }

    fn access(&self, r: &mut Request, lc: &LocConf, main: &MainConf) -> Status {
        let Some((keys, name)) = lc.keys_and_name(main) else {
            return Status::NGX_DECLINED;
        };
        let presented = cookies::presented(r, keys, name).0;
        local(r, lc, main, keys, name, presented)
    }

    fn with_session(&self, main: &MainConf, _lc: &LocConf, _ctx: &Ctx, _now: u64, f: Work<'_>) -> bool {
        let Some(table) = main.table else { return false };
        SCRATCH.with_borrow_mut(|s| table.with(|t| f(t, &mut s.rng, &mut s.data)));
        true
    }

    fn admin(&self, r: &mut Request, lc: &LocConf, main: &MainConf, req: AdminRequest) -> Status {
        admin_on_table(r, lc, main, req)
    }

    fn revoke_unanswered(&self, r: &Request, lc: &LocConf, main: &MainConf, req: AdminRequest) {
        revoke_on_table(r, lc, main, req);
    }
}

/// Decides the session in the local zone.
pub fn local(
    r: &mut Request,
    lc: &LocConf,
    main: &MainConf,
    keys: &Keyring,
    name: &[u8],
    presented: Presented,
) -> Status {
    let Some(table) = main.table else {
        return Status::NGX_DECLINED;
    };
    let (now, ip, ip_len, ua) = cookies::facts(r);
    let facts = Facts {
        now,
        ip: &ip[..ip_len],
        ua,
    };
    let outcome = SCRATCH.with_borrow_mut(|s| {
        s.data.clear();
        table.with(|t| {
            let o = resolve(t, presented, &facts, &lc.policy, &mut s.rng)?;
            if o.record.has_data() {
                t.read_data(&o.record, &mut s.data);
            }
            Ok::<_, RandomError>(o)
        })
    });
    conclude_or_serve(r, lc, keys, name, outcome, &Zone, 0)
}

/// `conclude`, or the request served without a session when the random
/// source failed and no session could be started.
pub fn conclude_or_serve(
    r: &mut Request,
    lc: &LocConf,
    keys: &Keyring,
    name: &[u8],
    decided: Result<Outcome, RandomError>,
    store: &'static dyn SessionStore,
    chunks: u8,
) -> Status {
    match decided {
        Ok(o) => conclude(r, lc, keys, name, &o, store, chunks),
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

/// Acts on a decision: logs, strips a refused cookie, keeps the context,
/// prepares the cookie, applies the login gate. The session's data is in
/// `SCRATCH.data`; `chunks`: the cookie store's chunk cookies the request
/// carried.
pub fn conclude(
    r: &mut Request,
    lc: &LocConf,
    keys: &Keyring,
    name: &[u8],
    outcome: &Outcome,
    store: &'static dyn SessionStore,
    chunks: u8,
) -> Status {
    let refused = outcome.status.is_refusal();
    if refused {
        ngx_log_error!(
            NGX_LOG_INFO,
            r.log(),
            "sessions: cookie refused ({}), new session started",
            outcome.status.as_str()
        );
    }
    if let Some(tolerated) = outcome.tolerated {
        ngx_log_error!(
            NGX_LOG_INFO,
            r.log(),
            "sessions: {} let through (check in log mode), session kept",
            tolerated.as_str()
        );
    }
    // As BunkerWeb: the upstream never sees a refused session cookie; with
    // `sessions_pass_cookie off`, not even a valid one.
    if (refused || !lc.pass_cookie()) && cookies::strip_session_cookies(r, name, chunks).is_none() {
        return Status::NGX_ERROR;
    }
    if outcome.evicted > 0 {
        ngx_log_error!(
            NGX_LOG_INFO,
            r.log(),
            "sessions: zone is full, evicted {} session(s)",
            outcome.evicted
        );
    }

    let mut ctx = Ctx::new(
        outcome.status,
        outcome.id,
        &outcome.record,
        outcome.deadline.unwrap_or(u64::MAX),
        store.kind(),
    );
    ctx.chunks = chunks;
    if let Some(user) = outcome.record.user() {
        let Some(u) = request::pool_str(r, user) else {
            return Status::NGX_ERROR;
        };
        ctx.user = u;
    }
    if SCRATCH.with_borrow(|s| !s.data.is_empty()) {
        let Some(d) = SCRATCH.with_borrow(|s| request::pool_str(r, &s.data)) else {
            return Status::NGX_ERROR;
        };
        ctx.data = d;
    }
    if outcome.issue_cookie {
        let Some(c) = store.session_cookie(r, lc, keys, name, &ctx) else {
            return Status::NGX_ERROR;
        };
        ctx.set_cookie = c;
    }
    if request::set_ctx(r, ctx).is_none() {
        return Status::NGX_ERROR;
    }
    // The callback and a logout always run: the gate would send them to a login.
    if lc.oidc_callback || lc.logout {
        return Status::NGX_DECLINED;
    }
    if outcome.record.user().is_none() {
        if lc.require_login() {
            return gate(r, lc);
        }
        // Nobody's token to forward: and never the client's own.
        if lc.oidc.forwards_token() && request::set_authorization(r, None).is_none() {
            return Status::NGX_ERROR;
        }
        return Status::NGX_DECLINED;
    }
    match <crate::config::module::Module as ngx::http::HttpModuleMainConf>::main_conf(r) {
        Some(main) if lc.oidc_provider.is_some() => crate::phases::oidc_tokens::on_request(r, lc, main),
        _ => Status::NGX_DECLINED,
    }
}

/// No logged-in session: 401, or a redirect to the login page carrying the
/// original URL; scripts and JSON clients always get 401.
fn gate(r: &mut Request, lc: &LocConf) -> Status {
    let api = request::wants_401(r);
    if lc.oidc_provider.is_some() && !api {
        return crate::phases::oidc::begin(r, lc);
    }
    let Some(Some(url)) = lc.login_url.filter(|_| !api) else {
        return HTTPStatus::UNAUTHORIZED.into();
    };
    let Some(base) = request::evaluate(r, &url) else {
        return Status::NGX_ERROR;
    };
    let https = request::client_https(r, lc.trusted_proxies());
    let target = login_redirect(&base, &request::original_url(r, https));
    request::redirect(r, &target)
}

/// `sessions_admin` over the zone's table: the zone's sessions, and the
/// records that end cookie-store sessions.
pub fn admin_on_table(r: &mut Request, lc: &LocConf, main: &MainConf, req: AdminRequest) -> Status {
    let Some((status, body)) = on_table(r, lc, main, &req) else {
        return HTTPStatus::NOT_FOUND.into();
    };
    if !matches!(req, AdminRequest::List { .. }) {
        ngx_log_error!(
            NGX_LOG_INFO,
            r.log(),
            "sessions: {}: {body}",
            answers::who_revoked(lc)
        );
    }
    answers::send(r, status, &body)
}

/// `X-Session-Logout-Others` with the zone or the cookie store: done at once.
pub fn revoke_on_table(r: &Request, lc: &LocConf, main: &MainConf, req: AdminRequest) {
    if let Some((_, body)) = on_table(r, lc, main, &req) {
        ngx_log_error!(
            NGX_LOG_INFO,
            r.log(),
            "sessions: the application ended the user's other sessions: {body}"
        );
    }
}

/// Carries out `req` on the zone's table; the answer, `None` without a zone.
pub fn on_table(
    r: &Request,
    lc: &LocConf,
    main: &MainConf,
    req: &AdminRequest,
) -> Option<(HTTPStatus, String)> {
    let table = main.table?;
    // Cookie-store sessions cannot be taken back: what ends them is a
    // record kept until they would have expired (see `revoked`). The zone's
    // own sessions are removed, and the record costs them nothing.
    let now = crate::clock::now_ms();
    let policy = &lc.policy;
    let mut made = Vec::new();
    let answer = table.with(|t| match req {
        AdminRequest::List { user } => {
            let sessions = t.sessions_of(user).into_iter().map(|(_, rec)| rec);
            (HTTPStatus::OK, answers::list(r, lc, user, sessions))
        }
        AdminRequest::RevokeUser { user } => {
            let n = revoked::revoke_user(t, user, policy, now, &mut made);
            t.header().stats.logouts += n as u64;
            (HTTPStatus::OK, admin::revoked_json(n))
        }
        AdminRequest::RevokeId { id } => {
            let found = revoked::revoke_handle(t, id, None, policy, now, &mut made);
            if found {
                t.header().stats.logouts += 1;
            }
            answers::revoked_one(found)
        }
        AdminRequest::RevokeOwn { user, id } => {
            let found = revoked::revoke_handle(t, id, Some(user), policy, now, &mut made);
            if found {
                t.header().stats.logouts += 1;
            }
            answers::revoked_one(found)
        }
        AdminRequest::RevokeOthers { user, except } => {
            let n = revoked::revoke_others(t, user, except, policy, now, &mut made);
            t.header().stats.logouts += n as u64;
            (HTTPStatus::OK, admin::revoked_json(n))
        }
    });
    // Shared with the other instances when a cookie-store location says so.
    if let Some((keys, _)) = lc.keys_and_name(main) {
        park::share(main, keys, &made, now);
    }
    Some(answer)
}
