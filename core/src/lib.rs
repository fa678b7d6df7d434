//! Pure session logic for ngx-sessions.
//!
//! Nothing here knows about nginx. The folders are layers, each importing
//! only the layers above it in this list (`tests/layout.rs` checks it):
//!
//! - `primitives`: encodings, ids and randomness, authenticated encryption;
//! - `model`: the session record and its data, timeouts, the key schedule;
//! - `codec`: the signed id cookie and Cookie headers;
//! - `engine`: what a request does to its session, over the `Store` trait;
//! - `stores`: the zone's table and state file, the Redis view, journal and
//!   near cache, the cookie store;
//! - `access` (the login gate, admin requests) and `config` (directive
//!   values).
//!
//! All of it is unit tested with plain `cargo test`; `proofs` holds the
//! model and fuzz tests.
#![forbid(unsafe_code)]

pub mod access;
pub mod codec;
pub mod config;
pub mod engine;
pub mod model;
pub mod primitives;
#[cfg(test)]
mod proofs;
pub mod stores;

pub use codec::cookie::{CookieAttrs, CookieError, SameSite, Secure};
pub use engine::store::Store;
pub use engine::{
    apply, resolve, update_data, Control, ControlError, DataUpdateError, Facts, Outcome, Policy, Status,
};
pub use model::keys::{Key, Keyring};
pub use model::record::Record;
pub use model::timeouts::{Timeouts, Verdict};
pub use primitives::id::{Handle, SessionId};
pub use stores::zone::table::{Header, Slot, Table};
