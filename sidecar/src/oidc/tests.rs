//! The relying party against a stand-in provider on loopback: discovery,
//! JWKS and a token endpoint that hands out ID tokens the test signed,
//! good ones and every kind of bad one.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::fake::block_on;

const CLIENT: &str = "ngx-sessions";
const SECRET: &str = "a-client-secret-of-some-length";

/// An RSA key pair as a provider holds it: PEM, and its `kid`.
struct Key {
    pem: String,
    kid: &'static str,
}

impl Key {
    fn new(kid: &'static str) -> Self {
        let out = std::process::Command::new("openssl")
            .args(["genrsa", "2048"])
            .stderr(std::process::Stdio::null())
            .output()
            .expect("openssl (the apt package) is installed");
        assert!(out.status.success(), "openssl genrsa");
        let pem = String::from_utf8(out.stdout).expect("PEM text");
        Self { pem, kid }
    }

    /// The public half as the provider publishes it (RSA, e = 65537).
    fn jwk(&self) -> Value {
        let mut child = std::process::Command::new("openssl")
            .args(["rsa", "-noout", "-modulus"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(self.pem.as_bytes())
            .expect("the key written");
        let out = child.wait_with_output().expect("openssl rsa");
        let text = String::from_utf8(out.stdout).expect("text");
        let hex = text.trim().strip_prefix("Modulus=").expect("a modulus");
        let n: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
               "n": URL_SAFE_NO_PAD.encode(n), "e": "AQAB"})
    }
}

#[derive(Default)]
struct State {
    /// The provider's published keys, as JSON.
    jwks: String,
    jwks_fetches: usize,
    /// code -> (the ID token it buys, the PKCE challenge it was issued for)
    codes: HashMap<String, (String, String)>,
    /// Answer nothing for this long.
    delay: Duration,
    /// What the UserInfo endpoint answers.
    userinfo: String,
    /// refresh token -> the ID token a refresh with it sends ("": none)
    refresh: HashMap<String, String>,
}

/// The stand-in provider: issuer `http://127.0.0.1:PORT`.
struct Provider {
    issuer: String,
    state: Arc<Mutex<State>>,
}

