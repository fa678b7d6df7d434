//! The scenario suite (`suites/sessions.rs`), run with every session stored in Redis (a `redis-server` per test).

mod common;

/// The store this run keeps every session in.
const SUITE: common::Suite = common::Suite::Redis;

include!("suites/sessions.rs");

#[test]
fn this_run_really_uses_redis() {
    assert!(SUITE == common::Suite::Redis);
    let n = Nginx::start(&conf("", ""));
    let r = n.get("/");
    assert_eq!(status(&r), "new");
    let keys = common::suite_redis_keys_when(|k| !k.is_empty());
    assert_eq!(keys.lines().count(), 1, "{keys}");
    assert!(keys.starts_with("sessions:"), "{keys}");
}
