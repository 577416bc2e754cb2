//! The shared wasmtime engine: configuration, the linker that defines what plugins may
//! import, the epoch ticker that enforces CPU deadlines, and compiling components.
//! Loading a plugin (`PluginEngine::load` and its kin) is in `plugin.rs`, beside the
//! plugin it builds, so the engine knows nothing of plugins.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker, Resource};
use wasmtime::{Config, Engine, StoreContextMut};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use crate::bindings;
use crate::cache::ComponentCache;
use crate::error::{Error, Result};
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
        // Both contract versions' imports: a 0.1 plugin binds to the 0.1 ones.
        bindings::current::Host_::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(engine_err)?;
        bindings::v0_1::Host_::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(engine_err)?;

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

    /// Compile `bytes`, or read them compiled from the cache; `digest` is theirs,
    /// `origin` names them in errors.
    pub(crate) fn component(&self, bytes: &[u8], digest: &str, origin: &Path) -> Result<Component> {
        self.inner.cache.load(&self.inner.engine, bytes, digest, origin)
    }
}
