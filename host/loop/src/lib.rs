//! The eva loop as a library, in the paper's words.
//!
//! One iteration t of eva turns a prompt set X_t and a policy θ_t into X_{t+1} and
//! θ_{t+1}:
//! - the **creator** ([`creator`]) answers X_t, scores how informative each prompt is
//!   (*info*), picks prompts to evolve (*sample*), rewrites them (*evolve*, deduplicated
//!   against every prompt seen, see [`dedup`]) and joins the kept variants with a buffer
//!   of old prompts (*mix*) into X'_t;
//! - the **solver** ([`solver`]) answers the new prompts, builds preference *pairs* and
//!   trains θ_t on them into θ_{t+1}.
//!
//! Every step is a phase whose output is one file of the run directory, written
//! atomically; [`layout`] is the only code that knows those files, and its phase index
//! refuses a finished file that was cut or changed. The creator's policies are traits
//! ([`creator::InfoMetric`], [`creator::Sampler`], [`creator::Evolver`],
//! [`solver::Pairing`]) implemented by
//! the Wasm plugins of `eva-plugin-runtime` and by plain Rust values alike.
//!
//! [`run::run`] drives the iterations over its seams ([`run::Engine`] and
//! [`run::Policy`], [`run::Reward`], [`run::Trainer`], the roles, an [`run::Observer`]);
//! [`candle`] implements the seams with the in-process candle engine, [`external`] the
//! trainer with a command of the user's (TRL, OpenRLHF, ...); `eva-host run` gives
//! them and the Wasm plugins to [`run::run`]. [`replay`] runs the creator's phases of a
//! finished run again with other policies, over its recorded answers, without a model.
//! The library prints nothing itself: it logs
//! through `tracing`, and long work reports to a [`progress::Progress`]. [`settings`] holds every
//! setting of a run, typed, checked and with its default.

pub mod candle;
pub mod cost;
pub mod creator;
pub mod dedup;
pub mod external;
pub mod generator;
pub mod layout;
pub mod numbers;
pub mod progress;
pub mod replay;
pub mod run;
pub mod settings;
pub mod solver;
