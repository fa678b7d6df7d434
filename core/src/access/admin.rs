//! The admin endpoint's requests and answers: list a user's sessions,
//! revoke one session or every session of a user ("log out everywhere").
//! Requests come as query arguments or as a JSON body; answers are JSON.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::model::record::Record;
use crate::primitives::id::Handle;

/// What the admin asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRequest {
    List {
        user: Vec<u8>,
    },
    RevokeUser {
        user: Vec<u8>,
    },
    RevokeId {
        id: Handle,
    },
    /// `sessions_self`: one of `user`'s own sessions (not found if another's).
    RevokeOwn {
        user: Vec<u8>,
        id: Handle,
    },
    /// `sessions_self`, `X-Session-Logout-Others`: every session of `user`
    /// but the one whose handle is `except`.
    RevokeOthers {
        user: Vec<u8>,
        except: Handle,
    },
}

/// What a logged-in user asks of `sessions_self`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfRequest {
    List,
    /// End one of the user's sessions (`$session_id`).
    Revoke(Handle),
    /// End every session of the user but this one.
    RevokeOthers,
}

impl SelfRequest {
    /// As an admin request on `user`'s sessions, `current` the one asking.
    pub fn for_user(self, user: &[u8], current: Handle) -> AdminRequest {
        let user = user.to_vec();
        match self {
            Self::List => AdminRequest::List { user },
            Self::Revoke(id) => AdminRequest::RevokeOwn { user, id },
            Self::RevokeOthers => AdminRequest::RevokeOthers {
                user,
                except: current,
            },
        }
    }
}

const NOT_AN_ID: &str = "\"id\" must be a session id as in $session_id (16 hex digits)";

/// `sessions_self`'s query: GET lists, `DELETE ?id=ID` ends one session,
/// `DELETE ?others` every other one.
pub fn self_from_query(verb: Verb, args: &[u8]) -> Result<SelfRequest, &'static str> {
    let id = query_param(args, b"id");
    let others = args
        .split(|&b| b == b'&')
        .any(|p| p == b"others" || p.starts_with(b"others="));
    match (verb, id, others) {
        (Verb::Read, None, false) => Ok(SelfRequest::List),
        (Verb::Delete, Some(id), false) => Handle::from_hex(&id).map(SelfRequest::Revoke).ok_or(NOT_AN_ID),
        (Verb::Delete, None, true) => Ok(SelfRequest::RevokeOthers),
        (Verb::Read, _, _) => Err("listing takes no arguments"),
        (Verb::Delete, _, _) => Err("ending sessions needs ?id=SESSION_ID or ?others"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSelfRequest {
    action: String,
    id: Option<String>,
}

/// `{"action": "list"}`, `{"action": "revoke", "id": ID}` or `{"action": "revoke_others"}`.
pub fn self_from_json(body: &[u8]) -> Result<SelfRequest, &'static str> {
    let req: JsonSelfRequest =
        serde_json::from_slice(body).map_err(|_| "the body must be a JSON object with \"action\"")?;
    match (req.action.as_str(), req.id) {
        ("list", None) => Ok(SelfRequest::List),
        ("revoke", Some(id)) => Handle::from_hex(id.as_bytes())
            .map(SelfRequest::Revoke)
            .ok_or(NOT_AN_ID),
        ("revoke_others", None) => Ok(SelfRequest::RevokeOthers),
        ("revoke", None) => Err("\"revoke\" needs \"id\""),
        ("list" | "revoke_others", Some(_)) => Err("only \"revoke\" takes \"id\""),
        _ => Err("\"action\" must be \"list\", \"revoke\" or \"revoke_others\""),
    }
}

/// How the request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// GET or HEAD: list.
    Read,
    /// DELETE: revoke.
    Delete,
}

/// A user no session can have: refused rather than looked for.
const NOT_A_USER: &str = "\"user\" must be a user name as X-Session-User sets it (1 to 64 printable bytes)";

