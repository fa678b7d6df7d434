//! The side-car's second outbound client: an OpenID Connect relying party
//! (Authorization Code flow with PKCE S256). It discovers the provider
//! from its issuer URL, builds the authorization URL, exchanges the code
//! and checks the ID token as OpenID Connect Core 3.1.3.7 says: the JWS
//! signature over the provider's JWKS (`jsonwebtoken`, on ring, as rustls
//! here), an allow-list of asymmetric algorithms, `iss`, `aud`, `azp`,
//! `exp` and `iat` with a small leeway, and `nonce`. HTTP is reqwest on
//! this thread's runtime. The nginx side keeps the state, nonce and
//! verifier `begin` returns in the visitor's session and hands the nonce
//! and verifier back with the code to `finish`.
//!
//! The `sessions_oidc_*` directives drive it through `Job::Oidc`.

mod claims;
mod provider;

use std::cell::RefCell;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use sessions_core::primitives::{b64, id::random_alnum};

pub use claims::value_of;
pub use provider::Metadata;

/// What the relying party is told by the configuration.
#[derive(Clone)]
pub struct OidcSettings {
    /// The issuer URL, exactly as the provider's discovery document states it.
    pub issuer: String,
    pub client_id: String,
    /// `None` for a public client.
    pub client_secret: Option<String>,
    /// The absolute URL of the callback the module handles.
    pub redirect_uri: String,
    /// Scopes besides `openid`.
    pub scopes: Vec<String>,
    /// The claim that names the user (`sub` by default).
    pub user_claim: String,
    /// Claims copied into the session's data, by name.
    pub data_claims: Vec<String>,
    /// The most a call to the provider may take.
    pub timeout: Duration,
    /// How far the provider's clock may be from ours (`exp`, `iat`).
    pub leeway: Duration,
}

// The client secret stays out of any debug output.
impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// Why a login could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OidcError {
    /// The settings do not make a client (a URL that does not parse).
    Settings(String),
    /// The provider could not be reached, answered too slowly or answered
    /// something that is not the protocol (a 5xx, a document that does not
    /// parse): no login now, nobody's fault on this side.
    Provider(String),
    /// The provider refused the code (used, expired, not this client's).
    CodeRefused(String),
    /// The provider refused the refresh token (revoked, expired).
    RefreshRefused(String),
    /// The ID token failed a check: which one, for the one log line.
    Token(String),
    /// The token has no usable value for the user claim.
    NoUser(String),
}

impl std::fmt::Display for OidcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Settings(e) => write!(f, "OpenID Connect settings: {e}"),
            Self::Provider(e) => write!(f, "the OpenID provider failed: {e}"),
            Self::CodeRefused(e) => write!(f, "the OpenID provider refused the code: {e}"),
            Self::RefreshRefused(e) => write!(f, "the OpenID provider refused the refresh token: {e}"),
            Self::Token(e) => write!(f, "ID token refused: {e}"),
            Self::NoUser(claim) => write!(f, "ID token refused: no usable \"{claim}\" claim"),
        }
    }
}

/// A login begun: where to send the browser, and what the session keeps
/// until the callback (secrets: never logged, never sent to the client
/// but `state` and `nonce` in the URL).
#[derive(Clone)]
pub struct Begin {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

/// A login made: who, and what the session keeps of it.
#[derive(Clone)]
pub struct Identity {
    pub user: String,
    /// The configured data claims the token carried, as strings.
    pub claims: Vec<(String, String)>,
    pub id_token: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<Duration>,
    /// The provider's session (`sid`), when the ID token names it.
    pub sid: Option<String>,
}

// The tokens, state, nonce and verifier are secrets: `Debug` leaves them out.
impl std::fmt::Debug for Begin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Begin").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("user", &self.user)
            .field("claims", &self.claims)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Signature algorithms an ID token may use: asymmetric only, so that no
/// HMAC key is ever made of a public key or of the client secret, and
/// never `none` (which `jsonwebtoken` does not even parse).
pub const ALLOWED_ALGS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// How long discovered metadata and keys are used before they are fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// The least time between two fetches of the keys an unknown `kid` causes.
const KEYS_REFETCH_MIN: Duration = Duration::from_secs(10);
/// The most the provider's answers may weigh.
const MAX_ANSWER: usize = 256 * 1024;

struct Discovered {
    metadata: Metadata,
    keys: JwkSet,
    at: Instant,
    /// When the keys were last fetched again for an unknown key.
    refetched: Option<Instant>,
}

/// The token endpoint's answer (RFC 6749 5.1).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    token_type: String,
    id_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<u64>,
}

