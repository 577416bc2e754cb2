//! The verifiable prompt sets under `examples/verifiable/` (written by the
//! `verifiable_prompts` example): well-formed rows, prompts that end with their
//! constraints' descriptions, no contradictory set, and held-out prompts that differ from
//! the seeds in request and in combination of kinds.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use eva_constraints::{Constraint, conflict, describe};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    id: String,
    prompt: String,
    labels: Labels,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Labels {
    constraints: Vec<Constraint>,
}

fn read(name: &str) -> Vec<Row> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/verifiable").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(i, line)| serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}:{}: {e}", i + 1)))
        .collect()
}

/// The request: the prompt without its constraints' descriptions, which must end it.
fn request(row: &Row) -> &str {
    let described: Vec<String> = row.labels.constraints.iter().map(describe).collect();
    let tail = format!(" {}", described.join(" "));
    row.prompt.strip_suffix(&tail).unwrap_or_else(|| panic!("{}: the prompt does not end with {tail:?}", row.id))
}

fn kinds(row: &Row) -> BTreeSet<&'static str> {
    row.labels.constraints.iter().map(Constraint::kind).collect()
}

#[track_caller]
fn check_rows(rows: &[Row], prefix: &str, constraints: std::ops::RangeInclusive<usize>) {
    let mut ids = HashSet::new();
    for row in rows {
        assert!(
            row.id.starts_with(prefix) && ids.insert(&row.id),
            "{}: ids are unique and start with {prefix}",
            row.id
        );
        assert!(constraints.contains(&row.labels.constraints.len()), "{}: {constraints:?} constraints", row.id);
        let cs = &row.labels.constraints;
        for (i, c) in cs.iter().enumerate() {
            assert_eq!(conflict(&cs[..i], c), None, "{}", row.id);
        }
        let request = request(row);
        assert!(request.ends_with(['.', '?']) && request.len() < 80, "{}: a short request, not {request:?}", row.id);
    }
}

#[test]
fn seed_prompts() {
    let seeds = read("seed-prompts.jsonl");
    assert_eq!(seeds.len(), 40);
    check_rows(&seeds, "v", 1..=2);
}

#[test]
fn heldout_prompts_are_new() {
    let (seeds, heldout) = (read("seed-prompts.jsonl"), read("heldout-prompts.jsonl"));
    assert_eq!(heldout.len(), 30);
    check_rows(&heldout, "h", 2..=3);
    let seed_requests: HashSet<&str> = seeds.iter().map(request).collect();
    let seed_kinds: HashSet<BTreeSet<&str>> = seeds.iter().map(kinds).collect();
    for row in &heldout {
        assert!(!seed_requests.contains(request(row)), "{}: the request is a seed's", row.id);
        assert!(!seed_kinds.contains(&kinds(row)), "{}: the seeds already combine {:?}", row.id, kinds(row));
    }
}
