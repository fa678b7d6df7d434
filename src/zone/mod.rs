//! The shared-memory zones: the session table (`table`), created and
//! initialised by `shm`, its state file (`state`), and the journal of
//! pending Redis writes (`journal`).

pub mod journal;
pub mod shm;
pub mod state;
pub mod table;
