//! Per-source answer budgets for unauthenticated UDP, so the node cannot be used as an
//! amplifier: each source address may receive so many answer bytes per second (a token
//! bucket); over budget it gets silence. Silence, not an error code, because the reference
//! client moves on to TCP after a timeout, while an error code would reach the user as a failure.
//! Time is passed in, so the table is deterministic under test.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetConfig {
    /// Answer bytes per second a source may receive; 0 disables the budget.
    pub bytes_per_sec: u64,
    /// Bucket size: how much a quiet source may receive at once.
    pub burst_bytes: u64,
    /// Sources tracked at most; when full, the stalest entries are dropped.
    pub max_sources: usize,
    /// Loopback sources are exempt (so benchmarks on one machine measure the node).
    pub exempt_loopback: bool,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            bytes_per_sec: 256 * 1024,
            burst_bytes: 512 * 1024,
            max_sources: 65_536,
            exempt_loopback: true,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets keyed by source address.
#[derive(Debug)]
pub struct BudgetTable {
    config: BudgetConfig,
    buckets: HashMap<IpAddr, Bucket>,
}

impl BudgetTable {
    pub fn new(config: BudgetConfig) -> Self {
        BudgetTable {
            config,
            buckets: HashMap::new(),
        }
    }

    /// Whether `source` may be sent `bytes` more at `now`; if so they are charged.
    pub fn allow(&mut self, source: IpAddr, bytes: usize, now: Instant) -> bool {
        let c = self.config;
        if c.bytes_per_sec == 0 || (c.exempt_loopback && source.is_loopback()) {
            return true;
        }
        if !self.buckets.contains_key(&source) && self.buckets.len() >= c.max_sources {
            self.evict(now);
        }
        let b = self.buckets.entry(source).or_insert(Bucket {
            tokens: c.burst_bytes as f64,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * c.bytes_per_sec as f64).min(c.burst_bytes as f64);
        b.last = now;
        if b.tokens >= bytes as f64 {
            b.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }

    /// Drops every bucket that has refilled completely (it holds no information), and if that
    /// frees nothing, the stalest half: a flood of spoofed sources must not grow the table.
    fn evict(&mut self, now: Instant) {
        let c = self.config;
        let full_after = c.burst_bytes as f64 / c.bytes_per_sec.max(1) as f64;
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.last).as_secs_f64() < full_after);
        if self.buckets.len() >= c.max_sources {
            let mut ages: Vec<Instant> = self.buckets.values().map(|b| b.last).collect();
            ages.sort_unstable();
            let cutoff = ages[ages.len() / 2];
            self.buckets.retain(|_, b| b.last > cutoff);
        }
    }

    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg() -> BudgetConfig {
        BudgetConfig {
            bytes_per_sec: 1000,
            burst_bytes: 2000,
            max_sources: 4,
            exempt_loopback: true,
        }
    }

    #[test]
    fn refills_over_time() {
        let mut t = BudgetTable::new(cfg());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        assert!(t.allow(ip, 1500, t0));
        assert!(!t.allow(ip, 1000, t0));
        assert!(t.allow(ip, 1000, t0 + Duration::from_millis(600)));
    }

    #[test]
    fn loopback_is_exempt_by_default() {
        let mut t = BudgetTable::new(cfg());
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..100 {
            assert!(t.allow(lo, 10_000, t0));
        }
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn table_stays_bounded_under_many_sources() {
        let mut t = BudgetTable::new(cfg());
        let t0 = Instant::now();
        for i in 0..100u32 {
            let ip = IpAddr::from([198, 51, (i >> 8) as u8, i as u8]);
            t.allow(ip, 10, t0 + Duration::from_millis(i as u64));
            assert!(t.tracked() <= 4);
        }
    }
}
