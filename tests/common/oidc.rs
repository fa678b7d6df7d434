//! A real OpenID Provider for the nginx tests: oidc-provider 9 from the
//! npm registry (`scripts/oidc-provider.sh` installs it; `make test` runs
//! that first), on a free loopback port, and a browser that logs in
//! through its own login and consent pages.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use super::{free_port, send, send_with_body, Request, Response};

pub const CLIENT: &str = "ngx-sessions-itest";
pub const SECRET: &str = "an-itest-client-secret-long-enough";

/// oidc-provider, stopped when dropped.
pub struct Provider {
    child: Option<Child>,
    pub port: u16,
    pub issuer: String,
    redirect: String,
    /// What it printed after it started (back-channel requests it sent).
    lines: Arc<Mutex<Vec<String>>>,
    /// Its command-line arguments after the port, to start it again.
    args: Vec<String>,
    /// Where its signing keys are kept across restarts.
    keys: PathBuf,
}

impl Provider {
    /// A provider whose one client may be sent back to `redirect`.
    pub fn start(redirect: &str) -> Self {
        Self::start_with(redirect, &[])
    }

    /// `logout`: the client's back-channel logout URI, then its
    /// post-logout redirect URI, if any.
    pub fn start_with(redirect: &str, logout: &[&str]) -> Self {
        let port = free_port();
        let mut args = vec![CLIENT.to_string(), SECRET.to_string(), redirect.to_string()];
        args.extend(logout.iter().map(|s| s.to_string()));
        let keys = std::env::temp_dir().join(format!(
            "ngx-sessions-oidc-keys-{port}-{}.json",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&keys);
        let (child, issuer, lines) = Self::spawn(port, &args, &keys, false);
        Self {
            child: Some(child),
            port,
            issuer,
            redirect: redirect.to_string(),
            lines,
            args,
            keys,
        }
    }

    /// Starts it again on the same port with a new signing key published
    /// first, beside the old one (key rotation).
    pub fn restart_rotated(&mut self) {
        self.stop();
        let (child, _, lines) = Self::spawn(self.port, &self.args, &self.keys, true);
        self.child = Some(child);
        self.lines = lines;
    }

    /// From now on its token endpoint hands out ID tokens forged by `mode`
    /// (`off` to stop; see tests/oidc/provider.mjs).
    pub fn tamper(&self, mode: &str) {
        let r = send(self.port, &Request::get(&format!("/_test/tamper?mode={mode}")));
        assert_eq!(r.text(), format!("tamper {mode}\n"));
    }

    /// From now on its token endpoint answers after `ms` milliseconds.
    pub fn slow(&self, ms: u64) {
        let r = send(self.port, &Request::get(&format!("/_test/slow?ms={ms}")));
        assert_eq!(r.text(), format!("slow {ms}\n"));
    }

    /// The provider session (`sid`) of each ID token it handed out.
    pub fn sids(&self) -> Vec<String> {
        self.printed("sid ")
    }

    /// A signed back-channel logout token naming only the provider session `sid`.
    pub fn logout_token_for_sid(&self, sid: &str) -> String {
        send(
            self.port,
            &Request::get(&format!("/_test/logout_token?sid={sid}")),
        )
        .text()
    }

    /// From now on the access tokens it issues live `seconds`.
    pub fn access_ttl(&self, seconds: u64) {
        let r = send(
            self.port,
            &Request::get(&format!("/_test/access_ttl?s={seconds}")),
        );
        assert_eq!(r.text(), format!("access_ttl {seconds}\n"));
    }

    /// Its token endpoint's answers since it (re)started: (grant type,
    /// status, access token or "-").
    pub fn grants(&self) -> Vec<(String, u16, String)> {
        self.printed("grant ")
            .iter()
            .filter_map(|l| {
                let mut w = l.split(' ');
                Some((
                    w.next()?.to_string(),
                    w.next()?.parse().ok()?,
                    w.next()?.to_string(),
                ))
            })
            .collect()
    }

    /// The refresh grants it answered: (status, access token or "-").
    pub fn refreshes(&self) -> Vec<(u16, String)> {
        self.grants()
            .into_iter()
            .filter(|(g, _, _)| g == "refresh_token")
            .map(|(_, s, a)| (s, a))
            .collect()
    }

    /// Starts it again on the same port with the same keys and no memory
    /// of the grants it made (every refresh token unknown).
    pub fn restart(&mut self) {
        self.stop();
        let (child, _, lines) = Self::spawn(self.port, &self.args, &self.keys, false);
        self.child = Some(child);
        self.lines = lines;
    }

    fn spawn(
        port: u16,
        args: &[String],
        keys: &std::path::Path,
        rotate: bool,
    ) -> (Child, String, Arc<Mutex<Vec<String>>>) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/oidc-provider");
        assert!(
            dir.join("node_modules/oidc-provider/package.json").exists(),
            "oidc-provider is not installed: run scripts/oidc-provider.sh (make test does)"
        );
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .arg(port.to_string())
            .args(args)
            .env("OIDC_KEYS", keys)
            .env("OIDC_ROTATE", if rotate { "1" } else { "0" })
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("the provider's first line");
        // Keep reading, or it dies on a closed pipe.
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        let issuer = line
            .trim()
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("the provider did not start: {line:?}"))
            .to_string();
        (child, issuer, lines)
    }

    /// The `kid` of the key that signed each ID token it handed out since
    /// it (re)started.
    pub fn signing_kids(&self) -> Vec<String> {
        self.printed("signed ")
    }

    fn printed(&self, prefix: &str) -> Vec<String> {
        self.sync();
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix(prefix).map(str::to_string))
            .collect()
    }

    /// Waits until the thread reading the provider's output has read all
    /// it printed so far: the provider prints a mark after it, on request.
    fn sync(&self) {
        use std::sync::atomic::{AtomicU64, Ordering};
        static MARKS: AtomicU64 = AtomicU64::new(0);
        if self.child.is_none() {
            return;
        }
        let id = MARKS.fetch_add(1, Ordering::Relaxed);
        send(self.port, &Request::get(&format!("/_test/mark?id={id}")));
        let mark = format!("mark {id}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !self.lines.lock().unwrap().contains(&mark) {
            assert!(
                std::time::Instant::now() < deadline,
                "the provider's output did not arrive"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// The form bodies of the back-channel logout requests it sent so far.
    pub fn backchannel_bodies(&self) -> Vec<String> {
        self.sync();
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix("backchannel ").map(str::to_string))
            .collect()
    }

    /// Stops the provider (a provider that is down).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Writes the client secret file nginx reads and returns the
    /// `sessions_oidc_*` lines of this provider.
    pub fn directives(&self, dir: &std::path::Path) -> String {
        let file = dir.join("client-secret");
        std::fs::write(&file, format!("{SECRET}\n")).expect("secret file");
        format!(
            "sessions_oidc_issuer {issuer}; sessions_oidc_client_id {CLIENT};\n\
             sessions_oidc_client_secret_file {file}; sessions_oidc_redirect_uri {redirect};\n\
             sessions_oidc_scopes email profile; sessions_oidc_claims email name;\n",
            issuer = self.issuer,
            file = file.display(),
            redirect = self.redirect,
        )
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.keys);
    }
}

