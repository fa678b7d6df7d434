//! The signed identity nginx hands the upstream (`$session_assertion`): a
//! short-lived JWT an application verifies with the keys `sessions_jwks`
//! publishes, as Google IAP's or Cloudflare Access's assertions.
//!
//! Keys come from PEM files (PKCS#8 `PRIVATE KEY`): Ed25519 signs `EdDSA`,
//! P-256 signs `ES256`. The first key signs; the others are only published,
//! so tokens signed before a rotation still verify. Each key's `kid` is its
//! RFC 7638 thumbprint.
//!
//! `ring` directly rather than `jsonwebtoken`'s encoder: that one parses the
//! PKCS#8 key again for every token, which for Ed25519 costs as much as the
//! signature itself; here a key is parsed once, at configuration.

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::primitives::b64;

/// Why a key file was refused.
pub type Reason = &'static str;

enum Pair {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
}

/// A signing key, parsed once.
pub struct SigningKey {
    pair: Pair,
    kid: String,
    /// The public key as a JWK (with `kid`, `alg`, `use`).
    jwk: serde_json::Value,
    /// `base64url(header) + "."`, the same for every token.
    prefix: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 4 / 3 + 3);
    b64::encode_into(bytes, &mut out);
    String::from_utf8(out).expect("base64url is ASCII")
}

impl SigningKey {
    /// Reads a PEM file's text: exactly one `PRIVATE KEY` block holding an
    /// Ed25519 or P-256 PKCS#8 key, nothing else but blank lines around it.
    pub fn from_pem(text: &[u8]) -> Result<Self, Reason> {
        let text = std::str::from_utf8(text).map_err(|_| "the file is not text")?;
        let blocks = pem::parse_many(text).map_err(|_| "the file is not PEM")?;
        let [block] = blocks.as_slice() else {
            return Err("the file must hold exactly one PEM block");
        };
        if block.tag() != "PRIVATE KEY" {
            return Err("the PEM block must be a PKCS#8 \"PRIVATE KEY\" (Ed25519 or P-256)");
        }
        let der = block.contents();
        let pair = if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            Pair::Ed25519(k)
        } else if let Ok(k) =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
        {
            Pair::P256(k)
        } else {
            return Err("the key is neither Ed25519 nor P-256");
        };
        Ok(Self::new(pair))
    }

    fn new(pair: Pair) -> Self {
        // RFC 7638: the required members, in lexicographic order, no spaces.
        let (thumb_input, mut jwk, alg) = match &pair {
            Pair::Ed25519(k) => {
                let x = b64(k.public_key().as_ref());
                (
                    format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
                    serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
                    "EdDSA",
                )
            }
            Pair::P256(k) => {
                let point = k.public_key().as_ref(); // 0x04 || x || y
                let (x, y) = (b64(&point[1..33]), b64(&point[33..65]));
                (
                    format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#),
                    serde_json::json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
                    "ES256",
                )
            }
        };
        let kid = b64(&Sha256::digest(thumb_input.as_bytes()));
        jwk["kid"] = kid.clone().into();
        jwk["alg"] = alg.into();
        jwk["use"] = "sig".into();
        let header = serde_json::json!({"alg": alg, "kid": kid, "typ": "JWT"});
        let prefix = format!("{}.", b64(header.to_string().as_bytes()));
        Self {
            pair,
            kid,
            jwk,
            prefix,
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A signed token for `claims`; `None` only if the system's random
    /// source failed (ES256 signatures need one).
    pub fn sign(&self, claims: &Claims<'_>) -> Option<String> {
        let body = serde_json::to_vec(claims).expect("claims serialize");
        let mut token = String::with_capacity(self.prefix.len() + body.len() * 4 / 3 + 100);
        token.push_str(&self.prefix);
        token.push_str(&b64(&body));
        let signature = match &self.pair {
            Pair::Ed25519(k) => k.sign(token.as_bytes()).as_ref().to_vec(),
            Pair::P256(k) => k
                .sign(&SystemRandom::new(), token.as_bytes())
                .ok()?
                .as_ref()
                .to_vec(),
        };
        token.push('.');
        token.push_str(&b64(&signature));
        Some(token)
    }
}

/// What a token says. `sub` is the user, `sid` the session (as
/// `$session_id`), times in Unix seconds.
#[derive(Debug, Serialize)]
pub struct Claims<'a> {
    pub iss: &'a str,
    pub aud: &'a str,
    pub sub: &'a str,
    pub sid: &'a str,
    pub iat: u64,
    pub exp: u64,
}

