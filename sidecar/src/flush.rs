//! Writes: kept in the shared journal until Redis acknowledges them, sent
//! at once, and flushed again (by any worker) when they failed or their
//! lease ran out.

use std::sync::atomic::Ordering;
use std::time::Duration;

use sessions_core::model::keys::SealKeys;
use sessions_core::model::record::Entry;
use sessions_core::stores::redis::journal::Journal;
use sessions_core::stores::redis::view::{Write, EXPIRED_KEPT};

use crate::exec::Failure;
use crate::lookup::{swap, Read, MOVED};
use crate::state::{now_ms, Sidecar};
use crate::{Answer, Job, Reply};

/// How long a journal write under Sentinel waits for a replica to have it.
const REPLICA_WAIT: Duration = Duration::from_millis(250);

/// How often every worker looks for journal writes due again (retries,
/// and those a killed worker held).
pub(crate) const FLUSH_TICK: Duration = Duration::from_millis(200);

/// Writes sent in one pipeline.
pub(crate) const FLUSH_BATCH: usize = 64;

impl Sidecar {
    /// Runs `f` over the journal, if this worker has one.
    pub(crate) fn in_journal<R>(&self, f: impl FnOnce(&mut Journal<'_>) -> R) -> Option<R> {
        let j = self.journal.as_ref()?;
        let mut f = Some(f);
        let mut out = None;
        j.with(&mut |jr| {
            if let Some(f) = f.take() {
                out = Some(f(jr));
            }
        });
        out
    }

    /// Keeps `writes` in the journal and wakes the flusher; `false` when
    /// there is no journal or no room in it.
    pub(crate) fn keep(&self, writes: &[Write], keys: &SealKeys, now: u64) -> bool {
        if writes.is_empty() {
            return true;
        }
        match self.in_journal(|j| j.record(writes, keys.tag(), now)) {
            Some(Ok(())) => {
                self.flush.notify_one();
                true
            }
            Some(Err(_)) => {
                self.full.set(true);
                false
            }
            None => false,
        }
    }

    /// Remembers the keys a job carries, so that the flusher can seal the
    /// journal's writes made with them (an adopted `random` secret).
    pub(crate) fn learn(&self, job: &Job) {
        match job {
            Job::Lookup(l) => {
                self.know(&l.keys.write);
                self.know(&l.keys.read);
            }
            Job::Write { keys, .. }
            | Job::List { keys, .. }
            | Job::Revoke { keys, .. }
            | Job::RevokeHandle { keys, .. }
            | Job::RevokeOthers { keys, .. }
            | Job::KeepLimit { keys, .. } => self.know(keys),
            Job::Adopt | Job::Flush | Job::Oidc { .. } => {}
        }
    }

    /// Keeps `keys` among those the flusher seals with, once.
    pub(crate) fn know(&self, keys: &SealKeys) {
        let mut known = self.known.borrow_mut();
        if !known.iter().any(|k| k.tag() == keys.tag()) {
            known.push(keys.clone());
        }
    }

    /// Sends the journal's writes as they come, and again after failures.
    pub(crate) async fn flusher(&self) {
        if self.journal.is_none() {
            return;
        }
        loop {
            while self.flush_batch().await {}
            // Idle from here: a write recorded after this store wakes it
            // (`Client::flush`); one recorded before it is claimed by the
            // look that follows.
            self.flusher_idle.store(true, Ordering::SeqCst);
            if self.flush_batch().await {
                self.flusher_idle.store(false, Ordering::SeqCst);
                continue;
            }
            let _ = tokio::time::timeout(FLUSH_TICK, self.flush.notified()).await;
            self.flusher_idle.store(false, Ordering::SeqCst);
        }
    }

    /// Claims a batch of due writes and sends it; whether to go on at once.
    pub(crate) async fn flush_batch(&self) -> bool {
        let tags: Vec<u64> = self.known.borrow().iter().map(SealKeys::tag).collect();
        let lease = self.lease.as_millis() as u64;
        let claimed = self
            .in_journal(|j| j.claim(now_ms(), lease, |t| tags.contains(&t), FLUSH_BATCH))
            .unwrap_or_default();
        if claimed.is_empty() {
            return false;
        }
        let mut all_ok = true;
        let mut groups: Vec<u64> = claimed.iter().map(|c| c.tag).collect();
        groups.sort_unstable();
        groups.dedup();
        for tag in groups {
            let Some(keys) = self.known.borrow().iter().find(|k| k.tag() == tag).cloned() else {
                continue;
            };
            let batch: Vec<&sessions_core::stores::redis::journal::Claimed> =
                claimed.iter().filter(|c| c.tag == tag).collect();
            let writes: Vec<Write> = batch.iter().map(|c| c.write.clone()).collect();
            // Ends well before the lease, so no other flusher sends them meanwhile.
            let sent = tokio::time::timeout(self.lease / 2, self.write_replicated(&writes, &keys)).await;
            let ok = matches!(sent, Ok(Ok(true)));
            if let Ok(Err(Failure::Refused(why) | Failure::WrongType(why))) = &sent {
                self.report(why.clone());
            }
            // New sessions are kept here only while Redis was last reached
            // (`Client::reached`): the flusher's outcome says so too, as a
            // request's would, and an outage it meets first is logged.
            if !ok {
                self.reached.store(false, Ordering::Relaxed);
            }
            let down = match &sent {
                Ok(Ok(_)) => Some(None),
                Ok(Err(Failure::Down(why))) => Some(Some(why.clone())),
                Err(_) => Some(Some("timed out".to_string())),
                Ok(Err(_)) => None,
            };
            if let Some(transition) = down.and_then(|d| self.transition(d)) {
                self.out.send(Reply {
                    token: 0,
                    answer: Answer::Written,
                    transition: Some(transition),
                    refused: None,
                    full: false,
                });
            }
            all_ok &= ok;
            let now = now_ms();
            self.in_journal(|j| {
                for c in &batch {
                    j.settle(&c.id, c.seq, ok, now);
                }
            });
        }
        all_ok
    }

    /// `write` for the journal's writes, which leave it on success: under
    /// Sentinel only once a replica has them too. A failover promotes a
    /// replica; what the old master acknowledged and never sent it would
    /// be lost with the old master, so it stays in the journal, sent again
    /// to whichever master there is next. A master without replicas, of
    /// which the sentinels know none either, has nobody to wait for.
    async fn write_replicated(&self, writes: &[Write], keys: &SealKeys) -> Result<bool, Failure> {
        if !self.backend.is_sentinel() {
            return self.write(writes, keys, None, &[]).await;
        }
        self.write_over(writes, keys, None, &[], Some(Self::replica_wait()))
            .await
    }

    /// `WAIT 1 <ms>` after the writes, on their connection.
    fn replica_wait() -> redis::Cmd {
        redis::cmd("WAIT")
            .arg(1)
            .arg(REPLICA_WAIT.as_millis() as u64)
            .clone()
    }

    /// Whether the master connection `hint` leads to has replicas (`ROLE`);
    /// anything but a master's answer counts as having them.
    async fn has_replicas(&self, hint: usize) -> Result<bool, Failure> {
        let role: redis::Value = self.run(hint, &redis::cmd("ROLE")).await?;
        Ok(match role {
            redis::Value::Array(parts) => !matches!(
                parts.as_slice(),
                [redis::Value::BulkString(kind), _, redis::Value::Array(replicas)]
                    if kind.as_slice() == b"master" && replicas.is_empty()
            ),
            _ => true,
        })
    }

    /// Sends `writes` in one pipeline (one command at a time to a cluster,
    /// whose keys live on different nodes). `old`: keys whose copies of the
    /// written ids are deleted (secret rotation). A write to a key in `over`
    /// applies only if that key still holds the value read; `false` when
    /// one did not, and then the new sessions these writes made are removed.
    pub(crate) async fn write(
        &self,
        writes: &[Write],
        keys: &SealKeys,
        old: Option<&SealKeys>,
        over: &[Read],
    ) -> Result<bool, Failure> {
        self.write_over(writes, keys, old, over, None).await
    }

    /// `write`, with `wait` sent last in the same pipeline: a `WAIT` (see
    /// `write_replicated`), whose answer must be at least one replica, or
    /// the master must have none.
    async fn write_over(
        &self,
        writes: &[Write],
        keys: &SealKeys,
        old: Option<&SealKeys>,
        over: &[Read],
        wait: Option<redis::Cmd>,
    ) -> Result<bool, Failure> {
        if writes.is_empty() {
            return Ok(true);
        }
        // `X-Session-Logout-Others`: kept or sent unkept (a full journal),
        // it reads the user's index first; it fails the whole write, to be
        // sent again, until Redis has done it.
        for w in writes {
            if let Write::EndOthers { rec, .. } = w {
                if let Some(user) = rec.user() {
                    self.revoke_others(keys, user, &rec.handle).await?;
                }
            }
        }
        let was = |addr: &[u8]| over.iter().find(|r| r.address == addr);
        // (command, whether its answer says if it applied)
        let mut cmds: Vec<(redis::Cmd, bool)> = Vec::with_capacity(writes.len() + 1);
        let mut made = Vec::new();
        for w in writes {
            match w {
                Write::Put { id, entry, data, ttl } => {
                    let addr = self.address(keys, id);
                    let value = keys
                        .seal(id, &addr, entry, data, &mut self.rng.borrow_mut())
                        .map_err(|_| Failure::NoRandom)?;
                    match was(&addr) {
                        Some(r) => cmds.push((swap(r, &value, ttl.map_or(0, |t| t.max(1))), true)),
                        None => {
                            let mut c = redis::cmd("SET");
                            c.arg(&addr).arg(value);
                            if let Some(ttl) = ttl {
                                c.arg("PX").arg(*ttl);
                            }
                            cmds.push((c, false));
                            // A live session at a key not read: this attempt made it.
                            if matches!(entry, Entry::Live(_)) {
                                made.push(addr.clone());
                            }
                        }
                    }
                    if let Entry::Live(rec) = entry {
                        self.index(keys, rec, &addr, writes, *ttl, &mut cmds)?;
                    }
                    // The old copy says where it went, for requests that
                    // read it before this write and look again.
                    if let Some(old) = old {
                        let moved = redis::cmd("SET")
                            .arg(self.address(old, id))
                            .arg(MOVED)
                            .arg("PX")
                            .arg(EXPIRED_KEPT)
                            .clone();
                        cmds.push((moved, false));
                    }
                }
                Write::Revoked(r) => self.share_record(keys, r, &mut cmds)?,
                // Done above.
                Write::EndOthers { .. } => {}
                Write::Delete { id } => {
                    let addr = self.address(keys, id);
                    let c = match was(&addr) {
                        Some(r) => (swap(r, b"", 0), true),
                        None => (redis::cmd("DEL").arg(&addr).clone(), false),
                    };
                    cmds.push(c);
                    if let Some(old) = old {
                        cmds.push((redis::cmd("DEL").arg(self.address(old, id)).clone(), false));
                    }
                }
            }
        }
        // The session the writes leave behind: the last one stored.
        let newest = writes.iter().rev().find_map(|w| match w {
            Write::Put {
                id,
                entry: Entry::Live(_),
                ..
            } => Some(id),
            _ => None,
        });
        let hint = self.hint(newest);
        let waits = wait.is_some();
        if let Some(w) = wait {
            cmds.push((w, false));
        }
        let (cmds, checked): (Vec<redis::Cmd>, Vec<bool>) = cmds.into_iter().unzip();
        let mut answers: Vec<redis::Value> = self.run_each(hint, &cmds).await?;
        if waits {
            let replicas = answers.pop();
            let acked = matches!(replicas, Some(redis::Value::Int(n)) if n >= 1);
            if !acked && (self.backend.replicas_known() || self.has_replicas(hint).await?) {
                return Err(Failure::Down(format!(
                    "no replica acknowledged the writes within {} ms (kept, sent again)",
                    REPLICA_WAIT.as_millis()
                )));
            }
        }
        // Redis takes writes: new sessions may be kept (`Client::reached`).
        self.reached.store(true, Ordering::Relaxed);
        // A session ended: no worker's near cache answers for it again,
        // even before Redis's push reaches it.
        if writes.iter().any(|w| matches!(w, Write::Delete { .. })) {
            self.in_journal(|j| j.bump());
        }
        let applied = answers
            .iter()
            .zip(checked)
            .all(|(a, checked)| !checked || *a == redis::Value::Int(1));
        if !applied {
            for addr in &made {
                let _: usize = self.run(hint, redis::cmd("DEL").arg(addr)).await?;
            }
        }
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;
    use std::sync::Arc;

    use sessions_core::model::record::Record;
    use sessions_core::primitives::id::Handle;
    use sessions_core::SessionId;

    use super::*;
    use crate::fake::{block_on, shared, FakeRedis, MemJournal};
    use crate::state::Sidecar;
    use crate::PendingWrites;

    const ID: SessionId = SessionId([7; 16]);

    /// Session `ID` as created at `created`.
    fn put(created: u64) -> Write {
        Write::Put {
            id: ID,
            entry: Entry::Live(Record::new(Handle([7; 8]), created, &[127, 0, 0, 1], 9)),
            data: Vec::new(),
            ttl: Some(60_000),
        }
    }

    fn pending(j: &MemJournal) -> u32 {
        let mut n = 0;
        j.with(&mut |j| n = j.len());
        n
    }

    fn record(j: &MemJournal, w: Write, keys: &SealKeys) {
        j.with(&mut |j| {
            j.record(std::slice::from_ref(&w), keys.tag(), now_ms())
                .expect("room")
        });
    }

    /// When session `ID` stored in `fake` was created, if it is there.
    fn stored(fake: &FakeRedis, s: &Sidecar, keys: &SealKeys) -> Option<u64> {
        let addr = s.address(keys, &ID);
        let value = fake.state().strings.get(&addr)?.clone();
        match keys.open(&ID, &addr, &value) {
            Ok((Entry::Live(rec), _)) => Some(rec.created),
            _ => panic!("a value this module did not write"),
        }
    }

    /// A side-car over a stand-in Redis whose journal holds one write,
    /// session `ID` created at 1, under keys the side-car knows.
    fn one_write_pending() -> (FakeRedis, Arc<MemJournal>, Sidecar, SealKeys) {
        let fake = FakeRedis::start();
        let journal = MemJournal::new(16);
        let s = shared(&fake, Some(journal.clone()), Duration::from_secs(2));
        let keys = SealKeys::derive(b"secret");
        s.know(&keys);
        record(&journal, put(1), &keys);
        (fake, journal, s, keys)
    }

    #[test]
    fn a_write_leaves_the_journal_once_redis_acknowledged_it() {
        let (fake, journal, s, keys) = one_write_pending();
        block_on(async {
            assert!(s.flush_batch().await, "sent");
            assert_eq!(pending(&journal), 0);
            assert_eq!(stored(&fake, &s, &keys), Some(1));
            // Nothing left: nothing sent.
            assert!(!s.flush_batch().await);
        });
    }

    #[test]
    fn a_newer_write_made_while_an_older_one_is_sent_is_kept_and_sent_after() {
        let (fake, journal, s, keys) = one_write_pending();
        let s = Rc::new(s);
        fake.state().delay = Duration::from_millis(150);
        block_on(async {
            let flushing = tokio::task::spawn_local({
                let s = s.clone();
                async move { s.flush_batch().await }
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            // The first write is on its way; a request changes the session.
            record(&journal, put(2), &keys);
            assert!(flushing.await.expect("ran"), "the first write was acknowledged");
            // Its acknowledgement settles its own version, not the newer.
            assert_eq!(pending(&journal), 1);
            assert_eq!(stored(&fake, &s, &keys), Some(1));
            fake.state().delay = Duration::ZERO;
            assert!(s.flush_batch().await);
            assert_eq!(pending(&journal), 0);
            assert_eq!(stored(&fake, &s, &keys), Some(2));
        });
    }

    #[test]
    fn a_write_redis_refused_stays_until_redis_takes_it() {
        let (fake, journal, s, keys) = one_write_pending();
        fake.state().refuse = Some("OOM command not allowed when used memory > 'maxmemory'".into());
        block_on(async {
            assert!(!s.flush_batch().await);
            assert_eq!(pending(&journal), 1, "kept");
            assert!(!s.reached.load(Ordering::Relaxed));
            fake.state().refuse = None;
            // Due again after its backoff: now.
            journal.with(&mut |j| j.hurry());
            assert!(s.flush_batch().await);
            assert_eq!(pending(&journal), 0);
            assert_eq!(stored(&fake, &s, &keys), Some(1));
            assert!(s.reached.load(Ordering::Relaxed));
        });
    }

    #[test]
    fn writes_a_gone_worker_held_are_sent_once_their_lease_ran_out() {
        let (fake, journal, s, keys) = one_write_pending();
        // Another worker claims the write for 200 ms, then is killed.
        let mut claimed = 0;
        journal.with(&mut |j| claimed = j.claim(now_ms(), 200, |_| true, 64).len());
        assert_eq!(claimed, 1);
        block_on(async {
            assert!(!s.flush_batch().await, "leased to the other worker");
            assert_eq!(stored(&fake, &s, &keys), None);
            tokio::time::sleep(Duration::from_millis(250)).await;
            assert!(s.flush_batch().await);
            assert_eq!(pending(&journal), 0);
            assert_eq!(stored(&fake, &s, &keys), Some(1));
        });
    }

    #[test]
    fn writes_under_keys_this_worker_does_not_know_wait_for_them() {
        let fake = FakeRedis::start();
        let journal = MemJournal::new(16);
        let s = shared(&fake, Some(journal.clone()), Duration::from_secs(2));
        let keys = SealKeys::derive(b"adopted");
        record(&journal, put(1), &keys);
        block_on(async {
            assert!(!s.flush_batch().await);
            assert_eq!(pending(&journal), 1);
            // A job brings the keys (an adopted random secret).
            s.learn(&Job::Write {
                writes: Vec::new(),
                keys: keys.clone(),
            });
            assert!(s.flush_batch().await);
            assert_eq!(stored(&fake, &s, &keys), Some(1));
        });
    }
}
