//! The near cache's tracking connection: Redis's invalidations (RESP3
//! client-side caching) keep the worker's near cache coherent; a ping and
//! the master's address tell when that connection was lost.

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::RedisError;
use sessions_core::model::keys::SealKeys;
use sessions_core::model::record::Record;
use sessions_core::stores::redis::near_cache::{NearCache, Ticket};
use sessions_core::SessionId;
use tokio::sync::mpsc;

use crate::state::Sidecar;

/// How often the near cache's tracking connection is pinged (and the
/// sentinels' master compared), so that a silent loss is seen.
pub(crate) const TRACK_TICK: Duration = Duration::from_millis(500);

/// How often, at most, the tracking connection's master is compared with
/// the data connections' (Sentinel).
pub(crate) const TRACK_CHECK: Duration = Duration::from_millis(20);

/// Wait before the tracking connection is opened again after a failure,
/// doubling up to `TRACK_RETRY_MAX`.
pub(crate) const TRACK_RETRY: Duration = Duration::from_millis(200);

pub(crate) const TRACK_RETRY_MAX: Duration = Duration::from_secs(5);

impl Sidecar {
    /// GET on the tracking connection, so that Redis tracks the key for
    /// this worker. `None` without one, or when it failed (the caller then
    /// reads as usual, and keeps nothing).
    pub(crate) async fn tracked_get(&self, addr: &[u8]) -> Option<Option<Vec<u8>>> {
        let mut c = self.tracking_conn.borrow().clone()?;
        redis::cmd("GET").arg(addr).query_async(&mut c).await.ok()
    }

    pub(crate) fn near_ticket(&self) -> Option<Ticket> {
        let near = self.near.as_ref()?;
        near.lock().unwrap_or_else(|e| e.into_inner()).ticket()
    }

    /// Keeps a session read from Redis (and not changed by the request
    /// that read it) in the near cache, unless Redis changed it since.
    pub(crate) fn near_keep(
        &self,
        ticket: Ticket,
        generation: u64,
        id: SessionId,
        keys: &SealKeys,
        rec: Record,
        data: &[u8],
    ) {
        if let Some(near) = &self.near {
            let addr = self.address(keys, &id);
            near.lock()
                .unwrap_or_else(|e| e.into_inner())
                .keep(ticket, generation, id, &addr, rec, data);
        }
    }

