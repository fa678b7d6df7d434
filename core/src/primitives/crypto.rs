//! Authenticated encryption as every sealed value here uses it: a random
//! 96-bit nonce, the ciphertext, a 128-bit tag.

use chacha20poly1305::aead::consts::{U12, U16};
use chacha20poly1305::aead::{AeadInOut, Nonce, Tag};

use crate::primitives::id::{RandomError, RandomPool};

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Bytes `aead_seal` adds to what it seals: the nonce and the tag.
pub(crate) const AEAD_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// A sealed value that did not open: wrong key or associated data, altered,
/// truncated, or no sealed value at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsealed;

/// Appends a random nonce, then `plain` encrypted and authenticated with
/// `aad` bound, then the tag, to `out`. Any AEAD with a 96-bit nonce and a
/// 128-bit tag: ChaCha20-Poly1305 for what Redis and the state file keep,
/// AES-256-GCM-SIV for the cookie store.
pub(crate) fn aead_seal<A: AeadInOut<NonceSize = U12, TagSize = U16>>(
    cipher: &A,
    aad: &[u8],
    plain: &[u8],
    rng: &mut RandomPool,
    out: &mut Vec<u8>,
) -> Result<(), RandomError> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce)?;
    out.reserve(AEAD_OVERHEAD + plain.len());
    out.extend_from_slice(&nonce);
    let start = out.len();
    out.extend_from_slice(plain);
    let tag = cipher
        .encrypt_inout_detached(&Nonce::<A>::from(nonce), aad, (&mut out[start..]).into())
        .expect("what is sealed here is far below the AEADs' limits");
    out.extend_from_slice(&tag);
    Ok(())
}

/// Opens what `aead_seal` appended.
pub(crate) fn aead_open<A: AeadInOut<NonceSize = U12, TagSize = U16>>(
    cipher: &A,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, Unsealed> {
    if sealed.len() < AEAD_OVERHEAD {
        return Err(Unsealed);
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (msg, tag) = rest.split_at(rest.len() - TAG_LEN);
    let nonce = Nonce::<A>::try_from(nonce).map_err(|_| Unsealed)?;
    let tag = Tag::<A>::try_from(tag).map_err(|_| Unsealed)?;
    let mut plain = msg.to_vec();
    cipher
        .decrypt_inout_detached(&nonce, aad, (&mut plain[..]).into(), &tag)
        .map_err(|_| Unsealed)?;
    Ok(plain)
}
