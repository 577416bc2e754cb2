//! The first-party plugins, compiled to Wasm and called through the host runtime.

use std::sync::{Arc, Mutex};

use eva_plugin_runtime::{
    Error, Evolver, Exchange, GenerateRequest, Generator, InfoMetric, Pairing, PluginOptions, Preference,
    PromptResponses, ReportedError, RewardModel, Role, Sampler, ScoredResponse,
};
use eva_test_support::harness::*;

#[test]
fn regret_computes_every_metric_in_wasm() {
    let items = [rewards("a", &[0.2, 0.9, 0.4, 0.5]), rewards("b", &[1.0, 1.0])];
    let expected: [(&str, [f64; 2]); 7] = [
        ("gap", [0.7, 0.0]),
        ("max-mean", [0.4, 0.0]),
        ("variance", [0.065, 0.0]),
        ("mean", [0.5, 1.0]),
        ("inverse-mean", [0.5, 0.0]),
        ("best-minus-second", [0.4, 0.0]),
        ("uniform", [1.0, 1.0]),
    ];
    for (metric, want) in expected {
        let mut info = InfoMetric::new(load("eva-plugin-regret", with_config(&[("metric", metric)]))).unwrap();
        let got = info.score_batch(&items).unwrap();
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{metric}: got {got:?}, want {want:?}");
        }
        assert_eq!(info.score(&items[0]).unwrap(), got[0], "{metric}: single and batch agree");
    }
}

#[test]
fn regret_defaults_to_the_reward_gap_and_rejects_bad_config() {
    let mut info = InfoMetric::new(load("eva-plugin-regret", PluginOptions::default())).unwrap();
    assert!((info.score(&rewards("a", &[-1.0, 2.5])).unwrap() - 3.5).abs() < 1e-12);

    let path = eva_test_support::component("eva-plugin-regret");
    let err = engine().load(&path, with_config(&[("metric", "vibes")])).err().expect("unknown metric");
    assert!(
        matches!(&err, Error::Reported { plugin, call: "configure", error: ReportedError::InvalidConfig(m) }
            if plugin == "regret" && m.contains("unknown metric `vibes`")),
        "{err}"
    );
    let err = engine().load(&path, with_config(&[("metrc", "gap")])).err().expect("unknown key");
    assert_eq!(
        err.to_string(),
        "plugin `regret`: configuration error: unknown key `metrc` (known keys: metric, reward-min, reward-max)"
    );
}

#[test]
fn weighted_sampler_modes() {
    let scores: Vec<f64> = (0..40).map(|i| i as f64).collect();
    for mode in ["weighted", "greedy", "stratified"] {
        let mut sampler = Sampler::new(load("eva-plugin-weighted-sampler", with_config(&[("mode", mode)]))).unwrap();
        let picked = sampler.sample(&scores, 10).unwrap();
        assert_eq!(picked.len(), 10, "{mode}");
        if mode == "greedy" {
            assert_eq!(picked, (30..40).rev().collect::<Vec<_>>());
        }
        if mode == "weighted" {
            // Score 0 has weight 0 after min-max normalisation: never drawn while others remain.
            assert!(!picked.contains(&0), "{picked:?}");
        }
    }
}

#[test]
fn weighted_sampling_is_reproducible_per_seed() {
    let scores: Vec<f64> = (0..100).map(|i| (i % 7) as f64).collect();
    let draw = |seed| {
        let mut s = Sampler::new(load("eva-plugin-weighted-sampler", PluginOptions::default())).unwrap();
        s.plugin_mut().reseed(seed);
        s.sample(&scores, 25).unwrap()
    };
    assert_eq!(draw(1), draw(1));
    assert_ne!(draw(1), draw(2));
}

#[test]
fn weighted_sampling_favours_informative_prompts() {
    // 100 prompts score 1, 99 score 0.5 and one 0, so the weights are 1, 0.5 and 0: a
    // 25% draw should take about 2/3 of its prompts from the first 100, against about
    // half under uniform sampling.
    let scores: Vec<f64> = (0..200)
        .map(|i| {
            if i < 100 {
                1.0
            } else if i < 199 {
                0.5
            } else {
                0.0
            }
        })
        .collect();
    let mut s = Sampler::new(load("eva-plugin-weighted-sampler", PluginOptions::default())).unwrap();
    let picked = s.sample(&scores, 50).unwrap();
    let high = picked.iter().filter(|&&i| i < 100).count();
    assert!(high > 30, "only {high} of 50 draws from the informative half");
}

#[test]
fn max_min_pairing_in_wasm() {
    let item = |rewards: &[f64]| PromptResponses {
        prompt: prompt("p", "q"),
        responses: rewards.iter().map(|&r| ScoredResponse { text: format!("r{r}"), reward: r, tokens: 3 }).collect(),
    };
    let mut pairing = Pairing::new(load("eva-plugin-max-min-pairing", PluginOptions::default())).unwrap();
    let pairs = pairing.pair_batch(&[item(&[0.1, 0.8, 0.3]), item(&[0.5, 0.5]), item(&[0.9, 0.2, 0.9, 0.2])]).unwrap();
    assert_eq!(
        pairs,
        vec![vec![Preference { chosen: 1, rejected: 0 }], vec![], vec![Preference { chosen: 0, rejected: 3 }],]
    );
}

