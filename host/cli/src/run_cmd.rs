//! `eva-host run`: the eva loop. Each iteration t runs the creator (respond, score,
//! info, select, evolve, mix) and the solver (respond, score, pair, train) as phases
//! whose outputs land atomically under `RUN_DIR/iter-t/`; `--resume` continues after the
//! last finished phase.

mod dedup;
mod generator;
pub mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use eva_engine::{GenerationParams, LanguageModel, Message, Sampling, WeightFormat};
use eva_plugin_registry::PluginLock;
use eva_plugin_runtime::{
    ChatMessage, Evolver, InfoMetric, Pairing, Plugin, Prompt, PromptResponses, PromptRewards, Role, Sampler,
    ScoredResponse,
};
use eva_reward::Scorer;
use rand::{SeedableRng, seq::SliceRandom};
use serde::{Deserialize, Serialize};

use crate::answering;
use crate::plugin_args::PluginArgs;
use crate::plugin_source::{PluginLoader, PluginSource};
use crate::reward_args::RewardArgs;
use crate::train_cmd::SolverArgs;
use generator::EngineGenerator;
use store::{Answers, EvolvedRecord, Info, IterationSummary, PairRecord, PromptRecord, RunStore};

/// The loop's settings: every key of `--config FILE` (TOML, kebab-case or snake_case) is
/// one of these flags, and a flag given on the command line wins over the file.
#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct LoopSettings {
    /// eva iterations (creator + solver each).
    #[arg(long, default_value_t = 2)]
    pub iterations: usize,
    /// Answers sampled per prompt (n).
    #[arg(long, default_value_t = 4)]
    pub answers: usize,
    /// Longest answer, in tokens.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Sampling temperature of the answers.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// How the policy's weights are stored for sampling answers and evolutions: f32
    /// (exact: the weights the solver trains) or q8_0 (8 bits per weight, eva's own
    /// kernels: about 3x faster sampling on x86 CPUs with AVX-512 VNNI, a little faster
    /// with AVX2, from a policy rounded to 8 bits; CPU only). Training uses f32 (see
    /// `--precision`).
    #[arg(long, default_value = "f32")]
    #[serde(default)]
    pub weights: WeightFormat,
    /// Nucleus mass of the answers' sampling.
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f32,
    /// Fraction of X_t the sampler picks for evolution.
    #[arg(long, default_value_t = 0.25)]
    pub sample_fraction: f64,
    /// The most tokens one of the evolver's generate requests may produce.
    #[arg(long, default_value_t = 256)]
    pub evolve_max_tokens: u32,
    /// Share of X'_t drawn uniformly from the old prompts (the buffer); the rest are
    /// evolved prompts.
    #[arg(long, default_value_t = 0.2)]
    pub buffer_fraction: f64,
    /// Jaccard similarity of word 3-shingles at which an evolved prompt counts as a
    /// near-duplicate of one already seen (1 keeps all but exact duplicates).
    #[arg(long, default_value_t = 0.8)]
    pub dedup_threshold: f64,
    /// The classic fixed-prompt baseline with the same budget: no info, sample or evolve;
    /// X'_t = X_t.
    #[arg(long)]
    pub no_evolve: bool,
    #[command(flatten)]
    #[serde(flatten)]
    pub solver: SolverArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub reward: RewardArgs,
}

