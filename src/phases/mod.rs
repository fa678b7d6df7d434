//! Request time, in the order a request meets them: `access` (cookie,
//! verify, store, decision: `cookies`, then the store's path `decide`,
//! `cookie_store` or `remote`), `filter` (Set-Cookie, control headers), and
//! `variables`; `admin` and `status` are content handlers; `park` holds the
//! requests that wait for the side-car (Redis).

pub mod access;
pub mod admin;
pub mod answers;
pub mod cookie_store;
pub mod cookies;
pub mod decide;
pub mod filter;
pub mod remote;
pub mod status;
pub mod store;
