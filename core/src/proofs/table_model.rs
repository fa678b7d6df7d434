//! The session table against a plain model: random sequences of every
//! operation the module performs on it (sessions, renewals, logins, data,
//! the cookie store's records, state file export and restore), with the
//! layout's invariants and the model's view compared after every step.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::engine::Policy;
use crate::model::record::{Entry, Record};
use crate::primitives::id::{Handle, SessionId};
use crate::stores::zone::revoked::{self, SharedRecord, ENDED, ENDED_ANONYMOUS};
use crate::stores::zone::state::Saved;
use crate::stores::zone::table::tests::Mem;
use crate::stores::zone::table::{Plan, Table, CHUNK_DATA};

const USERS: [&[u8]; 3] = [b"alice", b"bob", b"carol"];

#[derive(Debug, Clone)]
enum Op {
    Insert {
        key: u16,
        kind: u8,
        ttl: Option<u16>,
    },
    Get {
        key: u16,
    },
    Update {
        key: u16,
        kind: u8,
        ttl: Option<u16>,
    },
    Touch {
        key: u16,
        ttl: Option<u16>,
    },
    /// A rolling renewal: the record and its data move to a new id.
    Renew {
        key: u16,
        new_key: u16,
        grace: u16,
    },
    /// A login (or regeneration): the old id is taken, the record moves.
    Login {
        key: u16,
        new_key: u16,
        user: u8,
    },
    Remove {
        key: u16,
    },
    /// A logout or revocation of a zone session (`Table::end`).
    EndSession {
        key: u16,
        ttl: u16,
    },
    SetData {
        key: u16,
        len: u16,
    },
    /// The cookie store's records.
    End {
        key: u16,
        logged_in: bool,
        ttl: u16,
    },
    NotBefore {
        user: u8,
        ttl: u16,
    },
    Apply {
        key: u16,
        kind: u8,
        at: u16,
        ttl: u16,
    },
    Index {
        key: u16,
        user: u8,
        ttl: Option<u16>,
    },
    RevokeUser {
        user: u8,
    },
    RevokeHandle {
        key: u16,
    },
    Scan {
        user: u8,
        key: u16,
    },
    Advance {
        ms: u16,
    },
    ExportRestore,
}

fn op() -> impl Strategy<Value = Op> {
    let key = any::<u16>;
    let ttl = || proptest::option::weighted(0.8, 1..5_000u16);
    prop_oneof![
        6 => (key(), 0..3u8, ttl()).prop_map(|(key, kind, ttl)| Op::Insert { key, kind, ttl }),
        2 => key().prop_map(|key| Op::Get { key }),
        2 => (key(), 0..3u8, ttl()).prop_map(|(key, kind, ttl)| Op::Update { key, kind, ttl }),
        3 => (key(), ttl()).prop_map(|(key, ttl)| Op::Touch { key, ttl }),
        2 => (key(), key(), 1..3_000u16).prop_map(|(key, new_key, grace)| Op::Renew { key, new_key, grace }),
        2 => (key(), key(), 0..3u8).prop_map(|(key, new_key, user)| Op::Login { key, new_key, user }),
        2 => key().prop_map(|key| Op::Remove { key }),
        2 => (key(), 0..5_000u16).prop_map(|(key, ttl)| Op::EndSession { key, ttl }),
        3 => (key(), 0..1_000u16).prop_map(|(key, len)| Op::SetData { key, len }),
        3 => (key(), any::<bool>(), 0..5_000u16).prop_map(|(key, logged_in, ttl)| Op::End { key, logged_in, ttl }),
        1 => (0..3u8, 1..5_000u16).prop_map(|(user, ttl)| Op::NotBefore { user, ttl }),
        1 => (key(), 0..3u8, any::<u16>(), 0..5_000u16).prop_map(|(key, kind, at, ttl)| Op::Apply { key, kind, at, ttl }),
        2 => (key(), 0..3u8, ttl()).prop_map(|(key, user, ttl)| Op::Index { key, user, ttl }),
        1 => (0..3u8).prop_map(|user| Op::RevokeUser { user }),
        1 => key().prop_map(|key| Op::RevokeHandle { key }),
        1 => (0..3u8, key()).prop_map(|(user, key)| Op::Scan { user, key }),
        2 => (0..3_000u16).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::ExportRestore),
    ]
}

/// One entry of the model.
#[derive(Debug, Clone)]
struct M {
    /// `Some(successor)` for a retired id or a record.
    grace: Option<SessionId>,
    rec: Record,
    data: Vec<u8>,
    deadline: u64,
    protected: bool,
}

