//! The shared wasmtime engine: configuration, the linker that defines what plugins may
//! import, the epoch ticker that enforces CPU deadlines, and loading components.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker, Resource};
use wasmtime::{Config, Engine, StoreContextMut};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use crate::bindings;
use crate::cache::{self, ComponentCache};
use crate::config::Metadata;
use crate::error::{Error, Result};
use crate::plugin::{Plugin, PluginOptions};
use crate::role::Role;
use crate::state::State;

/// How often the epoch advances; CPU deadlines are checked at this granularity.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Compiles, caches and instantiates plugins. Cheap to clone; one per process is enough.
#[derive(Clone)]
pub struct PluginEngine {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<State>,
    cache: ComponentCache,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// The WASI clock interface whose sleeps eva replaces; the name wasmtime-wasi defines it
/// under (older 0.2 imports resolve to it).
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// A sleep's pollable: ready at once, because the guest's clock has already jumped.
struct Slept;

#[async_trait::async_trait]
impl Pollable for Slept {
    async fn ready(&mut self) {}
}

/// Replace WASI's `subscribe-duration` and `subscribe-instant`, which wait on real time
/// and so outlive any CPU deadline (a plugin sleeping an hour would hang the host for an
/// hour), with ones that move the guest's fake clock forward and are ready at once.
/// Every blocking wait on a clock (`sleep`, `poll` with a timeout) goes through them; a
/// plugin that sleeps in a loop spends CPU and meets its deadline.
fn sleep_without_waiting(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    fn slept(mut store: StoreContextMut<'_, State>) -> wasmtime::Result<(Resource<DynPollable>,)> {
        let table = &mut store.data_mut().table;
        let resource = table.push(Slept)?;
        Ok((subscribe(table, resource)?,))
    }
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap("subscribe-duration", |store: StoreContextMut<'_, State>, (nanos,): (u64,)| {
        let _ = store.data().clock.advance(nanos);
        slept(store)
    })?;
    clock.func_wrap("subscribe-instant", |store: StoreContextMut<'_, State>, (when,): (u64,)| {
        store.data().clock.advance_to(when);
        slept(store)
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

impl PluginEngine {
    /// An engine that keeps compiled components in `cache`.
    pub fn new(cache: ComponentCache) -> Result<Self> {
        let engine_err = |e: wasmtime::Error| Error::Engine(format!("{e:#}"));
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            // The host is synchronous; without concurrency support calls cost half as much.
            .concurrency_support(false)
            .max_wasm_stack(1 << 20);
        let engine = Engine::new(&config).map_err(engine_err)?;

        let mut linker = Linker::new(&engine);
        // WASI is linked for guests whose runtime imports it (Python, JavaScript, C with
        // wasi-libc); the context behind it grants nothing (see `State::new`).
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(engine_err)?;
        sleep_without_waiting(&mut linker).map_err(engine_err)?;
        bindings::Host_::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(engine_err)?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let (ticking, stop) = (engine.clone(), stop_ticker.clone());
        std::thread::Builder::new()
            .name("eva-plugin-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|e| Error::Engine(format!("cannot start the epoch thread: {e}")))?;

        Ok(PluginEngine { inner: Arc::new(Inner { engine, linker, cache, stop_ticker }) })
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Load the component at `path` as a plugin of whatever role it exports.
    pub fn load(&self, path: &Path, options: PluginOptions) -> Result<Plugin> {
        self.load_with(path, |_| options)
    }

    /// Load the component at `path`, choosing its options by the name it declares
    /// (the user configures plugins by name: `--plugin-config NAME.KEY=VALUE`).
    pub fn load_with(&self, path: &Path, options: impl FnOnce(&str) -> PluginOptions) -> Result<Plugin> {
        let bytes = std::fs::read(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        self.load_bytes_with(&bytes, path, options)
    }

    /// Load a component from memory; `origin` names it in errors.
    pub fn load_bytes(&self, bytes: &[u8], origin: &Path, options: PluginOptions) -> Result<Plugin> {
        self.load_bytes_with(bytes, origin, |_| options)
    }

    /// The role and metadata of a component, from its exports and `describe`, run under
    /// the default limits with no settings and no grant: what a loader needs to know before
    /// it grants anything by name.
    pub fn describe(&self, bytes: &[u8], origin: &Path) -> Result<(Role, Metadata)> {
        let digest = cache::digest(bytes);
        let component = self.inner.cache.load(&self.inner.engine, bytes, &digest, origin)?;
        let plugin = Plugin::described(self.clone(), component, origin, digest)?;
        Ok((plugin.role(), plugin.metadata().clone()))
    }

    /// Load a component from memory, choosing its options by the name it declares.
    pub fn load_bytes_with(
        &self,
        bytes: &[u8],
        origin: &Path,
        options: impl FnOnce(&str) -> PluginOptions,
    ) -> Result<Plugin> {
        let digest = cache::digest(bytes);
        let _span = tracing::debug_span!("load_plugin", path = %origin.display(), digest = &digest[..12]).entered();
        let component = self.inner.cache.load(&self.inner.engine, bytes, &digest, origin)?;
        Plugin::new(self.clone(), component, origin, digest, options)
    }
}
