//! Checks of what goes into and comes out of plugins. Each returns a message that names
//! the offending item and value; the caller adds the plugin's name and the call.

use std::collections::HashSet;

use crate::limits::Limits;
pub use crate::text::has_visible;
use crate::text::quote;
use crate::types::{ChatMessage, Evolved, Preference, PromptResponses, PromptRewards};

/// The largest magnitude of a reward, from any source: differences, sums and squares of
/// rewards then stay finite, so no metric built on them overflows.
pub const MAX_REWARD: f64 = 1e100;

/// The longest `method` label of an evolved prompt, in bytes.
pub const MAX_METHOD_BYTES: usize = 256;

fn finite(what: &str, index: usize, v: f64) -> Result<(), String> {
    if v.is_finite() { Ok(()) } else { Err(format!("{what} {index} is {v}, not a finite number")) }
}

/// Whether `v` may be a reward: finite and within ±[`MAX_REWARD`]; the error says why not
/// (`not a finite number`, ...), to follow the value in a message.
pub fn reward_value(v: f64) -> Result<(), String> {
    if !v.is_finite() {
        Err("not a finite number".into())
    } else if v.abs() > MAX_REWARD {
        Err(format!("beyond the bound of ±{MAX_REWARD:e} on rewards"))
    } else {
        Ok(())
    }
}

fn reward(what: &str, index: usize, v: f64) -> Result<(), String> {
    reward_value(v).map_err(|why| format!("{what} {index} is {}, {why}", shown(v)))
}

/// A value as messages show it: huge ones in exponent form.
fn shown(v: f64) -> String {
    if v.is_finite() && v.abs() >= 1e16 { format!("{v:e}") } else { v.to_string() }
}

/// Whether a prompt's last message has text a reader can see (not only white space,
/// control or zero-width characters).
pub fn visible_prompt(text: &str) -> Result<(), String> {
    if has_visible(text) { Ok(()) } else { Err("the last user message has no visible character".into()) }
}

fn roles(messages: &[ChatMessage]) -> Result<(), String> {
    if let Some(m) = messages.iter().find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant")) {
        return Err(format!("unknown message role {}", quote(&m.role)));
    }
    match messages.last() {
        None => Err("no messages".into()),
        Some(m) if m.role != "user" => Err(format!("the last message is from `{}`, not the user", m.role)),
        Some(m) => visible_prompt(&m.content),
    }
}

/// Info-metric input: n >= 1 finite rewards with as many token counts.
pub fn prompt_rewards(items: &[PromptRewards]) -> Result<(), String> {
    for (i, item) in items.iter().enumerate() {
        let id = &item.prompt.id;
        if item.rewards.is_empty() {
            return Err(format!("prompt {i} (`{id}`) has no rewards"));
        }
        if item.rewards.len() != item.token_counts.len() || item.rewards.len() != item.responses.len() {
            return Err(format!(
                "prompt {i} (`{id}`) has {} rewards but {} token counts and {} responses",
                item.rewards.len(),
                item.token_counts.len(),
                item.responses.len()
            ));
        }
        for (j, r) in item.rewards.iter().enumerate() {
            reward(&format!("prompt {i} (`{id}`): reward"), j, *r)?;
        }
    }
    Ok(())
}

/// Pairing input: finite rewards.
pub fn prompt_responses(items: &[PromptResponses]) -> Result<(), String> {
    for (i, item) in items.iter().enumerate() {
        for (j, r) in item.responses.iter().enumerate() {
            reward(&format!("prompt {i} (`{}`): reward of response", item.prompt.id), j, r.reward)?;
        }
    }
    Ok(())
}

/// One finite score per input.
pub fn scores(scores: &[f64], expected: usize) -> Result<(), String> {
    count("score", "prompts", scores, expected)?;
    scores.iter().enumerate().try_for_each(|(i, v)| finite("score", i, *v))
}

