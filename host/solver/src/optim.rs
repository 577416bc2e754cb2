//! AdamW with its state in the open (for checkpoints), the learning-rate schedule and
//! gradient clipping.

use std::collections::HashMap;

use candle_core::{DType, Result, Tensor, Var};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// The dtype gradients, moments and master weights of a `dtype` parameter are kept in:
/// f32 for half-precision parameters, whose rounding step (2^-8 relative for bf16) would
/// swallow most updates, else the parameter's own.
pub fn master_dtype(dtype: DType) -> DType {
    match dtype {
        DType::BF16 | DType::F16 => DType::F32,
        other => other,
    }
}

/// Decoupled weight decay Adam (Loshchilov & Hutter), bias-corrected.
pub struct AdamW {
    pub config: AdamWConfig,
    /// First and second moments, one pair per parameter, in parameter order.
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
    /// The f32 master copy of each half-precision parameter (`None` for the others): the
    /// update applies to it, and the parameter is its rounding.
    pub master: Vec<Option<Tensor>>,
    pub t: u64,
}

impl AdamW {
    pub fn new(params: &[(String, Var)], config: AdamWConfig) -> Result<Self> {
        let zeros = |v: &Var| Tensor::zeros(v.shape(), master_dtype(v.dtype()), v.device());
        let master = |v: &Var| match master_dtype(v.dtype()) == v.dtype() {
            true => Ok(None),
            false => v.as_tensor().to_dtype(master_dtype(v.dtype())).map(Some),
        };
        Ok(Self {
            config,
            m: params.iter().map(|(_, v)| zeros(v)).collect::<Result<_>>()?,
            v: params.iter().map(|(_, v)| zeros(v)).collect::<Result<_>>()?,
            master: params.iter().map(|(_, v)| master(v)).collect::<Result<_>>()?,
            t: 0,
        })
    }

    pub fn step(&mut self, params: &[(String, Var)], grads: &[Tensor], lr: f64) -> Result<()> {
        self.t += 1;
        let c = self.config;
        let (bc1, bc2) = (1.0 - c.beta1.powi(self.t as i32), 1.0 - c.beta2.powi(self.t as i32));
        for (i, ((_, var), g)) in params.iter().zip(grads).enumerate() {
            let g = g.to_dtype(self.m[i].dtype())?;
            self.m[i] = ((&self.m[i] * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            self.v[i] = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let m_hat = (&self.m[i] / bc1)?;
            let v_hat = (&self.v[i] / bc2)?;
            let update = (m_hat / (v_hat.sqrt()? + c.eps)?)?;
            let weights = self.master[i].as_ref().unwrap_or(var.as_tensor());
            let updated = ((weights * (1.0 - lr * c.weight_decay))? - (update * lr)?)?;
            match &mut self.master[i] {
                Some(master) => {
                    var.set(&updated.to_dtype(var.dtype())?)?;
                    *master = updated;
                }
                None => var.set(&updated)?,
            }
        }
        Ok(())
    }

    /// The moments (and master weights) by parameter name, for a checkpoint.
    pub fn state(&self, params: &[(String, Var)]) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (name, _)) in params.iter().enumerate() {
            out.insert(format!("m.{name}"), self.m[i].clone());
            out.insert(format!("v.{name}"), self.v[i].clone());
            if let Some(master) = &self.master[i] {
                out.insert(format!("master.{name}"), master.clone());
            }
        }
        out
    }

