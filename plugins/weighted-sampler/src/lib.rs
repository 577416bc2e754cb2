//! The `weighted-sampler`: picks which prompts the creator evolves, from their info
//! scores. The default is the eva paper's importance sampling without replacement, with
//! weights from min-max normalised scores; `greedy` (top-k) and `stratified` (equal draws
//! from score quantile bins) are the paper's alternatives.

use eva_plugin_sdk::{Config, ConfigKind, Metadata, Plugin, PluginError, Sampler, field};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Weighted,
    Greedy,
    Stratified { strata: usize },
}

pub struct WeightedSampler {
    mode: Mode,
}

/// Min-max normalised weights; all equal when the scores are. Any finite scores give
/// finite weights: the range is taken over halves, which cannot overflow.
pub fn normalised_weights(scores: &[f64]) -> Vec<f64> {
    let lo = scores.iter().copied().fold(f64::INFINITY, f64::min) / 2.0;
    let hi = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max) / 2.0;
    if hi - lo <= 0.0 {
        return vec![1.0; scores.len()];
    }
    scores.iter().map(|s| (s / 2.0 - lo) / (hi - lo)).collect()
}

/// `count` distinct indices drawn without replacement with probability proportional to
/// `weights` (Efraimidis–Spirakis keys). Zero-weight items come last, in random order,
/// so they are only drawn when the positive ones run out.
pub fn weighted(weights: &[f64], count: usize, uniform: &mut impl FnMut() -> f64) -> Vec<u32> {
    let mut keys: Vec<(f64, f64, u32)> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            // 1 - uniform() lies in (0, 1], so its log is finite.
            let key = if w > 0.0 { (1.0 - uniform()).ln() / w } else { f64::NEG_INFINITY };
            (key, uniform(), i as u32)
        })
        .collect();
    keys.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.total_cmp(&a.1)));
    keys.into_iter().take(count).map(|(_, _, i)| i).collect()
}

/// The `count` highest scores; ties go to the lower index.
pub fn greedy(scores: &[f64], count: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..scores.len() as u32).collect();
    order.sort_by(|&a, &b| scores[b as usize].total_cmp(&scores[a as usize]).then(a.cmp(&b)));
    order.truncate(count);
    order
}

/// Split the prompts into `strata` bins by score rank and draw as evenly as possible
/// from each, uniformly within a bin.
pub fn stratified(scores: &[f64], count: usize, strata: usize, uniform: &mut impl FnMut() -> f64) -> Vec<u32> {
    let ranked = greedy(scores, scores.len());
    let strata = strata.clamp(1, ranked.len().max(1));
    let bins: Vec<&[u32]> =
        (0..strata).map(|b| &ranked[b * ranked.len() / strata..(b + 1) * ranked.len() / strata]).collect();
    // Hand out the draws round-robin, skipping bins that are used up.
    let mut quota = vec![0usize; strata];
    let mut left = count;
    while left > 0 {
        for (b, bin) in bins.iter().enumerate() {
            if left > 0 && quota[b] < bin.len() {
                quota[b] += 1;
                left -= 1;
            }
        }
    }
    let mut picked = Vec::with_capacity(count);
    for (bin, &q) in bins.iter().zip(&quota) {
        let chosen = weighted(&vec![1.0; bin.len()], q, uniform);
        picked.extend(chosen.into_iter().map(|i| bin[i as usize]));
    }
    picked
}

impl Plugin for WeightedSampler {
    fn metadata() -> Metadata {
        eva_plugin_sdk::metadata!(
            "weighted-sampler",
            "Picks prompts to evolve: info-weighted without replacement (default), greedy or stratified.",
            vec![
                field("mode", ConfigKind::Text, "weighted", "weighted, greedy or stratified"),
                field("strata", ConfigKind::Integer, "4", "number of score quantile bins, for stratified"),
            ]
        )
    }

