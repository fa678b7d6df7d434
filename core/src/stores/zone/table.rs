//! The session table kept in shared memory.
//!
//! A fixed-capacity hash table with chaining and a segmented LRU, built only from
//! `#[repr(C)]` plain data and `u32` indices: no pointers, so the same bytes
//! are valid in every worker and survive a reload. The module places it in the
//! zone and holds the zone's lock around every call; here it is plain memory,
//! so the logic is tested over ordinary vectors.

use crate::engine::status::Status;
use crate::engine::store::{Event, Store};
use crate::model::record::{DataFull, Entry, Record, ENDED};
use crate::primitives::id::{Handle, SessionId};

const NIL: u32 = crate::model::record::NO_DATA;
/// Changes with the memory layout: a zone left by another layout is refused.
const MAGIC: u64 = 0x6e67_7873_6573_7334; // "ngxsess4"

/// Slot states.
const FREE: u32 = 0;
const LIVE: u32 = 1;
/// A renewed id, still accepted for a grace period; `rec.successor` is the new id.
const GRACE: u32 = 2;
/// The bits of `state` above; the flag below marks a protected slot.
const KIND: u32 = 0xff;
/// In the protected segment: a session that came back, or is logged in.
const PROTECTED: u32 = 0x100;

/// Counters since the zone was created, summed over workers, for metrics.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub created: u64,
    pub renewed: u64,
    /// Removed from a full table while still valid.
    pub evicted: u64,
    /// Of those, sessions that had come back or were logged in.
    pub evicted_returning: u64,
    /// Removed by the table because their time was up, without a request.
    pub expired: u64,
    /// Presented after their time was up, by timeout.
    pub expired_idle: u64,
    pub expired_rolling: u64,
    pub expired_absolute: u64,
    /// Presented cookies refused for other reasons.
    pub refused_invalid: u64,
    pub refused_unknown: u64,
    pub refused_ip: u64,
    pub refused_ua: u64,
    /// Cookies of logged-in sessions that were logged out or revoked.
    pub refused_ended: u64,
    /// Differences let through by a check that only logs.
    pub tolerated_ip: u64,
    pub tolerated_ua: u64,
    pub logins: u64,
    pub logouts: u64,
    /// `sessions_max_per_user`: sessions ended, logins refused.
    pub limit_ended: u64,
    pub limit_refused: u64,
    /// Requests that found Redis unreachable: answered 503, or given a
    /// session in the zone (`sessions_redis_unavailable local`).
    pub redis_refused: u64,
    pub redis_local: u64,
    /// OpenID Connect logins and logouts, by how they ended (`OidcOutcome`).
    pub oidc: [u64; crate::engine::store::OIDC_OUTCOMES],
}

/// Zone-wide values kept with the table.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Header {
    magic: u64,
    capacity: u32,
    bucket_mask: u32,
    len: u32,
    free_head: u32,
    /// Probation, the sessions seen once: most recently used.
    lru_head: u32,
    /// Least recently used: evicted first.
    lru_tail: u32,
    chunks: u32,
    chunk_free: u32,
    chunks_free: u32,
    /// Protected, the sessions that came back or are logged in: evicted
    /// only when probation is empty.
    prot_head: u32,
    prot_tail: u32,
    prot_len: u32,
    _pad: u32,
    pub stats: Stats,
    /// `sessions_secret random`: generated once per zone.
    pub random_secret: [u8; 32],
    /// `sessions_name random`: generated once per zone.
    pub random_name: [u8; 16],
}

/// Payload bytes per data chunk.
pub const CHUNK_DATA: usize = 56;

/// A link of a session's data chain.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Chunk {
    next: u32,
    len: u32,
    bytes: [u8; CHUNK_DATA],
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    id: SessionId,
    chain: u32,
    lru_prev: u32,
    lru_next: u32,
    state: u32,
    /// When the slot may be reclaimed without counting an eviction.
    deadline: u64,
    pub rec: Record,
}

/// How the table splits a region of `bytes`: a fifth for session data,
/// the rest for the header, the hash buckets and the slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub capacity: u32,
    pub buckets: u32,
    pub chunks: u32,
}

impl Plan {
    /// Largest table that fits in `bytes`; `None` when not even a few slots fit.
    pub fn for_bytes(bytes: usize) -> Option<Self> {
        let chunks = bytes / 5 / size_of::<Chunk>();
        let rest = bytes.checked_sub(chunks * size_of::<Chunk>())?;
        let hdr = size_of::<Header>();
        let slot = size_of::<Slot>();
        let rough = rest.checked_sub(hdr)? / (slot + 4);
        if rough < 8 {
            return None;
        }
        // Power-of-two buckets, load factor between 1 and 2.
        let buckets = 1usize << (usize::BITS - 1 - rough.leading_zeros());
        let capacity = (rest - hdr - 4 * buckets) / slot;
        Some(Self {
            capacity: u32::try_from(capacity).ok()?.min(NIL - 1),
            buckets: u32::try_from(buckets).ok()?,
            chunks: u32::try_from(chunks).ok()?.min(NIL - 1),
        })
    }

    /// Bytes the plan occupies, laid out header, buckets, slots, chunks.
    pub fn bytes(&self) -> usize {
        self.chunks_offset() + size_of::<Chunk>() * self.chunks as usize
    }

    /// Where the bucket array starts (after the header).
    pub const fn buckets_offset(&self) -> usize {
        size_of::<Header>()
    }

    /// Where the slot array starts (after the buckets); 8-byte aligned
    /// because `buckets` is a power of two of at least 8.
    pub const fn slots_offset(&self) -> usize {
        size_of::<Header>() + 4 * self.buckets as usize
    }

    /// Where the data chunks start (after the slots).
    pub const fn chunks_offset(&self) -> usize {
        self.slots_offset() + size_of::<Slot>() * self.capacity as usize
    }
}

