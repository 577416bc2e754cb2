//! Answering prompts and scoring the answers: shared by the loop (`run`) and `eval`.

use anyhow::Result;
use eva_engine::{GenerationParams, LanguageModel};
use eva_reward::{Normalization, RewardItem, Scorer};

use eva_loop::layout::{Answer, Answers, PromptRecord};

pub use eva_loop::run::Draft;

/// `params.n` sampled answers per prompt, through the policy's chat template.
pub fn respond(
    policy: &LanguageModel,
    records: &[PromptRecord],
    params: &GenerationParams,
    what: &str,
) -> Result<Vec<Vec<Draft>>> {
    if records.is_empty() {
        return Ok(vec![]);
    }
    let prompts = records.iter().map(|p| policy.chat_prompt(&p.messages)).collect::<Result<Vec<_>, _>>()?;
    let bar = crate::progress::bar((records.len() * params.n * params.max_new_tokens) as u64, what, "tokens (at most)");
    let completions = policy.generate(&prompts, params, &mut |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    Ok(completions
        .into_iter()
        .map(|cs| cs.into_iter().map(|c| Draft { tokens: c.tokens.len() as u32, text: c.text }).collect())
        .collect())
}

/// The drafts' rewards, normalised per prompt as asked. An empty answer (EOS at once)
/// cannot be scored: it gets the lowest reward of the batch.
pub fn score(
    scorer: &mut Scorer,
    records: &[PromptRecord],
    drafts: Vec<Vec<Draft>>,
    normalize: Normalization,
) -> Result<Vec<Answers>> {
    let (items, groups): (Vec<RewardItem>, Vec<usize>) = records
        .iter()
        .zip(&drafts)
        .enumerate()
        .flat_map(|(i, (p, ds))| {
            ds.iter()
                .filter(|d| !d.text.trim().is_empty())
                .map(move |d| (RewardItem::new(p.messages.clone(), d.text.as_str()), i))
        })
        .unzip();
    let bar = crate::progress::bar(items.len() as u64, "scoring", "answers");
    let mut rewards = scorer.score(&items, &mut |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    eva_reward::normalize(normalize, &mut rewards, &groups);
    let floor = rewards.iter().cloned().fold(f64::INFINITY, f64::min);
    let floor = if floor.is_finite() { floor } else { 0.0 };
    let mut next = rewards.into_iter();
    Ok(records
        .iter()
        .zip(drafts)
        .map(|(p, ds)| Answers {
            id: p.id.clone(),
            answers: ds
                .into_iter()
                .map(|d| {
                    let reward = if d.text.trim().is_empty() { floor } else { next.next().expect("one per item") };
                    Answer { tokens: d.tokens, text: d.text, reward }
                })
                .collect(),
        })
        .collect())
}
