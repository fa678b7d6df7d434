//! The admin suite of `admin.rs`, run with every session kept in its own
//! cookie (see `common::cookie_suite`).

include!("admin.rs");
