//! Host bindings generated from the contract in `wit/`, and nothing else: the host side
//! of the imports is in `state.rs` and the lookup of a role's export in `guest.rs`, so
//! both depend on the bindings and the bindings on nothing of the crate.
//!
//! They are generated for the `host` world, the union of every role, so one set of
//! types serves every role.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "host",
});

pub use eva::plugin::{generate, log, random, types};
pub use exports::eva::plugin::{evolve, info, pair, rate, sample};