/// `?user=NAME` (list or revoke all) or `?id=HANDLE` (revoke one).
pub fn from_query(verb: Verb, args: &[u8]) -> Result<AdminRequest, &'static str> {
    let user = query_param(args, b"user");
    let id = query_param(args, b"id");
    match (verb, user, id) {
        (_, Some(user), None) if !crate::model::record::valid_user(&user) => Err(NOT_A_USER),
        (Verb::Read, Some(user), None) => Ok(AdminRequest::List { user }),
        (Verb::Delete, Some(user), None) => Ok(AdminRequest::RevokeUser { user }),
        (Verb::Delete, None, Some(id)) => Handle::from_hex(&id)
            .map(|id| AdminRequest::RevokeId { id })
            .ok_or("\"id\" must be a session id as in $session_id (16 hex digits)"),
        (Verb::Read, _, _) => Err("listing needs ?user=NAME"),
        (Verb::Delete, _, _) => Err("revoking needs ?user=NAME or ?id=SESSION_ID"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRequest {
    action: String,
    user: Option<String>,
    id: Option<String>,
}

/// `{"action": "list" | "revoke", "user": NAME}` or `{"action": "revoke", "id": HANDLE}`.
pub fn from_json(body: &[u8]) -> Result<AdminRequest, &'static str> {
    let req: JsonRequest = serde_json::from_slice(body)
        .map_err(|_| "the body must be a JSON object with \"action\" and \"user\" or \"id\"")?;
    match (req.action.as_str(), req.user, req.id) {
        ("list" | "revoke", Some(user), None) if !crate::model::record::valid_user(user.as_bytes()) => {
            Err(NOT_A_USER)
        }
        ("list", Some(user), None) => Ok(AdminRequest::List {
            user: user.into_bytes(),
        }),
        ("revoke", Some(user), None) => Ok(AdminRequest::RevokeUser {
            user: user.into_bytes(),
        }),
        ("revoke", None, Some(id)) => Handle::from_hex(id.as_bytes())
            .map(|id| AdminRequest::RevokeId { id })
            .ok_or("\"id\" must be a session id as in $session_id (16 hex digits)"),
        ("list" | "revoke", _, _) => Err("give either \"user\" or \"id\""),
        _ => Err("\"action\" must be \"list\" or \"revoke\""),
    }
}

/// Whether a POST's `Content-Type` is JSON. A browser sends a cross-site
/// POST without asking first only as `text/plain`, a form or multipart:
/// requiring JSON keeps a foreign page from revoking sessions through an
/// admin's browser (CSRF).
pub fn is_json(content_type: &[u8]) -> bool {
    let media = content_type.split(|&b| b == b';').next().unwrap_or_default();
    media.trim_ascii().eq_ignore_ascii_case(b"application/json")
}

/// One session as the admin sees it; never the secret id. `current`: for
/// `sessions_self`, whether it is the session asking.
pub fn session_json(rec: &Record, deadline: Option<u64>, current: Option<bool>) -> Value {
    let mut v = json!({
        "id": String::from_utf8_lossy(&rec.handle.to_hex()),
        "created": rec.created / 1000,
        "last_seen": rec.last_seen / 1000,
        "expires": deadline.map(|d| d / 1000),
        "ip": ip_text(rec.ip()),
        "user_agent": crate::engine::binding::summary(rec.ua),
        "remembered": rec.remembered(),
    });
    if let Some(current) = current {
        v["current"] = current.into();
    }
    v
}

pub fn list_json(user: &[u8], sessions: Vec<Value>) -> String {
    json!({ "user": String::from_utf8_lossy(user), "sessions": sessions }).to_string()
}

pub fn revoked_json(count: usize) -> String {
    json!({ "revoked": count }).to_string()
}

pub fn error_json(message: &str) -> String {
    json!({ "error": message }).to_string()
}

fn ip_text(ip: &[u8]) -> String {
    match ip.len() {
        4 => std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string(),
        16 => {
            let b: [u8; 16] = ip.try_into().expect("16 bytes");
            std::net::Ipv6Addr::from(b).to_string()
        }
        _ => String::new(),
    }
}

/// The percent-decoded value of `name` in a query string (`+` is a space).
pub fn query_param(args: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    args.split(|&b| b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(v: &[u8]) -> Vec<u8> {
    let spaced: Vec<u8> = v.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    percent_encoding::percent_decode(&spaced).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_requests() {
        let h = Handle::from_hex(b"00112233445566ff").unwrap();
        assert_eq!(self_from_query(Verb::Read, b""), Ok(SelfRequest::List));
        assert_eq!(
            self_from_query(Verb::Delete, b"id=00112233445566ff"),
            Ok(SelfRequest::Revoke(h))
        );
        assert_eq!(
            self_from_query(Verb::Delete, b"others"),
            Ok(SelfRequest::RevokeOthers)
        );
        assert_eq!(
            self_from_query(Verb::Delete, b"others=1"),
            Ok(SelfRequest::RevokeOthers)
        );
        assert!(self_from_query(Verb::Delete, b"").is_err());
        assert!(self_from_query(Verb::Delete, b"id=zz").is_err());
        assert!(self_from_query(Verb::Delete, b"id=00112233445566ff&others").is_err());
        assert!(
            self_from_query(Verb::Read, b"user=bob").is_ok(),
            "other arguments are ignored"
        );
        assert_eq!(
            self_from_json(br#"{"action":"revoke_others"}"#),
            Ok(SelfRequest::RevokeOthers)
        );
        assert_eq!(
            self_from_json(br#"{"action":"revoke","id":"00112233445566ff"}"#),
            Ok(SelfRequest::Revoke(h))
        );
        assert!(self_from_json(br#"{"action":"revoke"}"#).is_err());
        assert!(
            self_from_json(br#"{"action":"list","user":"bob"}"#).is_err(),
            "no one else's"
        );
        assert_eq!(
            SelfRequest::RevokeOthers.for_user(b"al", h),
            AdminRequest::RevokeOthers {
                user: b"al".to_vec(),
                except: h
            }
        );
    }

    #[test]
    fn only_json_is_json() {
        assert!(is_json(b"application/json") && is_json(b"Application/JSON; charset=utf-8"));
        for simple in [
            &b"text/plain"[..],
            b"application/x-www-form-urlencoded",
            b"multipart/form-data; boundary=x",
            b"text/plain; application/json",
            b"application/jsonp",
            b"",
        ] {
            assert!(!is_json(simple), "{simple:?}");
        }
    }

    #[test]
    fn query_requests() {
        assert_eq!(
            from_query(Verb::Read, b"user=alice%40example.com"),
            Ok(AdminRequest::List {
                user: b"alice@example.com".to_vec()
            })
        );
        assert_eq!(
            from_query(Verb::Delete, b"x=1&user=bob"),
            Ok(AdminRequest::RevokeUser {
                user: b"bob".to_vec()
            })
        );
        assert_eq!(
            from_query(Verb::Delete, b"id=0001abff1020304f"),
            Ok(AdminRequest::RevokeId {
                id: Handle([0, 1, 0xab, 0xff, 0x10, 0x20, 0x30, 0x4f])
            })
        );
        assert!(from_query(Verb::Read, b"").is_err());
        assert!(from_query(Verb::Delete, b"id=zz").is_err());
        assert!(from_query(Verb::Delete, b"user=a&id=0001abff1020304f").is_err());
    }

    #[test]
    fn json_requests() {
        assert_eq!(
            from_json(br#"{"action":"revoke","user":"alice"}"#),
            Ok(AdminRequest::RevokeUser {
                user: b"alice".to_vec()
            })
        );
        assert_eq!(
            from_json(br#"{"action":"list","user":"a\"b"}"#),
            Ok(AdminRequest::List {
                user: b"a\"b".to_vec()
            })
        );
        assert!(from_json(br#"{"action":"drop","user":"x"}"#).is_err());
        assert!(from_json(br#"{"action":"revoke"}"#).is_err());
        assert!(from_json(br#"{"action":"revoke","user":"x","extra":1}"#).is_err());
        assert!(from_json(b"not json").is_err());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"a%20b+c%2"), b"a b c%2".to_vec());
        assert_eq!(percent_decode(b"%zz%41"), b"%zzA".to_vec());
        assert_eq!(query_param(b"user", b"user"), Some(vec![]));
    }

    #[test]
    fn answers_are_json() {
        let mut r = Record::new(Handle([0xab; 8]), 5_000, &[10, 0, 0, 1], 0);
        r.log_in(b"al\"ice", true).unwrap();
        let v: Value =
            serde_json::from_str(&list_json(b"al\"ice", vec![session_json(&r, Some(9_000), None)])).unwrap();
        assert_eq!(v["user"], "al\"ice");
        assert_eq!(v["sessions"][0]["id"], "abababababababab");
        assert_eq!(v["sessions"][0]["ip"], "10.0.0.1");
        assert_eq!(v["sessions"][0]["expires"], 9);
        assert_eq!(v["sessions"][0]["remembered"], true);
        assert_eq!(revoked_json(3), r#"{"revoked":3}"#);
    }
}
