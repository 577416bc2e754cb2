//! Host bindings generated from the contract, and nothing else: the host side of the
//! imports is in `state.rs` and the calls of a role's exports in `guest.rs`, so both
//! depend on the bindings and the bindings on nothing of the crate.
//!
//! Each version is generated for its `host` world, the union of every role, so one set of
//! types serves every role: [`current`] from `wit/` (0.2), [`v0_1`] from the frozen
//! 0.1.1 contract in `compat/`, for plugins built against 0.1.x.

pub mod current {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "host",
    });

    pub use eva::plugin::{generate, log, random, types};
    pub use exports::eva::plugin::{evolve, info, pair, rate, sample};
}

pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "compat/wit-0.1.1",
        world: "host",
    });

    pub use eva::plugin::{generate, log, random, types};
    pub use exports::eva::plugin::{evolve, info, pair, rate, sample};
}
