//! The `constraint-evolver` plugin: evolves verifiable prompts. A prompt's text is its
//! request followed by one sentence per constraint (`eva_constraints::describe`), and its
//! labels hold the constraints. Each variant is made by one of three methods, drawn in a
//! random order until one applies:
//!
//! - `in-depth/add-constraint`: one more constraint, of a random kind, that does not
//!   contradict the others (`eva_constraints::random_compatible`), up to
//!   `max-constraints`;
//! - `in-depth/tighten`: one constraint made harder (`eva_constraints::tighten`), still
//!   compatible with the rest;
//! - `in-breadth/new-topic`: a request on another topic with the same constraints, from
//!   the built-in topic list (`breadth = topics`) or written by the host's model
//!   (`breadth = generate`, falling back to the list when the model's answer is unusable);
//!   `breadth = off` disables it.
//!
//! Each variant returns its labels: the parent's, with `constraints` replaced by the new
//! list. All randomness comes from the host's seeded stream, so a run's evolved prompts
//! are the same on every rerun. A prompt whose text does not end with its constraints'
//! sentences (written by hand) can still gain a constraint (its sentence is appended) or
//! move topic (its text is rebuilt); it is not tightened.

use eva_constraints::{Constraint, LABEL_KEY, Rng, conflict, describe, from_labels, random_compatible, tighten};
use eva_plugin_sdk::generate::{self, Request};
use eva_plugin_sdk::{Config, ConfigKind, Evolved, Evolver, Message, Metadata, Plugin, PluginError, Prompt, field};

mod topics;

pub use topics::TOPICS;

/// Where in-breadth variants take their new request from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breadth {
    Topics,
    Generate,
    Off,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConstraintEvolver {
    pub variants: u32,
    pub max_constraints: usize,
    pub breadth: Breadth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Add,
    Tighten,
    NewTopic,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Add => "in-depth/add-constraint",
            Method::Tighten => "in-depth/tighten",
            Method::NewTopic => "in-breadth/new-topic",
        }
    }
}

/// A parsed prompt: its request (when the text ends with its constraints' sentences),
/// its text, labels and constraints.
pub struct Parsed {
    pub request: Option<String>,
    pub text: String,
    pub labels: serde_json::Map<String, serde_json::Value>,
    pub constraints: Vec<Constraint>,
}

/// One variant: its text, or a request still to be written by the model (in-breadth with
/// `breadth = generate`), and its constraints.
#[derive(Debug, Clone, PartialEq)]
pub enum Draft {
    Text(String),
    NewRequest { old_request: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub parent: usize,
    pub method: &'static str,
    pub draft: Draft,
    pub constraints: Vec<Constraint>,
}

/// The request and its constraints' sentences, as one prompt text.
pub fn compose(request: &str, constraints: &[Constraint]) -> String {
    std::iter::once(request.trim().to_owned()).chain(constraints.iter().map(describe)).collect::<Vec<_>>().join(" ")
}

/// The prompt's request: its text without the constraints' sentences at the end, if the
/// text ends with them.
pub fn request_of(text: &str, constraints: &[Constraint]) -> Option<String> {
    let text = text.trim();
    let sentences: Vec<String> = constraints.iter().map(describe).collect();
    let request = text.strip_suffix(sentences.join(" ").as_str())?.trim_end();
    (!request.is_empty()).then(|| request.to_owned())
}

/// Parse a prompt's last message and labels.
pub fn parse(prompt: &Prompt) -> Result<Parsed, String> {
    let text = prompt.messages.last().map(|m| m.content.clone()).ok_or("the prompt has no messages")?;
    let (labels, constraints) = match &prompt.labels {
        Some(l) => from_labels(l)?,
        None => (serde_json::Map::new(), vec![]),
    };
    Ok(Parsed { request: request_of(&text, &constraints), text, labels, constraints })
}

/// Words of a request that may become required keywords: lowercase, alphabetic, not the
/// verbs requests begin with.
fn topic_words(request: &str) -> Vec<String> {
    const COMMON: [&str; 12] =
        ["explain", "describe", "write", "give", "suggest", "about", "their", "which", "short", "what", "when", "your"];
    let mut words: Vec<String> = request
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| w.chars().count() >= 4)
        .map(str::to_lowercase)
        .filter(|w| !COMMON.contains(&w.as_str()))
        .collect();
    words.dedup();
    words
}

