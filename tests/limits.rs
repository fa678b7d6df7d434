//! `sessions_max_per_user` under concurrent logins: on two workers sharing
//! the zone, and on two nginx instances sharing Redis. Once the logins
//! settle, no user has more sessions than the limit. Real nginx, real
//! `redis-server`.

mod common;

/// Each test configures its own store.
const SUITE: common::Suite = common::Suite::Own;

use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};

use common::{Nginx, Redis, Request};

const LIMIT: usize = 3;
const LOGINS: usize = 16;

fn conf(store: &str) -> String {
    common::spread_over_workers(&format!(
        "sessions on; sessions_secret limits-test-secret-0123456789abcdef; sessions_name sid;
         {store}
         server {{
             listen 127.0.0.1:{{port2}};
             location /login {{ add_header X-Session-User $arg_user; return 200 \"ok\\n\"; }}
         }}
         server {{
             listen 127.0.0.1:{{port}};
             root html;
             add_header X-Session-Status $session_status always;
             add_header X-Pid $pid always;
             location /app/ {{
                 sessions_max_per_user {LIMIT};
                 sessions_control_headers on;
                 proxy_pass http://127.0.0.1:{{port2}}/;
             }}
             location = /admin {{ sessions off; sessions_admin; }}
             location = /metrics {{ sessions off; sessions_status; }}
         }}"
    ))
}

/// `LOGINS` logins of one user at once, spread over `instances` in turn:
/// each login's cookie, and the worker pids that answered.
fn crowd(instances: &[&Nginx], user: &str) -> (Vec<(usize, String)>, HashSet<String>) {
    let ports: Vec<u16> = instances.iter().map(|n| n.port).collect();
    let handles: Vec<_> = (0..LOGINS)
        .map(|i| {
            let (at, port) = (i % ports.len(), ports[i % ports.len()]);
            let user = user.to_string();
            thread::spawn(move || {
                let c = common::send(port, &Request::get("/")).cookie_pair("sid");
                let r = common::send(port, &Request::get(&format!("/app/login?user={user}")).cookie(&c));
                assert_eq!(r.status, 200);
                (
                    at,
                    r.cookie_pair("sid"),
                    r.header("X-Pid").unwrap_or("").to_string(),
                )
            })
        })
        .collect();
    let mut cookies = Vec::new();
    let mut pids = HashSet::new();
    for h in handles {
        let (at, cookie, pid) = h.join().unwrap();
        cookies.push((at, cookie));
        pids.insert(pid);
    }
    (cookies, pids)
}

fn listed(n: &Nginx, user: &str) -> usize {
    let r = n.get(&format!("/admin?user={user}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["sessions"].as_array().unwrap().len()
}

/// How many of `cookies` still open a session (each on its own instance).
fn valid(instances: &[&Nginx], cookies: &[(usize, String)]) -> usize {
    cookies
        .iter()
        .filter(|(at, c)| {
            let r = instances[*at].request(Request::get("/index.html").cookie(c));
            r.header("X-Session-Status") == Some("valid")
        })
        .count()
}

#[test]
fn concurrent_logins_on_two_workers_stay_within_the_limit() {
    let n = Nginx::start_with(2, &conf(""));
    let (cookies, pids) = crowd(&[&n], "crowd");
    assert!(pids.len() >= 2, "both workers logged users in: {pids:?}");
    assert_eq!(listed(&n, "crowd"), LIMIT);
    assert_eq!(valid(&[&n], &cookies), LIMIT);
    n.assert_clean_log();
}

#[test]
fn concurrent_logins_on_two_instances_sharing_redis_settle_within_the_limit() {
    let redis = Redis::start(&[]);
    let store = format!(
        "sessions_store redis; sessions_redis_server 127.0.0.1:{};",
        redis.port
    );
    let (a, b) = (
        Nginx::start_with(2, &conf(&store)),
        Nginx::start_with(2, &conf(&store)),
    );
    let (cookies, _) = crowd(&[&a, &b], "crowd");
    // Each instance counts once its login is in Redis: they settle.
    let deadline = Instant::now() + Duration::from_secs(10);
    while listed(&a, "crowd") > LIMIT && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(listed(&a, "crowd"), LIMIT, "{}\n{}", a.error_log(), b.error_log());
    assert_eq!(listed(&b, "crowd"), LIMIT);
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        valid(&[&a, &b], &cookies),
        LIMIT,
        "settled: no user above the limit"
    );
    a.assert_clean_log();
    b.assert_clean_log();
}