    pub fn load_state(
        &mut self,
        params: &[(String, Var)],
        state: &HashMap<String, Tensor>,
        t: u64,
    ) -> std::result::Result<(), String> {
        for (i, (name, var)) in params.iter().enumerate() {
            let get = |k: String| state.get(&k).cloned().ok_or(format!("optimizer state lacks `{k}`"));
            let (m, v) = (get(format!("m.{name}"))?, get(format!("v.{name}"))?);
            let dtype = master_dtype(var.dtype());
            if m.shape() != var.shape() || v.shape() != var.shape() || m.dtype() != dtype || v.dtype() != dtype {
                return Err(format!("optimizer state of `{name}` has the wrong shape or dtype"));
            }
            self.m[i] = m;
            self.v[i] = v;
            if self.master[i].is_some() {
                let master = get(format!("master.{name}"))?;
                if master.shape() != var.shape() || master.dtype() != dtype {
                    return Err(format!("master weights of `{name}` have the wrong shape or dtype"));
                }
                self.master[i] = Some(master);
            }
        }
        self.t = t;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decay {
    Cosine,
    Linear,
    Constant,
}

/// Linear warm-up over `warmup` steps, then decay to zero at `total`.
pub fn learning_rate(base: f64, step: u64, warmup: u64, total: u64, decay: Decay) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    match decay {
        Decay::Cosine => base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        Decay::Linear => base * (1.0 - progress),
        Decay::Constant => base,
    }
}

/// Scale `grads` in place so that their global L2 norm is at most `max_norm`; returns the
/// norm before clipping.
pub fn clip_global_norm(grads: &mut [Tensor], max_norm: f64) -> Result<f64> {
    let mut sq = 0f64;
    for g in grads.iter() {
        sq += g.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
    }
    let norm = sq.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for g in grads.iter_mut() {
            *g = (&*g * scale)?;
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn adamw_matches_a_hand_computed_step() {
        // One parameter w = 1, gradient 0.5, lr 0.1, decay 0.01: after bias correction the
        // update is lr * m̂/(√v̂ + ε) = 0.1 * 0.5/0.5 ≈ 0.1; decay multiplies w by 0.999.
        let w = Var::new(&[1.0f64], &Device::Cpu).unwrap();
        let params = vec![("w".to_owned(), w.clone())];
        let mut opt = AdamW::new(&params, AdamWConfig { weight_decay: 0.01, ..Default::default() }).unwrap();
        opt.step(&params, &[Tensor::new(&[0.5f64], &Device::Cpu).unwrap()], 0.1).unwrap();
        let got = w.as_tensor().to_vec1::<f64>().unwrap()[0];
        let expected = 1.0 * (1.0 - 0.1 * 0.01) - 0.1 * 0.5 / (0.5 + 1e-8);
        assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let lr = |s| learning_rate(1.0, s, 10, 110, Decay::Cosine);
        assert!((lr(0) - 0.1).abs() < 1e-12);
        assert!((lr(9) - 1.0).abs() < 1e-12);
        assert!((lr(60) - 0.5).abs() < 1e-12, "half-way through the decay");
        assert!(lr(110).abs() < 1e-12);
        assert!((learning_rate(1.0, 60, 10, 110, Decay::Linear) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let mut g = vec![Tensor::new(&[3.0f32], &Device::Cpu).unwrap(), Tensor::new(&[4.0f32], &Device::Cpu).unwrap()];
        let norm = clip_global_norm(&mut g, 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-9);
        let after: f32 = g.iter().map(|t| t.to_vec1::<f32>().unwrap()[0].powi(2)).sum::<f32>().sqrt();
        assert!((after - 1.0).abs() < 1e-5);
    }

    #[test]
    fn half_precision_parameters_step_through_f32_masters() {
        // bf16 cannot hold 1 - 1e-3: a plain bf16 update would leave the weight at 1.
        let w = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        let w = Var::from_tensor(&w.as_tensor().to_dtype(DType::BF16).unwrap()).unwrap();
        let params = vec![("w".to_string(), w.clone())];
        let mut opt = AdamW::new(&params, AdamWConfig::default()).unwrap();
        let g = Tensor::new(&[0.5f32], &Device::Cpu).unwrap().to_dtype(DType::BF16).unwrap();
        for _ in 0..10 {
            opt.step(&params, std::slice::from_ref(&g), 1e-3).unwrap();
        }
        let master = opt.master[0].as_ref().unwrap().to_vec1::<f32>().unwrap()[0];
        assert!((master - 0.99).abs() < 1e-5, "master {master}");
        let held = w.as_tensor().to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap()[0];
        assert!((held - master).abs() <= 2f32.powi(-9), "bf16 weight {held} is not the master's rounding");
        // A checkpoint carries the master; one without it is refused.
        let mut state = opt.state(&params);
        let mut again = AdamW::new(&params, AdamWConfig::default()).unwrap();
        again.load_state(&params, &state, opt.t).unwrap();
        assert_eq!(again.master[0].as_ref().unwrap().to_vec1::<f32>().unwrap()[0], master);
        state.remove("master.w");
        assert!(again.load_state(&params, &state, opt.t).unwrap_err().contains("master.w"));
    }
}
