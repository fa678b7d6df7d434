//! The session's cookies: reading and verifying what the request presents,
//! and building the `Set-Cookie` values that carry or delete a session, for
//! every store. Per-worker buffers and keys live here too.

use std::cell::RefCell;
use std::ptr;

use nginx_sys::ngx_str_t;
use nginx_sys::{NGX_LOG_ALERT, NGX_LOG_ERR};
use ngx::http::Request;
use ngx::ngx_log_error;
use sessions_core::codec::cookie::{cookie_values, encode_value, Owner, VerifyCache};
use sessions_core::engine::{Presented, Ua};
use sessions_core::primitives::id::RandomPool;
use sessions_core::stores::cookie::{self as cookie_store, Contents, CookieSealer, OpenCache, SealError};
use sessions_core::{Keyring, Record};

use crate::config::conf::LocConf;
use crate::nginx::request::{self, Ctx};

/// Per-worker buffers, so a request allocates nothing on the heap.
pub struct Scratch {
    pub rng: RandomPool,
    /// The session's data, read under the lock, copied to the request.
    pub data: Vec<u8>,
    verified: VerifyCache,
    /// The cookie store's recently opened values.
    pub opened: OpenCache,
    value: Vec<u8>,
    header: Vec<u8>,
}

thread_local! {
    pub static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        rng: RandomPool::new(),
        data: Vec::with_capacity(1024),
        verified: VerifyCache::default(),
        opened: OpenCache::default(),
        value: Vec::with_capacity(64),
        header: Vec::with_capacity(512),
    });
}

/// A new worker must not reuse random bytes read before the fork.
pub fn init_worker() {
    SCRATCH.with_borrow_mut(|s| s.rng.clear());
}

/// Names one keyring and cookie name by the addresses of the configuration
/// that holds them, for the per-worker caches.
pub fn owner(keys: &Keyring, name: &[u8]) -> Owner {
    Owner {
        keys: ptr::from_ref(keys).addr(),
        name: name.as_ptr().addr(),
        name_len: name.len(),
    }
}

/// The session cookie the client presented, and which key verified it.
pub fn presented(r: &Request, keys: &Keyring, name: &[u8]) -> (Presented, u8) {
    let owner = owner(keys, name);
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
    SCRATCH.with_borrow_mut(|s| {
        s.verified = VerifyCache::default();
        s.opened = OpenCache::default();
    });
}

/// What the request brings: time, address, User-Agent.
pub fn facts(r: &Request) -> (u64, [u8; 16], usize, Ua<'_>) {
    let (ip, ip_len) = request::client_ip(r);
    (
        crate::clock::now_ms(),
        ip,
        ip_len,
        Ua::Header(request::user_agent(r)),
    )
}

/// How long the browser keeps the session's cookie: a remembered login
/// persists for its whole lifetime.
pub fn max_age(lc: &LocConf, rec: &Record) -> Option<u64> {
    if rec.remembered() {
        Some(lc.policy.remember / 1000)
    } else {
        lc.attrs.max_age
    }
}

/// The `Set-Cookie` value carrying `ctx`'s session id (the zone and
/// Redis), in the request pool.
pub fn id_cookie(r: &mut Request, lc: &LocConf, keys: &Keyring, name: &[u8], ctx: &Ctx) -> Option<ngx_str_t> {
    let https = request::client_https(r, lc.trusted_proxies());
    let max_age = max_age(lc, &ctx.record);
    SCRATCH.with_borrow_mut(|s| {
        s.value.clear();
        s.header.clear();
        encode_value(keys, name, &ctx.id, &mut s.value);
        lc.attrs
            .set_cookie_max_age(name, &s.value, https, max_age, &mut s.header);
        request::pool_str(r, &s.header)
    })
}

/// The `Set-Cookie` values carrying `ctx`'s whole session, sealed (the
/// cookie store), in the request pool. An empty value when it could not
/// be sealed (logged).
pub fn sealed_cookie(
    r: &mut Request,
    lc: &LocConf,
    keys: &Keyring,
    name: &[u8],
    ctx: &Ctx,
) -> Option<ngx_str_t> {
    let https = request::client_https(r, lc.trusted_proxies());
    let max_age = max_age(lc, &ctx.record);
    let contents = Contents {
        id: ctx.id,
        record: ctx.record,
        data: ctx.data.as_bytes().to_vec(),
    };
    let mut out = Vec::with_capacity(512);
    let sealed = SCRATCH.with_borrow_mut(|s| {
        set_cookies(
            r, lc, keys, name, &contents, ctx.chunks, https, max_age, &mut s.rng, &mut out,
        )
    });
    if sealed {
        request::pool_str(r, &out)
    } else {
        Some(ngx_str_t::default())
    }
}

