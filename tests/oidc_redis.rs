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
    let bodies = provider.backchannel_bodies();
    assert_eq!(bodies.len(), 1);
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
    // The same logout token replayed at the other instance: its jti was
    // taken in Redis by the first.
    let mut replay = Request::get(BACKCHANNEL).header("Content-Type", "application/x-www-form-urlencoded");
    replay.method = "POST".into();
    let r = common::send_with_body(b.port, &replay, bodies[0].as_bytes());
    assert_eq!(r.status, 400, "{}", b.error_log());
    assert!(
        b.error_log().contains("the logout token was used before (jti)"),
        "{}",
        b.error_log()
    );
    a.assert_clean_log();
    b.assert_clean_log();
}

/// Two nginx instances sharing the Redis, the same session's requests
/// racing on both when its tokens are due: one refresh in all (Redis's
/// lock), and the session lives on both (a second refresh with the
/// rotated refresh token would have been refused and ended it).
#[test]
fn two_instances_refresh_a_session_once() {
    let (a, provider) = start();
    let mut b = Nginx::prepare("oidc-b");
    b.write_conf(2, &common::spread_over_workers(&conf(&provider, &b)));
    b.spawn();
    provider.access_ttl(4);
    let alice = logged_in(&a, &provider, "alice");
    until_refresh_due(4);
    let racing: Vec<_> = (0..8)
        .map(|i| {
            let (port, mut browser) = (if i % 2 == 0 { a.port } else { b.port }, alice.clone());
            std::thread::spawn(move || browser.send(port, Request::get("/up/x")).status)
        })
        .collect();
    for t in racing {
        assert_eq!(t.join().unwrap(), 200);
    }
    let refreshes = provider.refreshes();
    assert_eq!(
        refreshes.len(),
        1,
        "{refreshes:?}\n{}\n{}",
        a.error_log(),
        b.error_log()
    );
    for n in [&a, &b] {
        assert_eq!(
            alice.clone().get(n.port, "/public").header("X-User"),
            Some("alice")
        );
        assert!(!n.error_log().contains("refresh refused"));
        n.assert_clean_log();
    }
}

/// A logout token naming only the provider's session, sent to the other
/// instance: Redis remembers which session that provider session logged
/// in, and that one session ends on both.
#[test]
fn a_provider_session_logged_in_on_one_instance_is_logged_out_through_the_other() {
    let (a, provider) = start();
    let mut b = Nginx::prepare("oidc-b");
    b.write_conf(1, &conf(&provider, &b));
    b.spawn();
    let laptop = logged_in(&a, &provider, "alice");
    let phone = logged_in(&a, &provider, "alice");
    let sids = provider.sids();
    let body = format!("logout_token={}", provider.logout_token_for_sid(&sids[0]));
    let r = common::send_with_body(b.port, &post(BACKCHANNEL), body.as_bytes());
    assert_eq!(r.status, 200, "{}", b.error_log());
    assert!(r.text().contains('1'), "one session ended: {}", r.text());
    for n in [&a, &b] {
        assert_eq!(laptop.clone().get(n.port, "/public").header("X-User"), None);
        assert_eq!(
            phone.clone().get(n.port, "/public").header("X-User"),
            Some("alice")
        );
    }
    a.assert_clean_log();
    b.assert_clean_log();
}
