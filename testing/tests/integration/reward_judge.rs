//! The judge backend on the embedded default (SmolLM2-135M-Instruct): on a hand-made set
//! of clearly good and clearly bad answers, how often does it rank the good one higher?

use eva_engine::{LanguageModel, Message, WeightFormat};
use eva_reward::{Judge, JudgeConfig, Reward, RewardItem};

#[test]
fn the_judge_ranks_good_answers_above_bad_ones_more_often_than_chance() {
    let model = LanguageModel::load(&eva_test_support::models::default_model(), WeightFormat::F32).unwrap();
    let mut judge = Judge::new(model, JudgeConfig::default()).unwrap();
    let text =
        std::fs::read_to_string(eva_test_support::workspace_root().join("tests/data/judge-pairs.jsonl")).unwrap();
    let cases: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let field = |c: &serde_json::Value, key: &str| c[key].as_str().unwrap().to_owned();
    let items: Vec<RewardItem> = cases
        .iter()
        .flat_map(|c| {
            let prompt = vec![Message::new("user", field(c, "prompt"))];
            [RewardItem::new(prompt.clone(), field(c, "good")), RewardItem::new(prompt, field(c, "bad"))]
        })
        .collect();
    let scores = judge.score(&items).unwrap();
    let mut agree = 0;
    for (c, s) in cases.iter().zip(scores.chunks(2)) {
        println!("good {:.3}  bad {:.3}  {}", s[0], s[1], field(c, "prompt"));
        assert!((1.0..=5.0).contains(&s[0]) && (1.0..=5.0).contains(&s[1]), "expected scores lie in 1..=5");
        agree += usize::from(s[0] > s[1]);
    }
    let rate = agree as f64 / cases.len() as f64;
    println!("judge agreement: {agree}/{} = {rate:.2}", cases.len());
    // Chance is 0.5; a 135M judge is weak, so ask only that it beats chance clearly.
    assert!(rate >= 0.65, "the judge agreed with the hand labels on only {agree}/{} cases", cases.len());

    // Deterministic: the same batch scores the same, bit for bit; another batching
    // changes only rounding.
    assert_eq!(judge.score(&items).unwrap(), scores);
    for (a, b) in judge.score(&items[..4]).unwrap().iter().zip(&scores) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}
