//! Every parser of bytes that cross a boundary, fuzzed on stable Rust:
//! random inputs and mutations of valid ones. None panics, and none
//! accepts what its writer could not have written: a sealed or signed value
//! opens only unchanged, and a plain decoder accepts only the canonical
//! encoding of what it returns (decoding then encoding gives the input).
//!
//! The number of cases each property runs is `CASES` (or `PROPTEST_CASES`).

use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::model::keys::Keyring;
use crate::model::keys::SealKeys;
use crate::model::record::{Entry, Record};
use crate::primitives::id::{Handle, RandomPool, SessionId};
use crate::stores::cookie::{self as cookie_store, Contents, CookieSealer};
use crate::stores::zone::revoked::SharedRecord;
use crate::stores::zone::state::{Saved, Snapshot};

const CASES: u32 = 25_000;

fn config() -> Config {
    Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    }
}

/// An edit of a valid input: flip, insert, remove, truncate or extend.
#[derive(Debug, Clone)]
struct Edit {
    at: usize,
    op: u8,
    byte: u8,
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    proptest::collection::vec(
        (any::<usize>(), 0..5u8, any::<u8>()).prop_map(|(at, op, byte)| Edit { at, op, byte }),
        1..4,
    )
}

fn apply(valid: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut v = valid.to_vec();
    for e in edits {
        let i = e.at % (v.len() + 1);
        match e.op {
            0 if i < v.len() => v[i] ^= e.byte.max(1),
            1 => v.insert(i, e.byte),
            2 if i < v.len() => {
                v.remove(i);
            }
            3 => v.truncate(i),
            _ => v.extend_from_slice(&[e.byte; 3]),
        }
    }
    v
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

/// Bytes a cookie or header value is made of: mostly base64url and the
/// separators the parsers look for.
fn texty(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let alphabet: Vec<u8> = b"ABCxyz0189-_.=;, s1\"\\\t\x00\xff".to_vec();
    proptest::collection::vec(proptest::sample::select(alphabet), 0..max)
}

fn user() -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of(proptest::collection::vec(0x20u8..0x7f, 1..=64))
}

/// A record as the module writes one.
fn record() -> impl Strategy<Value = Record> {
    (
        any::<[u8; 8]>(),
        any::<[u64; 4]>(),
        prop_oneof![Just(0usize), Just(4), Just(16)],
        any::<[u8; 16]>(),
        user(),
        any::<bool>(),
    )
        .prop_map(|(h, t, ip_len, ip, user, remember)| {
            let mut r = Record::new(Handle(h), t[0], &ip[..ip_len], t[3]);
            (r.last_seen, r.renewed) = (t[1], t[2]);
            if let Some(u) = user {
                r.log_in(&u, remember).expect("short");
            }
            r
        })
}

/// Session data as `crate::model::data` encodes it, up to 16 keys.
fn data() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        (
            proptest::collection::vec(b'a'..=b'z', 1..=8),
            proptest::collection::vec(0x20u8..0x7f, 0..=40),
        ),
        0..6,
    )
    .prop_map(|kv| {
        let changes: Vec<(&[u8], Option<&[u8]>)> = kv
            .iter()
            .map(|(k, v)| (k.as_slice(), Some(v.as_slice())))
            .collect();
        let mut out = Vec::new();
        crate::model::data::update(&[], &changes, &mut out).expect("valid");
        out
    })
}

fn keyring() -> Keyring {
    Keyring::from_secrets(&["fuzz-secret", "older-secret"]).expect("keys")
}

// The session cookie of the zone and Redis stores.

