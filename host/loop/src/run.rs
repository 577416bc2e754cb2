//! The run: iterations of the creator and the solver as phases of a run directory, with
//! the seams a run is made of. The policy θ_t ([`Policy`], loaded by an [`Engine`]),
//! the reward ([`Reward`]), the trainer ([`Trainer`]) and the four roles are traits: the
//! in-process candle engine and the Wasm plugins are one implementation, test fakes
//! another. [`run`] skips every finished phase, so a resumed run computes only what is
//! missing, with the same seeds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eva_engine::Message;
use eva_plugin_runtime::Generator;

use crate::cost::Meter;
use crate::creator::{self, Evolution, Evolver, InfoMetric, RoleError, Sampler};
use crate::dedup::Seen;
use crate::layout::{self, Answers, IterationSummary, PairRecord, Phase, PromptRecord, RunStore};
use crate::numbers::mean;
use crate::solver::{self, Pairing};

/// An answer before it is scored.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Draft {
    pub text: String,
    pub tokens: u32,
}

/// How answers are sampled.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// Answers per prompt.
    pub n: usize,
    pub temperature: f32,
    pub top_p: f32,
    pub max_new_tokens: usize,
    pub seed: u64,
}

/// The policy θ_t of one iteration.
pub trait Policy {
    /// `sampling.n` answers per prompt, in order; `what` names the work for progress.
    fn respond(&self, prompts: &[PromptRecord], sampling: &Sampling, what: &str) -> Result<Vec<Vec<Draft>>, RoleError>;
    /// Why a prompt cannot be answered with `max_new_tokens` more tokens (its context is
    /// too short), if so.
    fn unfit(&self, messages: &[Message], max_new_tokens: usize) -> Result<Option<String>, RoleError>;
    /// The policy as the creator model, behind the evolver's `generate`.
    fn generator(&self, max_tokens: u32, seed: u64) -> Arc<dyn Generator>;
}

/// Loads θ_t: the base model, or the model an iteration trained.
pub trait Engine {
    type Policy: Policy;
    fn load(&mut self, path: &Path) -> Result<Self::Policy, RoleError>;
}

/// Scores answers: r(x, y) for every draft.
pub trait Reward {
    fn score(&mut self, prompts: &[PromptRecord], drafts: Vec<Vec<Draft>>) -> Result<Vec<Answers>, RoleError>;
}

/// Trains θ_t on pairs into θ_{t+1}, saved at `model_dir`, checkpointing in `out`;
/// resumes from `out` when a checkpoint is there. Returns each step's (loss, margin).
pub trait Trainer<P> {
    fn train(
        &mut self,
        policy: &P,
        pairs: &[PairRecord],
        out: &Path,
        model_dir: &Path,
    ) -> Result<Vec<(f64, f64)>, RoleError>;
    /// The (loss, margin) of each step of a finished training in `out`.
    fn losses(&self, out: &Path) -> Result<Vec<(f64, f64)>, RoleError>;
}

/// Told what a run does; the library prints nothing itself.
pub trait Observer {
    /// An iteration finished, with its summary.
    fn iteration(&mut self, summary: &IterationSummary);
}

/// The creator's and solver's policies.
pub struct Roles<'a> {
    pub info: &'a mut dyn InfoMetric,
    pub sampler: &'a mut dyn Sampler,
    pub evolver: &'a mut dyn Evolver,
    pub pairing: &'a mut dyn Pairing,
}

/// The loop's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub iterations: usize,
    /// How answers are sampled; the seed of iteration t is derived from `sampling.seed`.
    pub sampling: Sampling,
    pub sample_fraction: f64,
    pub evolve_max_tokens: u32,
    pub buffer_fraction: f64,
    pub dedup_threshold: f64,
    /// The fixed-prompt baseline: no info, sample or evolve; X'_t = X_t.
    pub no_evolve: bool,
    /// Prompts answered and scored per commit of an answer phase.
    pub chunk: usize,
}

