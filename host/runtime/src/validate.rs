//! Checks of what goes into and comes out of plugins. Each returns a message that names
//! the offending item and value; the caller adds the plugin's name and the call.

use std::collections::HashSet;

use crate::types::{ChatMessage, Evolved, Preference, PromptResponses, PromptRewards};

fn finite(what: &str, index: usize, v: f64) -> Result<(), String> {
    if v.is_finite() { Ok(()) } else { Err(format!("{what} {index} is {v}, not a finite number")) }
}

fn roles(messages: &[ChatMessage]) -> Result<(), String> {
    if let Some(m) = messages.iter().find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant")) {
        return Err(format!("unknown message role `{}`", m.role.escape_debug()));
    }
    match messages.last() {
        None => Err("no messages".into()),
        Some(m) if m.role != "user" => Err(format!("the last message is from `{}`, not the user", m.role)),
        Some(m) if m.content.trim().is_empty() => Err("the last user message is empty".into()),
        Some(_) => Ok(()),
    }
}

/// Info-metric input: n >= 1 finite rewards with as many token counts.
pub fn prompt_rewards(items: &[PromptRewards]) -> Result<(), String> {
    for (i, item) in items.iter().enumerate() {
        let id = &item.prompt.id;
        if item.rewards.is_empty() {
            return Err(format!("prompt {i} (`{id}`) has no rewards"));
        }
        if item.rewards.len() != item.token_counts.len() {
            return Err(format!(
                "prompt {i} (`{id}`) has {} rewards but {} token counts",
                item.rewards.len(),
                item.token_counts.len()
            ));
        }
        for (j, r) in item.rewards.iter().enumerate() {
            finite(&format!("prompt {i} (`{id}`): reward"), j, *r)?;
        }
    }
    Ok(())
}

/// Pairing input: finite rewards.
pub fn prompt_responses(items: &[PromptResponses]) -> Result<(), String> {
    for (i, item) in items.iter().enumerate() {
        for (j, r) in item.responses.iter().enumerate() {
            finite(&format!("prompt {i} (`{}`): reward of response", item.prompt.id), j, r.reward)?;
        }
    }
    Ok(())
}

/// One finite score per input.
pub fn scores(scores: &[f64], expected: usize) -> Result<(), String> {
    finite_list("score", "prompts", scores, expected)
}

/// One finite reward per answer.
pub fn rewards(rewards: &[f64], expected: usize) -> Result<(), String> {
    finite_list("reward", "answers", rewards, expected)
}

fn finite_list(what: &str, per: &str, values: &[f64], expected: usize) -> Result<(), String> {
    if values.len() != expected {
        return Err(format!("{} {what}s for {expected} {per}", values.len()));
    }
    values.iter().enumerate().try_for_each(|(i, v)| finite(what, i, *v))
}

/// Reward-plugin input: well-formed prompts and non-empty answers.
pub fn exchanges(items: &[crate::types::Exchange]) -> Result<(), String> {
    items.iter().enumerate().try_for_each(|(i, e)| {
        roles(&e.prompt.messages).map_err(|m| format!("answer {i} (prompt `{}`): {m}", e.prompt.id))?;
        if e.response.trim().is_empty() {
            return Err(format!("answer {i} (prompt `{}`) is empty", e.prompt.id));
        }
        Ok(())
    })
}

/// Exactly `count` distinct indices below `n`.
pub fn indices(indices: &[u32], n: usize, count: usize) -> Result<(), String> {
    if indices.len() != count {
        return Err(format!("{} indices returned, {count} asked for", indices.len()));
    }
    let mut seen = HashSet::with_capacity(indices.len());
    for (i, &ix) in indices.iter().enumerate() {
        if ix as usize >= n {
            return Err(format!("index {ix} (at position {i}) is out of range for {n} prompts"));
        }
        if !seen.insert(ix) {
            return Err(format!("index {ix} is returned twice"));
        }
    }
    Ok(())
}

/// One list of pairs per prompt; each pair two different, in-range answers; no repeats.
pub fn preferences(pairs: &[Vec<Preference>], items: &[PromptResponses]) -> Result<(), String> {
    if pairs.len() != items.len() {
        return Err(format!("{} pair lists for {} prompts", pairs.len(), items.len()));
    }
    for (i, (list, item)) in pairs.iter().zip(items).enumerate() {
        let n = item.responses.len();
        let mut seen = HashSet::with_capacity(list.len());
        for p in list {
            let where_ = format!("prompt {i} (`{}`)", item.prompt.id);
            if p.chosen as usize >= n || p.rejected as usize >= n {
                return Err(format!("{where_}: pair ({}, {}) is out of range for {n} responses", p.chosen, p.rejected));
            }
            if p.chosen == p.rejected {
                return Err(format!("{where_}: pair ({0}, {0}) pairs a response with itself", p.chosen));
            }
            if !seen.insert(*p) {
                return Err(format!("{where_}: pair ({}, {}) is returned twice", p.chosen, p.rejected));
            }
        }
    }
    Ok(())
}

