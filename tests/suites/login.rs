// Login state: an application logs a session in or out through response
// headers; the login gate; remember-me; logout; their counters.
// `login.rs`, `login_redis.rs` and `login_cookie.rs` run it, each with its
// store in `SUITE`.

use std::thread::sleep;
use std::time::Duration;

use common::{Nginx, Request, Response};

const CONF: &str = "
    sessions_zone login:1m;
    # The application: answers with X-Session-* headers.
    server {
        listen 127.0.0.1:{port2};
        location /login { add_header X-Session-User $arg_user; add_header X-Session-Remember $arg_remember;
                          return 200 \"ok\\n\"; }
        location /logout-app { add_header X-Session-Destroy on; return 200 \"bye\\n\"; }
        location /regen { add_header X-Session-Regenerate on; return 200 \"new id\\n\"; }
        location /whoami { return 200 \"user=$http_remote_user\\n\"; }
        location /set { add_header X-Session-Set \"$arg_k=$arg_v\"; return 200 \"set\n\"; }
        location /set2 { add_header X-Session-Set \"$arg_k=$arg_v\"; add_header X-Session-Set \"$arg_k2=$arg_v2\";
                         return 200 \"set\n\"; }
        location /unset { add_header X-Session-Unset $arg_k; return 200 \"unset\n\"; }
        location /long { add_header X-Session-User aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;
                         return 200 \"long\\n\"; }
    }
    server {
        listen 127.0.0.1:{port};
        root html;
        sessions on; sessions_secret login-test; sessions_name sid;
        sessions_idling_timeout 2s; sessions_rolling_timeout 0; sessions_absolute_timeout 0;
        sessions_remember_timeout 1h;
        add_header X-Session-Status $session_status always;
        add_header X-Session-Id $session_id always;
        add_header X-User $session_user always;
        add_header X-Auth $session_authenticated always;
        add_header X-Theme $session_data_theme always;

        location /app/ {
            sessions_control_headers on;
            proxy_set_header Remote-User $session_user;
            proxy_pass http://127.0.0.1:{port2}/;
        }
        location /nocontrol/ { proxy_pass http://127.0.0.1:{port2}/; }
        location /private/ {
            sessions_require_login on;
            sessions_login_url http://auth.example.com/login;
            try_files $uri /index.html;
        }
        location /api/ { sessions_require_login on; try_files $uri /index.html; }
        location /by-host/ {
            sessions_require_login on;
            sessions_login_url https://auth.$host/sign-in?lang=en;
            try_files $uri /index.html;
        }
        location = /logout { sessions_logout http://127.0.0.1/bye; }
        location = /logout204 { sessions_logout; }
        location = /metrics { sessions off; sessions_status; }
    }";

fn status(r: &Response) -> &str {
    r.header("X-Session-Status").unwrap_or("")
}

fn get(n: &Nginx, path: &str, cookie: &str) -> Response {
    n.request(Request::get(path).cookie(cookie))
}

/// `get`, keeping whatever session cookie the answer sets, as a browser
/// does (the cookie store carries data and activity in a new cookie).
fn browse(n: &Nginx, path: &str, cookie: &mut String) -> Response {
    let r = get(n, path, cookie);
    if !r.set_cookies("sid").is_empty() {
        *cookie = r.cookie_pair("sid");
    }
    r
}

fn login(n: &Nginx, cookie: &str, user: &str, remember: bool) -> Response {
    let path = format!(
        "/app/login?user={user}{}",
        if remember { "&remember=on" } else { "" }
    );
    get(n, &path, cookie)
}

fn metric(n: &Nginx, name: &str) -> u64 {
    let text = n.get("/metrics").text();
    let line = format!("nginx_sessions_{name}{{zone=\"login\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .unwrap_or_else(|| panic!("{name}: {text}"))
        .parse()
        .unwrap()
}

#[test]
fn login_from_upstream_regenerates_and_sets_the_user() {
    let n = Nginx::start(CONF);
    let first = n.get("/");
    let before = first.cookie_pair("sid");
    let r = login(&n, &before, "alice", false);
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    assert!(
        r.headers
            .iter()
            .all(|(k, _)| !k.to_ascii_lowercase().starts_with("x-session-")
                || k.eq_ignore_ascii_case("X-Session-Status")
                || k.eq_ignore_ascii_case("X-Session-Id")),
        "control headers never reach the client: {:?}",
        r.headers
    );
    let after = r.cookie_pair("sid");
    assert_ne!(after, before, "logging in issues a new id");
    assert_eq!(
        r.header("X-Session-Id"),
        first.header("X-Session-Id"),
        "same session"
    );
    assert_eq!(r.header("X-User"), Some("alice"));
    // The pre-login cookie no longer works.
    assert_eq!(status(&get(&n, "/", &before)), "unknown");
    // The upstream learns the user, as with Authelia's Remote-User.
    let r = get(&n, "/app/whoami", &after);
    assert_eq!(r.text(), "user=alice\n");
    assert_eq!(
        (r.header("X-Auth"), r.header("X-User")),
        (Some("1"), Some("alice"))
    );
    assert_eq!(metric(&n, "logins_total"), 1);
}

#[test]
fn client_sent_control_headers_do_nothing() {
    let n = Nginx::start(CONF);
    let c = n.get("/").cookie_pair("sid");
    let r = n.request(
        Request::get("/app/whoami")
            .cookie(&c)
            .header("X-Session-User", "mallory")
            .header("X-Session-Destroy", "on"),
    );
    assert_eq!(r.text(), "user=\n");
    assert_eq!((status(&r), r.header("X-Auth")), ("valid", Some("0")));
    assert!(r.all("Set-Cookie").is_empty());
    // Where control headers are off, an upstream's headers change nothing either.
    let r = get(&n, "/nocontrol/login?user=eve", &c);
    assert_eq!(r.header("X-Auth"), Some("0"));
    assert!(r.set_cookies("sid").is_empty());
    assert_eq!(get(&n, "/app/whoami", &c).text(), "user=\n");
    // A user name the module cannot carry is refused with an error log.
    let r = get(&n, "/app/long", &c);
    assert_eq!(r.header("X-Auth"), Some("0"));
    assert!(n
        .error_log()
        .contains("X-Session-User from upstream is empty, longer than 64 bytes"));
}

#[test]
fn remember_me_outlives_the_idle_timeout() {
    let n = Nginx::start(CONF);
    let plain = login(&n, &n.get("/").cookie_pair("sid"), "alice", false);
    let plain_cookie = plain.cookie_pair("sid");
    assert!(
        !plain.set_cookies("sid")[0].contains("Max-Age"),
        "a browser-session cookie"
    );
    let remembered = login(&n, &n.get("/").cookie_pair("sid"), "bob", true);
    let remembered_cookie = remembered.cookie_pair("sid");
    assert!(
        remembered.set_cookies("sid")[0].contains("; Max-Age=3600;"),
        "{:?}",
        remembered.headers
    );
    sleep(Duration::from_millis(2600));
    let r = get(&n, "/app/whoami", &remembered_cookie);
    assert_eq!((status(&r), r.text().as_str()), ("valid", "user=bob\n"));
    assert_eq!(status(&get(&n, "/", &plain_cookie)), "expired_idle");
}

#[test]
fn gate_redirects_browsers_and_answers_401_to_scripts() {
    let n = Nginx::start(CONF);
    let r = n.get("/private/page");
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("Location"),
        Some("http://auth.example.com/login?rd=http%3A%2F%2Flocalhost%2Fprivate%2Fpage")
    );
    assert_eq!(r.set_cookies("sid").len(), 1, "the redirect starts a session");
    let c = r.cookie_pair("sid");
    for (k, v) in [
        ("Accept", "application/json"),
        ("X-Requested-With", "XMLHttpRequest"),
    ] {
        let r = n.request(Request::get("/private/page").cookie(&c).header(k, v));
        assert_eq!(r.status, 401, "{k}: {v}");
    }
    assert_eq!(get(&n, "/api/x", &c).status, 401, "no login URL: 401");
    // The login URL may hold variables; rd joins an existing query with &.
    let r = get(&n, "/by-host/x?a=1", &c);
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("Location"),
        Some("https://auth.localhost/sign-in?lang=en&rd=http%3A%2F%2Flocalhost%2Fby-host%2Fx%3Fa%3D1")
    );
    // Logged in, the gate opens.
    let c = login(&n, &c, "carol", false).cookie_pair("sid");
    let r = get(&n, "/private/page", &c);
    assert_eq!((r.status, r.text().as_str()), (200, "hello\n"));
    assert_eq!(get(&n, "/api/x", &c).status, 200);
}

#[test]
fn logout_endpoint_and_upstream_destroy() {
    let n = Nginx::start(CONF);
    let c = login(&n, &n.get("/").cookie_pair("sid"), "dave", false).cookie_pair("sid");
    let r = get(&n, "/logout", &c);
    assert_eq!(r.status, 302);
    assert_eq!(r.header("Location"), Some("http://127.0.0.1/bye"));
    assert_eq!(
        r.set_cookies("sid")[0],
        "sid=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
    );
    // A logged-out session's cookie is answered `ended`, not `unknown`.
    assert_eq!(status(&get(&n, "/", &c)), "ended");
    assert_eq!(status(&get(&n, "/", &c)), "ended", "as long as the record is kept");

    let c = login(&n, &n.get("/").cookie_pair("sid"), "erin", false).cookie_pair("sid");
    let r = get(&n, "/logout204", &c);
    assert_eq!(r.status, 204);
    assert!(r.set_cookies("sid")[0].contains("Max-Age=0"));

    let c = login(&n, &n.get("/").cookie_pair("sid"), "frank", false).cookie_pair("sid");
    let r = get(&n, "/app/logout-app", &c);
    assert_eq!((r.status, r.text().as_str()), (200, "bye\n"));
    assert!(r.set_cookies("sid")[0].contains("Max-Age=0"));
    assert_eq!(status(&get(&n, "/", &c)), "ended");
    // An anonymous session's end is not on record.
    let anon = n.get("/").cookie_pair("sid");
    assert_eq!(get(&n, "/logout204", &anon).status, 204);
    assert_eq!(status(&get(&n, "/", &anon)), "unknown");
    assert_eq!(metric(&n, "logouts_total"), 3);
    assert_eq!(metric(&n, "logins_total"), 3);
}

#[test]
fn upstream_regenerate_keeps_the_session() {
    let n = Nginx::start(CONF);
    let first = n.get("/");
    let mut c = first.cookie_pair("sid");
    // Several times: with Redis the new id is written as the response
    // leaves, and the very next request must already see the old one gone.
    for _ in 0..30 {
        let r = get(&n, "/app/regen", &c);
        let c2 = r.cookie_pair("sid");
        assert_ne!(c2, c);
        assert_eq!(r.header("X-Session-Id"), first.header("X-Session-Id"));
        assert_eq!(status(&get(&n, "/", &c)), "unknown");
        assert_eq!(status(&get(&n, "/", &c2)), "valid");
        c = c2;
    }
}

#[test]
fn data_from_upstream_is_stored_read_and_removed() {
    let n = Nginx::start(CONF);
    let mut c = n.get("/").cookie_pair("sid");
    let r = browse(&n, "/app/set2?k=theme&v=dark&k2=lang&v2=fr", &mut c);
    assert_eq!(r.text(), "set\n");
    assert_eq!(r.header("X-Theme"), Some("dark"), "visible in the same response");
    assert!(r
        .headers
        .iter()
        .all(|(k, _)| !k.eq_ignore_ascii_case("X-Session-Set")));
    assert_eq!(get(&n, "/", &c).header("X-Theme"), Some("dark"));
    // Data survives a login (new id) and a regeneration.
    let mut c = login(&n, &c, "gina", false).cookie_pair("sid");
    assert_eq!(get(&n, "/", &c).header("X-Theme"), Some("dark"));
    browse(&n, "/app/regen", &mut c);
    assert_eq!(get(&n, "/", &c).header("X-Theme"), Some("dark"));
    // Unset removes it.
    browse(&n, "/app/unset?k=theme", &mut c);
    assert_eq!(get(&n, "/", &c).header("X-Theme"), None);
    // A client cannot set data.
    let r = browse(&n, "/app/whoami", &mut c);
    let r2 = n.request(
        Request::get("/app/whoami")
            .cookie(&c)
            .header("X-Session-Set", "theme=evil"),
    );
    assert_eq!((r.header("X-Theme"), r2.header("X-Theme")), (None, None));
    assert!(r2.set_cookies("sid").is_empty(), "nothing to store");
    assert_eq!(get(&n, "/", &c).header("X-Theme"), None);
}

#[test]
fn data_limits_are_enforced_with_an_error_log() {
    let n = Nginx::start(CONF);
    let mut c = n.get("/").cookie_pair("sid");
    let long = "v".repeat(300);
    browse(&n, &format!("/app/set?k=theme&v={long}"), &mut c);
    assert_eq!(get(&n, "/", &c).header("X-Theme"), None);
    assert!(n
        .error_log()
        .contains("session data from upstream refused: the value is longer than 256 bytes"));
    for i in 0..16 {
        browse(&n, &format!("/app/set?k=k{i}&v=x"), &mut c);
    }
    browse(&n, "/app/set?k=theme&v=dark", &mut c);
    assert!(n.error_log().contains("a session holds at most 16 keys"));
    assert_eq!(get(&n, "/", &c).header("X-Theme"), None);
    browse(&n, "/app/set?k=bad%20key&v=x", &mut c);
    assert!(n.error_log().contains("the key must be 1 to 32 characters"));
}

/// An application and a cache between it and the module (`proxy_cache`).
const CACHE_CONF: &str = "
    proxy_cache_path {dir}/cache keys_zone=boundary:1m;
    server {
        listen 127.0.0.1:{port2};
        location /login { add_header X-Session-User $arg_user; add_header Cache-Control max-age=60;
                          return 200 \"ok\\n\"; }
        # An application that copies request headers into its answer.
        location /echo { add_header X-Session-User $http_x_session_user;
                         add_header X-Session-Set $http_x_session_set;
                         return 200 \"user=$http_x_session_user set=$http_x_session_set any=$http_x_session_any keep=$http_x_keep h1=$http_h1 h15=$http_h15 h29=$http_h29 ua=$http_user_agent\\n\"; }
    }
    server {
        listen 127.0.0.1:{port};
        root html;
        sessions on; sessions_secret boundary-test; sessions_name sid;
        add_header X-Session-Status $session_status always;
        add_header X-User $session_user always;
        add_header X-Cache $upstream_cache_status always;
        location /app/ { sessions_control_headers on; proxy_cache boundary; proxy_cache_key fixed;
                         proxy_pass http://127.0.0.1:{port2}/; }
        location /warm/ { sessions off; proxy_cache boundary; proxy_cache_key fixed;
                          proxy_pass http://127.0.0.1:{port2}/; }
        location /echo/ { sessions_control_headers on; proxy_pass http://127.0.0.1:{port2}/echo; }
    }";

/// A login is the upstream's answer to one request: it is never stored in
/// a cache, and control headers in a cached answer are never applied.
#[test]
fn a_login_cannot_be_replayed_from_a_cache() {
    let n = Nginx::start(CACHE_CONF);
    let alice = n.get("/").cookie_pair("sid");
    let r = get(&n, "/app/login?user=alice", &alice);
    assert_eq!(
        (r.header("X-User"), r.header("X-Cache")),
        (Some("alice"), Some("MISS"))
    );
    assert_eq!(
        r.header("X-Session-User"),
        None,
        "control headers never reach the client"
    );
    // Had alice's answer been stored, bob would now get it and be alice.
    let bob = n.get("/").cookie_pair("sid");
    let r = get(&n, "/app/login?user=bob", &bob);
    assert_eq!(r.header("X-Cache"), Some("MISS"), "a login answer was cached");
    assert_eq!(r.header("X-User"), Some("bob"));

    // An answer with X-Session-User stored through a location without
    // control headers, then served from the cache where they are on.
    let r = n.get("/warm/login?user=mallory");
    assert_eq!(r.header("X-Cache"), Some("MISS"));
    assert_eq!(n.get("/warm/login?user=mallory").header("X-Cache"), Some("HIT"));
    let carol = n.get("/").cookie_pair("sid");
    let r = get(&n, "/app/login?user=carol", &carol);
    assert_eq!(r.header("X-Cache"), Some("HIT"));
    assert_eq!(r.header("X-User"), None, "a cached answer logged carol in");
    assert_eq!(r.header("X-Session-User"), None);
    assert!(r.set_cookies("sid").is_empty(), "no new id: nothing changed");
    let r = get(&n, "/", &carol);
    assert_eq!((status(&r), r.header("X-User")), ("valid", None));
    assert!(
        n.error_log().contains("served from a cache ignored"),
        "{}",
        n.error_log()
    );
    n.assert_clean_log();
}

/// The module never forwards a client's own `X-Session-*` headers, so an
/// application that echoes request headers cannot be made to log its
/// client in; every other header arrives, however many there are.
#[test]
fn client_sent_control_headers_never_reach_the_upstream() {
    let n = Nginx::start(CACHE_CONF);
    let c = n.get("/").cookie_pair("sid");
    let mut req = Request::get("/echo/")
        .cookie(&c)
        .header("X-Session-User", "mallory")
        .header("X-Keep", "yes")
        .header("x-session-set", "role=admin")
        .header("X-SESSION-ANY", "1");
    let r = n.request(req.clone());
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-User"), None, "the client logged itself in");
    assert_eq!(
        r.text(),
        "user= set= any= keep=yes h1= h15= h29= ua=itest/1\n",
        "the upstream got a client's X-Session-* header"
    );
    // Over several parts of nginx's header list (20 headers a part),
    // with control headers first, last and in between.
    req = Request::get("/echo/").header("X-Session-User", "mallory");
    for i in 1..=30 {
        req = if i % 7 == 0 {
            req.header(&format!("X-Session-H{i}"), "x")
        } else {
            req.header(&format!("H{i}"), &format!("v{i}"))
        };
    }
    let r = n.request(req.cookie(&c).header("X-Session-Set", "role=admin"));
    assert_eq!(r.header("X-User"), None);
    assert_eq!(
        r.text(),
        "user= set= any= keep= h1=v1 h15=v15 h29=v29 ua=itest/1\n"
    );
    let r = get(&n, "/", &c);
    assert_eq!((status(&r), r.header("X-User")), ("valid", None));
    n.assert_clean_log();
}

/// Runs tests/assertion/verify.py (PyJWT) on `tokens` against the JWK Set
/// at `jwks`; one line per token.
fn verify_assertions(jwks: &str, audience: &str, tokens: &[&str]) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/assertion/verify.py");
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(script)
        .args([jwks, audience, "https://nginx.test"])
        .args(tokens)
        .output()
        .expect("python3 (apt install python3-jwt python3-cryptography)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
}

fn keygen(path: &std::path::Path, algorithm: &[&str]) {
    let ok = std::process::Command::new("openssl")
        .args(["genpkey", "-out"])
        .arg(path)
        .args(algorithm)
        .status()
        .expect("openssl");
    assert!(ok.success());
}

/// `$session_assertion`: a short-lived JWT nginx signs, verified by PyJWT
/// with the keys `sessions_jwks` publishes; a key rotation keeps earlier
/// tokens verifying; refused after `exp`, for another audience, altered.
#[test]
fn the_upstream_gets_a_signed_identity_a_jwt_library_verifies() {
    let mut n = Nginx::prepare("assertion");
    keygen(&n.dir.join("ed.pem"), &["-algorithm", "ed25519"]);
    keygen(&n.dir.join("ec.pem"), &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    let conf = |keys: &str| {
        format!(
            "sessions_assertion_key {keys};
             server {{
                 listen 127.0.0.1:{{port2}};
                 location /login {{ add_header X-Session-User $arg_user; return 200 ok; }}
                 location /whoami {{ return 200 \"$http_x_assertion\"; }}
             }}
             server {{
                 listen 127.0.0.1:{{port}};
                 sessions on; sessions_secret assertion-test; sessions_name sid;
                 sessions_assertion_issuer https://nginx.test;
                 sessions_assertion_ttl 3s;
                 add_header X-Session-Id $session_id always;
                 location /app/ {{
                     sessions_control_headers on;
                     sessions_assertion_audience app;
                     proxy_set_header X-Assertion $session_assertion;
                     proxy_pass http://127.0.0.1:{{port2}}/;
                 }}
                 location /other/ {{
                     sessions_assertion_audience other-app;
                     proxy_set_header X-Assertion $session_assertion;
                     proxy_pass http://127.0.0.1:{{port2}}/;
                 }}
                 location = /jwks {{ sessions_jwks; }}
                 location = /logout {{ sessions_logout; }}
             }}"
        )
    };
    n.write_conf(1, &conf("ed.pem"));
    n.spawn();
    let jwks = format!("http://127.0.0.1:{}/jwks", n.port);
    let r = n.get("/jwks");
    assert_eq!(r.header("Content-Type"), Some("application/jwk-set+json"));

    let anonymous = n.get("/app/whoami");
    assert_eq!(anonymous.text(), "", "no identity without a login");
    let mut cookie = n.get("/app/").cookie_pair("sid");
    cookie = get(&n, "/app/login?user=alice", &cookie).cookie_pair("sid");
    let r = get(&n, "/app/whoami", &cookie);
    let (ed_token, sid) = (r.text(), r.header("X-Session-Id").unwrap().to_owned());
    let other = get(&n, "/other/whoami", &cookie).text();
    let mut altered = ed_token.clone().into_bytes();
    // A character in the middle of the signature.
    let mid = (ed_token.rfind('.').unwrap() + ed_token.len()) / 2;
    altered[mid] = if altered[mid] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    assert_eq!(
        verify_assertions(&jwks, "app", &[&ed_token, &other, &altered, "not.a.token"]),
        [
            format!("ok alice {sid} EdDSA"),
            "refused InvalidAudienceError".into(),
            "refused InvalidSignatureError".into(),
            "refused DecodeError".into(),
        ]
    );
    assert_eq!(verify_assertions(&jwks, "other-app", &[&other])[0], format!("ok alice {sid} EdDSA"));

    // Rotation: the P-256 key signs now, the Ed25519 key is still
    // published, so the token signed before verifies until it expires.
    n.reload(1, &conf("ec.pem ed.pem"));
    let ec_token = get(&n, "/app/whoami", &cookie).text();
    assert_eq!(
        verify_assertions(&jwks, "app", &[&ec_token, &ed_token]),
        [format!("ok alice {sid} ES256"), format!("ok alice {sid} EdDSA")]
    );
    // Once the old key is gone, its tokens are refused.
    n.reload(1, &conf("ec.pem"));
    assert_eq!(verify_assertions(&jwks, "app", &[&ed_token])[0], "refused PyJWKClientError");
    // After `exp` (3 s here), refused.
    sleep(Duration::from_millis(4100));
    assert_eq!(verify_assertions(&jwks, "app", &[&ec_token])[0], "refused ExpiredSignatureError");
    // Logged out: no identity.
    assert!(!get(&n, "/app/whoami", &cookie).text().is_empty(), "still logged in");
    assert_eq!(get(&n, "/logout", &cookie).status, 204);
    assert_eq!(get(&n, "/app/whoami", &cookie).text(), "");
    n.assert_clean_log();
}
