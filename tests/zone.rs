//! What only the local zone does: LRU eviction when full, capacity.

mod common;

use common::{Conn, Nginx, Request, Response};

fn conf(http: &str) -> String {
    format!(
        "sessions on; sessions_secret zone-test-secret-0123; sessions_name sid; {http}
         server {{ listen 127.0.0.1:{{port}}; root html;
                  add_header X-Session-Status $session_status always; }}"
    )
}

fn status(r: &Response) -> &str {
    r.header("X-Session-Status").unwrap_or("")
}

#[test]
fn full_zone_evicts_least_recently_used() {
    let n = Nginx::start(&conf("sessions_zone small:32k;"));
    let capacity: usize = n
        .error_log()
        .split("sessions zone \"small\" holds ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("capacity notice");
    assert!(capacity > 50, "{capacity}");
    let oldest = n.get("/").cookie_pair("sid");
    let kept = n.get("/").cookie_pair("sid");
    let mut conn = Conn::open(n.port);
    let mut last = String::new();
    for i in 0..capacity + 50 {
        // Keep one early session in use so it is not the least recently used.
        if i % 50 == 0 {
            assert_eq!(status(&conn.get("/", Some(&kept))), "valid");
        }
        let r = conn.get("/", None);
        assert_eq!(r.status, 200);
        last = r.cookie_pair("sid");
    }
    let r = n.request(Request::get("/").cookie(&oldest));
    assert_eq!(r.status, 200);
    assert_eq!(status(&r), "unknown", "the evicted session is gone");
    assert_eq!(r.set_cookies("sid").len(), 1);
    assert_eq!(status(&n.request(Request::get("/").cookie(&kept))), "valid");
    assert_eq!(status(&n.request(Request::get("/").cookie(&last))), "valid");
    let log = n.error_log();
    assert!(log.contains("[info]") && log.contains("zone is full, evicted"));
    assert!(!log.contains("[warn]"));
}

#[test]
fn ten_megabyte_zone_holds_forty_thousand_sessions() {
    let n = Nginx::start(&conf("sessions_zone big:10m;"));
    let first = n.get("/").cookie_pair("sid");
    let mut conn = Conn::open(n.port);
    for _ in 0..40_000 {
        assert_eq!(conn.get("/", None).status, 200);
    }
    assert_eq!(status(&n.request(Request::get("/").cookie(&first))), "valid");
    assert!(!n.error_log().contains("evicted"));
}
