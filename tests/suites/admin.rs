// `sessions_admin`: list a user's sessions, revoke one, log a user out
// everywhere. `admin.rs`, `admin_redis.rs` and `admin_cookie.rs` run it,
// each with its store in `SUITE`.

use common::{Nginx, Request, Response};
use serde_json::Value;

const CONF: &str = "
    sessions_zone admin:1m;
    server {
        listen 127.0.0.1:{port2};
        location /login { add_header X-Session-User $arg_user; return 200 \"ok\\n\"; }
    }
    server {
        listen 127.0.0.1:{port};
        root html;
        sessions on; sessions_secret admin-test; sessions_name sid;
        add_header X-Session-Id $session_id always;
        add_header X-Session-Status $session_status always;
        location /app/ { sessions_control_headers on; proxy_pass http://127.0.0.1:{port2}/; }
        location = /admin/sessions { sessions off; allow 127.0.0.1; deny all; sessions_admin; }
        location = /metrics { sessions off; sessions_status; }
    }";

/// A fresh session logged in as `user`: (cookie, $session_id).
fn logged_in(n: &Nginx, user: &str) -> (String, String) {
    let c = n.get("/").cookie_pair("sid");
    let r = n.request(Request::get(&format!("/app/login?user={user}")).cookie(&c));
    (
        r.cookie_pair("sid"),
        r.header("X-Session-Id").unwrap().to_string(),
    )
}

fn json(r: &Response) -> Value {
    assert_eq!(r.header("Content-Type"), Some("application/json"), "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

fn send(n: &Nginx, method: &str, path: &str, body: Option<&str>) -> Response {
    let mut req = Request::get(path);
    req.method = method.into();
    match body {
        Some(b) => common::send_with_body(
            n.port,
            &req.header("Content-Type", "application/json"),
            b.as_bytes(),
        ),
        None => n.request(req),
    }
}

fn status(n: &Nginx, cookie: &str) -> String {
    n.request(Request::get("/").cookie(cookie))
        .header("X-Session-Status")
        .unwrap()
        .to_string()
}

#[test]
fn list_and_log_out_everywhere() {
    let n = Nginx::start(CONF);
    let alice: Vec<_> = (0..3).map(|_| logged_in(&n, "alice")).collect();
    let bob = logged_in(&n, "bob");

    let r = send(&n, "GET", "/admin/sessions?user=alice", None);
    assert_eq!(r.status, 200);
    let v = json(&r);
    assert_eq!(v["user"], "alice");
    let mut listed: Vec<String> = v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let mut expected: Vec<String> = alice.iter().map(|(_, id)| id.clone()).collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(v["sessions"][0]["ip"], "127.0.0.1");
    assert!(v["sessions"][0]["created"].as_u64().unwrap() > 1_700_000_000);

    // Log alice out everywhere; bob is untouched.
    let r = send(&n, "DELETE", "/admin/sessions?user=alice", None);
    assert_eq!((r.status, json(&r)["revoked"].as_u64()), (200, Some(3)));
    for (cookie, _) in &alice {
        assert_eq!(status(&n, cookie), "ended", "a revoked session is on record");
    }
    assert_eq!(status(&n, &bob.0), "valid");
    let r = send(&n, "GET", "/admin/sessions?user=alice", None);
    assert_eq!(json(&r)["sessions"].as_array().unwrap().len(), 0);

    // Revoke one session by its id, with a JSON body.
    let body = format!(r#"{{"action":"revoke","id":"{}"}}"#, bob.1);
    let r = send(&n, "POST", "/admin/sessions", Some(&body));
    assert_eq!((r.status, json(&r)["revoked"].as_u64()), (200, Some(1)));
    assert_eq!(status(&n, &bob.0), "ended");
    let r = send(&n, "POST", "/admin/sessions", Some(&body));
    assert_eq!((r.status, json(&r)["revoked"].as_u64()), (404, Some(0)));

    // Revocations count as logouts.
    let metrics = n.get("/metrics").text();
    assert!(
        metrics.contains("nginx_sessions_logouts_total{zone=\"admin\"} 4"),
        "{metrics}"
    );
}

#[test]
fn bad_admin_requests_are_refused_clearly() {
    let n = Nginx::start(CONF);
    let r = send(&n, "GET", "/admin/sessions", None);
    assert_eq!(r.status, 400);
    assert!(json(&r)["error"].as_str().unwrap().contains("user"));
    let r = send(&n, "POST", "/admin/sessions", Some("{not json"));
    assert_eq!(r.status, 400);
    let r = send(
        &n,
        "POST",
        "/admin/sessions",
        Some(r#"{"action":"explode","user":"x"}"#),
    );
    assert_eq!(r.status, 400);
    let r = send(&n, "DELETE", "/admin/sessions?id=xyz", None);
    assert_eq!(r.status, 400);
    // A name no session can have: empty, too long, a control character.
    let long = "x".repeat(65);
    for user in ["", &long, "a%0Ab"] {
        let r = send(&n, "DELETE", &format!("/admin/sessions?user={user}"), None);
        assert_eq!(r.status, 400, "{user:?}");
        assert!(json(&r)["error"].as_str().unwrap().contains("user name"));
    }
    let r = send(
        &n,
        "POST",
        "/admin/sessions",
        Some(r#"{"action":"list","user":"a\u0001"}"#),
    );
    assert_eq!(r.status, 400);
    assert_eq!(send(&n, "PUT", "/admin/sessions", None).status, 405);
    let big = format!(r#"{{"action":"list","user":"{}"}}"#, "x".repeat(5000));
    assert_eq!(send(&n, "POST", "/admin/sessions", Some(&big)).status, 413);
}

/// A foreign page can make an admin's browser POST without asking first
/// only as text/plain, a form or multipart: none of them may act.
#[test]
fn a_post_a_browser_could_send_cross_site_changes_nothing() {
    let n = Nginx::start(CONF);
    let (alice, _) = logged_in(&n, "alice");
    let body = r#"{"action":"revoke","user":"alice"}"#;
    for ct in [
        Some("text/plain"),
        Some("text/plain; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut req = Request::get("/admin/sessions");
        req.method = "POST".into();
        if let Some(ct) = ct {
            req = req.header("Content-Type", ct);
        }
        let r = common::send_with_body(n.port, &req, body.as_bytes());
        assert_eq!(r.status, 415, "{ct:?}: {}", r.text());
        assert!(json(&r)["error"].as_str().unwrap().contains("application/json"));
        assert_eq!(status(&n, &alice), "valid", "{ct:?} revoked alice");
    }
    // A cross-site DELETE, or a JSON POST, needs the browser's preflight:
    // it is not granted.
    let r = send(&n, "OPTIONS", "/admin/sessions?user=alice", None);
    assert_eq!(r.status, 405);
    assert!(r
        .headers
        .iter()
        .all(|(k, _)| !k.to_ascii_lowercase().starts_with("access-control-")));
    assert_eq!(status(&n, &alice), "valid");
    let r = send(&n, "POST", "/admin/sessions", Some(body));
    assert_eq!((r.status, json(&r)["revoked"].as_u64()), (200, Some(1)));
    assert_eq!(status(&n, &alice), "ended");
}
