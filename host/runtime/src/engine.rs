//! The shared wasmtime engine: configuration, the linker that defines what plugins may
//! import, the epoch ticker that enforces CPU deadlines, and loading components.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine};

use crate::bindings;
use crate::cache::{self, ComponentCache};
use crate::error::{Error, Result};
use crate::plugin::{Plugin, PluginOptions};
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
