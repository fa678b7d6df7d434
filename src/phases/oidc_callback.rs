//! The provider calling back. `sessions_oidc_callback`: its answer to a
//! login `oidc` began (`callback`, checked against the login cookie), the
//! code exchanged on the side-car, then the session logged in under a new
//! id (`finished`). `sessions_oidc_backchannel_logout`: its logout token
//! checked on the side-car, then the user's sessions ended through the
//! store's revocation (`logout_token_checked`).

use nginx_sys::{NGX_LOG_ERR, NGX_LOG_INFO};
use ngx::core::Status;
use ngx::http::{HTTPStatus, HttpModuleLocationConf, HttpModuleMainConf, Request};
use ngx::ngx_log_error;
use sessions_core::access::oidc::{self as login, LoginRefused, LoginState};
use sessions_core::codec::cookie::cookie_values;
use sessions_core::{apply, Control, ControlError};
use sessions_sidecar::{Answer, OidcAnswer, OidcCall};

use crate::config::conf::{LocConf, MainConf};
use crate::config::module::Module;
use crate::nginx::request;
use crate::phases::access::store_of;
use crate::phases::oidc::{ask_provider, count, failure, page, provider, refuse, set_login_cookie};
use sessions_core::engine::store::OidcOutcome;
use sessions_core::stores::zone::revoked;
use sessions_sidecar::oidc::OidcSettings;

/// The login cookie of the login whose state is `state`, opened, and its name.
fn login_state(
    r: &Request,
    lc: &LocConf,
    main: &MainConf,
    state: &[u8],
) -> Result<(LoginState, Vec<u8>), LoginRefused> {
    let (keys, name) = lc.keys_and_name(main).ok_or(LoginRefused::Unsealed)?;
    let cookie_name = login::login_cookie_name(name, state).ok_or(LoginRefused::StateMismatch)?;
    let mut values = request::cookie_headers(r).flat_map(|h| cookie_values(h, &cookie_name));
    let Some(value) = values.next() else {
        // Logins under way, but none with this state: a forged or stale state.
        let others = request::cookie_headers(r)
            .flat_map(sessions_core::codec::cookie::cookie_pairs)
            .any(|(k, _)| login::is_login_cookie(name, k));
        return Err(if others {
            LoginRefused::StateMismatch
        } else {
            LoginRefused::Unsealed
        });
    };
    let opened = login::open(keys, &cookie_name, value)?;
    drop(values);
    Ok((opened, cookie_name))
}

/// The callback's `state` parameter, as sent.
fn query_state(r: &Request) -> Vec<u8> {
    login::callback(r.as_ref().args.as_bytes())
        .and_then(|q| q.state)
        .unwrap_or_default()
        .into_bytes()
}

/// `sessions_oidc_callback`: checks the login the provider sends back
/// (`state` against the login cookie of this very session), then has the
/// side-car exchange the code; `finished` answers.
fn callback(r: &mut Request) -> Status {
    let discard = r.discard_request_body();
    if !discard.is_ok() {
        return discard;
    }
    let (Some(lc), Some(main)) = (Module::location_conf(r), Module::main_conf(r)) else {
        return Status::NGX_ERROR;
    };
    let Some(ctx) = request::ctx(r).copied() else {
        return refuse(r, HTTPStatus::BAD_REQUEST, "callback without a session");
    };
    let Some(query) = login::callback(r.as_ref().args.as_bytes()) else {
        return refuse(r, HTTPStatus::BAD_REQUEST, "callback with a repeated parameter");
    };
    let state = query.state.as_deref().unwrap_or_default().as_bytes();
    let (login, cookie_name) = match login_state(r, lc, main, state) {
        Ok(l) => l,
        Err(why) => return refuse(r, HTTPStatus::BAD_REQUEST, why.as_str()),
    };
    match login.check(&ctx.id, state, crate::clock::now_ms()) {
        Ok(()) => {}
        // Begun in another tab before a login that already ended: this
        // browser is logged in, so it goes where that login began.
        Err(LoginRefused::OtherSession) if ctx.user.len > 0 => {
            if set_login_cookie(r, lc, &cookie_name, b"", Some(0)).is_none() {
                return Status::NGX_ERROR;
            }
            return request::redirect(r, &login.return_to);
        }
        Err(why) => return refuse(r, HTTPStatus::BAD_REQUEST, why.as_str()),
    }
    if let Some(error) = &query.error {
        // The provider's own word, if it is one (never what a client wrote).
        let known = error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') && error.len() <= 40;
        let why = format!(
            "the provider refused the login: {}",
            if known { error } else { "an error" }
        );
        return refuse(r, HTTPStatus::FORBIDDEN, &why);
    }
    let Some(code) = query.code else {
        return refuse(r, HTTPStatus::BAD_REQUEST, "callback without a code");
    };
    let Some((i, settings)) = provider(lc, main) else {
        return Status::NGX_ERROR;
    };
    let now = crate::clock::now_ms();
    let call = OidcCall::Finish {
        code,
        verifier: String::from_utf8_lossy(&login.verifier).into_owned(),
        nonce: String::from_utf8_lossy(&login.nonce).into_owned(),
        // The login keeps the session's handle.
        session: ctx.handle.0,
        keep_ms: sid_kept_until(lc, now) - now,
    };
    if !ask_provider(r, (i, settings), call, Some(finished), "login not finished") {
        return page(r, HTTPStatus::SERVICE_UNAVAILABLE);
    }
    Status::NGX_DONE
}

