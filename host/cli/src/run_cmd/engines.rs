//! The engine a run's phases use: the in-process candle engine, or servers
//! (`--policy-endpoint`) with training on this machine.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use eva_loop::candle::{CandleEngine, CandlePolicy, CandleTrainer, ScorerReward};
use eva_loop::layout::{PromptRecord, RunStore};
use eva_loop::run::Parts;
use eva_remote::client::Client;
use eva_remote::policy::{LocalTrainer, RemoteEngine, Served};
use eva_reward::Scorer;

use super::plugins::Handles;
use crate::progress::Bars;
use crate::run_config::RunConfig;
use crate::summary::OneScreen;

/// Run (or resume) the loop from the policy at `base`; returns the newest policy.
pub fn drive(
    store: &RunStore,
    config: &RunConfig,
    seeds: &[PromptRecord],
    base: PathBuf,
    scorer: Scorer,
    handles: &mut Handles,
) -> Result<PathBuf> {
    let s = &config.settings;
    let progress = Arc::new(Bars);
    let reward = &mut ScorerReward { scorer, normalize: s.reward.normalize, progress: progress.clone() };
    let trainer = CandleTrainer { solver: s.solver.clone(), progress: progress.clone(), keep_update: false };
    let settings = s.run_settings();
    if config.servers.is_local() {
        let creator = config.creator_model.as_deref().map(|p| CandlePolicy::creator(p, s.weights, progress.clone()));
        let creator = creator.transpose()?;
        let parts = Parts {
            engine: &mut CandleEngine { weights: s.weights, progress },
            creator: creator.as_ref(),
            reward,
            trainer: &mut { trainer },
            roles: handles.roles(),
            observer: &mut OneScreen,
        };
        return Ok(eva_loop::run::run(store, &settings, seeds, base, parts)?);
    }
    let servers = &config.servers;
    let clients = servers.endpoints.iter().map(|u| Client::new(u, Default::default())).collect::<Result<_, _>>()?;
    let name = servers.served_model.clone().unwrap_or_else(|| base.to_string_lossy().into_owned());
    let served = Arc::new(Served::new(clients, name, servers.endpoint_concurrency));
    let parts = Parts {
        engine: &mut RemoteEngine { served, base: base.clone(), store: RunStore::new(&store.dir), progress },
        creator: None,
        reward,
        trainer: &mut LocalTrainer(trainer),
        roles: handles.roles(),
        observer: &mut OneScreen,
    };
    Ok(eva_loop::run::run(store, &settings, seeds, base, parts)?)
}