/// The seed of iteration t.
pub fn iteration_seed(run_seed: u64, t: usize) -> u64 {
    run_seed ^ (t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// What a run needs besides its store and settings.
pub struct Parts<'a, E: Engine> {
    pub engine: &'a mut E,
    /// A creator model that is not the policy (`None`: the policy of each iteration).
    pub creator: Option<&'a dyn Policy>,
    pub reward: &'a mut dyn Reward,
    pub trainer: &'a mut dyn Trainer<E::Policy>,
    pub roles: Roles<'a>,
    pub observer: &'a mut dyn Observer,
}

/// Run (or resume) the iterations from `seeds` and the policy at `base`; returns the
/// newest policy.
pub fn run<E: Engine>(
    store: &RunStore,
    settings: &Settings,
    seeds: &[PromptRecord],
    base: PathBuf,
    parts: Parts<'_, E>,
) -> layout::Result<PathBuf> {
    let Parts { engine, creator, reward, trainer, mut roles, observer } = parts;
    let s = settings;
    let metrics = store.metrics();
    let mut policy_path = base;
    let mut prompts = seeds.to_vec();
    let mut seen = Seen::default();
    seeds.iter().for_each(|p| seen.insert(&p.messages.last().map(|m| m.content.clone()).unwrap_or_default()));
    let mut summaries: Vec<IterationSummary> = store.read(&metrics)?.unwrap_or_default();
    for t in 1..=s.iterations {
        let dir = store.iteration(t);
        let next_path = dir.next_prompts();
        let model_dir = dir.model();
        if let Some(m) = summaries.iter().find(|m| m.iteration == t) {
            // Finished earlier: carry its prompts, seen set and policy on.
            prompts = store.read(&next_path)?.ok_or_else(|| layout::Error::Missing { path: next_path.clone() })?;
            creator::remember_kept(&mut seen, &store.read(&dir.evolved())?.unwrap_or_default());
            if let Some(model) = store.trained_model(m)? {
                policy_path = model;
            }
            continue;
        }
        let _span = tracing::info_span!("iteration", t).entered();
        let failed = |phase: &str| {
            let phase = phase.to_owned();
            move |source| layout::Error::Phase { phase, source }
        };
        let policy = engine.load(&policy_path).map_err(failed("load the policy"))?;
        let seed = iteration_seed(s.sampling.seed, t);
        let sampling = Sampling { seed, ..s.sampling.clone() };
        // Chunk k of a phase samples with a seed of its own; one chunk keeps the
        // iteration's seed.
        let mut answer = |k: usize, records: &[PromptRecord], what: &str| -> Result<Vec<Answers>, RoleError> {
            let seed = if k == 0 { sampling.seed } else { iteration_seed(sampling.seed, k) };
            let chunk = Sampling { seed, ..sampling.clone() };
            reward.score(records, policy.respond(records, &chunk, what)?)
        };

        // Creator.
        let answers = store.chunked_phase(Phase::RespondScore.name(), &dir.answers(), &prompts, s.chunk, |k, p| {
            answer(k, p, "answering X_t")
        })?;
        let (next, infos, selected, evolved) = if s.no_evolve {
            (store.phase(Phase::Mix.name(), &next_path, || Ok(prompts.clone()))?, vec![], vec![], vec![])
        } else {
            let unfit = |m: &[Message]| policy.unfit(m, s.sampling.max_new_tokens);
            let generator = || creator.unwrap_or(&policy).generator(s.evolve_max_tokens, seed);
            let step = CreatorStep {
                t,
                seed,
                prompts: &prompts,
                answers: &answers,
                generator: &generator,
                unfit: &unfit,
                until: Phase::Mix,
            };
            creator_phases(store, s, &mut roles, &mut seen, step)?
        };

        // Solver: answers for X'_t (old prompts reuse theirs), pairs, training.
        let known: HashMap<&str, &Answers> = answers.iter().map(|a| (a.id.as_str(), a)).collect();
        let fresh: Vec<PromptRecord> = next.iter().filter(|p| !known.contains_key(p.id.as_str())).cloned().collect();
        let fresh_answers =
            store.chunked_phase(Phase::SolveRespondScore.name(), &dir.solve_answers(), &fresh, s.chunk, |k, p| {
                answer(k, p, "answering X'_t")
            })?;
        let all: HashMap<&str, &Answers> = answers.iter().chain(&fresh_answers).map(|a| (a.id.as_str(), a)).collect();
        let pairs = store.phase_by(Phase::Pair.name(), &dir.pairs(), roles.pairing.producer(), || {
            solver::pair(roles.pairing, &next, &all, seed)
        })?;
        let out = dir.train();
        let losses = if model_dir.is_dir() {
            trainer.losses(&out)
        } else if pairs.is_empty() {
            tracing::warn!("no preference pairs: the policy carries on untrained");
            Ok(vec![])
        } else {
            let meter = Meter::start();
            let losses = trainer.train(&policy, &pairs, &out, &model_dir);
            if losses.is_ok() && out.join("metrics.jsonl").is_file() {
                store.record_cost(&out.join("metrics.jsonl"), meter.stop())?;
            }
            losses
        }
        .map_err(failed(Phase::Train.name()))?;
        drop(policy);
        // Training's tensors are freed, but kept by the allocator for speed within a step;
        // the next iteration's sampling should not start from training's high-water mark.
        eva_engine::alloc::release_freed_memory();
        if model_dir.is_dir() {
            policy_path = model_dir;
        }

        let summary = summarize(t, &prompts, &answers, &infos, selected.len(), &evolved, &next, pairs.len(), &losses);
        observer.iteration(&summary);
        summaries.push(summary);
        store.rewrite(&metrics, &summaries)?;
        prompts = next;
    }
    Ok(policy_path)
}

/// What the creator's phases of one iteration work from.
pub struct CreatorStep<'a> {
    pub t: usize,
    /// The iteration's seed ([`iteration_seed`]).
    pub seed: u64,
    /// X_t, and the answers to it, with their rewards.
    pub prompts: &'a [PromptRecord],
    pub answers: &'a [Answers],
    /// The creator model behind the evolver's `generate`, made when the evolve phase runs.
    pub generator: &'a dyn Fn() -> Arc<dyn Generator>,
    pub unfit: creator::FitCheck<'a>,
    /// The last phase to run: [`Phase::Mix`] runs them all; [`Phase::Info`] or
    /// [`Phase::Select`] stop early (a replay that has no creator model).
    pub until: Phase,
}

