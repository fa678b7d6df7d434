//! The per-worker async side-car of ngx-sessions: a thread per worker runs
//! a small tokio runtime that owns the connections to Redis; the nginx
//! thread hands it jobs and is woken through an eventfd when answers are
//! ready. Nothing here touches nginx structures, so all of it is tested
//! with plain `cargo test`.
//!
//! By concern: `runtime` (the thread, jobs and replies, the order of jobs
//! on one session), `exec` (running commands, retry, failures), `backend`
//! (connections: standalone, Sentinel, Cluster, with backoff), `lookup`
//! (one request's session), `flush` (writes kept until acknowledged),
//! `tracking` (the near cache's invalidations), `records` (shared records
//! of ended cookie-store sessions), `admin`, `adoption`, and the Lua
//! `scripts`.

mod admin;
mod adoption;
mod backend;
mod exec;
#[cfg(test)]
mod fake;
mod flush;
mod lookup;
pub mod oidc;
mod oidc_jobs;
mod records;
mod runtime;
mod scripts;
mod state;
mod tracking;

pub use runtime::{oidc_patience, patience, start, Client, StartError};

use std::sync::{Arc, Mutex};

use sessions_core::engine::store::Event;
use sessions_core::engine::{PerUser, Presented, Ua};
use sessions_core::model::keys::SealKeys;
use sessions_core::model::record::Record;
use sessions_core::primitives::id::{Handle, SessionId};
use sessions_core::stores::redis::journal::Journal;
use sessions_core::stores::redis::near_cache::NearCache;
use sessions_core::stores::redis::view::Write;
use sessions_core::stores::zone::revoked;
use sessions_core::{Outcome, Policy};

/// Keys for the records of one session: where it was read, where it goes.
#[derive(Clone)]
pub struct Keys {
    pub read: SealKeys,
    pub write: SealKeys,
    /// `read` is an older secret's: rewrite what is kept under `write`.
    pub migrate: bool,
}

/// One request's session, decided on the Redis thread.
pub struct Lookup {
    pub presented: Presented,
    pub keys: Keys,
    pub now: u64,
    pub ip: ([u8; 16], usize),
    /// The User-Agent's values (`Ua::known`).
    pub ua: Ua<'static>,
    pub policy: Policy,
}

// Moved once per job; the channel holds few of them.
#[allow(clippy::large_enum_variant)]
pub enum Job {
    Lookup(Box<Lookup>),
    /// Writes decided on the nginx thread that the journal had no room
    /// for; nobody waits for them.
    Write {
        writes: Vec<Write>,
        keys: SealKeys,
    },
    /// The journal has new writes: flush them now.
    Flush,
    /// The random secret and cookie name shared by every instance.
    Adopt,
    /// The admin endpoint: a user's logged-in sessions.
    List {
        user: Vec<u8>,
        keys: SealKeys,
    },
    /// "Log out everywhere": every session of a user.
    Revoke {
        user: Vec<u8>,
        keys: SealKeys,
    },
    /// One logged-in session, by its handle (`$session_id`); with `user`,
    /// only if it is that user's (`sessions_self`).
    RevokeHandle {
        handle: Handle,
        user: Option<Vec<u8>>,
        keys: SealKeys,
    },
    /// Every session of `user` but the one whose handle is `except`.
    RevokeOthers {
        user: Vec<u8>,
        except: Handle,
        keys: SealKeys,
    },
    /// After `id` logged in as `user`: once the login is in Redis, the
    /// user's sessions beyond `limit` end (`sessions_max_per_user`).
    KeepLimit {
        user: Vec<u8>,
        id: SessionId,
        limit: PerUser,
        keys: SealKeys,
    },
    /// A call to an OpenID Provider, by the index of its settings in
    /// those the side-car was started with.
    Oidc {
        provider: usize,
        call: OidcCall,
    },
}

