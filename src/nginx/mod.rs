//! Where the module meets nginx at request time, and the only request-time
//! code with `unsafe`: the request and its context (`request`), the
//! requests parked for the side-car with the eventfd and timers that wake
//! them (`park`), and the `$session_*` variables nginx asks for
//! (`variables`). `phases` builds on these and has no `unsafe` of its own.

pub mod park;
pub mod request;
pub mod variables;
