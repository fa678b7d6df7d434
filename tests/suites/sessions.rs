// The scenario suite: a real nginx with the module, real HTTP on loopback.
// `sessions.rs`, `sessions_redis.rs` and `sessions_cookie.rs` run it, each
// with its store in `SUITE`.

use std::collections::HashSet;
use std::thread::sleep;
use std::time::Duration;

use common::{Nginx, Request, Response};

const SECRET: &str = "itest-secret-0123456789";

/// An `http` block body with one server; `server` goes inside it.
fn conf(http: &str, server: &str) -> String {
    format!(
        "sessions on;\n\
         sessions_secret {SECRET};\n\
         sessions_name sid;\n\
         {http}\n\
         server {{\n\
           listen 127.0.0.1:{{port}};\n\
           root html;\n\
           add_header X-Session-Status $session_status always;\n\
           add_header X-Session-Id $session_id always;\n\
           {server}\n\
         }}\n"
    )
}

fn status(r: &Response) -> &str {
    r.header("X-Session-Status").unwrap_or("")
}

fn sid(r: &Response) -> &str {
    r.header("X-Session-Id").unwrap_or("")
}

#[test]
fn new_session_sets_cookie_with_default_attributes() {
    let n = Nginx::start(&conf("", ""));
    let r = n.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(status(&r), "new");
    assert_eq!(sid(&r).len(), 16);
    assert!(sid(&r).bytes().all(|b| b.is_ascii_hexdigit()));
    let set = r.set_cookies("sid");
    assert_eq!(set.len(), 1, "{:?}", r.headers);
    let (pair, attrs) = set[0].split_once("; ").unwrap();
    let value = pair.strip_prefix("sid=").unwrap();
    if SUITE == common::Suite::Cookie {
        // The whole session, sealed: one cookie while it is small.
        assert!(value.starts_with("s1.1.") && value.len() < 400, "{value}");
    } else {
        assert!(value.starts_with("v1.") && value.len() == 46, "{value}");
    }
    // Browser-session cookie: no Max-Age / Expires, no Secure over plain HTTP.
    assert_eq!(attrs, "Path=/; HttpOnly; SameSite=Lax");
    // The log id is not part of the cookie.
    assert!(!set[0].contains(sid(&r)));
    n.assert_clean_log();
}

#[test]
fn cookie_attribute_directives() {
    let n = Nginx::start(&conf(
        "",
        "location /custom/ {
            sessions_cookie_domain example.com;
            sessions_cookie_path /custom/;
            sessions_cookie_secure on;
            sessions_cookie_httponly off;
            sessions_cookie_samesite strict;
            sessions_cookie_max_age 1h;
            try_files $uri /index.html;
        }
        location /none/ {
            sessions_cookie_samesite none;
            sessions_cookie_secure off;
            try_files $uri /index.html;
        }
        location /auto/ {
            sessions_cookie_samesite off;
            try_files $uri /index.html;
        }",
    ));
    let r = n.get("/custom/");
    assert_eq!(
        r.set_cookies("sid")[0].split_once("; ").unwrap().1,
        "Domain=example.com; Path=/custom/; Max-Age=3600; Secure; SameSite=Strict"
    );
    // SameSite=None is only honoured by browsers together with Secure.
    let r = n.get("/none/");
    assert_eq!(
        r.set_cookies("sid")[0].split_once("; ").unwrap().1,
        "Path=/; Secure; HttpOnly; SameSite=None"
    );
    let r = n.get("/auto/");
    assert_eq!(
        r.set_cookies("sid")[0].split_once("; ").unwrap().1,
        "Path=/; HttpOnly"
    );
}

#[test]
fn valid_cookie_reuses_session_without_new_cookie() {
    let n = Nginx::start(&conf("", ""));
    let first = n.get("/");
    let cookie = first.cookie_pair("sid");
    for _ in 0..5 {
        let r = n.request(Request::get("/").cookie(&format!("other=1; {cookie}; more=2")));
        assert_eq!(r.status, 200);
        assert_eq!(status(&r), "valid");
        assert_eq!(sid(&r), sid(&first));
        assert!(r.all("Set-Cookie").is_empty(), "{:?}", r.headers);
    }
}

#[test]
fn several_cookie_headers_are_all_read() {
    let n = Nginx::start(&conf("", ""));
    let first = n.get("/");
    let c = first.cookie_pair("sid");
    // Two Cookie headers, the session in the second, a bad one first.
    let r = n.request(
        Request::get("/")
            .header("Cookie", "a=1; sid=v1.bogus")
            .header("Cookie-2", "unused"),
    );
    assert_eq!(status(&r), "invalid");
    let mut req = Request::get("/");
    req.headers.push(("Cookie".into(), "a=1; sid=v1.bogus".into()));
    req.headers.push(("Cookie".into(), format!("b=2; {c}")));
    let r = n.request(req);
    assert_eq!(status(&r), "valid", "a valid session cookie in any header wins");
    assert_eq!(sid(&r), sid(&first));
}

