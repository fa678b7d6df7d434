//! The key schedule: every key derived from the configured secrets.
//!
//! Each key is HKDF-SHA256(secret) with its own purpose label, derived once
//! per configuration: the cookie MAC, the state file's key, the keys of what
//! Redis keeps, and the cookie store's root (one key per cookie name). The
//! keyed HMAC state is kept so that signing a cookie does not re-hash the
//! key on every request. What each key seals lives with its store.

use core::fmt;

use chacha20poly1305::ChaCha20Poly1305;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of the truncated cookie tag (128 bits, as lua-resty-session).
pub const TAG_LEN: usize = 16;

/// Longest cookie name bound into a tag; `parse::cookie_name` enforces it.
pub const MAX_NAME: usize = 128;

const SALT: &[u8] = b"ngx-sessions";
const COOKIE_MAC_INFO: &[u8] = b"ngx-sessions v1 cookie mac";
const STATE_INFO: &[u8] = b"ngx-sessions v1 state file";
const COOKIE_STORE_INFO: &[u8] = b"ngx-sessions v1 cookie store root";
const COOKIE_STORE_KEY_INFO: &[u8] = b"ngx-sessions v1 cookie store\0";
const INDEX_INFO: &[u8] = b"ngx-sessions v1 store index";
const SEAL_INFO: &[u8] = b"ngx-sessions v1 store seal";
const SUMMARY_INFO: &[u8] = b"ngx-sessions v1 store summary";
const TAG_INFO: &[u8] = b"ngx-sessions v1 journal tag";

/// The key that seals a zone's state file under `secret`.
pub fn state_key(secret: &[u8]) -> [u8; 32] {
    hkdf_sha256(secret, STATE_INFO)
}

/// The key that seals cookie-store sessions in cookie `name`, from the
/// cookie-store root of one secret.
pub fn cookie_store_key(root: &[u8], name: &[u8]) -> [u8; 32] {
    hkdf_sha256_parts(root, &[COOKIE_STORE_KEY_INFO, name])
}

/// HKDF-SHA256 of a secret under this crate's salt, for one purpose.
pub(crate) fn hkdf_sha256(ikm: &[u8], info: &[u8]) -> [u8; 32] {
    hkdf_sha256_salted(ikm, SALT, &[info])
}

/// HKDF-SHA256 of a secret for one purpose and one subject: `info` is the
/// concatenation of `parts` (each part fixed-length or last, so unambiguous).
pub(crate) fn hkdf_sha256_parts(ikm: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    hkdf_sha256_salted(ikm, SALT, parts)
}

/// HKDF-SHA256 (RFC 5869), one 32-byte output; `info` is the parts joined.
fn hkdf_sha256_salted(ikm: &[u8], salt: &[u8], info: &[&[u8]]) -> [u8; 32] {
    let mut okm = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), ikm)
        .expand_multi_info(info, &mut okm)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    okm
}

/// Keys for one secret of what an outside store (Redis) keeps; the
/// sealing itself is `stores::redis::sealed`.
#[derive(Clone)]
pub struct SealKeys {
    pub(crate) index: HmacSha256,
    pub(crate) seal: HmacSha256,
    pub(crate) summary: ChaCha20Poly1305,
    /// Names these keys in the pending-write journal (reveals nothing of them).
    pub(crate) tag: u64,
}

impl fmt::Debug for SealKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKeys(..)")
    }
}

impl SealKeys {
    pub fn derive(secret: &[u8]) -> Self {
        let mac = |info| HmacSha256::new_from_slice(&hkdf_sha256(secret, info)).expect("any key length");
        Self {
            index: mac(INDEX_INFO),
            seal: mac(SEAL_INFO),
            summary: ChaCha20Poly1305::new_from_slice(&hkdf_sha256(secret, SUMMARY_INFO))
                .expect("32-byte key"),
            tag: {
                let t = hkdf_sha256(secret, TAG_INFO);
                u64::from_le_bytes(t[..8].try_into().expect("8 bytes"))
            },
        }
    }
}

/// One cookie-signing key.
#[derive(Clone)]
pub struct Key {
    mac: HmacSha256,
    /// Keys for records kept in an outside store under this secret.
    seal: SealKeys,
    /// Seals the zone's state file.
    state: [u8; 32],
    /// Input of the cookie store's per-name sealing keys.
    cookie_root: [u8; 32],
}

impl Key {
    pub fn derive(secret: &[u8]) -> Self {
        let k = hkdf_sha256(secret, COOKIE_MAC_INFO);
        Self {
            mac: HmacSha256::new_from_slice(&k).expect("HMAC takes any key length"),
            seal: SealKeys::derive(secret),
            state: state_key(secret),
            cookie_root: hkdf_sha256(secret, COOKIE_STORE_INFO),
        }
    }

