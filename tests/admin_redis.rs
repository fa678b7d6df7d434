//! The admin suite of `admin.rs`, run with every session stored in Redis
//! (see `common::redis_suite`).

include!("admin.rs");

#[test]
fn this_run_really_uses_redis() {
    assert!(common::redis_suite());
    let n = Nginx::start(CONF);
    logged_in(&n, "carol");
    let keys =
        common::suite_redis_keys_when(|k| k.contains("sessions:user:") && k.contains("sessions:handle:"));
    assert!(keys.lines().any(|k| k.starts_with("sessions:user:")), "{keys}");
    assert!(keys.lines().any(|k| k.starts_with("sessions:handle:")), "{keys}");
}
