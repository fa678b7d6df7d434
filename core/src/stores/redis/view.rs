//! A `Store` over records fetched from an outside store (Redis).
//!
//! The engine decides over the few entries fetched for one request; the
//! view records what the decision changed, and `finish` turns that into the
//! writes to send back. Data travels with its session by handle, so `take`
//! then `insert` (a login) keeps it.
//!
//! Touches are rate-limited: a request that changes nothing but last-seen
//! writes only when the stored last-seen is `touch_interval` old, so a busy
//! session does not cost a write per request. Idle expiry is then early by
//! at most `touch_interval`.

use crate::engine::store::{Event, Store};
use crate::model::record::{DataFull, Entry, Record};
use crate::primitives::id::{Handle, SessionId};

/// How long a key outlives its session, so that a late request learns why
/// the session ended (`expired_idle`, ...) rather than finding nothing.
pub const EXPIRED_KEPT: u64 = 60_000;

/// The longest a stored last-seen may lag: a tenth of the idle timeout, at
/// most a minute (a minute when there is no idle timeout).
pub fn touch_interval(idle: u64) -> u64 {
    const MAX: u64 = 60_000;
    if idle == 0 {
        MAX
    } else {
        (idle / 10).min(MAX)
    }
}

/// One write for the outside store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Store `entry` (and `data` when live) under `id`, expiring after `ttl` ms
    /// (never when `None`).
    Put {
        id: SessionId,
        entry: Entry,
        data: Vec<u8>,
        ttl: Option<u64>,
    },
    Delete {
        id: SessionId,
    },
    /// A cookie-store record (`crate::stores::zone::revoked`): `id` stays dead, or a
    /// user's sessions from before a time are refused, until `until`; sent
    /// to every instance sharing the Redis.
    Revoked(crate::stores::zone::revoked::SharedRecord),
    /// End every session of `rec`'s user but `rec`'s own (by its handle),
    /// as `X-Session-Logout-Others` asks; kept under `key` (`others_key`).
    EndOthers {
        key: SessionId,
        rec: Record,
    },
}

/// The journal's key of a request to end the other sessions of the session
/// whose handle is `handle`: never an id a session could have, short of a
/// SHA-256 collision with random ids.
pub fn others_key(handle: &crate::primitives::id::Handle) -> SessionId {
    use sha2::{Digest, Sha256};
    let d = Sha256::new()
        .chain_update(b"ngx-sessions v1 end others\0")
        .chain_update(handle.0)
        .finalize();
    SessionId(d[..16].try_into().expect("16 bytes"))
}

