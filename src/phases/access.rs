//! The access-phase handler, and `sessions_logout`; `store_of`, the one
//! place a request's store is chosen.

use nginx_sys::NGX_LOG_INFO;
use ngx::core::Status;
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, Request};
use ngx::{http_request_handler, ngx_log_error};
use sessions_core::access::gate::ControlHeader;
use sessions_core::engine::store::StoreKind;

use crate::config::module::Module;
use crate::nginx::{park, request};
use crate::phases::store::SessionStore;
use crate::phases::{answers, cookie_store, decide, oidc, oidc_tokens, remote};

pub fn access(r: &mut Request) -> Status {
    if !r.is_main() {
        return Status::NGX_DECLINED;
    }
    let Some(lc) = Module::location_conf(r).filter(|lc| lc.enabled()) else {
        return Status::NGX_DECLINED;
    };
    // An internal redirect runs this phase again: keep the first decision.
    // A request parked at the gate for an OpenID Provider comes back here.
    if request::ctx(r).is_some() {
        // Parked for a logged-in session: its tokens' refresh; else a login.
        let refreshing = request::ctx(r)
            .filter(|c| c.user.len > 0)
            .map(|c| store_of(c.store));
        return match (park::resumed(r), refreshing) {
            (Some(wake), Some(store)) => oidc_tokens::refreshed(r, lc, wake, store),
            (Some(wake), None) => oidc::begun(r, lc, wake),
            (None, _) => Status::NGX_DECLINED,
        };
    }
    // A client's own X-Session-* headers never reach the upstream: one that
    // echoed them into its answer would let the client log itself in.
    if request::remove_request_headers(r, ControlHeader::is_control).is_none() {
        return Status::NGX_ERROR;
    }
    let Some(main) = Module::main_conf(r) else {
        return Status::NGX_DECLINED;
    };
    store_of(lc.store()).access(r, lc, main)
}

/// The store of `kind`: the location's `sessions_store` when the access
/// phase starts, then what the request context says.
pub fn store_of(kind: StoreKind) -> &'static dyn SessionStore {
    match kind {
        StoreKind::Shm => &decide::Zone,
        StoreKind::Redis => &remote::Redis,
        StoreKind::Cookie => &cookie_store::Cookie,
    }
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
    let mut hint = None;
    if let (Some(ctx), Some(main)) = (request::ctx(r).copied(), main) {
        if lc.oidc_provider.is_some() && ctx.user.len > 0 {
            hint = oidc_tokens::id_token_hint(r, lc, main, &ctx);
            if oidc_tokens::forget(r, lc, main).is_none() {
                return Status::NGX_ERROR;
            }
        }
        match store_of(ctx.store).end(r, lc, main, ctx) {
            None => return Status::NGX_ERROR,
            Some(true) => {
                ngx_log_error!(NGX_LOG_INFO, r.log(), "sessions: session ended by logout");
            }
            Some(false) => {}
        }
    } else if let Some(main) = main {
        // Nothing decided: Redis could not be asked (see `remote::unavailable`).
        if let Err(answer) = store_of(lc.store()).end_undecided(r, lc, main) {
            return answer;
        }
    }
    // With an OpenID Provider, the browser goes on to end its session there.
    if oidc::end_at_provider(r, lc, hint) {
        return Status::NGX_DONE;
    }
    answers::logged_out(r, lc)
}

http_request_handler!(logout_handler, logout);
/// `sessions_logout`'s content handler.
pub const LOGOUT: extern "C" fn(*mut nginx_sys::ngx_http_request_t) -> nginx_sys::ngx_int_t = logout_handler;
