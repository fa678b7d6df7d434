//! Request time, in the order a request meets them: `access` (cookie,
//! verify, store, decision: `cookies`, then the store's path `decide`,
//! `cookie_store` or `remote`), `filter` (Set-Cookie, control headers), and
//! `variables`; `admin` and `status` are content handlers; `oidc` sends
//! visitors to an OpenID Provider and `oidc_callback` logs them in when
//! they come back; `park` holds the requests that wait for the
//! side-car (Redis, the provider).

pub mod access;
pub mod admin;
pub mod answers;
pub mod assertion;
pub mod cookie_store;
pub mod cookies;
pub mod decide;
pub mod filter;
pub mod oidc;
pub mod oidc_callback;
pub mod oidc_tokens;
pub mod remote;
pub mod status;
pub mod store;
