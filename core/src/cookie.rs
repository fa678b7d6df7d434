//! The session cookie: value codec, `Cookie` header parsing, `Set-Cookie` building.
//!
//! Value format, version 1: `v1.` + base64url(id[16] || tag[16]), where the tag
//! is HMAC-SHA256 (truncated to 128 bits) over the cookie name and the id.

use core::fmt;

use crate::b64;
use crate::id::SessionId;
use crate::keys::{Keyring, TAG_LEN};

const PREFIX: &[u8] = b"v1.";
/// Length of an encoded cookie value.
pub const VALUE_LEN: usize = PREFIX.len() + b64::encoded_len(16 + TAG_LEN);

/// Why a presented cookie was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieError {
    /// Wrong length, version or encoding.
    Malformed,
    /// Well formed, but no configured key signed it.
    BadMac,
}

impl fmt::Display for CookieError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed session cookie",
            Self::BadMac => "session cookie signature mismatch",
        })
    }
}

impl std::error::Error for CookieError {}

/// Signs `id` with the primary key and appends the cookie value to `out`.
pub fn encode_value(keys: &Keyring, name: &[u8], id: &SessionId, out: &mut Vec<u8>) {
    let mut raw = [0u8; 16 + TAG_LEN];
    raw[..16].copy_from_slice(&id.0);
    raw[16..].copy_from_slice(&keys.primary().tag(name, &id.0));
    out.extend_from_slice(PREFIX);
    b64::encode_into(&raw, out);
}

/// A verified cookie: the id and whether it was signed by an older key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub id: SessionId,
    pub stale_key: bool,
}

/// Checks a presented value; the MAC comparison is constant time.
pub fn decode_value(keys: &Keyring, name: &[u8], value: &[u8]) -> Result<Verified, CookieError> {
    let body = value.strip_prefix(PREFIX).ok_or(CookieError::Malformed)?;
    let raw = b64::decode_exact::<{ 16 + TAG_LEN }>(body).ok_or(CookieError::Malformed)?;
    let mut id = [0u8; 16];
    id.copy_from_slice(&raw[..16]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&raw[16..]);
    match keys.verify(name, &id, &tag) {
        Some(i) => Ok(Verified {
            id: SessionId(id),
            stale_key: i != 0,
        }),
        None => Err(CookieError::BadMac),
    }
}

/// Values of every cookie called `name` in one `Cookie` header value.
pub fn cookie_values<'a>(header: &'a [u8], name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    header.split(|&b| b == b';').filter_map(move |pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (k, v) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
        (k == name).then_some(v)
    })
}

/// `Secure` attribute policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Secure {
    On,
    Off,
    /// Set only on requests that arrived over TLS.
    #[default]
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    Strict,
    #[default]
    Lax,
    None,
}

impl SameSite {
    fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "Strict",
            Self::Lax => "Lax",
            Self::None => "None",
        }
    }
}

/// Attributes of the issued cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieAttrs {
    pub domain: Option<String>,
    pub path: String,
    pub secure: Secure,
    pub http_only: bool,
    /// `None` leaves the attribute out.
    pub same_site: Option<SameSite>,
    /// `None` makes a browser-session cookie.
    pub max_age: Option<u64>,
}

impl Default for CookieAttrs {
    fn default() -> Self {
        Self {
            domain: None,
            path: "/".into(),
            secure: Secure::Auto,
            http_only: true,
            same_site: Some(SameSite::Lax),
            max_age: None,
        }
    }
}

