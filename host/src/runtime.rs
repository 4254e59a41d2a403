//! The wasmtime wiring, in one place and in order: Engine → Linker → `instantiate_pre` → a fresh
//! Store per run. Traps (time or memory limit, guest bugs) stay apart from the guest's own typed
//! errors: the first are `Err` of [`Runtime::run`], the second its `Ok(Err(_))`.

pub use crate::sandbox::Limits;
use crate::sandbox::{Origin, SandboxHooks};
use crate::store;
use anyhow::Context as _;
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::bindings::{CollectorCore, CollectorCorePre, wit_store};
pub use crate::bindings::{Presence, wit};

/// The collector component, built from this workspace and embedded at compile time.
pub static COMPONENT: &[u8] = include_bytes!(env!("MULESOFT_AUDIT_COMPONENT_PATH"));

/// The wasmtime version compiled code is tied to (a `.cwasm` only loads into the same one).
const WASMTIME_VERSION: &str = "48.0.8";

/// How often the epoch advances; run deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(100);

/// Why a run did not return a result from the guest.
#[derive(Debug, thiserror::Error)]
pub enum Trap {
    #[error("the run exceeded its time limit of {0:?} and was stopped")]
    TimeLimit(Duration),
    #[error("the component exceeded its memory limit of {0} MiB and was stopped")]
    MemoryLimit(usize),
    #[error("the component trapped: {0:#}")]
    Other(anyhow::Error),
}

impl Trap {
    /// The report's failure kind for it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TimeLimit(_) => "time-limit",
            Self::MemoryLimit(_) => "memory-limit",
            Self::Other(_) => "trap",
        }
    }
}

struct RunState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: SandboxHooks,
    limits: GuestLimits,
    store: Arc<dyn store::Store>,
    /// Bars for a person at a terminal, from what the guest writes.
    progress: Option<crate::progress::Progress>,
}

/// Why a memory growth trapped: the guest asked for more than the store's limit.
#[derive(Debug, thiserror::Error)]
#[error("the guest's memory would grow past its limit ({desired} bytes asked)")]
struct MemoryLimitReached {
    desired: usize,
}

/// The store's limits, remembering the guest's peak linear memory for the logs.
struct GuestLimits {
    inner: StoreLimits,
    peak_memory: usize,
}

impl wasmtime::ResourceLimiter for GuestLimits {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        // A refusal traps (`trap_on_grow_failure`) with an error of our own, told apart by type.
        let allowed =
            self.inner.memory_growing(current, desired, maximum).map_err(|_| MemoryLimitReached { desired })?;
        if allowed {
            self.peak_memory = self.peak_memory.max(desired);
        }
        Ok(allowed)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for RunState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

impl wit_store::Host for RunState {
    fn create(
        &mut self,
        key: String,
        data: Vec<u8>,
        content_type: String,
        deadline_ms: Option<i64>,
    ) -> Result<u64, wit_store::StoreError> {
        let result = self.store.create(&key, &data, &content_type, deadline_ms);
        match (&result, &mut self.progress) {
            (Ok(_), Some(progress)) => progress.created(&key),
            // Progress off a terminal: one line per object.
            (Ok(_), None) => tracing::info!(key, bytes = data.len(), "object written"),
            (Err(e), _) => tracing::warn!(key, error = %e, "object not written"),
        }
        result.map_err(wit_store::StoreError::from)
    }
    fn read(&mut self, key: String) -> Result<Option<wit_store::StoredObject>, wit_store::StoreError> {
        self.store.read(&key).map(|o| o.map(Into::into)).map_err(wit_store::StoreError::from)
    }
    fn write_if_generation(
        &mut self,
        key: String,
        data: Vec<u8>,
        content_type: String,
        generation: u64,
    ) -> Result<u64, wit_store::StoreError> {
        let result = self.store.write_if_generation(&key, &data, &content_type, generation);
        if let (Ok(_), Some(progress)) = (&result, &mut self.progress)
            && mulesoft_audit::window::is_checkpoint_key(&key)
            && let Some(glance) = mulesoft_audit::checkpoint::Glance::read(&data)
        {
            progress.checkpoint(&glance);
        }
        result.map_err(wit_store::StoreError::from)
    }
    fn lease_ms(&mut self) -> u64 {
        self.store.lease_ms()
    }
    fn presence(&mut self, key: String, since_ms: Option<i64>) -> Result<Presence, wit_store::StoreError> {
        self.store.presence(&key, since_ms).map(Into::into).map_err(wit_store::StoreError::from)
    }
    fn find(&mut self, prefix: String, name: String, limit: u32) -> Result<wit_store::Found, wit_store::StoreError> {
        self.store.find(&prefix, &name, limit).map(Into::into).map_err(wit_store::StoreError::from)
    }
}

/// A compiled, pre-linked collector, ready for any number of runs.
pub struct Runtime {
    engine: Engine,
    pre: CollectorCorePre<RunState>,
}

impl Runtime {
    /// Compiles (or loads from `cache_dir`) the embedded component and links it.
    pub fn new(cache_dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        // `just profile`: compiled guest functions by name in /tmp/perf-<pid>.map, for perf.
        if std::env::var_os(mulesoft_audit::settings::names::PERFMAP).is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)?;
        let component = load_component(&engine, COMPONENT, cache_dir)?;

        let mut linker: Linker<RunState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)?;
        wit_store::add_to_linker::<RunState, HasSelf<RunState>>(&mut linker, |s| s)?;
        let pre = CollectorCorePre::new(linker.instantiate_pre(&component)?)?;

