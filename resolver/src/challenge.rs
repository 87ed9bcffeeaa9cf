//! Pending challenges: the state behind an RC 402 until the client's OC 200 answers it. Capped
//! in total and per source, and expiring, so unauthenticated clients cannot grow it: a full
//! table answers RC 3 (SERVER_TOO_BUSY). Ids are random, not sequential, so nobody can answer
//! a challenge that was issued to somebody else without having seen it. Time is passed in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use suyuan_codec::Message;
use suyuan_codec::message::RequestDigest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeConfig {
    pub max_pending: usize,
    pub max_per_source: usize,
    /// The reference's `max_auth_time`.
    pub ttl: Duration,
}

impl Default for ChallengeConfig {
    fn default() -> Self {
        ChallengeConfig {
            max_pending: 65_536,
            max_per_source: 256,
            ttl: Duration::from_secs(60),
        }
    }
}

/// One challenged request.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The request that was challenged, to be carried out once the answer verifies.
    pub request: Message,
    pub nonce: [u8; 16],
    /// The digest sent with the challenge: what the client signs with the nonce.
    pub digest: RequestDigest,
    pub source: IpAddr,
    pub created: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    #[error("too many pending challenges")]
    Full,
    #[error("too many pending challenges from this source")]
    SourceFull,
}

#[derive(Debug)]
pub struct ChallengeTable {
    config: ChallengeConfig,
    pending: HashMap<u32, Pending>,
    per_source: HashMap<IpAddr, usize>,
}

impl ChallengeTable {
    pub fn new(config: ChallengeConfig) -> Self {
        ChallengeTable {
            config,
            pending: HashMap::new(),
            per_source: HashMap::new(),
        }
    }

    /// Stores a challenge under a fresh id drawn from `next_id` (an RNG in the server; ids 0
    /// and ids in use are skipped).
    pub fn insert(
        &mut self,
        challenge: Pending,
        now: Instant,
        mut next_id: impl FnMut() -> u32,
    ) -> Result<u32, ChallengeError> {
        self.expire(now);
        if self.pending.len() >= self.config.max_pending {
            return Err(ChallengeError::Full);
        }
        let n = self.per_source.get(&challenge.source).copied().unwrap_or(0);
        if n >= self.config.max_per_source {
            return Err(ChallengeError::SourceFull);
        }
        let id = loop {
            let id = next_id();
            if id != 0 && !self.pending.contains_key(&id) {
                break id;
            }
        };
        *self.per_source.entry(challenge.source).or_insert(0) += 1;
        self.pending.insert(id, challenge);
        Ok(id)
    }

    /// Stores the challenge of a session under the session's own id (the reference answers a
    /// request in a session with a 402 carrying the session id); a newer one replaces it.
    pub fn insert_for_session(
        &mut self,
        id: u32,
        challenge: Pending,
        now: Instant,
    ) -> Result<(), ChallengeError> {
        self.expire(now);
        if let Some(old) = self.pending.remove(&id) {
            self.release(old.source);
        }
        if self.pending.len() >= self.config.max_pending {
            return Err(ChallengeError::Full);
        }
        let n = self.per_source.get(&challenge.source).copied().unwrap_or(0);
        if n >= self.config.max_per_source {
            return Err(ChallengeError::SourceFull);
        }
        *self.per_source.entry(challenge.source).or_insert(0) += 1;
        self.pending.insert(id, challenge);
        Ok(())
    }

    pub fn contains(&self, id: u32) -> bool {
        self.pending.contains_key(&id)
    }

    /// Takes the challenge with this id, if it exists and has not expired. A challenge is
    /// answered once: whatever the outcome, it is gone.
    pub fn take(&mut self, id: u32, now: Instant) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        self.release(p.source);
        (now.saturating_duration_since(p.created) < self.config.ttl).then_some(p)
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn release(&mut self, source: IpAddr) {
        if let Some(n) = self.per_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let ttl = self.config.ttl;
        let expired: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.created) >= ttl)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(p) = self.pending.remove(&id) {
                self.release(p.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use suyuan_codec::message::{Body, opcode};

    fn pending(source: &str, created: Instant) -> Pending {
        Pending {
            request: Message::request(
                opcode::DELETE_HANDLE,
                0,
                1,
                0,
                Body::Handle {
                    handle: "12345/x".into(),
                },
            ),
            nonce: [7; 16],
            digest: RequestDigest {
                alg: 3,
                digest: vec![0; 32],
            },
            source: source.parse().unwrap(),
            created,
        }
    }

    #[test]
    fn answered_once_and_expires() {
        let mut t = ChallengeTable::new(ChallengeConfig::default());
        let t0 = Instant::now();
        let mut ids = [0u32, 5, 6].into_iter();
        let id = t
            .insert(pending("192.0.2.1", t0), t0, || ids.next().unwrap())
            .unwrap();
        assert_eq!(id, 5, "id 0 is never used");
        assert!(t.take(id, t0).is_some());
        assert!(t.take(id, t0).is_none());
        let id = t
            .insert(pending("192.0.2.1", t0), t0, || ids.next().unwrap())
            .unwrap();
        assert!(t.take(id, t0 + Duration::from_secs(61)).is_none());
        assert!(t.is_empty());
    }

    #[test]
    fn capped_per_source_and_in_total() {
        let cfg = ChallengeConfig {
            max_pending: 3,
            max_per_source: 2,
            ttl: Duration::from_secs(60),
        };
        let mut t = ChallengeTable::new(cfg);
        let t0 = Instant::now();
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        t.insert(pending("192.0.2.1", t0), t0, &mut next).unwrap();
        t.insert(pending("192.0.2.1", t0), t0, &mut next).unwrap();
        assert_eq!(
            t.insert(pending("192.0.2.1", t0), t0, &mut next),
            Err(ChallengeError::SourceFull)
        );
        t.insert(pending("192.0.2.2", t0), t0, &mut next).unwrap();
        assert_eq!(
            t.insert(pending("192.0.2.3", t0), t0, &mut next),
            Err(ChallengeError::Full)
        );
        // Expiry frees room.
        let later = t0 + Duration::from_secs(60);
        assert!(
            t.insert(pending("192.0.2.3", later), later, &mut next)
                .is_ok()
        );
        assert_eq!(t.len(), 1);
    }
}