proptest! {
    #![proptest_config(config())]

    #[test]
    fn session_cookies_open_only_unchanged(id in any::<[u8; 16]>(), e in edits(), junk in texty(120)) {
        let keys = keyring();
        let mut valid = Vec::new();
        crate::codec::cookie::encode_value(&keys, b"sid", &SessionId(id), &mut valid);
        let v = crate::codec::cookie::decode_value(&keys, b"sid", &valid).expect("opens");
        prop_assert_eq!(v.id, SessionId(id));
        let changed = apply(&valid, &e);
        if let Ok(v) = crate::codec::cookie::decode_value(&keys, b"sid", &changed) {
            prop_assert_eq!(&changed, &valid, "a changed cookie opened");
            prop_assert_eq!(v.id, SessionId(id));
        }
        let mut prefixed = b"v1.".to_vec();
        prefixed.extend_from_slice(&junk);
        for raw in [&junk, &prefixed] {
            prop_assert!(crate::codec::cookie::decode_value(&keys, b"sid", raw).is_err());
        }
        prop_assert!(crate::codec::cookie::decode_value(&keys, b"other", &valid).is_err());
    }

    /// `Cookie` headers: what is found is part of the header, and a
    /// stripped cookie is gone.
    #[test]
    fn cookie_headers_split_and_strip(header in texty(300), name in proptest::collection::vec(b'a'..=b'c', 1..3)) {
        for (k, v) in crate::codec::cookie::cookie_pairs(&header) {
            prop_assert!(k.len() + v.len() <= header.len());
        }
        let _ = crate::codec::cookie::cookie_values(&header, &name).count();
        let mut out = Vec::new();
        if crate::codec::cookie::strip_cookie(&header, &name, &mut out) {
            prop_assert_eq!(crate::codec::cookie::cookie_values(&out, &name).count(), 0);
        }
    }
}

// The cookie store: sealed chunks, their names, their plaintext.

