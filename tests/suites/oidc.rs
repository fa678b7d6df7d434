// Logins through a real OpenID Provider (oidc-provider 9, on loopback):
// the gate sends browsers to the provider and scripts get 401; the
// callback logs the session in under a new id with the provider's claims
// and returns to where the login began; forged, replayed and mismatched
// callbacks are refused with one log line and nobody logged in.
// `oidc.rs`, `oidc_redis.rs` and `oidc_cookie.rs` run it, each with its
// store in `SUITE`.

use common::oidc::{Browser, Provider};
use common::{Nginx, Request};

const CALLBACK: &str = "/_oidc/callback";
const BACKCHANNEL: &str = "/_oidc/backchannel";

fn conf(provider: &Provider, n: &Nginx) -> String {
    format!(
        "
    server {{
        listen 127.0.0.1:{{port}};
        root html;
        sessions on; sessions_secret oidc-test-secret-0123456789abcdef; sessions_name sid;
        sessions_cookie_max_age 1h;
        {oidc}
        sessions_oidc_timeout 1s;
        add_header X-User $session_user always;
        add_header X-Email $session_data_email always;
        add_header X-Name $session_data_name always;
        location / {{ sessions_require_login on; try_files $uri /index.html; }}
        location = {CALLBACK} {{ sessions_oidc_callback; }}
        location = /public {{ try_files /index.html =404; }}
        location = /logout {{ sessions_logout /bye;
            sessions_oidc_post_logout_redirect_uri http://127.0.0.1:{{port}}/bye; }}
        location = /local-logout {{ sessions_oidc_issuer off; sessions_require_login on; sessions_logout; }}
        location = {BACKCHANNEL} {{ sessions_oidc_backchannel_logout; }}
        location = /metrics {{ sessions_status; }}
        location /up/ {{ sessions_oidc_forward_token on; sessions_pass_cookie off;
                         proxy_pass http://127.0.0.1:{{port2}}; }}
        location = /plain {{ proxy_pass http://127.0.0.1:{{port2}}; }}
    }}
    server {{
        listen 127.0.0.1:{{port2}};
        return 200 \"auth=[$http_authorization] cookie=[$http_cookie]\";
    }}",
        oidc = provider.directives(&n.dir)
    )
}

/// nginx and a provider that sends browsers back to its callback, its
/// back-channel logouts to nginx, and browsers after a logout to `/bye`.
fn start() -> (Nginx, Provider) {
    start_workers(1)
}

/// `start` with `workers` worker processes, connections spread over them.
fn start_workers(workers: u32) -> (Nginx, Provider) {
    let mut n = Nginx::prepare("oidc");
    let site = format!("http://127.0.0.1:{}", n.port);
    let provider = Provider::start_with(
        &format!("{site}{CALLBACK}"),
        &[&format!("{site}{BACKCHANNEL}"), &format!("{site}/bye")],
    );
    n.write_conf(workers, &common::spread_over_workers(&conf(&provider, &n)));
    n.spawn();
    (n, provider)
}

/// A browser logged in as `user` through the provider.
fn logged_in(n: &Nginx, provider: &Provider, user: &str) -> Browser {
    let mut b = Browser::default();
    let back = to_callback(n, provider, &mut b, "/", user);
    assert_eq!(b.get(n.port, &back).status, 302, "{}", n.error_log());
    assert_eq!(b.get(n.port, "/").header("X-User"), Some(user));
    b
}

/// Where a redirect leads, which must be this very site (nginx makes the
/// module's relative `Location` absolute).
fn local(n: &Nginx, r: &common::Response) -> String {
    let to = r.header("Location").expect("a redirect");
    let site = format!("http://127.0.0.1:{}/", n.port);
    assert!(to.starts_with(&site), "{to} leaves the site");
    to[site.len() - 1..].to_string()
}

/// The path and query of the callback URL the provider sent the browser to.
fn callback_path(url: &str) -> String {
    let at = url.find(CALLBACK).expect("the callback");
    url[at..].to_string()
}

/// A browser that asked for `path`, was sent to the provider and logged in
/// there as `user`: the callback URL the provider sent it to, not yet visited.
/// Whether cookie `k` (or a `Set-Cookie` line) is a login cookie, not the tokens cookie.
fn is_login_cookie(k: &str) -> bool {
    let name = k.split('=').next().unwrap_or_default();
    name.contains("_oidc_") && !name.ends_with("_oidc_tokens")
}

fn to_callback(n: &Nginx, provider: &Provider, b: &mut Browser, path: &str, user: &str) -> String {
    let r = b.get(n.port, path);
    assert_eq!(r.status, 302, "the gate redirects a browser: {}", n.error_log());
    let to = r.header("Location").expect("where to").to_string();
    assert!(to.starts_with(&format!("{}/auth?", provider.issuer)), "{to}");
    assert!(to.contains("code_challenge_method=S256"), "{to}");
    assert!(b.cookies.keys().any(|k| is_login_cookie(k)), "the login cookie is set");
    callback_path(&b.log_in_at(provider, &to, user))
}

#[test]
fn a_browser_logs_in_at_the_provider_and_returns_where_it_began() {
    let (n, provider) = start();
    let mut b = Browser::default();
    let back = to_callback(&n, &provider, &mut b, "/private/page?x=1", "alice");
    let before = b.cookies.get("sid").cloned().expect("a pre-login session");
    let r = b.get(n.port, &back);
    assert_eq!(r.status, 302, "{}\n{}", r.text(), n.error_log());
    assert_eq!(local(&n, &r), "/private/page?x=1");
    let after = b.cookies.get("sid").cloned().expect("a session");
    assert_ne!(before, after, "a new session id at login");
    assert!(!b.cookies.keys().any(|k| is_login_cookie(k)), "the login cookie is deleted");

    let r = b.get(n.port, "/private/page?x=1");
    assert_eq!(r.status, 200, "{}", n.error_log());
    assert_eq!(r.header("X-User"), Some("alice"));
    assert_eq!(r.header("X-Email"), Some("alice@example.org"));
    assert_eq!(r.header("X-Name"), Some("User alice"));
    assert!(n.error_log().contains("logged in through the OpenID Provider"));

    // The same callback again: its login is over (and its code used).
    let r = b.get(n.port, &back);
    assert_eq!(r.status, 400);
    assert_eq!(b.get(n.port, "/").header("X-User"), Some("alice"), "still logged in");
    n.assert_clean_log();
}

#[test]
fn scripts_get_401_and_no_provider_call() {
    let (n, _provider) = start();
    for (k, v) in [
        ("Accept", "application/json"),
        ("X-Requested-With", "XMLHttpRequest"),
        ("Sec-Fetch-Mode", "cors"),
    ] {
        let r = n.request(Request::get("/api").header(k, v));
        assert_eq!(r.status, 401, "{k}: {v}");
        assert!(!r.all("Set-Cookie").iter().any(|c| is_login_cookie(c)));
    }
    assert!(!n.error_log().contains("OpenID Connect"), "{}", n.error_log());
}

#[test]
fn a_mismatched_state_is_refused_and_nobody_is_logged_in() {
    let (n, provider) = start();
    let mut b = Browser::default();
    let back = to_callback(&n, &provider, &mut b, "/", "mallory");
    let forged = back.replace("state=", "state=x");
    let r = b.get(n.port, &forged);
    assert_eq!(r.status, 400);
    assert!(n.error_log().contains("the state parameter does not match"));
    assert_eq!(b.get(n.port, "/public").header("X-User"), None, "nobody logged in");
    n.assert_clean_log();
}

#[test]
fn a_callback_without_a_pre_login_session_is_refused() {
    let (n, provider) = start();
    let mut b = Browser::default();
    let back = to_callback(&n, &provider, &mut b, "/", "eve");
    // Another browser (no session, no login cookie) presents the code.
    let mut other = Browser::default();
    let r = other.get(n.port, &back);
    assert_eq!(r.status, 400);
    assert!(n.error_log().contains("no login in progress"));
    assert_eq!(other.get(n.port, "/public").header("X-User"), None, "nobody logged in");
    // The victim's own login cookie moved to another session does not work either.
    let mut thief = Browser::default();
    thief.get(n.port, "/public");
    let (k, v) = b.cookies.iter().find(|(k, _)| is_login_cookie(k)).expect("a login cookie");
    thief.cookies.insert(k.clone(), v.clone());
    assert_eq!(thief.get(n.port, &back).status, 400);
    assert!(n.error_log().contains("begun by another session"));
    n.assert_clean_log();
}

#[test]
fn a_replayed_code_is_refused_by_the_provider() {
    let (n, provider) = start();
    let mut a = Browser::default();
    let back_a = to_callback(&n, &provider, &mut a, "/", "alice");
    assert_eq!(a.get(n.port, &back_a).status, 302);
    // B begins a login of its own, then presents A's (used) code with its own state.
    let mut b = Browser::default();
    let back_b = to_callback(&n, &provider, &mut b, "/", "bob");
    let code_a = back_a.split("code=").nth(1).unwrap().split('&').next().unwrap();
    let state_b = back_b.split("state=").nth(1).unwrap().split('&').next().unwrap();
    let r = b.get(n.port, &format!("{CALLBACK}?code={code_a}&state={state_b}"));
    assert_eq!(r.status, 400, "{}", n.error_log());
    assert!(n.error_log().contains("refused the code"), "{}", n.error_log());
    assert_eq!(b.get(n.port, "/public").header("X-User"), None, "nobody logged in");
    n.assert_clean_log();
}

#[test]
fn a_forged_return_url_never_leaves_the_site() {
    let (n, provider) = start();
    let mut b = Browser::default();
    // The callback's own query cannot name where to go.
    let back = to_callback(&n, &provider, &mut b, "//evil.example/x", "alice");
    let r = b.get(n.port, &format!("{back}&rd=https://evil.example/"));
    assert_eq!(r.status, 302, "{}", n.error_log());
    assert_eq!(local(&n, &r), "/");
    n.assert_clean_log();
}

#[test]
fn a_provider_that_is_down_gets_502_and_sessions_stay() {
    let (n, mut provider) = start();
    let mut a = Browser::default();
    let back = to_callback(&n, &provider, &mut a, "/", "alice");
    assert_eq!(a.get(n.port, &back).status, 302);
    // Another visitor is at the provider's pages when it goes down.
    let mut b = Browser::default();
    let back_b = to_callback(&n, &provider, &mut b, "/", "bob");
    provider.stop();
    // Logged-in sessions need no provider.
    assert_eq!(a.get(n.port, "/").header("X-User"), Some("alice"));
    // The callback cannot exchange its code: 502, the module's page, one
    // log line, no half-made session.
    let r = b.get(n.port, &back_b);
    assert_eq!(r.status, 502, "{}", n.error_log());
    assert!(r.text().contains("Login failed"), "{}", r.text());
    assert_eq!(n.error_log().matches("the OpenID provider failed").count(), 1, "{}", n.error_log());
    assert_eq!(b.get(n.port, "/public").header("X-User"), None, "nobody logged in");
    n.assert_clean_log();
}

#[test]
fn a_login_cannot_begin_while_the_provider_is_down() {
    let (n, mut provider) = start();
    provider.stop();
    let mut b = Browser::default();
    let r = b.get(n.port, "/private");
    assert_eq!(r.status, 502, "{}", n.error_log());
    assert!(!r.all("Set-Cookie").iter().any(|c| is_login_cookie(c)));
    assert!(n.error_log().contains("login not begun: the OpenID provider failed"), "{}", n.error_log());
    n.assert_clean_log();
}

#[test]
fn nginx_t_refuses_incomplete_or_wrong_settings() {
    let n = Nginx::prepare("oidc-conf");
    std::fs::write(n.dir.join("secret"), "s3cret\n").unwrap();
    let server = |body: &str| {
        format!(
            "server {{ listen 127.0.0.1:{{port}}; sessions on; sessions_secret oidc-conf-test-secret-0123456789; {body} }}"
        )
    };
    let full = "sessions_oidc_issuer https://id.example; sessions_oidc_client_id app; \
                sessions_oidc_redirect_uri https://app.example/cb;";
    for (body, said) in [
        (
            "sessions_oidc_issuer https://id.example; location / { sessions_require_login on; }",
            "\"sessions_oidc_issuer\" needs \"sessions_oidc_client_id\"",
        ),
        (
            "sessions_oidc_issuer https://id.example; sessions_oidc_client_id app; location / { sessions_require_login on; }",
            "\"sessions_oidc_issuer\" needs \"sessions_oidc_redirect_uri\"",
        ),
        ("location = /cb { sessions_oidc_callback; }", "\"sessions_oidc_callback\" needs \"sessions_oidc_issuer\""),
        (
            &format!("{full} location = /cb {{ sessions off; sessions_oidc_callback; }}"),
            "\"sessions_oidc_callback\" needs \"sessions on\"",
        ),
        ("sessions_oidc_issuer id.example;", "it must be an http:// or https:// URL"),
        ("sessions_oidc_issuer https://id.example/?x;", "must not have a query"),
        ("sessions_oidc_redirect_uri https://app.example/cb#f;", "must not have a fragment"),
        ("sessions_oidc_claims email.verified;", "1 to 32 characters"),
        ("sessions_oidc_timeout soon;", "sessions_oidc_timeout"),
        ("sessions_oidc_client_secret_file missing-file;", "cannot read"),
        ("sessions_oidc_client_id a; sessions_oidc_client_id b;", "is duplicate"),
        (
            "location / { sessions_oidc_forward_token on; }",
            "\"sessions_oidc_forward_token\" needs \"sessions_oidc_issuer\"",
        ),
        ("sessions_oidc_forward_token yes;", "sessions_oidc_forward_token"),
        (
            &format!("{full} sessions_cookie_samesite strict; location / {{ sessions_require_login on; }}"),
            "needs \"sessions_cookie_samesite lax\" or \"none\"",
        ),
    ] {
        n.write_conf(1, &server(body));
        let (ok, out) = n.test_config();
        assert!(!ok && out.contains(said), "{body}\n{out}");
        assert!(!out.contains("s3cret"));
    }
    n.write_conf(
        1,
        &server(&format!(
            "{full} sessions_oidc_client_secret_file {dir}/secret; sessions_oidc_scopes email profile; \
             sessions_oidc_claims email name; sessions_oidc_user_claim email; sessions_oidc_timeout 2s; \
             location / {{ sessions_require_login on; }} location = /cb {{ sessions_oidc_callback; }}",
            dir = n.dir.display()
        )),
    );
    let (ok, out) = n.test_config();
    assert!(ok, "{out}");
}

#[test]
fn logout_goes_on_to_the_provider_whose_back_channel_ends_the_users_other_sessions() {
    let (n, provider) = start();
    let mut laptop = logged_in(&n, &provider, "alice");
    let mut phone = logged_in(&n, &provider, "alice");
    let bob = logged_in(&n, &provider, "bob");

    let r = laptop.get(n.port, "/logout");
    assert_eq!(r.status, 302, "{}", n.error_log());
    let to = r.header("Location").expect("the provider's end-session URL").to_string();
    assert!(to.starts_with(&format!("{}/session/end?", provider.issuer)), "{to}");
    assert!(to.contains("post_logout_redirect_uri=http%3A%2F%2F127.0.0.1"), "{to}");
    assert_eq!(laptop.get(n.port, "/public").header("X-User"), None, "ended here at once");
    assert_eq!(phone.get(n.port, "/public").header("X-User"), Some("alice"), "not yet elsewhere");

    // At the provider: its session ends, it tells nginx through the back
    // channel, and sends the browser to the configured page.
    assert!(to.contains("id_token_hint=ey"), "the ID token kept is the hint: {to}");
    assert!(!laptop.cookies.contains_key("sid_oidc_tokens"), "the tokens cookie is deleted");
    let after = laptop.log_out_at(&provider, &to);
    assert_eq!(after.as_deref(), Some(format!("http://127.0.0.1:{}/bye", n.port).as_str()));
    let bodies = provider.backchannel_bodies();
    assert_eq!(bodies.len(), 1, "{}", n.error_log());
    assert!(n.error_log().contains("back-channel logout of a user"), "{}", n.error_log());
    assert_eq!(phone.get(n.port, "/public").header("X-User"), None, "alice's other session ended");
    assert_eq!(bob.clone().get(n.port, "/public").header("X-User"), Some("bob"), "bob's stays");

    // The same logout token again is refused (jti), and a forged one.
    let metrics = n.get("/metrics").text();
    assert!(metrics.contains("result=\"accepted\"} 1"), "{metrics}");
    let replay = common::send_with_body(n.port, &post(BACKCHANNEL), bodies[0].as_bytes());
    assert_eq!(replay.status, 400);
    assert!(n.error_log().contains("the logout token was used before"));
    let forged = common::send_with_body(n.port, &post(BACKCHANNEL), b"logout_token=eyJhbGciOiJub25lIn0.e30.");
    assert_eq!(forged.status, 400);
    assert_eq!(common::send(n.port, &Request::get(BACKCHANNEL)).status, 405);
    n.assert_clean_log();
}

#[test]
fn a_logout_without_the_provider_stays_local() {
    let (n, provider) = start();
    let mut b = logged_in(&n, &provider, "carol");
    let r = b.get(n.port, "/local-logout");
    assert_eq!(r.status, 204);
    assert_eq!(b.get(n.port, "/public").header("X-User"), None);
    assert!(provider.backchannel_bodies().is_empty());
    // The gate never stands before a logout: logged out already, it still answers.
    assert_eq!(b.get(n.port, "/local-logout").status, 204);
    n.assert_clean_log();
}

fn post(path: &str) -> Request {
    let mut r = Request::get(path).header("Content-Type", "application/x-www-form-urlencoded");
    r.method = "POST".into();
    r
}

#[test]
fn forged_id_tokens_are_refused_and_nobody_is_logged_in() {
    let (n, provider) = start();
    for (mode, said) in [
        ("none", "ID token refused"),
        ("hs256-public", "ID token refused"),
        ("other-key", "ID token refused"),
        ("aud", "ID token refused"),
        ("iss", "ID token refused"),
        ("nonce", "ID token refused"),
        ("expired", "ID token refused"),
    ] {
        let mut b = Browser::default();
        let back = to_callback(&n, &provider, &mut b, "/", "mallory");
        provider.tamper(mode);
        let before = n.error_log().matches(said).count();
        let r = b.get(n.port, &back);
        provider.tamper("off");
        assert_eq!(r.status, 403, "{mode}: {}", n.error_log());
        assert_eq!(n.error_log().matches(said).count(), before + 1, "{mode}: one log line");
        assert_eq!(b.get(n.port, "/public").header("X-User"), None, "{mode}: nobody logged in");
    }
    // The provider's own tokens still log in.
    logged_in(&n, &provider, "alice");
    let metrics = n.get("/metrics").text();
    assert!(metrics.contains("result=\"token_refused\"} 7"), "{metrics}");
    assert!(metrics.contains("result=\"logged_in\"} 1"), "{metrics}");
    n.assert_clean_log();
}

#[test]
fn a_provider_restarted_with_a_new_key_keeps_logging_in() {
    let (n, mut provider) = start();
    logged_in(&n, &provider, "alice");
    let old = provider.signing_kids();
    // The new key signs from now on; nginx's cached key set lacks it and
    // fetches the set again, once.
    provider.restart_rotated();
    logged_in(&n, &provider, "bob");
    let new = provider.signing_kids();
    assert_eq!((old.len(), new.len()), (1, 1));
    assert_ne!(old, new, "the new key signed bob's token");
    n.assert_clean_log();
}

#[test]
fn a_slow_provider_gets_502_within_the_timeout_and_blocks_nobody() {
    use std::time::{Duration, Instant};
    let (n, provider) = start();
    let mut b = Browser::default();
    let back = to_callback(&n, &provider, &mut b, "/", "alice");
    let already = logged_in(&n, &provider, "bob");
    provider.slow(3_000);
    let waiting = {
        let (port, back, mut b) = (n.port, back.clone(), b.clone());
        std::thread::spawn(move || {
            let t = Instant::now();
            (b.get(port, &back).status, t.elapsed())
        })
    };
    // The worker goes on serving while that login waits for the provider.
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    assert_eq!(already.clone().get(n.port, "/").header("X-User"), Some("bob"));
    assert!(t.elapsed() < Duration::from_millis(500), "served at once: {:?}", t.elapsed());
    let (status, took) = waiting.join().unwrap();
    provider.slow(0);
    assert_eq!(status, 502, "{}", n.error_log());
    assert!(took < Duration::from_millis(2_900), "within sessions_oidc_timeout: {took:?}");
    assert_eq!(b.get(n.port, "/public").header("X-User"), None, "nobody logged in");
    n.assert_clean_log();
}

#[test]
fn logins_begun_in_several_tabs_all_land() {
    let (n, provider) = start();
    let mut b = Browser::default();
    // Two tabs of one browser hit protected pages before either logged in.
    let first = to_callback(&n, &provider, &mut b, "/tab/one", "alice");
    let second = to_callback(&n, &provider, &mut b, "/tab/two", "alice");
    assert_eq!(b.cookies.keys().filter(|k| is_login_cookie(k)).count(), 2);
    let r = b.get(n.port, &first);
    assert_eq!(r.status, 302, "{}", n.error_log());
    assert_eq!(local(&n, &r), "/tab/one");
    // The other tab's login was begun by the pre-login session: the browser
    // is logged in now, so it goes where it was going.
    let r = b.get(n.port, &second);
    assert_eq!(r.status, 302, "{}", n.error_log());
    assert_eq!(local(&n, &r), "/tab/two");
    assert_eq!(b.get(n.port, "/tab/two").header("X-User"), Some("alice"));
    assert!(!b.cookies.keys().any(|k| is_login_cookie(k)), "both login cookies deleted");

    // Beginning logins over and over keeps at most four under way.
    let mut c = Browser::default();
    for _ in 0..7 {
        assert_eq!(c.get(n.port, "/again").status, 302);
    }
    let kept = c.cookies.keys().filter(|k| is_login_cookie(k)).count();
    assert!((1..=4).contains(&kept), "{kept} logins under way");
    n.assert_clean_log();
}

#[test]
fn a_logout_token_is_refused_again_by_every_worker() {
    let (n, provider) = start_workers(2);
    let mut b = logged_in(&n, &provider, "alice");
    let to = b.get(n.port, "/logout").header("Location").expect("to the provider").to_string();
    b.log_out_at(&provider, &to);
    let bodies = provider.backchannel_bodies();
    assert_eq!(bodies.len(), 1);
    // Connections spread over both workers: none takes the token again.
    for _ in 0..12 {
        let replay = common::send_with_body(n.port, &post(BACKCHANNEL), bodies[0].as_bytes());
        assert_eq!(replay.status, 400, "{}", n.error_log());
    }
    let log = n.error_log();
    let refusing: std::collections::BTreeSet<&str> = log
        .lines()
        .filter(|l| l.contains("the logout token was used before"))
        .filter_map(|l| l.split("] ").nth(1)?.split('#').next())
        .collect();
    assert_eq!(log.matches("the logout token was used before").count(), 12);
    assert_eq!(refusing.len(), 2, "both workers refused it: {refusing:?}");
    n.assert_clean_log();
}

/// What the upstream behind `/up/` and `/plain` was sent: its
/// `Authorization` and `Cookie` headers.
fn upstream_saw(r: &common::Response) -> (String, String) {
    let t = r.text();
    let part = |name: &str| {
        let from = t.find(&format!("{name}=[")).expect("echoed") + name.len() + 2;
        t[from..from + t[from..].find(']').expect("closed")].to_string()
    };
    (part("auth"), part("cookie"))
}

/// The access token of the provider's last answer to a login (a code).
fn last_login_access(provider: &Provider) -> String {
    provider
        .grants()
        .into_iter()
        .rev()
        .find(|(g, s, _)| g == "authorization_code" && *s == 200)
        .expect("a login")
        .2
}

#[test]
fn tokens_are_sealed_forwarded_as_bearer_and_never_the_clients_own() {
    let (n, provider) = start();
    let mut alice = logged_in(&n, &provider, "alice");
    let access = last_login_access(&provider);
    let sealed = alice.cookies.get("sid_oidc_tokens").cloned().expect("the tokens cookie");
    assert!(!sealed.contains(&access), "the client cannot read the access token");
    let refresh = provider.grants().len();

    // Forwarded in place of the client's own; with sessions_pass_cookie
    // off the tokens cookie is kept from the upstream as the session's is.
    let r = alice.send(n.port, Request::get("/up/x").header("Authorization", "Bearer forged"));
    assert_eq!(r.status, 200, "{}", n.error_log());
    let (auth, cookie) = upstream_saw(&r);
    assert_eq!(auth, format!("Bearer {access}"));
    assert!(!cookie.contains("sid_oidc_tokens") && !cookie.contains("sid="), "{cookie}");
    assert_eq!(provider.grants().len(), refresh, "no provider call on a logged-in request");
    // Where forwarding is off, the client's own header is the application's business.
    let r = alice.send(n.port, Request::get("/plain").header("Authorization", "Basic Zm9vOmJhcg=="));
    let (auth, cookie) = upstream_saw(&r);
    assert_eq!(auth, "Basic Zm9vOmJhcg==");
    assert!(cookie.contains("sid_oidc_tokens=t1."), "passed, sealed, as the session cookie: {cookie}");
    assert!(!cookie.contains(&access));

    // An anonymous client's forged header never reaches the upstream.
    let mut anon = Browser::default();
    let r = anon.send(n.port, Request::get("/up/x").header("Authorization", "Bearer forged"));
    assert_eq!(upstream_saw(&r).0, "");

    // Another user's tokens, or altered ones, count for nothing and are deleted.
    let bob = logged_in(&n, &provider, "bob");
    for planted in [
        bob.cookies["sid_oidc_tokens"].clone(),
        // One character changed in the middle (the last one's low bits
        // may be unused by base64, and then the value is the same).
        {
            let mid = sealed.len() / 2;
            let c = if &sealed[mid..=mid] == "A" { "B" } else { "A" };
            format!("{}{c}{}", &sealed[..mid], &sealed[mid + 1..])
        },
        "t1.garbage".to_string(),
        "x".repeat(5000),
    ] {
        let mut eve = alice.clone();
        eve.cookies.insert("sid_oidc_tokens".into(), planted);
        let r = eve.send(n.port, Request::get("/up/x"));
        assert_eq!(r.status, 200);
        assert_eq!(upstream_saw(&r).0, "", "not forwarded");
        assert!(!eve.cookies.contains_key("sid_oidc_tokens"), "deleted");
        assert_eq!(r.header("X-User"), Some("alice"), "the session itself goes on");
    }
    // Where nothing is forwarded the tokens are opened only when their
    // cookie says a refresh is due: a value claiming so falsely is opened,
    // refused and deleted, and the provider is not asked.
    let sealed_part = sealed.splitn(3, '.').nth(2).expect("t1.AT.SEALED");
    let mut eve = alice.clone();
    eve.cookies.insert("sid_oidc_tokens".into(), format!("t1.1.{sealed_part}"));
    let r = eve.get(n.port, "/public");
    assert_eq!(r.header("X-User"), Some("alice"));
    assert!(!eve.cookies.contains_key("sid_oidc_tokens"), "deleted");
    assert!(provider.refreshes().is_empty());
    n.assert_clean_log();
}

/// Waits until a quarter of a `ttl`-second access token's life is left.
fn until_refresh_due(ttl: u64) {
    std::thread::sleep(std::time::Duration::from_millis(ttl * 750 + 300));
}

#[test]
fn tokens_are_refreshed_once_before_they_expire_however_many_requests_race() {
    let (n, provider) = start_workers(2);
    provider.access_ttl(4);
    let alice = logged_in(&n, &provider, "alice");
    let first = last_login_access(&provider);
    until_refresh_due(4);
    let racing: Vec<_> = (0..8)
        .map(|_| {
            let (port, mut b) = (n.port, alice.clone());
            std::thread::spawn(move || {
                let r = b.send(port, Request::get("/up/x"));
                (r.status, upstream_saw(&r).0, b)
            })
        })
        .collect();
    let answers: Vec<_> = racing.into_iter().map(|t| t.join().unwrap()).collect();
    let refreshes = provider.refreshes();
    assert_eq!(refreshes.len(), 1, "one refresh: {refreshes:?}\n{}", n.error_log());
    let (status, second) = refreshes[0].clone();
    assert_eq!(status, 200);
    assert_ne!(second, first);
    for (s, auth, _) in &answers {
        assert_eq!(*s, 200);
        assert!(
            *auth == format!("Bearer {first}") || *auth == format!("Bearer {second}"),
            "{auth}"
        );
    }
    // The request that refreshed sent the new token on, and its cookie holds it.
    let (_, _, mut winner) = answers
        .into_iter()
        .find(|(_, auth, _)| *auth == format!("Bearer {second}"))
        .expect("the new token forwarded");
    let r = winner.send(n.port, Request::get("/up/y"));
    assert_eq!(upstream_saw(&r).0, format!("Bearer {second}"));
    assert_eq!(provider.refreshes().len(), 1);
    let metrics = n.get("/metrics").text();
    assert!(metrics.contains("result=\"refreshed\"} 1"), "{metrics}");
    n.assert_clean_log();
}

#[test]
fn a_refused_refresh_ends_the_session_and_the_gate_logs_in_again() {
    let (n, mut provider) = start();
    provider.access_ttl(2);
    let mut alice = logged_in(&n, &provider, "alice");
    let mut script = logged_in(&n, &provider, "alice");
    // A provider with no memory of the grants: every refresh token unknown.
    provider.restart();
    until_refresh_due(2);
    let r = alice.get(n.port, "/private?page=2");
    assert_eq!(r.status, 302, "{}", n.error_log());
    assert_eq!(local(&n, &r), "/private?page=2", "the same page again");
    assert!(!alice.cookies.contains_key("sid"), "the session cookie is deleted");
    assert!(!alice.cookies.contains_key("sid_oidc_tokens"));
    let r = alice.get(n.port, "/private?page=2");
    assert_eq!(r.status, 302);
    assert!(r.header("Location").unwrap().starts_with(&provider.issuer), "a new login");
    // A script gets 401.
    let r = script.send(n.port, Request::get("/private").header("Accept", "application/json"));
    assert_eq!(r.status, 401, "{}", n.error_log());
    assert_eq!(script.get(n.port, "/public").header("X-User"), None);
    assert_eq!(n.error_log().matches("token refresh refused, session ended").count(), 2);
    let metrics = n.get("/metrics").text();
    assert!(metrics.contains("oidc_refreshes_total{zone=\"sessions\",result=\"refused\"} 2"), "{metrics}");
    n.assert_clean_log();
}

#[test]
fn a_provider_down_at_refresh_time_keeps_the_session_and_its_token() {
    let (n, mut provider) = start();
    provider.access_ttl(2);
    let mut alice = logged_in(&n, &provider, "alice");
    let access = last_login_access(&provider);
    provider.stop();
    until_refresh_due(2);
    let r = alice.send(n.port, Request::get("/up/x"));
    assert_eq!(r.status, 200, "{}", n.error_log());
    assert_eq!(upstream_saw(&r).0, format!("Bearer {access}"));
    assert_eq!(r.header("X-User"), Some("alice"));
    assert_eq!(n.error_log().matches("token refresh failed, tried again later").count(), 1);
    n.assert_clean_log();
}

#[test]
fn a_logout_token_naming_only_the_provider_session_ends_the_session_it_logged_in() {
    let (n, provider) = start();
    let laptop = logged_in(&n, &provider, "alice");
    let phone = logged_in(&n, &provider, "alice");
    let sids = provider.sids();
    assert_eq!(sids.len(), 2, "each login its own provider session: {sids:?}");
    assert_ne!(sids[0], sids[1]);
    let token = provider.logout_token_for_sid(&sids[0]);
    let body = format!("logout_token={token}");
    let r = common::send_with_body(n.port, &post(BACKCHANNEL), body.as_bytes());
    assert_eq!(r.status, 200, "{}", n.error_log());
    assert_eq!(laptop.clone().get(n.port, "/public").header("X-User"), None, "its session ended");
    assert_eq!(phone.clone().get(n.port, "/public").header("X-User"), Some("alice"), "not the other");
    // Replayed: refused. A provider session nobody logged in with: nothing to end.
    let r = common::send_with_body(n.port, &post(BACKCHANNEL), body.as_bytes());
    assert_eq!(r.status, 400);
    let unknown = format!("logout_token={}", provider.logout_token_for_sid("no-such-session"));
    let r = common::send_with_body(n.port, &post(BACKCHANNEL), unknown.as_bytes());
    assert_eq!(r.status, 200, "{}", n.error_log());
    assert!(r.text().contains("0"), "{}", r.text());
    assert_eq!(phone.clone().get(n.port, "/public").header("X-User"), Some("alice"));
    n.assert_clean_log();
}

#[test]
fn the_tokens_cookie_lives_as_long_as_the_session_cookie() {
    let (n, provider) = start();
    let mut b = Browser::default();
    let back = to_callback(&n, &provider, &mut b, "/", "alice");
    let r = b.get(n.port, &back);
    assert_eq!(r.status, 302, "{}", n.error_log());
    let set = r.all("Set-Cookie");
    let line = |name: &str| {
        set.iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} set: {set:?}"))
            .to_ascii_lowercase()
    };
    assert!(line("sid").contains("max-age=3600"), "{set:?}");
    assert!(line("sid_oidc_tokens").contains("max-age=3600"), "{set:?}");
    n.assert_clean_log();
}
