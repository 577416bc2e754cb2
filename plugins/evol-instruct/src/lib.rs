//! The `evol-instruct` evolver: rewrites each selected prompt into several new prompts
//! with the host's model, EvolInstruct style. In-depth methods make a prompt harder
//! (constraints, deepening, concretising, reasoning steps); in-breadth methods make a new
//! prompt of the same domain (a sibling task, another persona). The model's output is
//! cleaned (preambles, labels and quotes stripped) and rejected when empty, echoed,
//! still carrying template markers, or a duplicate.

use eva_plugin_sdk::generate::{self, Request};
use eva_plugin_sdk::{Config, ConfigKind, Evolved, Evolver, Message, Metadata, Plugin, PluginError, Prompt, field};

mod clean;

pub use clean::{Rejected, clean};

/// One way of rewriting a prompt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Method {
    /// `in-depth/...` or `in-breadth/...`, recorded in the lineage.
    pub name: &'static str,
    /// What the rewriter is asked to do, in one instruction.
    instruction: &'static str,
}

pub const METHODS: [Method; 6] = [
    Method {
        name: "in-depth/constraints",
        instruction: "Add one or two concrete requirements the answer must meet (a format, a limit, a case \
                      to handle), so that a good answer needs more care than before.",
    },
    Method {
        name: "in-depth/deepen",
        instruction: "Ask about the same subject in more depth: where the request is broad or shallow, \
                      make it probe the underlying why or how.",
    },
    Method {
        name: "in-depth/concretise",
        instruction: "Replace general ideas with a specific, realistic situation, with names, numbers or \
                      details that the answer has to take into account.",
    },
    Method {
        name: "in-depth/reasoning",
        instruction: "Change the request so that answering it well takes several explicit steps of \
                      reasoning rather than a single fact or a template.",
    },
    Method {
        name: "in-breadth/sibling",
        instruction: "Write a different request from the same domain, about a less common topic, of \
                      similar length and difficulty; do not reuse the original's subject.",
    },
    Method {
        name: "in-breadth/persona",
        instruction: "Write the request a different kind of user (another profession, age or level of \
                      expertise) would send about the same domain, in their own words.",
    },
];

const SYSTEM: &str = "You rewrite prompts for training a helpful assistant. You answer with the new prompt \
                      only: no title, no explanation, no quotation marks, and never an answer to it.";

/// The rewriting request for one prompt and method.
pub fn meta_prompt(original: &str, method: &Method) -> String {
    format!(
        "Here is a prompt a user sent to an AI assistant:\n\n<prompt>\n{original}\n</prompt>\n\n\
         Rewrite it into a new prompt. {}\n\
         The new prompt must read like a real user's message, stay about as long as the original \
         (at most about twice as long), and be answerable by a capable assistant.\n\
         Reply with the new prompt alone.",
        method.instruction
    )
}

pub struct EvolInstruct {
    variants: usize,
    methods: Vec<Method>,
    temperature: f32,
    top_p: f32,
    max_tokens: u32,
}

impl EvolInstruct {
    /// The methods for one prompt's variants: a random order of the enabled methods,
    /// repeated when more variants than methods are asked for.
    fn pick_methods(&self) -> Vec<Method> {
        let mut order = self.methods.clone();
        for i in (1..order.len()).rev() {
            let j = eva_plugin_sdk::random::below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        order.iter().cycle().take(self.variants).copied().collect()
    }
}

impl Plugin for EvolInstruct {
    fn metadata() -> Metadata {
        let names: Vec<&str> = METHODS.iter().map(|m| m.name).collect();
        eva_plugin_sdk::metadata!(
            "evol-instruct",
            "EvolInstruct-style evolution: in-depth and in-breadth rewrites by the host's model.",
            vec![
                field("variants", ConfigKind::Integer, "4", "new prompts to try per selected prompt"),
                field(
                    "methods",
                    ConfigKind::Text,
                    "all",
                    &format!("comma-separated methods, `all`, `in-depth` or `in-breadth`: {}", names.join(", "))
                ),
                field("temperature", ConfigKind::Float, "0.88", "sampling temperature of the rewriter"),
                field("top-p", ConfigKind::Float, "0.95", "nucleus sampling mass of the rewriter"),
                field("max-tokens", ConfigKind::Integer, "384", "longest rewrite, in tokens"),
            ]
        )
    }

