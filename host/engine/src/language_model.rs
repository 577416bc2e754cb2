//! A loaded model ready for inference: transformer, tokenizer and chat template.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::chat::{ChatTemplate, Message};
use crate::decode::Int8Decoder;
use crate::error::{Error, Result, TensorContext};
use crate::generate::{Completion, GenerationParams, generate};
use crate::load::ModelFiles;
use crate::logprobs::{Scored, SequenceLogProbs, sequence_logprobs};
use crate::model::{Kernels, Linear, Transformer};
use crate::tokenizer::Tokenizer;
use crate::train::{Adaptation, TrainableModel};
use crate::weights::Weights;

/// How inference stores the projection weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightFormat {
    /// Exact: the same f32 weights the trainer uses.
    #[default]
    F32,
    /// Requantized to 8 bits (32-value blocks, f32 scales): a quarter of the memory
    /// traffic; generation runs on eva's own 8-bit kernels without candle
    /// ([`Int8Decoder`]), the fastest for single-stream and batched sampling.
    Q8_0,
    /// The GGUF file's own quantization (f32 where the file has none), computed as
    /// llama.cpp does: activations quantized to 8 bits per block.
    Native,
}

fn dense(w: &Tensor, b: Option<&Tensor>) -> Linear {
    Linear::dense(w.clone(), b.cloned())
}

impl std::str::FromStr for WeightFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Self::F32),
            "q8_0" | "q8" => Ok(Self::Q8_0),
            "native" => Ok(Self::Native),
            other => Err(format!("unknown weight format `{other}` (f32, q8_0, native)")),
        }
    }
}

pub struct LanguageModel {
    pub path: PathBuf,
    pub transformer: Transformer,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<ChatTemplate>,
    /// How the transformer stores its projections.
    pub format: WeightFormat,
    /// The f32 weights, kept for building trainable copies.
    pub weights: Weights,
    /// Generation without candle, when the weights are 8-bit ([`WeightFormat::Q8_0`]).
    pub decoder: Option<Int8Decoder>,
}

impl LanguageModel {
    /// Load a GGUF file or a Hugging Face directory for inference on the CPU.
    pub fn load(path: &Path, format: WeightFormat) -> Result<Self> {
        crate::threads::threads();
        let device = Device::Cpu;
        let files = ModelFiles::open(path, &device)?;
        Self::from_files(files, format)
    }

    pub fn from_files(files: ModelFiles, format: WeightFormat) -> Result<Self> {
        let quantized = &files.weights.quantized;
        let transformer = Transformer::build(&files.config, &files.weights, Kernels::Fused, &mut |name, w, b| match (
            format,
            quantized.get(&format!("{name}.weight")),
        ) {
            (WeightFormat::Native, Some(q)) => Linear::from_qtensor(q.clone(), b.cloned()).step("quantized weights"),
            (WeightFormat::Q8_0, _) => Linear::int8(w, b.cloned()).step("quantizing to 8 bits"),
            _ => Ok(dense(w, b)),
        })?;
        let decoder = Int8Decoder::from_transformer(&transformer).transpose().step("the 8-bit decoder")?;
        if decoder.is_some() {
            tracing::info!(kernel = crate::int8::kernel().name(), "generation runs on the 8-bit decoder");
        }
        Ok(Self {
            path: files.path,
            format,
            decoder,
            transformer,
            tokenizer: files.tokenizer,
            chat_template: files.chat_template,
            weights: files.weights,
        })
    }

    /// The inference transformer over the exact f32 weights: this model's own when its
    /// format is f32, else one built over the same tensors (shared, not copied), for what
    /// must not see quantization, such as the solver's reference log-probs.
    pub fn exact_transformer(&self) -> Result<Cow<'_, Transformer>> {
        match self.format {
            WeightFormat::F32 => Ok(Cow::Borrowed(&self.transformer)),
            _ => Transformer::build(&self.transformer.config, &self.weights, Kernels::Fused, &mut |_, w, b| {
                Ok(dense(w, b))
            })
            .map(Cow::Owned),
        }
    }

    /// The token ids of a conversation rendered with the model's chat template, ending
    /// where the assistant's answer begins.
    pub fn chat_prompt(&self, messages: &[Message]) -> Result<Vec<u32>> {
        let template = self.chat_template.as_ref().ok_or_else(|| {
            Error::Request(format!(
                "{} has no chat template: it is a base model; pass plain text prompts",
                self.path.display()
            ))
        })?;
        let text = template.render(messages, true)?;
        self.tokenizer.encode_prompt(&text)
    }

    /// `params.n` sampled completions for each prompt.
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        params: &GenerationParams,
        on_tokens: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<Completion>>> {
        generate(&self.transformer, self.decoder.as_ref(), &self.tokenizer, prompts, params, on_tokens)
    }

    /// Log-probabilities of each completion after its prompt.
    pub fn logprobs(&self, seqs: &[Scored<'_>]) -> Result<Vec<SequenceLogProbs>> {
        sequence_logprobs(&self.transformer, seqs, 4096)
    }

    /// A trainable copy of this model's weights.
    pub fn trainable(&self, adaptation: Adaptation, seed: u64) -> Result<TrainableModel> {
        TrainableModel::new(&self.transformer.config, &self.weights, adaptation, seed)
    }
}
