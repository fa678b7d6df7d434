//! Running commands: one retry on a fresh connection when the first was
//! broken, refusals told from outages, and how a failure reaches a reply.

use std::time::Duration;

use redis::RedisError;

use crate::backend::Down;
use crate::state::Sidecar;
use crate::{Answer, Reply};

#[derive(Debug)]
pub(crate) enum Failure {
    /// Redis could not be reached, and why.
    Down(String),
    /// Redis answered a command with an error, and which.
    Refused(String),
    /// A value of another type is at the key (`WRONGTYPE`).
    WrongType(String),
    NoRandom,
}

/// How often a worker logs that Redis refuses commands.
pub(crate) const REFUSAL_REPORT: Duration = Duration::from_secs(60);

impl From<Down> for Failure {
    fn from(d: Down) -> Self {
        Failure::Down(d.0)
    }
}

impl Sidecar {
    /// Runs `cmd` on a connection picked by `hint`, once more on a fresh
    /// connection if the first was broken (a failover, a restarted server).
    pub(crate) async fn run<T: redis::FromRedisValue>(
        &self,
        hint: usize,
        cmd: &redis::Cmd,
    ) -> Result<T, Failure> {
        let mut last = None;
        for _ in 0..2 {
            let mut c = self.backend.conn(hint).await?;
            match c.run(cmd).await {
                Ok(v) => return Ok(v),
                Err(e) => last = Some(self.failed(hint, e)?),
            }
        }
        Err(Down::from(last.expect("an attempt ran")).into())
    }

    /// An error of connection `hint`: one worth another try on a fresh
    /// connection is handed back; an answer of Redis's is a refusal.
    pub(crate) fn failed(&self, hint: usize, e: RedisError) -> Result<RedisError, Failure> {
        if self.backend.broken(hint, &e) {
            Ok(e)
        } else if e.code() == Some("WRONGTYPE") {
            Err(Failure::WrongType(e.to_string()))
        } else {
            Err(Failure::Refused(e.to_string()))
        }
    }

    /// Runs a read of `key`; a value of another type there is no value,
    /// and is deleted.
    pub(crate) async fn repaired<T: redis::FromRedisValue + Default>(
        &self,
        cmd: &redis::Cmd,
        key: &[u8],
    ) -> Result<T, Failure> {
        match self.run(0, cmd).await {
            Err(Failure::WrongType(_)) => {
                let _: usize = self.run(0, redis::cmd("DEL").arg(key)).await?;
                Ok(T::default())
            }
            r => r,
        }
    }

    /// Whether a refusal should be logged now (see `REFUSAL_REPORT`).
    pub(crate) fn report_refusal(&self) -> bool {
        let now = std::time::Instant::now();
        let due = self
            .last_refusal
            .get()
            .is_none_or(|t| now.duration_since(t) >= REFUSAL_REPORT);
        if due {
            self.last_refusal.set(Some(now));
        }
        due
    }

