//! Test harness: a real nginx with the built module, on free loopback ports,
//! and a small HTTP/1.1 client that shows every header as sent.
#![allow(dead_code)]

pub mod oidc;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// `target/<profile>`, where the module `.so` and nginx's build live.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// The nginx binary: `$NGINX_BIN`, else the one the vendored build made.
pub fn nginx_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NGINX_BIN") {
        return p.into();
    }
    PathBuf::from(env!("DEP_NGINX_BUILD_DIR")).join("nginx")
}

/// The module: `$SESSIONS_MODULE`, else the one built with these tests.
pub fn module_path() -> PathBuf {
    if let Some(p) = std::env::var_os("SESSIONS_MODULE") {
        return p.into();
    }
    profile_dir().join("libngx_http_sessions_module.so")
}

static NEXT_PORT: AtomicU32 = AtomicU32::new(0);

/// A port nobody listens on right now, unique within this test process and
/// below the kernel's ephemeral range (32768+), from which client sockets
/// and `bind(0)` draw, so parallel tests never race for one port.
pub fn free_port() -> u16 {
    let base = 20_000 + (std::process::id() % 50) * 240;
    loop {
        let n = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        let port = u16::try_from(base + n % 12_000).expect("port range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `http` with the main server's `listen {port}` given `reuseport`, so that
/// connections spread over the workers.
pub fn spread_over_workers(http: &str) -> String {
    http.replace("listen 127.0.0.1:{port};", "listen 127.0.0.1:{port} reuseport;")
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A fresh directory under `target/` for one nginx instance.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let dir = profile_dir()
        .join("itest")
        .join(format!("{tag}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("logs")).unwrap();
    fs::create_dir_all(dir.join("html/dir")).unwrap();
    fs::write(dir.join("html/index.html"), "hello\n").unwrap();
    fs::write(dir.join("html/dir/index.html"), "dir\n").unwrap();
    dir
}

/// A running nginx; stopped when dropped.
pub struct Nginx {
    pub dir: PathBuf,
    pub port: u16,
    /// Spare ports the config may use as `{port2}`, `{port3}`.
    pub port2: u16,
    pub port3: u16,
    child: Option<Child>,
    /// Log lines a crash check lets through (see `expect_in_log`).
    expected: Vec<String>,
}

/// As root, workers would run as `nobody`, which may not read a checkout
/// under a private home directory: keep them as the user running the tests.
fn user_directive() -> &'static str {
    use std::os::unix::fs::MetadataExt;
    match fs::metadata("/proc/self").map(|m| m.uid()) {
        Ok(0) => "user root root;",
        _ => "",
    }
}

/// `{port}`, `{port2}`, `{port3}` and `{dir}` in `http` are substituted.
pub fn main_conf(workers: u32, http: &str) -> String {
    format!(
        "load_module {module};\n\
         {user}\n\
         worker_processes {workers};\n\
         error_log logs/error.log info;\n\
         pid logs/nginx.pid;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
         {store}\
         access_log off; keepalive_requests 1000000;\n\
         client_body_temp_path tmp_body; proxy_temp_path tmp_proxy;\n\
         fastcgi_temp_path tmp_fcgi; uwsgi_temp_path tmp_uwsgi; scgi_temp_path tmp_scgi;\n\
         {http}\n}}\n",
        module = module_path().display(),
        user = user_directive(),
        store = suite_store(),
    )
}

impl Nginx {
    /// Starts nginx with one worker and `http` as the body of the `http` block.
    pub fn start(http: &str) -> Self {
        Self::start_with(1, http)
    }

    pub fn start_with(workers: u32, http: &str) -> Self {
        let mut n = Self::prepare("nginx");
        n.write_conf(workers, http);
        n.spawn();
        n
    }

    /// Allocates a directory and ports without starting anything.
    pub fn prepare(tag: &str) -> Self {
        Self {
            dir: scratch_dir(tag),
            port: free_port(),
            port2: free_port(),
            port3: free_port(),
            child: None,
            expected: Vec::new(),
        }
    }

    pub fn expand(&self, http: &str) -> String {
        http.replace("{port}", &self.port.to_string())
            .replace("{port2}", &self.port2.to_string())
            .replace("{port3}", &self.port3.to_string())
            .replace("{dir}", &self.dir.display().to_string())
    }

    pub fn write_conf(&self, workers: u32, http: &str) {
        fs::write(
            self.dir.join("nginx.conf"),
            main_conf(workers, &self.expand(http)),
        )
        .unwrap();
    }

    fn command(&self) -> Command {
        self.command_for("nginx.conf")
    }

    fn command_for(&self, conf: &str) -> Command {
        let mut c = Command::new(nginx_bin());
        c.arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(conf)
            .arg("-e")
            .arg("logs/error.log");
        c
    }

    /// `nginx -t` on the written config: (success, combined output).
    pub fn test_config(&self) -> (bool, String) {
        let out = self.command().arg("-t").output().unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        (out.status.success(), text)
    }

    pub fn spawn(&mut self) {
        self.spawn_conf("nginx.conf");
    }

    /// Starts nginx in the foreground on a config file in the instance's directory.
    pub fn spawn_conf(&mut self, conf: &str) {
        let child = self
            .command_for(conf)
            .arg("-g")
            .arg("daemon off;")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        self.child = Some(child);
        self.wait_listening(self.port);
    }

    /// Returns once a worker has accepted a connection on `port`: a probe
    /// that connects, closes, and shows up in the log as "client closed
    /// connection". A connect alone is not enough: twice under load a probe
    /// connected, nginx never logged it, and the next request was reset.
    pub fn wait_listening(&mut self, port: u16) {
        const ACCEPTED: &str = "client closed connection while waiting for request";
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.error_log().matches(ACCEPTED).count();
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                let wait = Instant::now() + Duration::from_secs(1);
                while Instant::now() < wait {
                    if self.error_log().matches(ACCEPTED).count() > seen {
                        return;
                    }
                    sleep(Duration::from_millis(5));
                }
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("nginx exited with {status}:\n{}", self.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not accept on {port}:\n{}",
                self.error_log()
            );
            sleep(Duration::from_millis(20));
        }
    }

    /// Stops nginx as `nginx -s stop` does (SIGTERM) and waits for the
    /// master to exit; `spawn` starts it again in the same directory.
    pub fn stop(&mut self) {
        let mut c = self.child.take().expect("nginx is running");
        Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .unwrap();
        let status = c.wait().unwrap();
        assert!(
            status.success(),
            "nginx exited with {status}:\n{}",
            self.error_log()
        );
    }

    /// Kills the master and its workers with SIGKILL: nothing runs at exit.
    pub fn kill9(&mut self) {
        let workers = self.worker_pids();
        let mut c = self.child.take().expect("nginx is running");
        let _ = c.kill();
        let _ = c.wait();
        for w in workers {
            let _ = Command::new("kill").arg("-KILL").arg(w.to_string()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "the workers outlived SIGKILL");
            sleep(Duration::from_millis(10));
        }
    }

    /// The master's worker processes.
    pub fn worker_pids(&self) -> Vec<u32> {
        let master = self.child.as_ref().unwrap().id();
        let out = Command::new("pgrep")
            .arg("-P")
            .arg(master.to_string())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Rewrites the config and reloads; returns once the new workers answer.
    pub fn reload(&self, workers: u32, http: &str) {
        self.write_conf(workers, http);
        let before = self.error_log().matches("start worker process").count();
        let pid = self.child.as_ref().unwrap().id();
        assert!(Command::new("kill")
            .arg("-HUP")
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.error_log().matches("start worker process").count() < before + workers as usize {
            assert!(Instant::now() < deadline, "reload did not start workers");
            sleep(Duration::from_millis(20));
        }
        // Old workers finish their keepalive connections; ours are one-shot.
        sleep(Duration::from_millis(200));
    }

    /// Waits until no Redis write of this nginx is pending (a new session's
    /// first write included), read from the `sessions_status` at `metrics`.
    pub fn wait_redis_drained(&self, metrics: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = self.get(metrics).text();
            if text.contains("nginx_sessions_redis_pending{zone=\"sessions\"} 0\n") {
                return;
            }
            assert!(Instant::now() < deadline, "writes never reached Redis: {text}");
            sleep(Duration::from_millis(5));
        }
    }

    /// Lets log lines that contain `text` through the crash check that
    /// every instance runs when it is dropped: for a test that kills a
    /// worker on purpose.
    pub fn expect_in_log(&mut self, text: &str) {
        self.expected.push(text.to_string());
    }

    /// Lines of the log that say a process crashed (a panic, a worker
    /// killed by a signal) or an `alert`, but those the test expected.
    pub fn crash_lines(&self) -> Vec<String> {
        self.error_log()
            .lines()
            .filter(|l| {
                ["panicked", "exited on signal", "[alert]"]
                    .iter()
                    .any(|b| l.contains(b))
            })
            .filter(|l| !self.expected.iter().any(|e| l.contains(e.as_str())))
            .map(str::to_string)
            .collect()
    }

    /// Nothing crashed and nothing was logged at `alert` or above.
    pub fn assert_clean_log(&self) {
        let log = self.error_log();
        for bad in ["panicked", "exited on signal", "[alert]", "[crit]", "[emerg]"] {
            assert!(!log.contains(bad), "{bad} in error log:\n{log}");
        }
    }

    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.join("logs/error.log")).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Response {
        self.request(Request::get(path))
    }

    pub fn request(&self, req: Request) -> Response {
        send(self.port, &req)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // A failing test keeps its directory (config, logs) for inspection.
        let failing = std::thread::panicking();
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // No test passes while its nginx crashed where it did not mean it to.
        let crashes = if failing { Vec::new() } else { self.crash_lines() };
        if !failing && crashes.is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        }
        assert!(
            crashes.is_empty(),
            "nginx in {} logged a crash or an alert:\n{}",
            self.dir.display(),
            crashes.join("\n")
        );
    }
}