impl Write {
    /// The session the write is for.
    pub fn id(&self) -> &SessionId {
        match self {
            Self::Put { id, .. } | Self::Delete { id } => id,
            Self::Revoked(r) => &r.key,
            Self::EndOthers { key, .. } => key,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    None,
    Touched,
    Written,
    Deleted,
}

#[derive(Debug)]
struct Item {
    id: SessionId,
    entry: Option<Entry>,
    /// Last-seen as stored, for the touch rate limit.
    stored_last_seen: u64,
    change: Change,
    /// When the entry may be dropped unasked.
    deadline: Option<u64>,
}

#[derive(Debug, Default)]
pub struct View {
    now: u64,
    touch_interval: u64,
    items: Vec<Item>,
    data: Vec<(Handle, Vec<u8>)>,
    pub events: Vec<Event>,
}

impl View {
    pub fn new(now: u64, touch_interval: u64) -> Self {
        Self {
            now,
            touch_interval,
            ..Self::default()
        }
    }

    /// Adds an entry read from the store, which expires at `deadline`.
    pub fn preload(&mut self, id: SessionId, entry: Entry, data: Vec<u8>, deadline: Option<u64>) {
        let stored_last_seen = match &entry {
            Entry::Live(rec) => {
                self.put_data(rec.handle, data);
                rec.last_seen
            }
            Entry::Grace { .. } => 0,
        };
        self.items.push(Item {
            id,
            entry: Some(entry),
            stored_last_seen,
            change: Change::None,
            deadline,
        });
    }

    /// The data of a session handled here.
    pub fn data_of(&self, handle: Handle) -> &[u8] {
        self.data
            .iter()
            .find(|(h, _)| *h == handle)
            .map_or(&[][..], |(_, d)| d.as_slice())
    }

    fn put_data(&mut self, handle: Handle, data: Vec<u8>) {
        match self.data.iter_mut().find(|(h, _)| *h == handle) {
            Some(slot) => slot.1 = data,
            None => self.data.push((handle, data)),
        }
    }

    fn item(&mut self, id: &SessionId) -> Option<&mut Item> {
        self.items.iter_mut().find(|i| i.id == *id)
    }

    fn set(&mut self, id: SessionId, entry: Option<Entry>, change: Change, deadline: Option<u64>) {
        match self.item(&id) {
            Some(i) => {
                i.entry = entry;
                i.change = change;
                i.deadline = deadline;
            }
            None => self.items.push(Item {
                id,
                entry,
                stored_last_seen: 0,
                change,
                deadline,
            }),
        }
    }

    /// Writes every live entry read, touched or not (moving records to
    /// another secret's keys).
    pub fn rewrite_all(&mut self) {
        for i in &mut self.items {
            if matches!(i.change, Change::None | Change::Touched) && matches!(i.entry, Some(Entry::Live(_))) {
                i.change = Change::Written;
            }
        }
    }

    /// The writes that make the store match the view.
    pub fn finish(&self) -> Vec<Write> {
        let mut out = Vec::new();
        for i in &self.items {
            let put = match i.change {
                Change::None => false,
                Change::Touched => self.now.saturating_sub(i.stored_last_seen) >= self.touch_interval,
                Change::Written => true,
                Change::Deleted => {
                    out.push(Write::Delete { id: i.id });
                    false
                }
            };
            if !put {
                continue;
            }
            let Some(entry) = i.entry else { continue };
            let (data, deadline) = match entry {
                Entry::Live(rec) => (self.data_of(rec.handle).to_vec(), i.deadline),
                Entry::Grace { until, .. } => (Vec::new(), Some(until)),
            };
            out.push(Write::Put {
                id: i.id,
                entry,
                data,
                ttl: deadline.map(|d| d.saturating_sub(self.now) + EXPIRED_KEPT),
            });
        }
        out
    }
}

impl Store for View {
    fn get(&mut self, id: &SessionId) -> Option<Entry> {
        self.items.iter().find(|i| i.id == *id).and_then(|i| i.entry)
    }

    fn touch(&mut self, id: &SessionId, last_seen: u64, deadline: Option<u64>) {
        if let Some(i) = self.item(id) {
            if let Some(Entry::Live(rec)) = &mut i.entry {
                rec.last_seen = last_seen;
                i.deadline = deadline;
                if i.change == Change::None {
                    i.change = Change::Touched;
                }
            }
        }
    }

    fn retire(&mut self, id: &SessionId, successor: SessionId, until: u64) {
        self.set(
            *id,
            Some(Entry::Grace { successor, until }),
            Change::Written,
            Some(until),
        );
    }

    fn remove(&mut self, id: &SessionId) {
        self.set(*id, None, Change::Deleted, None);
    }

    fn end(&mut self, id: &SessionId, until: u64) {
        self.set(*id, Some(Entry::ended(until)), Change::Written, Some(until));
    }

    fn take(&mut self, id: &SessionId) -> Option<Record> {
        let Some(Entry::Live(rec)) = self.get(id) else {
            return None;
        };
        self.remove(id);
        Some(rec)
    }

    fn set_data(&mut self, id: &SessionId, blob: &[u8]) -> Result<(), DataFull> {
        let Some(Entry::Live(rec)) = self.get(id) else {
            return Err(DataFull);
        };
        self.put_data(rec.handle, blob.to_vec());
        if let Some(i) = self.item(id) {
            i.change = Change::Written;
        }
        Ok(())
    }

    fn read_data(&self, rec: &Record, out: &mut Vec<u8>) {
        out.extend_from_slice(self.data_of(rec.handle));
    }

    fn insert(&mut self, id: SessionId, rec: &Record, deadline: Option<u64>, _now: u64) -> u32 {
        self.set(id, Some(Entry::Live(*rec)), Change::Written, deadline);
        0
    }

    fn count(&mut self, event: Event) {
        self.events.push(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::{facts, policy};
    use crate::engine::{apply, resolve, update_data, Control, Presented, Status};
    use crate::primitives::id::RandomPool;
    use std::collections::HashMap;

    #[test]
    fn touch_interval_is_a_tenth_of_idle_at_most_a_minute() {
        assert_eq!(touch_interval(2_000), 200);
        assert_eq!(touch_interval(1_800_000), 60_000);
        assert_eq!(touch_interval(0), 60_000);
    }

    /// What the outside store would hold after applying the writes.
    #[derive(Default)]
    struct Stored(HashMap<[u8; 16], (Entry, Vec<u8>, Option<u64>)>);

    impl Stored {
        /// A view of what a request with `id` would fetch (following grace).
        fn view(&self, id: Option<SessionId>, now: u64, touch: u64) -> View {
            let mut v = View::new(now, touch);
            let mut cur = id;
            while let Some(i) = cur.take() {
                if let Some((e, d, _)) = self.0.get(&i.0) {
                    if let Entry::Grace { successor, .. } = e {
                        cur = Some(*successor);
                    }
                    v.preload(i, *e, d.clone(), None);
                }
            }
            v
        }

        fn apply(&mut self, writes: Vec<Write>) -> usize {
            let n = writes.len();
            for w in writes {
                match w {
                    Write::Put { id, entry, data, ttl } => {
                        self.0.insert(id.0, (entry, data, ttl));
                    }
                    Write::Delete { id } => {
                        self.0.remove(&id.0);
                    }
                    Write::Revoked(_) | Write::EndOthers { .. } => {}
                }
            }
            n
        }
    }

    fn request(s: &mut Stored, id: Option<SessionId>, now: u64) -> (crate::engine::Outcome, usize) {
        let mut v = s.view(id, now, 100);
        let presented = id.map_or(Presented::Nothing, |id| Presented::Id { id, stale_key: false });
        let o = resolve(&mut v, presented, &facts(now), &policy(), &mut RandomPool::new()).unwrap();
        let n = s.apply(v.finish());
        (o, n)
    }

    #[test]
    fn new_session_is_one_put_with_the_remaining_life_as_ttl() {
        let mut s = Stored::default();
        let (o, writes) = request(&mut s, None, 0);
        assert_eq!((o.status, writes), (Status::New, 1));
        let (_, _, ttl) = s.0[&o.id.0];
        assert_eq!(ttl, Some(1_000 + EXPIRED_KEPT), "idle is the nearest deadline");
    }

    #[test]
    fn touches_are_written_only_past_the_interval() {
        let mut s = Stored::default();
        let id = request(&mut s, None, 0).0.id;
        assert_eq!(
            request(&mut s, Some(id), 50),
            (request(&mut s, Some(id), 50).0, 0)
        );
        let (o, writes) = request(&mut s, Some(id), 99);
        assert_eq!(
            (o.status, writes),
            (Status::Valid, 0),
            "below the interval: no write"
        );
        let (o, writes) = request(&mut s, Some(id), 150);
        assert_eq!(
            (o.status, writes),
            (Status::Valid, 1),
            "past it: last-seen written"
        );
        let Entry::Live(rec) = s.0[&id.0].0 else { panic!() };
        assert_eq!(rec.last_seen, 150);
        // Idle is judged against the stored last-seen: early by at most the interval.
        assert_eq!(request(&mut s, Some(id), 1_151).0.status, Status::ExpiredIdle);
    }

    #[test]
    fn renewal_keeps_a_grace_pointer_and_expiry_deletes() {
        let mut s = Stored::default();
        let first = request(&mut s, None, 0).0;
        let mut now = 0;
        // Keep it alive until the renewal point (3/4 of 4 s).
        while now < 2_500 {
            now += 500;
            request(&mut s, Some(first.id), now);
        }
        let (r, writes) = request(&mut s, Some(first.id), now + 600);
        assert_eq!((r.status, writes), (Status::Renewed, 2));
        assert!(matches!(s.0[&first.id.0].0, Entry::Grace { successor, .. } if successor == r.id));
        let (g, _) = request(&mut s, Some(first.id), now + 700);
        assert_eq!((g.status, g.id, g.issue_cookie), (Status::Valid, r.id, true));
        let (late, _) = request(&mut s, Some(first.id), now + 1_200);
        assert_eq!(late.status, Status::ExpiredRolling);
        assert!(!s.0.contains_key(&first.id.0), "the stale pointer is deleted");
    }

    #[test]
    fn login_moves_data_to_the_new_id() {
        let mut s = Stored::default();
        let id = request(&mut s, None, 0).0.id;
        let mut v = s.view(Some(id), 10, 100);
        let mut out = Vec::new();
        update_data(&mut v, &id, &[(b"k", Some(b"v"))], &mut out).unwrap();
        s.apply(v.finish());
        let mut v = s.view(Some(id), 20, 100);
        let control = Control::LogIn {
            user: b"alice",
            remember: false,
        };
        let (new_id, rec) = apply(&mut v, &id, control, 20, &policy(), &mut RandomPool::new())
            .unwrap()
            .unwrap();
        s.apply(v.finish());
        assert!(!s.0.contains_key(&id.0), "no grace for a pre-login id");
        let (e, data, _) = &s.0[&new_id.0];
        assert_eq!(*e, Entry::Live(rec));
        assert_eq!(data, &out);
        let mut v = s.view(Some(new_id), 30, 100);
        apply(
            &mut v,
            &new_id,
            Control::Destroy,
            30,
            &policy(),
            &mut RandomPool::new(),
        )
        .unwrap();
        // A logged-in session's logout leaves the record that it ended.
        let writes = v.finish();
        assert!(
            matches!(&writes[..], [Write::Put { id, entry, data, ttl: Some(_) }]
                if *id == new_id && entry.is_ended() && data.is_empty()),
            "{writes:?}"
        );
        assert_eq!(v.events, vec![crate::engine::store::Event::Logout]);
    }

    #[test]
    fn rewrite_all_writes_even_an_untouched_session() {
        let mut s = Stored::default();
        let id = request(&mut s, None, 0).0.id;
        let mut v = s.view(Some(id), 10, 100);
        let p = Presented::Id { id, stale_key: true };
        resolve(&mut v, p, &facts(10), &policy(), &mut RandomPool::new()).unwrap();
        assert!(v.finish().is_empty());
        v.rewrite_all();
        assert_eq!(v.finish().len(), 1);
    }
}
