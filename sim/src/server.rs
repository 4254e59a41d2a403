//! The simulator as a server: started on its own runtime or the caller's, and inspected and
//! steered by tests while it runs.

use crate::config::{Faults, SimConfig};
use crate::data::{Entry, make_entry};
use crate::handlers::{hierarchy, query, retention, stats, token};
use crate::state::{Inner, Shared, Stats};
use axum::Router;
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

/// A running simulator. Dropping it stops the server.
pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _runtime: Option<tokio::runtime::Runtime>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Simulator {
    /// Starts on 127.0.0.1 (an ephemeral port) on a runtime of its own.
    pub fn spawn(config: SimConfig) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let mut sim = runtime.block_on(Self::start(config, "127.0.0.1:0".parse()?))?;
        sim._runtime = Some(runtime);
        Ok(sim)
    }

    /// Starts on the current tokio runtime.
    pub async fn start(config: SimConfig, addr: SocketAddr) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared { inner: Mutex::new(Inner::build(config)), in_flight: AtomicU64::new(0) });
        let router = Router::new()
            .route("/accounts/api/v2/oauth2/token", post(token))
            .route("/audit/v2/organizations/{org}/query", post(query))
            .route("/audit/v2/organizations/{org}/retentionSettings", get(retention))
            .route("/accounts/api/organizations/{org}/hierarchy", get(hierarchy))
            .route("/_sim/stats", get(stats))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self { addr, shared, _runtime: None, shutdown: Some(tx) })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn org_ids(&self) -> Vec<String> {
        self.lock().config.orgs.iter().map(|o| o.id.clone()).collect()
    }

    /// The raw bytes of every entry of `org` currently visible with `from <= ts <= to`, oldest
    /// first (entries without timestamp are filtered by the time they were created at).
    pub fn entries_in(&self, org: &str, from_ms: i64, to_ms: i64) -> Vec<String> {
        let inner = self.lock();
        inner.orgs.get(org).map_or_else(Vec::new, |o| {
            o.entries
                .iter()
                .filter(|e| e.ts >= from_ms && e.ts <= to_ms && inner.visible(e))
                .map(|e| e.raw.clone())
                .collect()
        })
    }

    /// Every entry ever stored for `org` (visible or not).
    pub fn all_entries(&self, org: &str) -> Vec<Entry> {
        self.lock().orgs.get(org).map_or_else(Vec::new, |o| o.entries.clone())
    }

    /// Makes late entries visible.
    pub fn release_late(&self) {
        self.lock().late_released = true;
    }

    /// Adds `count` new entries to `org` with timestamps in `[from_ms, to_ms]`.
    pub fn add_entries(&self, org: &str, count: usize, from_ms: i64, to_ms: i64) {
        let mut inner = self.lock();
        let odd = inner.config.odd_permille;
        let mut new = Vec::with_capacity(count);
        for _ in 0..count {
            let ts = inner.rng.i64(from_ms..=to_ms);
            new.push(make_entry(&mut inner.rng, org, ts, odd));
        }
        if let Some(o) = inner.orgs.get_mut(org) {
            o.entries.extend(new);
            o.entries.sort_by(|a, b| (a.ts, &a.sort_id).cmp(&(b.ts, &b.sort_id)));
        }
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    /// Changes the fault configuration while running.
    pub fn set_faults(&self, faults: Faults) {
        self.lock().config.faults = faults;
    }

    pub fn set_rate_limit(&self, per_minute: Option<u32>) {
        self.lock().config.rate_limit_per_minute = per_minute;
    }
}
