//! The access-phase handler: cookie, verify, store, decision.

use std::cell::RefCell;
use std::ptr;

use nginx_sys::{NGX_LOG_ALERT, NGX_LOG_INFO};
use ngx::core::Status;
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, Request};
use ngx::ngx_log_error;
use sessions_core::cookie::{cookie_values, encode_value, Owner, VerifyCache};
use sessions_core::engine::{fingerprint, Presented};
use sessions_core::id::RandomPool;
use sessions_core::{resolve, Facts};

use crate::request::{self, Ctx};
use crate::Module;

/// Per-worker buffers, so a request allocates nothing on the heap.
struct Scratch {
    rng: RandomPool,
    verified: VerifyCache,
    value: Vec<u8>,
    header: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        rng: RandomPool::new(),
        verified: VerifyCache::default(),
        value: Vec::with_capacity(64),
        header: Vec::with_capacity(512),
    });
}

/// A new worker must not reuse random bytes read before the fork.
pub fn init_worker() {
    SCRATCH.with_borrow_mut(|s| s.rng.clear());
}

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

    let owner = Owner {
        keys: ptr::from_ref(keys).addr(),
        name: name.as_ptr().addr(),
        name_len: name.len(),
    };
    let presented = SCRATCH.with_borrow_mut(|s| {
        let mut presented = Presented::Nothing;
        for header in request::cookie_headers(r) {
            for value in cookie_values(header, name) {
                match s.verified.decode_value(owner, keys, name, value) {
                    Ok(v) => {
                        return Presented::Id {
                            id: v.id,
                            stale_key: v.stale_key,
                        }
                    }
                    Err(_) => presented = Presented::Invalid,
                }
            }
        }
        presented
    });

    let (ip, ip_len) = request::client_ip(r);
    let facts = Facts {
        now: request::now_ms(),
        ip: &ip[..ip_len],
        ua: fingerprint(request::user_agent(r)),
    };
    let outcome =
        SCRATCH.with_borrow_mut(|s| table.with(|t| resolve(t, presented, &facts, &lc.policy, &mut s.rng)));
    let outcome = match outcome {
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
        let https = request::is_https(r);
        let built = SCRATCH.with_borrow_mut(|s| {
            s.value.clear();
            s.header.clear();
            encode_value(keys, name, &outcome.id, &mut s.value);
            lc.attrs.set_cookie(name, &s.value, https, &mut s.header);
            request::pool_str(r, &s.header)
        });
        match built {
            Some(s) => set_cookie = s,
            None => return Status::NGX_ERROR,
        }
    }

    let ctx = Ctx::new(
        outcome.status,
        outcome.record.handle,
        outcome.record.created,
        outcome.deadline.unwrap_or(u64::MAX),
        set_cookie,
    );
    if request::set_ctx(r, ctx).is_none() {
        return Status::NGX_ERROR;
    }
    Status::NGX_DECLINED
}