#[test]
fn tampered_or_garbage_cookies_get_fresh_sessions() {
    let n = Nginx::start(&conf("", ""));
    let first = n.get("/");
    let cookie = first.cookie_pair("sid");
    let value = cookie.strip_prefix("sid=").unwrap().to_string();
    let mut seen = HashSet::from([sid(&first).to_string()]);
    for i in 0..value.len() {
        for replacement in [b'A', b'-', b'%'] {
            let mut bytes = value.clone().into_bytes();
            if bytes[i] == replacement {
                continue;
            }
            bytes[i] = replacement;
            let tampered = String::from_utf8(bytes).unwrap();
            let r = n.request(Request::get("/").cookie(&format!("sid={tampered}")));
            assert_eq!(r.status, 200, "byte {i}");
            assert_eq!(status(&r), "invalid", "byte {i}");
            assert!(
                seen.insert(sid(&r).to_string()),
                "a tampered cookie reused a session"
            );
            assert_eq!(r.set_cookies("sid").len(), 1);
        }
    }
    let huge = "A".repeat(6000);
    for garbage in [
        "",
        "v1.",
        "v1..",
        "v1.%00%ff",
        "\"quoted\"",
        huge.as_str(),
        "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let r = n.request(Request::get("/").cookie(&format!("sid={garbage}")));
        assert_eq!(r.status, 200);
        assert_eq!(status(&r), "invalid", "{garbage:.20}");
    }
    // The original still works.
    let r = n.request(Request::get("/").cookie(&cookie));
    assert_eq!(status(&r), "valid");
    // Neither the secret nor any cookie value is ever logged.
    let log = n.error_log();
    assert!(
        log.contains("cookie refused (invalid)"),
        "refusals are logged at info"
    );
    assert!(!log.contains(SECRET) && !log.contains(&value[3..]));
    n.assert_clean_log();
}

#[test]
fn idle_timeout() {
    let n = Nginx::start(&conf(
        "sessions_idling_timeout 1s; sessions_rolling_timeout 0; sessions_absolute_timeout 0;",
        "",
    ));
    let first = n.get("/");
    let mut c = first.cookie_pair("sid");
    for _ in 0..3 {
        sleep(Duration::from_millis(600));
        let r = n.request(Request::get("/").cookie(&c));
        assert_eq!(status(&r), "valid", "activity keeps it alive");
        // As a browser does: the cookie store records activity in a new cookie.
        if !r.set_cookies("sid").is_empty() {
            c = r.cookie_pair("sid");
        }
    }
    sleep(Duration::from_millis(1600));
    let r = n.request(Request::get("/").cookie(&c));
    assert_eq!(status(&r), "expired_idle");
    assert_ne!(sid(&r), sid(&first));
    assert_eq!(r.set_cookies("sid").len(), 1);
}

#[test]
fn absolute_timeout_ends_an_active_session() {
    let n = Nginx::start(&conf(
        "sessions_idling_timeout 0; sessions_rolling_timeout 0; sessions_absolute_timeout 2;",
        "",
    ));
    let c = n.get("/").cookie_pair("sid");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        sleep(Duration::from_millis(500));
        statuses.push(status(&n.request(Request::get("/").cookie(&c))).to_string());
    }
    assert_eq!(statuses[0], "valid");
    assert_eq!(statuses[2], "valid");
    assert!(statuses.contains(&"expired_absolute".to_string()), "{statuses:?}");
}

