//! The near cache of Redis sessions: a session read once is answered
//! without Redis until Redis says it changed, and each coherence rule holds
//! against real `redis-server` processes.

mod common;

/// Each test configures its own store.
const SUITE: common::Suite = common::Suite::Own;

use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{Nginx, Redis, Request, Response};

fn conf(redis_port: u16, extra: &str) -> String {
    format!(
        "sessions on; sessions_secret near-cache-test-secret; sessions_name sid;
         sessions_store redis; sessions_redis_server 127.0.0.1:{redis_port};
         {extra}
         server {{
           listen 127.0.0.1:{{port2}};
           location /login {{ add_header X-Session-User $arg_user; return 200 \"ok\\n\"; }}
           location /set {{ add_header X-Session-Set \"$arg_k=$arg_v\"; return 200 \"set\\n\"; }}
         }}
         server {{
           listen 127.0.0.1:{{port}};
           root html;
           add_header X-Session-Status $session_status always;
           add_header X-Session-Id $session_id always;
           add_header X-K $session_data_k always;
           location /app/ {{ sessions_control_headers on; proxy_pass http://127.0.0.1:{{port2}}/; }}
           location = /logout {{ sessions_logout; }}
           location = /status {{ sessions_status; }}
         }}"
    )
}

fn status(r: &Response) -> &str {
    r.header("X-Session-Status").unwrap_or("")
}

/// How many GETs Redis answered since the last reset.
fn gets(redis: &Redis) -> u64 {
    let stats = redis.cli(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// Waits until the near cache's tracking connection is up (it comes up
/// asynchronously after the worker starts).
fn tracking_up(redis: &Redis) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !redis
        .cli(&["CLIENT", "LIST"])
        .lines()
        .any(|l| l.contains("flags=t"))
    {
        assert!(Instant::now() < deadline, "no tracking connection");
        sleep(Duration::from_millis(20));
    }
}

/// A session made on `n`, and read once more so that `n` keeps it: once
/// its first write reached Redis (until then it is read from the pending
/// writes, and that copy is not kept).
fn cached_session(n: &Nginx) -> String {
    let first = n.get("/");
    assert_eq!(status(&first), "new", "{}", n.error_log());
    let c = first.cookie_pair("sid");
    n.wait_redis_drained("/status");
    assert_eq!(status(&n.request(Request::get("/").cookie(&c))), "valid");
    c
}

/// A Redis, an nginx with `extra` whose near cache is up, and a session
/// it keeps.
fn one_cached(extra: &str) -> (Redis, Nginx, String) {
    let redis = Redis::start(&[]);
    let n = Nginx::start(&conf(redis.port, extra));
    tracking_up(&redis);
    let c = cached_session(&n);
    (redis, n, c)
}

/// Asks `n` until the cookie is no longer valid (at most 5 s); how long it took.
fn until_refused(n: &Nginx, cookie: &str) -> Duration {
    let start = Instant::now();
    while status(&n.request(Request::get("/").cookie(cookie))) == "valid" {
        assert!(start.elapsed() < Duration::from_secs(5), "still valid after 5 s");
        sleep(Duration::from_millis(2));
    }
    start.elapsed()
}

#[test]
fn a_session_read_once_is_answered_without_redis() {
    // As a user granted exactly the documented commands.
    let mut redis = Redis::start(&[common::ACL_USERS, common::acl_commands()].concat());
    redis.auth = common::APP_AUTH.map(String::from).to_vec();
    let n = Nginx::start(&conf(
        redis.port,
        "sessions_redis_username nginx; sessions_redis_password nginx-pw;",
    ));
    tracking_up(&redis);
    let c = cached_session(&n);
    redis.cli(&["CONFIG", "RESETSTAT"]);
    for _ in 0..50 {
        assert_eq!(status(&n.request(Request::get("/").cookie(&c))), "valid");
    }
    assert_eq!(gets(&redis), 0, "every request answered from the near cache");
    n.assert_clean_log();
}

#[test]
fn a_logout_or_a_data_change_on_another_instance_reaches_the_cache() {
    let redis = Redis::start(&[]);
    let (a, b) = (
        Nginx::start(&conf(redis.port, "")),
        Nginx::start(&conf(redis.port, "")),
    );
    tracking_up(&redis);
    // Data written through A is seen by B, which had the session cached.
    let c = cached_session(&a);
    let r = b.request(Request::get("/").cookie(&c));
    assert_eq!((status(&r), r.header("X-K")), ("valid", None));
    b.request(Request::get("/").cookie(&c));
    a.request(Request::get("/app/set?k=k&v=v1").cookie(&c));
    let start = Instant::now();
    while b.request(Request::get("/").cookie(&c)).header("X-K") != Some("v1") {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "B still has the old data"
        );
        sleep(Duration::from_millis(2));
    }
    // A logout on A.
    b.request(Request::get("/").cookie(&c));
    assert_eq!(a.request(Request::get("/logout").cookie(&c)).status, 204);
    until_refused(&b, &c);
}

#[test]
fn any_write_to_the_key_invalidates() {
    let (redis, n, c) = one_cached("");
    let keys: Vec<String> = redis.cli(&["--scan"]).lines().map(str::to_string).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    redis.cli(&["DEL", &keys[0]]);
    until_refused(&n, &c);
}

#[test]
fn a_lost_tracking_connection_empties_the_cache() {
    let (redis, n, c) = one_cached("");
    let key = redis.cli(&["--scan"]).trim().to_string();
    // Kill the tracking connection, then change the key while no one is
    // told: the worker must not answer from what it kept.
    let list = redis.cli(&["CLIENT", "LIST"]);
    let id = list
        .lines()
        .find(|l| l.contains("flags=t"))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .unwrap()
        .to_string();
    redis.cli(&["CLIENT", "KILL", "ID", &id]);
    redis.cli(&["DEL", &key]);
    sleep(Duration::from_millis(100));
    assert_ne!(status(&n.request(Request::get("/").cookie(&c))), "valid");
    // Tracking comes back, and the cache with it.
    tracking_up(&redis);
    let c = cached_session(&n);
    redis.cli(&["CONFIG", "RESETSTAT"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        n.request(Request::get("/").cookie(&c));
        redis.cli(&["CONFIG", "RESETSTAT"]);
        assert_eq!(status(&n.request(Request::get("/").cookie(&c))), "valid");
        if gets(&redis) == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the cache did not come back");
        sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_cached_session_still_times_out() {
    let (_redis, n, c) = one_cached("sessions_idling_timeout 1s;");
    sleep(Duration::from_millis(1300));
    assert_ne!(status(&n.request(Request::get("/").cookie(&c))), "valid");
}

#[test]
fn with_a_cluster_the_cache_hears_every_master() {
    let (nodes, addrs) = common::start_cluster(&[common::acl_commands(), &["+cluster|slots"]].concat());
    let redis = format!(
        "sessions_redis_cluster {} {}; sessions_redis_username nginx; sessions_redis_password nginx-pw;",
        addrs[0], addrs[1]
    );
    let conf = |extra: &str| conf(0, extra).replace("sessions_redis_server 127.0.0.1:0;", &redis);
    let (a, b) = (Nginx::start(&conf("")), Nginx::start(&conf("")));
    for r in &nodes {
        tracking_up(r);
    }
    // Sessions land on every master; each is answered from the cache.
    let cookies: Vec<String> = (0..12).map(|_| cached_session(&b)).collect();
    for r in &nodes {
        r.cli(&["CONFIG", "RESETSTAT"]);
    }
    for c in &cookies {
        assert_eq!(status(&b.request(Request::get("/").cookie(c))), "valid");
    }
    assert_eq!(nodes.iter().map(gets).sum::<u64>(), 0, "{}", b.error_log());
    // A logout on A, whichever master holds each session, reaches B.
    for c in &cookies {
        assert_eq!(a.request(Request::get("/logout").cookie(c)).status, 204);
        until_refused(&b, c);
    }
    for n in [&a, &b] {
        assert!(!n.error_log().contains("Redis refused"), "{}", n.error_log());
    }
}

#[test]
fn a_stopped_redis_is_answered_from_the_cache_until_the_ping_fails() {
    let (redis, n, c) = one_cached("sessions_redis_timeout 300ms;");
    redis.signal("STOP");
    // Nothing can change the session while Redis is stopped: still answered.
    assert_eq!(status(&n.request(Request::get("/").cookie(&c))), "valid");
    // Then the tracking connection's ping times out (every 0.5 s, within
    // the 300 ms timeout), the cache goes off, and the request waits for
    // Redis like any other: the policy's 503.
    let start = Instant::now();
    while n.request(Request::get("/").cookie(&c)).status != 503 {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "still answered from the cache"
        );
        sleep(Duration::from_millis(50));
    }
    redis.signal("CONT");
    tracking_up(&redis);
    assert_eq!(status(&n.request(Request::get("/").cookie(&c))), "valid");
}

#[test]
fn the_near_cache_can_be_turned_off() {
    let redis = Redis::start(&[]);
    let n = Nginx::start(&conf(redis.port, "sessions_redis_near_cache off;"));
    let c = n.get("/").cookie_pair("sid");
    n.wait_redis_drained("/status");
    redis.cli(&["CONFIG", "RESETSTAT"]);
    for _ in 0..20 {
        assert_eq!(status(&n.request(Request::get("/").cookie(&c))), "valid");
    }
    assert_eq!(gets(&redis), 20, "every request reads Redis");
    assert!(
        !redis.cli(&["CLIENT", "LIST"]).contains("flags=t"),
        "no tracking connection"
    );
    n.assert_clean_log();
}

#[test]
fn a_key_pushed_as_gone_is_refused_without_looking_again() {
    let (redis, n, c) = one_cached("");
    let key = redis.cli(&["--scan"]).trim().to_string();
    redis.cli(&["CONFIG", "RESETSTAT"]);
    redis.cli(&["DEL", &key]);
    // Answered from the cache until the push; then one read finds the key
    // gone, which the push said: no second look 25 ms later.
    until_refused(&n, &c);
    assert_eq!(gets(&redis), 1);
}
