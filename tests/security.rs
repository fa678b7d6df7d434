//! What crosses a boundary is checked as strictly as when it was written:
//! values read back from Redis (the adopted `random` name and secret,
//! session records), and the secret kept out of `nginx.conf` in a file.
//! These tests back docs/SECURITY.md.

mod common;

/// Each test configures its own store.
const SUITE: common::Suite = common::Suite::Own;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{Nginx, Redis, Request, Response};
use sessions_core::codec::cookie::encode_value;
use sessions_core::engine::fingerprint;
use sessions_core::model::record::{Entry, Record};
use sessions_core::primitives::id::{fill_random, RandomPool};
use sessions_core::{Handle, Keyring, SessionId};

/// Sessions in `redis` with the default `random` secret and name.
fn random_conf(redis: &Redis) -> String {
    format!(
        "sessions on; sessions_store redis; sessions_redis_server 127.0.0.1:{};
         server {{ listen 127.0.0.1:{{port}}; root html;
                  add_header X-Session-Status $session_status always;
                  add_header X-User $session_user always;
                  add_header X-K $session_data_k always; }}",
        redis.port
    )
}

/// `SET key value [PX ms]` with any bytes, over RESP (redis-cli's
/// arguments cannot carry every byte).
fn redis_set(redis: &Redis, key: &[u8], value: &[u8], px: Option<u64>) {
    let mut args: Vec<Vec<u8>> = vec![b"SET".to_vec(), key.to_vec(), value.to_vec()];
    if let Some(ms) = px {
        args.push(b"PX".to_vec());
        args.push(ms.to_string().into_bytes());
    }
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in &args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    let mut s = TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&out).unwrap();
    let mut reply = [0u8; 5];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"+OK\r\n");
}

/// `GET key` with any bytes in the value, over RESP.
fn redis_get(redis: &Redis, key: &str) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes())
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let len: i64 = std::str::from_utf8(&head[1..head.len() - 2])
        .unwrap()
        .parse()
        .unwrap();
    let len = usize::try_from(len).ok()?;
    let mut value = vec![0u8; len + 2];
    s.read_exact(&mut value).unwrap();
    value.truncate(len);
    Some(value)
}

fn no_injection(r: &Response) {
    assert_eq!(r.header("X-Injected"), None, "{:?}", r.headers);
    for (k, v) in &r.headers {
        assert!(!k.contains("Injected") && !v.contains("Injected"), "{k}: {v}");
    }
}

/// Whatever sits at the adopted `random` keys is checked as the module
/// writes it (64 hex digits, 16 letters and digits); a value that fails
/// is replaced with one clear log line, never used.
#[test]
fn an_unsound_random_name_or_secret_in_redis_is_replaced_not_used() {
    let long = "n".repeat(5000);
    let cases: [(&str, Option<&str>); 5] = [
        ("random-name", Some("a\r\nX-Injected: yes")),
        ("random-name", Some("abcdefgh; Domain=evil.example")),
        ("random-name", Some(&long)),
        ("random-name", None), // a hash, not a string
        ("random-secret", Some("short")),
    ];
    for (key, bad) in cases {
        let redis = Redis::start(&[]);
        let full = format!("sessions:{key}");
        match bad {
            Some(v) => redis_set(&redis, full.as_bytes(), v.as_bytes(), None),
            None => assert_eq!(redis.cli(&["HSET", &full, "a", "b"]), "1"),
        }
        let n = Nginx::start(&random_conf(&redis));
        let r = n.get("/");
        assert_eq!(r.status, 200, "{}", n.error_log());
        no_injection(&r);
        let set = r.all("Set-Cookie");
        assert_eq!(set.len(), 1, "{set:?}");
        let name = set[0].split('=').next().unwrap();
        assert!(
            name.len() == 16 && name.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{key}: cookie name {name:?}"
        );
        assert!(!set[0].contains("evil"), "{}", set[0]);
        assert_eq!(redis.cli(&["GET", "sessions:random-name"]), name);
        let secret = redis.cli(&["GET", "sessions:random-secret"]);
        assert!(
            secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit()),
            "{key}: {secret}"
        );
        let log = n.error_log();
        assert_eq!(
            log.matches(&format!(
                "kept in Redis at \"{full}\" is not one this module writes; replaced"
            ))
            .count(),
            1,
            "{log}"
        );
        // The session works.
        let c = r.cookie_pair(name);
        let again = n.request(Request::get("/").cookie(&c));
        assert_eq!(again.header("X-Session-Status"), Some("valid"));
        n.assert_clean_log();
    }
}

