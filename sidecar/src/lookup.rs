//! One request's session, decided here over what Redis holds: read, decide
//! with the engine, write over what was read.

use std::time::Duration;

use sessions_core::engine::Presented;
use sessions_core::model::record::Entry;
use sessions_core::stores::redis::journal::Pending;
use sessions_core::stores::redis::view::{touch_interval, View};
use sessions_core::{resolve, Facts, SessionId};

use crate::exec::Failure;
use crate::scripts::SWAP;
use crate::state::Sidecar;
use crate::{Answer, Lookup};

/// A value read from Redis: writes decided from it are made over it.
pub(crate) struct Read {
    pub(crate) address: Vec<u8>,
    pub(crate) value: Vec<u8>,
}

/// What the copy of a session under an older secret becomes when the
/// session moves to the current one.
pub(crate) const MOVED: &[u8] = b"moved";

/// How many times a request decides before writing regardless.
pub(crate) const ATTEMPTS: u32 = 3;

/// How long another instance's new session may take to reach Redis
/// (usually a round trip) before its cookie is refused here as unknown.
pub(crate) const UNKNOWN_RECHECK: Duration = Duration::from_millis(25);

/// `SWAP` over what `read` found: `value` with `ttl` ms (0: none), or a
/// delete when `value` is empty.
pub(crate) fn swap(read: &Read, value: &[u8], ttl: u64) -> redis::Cmd {
    redis::cmd("EVAL")
        .arg(SWAP)
        .arg(1)
        .arg(&read.address)
        .arg(&read.value)
        .arg(value)
        .arg(ttl)
        .clone()
}

impl Sidecar {
    pub(crate) async fn lookup(&self, l: &Lookup) -> Result<Answer, Failure> {
        // Writes apply only over the values read; when another worker or
        // instance changed one meanwhile, decide again on what it left. The
        // last attempt writes regardless, as the zone's last writer would.
        for attempt in 1..=ATTEMPTS {
            let unconditional = attempt == ATTEMPTS;
            if let Some(answer) = self.decide(l, unconditional).await? {
                return Ok(answer);
            }
        }
        unreachable!("the last attempt writes unconditionally")
    }

    /// Reads the presented session (and the ids its grace pointers lead
    /// to), decides, and writes. `None` when a value read had changed.
    /// Ids with writes pending in the journal are read there; a decision
    /// over one of them is kept there too, after them, not sent now.
    pub(crate) async fn decide(&self, l: &Lookup, unconditional: bool) -> Result<Option<Answer>, Failure> {
        let presented = match l.presented {
            Presented::Id { id, .. } => Some(id),
            _ => None,
        };
        let hint = self.hint(presented.as_ref());
        // Before the read is sent: a push handled after it, or a write this
        // nginx records after it, voids the read.
        let ticket = self.near_ticket();
        let generation = ticket.and_then(|_| self.in_journal(|j| j.generation()));
        let mut first: Option<(Entry, Vec<u8>)> = None;
        let mut tracked = false;
        let mut view = View::new(l.now, touch_interval(l.policy.timeouts.idle));
        let mut read = Vec::new();
        // Ids read from the journal: writes to them are kept there too.
        let mut journaled: Vec<SessionId> = Vec::new();
        if let Some(mut cur) = presented {
            for _ in 0..3 {
                let found = match self.in_journal(|j| j.get(&cur, l.now)).flatten() {
                    Some(Pending::Gone) => {
                        journaled.push(cur);
                        None
                    }
                    Some(Pending::Put { entry, data }) => {
                        journaled.push(cur);
                        Some((entry, data))
                    }
                    None => {
                        let track = ticket.is_some() && !l.keys.migrate && Some(cur) == presented;
                        let mut got = self
                            .fetch(l, &cur, hint, &mut read, (track, &mut tracked))
                            .await?;
                        if got.is_none() && Some(cur) == presented && !self.gone_lately(l, &cur) {
                            // A session another instance just started may
                            // not be in Redis yet (its first write leaves as
                            // it is answered): look once more before
                            // refusing a well-signed cookie as unknown.
                            tokio::time::sleep(self.recheck).await;
                            read.clear();
                            got = self
                                .fetch(l, &cur, hint, &mut read, (track, &mut tracked))
                                .await?;
                        }
                        got
                    }
                };
                let Some((entry, data)) = found else { break };
                if Some(cur) == presented && journaled.is_empty() && tracked {
                    first = Some((entry, data.clone()));
                }
                let next = match entry {
                    Entry::Grace { successor, until } if l.now <= until && !entry.is_ended() => {
                        Some(successor)
                    }
                    _ => None,
                };
                view.preload(cur, entry, data, None);
                match next {
                    Some(s) => cur = s,
                    None => break,
                }
            }
        }
        let facts = Facts {
            now: l.now,
            ip: &l.ip.0[..l.ip.1],
            ua: l.ua,
        };
        let outcome = {
            let mut rng = self.rng.borrow_mut();
            resolve(&mut view, l.presented, &facts, &l.policy, &mut rng).map_err(|_| Failure::NoRandom)?
        };
        if l.keys.migrate {
            view.rewrite_all();
        }
        let writes = view.finish();
        if let (Some(t), Some(id), Some((Entry::Live(rec), data)), true) =
            (ticket, presented, &first, writes.is_empty() && !l.keys.migrate)
        {
            self.near_keep(t, generation.unwrap_or(0), id, &l.keys.read, *rec, data);
        }
        // After a pending write of the same session, in the same queue; a
        // new session (one a dead cookie's request gets) is no pending
        // write's, and goes to Redis as any other: so requests cannot fill
        // the journal.
        let after_pending = writes.iter().any(|w| journaled.contains(w.id()));
        let kept = after_pending && self.keep(&writes, &l.keys.write, l.now);
        if !kept {
            let old = l.keys.migrate.then_some(&l.keys.read);
            let over = if unconditional || after_pending {
                &[][..]
            } else {
                &read[..]
            };
            if !self.write(&writes, &l.keys.write, old, over).await? {
                return Ok(None);
            }
        }
        Ok(Some(Answer::Resolved {
            data: view.data_of(outcome.record.handle).to_vec(),
            outcome,
            events: std::mem::take(&mut view.events),
        }))
    }

