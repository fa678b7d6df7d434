//! Logins through an OpenID Provider (`sessions_oidc_*`), the gate's side:
//! a browser without a logged-in session is sent to the provider (`begin`,
//! then `begun` once the side-car built the URL), with the login cookie
//! `oidc_callback` checks. Calls to the provider run on the worker's
//! side-car; the request waits parked. Nothing here touches the store.

use nginx_sys::NGX_LOG_ERR;
use ngx::core::Status;
use ngx::http::{HTTPStatus, HttpModuleLocationConf, HttpModuleMainConf, Request};
use ngx::ngx_log_error;
use sessions_core::access::oidc::{self as login, LoginState};
use sessions_core::engine::store::{Event, OidcOutcome, Store};
use sessions_sidecar::oidc::{OidcError, OidcSettings};
use sessions_sidecar::{Answer, OidcAnswer, OidcCall};

use crate::config::conf::{LocConf, MainConf};
use crate::config::module::Module;
use crate::nginx::park::{self, Wake};
use crate::nginx::request;
use crate::phases::cookies::SCRATCH;

/// The provider of `lc` and how long a request waits for it.
pub fn provider<'a>(lc: &LocConf, main: &'a MainConf) -> Option<(usize, &'a OidcSettings)> {
    let i = lc.oidc_provider?;
    Some((i, main.oidc.get(i)?))
}

/// The gate, for a browser without a logged-in session: asks the side-car
/// for the provider's authorization URL; the access phase runs again with
/// it (`begun`).
pub fn begin(r: &mut Request, lc: &LocConf) -> Status {
    let Some(main) = Module::main_conf(r) else {
        return Status::NGX_ERROR;
    };
    let Some((i, settings)) = provider(lc, main) else {
        return HTTPStatus::UNAUTHORIZED.into();
    };
    if !ask_provider(r, (i, settings), OidcCall::Begin, None, "login not begun") {
        return HTTPStatus::SERVICE_UNAVAILABLE.into();
    }
    Status::NGX_AGAIN
}

/// Parks `r` until provider `i` answered `call` (see `park::park_oidc`);
/// `false`, counted and logged as `what`, when the side-car is not
/// running or is saturated: the caller answers 503.
pub fn ask_provider(
    r: &mut Request,
    (i, settings): (usize, &OidcSettings),
    call: OidcCall,
    answered: Option<park::Answered>,
    what: &str,
) -> bool {
    let patience = sessions_sidecar::oidc_patience(settings);
    if park::running() && !park::saturated() && park::park_oidc(r, i, call, patience, answered) {
        return true;
    }
    ngx_log_error!(
        NGX_LOG_ERR,
        r.log(),
        "sessions: OpenID Connect {what}: the side-car is not running or is saturated"
    );
    count(r, OidcOutcome::Busy);
    false
}

/// The access phase again, with the side-car's answer to `begin`: the
/// login cookie set and a redirect to the provider, or 502 / 503.
pub fn begun(r: &mut Request, lc: &LocConf, wake: Wake) -> Status {
    let begin = match wake {
        Wake::Answer(Answer::Oidc(Ok(OidcAnswer::Begun(b)))) => b,
        Wake::Answer(Answer::Oidc(Err(e))) => return failure(r, "login not begun", &e).into(),
        _ => return HTTPStatus::SERVICE_UNAVAILABLE.into(),
    };
    let (Some(main), Some(ctx)) = (Module::main_conf(r), request::ctx(r).copied()) else {
        return Status::NGX_ERROR;
    };
    let Some((keys, name)) = lc.keys_and_name(main) else {
        return HTTPStatus::SERVICE_UNAVAILABLE.into();
    };
    let state = LoginState {
        session: ctx.id,
        expires: crate::clock::now_ms() + login::LOGIN_TTL_MS,
        state: begin.state.into_bytes(),
        nonce: begin.nonce.into_bytes(),
        verifier: begin.verifier.into_bytes(),
        return_to: login::return_to(r.as_ref().unparsed_uri.as_bytes()),
    };
    let Some(cookie_name) = login::login_cookie_name(name, &state.state) else {
        return Status::NGX_ERROR;
    };
    let sealed = SCRATCH.with_borrow_mut(|s| login::seal(keys, &cookie_name, &state, &mut s.rng));
    let Ok(value) = sealed else {
        ngx_log_error!(
            NGX_LOG_ERR,
            r.log(),
            "sessions: the system random source failed; login not begun"
        );
        return Status::NGX_ERROR;
    };
    // Logins begun in other tabs stay, up to `MAX_LOGINS` in all.
    let others: Vec<Vec<u8>> = request::cookie_headers(r)
        .flat_map(sessions_core::codec::cookie::cookie_pairs)
        .filter(|(k, _)| login::is_login_cookie(name, k))
        .map(|(k, _)| k.to_vec())
        .collect();
    if others.len() >= login::MAX_LOGINS {
        for other in &others {
            if set_login_cookie(r, lc, other, b"", Some(0)).is_none() {
                return Status::NGX_ERROR;
            }
        }
    }
    if set_login_cookie(r, lc, &cookie_name, &value, Some(login::LOGIN_TTL_MS / 1000)).is_none() {
        return Status::NGX_ERROR;
    }
    request::redirect(r, begin.url.as_bytes())
}

