//! The login suite of `login.rs`, run with every session kept in its own
//! cookie (see `common::cookie_suite`).

include!("login.rs");