    /// Whether the near cache heard that session `id`'s key changed lately
    /// (a logout, an expiry): missing now, it is gone, and is refused at once.
    pub(crate) fn gone_lately(&self, l: &Lookup, id: &SessionId) -> bool {
        let Some(near) = &self.near else { return false };
        let keys = if l.keys.migrate {
            &l.keys.write
        } else {
            &l.keys.read
        };
        let address = self.address(keys, id);
        near.lock()
            .unwrap_or_else(|e| e.into_inner())
            .changed_lately(&address)
    }

    /// Reads session `id` from Redis; what was read is noted in `read`, so
    /// that writes are made over it. A cookie of an older secret is looked
    /// for under the current keys first: a request sent with it at the same
    /// time may have moved the session there, and then this one follows it
    /// (its grace pointer) rather than renewing it a second time. A value
    /// of the wrong type, or one that does not open, is no session, and is
    /// removed.
    /// `track`: read the session's key over the near cache's tracking
    /// connection, so that Redis tells this worker when it changes;
    /// `tracked` then says whether it was.
    pub(crate) async fn fetch(
        &self,
        l: &Lookup,
        id: &SessionId,
        hint: usize,
        read: &mut Vec<Read>,
        (track, tracked): (bool, &mut bool),
    ) -> Result<Option<(Entry, Vec<u8>)>, Failure> {
        let mut places = vec![&l.keys.write];
        if l.keys.migrate {
            places = vec![&l.keys.write, &l.keys.read];
        } else {
            places[0] = &l.keys.read;
        }
        let base = read.len();
        for (n, keys) in places.iter().enumerate() {
            let addr = self.address(keys, id);
            let got = if track && n == 0 {
                self.tracked_get(&addr).await
            } else {
                None
            };
            // Broadcast tracking (Cluster) hears of every key's changes.
            *tracked = got.is_some() || (track && n == 0 && self.backend.is_cluster());
            let v: Option<Vec<u8>> = match got {
                Some(v) => v,
                None => match self.run(hint, redis::cmd("GET").arg(&addr)).await {
                    Ok(v) => v,
                    Err(Failure::WrongType(_)) => {
                        let _: Result<usize, _> = self.run(hint, redis::cmd("DEL").arg(&addr)).await;
                        None
                    }
                    Err(e) => return Err(e),
                },
            };
            let Some(v) = v else {
                // Written only if still absent: a concurrent move wins.
                read.push(Read {
                    address: addr,
                    value: Vec::new(),
                });
                continue;
            };
            if v == MOVED && n > 0 {
                // Moved to the current keys since they were read: read there.
                let now: Option<Vec<u8>> = self.run(hint, redis::cmd("GET").arg(&read[base].address)).await?;
                let Some(now) = now else { return Ok(None) };
                let found = places[0].open(id, &read[base].address, &now).ok();
                read[base].value = now;
                return Ok(found);
            }
            match keys.open(id, &addr, &v) {
                Ok(found) => {
                    read.push(Read {
                        address: addr,
                        value: v,
                    });
                    return Ok(Some(found));
                }
                Err(_) if keys.is_ended(&addr, &v) => {
                    // Revoked by `sessions_admin` (`admin::revoke`).
                    read.push(Read {
                        address: addr,
                        value: v,
                    });
                    return Ok(Some((Entry::ended(u64::MAX), Vec::new())));
                }
                Err(_) => {
                    let garbage = Read {
                        address: addr,
                        value: v,
                    };
                    let _: Result<redis::Value, _> = self.run(hint, &swap(&garbage, b"", 0)).await;
                    read.push(Read {
                        address: garbage.address,
                        value: Vec::new(),
                    });
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use sessions_core::engine::status::Status;
    use sessions_core::model::keys::SealKeys;
    use sessions_core::model::record::Record;
    use sessions_core::primitives::id::Handle;
    use sessions_core::stores::redis::view::Write;
    use sessions_core::{Outcome, Policy};

    use super::*;
    use crate::fake::{block_on, shared, FakeRedis, MemJournal};
    use crate::state::now_ms;
    use crate::{Keys, PendingWrites};

    const ID: SessionId = SessionId([3; 16]);
    const IP: [u8; 4] = [127, 0, 0, 1];
    const UA: sessions_core::engine::Ua<'static> = sessions_core::engine::Ua::Known {
        fingerprint: 9,
        whole: 9,
    };

    fn lookup(keys: &SealKeys, now: u64) -> Lookup {
        let mut ip = [0; 16];
        ip[..4].copy_from_slice(&IP);
        Lookup {
            presented: Presented::Id {
                id: ID,
                stale_key: false,
            },
            keys: Keys {
                read: keys.clone(),
                write: keys.clone(),
                migrate: false,
            },
            now,
            ip: (ip, 4),
            ua: UA,
            policy: Policy::default(),
        }
    }

    /// How many times the stand-in was asked for `address`.
    fn reads(fake: &FakeRedis, address: &[u8]) -> usize {
        let state = fake.state();
        let gets = state
            .commands
            .iter()
            .filter(|c| c[0].eq_ignore_ascii_case(b"GET") && c.get(1).map(Vec::as_slice) == Some(address));
        gets.count()
    }

    fn resolved(answer: Answer) -> Outcome {
        match answer {
            Answer::Resolved { outcome, .. } => outcome,
            _ => panic!("the lookup was not resolved"),
        }
    }

    #[test]
    fn a_session_pending_in_the_journal_is_decided_there_without_a_read() {
        let fake = FakeRedis::start();
        let journal = MemJournal::new(16);
        // A lease far away: no flush reaches the stand-in during the test.
        let s = shared(&fake, Some(journal.clone()), Duration::from_secs(60));
        let keys = SealKeys::derive(b"secret");
        let now = now_ms();
        let put = Write::Put {
            id: ID,
            entry: Entry::Live(Record::new(Handle([3; 8]), now, &IP, UA.fingerprint())),
            data: b"k=v".to_vec(),
            ttl: Some(60_000),
        };
        journal.with(&mut |j| {
            j.record(std::slice::from_ref(&put), keys.tag(), now)
                .expect("room")
        });
        let answer = block_on(s.lookup(&lookup(&keys, now))).expect("answered");
        let Answer::Resolved { outcome, data, .. } = answer else {
            panic!("the lookup was not resolved")
        };
        assert_eq!(outcome.status, Status::Valid);
        assert_eq!(outcome.id, ID);
        assert_eq!(data, b"k=v");
        assert_eq!(
            reads(&fake, &s.address(&keys, &ID)),
            0,
            "read from the journal only"
        );
    }

    #[test]
    fn a_well_signed_cookie_redis_lacks_is_looked_for_once_more_then_unknown() {
        let fake = FakeRedis::start();
        let s = shared(&fake, None, Duration::from_secs(60));
        let keys = SealKeys::derive(b"secret");
        let outcome = resolved(block_on(s.lookup(&lookup(&keys, now_ms()))).expect("answered"));
        assert_eq!(outcome.status, Status::Unknown);
        assert_ne!(outcome.id, ID, "a new session, not the presented id");
        assert!(outcome.issue_cookie);
        assert_eq!(
            reads(&fake, &s.address(&keys, &ID)),
            2,
            "read, then read again after the recheck delay"
        );
        // The new session was written before the answer.
        let stored = fake.state().strings.get(&s.address(&keys, &outcome.id)).cloned();
        let opened = stored.map(|v| keys.open(&outcome.id, &s.address(&keys, &outcome.id), &v));
        assert!(
            matches!(opened, Some(Ok((Entry::Live(_), _)))),
            "the new session is in Redis"
        );
    }

    #[test]
    fn a_session_redis_holds_is_valid_and_a_garbage_value_is_no_session() {
        let fake = FakeRedis::start();
        let s = shared(&fake, None, Duration::from_secs(60));
        let keys = SealKeys::derive(b"secret");
        let now = now_ms();
        let address = s.address(&keys, &ID);
        let rec = Record::new(Handle([3; 8]), now, &IP, UA.fingerprint());
        let mut rng = sessions_core::primitives::id::RandomPool::new();
        let sealed = keys
            .seal(&ID, &address, &Entry::Live(rec), b"", &mut rng)
            .expect("random bytes");
        fake.state().strings.insert(address.clone(), sealed);
        let outcome = resolved(block_on(s.lookup(&lookup(&keys, now))).expect("answered"));
        assert_eq!((outcome.status, outcome.id), (Status::Valid, ID));

        // A value that does not open (written by someone else, or tampered
        // with) is removed and the cookie answered as unknown.
        fake.state()
            .strings
            .insert(address.clone(), b"not a sealed record".to_vec());
        let outcome = resolved(block_on(s.lookup(&lookup(&keys, now))).expect("answered"));
        assert_eq!(outcome.status, Status::Unknown);
        assert!(
            !fake.state().strings.contains_key(&address),
            "the garbage value is gone"
        );
    }
}
