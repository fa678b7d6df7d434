//! `sessions_admin`'s JSON answers, whichever store acted.

use ngx::core::Status;
use ngx::http::{HTTPStatus, Request};
use sessions_core::access::admin;
use sessions_core::model::record::Record;

use crate::config::conf::LocConf;
use crate::nginx::request;

pub const JSON: &str = "application/json";

/// Sends `body` as JSON with `status`.
pub fn send(r: &mut Request, status: HTTPStatus, body: &str) -> Status {
    request::send_body(r, status, JSON, body.as_bytes())
}

/// A user's sessions, each with when it expires under `lc`'s timeouts; at
/// `sessions_self`, which one is the request's own.
pub fn list(r: &Request, lc: &LocConf, user: &[u8], sessions: impl Iterator<Item = Record>) -> String {
    let own = request::ctx(r).filter(|_| lc.self_service).map(|c| c.handle);
    let sessions = sessions
        .map(|rec| {
            let deadline = lc.policy.timeouts_for(&rec).deadline(rec.times());
            admin::session_json(&rec, deadline, own.map(|h| h == rec.handle))
        })
        .collect();
    admin::list_json(user, sessions)
}

/// Who ended sessions, for the log line.
pub fn who_revoked(lc: &LocConf) -> &'static str {
    if lc.self_service {
        "a user's own revocation"
    } else {
        "admin revocation"
    }
}

/// The answer to revoking one session: 404 when it was not found.
pub fn revoked_one(found: bool) -> (HTTPStatus, String) {
    if found {
        (HTTPStatus::OK, admin::revoked_json(1))
    } else {
        (HTTPStatus::NOT_FOUND, admin::revoked_json(0))
    }
}

/// What `sessions_logout` answers once the session ended: a redirect to
/// its URL, or 204.
pub fn logged_out(r: &mut Request, lc: &LocConf) -> Status {
    match lc.logout_redirect {
        Some(url) => {
            let Some(v) = request::evaluate(r, &url) else {
                return Status::NGX_ERROR;
            };
            request::redirect(r, &v)
        }
        None => HTTPStatus::NO_CONTENT.into(),
    }
}

/// 503: the store could not be asked.
pub fn unavailable(r: &mut Request) -> Status {
    send(
        r,
        HTTPStatus::SERVICE_UNAVAILABLE,
        &admin::error_json("Redis is not available"),
    )
}
