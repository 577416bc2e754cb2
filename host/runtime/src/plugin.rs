//! A loaded plugin: how the engine loads one, its compiled component, role, metadata and
//! configuration, and the sandboxed call path every role's handle goes through.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::component::{Component, Instance, InstancePre};
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::cache;
use crate::config::{ConfigValue, Metadata, RawValue};
use crate::engine::PluginEngine;
use crate::error::{Error, Result, TrapKind};
use crate::guest::RoleExports;
use crate::limits::Limits;
use crate::role::{self, Contract, Detected, InterfaceName, Role};
use crate::state::{CallSetup, Overrun, State};
use crate::types::Generator;

/// How a plugin is loaded: its limits, its configuration and what it may read.
#[derive(Debug, Clone, Default)]
pub struct PluginOptions {
    pub limits: Limits,
    /// The user's settings, checked against the plugin's declared schema at load.
    pub config: BTreeMap<String, RawValue>,
    /// A host directory the plugin may read, mounted read-only at `/data`.
    pub read_dir: Option<PathBuf>,
}

/// A plugin ready to be called. Every call runs in a fresh store and instance, so a
/// trap, a panic or state left behind by one call never reaches the next.
pub struct Plugin {
    engine: PluginEngine,
    pre: InstancePre<State>,
    exports: RoleExports,
    name: Arc<str>,
    path: PathBuf,
    digest: String,
    role: Role,
    contract: Contract,
    wit_version: String,
    metadata: Metadata,
    imports: Vec<String>,
    config: Vec<(String, ConfigValue)>,
    limits: Limits,
    read_dir: Option<PathBuf>,
    seed: u64,
    calls: u64,
}

// The engine's loaders live here, beside the `Plugin` they build, so that the engine
// need not know plugins.
impl PluginEngine {
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
        let component = self.component(bytes, &digest, origin)?;
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
        let component = self.component(bytes, &digest, origin)?;
        Plugin::new(self.clone(), component, origin, digest, options)
    }
}

/// Whether a role's world grants an import. WASI is allowed for every role because the
/// linker backs it with a context that grants nothing.
fn import_allowed(role: Role, contract: Contract, import: &str) -> bool {
    if import.starts_with("wasi:") {
        return true;
    }
    // A plugin imports eva's interfaces of the contract version its role export names.
    match InterfaceName::parse(import) {
        Some(i) if Contract::of(i.version) == Some(contract) => match i.name {
            "log" | "random" | "types" => true,
            "generate" => role == Role::Evolver,
            _ => false,
        },
        _ => false,
    }
}

impl Plugin {
    fn new(
        engine: PluginEngine,
        component: Component,
        path: &Path,
        digest: String,
        options: impl FnOnce(&str) -> PluginOptions,
    ) -> Result<Plugin> {
        Plugin::described(engine, component, path, digest)?.configured(options)
    }

