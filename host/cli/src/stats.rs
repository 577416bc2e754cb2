//! An evaluation's summary (`eval.json`) and its confidence intervals over n prompts.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// `eval.json`.
#[derive(Serialize, Deserialize)]
pub struct EvalSummary {
    pub model: PathBuf,
    pub baseline: PathBuf,
    pub reward: String,
    pub prompts: usize,
    pub confidence: f64,
    pub model_reward: Estimate,
    pub baseline_reward: Estimate,
    /// Paired: the model's reward minus the baseline's, per prompt.
    pub difference: Estimate,
    pub win_rate: WinRate,
    /// Over the prompts labelled with verifiable constraints, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<crate::eval_cmd::ConstraintScores>,
}

/// A mean and its two-sided confidence interval (`None` with fewer than two samples).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub mean: f64,
    pub ci: Option<[f64; 2]>,
}

/// The mean of `xs` with Student's t interval at `confidence` (e.g. 0.95).
pub fn mean_ci(xs: &[f64], confidence: f64) -> Estimate {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return Estimate { mean, ci: None };
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let t = StudentsT::new(0.0, 1.0, n - 1.0).expect("n > 1").inverse_cdf(0.5 + confidence / 2.0);
    let half = t * (var / n).sqrt();
    Estimate { mean, ci: Some([mean - half, mean + half]) }
}

/// Head-to-head outcomes over prompts; a tie counts as half a win.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WinRate {
    pub rate: f64,
    /// Wilson score interval.
    pub ci: [f64; 2],
    pub wins: usize,
    pub ties: usize,
    pub losses: usize,
}

pub fn win_rate(wins: usize, ties: usize, losses: usize, confidence: f64) -> WinRate {
    let n = (wins + ties + losses) as f64;
    let p = (wins as f64 + ties as f64 / 2.0) / n;
    WinRate { rate: p, ci: wilson(p, n, confidence), wins, ties, losses }
}

/// Wilson's score interval of a proportion `p` over `n` trials.
fn wilson(p: f64, n: f64, confidence: f64) -> [f64; 2] {
    let z = Normal::standard().inverse_cdf(0.5 + confidence / 2.0);
    let z2n = z * z / n;
    let center = (p + z2n / 2.0) / (1.0 + z2n);
    let half = z / (1.0 + z2n) * (p * (1.0 - p) / n + z2n / (4.0 * n)).sqrt();
    [(center - half).max(0.0), (center + half).min(1.0)]
}

/// The mean of shares `xs` (each in [0, 1], one per prompt) with Wilson's interval over
/// the `n` prompts: exact in form for 0/1 values, and conservative for fractions, whose
/// variance is at most p(1 - p). Unlike a t interval it stays within [0, 1] and does not
/// collapse to a point when every value is the same.
pub fn share_ci(xs: &[f64], confidence: f64) -> Estimate {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    Estimate { mean, ci: (!xs.is_empty()).then(|| wilson(mean, n, confidence)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-4
    }

    #[test]
    fn t_interval_matches_the_textbook() {
        // mean 3, sd 1.5811, n 5: t(0.975, 4) = 2.7764, half-width 1.9632.
        let e = mean_ci(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.95);
        assert_eq!(e.mean, 3.0);
        let [lo, hi] = e.ci.unwrap();
        assert!(close(lo, 1.0368) && close(hi, 4.9632), "{lo} {hi}");
        assert_eq!(mean_ci(&[2.5], 0.95).ci, None);
    }

    #[test]
    fn share_intervals_stay_within_zero_and_one() {
        let e = share_ci(&[1.0, 0.0], 0.95);
        let [lo, hi] = e.ci.unwrap();
        assert!(lo >= 0.0 && hi <= 1.0 && lo < 0.5 && hi > 0.5, "{lo} {hi}");
        // All held on 3 prompts: not a point, [0.4385, 1].
        let [lo, hi] = share_ci(&[1.0; 3], 0.95).ci.unwrap();
        assert!(close(lo, 0.4385) && hi == 1.0, "{lo} {hi}");
    }

    #[test]
    fn wilson_interval_matches_the_textbook() {
        // 5 of 10 at 95%: [0.2366, 0.7634]; 0 of 10: [0, 0.2775].
        let w = win_rate(5, 0, 5, 0.95);
        assert!(close(w.ci[0], 0.2366) && close(w.ci[1], 0.7634), "{:?}", w.ci);
        let w = win_rate(0, 0, 10, 0.95);
        assert!(close(w.ci[0], 0.0), "{:?}", w.ci);
        assert!(close(w.ci[1], 0.2775), "{:?}", w.ci);
        // Ties are half wins.
        assert_eq!(win_rate(1, 2, 1, 0.95).rate, 0.5);
    }
}
