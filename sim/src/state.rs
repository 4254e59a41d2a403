//! A running simulator's state: its data, the tokens it issued, the bookkeeping of its faults and
//! rate limit, and its counters, all behind one lock.

use crate::config::SimConfig;
use crate::data::{Entry, Org, generate, now_ms};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters for tests and benchmarks.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Stats {
    pub requests: u64,
    pub query_requests: u64,
    pub tokens_issued: u64,
    pub throttled_503: u64,
    pub injected_faults: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub max_in_flight: u64,
}

pub(crate) struct Inner {
    pub(crate) config: SimConfig,
    pub(crate) orgs: HashMap<String, Org>,
    pub(crate) tokens: HashMap<String, i64>,
    pub(crate) late_released: bool,
    pub(crate) rng: fastrand::Rng,
    pub(crate) stats: Stats,
    minute: i64,
    in_minute: u32,
    pub(crate) token_failed: bool,
    pub(crate) throttled_429: u32,
    pub(crate) garbage_sent: u32,
    pub(crate) wrong_shape_sent: u32,
    pub(crate) hung: u32,
    pub(crate) oversized_sent: u32,
    pub(crate) slow_sent: u32,
}

pub(crate) struct Shared {
    pub(crate) inner: Mutex<Inner>,
    pub(crate) in_flight: AtomicU64,
}

impl Inner {
    pub(crate) fn build(config: SimConfig) -> Self {
        let mut rng = fastrand::Rng::with_seed(config.seed);
        let orgs = generate(&config, &mut rng);
        Self {
            rng,
            orgs,
            tokens: HashMap::new(),
            late_released: false,
            stats: Stats::default(),
            minute: 0,
            in_minute: 0,
            token_failed: false,
            throttled_429: 0,
            garbage_sent: 0,
            wrong_shape_sent: 0,
            hung: 0,
            oversized_sent: 0,
            slow_sent: 0,
            config,
        }
    }

    /// The per-minute budget; true when this request is over it.
    pub(crate) fn over_limit(&mut self) -> bool {
        let Some(limit) = self.config.rate_limit_per_minute else {
            return false;
        };
        let minute = now_ms() / 60_000;
        if minute != self.minute {
            self.minute = minute;
            self.in_minute = 0;
        }
        self.in_minute += 1;
        self.in_minute > limit
    }

    pub(crate) fn visible(&self, e: &Entry) -> bool {
        !e.late || self.late_released
    }
}

pub(crate) struct InFlight<'a>(&'a Shared);
impl<'a> InFlight<'a> {
    pub(crate) fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.stats.max_in_flight = inner.stats.max_in_flight.max(now);
        Self(shared)
    }
}
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) fn count(inner: &mut Inner, status: u16) {
    *inner.stats.statuses.entry(status).or_default() += 1;
}
