//! The access-phase handler: cookie, verify, store, decision.

use nginx_sys::{NGX_LOG_ALERT, NGX_LOG_INFO};
use ngx::core::Status;
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, Request};
use ngx::ngx_log_error;
use sessions_core::cookie::{cookie_values, decode_value, encode_value};
use sessions_core::engine::{fingerprint, Presented};
use sessions_core::{resolve, Facts};

use crate::request::{self, Ctx};
use crate::Module;

/// Longest `Set-Cookie` we build, so one allocation always suffices.
const SET_COOKIE_CAPACITY: usize = 512;

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
    let Some(main) = Module::main_conf(r) else {
        return Status::NGX_DECLINED;
    };
    let (Some(table), Some((keys, name))) = (main.table, lc.keys_and_name(main)) else {
        return Status::NGX_DECLINED;
    };

    let mut presented = Presented::Nothing;
    'headers: for header in request::cookie_headers(r) {
        for value in cookie_values(header, name) {
            match decode_value(keys, name, value) {
                Ok(v) => {
                    presented = Presented::Id {
                        id: v.id,
                        stale_key: v.stale_key,
                    };
                    break 'headers;
                }
                Err(_) => presented = Presented::Invalid,
            }
        }
    }

    let (ip, ip_len) = request::client_ip(r);
    let facts = Facts {
        now: request::now_ms(),
        ip: &ip[..ip_len],
        ua: fingerprint(request::user_agent(r)),
    };
    let outcome = match table.with(|t| resolve(t, presented, &facts, &lc.policy)) {
        Ok(o) => o,
        Err(e) => {
            ngx_log_error!(
                NGX_LOG_ALERT,
                r.log(),
                "sessions: {e}, request served without a session"
            );
            return Status::NGX_DECLINED;
        }
    };

    if outcome.status.is_refusal() {
        ngx_log_error!(
            NGX_LOG_INFO,
            r.log(),
            "sessions: cookie refused ({}), new session started",
            outcome.status.as_str()
        );
    }
    if outcome.evicted > 0 {
        ngx_log_error!(
            NGX_LOG_INFO,
            r.log(),
            "sessions: zone is full, evicted {} least recently used session(s)",
            outcome.evicted
        );
    }

    let mut set_cookie = nginx_sys::ngx_str_t::default();
    if outcome.issue_cookie {
        let mut value = Vec::with_capacity(SET_COOKIE_CAPACITY);
        encode_value(keys, name, &outcome.id, &mut value);
        let mut header = Vec::with_capacity(SET_COOKIE_CAPACITY);
        lc.attrs
            .set_cookie(name, &value, request::is_https(r), &mut header);
        match request::pool_str(r, &header) {
            Some(s) => set_cookie = s,
            None => return Status::NGX_ERROR,
        }
    }

    let ctx = Ctx::new(
        outcome.status,
        outcome.record.handle,
        outcome.record.created,
        lc.policy
            .timeouts
            .deadline(outcome.record.times())
            .unwrap_or(u64::MAX),
        set_cookie,
    );
    if request::set_ctx(r, ctx).is_none() {
        return Status::NGX_ERROR;
    }
    Status::NGX_DECLINED
}
