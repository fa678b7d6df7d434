//! Redis storage against real `redis-server` processes on loopback: every
//! way to connect, Sentinel failover, Cluster, instances sharing sessions,
//! outages, and what an attacker reading Redis can learn.

mod common;

/// Each test configures its own store.
const SUITE: common::Suite = common::Suite::Own;

use std::fs;
use std::io::Write as _;
use std::net::TcpStream;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{Nginx, Redis, Request, Response};

/// An `http` block: sessions in Redis with `redis` settings; `/plain/`
/// without sessions, `/local/` in the local zone.
fn conf(redis: &str, extra: &str) -> String {
    format!(
        "sessions on; sessions_secret redis-test-secret-0123; sessions_name sid;
         sessions_store redis;
         {redis}
         {extra}
         server {{
           listen 127.0.0.1:{{port}};
           root html;
           add_header X-Session-Status $session_status always;
           add_header X-Session-Id $session_id always;
           location /plain/ {{ sessions off; alias html/; }}
           location /local/ {{ sessions_store shm; alias html/; }}
           location = /metrics {{ sessions_status; }}
         }}"
    )
}

fn status(r: &Response) -> &str {
    r.header("X-Session-Status").unwrap_or("")
}

fn sid(r: &Response) -> &str {
    r.header("X-Session-Id").unwrap_or("")
}

/// A session is created, then its cookie is accepted.
fn assert_round_trip(n: &Nginx) -> String {
    let first = n.get("/");
    assert_eq!(first.status, 200, "{}", n.error_log());
    assert_eq!(status(&first), "new", "{}", n.error_log());
    let c = first.cookie_pair("sid");
    let r = n.request(Request::get("/").cookie(&c));
    assert_eq!(status(&r), "valid", "{}", n.error_log());
    assert_eq!(sid(&r), sid(&first));
    c
}

fn keys(r: &Redis, extra: &[&str]) -> Vec<String> {
    let mut args = extra.to_vec();
    args.push("--scan");
    r.cli(&args).lines().map(str::to_string).collect()
}

#[test]
fn unix_socket_database_and_acl_user_with_password_file() {
    let dir = common::scratch_dir("acl");
    let sock = dir.join("redis.sock").display().to_string();
    let user = [
        &[
            "--unixsocket",
            &sock,
            "--unixsocketperm",
            "777",
            "--user",
            "default",
            "off",
            "--user",
            "sessions",
            "on",
            ">acl-pass-123",
            "~*",
        ],
        common::acl_commands(),
        // With a database index; and for redis-cli in this test.
        &["+select", "+scan", "+ttl"],
    ]
    .concat();
    let mut redis = Redis::start(&user);
    redis.auth = vec![
        "--user".into(),
        "sessions".into(),
        "--pass".into(),
        "acl-pass-123".into(),
    ];
    let pw = dir.join("redis.pw");
    fs::write(&pw, "acl-pass-123\n").unwrap();
    let n = Nginx::start(&conf(
        &format!(
            "sessions_redis_server unix:{sock}; sessions_redis_database 3;
             sessions_redis_username sessions; sessions_redis_password_file {};",
            pw.display()
        ),
        "server { listen 127.0.0.1:{port2};
                  location / { add_header X-Session-User $arg_user; return 200; } }
         server { listen 127.0.0.1:{port3}; sessions_control_headers on;
                  sessions_idling_timeout 2s;
                  add_header X-Session-Status $session_status always;
                  add_header X-Session-Id $session_id always;
                  add_header X-User $session_user always;
                  location /login { proxy_pass http://127.0.0.1:{port2}; }
                  location / { root html; }
                  location = /admin { sessions_admin; } }",
    ));
    assert_round_trip(&n);
    assert_eq!(
        keys(&redis, &["-n", "3"]).len(),
        1,
        "the session is in database 3"
    );
    assert!(keys(&redis, &[]).is_empty(), "nothing in database 0");
    // Everything else the module sends, with only the listed commands:
    // a login, a last-seen update, listing and both revocations.
    let on = |c: &str| common::send(n.port3, &Request::get("/").cookie(c));
    let login = || {
        let r = common::send(n.port3, &Request::get("/login?user=ann"));
        (
            r.cookie_pair("sid"),
            r.header("X-Session-Id").unwrap().to_string(),
        )
    };
    let (c1, id1) = login();
    let (c2, _) = login();
    sleep(Duration::from_millis(300));
    let r = on(&c1);
    assert_eq!((status(&r), r.header("X-User")), ("valid", Some("ann")));
    let listed = common::send(n.port3, &Request::get("/admin?user=ann"));
    assert_eq!(listed.status, 200);
    assert_eq!(listed.text().matches("\"id\":").count(), 2, "{}", listed.text());
    let mut del = Request::get(&format!("/admin?id={id1}"));
    del.method = "DELETE".into();
    assert_eq!(common::send(n.port3, &del).status, 200);
    assert_eq!(status(&on(&c1)), "ended");
    let mut del = Request::get("/admin?user=ann");
    del.method = "DELETE".into();
    assert_eq!(common::send(n.port3, &del).text().trim(), "{\"revoked\":1}");
    assert_eq!(status(&on(&c2)), "ended");
    n.wait_redis_drained("/metrics");
    let log = n.error_log();
    assert!(!log.contains("Redis refused a command"), "{log}");
    n.assert_clean_log();
}

/// With `master_process off` the one process serves requests as a worker
/// does: Redis locations work there too (they answered 503 before).
#[test]
fn redis_works_with_master_process_off() {
    let redis = Redis::start(&[]);
    let mut n = Nginx::prepare("single-process");
    let http = conf(&format!("sessions_redis_server 127.0.0.1:{};", redis.port), "");
    let single = format!("master_process off;\n{}", common::main_conf(1, &n.expand(&http)));
    fs::write(n.dir.join("single.conf"), single).unwrap();
    n.spawn_conf("single.conf");
    let deadline = Instant::now() + Duration::from_secs(10);
    while n.get("/").status == 503 && Instant::now() < deadline {
        sleep(Duration::from_millis(100));
    }
    assert_round_trip(&n);
    assert!(!keys(&redis, &[]).is_empty(), "the sessions are in Redis");
}