/// The creator's phases of iteration `step.t` (info, select, evolve, mix), each loaded
/// when a previous run finished it; the kept variants join `seen`. Returns X'_t, the info
/// scores, the selected prompts and the evolved ones. A run and a replay share it.
pub fn creator_phases(
    store: &RunStore,
    s: &Settings,
    roles: &mut Roles<'_>,
    seen: &mut Seen,
    step: CreatorStep<'_>,
) -> layout::Result<(Vec<PromptRecord>, Vec<layout::Info>, Vec<layout::Info>, Vec<layout::EvolvedRecord>)> {
    let CreatorStep { t, seed, prompts, answers, generator, unfit, until } = step;
    let dir = store.iteration(t);
    let infos = store.phase_by(Phase::Info.name(), &dir.info(), roles.info.producer(), || {
        creator::info(roles.info, prompts, answers, seed)
    })?;
    if until < Phase::Select {
        return Ok((vec![], infos, vec![], vec![]));
    }
    let selected = store.phase_by(Phase::Select.name(), &dir.selected(), roles.sampler.producer(), || {
        creator::sample(roles.sampler, &infos, s.sample_fraction, seed)
    })?;
    if until < Phase::Evolve {
        return Ok((vec![], infos, selected, vec![]));
    }
    let evolved = store.phase_by(Phase::Evolve.name(), &dir.evolved(), roles.evolver.producer(), || {
        let step =
            Evolution { iteration: t, seed, generator: generator(), seen, dedup_threshold: s.dedup_threshold, unfit };
        creator::evolve(roles.evolver, prompts, &selected, step)
    })?;
    // Loaded or computed alike, the kept variants join the seen set.
    creator::remember_kept(seen, &evolved);
    let next = store.phase(Phase::Mix.name(), &dir.next_prompts(), || {
        Ok(creator::mix(prompts, &evolved, s.buffer_fraction, seed))
    })?;
    Ok((next, infos, selected, evolved))
}