/// The `Set-Cookie` value that deletes the session id's cookie.
pub fn deleted_id_cookie(r: &mut Request, lc: &LocConf, name: &[u8]) -> Option<ngx_str_t> {
    let https = request::client_https(r, lc.trusted_proxies());
    SCRATCH.with_borrow_mut(|s| {
        s.header.clear();
        lc.attrs
            .set_cookie_max_age(name, b"", https, Some(0), &mut s.header);
        request::pool_str(r, &s.header)
    })
}

/// The `Set-Cookie` values that delete the cookie store's cookie and its
/// `chunks` chunk cookies.
pub fn deleted_sealed_cookies(r: &mut Request, lc: &LocConf, name: &[u8], chunks: u8) -> Option<ngx_str_t> {
    let https = request::client_https(r, lc.trusted_proxies());
    SCRATCH.with_borrow_mut(|s| {
        s.header.clear();
        deleted(name, lc, chunks, https, &mut s.header);
        request::pool_str(r, &s.header)
    })
}

/// Strips the cookies called `name` from what the upstream is sent.
pub fn strip_cookie(r: &mut Request, name: &[u8]) -> Option<()> {
    SCRATCH.with_borrow_mut(|s| request::strip_request_cookie(r, name, &mut s.header))
}

/// Keeps the session's cookies (all of the cookie store's chunks) from the upstream.
pub fn strip_session_cookies(r: &mut Request, name: &[u8], chunks: u8) -> Option<()> {
    SCRATCH.with_borrow_mut(|s| {
        request::strip_request_cookie(r, name, &mut s.header)?;
        for i in 1..usize::from(chunks) {
            request::strip_request_cookie(r, &cookie_store::chunk_name(name, i), &mut s.header)?;
        }
        Some(())
    })
}

thread_local! {
    /// The sealing keys of the last (secret, name) used: derived once, not
    /// per request (HKDF costs more than the whole decision).
    static SEALERS: RefCell<Option<(Owner, Vec<CookieSealer>)>> = const { RefCell::new(None) };
}

/// Runs `f` with the sealers of `keys` (the signing key's first) for `name`.
pub fn with_sealers<R>(keys: &Keyring, name: &[u8], f: impl FnOnce(&[CookieSealer]) -> R) -> R {
    let owner = owner(keys, name);
    SEALERS.with_borrow_mut(|cache| {
        if cache.as_ref().is_none_or(|(o, _)| *o != owner) {
            let sealers = keys
                .iter()
                .map(|k| CookieSealer::new(&k.cookie_store_key(name)))
                .collect();
            *cache = Some((owner, sealers));
        }
        f(&cache.as_ref().expect("just set").1)
    })
}

/// The `Set-Cookie` values (one per line) that carry session `id` with
/// `rec` and `data`, and delete the chunks beyond them among the `present`
/// ones the request carried.
#[allow(clippy::too_many_arguments)]
pub fn set_cookies(
    r: &Request,
    lc: &LocConf,
    keys: &Keyring,
    name: &[u8],
    c: &Contents,
    present: u8,
    https: bool,
    max_age: Option<u64>,
    rng: &mut RandomPool,
    out: &mut Vec<u8>,
) -> bool {
    let sealed = with_sealers(keys, name, |s| {
        cookie_store::set_cookies(
            &s[0],
            name,
            c,
            usize::from(present),
            &lc.attrs,
            https,
            max_age,
            rng,
            out,
        )
    });
    match sealed {
        Ok(()) => true,
        Err(SealError::TooLarge) => {
            ngx_log_error!(
                NGX_LOG_ERR,
                r.log(),
                "sessions: the session does not fit in {} cookies; cookie not sent",
                cookie_store::MAX_CHUNKS
            );
            false
        }
        Err(SealError::Random(e)) => {
            ngx_log_error!(NGX_LOG_ALERT, r.log(), "sessions: {e}, cookie not sent");
            false
        }
    }
}

/// The `Set-Cookie` values that delete the session's cookies.
pub fn deleted(name: &[u8], lc: &LocConf, present: u8, https: bool, out: &mut Vec<u8>) {
    cookie_store::delete_cookies(name, usize::from(present), &lc.attrs, https, out);
}
