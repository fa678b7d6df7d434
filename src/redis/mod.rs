//! Redis, as nginx sees it: the requests parked while the worker's side-car
//! (the `sessions-sidecar` crate, no nginx types) answers them.

pub mod park;