    /// The plugin linked and described, not yet configured: it runs under the default
    /// limits, with no settings and no grant.
    fn described(engine: PluginEngine, component: Component, path: &Path, digest: String) -> Result<Plugin> {
        let inner = engine.inner();
        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(&inner.engine).map(|(n, _)| n.to_owned()).collect();
        let imports: Vec<String> = ty.imports(&inner.engine).map(|(n, _)| n.to_owned()).collect();
        let (role, contract, wit_version) = match role::detect(exports.iter().map(String::as_str)) {
            Detected::Role(role, contract, version) => (role, contract, version),
            Detected::None => {
                return Err(Error::NoRole {
                    path: path.to_owned(),
                    expected: role::expected_exports(),
                    exports: crate::text::quote_list(&exports),
                });
            }
            Detected::Several(roles) => {
                let roles: Vec<&str> = roles.iter().map(|r| r.world()).collect();
                return Err(Error::SeveralRoles { path: path.to_owned(), roles: roles.join(", ") });
            }
            Detected::Unsupported { found } => {
                return Err(Error::UnsupportedVersion {
                    path: path.to_owned(),
                    found: crate::text::clip(&found),
                    supported: role::SUPPORTED_VERSIONS.to_owned(),
                });
            }
        };
        if let Some(bad) = imports.iter().find(|i| !import_allowed(role, contract, i)) {
            return Err(Error::Link {
                path: path.to_owned(),
                reason: format!("{} is not granted to the {role} (world `{}`)", crate::text::quote(bad), role.world()),
            });
        }
        let link_err = |e: wasmtime::Error| Error::Link { path: path.to_owned(), reason: format!("{e:#}") };
        let pre = inner.linker.instantiate_pre(&component).map_err(link_err)?;
        let plugin_exports = RoleExports::new(role, contract, &pre).map_err(link_err)?;

        let fallback_name: Arc<str> = path.file_stem().map_or("plugin".into(), |s| s.to_string_lossy().into());
        let mut plugin = Plugin {
            engine: engine.clone(),
            pre,
            exports: plugin_exports,
            name: fallback_name,
            path: path.to_owned(),
            digest,
            role,
            contract,
            wit_version,
            metadata: Metadata {
                name: String::new(),
                version: String::new(),
                description: String::new(),
                config: vec![],
            },
            imports,
            config: vec![],
            // `describe` runs under the default limits: options are chosen by plugin name.
            limits: Limits::default(),
            read_dir: None,
            seed: 0,
            calls: 0,
        };

        let metadata = plugin
            .call_raw("describe", None, false, |store, instance, exports| Ok(Ok(exports.describe(store, instance)?)))?;
        metadata.check().map_err(|reason| Error::InvalidOutput {
            plugin: plugin.name.to_string(),
            call: "describe",
            reason,
        })?;
        plugin.name = metadata.name.as_str().into();
        plugin.metadata = metadata;
        Ok(plugin)
    }

    /// Apply the options chosen by the plugin's declared name, and let the plugin check
    /// its settings now, not in the middle of a run.
    fn configured(mut self, options: impl FnOnce(&str) -> PluginOptions) -> Result<Plugin> {
        let name = self.metadata.name.clone();
        let options = options(&name);
        if let Some(dir) = &options.read_dir
            && !dir.is_dir()
        {
            return Err(Error::Grant { plugin: name, dir: dir.clone(), reason: "not a directory".into() });
        }
        (self.limits, self.read_dir) = (options.limits, options.read_dir);
        let resolved =
            self.metadata.resolve(&options.config).map_err(|reason| Error::Config { plugin: name, reason })?;
        self.config = resolved;
        self.call_raw("configure", None, true, |_, _, _| Ok(Ok(())))?;
        Ok(self)
    }

    /// The name the plugin declares.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sha256 of the component's bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The interfaces the component imports.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// The `eva:plugin` version the plugin was built against, as its role export names it.
    pub fn wit_version(&self) -> &str {
        &self.wit_version
    }

    /// The contract the host calls the plugin through.
    pub fn contract(&self) -> Contract {
        self.contract
    }