/// The JWK Set publishing every key, signing key first.
pub fn jwks(keys: &[SigningKey]) -> String {
    let keys: Vec<_> = keys.iter().map(|k| &k.jwk).collect();
    serde_json::json!({ "keys": keys }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ED25519};

    /// `openssl genpkey -algorithm ed25519` (PKCS#8 v1, no public key).
    const ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINvTl8+NTVjfLgcPLcK8PDYvrK8gEZVEsUhzkympqS0+\n-----END PRIVATE KEY-----\n";

    fn p256_pem() -> String {
        let der =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()))
    }

    fn claims() -> Claims<'static> {
        Claims {
            iss: "https://nginx.example",
            aud: "app",
            sub: "alice \"the\" admin",
            sid: "00112233",
            iat: 1_700_000_000,
            exp: 1_700_000_060,
        }
    }

    fn parts(token: &str) -> (serde_json::Value, serde_json::Value, Vec<u8>) {
        let p: Vec<_> = token.split('.').collect();
        assert_eq!(p.len(), 3);
        let json = |s: &str| serde_json::from_slice(&b64::decode_vec(s.as_bytes()).unwrap()).unwrap();
        (json(p[0]), json(p[1]), b64::decode_vec(p[2].as_bytes()).unwrap())
    }

    #[test]
    fn ed25519_tokens_verify_with_the_published_key() {
        let key = SigningKey::from_pem(ED25519_PEM.as_bytes()).unwrap();
        let token = key.sign(&claims()).unwrap();
        let (header, body, sig) = parts(&token);
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"], key.kid());
        assert_eq!(body["sub"], "alice \"the\" admin");
        assert_eq!(body["exp"], 1_700_000_060);
        let set: serde_json::Value = serde_json::from_str(&jwks(std::slice::from_ref(&key))).unwrap();
        let x = b64::decode_vec(set["keys"][0]["x"].as_str().unwrap().as_bytes()).unwrap();
        let signed = &token[..token.rfind('.').unwrap()];
        UnparsedPublicKey::new(&ED25519, &x)
            .verify(signed.as_bytes(), &sig)
            .unwrap();
        let mut tampered = signed.as_bytes().to_vec();
        tampered[10] ^= 1;
        assert!(UnparsedPublicKey::new(&ED25519, &x)
            .verify(&tampered, &sig)
            .is_err());
    }

    #[test]
    fn p256_tokens_verify_with_the_published_key() {
        let key = SigningKey::from_pem(p256_pem().as_bytes()).unwrap();
        let token = key.sign(&claims()).unwrap();
        let (header, _, sig) = parts(&token);
        assert_eq!(header["alg"], "ES256");
        let set: serde_json::Value = serde_json::from_str(&jwks(std::slice::from_ref(&key))).unwrap();
        let k = &set["keys"][0];
        assert_eq!(
            (k["kty"].as_str(), k["crv"].as_str()),
            (Some("EC"), Some("P-256"))
        );
        let mut point = vec![4u8];
        for c in ["x", "y"] {
            point.extend(b64::decode_vec(k[c].as_str().unwrap().as_bytes()).unwrap());
        }
        let signed = &token[..token.rfind('.').unwrap()];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(signed.as_bytes(), &sig)
            .unwrap();
    }

    /// RFC 8037 appendix A.3: the thumbprint of its Ed25519 key.
    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        assert_eq!(
            b64(&Sha256::digest(input.as_bytes())),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn other_files_are_refused() {
        let cert = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        assert!(SigningKey::from_pem(cert.as_bytes()).is_err());
        let two = format!("{ED25519_PEM}{ED25519_PEM}");
        assert!(SigningKey::from_pem(two.as_bytes()).is_err());
        let garbage = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";
        assert!(SigningKey::from_pem(garbage.as_bytes()).is_err());
        assert!(SigningKey::from_pem(b"").is_err());
        assert!(SigningKey::from_pem(b"\xff\xfe").is_err());
    }

    proptest! {
        /// Any bytes read from a key file are refused or give a key; never a panic.
        #[test]
        fn any_file_parses_safely(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = SigningKey::from_pem(&bytes);
        }

        /// A PEM block around any DER is refused or gives a key.
        #[test]
        fn any_der_parses_safely(der in proptest::collection::vec(any::<u8>(), 0..120)) {
            let text = pem::encode(&pem::Pem::new("PRIVATE KEY", der));
            let _ = SigningKey::from_pem(text.as_bytes());
        }
    }
}