impl Header {
    /// The plan this header was formatted with, if it is ours.
    pub fn plan(&self) -> Option<Plan> {
        (self.magic == MAGIC).then_some(Plan {
            capacity: self.capacity,
            buckets: self.bucket_mask + 1,
            chunks: self.chunks,
        })
    }
}

/// One session (or renewed id) as `Table::export` gives it for the state
/// file, with when it may be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub id: SessionId,
    pub entry: Entry,
    pub deadline: Option<u64>,
    pub data: Vec<u8>,
    /// In the table's protected segment (see `Table::insert`).
    pub protected: bool,
}

/// What making room cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reclaimed {
    pub expired: u32,
    pub evicted: u32,
}

/// A view over the table's memory.
pub struct Table<'a> {
    hdr: &'a mut Header,
    buckets: &'a mut [u32],
    slots: &'a mut [Slot],
    chunks: &'a mut [Chunk],
}

impl<'a> Table<'a> {
    /// Formats fresh memory. `buckets.len()` must be a power of two.
    pub fn format(
        hdr: &'a mut Header,
        buckets: &'a mut [u32],
        slots: &'a mut [Slot],
        chunks: &'a mut [Chunk],
    ) -> Self {
        assert!(buckets.len().is_power_of_two() && slots.len() < NIL as usize && chunks.len() < NIL as usize);
        let n = slots.len() as u32;
        *hdr = Header {
            magic: MAGIC,
            capacity: n,
            bucket_mask: buckets.len() as u32 - 1,
            len: 0,
            free_head: if n == 0 { NIL } else { 0 },
            lru_head: NIL,
            lru_tail: NIL,
            chunks: chunks.len() as u32,
            chunk_free: if chunks.is_empty() { NIL } else { 0 },
            chunks_free: chunks.len() as u32,
            prot_head: NIL,
            prot_tail: NIL,
            prot_len: 0,
            _pad: 0,
            stats: Stats::default(),
            random_secret: [0; 32],
            random_name: [0; 16],
        };
        buckets.fill(NIL);
        for (i, s) in slots.iter_mut().enumerate() {
            let next = i as u32 + 1;
            *s = Slot {
                id: SessionId::default(),
                chain: if next < n { next } else { NIL },
                lru_prev: NIL,
                lru_next: NIL,
                state: FREE,
                deadline: 0,
                rec: Record::default(),
            };
        }
        let m = chunks.len() as u32;
        for (i, c) in chunks.iter_mut().enumerate() {
            let next = i as u32 + 1;
            *c = Chunk {
                next: if next < m { next } else { NIL },
                len: 0,
                bytes: [0; CHUNK_DATA],
            };
        }
        Self {
            hdr,
            buckets,
            slots,
            chunks,
        }
    }

    /// Reattaches to memory formatted before (a reload); `None` if it is not ours.
    pub fn attach(
        hdr: &'a mut Header,
        buckets: &'a mut [u32],
        slots: &'a mut [Slot],
        chunks: &'a mut [Chunk],
    ) -> Option<Self> {
        let ok = hdr.magic == MAGIC
            && hdr.capacity as usize == slots.len()
            && hdr.bucket_mask as usize + 1 == buckets.len()
            && hdr.chunks as usize == chunks.len();
        ok.then_some(Self {
            hdr,
            buckets,
            slots,
            chunks,
        })
    }

    /// A blank chunk, for allocating test tables.
    pub const fn blank_chunk() -> Chunk {
        Chunk {
            next: NIL,
            len: 0,
            bytes: [0; CHUNK_DATA],
        }
    }

    /// An empty, uninitialised header to format over.
    pub const fn blank_header() -> Header {
        Header {
            magic: 0,
            capacity: 0,
            bucket_mask: 0,
            len: 0,
            free_head: NIL,
            lru_head: NIL,
            lru_tail: NIL,
            chunks: 0,
            chunk_free: NIL,
            chunks_free: 0,
            prot_head: NIL,
            prot_tail: NIL,
            prot_len: 0,
            _pad: 0,
            stats: Stats {
                created: 0,
                renewed: 0,
                evicted: 0,
                evicted_returning: 0,
                expired: 0,
                expired_idle: 0,
                expired_rolling: 0,
                expired_absolute: 0,
                refused_invalid: 0,
                refused_unknown: 0,
                refused_ip: 0,
                refused_ua: 0,
                refused_ended: 0,
                tolerated_ip: 0,
                tolerated_ua: 0,
                logins: 0,
                limit_ended: 0,
                limit_refused: 0,
                logouts: 0,
                redis_refused: 0,
                oidc: [0; crate::engine::store::OIDC_OUTCOMES],
                redis_local: 0,
            },
            random_secret: [0; 32],
            random_name: [0; 16],
        }
    }

    /// A blank slot, for allocating test tables.
    pub const fn blank_slot() -> Slot {
        Slot {
            id: SessionId([0; 16]),
            chain: NIL,
            lru_prev: NIL,
            lru_next: NIL,
            state: FREE,
            deadline: 0,
            rec: Record::EMPTY,
        }
    }

    pub fn header(&mut self) -> &mut Header {
        self.hdr
    }

    pub fn len(&self) -> u32 {
        self.hdr.len
    }

    pub fn is_empty(&self) -> bool {
        self.hdr.len == 0
    }

    pub fn capacity(&self) -> u32 {
        self.hdr.capacity
    }