/// What the table should hold: entries by id and the two segments, most
/// recently used first, with the counters the table keeps.
#[derive(Debug, Clone, Default)]
struct Model {
    cap: usize,
    chunks: usize,
    map: HashMap<SessionId, M>,
    prob: VecDeque<SessionId>,
    prot: VecDeque<SessionId>,
    evicted: u64,
    evicted_returning: u64,
    expired: u64,
}

fn chunks_for(len: usize) -> usize {
    len.div_ceil(CHUNK_DATA)
}

impl Model {
    fn new(cap: usize, chunks: usize) -> Self {
        Self {
            cap,
            chunks,
            ..Self::default()
        }
    }

    fn unlink(&mut self, id: &SessionId) {
        let m = self.map.get_mut(id).expect("linked");
        let list = if m.protected {
            &mut self.prot
        } else {
            &mut self.prob
        };
        m.protected = false;
        let at = list.iter().position(|x| x == id).expect("in its segment");
        list.remove(at);
    }

    fn push_head(&mut self, id: SessionId, protected: bool) {
        if !protected {
            self.prob.push_front(id);
            return;
        }
        self.prot.push_front(id);
        self.map.get_mut(&id).expect("stored").protected = true;
        if self.prot.len() > self.cap - self.cap / 4 {
            let t = self.prot.pop_back().expect("not empty");
            self.map.get_mut(&t).expect("stored").protected = false;
            self.prob.push_front(t);
        }
    }

    fn remove(&mut self, id: &SessionId) -> Option<M> {
        self.map.contains_key(id).then(|| {
            self.unlink(id);
            self.map.remove(id).expect("present")
        })
    }

    fn insert(
        &mut self,
        id: SessionId,
        rec: Record,
        data: Vec<u8>,
        deadline: u64,
        now: u64,
        protected: bool,
    ) {
        self.remove(&id);
        for _ in 0..2 {
            let expired = [self.prob.back(), self.prot.back()]
                .into_iter()
                .flatten()
                .copied()
                .find(|t| self.map[t].deadline <= now);
            let Some(t) = expired else { break };
            self.remove(&t);
            self.expired += 1;
        }
        if self.map.len() == self.cap {
            let t = *self.prob.back().or(self.prot.back()).expect("full");
            if self.map[&t].protected {
                self.evicted_returning += 1;
            }
            self.remove(&t);
            self.evicted += 1;
        }
        self.map.insert(
            id,
            M {
                grace: None,
                rec,
                data,
                deadline,
                protected: false,
            },
        );
        self.push_head(id, protected);
    }

    fn insert_by_rule(&mut self, id: SessionId, rec: Record, data: Vec<u8>, deadline: u64, now: u64) {
        let protected = rec.user().is_some() || rec.last_seen != rec.created;
        self.insert(id, rec, data, deadline, now, protected);
    }

    fn live(&self, id: &SessionId) -> Option<&M> {
        self.map.get(id).filter(|m| m.grace.is_none())
    }

    fn update(&mut self, id: &SessionId, rec: Record, deadline: u64) {
        if self.map.contains_key(id) {
            self.unlink(id);
            let m = self.map.get_mut(id).expect("present");
            (m.rec, m.grace, m.deadline) = (rec, None, deadline);
            self.push_head(*id, true);
        }
    }

    fn touch(&mut self, id: &SessionId, last_seen: u64, deadline: u64) {
        if self.live(id).is_some() {
            let m = self.map.get_mut(id).expect("present");
            (m.rec.last_seen, m.deadline) = (last_seen, deadline);
            self.unlink(id);
            self.push_head(*id, true);
        }
    }

    /// Hands the data over to the caller, as the table does.
    fn retire(&mut self, id: &SessionId, successor: SessionId, until: u64) -> Vec<u8> {
        let Some(m) = self.map.get_mut(id) else {
            return Vec::new();
        };
        (m.grace, m.deadline) = (Some(successor), until);
        std::mem::take(&mut m.data)
    }

    /// The data is freed; the entry becomes the record that it ended, in probation.
    fn end(&mut self, id: &SessionId, until: u64) -> bool {
        if !self.map.contains_key(id) {
            return false;
        }
        self.unlink(id);
        let m = self.map.get_mut(id).expect("present");
        (m.grace, m.deadline, m.data) = (Some(ENDED), until, Vec::new());
        self.push_head(*id, false);
        true
    }