fn contents() -> impl Strategy<Value = Contents> {
    (any::<[u8; 16]>(), record(), data()).prop_map(|(id, record, data)| Contents {
        id: SessionId(id),
        record,
        data,
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn cookie_store_chunks_open_only_unchanged(
        c in contents(),
        pad in 0..3_000usize,
        chunk in any::<usize>(),
        e in edits(),
        reorder in any::<bool>(),
    ) {
        let sealer = CookieSealer::derive(b"fuzz-secret", b"sid");
        let mut c = c;
        // Large data spreads the session over several cookies.
        if pad > 0 {
            let v = vec![b'p'; pad.min(200)];
            let keys: Vec<Vec<u8>> = (0..pad / 200 + 1).map(|i| format!("pad{i}").into_bytes()).collect();
            let changes: Vec<(&[u8], Option<&[u8]>)> = keys.iter().take(10).map(|k| (k.as_slice(), Some(v.as_slice()))).collect();
            let mut out = Vec::new();
            if crate::model::data::update(&c.data, &changes, &mut out).is_ok() {
                c.data = out;
            }
        }
        let values = cookie_store::seal(&sealer, b"sid", &c, &mut RandomPool::new()).expect("seals");
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let sealers = [CookieSealer::derive(b"another", b"sid"), sealer.clone()];
        prop_assert_eq!(cookie_store::open(&sealers, b"sid", &refs), Ok((c.clone(), 1)));
        // One chunk edited.
        let i = chunk % values.len();
        let mut changed = values.clone();
        changed[i] = apply(&values[i], &e);
        let refs: Vec<&[u8]> = changed.iter().map(Vec::as_slice).collect();
        if changed != values {
            prop_assert!(cookie_store::open(&sealers, b"sid", &refs).is_err());
        }
        // Chunks dropped, repeated or swapped; another cookie name.
        let mut set: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        if reorder && set.len() > 1 {
            let last = set.len() - 1;
            set.swap(0, last);
        } else if reorder {
            set.push(set[0]);
        } else {
            set.pop();
        }
        prop_assert!(cookie_store::open(&sealers, b"sid", &set).is_err());
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        prop_assert!(cookie_store::open(&sealers, b"sie", &refs).is_err());
    }

    #[test]
    fn cookie_store_values_from_anyone_are_refused(values in proptest::collection::vec(texty(200), 0..4), first in texty(60)) {
        let sealers = [CookieSealer::derive(b"fuzz-secret", b"sid")];
        let mut all = vec![[b"s1.".as_slice(), &first].concat()];
        all.extend(values);
        let refs: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
        prop_assert!(cookie_store::open(&sealers, b"sid", &refs).is_err());
        let _ = cookie_store::chunk_count(&all[0]);
    }

    /// The request's `Cookie` headers sorted into a session's chunks.
    #[test]
    fn chunk_sets_are_gathered_within_bounds(headers in proptest::collection::vec(texty(200), 0..4)) {
        let g = cookie_store::gather(headers.iter().map(Vec::as_slice), b"s");
        prop_assert!(g.present <= cookie_store::MAX_CHUNKS);
        prop_assert!(g.chunks[0].is_none());
    }

    #[test]
    fn cookie_store_plaintext_is_canonical(c in contents(), e in edits(), junk in bytes(300)) {
        let plain = cookie_store::plaintext(&c).expect("fits");
        prop_assert_eq!(cookie_store::parse(&plain), Ok(c));
        for p in [apply(&plain, &e), junk] {
            if let Ok(back) = cookie_store::parse(&p) {
                prop_assert_eq!(cookie_store::plaintext(&back).expect("fits"), p);
            }
        }
    }
}

// Values read back from Redis: session records and their data, user
// index summaries, shared records.

fn entry() -> impl Strategy<Value = (Entry, Vec<u8>)> {
    prop_oneof![
        (record(), data()).prop_map(|(r, d)| (Entry::Live(r), d)),
        (any::<[u8; 16]>(), any::<u64>()).prop_map(|(s, until)| (
            Entry::Grace {
                successor: SessionId(s),
                until
            },
            Vec::new()
        )),
    ]
}

fn shared() -> impl Strategy<Value = SharedRecord> {
    (any::<[u8; 16]>(), 0..3u8, any::<u64>(), any::<u64>()).prop_map(|(key, kind, at, until)| {
        let successor = match kind {
            0 => crate::stores::zone::revoked::ENDED,
            1 => crate::stores::zone::revoked::ENDED_ANONYMOUS,
            _ => {
                let mut mark = [0u8; 16];
                mark[..8].copy_from_slice(&at.to_le_bytes());
                mark[8..].copy_from_slice(b"notbefor");
                SessionId(mark)
            }
        };
        SharedRecord {
            key: SessionId(key),
            successor,
            until,
        }
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn redis_records_open_only_unchanged(id in any::<[u8; 16]>(), (entry, data) in entry(), e in edits(), junk in bytes(300)) {
        let keys = SealKeys::derive(b"fuzz-secret");
        let (id, address) = (SessionId(id), b"pfx:addr".as_slice());
        let value = keys.seal(&id, address, &entry, &data, &mut RandomPool::new()).expect("seals");
        prop_assert_eq!(keys.open(&id, address, &value), Ok((entry, data)));
        let changed = apply(&value, &e);
        if changed != value {
            prop_assert!(keys.open(&id, address, &changed).is_err());
        }
        prop_assert!(keys.open(&id, address, &junk).is_err());
        prop_assert!(keys.open(&id, b"pfx:other", &value).is_err());
        prop_assert!(SealKeys::derive(b"another").open(&id, address, &value).is_err());
    }

    #[test]
    fn redis_record_plaintext_is_canonical((entry, data) in entry(), e in edits(), junk in bytes(300)) {
        let plain = crate::stores::redis::sealed::entry_plaintext(&entry, &data);
        prop_assert_eq!(crate::stores::redis::sealed::parse_entry(&plain), Ok((entry, data)));
        for p in [apply(&plain, &e), junk] {
            if let Ok((entry, data)) = crate::stores::redis::sealed::parse_entry(&p) {
                prop_assert_eq!(crate::stores::redis::sealed::entry_plaintext(&entry, &data), p);
            }
        }
    }

    #[test]
    fn records_decode_canonically(r in record(), e in edits(), junk in bytes(200)) {
        let mut valid = Vec::new();
        r.encode(&mut valid);
        prop_assert_eq!(Record::decode(&valid), Some((r, valid.len())));
        for b in [apply(&valid, &e), junk] {
            if let Some((back, used)) = Record::decode(&b) {
                let mut again = Vec::new();
                back.encode(&mut again);
                prop_assert_eq!(&again[..], &b[..used]);
            }
        }
    }

    #[test]
    fn data_blobs_decode_canonically(d in data(), e in edits(), junk in bytes(200)) {
        prop_assert!(crate::model::data::valid_blob(&d));
        for b in [apply(&d, &e), junk] {
            if crate::model::data::valid_blob(&b) {
                let entries: Vec<(&[u8], Option<&[u8]>)> = crate::model::data::entries(&b).map(|(k, v)| (k, Some(v))).collect();
                let mut again = Vec::new();
                crate::model::data::update(&[], &entries, &mut again).expect("what is valid re-encodes");
                prop_assert_eq!(again, b);
            } else {
                // Nothing is read from what is not valid.
                let _ = crate::model::data::get(&b, b"k");
            }
        }
    }

    #[test]
    fn summaries_open_only_unchanged(r in record(), e in edits(), junk in bytes(200)) {
        let keys = SealKeys::derive(b"fuzz-secret");
        let value = keys.seal_summary(b"idx:a", &r, &mut RandomPool::new()).expect("seals");
        prop_assert_eq!(keys.open_summary(b"idx:a", &value), Ok(r));
        let changed = apply(&value, &e);
        if changed != value {
            prop_assert!(keys.open_summary(b"idx:a", &changed).is_err());
        }
        prop_assert!(keys.open_summary(b"idx:a", &junk).is_err());
        prop_assert!(keys.open_summary(b"idx:b", &value).is_err());
    }

    #[test]
    fn revocation_marks_open_only_unchanged(e in edits(), junk in bytes(200)) {
        let keys = SealKeys::derive(b"fuzz-secret");
        let value = keys.seal_ended(b"s:a", &mut RandomPool::new()).expect("seals");
        prop_assert!(keys.is_ended(b"s:a", &value));
        let changed = apply(&value, &e);
        if changed != value {
            prop_assert!(!keys.is_ended(b"s:a", &changed));
        }
        prop_assert!(!keys.is_ended(b"s:a", &junk));
        prop_assert!(!keys.is_ended(b"s:b", &value));
    }

    #[test]
    fn shared_records_open_only_unchanged(r in shared(), e in edits(), junk in texty(120)) {
        let keys = SealKeys::derive(b"fuzz-secret");
        let member = keys.seal_shared(&r, &mut RandomPool::new()).expect("seals");
        prop_assert_eq!(keys.open_shared(&member), Some(r));
        let changed = apply(&member, &e);
        if changed != member {
            prop_assert_eq!(keys.open_shared(&changed), None);
        }
        prop_assert_eq!(keys.open_shared(&junk), None);
    }

    #[test]
    fn shared_records_decode_canonically(r in shared(), e in edits(), junk in bytes(60)) {
        prop_assert_eq!(SharedRecord::decode(&r.encode()), Some(r));
        for b in [apply(&r.encode(), &e), junk] {
            if let Some(back) = SharedRecord::decode(&b) {
                prop_assert_eq!(&back.encode()[..], &b[..]);
            }
        }
    }
}

// The state file.

fn saved() -> impl Strategy<Value = Saved> {
    (
        any::<[u8; 16]>(),
        entry(),
        proptest::option::of(any::<u64>()),
        any::<bool>(),
    )
        .prop_map(|(id, (entry, data), deadline, protected)| {
            // A renewed id is saved with its end as its deadline.
            let deadline = match entry {
                Entry::Grace { until, .. } => Some(until).filter(|&u| u != u64::MAX),
                Entry::Live(_) => deadline.filter(|&d| d != u64::MAX),
            };
            let entry = match entry {
                Entry::Grace { successor, .. } if deadline.is_none() => Entry::Grace { successor, until: 1 },
                e => e,
            };
            let deadline = match entry {
                Entry::Grace { until, .. } => Some(until),
                _ => deadline,
            };
            Saved {
                id: SessionId(id),
                entry,
                deadline,
                data,
                protected,
            }
        })
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    (any::<[u8; 32]>(), proptest::collection::vec(saved(), 0..6)).prop_map(|(random_secret, saved)| {
        Snapshot {
            random_secret,
            random_name: *b"abcdefghABCDEFGH",
            saved,
        }
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn state_files_open_only_unchanged(snap in snapshot(), e in edits(), junk in bytes(400)) {
        let keys = [keyring()];
        let file = crate::stores::zone::state::seal(&snap, &keys, &mut RandomPool::new()).expect("seals");
        prop_assert_eq!(crate::stores::zone::state::open(&file, &keys), Ok(snap));
        let changed = apply(&file, &e);
        if changed != file {
            prop_assert!(crate::stores::zone::state::open(&changed, &keys).is_err());
        }
        prop_assert!(crate::stores::zone::state::open(&junk, &keys).is_err());
        let mut ours = b"NGXSSTAT\x01".to_vec();
        ours.extend_from_slice(&junk);
        prop_assert!(crate::stores::zone::state::open(&ours, &keys).is_err());
    }

    #[test]
    fn state_file_plaintext_is_canonical(snap in snapshot(), e in edits(), junk in bytes(400)) {
        let plain = snap.encode();
        prop_assert_eq!(Snapshot::decode(&plain), Some(snap));
        for p in [apply(&plain, &e), junk] {
            if let Some(back) = Snapshot::decode(&p) {
                prop_assert_eq!(back.encode(), p);
            }
        }
    }
}

// What an admin or an application sends: admin requests, control header
// values.

proptest! {
    #![proptest_config(config())]

    #[test]
    fn self_requests_parse_safely(body in texty(120), args in texty(120), e in edits()) {
        use crate::access::admin::{self_from_json, self_from_query, SelfRequest, Verb};
        let valid = br#"{"action":"revoke","id":"0011223344556677"}"#;
        for b in [body, valid.to_vec(), apply(valid, &e)] {
            if let Ok(SelfRequest::Revoke(id)) = self_from_json(&b) {
                prop_assert_eq!(Handle::from_hex(&id.to_hex()), Some(id));
            }
        }
        for verb in [Verb::Read, Verb::Delete] {
            let _ = self_from_query(verb, &args);
        }
    }

    #[test]
    fn admin_requests_carry_only_sound_users_and_ids(
        body in texty(120),
        user in proptest::collection::vec(any::<u8>(), 0..80),
        action in proptest::sample::select(vec!["list", "revoke", "other"]),
        e in edits(),
        args in texty(120),
    ) {
        use crate::access::admin::{from_json, from_query, AdminRequest, Verb};
        let sound = |r: &AdminRequest| match r {
            AdminRequest::List { user } | AdminRequest::RevokeUser { user } => crate::model::record::valid_user(user),
            AdminRequest::RevokeId { id } => Handle::from_hex(&id.to_hex()) == Some(*id),
            AdminRequest::RevokeOwn { .. } | AdminRequest::RevokeOthers { .. } => false, // never from a request
        };
        let valid = serde_json::json!({"action": action, "user": String::from_utf8_lossy(&user)}).to_string();
        for b in [body, valid.clone().into_bytes(), apply(valid.as_bytes(), &e)] {
            if let Ok(r) = from_json(&b) {
                prop_assert!(sound(&r), "{:?}", r);
            }
        }
        for verb in [Verb::Read, Verb::Delete] {
            if let Ok(r) = from_query(verb, &args) {
                prop_assert!(sound(&r), "{:?}", r);
            }
        }
    }

    #[test]
    fn control_header_values_make_only_sound_sessions(value in texty(300), user in bytes(80)) {
        let _ = crate::access::gate::truthy(&value);
        if crate::model::record::valid_user(&user) {
            let mut r = Record::EMPTY;
            prop_assert!(r.log_in(&user, false).is_ok());
            let mut enc = Vec::new();
            r.encode(&mut enc);
            prop_assert!(Record::decode(&enc).is_some(), "a login the module cannot read back");
        }
        if let Some((k, v)) = crate::access::gate::set_value(&value) {
            let mut out = Vec::new();
            if crate::model::data::update(&[], &[(k, Some(v))], &mut out).is_ok() {
                prop_assert!(crate::model::data::valid_blob(&out));
                prop_assert_eq!(crate::model::data::get(&out, k), Some(v));
            }
        }
    }

    /// Client addresses and schemes from proxy headers.
    #[test]
    fn proxy_header_values_parse_within_bounds(value in texty(80), digits in proptest::collection::vec(proptest::sample::select(b"0123456789abcdef.:[]/".to_vec()), 0..50)) {
        for v in [&value, &digits] {
            if let Some((_, len)) = crate::config::proxy::address_bytes(v) {
                prop_assert!(len == 4 || len == 16);
            }
            let _ = crate::config::proxy::says_https(v);
            let _ = crate::config::proxy::Cidr::parse(v);
        }
    }
}
