//! Over TLS, `sessions_cookie_secure auto` adds `Secure`; session variables
//! reach the access log, also after an internal redirect.

mod common;

/// Each test configures its own store.
const SUITE: common::Suite = common::Suite::Own;

use std::fs;
use std::process::Command;

use common::{Nginx, Request};

/// A throwaway self-signed certificate made by `openssl`.
fn certificate(dir: &std::path::Path) {
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("openssl")
        .status
        .success();
    assert!(ok, "openssl could not make a certificate");
}

/// The response headers of `curl` fetching `url` (TLS, certificate not checked).
fn curl_headers(url: &str, cookie: Option<&str>) -> String {
    let mut c = Command::new("curl");
    c.args(["-sk", "-o", "/dev/null", "-D", "-", url]);
    if let Some(k) = cookie {
        c.args(["-H", &format!("Cookie: {k}")]);
    }
    String::from_utf8(c.output().expect("curl").stdout).unwrap()
}

fn set_cookie(headers: &str) -> Option<&str> {
    headers
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .map(str::trim_end)
}

#[test]
fn secure_auto_follows_the_connection() {
    let mut n = Nginx::prepare("tls");
    certificate(&n.dir);
    n.write_conf(
        1,
        "sessions on; sessions_secret tls-test; sessions_name sid;
         server { listen 127.0.0.1:{port}; listen 127.0.0.1:{port2} ssl;
                  ssl_certificate {dir}/cert.pem; ssl_certificate_key {dir}/key.pem;
                  root html; }",
    );
    n.spawn();
    let https = curl_headers(&format!("https://127.0.0.1:{}/", n.port2), None);
    let cookie = set_cookie(&https).expect("a cookie over TLS");
    assert!(
        cookie.ends_with("; Path=/; Secure; HttpOnly; SameSite=Lax"),
        "{cookie}"
    );
    // The same session is valid over TLS again, with no new cookie.
    let pair = cookie.split(';').next().unwrap();
    assert!(set_cookie(&curl_headers(
        &format!("https://127.0.0.1:{}/", n.port2),
        Some(pair)
    ))
    .is_none());
    // Plain HTTP: no Secure.
    let plain = n.get("/");
    assert_eq!(
        plain.set_cookies("sid")[0].split_once("; ").unwrap().1,
        "Path=/; HttpOnly; SameSite=Lax"
    );
}

#[test]
fn variables_reach_the_access_log_after_an_internal_redirect() {
    let n = Nginx::start(
        "log_format s '$status $session_status $session_id';
         sessions on; sessions_secret log-test; sessions_name sid;
         server { listen 127.0.0.1:{port}; root html;
                  access_log logs/sessions.log s;
                  error_page 404 /404.html; location = /404.html { internal; } }",
    );
    fs::write(n.dir.join("html/404.html"), "x\n").unwrap();
    let first = n.get("/");
    let id = first.all("Set-Cookie")[0].to_string();
    let c = first.cookie_pair("sid");
    n.request(Request::get("/missing").cookie(&c));
    // The access log is written when the request ends.
    let log = fs::read_to_string(n.dir.join("logs/sessions.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines[0].starts_with("200 new "), "{log}");
    let handle = lines[0].split(' ').nth(2).unwrap();
    assert_eq!(handle.len(), 16);
    assert_eq!(lines[1], format!("404 valid {handle}"), "{log}");
    assert!(!log.contains(&id[4..20]), "no cookie value in the log");
}

/// Behind a TLS-terminating nginx, `Secure` and the login redirect's `rd=`
/// follow the client's scheme from `X-Forwarded-Proto`, but only when the
/// peer is a trusted proxy, also when the realip module replaced the
/// client address; the same header from anyone else changes nothing.
#[test]
fn behind_a_trusted_tls_proxy_the_client_scheme_counts() {
    let back = Nginx::start(
        "sessions on; sessions_secret proxy-test; sessions_name sid;
         server { listen 127.0.0.1:{port}; root html;
                  set_real_ip_from 127.0.0.1; real_ip_header X-Forwarded-For;
                  sessions_trusted_proxies 127.0.0.0/8 ::1;
                  add_header X-Addr $remote_addr always;
                  location /private/ { sessions_require_login on; sessions_login_url /login;
                                       try_files $uri /index.html; } }
         server { listen 127.0.0.1:{port2}; root html;
                  set_real_ip_from 127.0.0.1; real_ip_header X-Forwarded-For;
                  sessions_trusted_proxies 10.0.0.0/8;
                  add_header X-Addr $remote_addr always;
                  location /private/ { sessions_require_login on; sessions_login_url /login;
                                       try_files $uri /index.html; } }",
    );
    let mut front = Nginx::prepare("tls-front");
    certificate(&front.dir);
    front.write_conf(
        1,
        &format!(
            "server {{ listen 127.0.0.1:{{port}}; listen 127.0.0.1:{{port2}} ssl;
                      ssl_certificate {{dir}}/cert.pem; ssl_certificate_key {{dir}}/key.pem;
                      location / {{ proxy_set_header X-Forwarded-Proto $scheme;
                                   proxy_set_header X-Forwarded-For 203.0.113.9;
                                   proxy_set_header Host app.example;
                                   proxy_pass http://127.0.0.1:{}; }} }}",
            back.port
        ),
    );
    front.spawn();
    let url = |path: &str| format!("https://127.0.0.1:{}{path}", front.port2);
    let h = curl_headers(&url("/"), None);
    assert!(
        h.contains("X-Addr: 203.0.113.9"),
        "realip replaced the address: {h}"
    );
    let cookie = set_cookie(&h).expect("a cookie");
    assert!(cookie.contains("; Secure;"), "{cookie}");
    let h = curl_headers(&url("/private/page?x=1"), None);
    assert!(
        h.contains("rd=https%3A%2F%2Fapp.example%2Fprivate%2Fpage%3Fx%3D1"),
        "{h}"
    );

    // A client (127.0.0.1, not in 10.0.0.0/8) sending the header straight to
    // a server that trusts 10.0.0.0/8 only; realip there takes the client's
    // word for a 10.x address, which must not make it a trusted proxy.
    let r = common::send(
        back.port2,
        &Request::get("/private/page")
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-For", "10.1.1.1"),
    );
    assert_eq!(
        r.header("X-Addr"),
        Some("10.1.1.1"),
        "realip replaced the address"
    );
    let c = r.all("Set-Cookie").join(" | ");
    assert!(!c.contains("Secure"), "{c}");
    let location = r.header("Location").unwrap();
    assert!(location.contains("rd=http%3A%2F%2Flocalhost"), "{location}");
    // From a trusted peer, as a trusted proxy would say it.
    let r = common::send(back.port, &Request::get("/").header("X-Forwarded-Proto", "https"));
    assert!(r.all("Set-Cookie")[0].contains("; Secure;"));
    back.assert_clean_log();
}