    fn free_chunks(&self) -> usize {
        self.chunks - self.map.values().map(|m| chunks_for(m.data.len())).sum::<usize>()
    }

    fn set_data(&mut self, id: &SessionId, blob: &[u8]) -> bool {
        let Some(own) = self.live(id).map(|m| chunks_for(m.data.len())) else {
            return true;
        };
        if blob.len() > usize::from(u16::MAX) || self.free_chunks() + own < chunks_for(blob.len()) {
            return false;
        }
        self.map.get_mut(id).expect("present").data = blob.to_vec();
        true
    }

    /// `revoked`'s records: stored as a grace entry that points nowhere.
    fn put(&mut self, r: SharedRecord, now: u64) {
        self.remove(&r.key);
        let protected = r.successor != ENDED_ANONYMOUS;
        self.insert(r.key, Record::EMPTY, Vec::new(), r.until, now, protected);
        self.retire(&r.key, r.successor, r.until);
    }

    fn apply(&mut self, r: SharedRecord, now: u64) {
        if r.until <= now {
            return;
        }
        let ends = |s: &SessionId| match *s {
            ENDED => Some(true),
            ENDED_ANONYMOUS => Some(false),
            _ => None,
        };
        let mark = |s: &SessionId| {
            (s.0[8..] == *b"notbefor").then(|| u64::from_le_bytes(s.0[..8].try_into().unwrap()))
        };
        let kept = match self.map.get(&r.key) {
            Some(M {
                grace: Some(have),
                deadline,
                ..
            }) => match (ends(have), ends(&r.successor), mark(have), mark(&r.successor)) {
                (Some(h), Some(n), _, _) => *deadline >= r.until && (h || !n),
                (None, _, Some(h), Some(n)) => h > n || (h == n && *deadline >= r.until),
                _ => false,
            },
            _ => false,
        };
        if !kept {
            self.put(r, now);
        }
    }

    fn export(&self, now: u64) -> Vec<Saved> {
        let mut out = Vec::new();
        for list in [&self.prob, &self.prot] {
            for id in list.iter().rev() {
                let m = &self.map[id];
                if m.deadline <= now {
                    continue;
                }
                let (entry, data) = match m.grace {
                    Some(successor) => (
                        Entry::Grace {
                            successor,
                            until: m.deadline,
                        },
                        Vec::new(),
                    ),
                    None => (Entry::Live(m.rec), m.data.clone()),
                };
                out.push(Saved {
                    id: *id,
                    entry,
                    deadline: (m.deadline != u64::MAX).then_some(m.deadline),
                    data,
                    protected: m.protected,
                });
            }
        }
        out
    }
}

/// What of a live record the table must give back as it was stored (the
/// data chain's index is the table's own business).
fn visible(r: &Record) -> impl PartialEq + std::fmt::Debug + '_ {
    (
        r.handle,
        (r.created, r.last_seen, r.renewed, r.ua),
        r.ip(),
        r.user(),
        r.remembered(),
    )
}

fn data_of(t: &Table<'_>, rec: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    t.read_data(rec, &mut out);
    out
}

/// Every model entry is what the table holds, in the same places.
fn compare(t: &mut Table<'_>, model: &Model) -> Result<(), TestCaseError> {
    t.check().map_err(TestCaseError::fail)?;
    prop_assert_eq!(t.len() as usize, model.map.len());
    prop_assert_eq!(t.protected() as usize, model.prot.len());
    let [prob, prot] = t.segments();
    prop_assert!(prob.iter().eq(model.prob.iter()), "probation order");
    prop_assert!(prot.iter().eq(model.prot.iter()), "protected order");
    for (id, m) in &model.map {
        prop_assert_eq!(t.deadline_of(id), Some(m.deadline));
        match (t.get(id), m.grace) {
            (Some(Entry::Grace { successor, until }), Some(s)) => {
                prop_assert_eq!((successor, until), (s, m.deadline));
            }
            (Some(Entry::Live(r)), None) => {
                prop_assert_eq!(visible(&r), visible(&m.rec));
                prop_assert_eq!(r.has_data(), !m.data.is_empty());
                prop_assert_eq!(data_of(t, &r), m.data.clone());
            }
            (got, _) => prop_assert!(false, "table has {:?}, model {:?}", got, m),
        }
    }
    prop_assert_eq!(t.free_chunks() as usize, model.free_chunks());
    let s = t.header().stats;
    prop_assert_eq!(
        (s.evicted, s.evicted_returning, s.expired),
        (model.evicted, model.evicted_returning, model.expired)
    );
    Ok(())
}

