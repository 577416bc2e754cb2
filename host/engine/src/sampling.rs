//! Choosing the next token from logits: greedy, or temperature + nucleus (top-p).

use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

/// How to pick tokens. `temperature == 0` is greedy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub temperature: f32,
    pub top_p: f32,
}

impl Default for Sampling {
    /// eva's reference sampling: temperature 0.7, top-p 0.9.
    fn default() -> Self {
        Self { temperature: 0.7, top_p: 0.9 }
    }
}

impl Sampling {
    pub const GREEDY: Self = Self { temperature: 0.0, top_p: 1.0 };
}

/// One sequence's random stream: derived from the run seed and the sequence's own
/// coordinates, so a sample does not change when the batch around it does.
pub fn sequence_rng(seed: u64, prompt: usize, sample: usize) -> StdRng {
    // splitmix64-style mixing keeps nearby coordinates far apart.
    let mut z = seed
        ^ (prompt as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (sample as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

/// Pick a token id from one row of logits.
pub fn sample(logits: &[f32], s: Sampling, rng: &mut StdRng) -> u32 {
    let argmax = || {
        let mut best = 0;
        for (i, &l) in logits.iter().enumerate() {
            if l > logits[best] {
                best = i;
            }
        }
        best as u32
    };
    if s.temperature <= 0.0 {
        return argmax();
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let inv_t = 1.0 / s.temperature;
    let mut probs: Vec<(f32, u32)> =
        logits.iter().enumerate().map(|(i, &l)| (((l - max) * inv_t).exp(), i as u32)).collect();
    let total: f32 = probs.iter().map(|p| p.0).sum();
    if !total.is_finite() || total <= 0.0 {
        return argmax();
    }
    let kept: &mut [(f32, u32)] = if s.top_p >= 1.0 {
        &mut probs
    } else {
        // The nucleus is usually a few dozen tokens: sort a small head first and only
        // sort everything when the head does not reach top-p.
        let target = s.top_p * total;
        let desc = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        let mut head = 256.min(probs.len());
        loop {
            if head < probs.len() {
                probs.select_nth_unstable_by(head, desc);
            }
            probs[..head].sort_unstable_by(desc);
            let mut acc = 0.0;
            let cut = probs[..head].iter().position(|p| {
                acc += p.0;
                acc >= target
            });
            match cut {
                Some(i) => break &mut probs[..=i],
                None if head == probs.len() => break &mut probs,
                None => head = probs.len(),
            }
        }
    };
    let sum: f32 = kept.iter().map(|p| p.0).sum();
    let mut r = rng.random::<f32>() * sum;
    for p in kept.iter() {
        r -= p.0;
        if r <= 0.0 {
            return p.1;
        }
    }
    kept.last().map_or_else(argmax, |p| p.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_the_largest_logit() {
        let mut rng = sequence_rng(1, 0, 0);
        assert_eq!(sample(&[0.1, 3.0, -1.0, 2.9], Sampling::GREEDY, &mut rng), 1);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // p ∝ e^[12, 11, 0, 0...]: the top two hold > 99% of the mass.
        let mut logits = vec![0.0f32; 1000];
        logits[7] = 12.0;
        logits[3] = 11.0;
        let s = Sampling { temperature: 1.0, top_p: 0.9 };
        let mut rng = sequence_rng(42, 0, 0);
        let mut counts = [0usize; 2];
        for _ in 0..2000 {
            match sample(&logits, s, &mut rng) {
                7 => counts[0] += 1,
                3 => counts[1] += 1,
                other => panic!("token {other} is outside the nucleus"),
            }
        }
        // Renormalised within the nucleus: P(7) = e / (e + 1) ≈ 0.731.
        let p7 = counts[0] as f64 / 2000.0;
        assert!((p7 - 0.731).abs() < 0.04, "P(7) = {p7}");
    }

    #[test]
    fn same_seed_same_tokens_and_streams_differ() {
        let logits: Vec<f32> = (0..500).map(|i| ((i * 37) % 101) as f32 / 20.0).collect();
        let s = Sampling::default();
        let draw = |seed, sample_idx| {
            let mut rng = sequence_rng(seed, 0, sample_idx);
            (0..20).map(|_| sample(&logits, s, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(3, 0), draw(3, 0));
        assert_ne!(draw(3, 0), draw(3, 1));
    }
}