/// The side-car's answer to the callback: the session logged in under a
/// new id, the configured claims in its data, the login cookie deleted,
/// and a redirect to where the login began.
fn finished(r: &mut Request, answer: Answer) -> Status {
    let identity = match answer {
        Answer::Oidc(Ok(OidcAnswer::LoggedIn(id))) => id,
        Answer::Oidc(Err(e)) => {
            let status = failure(r, "login refused", &e);
            return page(r, status);
        }
        _ => return page(r, HTTPStatus::SERVICE_UNAVAILABLE),
    };
    let (Some(lc), Some(main)) = (Module::location_conf(r), Module::main_conf(r)) else {
        return Status::NGX_ERROR;
    };
    let Some(mut ctx) = request::ctx(r).copied() else {
        return Status::NGX_ERROR;
    };
    let Some((keys, name)) = lc.keys_and_name(main) else {
        return page(r, HTTPStatus::SERVICE_UNAVAILABLE);
    };
    let state = query_state(r);
    let (return_to, cookie_name) = match login_state(r, lc, main, &state) {
        Ok((l, n)) => (l.return_to, Some(n)),
        Err(_) => (b"/".to_vec(), None),
    };
    let store = store_of(ctx.store);
    let now = crate::clock::now_ms();
    let id = ctx.id;
    let control = Control::LogIn {
        user: identity.user.as_bytes(),
        remember: false,
    };
    let done = store.on_session(main, lc, &ctx, now, |t, rng, _| {
        apply(t, &id, control, now, &lc.policy, rng)
    });
    let (new_id, rec) = match done {
        Some(Ok(Some(made))) => made,
        Some(Err(ControlError::UserTooLong)) => {
            return refuse(r, HTTPStatus::FORBIDDEN, "the user claim is longer than 64 bytes");
        }
        Some(Err(ControlError::LimitReached)) => {
            return refuse(
                r,
                HTTPStatus::FORBIDDEN,
                "the user has as many sessions as sessions_max_per_user allows",
            );
        }
        Some(Err(ControlError::Random(e))) => {
            ngx_log_error!(NGX_LOG_ERR, r.log(), "sessions: {e}; login not made");
            return Status::NGX_ERROR;
        }
        _ => return refuse(r, HTTPStatus::BAD_REQUEST, "the session ended during the login"),
    };
    store.after_login(r, lc, main, new_id, &rec);
    ctx.id = new_id;
    ctx.record = rec;
    let Some(user) = request::pool_str(r, identity.user.as_bytes()) else {
        return Status::NGX_ERROR;
    };
    ctx.user = user;
    if request::put_ctx(r, &ctx).is_none() {
        return Status::NGX_ERROR;
    }
    if !identity.claims.is_empty() && keep_claims(r, &identity.claims).is_none() {
        return Status::NGX_ERROR;
    }
    let Some(mut ctx) = request::ctx(r).copied() else {
        return Status::NGX_ERROR;
    };
    let Some(cookie) = store.session_cookie(r, lc, keys, name, &ctx) else {
        return Status::NGX_ERROR;
    };
    ctx.set_cookie = cookie;
    ctx.cookie_sent = false;
    if request::put_ctx(r, &ctx).is_none() {
        return Status::NGX_ERROR;
    }
    if let Some(n) = cookie_name {
        if set_login_cookie(r, lc, &n, b"", Some(0)).is_none() {
            return Status::NGX_ERROR;
        }
    }
    if let Some(sid) = &identity.sid {
        remember_sid(
            main,
            settings_of(lc, main),
            sid,
            &ctx.handle,
            sid_kept_until(lc, now),
            now,
        );
    }
    let t = crate::phases::oidc_tokens::issued(
        identity.access_token,
        identity.refresh_token,
        Some(identity.id_token),
        identity.expires_in,
        now,
    );
    if crate::phases::oidc_tokens::keep(r, lc, main, &ctx, identity.user.as_bytes(), &t).is_none() {
        return Status::NGX_ERROR;
    }
    ngx_log_error!(
        NGX_LOG_INFO,
        r.log(),
        "sessions: session logged in through the OpenID Provider, new id issued"
    );
    count(r, OidcOutcome::LoggedIn);
    request::redirect(r, &return_to)
}

