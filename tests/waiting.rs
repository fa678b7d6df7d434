//! Requests that wait for a stalled Redis and go away before it answers:
//! how much waiting work a worker keeps (the README's bound), and that it
//! gives the memory back once Redis answers again.

mod common;

/// Each test configures its own store.
const SUITE: common::Suite = common::Suite::Own;

use std::io::Write as _;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{Nginx, Redis, Request};

/// The README's bound on what a worker's resident memory may rise above
/// idle while Redis stalls (the waiting work and nginx's own connections).
const PEAK_MB: u64 = 32;
/// The README's bound on what it keeps once every request has its answer.
const KEPT_MB: u64 = 8;

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Sends `count` requests from four clients, each on a connection closed
/// at once without reading the answer: two thirds with a valid cookie, a
/// third new.
fn abandon(port: u16, cookies: &[String], count: usize) {
    std::thread::scope(|scope| {
        for client in 0..4 {
            scope.spawn(move || {
                for i in (client..count).step_by(4) {
                    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                        continue;
                    };
                    let cookie = match i % 3 {
                        0 => String::new(),
                        _ => format!("Cookie: {}\r\n", cookies[i % cookies.len()]),
                    };
                    let _ = write!(s, "GET / HTTP/1.1\r\nHost: localhost\r\n{cookie}\r\n");
                }
            });
        }
    });
}

#[test]
fn requests_abandoned_while_redis_stalls_leave_a_bounded_worker() {
    let redis = Arc::new(Redis::start(&[]));
    let mut n = Nginx::prepare("waiting");
    let http = n.expand(&format!(
        "sessions on; sessions_store redis; sessions_secret waiting-test; sessions_name sid;
         sessions_redis_server 127.0.0.1:{}; sessions_redis_near_cache off;
         server {{ listen 127.0.0.1:{{port}} backlog=4096; root html;
                  add_header X-Session-Status $session_status always;
                  location = /metrics {{ sessions off; sessions_status; }} }}",
        redis.port
    ));
    // As many connections as a busy server allows: the bound must come
    // from the module, not from worker_connections.
    let conf = common::main_conf(1, &http).replace("worker_connections 256;", "worker_connections 19000;");
    std::fs::write(n.dir.join("nginx.conf"), conf).unwrap();
    n.spawn();
    let cookies: Vec<String> = (0..60).map(|_| n.get("/").cookie_pair("sid")).collect();
    n.wait_redis_drained("/metrics");
    let worker = n.worker_pids()[0];
    // Warm: the same traffic with Redis answering.
    abandon(n.port, &cookies, 3_000);
    sleep(Duration::from_millis(500));
    let idle = rss_kb(worker);
    let mut seen = Vec::new();
    for _ in 0..5 {
        let stalls = Arc::new(AtomicBool::new(true));
        let stopper = {
            let (redis, stalls) = (redis.clone(), stalls.clone());
            std::thread::spawn(move || {
                while stalls.load(Ordering::Relaxed) {
                    redis.signal("STOP");
                    sleep(Duration::from_millis(1_000));
                    redis.signal("CONT");
                    sleep(Duration::from_millis(500));
                }
            })
        };
        abandon(n.port, &cookies, 17_000);
        stalls.store(false, Ordering::Relaxed);
        stopper.join().unwrap();
        seen.push(rss_kb(worker));
        // Redis answers again: the waiting work ends.
        let deadline = Instant::now() + Duration::from_secs(30);
        while n
            .request(Request::get("/").cookie(&cookies[0]))
            .header("X-Session-Status")
            != Some("valid")
        {
            assert!(Instant::now() < deadline, "Redis never answered again");
            sleep(Duration::from_millis(100));
        }
    }
    // Every job of the last round has ended (each within its own timeout).
    sleep(Duration::from_secs(4));
    let after = rss_kb(worker);
    let peak = seen.iter().copied().max().unwrap_or(0).max(after);
    eprintln!("worker RSS: idle {idle} kB, rounds {seen:?} kB, after {after} kB");
    assert!(
        peak <= idle + PEAK_MB * 1024,
        "worker RSS went from {idle} kB to {peak} kB (rounds: {seen:?}, after: {after})"
    );
    assert!(
        after <= idle + KEPT_MB * 1024,
        "worker RSS stayed at {after} kB from {idle} kB idle"
    );
    assert_eq!(n.worker_pids(), [worker], "the same worker throughout");
    let log = n.error_log();
    assert!(
        log.contains("requests already wait for Redis in this worker"),
        "the bound was reached"
    );
}
