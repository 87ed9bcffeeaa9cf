//! Server-side sessions (OC 400): the key each one shares with its client, who it has been
//! authenticated as, when it expires and which message counters it has seen (a repeated
//! counter is a replay: RC 505). Bounded in number (a full table answers RC 3). Time is passed
//! in, and read through the table's [`SessionClock`].

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use suyuan_registry::Identity;

#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    pub max_sessions: usize,
    /// The longest a session may live, whatever the client asks.
    pub max_timeout: Duration,
    pub clock: SessionClock,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_sessions: 65_536,
            max_timeout: Duration::from_secs(24 * 3600),
            clock: SessionClock::default(),
        }
    }
}

/// The session table's clock: the instants its callers pass, moved on by whatever
/// [`SessionClock::advance`] added to a manual clock (the system clock, in service, adds
/// nothing). A test that keeps a copy makes sessions expire without waiting for them.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionClock {
    ahead_nanos: Option<&'static AtomicU64>,
}

impl SessionClock {
    /// A clock for tests. It lives as long as the process (a few bytes), so that the
    /// configuration holding it stays `Copy`.
    pub fn manual() -> Self {
        SessionClock {
            ahead_nanos: Some(Box::leak(Box::new(AtomicU64::new(0)))),
        }
    }

    /// Moves a manual clock on (the system clock cannot be moved: nothing happens).
    pub fn advance(&self, by: Duration) {
        if let Some(a) = self.ahead_nanos {
            a.fetch_add(
                u64::try_from(by.as_nanos()).unwrap_or(u64::MAX),
                Ordering::AcqRel,
            );
        }
    }

    fn at(&self, now: Instant) -> Instant {
        match self.ahead_nanos {
            Some(a) => now + Duration::from_nanos(a.load(Ordering::Acquire)),
            None => now,
        }
    }
}

/// The ids a session may have. Java clients read the envelope's session id as a signed int
/// and take anything <= 0 as "no session": an answer MAC'd in a session whose id has the top
/// bit set is refused there ("signed with MAC but no session id given").
pub const SESSION_IDS: std::ops::RangeInclusive<u32> = 1..=i32::MAX as u32;

/// Counters remembered per session; older ones below the window are refused as replays.
const COUNTER_WINDOW: usize = 4096;

#[derive(Debug, Clone)]
pub struct Session {
    /// The shared key (HMAC-SHA256 key of HS_MAC); empty until a server-cipher exchange
    /// (mode 2) delivers it.
    pub key: Vec<u8>,
    pub algorithm: u32,
    pub mode: u16,
    /// The identity the setup named; the session speaks for it only once a challenge proved it.
    pub claimed: Identity,
    pub authenticated: Option<Identity>,
    expires: Instant,
    seen: BTreeSet<u32>,
}

impl Session {
    pub fn new(
        key: Vec<u8>,
        algorithm: u32,
        mode: u16,
        claimed: Identity,
        timeout: Duration,
        now: Instant,
    ) -> Self {
        Session {
            key,
            algorithm,
            mode,
            claimed,
            authenticated: None,
            expires: now + timeout,
            seen: BTreeSet::new(),
        }
    }

    /// Records a message counter; false when it was seen before (or is older than the window).
    pub fn accept_counter(&mut self, counter: u32) -> bool {
        if self.seen.len() >= COUNTER_WINDOW {
            if let Some(&lowest) = self.seen.first() {
                if counter <= lowest {
                    return false;
                }
                self.seen.remove(&lowest);
            }
        }
        self.seen.insert(counter)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Unknown,
    Expired,
}

#[derive(Debug)]
pub struct SessionTable {
    cfg: SessionConfig,
    sessions: HashMap<u32, Session>,
}

impl SessionTable {
    pub fn new(cfg: SessionConfig) -> Self {
        SessionTable {
            cfg,
            sessions: HashMap::new(),
        }
    }

    pub fn max_timeout(&self) -> Duration {
        self.cfg.max_timeout
    }

    pub fn contains(&self, id: u32) -> bool {
        self.sessions.contains_key(&id)
    }

