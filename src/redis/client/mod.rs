//! The Redis store: a thread per worker runs a small tokio runtime that owns
//! the connections; the nginx thread hands it jobs and is woken through an
//! eventfd when answers are ready. Nothing here touches nginx structures.

mod backend;

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::Write as _;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::RedisError;
use sessions_core::config::redis_conf::{RedisSettings, Topology};
use sessions_core::engine::store::Event;
use sessions_core::engine::Presented;
use sessions_core::model::keys::SealKeys;
use sessions_core::model::record::{Entry, Record};
use sessions_core::primitives::id::Handle;
use sessions_core::primitives::id::{random_alnum, RandomPool};
use sessions_core::stores::redis::journal::{Journal, Pending};
use sessions_core::stores::redis::near_cache::{NearCache, Ticket};
use sessions_core::stores::redis::view::{touch_interval, View, Write, EXPIRED_KEPT};
use sessions_core::{resolve, stores::zone::revoked, Facts, Outcome, Policy, SessionId};
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;

use backend::{Backend, Down};

/// Keys for the records of one session: where it was read, where it goes.
#[derive(Clone)]
pub struct Keys {
    pub read: SealKeys,
    pub write: SealKeys,
    /// `read` is an older secret's: rewrite what is kept under `write`.
    pub migrate: bool,
}

/// One request's session, decided on the Redis thread.
pub struct Lookup {
    pub presented: Presented,
    pub keys: Keys,
    pub now: u64,
    pub ip: ([u8; 16], usize),
    pub ua: u64,
    pub policy: Policy,
}

// Moved once per job; the channel holds few of them.
#[allow(clippy::large_enum_variant)]
pub enum Job {
    Lookup(Box<Lookup>),
    /// Writes decided on the nginx thread that the journal had no room
    /// for; nobody waits for them.
    Write {
        writes: Vec<Write>,
        keys: SealKeys,
    },
    /// The journal has new writes: flush them now.
    Flush,
    /// The random secret and cookie name shared by every instance.
    Adopt,
    /// The admin endpoint: a user's logged-in sessions.
    List {
        user: Vec<u8>,
        keys: SealKeys,
    },
    /// "Log out everywhere": every session of a user.
    Revoke {
        user: Vec<u8>,
        keys: SealKeys,
    },
    /// One logged-in session, by its handle (`$session_id`).
    RevokeHandle {
        handle: Handle,
        keys: SealKeys,
    },
}

pub enum Answer {
    Resolved {
        outcome: Outcome,
        data: Vec<u8>,
        events: Vec<Event>,
    },
    Unavailable,
    /// The OS random source failed.
    NoRandom,
    Adopted {
        secret: Vec<u8>,
        name: Vec<u8>,
        /// Keys whose unsound values were replaced.
        replaced: Vec<String>,
    },
    Written,
    /// The sessions `List` found, as their summaries.
    Listed {
        user: Vec<u8>,
        sessions: Vec<Record>,
    },
    /// How many sessions `Revoke` ended.
    Revoked(usize),
    /// Whether `RevokeHandle` found its session.
    RevokedOne(bool),
}

pub struct Reply {
    pub token: u64,
    pub answer: Answer,
    /// Set when Redis just went down (with why) or came back.
    pub transition: Option<Result<(), String>>,
    /// Redis refused a command (a full Redis, a missing ACL permission):
    /// why, at most once a minute.
    pub refused: Option<String>,
    /// The journal was full: writes were sent once, unkept.
    pub full: bool,
}

