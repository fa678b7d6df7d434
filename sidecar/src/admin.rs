//! The admin endpoint's jobs: a user's index of logged-in sessions, listed
//! and revoked.

use sessions_core::engine::{AtLimit, PerUser};
use sessions_core::model::keys::SealKeys;
use sessions_core::model::record::{Entry, Record};
use sessions_core::primitives::id::{Handle, SessionId};

/// How long `keep_limit` waits for the login to reach Redis.
const LIMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
use sessions_core::stores::redis::view::Write;

use crate::exec::Failure;
use crate::scripts::INDEX;
use crate::state::{now_ms, Sidecar};
use crate::Answer;

impl Sidecar {
    /// Lists a logged-in session (`rec`) in its user's index (session key ->
    /// sealed summary, for the admin endpoint) and points its handle at
    /// that index; drops from the index the ids the same writes retire (a
    /// renewal's old id: its grace pointer leads to this key anyway). The
    /// index lives as long as the longest session in it.
    pub(crate) fn index(
        &self,
        keys: &SealKeys,
        rec: &Record,
        addr: &[u8],
        writes: &[Write],
        ttl: Option<u64>,
        cmds: &mut Vec<(redis::Cmd, bool)>,
    ) -> Result<(), Failure> {
        let Some(user) = rec.user() else {
            return Ok(());
        };
        let idx = self.user_index(keys, user);
        let summary = keys
            .seal_summary(addr, rec, &mut self.rng.borrow_mut())
            .map_err(|_| Failure::NoRandom)?;
        let mut c = redis::cmd("EVAL");
        c.arg(INDEX)
            .arg(1)
            .arg(&idx)
            .arg(addr)
            .arg(summary)
            .arg(ttl.unwrap_or(0));
        for w in writes {
            if let Write::Put {
                id,
                entry: Entry::Grace { .. },
                ..
            } = w
            {
                c.arg(self.address(keys, id));
            }
        }
        cmds.push((c, false));
        let mut pointer = redis::cmd("SET");
        pointer.arg(self.handle_pointer(keys, &rec.handle)).arg(&idx);
        if let Some(ttl) = ttl {
            pointer.arg("PX").arg(ttl);
        }
        cmds.push((pointer, false));
        Ok(())
    }

    pub(crate) fn user_index(&self, keys: &SealKeys, user: &[u8]) -> Vec<u8> {
        let mut idx = Vec::with_capacity(self.prefix.len() + 48);
        keys.user_index(&self.prefix, user, &mut idx);
        idx
    }

    pub(crate) fn handle_pointer(&self, keys: &SealKeys, handle: &Handle) -> Vec<u8> {
        let mut p = Vec::with_capacity(self.prefix.len() + 50);
        keys.handle_pointer(&self.prefix, handle, &mut p);
        p
    }

    /// The sessions an index lists that still exist, with their summaries;
    /// entries whose session ended are dropped from the index on the way.
    pub(crate) async fn indexed(
        &self,
        keys: &SealKeys,
        idx: &[u8],
    ) -> Result<Vec<(Vec<u8>, Record)>, Failure> {
        let entries: Vec<(Vec<u8>, Vec<u8>)> = self.repaired(redis::cmd("HGETALL").arg(idx), idx).await?;
        let probes: Vec<redis::Cmd> = entries
            .iter()
            .map(|(addr, _)| redis::cmd("EXISTS").arg(addr).clone())
            .collect();
        let exists: Vec<bool> = self.run_each(0, &probes).await?;
        let mut live = Vec::with_capacity(entries.len());
        let mut gone = redis::cmd("HDEL");
        gone.arg(idx);
        let mut any_gone = false;
        for ((addr, summary), exists) in entries.into_iter().zip(exists) {
            if !exists {
                gone.arg(&addr);
                any_gone = true;
                continue;
            }
            // A summary that does not open (another secret's) is not listed.
            if let Ok(rec) = keys.open_summary(&addr, &summary) {
                live.push((addr, rec));
            }
        }
        if any_gone {
            let _: usize = self.run(0, &gone).await?;
        }
        Ok(live)
    }