/// Adds the `Set-Cookie` of the login cookie (`max_age` 0 deletes it),
/// with the session cookie's attributes: it reaches the callback exactly
/// when the session cookie does.
pub fn set_login_cookie(
    r: &mut Request,
    lc: &LocConf,
    name: &[u8],
    value: &[u8],
    max_age: Option<u64>,
) -> Option<()> {
    let https = request::client_https(r, lc.trusted_proxies());
    let mut header = Vec::with_capacity(64 + value.len());
    lc.attrs
        .set_cookie_max_age(name, value, https, max_age, &mut header);
    let v = request::pool_str(r, &header)?;
    request::add_set_cookie(r, v)
}

/// `sessions_logout` with an OpenID Provider, once the session ended here:
/// asks the side-car for the provider's end-session URL, with the
/// session's ID token as a hint when it was kept (`ended` answers);
/// `false` when it cannot be asked (the logout is answered locally).
pub fn end_at_provider(r: &mut Request, lc: &LocConf, id_token_hint: Option<String>) -> bool {
    let Some(main) = Module::main_conf(r) else {
        return false;
    };
    let Some((i, settings)) = provider(lc, main) else {
        return false;
    };
    let call = OidcCall::EndSession {
        post_logout: lc.oidc.post_logout.clone(),
        id_token_hint,
    };
    ask_provider(
        r,
        (i, settings),
        call,
        Some(ended),
        "logout at the provider skipped",
    )
}

/// The end-session URL: the browser is sent there; without one (the
/// provider has no such endpoint, or it failed) the logout is answered here.
fn ended(r: &mut Request, answer: Answer) -> Status {
    match answer {
        Answer::Oidc(Ok(OidcAnswer::EndSession(Some(url)))) => return request::redirect(r, url.as_bytes()),
        Answer::Oidc(Err(e)) => {
            failure(r, "logout at the provider skipped", &e);
        }
        _ => {}
    }
    let Some(lc) = Module::location_conf(r) else {
        return Status::NGX_ERROR;
    };
    crate::phases::answers::logged_out(r, lc)
}

/// Counts how a step of a login or logout ended, for `sessions_status`.
pub fn count(r: &Request, outcome: OidcOutcome) {
    if let Some(table) = Module::main_conf(r).and_then(|m| m.table) {
        table.with(|t| t.count(Event::Oidc(outcome)));
    }
}

/// One log line for a refused callback, and its status: nobody logged in.
pub fn refuse(r: &mut Request, status: HTTPStatus, why: &str) -> Status {
    count(r, OidcOutcome::CallbackRefused);
    ngx_log_error!(
        NGX_LOG_ERR,
        r.log(),
        "sessions: OpenID Connect callback refused: {why}"
    );
    page(r, status)
}

/// The status of a failure of the provider's or of a token, with one log line.
pub fn failure(r: &Request, what: &str, e: &OidcError) -> HTTPStatus {
    let (status, outcome) = match e {
        OidcError::Provider(_) | OidcError::Settings(_) => {
            (HTTPStatus::BAD_GATEWAY, OidcOutcome::ProviderFailed)
        }
        OidcError::CodeRefused(_) => (HTTPStatus::BAD_REQUEST, OidcOutcome::TokenRefused),
        OidcError::RefreshRefused(_) | OidcError::Token(_) | OidcError::NoUser(_) => {
            (HTTPStatus::FORBIDDEN, OidcOutcome::TokenRefused)
        }
    };
    count(r, outcome);
    let e = login::loggable(&e.to_string());
    ngx_log_error!(NGX_LOG_ERR, r.log(), "sessions: OpenID Connect {what}: {e}");
    status
}

/// The module's own short page for a login that failed.
pub fn page(r: &mut Request, status: HTTPStatus) -> Status {
    let text = match status.0 {
        502 => "The identity provider could not be reached or answered wrongly. Try again later.",
        503 => "The login service is busy or not running. Try again later.",
        403 => "The identity provider's answer was refused. You are not logged in.",
        _ => "This login link is not valid (used, expired or from another browser). Start again.",
    };
    let body = format!(
        "<!DOCTYPE html><html><head><title>{code}</title></head><body><h1>Login failed</h1><p>{text}</p></body></html>\n",
        code = status.0
    );
    request::send_body(r, status, "text/html", body.as_bytes())
}