/// One HTTP/1.1 request.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn get(path: &str) -> Self {
        Self {
            method: "GET".into(),
            path: path.into(),
            headers: vec![("User-Agent".into(), "itest/1".into())],
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
        self.headers.push((k.into(), v.into()));
        self
    }

    pub fn cookie(self, c: &str) -> Self {
        self.header("Cookie", c)
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, k: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The `Set-Cookie` headers for cookie `name`.
    pub fn set_cookies(&self, name: &str) -> Vec<&str> {
        self.all("Set-Cookie")
            .into_iter()
            .filter(|v| v.split('=').next() == Some(name))
            .collect()
    }

    /// `name=value` of the single session cookie set, for a `Cookie` header.
    pub fn cookie_pair(&self, name: &str) -> String {
        let set = self.set_cookies(name);
        assert_eq!(
            set.len(),
            1,
            "expected one Set-Cookie for {name}: {:?}",
            self.headers
        );
        set[0].split(';').next().unwrap().to_string()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `req` with a body (and its Content-Length) on a new connection.
pub fn send_with_body(port: u16, req: &Request, body: &[u8]) -> Response {
    let req = req.clone().header("Content-Length", &body.len().to_string());
    exchange(port, &req, body)
}

/// Sends `req` on a new connection and reads the whole response.
pub fn send(port: u16, req: &Request) -> Response {
    exchange(port, req, b"")
}

fn exchange(port: u16, req: &Request, body: &[u8]) -> Response {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let host = if req.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("Host")) {
        ""
    } else {
        "Host: localhost\r\n"
    };
    let mut out = format!(
        "{} {} HTTP/1.1\r\n{host}Connection: close\r\n",
        req.method, req.path
    );
    for (k, v) in &req.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    s.write_all(out.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut resp = Response {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    };
    if resp.header("Transfer-Encoding") == Some("chunked") {
        resp.body = dechunk(&resp.body);
    }
    resp
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

/// A keep-alive connection for sending many requests quickly.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(port: u16) -> Self {
        Self::try_open(port).expect("connect")
    }

    pub fn try_open(port: u16) -> std::io::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends a GET with optional cookie; the response must carry a Content-Length.
    pub fn get(&mut self, path: &str, cookie: Option<&str>) -> Response {
        self.try_get(path, cookie).expect("keep-alive request")
    }

    /// As `get`, but a broken connection is an error, not a panic.
    pub fn try_get(&mut self, path: &str, cookie: Option<&str>) -> std::io::Result<Response> {
        let mut out = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: itest/1\r\n");
        if let Some(c) = cookie {
            out.push_str(&format!("Cookie: {c}\r\n"));
        }
        out.push_str("\r\n");
        self.stream.write_all(out.as_bytes())?;
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = parse_response(&self.buf[..end + 4]);
                let len: usize = head.header("Content-Length").map_or(0, |v| v.parse().unwrap());
                if self.buf.len() >= end + 4 + len {
                    let rest = self.buf.split_off(end + 4 + len);
                    let resp = parse_response(&self.buf);
                    self.buf = rest;
                    return Ok(resp);
                }
            }
            let mut chunk = [0u8; 16384];
            let n = match self.stream.read(&mut chunk) {
                // A socket with a receive timeout returns EINTR after the
                // process is stopped and continued: read again.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => r?,
            };
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The store a test binary keeps its sessions in, which each binary
/// names in its `SUITE` constant: the suites (`suites/*.rs`) run once per
/// store, each run's file saying which; other binaries configure their
/// store in each test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // each binary uses some of them
pub enum Suite {
    Own,
    Zone,
    Redis,
    Cookie,
}

thread_local! {
    /// The Redis server of the running test (each test has its own thread).
    static SUITE_REDIS: std::cell::RefCell<Option<Redis>> = const { std::cell::RefCell::new(None) };
}

/// In the Redis run of the suite, the `http`-level lines that store every
/// session in this test's own `redis-server`.
fn suite_store() -> String {
    match crate::SUITE {
        Suite::Own | Suite::Zone => return String::new(),
        Suite::Cookie => return "sessions_store cookie;\n".into(),
        Suite::Redis => {}
    }
    let port = SUITE_REDIS.with_borrow_mut(|r| r.get_or_insert_with(|| Redis::start(&[])).port);
    format!("sessions_store redis; sessions_redis_server 127.0.0.1:{port};\n")
}

/// The suite's Redis server for this test, if it runs on Redis.
pub fn suite_redis_cli(args: &[&str]) -> Option<String> {
    SUITE_REDIS.with_borrow(|r| r.as_ref().map(|r| r.cli(args)))
}

/// The suite's Redis keys once `done` holds for them, or after 5 s (a
/// write may still be on its way when the response is read).
pub fn suite_redis_keys_when(done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let keys = suite_redis_cli(&["--scan"]).expect("a Redis for this test");
        if done(&keys) || Instant::now() > deadline {
            return keys;
        }
        sleep(Duration::from_millis(10));
    }
}

/// A `redis-server` on loopback, stopped when dropped.
pub struct Redis {
    pub port: u16,
    pub dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    /// `redis-cli` arguments that authenticate (`--user`, `--pass`), if any.
    pub auth: Vec<String>,
}

impl Redis {
    /// Starts `redis-server` with `extra` arguments (`--requirepass x`, ...).
    /// A port found free can be taken by another process before
    /// redis-server binds it: then it starts again on another.
    pub fn start(extra: &[&str]) -> Self {
        for _ in 0..5 {
            let mut r = Self::new_on(free_port(), extra);
            match r.try_run() {
                Ok(()) => return r,
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!("redis-server exited:\n{log}"),
            }
        }
        panic!("no free port for redis-server in 5 tries");
    }

    pub fn start_on(port: u16, extra: &[&str]) -> Self {
        let mut r = Self::new_on(port, extra);
        r.run();
        r
    }

    fn new_on(port: u16, extra: &[&str]) -> Self {
        let dir = scratch_dir("redis");
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(dir.display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        Self {
            port,
            dir,
            args,
            child: None,
            auth: Vec::new(),
        }
    }

    /// (Re)starts the server with its arguments and waits until it listens.
    pub fn run(&mut self) {
        if let Err(log) = self.try_run() {
            panic!("redis-server exited:\n{log}");
        }
    }

    /// Starts the server and waits until it says it is ready and its port
    /// answers (the port alone may be another process's); its log if it
    /// exited first.
    fn try_run(&mut self) -> Result<(), String> {
        let log = fs::File::create(self.dir.join("redis.log")).unwrap();
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("redis-server (apt install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let path = self.dir.join("redis.log");
        let log = || fs::read_to_string(&path).unwrap_or_default();
        loop {
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() {
                self.child = None;
                return Err(log());
            }
            if log().contains("Ready to accept connections")
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start:\n{}",
                log()
            );
            sleep(Duration::from_millis(10));
        }
    }

    /// Stops the server (SIGKILL: nothing is saved anyway).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server the way an operator does, saving its data, so that
    /// `run` brings the same sessions back.
    pub fn shutdown_saving(&mut self) {
        self.cli(&["SHUTDOWN", "SAVE"]);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(c.id().to_string())
                .status()
                .unwrap();
        }
    }

    /// `redis-cli` output for `args`, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "--no-auth-warning",
            ])
            .args(&self.auth)
            .args(args)
            .output()
            .expect("redis-cli (apt install redis-tools)");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        // As `Nginx`: a failing test keeps the directory (redis.log).
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A child process killed and reaped when dropped, even by a failing test.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The commands the README says an ACL user needs (the Redis store), read
/// from the README itself: an operator grants exactly these.
pub fn acl_commands() -> &'static [&'static str] {
    static LIST: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    LIST.get_or_init(|| readme_list("the module needs these commands: `"))
}

