//! The guest side of a call: a component's role interface, looked up once at link time,
//! and called in each fresh instance with the runtime's plain types.
//!
//! A plugin is called through the contract version it was built against: [`RoleExports`]
//! holds the export indices of either the current bindings or the 0.1 ones, and each
//! version converts the same plain inputs and outputs (`convert.rs`), so the typed
//! handles never see a version.

use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use crate::config::{ConfigValue, Metadata};
use crate::error::ReportedError;
use crate::role::{Contract, Role};
use crate::state::State;
use crate::types::{Evolved, Exchange, Preference, Prompt, PromptResponses, PromptRewards};

/// What a guest call returns: a trap, or the plugin's own result.
pub(crate) type Called<T> = wasmtime::Result<Result<T, ReportedError>>;

/// The exports of one contract version, as module `$v` of the bindings and of `convert`
/// see them; every version's calls are the same code over their own types.
macro_rules! version_exports {
    ($v:ident) => {
        pub(crate) mod $v {
            use super::*;
            use crate::bindings::$v::{evolve, info, pair, rate, sample};
            use crate::convert::$v as convert;

            /// The export indices of a component's role interface.
            pub(crate) enum Exports {
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
                        Exports::Info(ix) => {
                            let $guest = ix.load(&mut *$store, $instance)?;
                            $body
                        }
                        Exports::Sample(ix) => {
                            let $guest = ix.load(&mut *$store, $instance)?;
                            $body
                        }
                        Exports::Evolve(ix) => {
                            let $guest = ix.load(&mut *$store, $instance)?;
                            $body
                        }
                        Exports::Pair(ix) => {
                            let $guest = ix.load(&mut *$store, $instance)?;
                            $body
                        }
                        Exports::Rate(ix) => {
                            let $guest = ix.load(&mut *$store, $instance)?;
                            $body
                        }
                    }
                };
            }

            /// The typed guest of one role. Handles check the role when they are made, so
            /// asking for another role is a bug, reported as an error.
            macro_rules! guest {
                ($self:expr, $store:expr, $instance:expr, $variant:ident, $module:ident) => {
                    match $self {
                        Exports::$variant(ix) => ix.load(&mut *$store, $instance)?,
                        _ => {
                            return Err(wasmtime::format_err!("the component does not export `{}`", stringify!($module)))
                        }
                    }
                };
            }

            impl Exports {
                pub(crate) fn new(role: Role, pre: &InstancePre<State>) -> wasmtime::Result<Self> {
                    Ok(match role {
                        Role::InfoMetric => Exports::Info(info::GuestIndices::new(pre)?),
                        Role::Sampler => Exports::Sample(sample::GuestIndices::new(pre)?),
                        Role::Evolver => Exports::Evolve(evolve::GuestIndices::new(pre)?),
                        Role::Pairing => Exports::Pair(pair::GuestIndices::new(pre)?),
                        Role::Reward => Exports::Rate(rate::GuestIndices::new(pre)?),
                    })
                }

                pub(crate) fn describe(
                    &self,
                    store: &mut Store<State>,
                    instance: &Instance,
                ) -> wasmtime::Result<Metadata> {
                    let m = each_role!(self, store, instance, |guest| guest.call_describe(&mut *store))?;
                    Ok(convert::metadata(m))
                }

                pub(crate) fn configure(
                    &self,
                    store: &mut Store<State>,
                    instance: &Instance,
                    config: &[(String, ConfigValue)],
                ) -> Called<()> {
                    let config: Vec<_> = config.iter().map(convert::config_entry).collect();
                    let r = each_role!(self, store, instance, |guest| guest.call_configure(&mut *store, &config))?;
                    Ok(r.map_err(convert::reported))
                }

                pub(crate) fn score(
                    &self,
                    store: &mut Store<State>,
                    i: &Instance,
                    item: &PromptRewards,
                ) -> Called<f64> {
                    let guest = guest!(self, store, i, Info, info);
                    Ok(guest.call_score(store, &convert::prompt_rewards(item))?.map_err(convert::reported))
                }

                pub(crate) fn score_batch(
                    &self,
                    store: &mut Store<State>,
                    i: &Instance,
                    items: &[PromptRewards],
                ) -> Called<Vec<f64>> {
                    let guest = guest!(self, store, i, Info, info);
                    let input: Vec<_> = items.iter().map(convert::prompt_rewards).collect();
                    Ok(guest.call_score_batch(store, &input)?.map_err(convert::reported))
                }

                pub(crate) fn sample(
                    &self,
                    store: &mut Store<State>,
                    i: &Instance,
                    scores: &[f64],
                    count: u32,
                ) -> Called<Vec<u32>> {
                    let guest = guest!(self, store, i, Sample, sample);
                    Ok(guest.call_sample(store, scores, count)?.map_err(convert::reported))
                }

                pub(crate) fn evolve(
                    &self,
                    store: &mut Store<State>,
                    i: &Instance,
                    prompts: &[Prompt],
                ) -> Called<Vec<Evolved>> {
                    let guest = guest!(self, store, i, Evolve, evolve);
                    let input: Vec<_> = prompts.iter().map(convert::prompt).collect();
                    let out = guest.call_evolve(store, &input)?;
                    Ok(out.map(|e| e.into_iter().map(convert::evolved).collect()).map_err(convert::reported))
                }

                pub(crate) fn pair(
                    &self,
                    store: &mut Store<State>,
                    i: &Instance,
                    item: &PromptResponses,
                ) -> Called<Vec<Preference>> {
                    let guest = guest!(self, store, i, Pair, pair);
                    let out = guest.call_pair(store, &convert::prompt_responses(item))?;
                    Ok(out.map(|p| p.into_iter().map(convert::preference).collect()).map_err(convert::reported))
                }

                pub(crate) fn pair_batch(
                    &self,
                    store: &mut Store<State>,
                    i: &Instance,
                    items: &[PromptResponses],
                ) -> Called<Vec<Vec<Preference>>> {
                    let guest = guest!(self, store, i, Pair, pair);
                    let input: Vec<_> = items.iter().map(convert::prompt_responses).collect();
                    let out = guest.call_pair_batch(store, &input)?;
                    Ok(out
                        .map(|l| l.into_iter().map(|p| p.into_iter().map(convert::preference).collect()).collect())
                        .map_err(convert::reported))
                }

                pub(crate) fn rate(&self, store: &mut Store<State>, i: &Instance, item: &Exchange) -> Called<f64> {
                    let guest = guest!(self, store, i, Rate, rate);
                    Ok(guest.call_rate(store, &convert::exchange(item))?.map_err(convert::reported))
                }

                pub(crate) fn rate_batch(
                    &self,
                    store: &mut Store<State>,
                    i: &Instance,
                    items: &[Exchange],
                ) -> Called<Vec<f64>> {
                    let guest = guest!(self, store, i, Rate, rate);
                    let input: Vec<_> = items.iter().map(convert::exchange).collect();
                    Ok(guest.call_rate_batch(store, &input)?.map_err(convert::reported))
                }
            }
        }
    };
}

