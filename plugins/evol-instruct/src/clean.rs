//! Cleaning a rewriter model's output into a prompt, or rejecting it.

/// Why an output was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    Empty,
    Echo,
    TemplateLeak,
    TooShort,
    Duplicate,
}

impl Rejected {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejected::Empty => "empty",
            Rejected::Echo => "echoes the original",
            Rejected::TemplateLeak => "repeats the rewriting instructions",
            Rejected::TooShort => "too short",
            Rejected::Duplicate => "duplicate of another variant",
        }
    }
}

/// Lines that introduce the prompt rather than being part of it, compared lowercased
/// without trailing `:`.
const PREAMBLES: [&str; 10] = [
    "new prompt",
    "rewritten prompt",
    "the new prompt",
    "the rewritten prompt",
    "here is the new prompt",
    "here is the rewritten prompt",
    "here's the new prompt",
    "here's the rewritten prompt",
    "sure, here is the new prompt",
    "prompt",
];

/// Marks of the meta-prompt that a good rewrite never contains.
const LEAKS: [&str; 4] = ["<prompt>", "</prompt>", "rewrite it into", "reply with the new prompt"];

fn normalise(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

fn strip_quotes(s: &str) -> &str {
    let pairs = [("\"", "\""), ("'", "'"), ("“", "”"), ("«", "»"), ("```", "```"), ("`", "`")];
    let mut s = s.trim();
    loop {
        let before = s;
        for (open, close) in pairs {
            if s.len() >= open.len() + close.len() && s.starts_with(open) && s.ends_with(close) {
                s = s[open.len()..s.len() - close.len()].trim();
            }
        }
        if s == before {
            return s;
        }
    }
}

/// Whether `line` only introduces the prompt: "New prompt:", "**Rewritten prompt**", ...
fn is_preamble(line: &str) -> bool {
    let l = line.trim().trim_matches(|c: char| c == '*' || c == '#' || c == '_').trim();
    let l = l.strip_suffix(':').unwrap_or(l).trim().to_lowercase();
    PREAMBLES.contains(&l.as_str())
}

/// The prompt in a rewriter's `output`, or why there is none. `original` is the prompt
/// that was rewritten.
pub fn clean(output: &str, original: &str) -> Result<String, Rejected> {
    let mut text = output.trim();
    // A label on its own first line, or as a prefix of the first line.
    if let Some((first, rest)) = text.split_once('\n')
        && is_preamble(first)
    {
        text = rest.trim();
    }
    if let Some((label, rest)) = text.split_once(':')
        && !label.contains('\n')
        && is_preamble(label)
    {
        text = rest.trim();
    }
    let text = strip_quotes(text);
    if text.is_empty() {
        return Err(Rejected::Empty);
    }
    let lower = text.to_lowercase();
    if LEAKS.iter().any(|leak| lower.contains(leak)) {
        return Err(Rejected::TemplateLeak);
    }
    if normalise(text) == normalise(original) {
        return Err(Rejected::Echo);
    }
    if text.chars().filter(|c| c.is_alphanumeric()).count() < 8 {
        return Err(Rejected::TooShort);
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &str = "Explain how a hash map works.";

    #[test]
    fn strips_preambles_labels_and_quotes() {
        let cases = [
            "New prompt: Explain how Rust's HashMap resolves collisions.",
            "Here is the rewritten prompt:\n\"Explain how Rust's HashMap resolves collisions.\"",
            "**New Prompt**\n`Explain how Rust's HashMap resolves collisions.`",
            "  “Explain how Rust's HashMap resolves collisions.”  ",
        ];
        for case in cases {
            assert_eq!(clean(case, ORIGINAL).unwrap(), "Explain how Rust's HashMap resolves collisions.", "{case:?}");
        }
    }

    #[test]
    fn keeps_multi_line_prompts() {
        let text = "I run a bakery.\nHow should I price a new sourdough loaf?";
        assert_eq!(clean(text, ORIGINAL).unwrap(), text);
    }

    #[test]
    fn rejects_empty_echoed_leaking_and_tiny_outputs() {
        assert_eq!(clean("  \"\" ", ORIGINAL), Err(Rejected::Empty));
        assert_eq!(clean("New prompt:", ORIGINAL), Err(Rejected::Empty));
        assert_eq!(clean("explain how a  hash map works.", ORIGINAL), Err(Rejected::Echo));
        assert_eq!(clean("<prompt>\nWhat is a tree?\n</prompt>", ORIGINAL), Err(Rejected::TemplateLeak));
        assert_eq!(clean("Why?", ORIGINAL), Err(Rejected::TooShort));
    }
}
