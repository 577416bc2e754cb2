//! `eva-host plugin test`: many calls of one plugin, each compared with its expected
//! output, for a plugin's own CI. A case is one JSON line:
//!
//! ```json
//! {"name": "gap", "input": {...}, "expect": {...}, "tolerance": 1e-9,
//!  "config": {"metric": "gap"}, "seed": 0, "generate_replies": ["..."]}
//! {"name": "no rewards", "input": {...}, "expect_error": "has no rewards"}
//! ```
//!
//! `expect` must equal the output (`plugin call` prints it): the same keys and list
//! lengths, strings and booleans exactly, numbers within `tolerance` (absolute, default
//! 1e-9). `expect_error` instead passes when the call fails with a message containing it.
//! `config` keys are the plugin's own (added to `--plugin-config`), `seed` seeds its
//! random stream (default 0) and `generate_replies` answers an evolver's `generate`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use eva_plugin_runtime::Generator;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::plugin_args::PluginArgs;
use crate::plugin_io::{CannedReplies, call};
use crate::plugin_source::{PluginLoader, PluginSource};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    input: Value,
    #[serde(default)]
    expect: Option<Value>,
    #[serde(default)]
    expect_error: Option<String>,
    #[serde(default)]
    tolerance: Option<f64>,
    #[serde(default)]
    config: Map<String, Value>,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    generate_replies: Option<Vec<String>>,
}

const DEFAULT_TOLERANCE: f64 = 1e-9;

/// Run every case of `cases` on the plugin at `source`; prints a line per case and an
/// error when any fails.
pub fn run(source: &PluginSource, cases: &Path, args: &PluginArgs) -> Result<()> {
    let text = std::fs::read_to_string(cases).with_context(|| format!("reading {}", cases.display()))?;
    let mut parsed = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let case: Case = serde_json::from_str(line).with_context(|| format!("{}:{}", cases.display(), i + 1))?;
        if case.expect.is_some() == case.expect_error.is_some() {
            bail!("{}:{}: give `expect` or `expect_error`, not both or neither", cases.display(), i + 1);
        }
        parsed.push((i + 1, case));
    }
    if parsed.is_empty() {
        bail!("{} holds no case", cases.display());
    }
    // The plugin's name, for its per-case settings.
    let name = PluginLoader::from_args(args)?.load(source, false)?.name().to_owned();
    let mut failed = Vec::new();
    for (line, case) in &parsed {
        match run_case(source, &name, case, args) {
            Ok(()) => println!("ok    {}", case.name),
            Err(why) => {
                println!("FAIL  {} ({}:{line}): {why}", case.name, cases.display());
                failed.push(case.name.clone());
            }
        }
    }
    println!("{} passed, {} failed", parsed.len() - failed.len(), failed.len());
    if !failed.is_empty() {
        bail!("{} of {} cases failed: {}", failed.len(), parsed.len(), failed.join(", "));
    }
    Ok(())
}

fn run_case(source: &PluginSource, name: &str, case: &Case, args: &PluginArgs) -> Result<(), String> {
    let mut args = args.clone();
    for (key, value) in &case.config {
        let value = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        args.config.push(format!("{name}.{key}={value}"));
    }
    let replies = case.generate_replies.clone();
    let outcome = (|| -> Result<Value> {
        let loader = PluginLoader::from_args(&args)?;
        let mut plugin = loader.load(source, false)?;
        plugin.reseed(case.seed);
        call(
            plugin,
            &case.input,
            Box::new(|| match replies {
                Some(r) => Ok(Arc::new(CannedReplies::new(r, "the case's generate_replies")) as Arc<dyn Generator>),
                None => bail!("the plugin calls `generate` but the case gives no `generate_replies`"),
            }),
        )
    })();
    match (outcome, &case.expect_error) {
        (Ok(out), None) => {
            let expect = case.expect.as_ref().expect("a case without expect_error has expect (checked when read)");
            compare(expect, &out, case.tolerance.unwrap_or(DEFAULT_TOLERANCE), "output")
        }
        (Ok(out), Some(wanted)) => Err(format!("expected an error containing {wanted:?}, got {out}")),
        (Err(e), Some(wanted)) if format!("{e:#}").contains(wanted.as_str()) => Ok(()),
        (Err(e), _) => Err(format!("{e:#}")),
    }
}

/// Whether `actual` matches `expected`; the error names the first difference's path.
pub fn compare(expected: &Value, actual: &Value, tolerance: f64, at: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::Number(e), Value::Number(a)) => {
            let (e, a) = (e.as_f64().unwrap_or(f64::NAN), a.as_f64().unwrap_or(f64::NAN));
            if (e - a).abs() <= tolerance { Ok(()) } else { Err(format!("{at}: expected {e}, got {a}")) }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Err(format!("{at}: expected {} items, got {}: {actual}", e.len(), a.len()));
            }
            e.iter().zip(a).enumerate().try_for_each(|(i, (e, a))| compare(e, a, tolerance, &format!("{at}[{i}]")))
        }
        (Value::Object(e), Value::Object(a)) => {
            if let Some(k) = e.keys().find(|k| !a.contains_key(*k)).or_else(|| a.keys().find(|k| !e.contains_key(*k))) {
                return Err(format!("{at}: the key `{k}` is in only one of expected and actual ({actual})"));
            }
            e.iter().try_for_each(|(k, v)| compare(v, &a[k], tolerance, &format!("{at}.{k}")))
        }
        (e, a) if e == a => Ok(()),
        (e, a) => Err(format!("{at}: expected {e}, got {a}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_match_within_the_tolerance_and_differences_are_located() {
        let expected = json!({"scores": [0.5, 1.0]});
        assert_eq!(compare(&expected, &json!({"scores": [0.5000000001, 1]}), 1e-9, "output"), Ok(()));
        assert_eq!(
            compare(&expected, &json!({"scores": [0.5, 0.9]}), 1e-9, "output").unwrap_err(),
            "output.scores[1]: expected 1, got 0.9"
        );
        assert!(
            compare(&expected, &json!({"scores": [0.5]}), 1e-9, "output").unwrap_err().contains("expected 2 items")
        );
        assert!(compare(&json!({"a": 1}), &json!({"b": 1}), 0.0, "output").unwrap_err().contains("`a`"));
        assert!(compare(&json!("x"), &json!("y"), 1.0, "output").is_err());
    }
}