    /// Bytes of memory the table spans.
    pub fn bytes(&self) -> usize {
        self.hdr.plan().map_or(0, |p| p.bytes())
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

    /// Looks an id up.
    pub fn get(&self, id: &SessionId) -> Option<Entry> {
        let s = &self.slots[self.find(id)? as usize];
        Some(match s.state & KIND {
            GRACE => Entry::Grace {
                successor: s.rec.successor,
                until: s.deadline,
            },
            _ => Entry::Live(s.rec),
        })
    }

    /// Replaces a record (its data stays the slot's own) and marks it most
    /// recently used, protected.
    pub fn update(&mut self, id: &SessionId, rec: &Record, deadline: Option<u64>) -> bool {
        let Some(i) = self.find(id) else { return false };
        // Unlinked first: `lru_unlink` reads the segment from the state.
        self.lru_unlink(i);
        let s = &mut self.slots[i as usize];
        let (data, data_len) = (s.rec.data, s.rec.data_len);
        s.rec = Record {
            data,
            data_len,
            ..*rec
        };
        s.state = LIVE;
        s.deadline = deadline.unwrap_or(u64::MAX);
        self.lru_push_head(i, true);
        true
    }

    /// Records activity on a live session: last-seen, deadline, most
    /// recently used. It came back: it is protected from now on. `false`
    /// for a missing or renewed id.
    pub fn touch(&mut self, id: &SessionId, last_seen: u64, deadline: Option<u64>) -> bool {
        let Some(i) = self
            .find(id)
            .filter(|&i| self.slots[i as usize].state & KIND == LIVE)
        else {
            return false;
        };
        let s = &mut self.slots[i as usize];
        s.rec.last_seen = last_seen;
        s.deadline = deadline.unwrap_or(u64::MAX);
        self.lru_unlink(i);
        self.lru_push_head(i, true);
        true
    }

    /// Turns `id` into a pointer to `successor`, accepted until `until`.
    /// The caller carries the record, data included, over to `successor`:
    /// the retired slot gives up its data chain.
    pub fn retire(&mut self, id: &SessionId, successor: SessionId, until: u64) -> bool {
        let Some(i) = self.find(id) else { return false };
        let s = &mut self.slots[i as usize];
        s.state = GRACE | (s.state & PROTECTED);
        s.rec.successor = successor;
        s.rec.data = NIL;
        s.rec.data_len = 0;
        s.deadline = until;
        true
    }

    /// Ends `id` (a logout, a revocation): its data is freed and it becomes
    /// the record that it ended (`Entry::ended`) until `until`, among the
    /// sessions seen once, the first a full table evicts.
    pub fn end(&mut self, id: &SessionId, until: u64) -> bool {
        let Some(i) = self.find(id) else { return false };
        let data = self.slots[i as usize].rec.data;
        self.free_chain(data);
        self.lru_unlink(i);
        let s = &mut self.slots[i as usize];
        s.state = GRACE;
        s.rec.successor = ENDED;
        s.rec.data = NIL;
        s.rec.data_len = 0;
        s.deadline = until;
        self.lru_push_head(i, false);
        true
    }

    /// Removes `id`; returns whether it was there.
    pub fn remove(&mut self, id: &SessionId) -> bool {
        match self.take(id) {
            Some(rec) => {
                self.free_chain(rec.data);
                true
            }
            None => false,
        }
    }

    /// Removes `id` and hands its record, data chain included, to the caller,
    /// who must store it again under another id.
    pub fn take(&mut self, id: &SessionId) -> Option<Record> {
        let b = self.bucket(id);
        let mut prev = NIL;
        let mut i = self.buckets[b];
        while i != NIL {
            if self.slots[i as usize].id == *id {
                let next = self.slots[i as usize].chain;
                if prev == NIL {
                    self.buckets[b] = next;
                } else {
                    self.slots[prev as usize].chain = next;
                }
                self.lru_unlink(i);
                let s = &mut self.slots[i as usize];
                let rec = s.rec;
                s.state = FREE;
                s.rec = Record::default();
                s.chain = self.hdr.free_head;
                self.hdr.free_head = i;
                self.hdr.len -= 1;
                return Some(rec);
            }
            prev = i;
            i = self.slots[i as usize].chain;
        }
        None
    }

    fn free_chain(&mut self, mut c: u32) {
        while c != NIL {
            let chunk = &mut self.chunks[c as usize];
            let next = chunk.next;
            chunk.next = self.hdr.chunk_free;
            chunk.len = 0;
            self.hdr.chunk_free = c;
            self.hdr.chunks_free += 1;
            c = next;
        }
    }

    fn chain_len(&self, mut c: u32) -> u32 {
        let mut n = 0;
        while c != NIL {
            n += 1;
            c = self.chunks[c as usize].next;
        }
        n
    }

    /// Replaces the data of `id` with `blob` (empty removes it). On
    /// `DataFull` the old data is kept.
    pub fn set_data(&mut self, id: &SessionId, blob: &[u8]) -> Result<(), DataFull> {
        // A renewed id has handed its data on: nothing to set.
        let Some(i) = self
            .find(id)
            .filter(|&i| self.slots[i as usize].state & KIND == LIVE)
        else {
            return Ok(());
        };
        let old = self.slots[i as usize].rec.data;
        let need = blob.len().div_ceil(CHUNK_DATA) as u32;
        if blob.len() > usize::from(u16::MAX) || self.hdr.chunks_free + self.chain_len(old) < need {
            return Err(DataFull);
        }
        self.free_chain(old);
        let mut head = NIL;
        // Build the chain back to front so each chunk links to the next.
        for part in blob.chunks(CHUNK_DATA).rev() {
            let c = self.hdr.chunk_free;
            let chunk = &mut self.chunks[c as usize];
            self.hdr.chunk_free = chunk.next;
            self.hdr.chunks_free -= 1;
            chunk.next = head;
            chunk.len = part.len() as u32;
            chunk.bytes[..part.len()].copy_from_slice(part);
            head = c;
        }
        let rec = &mut self.slots[i as usize].rec;
        rec.data = head;
        rec.data_len = blob.len() as u16;
        Ok(())
    }

    /// Appends the data of a record read from this table to `out`.
    pub fn read_data(&self, rec: &Record, out: &mut Vec<u8>) {
        let mut c = rec.data;
        while c != NIL {
            let chunk = &self.chunks[c as usize];
            out.extend_from_slice(&chunk.bytes[..chunk.len as usize]);
            c = chunk.next;
        }
    }

    /// Live sessions logged in as `user`, for the admin endpoint (a scan of
    /// the whole table: not for the request path).
    pub fn sessions_of(&self, user: &[u8]) -> Vec<(SessionId, Record)> {
        self.slots
            .iter()
            .filter(|s| s.state & KIND == LIVE && s.rec.user() == Some(user))
            .map(|s| (s.id, s.rec))
            .collect()
    }

    /// The live session whose handle (`$session_id`) is `handle`.
    pub fn find_handle(&self, handle: &Handle) -> Option<SessionId> {
        self.slots
            .iter()
            .find(|s| s.state & KIND == LIVE && s.rec.handle == *handle)
            .map(|s| s.id)
    }

    /// Free data chunks, for tests and metrics.
    pub fn free_chunks(&self) -> u32 {
        self.hdr.chunks_free
    }

    /// Inserts a new live record. Up to two expired slots are reclaimed first
    /// (as limit_req does); when the table is full a slot is evicted, so an
    /// insert always succeeds. An id already stored is replaced.
    ///
    /// Eviction is a segmented LRU, so that a flood of requests without a
    /// cookie cannot push out the sessions that matter: a session seen once
    /// waits in probation, where evictions happen; one that came back, or
    /// is logged in, or carries a past (a renewal, a login's new id) is
    /// protected, and is evicted only when probation is empty. Protected
    /// sessions take at most three quarters of the table: beyond that, the
    /// least recently used one goes back to probation.
    pub fn insert(&mut self, id: SessionId, rec: &Record, deadline: Option<u64>, now: u64) -> Reclaimed {
        let protected = rec.user().is_some() || rec.last_seen != rec.created;
        self.insert_in(id, rec, deadline, now, protected)
    }

    /// `insert` into the segment the caller chooses: protected, or
    /// probation where a flood of new sessions evicts first.
    pub fn insert_in(
        &mut self,
        id: SessionId,
        rec: &Record,
        deadline: Option<u64>,
        now: u64,
        protected: bool,
    ) -> Reclaimed {
        // An id stored twice would leave a slot no lookup reaches: the new
        // record replaces the old (keeping a data chain `rec` carries on).
        if let Some(old) = self.take(&id) {
            if old.data != rec.data {
                self.free_chain(old.data);
            }
        }
        let mut cost = Reclaimed::default();
        for _ in 0..2 {
            let expired = [self.hdr.lru_tail, self.hdr.prot_tail]
                .into_iter()
                .find(|&t| t != NIL && self.slots[t as usize].deadline <= now);
            let Some(t) = expired else { break };
            let old = self.slots[t as usize].id;
            self.remove(&old);
            cost.expired += 1;
        }
        if self.hdr.free_head == NIL {
            let t = if self.hdr.lru_tail != NIL {
                self.hdr.lru_tail
            } else {
                self.hdr.prot_tail
            };
            if t == NIL {
                return cost; // capacity 0: nothing can be stored
            }
            if self.slots[t as usize].state & PROTECTED != 0 {
                self.hdr.stats.evicted_returning += 1;
            }
            let old = self.slots[t as usize].id;
            self.remove(&old);
            cost.evicted += 1;
        }
        let i = self.hdr.free_head;
        let b = self.bucket(&id);
        let s = &mut self.slots[i as usize];
        self.hdr.free_head = s.chain;
        s.id = id;
        s.rec = *rec;
        s.state = LIVE;
        s.deadline = deadline.unwrap_or(u64::MAX);
        s.chain = self.buckets[b];
        self.buckets[b] = i;
        self.lru_push_head(i, protected);
        self.hdr.len += 1;
        self.hdr.stats.expired += u64::from(cost.expired);
        self.hdr.stats.evicted += u64::from(cost.evicted);
        cost
    }

    /// Every entry still valid at `now`, with its deadline and data, least
    /// recently used first (probation, then protected), for a state file.
    pub fn export(&self, now: u64) -> Vec<Saved> {
        let mut out = Vec::with_capacity(self.hdr.len as usize);
        for tail in [self.hdr.lru_tail, self.hdr.prot_tail] {
            let mut i = tail;
            while i != NIL {
                let s = &self.slots[i as usize];
                i = s.lru_prev;
                if s.deadline <= now {
                    continue;
                }
                let deadline = (s.deadline != u64::MAX).then_some(s.deadline);
                let (entry, mut data) = match s.state & KIND {
                    GRACE => (
                        Entry::Grace {
                            successor: s.rec.successor,
                            until: s.deadline,
                        },
                        Vec::new(),
                    ),
                    _ => (
                        Entry::Live(s.rec),
                        Vec::with_capacity(usize::from(s.rec.data_len)),
                    ),
                };
                if matches!(entry, Entry::Live(_)) {
                    self.read_data(&s.rec, &mut data);
                }
                out.push(Saved {
                    id: s.id,
                    entry,
                    deadline,
                    data,
                    protected: s.state & PROTECTED != 0,
                });
            }
        }
        out
    }

    /// Stores an entry read from a state file (see `export`); `false` when
    /// its data found no room (the session is kept without it).
    pub fn restore(&mut self, saved: &Saved, now: u64) -> bool {
        match saved.entry {
            Entry::Live(rec) => {
                // The record read back owns no data chain here.
                let rec = Record {
                    data: NIL,
                    data_len: 0,
                    ..rec
                };
                self.insert_in(saved.id, &rec, saved.deadline, now, saved.protected);
                saved.data.is_empty() || self.set_data(&saved.id, &saved.data).is_ok()
            }
            Entry::Grace { successor, until } => {
                self.insert_in(saved.id, &Record::EMPTY, Some(until), now, saved.protected);
                self.retire(&saved.id, successor, until);
                true
            }
        }
    }

    /// Sessions in the protected segment, for tests and metrics.
    pub fn protected(&self) -> u32 {
        self.hdr.prot_len
    }

    /// The (head, tail) of the segment slot `i` is in.
    fn ends(&mut self, protected: bool) -> (&mut u32, &mut u32) {
        if protected {
            (&mut self.hdr.prot_head, &mut self.hdr.prot_tail)
        } else {
            (&mut self.hdr.lru_head, &mut self.hdr.lru_tail)
        }
    }

    fn lru_unlink(&mut self, i: u32) {
        let (p, n, protected) = {
            let s = &self.slots[i as usize];
            (s.lru_prev, s.lru_next, s.state & PROTECTED != 0)
        };
        let (head, tail) = self.ends(protected);
        let fix_head = p == NIL && *head == i;
        let fix_tail = n == NIL && *tail == i;
        if fix_head {
            *head = n;
        }
        if fix_tail {
            *tail = p;
        }
        if p != NIL {
            self.slots[p as usize].lru_next = n;
        }
        if n != NIL {
            self.slots[n as usize].lru_prev = p;
        }
        let s = &mut self.slots[i as usize];
        s.lru_prev = NIL;
        s.lru_next = NIL;
        if protected {
            s.state &= !PROTECTED;
            self.hdr.prot_len -= 1;
        }
    }

    /// Links slot `i` (unlinked) at the head of a segment.
    fn lru_push_head(&mut self, i: u32, protected: bool) {
        let (head, _) = self.ends(protected);
        let h = *head;
        *head = i;
        {
            let s = &mut self.slots[i as usize];
            s.lru_prev = NIL;
            s.lru_next = h;
            if protected {
                s.state |= PROTECTED;
            }
        }
        if h != NIL {
            self.slots[h as usize].lru_prev = i;
        } else {
            *self.ends(protected).1 = i;
        }
        if protected {
            self.hdr.prot_len += 1;
            if self.hdr.prot_len > self.hdr.capacity - self.hdr.capacity / 4 {
                let t = self.hdr.prot_tail;
                self.lru_unlink(t);
                self.lru_push_head(t, false);
            }
        }
    }
}

/// What the model tests look at: the structure's own invariants, and the
/// two segments in order.
impl Store for Table<'_> {
    fn get(&mut self, id: &SessionId) -> Option<Entry> {
        Table::get(self, id)
    }