    fn from_config(config: &Config) -> Result<Self, PluginError> {
        let mode = match config.text("mode")? {
            "weighted" => Mode::Weighted,
            "greedy" => Mode::Greedy,
            "stratified" => {
                let strata = config.integer("strata")?;
                if strata < 1 {
                    return Err(PluginError::InvalidConfig(format!("strata must be at least 1, not {strata}")));
                }
                Mode::Stratified { strata: strata as usize }
            }
            other => {
                return Err(PluginError::InvalidConfig(format!(
                    "unknown mode `{other}` (one of: weighted, greedy, stratified)"
                )));
            }
        };
        Ok(WeightedSampler { mode })
    }
}

impl Sampler for WeightedSampler {
    fn sample(&mut self, scores: &[f64], count: u32) -> Result<Vec<u32>, PluginError> {
        let count = count as usize;
        if count > scores.len() {
            return Err(PluginError::InvalidInput(format!("{count} asked for, only {} scores", scores.len())));
        }
        let mut uniform = eva_plugin_sdk::random::f64;
        Ok(match self.mode {
            Mode::Weighted => weighted(&normalised_weights(scores), count, &mut uniform),
            Mode::Greedy => greedy(scores, count),
            Mode::Stratified { strata } => stratified(scores, count, strata, &mut uniform),
        })
    }
}

eva_plugin_sdk::export_sampler!(WeightedSampler);

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic uniform source for tests (the plugin uses the host's).
    fn lcg(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed;
        move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn distinct(v: &[u32]) -> bool {
        let mut s = v.to_vec();
        s.sort();
        s.dedup();
        s.len() == v.len()
    }

    #[test]
    fn weights_are_min_max_normalised() {
        assert_eq!(normalised_weights(&[1.0, 3.0, 2.0]), vec![0.0, 1.0, 0.5]);
        assert_eq!(normalised_weights(&[2.0, 2.0]), vec![1.0, 1.0]);
        assert_eq!(normalised_weights(&[f64::MAX, -f64::MAX, 0.0]), vec![1.0, 0.0, 0.5], "no overflow");
    }

    #[test]
    fn weighted_draws_follow_the_weights() {
        // Draw one of three with weights 0, 1, 3 many times: frequencies ~ 0, 1/4, 3/4.
        let mut uniform = lcg(7);
        let mut counts = [0u32; 3];
        for _ in 0..20_000 {
            counts[weighted(&[0.0, 1.0, 3.0], 1, &mut uniform)[0] as usize] += 1;
        }
        assert_eq!(counts[0], 0);
        let p2 = counts[2] as f64 / 20_000.0;
        assert!((p2 - 0.75).abs() < 0.02, "p2 = {p2}");
    }

    #[test]
    fn zero_weights_are_drawn_only_when_needed() {
        let picked = weighted(&[0.0, 1.0, 0.0, 0.5], 4, &mut lcg(1));
        assert!(distinct(&picked));
        assert_eq!(&picked[2..].iter().map(|&i| i % 2).collect::<Vec<_>>(), &[0, 0]);
    }

    #[test]
    fn greedy_takes_the_top_k_with_stable_ties() {
        assert_eq!(greedy(&[0.5, 0.9, 0.5, 0.1], 3), vec![1, 0, 2]);
    }

    #[test]
    fn stratified_draws_from_every_bin() {
        let scores: Vec<f64> = (0..100).map(|i| i as f64).collect();
        let picked = stratified(&scores, 8, 4, &mut lcg(3));
        assert_eq!(picked.len(), 8);
        assert!(distinct(&picked));
        for bin in 0..4u32 {
            let n = picked.iter().filter(|&&i| (99 - i) / 25 == bin).count();
            assert_eq!(n, 2, "bin {bin}: {picked:?}");
        }
        // Asking for everything returns everything.
        let all = stratified(&scores[..5], 5, 4, &mut lcg(3));
        assert!(distinct(&all) && all.len() == 5);
    }
}
