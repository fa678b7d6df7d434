//! Redis: the worker's client thread (`client`, no nginx types) and the
//! requests parked while it answers (`park`).

pub mod client;
pub mod park;
