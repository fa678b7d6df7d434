//! The header filter: applies an application's X-Session-* response headers
//! (where allowed), then makes sure the session cookie reaches whatever
//! response the request ends with (static file, proxied, error page,
//! redirect), once.

use nginx_sys::{ngx_str_t, NGX_LOG_ALERT};
use nginx_sys::{NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_WARN};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, Request};
use ngx::ngx_log_error;
use sessions_core::access::admin::AdminRequest;
use sessions_core::access::gate::{set_value, truthy, ControlHeader};
use sessions_core::model::record::valid_user;
use sessions_core::{apply, update_data, Control, ControlError, DataUpdateError};

use crate::config::conf::LocConf;
use crate::config::module::Module;
use crate::nginx::request;
use crate::phases::access::store_of;
use crate::phases::cookies::SCRATCH;

/// The header filter's work, before the next filter runs: `Err` when the
/// request must fail (out of memory).
pub fn on_headers(req: &mut Request) -> Result<(), ()> {
    if !req.is_main() {
        return Ok(());
    }
    if req.upstream().is_some() {
        if let Some(lc) = Module::location_conf(req).filter(|lc| lc.control_headers()) {
            control(req, lc).ok_or(())?;
        }
    }
    // A filter that finalizes the request (a failed If-Match, say) clears
    // the headers already set, ours included: set it again.
    let cleared = req.as_ref().filter_finalize() != 0;
    if let Some(mut ctx) = request::ctx(req).copied() {
        if (!ctx.cookie_sent || cleared) && ctx.set_cookie.len > 0 {
            request::add_set_cookie(req, ctx.set_cookie).ok_or(())?;
            ctx.cookie_sent = true;
            request::put_ctx(req, &ctx).ok_or(())?;
        }
    }
    Ok(())
}

/// Consumes the upstream's X-Session-* headers (none reaches the client) and
/// applies them to the request's session. Only an answer the upstream gave
/// this very request counts: one served from a cache was given to someone
/// else, and one that carries them is kept out of the cache. `None` only
/// when out of memory.
fn control(r: &mut Request, lc: &LocConf) -> Option<()> {
    let (mut user, mut bad_user) = (None::<ngx_str_t>, false);
    let (mut remember, mut regenerate, mut destroy) = (false, false, false);
    let mut logout_others = false;
    // Copied: header values are borrowed only while the list is walked
    // (a copy only for the responses that carry data changes).
    let mut changes: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    let (mut bad_set, mut found) = (false, false);
    let cached = r.as_ref().cached() != 0;
    request::headers_out_mut(r, |h| {
        let name = h.key.as_bytes();
        if !ControlHeader::is_control(name) {
            return;
        }
        h.hash = 0;
        found = true;
        if cached {
            return;
        }
        let value = h.value.as_bytes();
        match ControlHeader::from_name(name) {
            Some(ControlHeader::User) if valid_user(value) => user = Some(h.value),
            Some(ControlHeader::User) => bad_user = true,
            Some(ControlHeader::Remember) => remember = truthy(value),
            Some(ControlHeader::Regenerate) => regenerate = truthy(value),
            Some(ControlHeader::Destroy) => destroy = truthy(value),
            Some(ControlHeader::Set) => match set_value(value) {
                Some((k, v)) => changes.push((k.to_vec(), Some(v.to_vec()))),
                None => bad_set = true,
            },
            Some(ControlHeader::Unset) => changes.push((value.trim_ascii().to_vec(), None)),
            Some(ControlHeader::LogoutOthers) => logout_others = truthy(value),
            None => {}
        }
    });
    if found && cached {
        ngx_log_error!(
            NGX_LOG_ERR,
            r.log(),
            "sessions: X-Session-* headers in a response served from a cache ignored; \
             they apply only to the request the upstream answered"
        );
        return Some(());
    }
    if found {
        request::not_cacheable(r);
    }
    if bad_set {
        ngx_log_error!(
            NGX_LOG_ERR,
            r.log(),
            "sessions: X-Session-Set from upstream is not KEY=VALUE; ignored"
        );
    }
    if bad_user {
        ngx_log_error!(
            NGX_LOG_ERR,
            r.log(),
            "sessions: X-Session-User from upstream is empty, longer than 64 bytes or has control characters; ignored"
        );
    }
    let control = if destroy {
        Control::Destroy
    } else if let Some(u) = &user {
        Control::LogIn {
            user: u.as_bytes(),
            remember,
        }
    } else if regenerate {
        Control::Regenerate
    } else if !changes.is_empty() {
        data(r, &changes)?;
        return others(r, lc, logout_others);
    } else {
        return others(r, lc, logout_others);
    };
    let Some(mut ctx) = request::ctx(r).copied() else {
        return Some(()); // no session in this request: nothing to change
    };
    let main = Module::main_conf(r)?;
    let Some((keys, name)) = lc.keys_and_name(main) else {
        return Some(());
    };
    let now = crate::clock::now_ms();
    let id = ctx.id;
    let store = store_of(ctx.store);
    let Some(result) = store.on_session(main, lc, &ctx, now, |t, rng, _| {
        apply(t, &id, control, now, &lc.policy, rng)
    }) else {
        return Some(());
    };
    match result {
        Ok(None) => {
            ngx_log_error!(
                NGX_LOG_INFO,
                r.log(),
                "sessions: session ended by the application"
            );
            ctx.set_cookie = store.deleted_cookie(r, lc, name, ctx.chunks)?;
            ctx.user = ngx_str_t::default();
        }
        Ok(Some((new_id, rec))) => {
            if let Some(u) = rec.user() {
                ngx_log_error!(
                    NGX_LOG_INFO,
                    r.log(),
                    "sessions: session logged in, new id issued"
                );
                ctx.user = request::pool_str(r, u)?;
                store.after_login(r, lc, main, new_id, &rec);
            }
            ctx.id = new_id;
            ctx.record = rec;
            ctx.set_cookie = store.session_cookie(r, lc, keys, name, &ctx)?;
        }
        Err(ControlError::NoSession) => {
            ngx_log_error!(
                NGX_LOG_INFO,
                r.log(),
                "sessions: the session ended before the application's answer"
            );
            return Some(());
        }
        Err(ControlError::UserTooLong) => return Some(()),
        Err(ControlError::LimitReached) => {
            ngx_log_error!(
                NGX_LOG_WARN,
                r.log(),
                "sessions: login refused: the user has as many sessions as sessions_max_per_user allows"
            );
            return Some(());
        }
        Err(ControlError::Random(e)) => {
            ngx_log_error!(NGX_LOG_ALERT, r.log(), "sessions: {e}, session left unchanged");
            return Some(());
        }
    }
    ctx.cookie_sent = false;
    request::put_ctx(r, &ctx)?;
    if control != Control::Destroy && !changes.is_empty() {
        data(r, &changes)?;
    }
    others(r, lc, logout_others && control != Control::Destroy)
}