/// The writes this nginx keeps for Redis, in memory its workers share.
pub trait PendingWrites: Send + Sync {
    fn with(&self, f: &mut dyn FnMut(&mut Journal<'_>));
}

/// Where records of ended cookie-store sessions that other instances made
/// are copied to: this nginx's zone.
pub trait SharedRecords: Send + Sync {
    fn apply(&self, records: &[revoked::Shared], now: u64);
}

/// What a worker's Redis thread is given at start.
pub struct Setup {
    pub journal: Option<Arc<dyn PendingWrites>>,
    /// Set when a cookie-store location shares its records through Redis.
    pub records: Option<Arc<dyn SharedRecords>>,
    /// The worker's near cache of Redis sessions, which this thread fills
    /// and keeps coherent.
    pub near: Option<Arc<Mutex<NearCache>>>,
    /// Every configured secret's keys, so that any worker flushes any write.
    pub seals: Vec<SealKeys>,
}

/// The nginx thread's side of the Redis thread.
pub struct Client {
    jobs: mpsc::UnboundedSender<(u64, Job)>,
    replies: Arc<Mutex<Vec<Reply>>>,
    /// Set while the flusher waits for work (see `Shared::flusher`).
    flusher_idle: Arc<AtomicBool>,
    /// Whether Redis took the last write, and no job or flush failed since
    /// (down, timed out, a command refused). False until a first write.
    reached: Arc<AtomicBool>,
}

impl Client {
    pub fn submit(&self, token: u64, job: Job) -> bool {
        self.jobs.send((token, job)).is_ok()
    }

    /// Wakes the flusher for a write just recorded, unless it is busy: it
    /// then claims the write with its next batch. Under load this spares
    /// the Redis thread a wake-up (and the nginx thread a context switch)
    /// per write.
    pub fn reached(&self) -> bool {
        self.reached.load(Ordering::Relaxed)
    }

    pub fn flush(&self) {
        if self.flusher_idle.swap(false, Ordering::SeqCst) {
            self.submit(0, Job::Flush);
        }
    }

    /// Answers that arrived since the last call.
    pub fn take_replies(&self, out: &mut Vec<Reply>) {
        let mut r = self.replies.lock().unwrap_or_else(|e| e.into_inner());
        out.append(&mut r);
    }
}

/// Starts the thread; `wake` is an eventfd the nginx thread watches.
pub fn start(
    settings: &RedisSettings,
    topology: &Topology,
    wake: File,
    setup: Setup,
) -> Result<Client, String> {
    let backend = Backend::new(settings, topology).map_err(|e| e.to_string())?;
    let prefix = settings.prefix().to_vec();
    let (tx, rx) = mpsc::unbounded_channel();
    let replies = Arc::new(Mutex::new(Vec::new()));
    let flusher_idle = Arc::new(AtomicBool::new(false));
    let reached = Arc::new(AtomicBool::new(false));
    let flags = (flusher_idle.clone(), reached.clone());
    let out = Replies {
        list: replies.clone(),
        wake: Arc::new(wake),
    };
    // rustls needs one process-wide crypto provider; a second install fails
    // harmlessly. redis-rs offers both TLS versions: the cipher suites kept
    // here decide which can be agreed.
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(p) = settings.tls_protocols {
        provider.cipher_suites.retain(|s| match s.version().version {
            rustls::ProtocolVersion::TLSv1_2 => p.v1_2,
            rustls::ProtocolVersion::TLSv1_3 => p.v1_3,
            _ => false,
        });
    }
    let _ = provider.install_default();
    let limit = patience(settings);
    let lease = lease(settings);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("sessions-redis".into())
        .spawn(move || {
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, serve(backend, prefix, rx, out, (limit, lease), setup, flags));
        })
        .map_err(|e| e.to_string())?;
    Ok(Client {
        jobs: tx,
        replies,
        flusher_idle,
        reached,
    })
}

#[derive(Clone)]
struct Replies {
    list: Arc<Mutex<Vec<Reply>>>,
    wake: Arc<File>,
}

impl Replies {
    fn send(&self, reply: Reply) {
        let first = {
            let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
            list.push(reply);
            list.len() == 1
        };
        // Only the reply that finds the list empty wakes nginx: the nginx
        // thread clears the eventfd before it takes the list (`park::on_wake`),
        // so a reply pushed to a list not yet taken is taken with it. Under
        // load this saves a system call and a wake-up on most replies.
        // An eventfd counter write cannot block here (it would take 2^64 wakes).
        if first {
            let _ = (&*self.wake).write(&1u64.to_ne_bytes());
        }
    }
}

struct Shared {
    backend: Backend,
    prefix: Vec<u8>,
    out: Replies,
    /// Whether the last job reached Redis.
    up: Cell<bool>,
    rng: RefCell<RandomPool>,
    next: Cell<usize>,
    /// Writes nobody waits for, in flight, by the session ids they write,
    /// each locked until it is done (see `Turn`).
    pending: RefCell<Vec<(SessionId, Arc<tokio::sync::Mutex<()>>)>>,
    /// When a refusal was last logged.
    last_refusal: Cell<Option<std::time::Instant>>,
    journal: Option<Arc<dyn PendingWrites>>,
    records: Option<Arc<dyn SharedRecords>>,
    near: Option<Arc<Mutex<NearCache>>>,
    /// The tracking connection, while it is up: reads of sessions that may
    /// be kept go over it.
    tracking_conn: RefCell<Option<redis::aio::MultiplexedConnection>>,
    /// The keys the journal's entries may be sealed with, by tag.
    known: RefCell<Vec<SealKeys>>,
    /// Wakes the flusher.
    flush: tokio::sync::Notify,
    /// How long a flush may hold its entries.
    lease: Duration,
    /// A write found the journal full since the last reply.
    full: Cell<bool>,
    flusher_idle: Arc<AtomicBool>,
    reached: Arc<AtomicBool>,
    /// How long a well-signed id missing from Redis is waited for, once.
    recheck: Duration,
}

async fn serve(
    backend: Backend,
    prefix: Vec<u8>,
    mut rx: mpsc::UnboundedReceiver<(u64, Job)>,
    out: Replies,
    (limit, lease): (Duration, Duration),
    setup: Setup,
    (flusher_idle, reached): (Arc<AtomicBool>, Arc<AtomicBool>),
) {
    let shared = Rc::new(Shared {
        backend,
        prefix,
        out,
        up: Cell::new(true),
        rng: RefCell::new(RandomPool::new()),
        next: Cell::new(0),
        pending: RefCell::new(Vec::new()),
        last_refusal: Cell::new(None),
        journal: setup.journal,
        records: setup.records,
        near: setup.near,
        tracking_conn: RefCell::new(None),
        known: RefCell::new(setup.seals),
        flush: tokio::sync::Notify::new(),
        lease,
        full: Cell::new(false),
        flusher_idle,
        reached,
        recheck: UNKNOWN_RECHECK.min(limit / 8),
    });
    let s = shared.clone();
    tokio::task::spawn_local(async move { s.backend.keep_open().await });
    let s = shared.clone();
    tokio::task::spawn_local(async move { s.backend.watch_sentinels().await });
    let s = shared.clone();
    tokio::task::spawn_local(async move { s.flusher().await });
    let s = shared.clone();
    tokio::task::spawn_local(async move { s.follow_records().await });
    let s = shared.clone();
    tokio::task::spawn_local(async move { s.track().await });
    while let Some((token, job)) = rx.recv().await {
        shared.learn(&job);
        if matches!(job, Job::Flush) {
            shared.flush.notify_one();
            continue;
        }
        let s = shared.clone();
        // Taken now, in the order jobs arrive.
        let turn = s.turn(&job);
        tokio::task::spawn_local(async move {
            let work = async {
                turn.wait().await;
                match job {
                    Job::Lookup(l) => s.lookup(&l).await,
                    Job::Write { writes, keys } => {
                        s.write(&writes, &keys, None, &[]).await.map(|_| Answer::Written)
                    }
                    Job::Adopt => s.adopt().await,
                    // Woken above, never spawned.
                    Job::Flush => Ok(Answer::Written),
                    Job::List { user, keys } => s.list(&keys, user).await,
                    Job::Revoke { user, keys } => s.revoke(&keys, &user).await,
                    Job::RevokeHandle { handle, keys } => s.revoke_handle(&keys, &handle).await,
                }
            };
            // Every job ends before nginx's own timer for it (`patience`).
            let (answer, down, refused) = match tokio::time::timeout(limit / 2, work).await {
                Ok(Ok(a)) => (a, None, None),
                Ok(Err(Failure::NoRandom)) => (Answer::NoRandom, None, None),
                Ok(Err(Failure::Down(why))) => (Answer::Unavailable, Some(why), None),
                Ok(Err(Failure::Refused(why) | Failure::WrongType(why))) => {
                    (Answer::Unavailable, None, Some(why))
                }
                Err(_) => (Answer::Unavailable, Some("timed out".into()), None),
            };
            s.done(turn);
            if down.is_some() || refused.is_some() {
                s.reached.store(false, Ordering::Relaxed);
            }
            s.out.send(Reply {
                token,
                answer,
                transition: s.transition(down),
                refused: refused.filter(|_| s.report_refusal()),
                full: s.full.take(),
            });
        });
    }
}

/// A value read from Redis: writes decided from it are made over it.
struct Read {
    address: Vec<u8>,
    value: Vec<u8>,
}

/// What the copy of a session under an older secret becomes when the
/// session moves to the current one.
const MOVED: &[u8] = b"moved";

/// How many times a request decides before writing regardless.
const ATTEMPTS: u32 = 3;

/// How often every worker looks for journal writes due again (retries,
/// and those a killed worker held).
/// How long another instance's new session may take to reach Redis
/// (usually a round trip) before its cookie is refused here as unknown.
const UNKNOWN_RECHECK: Duration = Duration::from_millis(25);
const FLUSH_TICK: Duration = Duration::from_millis(200);
/// Writes sent in one pipeline.
const FLUSH_BATCH: usize = 64;

/// How often every worker reads the cookie-store records other instances
/// shared (`follow_records`).
const RECORDS_TICK: Duration = Duration::from_millis(50);
/// How long the log of new records keeps each (a stream trimmed by age);
/// a reader that missed more than half of that reads them all again.
const RECORDS_LOG_KEPT_MS: u64 = 600_000;
/// Most log entries read at once.
const RECORDS_BATCH: usize = 512;

/// How often the near cache's tracking connection is pinged (and the
/// sentinels' master compared), so that a silent loss is seen.
const TRACK_TICK: Duration = Duration::from_millis(500);
/// How often, at most, the tracking connection's master is compared with
/// the data connections' (Sentinel).
const TRACK_CHECK: Duration = Duration::from_millis(20);
/// Wait before the tracking connection is opened again after a failure,
/// doubling up to `TRACK_RETRY_MAX`.
const TRACK_RETRY: Duration = Duration::from_millis(200);
const TRACK_RETRY_MAX: Duration = Duration::from_secs(5);

/// Wall-clock milliseconds, as nginx's `ngx_timeofday` gives them.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Replaces KEYS[1] only if it still holds ARGV[1] (empty: nothing): by
/// ARGV[2] with a TTL of ARGV[3] ms (0: none), or deletes it when ARGV[2]
/// is empty. 1 if done. A value of another type matches nothing.
const SWAP: &str = "local v = redis.pcall('GET', KEYS[1]) \
    if type(v) == 'table' then return 0 end if v == false then v = '' end \
    if v ~= ARGV[1] then return 0 end \
    if ARGV[2] == '' then redis.call('DEL', KEYS[1]) \
    elseif ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[2]) \
    else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end return 1";

/// `SWAP` over what `read` found: `value` with `ttl` ms (0: none), or a
/// delete when `value` is empty.
fn swap(read: &Read, value: &[u8], ttl: u64) -> redis::Cmd {
    redis::cmd("EVAL")
        .arg(SWAP)
        .arg(1)
        .arg(&read.address)
        .arg(&read.value)
        .arg(value)
        .arg(ttl)
        .clone()
}

/// A job's place after the writes nobody waits for (a login, logout, new
/// id or data, sent as a response left) that came before it on the same
/// session: the next request of a session sees what its last response
/// changed, whichever connection each uses. Admin jobs come after every
/// such write before them. Requests of one session otherwise run side by
/// side: their own writes are made over what they read (`SWAP`).
#[derive(Default)]
struct Turn {
    /// Held by a write until it is done.
    lock: Option<(Arc<tokio::sync::Mutex<()>>, tokio::sync::OwnedMutexGuard<()>)>,
    /// The writes to wait for.
    after: Vec<Arc<tokio::sync::Mutex<()>>>,
}

impl Turn {
    async fn wait(&self) {
        for earlier in &self.after {
            drop(earlier.lock().await);
        }
    }
}

enum Failure {
    /// Redis could not be reached, and why.
    Down(String),
    /// Redis answered a command with an error, and which.
    Refused(String),
    /// A value of another type is at the key (`WRONGTYPE`).
    WrongType(String),
    NoRandom,
}

/// How often a worker logs that Redis refuses commands.
const REFUSAL_REPORT: Duration = Duration::from_secs(60);

impl From<Down> for Failure {
    fn from(d: Down) -> Self {
        Failure::Down(d.0)
    }
}

impl Shared {
    fn address(&self, keys: &SealKeys, id: &SessionId) -> Vec<u8> {
        let mut a = Vec::with_capacity(self.prefix.len() + 43);
        keys.address(&self.prefix, id, &mut a);
        a
    }

