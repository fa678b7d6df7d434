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
        .replace(
            "target/release/libngx_http_sessions_module.so",
            &common::module_path().display().to_string(),
        )
        .replace(
            "root nginx-conf/demo;",
            &format!("root {};", repo.join("nginx-conf/demo").display()),
        )
        .replace(".run/", "")
        .replace("error_log stderr notice;", "error_log logs/error.log notice;");
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

    let css = send(n.port, &Request::get("/static/demo.css"));
    assert_eq!(css.status, 200);
    assert!(css.all("Set-Cookie").is_empty(), "static assets need no session");
}
