//! The access-phase handler: cookie, verify, store, decision.

use std::cell::RefCell;
use std::ptr;

use nginx_sys::ngx_str_t;
use nginx_sys::{NGX_LOG_ALERT, NGX_LOG_INFO};
use ngx::core::Status;
use ngx::http::{HTTPStatus, HttpModuleLocationConf, HttpModuleMainConf, Request};
use ngx::ngx_log_error;
use sessions_core::cookie::{cookie_values, encode_value, Owner, VerifyCache};
use sessions_core::cookie_store::{self, Contents};
use sessions_core::engine::{fingerprint, Presented};
use sessions_core::gate::{login_redirect, wants_401, ControlHeader};
use sessions_core::id::RandomPool;
use sessions_core::store::StoreKind;
use sessions_core::{apply, resolve, Control, Facts, Keyring, Outcome};

use crate::conf::{LocConf, MainConf};
use crate::request::{self, Ctx};
use crate::Module;

/// Per-worker buffers, so a request allocates nothing on the heap.
pub struct Scratch {
    pub rng: RandomPool,
    /// The session's data, read under the lock, copied to the request.
    pub data: Vec<u8>,
    verified: VerifyCache,
    value: Vec<u8>,
    header: Vec<u8>,
}

thread_local! {
    pub static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        rng: RandomPool::new(),
        data: Vec::with_capacity(1024),
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
    // A client's own X-Session-* headers never reach the upstream: one that
    // echoed them into its answer would let the client log itself in.
    if request::remove_request_headers(r, ControlHeader::is_control).is_none() {
        return Status::NGX_ERROR;
    }
    let Some(main) = Module::main_conf(r) else {
        return Status::NGX_DECLINED;
    };
    if lc.redis() {
        return crate::remote::access(r, lc, main);
    }
    let Some((keys, name)) = lc.keys_and_name(main) else {
        return Status::NGX_DECLINED;
    };
    if lc.cookie() {
        return crate::cookie_store::access(r, lc, main, keys, name);
    }
    let presented = presented(r, keys, name).0;
    local(r, lc, main, keys, name, presented)
}

/// The session cookie the client presented, and which key verified it.
pub fn presented(r: &Request, keys: &Keyring, name: &[u8]) -> (Presented, u8) {
    let owner = Owner {
        keys: ptr::from_ref(keys).addr(),
        name: name.as_ptr().addr(),
        name_len: name.len(),
    };
    SCRATCH.with_borrow_mut(|s| {
        let mut presented = Presented::Nothing;
        for header in request::cookie_headers(r) {
            for value in cookie_values(header, name) {
                match s.verified.decode_value(owner, keys, name, value) {
                    Ok(v) => {
                        let p = Presented::Id {
                            id: v.id,
                            stale_key: v.stale_key,
                        };
                        return (p, v.key);
                    }
                    Err(_) => presented = Presented::Invalid,
                }
            }
        }
        (presented, 0)
    })
}

/// Verified cookies are forgotten when the keys behind `random` change.
pub fn forget_verified() {
    SCRATCH.with_borrow_mut(|s| s.verified = VerifyCache::default());
}

/// What the request brings: time, address, User-Agent fingerprint.
pub fn facts(r: &Request) -> (u64, [u8; 16], usize, u64) {
    let (ip, ip_len) = request::client_ip(r);
    (request::now_ms(), ip, ip_len, fingerprint(request::user_agent(r)))
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
    let (now, ip, ip_len, ua) = facts(r);
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
            Ok::<_, sessions_core::id::RandomError>(o)
        })
    });
    match outcome {
        Ok(o) => conclude(r, lc, keys, name, &o, StoreKind::Shm, 0),
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
    store: StoreKind,
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
    // As BunkerWeb: the upstream never sees a refused session cookie; with
    // `sessions_pass_cookie off`, not even a valid one.
    if (refused || !lc.pass_cookie()) && strip_session_cookies(r, name, chunks).is_none() {
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
        store,
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
        let Some(c) = session_cookie(r, lc, keys, name, &ctx) else {
            return Status::NGX_ERROR;
        };
        ctx.set_cookie = c;
    }
    if request::set_ctx(r, ctx).is_none() {
        return Status::NGX_ERROR;
    }
    if lc.require_login() && outcome.record.user().is_none() {
        return gate(r, lc);
    }
    Status::NGX_DECLINED
}

