//! What everything else is built from: base64url, ids and randomness,
//! authenticated encryption.

pub mod b64;
pub mod crypto;
pub mod id;
