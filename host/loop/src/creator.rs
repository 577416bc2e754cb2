//! The creator: from the policy's answers to X_t, the next prompt set X'_t, in the paper's
//! four steps. [`info`] scores how informative each prompt is, [`sample`] picks the prompts
//! to evolve, [`evolve`] rewrites them (dropping variants that duplicate a prompt seen or
//! do not fit the policy's context), and [`mix`] joins the kept variants with a buffer of
//! old prompts.
//!
//! Each step takes its policy as a trait object ([`InfoMetric`], [`Sampler`],
//! [`Evolver`]): the Wasm plugins of `eva-plugin-runtime` are one implementation, and a
//! plain Rust value is another (tests use fakes). Every step is a pure function of its
//! inputs and its seed, so a resumed run that skips finished steps draws, in the steps it
//! runs, what an uninterrupted run drew.

use std::collections::HashMap;
use std::sync::Arc;

use eva_engine::Message;
use eva_plugin_runtime::{ChatMessage, Evolved, Generator, Prompt, PromptRewards};
use rand::{SeedableRng, seq::SliceRandom};

use crate::dedup::Seen;
use crate::layout::{Answers, EvolvedRecord, Info, Labels, Producer, PromptRecord};

/// An error of a role's policy, as its implementation reports it.
pub type RoleError = crate::layout::PhaseError;

/// The info step's policy: how informative each prompt is, given its answers' rewards.
pub trait InfoMetric {
    /// Restart the policy's random stream (before each phase; see [`phase_seed`]).
    fn reseed(&mut self, seed: u64);
    /// Who the policy is, recorded with the file it writes.
    fn producer(&self) -> Producer {
        Producer::named(std::any::type_name::<Self>())
    }
    /// One finite score per item, in order.
    fn score_batch(&mut self, items: &[PromptRewards]) -> Result<Vec<f64>, RoleError>;
}

/// The sample step's policy: which prompts go on to be evolved.
pub trait Sampler {
    fn reseed(&mut self, seed: u64);
    /// Who the policy is, recorded with the file it writes.
    fn producer(&self) -> Producer {
        Producer::named(std::any::type_name::<Self>())
    }
    /// `count` distinct indices into `scores`.
    fn sample(&mut self, scores: &[f64], count: usize) -> Result<Vec<usize>, RoleError>;
}

/// The evolve step's policy: new prompts from old ones, with a creator model behind
/// `generator`.
pub trait Evolver {
    /// The policy's name, for messages about what it made.
    fn name(&self) -> &str;
    fn reseed(&mut self, seed: u64);
    /// Who the policy is, recorded with the file it writes.
    fn producer(&self) -> Producer {
        Producer::named(self.name())
    }
    /// New prompts, each naming the index of the input it was made from.
    fn evolve(&mut self, prompts: &[Prompt], generator: Arc<dyn Generator>) -> Result<Vec<Evolved>, RoleError>;
}

impl InfoMetric for eva_plugin_runtime::InfoMetric {
    fn reseed(&mut self, seed: u64) {
        self.plugin_mut().reseed(seed);
    }
    fn producer(&self) -> Producer {
        Producer::plugin(self.plugin())
    }
    fn score_batch(&mut self, items: &[PromptRewards]) -> Result<Vec<f64>, RoleError> {
        Ok(eva_plugin_runtime::InfoMetric::score_batch(self, items)?)
    }
}

impl Sampler for eva_plugin_runtime::Sampler {
    fn reseed(&mut self, seed: u64) {
        self.plugin_mut().reseed(seed);
    }
    fn producer(&self) -> Producer {
        Producer::plugin(self.plugin())
    }
    fn sample(&mut self, scores: &[f64], count: usize) -> Result<Vec<usize>, RoleError> {
        Ok(eva_plugin_runtime::Sampler::sample(self, scores, count)?)
    }
}

impl Evolver for eva_plugin_runtime::Evolver {
    fn name(&self) -> &str {
        self.plugin().name()
    }
    fn reseed(&mut self, seed: u64) {
        self.plugin_mut().reseed(seed);
    }
    fn producer(&self) -> Producer {
        Producer::plugin(self.plugin())
    }
    fn evolve(&mut self, prompts: &[Prompt], generator: Arc<dyn Generator>) -> Result<Vec<Evolved>, RoleError> {
        Ok(eva_plugin_runtime::Evolver::evolve(self, prompts, generator)?)
    }
}