impl ConstraintEvolver {
    fn methods(&self) -> Vec<Method> {
        let mut all = vec![Method::Add, Method::Tighten];
        if self.breadth != Breadth::Off {
            all.push(Method::NewTopic);
        }
        all
    }

    /// One variant of `p` by `method`, if the method applies.
    fn try_method(&self, method: Method, p: &Parsed, rng: &mut Rng) -> Option<(Draft, Vec<Constraint>)> {
        let cs = &p.constraints;
        match method {
            Method::Add => {
                if cs.len() >= self.max_constraints {
                    return None;
                }
                let words = topic_words(p.request.as_deref().unwrap_or(&p.text));
                let words: Vec<&str> = words.iter().map(String::as_str).collect();
                let new = random_compatible(cs, rng, &words)?;
                let text = match &p.request {
                    Some(request) => compose(request, &[cs.as_slice(), std::slice::from_ref(&new)].concat()),
                    None => format!("{} {}", p.text.trim_end(), describe(&new)),
                };
                Some((Draft::Text(text), [cs.clone(), vec![new]].concat()))
            }
            Method::Tighten => {
                let request = p.request.as_ref()?;
                let mut order: Vec<usize> = (0..cs.len()).collect();
                shuffle(&mut order, rng);
                order.into_iter().find_map(|i| {
                    let harder = tighten(&cs[i], rng)?;
                    let others: Vec<Constraint> =
                        cs.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, c)| c.clone()).collect();
                    conflict(&others, &harder).is_none().then(|| {
                        let mut next = cs.clone();
                        next[i] = harder;
                        (Draft::Text(compose(request, &next)), next)
                    })
                })
            }
            Method::NewTopic => {
                let old = p.request.clone().unwrap_or_else(|| p.text.clone());
                let draft = match self.breadth {
                    Breadth::Generate => Draft::NewRequest { old_request: old },
                    _ => Draft::Text(compose(&other_topic(&old, rng), cs)),
                };
                Some((draft, cs.clone()))
            }
        }
    }

    /// The variants of every prompt, before any generation.
    pub fn plan(&self, prompts: &[Parsed], rng: &mut Rng) -> Vec<Variant> {
        let mut out = Vec::new();
        for (parent, p) in prompts.iter().enumerate() {
            for _ in 0..self.variants {
                let mut methods = self.methods();
                shuffle(&mut methods, rng);
                if let Some((method, (draft, constraints))) =
                    methods.into_iter().find_map(|m| self.try_method(m, p, rng).map(|v| (m, v)))
                {
                    out.push(Variant { parent, method: method.name(), draft, constraints });
                }
            }
        }
        out
    }
}

fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// A topic of the built-in list other than `current`.
fn other_topic(current: &str, rng: &mut Rng) -> String {
    let candidates: Vec<&str> = TOPICS.iter().copied().filter(|t| !current.trim().eq_ignore_ascii_case(t)).collect();
    rng.pick(&candidates).expect("the topic list has more than one topic").to_string()
}

/// The model's new request, cleaned: its first non-empty line without a label or quotes;
/// `None` when that is not one short request.
pub fn clean_request(answer: &str, old: &str) -> Option<String> {
    let line = answer.lines().map(str::trim).find(|l| !l.is_empty())?;
    let lower = line.to_lowercase();
    let line = ["new request:", "request:"]
        .iter()
        .find_map(|label| lower.starts_with(label).then(|| line[label.len()..].trim()))
        .unwrap_or(line);
    let line = line.trim_matches(|c| matches!(c, '"' | '“' | '”' | '\'' | '*')).trim();
    let words = line.split_whitespace().count();
    if !(3..=40).contains(&words) || line.eq_ignore_ascii_case(old.trim()) {
        return None;
    }
    Some(if line.ends_with(['.', '?', '!']) { line.to_owned() } else { format!("{line}.") })
}

fn breadth_request(old: &str) -> Request {
    let ask = format!(
        "Here is a request someone sent to an assistant:\n\"{old}\"\nWrite one new request of the same kind and \
         length on a completely different everyday topic. Reply with the new request only."
    );
    Request {
        messages: vec![Message { role: "user".into(), content: ask }],
        max_tokens: 48,
        temperature: 0.9,
        top_p: 0.95,
    }
}

