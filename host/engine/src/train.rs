//! A trainable copy of a model: full fine-tuning or LoRA, and saving it back as a Hugging
//! Face directory.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use rand::{SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::chat::ChatTemplate;
use crate::config::ModelConfig;
use crate::error::{Error, Result, TensorContext};
use crate::model::{Kernels, Linear, Lora, Transformer};
use crate::tokenizer::Tokenizer;
use crate::weights::Weights;

/// Which weights train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Adaptation {
    /// Every tensor is a variable.
    Full,
    /// Low-rank adapters on the named projections; the base is frozen and computes no
    /// weight gradients.
    Lora(LoraConfig),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    /// Projection names: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj.
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self { rank: 8, alpha: 16.0, targets: vec!["q_proj".into(), "v_proj".into()] }
    }
}

pub const LORA_TARGETS: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

impl LoraConfig {
    /// A rank of at least 1, a positive α and known, non-empty targets: checked before a
    /// run starts, not when its first training step comes.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Request(m));
        if self.rank == 0 {
            return bad("LoRA rank must be at least 1".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad(format!("LoRA alpha must be a positive number, not {}", self.alpha));
        }
        if self.targets.is_empty() {
            return bad(format!("no LoRA targets (known: {})", LORA_TARGETS.join(", ")));
        }
        if let Some(t) = self.targets.iter().find(|t| !LORA_TARGETS.contains(&t.as_str())) {
            return bad(format!("unknown LoRA target `{t}` (known: {})", LORA_TARGETS.join(", ")));
        }
        Ok(())
    }
}

/// The model with its trainable variables, in a forward pass whose every op has a backward.
pub struct TrainableModel {
    pub model: Transformer,
    /// Trainable tensors by name (HF names; LoRA: `{module}.lora_A.weight`).
    pub params: Vec<(String, Var)>,
    pub adaptation: Adaptation,
    /// The frozen base (LoRA) or the initial weights (full).
    base: Weights,
}

impl TrainableModel {
    /// `seed` initialises LoRA's A matrices (B starts at zero, so the adapted model starts
    /// equal to the base).
    pub fn new(config: &ModelConfig, weights: &Weights, adaptation: Adaptation, seed: u64) -> Result<Self> {
        let mut params = Vec::new();
        let model = match &adaptation {
            Adaptation::Full => {
                let mut vars = Weights::from_tensors(HashMap::new(), weights.source.clone());
                let mut names: Vec<&String> = weights.tensors.keys().collect();
                names.sort();
                for name in names {
                    let var = Var::from_tensor(&weights.tensors[name]).step("trainable copy")?;
                    vars.tensors.insert(name.clone(), var.as_tensor().clone());
                    params.push((name.clone(), var));
                }
                Transformer::build(config, &vars, Kernels::Differentiable, &mut |_, w, b| {
                    Ok(Linear::dense(w.clone(), b.cloned()))
                })?
            }
            Adaptation::Lora(lora) => {
                lora.check()?;
                let mut rng = StdRng::seed_from_u64(seed);
                let scale = lora.alpha / lora.rank as f64;
                Transformer::build(config, weights, Kernels::Differentiable, &mut |name, w, b| {
                    let base = Linear::frozen(w.clone(), b.cloned());
                    let module = name.rsplit('.').next().unwrap_or(name);
                    if !lora.targets.iter().any(|t| t == module) || name.starts_with("model.embed_tokens") {
                        return Ok(base);
                    }
                    let (out, inp) = w.dims2().step("LoRA base shape")?;
                    // Kaiming-uniform-like A, zero B (as PEFT does).
                    let bound = 1.0 / (inp as f32).sqrt();
                    let a: Vec<f32> = crate::weights::normal(&mut rng, lora.rank * inp, bound / 3f32.sqrt());
                    // Adapters in the base's dtype: the optimizer keeps f32 masters of half ones.
                    let a = Tensor::from_vec(a, (lora.rank, inp), w.device())
                        .and_then(|a| Var::from_tensor(&a.to_dtype(w.dtype())?))
                        .step("LoRA A")?;
                    let bm = Var::zeros((out, lora.rank), w.dtype(), w.device()).step("LoRA B")?;
                    let lin = base.with_lora(Lora { a: a.as_tensor().clone(), b: bm.as_tensor().clone(), scale });
                    params.push((format!("{name}.lora_A.weight"), a));
                    params.push((format!("{name}.lora_B.weight"), bm));
                    Ok(lin)
                })?
            }
        };
        Ok(Self { model, params, adaptation, base: weights.clone() })
    }

