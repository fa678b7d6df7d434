//! The demo that `make run` serves, on a free port instead of 8080.

mod common;

use std::fs;
use std::path::Path;

use common::{send, Nginx, Request};

#[test]
fn demo_page_shows_the_visitors_session() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = Nginx::prepare("demo");
    let conf = fs::read_to_string(repo.join("nginx-conf/demo.conf"))
        .unwrap()
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{}", n.port))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{}", n.port2))
        .replace(
            "target/release/libngx_http_sessions_module.so",
            &common::module_path().display().to_string(),
        )
        .replace(
            "root nginx-conf/demo;",
            &format!("root {};", repo.join("nginx-conf/demo").display()),
        )
        .replace(".run/", "")
        // `info`: the harness waits for a worker to log that it accepted its probe.
        .replace("error_log stderr notice;", "error_log logs/error.log info;");
    fs::write(n.dir.join("demo.conf"), conf).unwrap();
    n.spawn_conf("demo.conf");

    let first = send(n.port, &Request::get("/"));
    assert_eq!(first.status, 200);
    let page = first.text();
    assert!(page.contains("<td id=\"status\">new</td>"), "{page}");
    let id = page
        .split("<td id=\"id\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 16);
    assert!(page.contains("data-unix=\"1"), "created and expires are shown");

    let name_value = first.all("Set-Cookie")[0].split(';').next().unwrap().to_string();
    let again = send(n.port, &Request::get("/").cookie(&name_value)).text();
    assert!(again.contains("<td id=\"status\">valid</td>"));
    assert!(
        again.contains(&format!("<td id=\"id\">{id}</td>")),
        "the id is stable"
    );

    // The login flow, as the browser test drives it with Chromium.
    let gate = send(n.port, &Request::get("/private/").cookie(&name_value));
    assert_eq!(gate.status, 302);
    // nginx makes the relative login URL absolute (absolute_redirect).
    assert!(gate
        .header("Location")
        .unwrap()
        .ends_with("/login/?rd=http%3A%2F%2Flocalhost%2Fprivate%2F"));
    let wrong = send(
        n.port,
        &Request::get("/login/check?user=ann&password=x").cookie(&name_value),
    );
    assert_eq!(wrong.status, 401);
    let ok = send(
        n.port,
        &Request::get("/login/check?user=ann&password=demo").cookie(&name_value),
    );
    assert_eq!(ok.status, 200);
    let name = name_value.split('=').next().unwrap();
    let logged_in = ok.cookie_pair(name);
    let private = send(n.port, &Request::get("/private/").cookie(&logged_in));
    assert_eq!(private.status, 200);
    assert!(private.text().contains("<strong id=\"user\">ann</strong>"));
    let bye = send(n.port, &Request::get("/logout").cookie(&logged_in));
    assert_eq!(bye.status, 302);
    assert!(bye.header("Location").unwrap().ends_with("/login/"));

    let css = send(n.port, &Request::get("/static/demo.css"));
    assert_eq!(css.status, 200);
    assert!(css.all("Set-Cookie").is_empty(), "static assets need no session");
}

#[test]
fn authelia_style_example_is_valid_and_gates() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let n = Nginx::prepare("authelia");
    // Plain listeners on free ports instead of TLS on 443.
    let example = fs::read_to_string(repo.join("nginx-conf/authelia-style.conf"))
        .unwrap()
        .replacen("listen 443 ssl;", "listen 127.0.0.1:{port};", 1)
        .replacen("listen 443 ssl;", "listen 127.0.0.1:{port2};", 1);
    n.write_conf(1, &example);
    let (ok, out) = n.test_config();
    assert!(ok, "{out}");
    let mut n = n;
    n.spawn();
    let r = send(n.port, &Request::get("/page").header("Host", "app.example.com"));
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("Location"),
        Some("https://auth.example.com/?rd=http%3A%2F%2Fapp.example.com%2Fpage")
    );
    let r = send(
        n.port,
        &Request::get("/api")
            .header("Host", "app.example.com")
            .header("Accept", "application/json"),
    );
    assert_eq!(r.status, 401);
}

/// What the demo page promises is what demo.conf configures: the renewal
/// after three quarters of the rolling timeout, the end after the idle one
/// (which a shorter rolling timeout would cut short).
#[test]
fn the_demo_page_says_what_the_configuration_does() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let conf = fs::read_to_string(repo.join("nginx-conf/demo.conf")).unwrap();
    let page = fs::read_to_string(repo.join("nginx-conf/demo/index.html")).unwrap();
    let minutes = |directive: &str| -> u64 {
        let v = conf
            .split(&format!("{directive} "))
            .nth(1)
            .and_then(|s| s.split(';').next())
            .unwrap_or_else(|| panic!("{directive} in demo.conf"));
        v.strip_suffix('m').and_then(|m| m.parse().ok()).expect("minutes")
    };
    let (idle, rolling) = (
        minutes("sessions_idling_timeout"),
        minutes("sessions_rolling_timeout"),
    );
    assert!(
        rolling > idle,
        "the rolling timeout would end an idle session first"
    );
    let said = |before: &str| -> u64 {
        page.split(before)
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("\"{before}\" in the page"))
    };
    assert_eq!(said("After "), rolling * 3 / 4, "the renewal the page states");
    assert_eq!(said("Stop for "), idle, "the idle end the page states");
}
