//! What happens before and after requests: the directives (configuration
//! time), the zones created and initialised (`shm`), and the zone's state
//! file, loaded at start and written at stop and periodically (`state`).

pub mod directives;
pub mod shm;
pub mod state;
