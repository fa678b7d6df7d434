//! A login through an OpenID Provider, as far as the visitor carries it:
//! the login cookie that binds the `state`, `nonce` and PKCE verifier to
//! the pre-login session until the callback, and the URL to return to.
//!
//! The login cookie is sealed (AES-256-GCM-SIV, as the cookie store) under
//! a key of its own per secret and cookie name: the client can neither read
//! the verifier nor change a byte, and the callback accepts it only from
//! the session that began the login, before it expires. The URL to return
//! to is the request's own path and query, never an absolute URL, and the
//! callback's query is never read for it: no open redirect.

use aes_gcm_siv::aead::KeyInit;
use aes_gcm_siv::Aes256GcmSiv;

use crate::codec::cookie::ct_eq;
use crate::model::keys::Keyring;
use crate::primitives::crypto::{aead_open, aead_seal};
use crate::primitives::id::{RandomError, RandomPool, SessionId};

/// A login cookie's name is the session cookie's, this, and the first
/// `STATE_IN_NAME` characters of its `state`: logins begun in several tabs
/// at once each keep their own.
pub const LOGIN_COOKIE_INFIX: &[u8] = b"_oidc_";
const STATE_IN_NAME: usize = 8;
/// The most logins a browser keeps under way: beginning one more deletes
/// the others.
pub const MAX_LOGINS: usize = 4;
/// How long a visitor has to log in at the provider.
pub const LOGIN_TTL_MS: u64 = 10 * 60 * 1000;
/// The longest URL kept to return to; a longer one returns to `/`.
pub const MAX_RETURN: usize = 2048;
/// The longest `state`, `nonce` or verifier kept (the side-car makes 32,
/// 32 and 64 characters).
const MAX_SECRET: usize = 128;
/// Marks a login cookie's value.
const PREFIX: &[u8] = b"o1.";
const VERSION: u8 = 1;
/// What the seal binds besides the plaintext.
const AAD: &[u8] = b"ngx-sessions oidc login";

/// A login under way.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginState {
    /// The session that began it: only its callback may end it.
    pub session: SessionId,
    /// When the login stops being accepted (ms since the epoch).
    pub expires: u64,
    pub state: Vec<u8>,
    pub nonce: Vec<u8>,
    pub verifier: Vec<u8>,
    /// The path and query to return to (`safe_return` holds).
    pub return_to: Vec<u8>,
}

// Secrets: `Debug` shows none of them.
impl core::fmt::Debug for LoginState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LoginState")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Why a login cookie was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// Absent, altered, sealed under an unknown secret, or not one at all.
    Unsealed,
    /// Past `expires`.
    Expired,
    /// Made for another session than the one presenting it.
    OtherSession,
    /// The callback's `state` is not the one the login began with.
    StateMismatch,
}

impl LoginRefused {
    /// For the one log line a refused callback gets.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unsealed => "no login in progress for this session (login cookie missing or not valid)",
            Self::Expired => "the login took longer than 10 minutes",
            Self::OtherSession => "the login was begun by another session",
            Self::StateMismatch => "the state parameter does not match the login",
        }
    }
}

/// The name of the login cookie of session cookie `name` for the login
/// whose state is `state`; `None` for a state the module did not make.
pub fn login_cookie_name(name: &[u8], state: &[u8]) -> Option<Vec<u8>> {
    let part = state.get(..STATE_IN_NAME)?;
    if !part.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    let mut n = name.to_vec();
    n.extend_from_slice(LOGIN_COOKIE_INFIX);
    n.extend_from_slice(part);
    Some(n)
}

/// Whether `cookie` is one of session cookie `name`'s login cookies.
pub fn is_login_cookie(name: &[u8], cookie: &[u8]) -> bool {
    cookie
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix(LOGIN_COOKIE_INFIX))
        .is_some_and(|part| part.len() == STATE_IN_NAME && part.iter().all(u8::is_ascii_alphanumeric))
}

fn cipher(keys: &Keyring, i: usize, name: &[u8]) -> Aes256GcmSiv {
    labelled_cipher(keys, i, b"oidc-login", name)
}

