//! Writes for Redis that this nginx keeps until Redis acknowledges them.
//!
//! A login, logout, new id or data decided as a response leaves cannot wait
//! for Redis, so it is recorded here, in memory every worker shares, before
//! the response goes out. Every worker reads through it (a later request on
//! any worker sees the write at once, a logout takes effect at once even
//! while Redis is down) and every worker's Redis thread flushes it: an entry
//! is claimed for a while (a lease, so one write is in flight per id), sent,
//! and dropped only when Redis acknowledged that very version. A failed
//! flush is retried with backoff; a worker killed mid-flush leaves a lease
//! that runs out, and another worker sends the entry again.
//!
//! One entry per id holds the latest state wanted for it: a newer write
//! replaces an older one still pending, so Redis receives the last state,
//! never an older one after a newer. Like `Table`, plain `#[repr(C)]`
//! data and `u32` indices, tested over ordinary vectors.

use crate::model::data::MAX_BLOB;
use crate::model::record::{Entry, Record};
use crate::primitives::id::SessionId;
use crate::stores::redis::view::Write;

const NIL: u32 = u32::MAX;
/// Changes with the memory layout.
const MAGIC: u64 = 0x6e67_786a_726e_6c31; // "ngxjrnl1"

const FREE: u32 = 0;
const LIVE: u32 = 1;
const GRACE: u32 = 2;
/// The session is to be deleted.
const GONE: u32 = 3;
/// A cookie-store record to share (`Write::Revoked`).
const REVOKED: u32 = 4;
/// A user's other sessions to end (`Write::EndOthers`).
const OTHERS: u32 = 5;

/// First retry delay after a failed flush; it doubles up to `RETRY_MAX`.
pub const RETRY_FIRST: u64 = 100;
pub const RETRY_MAX: u64 = 5_000;

/// Counters since the journal was created, summed over workers.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Writes recorded.
    pub recorded: u64,
    /// Versions Redis acknowledged.
    pub flushed: u64,
    /// Flushes that failed and were scheduled again.
    pub retried: u64,
    /// Writes that found the journal full (sent once, unkept).
    pub full: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct JournalHeader {
    magic: u64,
    capacity: u32,
    bucket_mask: u32,
    len: u32,
    free_head: u32,
    next_seq: u64,
    pub stats: JournalStats,
    /// Whether reaching the bound was logged since it was last below it.
    pub full_reported: u32,
    /// Moves on with every write that may void a copy of a session read
    /// before it (`generation`); a new session's first write does not.
    /// Compared for equality only, so wrapping is harmless.
    voids: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct JournalSlot {
    id: SessionId,
    chain: u32,
    kind: u32,
    /// The version; a flush settles only the version it sent.
    seq: u64,
    /// Which secret's keys seal it (`SealKeys::tag`).
    tag: u64,
    /// When Redis would drop it (`u64::MAX`: never).
    expires: u64,
    /// Claimed by a flush until then.
    lease: u64,
    /// Not to be sent before then (backoff).
    retry_at: u64,
    /// A grace entry's end.
    until: u64,
    tries: u32,
    data_len: u32,
    rec: Record,
    data: [u8; MAX_BLOB],
}

/// How a region is split: header, buckets, slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalPlan {
    pub capacity: u32,
    pub buckets: u32,
}

impl JournalPlan {
    pub fn for_capacity(capacity: u32) -> Self {
        Self {
            capacity,
            buckets: capacity.max(8).next_power_of_two(),
        }
    }

    pub const fn buckets_offset(&self) -> usize {
        size_of::<JournalHeader>()
    }

    /// 8-byte aligned: the buckets are a power of two of at least 8.
    pub const fn slots_offset(&self) -> usize {
        size_of::<JournalHeader>() + 4 * self.buckets as usize
    }

    pub const fn bytes(&self) -> usize {
        self.slots_offset() + size_of::<JournalSlot>() * self.capacity as usize
    }
}

impl JournalHeader {
    pub fn plan(&self) -> Option<JournalPlan> {
        (self.magic == MAGIC).then_some(JournalPlan {
            capacity: self.capacity,
            buckets: self.bucket_mask + 1,
        })
    }
}

/// What the journal says of an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    Put {
        entry: Entry,
        data: Vec<u8>,
    },
    /// Deleted, or expired: no session, whatever Redis still holds.
    Gone,
}

