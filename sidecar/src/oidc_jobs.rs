//! `Job::Oidc`: a login's calls to its OpenID Provider, each job bounded
//! as a whole so that it always ends before nginx stops waiting for it.

use std::time::Duration;

use sessions_core::stores::zone::revoked;

use crate::oidc::{Oidc, OidcError, LOGOUT_TOKEN_MAX_AGE};
use crate::state::Sidecar;
use crate::{OidcAnswer, OidcCall};

/// The longest a job waits for Redis's word on a key it sets once.
const SET_ONCE_WAIT: Duration = Duration::from_secs(1);

/// Whether this instance is the first to set the key `kind` + `id` (kept
/// `ms`) among all those sharing the Redis: `SET NX PX` made it; or Redis
/// could not say in time (the zone's own record still holds for this nginx).
async fn first_to_set(redis: &Sidecar, kind: &[u8], id: &[u8], ms: u64) -> bool {
    let mut key = redis.prefix.clone();
    key.extend_from_slice(kind);
    sessions_core::primitives::b64::encode_into(id, &mut key);
    let mut set = redis::cmd("SET");
    set.arg(&key).arg(1).arg("NX").arg("PX").arg(ms.max(1));
    let made = tokio::time::timeout(SET_ONCE_WAIT, redis.run::<Option<String>>(0, &set)).await;
    !matches!(made, Ok(Ok(None)))
}

/// The most calls to the provider one job makes (see `oidc_patience`).
pub const MAX_CALLS: u32 = 5;

/// Runs `call` against provider `index` of `parties`. With `redis`, a
/// refresh takes the session's lock there first, and a logout token's
/// `jti` is refused when another instance (or this one) took it before.
pub async fn run(
    parties: &[Result<Oidc, OidcError>],
    index: usize,
    call: OidcCall,
    redis: Option<&Sidecar>,
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
            OidcCall::EndSession {
                post_logout,
                id_token_hint,
            } => party
                .end_session_url(id_token_hint.as_deref(), post_logout.as_deref())
                .await
                .map(OidcAnswer::EndSession),
            OidcCall::LogoutToken { token } => {
                let t = party.check_logout_token(&token).await?;
                let key = revoked::jti_key(party.issuer().as_bytes(), t.jti.as_bytes());
                let ms = 2 * LOGOUT_TOKEN_MAX_AGE.as_millis() as u64;
                match redis {
                    Some(s) if !first_to_set(s, b"oidc-jti:", &key.0, ms).await => {
                        Err(OidcError::Token("the logout token was used before (jti)".into()))
                    }
                    _ => Ok(OidcAnswer::LoggedOut(t)),
                }
            }
            OidcCall::Refresh {
                refresh_token,
                user,
                handle,
                lock_ms,
            } => match redis {
                Some(s) if !first_to_set(s, b"oidc-refresh:", &handle, lock_ms).await => {
                    Ok(OidcAnswer::RefreshBusy)
                }
                _ => party
                    .refresh(&refresh_token, &user)
                    .await
                    .map(OidcAnswer::Refreshed),
            },
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
