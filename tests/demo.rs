//! The demo that `make run` serves, on a free port instead of 8080.

mod common;

/// Each test configures its own store.
const SUITE: common::Suite = common::Suite::Own;

use std::fs;
use std::path::Path;

use common::{send, send_with_body, Nginx, Request};

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
    assert!(
        page.contains(r#"<span id="status" class="badge new">new</span>"#),
        "{page}"
    );
    let id = page
        .split(r#"<dd id="id" class="mono">"#)
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
    assert!(again.contains(r#"<span id="status" class="badge valid">valid</span>"#));
    assert!(
        again.contains(&format!(r#"<dd id="id" class="mono">{id}</dd>"#)),
        "the id is stable"
    );

    // The login flow, as the browser test drives it with Chromium: the form
    // POSTs; the password never travels in a URL.
    let gate = send(n.port, &Request::get("/private/").cookie(&name_value));
    assert_eq!(gate.status, 302);
    // nginx makes the relative login URL absolute (absolute_redirect).
    assert!(gate
        .header("Location")
        .unwrap()
        .ends_with("/login/?rd=http%3A%2F%2Flocalhost%2Fprivate%2F"));
    let form = send(n.port, &Request::get("/login/").cookie(&name_value)).text();
    assert!(
        form.contains(r#"<form id="login" method="post" action="/login/check">"#),
        "{form}"
    );
    let post = |body: &str, cookie: &str| {
        let req = Request::get("/login/check")
            .cookie(cookie)
            .header("Content-Type", "application/x-www-form-urlencoded");
        send_with_body(
            n.port,
            &Request {
                method: "POST".into(),
                ..req
            },
            body.as_bytes(),
        )
    };
    let name = name_value.split('=').next().unwrap();
    for wrong in [
        "user=ann&password=x",
        "user=ann&password=demox",
        "user=ann&password=",
        "user=&password=demo",
        "user=a%20b&password=demo",
    ] {
        let r = post(wrong, &name_value);
        assert_eq!(r.status, 303, "{wrong}");
        assert_eq!(r.header("Location"), Some("/login/?error=1"), "{wrong}");
        assert!(r.set_cookies(name).is_empty(), "{wrong} logs nobody in");
        let still = send(n.port, &Request::get("/private/").cookie(&name_value));
        assert_eq!(still.status, 302, "{wrong} logs nobody in");
    }
    // The login app's own header, sent by the client: replaced on the way.
    let forged = Request::get("/login/check")
        .cookie(&name_value)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Demo-Login", "eve");
    let forged = send_with_body(
        n.port,
        &Request {
            method: "POST".into(),
            ..forged
        },
        b"user=eve&password=x",
    );
    assert_eq!(forged.header("Location"), Some("/login/?error=1"));
    assert!(
        forged.set_cookies(name).is_empty(),
        "a forged X-Demo-Login logs nobody in"
    );
    let query = send(
        n.port,
        &Request::get("/login/check?user=ann&password=demo").cookie(&name_value),
    );
    assert_eq!(query.status, 403, "a password in the query string is refused");
    assert!(query.set_cookies(name).is_empty());
    let ok = post("user=ann&password=demo", &name_value);
    assert_eq!(ok.status, 303);
    assert_eq!(ok.header("Location"), Some("/private/"));
    assert!(ok.header("X-Session-User").is_none(), "the module consumes it");
    let logged_in = ok.cookie_pair(name);
    assert!(!ok.set_cookies(name)[0].contains("Max-Age"), "not remembered");
    let private = send(n.port, &Request::get("/private/").cookie(&logged_in));
    assert_eq!(private.status, 200);
    assert!(private.text().contains(r#"<span id="user">ann</span>"#));
    let home = send(n.port, &Request::get("/").cookie(&logged_in)).text();
    assert!(home.contains("<strong>ann</strong>"), "{home}");
    assert!(
        home.contains(r#"href="/metrics""#),
        "the home page links to the metrics"
    );
    let metrics = send(n.port, &Request::get("/metrics"));
    assert_eq!(metrics.status, 200);
    assert!(metrics.text().contains("nginx_sessions_"));
    let bye = send(n.port, &Request::get("/logout").cookie(&logged_in));
    assert_eq!(bye.status, 302);
    let to = bye.header("Location").unwrap();
    assert!(to.ends_with("/login/?logged_out=1"), "{to}");
    let said = send(n.port, &Request::get("/login/?logged_out=1")).text();
    assert!(said.contains("You are logged out."), "logout says so");
    let after = send(n.port, &Request::get("/private/").cookie(&logged_in));
    assert_eq!(after.status, 302, "the copied cookie is logged out");
    let remembered = post("user=bo&password=demo&remember=on", &name_value);
    assert!(remembered.set_cookies(name)[0].contains("Max-Age=2592000"));

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

/// Every duration the demo's home page states is the one demo.conf
/// configures: each sits in a `data-conf` span naming its directive (or the
/// renewal, three quarters of the rolling timeout), and no other number is
/// written on the page.
#[test]
fn the_demo_page_says_what_the_configuration_does() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let conf = fs::read_to_string(repo.join("nginx-conf/demo.conf")).unwrap();
    let page = fs::read_to_string(repo.join("nginx-conf/demo/index.html")).unwrap();
    let seconds = |directive: &str| -> u64 {
        let v = conf
            .split(&format!("\n    {directive} "))
            .nth(1)
            .and_then(|s| s.split(';').next())
            .unwrap_or_else(|| panic!("{directive} in demo.conf"));
        let (n, unit) = v.split_at(v.len() - 1);
        let n: u64 = n.parse().expect("a number and one unit");
        n * match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86400,
            _ => panic!("unit of {v}"),
        }
    };
    let human = |secs: u64| -> String {
        let (n, unit) = match secs {
            s if s % 86400 == 0 => (s / 86400, "day"),
            s if s % 3600 == 0 => (s / 3600, "hour"),
            s if s % 60 == 0 => (s / 60, "minute"),
            s => (s, "second"),
        };
        format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
    };
    let (idle, rolling) = (
        seconds("sessions_idling_timeout"),
        seconds("sessions_rolling_timeout"),
    );
    assert!(
        rolling > idle,
        "the rolling timeout would end an idle session first"
    );
    let mut stated = 0;
    let mut rest = page.clone();
    for part in page.split("<span data-conf=\"").skip(1) {
        let (key, after) = part.split_once("\">").unwrap();
        let said = after.split("</span>").next().unwrap();
        let want = match key {
            "renewal" => human(rolling * 3 / 4),
            directive => human(seconds(directive)),
        };
        assert_eq!(said, want, "what the page says of {key}");
        rest = rest.replacen(&format!("<span data-conf=\"{key}\">{said}</span>"), "", 1);
        stated += 1;
    }
    assert!(stated >= 5, "the page states the timeouts");
    // Outside those spans and the markup, the page's text has no digit.
    let text: String = rest
        .split('<')
        .filter_map(|s| s.split_once('>').map(|(_, t)| t))
        .collect();
    let script = text.find("for (const id").unwrap_or(text.len());
    assert!(
        !text[..script].chars().any(|c| c.is_ascii_digit()),
        "a number the configuration does not back: {}",
        &text[..script]
    );
}
