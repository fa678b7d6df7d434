//! The cookie codec: signed session ids in cookies, Cookie headers.

pub mod cookie;