/// A version claimed for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: SessionId,
    pub seq: u64,
    pub tag: u64,
    pub write: Write,
}

/// No room for the writes: they are not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

pub struct Journal<'a> {
    hdr: &'a mut JournalHeader,
    buckets: &'a mut [u32],
    slots: &'a mut [JournalSlot],
}

impl<'a> Journal<'a> {
    pub const fn blank_header() -> JournalHeader {
        JournalHeader {
            magic: 0,
            capacity: 0,
            bucket_mask: 0,
            len: 0,
            free_head: NIL,
            next_seq: 1,
            stats: JournalStats {
                recorded: 0,
                flushed: 0,
                retried: 0,
                full: 0,
            },
            full_reported: 0,
            voids: 0,
        }
    }

    pub const fn blank_slot() -> JournalSlot {
        JournalSlot {
            id: SessionId([0; 16]),
            chain: NIL,
            kind: FREE,
            seq: 0,
            tag: 0,
            expires: 0,
            lease: 0,
            retry_at: 0,
            until: 0,
            tries: 0,
            data_len: 0,
            rec: Record::EMPTY,
            data: [0; MAX_BLOB],
        }
    }

    /// Formats fresh memory; `buckets.len()` must be a power of two.
    pub fn format(hdr: &'a mut JournalHeader, buckets: &'a mut [u32], slots: &'a mut [JournalSlot]) -> Self {
        assert!(buckets.len().is_power_of_two() && slots.len() < NIL as usize);
        let n = slots.len() as u32;
        *hdr = Self::blank_header();
        hdr.magic = MAGIC;
        hdr.capacity = n;
        hdr.bucket_mask = buckets.len() as u32 - 1;
        hdr.free_head = if n == 0 { NIL } else { 0 };
        buckets.fill(NIL);
        for (i, s) in slots.iter_mut().enumerate() {
            *s = Self::blank_slot();
            s.chain = if i as u32 + 1 < n { i as u32 + 1 } else { NIL };
        }
        Self { hdr, buckets, slots }
    }

    /// Reattaches to memory formatted before; `None` if it is not ours.
    pub fn attach(
        hdr: &'a mut JournalHeader,
        buckets: &'a mut [u32],
        slots: &'a mut [JournalSlot],
    ) -> Option<Self> {
        let ok = hdr.magic == MAGIC
            && hdr.capacity as usize == slots.len()
            && hdr.bucket_mask as usize + 1 == buckets.len();
        ok.then_some(Self { hdr, buckets, slots })
    }

    pub fn header(&mut self) -> &mut JournalHeader {
        self.hdr
    }

    /// Writes waiting for Redis.
    pub fn len(&self) -> u32 {
        self.hdr.len
    }

    pub fn is_empty(&self) -> bool {
        self.hdr.len == 0
    }

    /// Moves on with every write recorded on any worker, but a new
    /// session's (`record_new`): a copy of a session read before it may be
    /// older than what this nginx decided since.
    pub fn generation(&self) -> u64 {
        u64::from(self.hdr.voids)
    }

    /// Moves the generation on for a session ended in Redis directly (an
    /// admin revocation, an expiry, a refused address): no copy read before
    /// is used again.
    pub fn bump(&mut self) {
        self.hdr.voids = self.hdr.voids.wrapping_add(1);
    }

    pub fn capacity(&self) -> u32 {
        self.hdr.capacity
    }

    fn bucket(&self, id: &SessionId) -> usize {
        (id.bucket_hash() & self.hdr.bucket_mask) as usize
    }

    fn find(&self, id: &SessionId) -> Option<u32> {
        let mut i = self.buckets[self.bucket(id)];
        while i != NIL {
            let s = &self.slots[i as usize];
            if s.id == *id {
                return Some(i);
            }
            i = s.chain;
        }
        None
    }

    /// What is pending for `id` at `now`, if anything.
    pub fn get(&self, id: &SessionId, now: u64) -> Option<Pending> {
        let s = &self.slots[self.find(id)? as usize];
        if s.kind == REVOKED || s.kind == OTHERS {
            return None; // not a Redis-store session
        }
        if s.expires <= now {
            return Some(Pending::Gone);
        }
        Some(match s.kind {
            LIVE => Pending::Put {
                entry: Entry::Live(s.rec),
                data: s.data[..s.data_len as usize].to_vec(),
            },
            GRACE => Pending::Put {
                entry: Entry::Grace {
                    successor: s.rec.successor,
                    until: s.until,
                },
                data: Vec::new(),
            },
            _ => Pending::Gone,
        })
    }

