//! `$session_status`, `$session_id`, `$session_created`, `$session_expires`.

use std::io::Write;

use nginx_sys::{
    ngx_http_request_t, ngx_http_variable_t, ngx_http_variable_value_t, ngx_int_t, ngx_str_t, ngx_uint_t,
    NGX_HTTP_VAR_NOCACHEABLE, NGX_HTTP_VAR_PREFIX,
};
use ngx::core::Status;
use ngx::http::Request;
use ngx::ngx_string;

use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf};
use sessions_core::access::assertion::Claims;

use crate::config::conf::{DEFAULT_ASSERTION_ISSUER, DEFAULT_ASSERTION_TTL_MS};
use crate::config::module::Module;
use crate::nginx::request::{self, Ctx};

type Getter =
    unsafe extern "C" fn(*mut ngx_http_request_t, *mut ngx_http_variable_value_t, usize) -> ngx_int_t;

const fn var(name: nginx_sys::ngx_str_t, get: Getter) -> ngx_http_variable_t {
    ngx_http_variable_t {
        name,
        set_handler: None,
        get_handler: Some(get),
        data: 0,
        flags: NGX_HTTP_VAR_NOCACHEABLE as ngx_uint_t,
        index: 0,
    }
}

pub static mut VARIABLES: [ngx_http_variable_t; 8] = [
    ngx_http_variable_t {
        name: ngx_string!("session_data_"),
        set_handler: None,
        get_handler: Some(get_data),
        data: 0,
        flags: (NGX_HTTP_VAR_NOCACHEABLE | NGX_HTTP_VAR_PREFIX) as ngx_uint_t,
        index: 0,
    },
    var(ngx_string!("session_status"), get_status),
    var(ngx_string!("session_id"), get_id),
    var(ngx_string!("session_created"), get_created),
    var(ngx_string!("session_expires"), get_expires),
    var(ngx_string!("session_user"), get_user),
    var(ngx_string!("session_authenticated"), get_authenticated),
    var(ngx_string!("session_assertion"), get_assertion),
];

/// Shared body of the getters: find the context, let `f` render the value.
fn render(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    f: impl FnOnce(&Ctx, &mut Vec<u8>),
) -> ngx_int_t {
    // SAFETY: nginx calls variable getters with a live request and a value slot.
    let (req, v) = unsafe { (Request::from_ngx_http_request(r), &mut *v) };
    let Some(ctx) = request::ctx(req) else {
        v.set_not_found(1);
        return Status::NGX_OK.into();
    };
    let mut buf = Vec::with_capacity(24);
    f(ctx, &mut buf);
    let Some(s) = request::pool_str(req, &buf) else {
        return Status::NGX_ERROR.into();
    };
    v.set_len(s.len as u32);
    v.data = s.data;
    v.set_valid(1);
    v.set_no_cacheable(1);
    v.set_not_found(0);
    Status::NGX_OK.into()
}

unsafe extern "C" fn get_status(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _: usize,
) -> ngx_int_t {
    render(r, v, |c, b| b.extend_from_slice(c.status.as_str().as_bytes()))
}

unsafe extern "C" fn get_id(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _: usize,
) -> ngx_int_t {
    render(r, v, |c, b| b.extend_from_slice(&c.handle.to_hex()))
}

unsafe extern "C" fn get_created(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _: usize,
) -> ngx_int_t {
    render(r, v, |c, b| {
        let _ = write!(b, "{}", c.created_ms / 1000);
    })
}

/// The logged-in user; empty when not logged in.
unsafe extern "C" fn get_user(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _: usize,
) -> ngx_int_t {
    render(r, v, |c, b| {
        if !c.user.data.is_null() {
            b.extend_from_slice(c.user.as_bytes());
        }
    })
}

/// `$session_data_KEY`: nginx passes the variable's full name in `data`.
unsafe extern "C" fn get_data(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    data: usize,
) -> ngx_int_t {
    // SAFETY: for prefix variables nginx passes a pointer to the name.
    let name = unsafe { &*(data as *const ngx_str_t) }.as_bytes();
    let key = name.get(b"session_data_".len()..).unwrap_or_default();
    let mut found = true;
    let rc = render(r, v, |c, b| {
        match sessions_core::model::data::get(c.data.as_bytes(), key) {
            Some(value) => b.extend_from_slice(value),
            None => found = false,
        }
    });
    if !found {
        // SAFETY: `v` is nginx's value slot for this call.
        unsafe { (*v).set_not_found(1) };
    }
    rc
}

/// `1` for a logged-in session, `0` otherwise.
unsafe extern "C" fn get_authenticated(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _: usize,
) -> ngx_int_t {
    render(r, v, |c, b| b.push(if c.user.len > 0 { b'1' } else { b'0' }))
}

/// Unix seconds of the earliest timeout; empty when none applies.
unsafe extern "C" fn get_expires(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _: usize,
) -> ngx_int_t {
    render(r, v, |c, b| {
        if c.expires_ms != u64::MAX {
            let _ = write!(b, "{}", c.expires_ms / 1000);
        }
    })
}

/// A JWT signed with the first `sessions_assertion_key` saying who the
/// logged-in user is; empty when not logged in or no key is configured.
unsafe extern "C" fn get_assertion(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _: usize,
) -> ngx_int_t {
    // SAFETY: nginx calls variable getters with a live request.
    let req = unsafe { Request::from_ngx_http_request(r) };
    let token = (|| {
        let key = Module::main_conf(req)?.assertion_keys.first()?;
        let lc = Module::location_conf(req)?;
        let ctx = request::ctx(req)?;
        if ctx.user.len == 0 {
            return None;
        }
        let iat = crate::clock::now_ms() / 1000;
        let ttl = lc.assertion_ttl.unwrap_or(DEFAULT_ASSERTION_TTL_MS) / 1000;
        let host = String::from_utf8_lossy(request::host(req));
        let sid = ctx.handle.to_hex();
        key.sign(&Claims {
            iss: lc.assertion_issuer.as_deref().unwrap_or(DEFAULT_ASSERTION_ISSUER),
            aud: lc.assertion_audience.as_deref().unwrap_or(&host),
            sub: &String::from_utf8_lossy(ctx.user.as_bytes()),
            sid: std::str::from_utf8(&sid).unwrap_or_default(),
            iat,
            exp: iat + ttl,
        })
    })();
    render(r, v, |_, b| {
        b.extend_from_slice(token.as_deref().unwrap_or_default().as_bytes())
    })
}
