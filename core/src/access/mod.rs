//! Who may do what: the login gate's control headers and admin requests.

pub mod admin;
pub mod assertion;
pub mod gate;
pub mod oidc;
pub mod oidc_tokens;