#[test]
fn password_in_config_ipv6_literal_prefix_and_a_wrong_password() {
    let mut redis = Redis::start(&["--requirepass", "right-password", "--bind", "127.0.0.1", "::1"]);
    redis.auth = vec!["--pass".into(), "right-password".into()];
    let n = Nginx::start(&conf(
        &format!(
            "sessions_redis_server [::1]:{}; sessions_redis_password right-password;
             sessions_redis_prefix app1:;",
            redis.port
        ),
        "",
    ));
    assert_round_trip(&n);
    let stored = keys(&redis, &[]);
    assert_eq!(stored.len(), 1);
    assert!(stored[0].starts_with("app1:"), "{stored:?}");
    drop(n);
    let n = Nginx::start(&conf(
        &format!(
            "sessions_redis_server 127.0.0.1:{}; sessions_redis_password wrong-password;",
            redis.port
        ),
        "",
    ));
    for _ in 0..3 {
        assert_eq!(n.get("/").status, 503, "fails closed by default");
    }
    assert_eq!(n.get("/plain/").status, 200);
    let log = n.error_log();
    assert_eq!(log.matches("Redis is unavailable").count(), 1, "{log}");
    assert!(!log.contains("wrong-password"), "the password is never logged");
}

/// A CA, and a certificate it signs for `san`, made with openssl.
fn make_certs(dir: &std::path::Path, san: &str) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    for (name, cn) in [("server", "redis"), ("client", "nginx")] {
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        fs::write(dir.join("ext.cnf"), format!("subjectAltName={san}\n")).unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            &format!("{name}.pem"),
        ]);
    }
}

/// A Redis with a TLS port (returned) using the certificates in `dir`.
fn tls_redis(dir: &std::path::Path, extra: &[&str]) -> (Redis, u16) {
    let d = dir.display();
    let port = common::free_port();
    let (port_arg, cert, key, ca) = (
        port.to_string(),
        format!("{d}/server.pem"),
        format!("{d}/server.key"),
        format!("{d}/ca.pem"),
    );
    let mut args = vec![
        "--tls-port",
        &port_arg,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
    ];
    args.extend_from_slice(extra);
    (Redis::start_on(common::free_port(), &args), port)
}

#[test]
fn tls_with_a_test_ca_client_certificate_and_server_name() {
    let dir = common::scratch_dir("tls");
    make_certs(&dir, "DNS:redis.test");
    let d = dir.display();
    let (redis, port) = tls_redis(&dir, &["--tls-auth-clients", "yes"]);
    let tls = format!(
        "sessions_redis_server 127.0.0.1:{port}; sessions_redis_tls on;
         sessions_redis_tls_trusted_certificate {d}/ca.pem;
         sessions_redis_tls_certificate {d}/client.pem; sessions_redis_tls_certificate_key {d}/client.key;"
    );
    // The certificate names redis.test, not 127.0.0.1: the server name says so.
    let n = Nginx::start(&conf(
        &format!("{tls} sessions_redis_tls_server_name redis.test;"),
        "",
    ));
    assert_round_trip(&n);
    assert_eq!(keys(&redis, &[]).len(), 1, "stored through TLS");
    drop(n);
    // Without the server name the certificate does not match: refused.
    let n = Nginx::start(&conf(&tls, ""));
    assert_eq!(n.get("/").status, 503);
    assert!(n.error_log().contains("Redis is unavailable"));
    drop(n);
    // Unless verification is off.
    let n = Nginx::start(&conf(&format!("{tls} sessions_redis_tls_verify off;"), ""));
    assert_round_trip(&n);
    drop(n);
    // Without a client certificate the server refuses us.
    let n = Nginx::start(&conf(
        &format!(
            "sessions_redis_server 127.0.0.1:{port}; sessions_redis_tls on;
             sessions_redis_tls_trusted_certificate {d}/ca.pem; sessions_redis_tls_server_name redis.test;"
        ),
        "",
    ));
    assert_eq!(n.get("/").status, 503);
}

#[test]
fn tls_protocols_decide_what_can_be_agreed() {
    let dir = common::scratch_dir("tls-protocols");
    make_certs(&dir, "IP:127.0.0.1");
    let d = dir.display();
    let only = |version| tls_redis(&dir, &["--tls-auth-clients", "no", "--tls-protocols", version]);
    let ((_r12, only12), (_r13, only13)) = (only("TLSv1.2"), only("TLSv1.3"));
    let start = |port: u16, protocols: &str| {
        Nginx::start(&conf(
            &format!(
                "sessions_redis_server 127.0.0.1:{port}; sessions_redis_tls on;
                 sessions_redis_tls_trusted_certificate {d}/ca.pem; {protocols}"
            ),
            "",
        ))
    };
    for (port, protocols, agreed) in [
        (only12, "", true),
        (only13, "", true),
        (only12, "sessions_redis_tls_protocols TLSv1.2;", true),
        (only12, "sessions_redis_tls_protocols TLSv1.3;", false),
        (only13, "sessions_redis_tls_protocols TLSv1.2;", false),
        (only13, "sessions_redis_tls_protocols TLSv1.2 TLSv1.3;", true),
    ] {
        let n = start(port, protocols);
        if agreed {
            assert_round_trip(&n);
        } else {
            assert_eq!(n.get("/").status, 503, "{protocols} with {port}");
            assert!(n.error_log().contains("Redis is unavailable"));
        }
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(100));
    }
}