    fn keyed(&self, name: &[u8], id: &[u8; 16]) -> HmacSha256 {
        let mut m = self.mac.clone();
        // "v1" || len(name) || name || id: the length prefix keeps distinct
        // (name, id) pairs distinct. One contiguous update is cheapest.
        let mut msg = [0u8; 2 + 4 + MAX_NAME + 16];
        let name = &name[..name.len().min(MAX_NAME)];
        let n = name.len();
        msg[..2].copy_from_slice(b"v1");
        msg[2..6].copy_from_slice(&(n as u32).to_be_bytes());
        msg[6..6 + n].copy_from_slice(name);
        msg[6 + n..22 + n].copy_from_slice(id);
        m.update(&msg[..22 + n]);
        m
    }

    pub fn seal(&self) -> &SealKeys {
        &self.seal
    }

    /// The key that seals cookie-store sessions in cookie `name`.
    pub fn cookie_store_key(&self, name: &[u8]) -> [u8; 32] {
        cookie_store_key(&self.cookie_root, name)
    }

    pub fn state_key(&self) -> &[u8; 32] {
        &self.state
    }

    /// The tag binding cookie name and session id.
    pub fn tag(&self, name: &[u8], id: &[u8; 16]) -> [u8; TAG_LEN] {
        let full = self.keyed(name, id).finalize().into_bytes();
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(&full[..TAG_LEN]);
        t
    }

    /// Constant-time check of a presented tag.
    pub fn verify(&self, name: &[u8], id: &[u8; 16], tag: &[u8; TAG_LEN]) -> bool {
        self.keyed(name, id).verify_truncated_left(tag).is_ok()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// The signing key first, then keys that are still accepted (rotation).
#[derive(Clone, Debug)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl Keyring {
    /// `secrets` must not be empty; the first one signs.
    pub fn from_secrets<S: AsRef<[u8]>>(secrets: &[S]) -> Option<Self> {
        if secrets.is_empty() {
            return None;
        }
        Some(Self {
            keys: secrets.iter().map(|s| Key::derive(s.as_ref())).collect(),
        })
    }

    pub fn primary(&self) -> &Key {
        &self.keys[0]
    }

    /// Key `i` (as `verify` numbers them), the signing key when out of range.
    pub fn key(&self, i: usize) -> &Key {
        self.keys.get(i).unwrap_or(&self.keys[0])
    }

    /// Every key, the signing key first.
    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }

    /// Index of the first key that verifies the tag.
    pub fn verify(&self, name: &[u8], id: &[u8; 16], tag: &[u8; TAG_LEN]) -> Option<usize> {
        self.keys.iter().position(|k| k.verify(name, id, tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hkdf_rfc5869_case_1_first_block() {
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let okm = hkdf_sha256_salted(&ikm, &salt, &[&info]);
        // Info given in parts is the parts joined.
        assert_eq!(hkdf_sha256_salted(&ikm, &salt, &[&info[..4], &info[4..]]), okm);
        let want = "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf";
        let got: String = okm.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn tag_binds_name_id_and_secret() {
        let k = Key::derive(b"secret");
        let id = [7u8; 16];
        let t = k.tag(b"sid", &id);
        assert!(k.verify(b"sid", &id, &t));
        assert!(!k.verify(b"sie", &id, &t));
        let mut id2 = id;
        id2[15] ^= 1;
        assert!(!k.verify(b"sid", &id2, &t));
        assert!(!Key::derive(b"secreT").verify(b"sid", &id, &t));
        let mut t2 = t;
        t2[0] ^= 0x80;
        assert!(!k.verify(b"sid", &id, &t2));
    }

    #[test]
    fn keyring_reports_which_key_verified() {
        let old = Key::derive(b"old");
        let ring = Keyring::from_secrets(&["new", "old"]).unwrap();
        let id = [1u8; 16];
        assert_eq!(ring.verify(b"n", &id, &ring.primary().tag(b"n", &id)), Some(0));
        assert_eq!(ring.verify(b"n", &id, &old.tag(b"n", &id)), Some(1));
        let other = Key::derive(b"other").tag(b"n", &id);
        assert_eq!(ring.verify(b"n", &id, &other), None);
        assert!(Keyring::from_secrets::<&str>(&[]).is_none());
    }

    #[test]
    fn debug_hides_key() {
        assert_eq!(format!("{:?}", Key::derive(b"s")), "Key(..)");
    }
}
