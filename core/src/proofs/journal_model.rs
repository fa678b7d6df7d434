//! The journal of pending Redis writes against a plain model: random
//! sequences of every operation the workers and their Redis threads
//! perform (record, record a new session, read, claim, settle, back off,
//! hurry, revoke, list), the layout's invariants and the model's view
//! compared after every step.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::model::data::MAX_BLOB;
use crate::model::record::{Entry, Record};
use crate::primitives::id::{Handle, SessionId};
use crate::stores::redis::journal::tests::Mem;
use crate::stores::redis::journal::{Claimed, Full, Pending, RETRY_FIRST, RETRY_MAX};
use crate::stores::redis::view::Write;
use crate::stores::zone::revoked::{SharedRecord, ENDED};

const USERS: [&[u8]; 2] = [b"alice", b"bob"];

#[derive(Debug, Clone)]
enum W {
    Live {
        key: u16,
        user: Option<u8>,
        data: u16,
        ttl: Option<u16>,
    },
    Grace {
        key: u16,
        until: u16,
        ttl: Option<u16>,
    },
    Delete {
        key: u16,
    },
    Revoked {
        key: u16,
        until: u16,
    },
    EndOthers {
        key: u16,
        user: u8,
    },
}

#[derive(Debug, Clone)]
enum Op {
    Record {
        writes: Vec<W>,
        tag: u8,
    },
    RecordNew {
        keys: Vec<u16>,
    },
    Get {
        key: u16,
    },
    Claim {
        lease: u16,
        max: u8,
        all_tags: bool,
    },
    /// Settles the `pick`th write of the last claim (or a stale version).
    Settle {
        pick: u8,
        ok: bool,
        stale: bool,
    },
    Hurry,
    Revoke {
        user: u8,
    },
    Sessions {
        user: u8,
    },
    Bump,
    Advance {
        ms: u16,
    },
}