    /// The model with the PEFT LoRA adapter in `dir` (`adapter_config.json`,
    /// `adapter_model.safetensors`, as PEFT or another trainer saved it) over `weights`.
    /// Every adapter tensor must match one of the model's LoRA modules and every module
    /// must have its tensors: a partial adapter is refused, not half applied.
    pub fn with_adapter(config: &ModelConfig, weights: &Weights, dir: &Path) -> Result<Self> {
        let corrupt = |reason: String| Error::Corrupt { path: dir.to_owned(), reason };
        let path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
        let peft: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| corrupt(format!("adapter_config.json: {e}")))?;
        let field = |key: &str| peft.get(key).ok_or_else(|| corrupt(format!("adapter_config.json has no `{key}`")));
        let rank = field("r")?.as_u64().ok_or_else(|| corrupt("`r` is not a count".into()))? as usize;
        let alpha = field("lora_alpha")?.as_f64().ok_or_else(|| corrupt("`lora_alpha` is not a number".into()))?;
        let targets = match field("target_modules")? {
            serde_json::Value::Array(a) => a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect(),
            other => return Err(corrupt(format!("`target_modules` is {other}, not a list of names"))),
        };
        if peft.get("use_dora").and_then(|d| d.as_bool()) == Some(true) {
            return Err(corrupt("DoRA adapters are not LoRA: eva cannot apply them".into()));
        }
        let model = Self::new(config, weights, Adaptation::Lora(LoraConfig { rank, alpha, targets }), 0)?;
        let file = dir.join("adapter_model.safetensors");
        let mut tensors = candle_core::safetensors::load(&file, &Device::Cpu)
            .map_err(|e| Error::Corrupt { path: file.clone(), reason: e.to_string() })?;
        for (name, var) in &model.params {
            let key = format!("base_model.model.{name}");
            let t = tensors.remove(&key).ok_or_else(|| corrupt(format!("adapter_model.safetensors has no `{key}`")))?;
            if t.dims() != var.dims() {
                return Err(corrupt(format!("`{key}` is {:?}, the model's is {:?}", t.dims(), var.dims())));
            }
            var.set(&t.to_device(var.device()).and_then(|t| t.to_dtype(var.dtype())).step("adapter tensor")?)
                .step("adapter tensor")?;
        }
        if let Some(extra) = tensors.keys().next() {
            return Err(corrupt(format!(
                "`{extra}` matches no LoRA module of the model (targets: {:?})",
                peft["target_modules"]
            )));
        }
        Ok(model)
    }

    pub fn num_trainable(&self) -> usize {
        self.params.iter().map(|(_, v)| v.elem_count()).sum()
    }

    pub fn device(&self) -> &Device {
        self.model.device()
    }

    /// The current weights under Hugging Face names, LoRA merged into the base
    /// (`W + scale · B A`).
    pub fn merged_weights(&self) -> Result<HashMap<String, Tensor>> {
        match &self.adaptation {
            Adaptation::Full => Ok(self.params.iter().map(|(n, v)| (n.clone(), v.as_tensor().detach())).collect()),
            Adaptation::Lora(lora) => {
                let mut out = self.base.tensors.clone();
                let scale = lora.alpha / lora.rank as f64;
                let vars: HashMap<&str, &Var> = self.params.iter().map(|(n, v)| (n.as_str(), v)).collect();
                for (name, a) in &vars {
                    let Some(module) = name.strip_suffix(".lora_A.weight") else { continue };
                    let b = vars[format!("{module}.lora_B.weight").as_str()];
                    let w = format!("{module}.weight");
                    let delta = (b.as_tensor().matmul(a.as_tensor()).step("LoRA merge")? * scale).step("LoRA merge")?;
                    let merged = (&out[&w] + delta).step("LoRA merge")?;
                    out.insert(w, merged);
                }
                Ok(out)
            }
        }
    }

    /// Write a Hugging Face directory (atomically: into a sibling, then swapped in).
    /// LoRA is merged unless `adapter_only`, which writes a PEFT adapter instead.
    pub fn save_hf(
        &self,
        dir: &Path,
        tokenizer: Option<&Tokenizer>,
        template: Option<&ChatTemplate>,
        adapter_only: bool,
    ) -> Result<()> {
        let _span = tracing::info_span!("save model", dir = %dir.display()).entered();
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path: path.clone(), source }
        };
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let tmp = crate::atomic::temp_dir_in(parent, ".eva-save-").map_err(io(parent))?;
        let write_json = |name: &str, value: &serde_json::Value| -> Result<()> {
            let p = tmp.path().join(name);
            std::fs::write(&p, serde_json::to_string_pretty(value).expect("json")).map_err(io(&p))
        };
        let config = &self.model.config;
        match (&self.adaptation, adapter_only) {
            (Adaptation::Lora(lora), true) => {
                let tensors: HashMap<String, Tensor> = self
                    .params
                    .iter()
                    .map(|(n, v)| (format!("base_model.model.{n}"), v.as_tensor().detach()))
                    .collect();
                save_safetensors(&tensors, &tmp.path().join("adapter_model.safetensors"))?;
                write_json(
                    "adapter_config.json",
                    &serde_json::json!({
                        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": lora.rank, "lora_alpha": lora.alpha,
                        "target_modules": lora.targets, "lora_dropout": 0.0, "bias": "none",
                        "fan_in_fan_out": false, "base_model_name_or_path": self.base.source.display().to_string(),
                    }),
                )?;
            }
            _ => {
                let mut tensors = self.merged_weights()?;
                if config.tie_word_embeddings {
                    tensors.remove("lm_head.weight");
                }
                save_safetensors(&tensors, &tmp.path().join("model.safetensors"))?;
            }
        }
        let bos = tokenizer.and_then(|t| t.bos);
        let eos = tokenizer.map(|t| t.eos.clone()).unwrap_or_default();
        write_json("config.json", &config.to_hf_json(bos, &eos))?;
        write_json("generation_config.json", &serde_json::json!({"bos_token_id": bos, "eos_token_id": eos}))?;
        if let Some(tok) = tokenizer {
            tok.save(&tmp.path().join("tokenizer.json"))?;
            let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i));
            write_json(
                "tokenizer_config.json",
                &serde_json::json!({
                    "tokenizer_class": "PreTrainedTokenizerFast",
                    "bos_token": text(bos),
                    "eos_token": text(eos.first().copied()),
                    "add_bos_token": tok.add_bos,
                    "chat_template": template.map(|t| t.source.clone()),
                }),
            )?;
        }
        let kept = tmp.keep();
        crate::atomic::swap_dir(&kept, dir).map_err(io(dir))
    }
}

