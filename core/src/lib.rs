//! Pure session logic for ngx-sessions.
//!
//! Nothing here knows about nginx: the cookie codec, key derivation, timeout
//! decisions, configuration value parsers and the fixed-layout session table
//! that the module places in shared memory. All of it is unit tested with
//! plain `cargo test`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod b64;
pub mod cookie;
pub mod cookie_store;
pub mod data;
pub mod engine;
#[cfg(test)]
mod fuzz;
pub mod gate;
pub mod id;
pub mod journal;
#[cfg(test)]
mod journal_model;
pub mod keys;
pub mod near_cache;
pub mod parse;
pub mod proxy;
pub mod redis_conf;
pub mod revoked;
pub mod sealed;
pub mod state;
pub mod store;
pub mod table;
#[cfg(test)]
mod table_model;
pub mod timeouts;
pub mod view;

pub use cookie::{CookieAttrs, CookieError, SameSite, Secure};
pub use engine::{
    apply, resolve, update_data, Control, ControlError, DataUpdateError, Facts, Outcome, Policy, Status,
};
pub use id::{Handle, SessionId};
pub use keys::{Key, Keyring};
pub use store::Store;
pub use table::{Header, Record, Slot, Table};
pub use timeouts::{Timeouts, Verdict};
