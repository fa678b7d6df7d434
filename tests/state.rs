//! The zone's state file: sessions (logins and data included) survive
//! `nginx -s stop` and a start, and a `kill -9` loses at most the last
//! `state_interval`; a damaged or foreign file gives one log line and an
//! empty zone, never a failed start.

mod common;

/// Each test configures its own store.
const SUITE: common::Suite = common::Suite::Own;

use std::fs;
use std::thread::sleep;
use std::time::Duration;

use common::{Conn, Nginx, Request, Response};

/// A zone with a state file; `/app/` is an application that logs in
/// (`?user=`) or stores data (`?theme=`).
fn conf(secret: &str, state: &str) -> String {
    format!(
        "sessions_zone keep:8m {state};
         server {{ listen 127.0.0.1:{{port2}}; sessions off;
                  location /login {{ add_header X-Session-User $arg_user; return 200; }}
                  location /set {{ add_header X-Session-Set theme=$arg_theme; return 200; }} }}
         server {{ listen 127.0.0.1:{{port}}; root html;
                  sessions on; {secret}
                  add_header X-Session-Status $session_status always;
                  add_header X-User $session_user always;
                  add_header X-Theme $session_data_theme always;
                  location /app/ {{ sessions_control_headers on; proxy_pass http://127.0.0.1:{{port2}}/; }} }}"
    )
}

const FIXED: &str = "sessions_secret state-test-secret; sessions_name sid;";

fn status(r: &Response) -> &str {
    r.header("X-Session-Status").unwrap_or("")
}

/// The cookie name a response sets (fixed or random).
fn cookie_of(r: &Response) -> String {
    let set = r.all("Set-Cookie");
    assert_eq!(set.len(), 1, "{:?}", r.headers);
    set[0].split(';').next().unwrap().to_string()
}

/// `n` sessions: every tenth logged in as `u<i>`, every tenth (offset 5)
/// with data; (cookie, expected user, expected theme).
fn make_sessions(port: u16, n: usize) -> Vec<(String, Option<String>, Option<String>)> {
    let mut conn = Conn::open(port);
    (0..n)
        .map(|i| {
            let c = cookie_of(&conn.get("/", None));
            match i % 10 {
                0 => {
                    let user = format!("u{i}");
                    let r = conn.get(&format!("/app/login?user={user}"), Some(&c));
                    (cookie_of(&r), Some(user), None)
                }
                5 => {
                    let theme = format!("t{i}");
                    conn.get(&format!("/app/set?theme={theme}"), Some(&c));
                    (c, None, Some(theme))
                }
                _ => (c, None, None),
            }
        })
        .collect()
}

/// Every session is valid, with its login and data.
fn assert_all_valid(port: u16, sessions: &[(String, Option<String>, Option<String>)]) {
    let mut conn = Conn::open(port);
    for (c, user, theme) in sessions {
        let r = conn.get("/", Some(c));
        assert_eq!(status(&r), "valid", "{c}");
        assert_eq!(r.header("X-User"), user.as_deref());
        assert_eq!(r.header("X-Theme"), theme.as_deref());
    }
}

#[test]
fn ten_thousand_sessions_survive_a_stop_and_a_kill() {
    let mut n = Nginx::prepare("state");
    fs::create_dir_all(n.dir.join("state")).unwrap();
    let http = conf(FIXED, "state=state/sessions.state state_interval=1s");
    n.write_conf(2, &http);
    n.spawn();
    let before = make_sessions(n.port, 10_000);
    n.stop();
    let log = n.error_log();
    assert!(log.contains("10000 sessions saved to"), "{log}");
    let file = n.dir.join("state/sessions.state");
    let mode = fs::metadata(&file).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    let raw = fs::read(&file).unwrap();
    assert!(!raw.windows(5).any(|w| w == b"u1000"), "a user name in clear");

    n.spawn();
    assert!(
        n.error_log().contains("10000 sessions loaded from"),
        "{}",
        n.error_log()
    );
    assert_all_valid(n.port, &before);

    // kill -9 of everything: what was saved before the last interval stays.
    let more = make_sessions(n.port, 200);
    sleep(Duration::from_millis(2_500));
    n.kill9();
    n.spawn();
    assert_all_valid(n.port, &before);
    assert_all_valid(n.port, &more);
    n.assert_clean_log();
}

#[test]
fn random_secret_and_name_survive_a_restart() {
    let mut n = Nginx::prepare("state-random");
    n.write_conf(1, &conf("", "state=sessions.state"));
    n.spawn();
    let before = make_sessions(n.port, 300);
    let name = before[1].0.split('=').next().unwrap().to_string();
    assert_eq!(name.len(), 16);
    n.stop();
    n.spawn();
    assert_all_valid(n.port, &before);
    assert_eq!(n.get("/").set_cookies(&name).len(), 1, "the same random name");
    n.assert_clean_log();
}

/// Starts nginx on `http` with `file` in place as its state file; the old
/// cookie `c` must find an empty zone, and the log say why, once.
fn starts_empty(tag: &str, http: &str, file: &[u8], c: &str, why: &str) {
    let mut n = Nginx::prepare(tag);
    fs::write(n.dir.join("sessions.state"), file).unwrap();
    n.write_conf(1, http);
    // `nginx -t` makes the zone but loads nothing into it.
    let (ok, out) = n.test_config();
    for text in [out, n.error_log()] {
        assert!(
            ok && !text.contains("starting empty") && !text.contains("loaded from"),
            "{tag}: {text}"
        );
    }
    n.spawn();
    let r = n.request(Request::get("/").cookie(c));
    assert_eq!(r.status, 200);
    assert_ne!(status(&r), "valid", "{tag}");
    let log = n.error_log();
    assert_eq!(log.matches(why).count(), 1, "{tag}: {log}");
    assert!(log.contains("starting empty"), "{log}");
    n.assert_clean_log();
}

#[test]
fn a_damaged_or_foreign_state_file_starts_an_empty_zone() {
    let mut n = Nginx::prepare("state-source");
    let http = conf(FIXED, "state=sessions.state");
    n.write_conf(1, &http);
    n.spawn();
    let c = cookie_of(&n.get("/"));
    n.stop();
    let good = fs::read(n.dir.join("sessions.state")).unwrap();

    starts_empty("truncated", &http, &good[..good.len() / 2], &c, "does not open");
    let other = conf(
        "sessions_secret another-secret; sessions_name sid;",
        "state=sessions.state",
    );
    starts_empty("other-secret", &other, &good, &c, "does not open");
    let mut v2 = good.clone();
    v2[8] = 2;
    starts_empty("version", &http, &v2, &c, "was written in format 2");
    starts_empty(
        "garbage",
        &http,
        b"not a state file",
        &c,
        "is not a sessions state file",
    );
    let random = conf("sessions_name sid;", "state=sessions.state");
    starts_empty("random", &random, &good, &c, "was sealed under a sessions_secret");

    // The good file still loads.
    let mut again = Nginx::prepare("state-good");
    fs::write(again.dir.join("sessions.state"), &good).unwrap();
    again.write_conf(1, &http);
    again.spawn();
    assert_eq!(status(&again.request(Request::get("/").cookie(&c))), "valid");
}

#[test]
fn a_state_file_nginx_cannot_write_is_logged_once_and_harms_nothing() {
    let mut n = Nginx::prepare("state-unwritable");
    n.write_conf(
        1,
        &conf(FIXED, "state=missing-dir/sessions.state state_interval=200ms"),
    );
    n.spawn();
    let c = cookie_of(&n.get("/"));
    sleep(Duration::from_millis(1_200));
    assert_eq!(status(&n.request(Request::get("/").cookie(&c))), "valid");
    let log = n.error_log();
    assert_eq!(log.matches("cannot write state file").count(), 1, "{log}");
    n.stop();
    assert_eq!(n.error_log().matches("cannot write state file").count(), 2);
    n.assert_clean_log();
}

#[test]
fn state_parameters_are_checked() {
    let n = Nginx::prepare("state-conf");
    for (snippet, expected) in [
        (
            "sessions_zone z:1m state=;",
            "invalid value \"state=\" in \"sessions_zone\" directive, the state file name is empty",
        ),
        (
            "sessions_zone z:1m state=a state_interval=0;",
            "invalid value \"state_interval=0\" in \"sessions_zone\" directive, it must not be 0",
        ),
        (
            "sessions_zone z:1m state_interval=5s;",
            "\"state_interval\" needs \"state\"",
        ),
        (
            "sessions_zone z:1m staet=x;",
            "invalid value \"staet=x\" in \"sessions_zone\" directive",
        ),
    ] {
        n.write_conf(1, snippet);
        let (ok, out) = n.test_config();
        assert!(!ok && out.contains(expected), "{snippet}: {out}");
    }
}

/// The cookie store with a state file, its login answer setting data.
const COOKIE_STORE: &str = "
    sessions_zone keep:1m state=sessions.state;
    server { listen 127.0.0.1:{port2}; sessions off;
             location /login { add_header X-Session-User $arg_user;
                               add_header X-Session-Set theme=dark; return 200; } }
    server { listen 127.0.0.1:{port}; root html;
             sessions on; sessions_store cookie; sessions_secret state-test-secret; sessions_name sid;
             add_header X-Session-Status $session_status always;
             add_header X-User $session_user always;
             add_header X-Theme $session_data_theme always;
             location /app/ { sessions_control_headers on; proxy_pass http://127.0.0.1:{port2}/; }
             location = /logout { sessions_logout; } }";

/// The cookie store's records and listed logins survive a stop and a
/// start: a logged-out copy stays dead (a login whose answer set data
/// broke the table, and a stop saved 1 entry of 4).
#[test]
fn cookie_store_records_survive_a_restart() {
    let mut n = Nginx::prepare("state-cookie");
    n.write_conf(1, COOKIE_STORE);
    n.spawn();
    let mut conn = Conn::open(n.port);
    let login = |conn: &mut Conn, user: &str| {
        let c = cookie_of(&conn.get("/", None));
        let r = conn.get(&format!("/app/login?user={user}"), Some(&c));
        assert_eq!(r.header("X-Theme"), Some("dark"));
        (c, cookie_of(&r))
    };
    let (alice_before, alice) = login(&mut conn, "alice");
    let (bob_before, bob) = login(&mut conn, "bob");
    assert_eq!(conn.get("/logout", Some(&bob)).status, 204);
    let carol = cookie_of(&conn.get("/", None));
    assert_eq!(conn.get("/logout", Some(&carol)).status, 204);
    drop(conn);
    n.stop();
    // Alice's and Bob's pre-login ids, Alice listed, Bob's and Carol's logouts.
    assert!(n.error_log().contains("5 sessions saved to"), "{}", n.error_log());
    n.spawn();
    assert!(
        n.error_log().contains("5 sessions loaded from"),
        "{}",
        n.error_log()
    );
    let mut conn = Conn::open(n.port);
    let r = conn.get("/", Some(&alice));
    assert_eq!((status(&r), r.header("X-User")), ("valid", Some("alice")));
    for (who, c, why) in [
        ("alice's pre-login cookie", &alice_before, "unknown"),
        ("bob's pre-login cookie", &bob_before, "unknown"),
        ("bob's logged-out cookie", &bob, "ended"),
        ("carol's anonymous logged-out cookie", &carol, "unknown"),
    ] {
        let r = conn.get("/", Some(c));
        assert_eq!((status(&r), r.header("X-User")), (why, None), "{who}");
    }
    n.assert_clean_log();
}

/// A state file path that is no regular file (a FIFO would block the
/// master in `open`, `/dev/zero` would be read without end): one `error`
/// line and an empty zone, and nginx starts.
#[test]
fn a_state_path_that_is_no_regular_file_starts_an_empty_zone() {
    let http = conf(FIXED, "state=sessions.state");
    for (tag, make) in [
        ("fifo", "mkfifo"),
        ("device", "ln -s /dev/zero"),
        ("directory", "mkdir"),
    ] {
        let mut n = Nginx::prepare(&format!("state-{tag}"));
        let path = n.dir.join("sessions.state");
        let mut words = make.split(' ');
        let ok = std::process::Command::new(words.next().unwrap())
            .args(words)
            .arg(&path)
            .status()
            .unwrap();
        assert!(ok.success(), "{make}");
        n.write_conf(1, &http);
        n.spawn();
        assert_eq!(status(&n.get("/")), "new", "{tag}");
        let log = n.error_log();
        let line = "state file \"";
        let errors: Vec<&str> = log.lines().filter(|l| l.contains(line)).collect();
        assert_eq!(errors.len(), 1, "{tag}: {log}");
        assert!(
            errors[0].contains("[error]") && errors[0].contains("is not a regular file; starting empty"),
            "{tag}: {log}"
        );
        // A directory cannot be replaced by the file at stop; the others are.
        drop(n);
    }
}
