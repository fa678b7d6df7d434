//! `$session_status`, `$session_id`, `$session_created`, `$session_expires`.

use std::io::Write;

use nginx_sys::{
    ngx_http_request_t, ngx_http_variable_t, ngx_http_variable_value_t, ngx_int_t, ngx_str_t, ngx_uint_t,
    NGX_HTTP_VAR_NOCACHEABLE, NGX_HTTP_VAR_PREFIX,
};
use ngx::core::Status;
use ngx::http::Request;
use ngx::ngx_string;

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

pub static mut VARIABLES: [ngx_http_variable_t; 7] = [
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
