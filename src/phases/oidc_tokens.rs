//! The tokens of a session logged in through an OpenID Provider, kept
//! sealed in a cookie of their own (`sessions_core::access::oidc_tokens`):
//! made at the callback (`keep`); in the access phase refreshed before the
//! access token expires, one refresh per session at a time (`on_request`,
//! then `refreshed` with the side-car's answer), and forwarded as
//! `Authorization: Bearer` with `sessions_oidc_forward_token on`; the ID
//! token handed to the provider's logout as a hint (`id_token_hint`).

use nginx_sys::{NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_WARN};
use ngx::core::Status;
use ngx::http::{HTTPStatus, HttpModuleMainConf, Request};
use ngx::ngx_log_error;
use sessions_core::access::oidc::loggable;
use sessions_core::access::oidc_tokens::{self as tokens, Tokens};
use sessions_core::codec::cookie::cookie_pairs;
use sessions_core::engine::store::OidcOutcome;
use sessions_core::stores::zone::revoked;
use sessions_sidecar::oidc::{OidcError, Refreshed};
use sessions_sidecar::{Answer, OidcAnswer, OidcCall};

use crate::config::conf::{LocConf, MainConf};
use crate::config::module::Module;
use crate::nginx::park::Wake;
use crate::nginx::request::{self, Ctx};
use crate::phases::cookies::SCRATCH;
use crate::phases::oidc::{ask_provider, count, provider, set_login_cookie};
use crate::phases::store::SessionStore;

/// Seals `t` for `ctx`'s session (its handle, the user `user`) into the
/// tokens cookie of the response, kept by the browser as long as the
/// session cookie. Tokens too large for a cookie are not kept: the
/// session goes on without forwarding or refresh, logged.
pub fn keep(
    r: &mut Request,
    lc: &LocConf,
    main: &MainConf,
    ctx: &Ctx,
    user: &[u8],
    t: &Tokens,
) -> Option<()> {
    let (keys, name) = lc.keys_and_name(main)?;
    let cookie = tokens::cookie_name(name);
    let sealed = SCRATCH.with_borrow_mut(|s| tokens::seal(keys, &cookie, &ctx.handle, user, t, &mut s.rng));
    match sealed {
        Ok(Some(value)) => {
            let max_age = crate::phases::cookies::max_age(lc, &ctx.record);
            set_login_cookie(r, lc, &cookie, &value, max_age)
        }
        Ok(None) => {
            ngx_log_error!(
                NGX_LOG_WARN,
                r.log(),
                "sessions: the OpenID Provider's tokens do not fit in a cookie (or are not tokens); the session goes on without them"
            );
            set_login_cookie(r, lc, &cookie, b"", Some(0))
        }
        Err(_) => {
            ngx_log_error!(
                NGX_LOG_ERR,
                r.log(),
                "sessions: the system random source failed; tokens not kept"
            );
            None
        }
    }
}

/// The tokens of a login's answer, issued `now`.
pub fn issued(
    access: String,
    refresh: Option<String>,
    id_token: Option<String>,
    expires_in: Option<std::time::Duration>,
    now: u64,
) -> Tokens {
    Tokens {
        access: access.into_bytes(),
        refresh: refresh.unwrap_or_default().into_bytes(),
        id_token: id_token.unwrap_or_default().into_bytes(),
        issued: now,
        expires: expires_in.map_or(0, |d| now.saturating_add(d.as_millis() as u64)),
    }
}

/// What the request's tokens cookie holds for `ctx`'s logged-in session:
/// `None` without one, `Some(None)` for one that does not open (another
/// session's, altered).
fn current(r: &Request, lc: &LocConf, main: &MainConf, ctx: &Ctx) -> Option<Option<Tokens>> {
    let (keys, name) = lc.keys_and_name(main)?;
    let cookie = tokens::cookie_name(name);
    let user = ctx.user.as_bytes();
    let mut found = None;
    for value in tokens_values(r, name) {
        let opened = tokens::open(keys, &cookie, &ctx.handle, user, value);
        if opened.is_some() {
            return Some(opened);
        }
        found = Some(None);
    }
    found
}