#[test]
fn sentinel_failover_keeps_sessions() {
    // The data nodes want a password; the sentinel an ACL user of its own.
    let mut master = Redis::start(&["--requirepass", "data-pw", "--masterauth", "data-pw"]);
    let mut replica = Redis::start(&[
        "--replicaof",
        "127.0.0.1",
        &master.port.to_string(),
        "--requirepass",
        "data-pw",
        "--masterauth",
        "data-pw",
    ]);
    master.auth = vec!["--pass".into(), "data-pw".into()];
    replica.auth = master.auth.clone();
    let dir = common::scratch_dir("sentinel");
    let sport = common::free_port();
    let sconf = dir.join("sentinel.conf");
    fs::write(
        &sconf,
        format!(
            "port {sport}\nbind 127.0.0.1\ndir {}\n\
             user default off\n\
             user watcher on >sentinel-pw allcommands allchannels\n\
             sentinel monitor mymaster 127.0.0.1 {} 1\n\
             sentinel auth-pass mymaster data-pw\n\
             sentinel down-after-milliseconds mymaster 1000\n\
             sentinel failover-timeout mymaster 5000\n",
            dir.display(),
            master.port
        ),
    )
    .unwrap();
    let log = fs::File::create(dir.join("sentinel.log")).unwrap();
    let _sentinel = common::Reaped(
        Command::new("redis-server")
            .arg(&sconf)
            .arg("--sentinel")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let ask = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args([
                "-p",
                &sport.to_string(),
                "--user",
                "watcher",
                "--pass",
                "sentinel-pw",
                "--no-auth-warning",
            ])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    wait_until("sentinel", || ask(&["PING"]) == "PONG");
    wait_until("the replica to sync", || {
        replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
    });
    let n = Nginx::start(&conf(
        &format!(
            "sessions_redis_sentinel 127.0.0.1:{sport}; sessions_redis_sentinel_master mymaster;
             sessions_redis_sentinel_username watcher; sessions_redis_sentinel_password sentinel-pw;
             sessions_redis_password data-pw; sessions_redis_database 2;"
        ),
        "",
    ));
    let c = assert_round_trip(&n);
    wait_until("the session to reach the replica", || {
        keys(&replica, &["-n", "2"]).len() == 1
    });

    wait_until("sentinel to see the replica", || {
        ask(&["SENTINEL", "REPLICAS", "mymaster"]).contains(&replica.port.to_string())
    });
    wait_until("the failover to start", || {
        ask(&["SENTINEL", "FAILOVER", "mymaster"]) == "OK"
    });
    wait_until("the replica to be promoted", || {
        ask(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"]).contains(&replica.port.to_string())
            && replica.cli(&["ROLE"]).starts_with("master")
    });
    wait_until("the old master to be demoted", || {
        master.cli(&["ROLE"]).starts_with("slave")
    });
    // The session made before the failover still validates, and new ones
    // are written to the new master.
    wait_until("the old session to validate", || {
        status(&n.request(Request::get("/").cookie(&c))) == "valid"
    });
    let before = keys(&replica, &["-n", "2"]).len();
    let r = n.get("/");
    assert_eq!(status(&r), "new");
    assert_eq!(
        keys(&replica, &["-n", "2"]).len(),
        before + 1,
        "written to the new master"
    );
    // No near cache with Sentinel: a session removed on the new master is
    // refused at once.
    assert!(!replica.cli(&["CLIENT", "LIST"]).contains("flags=t"));
    let c2 = n.get("/").cookie_pair("sid");
    for _ in 0..3 {
        assert_eq!(status(&n.request(Request::get("/").cookie(&c2))), "valid");
    }
    // The writes of those requests (last seen) first: under Sentinel they
    // settle once a replica has them, which the demoted master, still
    // syncing, may not yet; one sent after the FLUSHDB would store the
    // session again.
    n.wait_redis_drained("/metrics");
    replica.cli(&["-n", "2", "FLUSHDB"]);
    let t = Instant::now();
    while status(&n.request(Request::get("/").cookie(&c2))) == "valid" {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a flushed session still answered"
        );
        sleep(Duration::from_millis(10));
    }
    n.assert_clean_log();
}

#[test]
fn cluster_spreads_sessions_over_slots() {
    let (nodes, addrs) = common::start_cluster(&[common::acl_commands(), &["+cluster|slots"]].concat());
    let n = Nginx::start(&conf(
        &format!(
            "sessions_redis_cluster {} {}; sessions_redis_username nginx; sessions_redis_password nginx-pw;
             sessions_idling_timeout 2s;",
            addrs[0], addrs[1]
        ),
        "",
    ));
    let mut cookies = Vec::new();
    for _ in 0..30 {
        let r = n.get("/");
        assert_eq!(status(&r), "new", "{}", n.error_log());
        cookies.push((r.cookie_pair("sid"), sid(&r).to_string()));
    }
    // Twice: the second round, past a tenth of the idle timeout, writes
    // the last-seen times (a compare-and-set script on each node).
    for round in 0..2 {
        if round == 1 {
            sleep(Duration::from_millis(300));
        }
        for (c, id) in &cookies {
            let r = n.request(Request::get("/").cookie(c));
            assert_eq!(status(&r), "valid", "{}", n.error_log());
            assert_eq!(sid(&r), id);
        }
    }
    let per_node: Vec<usize> = nodes
        .iter()
        .map(|r| r.cli(&["DBSIZE"]).parse().unwrap())
        .collect();
    assert_eq!(per_node.iter().sum::<usize>(), 30, "{per_node:?}");
    assert!(
        per_node.iter().all(|&k| k > 0),
        "every master holds sessions: {per_node:?}"
    );
    n.assert_clean_log();
}

#[test]
fn two_instances_share_sessions_with_random_secret_and_name() {
    let redis = Redis::start(&[]);
    let http = format!(
        "sessions on; sessions_store redis; sessions_redis_server 127.0.0.1:{};
         server {{ listen 127.0.0.1:{{port}}; root html;
                  add_header X-Session-Status $session_status always;
                  add_header X-Session-Id $session_id always; }}",
        redis.port
    );
    let a = Nginx::start(&http);
    let b = Nginx::start_with(2, &http);
    let first = a.get("/");
    let set = first.all("Set-Cookie");
    assert_eq!(set.len(), 1, "{}", a.error_log());
    let name = set[0].split('=').next().unwrap().to_string();
    assert_eq!(name.len(), 16);
    let c = first.cookie_pair(&name);
    for _ in 0..10 {
        let r = b.request(Request::get("/").cookie(&c));
        assert_eq!(status(&r), "valid", "{}", b.error_log());
        assert_eq!(sid(&r), sid(&first));
    }
    assert_eq!(b.get("/").set_cookies(&name).len(), 1, "b uses the same name");
    let stored = keys(&redis, &[]);
    assert!(stored.iter().any(|k| k == "sessions:random-secret"), "{stored:?}");
    assert!(stored.iter().any(|k| k == "sessions:random-name"), "{stored:?}");
}

#[test]
fn redis_down_fails_closed_then_recovers_without_reload() {
    let mut redis = Redis::start(&[]);
    let n = Nginx::start(&conf(
        &format!(
            "sessions_redis_server 127.0.0.1:{}; sessions_redis_timeout 300ms;",
            redis.port
        ),
        "",
    ));
    let c = assert_round_trip(&n);
    // Never read by this worker, so not in its near cache (whose copy of
    // `c` may answer until the worker sees the connection close).
    let unread = n.get("/").cookie_pair("sid");
    // And in Redis, not among the pending writes.
    n.wait_redis_drained("/metrics");
    redis.shutdown_saving();
    for _ in 0..5 {
        assert_eq!(n.request(Request::get("/").cookie(&unread)).status, 503);
        assert_eq!(n.get("/plain/").status, 200, "locations without sessions answer");
        assert_eq!(status(&n.get("/local/")), "new", "shm locations answer");
    }
    assert_eq!(n.error_log().matches("Redis is unavailable").count(), 1);
    redis.run();
    wait_until("recovery", || {
        n.request(Request::get("/").cookie(&c)).status == 200
    });
    let r = n.request(Request::get("/").cookie(&c));
    assert_eq!(
        status(&r),
        "valid",
        "a session from before the outage is valid again"
    );
    let log = n.error_log();
    assert_eq!(log.matches("Redis is available again").count(), 1, "{log}");
    n.assert_clean_log();
}

#[test]
fn a_full_redis_refuses_new_sessions_and_says_why_once() {
    let redis = Redis::start(&[]);
    let n = Nginx::start(&conf(
        &format!("sessions_redis_server 127.0.0.1:{};", redis.port),
        "",
    ));
    let c = assert_round_trip(&n);
    // No room for any write. The worker has not met the refusal yet: the
    // first new session is kept in the pending writes (valid here, sent
    // again until Redis has room); its flush meets `OOM`, and from then on
    // a new session cannot be stored, by the failure policy (503). Reading
    // a stored session needs no room.
    assert_eq!(redis.cli(&["CONFIG", "SET", "maxmemory", "1"]), "OK");
    let kept = n.get("/");
    assert_eq!(status(&kept), "new");
    let kept = kept.cookie_pair("sid");
    wait_until("the policy", || n.get("/").status == 503);
    for _ in 0..3 {
        assert_eq!(n.get("/").status, 503);
        assert_eq!(status(&n.request(Request::get("/").cookie(&c))), "valid");
        assert_eq!(n.get("/plain/").status, 200);
    }
    // Redis answers, so it is not "unavailable"; the refusal is logged
    // once (a minute), with Redis's reason, however reads and writes mix.
    let log = n.error_log();
    assert_eq!(log.matches("Redis refused a command").count(), 1, "{log}");
    assert!(log.contains("OOM"), "{log}");
    assert!(
        !log.contains("Redis is unavailable") && !log.contains("available again"),
        "{log}"
    );
    assert_eq!(redis.cli(&["CONFIG", "SET", "maxmemory", "0"]), "OK");
    assert_eq!(status(&n.request(Request::get("/").cookie(&kept))), "valid");
    wait_until("new sessions stored again", || n.get("/").status == 200);
}

#[test]
fn redis_down_with_local_fallback() {
    let mut redis = Redis::start(&[]);
    let n = Nginx::start(&conf(
        &format!(
            "sessions_redis_server 127.0.0.1:{}; sessions_redis_unavailable local;",
            redis.port
        ),
        "",
    ));
    assert_round_trip(&n);
    // A session in Redis this worker never read: not in its near cache
    // (whose copy may answer until the worker sees the connection close),
    // nor among the pending writes.
    let before = n.get("/").cookie_pair("sid");
    n.wait_redis_drained("/metrics");
    redis.shutdown_saving();
    // The Redis session's cookie is kept: served without a session, no
    // new cookie over it (the browser would lose its Redis login).
    let r = n.request(Request::get("/index.html").cookie(&before));
    assert_eq!(r.status, 200, "served during the outage");
    assert_eq!(status(&r), "", "no session while its store is down");
    assert!(r.set_cookies("sid").is_empty(), "the Redis cookie is left alone");
    let during = n.get("/");
    assert_eq!(status(&during), "new");
    let local = during.cookie_pair("sid");
    assert_eq!(status(&n.request(Request::get("/").cookie(&local))), "valid");
    // Two requests asked Redis; the third found its session in the zone first.
    let metrics = n.get("/metrics").text();
    assert!(
        metrics.contains("nginx_sessions_redis_unavailable_total{zone=\"sessions\",action=\"local\"} 2"),
        "{metrics}"
    );
    redis.run();
    wait_until("recovery", || {
        status(&n.request(Request::get("/").cookie(&before))) == "valid"
    });
    assert_eq!(
        status(&n.request(Request::get("/").cookie(&local))),
        "valid",
        "a session started during the outage lives on in the local zone"
    );
    n.assert_clean_log();
}

#[test]
fn a_stalled_redis_delays_only_its_requests_and_a_client_may_leave() {
    let redis = Redis::start(&[]);
    let n = Nginx::start(&conf(
        &format!(
            "sessions_redis_server 127.0.0.1:{}; sessions_redis_timeout 2s;",
            redis.port
        ),
        "",
    ));
    assert_round_trip(&n);
    // A session this worker never read: not in its near cache, so its
    // requests wait for Redis (once its first write is there, not pending).
    let c = n.get("/").cookie_pair("sid");
    n.wait_redis_drained("/metrics");
    redis.signal("STOP");
    // A client that gives up while its request waits.
    for _ in 0..5 {
        let mut s = TcpStream::connect(("127.0.0.1", n.port)).unwrap();
        write!(s, "GET / HTTP/1.1\r\nHost: x\r\nCookie: {c}\r\n\r\n").unwrap();
        drop(s);
    }
    let waiting = std::thread::spawn({
        let port = n.port;
        let c = c.clone();
        move || {
            let t = Instant::now();
            let r = common::send(port, &Request::get("/").cookie(&c));
            (r.status, t.elapsed())
        }
    });
    for _ in 0..20 {
        assert_eq!(n.get("/plain/").status, 200);
    }
    // All answered while that request still waits for Redis.
    assert!(!waiting.is_finished(), "the plain requests waited");
    let (code, took) = waiting.join().unwrap();
    assert_eq!(code, 503, "the command timeout ends the wait");
    assert!(took >= Duration::from_millis(1_600), "{took:?}");
    redis.signal("CONT");
    wait_until("recovery", || {
        status(&n.request(Request::get("/").cookie(&c))) == "valid"
    });
    n.assert_clean_log();
    assert_eq!(n.worker_pids().len(), 1);
}

/// The raw bytes stored under `key`.
fn raw_value(r: &Redis, key: &str) -> Vec<u8> {
    Command::new("redis-cli")
        .args(["-p", &r.port.to_string(), "--raw", "GET", key])
        .output()
        .unwrap()
        .stdout
}

#[test]
fn redis_learns_neither_ids_nor_data_and_values_do_not_move() {
    let redis = Redis::start(&[]);
    let n = Nginx::start(&conf(
        &format!("sessions_redis_server 127.0.0.1:{};", redis.port),
        "server { listen 127.0.0.1:{port2};
                  location / { add_header X-Session-User alice-in-clear;
                               add_header X-Session-Set \"color=blue-in-clear\"; return 200; } }
         server { listen 127.0.0.1:{port3}; sessions_control_headers on;
                  add_header X-Session-Status $session_status always;
                  add_header X-Session-Id $session_id always;
                  location / { proxy_pass http://127.0.0.1:{port2}; } }",
    ));
    let login = common::send(n.port3, &Request::get("/"));
    assert_eq!(login.status, 200);
    let a = login.cookie_pair("sid");
    let handle = login.header("X-Session-Id").unwrap().to_string();
    // The login leaves its session, alice's index and a pointer from the
    // session's handle to that index (for the admin endpoint).
    wait_until("the login write", || keys(&redis, &[]).len() == 3);
    let b = n.get("/").cookie_pair("sid");
    let all = keys(&redis, &[]);
    let (index, rest): (Vec<String>, Vec<String>) = all.iter().cloned().partition(|k| k.contains(":user:"));
    let (pointer, stored): (Vec<String>, Vec<String>) =
        rest.into_iter().partition(|k| k.contains(":handle:"));
    assert_eq!((index.len(), pointer.len(), stored.len()), (1, 1, 2), "{all:?}");
    assert!(!index[0].contains("alice"), "the index does not name the user");
    assert!(
        !pointer[0].contains(&handle),
        "the pointer does not show the handle"
    );
    assert_eq!(
        raw_value(&redis, &pointer[0]),
        format!("{}\n", index[0]).into_bytes()
    );
    let members = redis.cli(&["HKEYS", &index[0]]);
    assert!(
        stored.contains(&members),
        "it lists alice's session key: {members}"
    );
    let summary = Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "--raw",
            "HGET",
            &index[0],
            &members,
        ])
        .output()
        .unwrap()
        .stdout;
    assert!(summary.len() > 60, "a summary is kept");
    let raw_handle: Vec<u8> = (0..handle.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&handle[i..i + 2], 16).unwrap())
        .collect();
    // 127.0.0.1, as stored in a record, and as text.
    for clear in [
        &b"alice-in-clear"[..],
        handle.as_bytes(),
        &raw_handle,
        &[127, 0, 0, 1],
        b"127.0.0.1",
    ] {
        assert!(
            !summary.windows(clear.len()).any(|w| w == clear),
            "the summary is sealed"
        );
    }
    for cookie in [&a, &b] {
        // The cookie is v1.<base64url(id || tag)>: the id is its first 16 bytes.
        let v = cookie.strip_prefix("sid=v1.").unwrap();
        let id_b64 = &v[..21];
        for k in &stored {
            assert!(!k.contains(id_b64), "key {k} shows the id");
            assert!(!members.contains(id_b64), "the index shows the id");
        }
    }
    for k in &stored {
        let v = raw_value(&redis, k);
        for clear in [
            &b"alice-in-clear"[..],
            b"blue-in-clear",
            b"color",
            &[127, 0, 0, 1],
        ] {
            assert!(
                !v.windows(clear.len()).any(|w| w == clear),
                "value of {k} shows data"
            );
        }
    }
    // Copy a's value over b's key: b's cookie must not get a's session.
    let a_key = stored
        .iter()
        .find(|k| {
            raw_value(&redis, k).len() > raw_value(&redis, stored.iter().find(|x| x != k).unwrap()).len()
        })
        .unwrap();
    let b_key = stored.iter().find(|k| *k != a_key).unwrap();
    assert_eq!(redis.cli(&["COPY", a_key, b_key, "REPLACE"]), "1");
    let r = common::send(n.port3, &Request::get("/").cookie(&b));
    assert_eq!(status(&r), "unknown", "a moved value does not open");
    assert_eq!(
        status(&common::send(n.port3, &Request::get("/").cookie(&a))),
        "valid"
    );
}

#[test]
fn bad_redis_settings_fail_config_test() {
    let cases: &[(&str, &str)] = &[
        ("", "\"sessions_store redis\" needs \"sessions_redis_server\""),
        (
            "sessions_redis_server 127.0.0.1:0;",
            "in \"sessions_redis_server\" directive, the port must be 1 to 65535",
        ),
        (
            "sessions_redis_server [zz]:1;",
            "the part in brackets must be an IPv6 address",
        ),
        (
            "sessions_redis_server unix:rel;",
            "a unix socket path must be absolute",
        ),
        (
            "sessions_redis_server a; sessions_redis_cluster b;",
            "only one of",
        ),
        (
            "sessions_redis_cluster a; sessions_redis_database 2;",
            "Redis Cluster has only database 0",
        ),
        (
            "sessions_redis_sentinel a;",
            "needs \"sessions_redis_sentinel_master\"",
        ),
        (
            "sessions_redis_server a; sessions_redis_password_file /nonexistent/pw;",
            "cannot read \"/nonexistent/pw\"",
        ),
        (
            "sessions_redis_server a; sessions_redis_tls_trusted_certificate nginx.conf;",
            "not in PEM format",
        ),
        (
            "sessions_redis_server a; sessions_redis_connections 0;",
            "in \"sessions_redis_connections\" directive",
        ),
        (
            "sessions_redis_server a; sessions_redis_connections 4 5;",
            "a minimum from 0 to the maximum",
        ),
        (
            "sessions_redis_server a; sessions_redis_timeout 0;",
            "it must not be 0",
        ),
        (
            "sessions_redis_server a; sessions_redis_pending 8;",
            "it must be a number of writes from 16 to 100000",
        ),
        (
            "sessions_redis_server a; sessions_redis_near_cache 0;",
            "it must be off or a number of sessions from 1 to 1000000",
        ),
        (
            "sessions_redis_server a; sessions_redis_near_cache on;",
            "it must be off or a number of sessions from 1 to 1000000",
        ),
        (
            "sessions_redis_server a; sessions_redis_database -1;",
            "it must be a database number",
        ),
        (
            "sessions_redis_server a; sessions_redis_prefix \"a b\";",
            "without spaces",
        ),
        (
            "sessions_redis_server a; sessions_redis_tls maybe;",
            "it must be \"on\" or \"off\"",
        ),
        (
            "sessions_redis_server a; sessions_redis_tls_protocols TLSv1.2 TLSv1.1;",
            "invalid value \"TLSv1.1\" in \"sessions_redis_tls_protocols\" directive, \
             only TLSv1.2 and TLSv1.3 are supported with Redis",
        ),
        (
            "sessions_redis_server a; sessions_redis_tls_protocols tls13;",
            "it must be \"TLSv1.2\" or \"TLSv1.3\"",
        ),
        (
            "sessions_redis_server a; sessions_redis_unavailable maybe;",
            "it must be \"503\" or \"local\"",
        ),
        (
            "sessions_redis_server a; sessions_redis_server b;",
            "is duplicate",
        ),
    ];
    for (redis, want) in cases {
        let n = Nginx::prepare("badredis");
        n.write_conf(1, &conf(redis, ""));
        let (ok, out) = n.test_config();
        assert!(!ok, "{redis} passed nginx -t");
        assert!(out.contains(want), "{redis}: {out}");
    }
    let n = Nginx::prepare("badstore");
    n.write_conf(
        1,
        "server { listen 127.0.0.1:{port}; sessions_store disk; sessions_redis_server a; }",
    );
    let (ok, out) = n.test_config();
    assert!(
        !ok && out.contains("it must be \"shm\", \"redis\" or \"cookie\""),
        "{out}"
    );
    assert!(
        !out.contains("sessions_redis_server") || out.contains("is not allowed here"),
        "{out}"
    );
    let n = Nginx::prepare("redisinserver");
    n.write_conf(1, "server { listen 127.0.0.1:{port}; sessions_redis_server a; }");
    let (ok, out) = n.test_config();
    assert!(
        !ok && out.contains("\"sessions_redis_server\" directive is not allowed here"),
        "{out}"
    );
}

#[test]
fn many_requests_share_a_few_connections() {
    let redis = Redis::start(&[]);
    let n = Nginx::start(&conf(
        &format!(
            "sessions_redis_server 127.0.0.1:{}; sessions_redis_connections 3 2;",
            redis.port
        ),
        "",
    ));
    // The minimum is opened before any request, and reopened when cut.
    // (redis-cli's own connection is one of the clients listed; the near
    // cache's tracking connection, flag `t`, is not counted.)
    let clients = || {
        redis
            .cli(&["CLIENT", "LIST"])
            .lines()
            .filter(|l| !l.contains("flags=t"))
            .count()
    };
    wait_until("the minimum connections", || clients() == 3);
    redis.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
    wait_until("the minimum connections again", || clients() == 3);
    let c = assert_round_trip(&n);
    let port = n.port;
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut conn = common::Conn::open(port);
                (0..20)
                    .filter(|_| status(&conn.get("/", Some(&c))) == "valid")
                    .count()
            })
        })
        .collect();
    let valid: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(valid, 32 * 20);
    let clients = clients();
    assert!(clients <= 4, "{clients} clients for 640 requests in one worker");
}