/// Evolved prompts: a valid parent, a conversation ending in a non-empty user message,
/// no larger than `max_bytes`.
pub fn evolved(evolved: &[Evolved], inputs: usize, max_bytes: usize) -> Result<(), String> {
    for (i, e) in evolved.iter().enumerate() {
        if e.parent as usize >= inputs {
            return Err(format!("evolved prompt {i}: parent {} is out of range for {inputs} prompts", e.parent));
        }
        roles(&e.messages).map_err(|m| format!("evolved prompt {i} (parent {}): {m}", e.parent))?;
        let bytes: usize = e.messages.iter().map(|m| m.content.len()).sum();
        if bytes > max_bytes {
            return Err(format!(
                "evolved prompt {i} (parent {}) has {bytes} bytes, more than the limit of {max_bytes}",
                e.parent
            ));
        }
    }
    Ok(())
}

/// Prompts sent to the evolver must themselves be well formed.
pub fn prompts(prompts: &[crate::types::Prompt]) -> Result<(), String> {
    prompts
        .iter()
        .enumerate()
        .try_for_each(|(i, p)| roles(&p.messages).map_err(|m| format!("prompt {i} (`{}`): {m}", p.id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Prompt, ScoredResponse};

    fn responses(n: usize) -> PromptResponses {
        PromptResponses {
            prompt: Prompt { id: "p".into(), messages: vec![ChatMessage::user("q")] },
            responses: (0..n).map(|i| ScoredResponse { text: String::new(), reward: i as f64, tokens: 1 }).collect(),
        }
    }

    #[test]
    fn scores_must_be_finite_and_complete() {
        assert!(scores(&[1.0, 2.0], 2).is_ok());
        assert_eq!(scores(&[1.0], 2).unwrap_err(), "1 scores for 2 prompts");
        assert_eq!(scores(&[1.0, f64::NAN], 2).unwrap_err(), "score 1 is NaN, not a finite number");
        assert_eq!(rewards(&[f64::INFINITY], 1).unwrap_err(), "reward 0 is inf, not a finite number");
        assert_eq!(rewards(&[], 1).unwrap_err(), "0 rewards for 1 answers");
    }

    #[test]
    fn indices_must_be_distinct_and_in_range() {
        assert!(indices(&[2, 0], 3, 2).is_ok());
        assert!(indices(&[3], 3, 1).unwrap_err().contains("index 3 (at position 0) is out of range"));
        assert!(indices(&[1, 1], 3, 2).unwrap_err().contains("returned twice"));
        assert!(indices(&[1], 3, 2).unwrap_err().contains("1 indices returned, 2 asked for"));
    }

    #[test]
    fn pairs_are_checked() {
        let items = [responses(3)];
        let p = |c, r| Preference { chosen: c, rejected: r };
        assert!(preferences(&[vec![p(2, 0)]], &items).is_ok());
        assert!(preferences(&[vec![]], &items).is_ok());
        assert!(preferences(&[vec![p(1, 1)]], &items).unwrap_err().contains("with itself"));
        assert!(preferences(&[vec![p(5, 0)]], &items).unwrap_err().contains("out of range"));
        assert!(preferences(&[vec![p(2, 0), p(2, 0)]], &items).unwrap_err().contains("twice"));
        assert!(preferences(&[], &items).unwrap_err().contains("0 pair lists for 1 prompts"));
    }

    #[test]
    fn evolved_prompts_are_checked() {
        let e = |parent, text: &str| Evolved { parent, messages: vec![ChatMessage::user(text)], method: "m".into() };
        assert!(evolved(&[e(0, "hi")], 1, 10).is_ok());
        assert!(evolved(&[e(1, "hi")], 1, 10).unwrap_err().contains("parent 1 is out of range"));
        assert!(evolved(&[e(0, "  ")], 1, 10).unwrap_err().contains("empty"));
        assert!(evolved(&[e(0, "hello world")], 1, 10).unwrap_err().contains("11 bytes"));
    }

    #[test]
    fn nan_rewards_are_refused_with_their_prompt() {
        let item = PromptRewards {
            prompt: Prompt { id: "x7".into(), messages: vec![ChatMessage::user("q")] },
            rewards: vec![0.1, f64::NAN],
            token_counts: vec![3, 4],
        };
        let err = prompt_rewards(&[item]).unwrap_err();
        assert_eq!(err, "prompt 0 (`x7`): reward 1 is NaN, not a finite number");
    }
}