/// The cipher of secret `i` for the cookie `name` carrying `label`'s
/// contents (a login, tokens). A NUL cannot be in a cookie name or a
/// label: no cookie-store session's key, nor another label's, is this one.
pub(crate) fn labelled_cipher(keys: &Keyring, i: usize, label: &[u8], name: &[u8]) -> Aes256GcmSiv {
    let subject = [b"\0", label, b"\0", name].concat();
    Aes256GcmSiv::new_from_slice(&keys.key(i).cookie_store_key(&subject)).expect("32-byte key")
}

fn push_part(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u16).to_le_bytes());
    out.extend_from_slice(part);
}

/// The login cookie's value for `login`, sealed under the first secret.
pub fn seal(
    keys: &Keyring,
    name: &[u8],
    login: &LoginState,
    rng: &mut RandomPool,
) -> Result<Vec<u8>, RandomError> {
    let mut plain = Vec::with_capacity(64 + login.return_to.len());
    plain.push(VERSION);
    plain.extend_from_slice(&login.session.0);
    plain.extend_from_slice(&login.expires.to_le_bytes());
    for part in [&login.state, &login.nonce, &login.verifier, &login.return_to] {
        push_part(&mut plain, part);
    }
    let mut sealed = Vec::new();
    aead_seal(&cipher(keys, 0, name), AAD, &plain, rng, &mut sealed)?;
    let mut out = PREFIX.to_vec();
    crate::primitives::b64::encode_into(&sealed, &mut out);
    Ok(out)
}

/// Opens a login cookie's value (any configured secret), or says why not.
/// Checks only what the value itself says; `check` the rest.
pub fn open(keys: &Keyring, name: &[u8], value: &[u8]) -> Result<LoginState, LoginRefused> {
    let sealed = value
        .strip_prefix(PREFIX)
        .and_then(crate::primitives::b64::decode_vec)
        .ok_or(LoginRefused::Unsealed)?;
    let plain = (0..keys.iter().count())
        .find_map(|i| aead_open(&cipher(keys, i, name), AAD, &sealed).ok())
        .ok_or(LoginRefused::Unsealed)?;
    parse(&plain).ok_or(LoginRefused::Unsealed)
}

/// The plaintext of a login cookie, strictly: every byte accounted for.
fn parse(plain: &[u8]) -> Option<LoginState> {
    let (&version, rest) = plain.split_first()?;
    if version != VERSION {
        return None;
    }
    let session = SessionId(rest.get(..16)?.try_into().ok()?);
    let expires = u64::from_le_bytes(rest.get(16..24)?.try_into().ok()?);
    let mut rest = &rest[24..];
    let mut part = |max: usize| -> Option<Vec<u8>> {
        let len = usize::from(u16::from_le_bytes(rest.get(..2)?.try_into().ok()?));
        let p = rest.get(2..2 + len)?;
        rest = &rest[2 + len..];
        (len <= max).then(|| p.to_vec())
    };
    let state = part(MAX_SECRET)?;
    let nonce = part(MAX_SECRET)?;
    let verifier = part(MAX_SECRET)?;
    let return_to = part(MAX_RETURN)?;
    let secret_ok = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_alphanumeric);
    if !rest.is_empty()
        || ![&state, &nonce, &verifier].iter().all(|s| secret_ok(s))
        || !safe_return(&return_to)
    {
        return None;
    }
    Some(LoginState {
        session,
        expires,
        state,
        nonce,
        verifier,
        return_to,
    })
}

impl LoginState {
    /// Whether the callback of session `session`, at `now`, with `state`
    /// in its query, ends this login. `state` is compared in constant time.
    pub fn check(&self, session: &SessionId, state: &[u8], now: u64) -> Result<(), LoginRefused> {
        if now >= self.expires {
            return Err(LoginRefused::Expired);
        }
        if !ct_eq(&self.session.0, &session.0) {
            return Err(LoginRefused::OtherSession);
        }
        if !ct_eq(&self.state, state) {
            return Err(LoginRefused::StateMismatch);
        }
        Ok(())
    }
}

/// Whether `url` may be returned to after a login: a path on this site
/// (`/...`, not `//host` or `/\host`, which browsers read as another
/// host), printable, at most `MAX_RETURN` bytes.
pub fn safe_return(url: &[u8]) -> bool {
    url.len() <= MAX_RETURN
        && url.first() == Some(&b'/')
        && !matches!(url.get(1), Some(b'/' | b'\\'))
        && url.iter().all(|&b| b.is_ascii_graphic())
}

