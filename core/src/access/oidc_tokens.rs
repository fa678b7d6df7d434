//! The tokens a login through an OpenID Provider gave (access, refresh and
//! ID token), kept with the session in a cookie of their own: sealed
//! (AES-256-GCM-SIV, under a key of their own per secret and cookie name),
//! so the client can neither read nor change them, and bound to the
//! session's stable handle and user, so they count only for the session
//! they were made for. The same on every store: no store grows with them.

use aes_gcm_siv::Aes256GcmSiv;

use crate::model::keys::Keyring;
use crate::primitives::crypto::{aead_open, aead_seal};
use crate::primitives::id::{Handle, RandomError, RandomPool};

/// The tokens cookie's name is the session cookie's and this.
pub const TOKENS_COOKIE_SUFFIX: &[u8] = b"_oidc_tokens";
/// The longest tokens cookie value made: with its name and attributes it
/// stays within the 4096 bytes browsers keep of one cookie. The ID token
/// is left out first (logout then goes without `id_token_hint`).
pub const MAX_VALUE: usize = 3800;
/// The longest token kept.
pub const MAX_TOKEN: usize = 4096;
/// Refreshed at most this long before the access token expires...
pub const REFRESH_AHEAD_MAX_MS: u64 = 60_000;
/// ...and when no more than this part of its lifetime is left.
const REFRESH_AHEAD_PART: u64 = 4;
const PREFIX: &[u8] = b"t1.";
const VERSION: u8 = 1;
const AAD: &[u8] = b"ngx-sessions oidc tokens\0";

/// A session's tokens. Empty `refresh` or `id_token`: none.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    pub access: Vec<u8>,
    pub refresh: Vec<u8>,
    pub id_token: Vec<u8>,
    /// When the access token was issued (ms since the epoch).
    pub issued: u64,
    /// When it expires; 0: the provider did not say (never refreshed ahead).
    pub expires: u64,
}

// Secrets: `Debug` shows none of them.
impl core::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tokens")
            .field("issued", &self.issued)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// When a refresh is due (ms since the epoch; 0: never): there is a
    /// refresh token, and a quarter of the access token's lifetime (at
    /// most a minute) is left.
    pub fn refresh_at(&self) -> u64 {
        if self.refresh.is_empty() || self.expires == 0 {
            return 0;
        }
        let life = self.expires.saturating_sub(self.issued);
        let ahead = (life / REFRESH_AHEAD_PART).min(REFRESH_AHEAD_MAX_MS);
        self.expires.saturating_sub(ahead).max(1)
    }

    /// Whether a refresh is due at `now`.
    pub fn refresh_due(&self, now: u64) -> bool {
        due(self.refresh_at(), now)
    }
}

fn due(at: u64, now: u64) -> bool {
    at != 0 && now >= at
}

