//! What the module reads from and writes to an `ngx_http_request_t`, and the
//! per-request context that must survive internal redirects.

use std::ffi::{c_void, CStr};
use std::{mem, ptr, slice};

use nginx_sys::ngx_chain_t;
use nginx_sys::{
    ngx_http_finalize_request, ngx_http_get_indexed_variable, ngx_http_read_client_request_body,
    ngx_http_request_t, ngx_list_part_t, ngx_list_push, ngx_palloc, ngx_pnalloc, ngx_pool_cleanup_add,
    ngx_str_t, ngx_table_elt_t, sockaddr_in, sockaddr_in6, AF_INET, AF_INET6,
};
use ngx::core::{Buffer, Status as NgxStatus};
use ngx::http::{HTTPStatus, Request};
use sessions_core::config::proxy::{address_bytes, says_https, Cidr};
use sessions_core::engine::store::StoreKind;
use sessions_core::{Handle, Record, SessionId, Status};

use crate::config::conf::LoginUrl;
use crate::config::module::ngx_http_sessions_module;

/// The client address bytes (`$remote_addr`, so after realip): 4 for IPv4,
/// 16 for IPv6, none for a unix socket.
pub fn client_ip(r: &Request) -> ([u8; 16], usize) {
    let mut out = [0u8; 16];
    // SAFETY: a live request has a connection whose `sockaddr` points to an
    // address of the family it names.
    unsafe {
        let sa = (*r.connection()).sockaddr;
        match u32::from((*sa).sa_family) {
            AF_INET => {
                let sin = &*sa.cast::<sockaddr_in>();
                out[..4].copy_from_slice(&sin.sin_addr.s_addr.to_ne_bytes());
                (out, 4)
            }
            AF_INET6 => {
                let sin6 = &*sa.cast::<sockaddr_in6>();
                out.copy_from_slice(&sin6.sin6_addr.__in6_u.__u6_addr8);
                (out, 16)
            }
            _ => (out, 0),
        }
    }
}

/// The `User-Agent` value, empty when absent.
pub fn user_agent(r: &Request) -> &[u8] {
    r.user_agent().map_or(&[][..], |ua| ua.as_bytes())
}

/// The request's host (from the request line or `Host`), without a port;
/// empty when the request named none.
pub fn host(r: &Request) -> &[u8] {
    r.as_ref().headers_in.server.as_bytes()
}

/// Every `Cookie` request header value.
#[cfg(nginx1_23)]
pub fn cookie_headers(r: &Request) -> impl Iterator<Item = &[u8]> {
    // nginx 1.23+ links the Cookie headers through `next`.
    // SAFETY: `cookie` is null or the head of a list of live header elements.
    let mut h = r.as_ref().headers_in.cookie.cast_const();
    std::iter::from_fn(move || {
        // SAFETY: as above; each element lives as long as the request.
        let e = unsafe { h.as_ref()? };
        h = e.next;
        Some(e.value.as_bytes())
    })
}

/// Every `Cookie` request header value.
#[cfg(not(nginx1_23))]
pub fn cookie_headers(r: &Request) -> impl Iterator<Item = &[u8]> {
    // Before 1.23 the Cookie headers are an array of pointers.
    // SAFETY: `cookies` is an array of `ngx_table_elt_t *` set up by nginx
    // for every request.
    let all: &[*mut ngx_table_elt_t] = unsafe { r.as_ref().headers_in.cookies.as_slice() };
    // SAFETY: each pointer is a live header element of this request.
    all.iter().map(|&h| unsafe { (*h).value.as_bytes() })
}

/// The first request header called `name` (case-insensitive).
pub fn header_in<'a>(r: &'a Request, name: &[u8]) -> Option<&'a [u8]> {
    r.headers_in_iterator()
        .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_bytes())
}

/// The URL the client asked for: scheme, Host and the unparsed URI.
pub fn original_url(r: &Request, https: bool) -> Vec<u8> {
    let req: &ngx_http_request_t = r.as_ref();
    let mut url = Vec::with_capacity(128);
    url.extend_from_slice(if https { b"https://" } else { b"http://" });
    // SAFETY: `host` is null or the live Host header element of this request.
    match unsafe { req.headers_in.host.as_ref() } {
        Some(h) => url.extend_from_slice(h.value.as_bytes()),
        None => url.extend_from_slice(req.headers_in.server.as_bytes()),
    }
    url.extend_from_slice(req.unparsed_uri.as_bytes());
    url
}

