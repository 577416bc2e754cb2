//! The workspace's integration tests, one module per subject, linked into one test binary
//! (`cargo test -p eva-test-support --test integration [FILTER]`; a module's tests by
//! its name, e.g. `hostile_plugins::`). They build the first-party plugins and the
//! fixtures into components once per process (see `eva_test_support::component`).

mod contract;
mod engine_families;
mod engine_model;
mod engine_reference;
mod external_trainer;
mod first_party_plugins;
mod hostile_plugins;
mod other_languages;
mod remote_vllm;
mod reward_classifier;
mod reward_judge;
mod sandbox;
mod solver_train;
