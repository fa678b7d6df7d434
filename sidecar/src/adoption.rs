//! Adoption: the random secret and cookie name every instance sharing a
//! Redis uses, agreed on there, with unsound values repaired.

use sessions_core::model::keys::SealKeys;
use sessions_core::primitives::id::random_alnum;

use crate::exec::Failure;
use crate::scripts::ADOPT;
use crate::state::Sidecar;
use crate::Answer;

impl Sidecar {
    /// The first instance stores a random secret and name; all adopt them.
    /// What is there is checked as strictly as when it was written; a value
    /// this module never writes (a wrong type too) is replaced, once, by a
    /// fresh one, unless another instance replaced it meanwhile.
    pub(crate) async fn adopt(&self) -> Result<Answer, Failure> {
        let secret = sessions_core::primitives::id::random_secret_hex().map_err(|_| Failure::NoRandom)?;
        let name = random_alnum::<16>().map_err(|_| Failure::NoRandom)?;
        let mut got = Vec::with_capacity(2);
        let mut replaced = Vec::new();
        type Check = fn(&[u8]) -> bool;
        let values: [(&str, &[u8], Check); 2] = [
            (
                "random-secret",
                &secret,
                sessions_core::primitives::id::is_random_secret,
            ),
            (
                "random-name",
                &name,
                sessions_core::primitives::id::is_random_name,
            ),
        ];
        for (key, ours, sound) in values {
            let mut k = self.prefix.clone();
            k.extend_from_slice(key.as_bytes());
            let adopt = |seen: &[u8], mode: &str| {
                redis::cmd("EVAL")
                    .arg(ADOPT)
                    .arg(1)
                    .arg(&k)
                    .arg(ours)
                    .arg(seen)
                    .arg(mode)
                    .clone()
            };
            let v: Vec<u8> = self.run(0, &adopt(b"", "0")).await?;
            let v = if sound(&v) {
                v
            } else {
                let again: Vec<u8> = self.run(0, &adopt(&v, "1")).await?;
                if !sound(&again) {
                    return Err(Failure::Refused(format!(
                        "the value at \"{}\" is not one this module writes and could not be replaced",
                        String::from_utf8_lossy(&k)
                    )));
                }
                replaced.push(String::from_utf8_lossy(&k).into_owned());
                again
            };
            got.push(v);
        }
        let name = got.pop().expect("two values");
        let secret = got.pop().expect("two values");
        // Pending writes sealed with it (by a worker since killed, say)
        // are flushed without waiting for a request to bring the keys.
        self.know(&SealKeys::derive(&secret));
        Ok(Answer::Adopted {
            secret,
            name,
            replaced,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sessions_core::primitives::id::{is_random_name, is_random_secret};

    use super::*;
    use crate::fake::{block_on, shared, FakeRedis};

    fn adopted(a: Result<Answer, Failure>) -> (Vec<u8>, Vec<u8>, Vec<String>) {
        match a {
            Ok(Answer::Adopted {
                secret,
                name,
                replaced,
            }) => (secret, name, replaced),
            _ => panic!("not adopted"),
        }
    }

    #[test]
    fn the_first_instance_stores_what_every_other_adopts() {
        let fake = FakeRedis::start();
        let (a, b) = (
            shared(&fake, None, Duration::from_secs(1)),
            shared(&fake, None, Duration::from_secs(1)),
        );
        block_on(async {
            let (secret, name, replaced) = adopted(a.adopt().await);
            assert!(is_random_secret(&secret) && is_random_name(&name) && replaced.is_empty());
            assert_eq!(adopted(b.adopt().await), (secret.clone(), name, vec![]));
            assert_eq!(fake.state().strings[&b"sessions:random-secret"[..]], secret);
        });
    }

    #[test]
    fn an_unsound_value_is_replaced_once_and_then_adopted() {
        let fake = FakeRedis::start();
        fake.state()
            .strings
            .insert(b"sessions:random-secret".to_vec(), b"not a secret".to_vec());
        let s = shared(&fake, None, Duration::from_secs(1));
        block_on(async {
            let (secret, _, replaced) = adopted(s.adopt().await);
            assert!(is_random_secret(&secret));
            assert_eq!(replaced, ["sessions:random-secret"]);
            let (again, _, replaced) = adopted(s.adopt().await);
            assert_eq!((again, replaced), (secret, vec![]));
        });
    }

    #[test]
    fn adopting_needs_redis() {
        let fake = FakeRedis::start();
        let s = shared(&fake, None, Duration::from_secs(1));
        fake.state().refuse = Some("NOPERM no".into());
        block_on(async {
            assert!(matches!(s.adopt().await, Err(Failure::Refused(_))));
        });
    }
}