/// Until when the provider's session a login came from is remembered: as
/// long as the session may live (at most 30 days).
fn sid_kept_until(lc: &LocConf, now: u64) -> u64 {
    const MAX_MS: u64 = 30 * 24 * 3600 * 1000;
    revoked::not_before_end(&lc.policy, now).min(now + MAX_MS)
}

fn settings_of<'a>(lc: &LocConf, main: &'a MainConf) -> Option<&'a OidcSettings> {
    provider(lc, main).map(|(_, s)| s)
}

/// Remembers in the zone (every worker of this nginx) that the provider's
/// session `sid` logged in session `handle`; the side-car did in Redis.
fn remember_sid(
    main: &MainConf,
    settings: Option<&OidcSettings>,
    sid: &str,
    handle: &sessions_core::Handle,
    until: u64,
    now: u64,
) {
    let (Some(table), Some(settings)) = (main.table, settings) else {
        return;
    };
    let key = revoked::sid_key(settings.issuer.as_bytes(), sid.as_bytes());
    table.with(|t| revoked::remember_sid(t, key, handle, until, now));
}

/// Copies the configured claims into the session's data; a claim whose
/// value cannot be kept (too long, control characters) is left out, logged.
fn keep_claims(r: &mut Request, claims: &[(String, String)]) -> Option<()> {
    let kept: Vec<(&[u8], Option<&[u8]>)> = claims
        .iter()
        .filter(|(_, v)| sessions_core::model::data::valid_value(v.as_bytes()))
        .map(|(k, v)| (k.as_bytes(), Some(v.as_bytes())))
        .collect();
    if kept.len() < claims.len() {
        ngx_log_error!(
            NGX_LOG_ERR,
            r.log(),
            "sessions: {} claim(s) longer than 256 bytes or with control characters not kept",
            claims.len() - kept.len()
        );
    }
    crate::phases::filter::set_data(r, &kept, "the OpenID Provider")
}

/// Largest back-channel logout request body accepted.
const MAX_LOGOUT_BODY: usize = 16 * 1024;

/// `sessions_oidc_backchannel_logout`: a POST from the provider with a
/// `logout_token` (OpenID Connect Back-Channel Logout 1.0).
fn backchannel(r: &mut Request) -> Status {
    if r.as_ref().method as u32 != nginx_sys::NGX_HTTP_POST {
        let discard = r.discard_request_body();
        if !discard.is_ok() {
            return discard;
        }
        return HTTPStatus::NOT_ALLOWED.into();
    }
    let rc = request::read_body(r, backchannel_body_read);
    if rc.0 >= nginx_sys::NGX_HTTP_SPECIAL_RESPONSE as nginx_sys::ngx_int_t {
        return rc;
    }
    Status::NGX_DONE
}

/// The logout request's body is in: its token goes to the side-car.
fn backchannel_body(r: &mut Request) -> Status {
    let Some(body) = request::body_in_memory(r, MAX_LOGOUT_BODY) else {
        return logout_refused(r, "the request body is larger than 16 KiB");
    };
    let Some(token) = login::logout_token(&body) else {
        return logout_refused(r, "no single logout_token");
    };
    let (Some(lc), Some(main)) = (Module::location_conf(r), Module::main_conf(r)) else {
        return Status::NGX_ERROR;
    };
    let Some((i, settings)) = provider(lc, main) else {
        return Status::NGX_ERROR;
    };
    let call = OidcCall::LogoutToken { token };
    if !ask_provider(
        r,
        (i, settings),
        call,
        Some(logout_token_checked),
        "back-channel logout not done",
    ) {
        return HTTPStatus::SERVICE_UNAVAILABLE.into();
    }
    Status::NGX_DONE
}

request::body_handler!(backchannel_body_read, backchannel_body);