/// The claims the ID token's own checks read (the rest stays in the JSON value).
#[derive(Deserialize)]
struct Checked {
    nonce: Option<String>,
    /// One audience or a list (`jsonwebtoken` checked this client is in it).
    aud: serde_json::Value,
    azp: Option<String>,
}

/// The relying party of one configuration, on the side-car's thread.
pub struct Oidc {
    settings: OidcSettings,
    http: reqwest::Client,
    discovered: RefCell<Option<Discovered>>,
}

impl Oidc {
    pub fn new(settings: OidcSettings) -> Result<Self, OidcError> {
        for (what, url) in [
            ("issuer", &settings.issuer),
            ("redirect URI", &settings.redirect_uri),
        ] {
            let parsed = reqwest::Url::parse(url).map_err(|e| OidcError::Settings(format!("{what}: {e}")))?;
            if !matches!(parsed.scheme(), "https" | "http") {
                return Err(OidcError::Settings(format!("{what}: not an http(s) URL")));
            }
        }
        let http = reqwest::Client::builder()
            // A redirect would let the provider's answers lead anywhere (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()
            .map_err(|e| OidcError::Settings(format!("HTTP client: {e}")))?;
        Ok(Self {
            settings,
            http,
            discovered: RefCell::new(None),
        })
    }

    /// The most one call to the provider may take.
    pub fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    /// The issuer URL as configured (what nginx's zone keys a `jti` by).
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// The provider's metadata, discovered on first use and again once an
    /// hour, with its keys.
    async fn metadata(&self) -> Result<Metadata, OidcError> {
        if let Some(d) = self
            .discovered
            .borrow()
            .as_ref()
            .filter(|d| d.at.elapsed() < METADATA_TTL)
        {
            return Ok(d.metadata.clone());
        }
        let metadata = provider::discover(&self.http, &self.settings.issuer).await?;
        let keys = provider::keys(&self.http, &metadata.jwks_uri).await?;
        *self.discovered.borrow_mut() = Some(Discovered {
            metadata: metadata.clone(),
            keys,
            at: Instant::now(),
            refetched: None,
        });
        Ok(metadata)
    }

    /// Fetches the keys again for a `kid` the cached set lacks, at most
    /// once in `KEYS_REFETCH_MIN`: `true` when the set now has it.
    async fn refetch_keys(&self, kid: Option<&str>) -> Result<bool, OidcError> {
        let uri = {
            let d = self.discovered.borrow();
            let Some(d) = d.as_ref() else { return Ok(false) };
            if d.refetched.is_some_and(|at| at.elapsed() < KEYS_REFETCH_MIN) {
                return Ok(false);
            }
            d.metadata.jwks_uri.clone()
        };
        let keys = provider::keys(&self.http, &uri).await?;
        let found = pick_key(&keys, kid).is_some();
        if let Some(d) = self.discovered.borrow_mut().as_mut() {
            d.keys = keys;
            d.refetched = Some(Instant::now());
        }
        Ok(found)
    }

