//! The side-car's state, shared by the tasks of one worker's runtime: the
//! connections, the journal and near cache it was given, and where replies
//! go. Each concern adds its methods to `Sidecar` in its own file.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::Write as _;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sessions_core::model::keys::SealKeys;
use sessions_core::primitives::id::RandomPool;
use sessions_core::stores::redis::near_cache::NearCache;
use sessions_core::SessionId;

use crate::backend::Backend;
use crate::{PendingWrites, Reply, Setup, SharedRecords};

#[derive(Clone)]
pub(crate) struct Replies {
    pub(crate) list: Arc<Mutex<Vec<Reply>>>,
    pub(crate) wake: Arc<File>,
}

impl Replies {
    pub(crate) fn send(&self, reply: Reply) {
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

pub(crate) struct Sidecar {
    pub(crate) backend: Backend,
    pub(crate) prefix: Vec<u8>,
    pub(crate) out: Replies,
    /// Whether the last job reached Redis.
    pub(crate) up: Cell<bool>,
    pub(crate) rng: RefCell<RandomPool>,
    pub(crate) next: Cell<usize>,
    /// Writes nobody waits for, in flight, by the session ids they write,
    /// each locked until it is done (see `Turn`).
    pub(crate) pending: RefCell<Vec<(SessionId, Arc<tokio::sync::Mutex<()>>)>>,
    /// When a refusal was last logged.
    pub(crate) last_refusal: Cell<Option<std::time::Instant>>,
    pub(crate) journal: Option<Arc<dyn PendingWrites>>,
    pub(crate) records: Option<Arc<dyn SharedRecords>>,
    pub(crate) near: Option<Arc<Mutex<NearCache>>>,
    /// The tracking connection, while it is up: reads of sessions that may
    /// be kept go over it.
    pub(crate) tracking_conn: RefCell<Option<redis::aio::MultiplexedConnection>>,
    /// The keys the journal's entries may be sealed with, by tag.
    pub(crate) known: RefCell<Vec<SealKeys>>,
    /// Wakes the flusher.
    pub(crate) flush: tokio::sync::Notify,
    /// How long a flush may hold its entries.
    pub(crate) lease: Duration,
    /// A write found the journal full since the last reply.
    pub(crate) full: Cell<bool>,
    pub(crate) flusher_idle: Arc<AtomicBool>,
    pub(crate) reached: Arc<AtomicBool>,
    /// How long a well-signed id missing from Redis is waited for, once.
    pub(crate) recheck: Duration,
}

impl Sidecar {
    /// `lease`: how long a flush holds its entries; `recheck`: how long an
    /// id missing from Redis is waited for.
    pub(crate) fn new(
        backend: Backend,
        prefix: Vec<u8>,
        out: Replies,
        (lease, recheck): (Duration, Duration),
        setup: Setup,
        (flusher_idle, reached): (Arc<AtomicBool>, Arc<AtomicBool>),
    ) -> Self {
        Self {
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
            recheck,
        }
    }

    pub(crate) fn address(&self, keys: &SealKeys, id: &SessionId) -> Vec<u8> {
        let mut a = Vec::with_capacity(self.prefix.len() + 43);
        keys.address(&self.prefix, id, &mut a);
        a
    }

    /// Which connection serves session `id`: always the same one, which
    /// spreads sessions over the connections. Requests without one spread too.
    pub(crate) fn hint(&self, id: Option<&SessionId>) -> usize {
        match id {
            Some(id) => u32::from_le_bytes([id.0[0], id.0[1], id.0[2], id.0[3]]) as usize,
            None => {
                let n = self.next.get().wrapping_add(1);
                self.next.set(n);
                n
            }
        }
    }
}

/// Wall-clock milliseconds, as nginx's `ngx_timeofday` gives them.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
