//! The login suite of `login.rs`, run with every session stored in Redis
//! (see `common::redis_suite`).

include!("login.rs");