#[test]
fn requests_at_once_at_renewal_agree_on_one_new_id() {
    // Two workers: the requests may meet in one or in both.
    let n = Nginx::start_with(2, &conf(
        "sessions_idling_timeout 0; sessions_absolute_timeout 0; sessions_rolling_timeout 2s; sessions_renewal_grace 10s;",
        "",
    ));
    let first = n.get("/");
    let old = first.cookie_pair("sid");
    sleep(Duration::from_millis(1600));
    // Twelve requests with the cookie due for renewal, sent at once.
    let start = std::sync::Arc::new(std::sync::Barrier::new(12));
    let clients: Vec<_> = (0..12)
        .map(|_| {
            let (start, old, port) = (start.clone(), old.clone(), n.port);
            std::thread::spawn(move || {
                start.wait();
                common::send(port, &Request::get("/").cookie(&old))
            })
        })
        .collect();
    let answers: Vec<Response> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let statuses: Vec<&str> = answers.iter().map(status).collect();
    if SUITE == common::Suite::Cookie {
        // Nothing shared to agree on: each request renews the session in
        // the cookie it answers with, and every one of them works.
        assert!(statuses.iter().all(|s| *s == "renewed"), "{statuses:?}");
        for a in &answers {
            assert_eq!(sid(a), sid(&first));
            let r = n.request(Request::get("/").cookie(&a.cookie_pair("sid")));
            assert_eq!((status(&r), sid(&r)), ("valid", sid(&first)));
        }
        return;
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == "renewed").count(),
        1,
        "one renewal, the rest pass on its grace: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == "renewed" || *s == "valid"),
        "{statuses:?}"
    );
    let new: HashSet<String> = answers.iter().map(|r| r.cookie_pair("sid")).collect();
    assert_eq!(new.len(), 1, "every answer carries the same new id: {new:?}");
    assert!(answers.iter().all(|r| sid(r) == sid(&first)));
    let new = new.into_iter().next().unwrap();
    assert_ne!(new, old);
    let r = n.request(Request::get("/").cookie(&new));
    assert_eq!(status(&r), "valid");
    assert!(r.all("Set-Cookie").is_empty());
}

#[test]
fn rolling_renewal_with_grace_then_expiry() {
    let n = Nginx::start(&conf(
        "sessions_idling_timeout 0; sessions_absolute_timeout 0; sessions_rolling_timeout 2s; sessions_renewal_grace 1s;",
        "",
    ));
    let first = n.get("/");
    let old = first.cookie_pair("sid");
    sleep(Duration::from_millis(1600));
    // Past three quarters of the rolling time: a new id, same session.
    let r = n.request(Request::get("/").cookie(&old));
    assert_eq!(status(&r), "renewed");
    assert_eq!(sid(&r), sid(&first));
    let new = r.cookie_pair("sid");
    assert_ne!(new, old);
    // A request in flight with the old cookie still passes during the grace.
    let r = n.request(Request::get("/").cookie(&old));
    assert_eq!(sid(&r), sid(&first));
    if SUITE == common::Suite::Cookie {
        // No shared record to point the old cookie at the new one: it
        // renews the session on its own.
        assert_eq!(status(&r), "renewed");
    } else {
        assert_eq!(status(&r), "valid");
        assert_eq!(
            r.cookie_pair("sid"),
            new,
            "the old cookie is answered with the new one"
        );
    }
    let r = n.request(Request::get("/").cookie(&new));
    assert_eq!(status(&r), "valid");
    assert!(r.all("Set-Cookie").is_empty());
    // After the grace the old id is refused; the new one lives on.
    sleep(Duration::from_millis(1200));
    let r = n.request(Request::get("/").cookie(&old));
    assert_eq!(status(&r), "expired_rolling");
    assert_ne!(sid(&r), sid(&first));
    assert_eq!(status(&n.request(Request::get("/").cookie(&new))), "valid");
    // Not renewed within the rolling time: expired.
    sleep(Duration::from_millis(2200));
    let r = n.request(Request::get("/").cookie(&new));
    assert_eq!(status(&r), "expired_rolling");
}

#[test]
fn ip_check_with_realip() {
    let n = Nginx::start(&conf(
        "set_real_ip_from 127.0.0.1; real_ip_header X-Real-IP;",
        "location /lenient/ { sessions_check_ip off; try_files $uri /index.html; }",
    ));
    let from =
        |ip: &str, path: &str, c: &str| n.request(Request::get(path).header("X-Real-IP", ip).cookie(c));
    let first = n.request(Request::get("/").header("X-Real-IP", "192.0.2.1"));
    let c = first.cookie_pair("sid");
    assert_eq!(status(&from("192.0.2.1", "/", &c)), "valid");
    let moved = from("192.0.2.2", "/", &c);
    assert_eq!(moved.status, 200, "the request itself is served");
    assert_eq!(status(&moved), "ip_mismatch");
    assert_ne!(sid(&moved), sid(&first));
    // The old session was destroyed, even for its own address.
    assert_eq!(status(&from("192.0.2.1", "/", &c)), "unknown");
    // IPv6 clients work the same way.
    let v6 = n.request(Request::get("/").header("X-Real-IP", "2001:db8::1"));
    let c6 = v6.cookie_pair("sid");
    assert_eq!(status(&from("2001:db8::1", "/", &c6)), "valid");
    assert_eq!(status(&from("2001:db8::2", "/", &c6)), "ip_mismatch");
    // With the check off an address change passes.
    let c2 = from("192.0.2.7", "/lenient/", "").cookie_pair("sid");
    assert_eq!(status(&from("198.51.100.9", "/lenient/", &c2)), "valid");
}

