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

/// The Redis key under which the provider's session `sid` is remembered.
fn sid_key(redis: &Sidecar, party: &Oidc, sid: &str) -> Vec<u8> {
    let mut key = redis.prefix.clone();
    key.extend_from_slice(b"oidc-sid:");
    let id = revoked::sid_key(party.issuer().as_bytes(), sid.as_bytes());
    sessions_core::primitives::b64::encode_into(&id.0, &mut key);
    key
}

/// Remembers in Redis, for `ms`, that `sid` logged in session `handle`.
/// Best effort: the zone of the instance that logged it in remembers it too.
async fn remember_sid(redis: &Sidecar, party: &Oidc, sid: &str, handle: &[u8; 8], ms: u64) {
    let mut value = Vec::new();
    sessions_core::primitives::b64::encode_into(handle, &mut value);
    let mut set = redis::cmd("SET");
    set.arg(sid_key(redis, party, sid))
        .arg(value)
        .arg("PX")
        .arg(ms.max(1));
    let _ = tokio::time::timeout(SET_ONCE_WAIT, redis.run::<()>(0, &set)).await;
}

/// The session `sid` logged in, as Redis remembers it; a value that is
/// not a handle (hostile, or another program's) is none.
async fn sid_session(redis: &Sidecar, party: &Oidc, sid: &str) -> Option<[u8; 8]> {
    let get = redis::cmd("GET").arg(sid_key(redis, party, sid)).clone();
    let value = tokio::time::timeout(SET_ONCE_WAIT, redis.run::<Option<Vec<u8>>>(0, &get))
        .await
        .ok()?
        .ok()??;
    sessions_core::primitives::b64::decode_vec(&value)?
        .try_into()
        .ok()
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
                session,
                keep_ms,
            } => {
                let id = party.finish(&code, &verifier, &nonce).await?;
                if let (Some(s), Some(sid)) = (redis, &id.sid) {
                    remember_sid(s, party, sid, &session, keep_ms).await;
                }
                Ok(OidcAnswer::LoggedIn(id))
            }
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
                    Some(s) => {
                        let session = match &t.sid {
                            Some(sid) => sid_session(s, party, sid).await,
                            None => None,
                        };
                        Ok(OidcAnswer::LoggedOut(t, session))
                    }
                    None => Ok(OidcAnswer::LoggedOut(t, None)),
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
