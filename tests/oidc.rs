//! The OpenID Connect suite (`suites/oidc.rs`), run with every session in the zone.

mod common;

/// The store this run keeps every session in.
const SUITE: common::Suite = common::Suite::Zone;

include!("suites/oidc.rs");
