//! The access-phase handler, and `sessions_logout`: each request goes to
//! its store's path (`decide` for the zone, `cookie_store`, `remote` for
//! Redis).

use nginx_sys::ngx_str_t;
use nginx_sys::NGX_LOG_INFO;
use ngx::core::Status;
use ngx::http::{HTTPStatus, HttpModuleLocationConf, HttpModuleMainConf, Request};
use ngx::{http_request_handler, ngx_log_error};
use sessions_core::access::gate::ControlHeader;
use sessions_core::{apply, Control};

use crate::config::module::Module;
use crate::phases::cookies::{self, deleted_cookie};
use crate::phases::{cookie_store, decide, remote, request};

pub fn access(r: &mut Request) -> Status {
    if !r.is_main() {
        return Status::NGX_DECLINED;
    }
    let Some(lc) = Module::location_conf(r).filter(|lc| lc.enabled()) else {
        return Status::NGX_DECLINED;
    };
    // An internal redirect runs this phase again: keep the first decision.
    if request::ctx(r).is_some() {
        return Status::NGX_DECLINED;
    }
    // A client's own X-Session-* headers never reach the upstream: one that
    // echoed them into its answer would let the client log itself in.
    if request::remove_request_headers(r, ControlHeader::is_control).is_none() {
        return Status::NGX_ERROR;
    }
    let Some(main) = Module::main_conf(r) else {
        return Status::NGX_DECLINED;
    };
    if lc.redis() {
        return remote::access(r, lc, main);
    }
    let Some((keys, name)) = lc.keys_and_name(main) else {
        return Status::NGX_DECLINED;
    };
    if lc.cookie() {
        return cookie_store::access(r, lc, main, keys, name);
    }
    let presented = cookies::presented(r, keys, name).0;
    decide::local(r, lc, main, keys, name, presented)
}

/// `sessions_logout`: ends the session, deletes the cookie, then 204 or a redirect.
fn logout(r: &mut Request) -> Status {
    let discard = r.discard_request_body();
    if !discard.is_ok() {
        return discard;
    }
    let Some(lc) = Module::location_conf(r) else {
        return Status::NGX_ERROR;
    };
    let main = Module::main_conf(r);
    if let (Some(ctx), Some(main)) = (request::ctx(r), main) {
        if let Some((_, name)) = lc.keys_and_name(main) {
            let now = crate::clock::now_ms();
            let id = ctx.id;
            let done = remote::on_store(main, lc, ctx, now, |t, rng, _| {
                apply(t, &id, Control::Destroy, now, &lc.policy, rng)
            });
            if matches!(done, Some(Ok(_))) {
                ngx_log_error!(NGX_LOG_INFO, r.log(), "sessions: session ended by logout");
            }
            let Some(c) = deleted_cookie(r, lc, name, ctx.chunks) else {
                return Status::NGX_ERROR;
            };
            ctx.set_cookie = c;
            ctx.cookie_sent = false;
            ctx.user = ngx_str_t::default();
        }
    } else if let Some(main) = main.filter(|_| lc.redis() && lc.enabled()) {
        // Redis could not be asked (see `remote::unavailable`).
        if !remote::end_presented(r, lc, main) {
            return HTTPStatus::SERVICE_UNAVAILABLE.into();
        }
        ngx_log_error!(
            NGX_LOG_INFO,
            r.log(),
            "sessions: session ended by logout while Redis is unavailable"
        );
        if let Some((_, name)) = lc.keys_and_name(main) {
            let Some(c) = deleted_cookie(r, lc, name, 0) else {
                return Status::NGX_ERROR;
            };
            if request::add_set_cookie(r, c).is_none() {
                return Status::NGX_ERROR;
            }
        }
    }
    match lc.logout_redirect {
        Some(url) => {
            // SAFETY: compiled at configuration time, lives with it.
            let Some(v) = r
                .get_complex_value(unsafe { &*url.0 })
                .map(|v| v.as_bytes().to_vec())
            else {
                return Status::NGX_ERROR;
            };
            match request::pool_str(r, &v).and_then(|v| request::set_location(r, v)) {
                Some(()) => HTTPStatus::MOVED_TEMPORARILY.into(),
                None => Status::NGX_ERROR,
            }
        }
        None => HTTPStatus::NO_CONTENT.into(),
    }
}

http_request_handler!(logout_handler, logout);
/// `sessions_logout`'s content handler.
pub const LOGOUT: extern "C" fn(*mut nginx_sys::ngx_http_request_t) -> nginx_sys::ngx_int_t = logout_handler;