/// Where to return after a login begun by a request for `uri` (its path
/// and query as the client sent them): `uri`, or `/` when it is not safe.
pub fn return_to(uri: &[u8]) -> Vec<u8> {
    if safe_return(uri) {
        uri.to_vec()
    } else {
        b"/".to_vec()
    }
}

/// What the provider's redirect to the callback carries.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    /// The provider's refusal (`access_denied`, ...).
    pub error: Option<String>,
}

/// The callback's query string; a repeated parameter makes it refused
/// (`None`), as RFC 6749 says it must be.
pub fn callback(query: &[u8]) -> Option<Callback> {
    let mut c = Callback::default();
    for (k, v) in form_urlencoded::parse(query) {
        let slot = match k.as_ref() {
            "code" => &mut c.code,
            "state" => &mut c.state,
            "error" => &mut c.error,
            _ => continue,
        };
        if slot.replace(v.into_owned()).is_some() {
            return None;
        }
    }
    Some(c)
}

/// The `logout_token` of a back-channel logout request's form body, when
/// there is exactly one.
pub fn logout_token(body: &[u8]) -> Option<String> {
    let mut found = None;
    for (k, v) in form_urlencoded::parse(body) {
        if k == "logout_token" && found.replace(v.into_owned()).is_some() {
            return None;
        }
    }
    found.filter(|t| !t.is_empty())
}

