//! A worker's near cache of Redis sessions: the sessions it recently read,
//! kept while Redis tells it of every change (server-assisted client-side
//! caching, `CLIENT TRACKING ... BCAST`), so that a request for one of them
//! is decided without a round trip.
//!
//! Coherence:
//! - a change pushed by Redis removes the session (`invalidate`);
//! - while the tracking connection is down nothing is kept or answered,
//!   and whatever was kept is dropped when it goes down or comes back
//!   (`disable`, `enable`): pushes may have been lost meanwhile;
//! - a value read from Redis is kept only if no push for its key, no
//!   disconnection and no flush came after the read was sent (`Ticket`):
//!   a push may be handled before the reply it follows on the wire;
//! - a copy is used only while this nginx recorded no write for Redis
//!   since it was read (the journal's generation, `get`): its own logout
//!   must hold on every worker at once, even in the moment between Redis
//!   acknowledging it and the push reaching the worker;
//! - the session's own timeouts are the caller's, checked against the
//!   clock on every hit as on a read from Redis.

use std::collections::{HashMap, VecDeque};

use crate::model::record::Record;
use crate::primitives::id::SessionId;

/// Keys invalidated recently, remembered so that a read sent before one
/// of them is not kept; a read older than all of them is not kept either.
const HISTORY: usize = 4096;

#[derive(Debug, Clone)]
struct Cached {
    record: Record,
    data: Vec<u8>,
    address: Vec<u8>,
    /// The journal's generation before the read (see `get`).
    generation: u64,
}

/// Taken before a read is sent; `keep` honours it only if nothing that
/// could make the value stale happened since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    epoch: u64,
    seq: u64,
}

#[derive(Debug)]
pub struct NearCache {
    enabled: bool,
    /// Bumped by every flush: tickets from before are void.
    epoch: u64,
    /// Bumped by every invalidation.
    seq: u64,
    entries: HashMap<[u8; 16], Cached>,
    by_address: HashMap<Vec<u8>, [u8; 16]>,
    /// (seq, key) of recent invalidations, oldest first.
    recent: VecDeque<(u64, Vec<u8>)>,
    /// Invalidations up to this seq are no longer in `recent`.
    forgotten: u64,
    capacity: usize,
}

impl NearCache {
    /// Keeps at most `capacity` sessions; disabled until `enable`.
    pub fn new(capacity: usize) -> Self {
        Self {
            enabled: false,
            epoch: 0,
            seq: 0,
            entries: HashMap::new(),
            by_address: HashMap::new(),
            recent: VecDeque::new(),
            forgotten: 0,
            capacity: capacity.max(1),
        }
    }

    /// The tracking connection is up: start afresh.
    pub fn enable(&mut self) {
        self.flush();
        self.enabled = true;
    }

