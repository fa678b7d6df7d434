//! What only the local zone does: LRU eviction when full, capacity.

mod common;

/// Each test configures its own store.
const SUITE: common::Suite = common::Suite::Own;

use common::{Conn, Nginx, Request, Response};

fn conf(http: &str) -> String {
    format!(
        "sessions on; sessions_secret zone-test-secret-0123456789abcdefghijkl; sessions_name sid; {http}
         server {{ listen 127.0.0.1:{{port}}; root html;
                  add_header X-Session-Status $session_status always; }}"
    )
}

/// The capacity the zone's start-up notice states.
fn capacity(n: &Nginx, zone: &str) -> usize {
    n.error_log()
        .split(&format!("sessions zone \"{zone}\" holds "))
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("capacity notice")
}

fn status(r: &Response) -> &str {
    r.header("X-Session-Status").unwrap_or("")
}

#[test]
fn full_zone_evicts_least_recently_used() {
    let n = Nginx::start(&conf("sessions_zone small:32k;"));
    let capacity = capacity(&n, "small");
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

/// A flood of requests without a cookie (a bot) evicts only sessions seen
/// once: a logged-in session and the sessions that came back survive 100
/// times the zone's capacity in new sessions.
#[test]
fn a_cookieless_flood_evicts_only_sessions_seen_once() {
    let n = Nginx::start(&conf(
        "sessions_zone small:64k;
         server { listen 127.0.0.1:{port2}; sessions off;
                  location / { add_header X-Session-User alice; return 200; } }
         server { listen 127.0.0.1:{port3}; sessions_control_headers on;
                  add_header X-Session-Status $session_status always;
                  location / { proxy_pass http://127.0.0.1:{port2}; }
                  location = /metrics { sessions off; sessions_status; } }",
    ));
    let capacity = capacity(&n, "small");
    // A login on the control-header server (same zone, same secret and name).
    let c = common::send(n.port3, &Request::get("/")).cookie_pair("sid");
    let alice = common::send(n.port3, &Request::get("/").cookie(&c)).cookie_pair("sid");
    // Half the zone's worth of visitors who come back once.
    let mut conn = Conn::open(n.port);
    let returning: Vec<String> = (0..capacity / 2)
        .map(|_| {
            let c = conn.get("/", None).cookie_pair("sid");
            assert_eq!(status(&conn.get("/", Some(&c))), "valid");
            c
        })
        .collect();
    for _ in 0..capacity * 100 {
        assert_eq!(conn.get("/", None).status, 200);
    }
    assert_eq!(status(&n.request(Request::get("/").cookie(&alice))), "valid");
    let alive = returning
        .iter()
        .filter(|c| status(&conn.get("/", Some(c))) == "valid")
        .count();
    assert!(
        alive * 10 >= returning.len() * 9,
        "{alive} of {} returning sessions survived",
        returning.len()
    );
    let metrics = common::send(n.port3, &Request::get("/metrics")).text();
    assert!(
        metrics.contains("nginx_sessions_evicted_total{zone=\"small\",kind=\"returning\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("nginx_sessions_evicted_total{zone=\"small\",kind=\"once\"}"));
}