/// A checked logout token: the sessions of its `sub` end on this nginx and,
/// through the store's shared records, on every instance sharing it.
fn logout_token_checked(r: &mut Request, answer: Answer) -> Status {
    let token = match answer {
        Answer::Oidc(Ok(OidcAnswer::LoggedOut(t, in_redis))) => (t, in_redis),
        Answer::Oidc(Err(e)) => {
            let why = login::loggable(&e.to_string());
            return logout_refused(r, &why);
        }
        _ => return HTTPStatus::SERVICE_UNAVAILABLE.into(),
    };
    let (Some(lc), Some(main)) = (Module::location_conf(r), Module::main_conf(r)) else {
        return Status::NGX_ERROR;
    };
    let Some((_, settings)) = provider(lc, main) else {
        return Status::NGX_ERROR;
    };
    let (token, in_redis) = token;
    let sub = token.sub.clone().filter(|_| settings.user_claim == "sub");
    if sub.is_none() && token.sid.is_none() {
        return logout_refused(
            r,
            "the token names no sid, and no sub or sessions_oidc_user_claim is not sub: its sessions cannot be found",
        );
    }
    if !first_use(lc, main, settings, &token.jti) {
        return logout_refused(r, "the logout token was used before (jti)");
    }
    let Some(sub) = sub else {
        // Only the provider's session: the one session it logged in, as
        // Redis or this nginx's zone remembers it.
        let key = revoked::sid_key(
            settings.issuer.as_bytes(),
            token.sid.unwrap_or_default().as_bytes(),
        );
        let here = main.table.and_then(|t| t.with(|t| revoked::sid_handle(t, &key)));
        ngx_log_error!(
            NGX_LOG_INFO,
            r.log(),
            "sessions: OpenID Connect back-channel logout of a provider session"
        );
        count(r, OidcOutcome::BackchannelLogout);
        let Some(id) = in_redis.map(sessions_core::Handle).or(here) else {
            let body = sessions_core::access::admin::revoked_json(0);
            return crate::phases::answers::send(r, HTTPStatus::OK, &body);
        };
        return store_of(lc.store()).admin(
            r,
            lc,
            main,
            sessions_core::access::admin::AdminRequest::RevokeId { id },
        );
    };
    ngx_log_error!(
        NGX_LOG_INFO,
        r.log(),
        "sessions: OpenID Connect back-channel logout of a user"
    );
    count(r, OidcOutcome::BackchannelLogout);
    let user = sub.into_bytes();
    store_of(lc.store()).admin(
        r,
        lc,
        main,
        sessions_core::access::admin::AdminRequest::RevokeUser { user },
    )
}

/// Whether the logout token `jti` is new to this nginx's zone (every
/// worker), then kept there (and shared like the records of ended
/// sessions) for twice the time a token is accepted.
fn first_use(lc: &LocConf, main: &MainConf, settings: &OidcSettings, jti: &str) -> bool {
    let Some(table) = main.table else {
        return true;
    };
    let now = crate::clock::now_ms();
    let max_age = sessions_sidecar::oidc::LOGOUT_TOKEN_MAX_AGE.as_millis() as u64;
    let key = revoked::jti_key(settings.issuer.as_bytes(), jti.as_bytes());
    let mut made = Vec::new();
    let new = table.with(|t| revoked::first_use(t, key, now + 2 * max_age, now, &mut made));
    if let Some((keys, _)) = lc.keys_and_name(main) {
        crate::nginx::park::share(main, keys, &made, now);
    }
    new
}

/// 400 with one log line: the provider's logout request was not acted on.
fn logout_refused(r: &mut Request, why: &str) -> Status {
    count(r, OidcOutcome::BackchannelRefused);
    ngx_log_error!(
        NGX_LOG_ERR,
        r.log(),
        "sessions: OpenID Connect back-channel logout refused: {why}"
    );
    request::send_body(
        r,
        HTTPStatus::BAD_REQUEST,
        crate::phases::answers::JSON,
        b"{\"error\":\"invalid_request\"}\n",
    )
}

ngx::http_request_handler!(backchannel_handler, backchannel);
/// `sessions_oidc_backchannel_logout`'s content handler.
pub const BACKCHANNEL: extern "C" fn(*mut nginx_sys::ngx_http_request_t) -> nginx_sys::ngx_int_t =
    backchannel_handler;

ngx::http_request_handler!(callback_handler, callback);
/// `sessions_oidc_callback`'s content handler.
pub const CALLBACK: extern "C" fn(*mut nginx_sys::ngx_http_request_t) -> nginx_sys::ngx_int_t =
    callback_handler;
