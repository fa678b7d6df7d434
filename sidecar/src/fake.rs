//! A stand-in for Redis in the side-car's unit tests: a RESP2 server on
//! loopback, on a thread of its own, holding strings in memory and running
//! the side-car's scripts (recognised by their text) the way Redis would.
//! A test arms faults on it: a connection dropped at the next command, an
//! error for every command, answers held back.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use std::sync::atomic::AtomicBool;

use sessions_core::config::redis_conf::{Address, RedisSettings, Topology};
use sessions_core::stores::redis::journal::{Journal, JournalHeader, JournalPlan, JournalSlot};

use crate::backend::Backend;
use crate::scripts::{ADOPT, SWAP};
use crate::state::{Replies, Sidecar};
use crate::{PendingWrites, Setup};

#[derive(Default)]
pub(crate) struct State {
    pub(crate) strings: HashMap<Vec<u8>, Vec<u8>>,
    /// Connections accepted so far.
    pub(crate) connections: usize,
    /// Drops the connection instead of answering this many commands.
    pub(crate) drop_next: usize,
    /// Answers every command with this error (`NOPERM ...`), unless `None`.
    pub(crate) refuse: Option<String>,
    /// Waits this long before answering each command.
    pub(crate) delay: Duration,
    /// Every command run, as its name and arguments.
    pub(crate) commands: Vec<Vec<Vec<u8>>>,
}

pub(crate) struct FakeRedis {
    pub(crate) addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeRedis {
    pub(crate) fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let addr = listener.local_addr().expect("bound");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                lock(&shared).connections += 1;
                let state = shared.clone();
                std::thread::spawn(move || serve(conn, &state));
            }
        });
        Self { addr, state }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Settings that lead a backend here, with `timeout` ms per command.
    pub(crate) fn settings(&self, timeout: u64) -> (RedisSettings, Topology) {
        let address = Address::Tcp {
            host: self.addr.ip().to_string(),
            port: self.addr.port(),
        };
        let settings = RedisSettings {
            server: Some(address.clone()),
            timeout: Some(timeout),
            connect_timeout: Some(timeout),
            connections: Some((1, 0)),
            ..RedisSettings::default()
        };
        (settings, Topology::Standalone(address))
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn serve(conn: TcpStream, state: &Mutex<State>) {
    let mut out = conn.try_clone().expect("a second handle");
    let mut input = BufReader::new(conn);
    while let Some(cmd) = command(&mut input) {
        let delay = {
            let mut s = lock(state);
            if s.drop_next > 0 {
                s.drop_next -= 1;
                let _ = out.shutdown(Shutdown::Both);
                return;
            }
            s.delay
        };
        std::thread::sleep(delay);
        let answer = {
            let mut s = lock(state);
            s.commands.push(cmd.clone());
            match &s.refuse {
                Some(why) if !is_handshake(&cmd) => format!("-{why}\r\n").into_bytes(),
                _ => run(&mut s, &cmd),
            }
        };
        if out.write_all(&answer).is_err() {
            return;
        }
    }
}

/// What redis-rs sends on its own when it connects.
fn is_handshake(cmd: &[Vec<u8>]) -> bool {
    cmd.first().is_some_and(|c| c.eq_ignore_ascii_case(b"CLIENT"))
}

/// One command (an array of bulk strings), `None` at the end.
fn command(input: &mut impl BufRead) -> Option<Vec<Vec<u8>>> {
    let header = line(input)?;
    let n: usize = header.strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        let len: usize = line(input)?.strip_prefix('$')?.parse().ok()?;
        let mut arg = vec![0; len + 2];
        input.read_exact(&mut arg).ok()?;
        arg.truncate(len);
        args.push(arg);
    }
    Some(args)
}

fn line(input: &mut impl BufRead) -> Option<String> {
    let mut l = String::new();
    (input.read_line(&mut l).ok()? > 0).then(|| l.trim_end().to_string())
}

fn bulk(v: Option<&[u8]>) -> Vec<u8> {
    match v {
        None => b"$-1\r\n".to_vec(),
        Some(v) => {
            let mut out = format!("${}\r\n", v.len()).into_bytes();
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
            out
        }
    }
}

fn int(n: usize) -> Vec<u8> {
    format!(":{n}\r\n").into_bytes()
}

