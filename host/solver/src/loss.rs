//! Preference losses, as the method doc writes them.
//!
//! Notation: `lw`, `ll` are the summed log-probs of the chosen / rejected completion under
//! the policy, `rw`, `rl` the same under the frozen reference, `|y|` the completion's
//! token count, `Δ = (lw − rw) − (ll − rl)`.

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PreferenceLoss {
    /// −log σ(β·Δ)
    Dpo { beta: f64 },
    /// (Δ̄ − 1/(2β))², each log-ratio divided by its own |y|
    Ipo { beta: f64 },
    /// −log σ(β·(lw/|yw| − ll/|yl|) − γ); no reference model
    Simpo { beta: f64, gamma: f64 },
    /// −lw/|yw| − λ·log σ(log_odds); no reference model
    Orpo { lambda: f64 },
    /// max(0, 1 − β·Δ)
    Hinge { beta: f64 },
}

impl PreferenceLoss {
    /// The usual defaults: DPO β 0.1, IPO β 0.1, SimPO β 2 γ 1 (γ/β = 0.5), ORPO λ 0.1,
    /// hinge β 0.1.
    pub fn by_name(name: &str) -> Option<Self> {
        Some(match name {
            "dpo" => Self::Dpo { beta: 0.1 },
            "ipo" => Self::Ipo { beta: 0.1 },
            "simpo" => Self::Simpo { beta: 2.0, gamma: 1.0 },
            "orpo" => Self::Orpo { lambda: 0.1 },
            "hinge" => Self::Hinge { beta: 0.1 },
            _ => return None,
        })
    }

    /// Whether the loss reads reference log-probs (computed once per pair set).
    pub fn needs_reference(&self) -> bool {
        matches!(self, Self::Dpo { .. } | Self::Ipo { .. } | Self::Hinge { .. })
    }
}

/// Per-pair inputs, each `[b]` (f32 or f64); `rw`/`rl` are ignored by reference-free losses.
pub struct PairLogProbs<'a> {
    pub lw: &'a Tensor,
    pub ll: &'a Tensor,
    pub rw: &'a Tensor,
    pub rl: &'a Tensor,
    pub len_w: &'a Tensor,
    pub len_l: &'a Tensor,
}

/// The mean loss over the batch and the per-pair implicit rewards.
pub struct LossOutput {
    pub loss: Tensor,
    pub chosen_rewards: Tensor,
    pub rejected_rewards: Tensor,
}

/// log σ(x), stable for large |x|: min(x, 0) − log(1 + e^{−|x|}).
pub fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    let neg_abs = x.abs()?.neg()?;
    x.minimum(0.0)? - (neg_abs.exp()? + 1.0)?.log()?
}

