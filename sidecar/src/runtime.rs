//! The side-car's runtime: a current-thread tokio runtime on a thread of
//! its own per worker, the jobs it takes from the nginx thread, the
//! replies it hands back (waking nginx through an eventfd), and the order
//! of jobs on one session.

use std::fs::File;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sessions_core::config::redis_conf::{RedisSettings, Topology};
use sessions_core::engine::Presented;
use sessions_core::SessionId;
use tokio::sync::mpsc;

use crate::backend::Backend;
use crate::exec::Failure;
use crate::lookup::UNKNOWN_RECHECK;
use crate::oidc::{Oidc, OidcError, OidcSettings};
use crate::state::{Replies, Sidecar};
use crate::{Answer, Job, Reply, Setup};

/// The nginx thread's side of the Redis thread.
pub struct Client {
    jobs: mpsc::UnboundedSender<(u64, Job)>,
    replies: Arc<Mutex<Vec<Reply>>>,
    /// Set while the flusher waits for work (see `Sidecar::flusher`).
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

/// Why the side-car did not start.
#[derive(Debug)]
pub enum StartError {
    /// The Redis settings do not make a client (an address, TLS files).
    Settings(redis::RedisError),
    /// The tokio runtime could not be built.
    Runtime(std::io::Error),
    /// The thread could not be started.
    Thread(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Settings(e) => write!(f, "{e}"),
            Self::Runtime(e) => write!(f, "the side-car's runtime: {e}"),
            Self::Thread(e) => write!(f, "the side-car's thread: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Starts the thread; `wake` is an eventfd the nginx thread watches.
/// `redis`: the Redis it serves sessions from, if any; `oidc`: the OpenID
/// Providers logins go through, which `Job::Oidc` names by index.
pub fn start(
    redis: Option<(&RedisSettings, &Topology)>,
    oidc: Vec<OidcSettings>,
    wake: File,
    setup: Setup,
) -> Result<Client, StartError> {
    let backend = match redis {
        Some((settings, topology)) => Some(Backend::new(settings, topology).map_err(StartError::Settings)?),
        None => None,
    };
    let prefix = redis.map(|(s, _)| s.prefix().to_vec()).unwrap_or_default();
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
    if let Some(p) = redis.and_then(|(s, _)| s.tls_protocols) {
        provider.cipher_suites.retain(|s| match s.version().version {
            rustls::ProtocolVersion::TLSv1_2 => p.v1_2,
            rustls::ProtocolVersion::TLSv1_3 => p.v1_3,
            _ => false,
        });
    }
    let _ = provider.install_default();
    let (limit, lease) = redis.map_or((Duration::ZERO, Duration::ZERO), |(s, _)| (patience(s), lease(s)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    std::thread::Builder::new()
        .name("sessions-sidecar".into())
        .spawn(move || {
            let local = tokio::task::LocalSet::new();
            let redis = backend.map(|b| {
                Rc::new(Sidecar::new(
                    b,
                    prefix,
                    out.clone(),
                    (lease, UNKNOWN_RECHECK.min(limit / 8)),
                    setup,
                    flags,
                ))
            });
            local.block_on(&rt, serve(redis, oidc, rx, out, limit));
        })
        .map_err(StartError::Thread)?;
    Ok(Client {
        jobs: tx,
        replies,
        flusher_idle,
        reached,
    })
}

/// Takes jobs until nginx's side hangs up: Redis jobs to `redis`'s tasks
/// (each within `limit / 2`), OpenID Provider calls to the relying parties.
pub(crate) async fn serve(
    redis: Option<Rc<Sidecar>>,
    oidc: Vec<OidcSettings>,
    mut rx: mpsc::UnboundedReceiver<(u64, Job)>,
    out: Replies,
    limit: Duration,
) {
    if let Some(shared) = &redis {
        shared.spawn_background();
    }
    let parties: Rc<Vec<Result<Oidc, OidcError>>> = Rc::new(oidc.into_iter().map(Oidc::new).collect());
    while let Some((token, job)) = rx.recv().await {
        if let Job::Oidc { provider, call } = job {
            let (parties, out, shared) = (parties.clone(), out.clone(), redis.clone());
            tokio::task::spawn_local(async move {
                let answer = crate::oidc_jobs::run(&parties, provider, call, shared.as_deref()).await;
                out.send(Reply::plain(token, Answer::Oidc(answer)));
            });
            continue;
        }
        let Some(shared) = &redis else {
            out.send(Reply::plain(token, Answer::Unavailable));
            continue;
        };
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
                    Job::Flush | Job::Oidc { .. } => Ok(Answer::Written),
                    Job::List { user, keys } => s.list(&keys, user).await,
                    Job::Revoke { user, keys } => s.revoke(&keys, &user).await,
                    Job::RevokeHandle { handle, user, keys } => {
                        s.revoke_handle(&keys, &handle, user.as_deref()).await
                    }
                    Job::RevokeOthers { user, except, keys } => s.revoke_others(&keys, &user, &except).await,
                    Job::KeepLimit {
                        user,
                        id,
                        limit,
                        keys,
                    } => s.keep_limit(&keys, &user, &id, limit).await,
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

impl Sidecar {
    /// The tasks that run as long as the side-car: connections kept open,
    /// the sentinels watched, the flusher, shared records, tracking.
    fn spawn_background(self: &Rc<Self>) {
        let s = self.clone();
        tokio::task::spawn_local(async move { s.backend.keep_open().await });
        let s = self.clone();
        tokio::task::spawn_local(async move { s.backend.watch_sentinels().await });
        let s = self.clone();
        tokio::task::spawn_local(async move { s.flusher().await });
        let s = self.clone();
        tokio::task::spawn_local(async move { s.follow_records().await });
        let s = self.clone();
        tokio::task::spawn_local(async move { s.track().await });
    }
}

/// A job's place after the writes nobody waits for (a login, logout, new
/// id or data, sent as a response left) that came before it on the same
/// session: the next request of a session sees what its last response
/// changed, whichever connection each uses. Admin jobs come after every
/// such write before them. Requests of one session otherwise run side by
/// side: their own writes are made over what they read (`SWAP`).
#[derive(Default)]
pub(crate) struct Turn {
    /// Held by a write until it is done.
    pub(crate) lock: Option<(Arc<tokio::sync::Mutex<()>>, tokio::sync::OwnedMutexGuard<()>)>,
    /// The writes to wait for.
    pub(crate) after: Vec<Arc<tokio::sync::Mutex<()>>>,
}

impl Turn {
    async fn wait(&self) {
        for earlier in &self.after {
            drop(earlier.lock().await);
        }
    }
}

pub(crate) fn timeouts(settings: &RedisSettings) -> (u64, u64) {
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
pub(crate) fn lease(settings: &RedisSettings) -> Duration {
    let (c, t) = timeouts(settings);
    Duration::from_millis(2 * (3 * c + t) + 1_000)
}

/// How long a request may wait for a login's call to an OpenID Provider:
/// each of the up to five calls one takes (discovery, keys, token, keys
/// again for a new key, UserInfo) within its timeout, plus slack. The
/// side-car gives up on the call first (`oidc_jobs::run`).
pub fn oidc_patience(settings: &OidcSettings) -> Duration {
    settings.timeout * crate::oidc_jobs::MAX_CALLS + Duration::from_secs(1)
}

/// How long a request may wait for the Redis thread before nginx gives up
/// on it: the connection and command timeouts, twice (one retry), plus slack.
pub fn patience(settings: &RedisSettings) -> Duration {
    let (c, t) = timeouts(settings);
    Duration::from_millis(2 * (3 * c + 3 * t) + 1_000)
}

impl Sidecar {
    /// The job's turn, taken as it arrives (see `Turn`).
    pub(crate) fn turn(&self, job: &Job) -> Turn {
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
            Job::List { .. }
            | Job::Revoke { .. }
            | Job::RevokeHandle { .. }
            | Job::RevokeOthers { .. }
            | Job::KeepLimit { .. } => Turn {
                lock: None,
                after: earlier(&|_| true),
            },
            Job::Adopt | Job::Flush | Job::Oidc { .. } => Turn::default(),
        }
    }

    pub(crate) fn done(&self, turn: Turn) {
        if let Some((lock, _)) = turn.lock {
            self.pending.borrow_mut().retain(|(_, l)| !Arc::ptr_eq(l, &lock));
        }
    }
}