fn lock(s: &Mutex<State>) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl Provider {
    fn start(keys: &[&Key]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
        let issuer = format!("http://{}", listener.local_addr().expect("bound"));
        let state = Arc::new(Mutex::new(State::default()));
        let p = Self { issuer, state };
        p.publish(keys);
        let metadata = json!({
            "issuer": p.issuer,
            "authorization_endpoint": format!("{}/auth", p.issuer),
            "token_endpoint": format!("{}/token", p.issuer),
            "jwks_uri": format!("{}/jwks", p.issuer),
            "userinfo_endpoint": format!("{}/userinfo", p.issuer),
            "end_session_endpoint": format!("{}/session/end", p.issuer),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })
        .to_string();
        let state = p.state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (state, metadata) = (state.clone(), metadata.clone());
                std::thread::spawn(move || serve(conn, &state, &metadata));
            }
        });
        p
    }

    /// Publishes `keys` (their public halves) at the JWKS URL.
    fn publish(&self, keys: &[&Key]) {
        let set = json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() });
        lock(&self.state).jwks = set.to_string();
    }

    /// A code that buys `id_token` once, for the login `begin` started.
    fn issue(&self, begin: &Begin, id_token: String) -> String {
        let mut s = lock(&self.state);
        let code = format!("code-{}", s.codes.len() + 100 * s.jwks_fetches);
        s.codes
            .insert(code.clone(), (id_token, pkce_challenge(&begin.verifier)));
        code
    }

    fn settings(&self) -> OidcSettings {
        OidcSettings {
            issuer: self.issuer.clone(),
            client_id: CLIENT.into(),
            client_secret: Some(SECRET.into()),
            redirect_uri: "https://app.example/_oidc/callback".into(),
            scopes: vec!["email".into()],
            user_claim: "sub".into(),
            data_claims: vec!["email".into(), "team".into(), "groups".into()],
            timeout: Duration::from_secs(2),
            leeway: Duration::from_secs(30),
        }
    }

    fn rp(&self) -> Oidc {
        Oidc::new(self.settings()).expect("settings")
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>, metadata: &str) {
    let mut out = conn.try_clone().expect("a second handle");
    let mut input = BufReader::new(conn);
    let mut line = String::new();
    if input.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or_default().to_string();
    let mut length = 0;
    loop {
        let mut h = String::new();
        if input.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    let _ = input.read_exact(&mut body);
    let delay = lock(state).delay;
    std::thread::sleep(delay);
    let (status, answer) = match path.as_str() {
        "/.well-known/openid-configuration" => (200, metadata.to_string()),
        "/jwks" => {
            let mut s = lock(state);
            s.jwks_fetches += 1;
            (200, s.jwks.clone())
        }
        "/token" => token(state, &String::from_utf8_lossy(&body)),
        "/userinfo" => (200, lock(state).userinfo.clone()),
        _ => (404, "{}".into()),
    };
    let reason = if status == 200 { "OK" } else { "Bad Request" };
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
}

/// The token endpoint: a code once, with the verifier of its challenge.
fn token(state: &Mutex<State>, form: &str) -> (u16, String) {
    let fields: HashMap<String, String> = form_urlencoded::parse(form.as_bytes()).into_owned().collect();
    let invalid = (400, r#"{"error":"invalid_grant"}"#.to_string());
    if fields.get("grant_type").map(String::as_str) == Some("refresh_token") {
        // Rotating refresh tokens: each works once, and buys the next.
        let mut s = lock(state);
        let Some(id_token) = fields.get("refresh_token").and_then(|t| s.refresh.remove(t)) else {
            return invalid;
        };
        let next = format!("refresh-{}", s.refresh.len() + 1);
        s.refresh.insert(next.clone(), id_token.clone());
        let mut body = json!({"access_token": "refreshed-access", "token_type": "Bearer",
                              "expires_in": 300, "refresh_token": next});
        if !id_token.is_empty() {
            body["id_token"] = json!(id_token);
        }
        return (200, body.to_string());
    }
    let Some((id_token, challenge)) = fields.get("code").and_then(|c| lock(state).codes.remove(c)) else {
        return invalid;
    };
    if fields.get("code_verifier").map(|v| pkce_challenge(v)) != Some(challenge) {
        return invalid;
    }
    let body = json!({
        "access_token": "an-access-token", "token_type": "Bearer", "expires_in": 300,
        "refresh_token": "a-refresh-token", "id_token": id_token,
    });
    (200, body.to_string())
}

/// Claims as a provider states them for `nonce`, before a test spoils one.
fn claims(issuer: &str, nonce: &str) -> Value {
    let now = now();
    json!({
        "iss": issuer, "aud": CLIENT, "sub": "alice-sub", "exp": now + 300, "iat": now,
        "nonce": nonce, "email": "alice@example.org", "team": "blue", "groups": ["a", "b"],
    })
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// `c` with `key` set to `value` (`Value::Null`: without it).
fn with(mut c: Value, key: &str, value: Value) -> Value {
    let o = c.as_object_mut().expect("an object");
    if value.is_null() {
        o.remove(key);
    } else {
        o.insert(key.into(), value);
    }
    c
}

fn sign(c: Value, key: &Key) -> String {
    let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(key.kid.into());
    encode(
        &header,
        &c,
        &EncodingKey::from_rsa_pem(key.pem.as_bytes()).expect("a key"),
    )
    .expect("signed")
}

/// An unsigned token (`alg: none`).
fn unsigned(c: Value) -> String {
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(c.to_string().as_bytes())
    )
}

/// HS256 keyed with `secret`: what a relying party that let the token
/// choose its algorithm would accept, checked with the client secret.
fn hmac_signed(c: Value, secret: &[u8]) -> String {
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k1".into());
    encode(&header, &c, &EncodingKey::from_secret(secret)).expect("signed")
}

/// Begins a login, has the provider issue `token(issuer, nonce)` for it,
/// and finishes it.
fn login(p: &Provider, rp: &Oidc, token: impl FnOnce(&str, &str) -> String) -> Result<Identity, OidcError> {
    block_on(async {
        let begin = rp.begin().await?;
        let code = p.issue(&begin, token(&p.issuer, &begin.nonce));
        rp.finish(&code, &begin.verifier, &begin.nonce).await
    })
}

#[test]
fn the_authorization_url_carries_state_nonce_and_an_s256_challenge() {
    let key = Key::new("k1");
    let p = Provider::start(&[&key]);
    let begin = block_on(p.rp().begin()).expect("begun");
    assert!(begin.url.starts_with(&format!("{}/auth?", p.issuer)));
    let url = reqwest::Url::parse(&begin.url).expect("a URL");
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT);
    assert_eq!(q["redirect_uri"], "https://app.example/_oidc/callback");
    assert_eq!(q["scope"], "openid email");
    assert_eq!(q["state"], begin.state);
    assert_eq!(q["nonce"], begin.nonce);
    assert_eq!(q["code_challenge"], pkce_challenge(&begin.verifier));
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(
        !q.values().any(|v| *v == begin.verifier),
        "the verifier never leaves"
    );
    assert!(begin.verifier.len() >= 43, "RFC 7636's least length");
    // Fresh values every time.
    let again = block_on(p.rp().begin()).expect("begun");
    assert_ne!(
        (again.state, again.nonce, again.verifier),
        (begin.state, begin.nonce, begin.verifier)
    );
}

#[test]
fn the_pkce_challenge_is_rfc_7636s() {
    // RFC 7636 appendix B.
    assert_eq!(
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
}

#[test]
fn a_good_token_logs_the_user_in_with_the_configured_claims() {
    let key = Key::new("k1");
    let p = Provider::start(&[&key]);
    let who = login(&p, &p.rp(), |iss, nonce| sign(claims(iss, nonce), &key)).expect("logged in");
    assert_eq!(who.user, "alice-sub");
    assert_eq!(
        who.claims,
        vec![
            ("email".into(), "alice@example.org".into()),
            ("team".into(), "blue".into())
        ],
        "scalar claims only, in the configured order"
    );
    assert_eq!(who.access_token, "an-access-token");
    assert_eq!(who.refresh_token.as_deref(), Some("a-refresh-token"));
    assert_eq!(who.expires_in, Some(Duration::from_secs(300)));
    assert!(
        !format!("{who:?}").contains("an-access-token"),
        "Debug leaves the tokens out"
    );
}

#[test]
fn a_user_claim_that_cannot_be_a_session_user_is_refused() {
    let key = Key::new("k1");
    let p = Provider::start(&[&key]);
    for bad in [json!(""), json!("alice\r\nX-Injected: 1"), json!("a".repeat(65))] {
        let got = login(&p, &p.rp(), |iss, nonce| {
            sign(with(claims(iss, nonce), "sub", bad.clone()), &key)
        });
        assert!(matches!(got, Err(OidcError::NoUser(_))), "{bad}: {got:?}");
    }
}

/// Makes a spoilt token from the issuer and the login's nonce.
type Spoil<'a> = Box<dyn Fn(&str, &str) -> String + 'a>;

#[test]
fn every_forged_or_spoilt_token_is_refused() {
    let key = Key::new("k1");
    let other = Key::new("k1"); // the same kid, another key
    let p = Provider::start(&[&key]);
    let rp = p.rp();
    let (key, other) = (&key, &other);
    let past = now() - 120;
    let later = now() + 120;
    let cases: Vec<(&str, Spoil<'_>)> = vec![
        ("alg none", Box::new(|iss, n| unsigned(claims(iss, n)))),
        (
            "HS256 keyed with the client secret",
            Box::new(|iss, n| hmac_signed(claims(iss, n), SECRET.as_bytes())),
        ),
        (
            "signed by another key",
            Box::new(|iss, n| sign(claims(iss, n), other)),
        ),
        (
            "wrong audience",
            Box::new(|iss, n| sign(with(claims(iss, n), "aud", json!("someone-else")), key)),
        ),
        (
            "several audiences and no azp",
            Box::new(|iss, n| sign(with(claims(iss, n), "aud", json!([CLIENT, "someone-else"])), key)),
        ),
        (
            "azp of another client",
            Box::new(|iss, n| sign(with(claims(iss, n), "azp", json!("someone-else")), key)),
        ),
        (
            "wrong issuer",
            Box::new(|_, n| sign(claims("https://evil.example", n), key)),
        ),
        (
            "wrong nonce",
            Box::new(|iss, _| sign(claims(iss, "another-nonce"), key)),
        ),
        (
            "no nonce",
            Box::new(|iss, n| sign(with(claims(iss, n), "nonce", Value::Null), key)),
        ),
        (
            "expired beyond the leeway",
            Box::new(move |iss, n| {
                sign(
                    with(with(claims(iss, n), "exp", json!(past)), "iat", json!(past)),
                    key,
                )
            }),
        ),
        (
            "issued in the future beyond the leeway",
            Box::new(move |iss, n| sign(with(claims(iss, n), "iat", json!(later)), key)),
        ),
        (
            "no exp",
            Box::new(|iss, n| sign(with(claims(iss, n), "exp", Value::Null), key)),
        ),
        ("not a JWT", Box::new(|_, _| "not.a.token".into())),
    ];
    for (what, spoil) in &cases {
        match login(&p, &rp, |iss, nonce| spoil(iss, nonce)) {
            Err(OidcError::Token(_)) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
    // Within the leeway, a token just past `exp` is still good, and so is
    // one with several audiences whose azp is this client.
    let recent = login(&p, &rp, |iss, n| {
        sign(with(claims(iss, n), "exp", json!(now() - 5)), key)
    });
    assert!(recent.is_ok(), "{recent:?}");
    let azp = login(&p, &rp, |iss, n| {
        let c = with(claims(iss, n), "aud", json!([CLIENT, "api"]));
        sign(with(c, "azp", json!(CLIENT)), key)
    });
    assert!(azp.is_ok(), "{azp:?}");
}

#[test]
fn a_code_is_used_once_and_only_with_its_verifier() {
    let key = Key::new("k1");
    let p = Provider::start(&[&key]);
    let rp = p.rp();
    block_on(async {
        let begin = rp.begin().await.expect("begun");
        let code = p.issue(&begin, sign(claims(&p.issuer, &begin.nonce), &key));
        let wrong = rp
            .finish(
                &code,
                "another-verifier-of-forty-three-characters-xx",
                &begin.nonce,
            )
            .await;
        assert_eq!(wrong.err(), Some(OidcError::CodeRefused("invalid_grant".into())));
        let code = p.issue(&begin, sign(claims(&p.issuer, &begin.nonce), &key));
        rp.finish(&code, &begin.verifier, &begin.nonce)
            .await
            .expect("logged in");
        let replay = rp.finish(&code, &begin.verifier, &begin.nonce).await;
        assert_eq!(replay.err(), Some(OidcError::CodeRefused("invalid_grant".into())));
    });
}

#[test]
fn a_new_signing_key_is_fetched_once_and_an_unknown_one_not_again_and_again() {
    let old = Key::new("k1");
    let new = Key::new("k2");
    let p = Provider::start(&[&old]);
    let rp = p.rp();
    login(&p, &rp, |iss, n| sign(claims(iss, n), &old)).expect("logged in with the first key");
    let fetches = lock(&p.state).jwks_fetches;
    // The provider rotates: both keys published, tokens signed by the new.
    p.publish(&[&old, &new]);
    login(&p, &rp, |iss, n| sign(claims(iss, n), &new)).expect("logged in after the keys were fetched again");
    assert_eq!(
        lock(&p.state).jwks_fetches,
        fetches + 1,
        "one fetch for the new key"
    );
    // A key nobody publishes: refused, and the keys are not fetched again
    // for every such token.
    let stranger = Key::new("k3");
    for _ in 0..3 {
        let r = login(&p, &rp, |iss, n| sign(claims(iss, n), &stranger));
        assert!(matches!(r, Err(OidcError::Token(_))), "{r:?}");
    }
    assert_eq!(
        lock(&p.state).jwks_fetches,
        fetches + 1,
        "no fetch within the refetch interval"
    );
}

#[test]
fn a_provider_down_or_slow_is_a_provider_failure_within_the_timeout() {
    let key = Key::new("k1");
    let p = Provider::start(&[&key]);
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let closed = format!("http://{}", listener.local_addr().expect("bound"));
    drop(listener);
    let down = Oidc::new(OidcSettings {
        issuer: closed,
        ..p.settings()
    })
    .expect("settings");
    assert!(matches!(block_on(down.begin()), Err(OidcError::Provider(_))));

    lock(&p.state).delay = Duration::from_secs(3);
    let slow = Oidc::new(OidcSettings {
        timeout: Duration::from_millis(300),
        ..p.settings()
    })
    .expect("settings");
    let started = std::time::Instant::now();
    assert!(matches!(block_on(slow.begin()), Err(OidcError::Provider(_))));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "gave up at the timeout"
    );
}

#[test]
fn a_discovery_document_for_another_issuer_or_with_odd_endpoints_is_refused() {
    let good = json!({"issuer": "https://idp.example", "authorization_endpoint": "https://idp.example/a",
                      "token_endpoint": "https://idp.example/t", "jwks_uri": "https://idp.example/k"});
    assert!(provider::parse_metadata(good.to_string().as_bytes(), "https://idp.example").is_ok());
    let other = provider::parse_metadata(good.to_string().as_bytes(), "https://idp.example/other");
    assert!(matches!(other, Err(OidcError::Provider(_))));
    let js = with(good.clone(), "token_endpoint", json!("javascript:alert(1)"));
    assert!(provider::parse_metadata(js.to_string().as_bytes(), "https://idp.example").is_err());
    for body in [&b"{"[..], b"[]", b"{\"issuer\": 3}", b"\xff\xfe"] {
        assert!(provider::parse_metadata(body, "https://idp.example").is_err());
    }
    // Keys: unknown key types are left out, garbage is an error.
    let keys = json!({"keys": [{"kty": "weird"}, Key::new("k1").jwk()]});
    assert_eq!(
        provider::parse_keys(keys.to_string().as_bytes())
            .expect("a set")
            .keys
            .len(),
        1
    );
    assert!(provider::parse_keys(b"{\"keys\": 1}").is_err());
}

#[test]
fn settings_that_make_no_client_are_refused_at_once() {
    let key = Key::new("k1");
    let p = Provider::start(&[&key]);
    for issuer in ["not a url", "ftp://idp.example"] {
        let bad = Oidc::new(OidcSettings {
            issuer: issuer.into(),
            ..p.settings()
        });
        assert!(matches!(bad, Err(OidcError::Settings(_))), "{issuer}");
    }
}

#[test]
fn claims_the_token_lacks_come_from_userinfo_for_the_same_sub_only() {
    let key = Key::new("k1");
    let p = Provider::start(&[&key]);
    let rp = p.rp();
    let bare = |iss: &str, n: &str| {
        sign(
            with(with(claims(iss, n), "team", Value::Null), "email", Value::Null),
            &key,
        )
    };
    lock(&p.state).userinfo =
        json!({"sub": "alice-sub", "team": "green", "email": "a@example.org"}).to_string();
    let who = login(&p, &rp, bare).expect("logged in");
    assert_eq!(
        who.claims,
        vec![
            ("email".into(), "a@example.org".into()),
            ("team".into(), "green".into())
        ]
    );
    // The token's own claims win over UserInfo's.
    let who = login(&p, &rp, |iss, n| {
        sign(with(claims(iss, n), "team", Value::Null), &key)
    })
    .expect("logged in");
    assert_eq!(who.claims[0], ("email".into(), "alice@example.org".into()));
    // UserInfo speaking of someone else: no login.
    lock(&p.state).userinfo = json!({"sub": "mallory", "team": "red"}).to_string();
    let r = login(&p, &rp, bare);
    assert!(matches!(r, Err(OidcError::Token(_))), "{r:?}");
    // A token carrying every configured claim needs no UserInfo at all.
    lock(&p.state).userinfo = "not JSON".into();
    let full = login(&p, &rp, |iss, n| {
        sign(with(claims(iss, n), "groups", json!("x")), &key)
    });
    assert!(full.is_ok(), "{full:?}");
}

/// A logout token as the provider sends it to the back-channel endpoint.
fn logout_claims(issuer: &str) -> Value {
    json!({
        "iss": issuer, "aud": CLIENT, "iat": now(), "exp": now() + 120, "jti": "jti-1",
        "sid": "provider-session-1", "sub": "alice-sub",
        "events": { BACKCHANNEL_LOGOUT_EVENT: {} },
    })
}

#[test]
fn a_logout_token_is_checked_as_back_channel_logout_says() {
    let key = Key::new("k1");
    let p = Provider::start(&[&key]);
    let rp = p.rp();
    let check = |token: String| block_on(rp.check_logout_token(&token));
    let good = check(sign(logout_claims(&p.issuer), &key)).expect("a good logout token");
    assert_eq!(
        good,
        LogoutToken {
            sid: Some("provider-session-1".into()),
            sub: Some("alice-sub".into()),
            jti: "jti-1".into()
        }
    );
    // sub alone or sid alone will do.
    assert!(check(sign(with(logout_claims(&p.issuer), "sid", Value::Null), &key)).is_ok());
    assert!(check(sign(with(logout_claims(&p.issuer), "sub", Value::Null), &key)).is_ok());
    let spoilt: Vec<(&str, String)> = vec![
        ("alg none", unsigned(logout_claims(&p.issuer))),
        ("HS256", hmac_signed(logout_claims(&p.issuer), SECRET.as_bytes())),
        (
            "no event",
            sign(with(logout_claims(&p.issuer), "events", json!({})), &key),
        ),
        (
            "another event",
            sign(
                with(logout_claims(&p.issuer), "events", json!({"urn:other": {}})),
                &key,
            ),
        ),
        (
            "a nonce",
            sign(with(logout_claims(&p.issuer), "nonce", json!("n")), &key),
        ),
        (
            "neither sid nor sub",
            sign(
                with(
                    with(logout_claims(&p.issuer), "sid", Value::Null),
                    "sub",
                    Value::Null,
                ),
                &key,
            ),
        ),
        (
            "no jti",
            sign(with(logout_claims(&p.issuer), "jti", Value::Null), &key),
        ),
        (
            "wrong audience",
            sign(with(logout_claims(&p.issuer), "aud", json!("other")), &key),
        ),
        ("wrong issuer", sign(logout_claims("https://evil.example"), &key)),
        (
            "issued long ago",
            sign(
                with(
                    with(logout_claims(&p.issuer), "iat", json!(now() - 3600)),
                    "exp",
                    Value::Null,
                ),
                &key,
            ),
        ),
        (
            "expired",
            sign(with(logout_claims(&p.issuer), "exp", json!(now() - 600)), &key),
        ),
        ("an ID token", sign(claims(&p.issuer, "n"), &key)),
    ];
    for (what, token) in spoilt {
        let r = check(token);
        assert!(matches!(r, Err(OidcError::Token(_))), "{what}: {r:?}");
    }
}

#[test]
fn a_refresh_rotates_the_tokens_once_and_a_refreshed_id_token_is_for_the_same_user() {
    let key = Key::new("k1");
    let p = Provider::start(&[&key]);
    let rp = p.rp();
    lock(&p.state).refresh.insert("r1".into(), String::new());
    let fresh = block_on(rp.refresh("r1", "alice-sub")).expect("refreshed");
    assert_eq!(fresh.access_token, "refreshed-access");
    let next = fresh.refresh_token.clone().expect("a rotated refresh token");
    assert!(
        !format!("{fresh:?}").contains("refreshed-access"),
        "Debug leaves the tokens out"
    );
    // The old one is spent: the session it served ends.
    let again = block_on(rp.refresh("r1", "alice-sub"));
    assert!(matches!(again, Err(OidcError::RefreshRefused(_))), "{again:?}");
    // An ID token with the refresh: checked, and for the same sub only.
    let token = sign(with(claims(&p.issuer, "n"), "nonce", Value::Null), &key);
    lock(&p.state).refresh.insert(next.clone(), token);
    let with_id = block_on(rp.refresh(&next, "alice-sub")).expect("refreshed");
    assert!(with_id.id_token.is_some());
    let other = with(
        with(claims(&p.issuer, "n"), "nonce", Value::Null),
        "sub",
        json!("mallory"),
    );
    lock(&p.state).refresh.insert("r-other".into(), sign(other, &key));
    let r = block_on(rp.refresh("r-other", "alice-sub"));
    assert!(matches!(r, Err(OidcError::Token(_))), "{r:?}");
    lock(&p.state)
        .refresh
        .insert("r-forged".into(), unsigned(claims(&p.issuer, "n")));
    let r = block_on(rp.refresh("r-forged", "alice-sub"));
    assert!(matches!(r, Err(OidcError::Token(_))), "{r:?}");
}

#[test]
fn the_end_session_url_carries_the_hint_and_only_the_configured_return() {
    let key = Key::new("k1");
    let p = Provider::start(&[&key]);
    let url = block_on(
        p.rp()
            .end_session_url(Some("the-id-token"), Some("https://app.example/bye")),
    )
    .expect("discovered")
    .expect("the provider has the endpoint");
    assert!(url.starts_with(&format!("{}/session/end?", p.issuer)));
    let q: HashMap<String, String> = reqwest::Url::parse(&url)
        .expect("a URL")
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(q["id_token_hint"], "the-id-token");
    assert_eq!(q["client_id"], CLIENT);
    assert_eq!(q["post_logout_redirect_uri"], "https://app.example/bye");
    let bare = block_on(p.rp().end_session_url(Some("t"), None))
        .expect("discovered")
        .expect("an URL");
    assert!(!bare.contains("post_logout_redirect_uri"));
}

/// A back-channel logout token is whatever anyone POSTs: arbitrary text,
/// and three base64url parts of arbitrary JSON, are refused without a
/// panic and without a fetch of the keys for each one.
#[test]
fn arbitrary_logout_tokens_are_refused_without_a_panic() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let key = Key::new("k1");
    let p = Provider::start(&[&key]);
    let rp = p.rp();
    block_on(rp.begin()).expect("discovered");
    let part = || prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| URL_SAFE_NO_PAD.encode(b));
    let header = prop_oneof![
        Just(r#"{"alg":"RS256","kid":"k9"}"#.to_string()),
        Just(r#"{"alg":"none"}"#.to_string()),
        Just(r#"{"alg":"HS256"}"#.to_string()),
        ".{0,40}",
    ]
    .prop_map(|h| URL_SAFE_NO_PAD.encode(h));
    let tokens = prop_oneof![
        ".{0,200}",
        (header, part(), part()).prop_map(|(h, c, s)| format!("{h}.{c}.{s}"))
    ];
    let mut runner = TestRunner::new(Config {
        cases: 2_000,
        ..Config::default()
    });
    runner
        .run(&tokens, |t| {
            let r = block_on(rp.check_logout_token(&t));
            prop_assert!(matches!(r, Err(OidcError::Token(_))), "{r:?}");
            Ok(())
        })
        .expect("every arbitrary token refused");
    assert!(
        lock(&p.state).jwks_fetches <= 2,
        "at most one fetch of the keys in the refetch interval"
    );
}
