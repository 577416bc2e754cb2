//! eva's solver: turns preference pairs into a better policy.
//!
//! - [`pairs`]: preference pairs in the common JSONL format, tokenized through the model's
//!   chat template.
//! - [`loss`]: DPO, IPO, SimPO, ORPO and hinge on summed completion log-probs.
//! - [`optim`]: AdamW with open state, warm-up + cosine/linear decay, global-norm clipping.
//! - [`trainer`]: micro-batches by length, gradient accumulation, per-step metrics (JSONL),
//!   atomic checkpoints and exact resume. Reference log-probs are computed once per pair
//!   set ([`compute_reference`]) so that each step runs only the policy.

pub mod loss;
pub mod optim;
pub mod pairs;
pub mod trainer;

pub use loss::{LossOutput, PairLogProbs, PreferenceLoss};
pub use optim::{AdamWConfig, Decay};
pub use pairs::{PreferencePair, Text, TokenizedPair, read_pairs, tokenize};
pub use trainer::{
    SolverConfig, SolverError, StepMetrics, TrainState, Trainer, cached_reference, compute_reference, epoch_order,
};