fn write() -> impl Strategy<Value = W> {
    let key = any::<u16>;
    let ttl = || proptest::option::weighted(0.7, 1..5_000u16);
    prop_oneof![
        4 => (key(), proptest::option::of(0..2u8), prop_oneof![8 => 0..40u16, 1 => 1_000..1_100u16], ttl())
            .prop_map(|(key, user, data, ttl)| W::Live { key, user, data, ttl }),
        1 => (key(), any::<u16>(), ttl()).prop_map(|(key, until, ttl)| W::Grace { key, until, ttl }),
        2 => key().prop_map(|key| W::Delete { key }),
        1 => (key(), any::<u16>()).prop_map(|(key, until)| W::Revoked { key, until }),
        1 => (key(), 0..2u8).prop_map(|(key, user)| W::EndOthers { key, user }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (proptest::collection::vec(write(), 1..4), 1..3u8).prop_map(|(writes, tag)| Op::Record { writes, tag }),
        3 => proptest::collection::vec(any::<u16>(), 1..3).prop_map(|keys| Op::RecordNew { keys }),
        3 => any::<u16>().prop_map(|key| Op::Get { key }),
        4 => (0..800u16, 1..10u8, any::<bool>()).prop_map(|(lease, max, all_tags)| Op::Claim { lease, max, all_tags }),
        5 => (any::<u8>(), prop::bool::weighted(0.8), prop::bool::weighted(0.1))
            .prop_map(|(pick, ok, stale)| Op::Settle { pick, ok, stale }),
        1 => Just(Op::Hurry),
        1 => (0..2u8).prop_map(|user| Op::Revoke { user }),
        1 => (0..2u8).prop_map(|user| Op::Sessions { user }),
        1 => Just(Op::Bump),
        3 => (0..2_000u16).prop_map(|ms| Op::Advance { ms }),
    ]
}

const FREE: u8 = 0;
const LIVE: u8 = 1;
const GRACE: u8 = 2;
const GONE: u8 = 3;
const REVOKED: u8 = 4;
const OTHERS: u8 = 5;

/// One pending write of the model.
#[derive(Debug, Clone)]
struct J {
    slot: u32,
    kind: u8,
    rec: Record,
    successor: SessionId,
    until: u64,
    data: Vec<u8>,
    seq: u64,
    tag: u64,
    expires: u64,
    lease: u64,
    retry_at: u64,
    tries: u32,
}

#[derive(Debug, Default)]
struct Model {
    cap: u32,
    map: HashMap<SessionId, J>,
    /// Free slots, the next to be used first.
    free: VecDeque<u32>,
    next_seq: u64,
    voids: u32,
    recorded: u64,
    flushed: u64,
    retried: u64,
    full: u64,
}

impl Model {
    fn new(cap: u32) -> Self {
        Self {
            cap,
            free: (0..cap).collect(),
            next_seq: 1,
            ..Self::default()
        }
    }

    /// Entries in slot order, as the journal scans them.
    fn by_slot(&self) -> Vec<SessionId> {
        let mut v: Vec<(u32, SessionId)> = self.map.iter().map(|(id, j)| (j.slot, *id)).collect();
        v.sort_unstable_by_key(|(s, _)| *s);
        v.into_iter().map(|(_, id)| id).collect()
    }

    fn put(&mut self, writes: &[Write], tag: u64, now: u64) {
        for w in writes {
            let id = *w.id();
            if !self.map.contains_key(&id) {
                let slot = self.free.pop_front().expect("room was checked");
                self.map.insert(
                    id,
                    J {
                        slot,
                        kind: FREE,
                        rec: Record::EMPTY,
                        successor: SessionId::default(),
                        until: 0,
                        data: Vec::new(),
                        seq: 0,
                        tag: 0,
                        expires: 0,
                        lease: 0,
                        retry_at: 0,
                        tries: 0,
                    },
                );
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            let j = self.map.get_mut(&id).expect("present");
            (j.seq, j.tag, j.retry_at, j.tries) = (seq, tag, 0, 0);
            match w {
                Write::Put { entry, data, ttl, .. } => {
                    j.expires = ttl.map_or(u64::MAX, |t| now.saturating_add(t));
                    j.data = data.clone();
                    match entry {
                        Entry::Live(rec) => (j.kind, j.rec) = (LIVE, *rec),
                        Entry::Grace { successor, until } => {
                            (j.kind, j.rec, j.successor, j.until) =
                                (GRACE, Record::EMPTY, *successor, *until);
                        }
                    }
                }
                Write::Delete { .. } => {
                    (j.kind, j.expires, j.rec) = (GONE, u64::MAX, Record::EMPTY);
                    j.data.clear();
                }
                Write::Revoked(r) => {
                    (j.kind, j.expires, j.rec) = (REVOKED, u64::MAX, Record::EMPTY);
                    (j.successor, j.until) = (r.successor, r.until);
                    j.data.clear();
                }
                Write::EndOthers { rec, .. } => {
                    (j.kind, j.expires, j.rec) = (OTHERS, u64::MAX, *rec);
                    j.data.clear();
                }
            }
        }
        self.recorded += writes.len() as u64;
    }

    fn record(&mut self, writes: &[Write], tag: u64, now: u64) -> Result<(), Full> {
        let new = writes.iter().filter(|w| !self.map.contains_key(w.id())).count();
        let oversized = writes
            .iter()
            .any(|w| matches!(w, Write::Put { data, .. } if data.len() > MAX_BLOB));
        if oversized || new as u32 > self.cap - self.map.len() as u32 {
            self.full += 1;
            return Err(Full);
        }
        self.voids = self.voids.wrapping_add(1);
        self.put(writes, tag, now);
        Ok(())
    }

    fn record_new(&mut self, writes: &[Write], tag: u64, now: u64) -> Result<(), Full> {
        let fits = writes.len() as u32 + self.map.len() as u32 <= self.cap / 2;
        let fresh = writes.iter().all(|w| {
            matches!(w, Write::Put { data, .. } if data.is_empty()) && !self.map.contains_key(w.id())
        });
        if !fits || !fresh {
            return Err(Full);
        }
        self.put(writes, tag, now);
        Ok(())
    }

    fn get(&self, id: &SessionId, now: u64) -> Option<Pending> {
        let j = self.map.get(id)?;
        if j.kind == REVOKED || j.kind == OTHERS {
            return None;
        }
        if j.expires <= now {
            return Some(Pending::Gone);
        }
        Some(match j.kind {
            LIVE => Pending::Put {
                entry: Entry::Live(j.rec),
                data: j.data.clone(),
            },
            GRACE => Pending::Put {
                entry: Entry::Grace {
                    successor: j.successor,
                    until: j.until,
                },
                data: Vec::new(),
            },
            _ => Pending::Gone,
        })
    }

    fn claim(&mut self, now: u64, lease: u64, known: impl Fn(u64) -> bool, max: usize) -> Vec<Claimed> {
        let mut out = Vec::new();
        for id in self.by_slot() {
            if out.len() == max {
                break;
            }
            let j = self.map.get_mut(&id).expect("present");
            if j.lease > now || j.retry_at > now || !known(j.tag) {
                continue;
            }
            j.lease = now.saturating_add(lease);
            let write = if j.kind == REVOKED {
                Write::Revoked(SharedRecord {
                    key: id,
                    successor: j.successor,
                    until: j.until,
                })
            } else if j.kind == OTHERS {
                Write::EndOthers { key: id, rec: j.rec }
            } else if j.kind == GONE || j.expires <= now {
                Write::Delete { id }
            } else {
                let entry = if j.kind == LIVE {
                    Entry::Live(j.rec)
                } else {
                    Entry::Grace {
                        successor: j.successor,
                        until: j.until,
                    }
                };
                Write::Put {
                    id,
                    entry,
                    data: j.data.clone(),
                    ttl: (j.expires != u64::MAX).then(|| j.expires - now),
                }
            };
            out.push(Claimed {
                id,
                seq: j.seq,
                tag: j.tag,
                write,
            });
        }
        out
    }

    fn settle(&mut self, id: &SessionId, seq: u64, ok: bool, now: u64) {
        let Some(j) = self.map.get_mut(id) else { return };
        j.lease = 0;
        if ok {
            self.flushed += 1;
            if j.seq == seq {
                let slot = j.slot;
                self.map.remove(id);
                self.free.push_front(slot);
            }
            return;
        }
        self.retried += 1;
        if j.seq == seq {
            j.tries = j.tries.saturating_add(1);
            let delay = RETRY_FIRST
                .saturating_mul(1 << (j.tries - 1).min(16))
                .min(RETRY_MAX);
            j.retry_at = now + delay;
        }
    }

    fn revoke(&mut self, user: &[u8], tag: u64) -> Vec<SessionId> {
        let mut ended = Vec::new();
        for id in self.by_slot() {
            let j = self.map.get_mut(&id).expect("present");
            if j.kind == LIVE && j.rec.user() == Some(user) {
                j.kind = GONE;
                j.seq = self.next_seq;
                self.next_seq += 1;
                (j.tag, j.expires, j.retry_at, j.tries) = (tag, u64::MAX, 0, 0);
                j.rec = Record::EMPTY;
                j.data.clear();
                ended.push(id);
            }
        }
        if !ended.is_empty() {
            self.voids = self.voids.wrapping_add(1);
        }
        ended
    }

    fn sessions(&self, user: &[u8], now: u64) -> (Vec<(SessionId, Record)>, Vec<SessionId>) {
        let (mut live, mut gone) = (Vec::new(), Vec::new());
        for id in self.by_slot() {
            let j = &self.map[&id];
            match j.kind {
                LIVE if j.expires > now && j.rec.user() == Some(user) => live.push((id, j.rec)),
                GONE => gone.push(id),
                LIVE if j.expires <= now => gone.push(id),
                _ => {}
            }
        }
        (live, gone)
    }
}

fn sid(k: u16) -> SessionId {
    let mut b = [0x3c; 16];
    b[..2].copy_from_slice(&k.to_le_bytes());
    b[2..4].fill(0);
    SessionId(b)
}

fn to_write(w: &W, keys: u16, now: u64) -> Write {
    match *w {
        W::Live { key, user, data, ttl } => {
            let mut rec = Record::new(Handle([key as u8; 8]), now, &[127, 0, 0, 1], u64::from(key));
            if let Some(u) = user {
                rec.log_in(USERS[usize::from(u)], false).expect("short");
            }
            Write::Put {
                id: sid(key % keys),
                entry: Entry::Live(rec),
                data: vec![b'd'; usize::from(data)],
                ttl: ttl.map(u64::from),
            }
        }
        W::Grace { key, until, ttl } => Write::Put {
            id: sid(key % keys),
            entry: Entry::Grace {
                successor: sid(key.wrapping_add(1)),
                until: now + u64::from(until),
            },
            data: Vec::new(),
            ttl: ttl.map(u64::from),
        },
        W::Delete { key } => Write::Delete { id: sid(key % keys) },
        W::Revoked { key, until } => Write::Revoked(SharedRecord {
            key: sid(key % keys),
            successor: ENDED,
            until: now + u64::from(until),
        }),
        W::EndOthers { key, user } => {
            let mut rec = Record::new(Handle([key as u8; 8]), now, &[127, 0, 0, 1], 7);
            rec.log_in(USERS[usize::from(user) % USERS.len()], false)
                .expect("short");
            Write::EndOthers {
                key: sid(key % keys),
                rec,
            }
        }
    }
}

static STEPS: AtomicU64 = AtomicU64::new(0);

fn run(cap: u32, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut mem = Mem::new(cap);
    let mut model = Model::new(cap);
    let keys = (2 * cap + 2).min(u32::from(u16::MAX)) as u16;
    let mut now = 5_000_000u64;
    let mut claimed: Vec<Claimed> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let mut j = mem.j();
        match op {
            Op::Record { writes, tag } => {
                let writes: Vec<Write> = writes.iter().map(|w| to_write(w, keys, now)).collect();
                let tag = u64::from(*tag);
                prop_assert_eq!(j.record(&writes, tag, now), model.record(&writes, tag, now));
            }
            Op::RecordNew { keys: ks } => {
                let writes: Vec<Write> = ks
                    .iter()
                    .map(|&k| {
                        to_write(
                            &W::Live {
                                key: k,
                                user: None,
                                data: 0,
                                ttl: Some(60_000),
                            },
                            keys,
                            now,
                        )
                    })
                    .collect();
                prop_assert_eq!(j.record_new(&writes, 1, now), model.record_new(&writes, 1, now));
            }
            Op::Get { key } => {
                let id = sid(key % keys);
                prop_assert_eq!(j.get(&id, now), model.get(&id, now));
            }
            Op::Claim { lease, max, all_tags } => {
                let known = |t: u64| *all_tags || t == 1;
                let got = j.claim(now, u64::from(*lease), known, usize::from(*max));
                let want = model.claim(now, u64::from(*lease), known, usize::from(*max));
                prop_assert_eq!(&got, &want);
                claimed = got;
            }
            Op::Settle { pick, ok, stale } => {
                if let Some(c) = claimed.get(usize::from(*pick) % claimed.len().max(1)) {
                    let seq = if *stale { c.seq.saturating_sub(1) } else { c.seq };
                    j.settle(&c.id, seq, *ok, now);
                    model.settle(&c.id, seq, *ok, now);
                }
            }
            Op::Hurry => {
                j.hurry();
                for m in model.map.values_mut() {
                    m.retry_at = 0;
                }
            }
            Op::Revoke { user } => {
                let user = USERS[usize::from(*user)];
                let got = j.revoke(|r| r.user() == Some(user), 2);
                prop_assert_eq!(got, model.revoke(user, 2));
            }
            Op::Sessions { user } => {
                let user = USERS[usize::from(*user)];
                prop_assert_eq!(
                    j.sessions(|r| r.user() == Some(user), now),
                    model.sessions(user, now)
                );
            }
            Op::Bump => {
                j.bump();
                model.voids = model.voids.wrapping_add(1);
            }
            Op::Advance { ms } => now += u64::from(*ms),
        }
        STEPS.fetch_add(1, Ordering::Relaxed);
        let r = (|| {
            let j = mem.j();
            j.check().map_err(TestCaseError::fail)?;
            prop_assert_eq!(j.len() as usize, model.map.len());
            prop_assert_eq!(j.generation(), u64::from(model.voids));
            for k in 0..keys {
                prop_assert_eq!(j.get(&sid(k), now), model.get(&sid(k), now), "key {}", k);
            }
            let mut j = mem.j();
            let s = j.header().stats;
            prop_assert_eq!(
                (s.recorded, s.flushed, s.retried, s.full),
                (model.recorded, model.flushed, model.retried, model.full)
            );
            Ok(())
        })();
        r.map_err(|e| TestCaseError::fail(format!("step {step} ({op:?}): {e}")))?;
    }
    Ok(())
}

/// With the table's model test, over a million operations per run.
#[test]
fn the_journal_matches_its_model() {
    let before = STEPS.load(Ordering::Relaxed);
    let mut runner = TestRunner::new(Config {
        cases: 1_500,
        max_shrink_iters: 2_000,
        failure_persistence: None,
        ..Config::default()
    });
    let cap = prop_oneof![6 => 1..=24u32, 1 => Just(256u32)];
    runner
        .run(&(cap, proptest::collection::vec(op(), 100..400)), |(cap, ops)| {
            run(cap, &ops)
        })
        .unwrap();
    let steps = STEPS.load(Ordering::Relaxed) - before;
    eprintln!("journal model: {steps} operations");
    assert!(steps >= 300_000, "only {steps} operations ran");
}