/// The seed of a policy's random stream in one phase of an iteration.
pub fn phase_seed(iteration_seed: u64, phase: &str) -> u64 {
    phase.bytes().fold(iteration_seed, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// A prompt as the plugins see it.
pub fn plugin_prompt(p: &PromptRecord) -> Prompt {
    Prompt {
        id: p.id.clone(),
        messages: p.messages.iter().map(|m| ChatMessage { role: m.role.clone(), content: m.content.clone() }).collect(),
        labels: p.labels_json(),
    }
}

/// Info: the informativeness of each prompt of X_t, from its answers (same order).
pub fn info(
    metric: &mut dyn InfoMetric,
    prompts: &[PromptRecord],
    answers: &[Answers],
    seed: u64,
) -> Result<Vec<Info>, RoleError> {
    metric.reseed(phase_seed(seed, "info"));
    let items: Vec<PromptRewards> = prompts
        .iter()
        .zip(answers)
        .map(|(p, a)| PromptRewards {
            prompt: plugin_prompt(p),
            rewards: a.answers.iter().map(|a| a.reward).collect(),
            token_counts: a.answers.iter().map(|a| a.tokens).collect(),
            responses: a.answers.iter().map(|a| a.text.clone()).collect(),
        })
        .collect();
    let scores = metric.score_batch(&items)?;
    Ok(prompts.iter().zip(scores).map(|(p, info)| Info { id: p.id.clone(), info }).collect())
}

/// Sample: `fraction` of the prompts (at least one), picked by the sampler from their
/// info scores.
pub fn sample(sampler: &mut dyn Sampler, infos: &[Info], fraction: f64, seed: u64) -> Result<Vec<Info>, RoleError> {
    sampler.reseed(phase_seed(seed, "select"));
    let count = ((infos.len() as f64 * fraction).ceil() as usize).clamp(1, infos.len());
    let scores: Vec<f64> = infos.iter().map(|i| i.info).collect();
    Ok(sampler.sample(&scores, count)?.into_iter().map(|i| infos[i].clone()).collect())
}

/// Why a variant cannot be answered by the policy (too long for its context), if so.
pub type FitCheck<'a> = &'a dyn Fn(&[Message]) -> Result<Option<String>, RoleError>;

/// What the evolve step needs besides its policy.
pub struct Evolution<'a> {
    /// The iteration, for the new prompts' ids (`tT-eK`).
    pub iteration: usize,
    pub seed: u64,
    /// The creator model behind the policy's `generate`.
    pub generator: Arc<dyn Generator>,
    /// Everything seen so far; variants of this step are compared with each other too.
    pub seen: &'a Seen,
    /// Jaccard similarity at which a variant counts as a near-duplicate.
    pub dedup_threshold: f64,
    pub unfit: FitCheck<'a>,
}

/// Evolve: new prompts from the selected ones, each with its parent's id and a verdict:
/// kept, or dropped because it does not fit the policy or duplicates a prompt seen.
pub fn evolve(
    evolver: &mut dyn Evolver,
    prompts: &[PromptRecord],
    selected: &[Info],
    step: Evolution<'_>,
) -> Result<Vec<EvolvedRecord>, RoleError> {
    evolver.reseed(phase_seed(step.seed, "evolve"));
    let by_id: HashMap<&str, &PromptRecord> = prompts.iter().map(|p| (p.id.as_str(), p)).collect();
    let parents: Vec<&PromptRecord> = selected.iter().map(|i| by_id[i.id.as_str()]).collect();
    let input: Vec<Prompt> = parents.iter().map(|p| plugin_prompt(p)).collect();
    let out = evolver.evolve(&input, step.generator)?;
    let mut new = Seen::default();
    out.into_iter()
        .enumerate()
        .map(|(k, e)| {
            let id = format!("t{}-e{k}", step.iteration);
            let messages: Vec<Message> =
                e.messages.iter().map(|m| Message::new(m.role.as_str(), m.content.as_str())).collect();
            let text = &messages.last().expect("validated").content;
            let unfit = (step.unfit)(&messages)?;
            if let Some(why) = &unfit {
                tracing::warn!(plugin = evolver.name(), variant = id, "dropped: {why}");
            }
            let dropped_because = unfit
                .or_else(|| step.seen.duplicate(text, step.dedup_threshold))
                .or_else(|| new.duplicate(text, step.dedup_threshold));
            if dropped_because.is_none() {
                new.insert(text);
            }
            Ok(EvolvedRecord {
                id,
                parent: parents[e.parent as usize].id.clone(),
                method: e.method,
                messages,
                kept: dropped_because.is_none(),
                dropped_because,
                labels: e.labels.as_deref().map(labels_of).transpose()?,
            })
        })
        .collect()
}

/// An evolved prompt's labels: the plugin runtime has checked they are a JSON object; a
/// policy of another kind (a test fake, a library user's) is checked here.
fn labels_of(text: &str) -> Result<Labels, RoleError> {
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(format!("an evolved prompt's labels are not a JSON object: {text}").into()),
    }
}

