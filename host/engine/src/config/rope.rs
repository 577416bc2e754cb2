//! Rotary position frequencies, and how long-context models rescale them: `rope_scaling`
//! in a Hugging Face `config.json` (`linear`, `llama3`, `yarn`), `rope.scaling.*` in GGUF
//! metadata. The formulas are transformers' (`modeling_rope_utils`); a test compares
//! them with values transformers computed.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

/// How the rotary frequencies are rescaled.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "rope_type", rename_all = "lowercase")]
pub enum RopeScaling {
    /// Plain rope: frequency i is θ^(-2i/d).
    #[default]
    Default,
    /// Position interpolation: every frequency divided by `factor`.
    Linear { factor: f64 },
    /// Llama 3.1: low frequencies divided by `factor`, high ones kept, a smooth ramp between.
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: usize },
    /// YaRN: interpolation blended with extrapolation by dimension, and cos/sin scaled by
    /// `attention_factor`.
    Yarn {
        factor: f64,
        original_max_position_embeddings: usize,
        beta_fast: f64,
        beta_slow: f64,
        attention_factor: f64,
        truncate: bool,
    },
}

impl RopeScaling {
    /// Read a `rope_scaling` object (`null` is plain rope); `max_positions` stands in for a
    /// missing `original_max_position_embeddings`, as transformers does.
    pub fn from_hf(value: &serde_json::Value, max_positions: usize) -> Result<Self, String> {
        if value.is_null() {
            return Ok(RopeScaling::Default);
        }
        let kind = value.get("rope_type").or_else(|| value.get("type")).and_then(|v| v.as_str()).unwrap_or("default");
        let float = |key: &str| value.get(key).and_then(|v| v.as_f64());
        let factor = || {
            float("factor")
                .filter(|f| f.is_finite() && *f > 0.0)
                .ok_or_else(|| format!("rope_scaling {value}: `factor` must be a positive number"))
        };
        let original = value
            .get("original_max_position_embeddings")
            .and_then(|v| v.as_u64())
            .map_or(max_positions, |v| v as usize);
        Ok(match kind {
            "default" => RopeScaling::Default,
            "linear" => RopeScaling::Linear { factor: factor()? },
            "llama3" => RopeScaling::Llama3 {
                factor: factor()?,
                low_freq_factor: float("low_freq_factor").unwrap_or(1.0),
                high_freq_factor: float("high_freq_factor").unwrap_or(4.0),
                original_max_position_embeddings: original,
            },
            "yarn" => {
                let factor = factor()?;
                let mscale = |m: f64| if factor <= 1.0 { 1.0 } else { 0.1 * m * factor.ln() + 1.0 };
                let attention_factor = match (float("attention_factor"), float("mscale"), float("mscale_all_dim")) {
                    (Some(a), _, _) => a,
                    (None, Some(m), Some(all)) if m != 0.0 && all != 0.0 => mscale(m) / mscale(all),
                    _ => mscale(1.0),
                };
                RopeScaling::Yarn {
                    factor,
                    original_max_position_embeddings: original,
                    beta_fast: float("beta_fast").filter(|b| *b != 0.0).unwrap_or(32.0),
                    beta_slow: float("beta_slow").filter(|b| *b != 0.0).unwrap_or(1.0),
                    attention_factor,
                    truncate: value.get("truncate").and_then(|v| v.as_bool()).unwrap_or(true),
                }
            }
            other => return Err(format!("rope_scaling type `{other}` is not supported (linear, llama3 and yarn are)")),
        })
    }

    /// The `rope_scaling` object of a `config.json` (`null` for plain rope).
    pub fn to_hf(&self) -> serde_json::Value {
        match self {
            RopeScaling::Default => serde_json::Value::Null,
            other => serde_json::to_value(other).expect("rope scaling serialises"),
        }
    }

    /// The `llama3` scaling that llama.cpp's converter turned into `factors` (GGUF
    /// `rope_freqs.weight`: frequency i is divided by `factors[i]`), or `None` when no
    /// Llama 3 scaling gives them. The converter always uses low/high frequency factors 1
    /// and 4 and an original context of 8192 (Llama 3.1 to 3.3); the factor is the largest.
    pub fn from_llama3_factors(factors: &[f32], theta: f64, dim: usize) -> Option<Self> {
        if factors.len() != dim / 2 || factors.iter().any(|f| !f.is_finite() || *f <= 0.0) {
            return None;
        }
        let factor = f64::from(factors.iter().copied().fold(f32::MIN, f32::max));
        let candidate = RopeScaling::Llama3 {
            factor,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        };
        let (plain, _) = RopeScaling::Default.frequencies(theta, dim);
        let (scaled, _) = candidate.frequencies(theta, dim);
        // The file stores the factors in f32.
        let matches =
            plain.iter().zip(&scaled).zip(factors).all(|((p, s), &f)| ((p / s) / f64::from(f) - 1.0).abs() < 1e-5);
        matches.then_some(candidate)
    }

