//! The scenario suite of `sessions.rs`, run with every session stored in
//! Redis: `common::redis_suite` sees this binary's name and adds
//! `sessions_store redis` with a `redis-server` per test.

include!("sessions.rs");

#[test]
fn this_run_really_uses_redis() {
    assert!(common::redis_suite());
    let n = Nginx::start(&conf("", ""));
    let r = n.get("/");
    assert_eq!(status(&r), "new");
    let keys = common::suite_redis_keys_when(|k| !k.is_empty());
    assert_eq!(keys.lines().count(), 1, "{keys}");
    assert!(keys.starts_with("sessions:"), "{keys}");
}