    /// Keeps `writes` (sealed later with the keys tagged `tag`), all or
    /// none: `Full` when there is no room for them.
    pub fn record(&mut self, writes: &[Write], tag: u64, now: u64) -> Result<(), Full> {
        let new = writes.iter().filter(|w| self.find(w.id()).is_none()).count();
        let oversized = writes
            .iter()
            .any(|w| matches!(w, Write::Put { data, .. } if data.len() > MAX_BLOB));
        if oversized || new as u32 > self.hdr.capacity - self.hdr.len {
            self.hdr.stats.full += 1;
            return Err(Full);
        }
        self.bump();
        self.put(writes, tag, now);
        Ok(())
    }

    /// Keeps the writes that start new sessions (ids nobody has read, so no
    /// copy to void), while at most half the journal is used: requests
    /// without a session can never crowd out the writes that matter (a
    /// login, a logout). `Full` when past that half; nothing is counted,
    /// the caller sends them another way.
    pub fn record_new(&mut self, writes: &[Write], tag: u64, now: u64) -> Result<(), Full> {
        let fits = writes.len() as u32 + self.hdr.len <= self.hdr.capacity / 2;
        let fresh = writes
            .iter()
            .all(|w| matches!(w, Write::Put { data, .. } if data.is_empty()) && self.find(w.id()).is_none());
        if !fits || !fresh {
            return Err(Full);
        }
        self.put(writes, tag, now);
        Ok(())
    }

    fn put(&mut self, writes: &[Write], tag: u64, now: u64) {
        for w in writes {
            let i = match self.find(w.id()) {
                Some(i) => i,
                None => self.allocate(*w.id()),
            };
            let seq = self.hdr.next_seq;
            self.hdr.next_seq += 1;
            let s = &mut self.slots[i as usize];
            s.seq = seq;
            s.tag = tag;
            s.retry_at = 0;
            s.tries = 0;
            match w {
                Write::Put { entry, data, ttl, .. } => {
                    s.expires = ttl.map_or(u64::MAX, |t| now.saturating_add(t));
                    s.data_len = data.len() as u32;
                    s.data[..data.len()].copy_from_slice(data);
                    match entry {
                        Entry::Live(rec) => {
                            s.kind = LIVE;
                            s.rec = *rec;
                        }
                        Entry::Grace { successor, until } => {
                            s.kind = GRACE;
                            s.rec = Record::EMPTY;
                            s.rec.successor = *successor;
                            s.until = *until;
                        }
                    }
                }
                Write::Delete { .. } => {
                    s.kind = GONE;
                    s.expires = u64::MAX;
                    s.data_len = 0;
                    s.rec = Record::EMPTY;
                }
                Write::Revoked(r) => {
                    s.kind = REVOKED;
                    s.expires = u64::MAX;
                    s.data_len = 0;
                    s.rec = Record::EMPTY;
                    s.rec.successor = r.successor;
                    s.until = r.until;
                }
                Write::EndOthers { rec, .. } => {
                    s.kind = OTHERS;
                    s.expires = u64::MAX;
                    s.data_len = 0;
                    s.rec = *rec;
                }
            }
        }
        self.hdr.stats.recorded += writes.len() as u64;
        if self.hdr.len < self.hdr.capacity {
            self.hdr.full_reported = 0;
        }
    }

    fn allocate(&mut self, id: SessionId) -> u32 {
        let i = self.hdr.free_head;
        let b = self.bucket(&id);
        let s = &mut self.slots[i as usize];
        self.hdr.free_head = s.chain;
        // Every field but the data, which is read only up to `data_len`:
        // clearing 1 KB per write cost more than the rest of a new session.
        (s.kind, s.seq, s.tag, s.expires, s.lease) = (FREE, 0, 0, 0, 0);
        (s.retry_at, s.until, s.tries, s.data_len) = (0, 0, 0, 0);
        s.rec = Record::EMPTY;
        s.id = id;
        s.chain = self.buckets[b];
        self.buckets[b] = i;
        self.hdr.len += 1;
        i
    }

