// `sessions_store cookie`: what only the cookie store has. The scenario,
// login and admin suites run on it too (`*_cookie.rs`).

mod common;

/// Each test configures its own store.
const SUITE: common::Suite = common::Suite::Own;

use common::{Conn, Nginx, Request, Response};

const CONF: &str = "
    sessions_zone cookies:1m;
    server {
        listen 127.0.0.1:{port2};
        location /login { add_header X-Session-User $arg_user; return 200 \"ok\\n\"; }
        location /set { add_header X-Session-Set \"$arg_k=$arg_v\"; return 200 \"set\\n\"; }
        location /unset { add_header X-Session-Unset $arg_k; return 200 \"unset\\n\"; }
    }
    server {
        listen 127.0.0.1:{port};
        root html;
        sessions on; sessions_store cookie; sessions_secret cookie-store-test-secret;
        sessions_name sid; sessions_cookie_max_data 4656;
        add_header X-Session-Status $session_status always;
        add_header X-Session-Id $session_id always;
        add_header X-User $session_user always;
        add_header X-K0 $session_data_k0 always;
        location /app/ { sessions_control_headers on; proxy_pass http://127.0.0.1:{port2}/; }
        location = /logout { sessions_logout; }
    }";

fn status(r: &Response) -> &str {
    r.header("X-Session-Status").unwrap()
}

/// The `Cookie` header a browser would send after `r`: `jar` updated with
/// every cookie `r` sets, deleted ones dropped.
fn keep(jar: &mut Vec<(String, String)>, r: &Response) {
    for set in r.all("Set-Cookie") {
        let pair = set.split(';').next().unwrap();
        let (k, v) = pair.split_once('=').unwrap();
        jar.retain(|(n, _)| n != k);
        if !set.contains("Max-Age=0") {
            jar.push((k.to_string(), v.to_string()));
        }
    }
}

fn header(jar: &[(String, String)]) -> String {
    jar.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn browse(n: &Nginx, path: &str, jar: &mut Vec<(String, String)>) -> Response {
    let r = n.request(Request::get(path).cookie(&header(jar)));
    keep(jar, &r);
    r
}

fn names(jar: &[(String, String)]) -> Vec<&str> {
    let mut v: Vec<&str> = jar.iter().map(|(k, _)| k.as_str()).collect();
    v.sort();
    v
}

/// 16 values of 250 bytes: more than one cookie holds.
fn grow(n: &Nginx, jar: &mut Vec<(String, String)>) {
    for i in 0..16 {
        let v = format!("{i:x}").repeat(250)[..250].to_string();
        browse(n, &format!("/app/set?k=k{i}&v={v}"), jar);
    }
}

#[test]
fn a_copied_cookie_is_dead_after_logout() {
    let n = Nginx::start(CONF);
    let mut jar = Vec::new();
    browse(&n, "/", &mut jar);
    browse(&n, "/app/login?user=alice", &mut jar);
    let copy = header(&jar);
    let r = n.request(Request::get("/").cookie(&copy));
    assert_eq!((status(&r), r.header("X-User")), ("valid", Some("alice")));
    let r = browse(&n, "/logout", &mut jar);
    assert_eq!(r.status, 204);
    assert!(jar.is_empty(), "the logout deletes the cookie: {jar:?}");
    let r = n.request(Request::get("/").cookie(&copy));
    assert_eq!(status(&r), "ended", "the copy no longer opens a session");
    assert_eq!(r.header("X-User"), None, "nobody is logged in");
    // It stays dead across a reload: the record is in the zone.
    n.reload(1, CONF);
    assert_eq!(status(&n.request(Request::get("/").cookie(&copy))), "ended");
}

#[test]
fn chunks_appear_and_disappear_with_the_data() {
    let n = Nginx::start(CONF);
    let mut jar = Vec::new();
    browse(&n, "/", &mut jar);
    assert_eq!(names(&jar), ["sid"]);
    grow(&n, &mut jar);
    assert_eq!(names(&jar), ["sid", "sid_1"], "two cookies hold 4 KB of data");
    for (k, v) in &jar {
        assert!(k.len() + 1 + v.len() <= 4000, "{k} is {} bytes", v.len());
    }
    let r = browse(&n, "/", &mut jar);
    assert_eq!((status(&r), r.header("X-K0").map(str::len)), ("valid", Some(250)));
    // Shrinking: the second cookie is deleted, not left behind stale.
    let mut deleted = 0;
    for i in 0..12 {
        let r = browse(&n, &format!("/app/unset?k=k{i}"), &mut jar);
        let sets = r.all("Set-Cookie");
        deleted += sets
            .iter()
            .filter(|c| c.starts_with("sid_1=;") && c.contains("Max-Age=0"))
            .count();
    }
    assert_eq!(deleted, 1, "sid_1 is deleted once, when it is no longer needed");
    assert_eq!(names(&jar), ["sid"]);
    let r = browse(&n, "/", &mut jar);
    assert_eq!((status(&r), r.header("X-K0")), ("valid", None));
    n.assert_clean_log();
}

#[test]
fn a_byte_changed_anywhere_in_any_chunk_is_refused() {
    let n = Nginx::start(CONF);
    let mut jar = Vec::new();
    browse(&n, "/", &mut jar);
    grow(&n, &mut jar);
    assert_eq!(jar.len(), 2);
    let mut tried = 0;
    for chunk in 0..jar.len() {
        let value = jar[chunk].1.clone().into_bytes();
        for pos in (0..value.len()).step_by(41).chain([value.len() - 1]) {
            let mut bad = value.clone();
            bad[pos] = if bad[pos] == b'A' { b'B' } else { b'A' };
            let mut forged = jar.clone();
            forged[chunk].1 = String::from_utf8(bad).unwrap();
            let r = n.request(Request::get("/").cookie(&header(&forged)));
            assert_eq!(status(&r), "invalid", "chunk {chunk}, byte {pos}");
            assert_eq!(r.header("X-K0"), None);
            tried += 1;
        }
    }
    assert!(tried > 100);
    // A missing chunk, or the chunks swapped, do not open either.
    let r = n.request(Request::get("/").cookie(&format!("sid={}", jar[0].1)));
    assert_eq!(status(&r), "invalid");
    let swapped = format!("sid={}; sid_1={}", jar[1].1, jar[0].1);
    assert_eq!(status(&n.request(Request::get("/").cookie(&swapped))), "invalid");
    assert_eq!(
        status(&n.request(Request::get("/").cookie(&header(&jar)))),
        "valid"
    );
}

#[test]
fn data_over_the_limit_is_refused_and_the_session_kept() {
    let n = Nginx::start(&CONF.replace("sessions_cookie_max_data 4656", "sessions_cookie_max_data 1k"));
    let mut jar = Vec::new();
    browse(&n, "/", &mut jar);
    browse(&n, "/app/login?user=alice", &mut jar);
    grow(&n, &mut jar);
    let log = n.error_log();
    assert!(
        log.contains("would pass \"sessions_cookie_max_data\" (1024 bytes); not stored"),
        "{log}"
    );
    let r = browse(&n, "/", &mut jar);
    assert_eq!((status(&r), r.header("X-User")), ("valid", Some("alice")));
    assert_eq!(r.header("X-K0").map(str::len), Some(250), "what fitted is kept");
    assert_eq!(names(&jar), ["sid"]);
}

#[test]
fn nothing_in_the_cookie_is_readable() {
    let n = Nginx::start(CONF);
    let mut jar = Vec::new();
    browse(&n, "/", &mut jar);
    browse(&n, "/app/login?user=alice-the-admin", &mut jar);
    browse(&n, "/app/set?k=k0=secret-value", &mut jar);
    let all = header(&jar);
    assert!(!all.contains("alice") && !all.contains("secret"), "{all}");
    let r = browse(&n, "/", &mut jar);
    assert_eq!(r.header("X-User"), Some("alice-the-admin"));
    let log = n.error_log();
    assert!(!log.contains(&jar[0].1[5..40]), "cookie values are never logged");
}

#[test]
fn bad_max_data_fails_config_test() {
    let n = Nginx::prepare("badcookie");
    for bad in ["5k", "4657", "-1", "lots"] {
        n.write_conf(
            1,
            &format!("sessions_store cookie; sessions_cookie_max_data {bad};"),
        );
        let (ok, out) = n.test_config();
        assert!(!ok, "{bad}");
        let want = format!("invalid value \"{bad}\" in \"sessions_cookie_max_data\" directive");
        assert!(out.contains(&want), "{out}");
    }
    n.write_conf(1, "sessions_store disk;");
    let (ok, out) = n.test_config();
    assert!(!ok && out.contains("\"shm\", \"redis\" or \"cookie\""), "{out}");
}

#[test]
fn ended_sessions_and_the_login_list_survive_a_restart_with_a_state_file() {
    let mut n = Nginx::prepare("cookie-state");
    let conf = CONF
        .replace(
            "sessions_zone cookies:1m;",
            "sessions_zone cookies:1m state=sessions.state;",
        )
        .replace(
            "location = /logout { sessions_logout; }",
            "location = /logout { sessions_logout; }
             location = /admin { sessions off; allow 127.0.0.1; deny all; sessions_admin; }",
        );
    n.write_conf(1, &conf);
    n.spawn();
    let (mut ended, mut kept) = (Vec::new(), Vec::new());
    for jar in [&mut ended, &mut kept] {
        browse(&n, "/", jar);
        browse(&n, "/app/login?user=alice", jar);
    }
    let copy = header(&ended);
    browse(&n, "/logout", &mut ended);
    n.stop();
    n.spawn();
    assert_eq!(status(&n.request(Request::get("/").cookie(&copy))), "ended");
    let r = browse(&n, "/", &mut kept);
    assert_eq!((status(&r), r.header("X-User")), ("valid", Some("alice")));
    let listed = n.get("/admin?user=alice").text();
    assert_eq!(listed.matches("\"id\"").count(), 1, "{listed}");
}

/// Asks `n` with `cookie` until its session status is no longer `valid`
/// (at most `secs`); the status then.
fn until_refused(n: &Nginx, cookie: &str, secs: u64) -> String {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let s = status(&n.request(Request::get("/").cookie(cookie))).to_string();
        if s != "valid" || std::time::Instant::now() > end {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn delete(path: &str) -> Request {
    Request {
        method: "DELETE".into(),
        ..Request::get(path)
    }
}

fn login_on(n: &Nginx, user: &str) -> String {
    let mut jar = Vec::new();
    browse(n, "/", &mut jar);
    browse(n, &format!("/app/login?user={user}"), &mut jar);
    header(&jar)
}

fn valid_on(n: &Nginx, cookie: &str) -> bool {
    status(&n.request(Request::get("/").cookie(cookie))) == "valid"
}

/// A logout on `a` and a "log out everywhere" on `b` each end, on the
/// other instance, a cookie that instance accepted. The two cookies.
fn logout_and_revocation_reach_the_other(a: &Nginx, b: &Nginx) -> (String, String) {
    let alice = login_on(a, "alice");
    assert!(valid_on(b, &alice), "one secret and name: B opens A's cookie");
    assert_eq!(a.request(Request::get("/logout").cookie(&alice)).status, 204);
    assert_eq!(until_refused(b, &alice, 5), "ended");
    // B never saw bob's session.
    let bob = login_on(a, "bob");
    assert!(valid_on(a, &bob));
    let r = b.request(delete("/admin?user=bob"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(until_refused(a, &bob, 5), "ended");
    (alice, bob)
}

fn shared_conf(redis: &str) -> String {
    CONF.replace(
        "sessions_zone cookies:1m;",
        &format!("sessions_zone cookies:1m; {redis}"),
    )
    .replace(
        "location = /logout { sessions_logout; }",
        "location = /logout { sessions_logout; }
             location = /admin { sessions off; allow 127.0.0.1; deny all; sessions_admin; }",
    )
}

#[test]
fn a_logout_holds_across_instances_sharing_a_redis_cluster() {
    let cmds = [
        common::acl_commands(),
        common::acl_cookie_commands(),
        &["+cluster|slots"],
    ]
    .concat();
    let (_nodes, addrs) = common::start_cluster(&cmds);
    let conf = shared_conf(&format!(
        "sessions_redis_cluster {} {}; sessions_redis_username nginx; sessions_redis_password nginx-pw;",
        addrs[0], addrs[1]
    ));
    let (a, b) = (Nginx::start(&conf), Nginx::start(&conf));
    logout_and_revocation_reach_the_other(&a, &b);
    for n in [&a, &b] {
        assert!(!n.error_log().contains("NOPERM"), "{}", n.error_log());
    }
}

#[test]
fn a_logout_holds_on_every_instance_sharing_redis() {
    // nginx's user may run exactly the documented commands; the test's, all.
    let acl = [
        common::ACL_USERS,
        common::acl_commands(),
        common::acl_cookie_commands(),
    ]
    .concat();
    let mut redis = common::Redis::start(&acl);
    redis.auth = common::APP_AUTH.map(String::from).to_vec();
    let conf = shared_conf(&format!(
        "sessions_redis_server 127.0.0.1:{}; sessions_redis_username nginx; sessions_redis_password nginx-pw;",
        redis.port
    ));
    let (a, b) = (Nginx::start(&conf), Nginx::start(&conf));
    let login = |user: &str| login_on(&a, user);
    let (alice, bob) = logout_and_revocation_reach_the_other(&a, &b);
    // Redis down at the logout: the record is kept and arrives when it is back.
    let carol = login("carol");
    assert!(valid_on(&b, &carol));
    redis.shutdown_saving();
    assert_eq!(a.request(Request::get("/logout").cookie(&carol)).status, 204);
    assert_eq!(
        status(&a.request(Request::get("/").cookie(&carol))),
        "ended",
        "A at once"
    );
    redis.run();
    assert_eq!(until_refused(&b, &carol, 10), "ended");

    // An instance started afterwards knows every record from the start.
    let c = Nginx::start(&conf);
    for cookie in [&alice, &bob, &carol] {
        assert_eq!(until_refused(&c, cookie, 5), "ended");
    }
    // Sessions nobody ended are untouched everywhere.
    let dave = login("dave");
    for n in [&a, &b, &c] {
        assert!(valid_on(n, &dave));
    }
    // Records written to Redis by anyone else are ignored.
    redis.cli(&[
        "XADD",
        "sessions:revoked-log",
        "*",
        "m",
        "forged-record-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ]);
    redis.cli(&["ZADD", "sessions:revoked", "+inf", "garbage"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    for n in [&a, &b, &c] {
        assert!(valid_on(n, &dave));
    }
    // What Redis holds is sealed: no user name, no session id in clear.
    let dump = redis.cli(&["--no-raw", "ZRANGE", "sessions:revoked", "0", "-1"]);
    assert!(!dump.contains("alice") && !dump.contains("bob"), "{dump}");
    for n in [&a, &b, &c] {
        assert!(!n.error_log().contains("NOPERM"), "{}", n.error_log());
    }
}

/// A 64k zone (about 220 entries) whose login answer also sets data.
const SMALL: &str = "
    sessions_zone ckf:64k;
    server {
        listen 127.0.0.1:{port2};
        location /login {
            add_header X-Session-User $arg_user; add_header X-Session-Set color=blue;
            return 200 \"ok\\n\";
        }
    }
    server {
        listen 127.0.0.1:{port};
        root html;
        sessions on; sessions_store cookie; sessions_secret flood-test; sessions_name sid;
        add_header X-Session-Status $session_status always;
        add_header X-User $session_user always;
        location /app/ { sessions_control_headers on; proxy_pass http://127.0.0.1:{port2}/; }
        location = /logout { sessions_logout; }
        location = /admin/sessions { sessions off; allow 127.0.0.1; deny all; sessions_admin; }
    }";

fn log_in(n: &Nginx, user: &str) -> String {
    let c = n.get("/").cookie_pair("sid");
    let r = n.request(Request::get(&format!("/app/login?user={user}")).cookie(&c));
    assert_eq!(r.header("X-User"), Some(user));
    r.cookie_pair("sid")
}

/// A login whose answer sets data, then logouts without a cookie: the
/// table's protected list came apart and workers died (index out of
/// bounds) from about the 160th.
#[test]
fn logouts_without_a_cookie_after_a_login_with_data_crash_no_worker() {
    let n = Nginx::start(SMALL);
    let alice = log_in(&n, "alice");
    let mut conn = Conn::open(n.port);
    for i in 0..600 {
        let r = conn
            .try_get("/logout", None)
            .unwrap_or_else(|e| panic!("logout {i} got no answer ({e}):\n{}", n.error_log()));
        assert_eq!(r.status, 204, "logout {i}");
    }
    let r = n.request(Request::get("/").cookie(&alice));
    assert_eq!((status(&r), r.header("X-User")), ("valid", Some("alice")));
    n.assert_clean_log();
}

/// Anyone can start sessions and log them out, without end: their records
/// push out only each other, never a logged-in user's logout or a "log out
/// everywhere".
#[test]
fn strangers_cannot_push_out_the_records_of_real_logouts() {
    let n = Nginx::start(SMALL);
    let alice = log_in(&n, "alice");
    assert_eq!(n.request(Request::get("/logout").cookie(&alice)).status, 204);
    let bob = log_in(&n, "bob");
    let mut req = Request::get("/admin/sessions?user=bob");
    req.method = "DELETE".into();
    assert_eq!(n.request(req).status, 200);
    for c in [&alice, &bob] {
        assert_eq!(status(&n.request(Request::get("/").cookie(c))), "ended");
    }
    let early = n.get("/").cookie_pair("sid");
    assert_eq!(n.request(Request::get("/logout").cookie(&early)).status, 204);
    // Three times the zone's entries of each kind of stranger's logout.
    let mut conn = Conn::open(n.port);
    for _ in 0..700 {
        let r = conn.get("/", None);
        let c = r.cookie_pair("sid");
        assert_eq!(conn.get("/logout", Some(&c)).status, 204);
        assert_eq!(conn.get("/logout", None).status, 204);
    }
    for (who, c) in [("alice", &alice), ("bob", &bob)] {
        let r = n.request(Request::get("/").cookie(c));
        assert_eq!(
            (status(&r), r.header("X-User")),
            ("ended", None),
            "{who}'s copy opened again"
        );
    }
    // The stranger's own first record was pushed out by its later ones:
    // what the README says a flood can do.
    assert_eq!(status(&n.request(Request::get("/").cookie(&early))), "valid");
    n.assert_clean_log();
}
