//! Linear layers: dense, frozen (no weight gradient), quantized, each with an optional
//! LoRA adapter.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Module, Shape, Storage, Tensor};

/// How `x @ W^T` is computed.
#[derive(Debug, Clone)]
enum Kernel {
    /// Plain matmul: gradients flow to `x` and, when `W` is a variable, to `W`.
    Dense(Tensor),
    /// A matmul whose backward computes only the input gradient. A frozen base under LoRA
    /// would otherwise pay for a weight gradient nobody reads (about a third of a step).
    Frozen(FrozenMatmul),
    /// Quantized weights for fast inference; no gradients.
    Quantized(QMatMul),
}

/// Low-rank adapter: `y += scale * (x A^T) B^T` with `A: [r, in]`, `B: [out, r]`.
#[derive(Debug, Clone)]
pub struct Lora {
    pub a: Tensor,
    pub b: Tensor,
    pub scale: f64,
}

#[derive(Debug, Clone)]
pub struct Linear {
    kernel: Kernel,
    bias: Option<Tensor>,
    lora: Option<Lora>,
}

impl Linear {
    pub fn dense(w: Tensor, bias: Option<Tensor>) -> Self {
        Self { kernel: Kernel::Dense(w), bias, lora: None }
    }

    pub fn frozen(w: Tensor, bias: Option<Tensor>) -> Self {
        Self { kernel: Kernel::Frozen(FrozenMatmul { w }), bias, lora: None }
    }

    /// Quantize `w` (f32, `[out, in]`) to `dtype` for inference.
    pub fn quantized(w: &Tensor, bias: Option<Tensor>, dtype: GgmlDType) -> candle_core::Result<Self> {
        let q = QTensor::quantize(w, dtype)?;
        Ok(Self { kernel: Kernel::Quantized(QMatMul::from_qtensor(q)?), bias, lora: None })
    }

    /// Use already-quantized weights as they are.
    pub fn from_qtensor(q: std::sync::Arc<QTensor>, bias: Option<Tensor>) -> candle_core::Result<Self> {
        Ok(Self { kernel: Kernel::Quantized(QMatMul::from_arc(q)?), bias, lora: None })
    }

    pub fn with_lora(mut self, lora: Lora) -> Self {
        self.lora = Some(lora);
        self
    }

    pub fn lora(&self) -> Option<&Lora> {
        self.lora.as_ref()
    }

    /// `x: [.., in]` → `[.., out]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims().to_vec();
        let inner = *dims.last().expect("linear input has a last dimension");
        let x2 = x.reshape(((), inner))?;
        let mut y = match &self.kernel {
            Kernel::Dense(w) => x2.matmul(&w.t()?)?,
            Kernel::Frozen(op) => x2.apply_op1(op.clone())?,
            Kernel::Quantized(q) => q.forward(&x2)?,
        };
        if let Some(lora) = &self.lora {
            let delta = x2.matmul(&lora.a.t()?)?.matmul(&lora.b.t()?)?;
            y = (y + (delta * lora.scale)?)?;
        }
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        let mut out = dims;
        *out.last_mut().expect("non-empty") = y.dim(1)?;
        y.reshape(out)
    }
}

/// `x @ W^T` as a custom op so that its backward skips `dW`.
#[derive(Debug, Clone)]
struct FrozenMatmul {
    w: Tensor,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        // Rebuild a graph-free tensor over the input and let candle's gemm do the work.
        let x = match layout.contiguous_offsets() {
            Some((start, end)) => {
                let data = storage.as_slice::<f32>()?;
                Tensor::from_slice(&data[start..end], layout.shape(), &candle_core::Device::Cpu)?
            }
            None => candle_core::bail!("frozen-matmul wants a contiguous input"),
        };
        let y = x.matmul(&self.w.detach().t()?)?;
        let shape = y.shape().clone();
        let (storage, _) = y.storage_and_layout();
        match &*storage {
            Storage::Cpu(cpu) => Ok((cpu.clone(), shape)),
            _ => candle_core::bail!("frozen-matmul ran off the CPU"),
        }
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad_y: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_y.matmul(&self.w.detach())?))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    #[test]
    fn frozen_matches_dense_and_passes_input_gradient() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (5, 3), &dev)?;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 4, 3), &dev)?)?;
        let dense = Linear::dense(w.clone(), None).forward(x.as_tensor())?;
        let frozen = Linear::frozen(w.clone(), None).forward(x.as_tensor())?;
        let diff = (&dense - &frozen)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "forward differs by {diff}");
        let gd = dense.sqr()?.sum_all()?.backward()?;
        let gf = frozen.sqr()?.sum_all()?.backward()?;
        let (gd, gf) = (gd.get(&x).expect("dense grad"), gf.get(&x).expect("frozen grad"));
        let diff = (gd - gf)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "input gradients differ by {diff}");
        Ok(())
    }
}