#[test]
fn reload_while_requests_wait_for_a_stalled_redis() {
    let redis = Redis::start(&[]);
    let http = conf(
        &format!(
            "sessions_redis_server 127.0.0.1:{}; sessions_redis_timeout 500ms;",
            redis.port
        ),
        "",
    );
    let n = Nginx::start(&http);
    assert_round_trip(&n);
    // Never read by this worker: not in its near cache; and once its first
    // write is acknowledged, not in the pending writes either.
    let c = n.get("/").cookie_pair("sid");
    n.wait_redis_drained("/metrics");
    redis.signal("STOP");
    let waiting = std::thread::spawn({
        let (port, c) = (n.port, c.clone());
        move || common::send(port, &Request::get("/").cookie(&c)).status
    });
    sleep(Duration::from_millis(100));
    n.reload(1, &format!("{http}\n# reloaded"));
    assert_eq!(
        waiting.join().unwrap(),
        503,
        "the old worker answers its parked request"
    );
    redis.signal("CONT");
    wait_until("recovery", || {
        status(&n.request(Request::get("/").cookie(&c))) == "valid"
    });
    n.assert_clean_log();
}

#[test]
fn a_login_from_a_response_is_seen_by_the_very_next_request() {
    let redis = Redis::start(&[]);
    let n = Nginx::start(&conf(
        &format!(
            "sessions_redis_server 127.0.0.1:{}; sessions_redis_connections 8 8;",
            redis.port
        ),
        "server { listen 127.0.0.1:{port2};
                  location / { add_header X-Session-User $arg_user; return 200; } }
         server { listen 127.0.0.1:{port3}; sessions_control_headers on;
                  add_header X-User $session_user always;
                  location /login { proxy_pass http://127.0.0.1:{port2}; }
                  location / { root html; } }",
    ));
    // The login is written when the response headers go out, nobody
    // waiting; the next request must still see it. (Reads and writes of one
    // session share a connection, so this worker's order is Redis's order.)
    let mut conn = common::Conn::open(n.port3);
    for i in 0..200 {
        let user = format!("user{i}");
        let r = conn.get(&format!("/login?user={user}"), None);
        let c = r.cookie_pair("sid");
        let r = conn.get("/", Some(&c));
        assert_eq!(r.header("X-User"), Some(user.as_str()), "round {i}");
    }
}