/// A session forged in Redis with the `random` secret kept there: the
/// threat the start-up warning and the README name, and proof that a
/// record's user name and data are checked again when read.
fn forge(redis: &Redis, keys: &Keyring, name: &str, user: &[u8], data: &[u8]) -> String {
    let mut id = SessionId([0; 16]);
    fill_random(&mut id.0).unwrap();
    let mut handle = Handle([0; 8]);
    fill_random(&mut handle.0).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut rec = Record::new(handle, now, &[127, 0, 0, 1], fingerprint(b"itest/1"));
    rec.log_in(user, false).unwrap();
    let seal = keys.primary().seal();
    let mut addr = Vec::new();
    seal.address(b"sessions:", &id, &mut addr);
    let value = seal
        .seal(&id, &addr, &Entry::Live(rec), data, &mut RandomPool::new())
        .unwrap();
    redis_set(redis, &addr, &value, Some(600_000));
    let mut cookie = format!("{name}=").into_bytes();
    encode_value(keys, name.as_bytes(), &id, &mut cookie);
    String::from_utf8(cookie).unwrap()
}

#[test]
fn with_random_and_redis_a_redis_writer_forges_but_cannot_inject() {
    let redis = Redis::start(&[]);
    let n = Nginx::start(&random_conf(&redis));
    let log = n.error_log();
    assert!(
        log.contains("\"sessions_secret random\" with \"sessions_store redis\" keeps the secret in Redis"),
        "the operator is warned at start-up:\n{log}"
    );
    assert!(
        !log.contains("will not be shared with other nginx instances"),
        "with Redis, random values are shared: {log}"
    );
    let name = n.get("/").all("Set-Cookie")[0]
        .split('=')
        .next()
        .unwrap()
        .to_string();
    let secret = redis.cli(&["GET", "sessions:random-secret"]);
    let keys = Keyring::from_secrets(&[secret.as_bytes()]).unwrap();
    let status = |c: &str| n.request(Request::get("/").cookie(c));

    // What the README warns of: Redis read and write access with `random`.
    let r = status(&forge(&redis, &keys, &name, b"mallory", b""));
    assert_eq!(
        (r.header("X-Session-Status"), r.header("X-User")),
        (Some("valid"), Some("mallory"))
    );
    let data = [1, b'k', 2, 0, b'o', b'k'];
    let r = status(&forge(&redis, &keys, &name, b"mallory", &data));
    assert_eq!(r.header("X-K"), Some("ok"));

    // What no one can do: a record the module would never write.
    let mut bad_data = vec![1, b'k', 20, 0];
    bad_data.extend_from_slice(b"v\r\nX-Injected: yes!");
    for (user, data) in [
        (&b"a\r\nX-Injected: yes"[..], &[][..]),
        (b"", &[]),
        (b"alice", &bad_data[..]),
        (b"alice", &[7, 7, 7]),
    ] {
        let r = status(&forge(&redis, &keys, &name, user, data));
        no_injection(&r);
        assert_eq!(r.header("X-Session-Status"), Some("unknown"), "{user:?} {data:?}");
        assert_eq!(r.header("X-User"), None);
    }
    n.assert_clean_log();

    // With a configured secret there is no such warning.
    let conf = random_conf(&redis).replace("sessions on;", "sessions on; sessions_secret a-real-secret;");
    let quiet = Nginx::start(&conf);
    assert!(!quiet.error_log().contains("keeps the secret in Redis"));
}

/// `sessions_secret_file`: the secret out of `nginx.conf`, rotation by
/// its lines, errors that name a line and never show a secret.
#[test]
fn the_secret_can_live_in_a_file() {
    let mut n = Nginx::prepare("secretfile");
    let file = n.dir.join("secret.txt");
    let conf = |secret: &str| {
        format!(
            "sessions on; {secret} sessions_name sid;
             server {{ listen 127.0.0.1:{{port}}; root html;
                      add_header X-Session-Status $session_status always; }}"
        )
    };
    n.write_conf(1, &conf("sessions_secret old-secret-in-conf;"));
    n.spawn();
    let old = n.get("/").cookie_pair("sid");

    // Rotation through the file: the new secret signs, the old one verifies.
    fs::write(&file, "new-secret-from-file\r\n\nold-secret-in-conf\n").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    n.reload(1, &conf("sessions_secret_file secret.txt;"));
    let r = n.request(Request::get("/").cookie(&old));
    assert_eq!(r.header("X-Session-Status"), Some("valid"), "{}", n.error_log());
    let new = r.cookie_pair("sid");
    assert_ne!(new, old, "re-issued under the file's first secret");
    let fresh = n.get("/").cookie_pair("sid");

    // Another nginx with the file's first secret in its configuration
    // verifies these cookies (a zone of its own: "unknown", not "invalid").
    let other = Nginx::start(&conf("sessions_secret new-secret-from-file;"));
    let r = other.request(Request::get("/").cookie(&fresh));
    assert_eq!(r.header("X-Session-Status"), Some("unknown"));
    let wrong = Nginx::start(&conf("sessions_secret another-secret;"));
    let r = wrong.request(Request::get("/").cookie(&fresh));
    assert_eq!(r.header("X-Session-Status"), Some("invalid"));

    // Errors name the line, never its contents; a file others can read is
    // worth a warning.
    let t = Nginx::prepare("secretfile-t");
    let tfile = t.dir.join("secret.txt");
    t.write_conf(1, &conf("sessions_secret_file secret.txt;"));
    fs::write(&tfile, "first-secret-value\nbad\u{1}secret-value\n").unwrap();
    let (ok, out) = t.test_config();
    assert!(!ok);
    assert!(
        out.contains("line 2: the secret contains control characters"),
        "{out}"
    );
    assert!(!out.contains("secret-value"), "a secret shown: {out}");
    fs::write(&tfile, "\n").unwrap();
    let (ok, out) = t.test_config();
    assert!(!ok && out.contains("the file holds no secret"), "{out}");
    fs::write(&tfile, "readable-secret-value\n").unwrap();
    fs::set_permissions(&tfile, fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, out) = t.test_config();
    assert!(ok && out.contains("can be read by any user"), "{out}");
    assert!(!out.contains("readable-secret-value"));
    for log in [n.error_log(), t.error_log()] {
        for secret in [
            "new-secret-from-file",
            "old-secret-in-conf",
            "readable-secret-value",
        ] {
            assert!(!log.contains(secret), "{secret} logged");
        }
    }
    n.assert_clean_log();
}

