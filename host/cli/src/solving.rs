//! The solver's flags ([`SolverFlags`]), shared by `train` and `run`.

use clap::Args;
use eva_engine::Precision;

/// How the solver trains: loss, optimizer, schedule, LoRA. Defaults:
/// `eva_loop::settings::SolverSettings`.
#[derive(Args, Debug, Clone, Default, serde::Serialize)]
pub struct SolverFlags {
    /// dpo, ipo, simpo, orpo or hinge.
    #[arg(long)]
    loss: Option<String>,
    /// β of DPO/IPO/SimPO/hinge (default 0.1; SimPO 2.0).
    #[arg(long)]
    beta: Option<f64>,
    /// SimPO's target margin γ (default 1.0).
    #[arg(long)]
    gamma: Option<f64>,
    /// ORPO's weight λ of the odds-ratio term (default 0.1).
    #[arg(long)]
    lambda: Option<f64>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Passes over the pairs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Pairs per forward/backward pass.
    #[arg(long)]
    micro_batch: Option<usize>,
    /// Micro-batches per optimizer step.
    #[arg(long)]
    grad_accum: Option<usize>,
    /// Share of the steps spent warming the learning rate up, in [0, 1).
    #[arg(long)]
    warmup_ratio: Option<f64>,
    /// cosine, linear or constant decay after warm-up.
    #[arg(long)]
    decay: Option<String>,
    /// Clip the global gradient norm (0: off).
    #[arg(long)]
    max_grad_norm: Option<f64>,
    /// AdamW's decoupled weight decay.
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Seed of the data order and of LoRA's initialisation (and, in `run`, of sampling).
    #[arg(long)]
    seed: Option<u64>,
    /// Checkpoint every N optimizer steps (and at the end).
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Train every weight instead of LoRA adapters.
    #[arg(long)]
    full: bool,
    /// LoRA's rank.
    #[arg(long)]
    lora_rank: Option<usize>,
    /// LoRA's α (the adapters are scaled by α / rank).
    #[arg(long)]
    lora_alpha: Option<f64>,
    /// Comma-separated projections that get adapters (q_proj, k_proj, v_proj, o_proj,
    /// gate_proj, up_proj, down_proj).
    #[arg(long)]
    lora_targets: Option<String>,
    /// Precision of the trainable copy: f32, or bf16 on a GPU (`--device cuda`; the
    /// optimizer keeps f32 master weights and moments, log-probs are summed in f32).
    #[arg(long)]
    precision: Option<Precision>,
}

#[cfg(test)]
mod tests {
    use eva_loop::settings::Overlay;

    #[test]
    fn every_flag_is_a_setting() {
        let keys = eva_loop::settings::SolverSettings::default().keys();
        let flags = serde_json::to_value(super::SolverFlags::default()).unwrap();
        for id in flags.as_object().unwrap().keys() {
            assert!(keys.contains(id), "--{id} is no solver setting");
        }
    }
}