/// Calls `f` on every response header still to be sent; setting an
/// element's `hash` to 0 hides it, as nginx's own filters do.
pub fn headers_out_mut(r: &mut Request, mut f: impl FnMut(&mut ngx_table_elt_t)) {
    let req: &mut ngx_http_request_t = r.as_mut();
    let mut part: *mut ngx_list_part_t = &mut req.headers_out.headers.part;
    // SAFETY: walking nginx's list of response headers: each part holds
    // `nelts` initialised elements and links to the next part or null.
    unsafe {
        while let Some(p) = part.as_mut() {
            let elts = slice::from_raw_parts_mut(p.elts.cast::<ngx_table_elt_t>(), p.nelts);
            for h in elts.iter_mut().filter(|h| h.hash != 0) {
                f(h);
            }
            part = p.next;
        }
    }
}

/// Sets the response's `Location` header.
pub fn set_location(r: &mut Request, value: ngx_str_t) -> Option<()> {
    let h = push_header(r, c"Location", c"location", value)?;
    // As nginx's own redirects do, `headers_out.location` points at it.
    r.as_mut().headers_out.location = h;
    Some(())
}

/// A content handler that only reads (GET or HEAD): `Err` with the answer
/// for another method, or when the request's body could not be discarded.
pub fn read_only(r: &mut Request) -> Result<(), NgxStatus> {
    let method = r.as_ref().method;
    if method != nginx_sys::NGX_HTTP_GET as usize && method != nginx_sys::NGX_HTTP_HEAD as usize {
        return Err(HTTPStatus::NOT_ALLOWED.into());
    }
    let discard = r.discard_request_body();
    if !discard.is_ok() {
        return Err(discard);
    }
    Ok(())
}

/// Sends a complete response with `body`, as a content handler's last step.
pub fn send_body(r: &mut Request, status: HTTPStatus, content_type: &'static str, body: &[u8]) -> NgxStatus {
    r.set_status(status);
    r.set_content_length_n(body.len());
    {
        let h = &mut r.as_mut().headers_out;
        h.content_type = ngx_str_t {
            len: content_type.len(),
            data: content_type.as_ptr().cast_mut(),
        };
        h.content_type_len = content_type.len();
        h.content_type_lowcase = ptr::null_mut();
    }
    let rc = r.send_header();
    if rc.0 == NgxStatus::NGX_ERROR.0 || rc.0 > NgxStatus::NGX_OK.0 || r.header_only() {
        return rc;
    }
    let Some(mut buf) = r.pool().create_buffer(body.len().max(1)) else {
        return NgxStatus::NGX_ERROR;
    };
    // SAFETY: the fresh temporary buffer has room for `body`.
    unsafe {
        let b = &mut *buf.as_ngx_buf_mut();
        ptr::copy_nonoverlapping(body.as_ptr(), b.last, body.len());
        b.last = b.last.add(body.len());
    }
    buf.set_last_buf(r.is_main());
    buf.set_last_in_chain(true);
    let mut chain = ngx_chain_t {
        buf: buf.as_ngx_buf_mut(),
        next: ptr::null_mut(),
    };
    r.output_filter(&mut chain)
}

/// The request body if it is in memory and at most `limit` bytes.
pub fn body_in_memory(r: &Request, limit: usize) -> Option<Vec<u8>> {
    let req: &ngx_http_request_t = r.as_ref();
    // SAFETY: after the body was read, `request_body` and its chain of
    // buffers are valid for the request's life.
    unsafe {
        let rb = req.request_body.as_ref()?;
        let mut out = Vec::new();
        let mut cl = rb.bufs;
        while let Some(link) = cl.as_ref() {
            let b = &*link.buf;
            if b.in_file() != 0 {
                return None;
            }
            let len = b.last.offset_from(b.pos) as usize;
            if out.len() + len > limit {
                return None;
            }
            out.extend_from_slice(slice::from_raw_parts(b.pos, len));
            cl = link.next;
        }
        Some(out)
    }
}

