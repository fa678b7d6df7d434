//! The side-car's OpenID Connect client against a real OpenID Provider:
//! oidc-provider 9 (OpenID Certified) from the npm registry, started on
//! loopback (`scripts/oidc-provider.sh` installs it; `make test` runs that
//! first). A user logs in through the provider's own login and consent
//! pages, as a browser would, and the client turns the code into who
//! they are; the code does not buy a second login.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sessions_sidecar::oidc::{Oidc, OidcError, OidcSettings};

const CLIENT: &str = "ngx-sessions-test";
const SECRET: &str = "a-test-client-secret-that-is-long-enough";
const REDIRECT: &str = "https://app.example/_oidc/callback";

/// oidc-provider on a free loopback port, stopped when dropped.
struct RealProvider {
    child: Child,
    issuer: String,
}

impl RealProvider {
    fn start() -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/oidc-provider");
        assert!(
            dir.join("node_modules/oidc-provider/package.json").exists(),
            "oidc-provider is not installed: run scripts/oidc-provider.sh (make test does)"
        );
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("a port");
            l.local_addr().expect("bound").port()
        };
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .args([&port.to_string(), CLIENT, SECRET, REDIRECT])
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("the provider's first line");
        // It writes notices later: keep reading, or it dies on a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let issuer = line
            .trim()
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("the provider did not start: {line:?}"))
            .to_string();
        Self { child, issuer }
    }

    fn settings(&self) -> OidcSettings {
        OidcSettings {
            issuer: self.issuer.clone(),
            client_id: CLIENT.into(),
            client_secret: Some(SECRET.into()),
            redirect_uri: REDIRECT.into(),
            scopes: vec!["email".into(), "profile".into()],
            user_claim: "sub".into(),
            data_claims: vec!["email".into(), "name".into()],
            timeout: Duration::from_secs(5),
            leeway: Duration::from_secs(30),
        }
    }
}

impl Drop for RealProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser that keeps cookies and does not follow redirects on its own.
struct Browser {
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn new() -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client");
        Self {
            http,
            cookies: HashMap::new(),
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> (u16, Option<String>, String) {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let req = if cookie.is_empty() {
            req
        } else {
            req.header("Cookie", cookie)
        };
        let r = req.send().await.expect("the provider answers");
        for c in r.headers().get_all("set-cookie") {
            let pair = c.to_str().expect("ASCII").split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .map(|l| l.to_str().expect("ASCII").to_string());
        (status, location, r.text().await.unwrap_or_default())
    }

    /// Follows the provider's redirects from `url`, answering its login
    /// page as `user` and its consent page with yes, until it sends the
    /// browser to the callback: the callback URL.
    async fn log_in(&mut self, issuer: &str, url: &str, user: &str) -> String {
        let mut url = url.to_string();
        for _ in 0..12 {
            if url.starts_with(REDIRECT) {
                return url;
            }
            let absolute = if url.starts_with('/') {
                format!("{issuer}{url}")
            } else {
                url.clone()
            };
            let get = self.http.get(&absolute);
            let (status, location, body) = self.send(get).await;
            if let Some(next) = location {
                url = next;
                continue;
            }
            assert_eq!(status, 200, "{absolute}: {body}");
            // A login or consent page: submit it to itself.
            let form: Vec<(&str, &str)> = if body.contains("name=\"login\"") {
                vec![("prompt", "login"), ("login", user), ("password", "any")]
            } else {
                vec![("prompt", "consent")]
            };
            let post = self.http.post(&absolute).form(&form);
            let (status, location, body) = self.send(post).await;
            url = location.unwrap_or_else(|| panic!("{absolute} answered {status} to the form: {body}"));
        }
        panic!("the provider never sent the browser back")
    }
}

fn query(url: &str) -> HashMap<String, String> {
    reqwest::Url::parse(url)
        .expect("a URL")
        .query_pairs()
        .into_owned()
        .collect()
}

#[test]
fn a_user_logs_in_at_a_real_provider_and_its_code_buys_one_login() {
    let provider = RealProvider::start();
    let rp = Oidc::new(provider.settings()).expect("settings");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let begin = rp.begin().await.expect("discovery and an authorization URL");
        assert!(begin.url.starts_with(&format!("{}/auth?", provider.issuer)));
        let mut browser = Browser::new();
        let callback = browser.log_in(&provider.issuer, &begin.url, "alice").await;
        let q = query(&callback);
        assert_eq!(q.get("state"), Some(&begin.state), "the state comes back as sent");
        let code = q.get("code").expect("a code");

        // A wrong verifier is refused by the provider (PKCE).
        let wrong = rp.finish(code, "x".repeat(64).as_str(), &begin.nonce).await;
        assert!(matches!(wrong, Err(OidcError::CodeRefused(_))), "{wrong:?}");

        // The provider revoked that code with the failed attempt (RFC 6749
        // 4.1.2): a fresh login for the real exchange.
        let begin = rp.begin().await.expect("begun");
        let callback = browser.log_in(&provider.issuer, &begin.url, "alice").await;
        let code = query(&callback).get("code").expect("a code").clone();
        let who = rp
            .finish(&code, &begin.verifier, &begin.nonce)
            .await
            .expect("logged in");
        assert_eq!(who.user, "alice");
        assert_eq!(
            who.claims,
            vec![
                ("email".into(), "alice@example.org".into()),
                ("name".into(), "User alice".into())
            ]
        );
        assert!(!who.access_token.is_empty());
        let bye = rp
            .end_session_url(Some(&who.id_token), None)
            .await
            .expect("discovered");
        assert!(
            bye.is_some_and(|u| u.starts_with(&format!("{}/session/end?", provider.issuer))),
            "the provider's end_session_endpoint"
        );

        // The code is used once.
        let replay = rp.finish(&code, &begin.verifier, &begin.nonce).await;
        assert!(matches!(replay, Err(OidcError::CodeRefused(_))), "{replay:?}");

        // Another login's nonce does not fit this login's token.
        let begin2 = rp.begin().await.expect("begun");
        let callback = browser.log_in(&provider.issuer, &begin2.url, "bob").await;
        let code = query(&callback).get("code").expect("a code").clone();
        let mixed = rp.finish(&code, &begin2.verifier, &begin.nonce).await;
        assert!(matches!(mixed, Err(OidcError::Token(_))), "{mixed:?}");
    });
}
