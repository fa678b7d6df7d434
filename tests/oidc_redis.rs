//! The OpenID Connect suite (`suites/oidc.rs`), run with every session stored in Redis (a redis-server per test).

mod common;

/// The store this run keeps every session in.
const SUITE: common::Suite = common::Suite::Redis;

include!("suites/oidc.rs");

/// Two nginx instances sharing the Redis: a login through the provider on
/// one is logged in on the other, and the provider's back-channel logout,
/// sent to the first, ends the session on both.
#[test]
fn a_back_channel_logout_on_one_instance_ends_the_session_on_the_other() {
    use std::time::{Duration, Instant};
    let (a, provider) = start();
    let mut b = Nginx::prepare("oidc-b");
    b.write_conf(1, &conf(&provider, &b));
    b.spawn();

    let mut browser = logged_in(&a, &provider, "alice");
    assert_eq!(
        browser.get(b.port, "/public").header("X-User"),
        Some("alice"),
        "logged in on the other"
    );

    let to = browser
        .get(a.port, "/logout")
        .header("Location")
        .expect("to the provider")
        .to_string();
    // A second browser of alice's, logged in on the second instance only.
    let mut phone = logged_in(&a, &provider, "alice");
    assert_eq!(phone.get(b.port, "/public").header("X-User"), Some("alice"));
    browser.log_out_at(&provider, &to);
    assert_eq!(provider.backchannel_bodies().len(), 1);
    // Stated in docs/stores.md: another instance sees a write when Redis
    // has it, usually within a round trip.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let user = phone.get(b.port, "/public").header("X-User").map(str::to_string);
        if user.is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "still logged in on the other instance");
        std::thread::sleep(Duration::from_millis(20));
    }
    a.assert_clean_log();
    b.assert_clean_log();
}