    /// Starts a login: the provider's authorization URL with a fresh
    /// `state`, `nonce` and PKCE challenge (S256).
    pub async fn begin(&self) -> Result<Begin, OidcError> {
        let metadata = self.metadata().await?;
        let random = |what| OidcError::Settings(format!("the system random source failed ({what})"));
        let state = text(&random_alnum::<32>().map_err(|_| random("state"))?);
        let nonce = text(&random_alnum::<32>().map_err(|_| random("nonce"))?);
        // RFC 7636: 43 to 128 characters; 64 alphanumerics carry 381 bits.
        let verifier = text(&random_alnum::<64>().map_err(|_| random("verifier"))?);
        let mut url = reqwest::Url::parse(&metadata.authorization_endpoint)
            .map_err(|e| OidcError::Provider(format!("authorization endpoint: {e}")))?;
        let scope = std::iter::once("openid")
            .chain(
                self.settings
                    .scopes
                    .iter()
                    .map(String::as_str)
                    .filter(|s| *s != "openid"),
            )
            .collect::<Vec<_>>()
            .join(" ");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &self.settings.redirect_uri)
            .append_pair("scope", &scope)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &pkce_challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        Ok(Begin {
            url: url.into(),
            state,
            nonce,
            verifier,
        })
    }

    /// Ends a login at the callback: exchanges `code` (with the PKCE
    /// `verifier`) and checks the ID token against `nonce`. A token signed
    /// by a key the cached set lacks has the set fetched again, once.
    pub async fn finish(&self, code: &str, verifier: &str, nonce: &str) -> Result<Identity, OidcError> {
        let metadata = self.metadata().await?;
        let answer = self.exchange(&metadata, code, verifier).await?;
        if !answer.token_type.eq_ignore_ascii_case("bearer") {
            return Err(OidcError::Provider(format!("token type {:?}", answer.token_type)));
        }
        let token = answer
            .id_token
            .as_deref()
            .ok_or_else(|| OidcError::Token("the token answer has no ID token".into()))?;
        let mut claims = self.check(&metadata, token, nonce).await?;
        self.add_userinfo(&metadata, &answer.access_token, &mut claims)
            .await?;
        // The checks an application's `X-Session-User` gets: the name goes
        // into `$session_user` and from there into headers and logs.
        let user = value_of(&claims, &self.settings.user_claim)
            .filter(|u| sessions_core::model::record::valid_user(u.as_bytes()))
            .ok_or_else(|| OidcError::NoUser(self.settings.user_claim.clone()))?;
        let data = self
            .settings
            .data_claims
            .iter()
            .filter_map(|name| value_of(&claims, name).map(|v| (name.clone(), v)))
            .collect();
        Ok(Identity {
            user,
            claims: data,
            id_token: token.to_string(),
            access_token: answer.access_token,
            refresh_token: answer.refresh_token,
            expires_in: answer.expires_in.map(Duration::from_secs),
            sid: claims
                .get("sid")
                .and_then(serde_json::Value::as_str)
                .filter(|s| !s.is_empty() && s.len() <= 255)
                .map(str::to_string),
        })
    }

    /// Claims the configuration names that the ID token lacks (a provider
    /// may keep scope claims for its UserInfo endpoint, as oidc-provider
    /// does): asked there with the access token, and taken only when its
    /// `sub` is the token's (Core 5.3.2). The token's own claims win.
    async fn add_userinfo(
        &self,
        metadata: &Metadata,
        access_token: &str,
        claims: &mut serde_json::Value,
    ) -> Result<(), OidcError> {
        let wanted = std::iter::once(&self.settings.user_claim).chain(&self.settings.data_claims);
        let missing = wanted.clone().any(|name| claims.get(name).is_none());
        let Some(uri) = metadata.userinfo_endpoint.as_deref().filter(|_| missing) else {
            return Ok(());
        };
        let info = provider::userinfo(&self.http, uri, access_token).await?;
        if info.get("sub") != claims.get("sub") {
            return Err(OidcError::Token("the UserInfo answer is for another sub".into()));
        }
        let Some(object) = claims.as_object_mut() else {
            return Ok(());
        };
        for name in wanted {
            if let (false, Some(v)) = (object.contains_key(name), info.get(name)) {
                object.insert(name.clone(), v.clone());
            }
        }
        Ok(())
    }

    /// The code for tokens, at the token endpoint.
    async fn exchange(
        &self,
        metadata: &Metadata,
        code: &str,
        verifier: &str,
    ) -> Result<TokenAnswer, OidcError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.settings.redirect_uri),
            ("code_verifier", verifier),
            ("client_id", &self.settings.client_id),
        ];
        self.token_request(metadata, &form).await.map_err(|e| match e {
            Grant::Refused(why) => OidcError::CodeRefused(why),
            Grant::Failed(e) => e,
        })
    }

    /// Fresh tokens for a session's `refresh_token` (RFC 6749 6). An ID
    /// token the provider sends with them is checked as at login, and must
    /// be for the same user (Core 12.2: the same `sub`; here the configured
    /// user claim, when the token carries it). A refused refresh is
    /// `RefreshRefused`: the session it served ends.
    pub async fn refresh(&self, refresh_token: &str, user: &str) -> Result<Refreshed, OidcError> {
        let metadata = self.metadata().await?;
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", &self.settings.client_id),
        ];
        let answer = self.token_request(&metadata, &form).await.map_err(|e| match e {
            Grant::Refused(why) => OidcError::RefreshRefused(why),
            Grant::Failed(e) => e,
        })?;
        if !answer.token_type.eq_ignore_ascii_case("bearer") {
            return Err(OidcError::Provider(format!("token type {:?}", answer.token_type)));
        }
        if let Some(token) = answer.id_token.as_deref() {
            let claims = self
                .verified(&metadata, token, &["exp", "iat", "iss", "aud", "sub"])
                .await?;
            if value_of(&claims, &self.settings.user_claim).is_some_and(|u| u != user) {
                return Err(OidcError::Token(
                    "the refreshed ID token is for another user".into(),
                ));
            }
        }
        Ok(Refreshed {
            access_token: answer.access_token,
            refresh_token: answer.refresh_token,
            id_token: answer.id_token,
            expires_in: answer.expires_in.map(Duration::from_secs),
        })
    }

    /// Where to send the browser to end its session at the provider too
    /// (RP-Initiated Logout 1.0), `None` when the provider has no such
    /// endpoint. `post_logout_redirect` is the configured URL, never one
    /// from the request.
    pub async fn end_session_url(
        &self,
        id_token_hint: Option<&str>,
        post_logout_redirect: Option<&str>,
    ) -> Result<Option<String>, OidcError> {
        let metadata = self.metadata().await?;
        let Some(endpoint) = metadata.end_session_endpoint.as_deref() else {
            return Ok(None);
        };
        let mut url = reqwest::Url::parse(endpoint)
            .map_err(|e| OidcError::Provider(format!("end session endpoint: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(hint) = id_token_hint {
                q.append_pair("id_token_hint", hint);
            }
            q.append_pair("client_id", &self.settings.client_id);
            if let Some(after) = post_logout_redirect {
                q.append_pair("post_logout_redirect_uri", after);
            }
        }
        Ok(Some(url.into()))
    }

    /// One grant at the token endpoint (client_secret_basic with a secret).
    async fn token_request(&self, metadata: &Metadata, form: &[(&str, &str)]) -> Result<TokenAnswer, Grant> {
        let mut request = self.http.post(&metadata.token_endpoint).form(form);
        if let Some(secret) = &self.settings.client_secret {
            // RFC 6749 2.3.1: each part form-encoded, then Basic.
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            request = request.basic_auth(enc(&self.settings.client_id), Some(enc(secret)));
        }
        let response = request.send().await.map_err(|e| {
            Grant::Failed(OidcError::Provider(format!(
                "token endpoint: {}",
                provider::chain(&e)
            )))
        })?;
        let status = response.status();
        let body = provider::read_body(response, MAX_ANSWER)
            .await
            .map_err(Grant::Failed)?;
        if status.is_client_error() {
            #[derive(Deserialize)]
            struct ErrorAnswer {
                error: String,
            }
            let why = serde_json::from_slice::<ErrorAnswer>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| status.to_string());
            return Err(Grant::Refused(why));
        }
        if !status.is_success() {
            return Err(Grant::Failed(OidcError::Provider(format!(
                "token endpoint answered {status}"
            ))));
        }
        serde_json::from_slice(&body)
            .map_err(|e| Grant::Failed(OidcError::Provider(format!("token answer: {e}"))))
    }

    /// The ID token's claims, once every check passed.
    async fn check(
        &self,
        metadata: &Metadata,
        token: &str,
        nonce: &str,
    ) -> Result<serde_json::Value, OidcError> {
        let refused = |e: &str| Err(OidcError::Token(e.into()));
        let claims = self
            .verified(metadata, token, &["exp", "iat", "iss", "aud", "sub"])
            .await?;
        let checked: Checked =
            serde_json::from_value(claims.clone()).map_err(|e| OidcError::Token(format!("claims: {e}")))?;
        // Several audiences: the token must name this client as the party
        // it was issued to; one named at all must be this client.
        let many = checked.aud.as_array().is_some_and(|a| a.len() > 1);
        match checked.azp.as_deref() {
            Some(azp) if azp != self.settings.client_id => return refused("azp is another client"),
            None if many => return refused("several audiences and no azp"),
            _ => {}
        }
        let same = checked
            .nonce
            .as_deref()
            .is_some_and(|n| bool::from(n.as_bytes().ct_eq(nonce.as_bytes())));
        if !same {
            return refused("nonce does not match the login's");
        }
        Ok(claims)
    }

    /// Checks a back-channel `logout_token` (OpenID Connect Back-Channel
    /// Logout 1.0, 2.6): signed as an ID token is, for this client, with
    /// the back-channel logout event, a `sid` or a `sub`, no `nonce`, and
    /// issued within `LOGOUT_TOKEN_MAX_AGE`. The caller refuses a `jti`
    /// it has seen before.
    pub async fn check_logout_token(&self, token: &str) -> Result<LogoutToken, OidcError> {
        let refused = |e: &str| Err(OidcError::Token(e.into()));
        let metadata = self.metadata().await?;
        let claims = self.verified(&metadata, token, &["iat", "iss", "aud"]).await?;
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        let event = claims.get("events").and_then(|e| e.get(BACKCHANNEL_LOGOUT_EVENT));
        if !event.is_some_and(serde_json::Value::is_object) {
            return refused("no back-channel logout event");
        }
        if claims.get("nonce").is_some() {
            return refused("a logout token carries no nonce");
        }
        let iat = claims
            .get("iat")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0);
        if iat + (LOGOUT_TOKEN_MAX_AGE + self.settings.leeway).as_secs_f64() < unix_now() {
            return refused("issued too long ago");
        }
        let (sid, sub) = (text("sid"), text("sub"));
        if sid.is_none() && sub.is_none() {
            return refused("neither sid nor sub");
        }
        let Some(jti) = text("jti") else {
            return refused("no jti");
        };
        Ok(LogoutToken { sid, sub, jti })
    }

    /// A JWS from the provider, verified: an allowed algorithm, a key of
    /// its set (fetched again once for an unknown `kid`), `iss`, `aud`,
    /// `exp` when present (with the leeway), `iat` not in the future, and
    /// the `required` claims present. Its claims.
    async fn verified(
        &self,
        metadata: &Metadata,
        token: &str,
        required: &[&str],
    ) -> Result<serde_json::Value, OidcError> {
        let refused = |e: String| OidcError::Token(e);
        let header = jsonwebtoken::decode_header(token).map_err(|e| refused(format!("header: {e}")))?;
        if !ALLOWED_ALGS.contains(&header.alg) {
            return Err(refused(format!("algorithm {:?} is not allowed", header.alg)));
        }
        let kid = header.kid.as_deref();
        let mut key = self.key(kid, header.alg);
        if key.is_none() && self.refetch_keys(kid).await? {
            key = self.key(kid, header.alg);
        }
        let key = key.ok_or_else(|| refused(format!("no key {kid:?} in the provider's set")))??;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&metadata.issuer]);
        validation.set_audience(&[&self.settings.client_id]);
        validation.set_required_spec_claims(required);
        validation.validate_exp = required.contains(&"exp");
        validation.leeway = self.settings.leeway.as_secs();
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|e| refused(e.to_string()))?;
        let leeway = self.settings.leeway.as_secs_f64();
        let number = |name: &str| data.claims.get(name).and_then(serde_json::Value::as_f64);
        if number("exp").is_some_and(|exp| exp + leeway < unix_now()) {
            return Err(refused("expired".into()));
        }
        if number("iat").is_some_and(|iat| iat > unix_now() + leeway) {
            return Err(refused("issued in the future".into()));
        }
        Ok(data.claims)
    }

    /// The cached key for `kid` (the only key when the token names none),
    /// made for `alg`; `None` when the set lacks it.
    fn key(&self, kid: Option<&str>, alg: Algorithm) -> Option<Result<DecodingKey, OidcError>> {
        let d = self.discovered.borrow();
        let jwk = pick_key(&d.as_ref()?.keys, kid)?;
        if jwk
            .common
            .key_algorithm
            .is_some_and(|a| a.to_string() != format!("{alg:?}"))
        {
            return Some(Err(OidcError::Token(format!("key {kid:?} is not for {alg:?}"))));
        }
        Some(DecodingKey::from_jwk(jwk).map_err(|e| OidcError::Token(format!("key {kid:?}: {e}"))))
    }
}