/// And what the cookie store's shared records add.
pub fn acl_cookie_commands() -> &'static [&'static str] {
    static LIST: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    LIST.get_or_init(|| readme_list("shared records add `"))
}

/// The words of the code span that follows `intro` in docs/directives.md
/// (`sessions_redis_username`, where an operator reads what to grant).
fn readme_list(intro: &str) -> Vec<&'static str> {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/directives.md")).unwrap();
    let at = readme
        .find(intro)
        .unwrap_or_else(|| panic!("docs/directives.md says {intro:?}"))
        + intro.len();
    let span = &readme[at..at + readme[at..].find('`').expect("a closed code span")];
    let words: Vec<&'static str> = span
        .split_whitespace()
        .map(|w| &*Box::leak(w.to_string().into_boxed_str()))
        .collect();
    assert!(words.iter().all(|w| w.starts_with('+')), "{words:?}");
    words
}

/// `redis-server` users: none by default, `app` (the test's own) may do
/// anything, `nginx` (password `nginx-pw`) only the commands that follow.
pub const ACL_USERS: &[&str] = &[
    "--user",
    "default",
    "off",
    "--user",
    "app",
    "on",
    ">app-pw",
    "~*",
    "&*",
    "+@all",
    "--user",
    "nginx",
    "on",
    ">nginx-pw",
    "~*",
];
/// `redis-cli` arguments for `app`.
pub const APP_AUTH: [&str; 4] = ["--user", "app", "--pass", "app-pw"];

/// A three-master Redis Cluster on loopback; nginx's user `nginx`
/// (password `nginx-pw`) may run exactly `commands`. The nodes, and their
/// addresses.
pub fn start_cluster(commands: &[&str]) -> (Vec<Redis>, Vec<String>) {
    let nodes: Vec<Redis> = (0..3)
        .map(|_| {
            let bus = free_port().to_string();
            let args = [
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                    // The bus would default to port + 10000, inside the kernel's
                    // ephemeral range, where an outgoing connection may hold it.
                    "--cluster-port",
                    &bus,
                ],
                ACL_USERS,
                commands,
            ]
            .concat();
            let mut r = Redis::start(&args);
            r.auth = APP_AUTH.map(String::from).to_vec();
            r
        })
        .collect();
    let addrs: Vec<String> = nodes.iter().map(|r| format!("127.0.0.1:{}", r.port)).collect();
    let out = Command::new("redis-cli")
        .args(APP_AUTH)
        .args(["--no-auth-warning", "--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !nodes
        .iter()
        .all(|r| r.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    {
        assert!(Instant::now() < deadline, "timed out waiting for the cluster");
        std::thread::sleep(Duration::from_millis(100));
    }
    (nodes, addrs)
}