/// Whether the request's tokens cookie says in clear that a refresh is
/// due: `None` without one, `Some(None)` for a value that is not one.
fn clear_due(r: &Request, lc: &LocConf, main: &MainConf) -> Option<Option<bool>> {
    let (_, name) = lc.keys_and_name(main)?;
    let value = tokens_values(r, name).next()?;
    Some(tokens::value_due(value, crate::clock::now_ms()))
}

/// The values of the request's tokens cookies of session cookie `name`.
fn tokens_values<'a>(r: &'a Request, name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    request::cookie_headers(r)
        .flat_map(cookie_pairs)
        .filter(move |(k, _)| tokens::is_tokens_cookie(name, k))
        .map(|(_, v)| v)
}

/// The ID token kept for `ctx`'s session, to end its login at the provider.
pub fn id_token_hint(r: &Request, lc: &LocConf, main: &MainConf, ctx: &Ctx) -> Option<String> {
    let t = current(r, lc, main, ctx)??;
    (!t.id_token.is_empty()).then(|| String::from_utf8_lossy(&t.id_token).into_owned())
}

/// Deletes the tokens cookie (the session it was for ended).
pub fn forget(r: &mut Request, lc: &LocConf, main: &MainConf) -> Option<()> {
    let (_, name) = lc.keys_and_name(main)?;
    set_login_cookie(r, lc, &tokens::cookie_name(name), b"", Some(0))
}

/// The access phase, for a logged-in session at a location with an
/// OpenID Provider: refreshes its tokens when due (parking the request:
/// the phase runs again with `refreshed`), else forwards them.
pub fn on_request(r: &mut Request, lc: &LocConf, main: &MainConf) -> Status {
    let Some(ctx) = request::ctx(r).copied() else {
        return Status::NGX_ERROR;
    };
    // Without forwarding, the tokens are opened only when a refresh is due
    // (their cookie says when in clear): most requests decrypt nothing.
    if !lc.oidc.forwards_token() {
        match clear_due(r, lc, main) {
            None => return Status::NGX_DECLINED,
            Some(Some(false)) => return forward(r, lc, main, None),
            Some(_) => {}
        }
    }
    let held = match current(r, lc, main, &ctx) {
        Some(Some(t)) => Some(t),
        Some(None) => {
            // Another session's, or altered: of no use, and never again.
            if forget(r, lc, main).is_none() {
                return Status::NGX_ERROR;
            }
            None
        }
        None => None,
    };
    if let (Some(t), Some((i, settings))) = (&held, provider(lc, main)) {
        let now = crate::clock::now_ms();
        let patience = sessions_sidecar::oidc_patience(settings).as_millis() as u64;
        if t.refresh_due(now) && take_lock(main, &ctx, now, patience) {
            let call = OidcCall::Refresh {
                refresh_token: String::from_utf8_lossy(&t.refresh).into_owned(),
                user: String::from_utf8_lossy(ctx.user.as_bytes()).into_owned(),
                handle: ctx.handle.0,
                lock_ms: patience,
            };
            if ask_provider(r, (i, settings), call, None, "token refresh skipped") {
                return Status::NGX_AGAIN;
            }
        }
    }
    forward(r, lc, main, held.as_ref())
}

/// Whether this worker may refresh `ctx`'s session now: no worker of this
/// nginx did in the last `ms` (the lock stays after a refresh, so that
/// requests still carrying the old tokens do not refresh them again).
fn take_lock(main: &MainConf, ctx: &Ctx, now: u64, ms: u64) -> bool {
    let Some(table) = main.table else {
        return true;
    };
    let key = revoked::refresh_lock_key(&ctx.handle);
    // A lock, not a revocation: not shared with other instances (Redis
    // locks across instances, in the side-car).
    let mut unshared = Vec::new();
    table.with(|t| revoked::first_use(t, key, now + ms, now, &mut unshared))
}

