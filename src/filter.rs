//! The header filter: the session cookie reaches whatever response the
//! request ends with (static file, proxied, error page, redirect), once.

use nginx_sys::{ngx_http_output_header_filter_pt, ngx_http_request_t, ngx_int_t};
use ngx::core::Status;
use ngx::http::Request;

use crate::request;

pub static mut NEXT_HEADER_FILTER: ngx_http_output_header_filter_pt = None;

pub extern "C" fn header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls header filters with a live request.
    let req = unsafe { Request::from_ngx_http_request(r) };
    if req.is_main() {
        if let Some(ctx) = request::ctx(req) {
            if !ctx.cookie_sent && ctx.set_cookie.len > 0 {
                if request::add_set_cookie(req, ctx.set_cookie).is_none() {
                    return Status::NGX_ERROR.into();
                }
                ctx.cookie_sent = true;
            }
        }
    }
    // SAFETY: set once in postconfiguration to the filter that was on top.
    match unsafe { NEXT_HEADER_FILTER } {
        // SAFETY: calling the next filter in nginx's chain with the same request.
        Some(next) => unsafe { next(r) },
        None => Status::NGX_OK.into(),
    }
}