/// `sessions_check_ip` with prefixes and in log mode,
/// `sessions_check_user_agent ignore_versions` and in log mode.
#[test]
fn graded_binding() {
    let n = Nginx::start(&conf(
        "set_real_ip_from 127.0.0.1; real_ip_header X-Real-IP;",
        "location /net/ { sessions_check_ip on ipv4=24 ipv6=64; try_files $uri /index.html; }
         location /watch/ { sessions_check_ip log; sessions_check_user_agent log; try_files $uri /index.html; }
         location /browser/ { sessions_check_user_agent on ignore_versions; try_files $uri /index.html; }
         location = /metrics { sessions_status; }",
    ));
    let from = |ip: &str, path: &str, c: &str| {
        n.request(Request::get(path).header("X-Real-IP", ip).header("User-Agent", "Browser/1.0").cookie(c))
    };
    // The same /24 and /64 pass; another network is refused.
    let c = from("192.0.2.1", "/net/", "").cookie_pair("sid");
    assert_eq!(status(&from("192.0.2.200", "/net/", &c)), "valid");
    assert_eq!(status(&from("192.0.3.1", "/net/", &c)), "ip_mismatch");
    let c6 = from("2001:db8::1", "/net/", "").cookie_pair("sid");
    assert_eq!(status(&from("2001:db8::ffff:1", "/net/", &c6)), "valid");
    assert_eq!(status(&from("2001:db8:0:1::1", "/net/", &c6)), "ip_mismatch");
    let c6 = from("2001:db8::1", "/net/", "").cookie_pair("sid");
    assert_eq!(status(&from("192.0.2.1", "/net/", &c6)), "ip_mismatch", "another family");

    // Log mode: the session is kept, the difference logged and counted.
    let first = from("192.0.2.1", "/watch/", "");
    let c = first.cookie_pair("sid");
    let r = from("198.51.100.9", "/watch/", &c);
    assert_eq!((status(&r), sid(&r)), ("valid", sid(&first)), "log mode keeps the session");
    let r = n.request(
        Request::get("/watch/")
            .header("X-Real-IP", "198.51.100.9")
            .header("User-Agent", "Other/2")
            .cookie(&c),
    );
    assert_eq!((status(&r), sid(&r)), ("valid", sid(&first)));
    let m = n.get("/metrics").text();
    let tolerated = |reason: &str| {
        m.lines()
            .find(|l| l.starts_with("nginx_sessions_tolerated_total") && l.contains(reason))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    assert_eq!((tolerated("ip_mismatch"), tolerated("ua_mismatch")), (Some(2), Some(1)), "{m}");
    let log = n.error_log();
    assert!(log.contains("ip_mismatch let through (check in log mode)"), "{log}");

    // A browser update keeps the session where versions are ignored; another browser does not.
    let ua = |agent: &str, c: &str| n.request(Request::get("/browser/").header("User-Agent", agent).cookie(c));
    let chrome = |v: &str| format!("Mozilla/5.0 (X11; Linux x86_64) Chrome/{v} Safari/537.36");
    let c = ua(&chrome("120.0.6099.71"), "").cookie_pair("sid");
    assert_eq!(status(&ua(&chrome("121.0.6167.85"), &c)), "valid");
    assert_eq!(status(&ua("Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0", &c)), "ua_mismatch");
    // Where versions count, the update is refused.
    let c = ua(&chrome("120.0"), "").cookie_pair("sid");
    let r = n.request(Request::get("/").header("User-Agent", &chrome("121.0")).cookie(&c));
    assert_eq!(status(&r), "ua_mismatch");
}

#[test]
fn refused_cookie_is_kept_from_the_upstream() {
    let n = Nginx::start(&conf(
        "server { listen 127.0.0.1:{port2}; sessions off; location / { return 200 \"cookie=[$http_cookie]\"; } }",
        "location /app/ { proxy_pass http://127.0.0.1:{port2}/; }",
    ));
    let c = n.get("/").cookie_pair("sid");
    let r = n.request(Request::get("/app/").cookie(&format!("a=1; {c}; b=2")));
    assert_eq!(status(&r), "valid");
    assert_eq!(
        r.text(),
        format!("cookie=[a=1; {c}; b=2]"),
        "a valid cookie passes as sent"
    );
    let r = n.request(
        Request::get("/app/")
            .cookie(&format!("a=1; {c}; b=2"))
            .header("User-Agent", "other"),
    );
    assert_eq!(status(&r), "ua_mismatch");
    assert_eq!(
        r.text(),
        "cookie=[a=1; b=2]",
        "the refused session cookie is stripped"
    );
    let r = n.request(Request::get("/app/").cookie("sid=v1.forged"));
    assert_eq!((status(&r), r.text().as_str()), ("invalid", "cookie=[]"));
}

/// `sessions_pass_cookie off`: the upstream never sees the session cookie,
/// valid or not; the client's other cookies still pass.
#[test]
fn the_session_cookie_can_be_kept_from_the_upstream() {
    let n = Nginx::start(&conf(
        "server { listen 127.0.0.1:{port2}; sessions off; location / { return 200 \"cookie=[$http_cookie]\"; } }",
        "location /app/ { sessions_pass_cookie off; proxy_pass http://127.0.0.1:{port2}/; }
         location /passed/ { proxy_pass http://127.0.0.1:{port2}/; }",
    ));
    let c = n.get("/").cookie_pair("sid");
    let r = n.request(Request::get("/app/").cookie(&format!("a=1; {c}; b=2")));
    assert_eq!((status(&r), r.text().as_str()), ("valid", "cookie=[a=1; b=2]"));
    let r = n.request(Request::get("/app/").cookie(&c));
    assert_eq!((status(&r), r.text().as_str()), ("valid", "cookie=[]"));
    let r = n.request(Request::get("/passed/").cookie(&c));
    assert_eq!(r.text(), format!("cookie=[{c}]"), "passed by default");
}

#[test]
fn user_agent_check() {
    let n = Nginx::start(&conf(
        "",
        "location /lenient/ { sessions_check_user_agent off; try_files $uri /index.html; }",
    ));
    let ua = |agent: &str, path: &str, c: &str| {
        n.request(Request::get(path).header("User-Agent", agent).cookie(c))
    };
    let c = ua("Browser/1", "/", "").cookie_pair("sid");
    assert_eq!(status(&ua("Browser/1", "/", &c)), "valid");
    let r = ua("Browser/2", "/", &c);
    assert_eq!((r.status, status(&r)), (200, "ua_mismatch"));
    assert_eq!(status(&ua("Browser/1", "/", &c)), "unknown");
    let c = ua("Browser/1", "/lenient/", "").cookie_pair("sid");
    assert_eq!(status(&ua("Other/9", "/lenient/", &c)), "valid");
}

#[test]
fn sessions_off_in_child_location_and_on_in_child() {
    let n = Nginx::start(&conf(
        "",
        "location /off/ { sessions off; }
         location /nested/ { sessions off; location /nested/on/ { sessions on; try_files $uri /index.html; } }",
    ));
    std::fs::create_dir_all(n.dir.join("html/off")).unwrap();
    std::fs::write(n.dir.join("html/off/index.html"), "off\n").unwrap();
    let r = n.get("/off/");
    assert_eq!((r.status, r.text().as_str()), (200, "off\n"));
    assert!(r.all("Set-Cookie").is_empty());
    assert!(
        r.header("X-Session-Status").is_none(),
        "$session_status is empty where sessions are off"
    );
    let r = n.get("/nested/on/");
    assert_eq!(status(&r), "new");
}

#[test]
fn cookie_reaches_proxied_error_and_redirect_responses_once() {
    let n = Nginx::start(&conf(
        "server {
            listen 127.0.0.1:{port2};
            sessions off;
            location / { add_header Set-Cookie \"app=1; Path=/\"; return 200 \"upstream\\n\"; }
            location /moved { return 302 /elsewhere; }
        }",
        "location /proxy/ { proxy_pass http://127.0.0.1:{port2}/; }
         location /proxy-redirect { proxy_pass http://127.0.0.1:{port2}/moved; }
         location /fallback/ { try_files $uri /index.html; }
         location /ssi.html { ssi on; }
         error_page 404 /404.html;
         location = /404.html { internal; }",
    ));
    std::fs::write(n.dir.join("html/404.html"), "not here\n").unwrap();
    std::fs::write(
        n.dir.join("html/ssi.html"),
        "<!--# include virtual=\"/index.html\" --><!--# include virtual=\"/dir/\" -->",
    )
    .unwrap();

    let r = n.get("/proxy/x");
    assert_eq!((r.status, r.text().as_str()), (200, "upstream\n"));
    assert_eq!(r.set_cookies("sid").len(), 1);
    assert_eq!(r.set_cookies("app").len(), 1, "the upstream's own cookie passes");

    let r = n.get("/proxy-redirect");
    assert_eq!(r.status, 302);
    assert_eq!(r.set_cookies("sid").len(), 1);

    // Error page through an internal redirect: one session, one cookie.
    let r = n.get("/missing");
    assert_eq!((r.status, r.text().as_str()), (404, "not here\n"));
    assert_eq!(r.set_cookies("sid").len(), 1);
    assert_eq!(status(&r), "new");

    // Static-module redirect.
    let r = n.get("/dir");
    assert_eq!(r.status, 301);
    assert_eq!(r.set_cookies("sid").len(), 1);

    // try_files fallback is an internal redirect too.
    let r = n.get("/fallback/nothing");
    assert_eq!(r.status, 200);
    assert_eq!(r.set_cookies("sid").len(), 1);

    // Subrequests share the main request's session.
    let r = n.get("/ssi.html");
    assert_eq!((r.status, r.text().as_str()), (200, "hello\ndir\n"));
    assert_eq!(r.set_cookies("sid").len(), 1);
    n.assert_clean_log();
}

#[test]
fn cookie_survives_a_filter_finalized_response() {
    // If-Match that fails: nginx's not-modified filter clears the headers
    // and answers 412 through ngx_http_filter_finalize_request.
    let n = Nginx::start(&conf("", ""));
    let r = n.request(Request::get("/index.html").header("If-Match", "\"nope\""));
    assert_eq!(r.status, 412);
    assert_eq!(r.set_cookies("sid").len(), 1, "{:?}", r.headers);
    let first = n.get("/");
    let r = n.request(
        Request::get("/index.html")
            .cookie(&first.cookie_pair("sid"))
            .header("If-Match", "\"nope\""),
    );
    assert_eq!((r.status, status(&r)), (412, "valid"));
    assert!(r.all("Set-Cookie").is_empty());
}

#[test]
fn internal_redirect_keeps_the_presented_session() {
    let n = Nginx::start(&conf(
        "",
        "error_page 404 /404.html; location = /404.html { internal; }",
    ));
    std::fs::write(n.dir.join("html/404.html"), "x\n").unwrap();
    let first = n.get("/");
    let c = first.cookie_pair("sid");
    let r = n.request(Request::get("/missing").cookie(&c));
    assert_eq!(r.status, 404);
    assert_eq!(status(&r), "valid");
    assert_eq!(sid(&r), sid(&first));
    assert!(r.all("Set-Cookie").is_empty());
}

#[test]
fn two_workers_share_one_zone() {
    let n = Nginx::start_with(
        2,
        &common::spread_over_workers(&conf(
            "",
            "listen 127.0.0.1:{port2} reuseport; add_header X-Pid $pid always;",
        )),
    );
    let first = n.get("/");
    let c = first.cookie_pair("sid");
    let mut pids = HashSet::new();
    for _ in 0..400 {
        let r = n.request(Request::get("/").cookie(&c));
        assert_eq!(status(&r), "valid");
        assert_eq!(sid(&r), sid(&first));
        pids.insert(r.header("X-Pid").unwrap().to_string());
        if pids.len() == 2 {
            break;
        }
    }
    assert_eq!(pids.len(), 2, "requests never reached the second worker");
}

#[test]
fn sessions_and_random_secret_survive_reload() {
    // Defaults: random secret and random cookie name.
    let http = "sessions on;
        server { listen 127.0.0.1:{port}; root html;
                 add_header X-Session-Status $session_status always;
                 add_header X-Session-Id $session_id always; }";
    let n = Nginx::start(http);
    let first = n.get("/");
    let set = first.all("Set-Cookie");
    assert_eq!(set.len(), 1);
    let name = set[0].split('=').next().unwrap().to_string();
    assert_eq!(name.len(), 16);
    assert!(name.bytes().all(|b| b.is_ascii_alphanumeric()));
    let c = first.cookie_pair(&name);
    // The zone's notice; with Redis, the warning that Redis holds the secret
    // (at every configuration load).
    let (notice, per_load) = if SUITE == common::Suite::Redis {
        ("keeps the secret in Redis", 1)
    } else {
        ("random secret or cookie name is in use", 0)
    };
    assert_eq!(n.error_log().matches(notice).count(), 1);

    n.reload(1, &format!("{http}\n# reloaded"));
    let r = n.request(Request::get("/").cookie(&c));
    assert_eq!(status(&r), "valid");
    assert_eq!(sid(&r), sid(&first));
    assert_eq!(n.get("/").set_cookies(&name).len(), 1, "the random name is kept");
    assert_eq!(n.error_log().matches(notice).count(), 1 + per_load);
    n.assert_clean_log();
}

#[test]
fn secret_rotation() {
    let http = |secrets: &str| {
        format!(
            "sessions on; sessions_secret {secrets}; sessions_name sid;
             server {{ listen 127.0.0.1:{{port}}; root html;
                      add_header X-Session-Status $session_status always;
                      add_header X-Session-Id $session_id always; }}"
        )
    };
    let n = Nginx::start(&http("old-secret"));
    let first = n.get("/");
    let old_cookie = first.cookie_pair("sid");
    n.reload(1, &http("new-secret old-secret"));
    // Accepted, and re-issued under the new secret.
    let r = n.request(Request::get("/").cookie(&old_cookie));
    assert_eq!(status(&r), "valid");
    assert_eq!(sid(&r), sid(&first));
    let new_cookie = r.cookie_pair("sid");
    assert_ne!(new_cookie, old_cookie);
    let r = n.request(Request::get("/").cookie(&new_cookie));
    assert!(r.all("Set-Cookie").is_empty());
    // Once the old secret is dropped its cookies are refused.
    n.reload(1, &http("new-secret"));
    assert_eq!(
        status(&n.request(Request::get("/").cookie(&old_cookie))),
        "invalid"
    );
    assert_eq!(status(&n.request(Request::get("/").cookie(&new_cookie))), "valid");
}

#[test]
fn variables_created_and_expires() {
    let n = Nginx::start(&conf(
        "sessions_idling_timeout 100; sessions_absolute_timeout 1000; sessions_rolling_timeout 500;",
        "add_header X-Created $session_created always; add_header X-Expires $session_expires always;",
    ));
    let r = n.get("/");
    let created: u64 = r.header("X-Created").unwrap().parse().unwrap();
    let expires: u64 = r.header("X-Expires").unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(created.abs_diff(now) <= 2, "{created} vs {now}");
    assert_eq!(expires - created, 100, "the idle timeout is the earliest");
}

/// Each bad value fails `nginx -t` with nginx's wording, naming directive and value.
#[test]
fn bad_values_fail_config_test() {
    let cases: &[(&str, &str)] = &[
        (
            "sessions_idling_timeout abc;",
            "invalid value \"abc\" in \"sessions_idling_timeout\" directive",
        ),
        (
            "sessions_rolling_timeout 10x;",
            "invalid value \"10x\" in \"sessions_rolling_timeout\" directive",
        ),
        (
            "sessions_absolute_timeout -1;",
            "invalid value \"-1\" in \"sessions_absolute_timeout\" directive",
        ),
        (
            "sessions_idling_timeout 30m1h;",
            "invalid value \"30m1h\" in \"sessions_idling_timeout\" directive",
        ),
        (
            "sessions_renewal_grace 500ms;",
            "invalid value \"500ms\" in \"sessions_renewal_grace\" directive",
        ),
        (
            "sessions_zone s:1g;",
            "invalid value \"s:1g\" in \"sessions_zone\" directive",
        ),
        (
            "sessions_renewal_grace soon;",
            "invalid value \"soon\" in \"sessions_renewal_grace\" directive",
        ),
        (
            "sessions_check_ip yes;",
            "invalid value \"yes\" in \"sessions_check_ip\" directive, it must be \"on\", \"log\" or \"off\"",
        ),
        (
            "sessions_check_ip on ipv4=33;",
            "invalid value \"ipv4=33\" in \"sessions_check_ip\" directive, a prefix length is from 1 to 32 for ipv4, 1 to 128 for ipv6",
        ),
        (
            "sessions_check_user_agent on versions;",
            "invalid value \"versions\" in \"sessions_check_user_agent\" directive, it must be \"ignore_versions\"",
        ),
        (
            "sessions_check_user_agent 1;",
            "invalid value \"1\" in \"sessions_check_user_agent\" directive",
        ),
        (
            "sessions maybe;",
            "invalid value \"maybe\" in \"sessions\" directive",
        ),
        (
            "sessions_name \"bad name\";",
            "invalid value \"bad name\" in \"sessions_name\" directive, it must match ^[a-zA-Z0-9_-]+$",
        ),
        (
            "sessions_name a; sessions_name b;",
            "\"sessions_name\" directive is duplicate",
        ),
        (
            "sessions_assertion_ttl 2h;",
            "invalid value \"2h\" in \"sessions_assertion_ttl\" directive, it must be a time from 1s to 1h",
        ),
        (
            "sessions_assertion_audience \"my app\";",
            "invalid value \"my app\" in \"sessions_assertion_audience\" directive",
        ),
        (
            "sessions_assertion_key missing.pem;",
            "\"sessions_assertion_key\" directive: \"missing.pem\": cannot read",
        ),
        (
            "sessions_assertion_key nginx.conf;",
            "\"sessions_assertion_key\" directive: \"nginx.conf\": the file must hold exactly one PEM block",
        ),
        (
            "sessions_idling_timeout 1; sessions_idling_timeout 2;",
            "\"sessions_idling_timeout\" directive is duplicate",
        ),
        (
            "sessions_secret \"\";",
            "invalid value \"\" in \"sessions_secret\" directive, the secret is empty",
        ),
        ("sessions_secret random old;", "\"random\" cannot be combined"),
        (
            "sessions_remember_timeout 0;",
            "invalid value \"0\" in \"sessions_remember_timeout\" directive, it must not be 0",
        ),
        (
            "sessions_secret_file none.txt;",
            "\"sessions_secret_file\" directive: \"none.txt\": cannot read",
        ),
        (
            "sessions_secret a; sessions_secret_file none.txt;",
            "\"sessions_secret_file\" directive is duplicate",
        ),
        ("sessions_zone s:1k;", "zone \"s:1k\" is too small"),
        (
            "sessions_zone s:ten;",
            "invalid value \"s:ten\" in \"sessions_zone\" directive, invalid zone size",
        ),
        (
            "sessions_zone nosize;",
            "invalid value \"nosize\" in \"sessions_zone\" directive",
        ),
        (
            "sessions_zone a:1m; sessions_zone b:1m;",
            "\"sessions_zone\" directive is duplicate",
        ),
        (
            "sessions_cookie_samesite loose;",
            "invalid value \"loose\" in \"sessions_cookie_samesite\" directive",
        ),
        (
            "sessions_cookie_secure sometimes;",
            "invalid value \"sometimes\" in \"sessions_cookie_secure\" directive",
        ),
        (
            "sessions_cookie_path relative;",
            "invalid value \"relative\" in \"sessions_cookie_path\" directive",
        ),
        (
            "sessions_cookie_domain \"a;b\";",
            "invalid value \"a;b\" in \"sessions_cookie_domain\" directive",
        ),
        (
            "sessions_cookie_max_age forever;",
            "invalid value \"forever\" in \"sessions_cookie_max_age\" directive",
        ),
        (
            "server { listen 127.0.0.1:{port}; sessions_zone s:1m; }",
            "\"sessions_zone\" directive is not allowed here",
        ),
    ];
    let n = Nginx::prepare("badconf");
    for (snippet, expected) in cases {
        n.write_conf(1, snippet);
        let (ok, out) = n.test_config();
        assert!(!ok, "nginx -t accepted {snippet}");
        assert!(
            out.contains(expected),
            "for {snippet}\nexpected: {expected}\ngot: {out}"
        );
        assert!(
            out.contains("nginx.conf:"),
            "the message points at the line: {out}"
        );
    }
    // And the valid forms of each pass.
    n.write_conf(
        1,
        "sessions on; sessions_zone s:64k; sessions_secret a b c; sessions_name my-sid_1;
         sessions_idling_timeout 1800; sessions_rolling_timeout \"1h 30m\"; sessions_absolute_timeout 1d12h;
         sessions_renewal_grace 10s; sessions_check_ip off; sessions_check_user_agent on;
         sessions_cookie_domain none; sessions_cookie_path /; sessions_cookie_secure auto;
         sessions_cookie_httponly on; sessions_cookie_samesite lax; sessions_cookie_max_age off;
         server { listen 127.0.0.1:{port}; location / { sessions off; } }",
    );
    let (ok, out) = n.test_config();
    assert!(ok, "{out}");
}

#[test]
fn nginx_t_warns_of_a_short_secret_and_of_samesite_none_without_secure() {
    let n = Nginx::prepare("warnconf");
    let base = "sessions on; server { listen 127.0.0.1:{port}; location /a/ { } }";
    let long = "0123456789abcdef0123456789abcdef";
    let cases: &[(String, &[&str], &[&str])] = &[
        (
            format!("sessions_secret x; {base}"),
            &[
                "[warn]",
                "\"sessions_secret\" directive: a secret has fewer than 32 characters",
            ],
            &["x;"],
        ),
        (
            format!("sessions_secret {long} short; {base}"),
            &["a secret has fewer than 32 characters"],
            &["short"],
        ),
        (format!("sessions_secret {long}; {base}"), &[], &["fewer than"]),
        (
            format!(
                "sessions_secret {long}; sessions_cookie_samesite none; sessions_cookie_secure off; {base}"
            ),
            &["\"sessions_cookie_samesite none\" needs the Secure attribute"],
            &[],
        ),
        (
            format!("sessions_secret {long}; sessions_cookie_samesite none; {base}"),
            &[],
            &["needs the Secure"],
        ),
    ];
    for (conf, present, absent) in cases {
        n.write_conf(1, conf);
        let (ok, out) = n.test_config();
        assert!(ok, "{conf}: {out}");
        for p in *present {
            assert!(out.contains(p), "{conf}\nexpected {p}\ngot {out}");
        }
        for a in *absent {
            assert!(!out.contains(a), "{conf}\ndid not expect {a}\ngot {out}");
        }
        // Once for the block that says it, not once per location.
        if let Some(p) = present.last() {
            assert_eq!(out.matches(p).count(), 1, "{out}");
        }
    }
}