    fn touch(&mut self, id: &SessionId, last_seen: u64, deadline: Option<u64>) {
        Table::touch(self, id, last_seen, deadline);
    }

    fn retire(&mut self, id: &SessionId, successor: SessionId, until: u64) {
        Table::retire(self, id, successor, until);
    }

    fn remove(&mut self, id: &SessionId) {
        Table::remove(self, id);
    }

    fn end(&mut self, id: &SessionId, until: u64) {
        Table::end(self, id, until);
    }

    fn sessions_of_user(&mut self, user: &[u8]) -> Option<Vec<(SessionId, Record)>> {
        Some(self.sessions_of(user))
    }

    fn take(&mut self, id: &SessionId) -> Option<Record> {
        Table::take(self, id)
    }

    fn set_data(&mut self, id: &SessionId, blob: &[u8]) -> Result<(), DataFull> {
        Table::set_data(self, id, blob)
    }

    fn read_data(&self, rec: &Record, out: &mut Vec<u8>) {
        Table::read_data(self, rec, out);
    }

    fn insert(&mut self, id: SessionId, rec: &Record, deadline: Option<u64>, now: u64) -> u32 {
        Table::insert(self, id, rec, deadline, now).evicted
    }

    fn count(&mut self, event: Event) {
        let s = &mut self.header().stats;
        let counter = match event {
            Event::Created => &mut s.created,
            Event::Renewed => &mut s.renewed,
            Event::Refused(Status::ExpiredIdle) => &mut s.expired_idle,
            Event::Refused(Status::ExpiredRolling) => &mut s.expired_rolling,
            Event::Refused(Status::ExpiredAbsolute) => &mut s.expired_absolute,
            Event::Refused(Status::IpMismatch) => &mut s.refused_ip,
            Event::Refused(Status::UaMismatch) => &mut s.refused_ua,
            Event::Refused(Status::Invalid) => &mut s.refused_invalid,
            Event::Refused(Status::Unknown) => &mut s.refused_unknown,
            Event::Refused(Status::Ended) => &mut s.refused_ended,
            Event::Tolerated(Status::IpMismatch) => &mut s.tolerated_ip,
            Event::Tolerated(Status::UaMismatch) => &mut s.tolerated_ua,
            Event::Tolerated(_) => return,
            Event::LimitEnded => &mut s.limit_ended,
            Event::LimitRefused => &mut s.limit_refused,
            Event::Login => &mut s.logins,
            Event::Logout => &mut s.logouts,
            Event::RedisUnavailable { local: false } => &mut s.redis_refused,
            Event::RedisUnavailable { local: true } => &mut s.redis_local,
            Event::Oidc(o) => &mut s.oidc[o as usize],
            Event::Refused(Status::New | Status::Valid | Status::Renewed) => return,
        };
        *counter += 1;
    }
}