/// `text` with what a provider wrote in it (an error description, a claim
/// name) kept to one printable line of at most 300 bytes: the log is the
/// operator's, not the provider's.
pub fn loggable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if out.len() > 300 {
        let mut cut = 300;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys(s: &str) -> Keyring {
        Keyring::from_secrets(&[s]).expect("keys")
    }

    fn login() -> LoginState {
        LoginState {
            session: SessionId([7; 16]),
            expires: 1_000_000,
            state: b"abc123".to_vec(),
            nonce: b"n0nce".to_vec(),
            verifier: b"v".repeat(64),
            return_to: b"/private/page?x=1".to_vec(),
        }
    }

    #[test]
    fn a_sealed_login_opens_only_under_its_secret_and_name() {
        let mut rng = RandomPool::new();
        let v = seal(&keys("one"), b"sid", &login(), &mut rng).expect("sealed");
        assert_eq!(open(&keys("one"), b"sid", &v).expect("opens"), login());
        assert_eq!(open(&keys("two"), b"sid", &v), Err(LoginRefused::Unsealed));
        assert_eq!(open(&keys("one"), b"other", &v), Err(LoginRefused::Unsealed));
        let rotated = Keyring::from_secrets(&["new", "one"]).expect("keys");
        assert_eq!(
            open(&rotated, b"sid", &v).expect("an older secret opens"),
            login()
        );
        // Not readable: the verifier does not appear in the value.
        assert!(!v.windows(8).any(|w| w == b"vvvvvvvv"));
    }

    #[test]
    fn the_callback_must_come_from_the_same_session_in_time_with_the_same_state() {
        let l = login();
        assert_eq!(l.check(&l.session, b"abc123", 999_999), Ok(()));
        assert_eq!(
            l.check(&l.session, b"abc123", 1_000_000),
            Err(LoginRefused::Expired)
        );
        assert_eq!(
            l.check(&SessionId([8; 16]), b"abc123", 1),
            Err(LoginRefused::OtherSession)
        );
        assert_eq!(
            l.check(&l.session, b"abc124", 1),
            Err(LoginRefused::StateMismatch)
        );
        assert_eq!(l.check(&l.session, b"", 1), Err(LoginRefused::StateMismatch));
    }

    #[test]
    fn only_paths_on_this_site_are_returned_to() {
        for ok in [&b"/"[..], b"/a/b?c=d&e=%2F", b"/x#y"] {
            assert!(safe_return(ok), "{ok:?}");
        }
        for bad in [
            &b""[..],
            b"//evil.example/",
            b"/\\evil.example",
            b"https://evil.example/",
            b"evil",
            b"/a b",
            b"/a\r\nLocation: x",
        ] {
            assert!(!safe_return(bad), "{bad:?}");
            assert_eq!(return_to(bad), b"/");
        }
        assert_eq!(return_to(&[b'/'; MAX_RETURN + 1]), b"/");
    }

    #[test]
    fn the_callback_query_is_read_strictly() {
        let c = callback(b"code=a%2Bb&state=s&iss=x").expect("parsed");
        assert_eq!(c.code.as_deref(), Some("a+b"));
        assert_eq!(c.state.as_deref(), Some("s"));
        assert_eq!(callback(b"code=a&code=b"), None);
        assert_eq!(
            callback(b"error=access_denied").expect("parsed").error.as_deref(),
            Some("access_denied")
        );
    }

    #[test]
    fn each_login_has_a_cookie_named_after_its_state() {
        let n = login_cookie_name(b"sid", b"AbCd1234rest").expect("a name");
        assert_eq!(n, b"sid_oidc_AbCd1234");
        assert!(is_login_cookie(b"sid", &n));
        assert!(!is_login_cookie(b"sid", b"sid"));
        assert!(!is_login_cookie(b"sid", b"sid_oidc_short"));
        assert!(!is_login_cookie(b"other", &n));
        assert_eq!(login_cookie_name(b"sid", b"short"), None);
        assert_eq!(login_cookie_name(b"sid", b"ab;d=1234"), None);
    }

    #[test]
    fn what_a_provider_wrote_is_logged_on_one_short_line() {
        assert_eq!(loggable("invalid_grant"), "invalid_grant");
        assert_eq!(loggable("a\r\n[alert] forged"), "a??[alert] forged");
        let long = loggable(&"é".repeat(400));
        assert!(long.len() <= 303 && long.ends_with("..."));
    }

    #[test]
    fn the_logout_token_is_read_from_the_form_once() {
        assert_eq!(logout_token(b"logout_token=a.b.c").as_deref(), Some("a.b.c"));
        assert_eq!(logout_token(b"x=1&logout_token=a%2Bb"), Some("a+b".into()));
        assert_eq!(logout_token(b"logout_token=a&logout_token=b"), None);
        assert_eq!(logout_token(b"logout_token="), None);
        assert_eq!(logout_token(b""), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any body a client POSTs, and any callback query, is read
        /// without a panic.
        #[test]
        fn arbitrary_bodies_and_queries_are_read(v in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = logout_token(&v);
            let _ = callback(&v);
        }

        /// Whatever a client sends as its login cookie is refused without a
        /// panic, unless it is a value this module sealed.
        #[test]
        fn arbitrary_login_cookies_are_refused(v in proptest::collection::vec(any::<u8>(), 0..400)) {
            prop_assert!(open(&keys("k"), b"sid", &v).is_err());
            let mut prefixed = PREFIX.to_vec();
            prefixed.extend_from_slice(&v);
            prop_assert!(open(&keys("k"), b"sid", &prefixed).is_err());
        }

        /// The plaintext parser takes only what `seal` writes: anything
        /// else, even sealed, is refused without a panic.
        #[test]
        fn arbitrary_plaintexts_parse_or_are_refused(v in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Some(l) = parse(&v) {
                prop_assert!(safe_return(&l.return_to));
            }
        }

        /// A change to any byte of a sealed value is refused.
        #[test]
        fn an_altered_login_cookie_is_refused(at in 0usize..400, bit in 0u8..8) {
            let mut rng = RandomPool::new();
            let mut v = seal(&keys("k"), b"sid", &login(), &mut rng).expect("sealed");
            let at = at % v.len();
            v[at] ^= 1 << bit;
            prop_assert!(open(&keys("k"), b"sid", &v).is_err());
        }

        #[test]
        fn logins_round_trip(
            state in "[a-zA-Z0-9]{1,64}",
            path in "/[a-z0-9/?=&]{0,100}",
            expires in any::<u64>(),
        ) {
            let mut l = login();
            l.state = state.into_bytes();
            l.expires = expires;
            l.return_to = path.into_bytes();
            prop_assume!(safe_return(&l.return_to));
            let mut rng = RandomPool::new();
            let v = seal(&keys("k"), b"sid", &l, &mut rng).expect("sealed");
            prop_assert_eq!(open(&keys("k"), b"sid", &v).expect("opens"), l);
        }
    }
}
