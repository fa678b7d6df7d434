//! `sessions_status`: Prometheus counters that move as sessions do.

mod common;

/// Each test configures its own store.
const SUITE: common::Suite = common::Suite::Own;

use std::collections::HashMap;

use common::{Nginx, Request};

fn scrape(n: &Nginx) -> HashMap<String, u64> {
    let r = n.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("Content-Type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text();
    assert!(text.contains("# TYPE nginx_sessions_created_total counter"));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

fn get(m: &HashMap<String, u64>, key: &str) -> u64 {
    *m.get(key).unwrap_or_else(|| panic!("{key} missing from {m:?}"))
}

#[test]
fn counters_follow_sessions_across_workers() {
    let n = Nginx::start_with(
        2,
        "sessions_zone stats:1m;
         server { listen 127.0.0.1:{port}; root html;
                  sessions on; sessions_secret s; sessions_name sid;
                  location = /metrics { sessions off; sessions_status; } }",
    );
    let before = scrape(&n);
    assert_eq!(get(&before, "nginx_sessions_active{zone=\"stats\"}"), 0);
    assert!(get(&before, "nginx_sessions_capacity{zone=\"stats\"}") > 4000);

    let a = n.get("/").cookie_pair("sid");
    n.get("/");
    n.request(Request::get("/").cookie(&a)); // valid
    n.request(Request::get("/").cookie("sid=v1.garbage")); // invalid -> new
    n.request(Request::get("/").cookie(&a).header("User-Agent", "other")); // ua mismatch -> new
    n.request(Request::get("/").cookie(&a)); // destroyed above -> unknown -> new

    let m = scrape(&n);
    let z = |name: &str, reason: Option<&str>| match reason {
        Some(r) => format!("nginx_sessions_{name}{{zone=\"stats\",reason=\"{r}\"}}"),
        None => format!("nginx_sessions_{name}{{zone=\"stats\"}}"),
    };
    assert_eq!(get(&m, &z("created_total", None)), 5);
    assert_eq!(get(&m, &z("active", None)), 4, "one destroyed by the UA check");
    assert_eq!(get(&m, &z("refused_total", Some("invalid"))), 1);
    assert_eq!(get(&m, &z("refused_total", Some("ua_mismatch"))), 1);
    assert_eq!(get(&m, &z("refused_total", Some("unknown"))), 1);
    assert_eq!(get(&m, &z("refused_total", Some("ip_mismatch"))), 0);
    assert_eq!(get(&m, &z("expired_total", Some("idle"))), 0);
    let kind = |k: &str| format!("nginx_sessions_evicted_total{{zone=\"stats\",kind=\"{k}\"}}");
    assert_eq!(get(&m, &kind("once")), 0);
    assert_eq!(get(&m, &kind("returning")), 0);
    assert_eq!(get(&m, &z("renewed_total", None)), 0);

    // Only GET and HEAD.
    let mut post = Request::get("/metrics");
    post.method = "POST".into();
    assert_eq!(n.request(post).status, 405);
    let mut head = Request::get("/metrics");
    head.method = "HEAD".into();
    let r = n.request(head);
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
}

#[test]
fn status_needs_no_sessions_elsewhere() {
    // The zone exists for the status page alone.
    let n = Nginx::start("server { listen 127.0.0.1:{port}; location = /metrics { sessions_status; } }");
    let m = scrape(&n);
    assert_eq!(get(&m, "nginx_sessions_active{zone=\"sessions\"}"), 0);
}

#[test]
fn scrapes_create_no_sessions_where_sessions_are_inherited() {
    let n = Nginx::start(
        "server { listen 127.0.0.1:{port}; root html; sessions on;
                  location = /metrics { sessions_status; }
                  location = /metrics-with-session { sessions on; sessions_status; } }",
    );
    for _ in 0..3 {
        let r = n.get("/metrics");
        assert!(r.all("Set-Cookie").is_empty(), "a scrape got a session");
    }
    assert_eq!(
        get(&scrape(&n), "nginx_sessions_created_total{zone=\"sessions\"}"),
        0
    );
    // Saying `sessions on` in the location itself keeps sessions there.
    let r = n.get("/metrics-with-session");
    assert_eq!(r.all("Set-Cookie").len(), 1);
}

/// A zone name with a quote and a backslash is escaped as the text format
/// says; Prometheus's own Python parser (Debian's python3-prometheus-client)
/// reads the whole output back.
#[test]
fn metrics_parse_with_a_real_prometheus_parser_whatever_the_zone_name() {
    let n = Nginx::start(
        "sessions_zone 'my\"zone\\\\x:1m'; sessions on; sessions_secret status-test-secret-0123456789abcdef;
         server { listen 127.0.0.1:{port}; root html;
                  location = /metrics { sessions off; sessions_status; } }",
    );
    assert_eq!(n.get("/index.html").status, 200);
    let text = n.get("/metrics").text();
    let script = "import sys\n\
        from prometheus_client.parser import text_string_to_metric_families as parse\n\
        n = 0\n\
        for f in parse(sys.stdin.read()):\n\
        \x20   for s in f.samples:\n\
        \x20       assert s.labels['zone'] == 'my\"zone\\\\x', s.labels\n\
        \x20       n += 1\n\
        print(n)\n";
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (apt install python3-prometheus-client)");
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let lines = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(samples, lines, "every sample parsed");
    let active = text
        .lines()
        .find(|l| l.starts_with("nginx_sessions_active"))
        .unwrap();
    assert_eq!(active, "nginx_sessions_active{zone=\"my\\\"zone\\\\x\"} 1");
}