/// One reward per answer, finite and within ±[`MAX_REWARD`].
pub fn rewards(rewards: &[f64], expected: usize) -> Result<(), String> {
    count("reward", "answers", rewards, expected)?;
    rewards.iter().enumerate().try_for_each(|(i, v)| reward("reward", i, *v))
}

fn count(what: &str, per: &str, values: &[f64], expected: usize) -> Result<(), String> {
    if values.len() != expected {
        return Err(format!("{} {what}s for {expected} {per}", values.len()));
    }
    Ok(())
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

/// Evolved prompts: a valid parent, a conversation ending in a user message with visible
/// text, within the limits on size and count, and a short one-line `method`.
pub fn evolved(evolved: &[Evolved], inputs: usize, limits: &Limits) -> Result<(), String> {
    if evolved.len() > limits.max_evolved_per_call {
        return Err(format!(
            "{} evolved prompts, more than the limit of {} per call (`max-evolved-per-call`)",
            evolved.len(),
            limits.max_evolved_per_call
        ));
    }
    let mut per_input = vec![0usize; inputs];
    for (i, e) in evolved.iter().enumerate() {
        if e.parent as usize >= inputs {
            return Err(format!("evolved prompt {i}: parent {} is out of range for {inputs} prompts", e.parent));
        }
        let made = &mut per_input[e.parent as usize];
        *made += 1;
        if *made > limits.max_evolved_per_input {
            return Err(format!(
                "more than {} evolved prompts from input {} (`max-evolved-per-input`)",
                limits.max_evolved_per_input, e.parent
            ));
        }
        let at = format!("evolved prompt {i} (parent {})", e.parent);
        if e.method.len() > MAX_METHOD_BYTES || e.method.chars().any(char::is_control) {
            return Err(format!(
                "{at}: method {} is not one line of at most {MAX_METHOD_BYTES} bytes",
                quote(&e.method)
            ));
        }
        if e.messages.len() > limits.max_prompt_messages {
            return Err(format!(
                "{at} has {} messages, more than the limit of {} (`max-prompt-messages`)",
                e.messages.len(),
                limits.max_prompt_messages
            ));
        }
        // Labels count towards the prompt's size: they are stored and sent with it.
        let label_bytes = e.labels.as_ref().map_or(0, String::len);
        let bytes: usize = e.messages.iter().map(|m| m.content.len()).sum::<usize>() + label_bytes;
        if bytes > limits.max_prompt_bytes {
            return Err(format!(
                "{at} has {bytes} bytes with its labels, more than the limit of {} (`max-prompt-bytes`)",
                limits.max_prompt_bytes
            ));
        }
        roles(&e.messages).map_err(|m| format!("{at}: {m}"))?;
        if let Some(labels) = &e.labels {
            labels_object(labels).map_err(|m| format!("{at}: {m}"))?;
        }
    }
    Ok(())
}

/// Labels are a JSON object, as text.
pub fn labels_object(labels: &str) -> Result<(), String> {
    match serde_json::from_str::<serde_json::Value>(labels) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(other) => Err(format!("its labels are a JSON {}, not an object", json_kind(&other))),
        Err(e) => Err(format!("its labels are not JSON ({e}): {}", quote(&crate::text::clip(labels)))),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
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
            prompt: Prompt::new("p", vec![ChatMessage::user("q")]),
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
        let e = |parent, text: &str| Evolved {
            parent,
            messages: vec![ChatMessage::user(text)],
            method: "m".into(),
            labels: None,
        };
        let limits = Limits { max_prompt_bytes: 10, ..Limits::default() };
        assert!(evolved(&[e(0, "hi")], 1, &limits).is_ok());
        assert!(evolved(&[e(1, "hi")], 1, &limits).unwrap_err().contains("parent 1 is out of range"));
        assert!(evolved(&[e(0, "  ")], 1, &limits).unwrap_err().contains("no visible character"));
        assert!(evolved(&[e(0, "hello world")], 1, &limits).unwrap_err().contains("11 bytes"));
    }

    #[test]
    fn evolved_prompts_are_counted_per_input_and_per_call() {
        let e = |parent| Evolved { parent, messages: vec![ChatMessage::user("q")], method: "m".into(), labels: None };
        let limits = Limits { max_evolved_per_input: 2, max_evolved_per_call: 5, ..Limits::default() };
        assert!(evolved(&[e(0), e(1), e(0), e(1)], 2, &limits).is_ok());
        let err = evolved(&[e(0), e(1), e(0), e(0)], 2, &limits).unwrap_err();
        assert_eq!(err, "more than 2 evolved prompts from input 0 (`max-evolved-per-input`)");
        let err = evolved(&vec![e(0); 6], 1, &limits).unwrap_err();
        assert_eq!(err, "6 evolved prompts, more than the limit of 5 per call (`max-evolved-per-call`)");
    }

    #[test]
    fn methods_are_short_single_lines_and_quoted_briefly() {
        let e = |method: String| Evolved { parent: 0, messages: vec![ChatMessage::user("q")], method, labels: None };
        let limits = Limits::default();
        assert!(evolved(&[e("in-depth/add-constraints".into())], 1, &limits).is_ok());
        let err = evolved(&[e("m".repeat(64 << 20))], 1, &limits).unwrap_err();
        assert!(err.len() < 200 && err.contains("(67108864 bytes) is not one line of at most 256 bytes"), "{err}");
        assert!(evolved(&[e("a\nb".into())], 1, &limits).unwrap_err().contains("`a\\nb`"));
    }

    #[test]
    fn prompts_of_invisible_characters_are_refused() {
        let e = |text: &str| Evolved {
            parent: 0,
            messages: vec![ChatMessage::user(text)],
            method: "m".into(),
            labels: None,
        };
        for text in ["\u{200B}\u{200D}\u{FEFF}", "\u{7}\u{1}\t", "\u{2060}\u{E0020}"] {
            let err = evolved(&[e(text)], 1, &Limits::default()).unwrap_err();
            assert!(err.ends_with("the last user message has no visible character"), "{text:?}: {err}");
        }
    }

    #[test]
    fn evolved_labels_must_be_a_json_object() {
        let e = |labels: &str| Evolved {
            parent: 0,
            messages: vec![ChatMessage::user("q")],
            method: "m".into(),
            labels: Some(labels.into()),
        };
        assert!(evolved(&[e(r#"{"constraints": []}"#)], 1, &Limits::default()).is_ok());
        let err = evolved(&[e("[1, 2]")], 1, &Limits::default()).unwrap_err();
        assert_eq!(err, "evolved prompt 0 (parent 0): its labels are a JSON array, not an object");
        let err = evolved(&[e("{oops")], 1, &Limits::default()).unwrap_err();
        assert!(err.starts_with("evolved prompt 0 (parent 0): its labels are not JSON ("), "{err}");
        let limits = Limits { max_prompt_bytes: 20, ..Limits::default() };
        let err = evolved(&[e(r#"{"k": "a long label value"}"#)], 1, &limits).unwrap_err();
        assert!(err.contains("bytes with its labels, more than the limit of 20"), "{err}");
    }

    #[test]
    fn rewards_are_bounded() {
        assert!(rewards(&[1e100, -1e100, 0.5], 3).is_ok());
        assert_eq!(
            rewards(&[0.0, -1e308], 2).unwrap_err(),
            "reward 1 is -1e308, beyond the bound of ±1e100 on rewards"
        );
        assert!(scores(&[1e308], 1).is_ok(), "info scores need only be finite");
    }

    #[test]
    fn nan_rewards_are_refused_with_their_prompt() {
        let item = PromptRewards {
            prompt: Prompt::new("x7", vec![ChatMessage::user("q")]),
            rewards: vec![0.1, f64::NAN],
            token_counts: vec![3, 4],
            responses: vec!["a".into(), "b".into()],
        };
        let err = prompt_rewards(&[item]).unwrap_err();
        assert_eq!(err, "prompt 0 (`x7`): reward 1 is NaN, not a finite number");
    }
}