/// A browser: a cookie jar shared by every port of 127.0.0.1 (as browsers
/// key cookies by host), no automatic redirects.
#[derive(Default, Clone)]
pub struct Browser {
    pub cookies: BTreeMap<String, String>,
}

impl Browser {
    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, r: &Response) {
        for c in r.all("Set-Cookie") {
            let pair = c.split(';').next().unwrap_or_default();
            let deleted = c.to_ascii_lowercase().contains("max-age=0");
            if let Some((k, v)) = pair.split_once('=') {
                if deleted || v.is_empty() {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
    }

    /// GET `path` on `port` as a browser navigating (HTML wanted).
    pub fn get(&mut self, port: u16, path: &str) -> Response {
        let mut req = Request::get(path)
            .header("Host", &format!("127.0.0.1:{port}"))
            .header("Accept", "text/html,application/xhtml+xml")
            .header("Sec-Fetch-Mode", "navigate");
        if !self.cookies.is_empty() {
            req = req.cookie(&self.cookie_header());
        }
        let r = send(port, &req);
        self.keep(&r);
        r
    }

    /// Sends `req` to `port` with this browser's cookies, keeping what it sets.
    pub fn send(&mut self, port: u16, mut req: Request) -> Response {
        req = req.header("Host", &format!("127.0.0.1:{port}"));
        if !self.cookies.is_empty() {
            req = req.cookie(&self.cookie_header());
        }
        let r = send(port, &req);
        self.keep(&r);
        r
    }

    fn post_form(&mut self, port: u16, path: &str, form: &[(&str, &str)]) -> Response {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let mut req = Request::get(path)
            .header("Host", &format!("127.0.0.1:{port}"))
            .header("Content-Type", "application/x-www-form-urlencoded");
        req.method = "POST".into();
        if !self.cookies.is_empty() {
            req = req.cookie(&self.cookie_header());
        }
        let r = send_with_body(port, &req, body.as_bytes());
        self.keep(&r);
        r
    }

    /// Ends the session at the provider from its end-session `url`,
    /// answering its confirmation page with yes: where it sends the
    /// browser after (the post-logout redirect URI).
    pub fn log_out_at(&mut self, provider: &Provider, url: &str) -> Option<String> {
        let path = url
            .strip_prefix(&provider.issuer)
            .expect("the provider's URL")
            .to_string();
        let r = self.get(provider.port, &path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let page = r.text();
        let xsrf = page
            .split("name=\"xsrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no confirmation form: {page}"))
            .to_string();
        let r = self.post_form(
            provider.port,
            "/session/end/confirm",
            &[("xsrf", &xsrf), ("logout", "yes")],
        );
        r.header("Location").map(str::to_string)
    }

    /// Follows the provider's pages from `url` (its authorization URL),
    /// logging in as `user` and consenting, until it sends the browser to
    /// `redirect`: that URL, with its code and state.
    pub fn log_in_at(&mut self, provider: &Provider, url: &str, user: &str) -> String {
        let mut url = url.to_string();
        for _ in 0..12 {
            if url.starts_with(&provider.redirect) {
                return url;
            }
            let path = url.strip_prefix(&provider.issuer).unwrap_or(&url).to_string();
            assert!(path.starts_with('/'), "the provider sent the browser to {url}");
            let r = self.get(provider.port, &path);
            if let Some(next) = r.header("Location") {
                url = next.to_string();
                continue;
            }
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            let body = r.text();
            let form: Vec<(&str, &str)> = if body.contains("name=\"login\"") {
                vec![("prompt", "login"), ("login", user), ("password", "any")]
            } else {
                vec![("prompt", "consent")]
            };
            let r = self.post_form(provider.port, &path, &form);
            url = r
                .header("Location")
                .unwrap_or_else(|| panic!("{path} answered {} to the form: {}", r.status, r.text()))
                .to_string();
        }
        panic!("the provider never sent the browser back")
    }
}
