//! `sessions_jwks`: the public keys that verify `$session_assertion`.

use ngx::core::Status;
use ngx::http::{HTTPStatus, HttpModuleMainConf, Request};
use sessions_core::access::assertion;

use crate::config::module::Module;
use crate::nginx::request;

pub fn handler(r: &mut Request) -> Status {
    if let Err(answer) = request::read_only(r) {
        return answer;
    }
    let Some(main) = Module::main_conf(r) else {
        return HTTPStatus::NOT_FOUND.into();
    };
    let body = assertion::jwks(&main.assertion_keys);
    // Applications may cache the set briefly; a key to come is published
    // (listed after the signing key) before it signs.
    if request::set_cache_control(r, "max-age=300").is_none() {
        return Status::NGX_ERROR;
    }
    request::send_body(r, HTTPStatus::OK, "application/jwk-set+json", body.as_bytes())
}

ngx::http_request_handler!(content_handler, handler);
/// `sessions_jwks`'s content handler.
pub const JWKS: extern "C" fn(*mut nginx_sys::ngx_http_request_t) -> nginx_sys::ngx_int_t = content_handler;
