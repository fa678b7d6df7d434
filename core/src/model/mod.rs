//! The session itself, whatever stores it: the record, its data, its
//! timeouts, and the keys that sign and seal it.

pub mod data;
pub mod keys;
pub mod record;
pub mod timeouts;