fn sid(k: u16) -> SessionId {
    // The bucket is the first bytes: neighbouring keys share buckets.
    let mut b = [0x5a; 16];
    b[..2].copy_from_slice(&k.to_le_bytes());
    b[2..4].fill(0);
    SessionId(b)
}

fn handle(k: u16) -> Handle {
    let mut h = [7; 8];
    h[..2].copy_from_slice(&k.to_le_bytes());
    Handle(h)
}

fn record(k: u16, kind: u8, user: u8, now: u64) -> Record {
    let ip: &[u8] = if k.is_multiple_of(2) {
        &[127, 0, 0, 1]
    } else {
        &[0xfe; 16]
    };
    let mut r = Record::new(handle(k), now, ip, u64::from(k));
    match kind {
        0 => {}
        1 => r.last_seen = now + 1,
        _ => r
            .log_in(USERS[usize::from(user) % 3], k.is_multiple_of(3))
            .expect("short"),
    }
    r
}

/// Session data as the module stores it (the state file refuses any
/// other), of about `len` bytes; 0 is none.
fn blob(len: u16, seed: u16) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..usize::from(len).div_ceil(100).min(9))
        .map(|i| {
            let n = (usize::from(len) / (i + 1)).clamp(1, 100);
            (0..n)
                .map(|j| b'a' + ((j + usize::from(seed)) % 26) as u8)
                .collect()
        })
        .collect();
    let keys: Vec<String> = (0..values.len()).map(|i| format!("k{i}")).collect();
    let changes: Vec<(&[u8], Option<&[u8]>)> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| (k.as_bytes(), Some(v.as_slice())))
        .collect();
    let mut out = Vec::new();
    crate::model::data::update(&[], &changes, &mut out).expect("valid data");
    out
}

/// The shape of one run: a table of `cap` slots and `chunks` data chunks.
#[derive(Debug, Clone, Copy)]
struct Shape {
    cap: usize,
    buckets: usize,
    chunks: usize,
}

fn shape() -> impl Strategy<Value = Shape> {
    let small = (1..=64usize, 0..=160usize).prop_map(|(cap, chunks)| Shape {
        cap,
        buckets: (cap / 2).max(1).next_power_of_two(),
        chunks,
    });
    // What `sessions_zone` makes of 32k to 1m.
    let zone = prop_oneof![
        Just(32usize << 10),
        Just(64 << 10),
        Just(256 << 10),
        Just(1 << 20)
    ]
    .prop_map(|bytes| {
        let p = Plan::for_bytes(bytes).expect("fits");
        Shape {
            cap: p.capacity as usize,
            buckets: p.buckets as usize,
            chunks: p.chunks as usize,
        }
    });
    prop_oneof![8 => small, 1 => zone]
}

static STEPS: AtomicU64 = AtomicU64::new(0);