/// The refresh time a tokens cookie's value states in clear (`t1.AT.`),
/// read without opening it: a request that neither forwards the token nor
/// finds a refresh due costs no decryption. The seal covers it, so a value
/// with another time does not open. `None`: not a tokens value.
pub fn refresh_at(value: &[u8]) -> Option<u64> {
    let rest = value.strip_prefix(PREFIX)?;
    let dot = rest.iter().position(|&b| b == b'.')?;
    let digits = &rest[..dot];
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Whether a refresh is due at `now` for a tokens cookie's `value`, read
/// in clear (see `refresh_at`); `None`: not a tokens value.
pub fn value_due(value: &[u8], now: u64) -> Option<bool> {
    refresh_at(value).map(|at| due(at, now))
}

/// The tokens cookie's name for session cookie `name`.
pub fn cookie_name(name: &[u8]) -> Vec<u8> {
    [name, TOKENS_COOKIE_SUFFIX].concat()
}

/// Whether `cookie` is the tokens cookie of session cookie `name` (what
/// `cookie_name` makes, without making it: this runs on every request).
pub fn is_tokens_cookie(name: &[u8], cookie: &[u8]) -> bool {
    cookie.len() == name.len() + TOKENS_COOKIE_SUFFIX.len()
        && cookie.starts_with(name)
        && cookie.ends_with(TOKENS_COOKIE_SUFFIX)
}

/// Whether `t` may be kept and sent on in a header: a token68-like run of
/// printable ASCII without spaces, at most `MAX_TOKEN` bytes.
pub fn valid_token(t: &[u8]) -> bool {
    t.len() <= MAX_TOKEN && t.iter().all(u8::is_ascii_graphic)
}

fn cipher(keys: &Keyring, i: usize, name: &[u8]) -> Aes256GcmSiv {
    crate::access::oidc::labelled_cipher(keys, i, b"oidc-tokens", name)
}

/// What the seal binds besides the plaintext: the session, its user, and
/// the refresh time the value states in clear.
fn aad(handle: &Handle, user: &[u8], at: &[u8]) -> Vec<u8> {
    [AAD, &handle.0, at, b"\0", user].concat()
}

fn sealed_value(
    keys: &Keyring,
    name: &[u8],
    (handle, user): (&Handle, &[u8]),
    t: &Tokens,
    rng: &mut RandomPool,
) -> Result<Vec<u8>, RandomError> {
    let at = t.refresh_at().to_string();
    let aad = aad(handle, user, at.as_bytes());
    let mut plain = Vec::with_capacity(24 + t.access.len() + t.refresh.len() + t.id_token.len());
    plain.push(VERSION);
    plain.extend_from_slice(&t.issued.to_le_bytes());
    plain.extend_from_slice(&t.expires.to_le_bytes());
    for part in [&t.access, &t.refresh, &t.id_token] {
        plain.extend_from_slice(&(part.len() as u16).to_le_bytes());
        plain.extend_from_slice(part);
    }
    let mut sealed = Vec::new();
    aead_seal(&cipher(keys, 0, name), &aad, &plain, rng, &mut sealed)?;
    let mut out = PREFIX.to_vec();
    out.extend_from_slice(at.as_bytes());
    out.push(b'.');
    crate::primitives::b64::encode_into(&sealed, &mut out);
    Ok(out)
}

/// The tokens cookie's value for session `handle` of `user`, sealed under
/// the first secret; the ID token is left out when the value would pass
/// `MAX_VALUE`. `Ok(None)`: too large even so, or a token not `valid_token`.
pub fn seal(
    keys: &Keyring,
    name: &[u8],
    handle: &Handle,
    user: &[u8],
    tokens: &Tokens,
    rng: &mut RandomPool,
) -> Result<Option<Vec<u8>>, RandomError> {
    let all = [&tokens.access, &tokens.refresh, &tokens.id_token];
    if tokens.access.is_empty() || !all.iter().all(|t| valid_token(t)) {
        return Ok(None);
    }
    let value = sealed_value(keys, name, (handle, user), tokens, rng)?;
    if value.len() <= MAX_VALUE {
        return Ok(Some(value));
    }
    let without_id = Tokens {
        id_token: Vec::new(),
        ..tokens.clone()
    };
    let value = sealed_value(keys, name, (handle, user), &without_id, rng)?;
    Ok((value.len() <= MAX_VALUE).then_some(value))
}

/// Opens a tokens cookie's value (any configured secret) for session
/// `handle` of `user`; `None` for anything else: another session's,
/// altered, or not one at all.
pub fn open(keys: &Keyring, name: &[u8], handle: &Handle, user: &[u8], value: &[u8]) -> Option<Tokens> {
    if value.len() > MAX_VALUE {
        return None;
    }
    refresh_at(value)?;
    let rest = value.strip_prefix(PREFIX)?;
    let dot = rest.iter().position(|&b| b == b'.')?;
    let (at, sealed) = (&rest[..dot], &rest[dot + 1..]);
    let sealed = crate::primitives::b64::decode_vec(sealed)?;
    let aad = aad(handle, user, at);
    let plain =
        (0..keys.iter().count()).find_map(|i| aead_open(&cipher(keys, i, name), &aad, &sealed).ok())?;
    let t = parse(&plain)?;
    // The time in clear is the one the tokens give (the seal covers it).
    (t.refresh_at().to_string().as_bytes() == at).then_some(t)
}

/// The plaintext, strictly: every byte accounted for, every token valid.
fn parse(plain: &[u8]) -> Option<Tokens> {
    let (&version, rest) = plain.split_first()?;
    if version != VERSION {
        return None;
    }
    let issued = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    let expires = u64::from_le_bytes(rest.get(8..16)?.try_into().ok()?);
    let mut rest = &rest[16..];
    let mut part = || -> Option<Vec<u8>> {
        let len = usize::from(u16::from_le_bytes(rest.get(..2)?.try_into().ok()?));
        let p = rest.get(2..2 + len)?;
        rest = &rest[2 + len..];
        valid_token(p).then(|| p.to_vec())
    };
    let (access, refresh, id_token) = (part()?, part()?, part()?);
    if !rest.is_empty() || access.is_empty() {
        return None;
    }
    Some(Tokens {
        access,
        refresh,
        id_token,
        issued,
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys(s: &str) -> Keyring {
        Keyring::from_secrets(&[s]).expect("keys")
    }

    fn tokens() -> Tokens {
        Tokens {
            access: b"access-token-value".to_vec(),
            refresh: b"refresh-token-value".to_vec(),
            id_token: b"eyJhbGciOiJSUzI1NiJ9.e30.sig".to_vec(),
            issued: 1_000_000,
            expires: 1_000_000 + 3_600_000,
        }
    }

    const H: Handle = Handle([3; 8]);

    #[test]
    fn sealed_tokens_open_only_for_their_session_user_secret_and_name() {
        let mut rng = RandomPool::new();
        let v = seal(&keys("one"), b"sid", &H, b"alice", &tokens(), &mut rng)
            .expect("random")
            .expect("fits");
        assert_eq!(open(&keys("one"), b"sid", &H, b"alice", &v), Some(tokens()));
        assert_eq!(open(&keys("two"), b"sid", &H, b"alice", &v), None);
        assert_eq!(open(&keys("one"), b"other", &H, b"alice", &v), None);
        assert_eq!(open(&keys("one"), b"sid", &Handle([4; 8]), b"alice", &v), None);
        assert_eq!(open(&keys("one"), b"sid", &H, b"mallory", &v), None);
        let rotated = Keyring::from_secrets(&["new", "one"]).expect("keys");
        assert_eq!(open(&rotated, b"sid", &H, b"alice", &v), Some(tokens()));
        // Not readable: no token appears in the value.
        for t in [&b"access-token"[..], b"refresh-token", b"eyJhbGci"] {
            assert!(!v.windows(t.len()).any(|w| w == t));
        }
    }

    #[test]
    fn the_tokens_cookie_is_known_by_its_name() {
        assert!(is_tokens_cookie(b"sid", &cookie_name(b"sid")));
        assert!(!is_tokens_cookie(b"sid", b"sid_oidc_tokensx"));
        assert!(!is_tokens_cookie(b"sid", b"xsid_oidc_tokens"));
        assert!(!is_tokens_cookie(b"sid", b"sid"));
        assert!(!is_tokens_cookie(b"sid", b"other_oidc_tokens"));
    }

    #[test]
    fn a_large_id_token_is_left_out_and_larger_tokens_are_not_kept() {
        let mut rng = RandomPool::new();
        let mut t = tokens();
        t.id_token = b"i".repeat(3000);
        let v = seal(&keys("k"), b"sid", &H, b"u", &t, &mut rng)
            .unwrap()
            .expect("fits without it");
        assert!(v.len() <= MAX_VALUE);
        let opened = open(&keys("k"), b"sid", &H, b"u", &v).expect("opens");
        assert!(opened.id_token.is_empty());
        assert_eq!(opened.access, t.access);
        t.access = b"a".repeat(3000);
        assert_eq!(seal(&keys("k"), b"sid", &H, b"u", &t, &mut rng), Ok(None));
        t.access = b"with space".to_vec();
        assert_eq!(seal(&keys("k"), b"sid", &H, b"u", &t, &mut rng), Ok(None));
        t.access = Vec::new();
        assert_eq!(seal(&keys("k"), b"sid", &H, b"u", &t, &mut rng), Ok(None));
    }

    #[test]
    fn a_refresh_is_due_in_the_last_quarter_of_the_lifetime_at_most_a_minute_ahead() {
        let mut t = tokens();
        t.issued = 0;
        t.expires = 4_000;
        assert!(!t.refresh_due(2_999));
        assert!(t.refresh_due(3_000));
        t.expires = 3_600_000;
        assert!(!t.refresh_due(3_539_999));
        assert!(t.refresh_due(3_540_000));
        let v = seal(&keys("k"), b"sid", &H, b"u", &t, &mut RandomPool::new())
            .unwrap()
            .unwrap();
        assert_eq!(refresh_at(&v), Some(3_540_000));
        assert_eq!(value_due(&v, 3_539_999), Some(false));
        assert_eq!(value_due(&v, 3_540_000), Some(true));
        // The time in clear is sealed too: another one does not open.
        let forged = String::from_utf8(v.clone()).unwrap().replacen("3540000", "1", 1);
        assert_eq!(refresh_at(forged.as_bytes()), Some(1));
        assert_eq!(open(&keys("k"), b"sid", &H, b"u", forged.as_bytes()), None);
        assert_eq!(value_due(b"t1.x.abc", 0), None);
        t.refresh.clear();
        assert!(!t.refresh_due(u64::MAX));
        t.refresh = b"r".to_vec();
        t.expires = 0;
        assert!(!t.refresh_due(u64::MAX));
    }

    proptest! {
        #[test]
        fn any_value_opens_to_nothing_or_to_valid_tokens(value in proptest::collection::vec(any::<u8>(), 0..4200)) {
            if let Some(t) = open(&keys("k"), b"sid", &H, b"u", &value) {
                prop_assert!(!t.access.is_empty() && valid_token(&t.access));
            }
            let mut prefixed = PREFIX.to_vec();
            prefixed.extend_from_slice(&value);
            prop_assert_eq!(open(&keys("k"), b"sid", &H, b"u", &prefixed), None);
        }

        #[test]
        fn any_plaintext_parses_to_nothing_or_to_valid_tokens(plain in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Some(t) = parse(&plain) {
                prop_assert!(!t.access.is_empty());
                prop_assert!([&t.access, &t.refresh, &t.id_token].iter().all(|x| valid_token(x)));
            }
        }

        #[test]
        fn sealed_tokens_round_trip_and_any_flipped_bit_is_refused(
            access in "[!-~]{1,300}",
            refresh in "[!-~]{0,300}",
            issued in any::<u64>(),
            expires in any::<u64>(),
            flip in any::<prop::sample::Index>(),
        ) {
            let mut rng = RandomPool::new();
            let t = Tokens { access: access.into_bytes(), refresh: refresh.into_bytes(), id_token: Vec::new(), issued, expires };
            let v = seal(&keys("k"), b"sid", &H, b"u", &t, &mut rng).unwrap().expect("fits");
            prop_assert_eq!(open(&keys("k"), b"sid", &H, b"u", &v), Some(t));
            let mut bad = v.clone();
            // Not in the last characters, whose low bits base64 may not use.
            let from = PREFIX.len() + v[PREFIX.len()..].iter().position(|&b| b == b'.').unwrap() + 1;
            let i = from + flip.index(v.len() - from - 4);
            bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
            prop_assert_eq!(open(&keys("k"), b"sid", &H, b"u", &bad), None);
        }
    }
}