    /// Runs `cmd` on a connection picked by `hint`, once more on a fresh
    /// connection if the first was broken (a failover, a restarted server).
    async fn run<T: redis::FromRedisValue>(&self, hint: usize, cmd: &redis::Cmd) -> Result<T, Failure> {
        let mut last = None;
        for _ in 0..2 {
            let mut c = self.backend.conn(hint).await?;
            match c.run(cmd).await {
                Ok(v) => return Ok(v),
                Err(e) => last = Some(self.failed(hint, e)?),
            }
        }
        Err(Down::from(last.expect("an attempt ran")).into())
    }

    /// An error of connection `hint`: one worth another try on a fresh
    /// connection is handed back; an answer of Redis's is a refusal.
    fn failed(&self, hint: usize, e: RedisError) -> Result<RedisError, Failure> {
        if self.backend.broken(hint, &e) {
            Ok(e)
        } else if e.code() == Some("WRONGTYPE") {
            Err(Failure::WrongType(e.to_string()))
        } else {
            Err(Failure::Refused(e.to_string()))
        }
    }

    /// Runs a read of `key`; a value of another type there is no value,
    /// and is deleted.
    async fn repaired<T: redis::FromRedisValue + Default>(
        &self,
        cmd: &redis::Cmd,
        key: &[u8],
    ) -> Result<T, Failure> {
        match self.run(0, cmd).await {
            Err(Failure::WrongType(_)) => {
                let _: usize = self.run(0, redis::cmd("DEL").arg(key)).await?;
                Ok(T::default())
            }
            r => r,
        }
    }

    /// Whether a refusal should be logged now (see `REFUSAL_REPORT`).
    fn report_refusal(&self) -> bool {
        let now = std::time::Instant::now();
        let due = self
            .last_refusal
            .get()
            .is_none_or(|t| now.duration_since(t) >= REFUSAL_REPORT);
        if due {
            self.last_refusal.set(Some(now));
        }
        due
    }

    /// Runs `cmds` in one pipeline (one at a time on a cluster, whose keys
    /// live on different nodes), retried as `run` does; their answers.
    async fn run_each<T: redis::FromRedisValue>(
        &self,
        hint: usize,
        cmds: &[redis::Cmd],
    ) -> Result<Vec<T>, Failure> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let mut last = None;
        for _ in 0..2 {
            let mut c = self.backend.conn(hint).await?;
            let r = if c.is_cluster() {
                let mut answers = Vec::with_capacity(cmds.len());
                let mut r = Ok(());
                for cmd in cmds {
                    match c.run(cmd).await {
                        Ok(v) => answers.push(v),
                        Err(e) => {
                            r = Err(e);
                            break;
                        }
                    }
                }
                r.map(|()| answers)
            } else {
                let mut p = redis::pipe();
                for cmd in cmds {
                    p.add_command(cmd.clone());
                }
                c.pipe(&p).await
            };
            match r {
                Ok(v) => return Ok(v),
                Err(e) => last = Some(self.failed(hint, e)?),
            }
        }
        Err(Down::from(last.expect("an attempt ran")).into())
    }

    /// The job's turn, taken as it arrives (see `Turn`).
    fn turn(&self, job: &Job) -> Turn {
        let mut pending = self.pending.borrow_mut();
        let earlier = |on: &dyn Fn(&SessionId) -> bool| {
            pending
                .iter()
                .filter(|(id, _)| on(id))
                .map(|(_, l)| l.clone())
                .collect::<Vec<_>>()
        };
        match job {
            Job::Lookup(l) => match l.presented {
                Presented::Id { id, .. } => Turn {
                    lock: None,
                    after: earlier(&|p| *p == id),
                },
                _ => Turn::default(),
            },
            Job::Write { writes, .. } => {
                let after = earlier(&|p| writes.iter().any(|w| w.id() == p));
                let lock = Arc::new(tokio::sync::Mutex::new(()));
                let guard = lock.clone().try_lock_owned().expect("a new lock is free");
                pending.extend(writes.iter().map(|w| (*w.id(), lock.clone())));
                Turn {
                    lock: Some((lock, guard)),
                    after,
                }
            }
            Job::List { .. } | Job::Revoke { .. } | Job::RevokeHandle { .. } => Turn {
                lock: None,
                after: earlier(&|_| true),
            },
            Job::Adopt | Job::Flush => Turn::default(),
        }
    }

    fn done(&self, turn: Turn) {
        if let Some((lock, _)) = turn.lock {
            self.pending.borrow_mut().retain(|(_, l)| !Arc::ptr_eq(l, &lock));
        }
    }

    /// Which connection serves session `id`: always the same one, which
    /// spreads sessions over the connections. Requests without one spread too.
    fn hint(&self, id: Option<&SessionId>) -> usize {
        match id {
            Some(id) => u32::from_le_bytes([id.0[0], id.0[1], id.0[2], id.0[3]]) as usize,
            None => {
                let n = self.next.get().wrapping_add(1);
                self.next.set(n);
                n
            }
        }
    }

    async fn lookup(&self, l: &Lookup) -> Result<Answer, Failure> {
        // Writes apply only over the values read; when another worker or
        // instance changed one meanwhile, decide again on what it left. The
        // last attempt writes regardless, as the zone's last writer would.
        for attempt in 1..=ATTEMPTS {
            let unconditional = attempt == ATTEMPTS;
            if let Some(answer) = self.decide(l, unconditional).await? {
                return Ok(answer);
            }
        }
        unreachable!("the last attempt writes unconditionally")
    }