    /// Keeps the connection(s) on which Redis pushes changes, and applies
    /// the pushes to the near cache:
    /// - standalone: one connection in default mode
    ///   (`CLIENT TRACKING ON`): Redis pushes changes of the keys read on it,
    ///   and the reads of sessions that may be kept go over it;
    /// - Cluster: one connection per master in broadcast mode (`BCAST
    ///   PREFIX`), each pushing every change under the prefix there, since
    ///   reads go through the cluster connection.
    ///
    /// The cache works only while they are all up, and starts empty each
    /// time they come up: pushes may have been lost.
    pub(crate) async fn track(&self) {
        let Some(near) = self.near.clone() else { return };
        // With Sentinel, no near cache: during a failover a worker may still
        // read the demoted master, and a copy kept then could outlive a
        // logout written to the new one (`make chaos` lost one that way).
        if self.backend.is_sentinel() {
            return;
        }
        let lock = || near.lock().unwrap_or_else(|e| e.into_inner());
        let mut delay = TRACK_RETRY;
        loop {
            let (tx, mut pushes) = mpsc::unbounded_channel();
            let opened = self.open_tracking(tx).await;
            let (mut conns, masters) = match opened {
                Ok(t) => t,
                Err(why) => {
                    if let Some(why) = why {
                        self.report(format!("{why} (the near cache stays off)"));
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(TRACK_RETRY_MAX);
                    continue;
                }
            };
            delay = TRACK_RETRY;
            if masters.is_none() {
                *self.tracking_conn.borrow_mut() = conns.first().cloned();
            }
            lock().enable();
            let mut pinged = std::time::Instant::now();
            loop {
                match tokio::time::timeout(TRACK_CHECK, pushes.recv()).await {
                    Ok(Some(p)) => {
                        if !apply_push(&mut lock(), &p) {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {}
                }
                if pinged.elapsed() >= TRACK_TICK {
                    pinged = std::time::Instant::now();
                    if !self.tracking_alive(&mut conns, masters.as_ref()).await {
                        break;
                    }
                }
            }
            *self.tracking_conn.borrow_mut() = None;
            lock().disable();
            // Most often Redis went away: new sessions wait for Redis again
            // (`Client::reached`) until it takes a write, rather than being
            // kept until the next request or flush finds the outage.
            self.reached.store(false, Ordering::Relaxed);
            tokio::time::sleep(TRACK_RETRY).await;
        }
    }

    /// Opens the tracking connection(s) and turns tracking on: the
    /// connections, and with Cluster the masters. An error worth logging
    /// (a refusal) comes back as `Some`.
    #[allow(clippy::type_complexity)]
    pub(crate) async fn open_tracking(
        &self,
        tx: mpsc::UnboundedSender<redis::PushInfo>,
    ) -> Result<(Vec<redis::aio::MultiplexedConnection>, Option<Vec<(String, u16)>>), Option<String>> {
        let refusal = |e: RedisError| (!e.is_io_error()).then(|| e.to_string());
        if let Some(masters) = self.backend.cluster_masters().await.map_err(|_| None)? {
            let mut conns = Vec::with_capacity(masters.len());
            for m in &masters {
                let mut c = self
                    .backend
                    .open_node_tracking(m, tx.clone())
                    .await
                    .map_err(|_| None)?;
                redis::cmd("CLIENT")
                    .arg("TRACKING")
                    .arg("ON")
                    .arg("BCAST")
                    .arg("PREFIX")
                    .arg(&self.prefix)
                    .query_async::<()>(&mut c)
                    .await
                    .map_err(refusal)?;
                conns.push(c);
            }
            return Ok((conns, Some(masters)));
        }
        let Some(mut c) = self.backend.open_tracking(tx).await.map_err(|_| None)? else {
            return Err(None);
        };
        // Default mode: Redis pushes changes of the keys read on this
        // connection only (not every write under the prefix, which would
        // cost every new session a push to every worker).
        redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .query_async::<()>(&mut c)
            .await
            .map_err(refusal)?;
        Ok((vec![c], None))
    }

    /// Whether every tracking connection answers, and with Cluster the
    /// masters are still those it tracks.
    pub(crate) async fn tracking_alive(
        &self,
        conns: &mut [redis::aio::MultiplexedConnection],
        masters: Option<&Vec<(String, u16)>>,
    ) -> bool {
        for c in conns.iter_mut() {
            if redis::cmd("PING").query_async::<()>(c).await.is_err() {
                return false;
            }
        }
        match masters {
            Some(m) => matches!(self.backend.cluster_masters().await, Ok(Some(now)) if now == *m),
            None => true,
        }
    }
}

/// Applies one message Redis pushed on a tracking connection to the near
/// cache; whether tracking goes on (not after a disconnection). Pushes are
/// applied in the order they arrive, each before any read that follows it
/// on that connection is answered, so a copy read before a change is never
/// kept after it (`NearCache::keep` refuses a ticket older than the change).
pub(crate) fn apply_push(near: &mut NearCache, p: &redis::PushInfo) -> bool {
    match p.kind {
        redis::PushKind::Invalidate => {
            match p.data.first() {
                Some(redis::Value::Array(keys)) => {
                    for k in keys {
                        if let redis::Value::BulkString(k) = k {
                            near.invalidate(k);
                        }
                    }
                }
                // A flushed database, or anything unexpected.
                _ => near.flush(),
            }
            true
        }
        redis::PushKind::Disconnection => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use sessions_core::primitives::id::Handle;

    use super::*;

    fn invalidate(keys: &[&[u8]]) -> redis::PushInfo {
        redis::PushInfo {
            kind: redis::PushKind::Invalidate,
            data: vec![redis::Value::Array(
                keys.iter()
                    .map(|k| redis::Value::BulkString(k.to_vec()))
                    .collect(),
            )],
        }
    }

    fn keep(near: &mut NearCache, ticket: Ticket, n: u8) -> bool {
        let rec = Record::new(Handle([n; 8]), 1, &[127, 0, 0, 1], 7);
        near.keep(ticket, 0, SessionId([n; 16]), &[n], rec, b"")
    }

    #[test]
    fn a_copy_read_before_a_change_is_not_kept_after_it() {
        let mut near = NearCache::new(16);
        near.enable();
        let before = near.ticket().expect("enabled");
        assert!(apply_push(&mut near, &invalidate(&[&[1]])));
        // Read before the change to key 1: not kept; key 2 did not change.
        assert!(!keep(&mut near, before, 1));
        assert!(keep(&mut near, before, 2));
        // Read after it: kept, until the next change of that key.
        let after = near.ticket().expect("enabled");
        assert!(keep(&mut near, after, 1));
        assert!(near.get(&SessionId([1; 16])).is_some());
        assert!(apply_push(&mut near, &invalidate(&[&[3], &[1]])));
        assert!(near.get(&SessionId([1; 16])).is_none());
        assert!(near.get(&SessionId([2; 16])).is_some());
    }

    #[test]
    fn a_flush_or_an_unknown_invalidation_empties_the_cache() {
        let mut near = NearCache::new(16);
        near.enable();
        let t = near.ticket().expect("enabled");
        assert!(keep(&mut near, t, 1) && keep(&mut near, t, 2));
        let flushed = redis::PushInfo {
            kind: redis::PushKind::Invalidate,
            data: vec![redis::Value::Nil],
        };
        assert!(apply_push(&mut near, &flushed));
        assert!(near.is_empty());
        // Copies read before the flush are refused too.
        assert!(!keep(&mut near, t, 1));
    }

    #[test]
    fn a_disconnection_ends_tracking_and_other_pushes_change_nothing() {
        let mut near = NearCache::new(16);
        near.enable();
        let t = near.ticket().expect("enabled");
        assert!(keep(&mut near, t, 1));
        let message = redis::PushInfo {
            kind: redis::PushKind::Message,
            data: vec![redis::Value::BulkString(vec![1])],
        };
        assert!(apply_push(&mut near, &message));
        assert_eq!(near.len(), 1);
        let gone = redis::PushInfo {
            kind: redis::PushKind::Disconnection,
            data: vec![],
        };
        assert!(!apply_push(&mut near, &gone));
    }
}