/// The limit the README states: with a configured secret, a Redis writer
/// cannot make a session, but can put back a value it copied before a
/// logout (values carry no version), which revives that session.
#[test]
fn a_redis_writer_can_roll_a_session_back_but_not_make_one() {
    let redis = Redis::start(&[]);
    let n = Nginx::start(&format!(
        "sessions on; sessions_secret rollback-test-secret; sessions_name sid;
         sessions_store redis; sessions_redis_server 127.0.0.1:{};
         server {{ listen 127.0.0.1:{{port2}};
                  location /login {{ add_header X-Session-User alice; return 200; }} }}
         server {{ listen 127.0.0.1:{{port}}; root html;
                  add_header X-Session-Status $session_status always;
                  add_header X-User $session_user always;
                  location /app/ {{ sessions_control_headers on; proxy_pass http://127.0.0.1:{{port2}}/; }}
                  location = /logout {{ sessions_logout; }} }}",
        redis.port
    ));
    let c = n.get("/").cookie_pair("sid");
    let c = n
        .request(Request::get("/app/login").cookie(&c))
        .cookie_pair("sid");
    let on = |c: &str| n.request(Request::get("/").cookie(c));
    assert_eq!(on(&c).header("X-User"), Some("alice"));
    let key = redis
        .cli(&["--scan"])
        .lines()
        .find(|k| !k.contains(":user:") && !k.contains(":handle:") && redis_get(&redis, k).is_some())
        .expect("the session's key")
        .to_string();
    let saved = redis_get(&redis, &key).unwrap();
    assert_eq!(n.request(Request::get("/logout").cookie(&c)).status, 204);
    assert_eq!(on(&c).header("X-Session-Status"), Some("ended"));
    // A value of the writer's own making is no session...
    let mut forged = saved.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    redis_set(&redis, key.as_bytes(), &forged, Some(600_000));
    assert_eq!(on(&c).header("X-Session-Status"), Some("unknown"));
    // ...but the copy taken before the logout opens again.
    redis_set(&redis, key.as_bytes(), &saved, Some(600_000));
    let r = on(&c);
    assert_eq!(
        (r.header("X-Session-Status"), r.header("X-User")),
        (Some("valid"), Some("alice"))
    );
}

/// A client's `X-Session-*` headers never reach an upstream, whatever the
/// spelling nginx accepts with `underscores_in_headers on`: FastCGI, uwsgi
/// and SCGI would pass `X_Session_User` on as `HTTP_X_SESSION_USER`.
#[test]
fn control_headers_spelt_with_underscores_never_reach_an_upstream() {
    let n = Nginx::start(
        "underscores_in_headers on;
         server { listen 127.0.0.1:{port2}; sessions off;
                  location / { return 200 \"[$http_x_session_user][$http_x_session_set]$http_x_other\"; } }
         server { listen 127.0.0.1:{port}; sessions on; sessions_secret underscores-test;
                  location / { proxy_pass http://127.0.0.1:{port2}; } }",
    );
    // The upstream does see an underscored header that is not ours.
    let r = n.request(Request::get("/").header("X_Other", "seen"));
    assert_eq!((r.status, r.text().as_str()), (200, "[][]seen"));
    for name in [
        "X-Session-User",
        "x_session_user",
        "X_Session_User",
        "X-Session_User",
        "X_SESSION-USER",
    ] {
        let r = n.request(
            Request::get("/")
                .header(name, "mallory")
                .header(&format!("{}Set", &name[..name.len() - 4]), "role=admin"),
        );
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "[][]"),
            "{name} reached the upstream"
        );
    }
    n.assert_clean_log();
}