    fn release(&mut self, i: u32) {
        let b = self.bucket(&self.slots[i as usize].id);
        let next = self.slots[i as usize].chain;
        if self.buckets[b] == i {
            self.buckets[b] = next;
        } else {
            let mut p = self.buckets[b];
            while self.slots[p as usize].chain != i {
                p = self.slots[p as usize].chain;
            }
            self.slots[p as usize].chain = next;
        }
        let s = &mut self.slots[i as usize];
        s.kind = FREE;
        s.chain = self.hdr.free_head;
        self.hdr.free_head = i;
        self.hdr.len -= 1;
    }

    /// Claims up to `max` versions due at `now` whose keys the caller has
    /// (`known`), for `lease` ms: the writes to send, TTLs counted from now.
    pub fn claim(&mut self, now: u64, lease: u64, known: impl Fn(u64) -> bool, max: usize) -> Vec<Claimed> {
        let mut out = Vec::new();
        // Slots are reused from the most recently freed, so the used ones
        // sit near the front: the scan stops once it has met them all.
        let mut left = self.hdr.len;
        for s in self.slots.iter_mut() {
            if out.len() == max || left == 0 {
                break;
            }
            if s.kind == FREE {
                continue;
            }
            left -= 1;
            if s.lease > now || s.retry_at > now || !known(s.tag) {
                continue;
            }
            s.lease = now.saturating_add(lease);
            let write = if s.kind == REVOKED {
                Write::Revoked(crate::stores::zone::revoked::SharedRecord {
                    key: s.id,
                    successor: s.rec.successor,
                    until: s.until,
                })
            } else if s.kind == OTHERS {
                Write::EndOthers {
                    key: s.id,
                    rec: s.rec,
                }
            } else if s.kind == GONE || s.expires <= now {
                Write::Delete { id: s.id }
            } else {
                let entry = if s.kind == LIVE {
                    Entry::Live(s.rec)
                } else {
                    Entry::Grace {
                        successor: s.rec.successor,
                        until: s.until,
                    }
                };
                Write::Put {
                    id: s.id,
                    entry,
                    data: s.data[..s.data_len as usize].to_vec(),
                    ttl: (s.expires != u64::MAX).then(|| s.expires - now),
                }
            };
            out.push(Claimed {
                id: s.id,
                seq: s.seq,
                tag: s.tag,
                write,
            });
        }
        out
    }

    /// The end of a flush of version `seq` of `id`: acknowledged (`ok`), it
    /// is dropped unless a newer version came meanwhile; failed, it is due
    /// again after a backoff. The lease ends either way.
    pub fn settle(&mut self, id: &SessionId, seq: u64, ok: bool, now: u64) {
        let Some(i) = self.find(id) else { return };
        let s = &mut self.slots[i as usize];
        s.lease = 0;
        if ok {
            self.hdr.stats.flushed += 1;
            if s.seq == seq {
                self.release(i);
            }
            return;
        }
        self.hdr.stats.retried += 1;
        if s.seq == seq {
            s.tries = s.tries.saturating_add(1);
            let delay = RETRY_FIRST
                .saturating_mul(1 << (s.tries - 1).min(16))
                .min(RETRY_MAX);
            s.retry_at = now + delay;
        }
    }

    /// Makes every write due now, backing off or not (a worker leaving).
    pub fn hurry(&mut self) {
        for s in self.slots.iter_mut() {
            s.retry_at = 0;
        }
    }

    /// Ends every pending live session `which` selects (a revocation):
    /// each becomes a pending delete. Returns their ids.
    pub fn revoke(&mut self, which: impl Fn(&Record) -> bool, tag: u64) -> Vec<SessionId> {
        let mut ended = Vec::new();
        for s in self.slots.iter_mut() {
            if s.kind == LIVE && which(&s.rec) {
                s.kind = GONE;
                s.seq = self.hdr.next_seq;
                self.hdr.next_seq += 1;
                s.tag = tag;
                s.expires = u64::MAX;
                s.retry_at = 0;
                s.tries = 0;
                s.rec = Record::EMPTY;
                s.data_len = 0;
                ended.push(s.id);
            }
        }
        if !ended.is_empty() {
            self.bump();
        }
        ended
    }