impl Plugin for ConstraintEvolver {
    fn metadata() -> Metadata {
        eva_plugin_sdk::metadata!(
            "constraint-evolver",
            "Evolves verifiable prompts: adds or tightens a constraint, or moves the request to a new topic keeping its constraints.",
            vec![
                field("variants", ConfigKind::Integer, "2", "variants per selected prompt (1-8)"),
                field(
                    "max-constraints",
                    ConfigKind::Integer,
                    "4",
                    "no constraint is added to a prompt with this many (1-10)"
                ),
                field(
                    "breadth",
                    ConfigKind::Text,
                    "topics",
                    "in-breadth variants: topics (the built-in list), generate (the host's model) or off"
                ),
            ]
        )
    }

    fn from_config(config: &Config) -> Result<Self, PluginError> {
        let variants = config.integer("variants")?;
        if !(1..=8).contains(&variants) {
            return Err(PluginError::InvalidConfig(format!("variants must be 1-8, not {variants}")));
        }
        let max_constraints = config.integer("max-constraints")?;
        if !(1..=10).contains(&max_constraints) {
            return Err(PluginError::InvalidConfig(format!("max-constraints must be 1-10, not {max_constraints}")));
        }
        let breadth = match config.text("breadth")? {
            "topics" => Breadth::Topics,
            "generate" => Breadth::Generate,
            "off" => Breadth::Off,
            other => {
                return Err(PluginError::InvalidConfig(format!(
                    "breadth `{other}` is not one of topics, generate, off"
                )));
            }
        };
        Ok(ConstraintEvolver { variants: variants as u32, max_constraints: max_constraints as usize, breadth })
    }
}

impl Evolver for ConstraintEvolver {
    fn evolve(&mut self, prompts: &[Prompt]) -> Result<Vec<Evolved>, PluginError> {
        let parsed: Vec<Parsed> = prompts
            .iter()
            .map(|p| parse(p).map_err(|e| PluginError::InvalidInput(format!("prompt `{}`: {e}", p.id))))
            .collect::<Result<_, _>>()?;
        let mut rng = Rng::new(eva_plugin_sdk::random::u64());
        let variants = self.plan(&parsed, &mut rng);
        let made = |method: Method| variants.iter().filter(|v| v.method == method.name()).count().to_string();
        eva_plugin_sdk::log::record(
            eva_plugin_sdk::log::LogLevel::Info,
            &format!("{} variants of {} prompts", variants.len(), prompts.len()),
            &[
                ("added", &made(Method::Add)),
                ("tightened", &made(Method::Tighten)),
                ("new-topic", &made(Method::NewTopic)),
            ],
        );

        // The new requests the model is asked for, in one batch.
        let asks: Vec<Request> = variants
            .iter()
            .filter_map(|v| match &v.draft {
                Draft::NewRequest { old_request } => Some(breadth_request(old_request)),
                Draft::Text(_) => None,
            })
            .collect();
        let mut answers = if asks.is_empty() {
            Vec::new()
        } else {
            generate::complete(&asks).unwrap_or_else(|e| {
                eva_plugin_sdk::log::warn(&format!("generate failed ({e:?}); new topics come from the built-in list"));
                vec![String::new(); asks.len()]
            })
        }
        .into_iter();

        Ok(variants
            .into_iter()
            .map(|v| {
                let text = match v.draft {
                    Draft::Text(text) => text,
                    Draft::NewRequest { old_request } => {
                        let answer = answers.next().unwrap_or_default();
                        let request = clean_request(&answer, &old_request).unwrap_or_else(|| {
                            eva_plugin_sdk::log::debug("the model's request was unusable; a listed topic instead");
                            other_topic(&old_request, &mut rng)
                        });
                        compose(&request, &v.constraints)
                    }
                };
                let parent = &prompts[v.parent];
                let mut messages = parent.messages.clone();
                if let Some(last) = messages.last_mut() {
                    last.content = text;
                }
                let mut labels = parsed[v.parent].labels.clone();
                labels.insert(LABEL_KEY.into(), serde_json::to_value(&v.constraints).expect("constraints serialize"));
                Evolved {
                    parent: v.parent as u32,
                    messages,
                    method: v.method.into(),
                    labels: Some(serde_json::Value::Object(labels).to_string()),
                }
            })
            .collect())
    }
}

eva_plugin_sdk::export_evolver!(ConstraintEvolver);

#[cfg(test)]
mod tests;
