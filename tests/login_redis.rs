//! The login suite (`suites/login.rs`), run with every session stored in Redis (a `redis-server` per test).

mod common;

/// The store this run keeps every session in.
const SUITE: common::Suite = common::Suite::Redis;

include!("suites/login.rs");

#[test]
fn this_run_really_uses_redis() {
    assert!(SUITE == common::Suite::Redis);
    let n = Nginx::start(CONF);
    let c = n.get("/").cookie_pair("sid");
    let c = n
        .request(Request::get("/app/login?user=dave").cookie(&c))
        .cookie_pair("sid");
    assert_eq!(
        n.request(Request::get("/").cookie(&c)).header("X-User"),
        Some("dave")
    );
    let keys = common::suite_redis_keys_when(|k| k.contains("sessions:user:"));
    assert!(keys.lines().any(|k| k.starts_with("sessions:user:")), "{keys}");
}