    /// The inverse frequencies of a head of `dim` dimensions with base `theta`, and the
    /// factor cos and sin are multiplied by.
    pub fn frequencies(&self, theta: f64, dim: usize) -> (Vec<f64>, f64) {
        // In f32, as transformers and llama.cpp compute them.
        let plain: Vec<f64> =
            (0..dim / 2).map(|i| f64::from(1.0 / (theta as f32).powf(2.0 * i as f32 / dim as f32))).collect();
        match *self {
            RopeScaling::Default => (plain, 1.0),
            RopeScaling::Linear { factor } => (plain.iter().map(|f| f / factor).collect(), 1.0),
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
                let old = original_max_position_embeddings as f64;
                let (low_wavelen, high_wavelen) = (old / low_freq_factor, old / high_freq_factor);
                let scaled = plain.iter().map(|&f| {
                    let wavelen = 2.0 * PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                });
                (scaled.collect(), 1.0)
            }
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                attention_factor,
                truncate,
            } => {
                let d = dim as f64;
                let correction = |rotations: f64| {
                    d * (original_max_position_embeddings as f64 / (rotations * 2.0 * PI)).ln() / (2.0 * theta.ln())
                };
                let (mut low, mut high) = (correction(beta_fast), correction(beta_slow));
                if truncate {
                    (low, high) = (low.floor(), high.ceil());
                }
                let (low, mut high) = (low.max(0.0), high.min(d - 1.0));
                if low == high {
                    high += 0.001;
                }
                let scaled = plain.iter().enumerate().map(|(i, &f)| {
                    let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                    let extrapolation = 1.0 - ramp;
                    f / factor * (1.0 - extrapolation) + f * extrapolation
                });
                (scaled.collect(), attention_factor)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tests/reference/transformers/rope.json`, written by `rope.py` with transformers
    /// 5.24 for a head of 64 dimensions and θ = 500000.
    #[test]
    fn frequencies_match_transformers() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/reference/transformers/rope.json");
        let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let cases = reference.as_object().unwrap();
        assert_eq!(cases.len(), 4);
        for (name, case) in cases {
            let scaling =
                RopeScaling::from_hf(&case["config"], case["max_position_embeddings"].as_u64().unwrap() as usize)
                    .unwrap();
            let (inv, attention) = scaling.frequencies(case["rope_theta"].as_f64().unwrap(), 64);
            let want: Vec<f64> = case["inv_freq"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(inv.len(), want.len(), "{name}");
            let worst = inv.iter().zip(&want).map(|(a, b)| ((a - b) / b).abs()).fold(0.0, f64::max);
            // transformers computes in f32.
            assert!(worst < 1e-6, "{name}: relative error {worst:e}");
            assert!((attention - case["attention_factor"].as_f64().unwrap()).abs() < 1e-12, "{name}");
            let back = RopeScaling::from_hf(&scaling.to_hf(), 0).unwrap();
            assert_eq!(back, scaling, "{name} round-trips through config.json");
        }
    }

    #[test]
    fn gguf_frequency_factors_are_read_as_the_llama3_scaling_they_came_from() {
        // Factors as llama.cpp's converter derives them, here from transformers' own
        // llama3 frequencies (factor 8), must give back a scaling that reproduces them.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/reference/transformers/rope.json");
        let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let want: Vec<f64> =
            reference["llama3"]["inv_freq"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let (plain, _) = RopeScaling::Default.frequencies(500_000.0, 64);
        let factors: Vec<f32> = plain.iter().zip(&want).map(|(p, w)| (p / w) as f32).collect();
        let scaling = RopeScaling::from_llama3_factors(&factors, 500_000.0, 64).expect("llama3 factors");
        assert!(matches!(scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0), "{scaling:?}");
        let (inv, _) = scaling.frequencies(500_000.0, 64);
        let worst = inv.iter().zip(&want).map(|(a, b)| ((a - b) / b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-6, "relative error {worst:e}");
        // Factors no Llama 3 scaling gives, or of the wrong length, are not taken for one.
        let mut odd = factors.clone();
        odd[3] = 1.5;
        assert_eq!(RopeScaling::from_llama3_factors(&odd, 500_000.0, 64), None);
        assert_eq!(RopeScaling::from_llama3_factors(&factors[1..], 500_000.0, 64), None);
    }

    #[test]
    fn unknown_types_and_bad_factors_are_refused() {
        let err = RopeScaling::from_hf(&serde_json::json!({"rope_type": "dynamic", "factor": 2.0}), 4096).unwrap_err();
        assert!(err.contains("`dynamic` is not supported"), "{err}");
        let err = RopeScaling::from_hf(&serde_json::json!({"type": "linear", "factor": 0}), 4096).unwrap_err();
        assert!(err.contains("positive"), "{err}");
        assert_eq!(
            RopeScaling::from_hf(&serde_json::json!({"type": "linear", "factor": 2}), 1).unwrap(),
            RopeScaling::Linear { factor: 2.0 }
        );
    }
}