    /// The pending live sessions `which` selects, and the ids pending deletion.
    pub fn sessions(
        &self,
        which: impl Fn(&Record) -> bool,
        now: u64,
    ) -> (Vec<(SessionId, Record)>, Vec<SessionId>) {
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for s in self.slots.iter() {
            match s.kind {
                LIVE if s.expires > now && which(&s.rec) => live.push((s.id, s.rec)),
                GONE => gone.push(s.id),
                LIVE if s.expires <= now => gone.push(s.id),
                _ => {}
            }
        }
        (live, gone)
    }

    /// Logs the bound once per time it is reached: whether to log now.
    pub fn report_full(&mut self) -> bool {
        let first = self.hdr.full_reported == 0;
        self.hdr.full_reported = 1;
        first
    }
}

/// What the model test looks at.
#[cfg(test)]
impl Journal<'_> {
    /// Checks every invariant of the memory layout.
    pub(crate) fn check(&self) -> Result<(), String> {
        let cap = self.slots.len();
        let mut seen = vec![false; cap];
        let (mut i, mut free) = (self.hdr.free_head, 0usize);
        while i != NIL {
            let s = self
                .slots
                .get(i as usize)
                .ok_or(format!("free link {i} out of range"))?;
            if s.kind != FREE || std::mem::replace(&mut seen[i as usize], true) {
                return Err(format!("free slot {i} in use or twice free"));
            }
            free += 1;
            i = s.chain;
        }
        if free + self.hdr.len as usize != cap {
            return Err(format!("{free} free + {} used != {cap}", self.hdr.len));
        }
        let mut chained = 0usize;
        let mut seqs = Vec::new();
        for (b, &first) in self.buckets.iter().enumerate() {
            let mut i = first;
            while i != NIL {
                let s = &self.slots[i as usize];
                if s.kind == FREE || self.bucket(&s.id) != b || std::mem::replace(&mut seen[i as usize], true)
                {
                    return Err(format!(
                        "slot {i} in bucket {b}: free, elsewhere or chained twice"
                    ));
                }
                if self.find(&s.id) != Some(i) {
                    return Err(format!("slot {i} not found by its id"));
                }
                if !(LIVE..=OTHERS).contains(&s.kind) || s.data_len as usize > MAX_BLOB {
                    return Err(format!("slot {i}: kind {} data {}", s.kind, s.data_len));
                }
                if s.seq == 0 || s.seq >= self.hdr.next_seq {
                    return Err(format!("slot {i}: seq {} of {}", s.seq, self.hdr.next_seq));
                }
                seqs.push(s.seq);
                chained += 1;
                i = s.chain;
            }
        }
        if chained != self.hdr.len as usize {
            return Err(format!("{chained} chained for len {}", self.hdr.len));
        }
        seqs.sort_unstable();
        if seqs.windows(2).any(|w| w[0] == w[1]) {
            return Err("two slots share a version".into());
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::primitives::id::Handle;

    /// Owned memory for a test journal.
    pub(crate) struct Mem {
        hdr: JournalHeader,
        buckets: Vec<u32>,
        slots: Vec<JournalSlot>,
    }

    impl Mem {
        pub(crate) fn new(capacity: u32) -> Self {
            let plan = JournalPlan::for_capacity(capacity);
            let mut m = Self {
                hdr: Journal::blank_header(),
                buckets: vec![0; plan.buckets as usize],
                slots: vec![Journal::blank_slot(); capacity as usize],
            };
            Journal::format(&mut m.hdr, &mut m.buckets, &mut m.slots);
            m
        }

        pub(crate) fn j(&mut self) -> Journal<'_> {
            Journal::attach(&mut self.hdr, &mut self.buckets, &mut self.slots).expect("formatted")
        }
    }

    fn id(n: u8) -> SessionId {
        SessionId([n; 16])
    }

    fn live(n: u8, user: &[u8], ttl: Option<u64>) -> Write {
        let mut rec = Record::new(Handle([n; 8]), 1, &[127, 0, 0, 1], 7);
        if !user.is_empty() {
            rec.log_in(user, false).expect("short");
        }
        Write::Put {
            id: id(n),
            entry: Entry::Live(rec),
            data: b"k=v".to_vec(),
            ttl,
        }
    }

    #[test]
    fn a_write_is_read_back_until_acknowledged() {
        let mut m = Mem::new(4);
        let mut j = m.j();
        j.record(&[live(1, b"alice", Some(10_000))], 9, 1_000).unwrap();
        let Some(Pending::Put {
            entry: Entry::Live(rec),
            data,
        }) = j.get(&id(1), 2_000)
        else {
            panic!("pending login not seen");
        };
        assert_eq!(rec.user(), Some(&b"alice"[..]));
        assert_eq!(data, b"k=v");
        // Redis would have dropped it by then.
        assert_eq!(j.get(&id(1), 11_000), Some(Pending::Gone));
        let c = j.claim(2_000, 500, |t| t == 9, 8);
        assert_eq!(c.len(), 1);
        assert!(matches!(c[0].write, Write::Put { ttl: Some(9_000), .. }));
        j.settle(&id(1), c[0].seq, true, 2_100);
        assert_eq!(j.get(&id(1), 2_100), None);
        assert!(j.is_empty());
    }

    fn fresh(n: u8) -> Write {
        Write::Put {
            id: id(n),
            entry: Entry::Live(Record::new(Handle([n; 8]), 1, &[127, 0, 0, 1], 7)),
            data: Vec::new(),
            ttl: Some(60_000),
        }
    }

    #[test]
    fn new_sessions_use_at_most_half_and_void_no_copy() {
        let mut m = Mem::new(8);
        let mut j = m.j();
        let g = j.generation();
        for n in 1..=4 {
            j.record_new(&[fresh(n)], 9, 0).unwrap();
        }
        assert_eq!(j.generation(), g, "a new session voids no kept copy");
        assert_eq!(
            j.record_new(&[fresh(5)], 9, 0),
            Err(Full),
            "past half the journal"
        );
        assert_eq!(j.header().stats.full, 0, "not a write left unkept");
        // The other half is for the writes that matter.
        for n in 5..=8 {
            j.record(&[live(n, b"alice", None)], 9, 0).unwrap();
        }
        assert!(j.generation() != g, "a login voids copies read before it");
        assert!(matches!(j.get(&id(1), 1), Some(Pending::Put { .. })));
    }

    #[test]
    fn only_fresh_ids_without_data_count_as_new_sessions() {
        let mut m = Mem::new(8);
        let mut j = m.j();
        assert_eq!(j.record_new(&[live(1, b"", None)], 9, 0), Err(Full), "data");
        j.record(&[Write::Delete { id: id(2) }], 9, 0).unwrap();
        assert_eq!(
            j.record_new(&[fresh(2)], 9, 0),
            Err(Full),
            "an id already pending"
        );
        assert_eq!(j.record_new(&[Write::Delete { id: id(3) }], 9, 0), Err(Full));
    }

    #[test]
    fn a_revocation_moves_the_generation() {
        let mut m = Mem::new(8);
        let mut j = m.j();
        j.record(&[live(1, b"alice", None)], 9, 0).unwrap();
        let g = j.generation();
        assert!(j.revoke(|r| r.user() == Some(&b"bob"[..]), 9).is_empty());
        assert_eq!(j.generation(), g, "nothing ended");
        assert_eq!(j.revoke(|r| r.user() == Some(&b"alice"[..]), 9), vec![id(1)]);
        assert!(j.generation() != g);
    }

    #[test]
    fn claim_finds_every_used_slot_after_reuse() {
        let mut m = Mem::new(64);
        let mut j = m.j();
        for n in 1..=40 {
            j.record_new(&[fresh(n)], 9, 0)
                .unwrap_or_else(|_| j.record(&[fresh(n)], 9, 0).unwrap());
        }
        // Free slots in the middle, then reuse some of them.
        for c in j.claim(0, 500, |_| true, 64) {
            let keep = c.id.0[0] % 3 == 0;
            j.settle(&c.id, c.seq, !keep, 0);
        }
        for n in 100..110 {
            j.record(&[fresh(n)], 9, 0).unwrap();
        }
        let pending = j.len() as usize;
        let claimed = j.claim(10_000, 500, |_| true, 64);
        assert_eq!(claimed.len(), pending, "every pending write is claimed");
        assert!(j.claim(10_000, 500, |_| true, 64).is_empty());
    }

    #[test]
    fn a_newer_version_survives_the_acknowledgement_of_an_older() {
        let mut m = Mem::new(4);
        let mut j = m.j();
        j.record(&[live(1, b"", None)], 9, 0).unwrap();
        let c = j.claim(0, 500, |_| true, 8);
        // A logout arrives while the login is in flight.
        j.record(&[Write::Delete { id: id(1) }], 9, 10).unwrap();
        assert!(
            j.claim(10, 500, |_| true, 8).is_empty(),
            "one version in flight per id"
        );
        j.settle(&id(1), c[0].seq, true, 20);
        assert_eq!(j.get(&id(1), 20), Some(Pending::Gone));
        let c = j.claim(20, 500, |_| true, 8);
        assert_eq!(c[0].write, Write::Delete { id: id(1) });
        j.settle(&id(1), c[0].seq, true, 30);
        assert!(j.is_empty());
    }

    #[test]
    fn failures_back_off_and_an_expired_lease_is_claimed_again() {
        let mut m = Mem::new(4);
        let mut j = m.j();
        j.record(&[Write::Delete { id: id(2) }], 9, 0).unwrap();
        let c = j.claim(0, 500, |_| true, 8);
        j.settle(&id(2), c[0].seq, false, 10);
        assert!(j.claim(50, 500, |_| true, 8).is_empty(), "backing off");
        let c = j.claim(110, 500, |_| true, 8);
        assert_eq!(c.len(), 1);
        j.settle(&id(2), c[0].seq, false, 120);
        assert!(
            j.claim(300, 500, |_| true, 8).is_empty(),
            "200 ms after the second failure"
        );
        // A flusher that died keeps its lease only until it runs out.
        let c = j.claim(400, 500, |_| true, 8);
        assert_eq!(c.len(), 1);
        assert!(j.claim(800, 500, |_| true, 8).is_empty());
        assert_eq!(j.claim(901, 500, |_| true, 8).len(), 1);
        // Unknown keys: left for a worker that has them.
        assert!(j.claim(5_000, 500, |t| t != 9, 8).is_empty());
    }

    #[test]
    fn the_bound_refuses_all_or_nothing_and_is_reported_once() {
        let mut m = Mem::new(2);
        let mut j = m.j();
        j.record(&[live(1, b"", None)], 9, 0).unwrap();
        assert_eq!(
            j.record(&[live(2, b"", None), live(3, b"", None)], 9, 0),
            Err(Full)
        );
        assert_eq!(j.get(&id(2), 0), None, "nothing of a refused batch is kept");
        assert_eq!(j.header().stats.full, 1);
        assert!(j.report_full());
        assert!(!j.report_full());
        // Rewriting an id already kept needs no room.
        j.record(&[live(2, b"", None)], 9, 0).unwrap();
        j.record(&[live(1, b"bob", None), live(2, b"", None)], 9, 0)
            .unwrap();
        assert_eq!(j.len(), 2);
    }

    #[test]
    fn revocation_turns_pending_logins_into_deletes() {
        let mut m = Mem::new(8);
        let mut j = m.j();
        j.record(
            &[
                live(1, b"alice", None),
                live(2, b"bob", None),
                live(3, b"alice", None),
            ],
            9,
            0,
        )
        .unwrap();
        let ended = j.revoke(|r| r.user() == Some(&b"alice"[..]), 9);
        assert_eq!(ended.len(), 2);
        assert_eq!(j.get(&id(1), 0), Some(Pending::Gone));
        assert!(matches!(j.get(&id(2), 0), Some(Pending::Put { .. })));
        let (live, gone) = j.sessions(|r| r.user().is_some(), 0);
        assert_eq!(live.len(), 1);
        assert_eq!(gone.len(), 2);
    }

    #[test]
    fn chains_survive_removal_in_any_order() {
        let mut m = Mem::new(16);
        let mut j = m.j();
        // Ids sharing a bucket.
        let ids: Vec<SessionId> = (0..6u8)
            .map(|n| {
                let mut i = [0u8; 16];
                i[4] = n;
                SessionId(i)
            })
            .collect();
        let w: Vec<Write> = ids.iter().map(|&id| Write::Delete { id }).collect();
        j.record(&w, 1, 0).unwrap();
        let c = j.claim(0, 10, |_| true, 16);
        for k in [3, 0, 5, 1, 4, 2] {
            j.settle(&ids[k], c[k].seq, true, 1);
            assert_eq!(j.get(&ids[k], 1), None);
        }
        assert!(j.is_empty());
        j.record(&w, 1, 2).unwrap();
        assert_eq!(j.len(), 6);
    }
}
