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
        location /password-changed { add_header X-Session-Logout-Others on; return 200 \"ok\\n\"; }
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
        location = /me/sessions { sessions_self; }
        location /limited/ { sessions_max_per_user 2; sessions_control_headers on; proxy_pass http://127.0.0.1:{port2}/; }
        location /refusing/ { sessions_max_per_user 2 refuse; sessions_control_headers on; proxy_pass http://127.0.0.1:{port2}/; }
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

/// A request with a cookie, a method and a User-Agent; a JSON body if given
/// (with `content_type`).
fn own(n: &Nginx, cookie: &str, method: &str, path: &str, body: Option<(&str, &str)>) -> Response {
    let mut req = Request::get(path).cookie(cookie).header("User-Agent", BROWSER);
    req.method = method.into();
    match body {
        Some((content_type, b)) => {
            common::send_with_body(n.port, &req.header("Content-Type", content_type), b.as_bytes())
        }
        None => n.request(req),
    }
}

const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

fn own_status(n: &Nginx, cookie: &str) -> String {
    own(n, cookie, "GET", "/", None).header("X-Session-Status").unwrap().to_string()
}

/// Waits (up to 5 s) for `cookie` to be answered `want`: X-Session-Logout-Others
/// with Redis runs after the response.
fn until_status(n: &Nginx, cookie: &str, want: &str) -> String {
    let mut got = String::new();
    for _ in 0..50 {
        got = n
            .request(Request::get("/").cookie(cookie).header("User-Agent", BROWSER))
            .header("X-Session-Status")
            .unwrap()
            .to_string();
        if got == want {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    got
}

/// `sessions_self`: the logged-in user's own sessions, listed with which is
/// the current one, one of them or all others ended; nobody else's; not
/// without a login; not from another site. `X-Session-Logout-Others`.
#[test]
fn users_see_and_end_their_own_sessions() {
    let n = Nginx::start(CONF);
    let login = |user: &str| {
        let c = own(&n, "", "GET", "/", None).cookie_pair("sid");
        let r = own(&n, &c, "GET", &format!("/app/login?user={user}"), None);
        (r.cookie_pair("sid"), r.header("X-Session-Id").unwrap().to_string())
    };
    let anonymous = n.get("/").cookie_pair("sid");
    for c in ["", anonymous.as_str()] {
        let r = own(&n, c, "GET", "/me/sessions", None);
        assert_eq!((r.status, json(&r)["error"].as_str()), (401, Some("not logged in")));
    }
    let (a1, a2, a3, bob) = (login("alice"), login("alice"), login("alice"), login("bob"));

    let r = own(&n, &a1.0, "GET", "/me/sessions", None);
    assert_eq!(r.status, 200);
    let v = json(&r);
    assert_eq!(v["user"], "alice");
    let sessions = v["sessions"].as_array().unwrap();
    let mut ids: Vec<&str> = sessions.iter().map(|s| s["id"].as_str().unwrap()).collect();
    ids.sort();
    let mut want = vec![a1.1.as_str(), a2.1.as_str(), a3.1.as_str()];
    want.sort();
    assert_eq!(ids, want, "alice's three, not bob's");
    let current: Vec<&str> = sessions
        .iter()
        .filter(|s| s["current"] == true)
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(current, [a1.1.as_str()]);
    for s in sessions {
        assert_eq!(s["user_agent"], "Firefox on Linux");
        assert_eq!(s["ip"], "127.0.0.1");
        assert!(s["created"].as_u64().unwrap() > 1_700_000_000 && s["last_seen"].as_u64().is_some());
    }

    // Another user's session is not found.
    let r = own(&n, &a1.0, "DELETE", &format!("/me/sessions?id={}", bob.1), None);
    assert_eq!((r.status, json(&r)["revoked"].as_u64()), (404, Some(0)));
    assert_eq!(own_status(&n, &bob.0), "valid");
    // A foreign page can send only a form or text/plain without asking first.
    let r = own(&n, &a1.0, "POST", "/me/sessions", Some(("text/plain", r#"{"action":"revoke_others"}"#)));
    assert_eq!(r.status, 415);
    assert_eq!(own(&n, &a1.0, "OPTIONS", "/me/sessions?others", None).status, 405);
    assert_eq!(own_status(&n, &a2.0), "valid");

    // One session, then all others.
    let r = own(&n, &a1.0, "DELETE", &format!("/me/sessions?id={}", a2.1), None);
    assert_eq!((r.status, json(&r)["revoked"].as_u64()), (200, Some(1)));
    assert_eq!(own_status(&n, &a2.0), "ended");
    let r = own(&n, &a1.0, "POST", "/me/sessions", Some(("application/json", r#"{"action":"revoke_others"}"#)));
    assert_eq!((r.status, json(&r)["revoked"].as_u64()), (200, Some(1)));
    assert_eq!(own_status(&n, &a3.0), "ended");
    assert_eq!(own_status(&n, &a1.0), "valid", "the current session stays");
    assert_eq!(own_status(&n, &bob.0), "valid", "nobody else's");
    let v = json(&own(&n, &a1.0, "GET", "/me/sessions", None));
    assert_eq!(v["sessions"].as_array().unwrap().len(), 1);

    // The application ends the others after a password change.
    let (a4, a5) = (login("alice"), login("alice"));
    let r = own(&n, &a4.0, "GET", "/app/password-changed", None);
    assert_eq!(r.status, 200);
    assert!(r.header("X-Session-Logout-Others").is_none(), "kept from the client");
    for c in [&a1.0, &a5.0] {
        assert_eq!(until_status(&n, c, "ended"), "ended");
    }
    assert_eq!(own_status(&n, &a4.0), "valid");
    assert_eq!(own_status(&n, &bob.0), "valid");
    n.assert_clean_log();
}

/// Polls until `f` holds (5 s at most): with Redis the limit is kept just
/// after the login reaches Redis.
fn eventually(f: impl Fn() -> bool) -> bool {
    for _ in 0..100 {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

fn listed(n: &Nginx, user: &str) -> Vec<String> {
    let v = json(&send(n, "GET", &format!("/admin/sessions?user={user}"), None));
    v["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
}

fn limit_metric(n: &Nginx, action: &str) -> u64 {
    let text = n.get("/metrics").text();
    let line = format!("nginx_sessions_user_limit_total{{zone=\"admin\",action=\"{action}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&line)).unwrap().parse().unwrap()
}

/// `sessions_max_per_user 2`: a third login ends the oldest session;
/// with `refuse`, the third login does not hold.
#[test]
fn a_user_keeps_within_the_session_limit() {
    let n = Nginx::start(CONF);
    let login_at = |prefix: &str, user: &str| {
        let c = n.get("/").cookie_pair("sid");
        let r = n.request(Request::get(&format!("/{prefix}/login?user={user}")).cookie(&c));
        // A refused login keeps the session it had: no new cookie.
        let cookie = if r.set_cookies("sid").is_empty() { c } else { r.cookie_pair("sid") };
        (cookie, r.header("X-Session-Id").unwrap().to_string())
    };
    let a = login_at("limited", "lim");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let b = login_at("limited", "lim");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let c = login_at("limited", "lim");
    assert!(eventually(|| status(&n, &a.0) == "ended"), "the oldest ended: {}", status(&n, &a.0));
    assert_eq!((status(&n, &b.0), status(&n, &c.0)), ("valid".into(), "valid".into()));
    let mut ids = listed(&n, "lim");
    ids.sort();
    let mut want = vec![b.1.clone(), c.1.clone()];
    want.sort();
    assert_eq!(ids, want);
    assert!(eventually(|| limit_metric(&n, "ended") == 1));

    let d = login_at("refusing", "ref");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let e = login_at("refusing", "ref");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let f = login_at("refusing", "ref");
    // Refused outright (the zone) or ended as soon as counted (Redis, the
    // cookie store): the third is not logged in, the first two stay.
    let mut want = vec![d.1.clone(), e.1.clone()];
    want.sort();
    let first_two = || {
        let mut ids = listed(&n, "ref");
        ids.sort();
        ids == want
    };
    assert!(eventually(first_two), "{:?} {:?}", listed(&n, "ref"), f.1);
    assert_eq!((status(&n, &d.0), status(&n, &e.0)), ("valid".into(), "valid".into()));
    assert!(
        eventually(|| limit_metric(&n, "refused") == 1),
        "ended {} refused {}\n{}",
        limit_metric(&n, "ended"),
        limit_metric(&n, "refused"),
        n.error_log()
    );
    n.assert_clean_log();
}
