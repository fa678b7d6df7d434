//! Session data: a small key/value map, bounded in count and size, encoded
//! as one blob: repeated `[key length u8][key][value length u16 LE][value]`.

/// Most keys a session holds.
pub const MAX_KEYS: usize = 16;
/// Longest key: `[a-zA-Z0-9_-]`, as nginx variable names allow after `$session_data_`.
pub const MAX_KEY: usize = 32;
/// Longest value.
pub const MAX_VALUE: usize = 256;
/// Largest encoded map.
pub const MAX_BLOB: usize = 1024;

/// Why a change to the map was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataError {
    BadKey,
    /// Too long, or with control characters (values travel in headers).
    BadValue,
    TooManyKeys,
    TooLarge,
}

impl std::fmt::Display for DataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::BadKey => "the key must be 1 to 32 characters of [a-zA-Z0-9_-]",
            Self::BadValue => "the value is longer than 256 bytes or has control characters",
            Self::TooManyKeys => "a session holds at most 16 keys",
            Self::TooLarge => "a session holds at most 1024 bytes of data",
        })
    }
}

pub fn valid_key(k: &[u8]) -> bool {
    (1..=MAX_KEY).contains(&k.len())
        && k.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub fn valid_value(v: &[u8]) -> bool {
    v.len() <= MAX_VALUE && v.iter().all(|&b| b >= 0x20 && b != 0x7f)
}

/// Whether `blob` is a map `update` could have written: every byte part of
/// an entry, every key and value valid, no key twice, within the bounds. A
/// blob read back from outside this process (Redis) must pass this before
/// any of it reaches a variable or a header.
pub fn valid_blob(blob: &[u8]) -> bool {
    valid_blob_within(blob, MAX_BLOB)
}

/// `valid_blob` for a store that holds up to `max` bytes.
pub fn valid_blob_within(blob: &[u8], max: usize) -> bool {
    if blob.len() > max {
        return false;
    }
    let mut used = 0;
    let mut keys: Vec<&[u8]> = Vec::with_capacity(MAX_KEYS);
    for (k, v) in entries(blob) {
        if keys.len() == MAX_KEYS
            || !valid_key(k)
            || !valid_value(v)
            || keys.iter().any(|seen| seen.eq_ignore_ascii_case(k))
        {
            return false;
        }
        keys.push(k);
        used += 1 + k.len() + 2 + v.len();
    }
    used == blob.len()
}

/// Iterates the entries of an encoded map; stops at the first malformed byte.
pub fn entries(blob: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = blob;
    std::iter::from_fn(move || {
        let (&kl, r) = rest.split_first()?;
        let kl = usize::from(kl);
        let key = r.get(..kl)?;
        let vl = usize::from(u16::from_le_bytes([*r.get(kl)?, *r.get(kl + 1)?]));
        let value = r.get(kl + 2..kl + 2 + vl)?;
        rest = &r[kl + 2 + vl..];
        Some((key, value))
    })
}

/// The value of `key`, case-insensitively (nginx lowercases variable names).
pub fn get<'a>(blob: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    entries(blob)
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// Applies sets (`Some(value)`) and unsets (`None`) in order, into `out`.
pub fn update(blob: &[u8], changes: &[(&[u8], Option<&[u8]>)], out: &mut Vec<u8>) -> Result<(), DataError> {
    update_within(blob, changes, out, MAX_BLOB)
}

/// `update`, for a store that holds up to `max` bytes (the cookie store
/// checks its own, configured, limit after).
pub fn update_within(
    blob: &[u8],
    changes: &[(&[u8], Option<&[u8]>)],
    out: &mut Vec<u8>,
    max: usize,
) -> Result<(), DataError> {
    let mut map: Vec<(&[u8], &[u8])> = entries(blob).collect();
    for &(key, value) in changes {
        if !valid_key(key) {
            return Err(DataError::BadKey);
        }
        let pos = map.iter().position(|(k, _)| k.eq_ignore_ascii_case(key));
        match (value, pos) {
            (Some(v), _) if !valid_value(v) => return Err(DataError::BadValue),
            (Some(v), Some(i)) => map[i].1 = v,
            (Some(v), None) => {
                if map.len() == MAX_KEYS {
                    return Err(DataError::TooManyKeys);
                }
                map.push((key, v));
            }
            (None, Some(i)) => {
                map.remove(i);
            }
            (None, None) => {}
        }
    }
    out.clear();
    for (k, v) in map {
        out.push(k.len() as u8);
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u16).to_le_bytes());
        out.extend_from_slice(v);
    }
    if out.len() > max {
        return Err(DataError::TooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(blob: &[u8], changes: &[(&[u8], Option<&[u8]>)]) -> Result<Vec<u8>, DataError> {
        let mut out = Vec::new();
        update(blob, changes, &mut out).map(|()| out)
    }

    #[test]
    fn set_get_unset() {
        let b = apply(&[], &[(b"theme", Some(b"dark")), (b"lang", Some(b"fr"))]).unwrap();
        assert_eq!(get(&b, b"theme"), Some(&b"dark"[..]));
        assert_eq!(get(&b, b"THEME"), Some(&b"dark"[..]));
        let b = apply(&b, &[(b"theme", Some(b"light")), (b"lang", None)]).unwrap();
        assert_eq!(get(&b, b"theme"), Some(&b"light"[..]));
        assert_eq!(get(&b, b"lang"), None);
        assert_eq!(entries(&b).count(), 1);
        let b = apply(&b, &[(b"theme", Some(b""))]).unwrap();
        assert_eq!(get(&b, b"theme"), Some(&b""[..]));
    }

    #[test]
    fn limits() {
        assert_eq!(apply(&[], &[(b"", Some(b"x"))]), Err(DataError::BadKey));
        assert_eq!(apply(&[], &[(b"a b", Some(b"x"))]), Err(DataError::BadKey));
        assert_eq!(apply(&[], &[(&[b'k'; 33], Some(b"x"))]), Err(DataError::BadKey));
        assert_eq!(apply(&[], &[(b"k", Some(b"a\rb"))]), Err(DataError::BadValue));
        assert_eq!(
            apply(&[], &[(b"k", Some(&[b'v'; 257]))]),
            Err(DataError::BadValue)
        );
        let keys: Vec<String> = (0..17).map(|i| format!("k{i}")).collect();
        let changes: Vec<(&[u8], Option<&[u8]>)> =
            keys.iter().map(|k| (k.as_bytes(), Some(&b"v"[..]))).collect();
        assert_eq!(apply(&[], &changes[..16]).map(|b| entries(&b).count()), Ok(16));
        assert_eq!(apply(&[], &changes), Err(DataError::TooManyKeys));
        let big = [b'v'; 250];
        let changes: Vec<(&[u8], Option<&[u8]>)> =
            keys[..5].iter().map(|k| (k.as_bytes(), Some(&big[..]))).collect();
        assert_eq!(apply(&[], &changes), Err(DataError::TooLarge));
    }

    #[test]
    fn only_what_update_writes_is_a_valid_blob() {
        let b = apply(&[], &[(b"a", Some(b"1")), (b"b", Some(b"2"))]).unwrap();
        assert!(valid_blob(&b) && valid_blob(&[]));
        assert!(!valid_blob(&b[..b.len() - 1]), "truncated");
        let mut trailing = b.clone();
        trailing.push(0);
        assert!(!valid_blob(&trailing), "a stray byte");
        let entry = |k: &[u8], v: &[u8]| {
            let mut e = vec![k.len() as u8];
            e.extend_from_slice(k);
            e.extend_from_slice(&(v.len() as u16).to_le_bytes());
            e.extend_from_slice(v);
            e
        };
        assert!(valid_blob(&entry(b"k", b"v")));
        assert!(
            !valid_blob(&entry(b"k", b"a\r\nX-Injected: yes")),
            "CR LF in a value"
        );
        assert!(!valid_blob(&entry(b"k:", b"v")), "a bad key");
        assert!(
            !valid_blob(&[entry(b"k", b"1"), entry(b"K", b"2")].concat()),
            "a key twice"
        );
        let many: Vec<u8> = (0..17)
            .flat_map(|i| entry(format!("k{i}").as_bytes(), b"v"))
            .collect();
        assert!(!valid_blob(&many), "too many keys");
        let big: Vec<u8> = (0..5)
            .flat_map(|i| entry(format!("k{i}").as_bytes(), &[b'v'; 250]))
            .collect();
        assert!(!valid_blob(&big), "too large");
    }

    #[test]
    fn malformed_blob_reads_as_prefix() {
        let b = apply(&[], &[(b"a", Some(b"1")), (b"b", Some(b"2"))]).unwrap();
        let cut = &b[..b.len() - 1];
        assert_eq!(entries(cut).count(), 1);
        assert_eq!(entries(&[40, 1, 2]).count(), 0);
    }
}