#[cfg(test)]
impl Table<'_> {
    /// Checks every invariant of the memory layout; the first broken one
    /// is returned.
    pub(crate) fn check(&self) -> Result<(), String> {
        let cap = self.slots.len();
        let mut seen = vec![false; cap];
        let mut listed = 0usize;
        for protected in [false, true] {
            let (head, tail) = if protected {
                (self.hdr.prot_head, self.hdr.prot_tail)
            } else {
                (self.hdr.lru_head, self.hdr.lru_tail)
            };
            let (mut prev, mut i, mut n) = (NIL, head, 0u32);
            while i != NIL {
                let s = self
                    .slots
                    .get(i as usize)
                    .ok_or(format!("link {i} out of range"))?;
                if std::mem::replace(&mut seen[i as usize], true) {
                    return Err(format!("slot {i} listed twice"));
                }
                if s.state & KIND == FREE || (s.state & PROTECTED != 0) != protected {
                    return Err(format!("slot {i} in the wrong list (state {:#x})", s.state));
                }
                if s.lru_prev != prev {
                    return Err(format!("slot {i}: prev {} instead of {prev}", s.lru_prev));
                }
                prev = i;
                i = s.lru_next;
                n += 1;
            }
            if prev != tail {
                return Err(format!("tail {tail} instead of {prev} (protected: {protected})"));
            }
            if protected && n != self.hdr.prot_len {
                return Err(format!("prot_len {} for {n} slots", self.hdr.prot_len));
            }
            listed += n as usize;
        }
        if listed != self.hdr.len as usize {
            return Err(format!("len {} for {listed} listed slots", self.hdr.len));
        }
        if self.hdr.prot_len > self.hdr.capacity - self.hdr.capacity / 4 {
            return Err(format!(
                "{} protected of {}",
                self.hdr.prot_len, self.hdr.capacity
            ));
        }
        let (mut i, mut free) = (self.hdr.free_head, 0usize);
        while i != NIL {
            let s = self
                .slots
                .get(i as usize)
                .ok_or(format!("free link {i} out of range"))?;
            if s.state != FREE || std::mem::replace(&mut seen[i as usize], true) {
                return Err(format!("free slot {i} is in use or twice free"));
            }
            free += 1;
            i = s.chain;
        }
        if free + listed != cap {
            return Err(format!("{free} free + {listed} used != {cap}"));
        }
        let mut chained = 0usize;
        for (b, &first) in self.buckets.iter().enumerate() {
            let mut i = first;
            while i != NIL {
                let s = &self.slots[i as usize];
                if s.state == FREE || self.bucket(&s.id) != b {
                    return Err(format!("slot {i} in bucket {b} is free or belongs elsewhere"));
                }
                if self.find(&s.id) != Some(i) {
                    return Err(format!("slot {i} not found by its id"));
                }
                chained += 1;
                if chained > listed {
                    return Err("a bucket chain loops".into());
                }
                i = s.chain;
            }
        }
        if chained != listed {
            return Err(format!("{chained} chained for {listed} used"));
        }
        let mut owned = vec![false; self.chunks.len()];
        let mut used = 0usize;
        for s in self.slots.iter().filter(|s| s.state != FREE) {
            let (mut c, mut bytes) = (s.rec.data, 0usize);
            while c != NIL {
                if std::mem::replace(&mut owned[c as usize], true) {
                    return Err(format!("chunk {c} owned twice"));
                }
                bytes += self.chunks[c as usize].len as usize;
                used += 1;
                c = self.chunks[c as usize].next;
            }
            if bytes != usize::from(s.rec.data_len) {
                return Err(format!("data_len {} for {bytes} bytes", s.rec.data_len));
            }
        }
        let (mut c, mut free_chunks) = (self.hdr.chunk_free, 0usize);
        while c != NIL {
            if std::mem::replace(&mut owned[c as usize], true) {
                return Err(format!("free chunk {c} also in use"));
            }
            free_chunks += 1;
            c = self.chunks[c as usize].next;
        }
        if free_chunks != self.hdr.chunks_free as usize || free_chunks + used != self.chunks.len() {
            return Err(format!(
                "{free_chunks} free chunks (header: {}) + {used} used != {}",
                self.hdr.chunks_free,
                self.chunks.len()
            ));
        }
        Ok(())
    }

    /// Probation and protected ids, most recently used first.
    pub(crate) fn segments(&self) -> [Vec<SessionId>; 2] {
        [self.hdr.lru_head, self.hdr.prot_head].map(|mut i| {
            let mut out = Vec::new();
            while i != NIL {
                out.push(self.slots[i as usize].id);
                i = self.slots[i as usize].lru_next;
            }
            out
        })
    }

    /// The deadline of `id`'s slot.
    pub(crate) fn deadline_of(&self, id: &SessionId) -> Option<u64> {
        self.find(id).map(|i| self.slots[i as usize].deadline)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Owned memory for a test table.
    pub struct Mem {
        pub hdr: Header,
        pub buckets: Vec<u32>,
        pub slots: Vec<Slot>,
        pub chunks: Vec<Chunk>,
    }

    impl Mem {
        pub fn new(capacity: usize, buckets: usize) -> Self {
            Self::with_chunks(capacity, buckets, 64)
        }

        pub fn with_chunks(capacity: usize, buckets: usize, chunks: usize) -> Self {
            let mut m = Self {
                hdr: Table::blank_header(),
                buckets: vec![0; buckets],
                slots: vec![Table::blank_slot(); capacity],
                chunks: vec![Table::blank_chunk(); chunks],
            };
            Table::format(&mut m.hdr, &mut m.buckets, &mut m.slots, &mut m.chunks);
            m
        }

        pub fn table(&mut self) -> Table<'_> {
            Table::attach(
                &mut self.hdr,
                &mut self.buckets,
                &mut self.slots,
                &mut self.chunks,
            )
            .unwrap()
        }
    }

    fn id(n: u32) -> SessionId {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&n.to_le_bytes());
        b[8] = 0xee;
        SessionId(b)
    }

    fn rec(n: u64) -> Record {
        Record::new(Handle([n as u8; 8]), n, &[127, 0, 0, 1], n)
    }

    #[test]
    fn plan_fits_and_holds_40k_in_10m() {
        let p = Plan::for_bytes(10 << 20).unwrap();
        assert!(p.bytes() <= 10 << 20);
        assert!(p.capacity >= 40_000, "capacity {}", p.capacity);
        assert!(p.buckets.is_power_of_two() && p.buckets >= 8);
        assert_eq!(p.slots_offset() % align_of::<Slot>(), 0);
        assert_eq!(p.buckets_offset() % align_of::<u32>(), 0);
        assert!(Plan::for_bytes(100).is_none());
        let small = Plan::for_bytes(32 << 10).unwrap();
        assert!(small.capacity >= 60 && small.chunks >= 100 && small.bytes() <= 32 << 10);
    }

    fn data_of(t: &Table<'_>, id: &SessionId) -> Vec<u8> {
        let Some(Entry::Live(r)) = t.get(id) else {
            panic!("no session")
        };
        let mut out = Vec::new();
        t.read_data(&r, &mut out);
        out
    }

    #[test]
    fn data_chains_are_stored_moved_and_freed() {
        let mut m = Mem::with_chunks(4, 4, 8); // 8 chunks: 448 bytes
        let mut t = m.table();
        t.insert(id(1), &rec(1), None, 0);
        t.insert(id(2), &rec(2), None, 0);
        let blob: Vec<u8> = (0..200u8).collect(); // 4 chunks
        t.set_data(&id(1), &blob).unwrap();
        assert_eq!(data_of(&t, &id(1)), blob);
        assert_eq!(t.free_chunks(), 4);
        // Not enough room: refused, old data kept.
        assert_eq!(t.set_data(&id(2), &[7; 300]), Err(DataFull));
        assert!(data_of(&t, &id(2)).is_empty());
        // Replacing reuses the session's own chunks.
        t.set_data(&id(1), &[9; 400]).unwrap();
        assert_eq!(data_of(&t, &id(1)), vec![9; 400]);
        // Renewal: the record moves to the new id, the old slot gives it up.
        let Some(Entry::Live(r)) = t.get(&id(1)) else {
            panic!()
        };
        t.retire(&id(1), id(3), 10);
        t.insert(id(3), &r, None, 0);
        t.remove(&id(1));
        assert_eq!(
            data_of(&t, &id(3)),
            vec![9; 400],
            "data survives the grace slot's removal"
        );
        // Take and re-insert (login) keeps the chain; removal frees it.
        let r = t.take(&id(3)).unwrap();
        t.insert(id(4), &r, None, 0);
        assert_eq!(data_of(&t, &id(4)), vec![9; 400]);
        t.remove(&id(4));
        assert_eq!(t.free_chunks(), 8);
        t.set_data(&id(2), &[]).unwrap();
        assert!(data_of(&t, &id(2)).is_empty());
    }

    #[test]
    fn scans_by_user_and_handle() {
        let mut m = Mem::new(8, 4);
        let mut t = m.table();
        for n in 0..5u32 {
            let mut r = rec(n.into());
            if n % 2 == 0 {
                r.log_in(b"alice", false).unwrap();
            }
            t.insert(id(n), &r, None, 0);
        }
        let mine = t.sessions_of(b"alice");
        assert_eq!(mine.len(), 3);
        assert!(mine.iter().all(|(_, r)| r.user() == Some(&b"alice"[..])));
        assert!(t.sessions_of(b"bob").is_empty());
        assert_eq!(t.find_handle(&Handle([3; 8])), Some(id(3)));
        assert_eq!(t.find_handle(&Handle([9; 8])), None);
    }

    #[test]
    fn eviction_frees_data() {
        let mut m = Mem::with_chunks(2, 2, 4);
        let mut t = m.table();
        t.insert(id(1), &rec(1), None, 0);
        t.set_data(&id(1), &[1; 100]).unwrap();
        t.insert(id(2), &rec(2), None, 0);
        t.insert(id(3), &rec(3), None, 0); // evicts 1
        assert_eq!(t.free_chunks(), 4);
    }

    #[test]
    fn insert_get_remove() {
        let mut m = Mem::new(8, 4);
        let mut t = m.table();
        for n in 0..6 {
            assert_eq!(t.insert(id(n), &rec(n.into()), None, 0), Reclaimed::default());
        }
        assert_eq!(t.len(), 6);
        for n in 0..6 {
            assert_eq!(t.get(&id(n)), Some(Entry::Live(rec(n.into()))));
        }
        assert!(t.get(&id(99)).is_none());
        assert!(t.remove(&id(2)));
        assert!(!t.remove(&id(2)));
        assert!(t.get(&id(2)).is_none());
        assert_eq!(t.get(&id(3)), Some(Entry::Live(rec(3))));
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn full_table_evicts_least_recently_used() {
        let mut m = Mem::new(4, 4);
        let mut t = m.table();
        for n in 0..4 {
            t.insert(id(n), &rec(n.into()), None, 0);
        }
        // Touch 0 so 1 becomes the oldest.
        assert!(t.update(&id(0), &rec(0), None));
        let cost = t.insert(id(4), &rec(4), None, 0);
        assert_eq!(
            cost,
            Reclaimed {
                expired: 0,
                evicted: 1
            }
        );
        assert!(t.get(&id(1)).is_none());
        for n in [0, 2, 3, 4] {
            assert!(t.get(&id(n)).is_some(), "{n}");
        }
        assert_eq!(t.header().stats.evicted, 1);
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn expired_tail_is_reclaimed_not_evicted() {
        let mut m = Mem::new(4, 4);
        let mut t = m.table();
        t.insert(id(0), &rec(0), Some(10), 0);
        t.insert(id(1), &rec(1), Some(10), 0);
        t.insert(id(2), &rec(2), None, 0);
        let cost = t.insert(id(3), &rec(3), None, 11);
        assert_eq!(
            cost,
            Reclaimed {
                expired: 2,
                evicted: 0
            }
        );
        assert_eq!(t.len(), 2);
        assert_eq!(t.header().stats.expired, 2);
    }

    #[test]
    fn grace_pointer() {
        let mut m = Mem::new(4, 4);
        let mut t = m.table();
        t.insert(id(0), &rec(0), None, 0);
        assert!(t.retire(&id(0), id(1), 500));
        assert_eq!(
            t.get(&id(0)),
            Some(Entry::Grace {
                successor: id(1),
                until: 500
            })
        );
    }

    #[test]
    fn attach_checks_shape() {
        let mut m = Mem::new(8, 4);
        m.table().insert(id(7), &rec(7), None, 0);
        assert!(Table::attach(&mut m.hdr, &mut m.buckets[..2], &mut m.slots, &mut m.chunks).is_none());
        assert_eq!(
            m.hdr.plan(),
            Some(Plan {
                capacity: 8,
                buckets: 4,
                chunks: 64
            })
        );
        let t = m.table();
        assert!(t.get(&id(7)).is_some());
        assert_eq!(Table::blank_header().plan(), None);
        let mut blank = Table::blank_header();
        assert!(Table::attach(&mut blank, &mut [0; 4], &mut [], &mut []).is_none());
    }

    #[test]
    fn churn_keeps_structure_consistent() {
        // Deterministic pseudo-random mix of operations against a model of
        // the two segments (oldest first); protected holds at most 48 of 64.
        let mut m = Mem::new(64, 32);
        let mut t = m.table();
        let (mut prob, mut prot): (Vec<u32>, Vec<u32>) = (Vec::new(), Vec::new());
        let mut x: u32 = 12345;
        for step in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let k = x % 200;
            let had = |v: &Vec<u32>| v.iter().position(|&e| e == k);
            match x % 3 {
                0 if had(&prob).is_none() && had(&prot).is_none() => {
                    t.insert(id(k), &rec(k.into()), None, 0);
                    if prob.len() + prot.len() == 64 {
                        if prob.is_empty() {
                            prot.remove(0);
                        } else {
                            prob.remove(0);
                        }
                    }
                    prob.push(k);
                }
                1 => {
                    let found = had(&prob)
                        .map(|p| prob.remove(p))
                        .or_else(|| had(&prot).map(|p| prot.remove(p)));
                    assert_eq!(t.remove(&id(k)), found.is_some(), "step {step}");
                }
                _ => {
                    let found = had(&prob)
                        .map(|p| prob.remove(p))
                        .or_else(|| had(&prot).map(|p| prot.remove(p)));
                    assert_eq!(t.touch(&id(k), 1, None), found.is_some());
                    if found.is_some() {
                        prot.push(k);
                        if prot.len() > 48 {
                            prob.push(prot.remove(0));
                        }
                    }
                }
            }
            assert_eq!(t.len() as usize, prob.len() + prot.len());
            assert_eq!(t.protected() as usize, prot.len(), "step {step}");
        }
        for k in 0..200 {
            let stored = prob.contains(&k) || prot.contains(&k);
            assert_eq!(t.get(&id(k)).is_some(), stored, "key {k}");
        }
        // New sessions evict probation in order, and never what is protected.
        let mut n = 1000;
        while t.len() < 64 {
            t.insert(id(n), &rec(1000), None, 0);
            prob.push(n);
            n += 1;
        }
        for k in prob {
            assert!(t.get(&id(k)).is_some());
            t.insert(id(n), &rec(1000), None, 0);
            n += 1;
            assert!(t.get(&id(k)).is_none(), "{k} was next to go");
        }
        for _ in 0..500 {
            t.insert(id(n), &rec(1000), None, 0);
            n += 1;
        }
        assert!(prot.iter().all(|&k| t.get(&id(k)).is_some()));
    }

    #[test]
    fn a_flood_of_new_sessions_evicts_only_sessions_seen_once() {
        let mut m = Mem::new(100, 64);
        let mut t = m.table();
        let mut alice = rec(1);
        alice.log_in(b"alice", false).unwrap();
        t.insert(id(1), &alice, None, 0);
        for k in 2..60 {
            t.insert(id(k), &rec(k.into()), None, 0);
            t.touch(&id(k), 5, None); // came back
        }
        for k in 10_000..20_000 {
            t.insert(id(k), &rec(k.into()), None, 0);
        }
        assert!(t.get(&id(1)).is_some(), "the logged-in session");
        assert!((2..60).all(|k| t.get(&id(k)).is_some()), "the returning sessions");
        let h = t.header();
        assert_eq!((h.stats.evicted_returning, h.stats.evicted), (0, 10_000 - 41));
    }

    #[test]
    fn export_then_restore_keeps_sessions_data_and_order() {
        let mut m = Mem::with_chunks(16, 8, 64);
        let mut t = m.table();
        let mut alice = rec(1);
        alice.log_in(b"alice", false).unwrap();
        t.insert(id(1), &alice, Some(10_000), 0);
        t.set_data(&id(1), &[1, b'k', 1, 0, b'v']).unwrap();
        for k in 2..6 {
            t.insert(id(k), &rec(k.into()), Some(10_000), 0);
        }
        t.touch(&id(3), 50, Some(10_000));
        t.retire(&id(4), id(1), 9_000);
        t.insert(id(6), &rec(6), Some(100), 0); // gone by `now`
        let saved = t.export(200);
        assert_eq!(saved.len(), 5);
        let mut m2 = Mem::with_chunks(16, 8, 64);
        let mut t2 = m2.table();
        for s in &saved {
            assert!(t2.restore(s, 200));
        }
        let Some(Entry::Live(a)) = t2.get(&id(1)) else {
            panic!("alice restored")
        };
        assert_eq!((a.user(), a.handle), (Some(&b"alice"[..]), alice.handle));
        let mut d = Vec::new();
        if let Some(Entry::Live(r)) = t2.get(&id(1)) {
            t2.read_data(&r, &mut d);
        }
        assert_eq!(d, [1, b'k', 1, 0, b'v']);
        assert_eq!(
            t2.get(&id(4)),
            Some(Entry::Grace {
                successor: id(1),
                until: 9_000
            })
        );
        assert!(t2.get(&id(6)).is_none());
        assert_eq!(t2.protected(), 2, "alice and the one that came back");
        assert_eq!(
            t2.export(200).iter().map(|s| s.id).collect::<Vec<_>>(),
            saved.iter().map(|s| s.id).collect::<Vec<_>>()
        );
    }
}
