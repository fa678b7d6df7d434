//! `sessions_admin`: list a user's sessions, revoke one session or all of a
//! user's ("log out everywhere"). GET/DELETE take query arguments; POST
//! takes a JSON body. Answers are JSON. Protect the location with
//! `allow`/`deny` or authentication: it can end anyone's session.

use nginx_sys::{
    ngx_http_finalize_request, ngx_http_read_client_request_body, ngx_http_request_t, ngx_int_t,
    NGX_HTTP_DELETE, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_POST, NGX_HTTP_SPECIAL_RESPONSE, NGX_LOG_INFO,
};
use ngx::core::Status;
use ngx::http::{HTTPStatus, HttpModuleLocationConf, HttpModuleMainConf, Request};
use ngx::ngx_log_error;
use sessions_core::access::admin::{self, AdminRequest, Verb};
use sessions_core::model::record::Record;
use sessions_core::stores::zone::revoked;

use crate::config::conf::LocConf;
use crate::config::module::Module;
use crate::phases::park;
use crate::phases::request;
use sessions_sidecar::{Answer, Job};

/// Largest JSON body accepted.
const MAX_BODY: usize = 4096;
const JSON: &str = "application/json";

pub fn handler(r: &mut Request) -> Status {
    let method = r.as_ref().method;
    let verb = match method as u32 {
        NGX_HTTP_GET | NGX_HTTP_HEAD => Verb::Read,
        NGX_HTTP_DELETE => Verb::Delete,
        NGX_HTTP_POST => {
            // SAFETY: `content_type` is null or the live header element.
            let ct = unsafe { r.as_ref().headers_in.content_type.as_ref() };
            if !ct.is_some_and(|h| admin::is_json(h.value.as_bytes())) {
                let discard = r.discard_request_body();
                if !discard.is_ok() {
                    return discard;
                }
                let body = admin::error_json("the body must be sent as Content-Type: application/json");
                return request::send_body(r, HTTPStatus::UNSUPPORTED_MEDIA_TYPE, JSON, body.as_bytes());
            }
            // SAFETY: starting nginx's body reader on this live request; it
            // calls `body_read` once the body is in.
            let rc = unsafe { ngx_http_read_client_request_body(r.into(), Some(body_read)) };
            if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
                return Status(rc);
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
    match admin::from_query(verb, &args) {
        Ok(req) => act(r, req),
        Err(e) => request::send_body(r, HTTPStatus::BAD_REQUEST, JSON, admin::error_json(e).as_bytes()),
    }
}

extern "C" fn body_read(r: *mut ngx_http_request_t) {
    // SAFETY: nginx calls the body handler with the live request.
    let req = unsafe { Request::from_ngx_http_request(r) };
    let rc = match request::body_in_memory(req, MAX_BODY) {
        None => request::send_body(
            req,
            HTTPStatus::REQUEST_ENTITY_TOO_LARGE,
            JSON,
            admin::error_json("the body must be JSON of at most 4096 bytes").as_bytes(),
        ),
        Some(body) => match admin::from_json(&body) {
            Ok(a) => act(req, a),
            Err(e) => request::send_body(
                req,
                HTTPStatus::BAD_REQUEST,
                JSON,
                admin::error_json(e).as_bytes(),
            ),
        },
    };
    // SAFETY: finishing the request whose body we were handed.
    unsafe { ngx_http_finalize_request(r, rc.0) };
}

fn act(r: &mut Request, req: AdminRequest) -> Status {
    if Module::location_conf(r).is_some_and(|lc| lc.redis()) {
        return act_on_redis(r, req);
    }
    let (Some(lc), Some(table)) = (
        Module::location_conf(r),
        Module::main_conf(r).and_then(|m| m.table),
    ) else {
        return HTTPStatus::NOT_FOUND.into();
    };
    // Cookie-store sessions cannot be taken back: what ends them is a
    // record kept until they would have expired (see `revoked`). The zone's
    // own sessions are removed, and the record costs them nothing.
    let now = crate::clock::now_ms();
    let policy = &lc.policy;
    let mut made = Vec::new();
    let (status, body) = table.with(|t| match &req {
        AdminRequest::List { user } => {
            let sessions = t.sessions_of(user).into_iter().map(|(_, rec)| rec);
            (HTTPStatus::OK, list_json(lc, user, sessions))
        }
        AdminRequest::RevokeUser { user } => {
            let n = revoked::revoke_user(t, user, policy, now, &mut made);
            t.header().stats.logouts += n as u64;
            (HTTPStatus::OK, admin::revoked_json(n))
        }
        AdminRequest::RevokeId { id } => {
            let found = revoked::revoke_handle(t, id, policy, now, &mut made);
            if found {
                t.header().stats.logouts += 1;
            }
            revoked_one(found)
        }
    });
    // Shared with the other instances when a cookie-store location says so.
    if let Some(main) = Module::main_conf(r) {
        if let Some((keys, _)) = lc.keys_and_name(main) {
            park::share(main, keys, &made, now);
        }
    }
    if !matches!(req, AdminRequest::List { .. }) {
        ngx_log_error!(NGX_LOG_INFO, r.log(), "sessions: admin revocation: {body}");
    }
    request::send_body(r, status, JSON, body.as_bytes())
}

fn list_json(lc: &LocConf, user: &[u8], sessions: impl Iterator<Item = Record>) -> String {
    let sessions = sessions
        .map(|rec| admin::session_json(&rec, lc.policy.timeouts_for(&rec).deadline(rec.times())))
        .collect();
    admin::list_json(user, sessions)
}

fn revoked_one(found: bool) -> (HTTPStatus, String) {
    if found {
        (HTTPStatus::OK, admin::revoked_json(1))
    } else {
        (HTTPStatus::NOT_FOUND, admin::revoked_json(0))
    }
}

/// With `sessions_store redis` the request goes to the Redis thread. Only
/// logged-in sessions are found: they are the ones listed in a user's
/// index (a Redis record opens only with its session's cookie).
fn act_on_redis(r: &mut Request, req: AdminRequest) -> Status {
    let keys = Module::main_conf(r)
        .zip(Module::location_conf(r))
        .and_then(|(main, lc)| lc.keys_and_name(main))
        .map(|(keys, _)| keys.primary().seal().clone());
    let Some(keys) = keys.filter(|_| crate::phases::park::running() && !crate::phases::park::saturated())
    else {
        return unavailable(r);
    };
    let job = match req {
        AdminRequest::List { user } => Job::List { user, keys },
        AdminRequest::RevokeUser { user } => Job::Revoke { user, keys },
        AdminRequest::RevokeId { id } => Job::RevokeHandle { handle: id, keys },
    };
    if crate::phases::park::park_admin(r, job, answered) {
        Status::NGX_DONE
    } else {
        Status::NGX_ERROR
    }
}

fn unavailable(r: &mut Request) -> Status {
    let body = admin::error_json("Redis is not available");
    request::send_body(r, HTTPStatus::SERVICE_UNAVAILABLE, JSON, body.as_bytes())
}

/// Sends the Redis thread's answer to a parked admin request.
pub fn answered(r: &mut Request, answer: Answer) -> Status {
    let (status, body, revoked) = match answer {
        Answer::Listed { user, sessions } => match Module::location_conf(r) {
            Some(lc) => (HTTPStatus::OK, list_json(lc, &user, sessions.into_iter()), None),
            None => return HTTPStatus::NOT_FOUND.into(),
        },
        Answer::Revoked(n) => (HTTPStatus::OK, admin::revoked_json(n), Some(n)),
        Answer::RevokedOne(found) => {
            let (status, body) = revoked_one(found);
            (status, body, Some(usize::from(found)))
        }
        _ => return unavailable(r),
    };
    if let Some(n) = revoked {
        if let Some(table) = Module::main_conf(r).and_then(|m| m.table) {
            table.with(|t| t.header().stats.logouts += n as u64);
        }
        ngx_log_error!(
            NGX_LOG_INFO,
            r.log(),
            "sessions: admin revocation in Redis: {body}"
        );
    }
    request::send_body(r, status, JSON, body.as_bytes())
}

ngx::http_request_handler!(content_handler, handler);
/// `sessions_admin`'s content handler.
pub const ADMIN: extern "C" fn(*mut nginx_sys::ngx_http_request_t) -> nginx_sys::ngx_int_t = content_handler;