        let ticker = engine.weak();
        std::thread::Builder::new().name("epoch".into()).spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
        Ok(Self { engine, pre })
    }

    /// One run in a fresh store: the guest reaches only `origin`, stores through `store`.
    /// Blocks; call it from a blocking thread inside a tokio runtime.
    pub fn run(
        &self,
        limits: &Limits,
        origin: Origin,
        store: Arc<dyn store::Store>,
        config: &wit::Config,
        progress: Option<crate::progress::Progress>,
    ) -> Result<Result<wit::RunSummary, wit::RunError>, Trap> {
        let (mut wasm_store, instance) = self.instantiate(limits, origin, store)?;
        wasm_store.data_mut().progress = progress;
        let outcome = instance.mulesoft_audit_collector().call_run(&mut wasm_store, config);
        if let Some(progress) = &wasm_store.data().progress {
            progress.finish();
        }
        tracing::info!(guest_memory_peak_kib = wasm_store.data().limits.peak_memory >> 10, "guest resources");
        outcome.map_err(|e| classify_trap(e, limits))
    }

    /// The component's `check` (no object store is touched: it gets an empty in-memory one).
    pub fn check(
        &self,
        limits: &Limits,
        origin: Origin,
        config: &wit::Config,
    ) -> Result<Result<Vec<String>, wit::RunError>, Trap> {
        let (mut wasm_store, instance) =
            self.instantiate(limits, origin, Arc::new(crate::store::memory::MemoryStore::default()))?;
        instance.mulesoft_audit_collector().call_check(&mut wasm_store, config).map_err(|e| classify_trap(e, limits))
    }

    /// The component's `verify` over what the host listed.
    pub fn verify(
        &self,
        limits: &Limits,
        origin: Origin,
        store: Arc<dyn store::Store>,
        config: &wit::Config,
        request: mulesoft_audit::verify::Request,
        listing: mulesoft_audit::verify::Listing,
    ) -> Result<wit::Report, Trap> {
        let (mut wasm_store, instance) = self.instantiate(limits, origin, store)?;
        let mulesoft_audit::verify::Request { since_ms, until_ms, repair } = request;
        instance
            .mulesoft_audit_collector()
            .call_verify(&mut wasm_store, config, since_ms, until_ms, repair, &listing.into())
            .map_err(|e| classify_trap(e, limits))
    }

    fn instantiate(
        &self,
        limits: &Limits,
        origin: Origin,
        store: Arc<dyn store::Store>,
    ) -> Result<(Store<RunState>, CollectorCore), Trap> {
        // No environment, no arguments, no preopened directories, no sockets: stderr only, so
        // that a guest panic message is not lost.
        let wasi =
            WasiCtx::builder().inherit_stderr().allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false).build();
        let state = RunState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: SandboxHooks { origin, timeouts: limits.http },
            limits: GuestLimits {
                inner: StoreLimitsBuilder::new()
                    .memory_size(limits.memory_bytes)
                    .instances(4)
                    .trap_on_grow_failure(true)
                    .build(),
                peak_memory: 0,
            },
            store,
            progress: None,
        };
        let mut wasm_store = Store::new(&self.engine, state);
        wasm_store.limiter(|s| &mut s.limits);
        let ticks = (limits.run_time.as_millis() / EPOCH_TICK.as_millis()).max(1);
        wasm_store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        wasm_store.epoch_deadline_trap();

        let instance = self.pre.instantiate(&mut wasm_store).map_err(|e| classify_trap(e, limits))?;
        Ok((wasm_store, instance))
    }
}

fn classify_trap(e: wasmtime::Error, limits: &Limits) -> Trap {
    if matches!(e.downcast_ref::<wasmtime::Trap>(), Some(wasmtime::Trap::Interrupt)) {
        Trap::TimeLimit(limits.run_time)
    } else if e.downcast_ref::<MemoryLimitReached>().is_some() {
        Trap::MemoryLimit(limits.memory_bytes >> 20)
    } else {
        Trap::Other(e.into())
    }
}

/// Where compiled code is cached: `$MULESOFT_AUDIT_CACHE_DIR`, else the user cache directory.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(mulesoft_audit::settings::names::CACHE_DIR) {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("mulesoft-audit"))
}

/// The cache file for this component on this engine: keyed by wasmtime version, engine settings
/// and the component's hash, so a stale or foreign file is never picked up.
pub fn cache_file(engine: &Engine, component: &[u8], dir: &Path) -> PathBuf {
    use std::hash::{Hash as _, Hasher as _};
    let mut settings = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut settings);
    let digest = sha2::Sha256::digest(component);
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    dir.join(format!("collector-{WASMTIME_VERSION}-{:016x}-{hex}.cwasm", settings.finish()))
}

/// Loads compiled code from the cache, or compiles and caches it. A cache that cannot be read or
/// written only costs time.
pub fn load_component(engine: &Engine, wasm: &[u8], cache_dir: Option<&Path>) -> anyhow::Result<Component> {
    let Some(dir) = cache_dir else {
        return Component::new(engine, wasm).map_err(anyhow::Error::from).context("compiling the component");
    };
    let file = cache_file(engine, wasm, dir);
    if file.exists() {
        // SAFETY: the file was written by `precompile_component` of this same wasmtime version
        // and engine configuration (both are in its name), into a directory this program owns.
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize_file(engine, &file) } {
            Ok(component) => return Ok(component),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "ignoring unusable compiled cache")
            }
        }
    }
    let compiled = engine.precompile_component(wasm).map_err(anyhow::Error::from).context("compiling the component")?;
    if let Err(e) = write_atomically(dir, &file, &compiled) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not cache compiled component");
    }
    // SAFETY: these bytes were produced a moment ago by this engine's `precompile_component`.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(engine, &compiled) }
        .map_err(anyhow::Error::from)
        .context("loading the compiled component")?;
    Ok(component)
}

fn write_atomically(dir: &Path, file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!(".tmp-{}", std::process::id()));
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, file)
}