#[derive(Args)]
pub struct RunArgs {
    /// Seed prompts, JSONL: `prompt` (a string) or `messages` (a chat ending with a user
    /// message), optional `id`. Required unless --resume.
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// The run directory.
    #[arg(long)]
    out: PathBuf,
    /// Continue the run in OUT after its last finished phase, with its saved config.
    #[arg(long)]
    resume: bool,
    /// A TOML file of loop settings (any flag below, by name); flags override it.
    #[arg(long = "config", value_name = "FILE")]
    settings_file: Option<PathBuf>,
    /// The policy: a .gguf file or a Hugging Face directory; default: the embedded
    /// SmolLM2-135M-Instruct.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Compute threads; default: the cores not already busy.
    #[arg(long, env = "EVA_THREADS")]
    threads: Option<usize>,
    /// A plugin (repeatable): a component file or `oci://HOST/REPO:TAG|@sha256:HEX`. Its
    /// role (info metric, sampler, evolver, pairing) is read from its exports and it
    /// replaces that role's first-party default.
    #[arg(long = "plugin", value_name = "FILE.wasm|oci://REF")]
    plugins: Vec<PluginSource>,
    /// Run with exactly the plugins a lock file records (a run's `plugins.lock`): registry
    /// plugins are pulled by the digest it pins, and any plugin whose bytes differ from
    /// the lock's is refused. Give the same `--plugin` flags as the locked run.
    #[arg(long = "plugin-lock", value_name = "FILE")]
    plugin_lock: Option<PathBuf>,
    /// Where the first-party plugins are looked up (NAME.wasm), and built into from the
    /// source tree when missing; default: the cache's `plugins/`.
    #[arg(long, value_name = "DIR")]
    plugins_dir: Option<PathBuf>,
    #[command(flatten)]
    plugin_args: PluginArgs,
    #[command(flatten)]
    settings: LoopSettings,
}

/// What `RUN_DIR/config.toml` records: everything a resume needs.
#[derive(Debug, Serialize, Deserialize)]
struct RunConfig {
    model: Option<PathBuf>,
    plugins: Vec<PluginSource>,
    plugins_dir: PathBuf,
    /// The plugins' settings (`--plugin-config`, limits, ...); a config file is kept by
    /// path.
    #[serde(default)]
    plugin_args: PluginArgs,
    settings: LoopSettings,
}

/// The models of a finished or partly finished run.
pub struct TrainedModels {
    /// The newest θ_{t+1}.
    pub last: PathBuf,
    /// The policy the run started from (`None`: the embedded default).
    pub base: Option<PathBuf>,
}

/// The models of the run in `dir`, or `None` when `dir` is not a run directory.
pub fn trained_models(dir: &Path) -> Result<Option<TrainedModels>> {
    let config_path = dir.join("config.toml");
    if !config_path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&config_path).with_context(|| format!("reading {}", config_path.display()))?;
    let config: RunConfig = toml::from_str(&text).with_context(|| format!("{} is damaged", config_path.display()))?;
    let store = RunStore { dir: dir.to_owned() };
    let last = (1..=config.settings.iterations)
        .map(|t| store.iteration(t).join("model"))
        .filter(|m| m.is_dir())
        .next_back()
        .with_context(|| format!("{}: no iteration has finished training yet", dir.display()))?;
    Ok(Some(TrainedModels { last, base: config.model }))
}

/// The first-party plugins, by role.
const DEFAULT_PLUGINS: [(Role, &str); 4] = [
    (Role::InfoMetric, "eva-plugin-regret"),
    (Role::Sampler, "eva-plugin-weighted-sampler"),
    (Role::Evolver, "eva-plugin-evol-instruct"),
    (Role::Pairing, "eva-plugin-max-min-pairing"),
];

/// `settings` with the keys of `file` filled in wherever the flag was not given.
fn resolve(settings: &LoopSettings, file: &Path, matches: &ArgMatches) -> Result<LoopSettings> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let table: toml::Table = toml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
    let mut json = serde_json::to_value(settings).expect("settings serialize");
    let map = json.as_object_mut().expect("a map");
    for (key, value) in table {
        let id = key.replace('-', "_");
        if !map.contains_key(&id) {
            bail!("{}: unknown setting `{key}` (see eva-host run --help)", file.display());
        }
        if matches.value_source(&id) != Some(ValueSource::CommandLine) {
            map.insert(id, serde_json::to_value(value).expect("toml to json"));
        }
    }
    serde_json::from_value(json).with_context(|| format!("{}: a setting has the wrong type", file.display()))
}

