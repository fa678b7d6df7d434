//! Directive values: parsed and checked as `nginx -t` reports them.

pub mod oidc_conf;
pub mod parse;
pub mod proxy;
pub mod redis_conf;
