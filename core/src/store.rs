//! The storage interface the engine decides over.
//!
//! A store keeps records by id, knows renewed ids (grace pointers), and
//! counts what happens. The shared-memory `Table` is one implementation;
//! another backend implements the same five calls and reuses the engine and
//! its tests.

use crate::engine::Status;
use crate::id::SessionId;
use crate::table::{DataFull, Entry, Record, Table};

/// Where a location keeps its sessions (`sessions_store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreKind {
    /// The shared-memory zone.
    #[default]
    Shm,
    Redis,
    /// The cookie itself (see `cookie_store`).
    Cookie,
}

/// Events a store counts for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Created,
    Renewed,
    /// A presented cookie was refused (expired, mismatched, invalid, unknown).
    Refused(Status),
    Login,
    Logout,
    /// A request found Redis unreachable; `local`: it got a zone session.
    RedisUnavailable {
        local: bool,
    },
}

pub trait Store {
    fn get(&mut self, id: &SessionId) -> Option<Entry>;
    /// Records a request on a live session without rewriting its record.
    fn touch(&mut self, id: &SessionId, last_seen: u64, deadline: Option<u64>);
    /// Marks `id` as replaced by `successor`, still accepted until `until`.
    fn retire(&mut self, id: &SessionId, successor: SessionId, until: u64);
    fn remove(&mut self, id: &SessionId);
    /// Removes `id` because its times ran out (not because it was ended).
    fn expire(&mut self, id: &SessionId) {
        self.remove(id);
    }
    /// Removes `id`, handing its record (data included) to the caller.
    fn take(&mut self, id: &SessionId) -> Option<Record>;
    /// Replaces the data of a live session.
    fn set_data(&mut self, id: &SessionId, blob: &[u8]) -> Result<(), DataFull>;
    /// Appends the data of a record read from this store to `out`.
    fn read_data(&self, rec: &Record, out: &mut Vec<u8>);
    /// Stores a new record; returns how many live sessions were evicted for room.
    fn insert(&mut self, id: SessionId, rec: &Record, deadline: Option<u64>, now: u64) -> u32;
    fn count(&mut self, event: Event);
    /// The most bytes of data `crate::data` may encode for this store.
    fn data_limit(&self) -> usize {
        crate::data::MAX_BLOB
    }
}

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
            Event::Login => &mut s.logins,
            Event::Logout => &mut s.logouts,
            Event::RedisUnavailable { local: false } => &mut s.redis_refused,
            Event::RedisUnavailable { local: true } => &mut s.redis_local,
            Event::Refused(Status::New | Status::Valid | Status::Renewed) => return,
        };
        *counter += 1;
    }
}
