//! The guest side of a call: a component's role interface, looked up once at link time,
//! and the typed guest of it loaded in each fresh instance.
//!
//! Bindings are generated for the `host` world, so every role's export is looked up on
//! its own. `describe` and `configure` begin every role's interface; [`RoleExports`]
//! calls the right one for a component.

use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use crate::bindings::{evolve, info, pair, rate, sample, types};
use crate::role::Role;
use crate::state::State;

/// The export indices of a component's role interface.
pub(crate) enum RoleExports {
    Info(info::GuestIndices),
    Sample(sample::GuestIndices),
    Evolve(evolve::GuestIndices),
    Pair(pair::GuestIndices),
    Rate(rate::GuestIndices),
}

/// Run the same expression over whichever role's guest the component exports.
macro_rules! each_role {
    ($self:expr, $store:expr, $instance:expr, |$guest:ident| $body:expr) => {
        match $self {
            RoleExports::Info(ix) => {
                let $guest = ix.load(&mut *$store, $instance)?;
                $body
            }
            RoleExports::Sample(ix) => {
                let $guest = ix.load(&mut *$store, $instance)?;
                $body
            }
            RoleExports::Evolve(ix) => {
                let $guest = ix.load(&mut *$store, $instance)?;
                $body
            }
            RoleExports::Pair(ix) => {
                let $guest = ix.load(&mut *$store, $instance)?;
                $body
            }
            RoleExports::Rate(ix) => {
                let $guest = ix.load(&mut *$store, $instance)?;
                $body
            }
        }
    };
}

/// `RoleExports::NAME(store, instance)`: the typed guest of one role. Handles check the
/// role when they are made, so asking for another role is a bug, reported as an error.
macro_rules! role_guest {
    ($($fn_name:ident: $variant:ident => $module:ident),* $(,)?) => {
        impl RoleExports {
            $(
                pub(crate) fn $fn_name(
                    &self,
                    store: &mut Store<State>,
                    instance: &Instance,
                ) -> wasmtime::Result<$module::Guest> {
                    match self {
                        RoleExports::$variant(ix) => ix.load(store, instance),
                        _ => Err(wasmtime::format_err!("the component does not export `{}`", stringify!($module))),
                    }
                }
            )*
        }
    };
}

role_guest!(info: Info => info, sample: Sample => sample, evolve: Evolve => evolve, pair: Pair => pair, rate: Rate => rate);

impl RoleExports {
    pub(crate) fn new(role: Role, pre: &InstancePre<State>) -> wasmtime::Result<Self> {
        Ok(match role {
            Role::InfoMetric => RoleExports::Info(info::GuestIndices::new(pre)?),
            Role::Sampler => RoleExports::Sample(sample::GuestIndices::new(pre)?),
            Role::Evolver => RoleExports::Evolve(evolve::GuestIndices::new(pre)?),
            Role::Pairing => RoleExports::Pair(pair::GuestIndices::new(pre)?),
            Role::Reward => RoleExports::Rate(rate::GuestIndices::new(pre)?),
        })
    }

    pub(crate) fn describe(&self, store: &mut Store<State>, instance: &Instance) -> wasmtime::Result<types::Metadata> {
        each_role!(self, store, instance, |guest| guest.call_describe(store))
    }

    pub(crate) fn configure(
        &self,
        store: &mut Store<State>,
        instance: &Instance,
        config: &[types::ConfigEntry],
    ) -> wasmtime::Result<Result<(), types::PluginError>> {
        each_role!(self, store, instance, |guest| guest.call_configure(store, config))
    }
}
