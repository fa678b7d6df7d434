//! The `Store` conformance suite: one set of request sequences, decided by
//! the engine over each store implementation (the zone's table, the Redis
//! view, the cookie store), must come out the same. Each store is driven
//! through a harness that carries its state from one request to the next
//! as the module does: the table stays in memory, the view's writes go to
//! a map standing for Redis, the cookie store's session travels in its
//! cookie.

use std::collections::HashMap;

use crate::engine::store::Store;
use crate::engine::tests::{facts, policy};
use crate::engine::{apply, resolve, update_data, Control, Outcome, Presented, Status};
use crate::model::data;
use crate::model::record::Entry;
use crate::primitives::id::RandomPool;
use crate::primitives::id::SessionId;
use crate::stores::cookie::{Contents, CookieSession};
use crate::stores::redis::view::{touch_interval, View, Write};
use crate::stores::zone::table::tests::Mem;

/// A store as requests meet it: `request` runs one request's work over it
/// and keeps what the request changed for the next.
trait Harness {
    fn name(&self) -> &'static str;
    fn request<R>(&mut self, now: u64, f: impl FnOnce(&mut dyn Store) -> R) -> R;
    /// The id the client's cookie carries after the request that decided
    /// `outcome` (the cookie store keeps an id across renewals).
    fn cookie_id(&self, outcome: &Outcome) -> SessionId {
        outcome.id
    }
    /// Whether the client's cookie still carries a session, for a store
    /// whose session lives there.
    fn carried(&self) -> Option<bool> {
        None
    }
}

struct Zone(Mem);

impl Harness for Zone {
    fn name(&self) -> &'static str {
        "zone"
    }

    fn request<R>(&mut self, _now: u64, f: impl FnOnce(&mut dyn Store) -> R) -> R {
        f(&mut self.0.table())
    }
}

/// Redis as a map of what the view wrote.
#[derive(Default)]
struct Redis(HashMap<SessionId, (Entry, Vec<u8>)>);

impl Harness for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn request<R>(&mut self, now: u64, f: impl FnOnce(&mut dyn Store) -> R) -> R {
        let mut view = View::new(now, touch_interval(policy().timeouts.idle));
        for (id, (entry, data)) in &self.0 {
            view.preload(*id, *entry, data.clone(), None);
        }
        let out = f(&mut view);
        for w in view.finish() {
            match w {
                Write::Put { id, entry, data, .. } => {
                    self.0.insert(id, (entry, data));
                }
                Write::Delete { id } => {
                    self.0.remove(&id);
                }
                Write::Revoked(_) | Write::EndOthers { .. } => {}
            }
        }
        out
    }
}

/// The cookie: the session sealed into it by the last response.
#[derive(Default)]
struct Cookie(Option<Contents>);

impl Harness for Cookie {
    fn name(&self) -> &'static str {
        "cookie"
    }

    fn request<R>(&mut self, _now: u64, f: impl FnOnce(&mut dyn Store) -> R) -> R {
        let p = policy();
        let mut session = CookieSession::new(&p, self.0.clone(), data::MAX_BLOB);
        let out = f(&mut session);
        self.0 = session.current_session().map(|(id, record)| {
            let mut data = Vec::new();
            session.read_data(&record, &mut data);
            Contents { id, record, data }
        });
        out
    }

    fn cookie_id(&self, outcome: &Outcome) -> SessionId {
        self.0.as_ref().map_or(outcome.id, |c| c.id)
    }

    fn carried(&self) -> Option<bool> {
        Some(self.0.is_some())
    }
}

fn by_id(id: SessionId) -> Presented {
    Presented::Id { id, stale_key: false }
}

/// Decides a request presenting `presented` at `now`; the outcome, and the
/// session's data as the store holds it.
fn decide(h: &mut impl Harness, presented: Presented, now: u64) -> (Outcome, Vec<u8>) {
    h.request(now, |s| {
        let o = resolve(s, presented, &facts(now), &policy(), &mut RandomPool::new()).expect("random");
        let mut data = Vec::new();
        if o.record.has_data() || !o.status.is_refusal() {
            s.read_data(&o.record, &mut data);
        }
        (o, data)
    })
}