    /// The tracking connection is down: keep and answer nothing.
    pub fn disable(&mut self) {
        self.flush();
        self.enabled = false;
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Drops everything (Redis flushed a database, or pushes were lost).
    pub fn flush(&mut self) {
        self.epoch += 1;
        self.entries.clear();
        self.by_address.clear();
        self.recent.clear();
        self.forgotten = self.seq;
    }

    /// Redis says the value at `address` changed.
    pub fn invalidate(&mut self, address: &[u8]) {
        self.seq += 1;
        if let Some(id) = self.by_address.remove(address) {
            self.entries.remove(&id);
        }
        if self.recent.len() == HISTORY {
            if let Some((seq, _)) = self.recent.pop_front() {
                self.forgotten = seq;
            }
        }
        self.recent.push_back((self.seq, address.to_vec()));
    }

    /// Whether Redis said lately that the value at `address` changed (was
    /// written, deleted or expired): a key missing now is then gone, not
    /// yet to come.
    pub fn changed_lately(&self, address: &[u8]) -> bool {
        self.recent.iter().any(|(_, a)| a == address)
    }

    /// Taken before reading from Redis; `None` while disabled.
    pub fn ticket(&self) -> Option<Ticket> {
        self.enabled.then_some(Ticket {
            epoch: self.epoch,
            seq: self.seq,
        })
    }

    /// Keeps session `id`, read at `address` after `ticket` was taken
    /// (and after the journal was at `generation`), unless something since
    /// may have changed it. Whether it was kept.
    pub fn keep(
        &mut self,
        ticket: Ticket,
        generation: u64,
        id: SessionId,
        address: &[u8],
        record: Record,
        data: &[u8],
    ) -> bool {
        let changed = !self.enabled
            || ticket.epoch != self.epoch
            || ticket.seq < self.forgotten
            || self
                .recent
                .iter()
                .rev()
                .take_while(|(seq, _)| *seq > ticket.seq)
                .any(|(_, a)| a == address);
        if changed {
            return false;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&id.0) {
            // Any one goes: what stays is re-read on its next miss.
            if let Some(old) = self.entries.keys().next().copied() {
                if let Some(c) = self.entries.remove(&old) {
                    self.by_address.remove(&c.address);
                }
            }
        }
        self.by_address.insert(address.to_vec(), id.0);
        self.entries.insert(
            id.0,
            Cached {
                record,
                data: data.to_vec(),
                address: address.to_vec(),
                generation,
            },
        );
        true
    }

    /// The session kept for `id`, as it was read from Redis, and the
    /// journal's generation before that read: the caller uses it only if the
    /// journal is still there.
    pub fn get(&self, id: &SessionId) -> Option<(Record, &[u8], u64)> {
        if !self.enabled {
            return None;
        }
        self.entries
            .get(&id.0)
            .map(|c| (c.record, c.data.as_slice(), c.generation))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> SessionId {
        SessionId([b; 16])
    }

    fn cache() -> NearCache {
        let mut c = NearCache::new(4);
        c.enable();
        c
    }

    #[test]
    fn a_read_is_answered_until_its_key_changes() {
        let mut c = cache();
        let t = c.ticket().unwrap();
        assert!(c.keep(t, 0, id(1), b"k1", Record::EMPTY, b"data"));
        assert_eq!(c.get(&id(1)).map(|(_, d, _)| d), Some(&b"data"[..]));
        c.invalidate(b"k2");
        assert!(c.get(&id(1)).is_some(), "another key");
        c.invalidate(b"k1");
        assert!(c.get(&id(1)).is_none());
    }

    #[test]
    fn a_key_pushed_lately_is_known_to_be_gone_until_a_flush() {
        let mut c = cache();
        assert!(!c.changed_lately(b"k1"));
        c.invalidate(b"k1");
        assert!(c.changed_lately(b"k1"));
        assert!(!c.changed_lately(b"k2"));
        c.flush();
        assert!(!c.changed_lately(b"k1"), "pushes may have been lost");
    }

    #[test]
    fn a_push_handled_before_the_reply_it_follows_voids_the_read() {
        let mut c = cache();
        let t = c.ticket().unwrap();
        c.invalidate(b"k1"); // the write after the read, pushed first
        assert!(!c.keep(t, 0, id(1), b"k1", Record::EMPTY, b""));
        assert!(c.get(&id(1)).is_none());
        // A push for another key does not.
        let t = c.ticket().unwrap();
        c.invalidate(b"k9");
        assert!(c.keep(t, 0, id(1), b"k1", Record::EMPTY, b""));
    }

    #[test]
    fn disconnection_drops_everything_and_voids_reads_in_flight() {
        let mut c = cache();
        let t = c.ticket().unwrap();
        assert!(c.keep(t, 0, id(1), b"k1", Record::EMPTY, b""));
        let in_flight = c.ticket().unwrap();
        c.disable();
        assert!(c.get(&id(1)).is_none());
        assert!(c.ticket().is_none());
        c.enable();
        assert!(c.get(&id(1)).is_none(), "nothing survives a reconnection");
        assert!(!c.keep(in_flight, 0, id(2), b"k2", Record::EMPTY, b""));
    }

    #[test]
    fn a_read_older_than_the_history_is_not_kept() {
        let mut c = cache();
        let t = c.ticket().unwrap();
        for i in 0..=HISTORY {
            c.invalidate(format!("other{i}").as_bytes());
        }
        assert!(!c.keep(t, 0, id(1), b"k1", Record::EMPTY, b""));
    }

    #[test]
    fn a_copy_says_which_journal_generation_it_was_read_at() {
        let mut c = cache();
        let t = c.ticket().unwrap();
        assert!(c.keep(t, 7, id(1), b"k1", Record::EMPTY, b""));
        assert_eq!(c.get(&id(1)).map(|(_, _, g)| g), Some(7));
    }

    #[test]
    fn capacity_is_bounded() {
        let mut c = cache();
        for i in 0..10u8 {
            let t = c.ticket().unwrap();
            assert!(c.keep(t, 0, id(i), &[i], Record::EMPTY, b""));
        }
        assert_eq!(c.len(), 4);
        assert!(c.get(&id(9)).is_some());
        // The index follows: invalidating a dropped key changes nothing.
        for i in 0..10u8 {
            c.invalidate(&[i]);
        }
        assert!(c.is_empty());
    }
}