/// Saved in f32 from host memory, whatever the training precision and device: the
/// config says `float32`, and every loader reads it.
fn save_safetensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let contiguous: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.to_device(&Device::Cpu)?.to_dtype(candle_core::DType::F32)?.contiguous()?)))
        .collect::<candle_core::Result<_>>()
        .step("preparing tensors to save")?;
    candle_core::safetensors::save(&contiguous, path)
        .map_err(|e| Error::Corrupt { path: path.to_owned(), reason: e.to_string() })?;
    // safetensors writes through a tempfile (0600): the model is not a secret.
    crate::atomic::make_ordinary(path).map_err(|source| Error::Io { path: path.to_owned(), source })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::config::Architecture;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// A saved model reads like any directory the user makes: 0777 / 0666 less the umask,
    /// not tempfile's private modes.
    #[test]
    fn a_saved_model_directory_honours_the_umask() {
        let umask = crate::atomic::current_umask();
        let config = ModelConfig::tiny(Architecture::Llama);
        let weights = Weights::random(&config, 1, &Device::Cpu).unwrap();
        let model = TrainableModel::new(&config, &weights, Adaptation::Full, 0).unwrap();
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("model");
        model.save_hf(&dir, None, None, false).unwrap();
        assert_eq!(mode(&dir), 0o777 & !umask, "umask {umask:03o}");
        for name in ["model.safetensors", "config.json", "generation_config.json"] {
            assert_eq!(mode(&dir.join(name)), 0o666 & !umask, "{name}");
        }
        // Saving again swaps a new directory in with the same mode.
        model.save_hf(&dir, None, None, false).unwrap();
        assert_eq!(mode(&dir), 0o777 & !umask);
    }

    /// An adapter saved by eva reads back as the same model; a damaged or foreign one is
    /// refused by name.
    #[test]
    fn a_saved_adapter_reads_back_as_the_same_model() {
        let config = ModelConfig::tiny(Architecture::Llama);
        let weights = Weights::random(&config, 1, &Device::Cpu).unwrap();
        let lora = LoraConfig { rank: 2, alpha: 4.0, targets: vec!["q_proj".into(), "down_proj".into()] };
        let model = TrainableModel::new(&config, &weights, Adaptation::Lora(lora), 7).unwrap();
        // B starts at zero: give it values so that the update is not the identity.
        for (name, var) in &model.params {
            if name.ends_with("lora_B.weight") {
                var.set(&(var.as_tensor().ones_like().unwrap() * 0.01).unwrap()).unwrap();
            }
        }
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("adapter");
        model.save_hf(&dir, None, None, true).unwrap();
        let back = TrainableModel::with_adapter(&config, &weights, &dir).unwrap();
        let (want, got) = (model.merged_weights().unwrap(), back.merged_weights().unwrap());
        for (name, w) in &want {
            let diff = (w - &got[name]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert_eq!(diff, 0.0, "{name}");
        }
        let mut peft: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("adapter_config.json")).unwrap()).unwrap();
        peft["target_modules"] = serde_json::json!(["q_proj"]);
        std::fs::write(dir.join("adapter_config.json"), peft.to_string()).unwrap();
        let err = TrainableModel::with_adapter(&config, &weights, &dir).err().unwrap().to_string();
        assert!(err.contains("down_proj.lora_") && err.contains("matches no LoRA module"), "{err}");
    }
}
