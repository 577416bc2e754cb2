//! `eva-host eval`: a model against a baseline on held-out prompts, judged by the
//! configured reward: mean rewards, their difference and the win rate, with confidence
//! intervals. Its phases (each side's answers, the scores) land atomically in the output
//! directory, so a rerun resumes.

mod constraints;

pub use constraints::ConstraintScores;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use eva_engine::{GenerationParams, LanguageModel, Sampling, WeightFormat};
use eva_reward::Normalization;
use serde::{Deserialize, Serialize};

use crate::jsonl::read_prompts;
use crate::progress::Bars;
use crate::reward_args::ScoringArgs;
use crate::stats::{self, Estimate, EvalSummary};
use eva_loop::candle;
use eva_loop::layout::{Answer, EvalDir, PromptRecord, RunStore};
use eva_loop::run::Draft;
use eva_loop::settings::RewardSettings;

#[derive(Args)]
pub struct EvalArgs {
    /// The model to evaluate: a .gguf file, a Hugging Face directory, or an `eva-host run`
    /// directory (its last trained model; the baseline then defaults to the run's
    /// starting model).
    #[arg(long)]
    model: PathBuf,
    /// Held-out prompts, JSONL like the seed prompts of `run` (`prompt` or `messages`,
    /// optional `id`, labels). Prompts labelled with verifiable constraints
    /// (`labels.constraints`) are also scored by them: the share of answers whose every
    /// constraint holds, of constraints held, and per kind.
    #[arg(long)]
    prompts: PathBuf,
    /// The baseline model; default: the run's starting model for a run directory, else
    /// the embedded SmolLM2-135M-Instruct.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Where the answers and `eval.json` go; default `RUN_DIR/eval` for a run directory.
    /// Finished phases there are reused by a rerun with the same settings.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    sampling: EvalSampling,
    #[command(flatten)]
    scoring: ScoringArgs,
}

/// How both models answer: the same settings and seed for each.
#[derive(Args, Debug, Clone, PartialEq, Serialize, Deserialize)]
struct EvalSampling {
    /// Answers per prompt and model; a prompt's reward is their mean.
    #[arg(long, default_value_t = 1)]
    answers: usize,
    /// Longest answer, in tokens.
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy decoding.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Nucleus mass.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Level of the confidence intervals.
    #[arg(long, default_value_t = 0.95)]
    confidence: f64,
}

/// What an evaluation directory was made with (`eval-config.json`).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct EvalConfig {
    model: PathBuf,
    baseline: Option<PathBuf>,
    prompts: PathBuf,
    sampling: EvalSampling,
    reward: RewardSettings,
}

/// One side's unscored answers to a prompt.
#[derive(Serialize, Deserialize)]
struct DraftRow {
    id: String,
    answers: Vec<Draft>,
}

/// One held-out prompt, both sides' scored answers and who won it.
#[derive(Serialize, Deserialize)]
struct EvalRow {
    id: String,
    prompt: Vec<eva_engine::Message>,
    model: Vec<Answer>,
    baseline: Vec<Answer>,
    model_reward: f64,
    baseline_reward: f64,
    /// `win`, `tie` or `loss`, for the model.
    outcome: String,
}