fn run(shape: Shape, ops: &[Op]) -> Result<(), TestCaseError> {
    let Shape { cap, buckets, chunks } = shape;
    let mut mem = Mem::with_chunks(cap, buckets, chunks);
    let mut model = Model::new(cap, chunks);
    let policy = Policy::default();
    let keys = (2 * cap + 4) as u16;
    let mut now = 1_000_000u64;
    let deadline = |ttl: Option<u16>, now: u64| ttl.map_or(u64::MAX, |t| now + u64::from(t));
    for (step, op) in ops.iter().enumerate() {
        let key = |k: &u16| sid(k % keys);
        let mut t = mem.table();
        let mut out = Vec::new();
        match op {
            Op::Insert { key: k, kind, ttl } => {
                let rec = record(k % keys, *kind, *kind, now);
                t.insert(
                    key(k),
                    &rec,
                    Some(deadline(*ttl, now)).filter(|&d| d != u64::MAX),
                    now,
                );
                model.insert_by_rule(key(k), rec, Vec::new(), deadline(*ttl, now), now);
            }
            Op::Get { key: k } => {
                let got = t.get(&key(k)).is_some();
                prop_assert_eq!(got, model.map.contains_key(&key(k)));
            }
            Op::Update { key: k, kind, ttl } => {
                let rec = record(k % keys, *kind, 1, now);
                let d = deadline(*ttl, now);
                let done = t.update(&key(k), &rec, (d != u64::MAX).then_some(d));
                prop_assert_eq!(done, model.map.contains_key(&key(k)));
                model.update(&key(k), rec, d);
            }
            Op::Touch { key: k, ttl } => {
                let d = deadline(*ttl, now);
                let done = t.touch(&key(k), now, (d != u64::MAX).then_some(d));
                prop_assert_eq!(done, model.live(&key(k)).is_some());
                model.touch(&key(k), now, d);
            }
            Op::Renew {
                key: k,
                new_key,
                grace,
            } => {
                // As the engine renews: read, retire, insert under the new id.
                if let Some(Entry::Live(mut rec)) = t.get(&key(k)) {
                    let (old, new) = (key(k), key(new_key));
                    rec.renewed = now;
                    let until = now + u64::from(*grace);
                    t.retire(&old, new, until);
                    t.insert(new, &rec, None, now);
                    let mut m = model.live(&old).expect("live in the model").clone();
                    m.rec.renewed = now;
                    let data = model.retire(&old, new, until);
                    model.insert_by_rule(new, m.rec, data, u64::MAX, now);
                }
            }
            Op::Login {
                key: k,
                new_key,
                user,
            } => {
                let (old, new) = (key(k), key(new_key));
                if let Some(mut rec) = t.take(&old) {
                    let user = USERS[usize::from(*user) % 3];
                    rec.log_in(user, false).expect("short");
                    rec.renewed = now;
                    t.insert(new, &rec, None, now);
                    let mut m = model.remove(&old).expect("in the model");
                    m.rec.log_in(user, false).expect("short");
                    m.rec.renewed = now;
                    model.insert_by_rule(new, m.rec, m.data, u64::MAX, now);
                } else {
                    prop_assert!(!model.map.contains_key(&old));
                }
            }
            Op::Remove { key: k } => {
                prop_assert_eq!(t.remove(&key(k)), model.remove(&key(k)).is_some());
            }
            Op::EndSession { key: k, ttl } => {
                let until = now + u64::from(*ttl);
                prop_assert_eq!(t.end(&key(k), until), model.end(&key(k), until));
                if let Some(m) = model.map.get(&key(k)) {
                    prop_assert!(t.get(&key(k)).is_some_and(|e| e.is_ended()) && m.grace == Some(ENDED));
                }
            }
            Op::SetData { key: k, len } => {
                let b = blob(*len, *k);
                prop_assert_eq!(t.set_data(&key(k), &b).is_ok(), model.set_data(&key(k), &b));
            }
            Op::End {
                key: k,
                logged_in,
                ttl,
            } => {
                revoked::end(&mut t, key(k), now + u64::from(*ttl), now, *logged_in, &mut out);
            }
            Op::NotBefore { user, ttl } => {
                let user = USERS[usize::from(*user) % 3];
                revoked::set_not_before(&mut t, user, now, now + u64::from(*ttl), now, &mut out);
            }
            Op::Apply {
                key: k,
                kind,
                at,
                ttl,
            } => {
                let successor = match kind {
                    0 => ENDED,
                    1 => ENDED_ANONYMOUS,
                    _ => {
                        let mut mark = [0u8; 16];
                        mark[..8].copy_from_slice(&(now - u64::from(*at)).to_le_bytes());
                        mark[8..].copy_from_slice(b"notbefor");
                        SessionId(mark)
                    }
                };
                let r = SharedRecord {
                    key: key(k),
                    successor,
                    until: now + u64::from(*ttl),
                };
                revoked::apply(&mut t, r, now);
                model.apply(r, now);
            }
            Op::Index { key: k, user, ttl } => {
                let rec = record(k % keys, 2, *user, now);
                let d = deadline(*ttl, now);
                revoked::index(&mut t, key(k), &rec, (d != u64::MAX).then_some(d), now);
                match model.map.get(&key(k)) {
                    Some(m) if m.grace.is_none() => model.update(&key(k), rec, d),
                    None => model.insert_by_rule(key(k), rec, Vec::new(), d, now),
                    Some(_) => {}
                }
            }
            Op::RevokeUser { user } => {
                let user = USERS[usize::from(*user) % 3];
                let listed = model
                    .map
                    .values()
                    .filter(|m| m.grace.is_none() && m.rec.user() == Some(user));
                let expected = listed.count();
                prop_assert_eq!(
                    revoked::revoke_user(&mut t, user, &policy, now, &mut out),
                    expected
                );
            }
            Op::RevokeHandle { key: k } => {
                let h = handle(k % keys);
                let any = model.map.values().any(|m| m.grace.is_none() && m.rec.handle == h);
                prop_assert_eq!(
                    revoked::revoke_handle(&mut t, &h, None, &policy, now, &mut out),
                    any
                );
                if let Some(r) = out.first() {
                    model.remove(&r.key);
                }
            }
            Op::Scan { user, key: k } => {
                let user = USERS[usize::from(*user) % 3];
                let mut got: Vec<_> = t.sessions_of(user).into_iter().map(|(id, _)| id.0).collect();
                let mut want: Vec<_> = model
                    .map
                    .iter()
                    .filter(|(_, m)| m.grace.is_none() && m.rec.user() == Some(user))
                    .map(|(id, _)| id.0)
                    .collect();
                got.sort_unstable();
                want.sort_unstable();
                prop_assert_eq!(got, want);
                let h = handle(k % keys);
                match t.find_handle(&h) {
                    Some(id) => prop_assert!(model.live(&id).is_some_and(|m| m.rec.handle == h)),
                    None => prop_assert!(!model.map.values().any(|m| m.grace.is_none() && m.rec.handle == h)),
                }
            }
            Op::Advance { ms } => now += u64::from(*ms),
            Op::ExportRestore => {
                let saved = t.export(now);
                let want = model.export(now);
                prop_assert_eq!(saved.len(), want.len());
                for (s, w) in saved.iter().zip(&want) {
                    prop_assert_eq!(
                        (s.id, s.deadline, &s.data, s.protected),
                        (w.id, w.deadline, &w.data, w.protected)
                    );
                    match (&s.entry, &w.entry) {
                        (Entry::Live(a), Entry::Live(b)) => prop_assert_eq!(visible(a), visible(b)),
                        (a, b) => prop_assert_eq!(a, b),
                    }
                }
                // Through the state file's encoding, into a fresh zone.
                let snap = crate::stores::zone::state::Snapshot {
                    random_name: *b"abcdefghABCDEFGH",
                    saved,
                    ..Default::default()
                };
                let keyring = crate::model::keys::Keyring::from_secrets(&["model"]).expect("keys");
                let file = crate::stores::zone::state::seal(
                    &snap,
                    std::slice::from_ref(&keyring),
                    &mut crate::primitives::id::RandomPool::new(),
                )
                .expect("random");
                let back = crate::stores::zone::state::open(&file, &[keyring]).expect("opens");
                let mut fresh = Mem::with_chunks(cap, buckets, chunks);
                let mut m2 = Model::new(cap, chunks);
                let mut t2 = fresh.table();
                for s in &back.saved {
                    let whole = t2.restore(s, now);
                    let d = s.deadline.unwrap_or(u64::MAX);
                    match s.entry {
                        Entry::Live(rec) => {
                            m2.insert(s.id, rec, Vec::new(), d, now, s.protected);
                            prop_assert_eq!(whole, s.data.is_empty() || m2.set_data(&s.id, &s.data));
                        }
                        Entry::Grace { successor, until } => {
                            m2.insert(s.id, Record::EMPTY, Vec::new(), until, now, s.protected);
                            m2.retire(&s.id, successor, until);
                        }
                    }
                }

                (mem, model) = (fresh, m2);
            }
        }
        for r in &out {
            model.put(*r, now);
        }
        STEPS.fetch_add(1, Ordering::Relaxed);
        compare(&mut mem.table(), &model)
            .map_err(|e| TestCaseError::fail(format!("step {step} ({op:?}): {e}")))?;
    }
    Ok(())
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        // Shrinking a long run of a large table takes long; a failure is
        // reported at its step anyway.
        max_shrink_iters: 2_000,
        failure_persistence: None,
        ..Config::default()
    })
}

/// At least a million operations per run, on zones of one slot to 1m.
#[test]
fn the_table_matches_its_model_over_a_million_operations() {
    let before = STEPS.load(Ordering::Relaxed);
    let strategy = (shape(), proptest::collection::vec(op(), 200..600));
    runner(2_600)
        .run(&strategy, |(shape, ops)| run(shape, &ops))
        .unwrap();
    let steps = STEPS.load(Ordering::Relaxed) - before;
    eprintln!("table model: {steps} operations");
    assert!(steps >= 1_000_000, "only {steps} operations ran");
}

/// The default 10m zone: fewer operations, each checked over 40,000 slots.
#[test]
fn a_default_zone_matches_its_model() {
    let p = Plan::for_bytes(10 << 20).expect("fits");
    let shape = Shape {
        cap: p.capacity as usize,
        buckets: p.buckets as usize,
        chunks: p.chunks as usize,
    };
    runner(2)
        .run(&proptest::collection::vec(op(), 300), |ops| run(shape, &ops))
        .unwrap();
}
