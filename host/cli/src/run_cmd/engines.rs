//! The engine a run's phases use: the in-process candle engine, or servers
//! (`--policy-endpoint`) with training on this machine or by an external command.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use eva_loop::candle::{CandleEngine, CandlePolicy, CandleTrainer, ScorerReward};
use eva_loop::external::ExternalTrainer;
use eva_loop::layout::{PromptRecord, RunStore};
use eva_loop::progress::Progress;
use eva_loop::run::{Parts, Policy, Trainer};
use eva_loop::settings::{LoopSettings, TrainerKind};
use eva_remote::client::Client;
use eva_remote::policy::{LocalTrainer, RemoteEngine, RemotePolicy, Served, Training};
use eva_reward::Scorer;

use crate::progress::Bars;
use crate::run_config::{RunConfig, ServerArgs};
use crate::run_plugins::Handles;
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
    let settings = s.run_settings();
    let servers = &config.servers;
    let served_creator = creator_on_server(servers, progress.clone())?;
    if servers.is_local() {
        let local_creator =
            config.creator_model.as_deref().map(|p| CandlePolicy::creator(p, s.weights, progress.clone()));
        let local_creator = local_creator.transpose()?;
        let creator = served_creator.as_ref().map(|c| c as &dyn Policy).or(local_creator.as_ref().map(|c| c as _));
        let mut trainer: Box<dyn Trainer<CandlePolicy>> = match training(s, progress.clone()) {
            Training::Candle(t) => Box::new(t),
            Training::External(t) => Box::new(t),
        };
        let parts = Parts {
            engine: &mut CandleEngine { weights: s.weights, progress },
            creator,
            reward,
            trainer: trainer.as_mut(),
            roles: handles.roles(),
            observer: &mut OneScreen,
        };
        return Ok(eva_loop::run::run(store, &settings, seeds, base, parts)?);
    }
    let clients = servers.endpoints.iter().map(|u| Client::new(u, Default::default())).collect::<Result<_, _>>()?;
    let name = servers.served_model.clone().unwrap_or_else(|| base.to_string_lossy().into_owned());
    let served = Arc::new(Served::new(clients, name, servers.endpoint_concurrency));
    let parts = Parts {
        engine: &mut RemoteEngine {
            served,
            base: base.clone(),
            store: RunStore::new(&store.dir),
            progress: progress.clone(),
        },
        creator: served_creator.as_ref().map(|c| c as &dyn Policy),
        reward,
        trainer: &mut LocalTrainer { training: training(s, progress), served_reference: servers.served_reference },
        roles: handles.roles(),
        observer: &mut OneScreen,
    };
    Ok(eva_loop::run::run(store, &settings, seeds, base, parts)?)
}

/// eva's trainer, or the user's command.
fn training(s: &LoopSettings, progress: Arc<dyn Progress>) -> Training {
    match (s.trainer, &s.trainer_command) {
        (TrainerKind::External, Some(command)) => Training::External(ExternalTrainer {
            command: command.clone(),
            solver: s.solver.clone(),
            progress,
            keep_update: false,
        }),
        _ => Training::Candle(CandleTrainer { solver: s.solver.clone(), progress, keep_update: false }),
    }
}

/// The creator model on `--creator-endpoint`, if given.
fn creator_on_server(servers: &ServerArgs, progress: Arc<dyn Progress>) -> Result<Option<RemotePolicy>> {
    let Some(url) = &servers.creator_endpoint else { return Ok(None) };
    let client = Client::new(url, Default::default())?;
    let name = match &servers.creator_served_model {
        Some(name) => name.clone(),
        None => client.only_model()?,
    };
    tracing::info!("the evolver's generate is served by `{name}` at {url}");
    let served = Arc::new(Served::new(vec![client], name, servers.endpoint_concurrency));
    Ok(Some(RemotePolicy::new(served, PathBuf::new(), progress)))
}