    /// Stores a session under a fresh id from `next_id` (ids outside [`SESSION_IDS`] and ids in
    /// use are skipped); `None` when the table is full even after dropping expired sessions.
    pub fn insert(
        &mut self,
        s: Session,
        now: Instant,
        mut next_id: impl FnMut() -> u32,
    ) -> Option<u32> {
        // The session's expiry was reckoned from the caller's instant: move it onto the
        // table's clock, as every instant the table compares with is.
        let mut s = s;
        s.expires = self.cfg.clock.at(s.expires);
        let now = self.cfg.clock.at(now);
        if self.sessions.len() >= self.cfg.max_sessions {
            self.sessions.retain(|_, s| s.expires > now);
            if self.sessions.len() >= self.cfg.max_sessions {
                return None;
            }
        }
        let id = loop {
            let id = next_id();
            if SESSION_IDS.contains(&id) && !self.sessions.contains_key(&id) {
                break id;
            }
        };
        self.sessions.insert(id, s);
        Some(id)
    }

    pub fn get_mut(&mut self, id: u32, now: Instant) -> Result<&mut Session, Lookup> {
        let now = self.cfg.clock.at(now);
        match self.sessions.get(&id) {
            None => Err(Lookup::Unknown),
            Some(s) if s.expires <= now => {
                self.sessions.remove(&id);
                Err(Lookup::Expired)
            }
            Some(_) => self.sessions.get_mut(&id).ok_or(Lookup::Unknown),
        }
    }

    pub fn remove(&mut self, id: u32) -> bool {
        self.sessions.remove(&id).is_some()
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(now: Instant) -> Session {
        Session::new(
            vec![1; 32],
            3,
            4,
            Identity::new(300, "12345/ADMIN"),
            Duration::from_secs(10),
            now,
        )
    }

    #[test]
    fn counters_are_used_once() {
        let mut x = s(Instant::now());
        assert!(x.accept_counter(1));
        assert!(x.accept_counter(3));
        assert!(!x.accept_counter(1));
        assert!(x.accept_counter(2));
        for c in 10..(10 + COUNTER_WINDOW as u32) {
            assert!(x.accept_counter(c));
        }
        assert!(!x.accept_counter(4), "below the window counts as a replay");
    }

    #[test]
    fn expiry_and_capacity() {
        let cfg = SessionConfig {
            max_sessions: 2,
            max_timeout: Duration::from_secs(60),
            ..SessionConfig::default()
        };
        let mut t = SessionTable::new(cfg);
        let t0 = Instant::now();
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        let a = t.insert(s(t0), t0, &mut next).unwrap();
        t.insert(s(t0), t0, &mut next).unwrap();
        assert!(t.insert(s(t0), t0, &mut next).is_none(), "full");
        assert!(t.get_mut(a, t0).is_ok());
        let later = t0 + Duration::from_secs(11);
        assert_eq!(t.get_mut(a, later).unwrap_err(), Lookup::Expired);
        assert!(
            t.insert(s(later), later, &mut next).is_some(),
            "expired sessions make room"
        );
        assert_eq!(t.get_mut(999, later).unwrap_err(), Lookup::Unknown);
    }

    #[test]
    fn the_clock_moves_sessions_towards_expiry() {
        let clock = SessionClock::manual();
        let mut t = SessionTable::new(SessionConfig {
            clock,
            ..SessionConfig::default()
        });
        let t0 = Instant::now();
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        let a = t.insert(s(t0), t0, &mut next).unwrap();
        clock.advance(Duration::from_secs(9));
        assert!(t.get_mut(a, t0).is_ok(), "9 of its 10 seconds");
        // A session opened now lives its full 10 seconds on the moved clock.
        let b = t.insert(s(t0), t0, &mut next).unwrap();
        clock.advance(Duration::from_secs(1));
        assert_eq!(t.get_mut(a, t0).unwrap_err(), Lookup::Expired);
        assert!(t.get_mut(b, t0).is_ok());
        clock.advance(Duration::from_secs(9));
        assert_eq!(t.get_mut(b, t0).unwrap_err(), Lookup::Expired);
    }
}
