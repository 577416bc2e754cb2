use super::*;

fn prompt(id: &str, text: &str, labels: Option<&str>) -> Prompt {
    Prompt {
        id: id.into(),
        messages: vec![Message { role: "user".into(), content: text.into() }],
        labels: labels.map(str::to_owned),
    }
}

fn evolver(breadth: Breadth) -> ConstraintEvolver {
    ConstraintEvolver { variants: 3, max_constraints: 4, breadth }
}

const LABELS: &str = r#"{"constraints": [{"kind": "max_words", "n": 50}], "source": "seed"}"#;

#[test]
fn the_request_is_the_text_before_the_constraints_sentences() {
    let cs: Vec<Constraint> =
        serde_json::from_str(r#"[{"kind": "max_words", "n": 50}, {"kind": "no_commas"}]"#).unwrap();
    let text = compose("Suggest a quick breakfast.", &cs);
    assert_eq!(text, "Suggest a quick breakfast. Answer in at most 50 words. Do not use any commas.");
    assert_eq!(request_of(&text, &cs).as_deref(), Some("Suggest a quick breakfast."));
    assert_eq!(request_of("Suggest a quick breakfast, briefly.", &cs), None, "hand-written: no split");
    assert_eq!(request_of("Plain request.", &[]).as_deref(), Some("Plain request."));
}

#[test]
fn every_variant_is_consistent_and_labelled_with_the_parent_labels_kept() {
    let p = prompt("v02", "Suggest a quick breakfast for a busy morning. Answer in at most 50 words.", Some(LABELS));
    let parsed = [parse(&p).unwrap()];
    for seed in 0..200 {
        let variants = evolver(Breadth::Topics).plan(&parsed, &mut Rng::new(seed));
        assert_eq!(variants.len(), 3, "seed {seed}: a method always applies");
        for v in &variants {
            let Draft::Text(text) = &v.draft else { panic!("topics give texts") };
            // The text is the request and exactly the variant's constraints.
            let request = request_of(text, &v.constraints).unwrap_or_else(|| panic!("seed {seed}: {text}"));
            match v.method {
                "in-depth/add-constraint" => {
                    assert_eq!(v.constraints.len(), 2);
                    assert_eq!(request, "Suggest a quick breakfast for a busy morning.");
                }
                "in-depth/tighten" => {
                    assert_eq!(v.constraints.len(), 1);
                    assert_ne!(v.constraints, parsed[0].constraints, "tightened");
                }
                "in-breadth/new-topic" => {
                    assert_eq!(v.constraints, parsed[0].constraints);
                    assert!(TOPICS.contains(&request.as_str()), "{request}");
                }
                other => panic!("{other}"),
            }
            for (i, c) in v.constraints.iter().enumerate() {
                let others: Vec<Constraint> =
                    v.constraints.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, c)| c.clone()).collect();
                assert_eq!(conflict(&others, c), None, "seed {seed}: {:?}", v.constraints);
            }
        }
        assert_eq!(evolver(Breadth::Topics).plan(&parsed, &mut Rng::new(seed)), variants, "deterministic");
    }
}

#[test]
fn constraints_never_contradict_along_chains_of_evolution() {
    // Evolve one prompt ten generations deep, 300 times over: every set stays consistent
    // and within `max-constraints`.
    let e = ConstraintEvolver { variants: 1, max_constraints: 4, breadth: Breadth::Off };
    for seed in 0..300 {
        let mut rng = Rng::new(seed);
        let mut p = prompt("p", "Describe a day at the beach.", None);
        for _ in 0..10 {
            let parsed = [parse(&p).unwrap()];
            let Some(v) = e.plan(&parsed, &mut rng).pop() else { break };
            assert!(v.constraints.len() <= 4);
            for (i, c) in v.constraints.iter().enumerate() {
                assert_eq!(conflict(&v.constraints[..i], c), None, "seed {seed}: {:?}", v.constraints);
            }
            let Draft::Text(text) = v.draft else { unreachable!() };
            let labels = serde_json::json!({ "constraints": v.constraints }).to_string();
            p = prompt("p", &text, Some(&labels));
        }
    }
}

#[test]
fn a_hand_written_prompt_gains_constraints_but_is_not_tightened() {
    let p = prompt("h", "Tell me, in your own words, why the sky is blue.", None);
    let parsed = [parse(&p).unwrap()];
    assert_eq!(parsed[0].request.as_deref(), Some("Tell me, in your own words, why the sky is blue."));
    let labelled = prompt("h", "Why is the sky blue? Keep it short please.", Some(LABELS));
    let parsed = [parse(&labelled).unwrap()];
    assert_eq!(parsed[0].request, None);
    let e = ConstraintEvolver { variants: 1, max_constraints: 4, breadth: Breadth::Off };
    for seed in 0..50 {
        let v = e.plan(&parsed, &mut Rng::new(seed)).pop().unwrap();
        assert_eq!(v.method, "in-depth/add-constraint");
        let Draft::Text(text) = v.draft else { unreachable!() };
        assert!(text.starts_with("Why is the sky blue? Keep it short please. "), "{text}");
    }
}

#[test]
fn full_prompts_are_not_given_more_constraints() {
    let full = r#"{"constraints": [{"kind": "no_commas"}, {"kind": "title"}]}"#;
    let p = prompt("f", &compose("Describe a day at the beach.", &from_labels(full).unwrap().1), Some(full));
    let e = ConstraintEvolver { variants: 4, max_constraints: 2, breadth: Breadth::Off };
    let variants = e.plan(&[parse(&p).unwrap()], &mut Rng::new(1));
    assert!(variants.iter().all(|v| v.method == "in-depth/tighten" && v.constraints.len() == 2), "{variants:?}");
}

#[test]
fn generated_requests_are_cleaned_or_refused() {
    let old = "Describe a day at the beach.";
    assert_eq!(
        clean_request("New request: \"Explain how to fold a shirt\"\nSure!", old).as_deref(),
        Some("Explain how to fold a shirt.")
    );
    assert_eq!(
        clean_request("\n\nGive tips for a rainy picnic?", old).as_deref(),
        Some("Give tips for a rainy picnic?")
    );
    assert_eq!(clean_request("Okay.", old), None, "too short");
    assert_eq!(clean_request(old, old), None, "an echo");
    assert_eq!(clean_request(&"word ".repeat(60), old), None, "too long");
}

#[test]
fn malformed_labels_are_refused_naming_the_constraint() {
    let p = prompt("m", "x", Some(r#"{"constraints": [{"kind": "max_words"}]}"#));
    let err = parse(&p).err().unwrap();
    assert!(err.starts_with("constraint 0 ("), "{err}");
}

#[test]
fn no_listed_topic_is_a_held_out_topic() {
    let heldout = include_str!("../../../examples/verifiable/heldout-prompts.jsonl");
    for line in heldout.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let text = row["prompt"].as_str().unwrap();
        for topic in TOPICS {
            let request = topic.trim_end_matches('.');
            assert!(!text.contains(request), "{topic} is held out: {text}");
        }
    }
}