    /// The configuration sent to the plugin: the user's keys only, typed.
    pub fn config(&self) -> Vec<(String, ConfigValue)> {
        self.config.clone()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Restart the plugin's random stream from `seed`. The eva loop reseeds before each
    /// phase so that a resumed run draws the same numbers as an uninterrupted one.
    pub fn reseed(&mut self, seed: u64) {
        self.seed = seed;
        self.calls = 0;
    }

    pub(crate) fn wrong_role(&self, expected: Role) -> Error {
        Error::WrongRole { plugin: self.name.to_string(), expected, found: self.role }
    }

    pub(crate) fn invalid_output(&self, call: &'static str, reason: String) -> Error {
        Error::InvalidOutput { plugin: self.name.to_string(), call, reason }
    }

    pub(crate) fn invalid_input(&self, call: &'static str, reason: String) -> Error {
        Error::InvalidInput { plugin: self.name.to_string(), call, reason }
    }

    fn new_store(&mut self, generator: Option<(Arc<dyn Generator>, u32)>) -> Result<Store<State>> {
        // Each call draws from its own stream: splitmix64 of (seed, call number).
        let mut z = self.seed.wrapping_add(self.calls.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        self.calls += 1;
        let (generator, generate_budget) = generator.map_or((None, 0), |(g, b)| (Some(g), b));
        let state = State::new(CallSetup {
            plugin: self.name.clone(),
            limits: &self.limits,
            seed: z ^ (z >> 31),
            read_dir: self.read_dir.as_deref(),
            generator,
            generate_budget,
        })
        .map_err(|e| Error::Grant {
            plugin: self.name.to_string(),
            dir: self.read_dir.clone().unwrap_or_default(),
            reason: e.to_string(),
        })?;
        let mut store = Store::new(&self.engine.inner().engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            if ctx.data_mut().within_deadline() { Ok(UpdateDeadline::Continue(1)) } else { Err(Trap::Interrupt.into()) }
        });
        Ok(store)
    }

    /// Run one export in a fresh instance: set up the store, instantiate, configure (when
    /// `configure` is set), call `f`, and turn traps and reported errors into [`Error`]s.
    pub(crate) fn call_raw<R>(
        &mut self,
        call: &'static str,
        generator: Option<(Arc<dyn Generator>, u32)>,
        configure: bool,
        f: impl FnOnce(&mut Store<State>, &Instance, &RoleExports) -> crate::guest::Called<R>,
    ) -> Result<R> {
        let _span = tracing::debug_span!("plugin_call", plugin = &*self.name, call).entered();
        let mut store = self.new_store(generator)?;
        let config = &self.config;
        let (pre, exports) = (&self.pre, &self.exports);
        let outcome = (|| {
            let instance = pre.instantiate(&mut store)?;
            if configure && let Err(e) = exports.configure(&mut store, &instance, config)? {
                return Ok(Err(("configure", e)));
            }
            Ok(f(&mut store, &instance, exports)?.map_err(|e| (call, e)))
        })();
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err((call, error))) => Err(Error::Reported { plugin: self.name.to_string(), call, error }),
            Err(err) => Err(Error::Trap { plugin: self.name.to_string(), call, kind: classify(&err, store.data()) }),
        }
    }
}

/// Name what ended a call, from what the store saw and the trap wasmtime raised.
fn classify(err: &wasmtime::Error, state: &State) -> TrapKind {
    let limits = state.limits();
    match state.overrun {
        Some(Overrun::Cpu) => return TrapKind::Timeout { limit: limits.timeout },
        Some(Overrun::Wall) => return TrapKind::WallTimeout { limit: limits.wall_timeout },
        None => {}
    }
    if let Some(requested) = state.limiter.refused {
        return TrapKind::OutOfMemory { limit: state.limiter.limit, requested };
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::UnreachableCodeReached) => TrapKind::Panic {
            message: state
                .last_error
                .clone()
                .unwrap_or_else(|| "the plugin aborted (reached `unreachable`) without logging a message".to_owned()),
        },
        Some(Trap::Interrupt) => TrapKind::Timeout { limit: limits.timeout },
        Some(trap) => TrapKind::Other { message: trap.to_string() },
        None => TrapKind::Other { message: format!("{:#}", err.root_cause()) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worlds_grant_only_their_imports() {
        let current = Contract::Current;
        assert!(import_allowed(Role::Sampler, current, "eva:plugin/log@0.2.0"));
        assert!(import_allowed(Role::Sampler, current, "wasi:filesystem/preopens@0.2.0"));
        assert!(!import_allowed(Role::Sampler, current, "eva:plugin/generate@0.2.0"));
        assert!(import_allowed(Role::Evolver, current, "eva:plugin/generate@0.2.0"));
        assert!(!import_allowed(Role::Evolver, current, "eva:plugin/generate@0.9.0"));
        assert!(!import_allowed(Role::InfoMetric, current, "acme:net/http@1.0.0"));
        assert!(import_allowed(Role::Evolver, Contract::V0_1, "eva:plugin/generate@0.1.0"));
        assert!(!import_allowed(Role::Evolver, Contract::V0_1, "eva:plugin/generate@0.2.0"), "one version per plugin");
    }
}