/// What a login through an OpenID Provider asks of the side-car.
pub enum OidcCall {
    /// A login starts: the authorization URL and what the visitor keeps.
    Begin,
    /// The callback: the code exchanged and the ID token checked.
    Finish {
        code: String,
        verifier: String,
        nonce: String,
        /// The handle of the session logging in, remembered in Redis under
        /// the provider's `sid` for `keep_ms`: a back-channel logout naming
        /// only the `sid` finds it on every instance.
        session: [u8; 8],
        keep_ms: u64,
    },
    /// A logout: where to send the browser to end its session at the
    /// provider too, back to the configured `post_logout`, with the
    /// session's ID token as a hint when it was kept.
    EndSession {
        post_logout: Option<String>,
        id_token_hint: Option<String>,
    },
    /// A back-channel logout: the provider's `logout_token`, checked.
    LogoutToken { token: String },
    /// Fresh tokens for logged-in `user`'s session. With Redis, the
    /// session's `handle` is locked there for `lock_ms` first, so that one
    /// instance refreshes at a time: `RefreshBusy` when another holds it.
    Refresh {
        refresh_token: String,
        user: String,
        handle: [u8; 8],
        lock_ms: u64,
    },
}

/// What an `OidcCall` came to.
// Moved once per login.
#[allow(clippy::large_enum_variant)]
pub enum OidcAnswer {
    Begun(oidc::Begin),
    LoggedIn(oidc::Identity),
    /// The provider's end-session URL, `None` when it has none.
    EndSession(Option<String>),
    /// A checked logout token, and the session its `sid` logged in, as
    /// Redis remembers it.
    LoggedOut(oidc::LogoutToken, Option<[u8; 8]>),
    Refreshed(oidc::Refreshed),
    /// Another instance is refreshing this session's tokens.
    RefreshBusy,
}

pub enum Answer {
    Resolved {
        outcome: Outcome,
        data: Vec<u8>,
        events: Vec<Event>,
    },
    Unavailable,
    /// The OS random source failed.
    NoRandom,
    Adopted {
        secret: Vec<u8>,
        name: Vec<u8>,
        /// Keys whose unsound values were replaced.
        replaced: Vec<String>,
    },
    Written,
    /// The sessions `List` found, as their summaries.
    Listed {
        user: Vec<u8>,
        sessions: Vec<Record>,
    },
    /// How many sessions `Revoke` ended.
    Revoked(usize),
    /// Whether `RevokeHandle` found its session.
    RevokedOne(bool),
    /// What `KeepLimit` ended: older sessions, and the login itself (`refuse`).
    Limited {
        ended: usize,
        refused: usize,
    },
    Oidc(Result<OidcAnswer, oidc::OidcError>),
}

pub struct Reply {
    pub token: u64,
    pub answer: Answer,
    /// Set when Redis just went down (with why) or came back.
    pub transition: Option<Result<(), String>>,
    /// Redis refused a command (a full Redis, a missing ACL permission):
    /// why, at most once a minute.
    pub refused: Option<String>,
    /// The journal was full: writes were sent once, unkept.
    pub full: bool,
}

impl Reply {
    /// An answer with nothing to report besides.
    pub(crate) fn plain(token: u64, answer: Answer) -> Self {
        Self {
            token,
            answer,
            transition: None,
            refused: None,
            full: false,
        }
    }
}

/// The writes this nginx keeps for Redis, in memory its workers share.
pub trait PendingWrites: Send + Sync {
    fn with(&self, f: &mut dyn FnMut(&mut Journal<'_>));
}

/// Where records of ended cookie-store sessions that other instances made
/// are copied to: this nginx's zone.
pub trait SharedRecords: Send + Sync {
    fn apply(&self, records: &[revoked::SharedRecord], now: u64);
}

/// What a worker's Redis thread is given at start.
pub struct Setup {
    pub journal: Option<Arc<dyn PendingWrites>>,
    /// Set when a cookie-store location shares its records through Redis.
    pub records: Option<Arc<dyn SharedRecords>>,
    /// The worker's near cache of Redis sessions, which this thread fills
    /// and keeps coherent.
    pub near: Option<Arc<Mutex<NearCache>>>,
    /// Every configured secret's keys, so that any worker flushes any write.
    pub seals: Vec<SealKeys>,
}