pub fn run(args: EvalArgs, matches: &clap::ArgMatches) -> Result<()> {
    let reward = args.scoring.settings(matches)?;
    let prompts = read_prompts(&args.prompts)?;
    if prompts.is_empty() {
        bail!("{} holds no prompts", args.prompts.display());
    }
    let labelled = constraints::of_prompts(&prompts).with_context(|| format!("{}", args.prompts.display()))?;
    if reward.normalize != Normalization::None {
        bail!("eval compares raw rewards across models: --normalize must be none");
    }
    let s = &args.sampling;
    if s.answers == 0 || !(0.0 < s.confidence && s.confidence < 1.0) {
        bail!("--answers must be at least 1 and --confidence in (0, 1)");
    }
    let run = crate::run_config::trained_models(&args.model)?;
    let (model, run_base) = match &run {
        Some(r) => (r.last.clone(), Some(r.base.clone())),
        None => (args.model.clone(), None),
    };
    let out = match (&args.out, &run) {
        (Some(o), _) => EvalDir(o.clone()),
        (None, Some(_)) => RunStore::new(&args.model).eval(),
        (None, None) => bail!("--out DIR is required unless --model is a run directory"),
    };
    let config = EvalConfig {
        model: model.clone(),
        baseline: args.baseline.clone().or(run_base.flatten()),
        prompts: args.prompts.clone(),
        sampling: s.clone(),
        reward: reward.clone(),
    };
    check_config(&out, &config)?;

    eva_engine::threads::set_threads(args.scoring.threads);
    let baseline = match &config.baseline {
        Some(b) => b.clone(),
        None => crate::models::fetch_default()?,
    };
    let store = RunStore::new(&out.0);
    let params = GenerationParams {
        sampling: Sampling { temperature: s.temperature, top_p: s.top_p },
        max_new_tokens: s.max_new_tokens,
        n: s.answers,
        seed: s.seed,
        ..GenerationParams::default()
    };
    let answer = |path: &Path, side: &str| {
        store.phase(&format!("answer ({side})"), &out.side_answers(side), || {
            let _span = tracing::info_span!("answer", side, model = %path.display()).entered();
            let policy = LanguageModel::load(path, WeightFormat::F32)
                .with_context(|| format!("loading the {side} {}", path.display()))?;
            let drafts = candle::respond(&policy, &prompts, &params, &format!("answering ({side})"), &Bars)?;
            Ok(prompts.iter().zip(drafts).map(|(p, answers)| DraftRow { id: p.id.clone(), answers }).collect())
        })
    };
    let model_drafts = answer(&model, "model")?;
    let baseline_drafts = answer(&baseline, "baseline")?;
    let mut scorer = None;
    let rows = store.phase("score", &out.answers(), || {
        let scorer = scorer.insert(args.scoring.scorer(&reward)?);
        let _span = tracing::info_span!("score", backend = %scorer.describe()).entered();
        // Both sides in one batch, so that an empty answer's floor is the same for both.
        let records: Vec<PromptRecord> = prompts.iter().chain(&prompts).cloned().collect();
        let drafts = model_drafts.into_iter().chain(baseline_drafts).map(|d| d.answers).collect();
        let mut scored = candle::score(scorer, &records, drafts, Normalization::None, &Bars)?;
        let baseline_scored = scored.split_off(prompts.len());
        Ok(prompts
            .iter()
            .zip(scored)
            .zip(baseline_scored)
            .map(|((p, m), b)| {
                let model_reward = mean(m.answers.iter().map(|a| a.reward));
                let baseline_reward = mean(b.answers.iter().map(|a| a.reward));
                let outcome = match model_reward.partial_cmp(&baseline_reward) {
                    Some(std::cmp::Ordering::Greater) => "win",
                    Some(std::cmp::Ordering::Less) => "loss",
                    _ => "tie",
                };
                EvalRow {
                    id: p.id.clone(),
                    prompt: p.messages.clone(),
                    model: m.answers,
                    baseline: b.answers,
                    model_reward,
                    baseline_reward,
                    outcome: outcome.into(),
                }
            })
            .collect())
    })?;

    let count = |o: &str| rows.iter().filter(|r| r.outcome == o).count();
    let side = |f: fn(&EvalRow) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
    let summary = EvalSummary {
        model,
        baseline,
        reward: reward.describe(),
        prompts: rows.len(),
        confidence: s.confidence,
        model_reward: stats::mean_ci(&side(|r| r.model_reward), s.confidence),
        baseline_reward: stats::mean_ci(&side(|r| r.baseline_reward), s.confidence),
        difference: stats::mean_ci(&side(|r| r.model_reward - r.baseline_reward), s.confidence),
        win_rate: stats::win_rate(count("win"), count("tie"), count("loss"), s.confidence),
        constraints: constraints::scores(
            &labelled,
            &rows.iter().map(|r| r.model.as_slice()).collect::<Vec<_>>(),
            &rows.iter().map(|r| r.baseline.as_slice()).collect::<Vec<_>>(),
            s.confidence,
        ),
    };
    let path = out.results();
    let text = serde_json::to_string_pretty(&summary).expect("json") + "\n";
    eva_engine::atomic::write_file(&path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    println!("{}", render(&summary));
    if let Some(c) = &summary.constraints {
        println!("{}", constraints::render(c));
    }
    Ok(())
}

/// An evaluation directory holds one evaluation: a rerun must ask for the same one.
fn check_config(out: &EvalDir, config: &EvalConfig) -> Result<()> {
    let path = out.config();
    if path.is_file() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let old: EvalConfig = serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))?;
        if &old != config {
            bail!(
                "{} holds an evaluation with other settings ({}): choose another --out or delete it",
                out.0.display(),
                path.display()
            );
        }
        return Ok(());
    }
    std::fs::create_dir_all(&out.0).with_context(|| format!("creating {}", out.0.display()))?;
    let text = serde_json::to_string_pretty(config).expect("json") + "\n";
    eva_engine::atomic::write_file(&path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

fn mean(xs: impl ExactSizeIterator<Item = f64>) -> f64 {
    let n = xs.len() as f64;
    xs.sum::<f64>() / n
}

fn render(s: &EvalSummary) -> String {
    let est = |e: &Estimate| match e.ci {
        Some([lo, hi]) => format!("{:+.3} [{lo:+.3}, {hi:+.3}]", e.mean),
        None => format!("{:+.3} (one prompt: no interval)", e.mean),
    };
    let w = &s.win_rate;
    format!(
        "{} vs {} on {} prompts, reward {} ({:.0}% intervals)\n  model reward     {}\n  baseline reward  {}\n  \
         difference       {}\n  win rate         {:.3} [{:.3}, {:.3}] ({} wins, {} ties, {} losses)",
        s.model.display(),
        s.baseline.display(),
        s.prompts,
        s.reward,
        s.confidence * 100.0,
        est(&s.model_reward),
        est(&s.baseline_reward),
        est(&s.difference),
        w.rate,
        w.ci[0],
        w.ci[1],
        w.wins,
        w.ties,
        w.losses
    )
}
