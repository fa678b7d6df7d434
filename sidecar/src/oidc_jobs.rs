//! `Job::Oidc`: a login's calls to its OpenID Provider, each job bounded
//! as a whole so that it always ends before nginx stops waiting for it.

use crate::oidc::{Oidc, OidcError};
use crate::{OidcAnswer, OidcCall};

/// The most calls to the provider one job makes (see `oidc_patience`).
pub const MAX_CALLS: u32 = 5;

/// Runs `call` against provider `index` of `parties`.
pub async fn run(
    parties: &[Result<Oidc, OidcError>],
    index: usize,
    call: OidcCall,
) -> Result<OidcAnswer, OidcError> {
    let party = match parties.get(index) {
        Some(Ok(p)) => p,
        Some(Err(e)) => return Err(e.clone()),
        None => return Err(OidcError::Settings(format!("no provider {index}"))),
    };
    let limit = party.timeout() * MAX_CALLS;
    let work = async {
        match call {
            OidcCall::Begin => party.begin().await.map(OidcAnswer::Begun),
            OidcCall::Finish {
                code,
                verifier,
                nonce,
            } => party
                .finish(&code, &verifier, &nonce)
                .await
                .map(OidcAnswer::LoggedIn),
            OidcCall::EndSession { post_logout } => party
                .end_session_url(None, post_logout.as_deref())
                .await
                .map(OidcAnswer::EndSession),
            OidcCall::LogoutToken { token } => {
                party.check_logout_token(&token).await.map(OidcAnswer::LoggedOut)
            }
        }
    };
    match tokio::time::timeout(limit, work).await {
        Ok(answer) => answer,
        Err(_) => Err(OidcError::Provider(format!(
            "no answer within {} ms",
            limit.as_millis()
        ))),
    }
}
