//! `sessions_admin`: list a user's sessions, revoke one session or all of a
//! user's ("log out everywhere"). GET/DELETE take query arguments; POST
//! takes a JSON body. Answers are JSON. Protect the location with
//! `allow`/`deny` or authentication: it can end anyone's session.
//!
//! `sessions_self` is the same for the logged-in user's own sessions only:
//! list them, end one, end all others.

use nginx_sys::{
    ngx_int_t, NGX_HTTP_DELETE, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_POST, NGX_HTTP_SPECIAL_RESPONSE,
};
use ngx::core::Status;
use ngx::http::{HTTPStatus, HttpModuleLocationConf, HttpModuleMainConf, Request};
use sessions_core::access::admin::{self, AdminRequest, SelfRequest, Verb};

use crate::config::module::Module;
use crate::nginx::request;
use crate::phases::access::store_of;
use crate::phases::answers::JSON;

/// Largest JSON body accepted.
const MAX_BODY: usize = 4096;

pub fn handler(r: &mut Request) -> Status {
    let self_service = Module::location_conf(r).is_some_and(|lc| lc.self_service);
    if self_service && own_user(r).is_none() {
        let discard = r.discard_request_body();
        if !discard.is_ok() {
            return discard;
        }
        let body = admin::error_json("not logged in");
        return request::send_body(r, HTTPStatus::UNAUTHORIZED, JSON, body.as_bytes());
    }
    let method = r.as_ref().method;
    let verb = match method as u32 {
        NGX_HTTP_GET | NGX_HTTP_HEAD => Verb::Read,
        NGX_HTTP_DELETE => Verb::Delete,
        NGX_HTTP_POST => {
            if !request::content_type(r).is_some_and(admin::is_json) {
                let discard = r.discard_request_body();
                if !discard.is_ok() {
                    return discard;
                }
                let body = admin::error_json("the body must be sent as Content-Type: application/json");
                return request::send_body(r, HTTPStatus::UNSUPPORTED_MEDIA_TYPE, JSON, body.as_bytes());
            }
            let rc = request::read_body(r, body_read);
            if rc.0 >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
                return rc;
            }
            return Status::NGX_DONE;
        }
        _ => return HTTPStatus::NOT_ALLOWED.into(),
    };
    let discard = r.discard_request_body();
    if !discard.is_ok() {
        return discard;
    }
    let args = r.as_ref().args.as_bytes().to_vec();
    let req = if self_service {
        admin::self_from_query(verb, &args).map(Asked::Own)
    } else {
        admin::from_query(verb, &args).map(Asked::Any)
    };
    match req {
        Ok(req) => act(r, req),
        Err(e) => request::send_body(r, HTTPStatus::BAD_REQUEST, JSON, admin::error_json(e).as_bytes()),
    }
}

/// What was asked: of anyone's sessions (`sessions_admin`), or of the
/// user's own (`sessions_self`).
enum Asked {
    Any(AdminRequest),
    Own(SelfRequest),
}

/// The logged-in user of the request, and its session's handle.
fn own_user(r: &Request) -> Option<(Vec<u8>, sessions_core::Handle)> {
    request::ctx(r)
        .filter(|c| c.user.len > 0)
        .map(|c| (c.user.as_bytes().to_vec(), c.handle))
}

/// What a POST does once its body is in.
fn with_body(req: &mut Request) -> Status {
    match request::body_in_memory(req, MAX_BODY) {
        None => request::send_body(
            req,
            HTTPStatus::REQUEST_ENTITY_TOO_LARGE,
            JSON,
            admin::error_json("the body must be JSON of at most 4096 bytes").as_bytes(),
        ),
        Some(body) => match parse_json(req, &body) {
            Ok(a) => act(req, a),
            Err(e) => request::send_body(
                req,
                HTTPStatus::BAD_REQUEST,
                JSON,
                admin::error_json(e).as_bytes(),
            ),
        },
    }
}

fn parse_json(r: &Request, body: &[u8]) -> Result<Asked, &'static str> {
    if Module::location_conf(r).is_some_and(|lc| lc.self_service) {
        admin::self_from_json(body).map(Asked::Own)
    } else {
        admin::from_json(body).map(Asked::Any)
    }
}

request::body_handler!(body_read, with_body);

/// Goes through the location's store; a user's own request, through the
/// store holding their session.
fn act(r: &mut Request, req: Asked) -> Status {
    let (Some(lc), Some(main)) = (Module::location_conf(r), Module::main_conf(r)) else {
        return HTTPStatus::NOT_FOUND.into();
    };
    match req {
        Asked::Any(req) => store_of(lc.store()).admin(r, lc, main, req),
        Asked::Own(req) => {
            let (Some((user, handle)), Some(ctx)) = (own_user(r), request::ctx(r)) else {
                return HTTPStatus::UNAUTHORIZED.into();
            };
            store_of(ctx.store).admin(r, lc, main, req.for_user(&user, handle))
        }
    }
}

ngx::http_request_handler!(content_handler, handler);
/// `sessions_admin`'s content handler.
pub const ADMIN: extern "C" fn(*mut nginx_sys::ngx_http_request_t) -> nginx_sys::ngx_int_t = content_handler;
