//! Records of ended cookie-store sessions shared through Redis: sealed
//! into a sorted set and a stream by the instance that made them, followed
//! by every other.

use std::time::Duration;

use sessions_core::model::keys::SealKeys;
use sessions_core::stores::zone::revoked;

use crate::exec::Failure;
use crate::state::{now_ms, Sidecar};

/// How often every worker reads the cookie-store records other instances
/// shared (`follow_records`).
pub(crate) const RECORDS_TICK: Duration = Duration::from_millis(50);

/// How long the log of new records keeps each (a stream trimmed by age);
/// a reader that missed more than half of that reads them all again.
pub(crate) const RECORDS_LOG_KEPT_MS: u64 = 600_000;

/// Most log entries read at once.
pub(crate) const RECORDS_BATCH: usize = 512;

impl Sidecar {
    /// The keys of the shared records: a sorted set of every record in
    /// force (score: its end), and a stream of them as they are made.
    pub(crate) fn record_keys(&self) -> (Vec<u8>, Vec<u8>) {
        let key = |name: &[u8]| [self.prefix.as_slice(), name].concat();
        (key(b"revoked"), key(b"revoked-log"))
    }

    /// The commands that share one cookie-store record with every instance.
    pub(crate) fn share_record(
        &self,
        keys: &SealKeys,
        r: &revoked::SharedRecord,
        cmds: &mut Vec<(redis::Cmd, bool)>,
    ) -> Result<(), Failure> {
        let member = keys
            .seal_shared(r, &mut self.rng.borrow_mut())
            .map_err(|_| Failure::NoRandom)?;
        let (all, log) = self.record_keys();
        let now = now_ms();
        let score = if r.until == u64::MAX {
            "+inf".to_string()
        } else {
            r.until.to_string()
        };
        let mut add = redis::cmd("ZADD");
        add.arg(&all).arg(score).arg(&member);
        let mut trim = redis::cmd("ZREMRANGEBYSCORE");
        trim.arg(&all).arg("-inf").arg(format!("({now}"));
        let mut note = redis::cmd("XADD");
        note.arg(&log)
            .arg("MINID")
            .arg("~")
            .arg(now.saturating_sub(RECORDS_LOG_KEPT_MS))
            .arg("*")
            .arg("m")
            .arg(&member);
        cmds.extend([(add, false), (trim, false), (note, false)]);
        Ok(())
    }

    /// Copies the records other instances share into this nginx's zone:
    /// all of them at start and after any failure (some may have been
    /// missed), then the log's new entries every `RECORDS_TICK`.
    pub(crate) async fn follow_records(&self) {
        let Some(sink) = self.records.clone() else { return };
        let mut last: Option<(Vec<u8>, std::time::Instant)> = None;
        loop {
            tokio::time::sleep(RECORDS_TICK).await;
            let fresh = last
                .as_ref()
                .filter(|(_, at)| at.elapsed() < Duration::from_millis(RECORDS_LOG_KEPT_MS / 2));
            let read = match fresh {
                Some((id, _)) => self.records_after(id).await,
                None => self.records_all().await,
            };
            match read {
                Ok((members, tail)) => {
                    let known = self.known.borrow();
                    let recs: Vec<revoked::SharedRecord> = members
                        .iter()
                        .filter_map(|m| known.iter().find_map(|k| k.open_shared(m)))
                        .collect();
                    drop(known);
                    if !recs.is_empty() {
                        sink.apply(&recs, now_ms());
                    }
                    let tail = tail.or_else(|| fresh.map(|(id, _)| id.clone()));
                    last = tail.map(|id| (id, std::time::Instant::now()));
                }
                Err(e) => {
                    last = None;
                    if let Failure::Refused(why) | Failure::WrongType(why) = e {
                        self.report(why);
                    }
                }
            }
        }
    }

    /// Every record in force, and the log's last id (read first: entries
    /// after it are read next time, some perhaps twice, which is harmless).
    pub(crate) async fn records_all(&self) -> Result<(Vec<Vec<u8>>, Option<Vec<u8>>), Failure> {
        let (all, log) = self.record_keys();
        let tail: redis::Value = self
            .run(
                0,
                redis::cmd("XREVRANGE")
                    .arg(&log)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1),
            )
            .await?;
        let tail = log_entries(&tail)
            .pop()
            .map(|(id, _)| id)
            .unwrap_or_else(|| b"0-0".to_vec());
        let members: Vec<Vec<u8>> = self
            .run(0, redis::cmd("ZRANGEBYSCORE").arg(&all).arg(now_ms()).arg("+inf"))
            .await?;
        Ok((members, Some(tail)))
    }

    /// The log's entries after `id`, and the last one's id.
    pub(crate) async fn records_after(&self, id: &[u8]) -> Result<(Vec<Vec<u8>>, Option<Vec<u8>>), Failure> {
        let (_, log) = self.record_keys();
        let start = [b"(".as_slice(), id].concat();
        let reply: redis::Value = self
            .run(
                0,
                redis::cmd("XRANGE")
                    .arg(&log)
                    .arg(start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(RECORDS_BATCH),
            )
            .await?;
        let entries = log_entries(&reply);
        let tail = entries.last().map(|(id, _)| id.clone());
        Ok((entries.into_iter().filter_map(|(_, m)| m).collect(), tail))
    }
}

/// The connection and command timeouts in ms, defaults applied.
/// The entries of an XRANGE or XREVRANGE answer: each id, and its field
/// `m` if it has one. Anything else in the answer is skipped, not trusted.
pub(crate) fn log_entries(v: &redis::Value) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    use redis::Value;
    let bytes = |v: &Value| match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        _ => None,
    };
    let Value::Array(entries) = v else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| match e {
            Value::Array(parts) if parts.len() == 2 => {
                let id = bytes(&parts[0])?;
                let member = match &parts[1] {
                    Value::Array(f) => f
                        .chunks_exact(2)
                        .find(|kv| bytes(&kv[0]).as_deref() == Some(b"m"))
                        .and_then(|kv| bytes(&kv[1])),
                    Value::Map(f) => f
                        .iter()
                        .find(|(k, _)| bytes(k).as_deref() == Some(b"m"))
                        .and_then(|(_, v)| bytes(v)),
                    _ => None,
                };
                Some((id, member))
            }
            _ => None,
        })
        .collect()
}