    /// Reads the presented session (and the ids its grace pointers lead
    /// to), decides, and writes. `None` when a value read had changed.
    /// Ids with writes pending in the journal are read there; a decision
    /// over one of them is kept there too, after them, not sent now.
    async fn decide(&self, l: &Lookup, unconditional: bool) -> Result<Option<Answer>, Failure> {
        let presented = match l.presented {
            Presented::Id { id, .. } => Some(id),
            _ => None,
        };
        let hint = self.hint(presented.as_ref());
        // Before the read is sent: a push handled after it, or a write this
        // nginx records after it, voids the read.
        let ticket = self.near_ticket();
        let generation = ticket.and_then(|_| self.in_journal(|j| j.generation()));
        let mut first: Option<(Entry, Vec<u8>)> = None;
        let mut tracked = false;
        let mut view = View::new(l.now, touch_interval(l.policy.timeouts.idle));
        let mut read = Vec::new();
        // Ids read from the journal: writes to them are kept there too.
        let mut journaled: Vec<SessionId> = Vec::new();
        if let Some(mut cur) = presented {
            for _ in 0..3 {
                let found = match self.in_journal(|j| j.get(&cur, l.now)).flatten() {
                    Some(Pending::Gone) => {
                        journaled.push(cur);
                        None
                    }
                    Some(Pending::Put { entry, data }) => {
                        journaled.push(cur);
                        Some((entry, data))
                    }
                    None => {
                        let track = ticket.is_some() && !l.keys.migrate && Some(cur) == presented;
                        let mut got = self
                            .fetch(l, &cur, hint, &mut read, (track, &mut tracked))
                            .await?;
                        if got.is_none() && Some(cur) == presented && !self.gone_lately(l, &cur) {
                            // A session another instance just started may
                            // not be in Redis yet (its first write leaves as
                            // it is answered): look once more before
                            // refusing a well-signed cookie as unknown.
                            tokio::time::sleep(self.recheck).await;
                            read.clear();
                            got = self
                                .fetch(l, &cur, hint, &mut read, (track, &mut tracked))
                                .await?;
                        }
                        got
                    }
                };
                let Some((entry, data)) = found else { break };
                if Some(cur) == presented && journaled.is_empty() && tracked {
                    first = Some((entry, data.clone()));
                }
                let next = match entry {
                    Entry::Grace { successor, until } if l.now <= until => Some(successor),
                    _ => None,
                };
                view.preload(cur, entry, data, None);
                match next {
                    Some(s) => cur = s,
                    None => break,
                }
            }
        }
        let facts = Facts {
            now: l.now,
            ip: &l.ip.0[..l.ip.1],
            ua: l.ua,
        };
        let outcome = {
            let mut rng = self.rng.borrow_mut();
            resolve(&mut view, l.presented, &facts, &l.policy, &mut rng).map_err(|_| Failure::NoRandom)?
        };
        if l.keys.migrate {
            view.rewrite_all();
        }
        let writes = view.finish();
        if let (Some(t), Some(id), Some((Entry::Live(rec), data)), true) =
            (ticket, presented, &first, writes.is_empty() && !l.keys.migrate)
        {
            self.near_keep(t, generation.unwrap_or(0), id, &l.keys.read, *rec, data);
        }
        // After a pending write of the same session, in the same queue; a
        // new session (one a dead cookie's request gets) is no pending
        // write's, and goes to Redis as any other: so requests cannot fill
        // the journal.
        let after_pending = writes.iter().any(|w| journaled.contains(w.id()));
        let kept = after_pending && self.keep(&writes, &l.keys.write, l.now);
        if !kept {
            let old = l.keys.migrate.then_some(&l.keys.read);
            let over = if unconditional || after_pending {
                &[][..]
            } else {
                &read[..]
            };
            if !self.write(&writes, &l.keys.write, old, over).await? {
                return Ok(None);
            }
        }
        Ok(Some(Answer::Resolved {
            data: view.data_of(outcome.record.handle).to_vec(),
            outcome,
            events: std::mem::take(&mut view.events),
        }))
    }

    /// Whether the near cache heard that session `id`'s key changed lately
    /// (a logout, an expiry): missing now, it is gone, and is refused at once.
    fn gone_lately(&self, l: &Lookup, id: &SessionId) -> bool {
        let Some(near) = &self.near else { return false };
        let keys = if l.keys.migrate {
            &l.keys.write
        } else {
            &l.keys.read
        };
        let address = self.address(keys, id);
        near.lock()
            .unwrap_or_else(|e| e.into_inner())
            .changed_lately(&address)
    }

    /// Reads session `id` from Redis; what was read is noted in `read`, so
    /// that writes are made over it. A cookie of an older secret is looked
    /// for under the current keys first: a request sent with it at the same
    /// time may have moved the session there, and then this one follows it
    /// (its grace pointer) rather than renewing it a second time. A value
    /// of the wrong type, or one that does not open, is no session, and is
    /// removed.
    /// `track`: read the session's key over the near cache's tracking
    /// connection, so that Redis tells this worker when it changes;
    /// `tracked` then says whether it was.
    async fn fetch(
        &self,
        l: &Lookup,
        id: &SessionId,
        hint: usize,
        read: &mut Vec<Read>,
        (track, tracked): (bool, &mut bool),
    ) -> Result<Option<(Entry, Vec<u8>)>, Failure> {
        let mut places = vec![&l.keys.write];
        if l.keys.migrate {
            places = vec![&l.keys.write, &l.keys.read];
        } else {
            places[0] = &l.keys.read;
        }
        let base = read.len();
        for (n, keys) in places.iter().enumerate() {
            let addr = self.address(keys, id);
            let got = if track && n == 0 {
                self.tracked_get(&addr).await
            } else {
                None
            };
            // Broadcast tracking (Cluster) hears of every key's changes.
            *tracked = got.is_some() || (track && n == 0 && self.backend.is_cluster());
            let v: Option<Vec<u8>> = match got {
                Some(v) => v,
                None => match self.run(hint, redis::cmd("GET").arg(&addr)).await {
                    Ok(v) => v,
                    Err(Failure::WrongType(_)) => {
                        let _: Result<usize, _> = self.run(hint, redis::cmd("DEL").arg(&addr)).await;
                        None
                    }
                    Err(e) => return Err(e),
                },
            };
            let Some(v) = v else {
                // Written only if still absent: a concurrent move wins.
                read.push(Read {
                    address: addr,
                    value: Vec::new(),
                });
                continue;
            };
            if v == MOVED && n > 0 {
                // Moved to the current keys since they were read: read there.
                let now: Option<Vec<u8>> = self.run(hint, redis::cmd("GET").arg(&read[base].address)).await?;
                let Some(now) = now else { return Ok(None) };
                let found = places[0].open(id, &read[base].address, &now).ok();
                read[base].value = now;
                return Ok(found);
            }
            match keys.open(id, &addr, &v) {
                Ok(found) => {
                    read.push(Read {
                        address: addr,
                        value: v,
                    });
                    return Ok(Some(found));
                }
                Err(_) => {
                    let garbage = Read {
                        address: addr,
                        value: v,
                    };
                    let _: Result<redis::Value, _> = self.run(hint, &swap(&garbage, b"", 0)).await;
                    read.push(Read {
                        address: garbage.address,
                        value: Vec::new(),
                    });
                }
            }
        }
        Ok(None)
    }