/// `X-Session-Logout-Others: on`: ends every other session of the
/// request's (logged-in) user, as `sessions_self` does.
fn others(r: &mut Request, lc: &LocConf, asked: bool) -> Option<()> {
    let Some(ctx) = request::ctx(r).copied().filter(|c| asked && c.user.len > 0) else {
        return Some(());
    };
    let main = Module::main_conf(r)?;
    let req = AdminRequest::RevokeOthers {
        user: ctx.user.as_bytes().to_vec(),
        except: ctx.handle,
    };
    store_of(ctx.store).revoke_unanswered(r, lc, main, req);
    Some(())
}

/// Applies X-Session-Set / X-Session-Unset to the request's session.
fn data(r: &mut Request, changes: &[(Vec<u8>, Option<Vec<u8>>)]) -> Option<()> {
    let changes: Vec<(&[u8], Option<&[u8]>)> = changes
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_deref()))
        .collect();
    set_data(r, &changes, "upstream")
}

/// Sets (`Some`) and removes (`None`) keys of the request's session data
/// and keeps what changed; `from` names who asked, for the log line of a
/// refused change. `None` only when out of memory.
pub fn set_data(r: &mut Request, changes: &[(&[u8], Option<&[u8]>)], from: &str) -> Option<()> {
    let Some(mut ctx) = request::ctx(r).copied() else {
        return Some(());
    };
    let (main, lc) = (Module::main_conf(r)?, Module::location_conf(r)?);
    let id = ctx.id;
    let now = crate::clock::now_ms();
    let store = store_of(ctx.store);
    let result = store.on_session(main, lc, &ctx, now, |t, _, data| {
        update_data(t, &id, changes, data)
    })?;
    match result {
        Ok(()) => {
            ctx.data = SCRATCH.with_borrow(|s| request::pool_str(r, &s.data))?;
            store.data_changed(r, lc, main, &mut ctx)?;
            request::put_ctx(r, &ctx)?;
        }
        Err(DataUpdateError::Invalid(e)) => {
            ngx_log_error!(
                NGX_LOG_ERR,
                r.log(),
                "sessions: session data from {from} refused: {e}"
            );
        }
        Err(DataUpdateError::Full) => store.data_full(r, lc),
        Err(DataUpdateError::NoSession) => {}
    }
    Some(())
}