/// Add the kept variants of an evolve step to the prompts seen.
pub fn remember_kept(seen: &mut Seen, evolved: &[EvolvedRecord]) {
    for e in evolved.iter().filter(|e| e.kept) {
        seen.insert(&e.messages.last().map(|m| m.content.clone()).unwrap_or_default());
    }
}

/// Mix: X'_t, the kept evolved prompts and a uniform draw of old ones, `buffer_fraction`
/// of the total. Without any kept prompt, X_t carries on unchanged.
pub fn mix(old: &[PromptRecord], evolved: &[EvolvedRecord], buffer_fraction: f64, seed: u64) -> Vec<PromptRecord> {
    let kept: Vec<PromptRecord> = evolved
        .iter()
        .filter(|e| e.kept)
        .map(|e| PromptRecord {
            id: e.id.clone(),
            messages: e.messages.clone(),
            origin: "evolved".into(),
            parent: Some(e.parent.clone()),
            method: Some(e.method.clone()),
            labels: e.labels.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Answer;

    fn record(id: &str, text: &str) -> PromptRecord {
        PromptRecord {
            id: id.into(),
            messages: vec![Message::new("user", text)],
            origin: "seed".into(),
            parent: None,
            method: None,
            labels: None,
        }
    }

    fn answers(id: &str, rewards: &[f64]) -> Answers {
        Answers {
            id: id.into(),
            answers: rewards.iter().map(|&reward| Answer { text: "a".into(), tokens: 3, reward }).collect(),
        }
    }

    /// The reward gap, and the seeds it was given.
    #[derive(Default)]
    struct Gap(Vec<u64>);

    impl InfoMetric for Gap {
        fn reseed(&mut self, seed: u64) {
            self.0.push(seed);
        }
        fn score_batch(&mut self, items: &[PromptRewards]) -> Result<Vec<f64>, RoleError> {
            Ok(items.iter().map(|i| i.rewards.iter().fold(f64::MIN, |a, &b| a.max(b)) - i.rewards[0]).collect())
        }
    }

    /// The highest scores, in order: a sampler written in plain Rust.
    struct Greedy;

    impl Sampler for Greedy {
        fn reseed(&mut self, _: u64) {}
        fn sample(&mut self, scores: &[f64], count: usize) -> Result<Vec<usize>, RoleError> {
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
            Ok(order.into_iter().take(count).collect())
        }
    }

    /// Rewrites each input as the given variants, in order.
    struct Rewrite(Vec<&'static str>);

    impl Evolver for Rewrite {
        fn name(&self) -> &str {
            "rewrite"
        }
        fn reseed(&mut self, _: u64) {}
        fn evolve(&mut self, prompts: &[Prompt], _: Arc<dyn Generator>) -> Result<Vec<Evolved>, RoleError> {
            // Each variant's labels name its parent's labels, to follow them through.
            Ok((0..prompts.len())
                .flat_map(|i| self.0.iter().map(move |v| (i, v)))
                .map(|(i, v)| Evolved {
                    parent: i as u32,
                    messages: vec![ChatMessage::user(*v)],
                    method: "rewrite".into(),
                    labels: prompts[i].labels.as_ref().map(|l| format!(r#"{{"parent":{l}}}"#)),
                })
                .collect())
        }
    }

    struct NoModel;

    impl Generator for NoModel {
        fn complete(&self, _: &[eva_plugin_runtime::GenerateRequest]) -> Result<Vec<String>, String> {
            Err("no model in this test".into())
        }
    }

    fn fits(_: &[Message]) -> Result<Option<String>, RoleError> {
        Ok(None)
    }

    fn step<'a>(seen: &'a Seen, unfit: FitCheck<'a>) -> Evolution<'a> {
        Evolution { iteration: 2, seed: 7, generator: Arc::new(NoModel), seen, dedup_threshold: 0.8, unfit }
    }

    #[test]
    fn info_sample_evolve_mix_with_plain_rust_policies() {
        let mut x =
            [record("a", "Name a color."), record("b", "Explain tides to a child."), record("c", "Count to three.")];
        x[1].labels = serde_json::json!({"grade": 3}).as_object().cloned();
        let ans = [answers("a", &[0.1, 0.2]), answers("b", &[0.0, 0.9]), answers("c", &[0.5, 0.5])];
        let mut gap = Gap::default();
        let infos = info(&mut gap, &x, &ans, 7).unwrap();
        assert_eq!(infos.iter().map(|i| i.info).collect::<Vec<_>>(), [0.1, 0.9, 0.0]);
        assert_eq!(gap.0, [phase_seed(7, "info")]);

        let selected = sample(&mut Greedy, &infos, 0.34, 7).unwrap();
        assert_eq!(selected.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["b", "a"], "ceil(3 x 0.34) = 2");

        let seen = Seen::default();
        let mut evolver = Rewrite(vec!["Explain tides to a child, in two sentences.", "Name a color and a fruit."]);
        let evolved = evolve(&mut evolver, &x, &selected, step(&seen, &fits)).unwrap();
        let lineage: Vec<(&str, &str, bool)> =
            evolved.iter().map(|e| (e.id.as_str(), e.parent.as_str(), e.kept)).collect();
        // The same two variants of both parents: the second copies are exact duplicates.
        assert_eq!(lineage, [("t2-e0", "b", true), ("t2-e1", "b", true), ("t2-e2", "a", false), ("t2-e3", "a", false)]);
        assert_eq!(evolved[2].dropped_because.as_deref(), Some("exact duplicate"));

        let next = mix(&x, &evolved, 0.5, 7);
        let origins: Vec<(&str, &str)> = next.iter().map(|p| (p.id.as_str(), p.origin.as_str())).collect();
        assert_eq!(&origins[..2], [("t2-e0", "evolved"), ("t2-e1", "evolved")]);
        assert_eq!(origins.len(), 4, "two kept, and as many from the buffer at a fraction of 0.5");
        assert!(origins[2..].iter().all(|(id, o)| *o == "buffer" && ["a", "b", "c"].contains(id)));
        assert_eq!(next[0].parent.as_deref(), Some("b"));
        // The parent's labels reached the evolver, and the variant's are kept with it.
        let labels = serde_json::json!({"parent": {"grade": 3}}).as_object().cloned();
        assert_eq!((&evolved[0].labels, &next[0].labels), (&labels, &labels));
        assert_eq!(evolved[2].labels, None, "a parent without labels");
        assert_eq!(mix(&x, &evolved, 0.5, 7), next, "the same seed draws the same buffer");
    }

    #[test]
    fn variants_are_checked_against_everything_seen_and_the_policys_context() {
        let x = [record("a", "Name a color.")];
        let mut seen = Seen::default();
        x.iter().for_each(|p| seen.insert(&p.messages[0].content));
        seen.insert("Write a haiku about the moon over the sea.");
        let selected = [Info { id: "a".into(), info: 1.0 }];
        let long = |m: &[Message]| -> Result<Option<String>, RoleError> {
            Ok((m[0].content.len() > 40).then(|| "too long".to_owned()))
        };
        let mut evolver = Rewrite(vec![
            "name a COLOR",
            "Write a haiku about the moon over the sea!",
            "Describe a sunset in one line.",
        ]);
        let evolved = evolve(&mut evolver, &x, &selected, step(&seen, &long)).unwrap();
        let why: Vec<Option<&str>> = evolved.iter().map(|e| e.dropped_because.as_deref()).collect();
        assert_eq!(why, [Some("exact duplicate"), Some("too long"), None]);
        remember_kept(&mut seen, &evolved);
        assert_eq!(seen.duplicate("Describe a sunset in one line", 0.8).as_deref(), Some("exact duplicate"));
    }

    #[test]
    fn without_a_kept_variant_the_prompt_set_carries_on() {
        let x = [record("a", "Name a color."), record("b", "Count to three.")];
        let dropped = EvolvedRecord {
            id: "t1-e0".into(),
            parent: "a".into(),
            method: "m".into(),
            messages: vec![Message::new("user", "name a color")],
            kept: false,
            dropped_because: Some("exact duplicate".into()),
            labels: None,
        };
        assert_eq!(mix(&x, &[dropped], 0.2, 1), x);
        assert_eq!(mix(&x, &[], 0.2, 1), x);
    }

    #[test]
    fn phases_draw_from_their_own_streams() {
        let seeds: Vec<u64> = ["info", "select", "evolve", "pair"].iter().map(|p| phase_seed(42, p)).collect();
        let distinct: std::collections::HashSet<_> = seeds.iter().collect();
        assert_eq!(distinct.len(), 4);
        assert_eq!(phase_seed(42, "evolve"), seeds[2], "a pure function: a resumed phase draws the same");
        assert_ne!(phase_seed(43, "evolve"), seeds[2]);
    }
}