    /// Runs `f` over the journal, if this worker has one.
    fn in_journal<R>(&self, f: impl FnOnce(&mut Journal<'_>) -> R) -> Option<R> {
        let j = self.journal.as_ref()?;
        let mut f = Some(f);
        let mut out = None;
        j.with(&mut |jr| {
            if let Some(f) = f.take() {
                out = Some(f(jr));
            }
        });
        out
    }

    /// Keeps `writes` in the journal and wakes the flusher; `false` when
    /// there is no journal or no room in it.
    fn keep(&self, writes: &[Write], keys: &SealKeys, now: u64) -> bool {
        if writes.is_empty() {
            return true;
        }
        match self.in_journal(|j| j.record(writes, keys.tag(), now)) {
            Some(Ok(())) => {
                self.flush.notify_one();
                true
            }
            Some(Err(_)) => {
                self.full.set(true);
                false
            }
            None => false,
        }
    }

    /// Remembers the keys a job carries, so that the flusher can seal the
    /// journal's writes made with them (an adopted `random` secret).
    fn learn(&self, job: &Job) {
        match job {
            Job::Lookup(l) => {
                self.know(&l.keys.write);
                self.know(&l.keys.read);
            }
            Job::Write { keys, .. }
            | Job::List { keys, .. }
            | Job::Revoke { keys, .. }
            | Job::RevokeHandle { keys, .. } => self.know(keys),
            Job::Adopt | Job::Flush => {}
        }
    }

    /// Keeps `keys` among those the flusher seals with, once.
    fn know(&self, keys: &SealKeys) {
        let mut known = self.known.borrow_mut();
        if !known.iter().any(|k| k.tag() == keys.tag()) {
            known.push(keys.clone());
        }
    }

    /// Sends the journal's writes as they come, and again after failures.
    async fn flusher(&self) {
        if self.journal.is_none() {
            return;
        }
        loop {
            while self.flush_batch().await {}
            // Idle from here: a write recorded after this store wakes it
            // (`Client::flush`); one recorded before it is claimed by the
            // look that follows.
            self.flusher_idle.store(true, Ordering::SeqCst);
            if self.flush_batch().await {
                self.flusher_idle.store(false, Ordering::SeqCst);
                continue;
            }
            let _ = tokio::time::timeout(FLUSH_TICK, self.flush.notified()).await;
            self.flusher_idle.store(false, Ordering::SeqCst);
        }
    }

    /// Claims a batch of due writes and sends it; whether to go on at once.
    async fn flush_batch(&self) -> bool {
        let tags: Vec<u64> = self.known.borrow().iter().map(SealKeys::tag).collect();
        let lease = self.lease.as_millis() as u64;
        let claimed = self
            .in_journal(|j| j.claim(now_ms(), lease, |t| tags.contains(&t), FLUSH_BATCH))
            .unwrap_or_default();
        if claimed.is_empty() {
            return false;
        }
        let mut all_ok = true;
        let mut groups: Vec<u64> = claimed.iter().map(|c| c.tag).collect();
        groups.sort_unstable();
        groups.dedup();
        for tag in groups {
            let Some(keys) = self.known.borrow().iter().find(|k| k.tag() == tag).cloned() else {
                continue;
            };
            let batch: Vec<&sessions_core::stores::redis::journal::Claimed> =
                claimed.iter().filter(|c| c.tag == tag).collect();
            let writes: Vec<Write> = batch.iter().map(|c| c.write.clone()).collect();
            // Ends well before the lease, so no other flusher sends them meanwhile.
            let sent = tokio::time::timeout(self.lease / 2, self.write(&writes, &keys, None, &[])).await;
            let ok = matches!(sent, Ok(Ok(true)));
            if let Ok(Err(Failure::Refused(why) | Failure::WrongType(why))) = &sent {
                self.report(why.clone());
            }
            // New sessions are kept here only while Redis was last reached
            // (`Client::reached`): the flusher's outcome says so too, as a
            // request's would, and an outage it meets first is logged.
            if !ok {
                self.reached.store(false, Ordering::Relaxed);
            }
            let down = match &sent {
                Ok(Ok(_)) => Some(None),
                Ok(Err(Failure::Down(why))) => Some(Some(why.clone())),
                Err(_) => Some(Some("timed out".to_string())),
                Ok(Err(_)) => None,
            };
            if let Some(transition) = down.and_then(|d| self.transition(d)) {
                self.out.send(Reply {
                    token: 0,
                    answer: Answer::Written,
                    transition: Some(transition),
                    refused: None,
                    full: false,
                });
            }
            all_ok &= ok;
            let now = now_ms();
            self.in_journal(|j| {
                for c in &batch {
                    j.settle(&c.id, c.seq, ok, now);
                }
            });
        }
        all_ok
    }

    /// Whether Redis was reached (`down` is `None`) or not, as a change of
    /// state to report (and log once), if it is one.
    fn transition(&self, down: Option<String>) -> Option<Result<(), String>> {
        let up = down.is_none();
        (up != self.up.replace(up)).then(|| down.map_or(Ok(()), Err))
    }

    /// Tells the nginx thread, at most once a minute, that Redis refused a
    /// command nobody waits for (a missing ACL permission, a key of
    /// another type).
    fn report(&self, why: String) {
        if self.report_refusal() {
            self.out.send(Reply {
                token: 0,
                answer: Answer::Written,
                transition: None,
                refused: Some(why),
                full: false,
            });
        }
    }

    /// Sends `writes` in one pipeline (one command at a time to a cluster,
    /// whose keys live on different nodes). `old`: keys whose copies of the
    /// written ids are deleted (secret rotation). A write to a key in `over`
    /// applies only if that key still holds the value read; `false` when
    /// one did not, and then the new sessions these writes made are removed.
    async fn write(
        &self,
        writes: &[Write],
        keys: &SealKeys,
        old: Option<&SealKeys>,
        over: &[Read],
    ) -> Result<bool, Failure> {
        if writes.is_empty() {
            return Ok(true);
        }
        let was = |addr: &[u8]| over.iter().find(|r| r.address == addr);
        // (command, whether its answer says if it applied)
        let mut cmds: Vec<(redis::Cmd, bool)> = Vec::with_capacity(writes.len() + 1);
        let mut made = Vec::new();
        for w in writes {
            match w {
                Write::Put { id, entry, data, ttl } => {
                    let addr = self.address(keys, id);
                    let value = keys
                        .seal(id, &addr, entry, data, &mut self.rng.borrow_mut())
                        .map_err(|_| Failure::NoRandom)?;
                    match was(&addr) {
                        Some(r) => cmds.push((swap(r, &value, ttl.map_or(0, |t| t.max(1))), true)),
                        None => {
                            let mut c = redis::cmd("SET");
                            c.arg(&addr).arg(value);
                            if let Some(ttl) = ttl {
                                c.arg("PX").arg(*ttl);
                            }
                            cmds.push((c, false));
                            // A live session at a key not read: this attempt made it.
                            if matches!(entry, Entry::Live(_)) {
                                made.push(addr.clone());
                            }
                        }
                    }
                    if let Entry::Live(rec) = entry {
                        self.index(keys, rec, &addr, writes, *ttl, &mut cmds)?;
                    }
                    // The old copy says where it went, for requests that
                    // read it before this write and look again.
                    if let Some(old) = old {
                        let moved = redis::cmd("SET")
                            .arg(self.address(old, id))
                            .arg(MOVED)
                            .arg("PX")
                            .arg(EXPIRED_KEPT)
                            .clone();
                        cmds.push((moved, false));
                    }
                }
                Write::Revoked(r) => self.share_record(keys, r, &mut cmds)?,
                Write::Delete { id } => {
                    let addr = self.address(keys, id);
                    let c = match was(&addr) {
                        Some(r) => (swap(r, b"", 0), true),
                        None => (redis::cmd("DEL").arg(&addr).clone(), false),
                    };
                    cmds.push(c);
                    if let Some(old) = old {
                        cmds.push((redis::cmd("DEL").arg(self.address(old, id)).clone(), false));
                    }
                }
            }
        }
        // The session the writes leave behind: the last one stored.
        let newest = writes.iter().rev().find_map(|w| match w {
            Write::Put {
                id,
                entry: Entry::Live(_),
                ..
            } => Some(id),
            _ => None,
        });
        let hint = self.hint(newest);
        let (cmds, checked): (Vec<redis::Cmd>, Vec<bool>) = cmds.into_iter().unzip();
        let answers: Vec<redis::Value> = self.run_each(hint, &cmds).await?;
        // Redis takes writes: new sessions may be kept (`Client::reached`).
        self.reached.store(true, Ordering::Relaxed);
        // A session ended: no worker's near cache answers for it again,
        // even before Redis's push reaches it.
        if writes.iter().any(|w| matches!(w, Write::Delete { .. })) {
            self.in_journal(|j| j.bump());
        }
        let applied = answers
            .iter()
            .zip(checked)
            .all(|(a, checked)| !checked || *a == redis::Value::Int(1));
        if !applied {
            for addr in &made {
                let _: usize = self.run(hint, redis::cmd("DEL").arg(addr)).await?;
            }
        }
        Ok(applied)
    }

    /// GET on the tracking connection, so that Redis tracks the key for
    /// this worker. `None` without one, or when it failed (the caller then
    /// reads as usual, and keeps nothing).
    async fn tracked_get(&self, addr: &[u8]) -> Option<Option<Vec<u8>>> {
        let mut c = self.tracking_conn.borrow().clone()?;
        redis::cmd("GET").arg(addr).query_async(&mut c).await.ok()
    }

    fn near_ticket(&self) -> Option<Ticket> {
        let near = self.near.as_ref()?;
        near.lock().unwrap_or_else(|e| e.into_inner()).ticket()
    }

    /// Keeps a session read from Redis (and not changed by the request
    /// that read it) in the near cache, unless Redis changed it since.
    fn near_keep(
        &self,
        ticket: Ticket,
        generation: u64,
        id: SessionId,
        keys: &SealKeys,
        rec: Record,
        data: &[u8],
    ) {
        if let Some(near) = &self.near {
            let addr = self.address(keys, &id);
            near.lock()
                .unwrap_or_else(|e| e.into_inner())
                .keep(ticket, generation, id, &addr, rec, data);
        }
    }

    /// Keeps the connection(s) on which Redis pushes changes, and applies
    /// the pushes to the near cache:
    /// - standalone: one connection in default mode
    ///   (`CLIENT TRACKING ON`): Redis pushes changes of the keys read on it,
    ///   and the reads of sessions that may be kept go over it;
    /// - Cluster: one connection per master in broadcast mode (`BCAST
    ///   PREFIX`), each pushing every change under the prefix there, since
    ///   reads go through the cluster connection.
    ///
    /// The cache works only while they are all up, and starts empty each
    /// time they come up: pushes may have been lost.
    async fn track(&self) {
        let Some(near) = self.near.clone() else { return };
        // With Sentinel, no near cache: during a failover a worker may still
        // read the demoted master, and a copy kept then could outlive a
        // logout written to the new one (`make chaos` lost one that way).
        if self.backend.is_sentinel() {
            return;
        }
        let lock = || near.lock().unwrap_or_else(|e| e.into_inner());
        let mut delay = TRACK_RETRY;
        loop {
            let (tx, mut pushes) = mpsc::unbounded_channel();
            let opened = self.open_tracking(tx).await;
            let (mut conns, masters) = match opened {
                Ok(t) => t,
                Err(why) => {
                    if let Some(why) = why {
                        self.report(format!("{why} (the near cache stays off)"));
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(TRACK_RETRY_MAX);
                    continue;
                }
            };
            delay = TRACK_RETRY;
            if masters.is_none() {
                *self.tracking_conn.borrow_mut() = conns.first().cloned();
            }
            lock().enable();
            let mut pinged = std::time::Instant::now();
            loop {
                match tokio::time::timeout(TRACK_CHECK, pushes.recv()).await {
                    Ok(Some(p)) if p.kind == redis::PushKind::Invalidate => {
                        let mut c = lock();
                        match p.data.first() {
                            Some(redis::Value::Array(keys)) => {
                                for k in keys {
                                    if let redis::Value::BulkString(k) = k {
                                        c.invalidate(k);
                                    }
                                }
                            }
                            // A flushed database, or anything unexpected.
                            _ => c.flush(),
                        }
                    }
                    Ok(Some(p)) if p.kind == redis::PushKind::Disconnection => break,
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => {}
                }
                if pinged.elapsed() >= TRACK_TICK {
                    pinged = std::time::Instant::now();
                    if !self.tracking_alive(&mut conns, masters.as_ref()).await {
                        break;
                    }
                }
            }
            *self.tracking_conn.borrow_mut() = None;
            lock().disable();
            // Most often Redis went away: new sessions wait for Redis again
            // (`Client::reached`) until it takes a write, rather than being
            // kept until the next request or flush finds the outage.
            self.reached.store(false, Ordering::Relaxed);
            tokio::time::sleep(TRACK_RETRY).await;
        }
    }

    /// Opens the tracking connection(s) and turns tracking on: the
    /// connections, and with Cluster the masters. An error worth logging
    /// (a refusal) comes back as `Some`.
    #[allow(clippy::type_complexity)]
    async fn open_tracking(
        &self,
        tx: mpsc::UnboundedSender<redis::PushInfo>,
    ) -> Result<(Vec<redis::aio::MultiplexedConnection>, Option<Vec<(String, u16)>>), Option<String>> {
        let refusal = |e: RedisError| (!e.is_io_error()).then(|| e.to_string());
        if let Some(masters) = self.backend.cluster_masters().await.map_err(|_| None)? {
            let mut conns = Vec::with_capacity(masters.len());
            for m in &masters {
                let mut c = self
                    .backend
                    .open_node_tracking(m, tx.clone())
                    .await
                    .map_err(|_| None)?;
                redis::cmd("CLIENT")
                    .arg("TRACKING")
                    .arg("ON")
                    .arg("BCAST")
                    .arg("PREFIX")
                    .arg(&self.prefix)
                    .query_async::<()>(&mut c)
                    .await
                    .map_err(refusal)?;
                conns.push(c);
            }
            return Ok((conns, Some(masters)));
        }
        let Some(mut c) = self.backend.open_tracking(tx).await.map_err(|_| None)? else {
            return Err(None);
        };
        // Default mode: Redis pushes changes of the keys read on this
        // connection only (not every write under the prefix, which would
        // cost every new session a push to every worker).
        redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .query_async::<()>(&mut c)
            .await
            .map_err(refusal)?;
        Ok((vec![c], None))
    }

    /// Whether every tracking connection answers, and with Cluster the
    /// masters are still those it tracks.
    async fn tracking_alive(
        &self,
        conns: &mut [redis::aio::MultiplexedConnection],
        masters: Option<&Vec<(String, u16)>>,
    ) -> bool {
        for c in conns.iter_mut() {
            if redis::cmd("PING").query_async::<()>(c).await.is_err() {
                return false;
            }
        }
        match masters {
            Some(m) => matches!(self.backend.cluster_masters().await, Ok(Some(now)) if now == *m),
            None => true,
        }
    }

    /// The keys of the shared records: a sorted set of every record in
    /// force (score: its end), and a stream of them as they are made.
    fn record_keys(&self) -> (Vec<u8>, Vec<u8>) {
        let key = |name: &[u8]| [self.prefix.as_slice(), name].concat();
        (key(b"revoked"), key(b"revoked-log"))
    }

    /// The commands that share one cookie-store record with every instance.
    fn share_record(
        &self,
        keys: &SealKeys,
        r: &revoked::Shared,
        cmds: &mut Vec<(redis::Cmd, bool)>,
    ) -> Result<(), Failure> {
        let member = keys
            .seal_shared(r, &mut self.rng.borrow_mut())
            .map_err(|_| Failure::NoRandom)?;
        let (all, log) = self.record_keys();
        let now = now_ms();
        let score = if r.until == u64::MAX {
            "+inf".to_string()
        } else {
            r.until.to_string()
        };
        let mut add = redis::cmd("ZADD");
        add.arg(&all).arg(score).arg(&member);
        let mut trim = redis::cmd("ZREMRANGEBYSCORE");
        trim.arg(&all).arg("-inf").arg(format!("({now}"));
        let mut note = redis::cmd("XADD");
        note.arg(&log)
            .arg("MINID")
            .arg("~")
            .arg(now.saturating_sub(RECORDS_LOG_KEPT_MS))
            .arg("*")
            .arg("m")
            .arg(&member);
        cmds.extend([(add, false), (trim, false), (note, false)]);
        Ok(())
    }

    /// Copies the records other instances share into this nginx's zone:
    /// all of them at start and after any failure (some may have been
    /// missed), then the log's new entries every `RECORDS_TICK`.
    async fn follow_records(&self) {
        let Some(sink) = self.records.clone() else { return };
        let mut last: Option<(Vec<u8>, std::time::Instant)> = None;
        loop {
            tokio::time::sleep(RECORDS_TICK).await;
            let fresh = last
                .as_ref()
                .filter(|(_, at)| at.elapsed() < Duration::from_millis(RECORDS_LOG_KEPT_MS / 2));
            let read = match fresh {
                Some((id, _)) => self.records_after(id).await,
                None => self.records_all().await,
            };
            match read {
                Ok((members, tail)) => {
                    let known = self.known.borrow();
                    let recs: Vec<revoked::Shared> = members
                        .iter()
                        .filter_map(|m| known.iter().find_map(|k| k.open_shared(m)))
                        .collect();
                    drop(known);
                    if !recs.is_empty() {
                        sink.apply(&recs, now_ms());
                    }
                    let tail = tail.or_else(|| fresh.map(|(id, _)| id.clone()));
                    last = tail.map(|id| (id, std::time::Instant::now()));
                }
                Err(e) => {
                    last = None;
                    if let Failure::Refused(why) | Failure::WrongType(why) = e {
                        self.report(why);
                    }
                }
            }
        }
    }

    /// Every record in force, and the log's last id (read first: entries
    /// after it are read next time, some perhaps twice, which is harmless).
    async fn records_all(&self) -> Result<(Vec<Vec<u8>>, Option<Vec<u8>>), Failure> {
        let (all, log) = self.record_keys();
        let tail: redis::Value = self
            .run(
                0,
                redis::cmd("XREVRANGE")
                    .arg(&log)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1),
            )
            .await?;
        let tail = log_entries(&tail)
            .pop()
            .map(|(id, _)| id)
            .unwrap_or_else(|| b"0-0".to_vec());
        let members: Vec<Vec<u8>> = self
            .run(0, redis::cmd("ZRANGEBYSCORE").arg(&all).arg(now_ms()).arg("+inf"))
            .await?;
        Ok((members, Some(tail)))
    }

    /// The log's entries after `id`, and the last one's id.
    async fn records_after(&self, id: &[u8]) -> Result<(Vec<Vec<u8>>, Option<Vec<u8>>), Failure> {
        let (_, log) = self.record_keys();
        let start = [b"(".as_slice(), id].concat();
        let reply: redis::Value = self
            .run(
                0,
                redis::cmd("XRANGE")
                    .arg(&log)
                    .arg(start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(RECORDS_BATCH),
            )
            .await?;
        let entries = log_entries(&reply);
        let tail = entries.last().map(|(id, _)| id.clone());
        Ok((entries.into_iter().filter_map(|(_, m)| m).collect(), tail))
    }

    /// Lists a logged-in session (`rec`) in its user's index (session key ->
    /// sealed summary, for the admin endpoint) and points its handle at
    /// that index; drops from the index the ids the same writes retire (a
    /// renewal's old id: its grace pointer leads to this key anyway). The
    /// index lives as long as the longest session in it.
    fn index(
        &self,
        keys: &SealKeys,
        rec: &Record,
        addr: &[u8],
        writes: &[Write],
        ttl: Option<u64>,
        cmds: &mut Vec<(redis::Cmd, bool)>,
    ) -> Result<(), Failure> {
        let Some(user) = rec.user() else {
            return Ok(());
        };
        let idx = self.user_index(keys, user);
        let summary = keys
            .seal_summary(addr, rec, &mut self.rng.borrow_mut())
            .map_err(|_| Failure::NoRandom)?;
        let mut c = redis::cmd("EVAL");
        c.arg(INDEX)
            .arg(1)
            .arg(&idx)
            .arg(addr)
            .arg(summary)
            .arg(ttl.unwrap_or(0));
        for w in writes {
            if let Write::Put {
                id,
                entry: Entry::Grace { .. },
                ..
            } = w
            {
                c.arg(self.address(keys, id));
            }
        }
        cmds.push((c, false));
        let mut pointer = redis::cmd("SET");
        pointer.arg(self.handle_pointer(keys, &rec.handle)).arg(&idx);
        if let Some(ttl) = ttl {
            pointer.arg("PX").arg(ttl);
        }
        cmds.push((pointer, false));
        Ok(())
    }

    fn user_index(&self, keys: &SealKeys, user: &[u8]) -> Vec<u8> {
        let mut idx = Vec::with_capacity(self.prefix.len() + 48);
        keys.user_index(&self.prefix, user, &mut idx);
        idx
    }

    fn handle_pointer(&self, keys: &SealKeys, handle: &Handle) -> Vec<u8> {
        let mut p = Vec::with_capacity(self.prefix.len() + 50);
        keys.handle_pointer(&self.prefix, handle, &mut p);
        p
    }

    /// The sessions an index lists that still exist, with their summaries;
    /// entries whose session ended are dropped from the index on the way.
    async fn indexed(&self, keys: &SealKeys, idx: &[u8]) -> Result<Vec<(Vec<u8>, Record)>, Failure> {
        let entries: Vec<(Vec<u8>, Vec<u8>)> = self.repaired(redis::cmd("HGETALL").arg(idx), idx).await?;
        let probes: Vec<redis::Cmd> = entries
            .iter()
            .map(|(addr, _)| redis::cmd("EXISTS").arg(addr).clone())
            .collect();
        let exists: Vec<bool> = self.run_each(0, &probes).await?;
        let mut live = Vec::with_capacity(entries.len());
        let mut gone = redis::cmd("HDEL");
        gone.arg(idx);
        let mut any_gone = false;
        for ((addr, summary), exists) in entries.into_iter().zip(exists) {
            if !exists {
                gone.arg(&addr);
                any_gone = true;
                continue;
            }
            // A summary that does not open (another secret's) is not listed.
            if let Ok(rec) = keys.open_summary(&addr, &summary) {
                live.push((addr, rec));
            }
        }
        if any_gone {
            let _: usize = self.run(0, &gone).await?;
        }
        Ok(live)
    }

    async fn list(&self, keys: &SealKeys, user: Vec<u8>) -> Result<Answer, Failure> {
        let idx = self.user_index(keys, &user);
        // What this nginx has not sent yet counts as done. The journal is
        // read first: a write it drops meanwhile was acknowledged, so Redis
        // has it when the index is read (the other order misses it).
        let (live, gone) = self
            .in_journal(|j| j.sessions(|r| r.user() == Some(&user[..]), now_ms()))
            .unwrap_or_default();
        let found = self.indexed(keys, &idx).await?;
        let live: Vec<(Vec<u8>, Record)> = live.iter().map(|(id, r)| (self.address(keys, id), *r)).collect();
        let gone: Vec<Vec<u8>> = gone.iter().map(|id| self.address(keys, id)).collect();
        let mut sessions: Vec<Record> = found
            .into_iter()
            .filter(|(a, _)| !gone.contains(a) && !live.iter().any(|(l, _)| l == a))
            .map(|(_, rec)| rec)
            .collect();
        sessions.extend(live.into_iter().map(|(_, rec)| rec));
        Ok(Answer::Listed { user, sessions })
    }

    /// Ends every session of `user` kept under `keys`: deletes the keys its
    /// index lists, then the index. Returns how many sessions existed.
    async fn revoke(&self, keys: &SealKeys, user: &[u8]) -> Result<Answer, Failure> {
        let idx = self.user_index(keys, user);
        let ended = self
            .in_journal(|j| j.revoke(|r| r.user() == Some(user), keys.tag()))
            .unwrap_or_default();
        if !ended.is_empty() {
            self.flush.notify_one();
        }
        let members: Vec<Vec<u8>> = self.repaired(redis::cmd("HKEYS").arg(&idx), &idx).await?;
        // One key a DEL: in a cluster they live on different nodes.
        let deletes: Vec<redis::Cmd> = members.iter().map(|m| redis::cmd("DEL").arg(m).clone()).collect();
        let deleted: Vec<usize> = self.run_each(0, &deletes).await?;
        let _: usize = self.run(0, redis::cmd("DEL").arg(&idx)).await?;
        // Each session counts once: one deleted here, or one this nginx
        // still had pending, whether Redis held it yet or not (the flusher
        // may have deleted it first: it was ended above).
        let ended: Vec<Vec<u8>> = ended.iter().map(|id| self.address(keys, id)).collect();
        let listed = members
            .iter()
            .zip(&deleted)
            .filter(|(m, d)| **d > 0 || ended.contains(m))
            .count();
        let unlisted = ended.iter().filter(|a| !members.contains(a)).count();
        self.in_journal(|j| j.bump());
        Ok(Answer::Revoked(listed + unlisted))
    }

    /// Ends the logged-in session whose handle is `handle`, found through
    /// its pointer and its user's index.
    async fn revoke_handle(&self, keys: &SealKeys, handle: &Handle) -> Result<Answer, Failure> {
        let pending = self
            .in_journal(|j| j.revoke(|r| r.handle == *handle && r.user().is_some(), keys.tag()))
            .unwrap_or_default();
        if !pending.is_empty() {
            self.flush.notify_one();
        }
        let pointer = self.handle_pointer(keys, handle);
        let idx: Option<Vec<u8>> = self.repaired(redis::cmd("GET").arg(&pointer), &pointer).await?;
        let Some(idx) = idx else {
            self.in_journal(|j| j.bump());
            return Ok(Answer::RevokedOne(!pending.is_empty()));
        };
        let mut revoked = 0;
        for (addr, rec) in self.indexed(keys, &idx).await? {
            if rec.handle == *handle {
                revoked += self.run::<usize>(0, redis::cmd("DEL").arg(&addr)).await?;
                let _: usize = self.run(0, redis::cmd("HDEL").arg(&idx).arg(&addr)).await?;
            }
        }
        let _: usize = self.run(0, redis::cmd("DEL").arg(&pointer)).await?;
        self.in_journal(|j| j.bump());
        Ok(Answer::RevokedOne(revoked > 0 || !pending.is_empty()))
    }

    /// The first instance stores a random secret and name; all adopt them.
    /// What is there is checked as strictly as when it was written; a value
    /// this module never writes (a wrong type too) is replaced, once, by a
    /// fresh one, unless another instance replaced it meanwhile.
    async fn adopt(&self) -> Result<Answer, Failure> {
        let secret = sessions_core::primitives::id::random_secret_hex().map_err(|_| Failure::NoRandom)?;
        let name = random_alnum::<16>().map_err(|_| Failure::NoRandom)?;
        let mut got = Vec::with_capacity(2);
        let mut replaced = Vec::new();
        type Check = fn(&[u8]) -> bool;
        let values: [(&str, &[u8], Check); 2] = [
            (
                "random-secret",
                &secret,
                sessions_core::primitives::id::is_random_secret,
            ),
            (
                "random-name",
                &name,
                sessions_core::primitives::id::is_random_name,
            ),
        ];
        for (key, ours, sound) in values {
            let mut k = self.prefix.clone();
            k.extend_from_slice(key.as_bytes());
            let adopt = |seen: &[u8], mode: &str| {
                redis::cmd("EVAL")
                    .arg(ADOPT)
                    .arg(1)
                    .arg(&k)
                    .arg(ours)
                    .arg(seen)
                    .arg(mode)
                    .clone()
            };
            let v: Vec<u8> = self.run(0, &adopt(b"", "0")).await?;
            let v = if sound(&v) {
                v
            } else {
                let again: Vec<u8> = self.run(0, &adopt(&v, "1")).await?;
                if !sound(&again) {
                    return Err(Failure::Refused(format!(
                        "the value at \"{}\" is not one this module writes and could not be replaced",
                        String::from_utf8_lossy(&k)
                    )));
                }
                replaced.push(String::from_utf8_lossy(&k).into_owned());
                again
            };
            got.push(v);
        }
        let name = got.pop().expect("two values");
        let secret = got.pop().expect("two values");
        // Pending writes sealed with it (by a worker since killed, say)
        // are flushed without waiting for a request to bring the keys.
        self.know(&SealKeys::derive(&secret));
        Ok(Answer::Adopted {
            secret,
            name,
            replaced,
        })
    }
}

/// Lists ARGV[1] -> ARGV[2] in the user index KEYS[1], drops ARGV[4..]
/// from it, and makes it live as long as its longest session (ARGV[3] ms,
/// 0: for ever; NX sets the first expiry, GT only extends it). A value of
/// another type there is replaced.
const INDEX: &str = "local t = redis.call('TYPE', KEYS[1]).ok \
    if t ~= 'hash' and t ~= 'none' then redis.call('DEL', KEYS[1]) end \
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) \
    for i = 4, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end \
    if ARGV[3] == '0' then redis.call('PERSIST', KEYS[1]) \
    else redis.call('PEXPIRE', KEYS[1], ARGV[3], 'NX') redis.call('PEXPIRE', KEYS[1], ARGV[3], 'GT') end \
    return 1";

/// The value of KEYS[1] to adopt (a value of another type reads as empty).
/// ARGV[3] `0`: what is there, or ARGV[1] stored when nothing is. `1`:
/// ARGV[2] was found unsound: it is replaced by ARGV[1], unless someone
/// replaced it meanwhile.
const ADOPT: &str = "local v = redis.pcall('GET', KEYS[1]) \
    if type(v) == 'table' then v = '' end \
    if v and (ARGV[3] == '0' or v ~= ARGV[2]) then return v end \
    redis.call('SET', KEYS[1], ARGV[1]) return ARGV[1]";

/// The connection and command timeouts in ms, defaults applied.
/// The entries of an XRANGE or XREVRANGE answer: each id, and its field
/// `m` if it has one. Anything else in the answer is skipped, not trusted.
fn log_entries(v: &redis::Value) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    use redis::Value;
    let bytes = |v: &Value| match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        _ => None,
    };
    let Value::Array(entries) = v else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| match e {
            Value::Array(parts) if parts.len() == 2 => {
                let id = bytes(&parts[0])?;
                let member = match &parts[1] {
                    Value::Array(f) => f
                        .chunks_exact(2)
                        .find(|kv| bytes(&kv[0]).as_deref() == Some(b"m"))
                        .and_then(|kv| bytes(&kv[1])),
                    Value::Map(f) => f
                        .iter()
                        .find(|(k, _)| bytes(k).as_deref() == Some(b"m"))
                        .and_then(|(_, v)| bytes(v)),
                    _ => None,
                };
                Some((id, member))
            }
            _ => None,
        })
        .collect()
}

fn timeouts(settings: &RedisSettings) -> (u64, u64) {
    (
        settings
            .connect_timeout
            .unwrap_or(sessions_core::config::redis_conf::DEFAULT_CONNECT_TIMEOUT),
        settings
            .timeout
            .unwrap_or(sessions_core::config::redis_conf::DEFAULT_TIMEOUT),
    )
}

/// How long a flush holds the journal entries it sends: twice what
/// connecting (discovery included) and one command may take, plus a second.
/// A flush gives up at half of it, so no other worker sends them meanwhile.
fn lease(settings: &RedisSettings) -> Duration {
    let (c, t) = timeouts(settings);
    Duration::from_millis(2 * (3 * c + t) + 1_000)
}

/// How long a request may wait for the Redis thread before nginx gives up
/// on it: the connection and command timeouts, twice (one retry), plus slack.
pub fn patience(settings: &RedisSettings) -> Duration {
    let (c, t) = timeouts(settings);
    Duration::from_millis(2 * (3 * c + 3 * t) + 1_000)
}
