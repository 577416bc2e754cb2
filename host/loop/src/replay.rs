//! Replay: the creator's phases of a finished run again, with other policies, over the
//! answers and rewards the run recorded: no model, no reward, seconds. Plugin authors
//! compare an info metric, a sampler or an evolver on real data this way.
//!
//! Iteration t works from the run's X_t (its seeds, then its `prompts-next.jsonl` of
//! t - 1) and the run's `answers.jsonl` of t, with the run's seeds, and writes `info`,
//! `selected`, `evolved` and `prompts-next` into a directory of its own, each phase
//! resumable as in a run. With the run's own policies it reproduces the run's creator
//! files, except that variants are not checked against the policy's context (there is no
//! tokenizer) and an evolver's `generate` is answered by whatever the caller gives.

use std::sync::Arc;

use eva_engine::Message;
use eva_plugin_runtime::Generator;

use crate::creator::RoleError;
use crate::dedup::Seen;
use crate::layout::{self, Phase, PromptRecord, RunStore};
use crate::run::{CreatorStep, Roles, Settings, creator_phases, iteration_seed};

/// Replay the creator phases of `source`'s finished iterations into `out`, up to `until`
/// (info, select, or mix for all four); returns how many iterations were replayed.
/// `generator` answers the evolver's `generate`.
pub fn replay(
    source: &RunStore,
    out: &RunStore,
    s: &Settings,
    mut roles: Roles<'_>,
    generator: Arc<dyn Generator>,
    until: Phase,
) -> layout::Result<usize> {
    let seeds: Vec<PromptRecord> =
        source.read(&source.seeds())?.ok_or_else(|| layout::Error::Missing { path: source.seeds() })?;
    let mut prompts = seeds;
    let mut seen = Seen::default();
    prompts.iter().for_each(|p| seen.insert(&p.messages.last().map(|m| m.content.clone()).unwrap_or_default()));
    let fits = |_: &[Message]| -> Result<Option<String>, RoleError> { Ok(None) };
    let mut replayed = 0;
    for t in 1..=s.iterations {
        let dir = source.iteration(t);
        let Some(answers) = source.read(&dir.answers())? else { break };
        let _span = tracing::info_span!("replay", t).entered();
        let seed = iteration_seed(s.sampling.seed, t);
        let make = || generator.clone();
        let step = CreatorStep { t, seed, prompts: &prompts, answers: &answers, generator: &make, unfit: &fits, until };
        creator_phases(out, s, &mut roles, &mut seen, step)?;
        replayed += 1;
        // The next iteration answered the run's X'_t, not the replay's.
        match source.read(&dir.next_prompts())? {
            Some(next) => prompts = next,
            None => break,
        }
    }
    if replayed == 0 {
        return Err(layout::Error::Missing { path: source.iteration(1).answers() });
    }
    tracing::info!(iterations = replayed, until = until.name(), "replayed");
    Ok(replayed)
}