impl CookieAttrs {
    /// Builds a `Set-Cookie` header value. `https` resolves `Secure::Auto`;
    /// `SameSite=None` always carries `Secure`, as browsers require.
    pub fn set_cookie(&self, name: &[u8], value: &[u8], https: bool, out: &mut Vec<u8>) {
        out.extend_from_slice(name);
        out.push(b'=');
        out.extend_from_slice(value);
        if let Some(d) = &self.domain {
            out.extend_from_slice(b"; Domain=");
            out.extend_from_slice(d.as_bytes());
        }
        out.extend_from_slice(b"; Path=");
        out.extend_from_slice(self.path.as_bytes());
        if let Some(age) = self.max_age {
            out.extend_from_slice(format!("; Max-Age={age}").as_bytes());
        }
        let secure = match self.secure {
            Secure::On => true,
            Secure::Off => false,
            Secure::Auto => https,
        } || self.same_site == Some(SameSite::None);
        if secure {
            out.extend_from_slice(b"; Secure");
        }
        if self.http_only {
            out.extend_from_slice(b"; HttpOnly");
        }
        if let Some(s) = self.same_site {
            out.extend_from_slice(b"; SameSite=");
            out.extend_from_slice(s.as_str().as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        Keyring::from_secrets(&["primary", "old"]).unwrap()
    }

    fn value(keys: &Keyring, name: &[u8], id: &SessionId) -> Vec<u8> {
        let mut v = Vec::new();
        encode_value(keys, name, id, &mut v);
        v
    }

    #[test]
    fn round_trip() {
        let id = SessionId([9; 16]);
        let v = value(&ring(), b"sid", &id);
        assert_eq!(v.len(), VALUE_LEN);
        assert!(v.starts_with(b"v1."));
        assert_eq!(
            decode_value(&ring(), b"sid", &v),
            Ok(Verified { id, stale_key: false })
        );
    }

    #[test]
    fn every_single_byte_change_is_refused() {
        let id = SessionId([3; 16]);
        let v = value(&ring(), b"sid", &id);
        for i in 0..v.len() {
            for x in [1u8, 0x20, 0x80] {
                let mut t = v.clone();
                t[i] ^= x;
                assert!(decode_value(&ring(), b"sid", &t).is_err(), "byte {i} ^ {x:#x}");
            }
        }
    }

    #[test]
    fn malformed_and_foreign() {
        let r = ring();
        assert_eq!(decode_value(&r, b"s", b""), Err(CookieError::Malformed));
        assert_eq!(decode_value(&r, b"s", b"v2.AAAA"), Err(CookieError::Malformed));
        assert_eq!(decode_value(&r, b"s", &[b'x'; 4096]), Err(CookieError::Malformed));
        let mut v = value(&r, b"s", &SessionId([1; 16]));
        v.push(b'A');
        assert_eq!(decode_value(&r, b"s", &v), Err(CookieError::Malformed));
        // Valid encoding, wrong cookie name: the name is bound in the MAC.
        let v = value(&r, b"other", &SessionId([1; 16]));
        assert_eq!(decode_value(&r, b"s", &v), Err(CookieError::BadMac));
    }

    #[test]
    fn old_key_is_accepted_and_flagged() {
        let old_only = Keyring::from_secrets(&["old"]).unwrap();
        let id = SessionId([5; 16]);
        let v = value(&old_only, b"sid", &id);
        assert_eq!(
            decode_value(&ring(), b"sid", &v),
            Ok(Verified { id, stale_key: true })
        );
        let unrelated = Keyring::from_secrets(&["x"]).unwrap();
        assert_eq!(decode_value(&unrelated, b"sid", &v), Err(CookieError::BadMac));
    }

    #[test]
    fn cookie_header_parsing() {
        let h = b"a=1; sid=v1.x ;b=2;sid=second; sidx=no; =; junk";
        let vals: Vec<_> = cookie_values(h, b"sid").collect();
        assert_eq!(vals, vec![&b"v1.x"[..], &b"second"[..]]);
        assert_eq!(cookie_values(b"", b"sid").count(), 0);
        assert_eq!(cookie_values(b"sid", b"sid").count(), 0);
    }

    #[test]
    fn set_cookie_defaults_and_options() {
        let mut out = Vec::new();
        CookieAttrs::default().set_cookie(b"n", b"v", false, &mut out);
        assert_eq!(out, b"n=v; Path=/; HttpOnly; SameSite=Lax");

        out.clear();
        CookieAttrs::default().set_cookie(b"n", b"v", true, &mut out);
        assert_eq!(out, b"n=v; Path=/; Secure; HttpOnly; SameSite=Lax");

        let a = CookieAttrs {
            domain: Some("example.com".into()),
            path: "/app".into(),
            secure: Secure::Off,
            http_only: false,
            same_site: Some(SameSite::None),
            max_age: Some(3600),
        };
        out.clear();
        a.set_cookie(b"n", b"v", false, &mut out);
        assert_eq!(
            out,
            b"n=v; Domain=example.com; Path=/app; Max-Age=3600; Secure; SameSite=None"
        );

        let a = CookieAttrs {
            secure: Secure::On,
            same_site: None,
            ..Default::default()
        };
        out.clear();
        a.set_cookie(b"n", b"v", false, &mut out);
        assert_eq!(out, b"n=v; Path=/; Secure; HttpOnly");
    }
}