/// One line of `metrics.jsonl`.
#[allow(clippy::too_many_arguments)]
fn summarize(
    t: usize,
    prompts: &[PromptRecord],
    answers: &[Answers],
    infos: &[layout::Info],
    selected: usize,
    evolved: &[layout::EvolvedRecord],
    next: &[PromptRecord],
    pairs: usize,
    losses: &[(f64, f64)],
) -> IterationSummary {
    let rewards: Vec<f64> = answers.iter().flat_map(|a| a.answers.iter().map(|a| a.reward)).collect();
    let infos: Vec<f64> = infos.iter().map(|i| i.info).collect();
    let words: Vec<usize> =
        next.iter().map(|p| p.messages.last().map_or(0, |m| m.content.split_whitespace().count())).collect();
    IterationSummary {
        iteration: t,
        prompts: prompts.len(),
        mean_reward: mean(&rewards),
        info_mean: mean(&infos),
        info_max: infos.iter().copied().reduce(f64::max),
        selected,
        evolved: evolved.len(),
        kept: evolved.iter().filter(|e| e.kept).count(),
        next_prompts: next.len(),
        pairs,
        mean_prompt_words: words.iter().sum::<usize>() as f64 / words.len().max(1) as f64,
        first_loss: losses.first().map(|l| l.0),
        last_loss: losses.last().map(|l| l.0),
        last_margin: losses.last().map(|l| l.1),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use eva_plugin_runtime::{
        ChatMessage, Evolved, GenerateRequest, Preference, Prompt, PromptResponses, PromptRewards,
    };

    use super::*;

    /// What the fakes were asked to do.
    #[derive(Default, Debug, PartialEq)]
    struct Calls {
        loads: Vec<PathBuf>,
        responses: usize,
        info: usize,
        evolve: usize,
        pair: usize,
        trained: usize,
    }

    type Log = Rc<RefCell<Calls>>;

    struct FakePolicy(Log);

    impl Policy for FakePolicy {
        fn respond(&self, prompts: &[PromptRecord], s: &Sampling, _: &str) -> Result<Vec<Vec<Draft>>, RoleError> {
            self.0.borrow_mut().responses += prompts.len();
            Ok(prompts
                .iter()
                .map(|p| {
                    (0..s.n)
                        .map(|i| Draft {
                            text: format!("{} / {i} / {}", p.messages[0].content, s.seed % 97),
                            tokens: i as u32,
                        })
                        .collect()
                })
                .collect())
        }
        fn unfit(&self, _: &[Message], _: usize) -> Result<Option<String>, RoleError> {
            Ok(None)
        }
        fn generator(&self, _: u32, _: u64) -> Arc<dyn Generator> {
            Arc::new(NoModel)
        }
    }

    struct NoModel;

    impl Generator for NoModel {
        fn complete(&self, _: &[GenerateRequest]) -> Result<Vec<String>, String> {
            Err("no model in these tests".into())
        }
    }

    struct FakeEngine(Log);

    impl Engine for FakeEngine {
        type Policy = FakePolicy;
        fn load(&mut self, path: &Path) -> Result<FakePolicy, RoleError> {
            self.0.borrow_mut().loads.push(path.to_owned());
            Ok(FakePolicy(self.0.clone()))
        }
    }

    /// The answer's index as its reward.
    struct ByIndex;

    impl Reward for ByIndex {
        fn score(&mut self, prompts: &[PromptRecord], drafts: Vec<Vec<Draft>>) -> Result<Vec<Answers>, RoleError> {
            Ok(prompts
                .iter()
                .zip(drafts)
                .map(|(p, ds)| Answers {
                    id: p.id.clone(),
                    answers: ds
                        .into_iter()
                        .map(|d| layout::Answer { reward: d.tokens as f64, tokens: d.tokens, text: d.text })
                        .collect(),
                })
                .collect())
        }
    }

    /// Writes a model directory and one step's losses.
    struct FakeTrainer(Log);

    impl Trainer<FakePolicy> for FakeTrainer {
        fn train(
            &mut self,
            _: &FakePolicy,
            pairs: &[PairRecord],
            out: &Path,
            model: &Path,
        ) -> Result<Vec<(f64, f64)>, RoleError> {
            self.0.borrow_mut().trained += 1;
            std::fs::create_dir_all(out)?;
            std::fs::write(out.join("loss"), format!("{}", pairs.len()))?;
            std::fs::create_dir_all(model)?;
            std::fs::write(model.join("config.json"), "{}")?;
            self.losses(out)
        }
        fn losses(&self, out: &Path) -> Result<Vec<(f64, f64)>, RoleError> {
            let pairs: f64 = std::fs::read_to_string(out.join("loss"))?.parse()?;
            Ok(vec![(0.69, 0.0), (0.5, pairs)])
        }
    }

    struct FakeInfo(Log);

    impl InfoMetric for FakeInfo {
        fn reseed(&mut self, _: u64) {}
        fn score_batch(&mut self, items: &[PromptRewards]) -> Result<Vec<f64>, RoleError> {
            self.0.borrow_mut().info += 1;
            Ok(items.iter().map(|i| i.rewards.iter().sum()).collect())
        }
    }

    struct FirstOnes;

    impl Sampler for FirstOnes {
        fn reseed(&mut self, _: u64) {}
        fn sample(&mut self, _: &[f64], count: usize) -> Result<Vec<usize>, RoleError> {
            Ok((0..count).collect())
        }
    }

    /// With `barren`, the evolver copies its inputs (every variant a duplicate) and the
    /// pairing makes no pair.
    struct FakeEvolver {
        log: Log,
        barren: bool,
    }

    impl Evolver for FakeEvolver {
        fn name(&self) -> &str {
            "fake"
        }
        fn reseed(&mut self, _: u64) {}
        fn evolve(&mut self, prompts: &[Prompt], _: Arc<dyn Generator>) -> Result<Vec<Evolved>, RoleError> {
            self.log.borrow_mut().evolve += 1;
            Ok(prompts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let text = &p.messages[0].content;
                    let text = if self.barren { text.clone() } else { format!("{text} Then explain why, in a list.") };
                    Evolved {
                        parent: i as u32,
                        messages: vec![ChatMessage::user(text)],
                        method: "fake".into(),
                        labels: None,
                    }
                })
                .collect())
        }
    }

    struct FakePairing {
        log: Log,
        barren: bool,
    }

    impl Pairing for FakePairing {
        fn reseed(&mut self, _: u64) {}
        fn pair_batch(&mut self, items: &[PromptResponses]) -> Result<Vec<Vec<Preference>>, RoleError> {
            self.log.borrow_mut().pair += 1;
            let pair = if self.barren { vec![] } else { vec![Preference { chosen: 1, rejected: 0 }] };
            Ok(items.iter().map(|_| pair.clone()).collect())
        }
    }

    struct Quiet;

    impl Observer for Quiet {
        fn iteration(&mut self, _: &IterationSummary) {}
    }

    fn seeds() -> Vec<PromptRecord> {
        ["Name a color.", "Count to three.", "Why is the sea salty?"]
            .iter()
            .enumerate()
            .map(|(i, t)| PromptRecord {
                id: format!("seed-{i}"),
                messages: vec![Message::new("user", *t)],
                origin: "seed".into(),
                parent: None,
                method: None,
                labels: None,
            })
            .collect()
    }

    fn settings() -> Settings {
        Settings {
            iterations: 2,
            sampling: Sampling { n: 2, temperature: 0.7, top_p: 0.9, max_new_tokens: 8, seed: 3 },
            sample_fraction: 0.5,
            evolve_max_tokens: 8,
            buffer_fraction: 0.2,
            dedup_threshold: 0.8,
            no_evolve: false,
            // Several chunks per answer phase: the resume tests cover chunked phases.
            chunk: 2,
        }
    }

    /// Run the fakes over `dir`; what they were asked.
    fn run_fakes(dir: &Path, barren: bool) -> (PathBuf, Calls) {
        let log = Log::default();
        let store = RunStore { dir: dir.to_owned() };
        let (mut info, mut sampler) = (FakeInfo(log.clone()), FirstOnes);
        let mut evolver = FakeEvolver { log: log.clone(), barren };
        let mut pairing = FakePairing { log: log.clone(), barren };
        let parts = Parts {
            engine: &mut FakeEngine(log.clone()),
            creator: None,
            reward: &mut ByIndex,
            trainer: &mut FakeTrainer(log.clone()),
            roles: Roles { info: &mut info, sampler: &mut sampler, evolver: &mut evolver, pairing: &mut pairing },
            observer: &mut Quiet,
        };
        let last = run(&store, &settings(), &seeds(), PathBuf::from("base"), parts).unwrap();
        let calls = std::mem::take(&mut *log.borrow_mut());
        (last, calls)
    }

    fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out = vec![];
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else if e.file_name() != "phases.json" {
                    out.push((
                        e.path().strip_prefix(dir).unwrap().display().to_string(),
                        std::fs::read(e.path()).unwrap(),
                    ));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_resumed_run_redoes_no_finished_phase_and_ends_the_same() {
        let full = tempfile::tempdir().unwrap();
        let (last, calls) = run_fakes(full.path(), false);
        assert_eq!(last, full.path().join("iter-2/model"));
        assert_eq!(calls.loads, [PathBuf::from("base"), full.path().join("iter-1/model")], "θ_2 is θ_1 trained");
        assert_eq!((calls.info, calls.evolve, calls.pair, calls.trained), (2, 2, 2, 2));

        // Cut back to a kill right after iteration 2's evolve phase.
        let cut = tempfile::tempdir().unwrap();
        for (name, bytes) in files(full.path()) {
            let keep = name.starts_with("iter-1/")
                || ["iter-2/answers.jsonl", "iter-2/info.jsonl", "iter-2/selected.jsonl", "iter-2/evolved.jsonl"]
                    .contains(&name.as_str());
            if keep {
                let path = cut.path().join(&name);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, bytes).unwrap();
            }
        }
        let store = RunStore { dir: cut.path().to_owned() };
        let first: Vec<IterationSummary> =
            RunStore { dir: full.path().to_owned() }.read(&full.path().join("metrics.jsonl")).unwrap().unwrap();
        store.rewrite(&cut.path().join("metrics.jsonl"), &first[..1]).unwrap();
        let (_, resumed) = run_fakes(cut.path(), false);
        assert_eq!(resumed.loads, [cut.path().join("iter-1/model")], "iteration 1 is not loaded again");
        assert_eq!((resumed.info, resumed.evolve, resumed.pair, resumed.trained), (0, 0, 1, 1));
        assert_eq!(files(cut.path()), files(full.path()), "every file as the uninterrupted run wrote it");
    }

    #[test]
    fn an_iteration_with_no_kept_prompt_and_no_pair_carries_on() {
        let dir = tempfile::tempdir().unwrap();
        let (last, calls) = run_fakes(dir.path(), true);
        assert_eq!(last, PathBuf::from("base"), "nothing was trained");
        assert_eq!(calls.loads, [PathBuf::from("base"), PathBuf::from("base")]);
        assert_eq!(calls.trained, 0);
        let store = RunStore { dir: dir.path().to_owned() };
        let next: Vec<PromptRecord> = store.read(&dir.path().join("iter-1/prompts-next.jsonl")).unwrap().unwrap();
        assert_eq!(next, seeds(), "X'_1 = X_1");
        let evolved: Vec<layout::EvolvedRecord> =
            store.read(&dir.path().join("iter-1/evolved.jsonl")).unwrap().unwrap();
        assert!(evolved.iter().all(|e| !e.kept && e.dropped_because.as_deref() == Some("exact duplicate")));
        let metrics: Vec<IterationSummary> = store.read(&dir.path().join("metrics.jsonl")).unwrap().unwrap();
        assert_eq!(metrics.len(), 2);
        assert!(metrics.iter().all(|m| m.pairs == 0 && m.kept == 0 && m.first_loss.is_none()));
        assert_eq!(calls.responses, 3 + 3, "X'_t = X_t: only X_t is answered, once per iteration");
    }
}
