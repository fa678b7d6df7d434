//! The storage interface the engine decides over.
//!
//! A store keeps records by id, knows renewed ids (grace pointers), and
//! counts what happens. The zone's `Table`, the Redis view and the cookie
//! store implement it, and the engine decides the same way over each.

use crate::engine::status::Status;
use crate::model::record::{DataFull, Entry, Record};
use crate::primitives::id::SessionId;

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
    /// A difference from the session's client let through by a check in
    /// `Mode::Log` (`IpMismatch`, `UaMismatch`).
    Tolerated(Status),
    Login,
    Logout,
    /// A request found Redis unreachable; `local`: it got a zone session.
    RedisUnavailable {
        local: bool,
    },
    /// A session ended to keep its user within `sessions_max_per_user`.
    LimitEnded,
    /// A login refused by `sessions_max_per_user ... refuse`.
    LimitRefused,
    /// A step of a login through an OpenID Provider ended.
    Oidc(OidcOutcome),
}

/// How a step of an OpenID Connect login or logout ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OidcOutcome {
    /// A session logged in through the provider.
    LoggedIn,
    /// The provider could not be reached, was too slow or answered wrongly.
    ProviderFailed,
    /// A callback refused before the provider was asked (no login in
    /// progress, another session's, too old, a wrong state, no code).
    CallbackRefused,
    /// The provider refused the code or the login, or its ID token failed a check.
    TokenRefused,
    /// The side-car was not running or saturated.
    Busy,
    /// A back-channel logout token accepted.
    BackchannelLogout,
    /// A back-channel logout token refused.
    BackchannelRefused,
    /// A session's tokens refreshed.
    Refreshed,
    /// The provider refused a refresh (or its ID token failed a check): the session ended.
    RefreshRefused,
    /// A refresh the provider did not answer (down, slow): tried again later.
    RefreshFailed,
}

/// How many `OidcOutcome`s there are.
pub const OIDC_OUTCOMES: usize = 10;
const _: () = assert!(OidcOutcome::RefreshFailed as usize + 1 == OIDC_OUTCOMES);

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
    /// Ends `id` by a logout or a revocation: removes it, and where the store
    /// can, keeps until `until` the record that it ended (`Entry::ended`).
    fn end(&mut self, id: &SessionId, until: u64) {
        let _ = until;
        self.remove(id);
    }
    /// Every live session logged in as `user`, where the store can tell at
    /// once (the zone); `None` where it cannot (`sessions_max_per_user` is
    /// then kept by the store after the login).
    fn sessions_of_user(&mut self, user: &[u8]) -> Option<Vec<(SessionId, Record)>> {
        let _ = user;
        None
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
    /// The most bytes of data `crate::model::data` may encode for this store.
    fn data_limit(&self) -> usize {
        crate::model::data::MAX_BLOB
    }
}