impl PreferenceLoss {
    pub fn compute(&self, p: &PairLogProbs<'_>) -> Result<LossOutput> {
        let (rw_ratio, rl_ratio) = ((p.lw - p.rw)?, (p.ll - p.rl)?);
        let (loss, cw, cl) = match *self {
            Self::Dpo { beta } => {
                let delta = (&rw_ratio - &rl_ratio)?;
                (log_sigmoid(&(delta * beta)?)?.neg()?, (&rw_ratio * beta)?, (&rl_ratio * beta)?)
            }
            Self::Ipo { beta } => {
                let (w, l) = (rw_ratio.div(p.len_w)?, rl_ratio.div(p.len_l)?);
                let loss = ((&w - &l)? - 1.0 / (2.0 * beta))?.sqr()?;
                (loss, (w * beta)?, (l * beta)?)
            }
            Self::Simpo { beta, gamma } => {
                let (w, l) = ((p.lw.div(p.len_w)? * beta)?, (p.ll.div(p.len_l)? * beta)?);
                (log_sigmoid(&((&w - &l)? - gamma)?)?.neg()?, w, l)
            }
            Self::Orpo { lambda } => {
                let (mw, ml) = (p.lw.div(p.len_w)?, p.ll.div(p.len_l)?);
                // log(p / (1 − p)) with p = exp(m): m − log(1 − e^m), m < 0.
                let log_odds =
                    |m: &Tensor| -> Result<Tensor> { m - (m.exp()?.affine(-1.0, 1.0)?.maximum(1e-12)?).log()? };
                let ratio = (log_odds(&mw)? - log_odds(&ml)?)?;
                let loss = (mw.neg()? - (log_sigmoid(&ratio)? * lambda)?)?;
                (loss, (mw * lambda)?, (ml * lambda)?)
            }
            Self::Hinge { beta } => {
                let delta = (&rw_ratio - &rl_ratio)?;
                ((delta * beta)?.affine(-1.0, 1.0)?.relu()?, (&rw_ratio * beta)?, (&rl_ratio * beta)?)
            }
        };
        Ok(LossOutput { loss: loss.mean_all()?, chosen_rewards: cw.detach(), rejected_rewards: cl.detach() })
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    // One pair: lw −12.5, ll −15, rw −13, rl −14, |yw| 5, |yl| 8. Expected values computed
    // by hand from the method doc's formulas in Python's `math` (see the test names).
    fn pair(dev: &Device) -> [Tensor; 6] {
        [-12.5f64, -15.0, -13.0, -14.0, 5.0, 8.0].map(|v| Tensor::new(&[v], dev).unwrap())
    }

    fn loss_of(kind: PreferenceLoss, t: &[Tensor; 6]) -> f64 {
        let p = PairLogProbs { lw: &t[0], ll: &t[1], rw: &t[2], rl: &t[3], len_w: &t[4], len_l: &t[5] };
        kind.compute(&p).unwrap().loss.to_scalar::<f64>().unwrap()
    }

    #[test]
    fn losses_match_hand_computed_values() {
        let t = pair(&Device::Cpu);
        let cases = [
            (PreferenceLoss::Dpo { beta: 0.1 }, 0.6209570477895321),
            (PreferenceLoss::Ipo { beta: 0.1 }, 22.800625000000004),
            (PreferenceLoss::Simpo { beta: 2.0, gamma: 1.0 }, 2.350206558916747),
            (PreferenceLoss::Orpo { lambda: 0.1 }, 2.6107080847187993),
            (PreferenceLoss::Hinge { beta: 0.1 }, 0.85),
        ];
        for (kind, expected) in cases {
            let got = loss_of(kind, &t);
            assert!((got - expected).abs() < 1e-12, "{kind:?}: {got} vs {expected}");
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let dev = Device::Cpu;
        for kind in ["dpo", "ipo", "simpo", "orpo", "hinge"].map(|n| PreferenceLoss::by_name(n).unwrap()) {
            let t = pair(&dev);
            let (lw, ll) = (Var::from_tensor(&t[0]).unwrap(), Var::from_tensor(&t[1]).unwrap());
            let p = PairLogProbs {
                lw: lw.as_tensor(),
                ll: ll.as_tensor(),
                rw: &t[2],
                rl: &t[3],
                len_w: &t[4],
                len_l: &t[5],
            };
            let grads = kind.compute(&p).unwrap().loss.backward().unwrap();
            for (i, var) in [(0, &lw), (1, &ll)] {
                let g = grads.get(var).map_or(0.0, |g| g.to_vec1::<f64>().unwrap()[0]);
                let h = 1e-6;
                let mut plus = pair(&dev);
                plus[i] = (&plus[i] + h).unwrap();
                let mut minus = pair(&dev);
                minus[i] = (&minus[i] - h).unwrap();
                let numeric = (loss_of(kind, &plus) - loss_of(kind, &minus)) / (2.0 * h);
                assert!((g - numeric).abs() < 1e-6, "{kind:?} d/d{}: {g} vs {numeric}", ["lw", "ll"][i]);
            }
        }
    }

    #[test]
    fn log_sigmoid_is_stable() {
        let x = Tensor::new(&[-800.0f64, -1.0, 0.0, 1.0, 800.0], &Device::Cpu).unwrap();
        let y = log_sigmoid(&x).unwrap().to_vec1::<f64>().unwrap();
        let expected = [-800.0, -1.3132616875182228, -std::f64::consts::LN_2, -0.31326168751822286, 0.0];
        for (a, b) in y.iter().zip(expected) {
            assert!((a - b).abs() < 1e-12, "{y:?}");
        }
    }
}