fn to_plugin_prompt(p: &PromptRecord) -> Prompt {
    Prompt {
        id: p.id.clone(),
        messages: p.messages.iter().map(|m| ChatMessage { role: m.role.clone(), content: m.content.clone() }).collect(),
    }
}

/// The plugins of the run: the user's, by role, else the first-party ones (built from the
/// source tree into `dir` when missing).
fn load_plugins(user: &[PluginSource], dir: &Path, loader: &PluginLoader) -> Result<HashMap<Role, Plugin>> {
    let mut by_role = HashMap::new();
    for source in user {
        let plugin = loader.load(source, false)?;
        if let Some(other) = by_role.insert(plugin.role(), plugin) {
            bail!("two plugins for the {}: {} and {source}", other.role(), other.path().display());
        }
    }
    for (role, name) in DEFAULT_PLUGINS {
        if by_role.contains_key(&role) {
            continue;
        }
        let path = dir.join(format!("{name}.wasm"));
        if !path.is_file() {
            build_first_party(dir).with_context(|| format!("building the default {role} plugin"))?;
        }
        by_role.insert(role, loader.load(&PluginSource::File(path), true)?);
    }
    Ok(by_role)
}

fn build_first_party(dir: &Path) -> Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let manifest_path = workspace.join("Cargo.toml");
    if !manifest_path.is_file() {
        bail!(
            "the first-party plugins are not in {} and eva's source tree is not at {}: pass --plugins-dir \
             or --plugin",
            dir.display(),
            workspace.display()
        );
    }
    eprintln!("building the first-party plugins into {} (once)", dir.display());
    eva_plugin_build::build(&eva_plugin_build::BuildRequest {
        manifest_path,
        packages: DEFAULT_PLUGINS.iter().map(|(_, n)| n.to_string()).collect(),
        target: eva_plugin_build::GuestTarget::Unknown,
        target_dir: Some(crate::cache_root().join("guest-target")),
        out_dir: dir.to_owned(),
    })?;
    Ok(())
}