/// A generator that answers from a script and records what it was asked.
struct Scripted {
    asked: Mutex<Vec<GenerateRequest>>,
    answer: fn(usize, &GenerateRequest) -> String,
}

impl Generator for Scripted {
    fn complete(&self, requests: &[GenerateRequest]) -> Result<Vec<String>, String> {
        let mut asked = self.asked.lock().unwrap();
        let start = asked.len();
        asked.extend(requests.iter().cloned());
        Ok(requests.iter().enumerate().map(|(i, r)| (self.answer)(start + i, r)).collect())
    }
}

#[test]
fn evol_instruct_evolves_through_the_host_model_and_cleans_output() {
    let generator = Arc::new(Scripted {
        asked: Mutex::new(Vec::new()),
        answer: |i, _| match i {
            0 => "Explain quicksort.".into(), // an echo of prompt 0
            1 => "New prompt: \"Explain quicksort's worst case on sorted input, with an example.\"".into(),
            2 => String::new(), // empty
            _ => format!("Variant number {i} of a harder question about algorithms."),
        },
    });
    let options = with_config(&[("variants", "3")]);
    let mut evolver = Evolver::new(load("eva-plugin-evol-instruct", options)).unwrap();
    let prompts = [prompt("p0", "Explain quicksort."), prompt("p1", "Write a haiku about rain.")];
    let evolved = evolver.evolve(&prompts, generator.clone()).unwrap();

    let asked = generator.asked.lock().unwrap();
    assert_eq!(asked.len(), 6, "3 variants x 2 prompts in one batch");
    assert!(asked[0].messages.last().unwrap().content.contains("Explain quicksort."));
    assert!(asked[3].messages.last().unwrap().content.contains("Write a haiku about rain."));
    assert!(asked.iter().all(|r| (r.temperature - 0.88).abs() < 1e-6));

    // The echo and the empty answer are dropped; the labelled one is cleaned.
    assert_eq!(evolved.len(), 4);
    assert_eq!(evolved[0].parent, 0);
    assert_eq!(
        evolved[0].messages.last().unwrap().content,
        "Explain quicksort's worst case on sorted input, with an example."
    );
    assert_eq!(evolved.iter().filter(|e| e.parent == 1).count(), 3);
    assert!(evolved.iter().all(|e| e.method.starts_with("in-depth/") || e.method.starts_with("in-breadth/")));
}

#[test]
fn evolver_generate_budget_is_enforced() {
    let generator =
        Arc::new(Scripted { asked: Mutex::new(Vec::new()), answer: |i, _| format!("A fresh prompt {i} here.") });
    let mut options = with_config(&[("variants", "6")]);
    options.limits.generate_per_input = 4;
    let mut evolver = Evolver::new(load("eva-plugin-evol-instruct", options)).unwrap();
    let err = evolver.evolve(&[prompt("p", "Explain quicksort.")], generator.clone()).unwrap_err();
    assert!(err.to_string().contains("BudgetExhausted"), "{err}");
    assert!(generator.asked.lock().unwrap().is_empty(), "nothing generated past the budget");
}

#[test]
fn roles_are_detected_from_exports() {
    for (name, role) in [
        ("eva-plugin-regret", Role::InfoMetric),
        ("eva-plugin-weighted-sampler", Role::Sampler),
        ("eva-plugin-evol-instruct", Role::Evolver),
        ("eva-plugin-max-min-pairing", Role::Pairing),
        ("eva-plugin-rule-reward", Role::Reward),
    ] {
        assert_eq!(load(name, PluginOptions::default()).role(), role, "{name}");
    }
}

#[test]
fn rule_reward_in_wasm_and_behind_the_scorer() {
    let options = with_config(&[("max-words", "4"), ("required", "paris"), ("format", "one-line")]);
    let mut reward = RewardModel::new(load("eva-plugin-rule-reward", options)).unwrap();
    let ask = |answer: &str| Exchange { prompt: prompt("p", "Where is the Louvre?"), response: answer.into() };
    // length, keyword and format rules: all met; the keyword missing; eight words on two lines.
    let got =
        reward.rate_batch(&[ask("In Paris."), ask("In France."), ask("It is in Paris,\nFrance, a big city.")]).unwrap();
    assert_eq!(got, [1.0, 2.0 / 3.0, (4.0 / 8.0 + 1.0 + 0.0) / 3.0]);
    assert_eq!(reward.rate(&ask("In Paris.")).unwrap(), 1.0);

    // The host refuses an empty answer before the plugin sees it, naming the call.
    let err = reward.rate(&ask(" ")).unwrap_err();
    assert!(err.to_string().contains("answer 0 (prompt `p`) is empty"), "{err}");
    let err = engine()
        .load(&eva_test_support::component("eva-plugin-rule-reward"), with_config(&[("format", "haiku")]))
        .err()
        .unwrap();
    assert!(err.to_string().contains("format `haiku` is not one of"), "{err}");

    // Through eva-reward's scorer: each distinct answer crosses the boundary once.
    let plugin = RewardModel::new(load("eva-plugin-rule-reward", PluginOptions::default())).unwrap();
    let mut scorer = eva_reward::Scorer::new(Box::new(eva_reward::PluginReward::new(plugin)), 16);
    let item = |a: &str| eva_reward::RewardItem::new(vec![eva_engine::Message::new("user", "q")], a);
    let rewards = scorer.score(&[item("a b"), item("a b"), item("c")], &mut |_| {}).unwrap();
    assert_eq!((rewards, scorer.backend_calls()), (vec![1.0, 1.0, 1.0], 2));
}