/// Rewrites every request `Cookie` header without the cookies called `name`.
pub fn strip_request_cookie(r: &mut Request, name: &[u8], scratch: &mut Vec<u8>) -> Option<()> {
    let pool = r.as_ref().pool;
    let req: &mut ngx_http_request_t = r.as_mut();
    let mut part: *mut ngx_list_part_t = &mut req.headers_in.headers.part;
    // SAFETY: walking nginx's list of request headers, as `headers_out_mut`;
    // new values are allocated from the request pool.
    unsafe {
        while let Some(p) = part.as_mut() {
            let elts = slice::from_raw_parts_mut(p.elts.cast::<ngx_table_elt_t>(), p.nelts);
            for h in elts
                .iter_mut()
                .filter(|h| h.key.as_bytes().eq_ignore_ascii_case(b"cookie"))
            {
                if sessions_core::codec::cookie::strip_cookie(h.value.as_bytes(), name, scratch) {
                    let data = ngx_pnalloc(pool, scratch.len().max(1)).cast::<u8>();
                    if data.is_null() {
                        return None;
                    }
                    ptr::copy_nonoverlapping(scratch.as_ptr(), data, scratch.len());
                    h.value = ngx_str_t {
                        len: scratch.len(),
                        data,
                    };
                }
            }
            part = p.next;
        }
    }
    Some(())
}

/// Removes the request headers whose names `drop` matches, so that no
/// upstream is sent them. The kept headers stay where they are (nginx's
/// `headers_in` fields and subrequests point at them): the list's parts are
/// laid anew around them, on fresh part records. `None` when out of memory.
pub fn remove_request_headers(r: &mut Request, drop: impl Fn(&[u8]) -> bool) -> Option<()> {
    let req: &mut ngx_http_request_t = r.as_mut();
    let pool = req.pool;
    let list = &mut req.headers_in.headers;
    // Runs of kept headers: (first, count, offset in its part's array).
    let mut runs: Vec<(*mut ngx_table_elt_t, usize, usize)> = Vec::new();
    for pass in [false, true] {
        let mut dropped = false;
        let mut part: *mut ngx_list_part_t = &mut list.part;
        // SAFETY: walking nginx's list of request headers, as
        // `headers_out_mut`; every part's `elts` is the start of an array of
        // `nalloc` elements, `nelts` of them initialised.
        unsafe {
            while let Some(p) = part.as_mut() {
                let elts = p.elts.cast::<ngx_table_elt_t>();
                let mut start = None;
                for i in 0..p.nelts {
                    if !drop((*elts.add(i)).key.as_bytes()) {
                        start = start.or(Some(i));
                        continue;
                    }
                    dropped = true;
                    if let (true, Some(s)) = (pass, start.take()) {
                        runs.push((elts.add(s), i - s, s));
                    }
                }
                if let (true, Some(s)) = (pass, start) {
                    runs.push((elts.add(s), p.nelts - s, s));
                }
                part = p.next;
            }
        }
        if !dropped {
            return Some(());
        }
    }
    let Some(&(_, _, last_offset)) = runs.last() else {
        // Nothing kept: an empty first part over its own array.
        list.part.nelts = 0;
        list.part.next = ptr::null_mut();
        list.last = &mut list.part;
        return Some(());
    };
    let mut next: *mut ngx_list_part_t = ptr::null_mut();
    let mut last: *mut ngx_list_part_t = ptr::null_mut();
    for (i, &(first, count, _)) in runs.iter().enumerate().rev() {
        let p: *mut ngx_list_part_t = if i == 0 {
            &mut list.part
        } else {
            // SAFETY: a fresh part record from the request pool.
            unsafe { ngx_palloc(pool, mem::size_of::<ngx_list_part_t>()).cast() }
        };
        // SAFETY: `p` is the list's own first part or the fresh record above;
        // no run is empty, so no part is.
        unsafe {
            p.as_mut()?.elts = first.cast();
            (*p).nelts = count;
            (*p).next = next;
        }
        if last.is_null() {
            last = p;
        }
        next = p;
    }
    list.last = last;
    // `ngx_list_push` fills the last part up to `nalloc`: keep it within the
    // array the last run lives in.
    list.nalloc -= last_offset;
    Some(())
}

/// Whether the client is a script, not a browser navigating: the gate
/// answers it 401 rather than sending it to a login (see `gate::wants_401`).
pub fn wants_401(r: &Request) -> bool {
    sessions_core::access::gate::wants_401(
        header_in(r, b"accept"),
        header_in(r, b"x-requested-with"),
        header_in(r, b"sec-fetch-mode"),
    )
}

/// Replaces the request's `Authorization` headers, the client's own
/// included, by `value` (`None`: by none): what the upstream is sent, and
/// what `headers_in.authorization` points at for other modules.
pub fn set_authorization(r: &mut Request, value: Option<&[u8]>) -> Option<()> {
    remove_request_headers(r, |k| k.eq_ignore_ascii_case(b"authorization"))?;
    r.as_mut().headers_in.authorization = ptr::null_mut();
    let Some(value) = value else {
        return Some(());
    };
    let v = pool_str(r, value)?;
    let req: &mut ngx_http_request_t = r.as_mut();
    // The list's last part was kept within its array by `remove_request_headers`.
    let h = push_elt(&mut req.headers_in.headers, c"Authorization", c"authorization", v)?;
    req.headers_in.authorization = h;
    Some(())
}

