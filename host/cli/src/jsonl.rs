//! JSONL input files (seed and held-out prompts, rows to score): one JSON object per line,
//! errors naming file and line.

use std::path::Path;

use anyhow::{Context, Result, bail};
use eva_engine::Message;
use eva_loop::layout::{Labels, PromptRecord};
use serde_json::{Map, Value};

/// One object of a JSONL file and its line number (1-based).
pub struct Row {
    pub line: usize,
    pub fields: Map<String, Value>,
}

/// Every non-blank line of `path` as a JSON object.
pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(Value::Object(fields)) => rows.push(Row { line: i + 1, fields }),
            Ok(_) => bail!("{}:{}: not a JSON object", path.display(), i + 1),
            Err(e) => bail!("{}:{}: not valid JSON: {e}", path.display(), i + 1),
        }
    }
    if rows.is_empty() {
        bail!("{}: no rows", path.display());
    }
    Ok(rows)
}

/// A row's prompt: `prompt` (a string: one user message) or `messages` (a list of
/// `{"role", "content"}` ending with a user message).
pub fn prompt_messages(fields: &Map<String, Value>) -> Result<Vec<Message>, String> {
    let messages = match (fields.get("prompt"), fields.get("messages")) {
        (Some(Value::String(p)), None) => vec![Message::new("user", p.as_str())],
        (Some(_), None) => return Err("`prompt` must be a string".into()),
        (None, Some(m)) => serde_json::from_value::<Vec<Message>>(m.clone())
            .map_err(|e| format!("`messages` must be a list of {{\"role\", \"content\"}}: {e}"))?,
        (Some(_), Some(_)) => return Err("has both `prompt` and `messages`; give one".into()),
        (None, None) => return Err("has neither `prompt` nor `messages`".into()),
    };
    if let Some(m) = messages.iter().find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant")) {
        return Err(format!("unknown message role `{}`", m.role));
    }
    match messages.last() {
        None => Err("`messages` is empty".into()),
        Some(m) if m.role != "user" => Err(format!("the last message is from `{}`, not the user", m.role)),
        Some(m) if !eva_plugin_runtime::validate::has_visible(&m.content) => {
            Err("the prompt has no visible character (only white space, control or zero-width characters)".into())
        }
        Some(_) => Ok(messages),
    }
}

/// A row's labels: the object under `labels`, with every other key of the row besides
/// `id`, `prompt` and `messages` (a ground-truth `answer`, say) added to it; none when
/// the row has no such key.
pub fn labels(fields: &Map<String, Value>) -> Result<Option<Labels>, String> {
    let mut labels = match fields.get("labels") {
        None => Labels::new(),
        Some(Value::Object(l)) => l.clone(),
        Some(_) => return Err("`labels` must be a JSON object".into()),
    };
    for (key, value) in fields {
        if matches!(key.as_str(), "id" | "prompt" | "messages" | "labels") {
            continue;
        }
        if labels.insert(key.clone(), value.clone()).is_some() {
            return Err(format!("`{key}` is both a key of the row and of its `labels`"));
        }
    }
    Ok((!labels.is_empty()).then_some(labels))
}

/// The prompts of a JSONL file (`prompt` or `messages`, optional unique `id`, default
/// `seed-LINE`, and [`labels`]), every line checked; errors name `FILE:LINE`.
pub fn read_prompts(path: &Path) -> Result<Vec<PromptRecord>> {
    let rows = read_rows(path)?;
    let mut seen = std::collections::HashSet::new();
    rows.iter()
        .map(|row| {
            let at = format!("{}:{}", path.display(), row.line);
            let messages = prompt_messages(&row.fields).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            let id = match row.fields.get("id") {
                None => format!("seed-{}", row.line),
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                Some(_) => bail!("{at}: `id` must be a non-empty string or a number"),
            };
            if !seen.insert(id.clone()) {
                bail!("{at}: the id `{id}` is used twice");
            }
            let labels = labels(&row.fields).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            Ok(PromptRecord { id, messages, origin: "seed".into(), parent: None, method: None, labels })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_rows_other_keys_are_its_labels() {
        assert_eq!(labels(&fields(r#"{"id": 1, "prompt": "hi"}"#)).unwrap(), None);
        let both = labels(&fields(r#"{"prompt": "2+2?", "answer": "4", "labels": {"constraints": []}}"#)).unwrap();
        assert_eq!(serde_json::to_string(&both).unwrap(), r#"{"answer":"4","constraints":[]}"#);
        let err = labels(&fields(r#"{"prompt": "p", "answer": 1, "labels": {"answer": 2}}"#)).unwrap_err();
        assert_eq!(err, "`answer` is both a key of the row and of its `labels`");
        assert_eq!(labels(&fields(r#"{"prompt": "p", "labels": [1]}"#)).unwrap_err(), "`labels` must be a JSON object");
    }

    const INVISIBLE: &str = "the prompt has no visible character (only white space, control or zero-width characters)";

    #[test]
    fn prompts_are_strings_or_chats() {
        assert_eq!(prompt_messages(&fields(r#"{"prompt": "hi"}"#)).unwrap(), [Message::new("user", "hi")]);
        let chat = r#"{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}"#;
        assert_eq!(prompt_messages(&fields(chat)).unwrap().len(), 2);
        for (json, err) in [
            (r#"{"prompt": 3}"#, "`prompt` must be a string"),
            (r#"{"prompt": "  "}"#, INVISIBLE),
            (r#"{"prompt": "\u200b\u200d\ufeff\u0007"}"#, INVISIBLE),
            (r#"{"text": "hi"}"#, "has neither `prompt` nor `messages`"),
            (r#"{"messages": []}"#, "`messages` is empty"),
            (r#"{"messages": [{"role": "bot", "content": "x"}]}"#, "unknown message role `bot`"),
            (
                r#"{"messages": [{"role": "assistant", "content": "x"}]}"#,
                "the last message is from `assistant`, not the user",
            ),
        ] {
            assert_eq!(prompt_messages(&fields(json)).unwrap_err(), err, "{json}");
        }
    }
}
