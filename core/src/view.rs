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

use crate::id::{Handle, SessionId};
use crate::store::{Event, Store};
use crate::table::{DataFull, Entry, Record};

/// How long a key outlives its session, so that a late request learns why
/// the session ended (`expired_idle`, ...) rather than finding nothing.
pub const EXPIRED_KEPT: u64 = 60_000;

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

    fn update(&mut self, id: &SessionId, rec: &Record, deadline: Option<u64>) {
        self.set(*id, Some(Entry::Live(*rec)), Change::Written, deadline);
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