    pub(crate) async fn list(&self, keys: &SealKeys, user: Vec<u8>) -> Result<Answer, Failure> {
        let idx = self.user_index(keys, &user);
        // What this nginx has not sent yet counts as done. The journal is
        // read first: a write it drops meanwhile was acknowledged, so Redis
        // has it when the index is read (the other order misses it).
        let (live, gone) = self
            .in_journal(|j| j.sessions(|r| r.user() == Some(&user[..]), now_ms()))
            .unwrap_or_default();
        let found = self.indexed(keys, &idx).await?;
        let live: Vec<(Vec<u8>, Record)> = live.iter().map(|(id, r)| (self.address(keys, id), *r)).collect();
        let gone: Vec<Vec<u8>> = gone.iter().map(|id| self.address(keys, id)).collect();
        let mut sessions: Vec<Record> = found
            .into_iter()
            .filter(|(a, _)| !gone.contains(a) && !live.iter().any(|(l, _)| l == a))
            .map(|(_, rec)| rec)
            .collect();
        sessions.extend(live.into_iter().map(|(_, rec)| rec));
        Ok(Answer::Listed { user, sessions })
    }

    /// Ends every session of `user` kept under `keys`: marks the keys its
    /// index lists revoked (`mark_ended`), then deletes the index. Returns
    /// how many sessions existed.
    pub(crate) async fn revoke(&self, keys: &SealKeys, user: &[u8]) -> Result<Answer, Failure> {
        let idx = self.user_index(keys, user);
        let ended = self
            .in_journal(|j| j.revoke(|r| r.user() == Some(user), keys.tag()))
            .unwrap_or_default();
        if !ended.is_empty() {
            self.flush.notify_one();
        }
        let members: Vec<Vec<u8>> = self.repaired(redis::cmd("HKEYS").arg(&idx), &idx).await?;
        // One key a command: in a cluster they live on different nodes.
        let marks = members
            .iter()
            .map(|m| self.mark_ended(keys, m))
            .collect::<Result<Vec<_>, _>>()?;
        let deleted: Vec<Option<String>> = self.run_each(0, &marks).await?;
        let _: usize = self.run(0, redis::cmd("DEL").arg(&idx)).await?;
        // Each session counts once: one deleted here, or one this nginx
        // still had pending, whether Redis held it yet or not (the flusher
        // may have deleted it first: it was ended above).
        let ended: Vec<Vec<u8>> = ended.iter().map(|id| self.address(keys, id)).collect();
        let listed = members
            .iter()
            .zip(&deleted)
            .filter(|(m, d)| d.is_some() || ended.contains(m))
            .count();
        let unlisted = ended.iter().filter(|a| !members.contains(a)).count();
        self.in_journal(|j| j.bump());
        Ok(Answer::Revoked(listed + unlisted))
    }

    /// Replaces the record at `address`, if there is one, with the mark that
    /// its session was revoked (`SealKeys::seal_ended`), expiring when the
    /// record would have.
    fn mark_ended(&self, keys: &SealKeys, address: &[u8]) -> Result<redis::Cmd, Failure> {
        let mark = keys
            .seal_ended(address, &mut self.rng.borrow_mut())
            .map_err(|_| Failure::NoRandom)?;
        let mut c = redis::cmd("SET");
        c.arg(address).arg(mark).arg("XX").arg("KEEPTTL");
        Ok(c)
    }

    /// Ends the logged-in session whose handle is `handle`, found through
    /// its pointer and its user's index; with `user`, only in that user's
    /// index (a user ending one of their own sessions).
    pub(crate) async fn revoke_handle(
        &self,
        keys: &SealKeys,
        handle: &Handle,
        user: Option<&[u8]>,
    ) -> Result<Answer, Failure> {
        let pending = self
            .in_journal(|j| {
                j.revoke(
                    |r| r.handle == *handle && r.user().is_some() && user.is_none_or(|u| r.user() == Some(u)),
                    keys.tag(),
                )
            })
            .unwrap_or_default();
        if !pending.is_empty() {
            self.flush.notify_one();
        }
        let pointer = self.handle_pointer(keys, handle);
        let idx: Option<Vec<u8>> = match user {
            Some(user) => Some(self.user_index(keys, user)),
            None => self.repaired(redis::cmd("GET").arg(&pointer), &pointer).await?,
        };
        let Some(idx) = idx else {
            self.in_journal(|j| j.bump());
            return Ok(Answer::RevokedOne(!pending.is_empty()));
        };
        let revoked = self.end_indexed(keys, &idx, |rec| rec.handle == *handle).await?;
        if revoked > 0 {
            let _: usize = self.run(0, redis::cmd("DEL").arg(&pointer)).await?;
        }
        self.in_journal(|j| j.bump());
        Ok(Answer::RevokedOne(revoked > 0 || !pending.is_empty()))
    }