/// Whether the client came over TLS: to this nginx, or to a proxy in
/// `trusted` (`sessions_trusted_proxies`) that says so in
/// `X-Forwarded-Proto`. The proxy is the connection's peer, before the
/// realip module put the client's address in its place.
pub fn client_https(r: &Request, trusted: &[Cidr]) -> bool {
    if is_https(r) {
        return true;
    }
    if trusted.is_empty() || !header_in(r, b"x-forwarded-proto").is_some_and(says_https) {
        return false;
    }
    let realip = <crate::config::module::Module as ngx::http::HttpModuleMainConf>::main_conf(r)
        .and_then(|m| m.realip_var);
    let peer = match realip {
        Some(index) => {
            let req: *const ngx_http_request_t = r.as_ref();
            // SAFETY: the index of `$realip_remote_addr`, found at
            // configuration time; the value lives in the request pool.
            let v = unsafe { ngx_http_get_indexed_variable(req.cast_mut(), index).as_ref() };
            v.filter(|v| v.not_found() == 0 && !v.data.is_null())
                // SAFETY: `len` bytes at `data`, as nginx hands them.
                .and_then(|v| address_bytes(unsafe { slice::from_raw_parts(v.data, v.len() as usize) }))
        }
        None => Some(client_ip(r)),
    };
    peer.is_some_and(|(ip, n)| trusted.iter().any(|c| c.contains(&ip[..n])))
}

/// Whether the request came over TLS.
pub fn is_https(r: &Request) -> bool {
    // SAFETY: reading the connection's `ssl` pointer of a live request.
    #[cfg(ngx_feature = "http_ssl")]
    return unsafe { !(*r.connection()).ssl.is_null() };
    #[cfg(not(ngx_feature = "http_ssl"))]
    return false;
}

/// What the access phase decided, read by the header filter and variables.
#[derive(Clone, Copy)]
pub struct Ctx {
    /// Guards the cleanup-list lookup against a handler merged with ours.
    magic: u32,
    pub status: Status,
    /// The session's current id (secret: never logged or exposed).
    pub id: SessionId,
    pub handle: Handle,
    /// The logged-in user, empty when not logged in.
    pub user: ngx_str_t,
    /// The session's data (see `sessions_core::model::data`), empty for none.
    pub data: ngx_str_t,
    pub created_ms: u64,
    /// `u64::MAX` when no timeout applies.
    pub expires_ms: u64,
    /// `Set-Cookie` value to send, empty for none.
    pub set_cookie: ngx_str_t,
    pub cookie_sent: bool,
    /// The record as decided, for changes made later in the request.
    pub record: Record,
    /// Where the session lives.
    pub store: StoreKind,
    /// Cookie store: one past the highest chunk cookie the request carried
    /// (those a new cookie does not replace are deleted).
    pub chunks: u8,
}

const CTX_MAGIC: u32 = 0x5e55_1075;

impl Ctx {
    pub fn new(status: Status, id: SessionId, record: &Record, expires_ms: u64, store: StoreKind) -> Self {
        Self {
            magic: CTX_MAGIC,
            status,
            id,
            handle: record.handle,
            record: *record,
            store,
            chunks: 0,
            user: ngx_str_t::default(),
            data: ngx_str_t::default(),
            created_ms: record.created,
            expires_ms,
            set_cookie: ngx_str_t::default(),
            cookie_sent: false,
        }
    }
}

/// Marks our context in the pool's cleanup list; never called with work to do.
extern "C" fn ctx_marker(_data: *mut c_void) {}

/// The request's context, borrowed for as long as the request is: it is
/// changed only through `put_ctx`, which needs the request mutably, so
/// no reader can hold it across a change. A writer copies it (`Ctx` is
/// `Copy`), changes the copy and puts it back.
pub fn ctx(r: &Request) -> Option<&Ctx> {
    // SAFETY: `find_ctx` gives our live `Ctx` in the request's pool, which
    // outlives `r`; it is written only under `&mut Request` (`put_ctx`).
    find_ctx(r).map(|p| unsafe { &*p })
}