fn run(s: &mut State, cmd: &[Vec<u8>]) -> Vec<u8> {
    let name = String::from_utf8_lossy(&cmd[0]).to_ascii_uppercase();
    let arg = |i: usize| cmd.get(i).map(Vec::as_slice).unwrap_or_default();
    match name.as_str() {
        "CLIENT" | "SELECT" => b"+OK\r\n".to_vec(),
        "PING" => b"+PONG\r\n".to_vec(),
        "GET" => bulk(s.strings.get(arg(1)).map(Vec::as_slice)),
        "SET" => {
            s.strings.insert(arg(1).to_vec(), arg(2).to_vec());
            b"+OK\r\n".to_vec()
        }
        "DEL" => int(cmd[1..].iter().filter(|k| s.strings.remove(*k).is_some()).count()),
        "EVAL" => {
            let script = String::from_utf8_lossy(arg(1));
            let key = arg(3).to_vec();
            let (a1, a2, a3) = (arg(4).to_vec(), arg(5).to_vec(), arg(6).to_vec());
            if script == SWAP {
                if s.strings.get(&key).map_or(&b""[..], Vec::as_slice) != a1 {
                    return int(0);
                }
                if a2.is_empty() {
                    s.strings.remove(&key);
                } else {
                    s.strings.insert(key, a2);
                }
                int(1)
            } else if script == ADOPT {
                match s.strings.get(&key) {
                    Some(v) if a3 == b"0" || *v != a2 => bulk(Some(&v.clone())),
                    _ => {
                        s.strings.insert(key, a1.clone());
                        bulk(Some(&a1))
                    }
                }
            } else {
                b"-ERR this stand-in does not run that script\r\n".to_vec()
            }
        }
        _ => format!("-ERR unknown command '{name}'\r\n").into_bytes(),
    }
}

/// The journal of pending writes in plain memory, as the zone holds it.
pub(crate) struct MemJournal(Mutex<(JournalHeader, Vec<u32>, Vec<JournalSlot>)>);

impl MemJournal {
    pub(crate) fn new(capacity: u32) -> Arc<Self> {
        let plan = JournalPlan::for_capacity(capacity);
        let mut hdr = Journal::blank_header();
        let mut buckets = vec![0; plan.buckets as usize];
        let mut slots = vec![Journal::blank_slot(); capacity as usize];
        Journal::format(&mut hdr, &mut buckets, &mut slots);
        Arc::new(Self(Mutex::new((hdr, buckets, slots))))
    }
}

impl PendingWrites for MemJournal {
    fn with(&self, f: &mut dyn FnMut(&mut Journal<'_>)) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (hdr, buckets, slots) = &mut *m;
        f(&mut Journal::attach(hdr, buckets, slots).expect("formatted"));
    }
}

/// A side-car's state over `fake`, with `journal` and a flush lease of
/// `lease`, replies dropped.
pub(crate) fn shared(fake: &FakeRedis, journal: Option<Arc<MemJournal>>, lease: Duration) -> Sidecar {
    let (settings, topology) = fake.settings(500);
    shared_at(&settings, &topology, journal, lease)
}

/// A loopback port nobody listens on.
pub(crate) fn closed_port() -> (RedisSettings, Topology) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = listener.local_addr().expect("bound").port();
    drop(listener);
    let address = Address::Tcp {
        host: "127.0.0.1".into(),
        port,
    };
    let settings = RedisSettings {
        server: Some(address.clone()),
        timeout: Some(200),
        connect_timeout: Some(200),
        ..RedisSettings::default()
    };
    (settings, Topology::Standalone(address))
}

/// A side-car's state over the Redis `settings` name.
pub(crate) fn shared_at(
    settings: &RedisSettings,
    topology: &Topology,
    journal: Option<Arc<MemJournal>>,
    lease: Duration,
) -> Sidecar {
    let backend = Backend::new(settings, topology).expect("a backend");
    let wake = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .expect("/dev/null");
    let out = Replies {
        list: Arc::new(Mutex::new(Vec::new())),
        wake: Arc::new(wake),
    };
    let setup = Setup {
        journal: journal.map(|j| j as Arc<dyn PendingWrites>),
        records: None,
        near: None,
        seals: Vec::new(),
    };
    let flags = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    Sidecar::new(
        backend,
        settings.prefix().to_vec(),
        out,
        (lease, Duration::from_millis(25)),
        setup,
        flags,
    )
}

/// Runs `f` to its end on a current-thread runtime, as the side-car's
/// thread does (tasks may be spawned locally).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    tokio::task::LocalSet::new().block_on(&rt, f)
}
