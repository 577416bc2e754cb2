//! The `constraint-check` plugin: a verifiable reward for instruction following. A
//! prompt's labels hold its constraints (`{"constraints": [{"kind": "max_words", "n":
//! 50}, ...]}`, the kinds and their exact rules are those of `eva-constraints`); the
//! reward of an answer is the share of them it satisfies, or, with `mode = all`, 1 when
//! it satisfies every one and 0 otherwise.
//!
//! A prompt without constraints is an error by default (naming the prompt): a reward that
//! quietly paid for it would train on nothing. `unlabelled = NUMBER` gives such prompts a
//! fixed reward instead, for prompt sets that mix both.

use eva_constraints::{Constraint, from_labels, score};
use eva_plugin_sdk::{Config, ConfigKind, Exchange, Metadata, Plugin, PluginError, Reward, field};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// The share of constraints held.
    Fraction,
    /// 1 when every constraint holds, else 0.
    All,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConstraintCheck {
    mode: Mode,
    /// The reward of an answer to a prompt without constraints; `None`: an error.
    unlabelled: Option<f64>,
}

impl ConstraintCheck {
    /// The reward of `answer` under `constraints` (at least one).
    pub fn reward(&self, constraints: &[Constraint], answer: &str) -> f64 {
        let share = score(constraints, answer);
        match self.mode {
            Mode::Fraction => share,
            Mode::All => f64::from(u8::from(share == 1.0)),
        }
    }

    fn constraints(&self, item: &Exchange) -> Result<Vec<Constraint>, PluginError> {
        let id = &item.prompt.id;
        let Some(labels) = &item.prompt.labels else { return Ok(vec![]) };
        let (_, constraints) =
            from_labels(labels).map_err(|e| PluginError::InvalidInput(format!("prompt `{id}`: {e}")))?;
        Ok(constraints)
    }
}

impl Plugin for ConstraintCheck {
    fn metadata() -> Metadata {
        eva_plugin_sdk::metadata!(
            "constraint-check",
            "A verifiable reward: the share of a prompt's labelled constraints an answer satisfies.",
            vec![
                field(
                    "mode",
                    ConfigKind::Text,
                    "fraction",
                    "fraction (the share of constraints held) or all (1 if every one holds, else 0)"
                ),
                field(
                    "unlabelled",
                    ConfigKind::Text,
                    "error",
                    "a prompt without constraints: error, or the reward to give it (a number)"
                ),
            ]
        )
    }

    fn from_config(config: &Config) -> Result<Self, PluginError> {
        let mode = match config.text("mode")? {
            "fraction" => Mode::Fraction,
            "all" => Mode::All,
            other => return Err(PluginError::InvalidConfig(format!("mode `{other}` is not one of fraction, all"))),
        };
        let unlabelled = match config.text("unlabelled")? {
            "error" => None,
            number => match number.trim().parse::<f64>() {
                Ok(v) if v.is_finite() => Some(v),
                _ => {
                    return Err(PluginError::InvalidConfig(format!(
                        "unlabelled `{number}` is neither `error` nor a finite number"
                    )));
                }
            },
        };
        Ok(ConstraintCheck { mode, unlabelled })
    }
}

impl Reward for ConstraintCheck {
    fn rate(&mut self, item: &Exchange) -> Result<f64, PluginError> {
        let constraints = self.constraints(item)?;
        if constraints.is_empty() {
            return self.unlabelled.ok_or_else(|| {
                PluginError::InvalidInput(format!(
                    "prompt `{}` has no constraints in its labels (set `unlabelled` to reward such prompts)",
                    item.prompt.id
                ))
            });
        }
        Ok(self.reward(&constraints, &item.response))
    }
}

eva_plugin_sdk::export_reward!(ConstraintCheck);

#[cfg(test)]
mod tests {
    use super::*;
    use eva_plugin_sdk::{Message, Prompt};

    fn exchange(labels: Option<&str>, answer: &str) -> Exchange {
        let messages = vec![Message { role: "user".into(), content: "q".into() }];
        Exchange {
            prompt: Prompt { id: "p7".into(), messages, labels: labels.map(str::to_owned) },
            response: answer.into(),
        }
    }

    const TWO: &str = r#"{"constraints": [{"kind": "max_words", "n": 3}, {"kind": "no_commas"}]}"#;

    #[test]
    fn fraction_and_all_or_nothing() {
        let mut fraction = ConstraintCheck { mode: Mode::Fraction, unlabelled: None };
        let mut all = ConstraintCheck { mode: Mode::All, unlabelled: None };
        for (answer, share) in [("Yes indeed.", 1.0), ("Yes, indeed.", 0.5), ("Well, yes, I think so.", 0.0)] {
            assert_eq!(fraction.rate(&exchange(Some(TWO), answer)).unwrap(), share, "{answer}");
            assert_eq!(all.rate(&exchange(Some(TWO), answer)).unwrap(), if share == 1.0 { 1.0 } else { 0.0 });
        }
    }

    #[test]
    fn unlabelled_prompts_are_an_error_unless_configured() {
        let mut check = ConstraintCheck { mode: Mode::Fraction, unlabelled: None };
        for labels in [None, Some(r#"{"answer": "4"}"#), Some(r#"{"constraints": []}"#)] {
            let err = check.rate(&exchange(labels, "x")).unwrap_err();
            assert!(matches!(&err, PluginError::InvalidInput(m) if m.starts_with("prompt `p7` has no constraints")));
        }
        let mut lenient = ConstraintCheck { mode: Mode::Fraction, unlabelled: Some(0.25) };
        assert_eq!(lenient.rate(&exchange(None, "x")).unwrap(), 0.25);
    }

    #[test]
    fn malformed_constraints_name_the_prompt_and_the_constraint() {
        let mut check = ConstraintCheck { mode: Mode::Fraction, unlabelled: None };
        let bad = r#"{"constraints": [{"kind": "no_commas"}, {"kind": "max_words", "n": 0}]}"#;
        let PluginError::InvalidInput(m) = check.rate(&exchange(Some(bad), "x")).unwrap_err() else { panic!() };
        assert!(m.starts_with("prompt `p7`: constraint 1 ("), "{m}");
        let PluginError::InvalidInput(m) = check.rate(&exchange(Some(r#"{"constraints": 3}"#), "x")).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(m, "prompt `p7`: `constraints` is not a list");
    }
}