/// The `Set-Cookie` value(s) for the session `ctx` holds (its id, and in
/// the cookie store its record and data too), in the request pool. An
/// empty value when the cookie store could not seal it (logged).
pub fn session_cookie(
    r: &mut Request,
    lc: &LocConf,
    keys: &Keyring,
    name: &[u8],
    ctx: &Ctx,
) -> Option<ngx_str_t> {
    let https = request::client_https(r, lc.trusted_proxies());
    let rec = &ctx.record;
    // A remembered login persists in the browser for its whole lifetime.
    let max_age = if rec.remembered() {
        Some(lc.policy.remember / 1000)
    } else {
        lc.attrs.max_age
    };
    if lc.cookie() {
        let contents = Contents {
            id: ctx.id,
            record: *rec,
            data: ctx.data.as_bytes().to_vec(),
        };
        let mut out = Vec::with_capacity(512);
        let sealed = SCRATCH.with_borrow_mut(|s| {
            crate::cookie_store::set_cookies(
                r, lc, keys, name, &contents, ctx.chunks, https, max_age, &mut s.rng, &mut out,
            )
        });
        return if sealed {
            request::pool_str(r, &out)
        } else {
            Some(ngx_str_t::default())
        };
    }
    SCRATCH.with_borrow_mut(|s| {
        s.value.clear();
        s.header.clear();
        encode_value(keys, name, &ctx.id, &mut s.value);
        lc.attrs
            .set_cookie_max_age(name, &s.value, https, max_age, &mut s.header);
        request::pool_str(r, &s.header)
    })
}

/// The `Set-Cookie` value(s) that delete the session cookie (and the cookie
/// store's `chunks` chunk cookies).
pub fn deleted_cookie(r: &mut Request, lc: &LocConf, name: &[u8], chunks: u8) -> Option<ngx_str_t> {
    let https = request::client_https(r, lc.trusted_proxies());
    SCRATCH.with_borrow_mut(|s| {
        s.header.clear();
        if lc.cookie() {
            crate::cookie_store::deleted(name, lc, chunks, https, &mut s.header);
        } else {
            lc.attrs
                .set_cookie_max_age(name, b"", https, Some(0), &mut s.header);
        }
        request::pool_str(r, &s.header)
    })
}

/// Keeps the session's cookies (all of the cookie store's chunks) from the upstream.
fn strip_session_cookies(r: &mut Request, name: &[u8], chunks: u8) -> Option<()> {
    SCRATCH.with_borrow_mut(|s| {
        request::strip_request_cookie(r, name, &mut s.header)?;
        for i in 1..usize::from(chunks) {
            request::strip_request_cookie(r, &cookie_store::chunk_name(name, i), &mut s.header)?;
        }
        Some(())
    })
}

/// No logged-in session: 401, or a redirect to the login page carrying the
/// original URL; scripts and JSON clients always get 401.
fn gate(r: &mut Request, lc: &LocConf) -> Status {
    let api = wants_401(
        request::header_in(r, b"accept"),
        request::header_in(r, b"x-requested-with"),
    );
    let Some(Some(url)) = lc.login_url.filter(|_| !api) else {
        return HTTPStatus::UNAUTHORIZED.into();
    };
    // SAFETY: the complex value was compiled at configuration time and lives
    // as long as the configuration.
    let Some(base) = r
        .get_complex_value(unsafe { &*url.0 })
        .map(|v| v.as_bytes().to_vec())
    else {
        return Status::NGX_ERROR;
    };
    let https = request::client_https(r, lc.trusted_proxies());
    let target = login_redirect(&base, &request::original_url(r, https));
    match request::pool_str(r, &target).and_then(|v| request::set_location(r, v)) {
        Some(()) => HTTPStatus::MOVED_TEMPORARILY.into(),
        None => Status::NGX_ERROR,
    }
}

/// `sessions_logout`: ends the session, deletes the cookie, then 204 or a redirect.
pub fn logout(r: &mut Request) -> Status {
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
            let now = request::now_ms();
            let id = ctx.id;
            let done = crate::remote::on_store(main, lc, ctx, now, |t, rng, _| {
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
        if !crate::remote::end_presented(r, lc, main) {
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