pub fn run(args: RunArgs, matches: &ArgMatches) -> Result<()> {
    let store = RunStore { dir: args.out.clone() };
    let config_path = args.out.join("config.toml");
    let config = if args.resume {
        let text = std::fs::read_to_string(&config_path)
            .with_context(|| format!("--resume: {} has no run to resume", args.out.display()))?;
        let config =
            toml::from_str::<RunConfig>(&text).with_context(|| format!("{} is damaged", config_path.display()))?;
        if args.plugin_args != PluginArgs::default() && args.plugin_args != config.plugin_args {
            bail!("--resume runs with the plugin settings in {}: leave out the plugin flags", config_path.display());
        }
        config
    } else {
        if config_path.exists() {
            bail!("{} already holds a run: pass --resume to continue it, or choose another --out", args.out.display());
        }
        let settings = match &args.settings_file {
            Some(file) => resolve(&args.settings, file, matches)?,
            None => args.settings.clone(),
        };
        let plugins_dir = args.plugins_dir.clone().unwrap_or_else(|| crate::cache_root().join("plugins"));
        RunConfig {
            model: args.model.clone(),
            plugins: args.plugins.clone(),
            plugins_dir,
            plugin_args: args.plugin_args.clone(),
            settings,
        }
    };
    let s = &config.settings;
    if s.answers < 2 {
        bail!("--answers must be at least 2: pairs need two answers to compare");
    }
    if !(0.0..1.0).contains(&s.buffer_fraction) || !(0.0..=1.0).contains(&s.sample_fraction) {
        bail!("--buffer-fraction must be in [0, 1) and --sample-fraction in [0, 1]");
    }
    // Hours of generation come before the first training step: check the device first.
    let device = eva_engine::device::default_device()?;
    eva_engine::device::check_dtype(&device, s.solver.precision.dtype())?;
    s.weights.check_device(&device)?;
    // The seed prompts are checked before any model or plugin work.
    let seeds_path = args.out.join("seed.jsonl");
    let seeds = if args.resume {
        store.read(&seeds_path)?.context("the run's seed.jsonl is missing")?
    } else {
        let Some(prompts) = &args.prompts else { bail!("--prompts SEED.jsonl is required for a new run") };
        let seeds = store::read_prompts(prompts)?;
        std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
        store.write(&seeds_path, &seeds)?;
        let text = toml::to_string(&config).context("writing the config")?;
        eva_engine::atomic::write_file(&config_path, text.as_bytes())
            .with_context(|| format!("writing {}", config_path.display()))?;
        seeds
    };

    let log = args.out.join("run.log");
    crate::logging::to_file(&log).with_context(|| format!("opening {}", log.display()))?;
    tracing::info!(resume = args.resume, "eva-host run {}", args.out.display());
    eva_engine::threads::set_threads(args.threads);
    let mut loader = config.plugin_args.loader()?;
    // A resumed run uses the plugins it started with; a new one those of --plugin-lock.
    let lock_path = args.out.join("plugins.lock");
    let pins = if args.resume && lock_path.is_file() { Some(lock_path.clone()) } else { args.plugin_lock.clone() };
    if let Some(file) = pins {
        match PluginLock::read(&file) {
            Ok(lock) => loader.pin(lock, file),
            // Runs started by eva-host before 0.1 kept a JSON list there, without pins.
            Err(e) if args.resume && std::fs::read(&file)?.starts_with(b"[") => tracing::warn!("{e}; rewriting it"),
            Err(e) => return Err(e.into()),
        }
    }
    let mut plugins = load_plugins(&config.plugins, &config.plugins_dir, &loader)?;
    let mut scorer = s.reward.scorer(&loader)?;
    loader.check_names()?;
    loader.lock()?.write(&lock_path)?;
    let mut take = |role| plugins.remove(&role).expect("every role is loaded");
    let mut info = InfoMetric::new(take(Role::InfoMetric))?;
    let mut sampler = Sampler::new(take(Role::Sampler))?;
    let mut evolver = Evolver::new(take(Role::Evolver))?;
    let mut pairing = Pairing::new(take(Role::Pairing))?;

    let base = match &config.model {
        Some(p) => p.clone(),
        None => crate::model_cmd::fetch_default()?,
    };
    let mut policy_path = base.clone();
    let mut prompts = seeds.clone();
    let mut seen = dedup::Seen::default();
    seeds.iter().for_each(|p| seen.insert(&p.messages.last().expect("checked").content));
    let mut summaries: Vec<IterationSummary> = store.read(&args.out.join("metrics.jsonl"))?.unwrap_or_default();
    for t in 1..=s.iterations {
        let dir = store.iteration(t);
        let next_path = dir.join("prompts-next.jsonl");
        let model_dir = dir.join("model");
        if summaries.iter().any(|m| m.iteration == t) {
            // Finished earlier: carry its prompts, seen set and policy on.
            prompts = store.read(&next_path)?.context("a finished iteration lacks prompts-next.jsonl")?;
            remember_kept(&mut seen, &store.read(&dir.join("evolved.jsonl"))?.unwrap_or_default());
            if model_dir.is_dir() {
                policy_path = model_dir;
            }
            continue;
        }
        let _span = tracing::info_span!("iteration", t).entered();
        let policy = Arc::new(
            LanguageModel::load(&policy_path, s.weights)
                .with_context(|| format!("loading the policy {}", policy_path.display()))?,
        );
        let seed = s.solver.seed ^ (t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let answer = |records: &[PromptRecord], scorer: &mut Scorer, what: &str| -> Result<Vec<Answers>> {
            respond_and_score(&policy, records, s, seed, scorer, what)
        };

        // Creator.
        let answers = store
            .phase("respond+score", &dir.join("answers.jsonl"), || answer(&prompts, &mut scorer, "answering X_t"))?;
        let (next, infos, selected, evolved) = if s.no_evolve {
            (store.phase("mix", &next_path, || Ok(prompts.clone()))?, vec![], vec![], vec![])
        } else {
            let infos = store.phase("info", &dir.join("info.jsonl"), || {
                info.plugin_mut().reseed(phase_seed(seed, "info"));
                let items: Vec<PromptRewards> = prompts
                    .iter()
                    .zip(&answers)
                    .map(|(p, a)| PromptRewards {
                        prompt: to_plugin_prompt(p),
                        rewards: a.answers.iter().map(|a| a.reward).collect(),
                        token_counts: a.answers.iter().map(|a| a.tokens).collect(),
                    })
                    .collect();
                let scores = info.score_batch(&items)?;
                Ok(prompts.iter().zip(scores).map(|(p, info)| Info { id: p.id.clone(), info }).collect())
            })?;
            let selected = store.phase("select", &dir.join("selected.jsonl"), || {
                sampler.plugin_mut().reseed(phase_seed(seed, "select"));
                let count = ((prompts.len() as f64 * s.sample_fraction).ceil() as usize).clamp(1, prompts.len());
                let scores: Vec<f64> = infos.iter().map(|i| i.info).collect();
                Ok(sampler.sample(&scores, count)?.into_iter().map(|i| infos[i].clone()).collect::<Vec<Info>>())
            })?;
            let evolved = store.phase("evolve", &dir.join("evolved.jsonl"), || {
                evolver.plugin_mut().reseed(phase_seed(seed, "evolve"));
                let by_id: HashMap<&str, &PromptRecord> = prompts.iter().map(|p| (p.id.as_str(), p)).collect();
                let parents: Vec<&PromptRecord> = selected.iter().map(|i| by_id[i.id.as_str()]).collect();
                let input: Vec<Prompt> = parents.iter().map(|p| to_plugin_prompt(p)).collect();
                let generator =
                    Arc::new(EngineGenerator { model: policy.clone(), max_tokens: s.evolve_max_tokens, seed });
                let out = evolver.evolve(&input, generator)?;
                // Variants of this phase are compared with each other too.
                let mut new = dedup::Seen::default();
                let records = out
                    .into_iter()
                    .enumerate()
                    .map(|(k, e)| {
                        let messages: Vec<Message> =
                            e.messages.iter().map(|m| Message::new(m.role.as_str(), m.content.as_str())).collect();
                        let text = &messages.last().expect("validated").content;
                        let dropped_because =
                            seen.duplicate(text, s.dedup_threshold).or_else(|| new.duplicate(text, s.dedup_threshold));
                        if dropped_because.is_none() {
                            new.insert(text);
                        }
                        EvolvedRecord {
                            id: format!("t{t}-e{k}"),
                            parent: parents[e.parent as usize].id.clone(),
                            method: e.method,
                            messages,
                            kept: dropped_because.is_none(),
                            dropped_because,
                        }
                    })
                    .collect();
                Ok(records)
            })?;
            // Loaded or computed alike, the kept variants join the seen set.
            remember_kept(&mut seen, &evolved);
            let next = store.phase("mix", &next_path, || Ok(mix(&prompts, &evolved, s.buffer_fraction, seed)))?;
            (next, infos, selected, evolved)
        };

        // Solver: answers for X'_t (old prompts reuse theirs), pairs, training.
        let known: HashMap<&str, &Answers> = answers.iter().map(|a| (a.id.as_str(), a)).collect();
        let fresh: Vec<PromptRecord> = next.iter().filter(|p| !known.contains_key(p.id.as_str())).cloned().collect();
        let fresh_answers = store.phase("solve respond+score", &dir.join("solve-answers.jsonl"), || {
            answer(&fresh, &mut scorer, "answering X'_t")
        })?;
        let all: HashMap<&str, &Answers> = answers.iter().chain(&fresh_answers).map(|a| (a.id.as_str(), a)).collect();
        let pairs = store.phase("pair", &dir.join("pairs.jsonl"), || {
            pairing.plugin_mut().reseed(phase_seed(seed, "pair"));
            let items: Vec<PromptResponses> = next
                .iter()
                .map(|p| PromptResponses {
                    prompt: to_plugin_prompt(p),
                    responses: all[p.id.as_str()]
                        .answers
                        .iter()
                        .map(|a| ScoredResponse { text: a.text.clone(), reward: a.reward, tokens: a.tokens })
                        .collect(),
                })
                .collect();
            let chosen = pairing.pair_batch(&items)?;
            Ok(next
                .iter()
                .zip(chosen)
                .flat_map(|(p, prefs)| {
                    let a = &all[p.id.as_str()].answers;
                    prefs.into_iter().map(move |pr| PairRecord {
                        id: p.id.clone(),
                        prompt: p.messages.clone(),
                        chosen: a[pr.chosen as usize].text.clone(),
                        rejected: a[pr.rejected as usize].text.clone(),
                        chosen_reward: a[pr.chosen as usize].reward,
                        rejected_reward: a[pr.rejected as usize].reward,
                    })
                })
                .collect())
        })?;
        let losses = train(&store, &policy, &pairs, &s.solver, &dir.join("train"), &model_dir)?;
        drop(policy);
        if model_dir.is_dir() {
            policy_path = model_dir;
        }

        let rewards: Vec<f64> = answers.iter().flat_map(|a| a.answers.iter().map(|a| a.reward)).collect();
        let infos: Vec<f64> = infos.iter().map(|i| i.info).collect();
        let words: Vec<usize> =
            next.iter().map(|p| p.messages.last().map_or(0, |m| m.content.split_whitespace().count())).collect();
        let summary = IterationSummary {
            iteration: t,
            prompts: prompts.len(),
            mean_reward: mean(&rewards),
            info_mean: mean(&infos),
            info_max: infos.iter().cloned().fold(f64::NAN, f64::max),
            selected: selected.len(),
            evolved: evolved.len(),
            kept: evolved.iter().filter(|e| e.kept).count(),
            next_prompts: next.len(),
            pairs: pairs.len(),
            mean_prompt_words: words.iter().sum::<usize>() as f64 / words.len().max(1) as f64,
            first_loss: losses.first().map(|l| l.0),
            last_loss: losses.last().map(|l| l.0),
            last_margin: losses.last().map(|l| l.1),
        };
        let line = one_screen(&summary);
        tracing::info!("{line}");
        eprintln!("{line}");
        summaries.push(summary);
        store.write(&args.out.join("metrics.jsonl"), &summaries)?;
        prompts = next;
    }
    println!("{}", policy_path.display());
    Ok(())
}

/// The seed of a plugin's random stream in one phase: a resumed run that skips finished
/// phases still draws, in the phases it runs, what an uninterrupted run drew.
fn phase_seed(iteration_seed: u64, phase: &str) -> u64 {
    phase.bytes().fold(iteration_seed, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

fn remember_kept(seen: &mut dedup::Seen, evolved: &[EvolvedRecord]) {
    for e in evolved.iter().filter(|e| e.kept) {
        seen.insert(&e.messages.last().map(|m| m.content.clone()).unwrap_or_default());
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }
}

fn one_screen(m: &IterationSummary) -> String {
    let loss = match (m.first_loss, m.last_loss) {
        (Some(a), Some(b)) => format!("loss {a:.4} -> {b:.4}, margin {:+.3}", m.last_margin.unwrap_or(f64::NAN)),
        _ => "no training (no pairs)".into(),
    };
    format!(
        "iteration {}: {} prompts, mean reward {:.3}, info mean {:.3} max {:.3}; {} selected, {} evolved, {} kept; \
         {} prompts next ({:.1} words on average); {} pairs; {loss}",
        m.iteration,
        m.prompts,
        m.mean_reward,
        m.info_mean,
        m.info_max,
        m.selected,
        m.evolved,
        m.kept,
        m.next_prompts,
        m.mean_prompt_words,
        m.pairs
    )
}

/// X'_t: the kept evolved prompts and a uniform draw of old ones, `buffer_fraction` of
/// the total. Without any kept prompt, X_t carries on unchanged.
fn mix(old: &[PromptRecord], evolved: &[EvolvedRecord], buffer_fraction: f64, seed: u64) -> Vec<PromptRecord> {
    let kept: Vec<PromptRecord> = evolved
        .iter()
        .filter(|e| e.kept)
        .map(|e| PromptRecord {
            id: e.id.clone(),
            messages: e.messages.clone(),
            origin: "evolved".into(),
            parent: Some(e.parent.clone()),
            method: Some(e.method.clone()),
        })
        .collect();
    if kept.is_empty() {
        tracing::warn!("no evolved prompt survived: X_t carries on");
        return old.to_vec();
    }
    let n_old = ((kept.len() as f64 * buffer_fraction / (1.0 - buffer_fraction)).round() as usize).min(old.len());
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut buffer: Vec<PromptRecord> = old.to_vec();
    buffer.shuffle(&mut rng);
    buffer.truncate(n_old);
    buffer.iter_mut().for_each(|p| p.origin = "buffer".into());
    kept.into_iter().chain(buffer).collect()
}

/// n sampled answers per prompt, scored.
fn respond_and_score(
    policy: &LanguageModel,
    records: &[PromptRecord],
    s: &LoopSettings,
    seed: u64,
    scorer: &mut Scorer,
    what: &str,
) -> Result<Vec<Answers>> {
    let params = GenerationParams {
        sampling: Sampling { temperature: s.temperature, top_p: s.top_p },
        max_new_tokens: s.max_new_tokens,
        n: s.answers,
        seed,
        ..GenerationParams::default()
    };
    let drafts = answering::respond(policy, records, &params, what)?;
    answering::score(scorer, records, drafts, s.reward.normalize)
}

/// Train on the pairs (LoRA by default, checkpoints in `out`, resumable) and save the
/// merged policy to `model_dir`. Returns each step's (loss, margin).
fn train(
    store: &RunStore,
    policy: &LanguageModel,
    pairs: &[PairRecord],
    solver: &SolverArgs,
    out: &Path,
    model_dir: &Path,
) -> Result<Vec<(f64, f64)>> {
    let metrics_path = out.join("metrics.jsonl");
    let read_losses = |path: &Path| -> Result<Vec<(f64, f64)>> {
        let rows: Vec<serde_json::Value> = store.read(path)?.unwrap_or_default();
        Ok(rows
            .iter()
            .map(|r| (r["loss"].as_f64().unwrap_or(f64::NAN), r["margin"].as_f64().unwrap_or(f64::NAN)))
            .collect())
    };
    if model_dir.is_dir() {
        return read_losses(&metrics_path);
    }
    if pairs.is_empty() {
        tracing::warn!("no preference pairs: the policy carries on untrained");
        return Ok(vec![]);
    }
    let _span = tracing::info_span!("solver", pairs = pairs.len()).entered();
    let ids: Vec<&str> = pairs.iter().map(|p| p.id.as_str()).collect();
    let pairs: Vec<eva_solver::PreferencePair> = pairs
        .iter()
        .map(|p| eva_solver::PreferencePair {
            prompt: eva_solver::Text::Chat(p.prompt.clone()),
            chosen: eva_solver::Text::Plain(p.chosen.clone()),
            rejected: eva_solver::Text::Plain(p.rejected.clone()),
        })
        .collect();
    let name = |i: usize| format!("pair {} (prompt `{}`)", i + 1, ids[i]);
    let trainable = crate::train_cmd::train_pairs(policy, &pairs, &name, solver, out, true)?;
    trainable
        .save_hf(model_dir, Some(&policy.tokenizer), policy.chat_template.as_ref(), false)
        .with_context(|| format!("saving {}", model_dir.display()))?;
    read_losses(&metrics_path)
}
