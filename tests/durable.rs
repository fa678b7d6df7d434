//! Redis storage that loses nothing: writes decided as a response leaves
//! are kept until Redis takes them and seen at once by every worker;
//! secret rotation, the `local` policy and a wrong-type value log nobody
//! out. Real nginx with several workers, real `redis-server`.

mod common;

/// Each test configures its own store.
const SUITE: common::Suite = common::Suite::Own;

use std::thread;
use std::time::{Duration, Instant};

use common::{Nginx, Redis, Request, Response};

fn conf(redis_port: u16, secret: &str, extra: &str) -> String {
    format!(
        "sessions on; sessions_secret {secret}; sessions_name sid;
         sessions_store redis; sessions_redis_server 127.0.0.1:{redis_port};
         {extra}
         server {{
             listen 127.0.0.1:{{port2}};
             location /login {{ add_header X-Session-User $arg_user; return 200 \"ok\\n\"; }}
             location /logout {{ add_header X-Session-Destroy on; return 200 \"bye\\n\"; }}
             location /password-changed {{ add_header X-Session-Logout-Others on; return 200 \"ok\\n\"; }}
         }}
         server {{
             listen 127.0.0.1:{{port}};
             root html;
             add_header X-Session-Status $session_status always;
             add_header X-User $session_user always;
             location /app/ {{ sessions_control_headers on; proxy_pass http://127.0.0.1:{{port2}}/; }}
             location = /logout204 {{ sessions_logout; }}
             location /private/ {{ sessions_require_login on; try_files $uri /index.html; }}
             location = /metrics {{ sessions off; sessions_status; }}
         }}"
    )
}

fn status(r: &Response) -> &str {
    r.header("X-Session-Status").unwrap_or("")
}

fn user(r: &Response) -> &str {
    r.header("X-User").unwrap_or("")
}

/// The session cookie `r` sets, if any.
fn issued(r: &Response) -> Option<String> {
    (!r.set_cookies("sid").is_empty()).then(|| r.cookie_pair("sid"))
}

fn get(n: &Nginx, path: &str, cookie: &str) -> Response {
    n.request(Request::get(path).cookie(cookie))
}

/// A new session logged in as `name`: its cookie.
fn logged_in(n: &Nginx, name: &str) -> String {
    let anon = n.get("/index.html");
    assert_eq!(anon.status, 200, "{}", n.error_log());
    let c = anon.cookie_pair("sid");
    let r = get(n, &format!("/app/login?user={name}"), &c);
    assert_eq!(r.status, 200);
    let c = r.cookie_pair("sid");
    assert!(!c.is_empty(), "a login issues a new cookie");
    c
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// With `reuseport` (connections spread over the workers), enough new
/// sessions that every worker has seen Redis take a write: until then, a
/// worker writes its new sessions to Redis before answering them.
fn every_worker_has_reached_redis(n: &Nginx) {
    for _ in 0..20 {
        assert_eq!(n.get("/index.html").status, 200, "{}", n.error_log());
    }
    n.wait_redis_drained("/metrics");
}

#[test]
fn a_login_is_seen_at_once_by_every_worker() {
    let redis = Redis::start(&[]);
    let n = Nginx::start_with(2, &conf(redis.port, "durable-secret-1", ""));
    let mut seen = 0;
    for i in 0..150 {
        let name = format!("u{i}");
        // The login's answer, then at once a request on a new connection
        // (any worker), as a browser follows a login form's redirect.
        let c = logged_in(&n, &name);
        let r = get(&n, "/index.html", &c);
        if user(&r) == name && status(&r) == "valid" {
            seen += 1;
        }
    }
    assert_eq!(seen, 150, "{}", n.error_log());
    n.assert_clean_log();
}

#[test]
fn logouts_hold_while_redis_pauses_writes() {
    let redis = Redis::start(&[]);
    let n = Nginx::start_with(2, &conf(redis.port, "durable-secret-2", ""));
    let cookies: Vec<String> = (0..10).map(|i| logged_in(&n, &format!("p{i}"))).collect();
    for c in &cookies {
        assert_eq!(
            user(&get(&n, "/index.html", c)),
            get(&n, "/index.html", c).header("X-User").unwrap()
        );
    }
    assert_eq!(redis.cli(&["CLIENT", "PAUSE", "2500", "WRITE"]), "OK");
    for c in &cookies {
        assert_eq!(get(&n, "/logout204", c).status, 204);
        // Taken at once, on every worker, though Redis takes no write.
        let r = get(&n, "/index.html", c);
        assert_eq!(user(&r), "", "logged out at once");
        assert_ne!(status(&r), "valid");
    }
    thread::sleep(Duration::from_millis(2_600));
    // Redis got them: the old cookies stay dead for good.
    n.wait_redis_drained("/metrics");
    for c in &cookies {
        let r = get(&n, "/index.html", c);
        assert_eq!(user(&r), "");
        assert_eq!(status(&r), "ended", "{}", n.error_log());
    }
    n.assert_clean_log();
}

#[test]
fn an_admin_revocation_ends_logins_still_waiting_for_redis() {
    let redis = Redis::start(&[]);
    let n = Nginx::start_with(
        2,
        &common::spread_over_workers(&conf(
            redis.port,
            "durable-secret-13",
            "sessions_redis_timeout 3s;
             server { listen 127.0.0.1:{port3}; sessions off; allow 127.0.0.1; deny all;
                      location = /admin/sessions { sessions_admin; } }",
        )),
    );
    let admin = |method: &str| {
        let mut req = Request::get("/admin/sessions?user=alice");
        req.method = method.into();
        common::send(n.port3, &req)
    };
    let old = logged_in(&n, "alice");
    every_worker_has_reached_redis(&n);
    // Two more logins that Redis has not taken when the revocation comes.
    assert_eq!(redis.cli(&["CLIENT", "PAUSE", "800", "WRITE"]), "OK");
    let pending: Vec<String> = (0..2).map(|_| logged_in(&n, "alice")).collect();
    let listed = admin("GET");
    assert_eq!(listed.text().matches("\"id\"").count(), 3, "{}", listed.text());
    // Its deletes wait for the pause; what it found is counted once each.
    let r = admin("DELETE");
    assert_eq!(
        (r.status, r.text().trim()),
        (200, "{\"revoked\":3}"),
        "{}",
        n.error_log()
    );
    n.wait_redis_drained("/metrics");
    // The session Redis held is on record as ended; a login revoked while
    // still waiting for Redis never reached it: nothing is on record.
    let r = get(&n, "/index.html", &old);
    assert_eq!((user(&r), status(&r)), ("", "ended"), "{}", n.error_log());
    for c in &pending {
        let r = get(&n, "/index.html", c);
        assert_eq!(user(&r), "", "{}", n.error_log());
        assert!(["unknown", "ended"].contains(&status(&r)), "{}", status(&r));
    }
    assert!(
        admin("GET").text().contains("\"sessions\":[]"),
        "{}",
        admin("GET").text()
    );
    n.assert_clean_log();
}

#[test]
fn rotating_the_secret_logs_nobody_out() {
    let redis = Redis::start(&[]);
    let mut n = Nginx::start_with(2, &conf(redis.port, "old-secret-0123", ""));
    let users: Vec<(String, String)> = (0..20)
        .map(|i| {
            let name = format!("r{i}");
            let c = logged_in(&n, &name);
            (name, c)
        })
        .collect();
    n.reload(2, &conf(redis.port, "new-secret-4567 old-secret-0123", ""));
    let port = n.port;
    let mut out = 0;
    for (name, c) in &users {
        // Six requests at once with each old cookie.
        let answers: Vec<Response> = (0..6)
            .map(|_| {
                let c = c.clone();
                thread::spawn(move || common::send(port, &Request::get("/index.html").cookie(&c)))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let mut issued: Vec<String> = answers.iter().filter_map(issued).collect();
        for r in &answers {
            if user(r) != name {
                out += 1;
            }
        }
        issued.sort();
        issued.dedup();
        assert!(issued.len() <= 1, "one new id for one old cookie: {issued:?}");
        // The new cookie works, and the old one within its grace.
        if let Some(new) = issued.first() {
            assert_eq!(user(&get(&n, "/index.html", new)), name);
        }
        assert_eq!(user(&get(&n, "/index.html", c)), name);
    }
    assert_eq!(out, 0, "logged out by the rotation:\n{}", n.error_log());
    n.stop();
}

#[test]
fn the_local_policy_keeps_the_redis_login_of_a_client_through_an_outage() {
    let mut redis = Redis::start(&[]);
    let n = Nginx::start_with(
        2,
        &conf(
            redis.port,
            "durable-secret-3",
            "sessions_redis_unavailable local;",
        ),
    );
    // Browsers that keep the last Set-Cookie they were sent.
    let mut jar: Vec<(String, String)> = (0..20)
        .map(|i| {
            let name = format!("l{i}");
            let c = logged_in(&n, &name);
            (name, c)
        })
        .collect();
    redis.shutdown_saving();
    let deadline = Instant::now() + Duration::from_millis(1_500);
    let mut private_503 = 0;
    while Instant::now() < deadline {
        for (_, c) in jar.iter_mut() {
            let r = get(&n, "/index.html", c);
            assert_eq!(r.status, 200);
            if let Some(set) = issued(&r) {
                *c = set;
            }
            // A login that cannot be checked is not let in, nor sent to log in again.
            let p = get(&n, "/private/", c);
            if p.status == 503 {
                private_503 += 1;
            }
            assert_ne!(p.status, 302);
        }
    }
    redis.run();
    // Reconnection and its backoff: the clients go on as before.
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        for (_, c) in jar.iter_mut() {
            let r = get(&n, "/index.html", c);
            if let Some(set) = issued(&r) {
                *c = set;
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    let lost = jar
        .iter()
        .filter(|(name, c)| user(&get(&n, "/index.html", c)) != name)
        .count();
    assert_eq!(lost, 0, "logins lost over the outage:\n{}", n.error_log());
    assert!(private_503 > 0);
}

/// The session's own key in Redis: the one that is not an index, a
/// handle pointer or a shared value.
fn session_keys(redis: &Redis) -> Vec<String> {
    redis
        .cli(&["--scan"])
        .lines()
        .filter(|k| {
            !k.starts_with("sessions:user:") && !k.starts_with("sessions:handle:") && !k.contains("random-")
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn a_wrong_type_at_a_key_is_no_session_and_is_repaired() {
    let redis = Redis::start(&[]);
    let n = Nginx::start(&conf(redis.port, "durable-secret-4", ""));
    let first = n.get("/index.html");
    let c = first.cookie_pair("sid");
    let keys = session_keys(&redis);
    assert_eq!(keys.len(), 1, "{keys:?}");
    redis.cli(&["DEL", &keys[0]]);
    redis.cli(&["HSET", &keys[0], "f", "v"]);
    for _ in 0..3 {
        let r = get(&n, "/index.html", &c);
        assert_eq!(r.status, 200, "{}", n.error_log());
        assert_eq!(status(&r), "unknown");
    }
    assert_eq!(redis.cli(&["TYPE", &keys[0]]), "none", "repaired");

    // A string that does not open: no session, and deleted.
    let before = session_keys(&redis);
    let g = n.get("/index.html").cookie_pair("sid");
    let added: Vec<String> = session_keys(&redis)
        .into_iter()
        .filter(|k| !before.contains(k))
        .collect();
    assert_eq!(added.len(), 1, "{added:?}");
    redis.cli(&["SET", &added[0], "garbage"]);
    let r = get(&n, "/index.html", &g);
    assert_eq!((r.status, status(&r)), (200, "unknown"));
    assert_eq!(redis.cli(&["TYPE", &added[0]]), "none", "deleted");

    // A user index of the wrong type: logins of that user still work.
    let pointers = |r: &Redis| -> Vec<String> {
        r.cli(&["--scan", "--pattern", "sessions:handle:*"])
            .lines()
            .map(str::to_string)
            .collect()
    };
    let c = logged_in(&n, "wrongtype");
    let idx: Vec<String> = redis
        .cli(&["--scan", "--pattern", "sessions:user:*"])
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(idx.len(), 1);
    wait_for("the login to reach Redis", || {
        redis.cli(&["TYPE", &idx[0]]) == "hash"
    });
    redis.cli(&["DEL", &idx[0]]);
    redis.cli(&["LPUSH", &idx[0], "x"]);
    assert_eq!(user(&get(&n, "/index.html", &c)), "wrongtype");
    let known = pointers(&redis);
    let again = logged_in(&n, "wrongtype");
    assert_eq!(user(&get(&n, "/index.html", &again)), "wrongtype");
    wait_for("the index to be a hash again", || {
        redis.cli(&["TYPE", &idx[0]]) == "hash"
    });
    // A handle pointer of the wrong type: the session's next login
    // replaces it.
    let mine: Vec<String> = pointers(&redis)
        .into_iter()
        .filter(|p| !known.contains(p))
        .collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    redis.cli(&["DEL", &mine[0]]);
    redis.cli(&["LPUSH", &mine[0], "x"]);
    let relogged = get(&n, "/app/login?user=wrongtype", &again);
    assert_eq!(relogged.status, 200);
    wait_for("the pointer to be a string again", || {
        redis.cli(&["TYPE", &mine[0]]) == "string"
    });
    assert_eq!(
        user(&get(&n, "/index.html", &relogged.cookie_pair("sid"))),
        "wrongtype"
    );
    let r = n.get("/metrics").text();
    assert!(
        r.contains("nginx_sessions_redis_pending{zone=\"sessions\"} 0"),
        "{r}"
    );
    n.assert_clean_log();
}

#[test]
fn a_logout_while_redis_is_down_takes_effect_at_once_and_reaches_redis() {
    let mut redis = Redis::start(&[]);
    let n = Nginx::start_with(2, &conf(redis.port, "durable-secret-5", ""));
    let c = logged_in(&n, "gone");
    let other = logged_in(&n, "stays");
    // Another instance sharing the Redis.
    let b = Nginx::start_with(1, &conf(redis.port, "durable-secret-5", ""));
    assert_eq!(user(&get(&b, "/index.html", &c)), "gone");
    redis.shutdown_saving();
    assert_eq!(get(&n, "/index.html", &other).status, 503, "the policy: 503");
    let out = get(&n, "/logout204", &c);
    assert_eq!(out.status, 204, "{}", n.error_log());
    assert!(
        out.set_cookies("sid")[0].contains("Max-Age=0"),
        "{:?}",
        out.set_cookies("sid")
    );
    // Refused at once: the new session it would get needs Redis (503 by
    // the policy); never the logged-in one.
    for _ in 0..4 {
        let r = get(&n, "/index.html", &c);
        assert_eq!(r.status, 503);
        assert_eq!(user(&r), "");
    }
    let metrics = n.get("/metrics").text();
    assert!(
        metrics.contains("nginx_sessions_redis_pending{zone=\"sessions\"} 1"),
        "dead cookies add nothing to the journal:\n{metrics}"
    );
    redis.run();
    n.wait_redis_drained("/metrics");
    let r = get(&n, "/index.html", &c);
    assert_eq!((status(&r), user(&r)), ("unknown", ""));
    wait_for("the other login", || {
        user(&get(&n, "/index.html", &other)) == "stays"
    });
    // The other instance refuses the cookie as soon as it reaches Redis
    // again, and never takes it for logged in meanwhile.
    let back = Instant::now();
    wait_for("the other instance to refuse the cookie", || {
        let r = get(&b, "/index.html", &c);
        assert_eq!(user(&r), "", "logged in on the other instance");
        status(&r) == "unknown"
    });
    assert!(back.elapsed() < Duration::from_secs(10), "{:?}", back.elapsed());
}

#[test]
fn the_pending_writes_are_bounded_and_say_so_once() {
    let mut redis = Redis::start(&[]);
    let n = Nginx::start_with(
        2,
        &conf(redis.port, "durable-secret-6", "sessions_redis_pending 16;"),
    );
    let cookies: Vec<String> = (0..20).map(|i| logged_in(&n, &format!("b{i}"))).collect();
    n.wait_redis_drained("/metrics");
    redis.shutdown_saving();
    let answers: Vec<u16> = cookies.iter().map(|c| get(&n, "/logout204", c).status).collect();
    // Kept until the bound, then refused (the logout is not done, and says so).
    assert_eq!(answers.iter().filter(|&&s| s == 204).count(), 16, "{answers:?}");
    assert_eq!(answers.iter().filter(|&&s| s == 503).count(), 4, "{answers:?}");
    let log = n.error_log();
    assert_eq!(
        log.matches("16 Redis writes are waiting for Redis").count(),
        1,
        "{log}"
    );
    let metrics = n.get("/metrics").text();
    assert!(
        metrics.contains("nginx_sessions_redis_writes_total{zone=\"sessions\",result=\"unkept\"} 4"),
        "{metrics}"
    );
    redis.run();
    n.wait_redis_drained("/metrics");
    for (i, c) in cookies.iter().enumerate() {
        let u = user(&get(&n, "/index.html", c)).to_string();
        if answers[i] == 204 {
            assert_eq!(u, "", "logged out for good");
        } else {
            assert_eq!(u, format!("b{i}"), "a refused logout left the session as it was");
        }
    }
    n.assert_clean_log();
}

#[test]
fn stopping_nginx_right_after_a_login_keeps_it() {
    let redis = Redis::start(&[]);
    let http = conf(redis.port, "durable-secret-7", "");
    let mut n = Nginx::start_with(2, &http);
    let anon = n.get("/index.html").cookie_pair("sid");
    // Redis holds writes for a moment: the login is still pending when
    // nginx is told to stop.
    assert_eq!(redis.cli(&["CLIENT", "PAUSE", "600", "WRITE"]), "OK");
    let r = get(&n, "/app/login?user=stopper", &anon);
    let c = r.cookie_pair("sid");
    n.stop();
    let n2 = Nginx::start_with(2, &http);
    let r = get(&n2, "/index.html", &c);
    assert_eq!((status(&r), user(&r)), ("valid", "stopper"), "{}", n.error_log());
}

#[test]
fn new_sessions_are_answered_at_once_within_half_the_pending_writes() {
    let redis = Redis::start(&[]);
    let n = Nginx::start_with(
        2,
        &common::spread_over_workers(&conf(
            redis.port,
            "durable-secret-9",
            "sessions_redis_pending 16; sessions_redis_timeout 5s;",
        )),
    );
    logged_in(&n, "warm");
    every_worker_has_reached_redis(&n);
    // Held until UNPAUSE below: nothing here races the pause's end.
    assert_eq!(redis.cli(&["CLIENT", "PAUSE", "60000", "WRITE"]), "OK");
    let mut cookies = Vec::new();
    // Half the journal's room is for new sessions: answered at once, and
    // valid at once on any worker, though Redis takes no write.
    for _ in 0..8 {
        let r = n.get("/index.html");
        assert_eq!((r.status, status(&r)), (200, "new"), "{}", n.error_log());
        let c = r.cookie_pair("sid");
        assert_eq!(status(&get(&n, "/index.html", &c)), "valid");
        cookies.push(c);
    }
    // The other half still keeps the writes that matter.
    let r = get(&n, "/app/login?user=late", &cookies[0]);
    let late = r.cookie_pair("sid");
    assert_eq!(user(&get(&n, "/index.html", &late)), "late");
    // All of it answered while Redis took nothing: 9 writes wait.
    let metrics = n.get("/metrics").text();
    assert!(
        metrics.contains("nginx_sessions_redis_pending{zone=\"sessions\"} 9\n"),
        "{metrics}"
    );
    // Past the half, a new session is written to Redis before it is
    // answered: not before the pause ends.
    let port = n.port;
    let ninth = thread::spawn(move || common::send(port, &Request::get("/index.html")));
    thread::sleep(Duration::from_millis(500));
    assert!(!ninth.is_finished(), "answered before Redis took it");
    assert_eq!(redis.cli(&["CLIENT", "UNPAUSE"]), "OK");
    let r = ninth.join().unwrap();
    assert_eq!((r.status, status(&r)), (200, "new"), "{}", n.error_log());
    cookies.push(r.cookie_pair("sid"));
    n.wait_redis_drained("/metrics");
    for c in &cookies[1..] {
        assert_eq!(status(&get(&n, "/index.html", c)), "valid", "{}", n.error_log());
    }
    assert_eq!(user(&get(&n, "/index.html", &late)), "late");
    let metrics = n.get("/metrics").text();
    assert!(
        metrics.contains("nginx_sessions_redis_writes_total{zone=\"sessions\",result=\"unkept\"} 0"),
        "{metrics}"
    );
    n.assert_clean_log();
}

#[test]
fn new_sessions_get_the_policy_once_redis_is_seen_down() {
    let mut redis = Redis::start(&[]);
    let n = Nginx::start_with(2, &conf(redis.port, "durable-secret-10", ""));
    logged_in(&n, "warm");
    n.wait_redis_drained("/metrics");
    redis.shutdown_saving();
    // A worker that has not yet seen Redis go keeps the new session it
    // starts; once it has (a request or its flusher failed), the policy.
    let mut kept = Vec::new();
    wait_for("the policy on every worker", || {
        (0..10).all(|_| {
            let r = n.get("/index.html");
            if r.status == 200 {
                kept.push(r.cookie_pair("sid"));
            }
            r.status == 503
        })
    });
    redis.run();
    wait_for("Redis again", || n.get("/index.html").status == 200);
    n.wait_redis_drained("/metrics");
    for c in &kept {
        assert_eq!(
            status(&get(&n, "/index.html", c)),
            "valid",
            "a kept new session was lost"
        );
    }
}

#[test]
fn a_redis_that_goes_away_is_noticed_before_any_new_session_is_kept() {
    let mut redis = Redis::start(&[]);
    let n = Nginx::start_with(2, &conf(redis.port, "durable-secret-12", ""));
    logged_in(&n, "warm");
    n.wait_redis_drained("/metrics");
    // Each worker's near-cache connection is up: its loss tells the worker.
    wait_for("both tracking connections", || {
        redis.cli(&["CLIENT", "LIST"]).matches("flags=t").count() == 2
    });
    redis.shutdown_saving();
    thread::sleep(Duration::from_millis(300));
    // No request and no flush has failed yet, but the policy holds from the
    // first new session on, on every worker.
    for _ in 0..10 {
        assert_eq!(n.get("/index.html").status, 503, "{}", n.error_log());
    }
    redis.run();
    wait_for("Redis again", || n.get("/index.html").status == 200);
}

#[test]
fn a_redis_that_stops_answering_is_noticed_by_the_ping_before_a_new_session_is_kept() {
    let redis = Redis::start(&[]);
    let n = Nginx::start_with(
        2,
        &common::spread_over_workers(&conf(
            redis.port,
            "durable-secret-14",
            "sessions_redis_timeout 300ms;",
        )),
    );
    logged_in(&n, "warm");
    every_worker_has_reached_redis(&n);
    wait_for("both tracking connections", || {
        redis.cli(&["CLIENT", "LIST"]).matches("flags=t").count() == 2
    });
    redis.signal("STOP");
    // The near cache's ping (every 0.5 s) times out within 300 ms; no
    // request or flush has failed, yet the policy holds from then on.
    thread::sleep(Duration::from_millis(1_500));
    for _ in 0..6 {
        assert_eq!(n.get("/index.html").status, 503, "{}", n.error_log());
    }
    redis.signal("CONT");
    wait_for("Redis again", || n.get("/index.html").status == 200);
}

#[test]
fn a_new_session_is_valid_at_once_on_another_instance() {
    // As behind a load balancer: the next request goes to the other nginx
    // the moment the first is answered, before the new session's write
    // may have reached Redis.
    let redis = Redis::start(&[]);
    let a = Nginx::start(&conf(redis.port, "durable-secret-11", ""));
    let b = Nginx::start(&conf(redis.port, "durable-secret-11", ""));
    for _ in 0..40 {
        let r = a.get("/index.html");
        assert_eq!(status(&r), "new", "{}", a.error_log());
        let c = r.cookie_pair("sid");
        assert_eq!(status(&get(&b, "/index.html", &c)), "valid", "{}", b.error_log());
    }
    // A session that reaches Redis 10 ms after the other nginx first
    // looked for it (held under another name meanwhile) is still found.
    redis.cli(&["FLUSHALL"]);
    for _ in 0..5 {
        let c = a.get("/index.html").cookie_pair("sid");
        a.wait_redis_drained("/metrics");
        let key = redis.cli(&["--scan"]).trim().to_string();
        assert_eq!(redis.cli(&["RENAME", &key, "held"]), "OK");
        // Connected beforehand, so that the rename back is sent on time.
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
        let back = thread::spawn(move || {
            use std::io::{Read, Write};
            thread::sleep(Duration::from_millis(10));
            conn.write_all(format!("RENAME held {key}\r\n").as_bytes())
                .unwrap();
            let mut reply = [0u8; 5];
            conn.read_exact(&mut reply).unwrap();
            reply
        });
        assert_eq!(status(&get(&b, "/index.html", &c)), "valid", "{}", b.error_log());
        assert_eq!(&back.join().unwrap(), b"+OK\r\n");
        redis.cli(&["FLUSHALL"]);
    }
    a.assert_clean_log();
    b.assert_clean_log();
}

/// A Sentinel watching `master` (down after 1 s): its process, its port, and a way to ask it.
fn sentinel(master: &Redis) -> (common::Reaped, u16, impl Fn(&[&str]) -> String) {
    let dir = common::scratch_dir("durable-sentinel");
    let port = common::free_port();
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\n\
             sentinel monitor mymaster 127.0.0.1 {} 1\n\
             sentinel down-after-milliseconds mymaster 1000\n\
             sentinel failover-timeout mymaster 5000\n",
            dir.display(),
            master.port
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("sentinel.log")).unwrap();
    let process = common::Reaped(
        std::process::Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let ask = move |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    wait_for("sentinel", || ask(&["PING"]) == "PONG");
    (process, port, ask)
}

/// Under Sentinel a login leaves the journal only once a replica has it
/// (`WAIT`), not on the master's word alone: a failover promotes the
/// replica, and what only the old master had would go with it. The
/// replica frozen, a login stays pending; the master killed and the
/// replica promoted, the login is sent again and holds.
#[test]
fn a_login_no_replica_has_yet_is_kept_through_a_failover() {
    let mut master = Redis::start(&[]);
    let replica = Redis::start(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    wait_for("the replica to sync", || {
        replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
    });
    let (_sentinel, sentinel_port, ask) = sentinel(&master);
    wait_for("sentinel to see the replica", || {
        ask(&["SENTINEL", "REPLICAS", "mymaster"]).contains(&replica.port.to_string())
    });
    let n = Nginx::start(&conf(master.port, "durable-secret-sentinel", "").replace(
        &format!("sessions_redis_server 127.0.0.1:{};", master.port),
        &format!(
            "sessions_redis_sentinel 127.0.0.1:{sentinel_port}; sessions_redis_sentinel_master mymaster;"
        ),
    ));
    every_worker_has_reached_redis(&n);

    replica.signal("STOP");
    let c = logged_in(&n, "alice");
    assert_eq!(user(&get(&n, "/index.html", &c)), "alice");
    thread::sleep(Duration::from_millis(1500));
    let metrics = n.get("/metrics").text();
    assert!(
        !metrics.contains("nginx_sessions_redis_pending{zone=\"sessions\"} 0\n"),
        "the master's word alone settled the login: {metrics}"
    );

    master.stop();
    replica.signal("CONT");
    wait_for("the replica to be promoted", || {
        ask(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"]).contains(&replica.port.to_string())
            && replica.cli(&["ROLE"]).starts_with("master")
    });
    n.wait_redis_drained("/metrics");
    assert_eq!(user(&get(&n, "/index.html", &c)), "alice", "{}", n.error_log());
    n.assert_clean_log();
}

/// `X-Session-Logout-Others` with Redis is kept as a logout is: while Redis
/// takes no write, the request to end the user's other sessions waits in
/// the journal (the flusher's attempts time out), and once Redis takes
/// writes again they end. The current session stays.
#[test]
fn logout_others_is_kept_until_redis_takes_it() {
    let redis = Redis::start(&[]);
    let n = Nginx::start_with(
        2,
        &conf(
            redis.port,
            "durable-secret-others",
            "sessions_redis_timeout 300ms;",
        ),
    );
    let others: Vec<String> = (0..3).map(|_| logged_in(&n, "olga")).collect();
    let me = logged_in(&n, "olga");
    n.wait_redis_drained("/metrics");
    assert_eq!(redis.cli(&["CLIENT", "PAUSE", "2500", "WRITE"]), "OK");
    let r = get(&n, "/app/password-changed", &me);
    assert_eq!(r.status, 200, "{}", n.error_log());
    thread::sleep(Duration::from_millis(1200));
    let pending = n.get("/metrics").text();
    let waiting: u64 = pending
        .lines()
        .find_map(|l| l.strip_prefix("nginx_sessions_redis_pending{zone=\"sessions\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(waiting >= 1, "kept while Redis takes no write: {pending}");
    wait_for("the other sessions to end", || {
        others
            .iter()
            .all(|c| status(&get(&n, "/index.html", c)) == "ended")
    });
    let r = get(&n, "/index.html", &me);
    assert_eq!((user(&r), status(&r)), ("olga", "valid"));
    n.wait_redis_drained("/metrics");
    n.assert_clean_log();
}