    /// Runs `cmds` in one pipeline (one at a time on a cluster, whose keys
    /// live on different nodes), retried as `run` does; their answers.
    pub(crate) async fn run_each<T: redis::FromRedisValue>(
        &self,
        hint: usize,
        cmds: &[redis::Cmd],
    ) -> Result<Vec<T>, Failure> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let mut last = None;
        for _ in 0..2 {
            let mut c = self.backend.conn(hint).await?;
            let r = if c.is_cluster() {
                let mut answers = Vec::with_capacity(cmds.len());
                let mut r = Ok(());
                for cmd in cmds {
                    match c.run(cmd).await {
                        Ok(v) => answers.push(v),
                        Err(e) => {
                            r = Err(e);
                            break;
                        }
                    }
                }
                r.map(|()| answers)
            } else {
                let mut p = redis::pipe();
                for cmd in cmds {
                    p.add_command(cmd.clone());
                }
                c.pipe(&p).await
            };
            match r {
                Ok(v) => return Ok(v),
                Err(e) => last = Some(self.failed(hint, e)?),
            }
        }
        Err(Down::from(last.expect("an attempt ran")).into())
    }

    /// Whether Redis was reached (`down` is `None`) or not, as a change of
    /// state to report (and log once), if it is one.
    pub(crate) fn transition(&self, down: Option<String>) -> Option<Result<(), String>> {
        let up = down.is_none();
        (up != self.up.replace(up)).then(|| down.map_or(Ok(()), Err))
    }

    /// Tells the nginx thread, at most once a minute, that Redis refused a
    /// command nobody waits for (a missing ACL permission, a key of
    /// another type).
    pub(crate) fn report(&self, why: String) {
        if self.report_refusal() {
            self.out.send(Reply {
                token: 0,
                answer: Answer::Written,
                transition: None,
                refused: Some(why),
                full: false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::fake::{block_on, closed_port, shared, shared_at, FakeRedis};

    #[test]
    fn a_broken_connection_is_tried_again_once_on_a_fresh_one() {
        let fake = FakeRedis::start();
        let s = shared(&fake, None, Duration::from_secs(1));
        block_on(async {
            let _: String = s.run(0, &redis::cmd("PING")).await.expect("Redis up");
            fake.state().drop_next = 1;
            let pong: String = s
                .run(0, &redis::cmd("PING"))
                .await
                .expect("answered on a fresh connection");
            assert_eq!(pong, "PONG");
            assert_eq!(fake.state().connections, 2, "one reconnection");
            // Broken twice in a row: Redis is down for this job.
            fake.state().drop_next = 2;
            assert!(matches!(
                s.run::<String>(0, &redis::cmd("PING")).await,
                Err(Failure::Down(_))
            ));
        });
    }

    #[test]
    fn refusals_are_told_from_outages() {
        let fake = FakeRedis::start();
        let s = shared(&fake, None, Duration::from_secs(1));
        block_on(async {
            fake.state().refuse = Some("NOPERM this user has no permissions to run the 'get' command".into());
            let r = s.run::<Option<Vec<u8>>>(0, redis::cmd("GET").arg("k")).await;
            let why = match r {
                Err(Failure::Refused(why)) => why,
                Err(Failure::Down(why)) => panic!("down: {why}; {:?}", fake.state().commands),
                _ => panic!("not refused"),
            };
            assert!(why.to_lowercase().contains("noperm"), "{why}");
            fake.state().refuse =
                Some("WRONGTYPE Operation against a key holding the wrong kind of value".into());
            let r = s.run::<Option<Vec<u8>>>(0, redis::cmd("GET").arg("k")).await;
            assert!(matches!(r, Err(Failure::WrongType(_))));
            // A refusal is logged at most once a minute.
            assert!(s.report_refusal());
            assert!(!s.report_refusal());
            // Not a refusal: the connection stays, no reconnection.
            assert_eq!(fake.state().connections, 1);
        });
    }

    #[test]
    fn a_value_of_another_type_reads_as_none_and_is_deleted() {
        let fake = FakeRedis::start();
        let s = shared(&fake, None, Duration::from_secs(1));
        block_on(async {
            fake.state().strings.insert(b"k".to_vec(), b"v".to_vec());
            fake.state().refuse =
                Some("WRONGTYPE Operation against a key holding the wrong kind of value".into());
            let cmd = redis::cmd("GET").arg("k").clone();
            // The DEL is refused too here: the failure is handed on.
            assert!(s.repaired::<Option<Vec<u8>>>(&cmd, b"k").await.is_err());
            fake.state().refuse = None;
            assert_eq!(
                s.repaired::<Option<Vec<u8>>>(&cmd, b"k").await.ok(),
                Some(Some(b"v".to_vec()))
            );
        });
    }

    #[test]
    fn a_server_nobody_answers_is_down() {
        let (settings, topology) = closed_port();
        let s = shared_at(&settings, &topology, None, Duration::from_secs(1));
        block_on(async {
            assert!(matches!(
                s.run::<String>(0, &redis::cmd("PING")).await,
                Err(Failure::Down(_))
            ));
        });
    }
}
