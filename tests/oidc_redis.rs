//! The OpenID Connect suite (`suites/oidc.rs`), run with every session stored in Redis (a redis-server per test).

mod common;

/// The store this run keeps every session in.
const SUITE: common::Suite = common::Suite::Redis;

include!("suites/oidc.rs");
