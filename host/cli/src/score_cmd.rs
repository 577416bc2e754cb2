//! `eva-host score`: rewards for prompt/answer rows.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use eva_reward::{Error as RewardError, RewardItem, normalize};

use crate::jsonl::{prompt_messages, read_rows};
use crate::reward_args::ScoringArgs;

#[derive(Args)]
pub struct ScoreArgs {
    /// JSONL rows: `prompt` (string) or `messages` (chat list), and `response` (string).
    /// Other fields are kept.
    #[arg(long)]
    input: PathBuf,
    /// Where the rows go with `reward` added (and `raw_reward` when normalised); written
    /// atomically once every row is scored.
    #[arg(long)]
    output: PathBuf,
    #[command(flatten)]
    scoring: ScoringArgs,
}

pub fn run(args: ScoreArgs, matches: &clap::ArgMatches) -> Result<()> {
    let settings = args.scoring.settings(matches)?;
    let mut rows = read_rows(&args.input)?;
    // Every row is checked before any model is loaded.
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let at = || format!("{}:{}", args.input.display(), row.line);
        let messages = prompt_messages(&row.fields).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
        let response = match row.fields.get("response") {
            Some(serde_json::Value::String(r)) if !r.trim().is_empty() => r.clone(),
            Some(serde_json::Value::String(_)) => bail!("{}: the response is empty", at()),
            Some(_) => bail!("{}: `response` must be a string", at()),
            None => bail!("{}: no `response`", at()),
        };
        // Every other key is a label, as in a seed row: a verifiable reward checks them.
        let mut rest = row.fields.clone();
        rest.remove("response");
        let labels = crate::jsonl::labels(&rest).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
        let labels = labels.as_ref().map(eva_loop::layout::labels_text);
        items.push(RewardItem::new(messages, response).with_labels(labels));
    }
    eva_engine::threads::set_threads(args.scoring.threads);
    let mut scorer = args.scoring.scorer(&settings)?;
    let _span = tracing::info_span!("score", backend = %scorer.describe(), rows = rows.len()).entered();
    let bar = crate::progress::bar(rows.len() as u64, "scoring", "answers");
    let raw = scorer.score(&items, &mut |n| bar.inc(n as u64)).map_err(|e| match e {
        RewardError::Item { index, reason } => {
            anyhow::anyhow!("{}:{}: {reason}", args.input.display(), rows[index].line)
        }
        other => anyhow::Error::new(other).context(format!("scoring {}", args.input.display())),
    })?;
    bar.finish_and_clear();
    let mut rewards = raw.clone();
    let prompts: Vec<String> = items.iter().map(|i| serde_json::to_string(&i.messages).expect("json")).collect();
    normalize(settings.normalize, &mut rewards, &prompts);
    let normalised = settings.normalize != eva_reward::Normalization::None;
    let mut out = String::new();
    for ((row, reward), raw) in rows.iter_mut().zip(rewards).zip(raw) {
        row.fields.insert("reward".into(), reward.into());
        if normalised {
            row.fields.insert("raw_reward".into(), raw.into());
        }
        out.push_str(&serde_json::to_string(&row.fields).expect("json"));
        out.push('\n');
    }
    eva_engine::atomic::write_file(&args.output, out.as_bytes())
        .with_context(|| format!("writing {}", args.output.display()))?;
    tracing::info!(rows = rows.len(), scored = scorer.backend_calls(), "scored");
    eprintln!(
        "scored {} rows ({} distinct answers) with {} into {}",
        rows.len(),
        scorer.backend_calls(),
        scorer.describe(),
        args.output.display()
    );
    Ok(())
}
