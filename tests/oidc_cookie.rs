//! The OpenID Connect suite (`suites/oidc.rs`), run with every session kept in its own cookie.

mod common;

/// The store this run keeps every session in.
const SUITE: common::Suite = common::Suite::Cookie;

include!("suites/oidc.rs");