/// Tokens a refresh gave (secrets: `Debug` leaves them out).
#[derive(Clone)]
pub struct Refreshed {
    pub access_token: String,
    /// A new refresh token, when the provider rotates them.
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub expires_in: Option<Duration>,
}

impl std::fmt::Debug for Refreshed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refreshed")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// How a grant at the token endpoint failed: refused by the provider
/// (`invalid_grant` and the like), or not answered.
enum Grant {
    Refused(String),
    Failed(OidcError),
}

/// What a checked back-channel logout token names: the provider's session
/// (`sid`) or user (`sub`), and its own id (`jti`), refused when seen again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutToken {
    pub sid: Option<String>,
    pub sub: Option<String>,
    pub jti: String,
}

/// The event a logout token carries (Back-Channel Logout 1.0, 2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// How old a logout token may be when it arrives.
pub const LOGOUT_TOKEN_MAX_AGE: Duration = Duration::from_secs(300);

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn pick_key<'a>(set: &'a JwkSet, kid: Option<&str>) -> Option<&'a jsonwebtoken::jwk::Jwk> {
    match kid {
        Some(kid) => set.find(kid),
        None if set.keys.len() == 1 => set.keys.first(),
        None => None,
    }
}

/// RFC 7636 S256: base64url(SHA-256(verifier)), unpadded.
pub fn pkce_challenge(verifier: &str) -> String {
    let mut out = Vec::with_capacity(43);
    b64::encode_into(&Sha256::digest(verifier.as_bytes()), &mut out);
    text(&out)
}

fn text(ascii: &[u8]) -> String {
    String::from_utf8_lossy(ascii).into_owned()
}

#[cfg(test)]
mod tests;
