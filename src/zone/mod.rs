//! Shared memory as a worker holds it: the session table and its lock
//! (`table`), and the journal of pending Redis writes (`journal`). Both
//! are created and initialised in `lifecycle::shm`.

pub mod journal;
pub mod table;