/// Replaces the request's context with `value` (changed from a copy that
/// `ctx` gave); `None` when the request has none.
pub fn put_ctx(r: &mut Request, value: &Ctx) -> Option<()> {
    let p = find_ctx(r)?;
    // SAFETY: `p` is our live `Ctx`; `&mut Request` keeps every other
    // phase code of this request out while it is written.
    unsafe { *p = *value };
    Some(())
}

/// Where the request's context lives. Module contexts are wiped by
/// internal redirects, so the context also lives in a pool cleanup entry
/// (as the realip module does) and is found there again.
fn find_ctx(r: &Request) -> Option<*mut Ctx> {
    let main: &ngx_http_request_t = r.as_ref();
    // SAFETY: `r.main` is the main request of a live request.
    let main = unsafe { &mut *main.main };
    // SAFETY: module ctx slots are indexed by our module's ctx_index.
    let slot = unsafe { main.ctx.add(ngx_http_sessions_module.ctx_index) };
    // SAFETY: the slot holds null or a `Ctx` we stored (below).
    let stored = unsafe { (*slot).cast::<Ctx>() };
    if !stored.is_null() {
        return Some(stored);
    }
    // Module contexts are wiped only by an internal redirect (or named
    // location), which sets `internal`, or by a filter finalizing the
    // request, which sets `filter_finalize`; without either there is nothing
    // to find, so the hot path skips the walk.
    if main.internal() == 0 && main.filter_finalize() == 0 {
        return None;
    }
    // SAFETY: walking the request pool's cleanup list, all entries valid.
    let mut cln = unsafe { (*main.pool).cleanup };
    // SAFETY: each link is null or a live cleanup entry of that pool.
    while let Some(c) = unsafe { cln.as_ref() } {
        if c.handler
            .is_some_and(|h| ptr::fn_addr_eq(h, ctx_marker as extern "C" fn(_)))
        {
            let found = c.data.cast::<Ctx>();
            // SAFETY: entries with our marker carry a `Ctx` as their data.
            if unsafe { (*found).magic } == CTX_MAGIC {
                // SAFETY: `slot` is the request's context slot for this module.
                unsafe { *slot = c.data };
                return Some(found);
            }
        }
        cln = c.next;
    }
    None
}

/// Stores a new context for the main request.
pub fn set_ctx(r: &mut Request, value: Ctx) -> Option<()> {
    let req: &mut ngx_http_request_t = r.as_mut();
    // SAFETY: allocating a cleanup entry with room for a `Ctx` in the pool
    // of a live request; the memory lives as long as the request.
    let cln = unsafe { ngx_pool_cleanup_add(req.pool, mem::size_of::<Ctx>()).as_mut()? };
    cln.handler = Some(ctx_marker);
    let p = cln.data.cast::<Ctx>();
    // SAFETY: `p` is fresh pool memory sized (and, as pool memory, aligned)
    // for `Ctx`; the slot is this module's in the request's context array.
    unsafe {
        p.write(value);
        *req.ctx.add(ngx_http_sessions_module.ctx_index) = p.cast();
    }
    Some(())
}

/// Copies `bytes` into the request pool.
pub fn pool_str(r: &mut Request, bytes: &[u8]) -> Option<ngx_str_t> {
    let req: &mut ngx_http_request_t = r.as_mut();
    // SAFETY: allocating from the request pool and filling all of it.
    unsafe {
        let p = ngx_pnalloc(req.pool, bytes.len()).cast::<u8>();
        if p.is_null() {
            return None;
        }
        ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
        Some(ngx_str_t {
            len: bytes.len(),
            data: p,
        })
    }
}

/// Appends a `Set-Cookie` response header for each line of `value` (the
/// cookie store may set and delete several cookies at once).
pub fn add_set_cookie(r: &mut Request, value: ngx_str_t) -> Option<()> {
    if value.len == 0 {
        return Some(());
    }
    // SAFETY: `value` is a pool string of this request.
    let all = unsafe { slice::from_raw_parts(value.data, value.len) };
    let mut at = 0;
    for line in all.split(|&b| b == b'\n') {
        let v = ngx_str_t {
            len: line.len(),
            // SAFETY: `line` lies within `all`, at offset `at`.
            data: unsafe { value.data.add(at) },
        };
        at += line.len() + 1;
        push_header(r, c"Set-Cookie", c"set-cookie", v)?;
    }
    Some(())
}

