//! A worker killed at any moment, even while it holds the zone's lock, must
//! not hang the others: the zone is guarded by the slab mutex, which nginx
//! force-unlocks when a worker dies.

mod common;

/// Each test configures its own store.
const SUITE: common::Suite = common::Suite::Own;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use common::{send, Conn, Nginx, Request};

#[test]
fn killed_workers_do_not_hang_the_zone() {
    let mut n = Nginx::start_with(
        2,
        "sessions on; sessions_secret crash-test; sessions_name sid;
         server { listen 127.0.0.1:{port} reuseport; root html;
                  add_header X-Session-Status $session_status always; }",
    );
    // Killed here on purpose; nothing else may crash.
    n.expect_in_log("exited on signal 9");
    // nginx frees the zone's lock a killed worker held, and says so.
    n.expect_in_log("was locked by");
    let cookie = send(n.port, &Request::get("/")).cookie_pair("sid");
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let port = n.port;
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (stop, served, cookie) = (stop.clone(), served.clone(), cookie.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // A killed worker resets our connection: reconnect and go on.
                    let Ok(mut c) = Conn::try_open(port) else { continue };
                    for j in 0..200 {
                        // Half new sessions (insert, maybe evict), half lookups.
                        let with = (i + j) % 2 == 0;
                        if c.try_get("/", with.then_some(cookie.as_str())).is_err() {
                            break;
                        }
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    let mut kills = 0;
    let end = Instant::now() + Duration::from_secs(4);
    while Instant::now() < end {
        sleep(Duration::from_millis(50));
        if let Some(&pid) = n.worker_pids().first() {
            let _ = std::process::Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            kills += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert!(kills > 20, "only {kills} kills");
    assert!(served.load(Ordering::Relaxed) > 1000, "load ran");

    // Every worker still answers promptly, with the session intact.
    sleep(Duration::from_millis(300));
    for _ in 0..40 {
        let r = send(n.port, &Request::get("/").cookie(&cookie));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("X-Session-Status"), Some("valid"));
    }
    let log = n.error_log();
    let forced = log.matches("was locked by").count();
    eprintln!("{kills} workers killed, {forced} of them while holding the zone lock");
}