    fn from_config(config: &Config) -> Result<Self, PluginError> {
        let bad = |m: String| Err(PluginError::InvalidConfig(m));
        let variants = config.integer("variants")?;
        if !(1..=32).contains(&variants) {
            return bad(format!("variants must be in 1..=32, not {variants}"));
        }
        let spec = config.text("methods")?;
        let methods: Vec<Method> = match spec {
            "all" => METHODS.to_vec(),
            "in-depth" | "in-breadth" => METHODS.iter().filter(|m| m.name.starts_with(spec)).copied().collect(),
            list => {
                let mut chosen = Vec::new();
                for name in list.split(',').map(str::trim) {
                    match METHODS.iter().find(|m| m.name == name) {
                        Some(m) => chosen.push(*m),
                        None => return bad(format!("unknown method `{name}`")),
                    }
                }
                chosen
            }
        };
        let (temperature, top_p) = (config.float("temperature")?, config.float("top-p")?);
        if !((0.0..=2.0).contains(&temperature) && top_p > 0.0 && top_p <= 1.0) {
            return bad(format!("temperature {temperature} must be in [0, 2] and top-p {top_p} in (0, 1]"));
        }
        let max_tokens = config.integer("max-tokens")?;
        if !(16..=4096).contains(&max_tokens) {
            return bad(format!("max-tokens must be in 16..=4096, not {max_tokens}"));
        }
        Ok(EvolInstruct {
            variants: variants as usize,
            methods,
            temperature: temperature as f32,
            top_p: top_p as f32,
            max_tokens: max_tokens as u32,
        })
    }
}

impl Evolver for EvolInstruct {
    fn evolve(&mut self, prompts: &[Prompt]) -> Result<Vec<Evolved>, PluginError> {
        // (parent, method) of each request, in request order.
        let mut plan = Vec::new();
        let mut requests = Vec::new();
        for (parent, prompt) in prompts.iter().enumerate() {
            let last = prompt.messages.last().filter(|m| m.role == "user").ok_or_else(|| {
                PluginError::InvalidInput(format!("prompt `{}` does not end with a user message", prompt.id))
            })?;
            for method in self.pick_methods() {
                requests.push(Request {
                    messages: vec![
                        Message { role: "system".into(), content: SYSTEM.into() },
                        Message { role: "user".into(), content: meta_prompt(&last.content, &method) },
                    ],
                    max_tokens: self.max_tokens,
                    temperature: self.temperature,
                    top_p: self.top_p,
                });
                plan.push((parent, method));
            }
        }
        let texts = generate::complete(&requests)
            .map_err(|e| PluginError::Internal(format!("the host's generate failed: {e:?}")))?;
        let mut evolved: Vec<Evolved> = Vec::new();
        let mut rejected = 0usize;
        for ((parent, method), text) in plan.into_iter().zip(texts) {
            let prompt = &prompts[parent];
            let original = &prompt.messages.last().expect("checked above").content;
            let cleaned = clean(&text, original).and_then(|c| {
                let duplicate = evolved
                    .iter()
                    .any(|e| e.parent as usize == parent && e.messages.last().is_some_and(|m| m.content == c));
                if duplicate { Err(Rejected::Duplicate) } else { Ok(c) }
            });
            match cleaned {
                Ok(content) => {
                    // Earlier turns are kept: a multi-turn prompt evolves its last user turn.
                    let mut messages = prompt.messages[..prompt.messages.len() - 1].to_vec();
                    messages.push(Message { role: "user".into(), content });
                    evolved.push(Evolved { parent: parent as u32, messages, method: method.name.into(), labels: None });
                }
                Err(why) => {
                    rejected += 1;
                    eva_plugin_sdk::log::record(
                        eva_plugin_sdk::log::LogLevel::Debug,
                        "rewrite rejected",
                        &[("prompt", &prompt.id), ("method", method.name), ("reason", why.as_str())],
                    );
                }
            }
        }
        if rejected > 0 {
            eva_plugin_sdk::log::info(&format!("{} rewrites kept, {rejected} rejected", evolved.len()));
        }
        Ok(evolved)
    }
}

eva_plugin_sdk::export_evolver!(EvolInstruct);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_prompts_carry_the_original_and_the_instruction() {
        let p = meta_prompt("Explain TCP slow start.", &METHODS[0]);
        assert!(p.contains("<prompt>\nExplain TCP slow start.\n</prompt>"));
        assert!(p.contains(METHODS[0].instruction));
    }

    #[test]
    fn methods_have_unique_names_in_two_families() {
        for (i, m) in METHODS.iter().enumerate() {
            assert!(m.name.starts_with("in-depth/") || m.name.starts_with("in-breadth/"));
            assert!(METHODS[..i].iter().all(|o| o.name != m.name));
        }
    }
}