/// `h2load` over one HTTP/2 connection per client, many streams each:
/// the count of 2xx answers.
fn h2load(port: u16, cookie: &str, requests: u32, kill_after: Option<Duration>) -> u32 {
    let mut cmd = Command::new("h2load");
    cmd.args([
        "-n",
        &requests.to_string(),
        "-c",
        "2",
        "-m",
        "20",
        "-H",
        &format!("cookie: {cookie}"),
    ])
    .arg(format!("http://127.0.0.1:{port}/"))
    .stderr(std::process::Stdio::null());
    let out = match kill_after {
        None => cmd.output().expect("h2load (apt install nghttp2-client)"),
        Some(t) => {
            let mut child = cmd.stdout(std::process::Stdio::null()).spawn().unwrap();
            sleep(t);
            let _ = child.kill();
            let _ = child.wait();
            return 0;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("status codes: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no status line from h2load:\n{text}"))
}

#[test]
fn http2_streams_wait_for_redis_and_may_be_reset() {
    let redis = Redis::start(&[]);
    let n = Nginx::start(&conf(
        &format!(
            "sessions_redis_server 127.0.0.1:{}; sessions_redis_timeout 2s;",
            redis.port
        ),
        // h2load sends its own User-Agent.
        "server { listen 127.0.0.1:{port2}; http2 on; root html; sessions_check_user_agent off; }",
    ));
    let c = assert_round_trip(&n);
    let pids = n.worker_pids();
    assert_eq!(h2load(n.port2, &c, 200, None), 200, "every stream answered");
    assert_eq!(status(&n.request(Request::get("/").cookie(&c))), "valid");
    // Streams parked on a stalled Redis, then the client vanishes.
    redis.signal("STOP");
    h2load(n.port2, &c, 40, Some(Duration::from_millis(300)));
    redis.signal("CONT");
    assert_eq!(h2load(n.port2, &c, 200, None), 200);
    assert_eq!(status(&n.request(Request::get("/").cookie(&c))), "valid");
    assert_eq!(n.worker_pids(), pids, "no worker died");
    n.assert_clean_log();
}

#[test]
fn killed_workers_are_replaced_with_their_own_redis_thread() {
    let redis = Redis::start(&[]);
    let mut n = Nginx::start_with(
        2,
        &common::spread_over_workers(&conf(
            &format!("sessions_redis_server 127.0.0.1:{};", redis.port),
            "",
        )),
    );
    n.expect_in_log("exited on signal 9");
    let c = assert_round_trip(&n);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = n.port;
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, c) = (stop.clone(), c.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // A killed worker resets our connection: reconnect and go on.
                    let Ok(mut conn) = common::Conn::try_open(port) else {
                        continue;
                    };
                    while !stop.load(std::sync::atomic::Ordering::Relaxed)
                        && conn.try_get("/", Some(&c)).is_ok()
                    {}
                }
            })
        })
        .collect();
    for _ in 0..20 {
        sleep(Duration::from_millis(100));
        if let Some(&pid) = n.worker_pids().first() {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    sleep(Duration::from_millis(300));
    for _ in 0..40 {
        assert_eq!(status(&n.request(Request::get("/").cookie(&c))), "valid");
    }
    assert_eq!(n.worker_pids().len(), 2);
}

#[test]
fn log_out_everywhere_in_redis() {
    let redis = Redis::start(&[]);
    let n = Nginx::start(&conf(
        &format!("sessions_redis_server 127.0.0.1:{};", redis.port),
        "server { listen 127.0.0.1:{port2};
                  location / { add_header X-Session-User $arg_user; return 200; } }
         server { listen 127.0.0.1:{port3}; sessions_control_headers on;
                  sessions_idling_timeout 0; sessions_absolute_timeout 0;
                  sessions_rolling_timeout 2s; sessions_renewal_grace 1s;
                  add_header X-Session-Status $session_status always;
                  add_header X-User $session_user always;
                  location /login { proxy_pass http://127.0.0.1:{port2}; }
                  location / { root html; }
                  location = /admin { sessions_admin; } }",
    ));
    let login = |user: &str| {
        let r = common::send(n.port3, &Request::get(&format!("/login?user={user}")));
        assert_eq!(r.status, 200);
        r.cookie_pair("sid")
    };
    let on = |c: &str| common::send(n.port3, &Request::get("/").cookie(c));
    let (a1, a2, b1) = (login("alice"), login("alice"), login("bob"));
    wait_until("the logins", || on(&b1).header("X-User") == Some("bob"));
    // Renew one of alice's sessions: its new id must be revoked too.
    sleep(Duration::from_millis(1600));
    let r = on(&a1);
    assert_eq!(status(&r), "renewed");
    let a1_new = r.cookie_pair("sid");
    assert_eq!(on(&a2).header("X-User"), Some("alice"));

    let mut del = Request::get("/admin?user=alice");
    del.method = "DELETE".into();
    let r = common::send(n.port3, &del);
    assert_eq!(
        (r.status, r.text().trim()),
        (200, "{\"revoked\":2}"),
        "{}",
        n.error_log()
    );
    for c in [&a1, &a1_new, &a2] {
        assert_ne!(
            on(c).header("X-User"),
            Some("alice"),
            "alice is logged out everywhere"
        );
    }
    assert_eq!(on(&b1).header("X-User"), Some("bob"), "bob is not");
    // Listing reads the summaries kept in the user's index.
    let r = common::send(n.port3, &Request::get("/admin?user=bob"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text().matches("\"id\":").count(), 1, "{}", r.text());
    let r = common::send(n.port3, &Request::get("/admin?user=alice"));
    assert!(r.text().contains("\"sessions\":[]"), "{}", r.text());
    let stored = keys(&redis, &[]).join(" ");
    assert!(!stored.contains("alice") && !stored.contains("bob"), "{stored}");
    // The JSON form, through nginx's body reader.
    let mut post = Request::get("/admin").header("Content-Type", "application/json");
    post.method = "POST".into();
    let r = common::send_with_body(n.port3, &post, br#"{"action":"revoke","user":"bob"}"#);
    assert_eq!((r.status, r.text().trim()), (200, "{\"revoked\":1}"));
    assert_ne!(on(&b1).header("X-User"), Some("bob"));
    n.assert_clean_log();
}

/// Two instances; while Redis holds writes back (`CLIENT PAUSE WRITE`),
/// one instance changes a session and the other reads it before that
/// change lands and then writes its last-seen time. That stale write must
/// not undo the change: neither a login (and its new id) nor a revocation.
#[test]
fn a_stale_read_on_another_instance_does_not_undo_a_change() {
    let redis = Redis::start(&[]);
    let instance = || {
        Nginx::start(&conf(
            &format!(
                "sessions_redis_server 127.0.0.1:{}; sessions_redis_timeout 3s;",
                redis.port
            ),
            "server { listen 127.0.0.1:{port2};
                      location / { add_header X-Session-User $arg_user; return 200; } }
             server { listen 127.0.0.1:{port3}; sessions_control_headers on;
                      sessions_idling_timeout 2s;
                      add_header X-Session-Status $session_status always;
                      add_header X-User $session_user always;
                      location /login { proxy_pass http://127.0.0.1:{port2}; }
                      location / { root html; }
                      location = /admin { sessions_admin; } }",
        ))
    };
    let (a, b) = (instance(), instance());
    let on = |n: &Nginx, c: &str| common::send(n.port3, &Request::get("/").cookie(c));
    // Long enough for what each part sends meanwhile to queue up in order.
    let pause_writes = || assert_eq!(redis.cli(&["CLIENT", "PAUSE", "1500", "WRITE"]), "OK");

    // A login on a, whose write waits; then b reads the session as it was
    // and, its last-seen time being due (a tenth of 2 s), writes it. The
    // login ends the old id (fixation): b must decide again and agree.
    let old = common::send(a.port3, &Request::get("/")).cookie_pair("sid");
    let created = Instant::now();
    // b must find the old session in Redis, not miss it.
    a.wait_redis_drained("/metrics");
    pause_writes();
    let r = common::send(a.port3, &Request::get("/login?user=alice").cookie(&old));
    assert_eq!(r.status, 200);
    let new = r.cookie_pair("sid");
    sleep(Duration::from_millis(300).saturating_sub(created.elapsed()));
    let r = on(&b, &old);
    assert_eq!(status(&r), "unknown", "b decided again after the login");
    assert_eq!(status(&on(&a, &old)), "unknown", "the old id stays ended");
    assert_eq!(on(&a, &new).header("X-User"), Some("alice"));

    // A revocation on a, whose delete waits; b's stale read must not bring
    // the session back.
    sleep(Duration::from_millis(300));
    pause_writes();
    let mut del = Request::get("/admin?user=alice");
    del.method = "DELETE".into();
    let admin = std::thread::spawn({
        let port = a.port3;
        move || common::send(port, &del)
    });
    sleep(Duration::from_millis(300));
    let r = on(&b, &new);
    assert_ne!(r.header("X-User"), Some("alice"), "{}", b.error_log());
    assert_eq!(status(&r), "ended");
    let r = admin.join().unwrap();
    assert_eq!((r.status, r.text().trim()), (200, "{\"revoked\":1}"));
    assert_eq!(status(&on(&a, &new)), "ended", "still revoked");
    a.assert_clean_log();
    b.assert_clean_log();
}