version_exports!(current);
version_exports!(v0_1);

/// A component's role exports, under the contract version it was built against.
pub(crate) enum RoleExports {
    Current(current::Exports),
    V0_1(v0_1::Exports),
}

/// Forward each call to the version's exports.
macro_rules! forward {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        impl RoleExports {
            $(
                pub(crate) fn $name(&self, store: &mut Store<State>, instance: &Instance $(, $arg: $ty)*) -> $ret {
                    match self {
                        RoleExports::Current(e) => e.$name(store, instance $(, $arg)*),
                        RoleExports::V0_1(e) => e.$name(store, instance $(, $arg)*),
                    }
                }
            )*
        }
    };
}

forward! {
    describe() -> wasmtime::Result<Metadata>;
    configure(config: &[(String, ConfigValue)]) -> Called<()>;
    score(item: &PromptRewards) -> Called<f64>;
    score_batch(items: &[PromptRewards]) -> Called<Vec<f64>>;
    sample(scores: &[f64], count: u32) -> Called<Vec<u32>>;
    evolve(prompts: &[Prompt]) -> Called<Vec<Evolved>>;
    pair(item: &PromptResponses) -> Called<Vec<Preference>>;
    pair_batch(items: &[PromptResponses]) -> Called<Vec<Vec<Preference>>>;
    rate(item: &Exchange) -> Called<f64>;
    rate_batch(items: &[Exchange]) -> Called<Vec<f64>>;
}

impl RoleExports {
    pub(crate) fn new(role: Role, contract: Contract, pre: &InstancePre<State>) -> wasmtime::Result<Self> {
        Ok(match contract {
            Contract::Current => RoleExports::Current(current::Exports::new(role, pre)?),
            Contract::V0_1 => RoleExports::V0_1(v0_1::Exports::new(role, pre)?),
        })
    }
}
