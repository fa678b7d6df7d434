//! The OpenID Connect suite (`suites/oidc.rs`), run with every session in the zone.

mod common;

/// The store this run keeps every session in.
const SUITE: common::Suite = common::Suite::Zone;

include!("suites/oidc.rs");

/// `nginx-conf/oidc.conf`, the example that replaces OAuth2 Proxy, with
/// the real provider in place of `id.example.com` and plain listeners:
/// `nginx -t` takes it, and a browser logs in through it.
#[test]
fn the_oidc_example_replaces_oauth2_proxy() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = Nginx::prepare("oidc-example");
    let site = format!("http://127.0.0.1:{}", n.port);
    let provider = Provider::start(&format!("{site}{CALLBACK}"));
    std::fs::write(
        n.dir.join("sessions.secret"),
        "an-example-secret-0123456789abcdef0123\n",
    )
    .unwrap();
    std::fs::write(
        n.dir.join("oidc-client.secret"),
        format!("{}\n", common::oidc::SECRET),
    )
    .unwrap();
    let example = std::fs::read_to_string(repo.join("nginx-conf/oidc.conf"))
        .unwrap()
        .replace("/etc/nginx/", &format!("{}/", n.dir.display()))
        .replace("https://id.example.com/realms/main", &provider.issuer)
        .replace(
            "sessions_oidc_client_id app;",
            &format!("sessions_oidc_client_id {};", common::oidc::CLIENT),
        )
        .replace("https://app.example.com", &site)
        .replace("listen 443 ssl;", "listen 127.0.0.1:{port};")
        .replace("sessions_cookie_secure on;", "sessions_cookie_secure auto;")
        .replace("server_name app.example.com;", "")
        .replace("server 127.0.0.1:8000;", "server 127.0.0.1:{port2};")
        + "server { listen 127.0.0.1:{port2}; return 200 \"app: $http_x_user $http_x_email $http_authorization\\n\"; }";
    n.write_conf(1, &example);
    let (ok, out) = n.test_config();
    assert!(ok, "{out}");
    n.spawn();
    let mut b = Browser::default();
    let back = to_callback(&n, &provider, &mut b, "/reports", "alice");
    assert_eq!(b.get(n.port, &back).status, 302);
    let r = b.get(n.port, "/reports");
    let access = provider.grants().last().expect("the login's tokens").2.clone();
    assert_eq!(
        r.text(),
        format!("app: alice alice@example.org Bearer {access}\n")
    );
    n.assert_clean_log();
}