/// What every store must do with the same requests.
fn conforms(mut h: impl Harness) {
    let name = h.name();
    // A first visit starts a session; its cookie brings it back.
    let (first, _) = decide(&mut h, Presented::Nothing, 1_000);
    assert_eq!(first.status, Status::New, "{name}");
    assert!(first.issue_cookie, "{name}");
    let id = h.cookie_id(&first);
    let (again, _) = decide(&mut h, by_id(id), 1_100);
    assert_eq!(again.status, Status::Valid, "{name}");
    assert_eq!(
        again.record.handle, first.record.handle,
        "{name}: the same session"
    );

    // Data the upstream sets is there on the next request.
    h.request(1_200, |s| {
        let mut out = Vec::new();
        update_data(s, &id, &[(b"cart", Some(b"3"))], &mut out).expect("stored");
    });
    let (o, stored) = decide(&mut h, by_id(id), 1_300);
    assert_eq!(o.status, Status::Valid, "{name}");
    assert_eq!(data::get(&stored, b"cart"), Some(&b"3"[..]), "{name}: data kept");

    // A login moves the session to a new id, with its user and data; the
    // old id no longer opens it.
    let moved = h.request(1_400, |s| {
        let control = Control::LogIn {
            user: b"alice",
            remember: false,
        };
        apply(s, &id, control, 1_400, &policy(), &mut RandomPool::new()).expect("logged in")
    });
    let (new_id, rec) = moved.expect("a session");
    assert_ne!(new_id, id, "{name}: a new id at login");
    assert_eq!(rec.user(), Some(&b"alice"[..]), "{name}");
    let (o, stored) = decide(&mut h, by_id(new_id), 1_500);
    assert_eq!(
        (o.status, o.record.user()),
        (Status::Valid, Some(&b"alice"[..])),
        "{name}"
    );
    assert_eq!(
        data::get(&stored, b"cart"),
        Some(&b"3"[..]),
        "{name}: data moved along"
    );
    // The old cookie: in the cookie store it holds its own sealed copy,
    // which the zone's records end (`tests/cookie_store.rs`).
    if h.carried().is_none() {
        let (old, _) = h.request(1_550, |s| {
            let o = resolve(s, by_id(id), &facts(1_550), &policy(), &mut RandomPool::new()).expect("random");
            (o, ())
        });
        assert!(old.status.is_refusal(), "{name}: {:?}", old.status);
    }

    // Idle past the timeout: refused, a new session instead.
    let (idle, _) = decide(&mut h, by_id(new_id), 1_500 + policy().timeouts.idle + 1);
    assert_eq!(idle.status, Status::ExpiredIdle, "{name}");
    assert!(
        idle.record.user().is_none(),
        "{name}: the new session is not logged in"
    );

    // A logout ends the session for good.
    let now = 10_000;
    let (fresh, _) = decide(&mut h, Presented::Nothing, now);
    let fresh_id = h.cookie_id(&fresh);
    let ended = h.request(now + 10, |s| {
        apply(
            s,
            &fresh_id,
            Control::Destroy,
            now + 10,
            &policy(),
            &mut RandomPool::new(),
        )
    });
    assert!(matches!(ended, Ok(None)), "{name}");
    match h.carried() {
        // The cookie store's cookie is deleted; a copy a client kept is
        // refused by the zone's records (`tests/cookie_store.rs`).
        Some(carried) => assert!(!carried, "{name}: no session left in the cookie"),
        None => {
            let (o, _) = decide(&mut h, by_id(fresh_id), now + 20);
            assert!(o.status.is_refusal(), "{name}: {:?}", o.status);
        }
    }
}

#[test]
fn the_zone_conforms() {
    conforms(Zone(Mem::new(64, 64)));
}

#[test]
fn the_redis_view_conforms() {
    conforms(Redis::default());
}

#[test]
fn the_cookie_store_conforms() {
    conforms(Cookie::default());
}
