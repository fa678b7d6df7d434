//! The admin suite (`suites/admin.rs`), run with every session stored in Redis (a `redis-server` per test).

mod common;

/// The store this run keeps every session in.
const SUITE: common::Suite = common::Suite::Redis;

include!("suites/admin.rs");

#[test]
fn this_run_really_uses_redis() {
    assert!(SUITE == common::Suite::Redis);
    let n = Nginx::start(CONF);
    logged_in(&n, "carol");
    let keys =
        common::suite_redis_keys_when(|k| k.contains("sessions:user:") && k.contains("sessions:handle:"));
    assert!(keys.lines().any(|k| k.starts_with("sessions:user:")), "{keys}");
    assert!(keys.lines().any(|k| k.starts_with("sessions:handle:")), "{keys}");
}
