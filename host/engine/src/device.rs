//! Where models run and in what precision they train.
//!
//! The CPU always; an NVIDIA GPU when the engine is built with the `cuda` feature
//! (candle's CUDA backend). Weights are read on the CPU and moved once, so loading is the
//! same code everywhere; eva's own CPU kernels (the 8-bit decoder) stay on the CPU.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A device by name: `cpu`, `cuda` (the first GPU) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Placement {
    #[default]
    Cpu,
    Cuda(usize),
}

impl Placement {
    /// Open the device; a clear error when this build has no CUDA or the GPU is missing.
    pub fn device(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(_) if !cfg!(feature = "cuda") => Err(Error::Request(format!(
                "--device {self}: this eva-host was built without CUDA; rebuild it with \
                 `cargo build --release -p eva-host --features cuda` (see README, \"GPUs\")"
            ))),
            Self::Cuda(ordinal) => {
                Device::new_cuda(ordinal).map_err(|e| Error::Request(format!("opening {self}: {e}")))
            }
        }
    }
}

static DEFAULT: OnceLock<Placement> = OnceLock::new();
static OPENED: OnceLock<Device> = OnceLock::new();

/// Choose, once per process, where [`LanguageModel::load`](crate::LanguageModel::load)
/// puts models (the CPU unless called). Later calls change nothing.
pub fn set_default(placement: Placement) {
    let _ = DEFAULT.set(placement);
}

/// The default device, opened on first use and shared afterwards: tensors from two
/// separately opened CUDA contexts could not meet in one op.
pub fn default_device() -> Result<Device> {
    if let Some(device) = OPENED.get() {
        return Ok(device.clone());
    }
    let device = DEFAULT.get().copied().unwrap_or_default().device()?;
    Ok(OPENED.get_or_init(|| device).clone())
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}

impl FromStr for Placement {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("unknown device `{s}` (cpu, cuda or cuda:N)");
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => other.strip_prefix("cuda:").and_then(|n| n.parse().ok()).map(Self::Cuda).ok_or_else(bad),
        }
    }
}

impl TryFrom<String> for Placement {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl From<Placement> for String {
    fn from(p: Placement) -> String {
        p.to_string()
    }
}

/// The dtype of a trainable copy. The optimizer keeps f32 master weights and moments
/// for half-precision copies, and log-probs are normalised in f32, so only the forward
/// and backward passes run in half precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl Precision {
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        })
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            other => Err(format!("unknown precision `{other}` (f32, bf16)")),
        }
    }
}

/// `t` in f32 when it is a half type, else as it is: for sums over many terms (softmax
/// normalisers), which half precision would round away.
pub(crate) fn widen(t: &Tensor) -> candle_core::Result<Tensor> {
    match t.dtype() {
        DType::BF16 | DType::F16 => t.to_dtype(DType::F32),
        _ => Ok(t.clone()),
    }
}

/// `cpu`, `cuda:N` or `metal:N`, for messages.
pub fn name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Can `device` compute matmuls in `dtype`? candle's CPU backend has no bf16 matmul.
pub fn check_dtype(device: &Device, dtype: DType) -> Result<()> {
    if device.is_cpu() && dtype == DType::BF16 {
        return Err(Error::Request(
            "bf16 training needs a GPU (`--device cuda`): candle's CPU matmul has no bf16; use f32 on the CPU".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements_parse_and_print() {
        for (text, p) in [("cpu", Placement::Cpu), ("CUDA", Placement::Cuda(0)), ("cuda:3", Placement::Cuda(3))] {
            assert_eq!(text.parse::<Placement>(), Ok(p));
        }
        assert_eq!(Placement::Cuda(3).to_string(), "cuda:3");
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1"] {
            assert!(bad.parse::<Placement>().unwrap_err().contains("cpu, cuda or cuda:N"), "{bad}");
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_get_it() {
        let err = Placement::Cuda(0).device().unwrap_err().to_string();
        assert!(err.contains("built without CUDA") && err.contains("--features cuda"), "{err}");
    }

    #[test]
    fn bf16_is_refused_on_the_cpu_only() {
        assert!(check_dtype(&Device::Cpu, DType::BF16).unwrap_err().to_string().contains("needs a GPU"));
        check_dtype(&Device::Cpu, DType::F32).unwrap();
        check_dtype(&Device::Cpu, DType::F16).unwrap();
    }
}