#[test]
fn plugins_built_against_wit_0_1_0_still_load_and_run() {
    // A max-min-pairing component built by the 0.1.0 SDK, kept as bytes.
    let path = eva_test_support::workspace_root().join("tests/fixtures/compat/max-min-pairing-wit-0.1.0.wasm");
    let plugin = engine().load(&path, PluginOptions::default()).unwrap();
    assert!(plugin.imports().iter().any(|i| i == "eva:plugin/log@0.1.0"), "{:?}", plugin.imports());
    let mut pairing = Pairing::new(plugin).unwrap();
    let item = PromptResponses {
        prompt: prompt("p", "q"),
        responses: [0.2, 0.9, 0.1].iter().map(|&r| ScoredResponse { text: "a".into(), reward: r, tokens: 1 }).collect(),
    };
    assert_eq!(pairing.pair(&item).unwrap(), [Preference { chosen: 1, rejected: 2 }]);
}

/// A first-party plugin as built by the 0.1.1 SDK (kept as bytes in `tests/fixtures`),
/// and as built today.
fn old_and_new(name: &str) -> [eva_plugin_runtime::Plugin; 2] {
    let path = eva_test_support::workspace_root().join(format!("tests/fixtures/compat/wit-0.1.1/{name}.wasm"));
    let old = engine().load(&path, PluginOptions::default()).unwrap();
    assert_eq!((old.wit_version(), old.contract()), ("0.1.1", eva_plugin_runtime::Contract::V0_1));
    let new = load(&format!("eva-plugin-{name}"), PluginOptions::default());
    assert_eq!(new.contract(), eva_plugin_runtime::Contract::Current);
    [old, new]
}

#[test]
fn first_party_plugins_built_against_wit_0_1_1_behave_as_todays() {
    // Labelled inputs: the 0.1 adapter leaves the labels and the answer texts out.
    let labels = Some(r#"{"constraints":[{"kind":"no-commas"}]}"#.to_owned());
    let labelled = |id: &str, text: &str| eva_plugin_runtime::Prompt { labels: labels.clone(), ..prompt(id, text) };

    let [old, new] = old_and_new("regret");
    let items = [rewards("a", &[0.2, 0.9, 0.4]), rewards("b", &[0.5, 0.1])];
    let [old, new] = [old, new].map(|p| InfoMetric::new(p).unwrap().score_batch(&items).unwrap());
    assert_eq!(old, new);

    let [old, new] = old_and_new("weighted-sampler");
    let scores = [0.3, 0.9, 0.1, 0.5, 0.7];
    let [old, new] = [old, new].map(|p| Sampler::new(p).unwrap().sample(&scores, 3).unwrap());
    assert_eq!(old, new, "the same seeded stream through either version's `random`");

    let [old, new] = old_and_new("max-min-pairing");
    let item = PromptResponses {
        prompt: labelled("p", "q"),
        responses: [0.2, 0.9, 0.1].iter().map(|&r| ScoredResponse { text: "a".into(), reward: r, tokens: 1 }).collect(),
    };
    let [old, new] = [old, new].map(|p| Pairing::new(p).unwrap().pair(&item).unwrap());
    assert_eq!((&old, &new), (&vec![Preference { chosen: 1, rejected: 2 }], &old));

    let [old, new] = old_and_new("rule-reward");
    let exchanges: Vec<Exchange> = ["one two three", "word"]
        .iter()
        .map(|a| Exchange { prompt: labelled("p", "q"), response: a.to_string() })
        .collect();
    let [old, new] = [old, new].map(|p| RewardModel::new(p).unwrap().rate_batch(&exchanges).unwrap());
    assert_eq!(old, new);

    let [old, new] = old_and_new("evol-instruct");
    let answer = |i: usize, _: &GenerateRequest| format!("Variant {i}: a harder question about rain and clouds.");
    let prompts = [labelled("p0", "Write a haiku about rain.")];
    let [old, new] = [old, new].map(|p| {
        let generator = Arc::new(Scripted { asked: Mutex::new(Vec::new()), answer });
        Evolver::new(p).unwrap().evolve(&prompts, generator).unwrap()
    });
    assert!(!old.is_empty());
    assert_eq!(old, new, "same variants; neither version gives them labels");
    assert!(old.iter().all(|e| e.labels.is_none()));
}
