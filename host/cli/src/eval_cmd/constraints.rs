//! Constraint scores of an evaluation: for held-out prompts labelled with verifiable
//! constraints (`labels.constraints`, see `eva-constraints`), how often each side's
//! answers satisfy every constraint of their prompt, the share of constraints held, and
//! each kind's rate, with Wilson intervals over prompts (a prompt's value is the mean over its
//! answers).

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use eva_constraints::Constraint;
use eva_loop::layout::{Answer, PromptRecord};
use serde::{Deserialize, Serialize};

use crate::stats::{Estimate, mean_ci, share_ci};

/// Each labelled prompt's constraints, by prompt index; prompts without
/// `labels.constraints` have none. A label that is not a list of constraints is refused
/// by the prompt's id, before any answer is made.
pub fn of_prompts(prompts: &[PromptRecord]) -> Result<Vec<Option<Vec<Constraint>>>> {
    prompts
        .iter()
        .map(|p| match p.labels.as_ref().and_then(|l| l.get("constraints")) {
            None => Ok(None),
            Some(value) => match serde_json::from_value::<Vec<Constraint>>(value.clone()) {
                Ok(cs) => Ok(Some(cs)),
                Err(e) => bail!("prompt `{}`: labels.constraints: {e}", p.id),
            },
        })
        .collect()
}

/// One side's constraint scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideScores {
    /// Answers whose every constraint holds.
    pub all_held: Estimate,
    /// Constraints held, over all of a prompt's constraints.
    pub share_held: Estimate,
    /// Per kind, over the prompts that have it: (prompts, rate held).
    pub kinds: BTreeMap<String, (usize, Estimate)>,
}

/// Both sides' scores over the labelled prompts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConstraintScores {
    pub prompts: usize,
    pub model: SideScores,
    pub baseline: SideScores,
    /// Paired, per prompt: the model's all-held rate minus the baseline's.
    pub all_held_difference: Estimate,
}

/// The scores of both sides' answers (`model[i]`, `baseline[i]` answer prompt i), or
/// `None` when no prompt is labelled.
pub fn scores(
    constraints: &[Option<Vec<Constraint>>],
    model: &[&[Answer]],
    baseline: &[&[Answer]],
    confidence: f64,
) -> Option<ConstraintScores> {
    let labelled: Vec<usize> = (0..constraints.len()).filter(|&i| constraints[i].is_some()).collect();
    if labelled.is_empty() {
        return None;
    }
    let side = |answers: &[&[Answer]]| {
        // Per labelled prompt: the mean over its answers of each measure.
        let per_prompt = |measure: &dyn Fn(&[Constraint], &str) -> f64| -> Vec<f64> {
            labelled
                .iter()
                .map(|&i| {
                    let cs = constraints[i].as_deref().expect("labelled");
                    let a = answers[i];
                    a.iter().map(|a| measure(cs, &a.text)).sum::<f64>() / a.len().max(1) as f64
                })
                .collect()
        };
        let all = per_prompt(&|cs, text| f64::from(u8::from(cs.iter().all(|c| eva_constraints::check(c, text)))));
        let share = per_prompt(&|cs, text| eva_constraints::score(cs, text));
        let mut kinds: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for &i in &labelled {
            for c in constraints[i].as_deref().expect("labelled") {
                let a = answers[i];
                let held = a.iter().filter(|a| eva_constraints::check(c, &a.text)).count();
                kinds.entry(c.kind().to_owned()).or_default().push(held as f64 / a.len().max(1) as f64);
            }
        }
        let sides = SideScores {
            all_held: share_ci(&all, confidence),
            share_held: share_ci(&share, confidence),
            kinds: kinds.into_iter().map(|(k, v)| (k, (v.len(), share_ci(&v, confidence)))).collect(),
        };
        (sides, all)
    };
    let ((model, model_all), (baseline, baseline_all)) = (side(model), side(baseline));
    let difference: Vec<f64> = model_all.iter().zip(&baseline_all).map(|(m, b)| m - b).collect();
    Some(ConstraintScores {
        prompts: labelled.len(),
        model,
        baseline,
        all_held_difference: mean_ci(&difference, confidence),
    })
}

/// The scores as lines of the evaluation's summary.
pub fn render(s: &ConstraintScores) -> String {
    let est = |e: &Estimate| match e.ci {
        Some([lo, hi]) => format!("{:.3} [{lo:.3}, {hi:.3}]", e.mean),
        None => format!("{:.3}", e.mean),
    };
    let mut text = format!(
        "  constraints on {} labelled prompts (model | baseline)\n    every constraint held  {} | {}\n    \
         share held             {} | {}\n    difference (all held)  {}",
        s.prompts,
        est(&s.model.all_held),
        est(&s.baseline.all_held),
        est(&s.model.share_held),
        est(&s.baseline.share_held),
        match s.all_held_difference.ci {
            Some([lo, hi]) => format!("{:+.3} [{lo:+.3}, {hi:+.3}]", s.all_held_difference.mean),
            None => format!("{:+.3}", s.all_held_difference.mean),
        }
    );
    for (kind, (n, m)) in &s.model.kinds {
        let b = &s.baseline.kinds[kind].1;
        text += &format!("\n    {kind:<22} {} | {} ({n} prompts)", est(m), est(b));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Answer {
        Answer { text: text.into(), tokens: 1, reward: 0.0 }
    }

    #[test]
    fn every_measure_is_a_mean_over_answers_then_prompts() {
        let labels = |json: &str| -> Option<Vec<Constraint>> { Some(serde_json::from_str(json).unwrap()) };
        let constraints = vec![
            labels(r#"[{"kind": "max_words", "n": 3}, {"kind": "no_commas"}]"#),
            None,
            labels(r#"[{"kind": "no_commas"}]"#),
        ];
        let first = [answer("one two"), answer("one, two")];
        let third = [answer("a, b"), answer("a b")];
        let model: Vec<&[Answer]> = vec![&first, &[], &third];
        let silent = [answer("no commas here at all")];
        let baseline: Vec<&[Answer]> = vec![&silent, &[], &silent];
        let s = scores(&constraints, &model, &baseline, 0.95).unwrap();
        assert_eq!(s.prompts, 2);
        // Prompt 1: answers hold both / one of two; prompt 3: none / both.
        assert_eq!(s.model.all_held.mean, (0.5 + 0.5) / 2.0);
        assert_eq!(s.model.share_held.mean, (0.75 + 0.5) / 2.0);
        assert_eq!(s.model.kinds["no_commas"].0, 2);
        assert_eq!(s.model.kinds["no_commas"].1.mean, 0.5);
        assert_eq!(s.model.kinds["max_words"].1.mean, 1.0);
        // The baseline's answer is too long for prompt 1 and has no comma.
        assert_eq!(s.baseline.all_held.mean, 0.5);
        assert_eq!(s.all_held_difference.mean, 0.0);
        assert!(render(&s).contains("max_words"));
        assert!(scores(&[None], &[&first], &[&first], 0.95).is_none());
    }

    #[test]
    fn a_bad_label_is_refused_by_the_prompts_id() {
        let prompt = PromptRecord {
            id: "v7".into(),
            messages: vec![],
            origin: "seed".into(),
            parent: None,
            method: None,
            labels: serde_json::from_str(r#"{"constraints": [{"kind": "max_wordz", "n": 3}]}"#).unwrap(),
        };
        let err = of_prompts(&[prompt]).unwrap_err().to_string();
        assert!(err.starts_with("prompt `v7`: labels.constraints: unknown variant `max_wordz`"), "{err}");
    }
}