    /// Ends every session of `user` but the one whose handle is `except`
    /// (`sessions_self`, `X-Session-Logout-Others`). Returns how many.
    pub(crate) async fn revoke_others(
        &self,
        keys: &SealKeys,
        user: &[u8],
        except: &Handle,
    ) -> Result<Answer, Failure> {
        let pending = self
            .in_journal(|j| j.revoke(|r| r.user() == Some(user) && r.handle != *except, keys.tag()))
            .unwrap_or_default();
        if !pending.is_empty() {
            self.flush.notify_one();
        }
        let idx = self.user_index(keys, user);
        let revoked = self.end_indexed(keys, &idx, |rec| rec.handle != *except).await?;
        self.in_journal(|j| j.bump());
        Ok(Answer::Revoked(revoked + pending.len()))
    }

    /// `sessions_max_per_user` after `id` logged in as `user`. First the
    /// login reaches Redis (it waits in the journal until acknowledged):
    /// then every nginx counting after its own login sees every login
    /// acknowledged before, so the last to count sees them all and, the
    /// order being the same everywhere (oldest first, then by address),
    /// the user ends within the limit once the logins settle.
    pub(crate) async fn keep_limit(
        &self,
        keys: &SealKeys,
        user: &[u8],
        id: &SessionId,
        limit: PerUser,
    ) -> Result<Answer, Failure> {
        let waited = std::time::Instant::now();
        while self
            .in_journal(|j| j.get(id, now_ms()).is_some())
            .unwrap_or(false)
        {
            if waited.elapsed() > LIMIT_WAIT {
                return Err(Failure::Down("the login did not reach Redis in time".into()));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let idx = self.user_index(keys, user);
        let mut all: Vec<(Vec<u8>, Record)> = self.indexed(keys, &idx).await?;
        // This nginx's logins of the user not in Redis yet count too.
        let (pending, _) = self
            .in_journal(|j| j.sessions(|r| r.user() == Some(user), now_ms()))
            .unwrap_or_default();
        let mut waiting = Vec::new();
        for (pid, rec) in pending {
            let addr = self.address(keys, &pid);
            if !all.iter().any(|(a, _)| *a == addr) {
                waiting.push(addr.clone());
                all.push((addr, rec));
            }
        }
        let (mut ended, mut refused) = (0, 0);
        for (addr, rec) in limit.excess(all, |a| a.clone()) {
            // Counted only by the count that ended it: another login's
            // count may have ended the same session meanwhile.
            let ended_here = if waiting.contains(&addr) {
                let gone = self.in_journal(|j| j.revoke(|r| r.handle == rec.handle, keys.tag()));
                self.flush.notify_one();
                gone.is_some_and(|g| !g.is_empty())
            } else {
                let mut mark = self.mark_ended(keys, &addr)?;
                mark.arg("GET");
                let was: Option<Vec<u8>> = self.run(0, &mark).await?;
                let _: usize = self.run(0, redis::cmd("HDEL").arg(&idx).arg(&addr)).await?;
                was.is_some_and(|v| !keys.is_ended(&addr, &v))
            };
            if !ended_here {
                continue;
            }
            // With `refuse` those ended are the newest: logins refused
            // (this one, or one another job counted first).
            if limit.at_limit == AtLimit::Refuse {
                refused += 1;
            } else {
                ended += 1;
            }
        }
        self.in_journal(|j| j.bump());
        Ok(Answer::Limited { ended, refused })
    }

    /// Marks ended the sessions listed in index `idx` that `which` selects,
    /// and drops them from it. Returns how many were still there.
    async fn end_indexed(
        &self,
        keys: &SealKeys,
        idx: &[u8],
        which: impl Fn(&Record) -> bool,
    ) -> Result<usize, Failure> {
        let mut revoked = 0;
        for (addr, rec) in self.indexed(keys, idx).await? {
            if which(&rec) {
                let mark = self.mark_ended(keys, &addr)?;
                revoked += usize::from(self.run::<Option<String>>(0, &mark).await?.is_some());
                let _: usize = self.run(0, redis::cmd("HDEL").arg(idx).arg(&addr)).await?;
            }
        }
        Ok(revoked)
    }
}
