//! The three places sessions live, each behind `engine::Store`: the zone
//! (shared memory, with its state file), Redis (as the worker sees it, with
//! its journal of pending writes and its near cache), and the cookie.

pub mod cookie;
pub mod redis;
pub mod zone;
