//! A loaded model ready for inference: transformer, tokenizer and chat template.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::chat::{ChatTemplate, Message};
use crate::decode::Int8Decoder;
use crate::device::Precision;
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
    /// The GGUF file's own quantized matrices (f32 where the file has none), multiplied
    /// with candle's CPU kernels, which follow llama.cpp's scheme: activations quantized
    /// per block to the 8-bit type llama.cpp pairs with the weights' type (Q8_1 for
    /// Q4_1), integer dot products per block. The rest of the forward pass (norms, rope,
    /// attention over an f32 KV cache) is eva's own, so the numbers are close to
    /// llama.cpp's but not the same bits. Generation runs on the [`Int8Decoder`], whose
    /// rows do not depend on the rest of their batch.
    Native,
}

fn dense(w: &Tensor, b: Option<&Tensor>) -> Linear {
    Linear::dense(w.clone(), b.cloned())
}

impl WeightFormat {
    /// Only f32 runs off the CPU: the quantized formats are eva's and llama.cpp's CPU
    /// kernels.
    pub fn check_device(self, device: &Device) -> Result<()> {
        if self != Self::F32 && !device.is_cpu() {
            return Err(Error::Request(format!(
                "--weights {self} runs on the CPU's kernels only; on {} models run in f32",
                crate::device::name(device)
            )));
        }
        Ok(())
    }
}

impl std::fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Q8_0 => "q8_0",
            Self::Native => "native",
        })
    }
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
    /// Generation without candle's graph, when the weights are quantized
    /// ([`WeightFormat::Q8_0`], or [`WeightFormat::Native`] on a quantized GGUF file).
    pub decoder: Option<Int8Decoder>,
}

impl LanguageModel {
    /// Load a GGUF file or a Hugging Face directory for inference on the process's
    /// default device ([`crate::device::set_default`]; the CPU unless chosen).
    pub fn load(path: &Path, format: WeightFormat) -> Result<Self> {
        Self::load_on(path, format, &crate::device::default_device()?)
    }

    /// Load a model onto `device`: read on the CPU, then moved there in f32. Only f32
    /// runs off the CPU; the quantized formats are eva's and llama.cpp's CPU kernels.
    pub fn load_on(path: &Path, format: WeightFormat, device: &Device) -> Result<Self> {
        crate::threads::threads();
        let mut files = ModelFiles::open(path, &Device::Cpu)?;
        format.check_device(device)?;
        if !device.is_cpu() {
            files.weights = files.weights.to(device, DType::F32)?;
        }
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
        let decoder = Int8Decoder::from_transformer(&transformer).transpose().step("the quantized decoder")?;
        if decoder.is_some() {
            tracing::info!(kernel = crate::int8::kernel().name(), %format, "generation runs on the quantized decoder");
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

    /// An f32 trainable copy of this model's weights, on the model's device.
    pub fn trainable(&self, adaptation: Adaptation, seed: u64) -> Result<TrainableModel> {
        self.trainable_in(adaptation, seed, Precision::F32)
    }

    /// This model with the PEFT LoRA adapter saved in `dir` (to merge and save it).
    pub fn with_adapter(&self, dir: &Path) -> Result<TrainableModel> {
        TrainableModel::with_adapter(&self.transformer.config, &self.weights, dir)
    }

    /// A trainable copy of this model's weights, on the model's device, in `precision`.
    pub fn trainable_in(&self, adaptation: Adaptation, seed: u64, precision: Precision) -> Result<TrainableModel> {
        let (device, dtype) = (self.transformer.device(), precision.dtype());
        crate::device::check_dtype(device, dtype)?;
        let weights = match dtype {
            DType::F32 => Cow::Borrowed(&self.weights),
            _ => Cow::Owned(self.weights.to(device, dtype)?),
        };
        TrainableModel::new(&self.transformer.config, &weights, adaptation, seed)
    }
}