/// Appends `Cache-Control: VALUE` to the response.
pub fn set_cache_control(r: &mut Request, value: &'static str) -> Option<()> {
    let v = ngx_str_t {
        len: value.len(),
        data: value.as_ptr().cast_mut(),
    };
    push_header(r, c"Cache-Control", c"cache-control", v).map(|_| ())
}

/// Appends a response header; `key` and `lowcase` are static.
fn push_header(
    r: &mut Request,
    key: &'static CStr,
    lowcase: &'static CStr,
    value: ngx_str_t,
) -> Option<*mut ngx_table_elt_t> {
    let req: &mut ngx_http_request_t = r.as_mut();
    push_elt(&mut req.headers_out.headers, key, lowcase, value)
}

/// Appends a header to `list` (a live request's input or output headers);
/// `key` and `lowcase` are static, `value` a string of the request's pool.
fn push_elt(
    list: &mut nginx_sys::ngx_list_t,
    key: &'static CStr,
    lowcase: &'static CStr,
    value: ngx_str_t,
) -> Option<*mut ngx_table_elt_t> {
    // SAFETY: pushing onto a header list of a live request; the element is
    // fully initialised before nginx can read it, and the key strings are
    // static.
    unsafe {
        let h = ngx_list_push(list).cast::<ngx_table_elt_t>();
        if h.is_null() {
            return None;
        }
        h.write(mem::zeroed());
        (*h).hash = 1;
        (*h).key = ngx_str_t {
            len: key.count_bytes(),
            data: key.as_ptr().cast_mut().cast(),
        };
        (*h).lowcase_key = lowcase.as_ptr().cast_mut().cast();
        (*h).value = value;
        Some(h)
    }
}

/// The value of `v` (compiled at configuration time) for this request.
pub fn evaluate(r: &mut Request, v: &LoginUrl) -> Option<Vec<u8>> {
    // SAFETY: the complex value was compiled at configuration time and
    // lives as long as the configuration this request runs under.
    r.get_complex_value(unsafe { &*v.0 })
        .map(|v| v.as_bytes().to_vec())
}

/// The request's `Content-Type`, if it has one.
pub fn content_type(r: &Request) -> Option<&[u8]> {
    // SAFETY: `content_type` is null or a header element of this live
    // request, in its pool.
    unsafe { r.as_ref().headers_in.content_type.as_ref() }.map(|h| h.value.as_bytes())
}

/// Keeps the response nginx is about to send out of any cache (proxy,
/// FastCGI, ...): nginx decides whether to store it after header filters.
pub fn not_cacheable(r: &mut Request) {
    if let Some(u) = r.upstream() {
        // SAFETY: the upstream of the live request being answered.
        unsafe { (*u).set_cacheable(0) };
    }
}

/// Starts reading the request body; nginx calls `then` once it is in.
/// (`body_handler!` makes `then` from a safe function.)
pub fn read_body(r: &mut Request, then: extern "C" fn(*mut ngx_http_request_t)) -> NgxStatus {
    // SAFETY: starting nginx's body reader on this live request, once.
    let rc = unsafe { ngx_http_read_client_request_body(r.into(), Some(then)) };
    NgxStatus(rc)
}

/// Ends a request whose body handler ran: its answer was sent with `rc`.
pub fn finalize(r: &mut Request, rc: NgxStatus) {
    // SAFETY: finishing the live request whose body handler is running.
    unsafe { ngx_http_finalize_request(r.into(), rc.0) };
}

/// Makes `$name`, an `extern "C"` body handler for `read_body`, from the
/// safe `fn(&mut Request) -> Status` `$body`; the request is then
/// finalized with what it returns. Its `unsafe` is this layer's, written
/// here, wherever it expands (as `ngx::http_request_handler!`'s).
macro_rules! body_handler {
    ($name:ident, $body:expr) => {
        #[allow(unsafe_code)]
        extern "C" fn $name(r: *mut nginx_sys::ngx_http_request_t) {
            // SAFETY: nginx calls a body handler with its live request.
            let req = unsafe { ngx::http::Request::from_ngx_http_request(r) };
            let rc = $body(&mut *req);
            $crate::nginx::request::finalize(req, rc);
        }
    };
}
pub(crate) use body_handler;

/// 302 to `target` (copied into the request pool): the login page, or
/// where a logout sends the browser.
pub fn redirect(r: &mut Request, target: &[u8]) -> NgxStatus {
    match pool_str(r, target).and_then(|v| set_location(r, v)) {
        Some(()) => HTTPStatus::MOVED_TEMPORARILY.into(),
        None => NgxStatus::NGX_ERROR,
    }
}