/// The access phase again, with the side-car's answer to a refresh: the
/// new tokens kept and forwarded; refused, the session ended; not
/// answered, the tokens held forwarded and the refresh tried again later.
/// `store`: the session's.
pub fn refreshed(r: &mut Request, lc: &LocConf, wake: Wake, store: &'static dyn SessionStore) -> Status {
    let (Some(main), Some(ctx)) = (Module::main_conf(r), request::ctx(r).copied()) else {
        return Status::NGX_ERROR;
    };
    let held = current(r, lc, main, &ctx).flatten();
    let now = crate::clock::now_ms();
    match wake {
        Wake::Answer(Answer::Oidc(Ok(OidcAnswer::Refreshed(fresh)))) => {
            let t = renewed(fresh, held.as_ref(), now);
            if keep(r, lc, main, &ctx, ctx.user.as_bytes(), &t).is_none() {
                return Status::NGX_ERROR;
            }
            count(r, OidcOutcome::Refreshed);
            ngx_log_error!(NGX_LOG_INFO, r.log(), "sessions: OpenID Connect tokens refreshed");
            forward(r, lc, main, Some(&t))
        }
        Wake::Answer(Answer::Oidc(Ok(OidcAnswer::RefreshBusy))) => forward(r, lc, main, held.as_ref()),
        Wake::Answer(Answer::Oidc(Err(
            e @ (OidcError::RefreshRefused(_) | OidcError::Token(_) | OidcError::NoUser(_)),
        ))) => {
            count(r, OidcOutcome::RefreshRefused);
            let e = loggable(&e.to_string());
            ngx_log_error!(
                NGX_LOG_ERR,
                r.log(),
                "sessions: OpenID Connect token refresh refused, session ended: {e}"
            );
            end_session(r, (lc, main), ctx, store)
        }
        other => {
            count(r, OidcOutcome::RefreshFailed);
            let why = match other {
                Wake::Answer(Answer::Oidc(Err(e))) => loggable(&e.to_string()),
                _ => "no answer in time".into(),
            };
            ngx_log_error!(
                NGX_LOG_ERR,
                r.log(),
                "sessions: OpenID Connect token refresh failed, tried again later: {why}"
            );
            forward(r, lc, main, held.as_ref())
        }
    }
}

/// The tokens after a refresh: what the provider sent, the refresh and ID
/// tokens held when it sent none.
fn renewed(fresh: Refreshed, held: Option<&Tokens>, now: u64) -> Tokens {
    let mut t = issued(
        fresh.access_token,
        fresh.refresh_token,
        fresh.id_token,
        fresh.expires_in,
        now,
    );
    if let Some(h) = held {
        if t.refresh.is_empty() {
            t.refresh.clone_from(&h.refresh);
        }
        if t.id_token.is_empty() {
            t.id_token.clone_from(&h.id_token);
        }
    }
    t
}

/// The upstream's `Authorization: Bearer` (with `sessions_oidc_forward_token
/// on`: never the client's own); the tokens cookie goes upstream as the
/// session cookie does (not with `sessions_pass_cookie off`).
fn forward(r: &mut Request, lc: &LocConf, main: &MainConf, t: Option<&Tokens>) -> Status {
    if lc.oidc.forwards_token() {
        let bearer = t.map(|t| [b"Bearer ", t.access.as_slice()].concat());
        if request::set_authorization(r, bearer.as_deref()).is_none() {
            return Status::NGX_ERROR;
        }
    }
    if lc.pass_cookie() {
        return Status::NGX_DECLINED;
    }
    if let Some((_, name)) = lc.keys_and_name(main) {
        if crate::phases::cookies::strip_cookie(r, &tokens::cookie_name(name)).is_none() {
            return Status::NGX_ERROR;
        }
    }
    Status::NGX_DECLINED
}

/// A refused refresh: the session ends here as at a logout, its cookies
/// deleted. Behind the gate a script gets 401 and a browser goes to the
/// same URL again, where the gate begins a new login; elsewhere the
/// request goes on without a login.
fn end_session(
    r: &mut Request,
    (lc, main): (&LocConf, &MainConf),
    ctx: Ctx,
    store: &'static dyn SessionStore,
) -> Status {
    if store.end(r, lc, main, ctx).is_none() || forget(r, lc, main).is_none() {
        return Status::NGX_ERROR;
    }
    if !lc.require_login() {
        return forward(r, lc, main, None);
    }
    if request::wants_401(r) {
        return HTTPStatus::UNAUTHORIZED.into();
    }
    let https = request::client_https(r, lc.trusted_proxies());
    let again = request::original_url(r, https);
    request::redirect(r, &again)
}
