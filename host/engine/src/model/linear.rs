//! Linear layers: dense, frozen (no weight gradient), quantized, each with an optional
//! LoRA adapter.

use candle_core::quantized::{QMatMul, QTensor};
use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp1, Layout, Module, Shape, Storage, Tensor};

use crate::int8::Int8Matrix;

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
    /// eva's own 8-bit weights ([`Int8Matrix`]) for fast inference; no gradients.
    Int8(Int8Matmul),
}

/// What a layer's `x @ W^T` reads, as [`Linear::inference_weights`] gives it.
#[derive(Debug, Clone, Copy)]
pub enum InferenceWeights<'a> {
    /// `W` as a tensor (f32, or another float dtype).
    Dense(&'a Tensor),
    /// A GGUF file's own quantized `W`, computed by candle's quantized kernels.
    Quantized(&'a Arc<QTensor>),
    /// eva's 8-bit `W`.
    Int8(&'a Arc<Int8Matrix>),
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

    /// Quantize `w` (f32, `[out, in]`) to eva's 8-bit format for inference.
    pub fn int8(w: &Tensor, bias: Option<Tensor>) -> candle_core::Result<Self> {
        let (rows, cols) = w.dims2()?;
        let m = Int8Matrix::quantize(&w.flatten_all()?.to_vec1::<f32>()?, rows, cols);
        Ok(Self { kernel: Kernel::Int8(Int8Matmul(Arc::new(m))), bias, lora: None })
    }

    /// The 8-bit weights and the bias, when this layer is an [`Linear::int8`] one.
    pub fn as_int8(&self) -> Option<(&Arc<Int8Matrix>, Option<&Tensor>)> {
        match (&self.kernel, &self.lora) {
            (Kernel::Int8(m), None) => Some((&m.0, self.bias.as_ref())),
            _ => None,
        }
    }

    /// The weights inference computes with, and the bias, for a layer without an adapter
    /// (`None` for a LoRA or frozen training layer).
    pub fn inference_weights(&self) -> Option<(InferenceWeights<'_>, Option<&Tensor>)> {
        if self.lora.is_some() {
            return None;
        }
        let w = match &self.kernel {
            Kernel::Dense(w) => InferenceWeights::Dense(w),
            Kernel::Frozen(_) => return None,
            Kernel::Quantized(QMatMul::QTensor(q)) => InferenceWeights::Quantized(q),
            Kernel::Quantized(QMatMul::Tensor(w) | QMatMul::TensorF16(w)) => InferenceWeights::Dense(w),
            Kernel::Int8(m) => InferenceWeights::Int8(&m.0),
        };
        Some((w, self.bias.as_ref()))
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
            Kernel::Int8(op) => x2.apply_op1_no_bwd(op)?,
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

impl FrozenMatmul {
    /// The product on any backend: `x: [n, in]` times the weight's transposed layout.
    fn product<S: BackendStorage>(
        &self,
        x: &S,
        x_layout: &Layout,
        weights: impl FnOnce(&Storage) -> Option<&S>,
    ) -> candle_core::Result<(S, Shape)> {
        let (n, k) = x_layout.shape().dims2()?;
        let (storage, w_layout) = self.w.storage_and_layout();
        let (out, cols) = w_layout.shape().dims2()?;
        if cols != k {
            candle_core::bail!("frozen-matmul: inputs of {k} values for a matrix of {cols} columns");
        }
        let Some(w) = weights(&storage) else {
            candle_core::bail!("frozen-matmul: the input and the weights are on different devices");
        };
        let y = x.matmul(w, (1, n, out, k), x_layout, &w_layout.transpose(0, 1)?)?;
        Ok((y, Shape::from((n, out))))
    }
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.product(x, layout, |s| match s {
            Storage::Cpu(w) => Some(w),
            _ => None,
        })
    }

    fn cuda_fwd(&self, x: &CudaStorage, layout: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        self.product(x, layout, |s| match s {
            Storage::Cuda(w) => Some(w),
            _ => None,
        })
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad_y: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_y.matmul(&self.w.detach())?))
    }
}

/// `x @ W^T` with 8-bit weights, on candle tensors.
#[derive(Debug, Clone)]
struct Int8Matmul(Arc<Int8Matrix>);

impl CustomOp1 for Int8Matmul {
    fn name(&self) -> &'static str {
        "int8-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, cols) = layout.shape().dims2()?;
        if cols != self.0.cols() {
            candle_core::bail!("int8-matmul: inputs of {cols} values for a matrix of {} columns", self.0.cols());
        }
        let x = match layout.contiguous_offsets() {
            Some((start, end)) => &storage.as_slice::<f32>()?[start..end],
            None => candle_core::bail!("int8-matmul wants a contiguous input"),
        };
        Ok((CpuStorage::F32(self.0.matmul(x, n)), Shape::from((n, self.0.rows()))))
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
