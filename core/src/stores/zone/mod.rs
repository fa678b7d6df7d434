//! The shared-memory zone: the session table, records of ended sessions,
//! and the state file that keeps them over a restart.

pub mod revoked;
pub mod state;
pub mod table;
