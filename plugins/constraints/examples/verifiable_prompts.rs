//! Writes the verifiable prompt sets `examples/verifiable/seed-prompts.jsonl` (40 prompts
//! over 30 everyday topics, 1-2 constraints each) and `heldout-prompts.jsonl` (30 prompts
//! on other topics, 2-3 constraints each, in kind combinations the seeds do not use).
//! Each prompt is a short request followed by the constraints' `describe` sentences; the
//! labels hold the constraints. `tests/verifiable_prompts.rs` checks the files.
//!
//! `cargo run -p eva-constraints --example verifiable_prompts`

use std::path::Path;

use eva_constraints::{Constraint, conflict, describe};
use serde::Serialize;

/// (request, constraints as JSON).
const SEEDS: [(&str, &str); 40] = [
    ("Explain how to cook rice on the stove.", r#"[{"kind": "numbered_list", "n": 4}]"#),
    ("Suggest a quick breakfast for a busy morning.", r#"[{"kind": "max_words", "n": 50}]"#),
    ("Give tips for packing a small suitcase.", r#"[{"kind": "bullet_list", "n": 3}]"#),
    ("Describe a weekend trip to the mountains.", r#"[{"kind": "title"}, {"kind": "max_words", "n": 100}]"#),
    ("Explain how to make a monthly budget.", r#"[{"kind": "include_keywords", "keywords": ["income", "savings"]}]"#),
    ("Give advice on saving money on groceries.", r#"[{"kind": "bullet_list", "n": 4}, {"kind": "no_commas"}]"#),
    ("Explain how to care for a new puppy.", r#"[{"kind": "min_sentences", "n": 4}]"#),
    ("Describe why cats like to sleep in boxes.", r#"[{"kind": "lowercase"}]"#),
    ("Give tips for keeping a balcony garden.", r#"[{"kind": "bullet_list", "n": 3}, {"kind": "max_words", "n": 60}]"#),
    ("Explain when to water tomato plants.", r#"[{"kind": "max_sentences", "n": 3}]"#),
    ("Suggest a short morning stretching routine.", r#"[{"kind": "numbered_list", "n": 5}]"#),
    ("Explain why walking every day is healthy.", r#"[{"kind": "exclude_keywords", "keywords": ["very"]}]"#),
    ("Tell the story of how Rome was founded.", r#"[{"kind": "paragraphs", "n": 2}]"#),
    (
        "Describe the history of Paris.",
        r#"[{"kind": "max_sentences", "n": 5}, {"kind": "include_keywords", "keywords": ["river"]}]"#,
    ),
    ("Write a product description for a reusable water bottle.", r#"[{"kind": "title"}]"#),
    (
        "Write a short description of a wireless mouse.",
        r#"[{"kind": "max_words", "n": 40}, {"kind": "ends_with", "phrase": "Order yours today."}]"#,
    ),
    ("Write an email to a coworker asking to move a meeting.", r#"[{"kind": "min_placeholders", "n": 2}]"#),
    ("Write a thank-you email to a teacher.", r#"[{"kind": "starts_with", "phrase": "Dear"}]"#),
    ("Give advice for falling asleep faster.", r#"[{"kind": "bullet_list", "n": 3}]"#),
    ("Explain how to prepare for an exam.", r#"[{"kind": "numbered_list", "n": 3}, {"kind": "max_words", "n": 80}]"#),
    ("Give tips for cleaning a kitchen quickly.", r#"[{"kind": "uppercase"}, {"kind": "max_words", "n": 50}]"#),
    ("Explain how to make a good cup of coffee.", r#"[{"kind": "ends_with", "phrase": "Enjoy your coffee!"}]"#),
    ("Suggest ways to read more books each year.", r#"[{"kind": "min_sentences", "n": 3}]"#),
    ("Describe what causes rain.", r#"[{"kind": "max_sentences", "n": 4}]"#),
    ("List what to bring on a camping trip.", r#"[{"kind": "bullet_list", "n": 5}]"#),
    ("Explain how to bake simple bread at home.", r#"[{"kind": "sections", "n": 2}]"#),
    ("Explain why recycling matters.", r#"[{"kind": "keyword_frequency", "keyword": "recycle", "n": 2}]"#),
    ("Give advice for a first job interview.", r#"[{"kind": "bullet_list", "n": 4}, {"kind": "title"}]"#),
    (
        "Plan a simple birthday party for a child.",
        r#"[{"kind": "numbered_list", "n": 4}, {"kind": "include_keywords", "keywords": ["cake"]}]"#,
    ),
    ("Explain how to fix a flat bicycle tire.", r#"[{"kind": "numbered_list", "n": 5}]"#),
    ("Give tips for learning a new language.", r#"[{"kind": "lowercase"}, {"kind": "bullet_list", "n": 3}]"#),
    ("Explain how much light houseplants need.", r#"[{"kind": "max_words", "n": 60}]"#),
    (
        "Give a checklist for moving to a new home.",
        r#"[{"kind": "bullet_list", "n": 5}, {"kind": "exclude_keywords", "keywords": ["stuff"]}]"#,
    ),
    ("Give three tips for planning a productive day.", r#"[{"kind": "json"}]"#),
    ("Suggest one fun thing to do on a rainy day.", r#"[{"kind": "quoted"}, {"kind": "max_words", "n": 40}]"#),
    ("Explain what to do for a small burn.", r#"[{"kind": "numbered_list", "n": 3}, {"kind": "no_commas"}]"#),
    ("Give tips for taking better photos with a phone.", r#"[{"kind": "bullet_list", "n": 4}]"#),
    ("Describe a good board game for a family night.", r#"[{"kind": "title"}, {"kind": "paragraphs", "n": 2}]"#),
    (
        "Explain how to practice piano every day.",
        r#"[{"kind": "min_sentences", "n": 3}, {"kind": "exclude_keywords", "keywords": ["really"]}]"#,
    ),
    (
        "Write a short email inviting friends to dinner.",
        r#"[{"kind": "min_placeholders", "n": 1}, {"kind": "max_words", "n": 80}]"#,
    ),
];

const HELDOUT: [(&str, &str); 30] = [
    (
        "Explain why people enjoy volunteering.",
        r#"[{"kind": "max_words", "n": 60}, {"kind": "include_keywords", "keywords": ["community"]}, {"kind": "no_commas"}]"#,
    ),
    ("Write about tides.", r#"[{"kind": "max_words", "n": 50}, {"kind": "no_commas"}]"#),
    (
        "Give tips for keeping a car in good shape.",
        r#"[{"kind": "bullet_list", "n": 4}, {"kind": "lowercase"}, {"kind": "max_words", "n": 80}]"#,
    ),
    ("Explain how to start knitting a scarf.", r#"[{"kind": "numbered_list", "n": 4}, {"kind": "title"}]"#),
    (
        "Describe a visit to an art museum.",
        r#"[{"kind": "paragraphs", "n": 2}, {"kind": "max_words", "n": 120}, {"kind": "exclude_keywords", "keywords": ["amazing"]}]"#,
    ),
    (
        "Explain why bees are important.",
        r#"[{"kind": "min_sentences", "n": 3}, {"kind": "include_keywords", "keywords": ["flowers"]}, {"kind": "ends_with", "phrase": "Thank you for reading."}]"#,
    ),
    (
        "Explain how to brew green tea.",
        r#"[{"kind": "numbered_list", "n": 3}, {"kind": "ends_with", "phrase": "Enjoy your tea!"}]"#,
    ),
    (
        "Give advice for speaking in front of a crowd.",
        r#"[{"kind": "bullet_list", "n": 3}, {"kind": "exclude_keywords", "keywords": ["nervous"]}, {"kind": "max_words", "n": 70}]"#,
    ),
    (
        "Plan a picnic in the park.",
        r#"[{"kind": "sections", "n": 2}, {"kind": "include_keywords", "keywords": ["sandwiches"]}]"#,
    ),
    (
        "Explain how to start a compost bin.",
        r#"[{"kind": "numbered_list", "n": 4}, {"kind": "max_words", "n": 80}, {"kind": "lowercase"}]"#,
    ),
    ("Give safety tips for driving in snow.", r#"[{"kind": "bullet_list", "n": 3}, {"kind": "uppercase"}]"#),
    ("Describe what you can do at a public library.", r#"[{"kind": "title"}, {"kind": "min_sentences", "n": 3}]"#),
    ("Give tips to make a phone battery last longer.", r#"[{"kind": "json"}, {"kind": "max_words", "n": 80}]"#),
    (
        "Write a short wedding toast for a friend.",
        r#"[{"kind": "max_sentences", "n": 5}, {"kind": "min_placeholders", "n": 2}]"#,
    ),
    (
        "Explain how to catch your first fish.",
        r#"[{"kind": "starts_with", "phrase": "First"}, {"kind": "max_words", "n": 80}]"#,
    ),
    (
        "Describe how a volcano erupts.",
        r#"[{"kind": "max_sentences", "n": 4}, {"kind": "keyword_frequency", "keyword": "lava", "n": 2}]"#,
    ),
    (
        "Explain how to keep your teeth healthy.",
        r#"[{"kind": "bullet_list", "n": 3}, {"kind": "include_keywords", "keywords": ["floss"]}]"#,
    ),
    (
        "Explain how to paint a bedroom wall.",
        r#"[{"kind": "numbered_list", "n": 5}, {"kind": "exclude_keywords", "keywords": ["just"]}]"#,
    ),
    (
        "Explain the basic rules of chess.",
        r#"[{"kind": "paragraphs", "n": 3}, {"kind": "starts_with", "phrase": "Chess is"}]"#,
    ),
    (
        "Describe the planets of the solar system.",
        r#"[{"kind": "lowercase"}, {"kind": "max_words", "n": 100}, {"kind": "include_keywords", "keywords": ["sun"]}]"#,
    ),
    ("Explain why dinosaurs disappeared.", r#"[{"kind": "min_sentences", "n": 3}, {"kind": "no_commas"}]"#),
    (
        "Give tips for bird watching in a park.",
        r#"[{"kind": "bullet_list", "n": 3}, {"kind": "ends_with", "phrase": "Happy birding!"}]"#,
    ),
    ("Suggest ways to save energy at home.", r#"[{"kind": "numbered_list", "n": 4}, {"kind": "min_words", "n": 40}]"#),
    ("Explain how to fly a kite.", r#"[{"kind": "quoted"}, {"kind": "max_sentences", "n": 3}]"#),
    ("Explain how to start meditating.", r#"[{"kind": "sections", "n": 2}, {"kind": "max_words", "n": 100}]"#),
    (
        "Describe a visit to a farmers market.",
        r#"[{"kind": "paragraphs", "n": 2}, {"kind": "include_keywords", "keywords": ["fresh"]}, {"kind": "no_commas"}]"#,
    ),
    (
        "Explain how to fold a paper boat.",
        r#"[{"kind": "numbered_list", "n": 5}, {"kind": "no_commas"}, {"kind": "max_words", "n": 80}]"#,
    ),
    ("Describe the job of a lighthouse keeper.", r#"[{"kind": "title"}, {"kind": "lowercase"}]"#),
    ("Explain how to build a snowman.", r#"[{"kind": "json"}, {"kind": "include_keywords", "keywords": ["carrot"]}]"#),
    (
        "Explain why the moon changes shape.",
        r#"[{"kind": "max_words", "n": 60}, {"kind": "title"}, {"kind": "keyword_frequency", "keyword": "moon", "n": 2}]"#,
    ),
];

#[derive(Serialize)]
struct Row {
    id: String,
    prompt: String,
    labels: Labels,
}

#[derive(Serialize)]
struct Labels {
    constraints: Vec<Constraint>,
}

fn rows(prefix: &str, specs: &[(&str, &str)]) -> Vec<Row> {
    specs
        .iter()
        .enumerate()
        .map(|(i, (request, constraints))| {
            let constraints: Vec<Constraint> =
                serde_json::from_str(constraints).unwrap_or_else(|e| panic!("constraints of {request:?}: {e}"));
            for (j, c) in constraints.iter().enumerate() {
                if let Some(why) = conflict(&constraints[..j], c) {
                    panic!("{request:?}: {why}");
                }
            }
            let prompt =
                std::iter::once(request.to_string()).chain(constraints.iter().map(describe)).collect::<Vec<_>>();
            Row { id: format!("{prefix}{:02}", i + 1), prompt: prompt.join(" "), labels: Labels { constraints } }
        })
        .collect()
}

fn write(path: &Path, rows: &[Row]) {
    let lines: String = rows.iter().map(|r| serde_json::to_string(r).expect("rows serialise") + "\n").collect();
    std::fs::write(path, lines).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    println!("wrote {} prompts to {}", rows.len(), path.display());
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/verifiable");
    std::fs::create_dir_all(&dir).expect("the examples folder is writable");
    write(&dir.join("seed-prompts.jsonl"), &rows("v", &SEEDS));
    write(&dir.join("heldout-prompts.jsonl"), &rows("h", &HELDOUT));
}
