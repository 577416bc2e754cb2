//! 8-bit matrix products for inference on the CPU: weights quantized once per 32-value
//! block (like GGUF's Q8_0, with f32 scales), activations quantized per block on the fly,
//! integer dot products per block.
//!
//! candle 0.11's Q8_0 kernel converts an f16 scale per block, uses 256-bit AVX2 only and
//! reduces every row horizontally; this one keeps f32 scales and picks, at run time
//! ([`kernel`]), AVX-512 VNNI (`vpdpbusd`), AVX2 (`vpmaddubsw`) or portable Rust: all three
//! compute the same integers.
//!
//! Layout: rows are interleaved in tiles of 16 (the lanes of a 512-bit register), four
//! bytes of each row's block at a time, so one `vpdpbusd` with four broadcast activation
//! bytes advances 16 rows at once and no horizontal sum is ever needed; each weight
//! register is used for every input of the call, so a batch of decode rows costs little
//! more memory traffic than one (a tile takes two 256-bit registers in the AVX2 kernel).
//! Values are stored as `q + 128` (unsigned, as `vpdpbusd` wants), which adds `128 · Σ a`
//! to a block's integer dot; it is removed with the activation block's sum.

use rayon::prelude::*;

/// Values per quantization block.
pub const BLOCK: usize = 32;
/// Rows per tile: the 32-bit lanes of a 512-bit register.
const TILE: usize = 16;
/// Bytes of one row's block that one lane takes at a time.
const LANE_BYTES: usize = 4;

/// A weight matrix `[rows, cols]` in 8 bits per value plus one f32 scale per block.
#[derive(Debug, Clone)]
pub struct Int8Matrix {
    rows: usize,
    cols: usize,
    /// Blocks per row (`cols` rounded up to a multiple of [`BLOCK`]).
    blocks: usize,
    /// Per tile, per block: `TILE × BLOCK` bytes, four bytes of each row in turn (`q + 128`).
    quants: Vec<u8>,
    /// Per tile, per block: the `TILE` rows' scales.
    scales: Vec<f32>,
}

/// The activations of one call, quantized per block.
struct Int8Inputs {
    n: usize,
    /// `n × blocks × BLOCK` values, zero-padded.
    quants: Vec<i8>,
    /// Per input and block: its scale, and `128 · Σ q` (what the stored `+ 128` adds).
    scales: Vec<f32>,
    corrections: Vec<i32>,
}

/// Quantize `x` to `q` in `[-127, 127]` with `x ≈ q · scale`; returns the scale.
/// Ties round to even, as the SIMD conversion does, so every kernel sees the same
/// integers.
fn quantize_block(x: &[f32], q: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = amax / 127.0;
    let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    for (q, &v) in q.iter_mut().zip(x) {
        *q = round_ties_even(v * inv) as i8;
    }
    scale
}

/// Round to the nearest integer, ties to even, for `|v| < 2^22` (here `|v| <= 127`):
/// adding and removing 1.5 · 2^23 leaves no fraction bits. `f32::round_ties_even` is a
/// library call on baseline x86-64.
fn round_ties_even(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}

/// Where the kernels write `y` (`[input][row]`): tasks on other threads write disjoint
/// rows of it.
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut f32,
    rows: usize,
}

// SAFETY: every task writes only the rows of its own tiles.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// Store `values` (one per row of a tile, padding rows included) as rows
    /// `row0..row0 + valid` of input `i`.
    ///
    /// # Safety
    /// `i` is an input of `y` and `row0 + valid <= rows`; no other thread writes them.
    unsafe fn store(&self, i: usize, row0: usize, valid: usize, values: &[f32; TILE]) {
        // SAFETY: in bounds by the caller's contract.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), self.ptr.add(i * self.rows + row0), valid) };
    }
}

impl Int8Matrix {
    /// Quantize an f32 matrix given row-major.
    pub fn quantize(w: &[f32], rows: usize, cols: usize) -> Self {
        assert_eq!(w.len(), rows * cols, "a [{rows}, {cols}] matrix");
        let blocks = cols.div_ceil(BLOCK);
        let tiles = rows.div_ceil(TILE);
        let mut quants = vec![128u8; tiles * blocks * TILE * BLOCK];
        let mut scales = vec![0f32; tiles * blocks * TILE];
        let mut q = [0i8; BLOCK];
        for r in 0..rows {
            let (tile, lane) = (r / TILE, r % TILE);
            for (b, chunk) in w[r * cols..(r + 1) * cols].chunks(BLOCK).enumerate() {
                q.fill(0);
                let at = tile * blocks + b;
                scales[at * TILE + lane] = quantize_block(chunk, &mut q[..chunk.len()]);
                for (c, &v) in q.iter().enumerate() {
                    let offset = at * TILE * BLOCK + (c / LANE_BYTES) * TILE * LANE_BYTES + lane * LANE_BYTES;
                    quants[offset + c % LANE_BYTES] = (v as i16 + 128) as u8;
                }
            }
        }
        Self { rows, cols, blocks, quants, scales }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held (quants and scales).
    pub fn bytes(&self) -> usize {
        self.quants.len() + 4 * self.scales.len()
    }

    /// Value `(r, c)` as stored: `q` and its block's scale.
    fn stored(&self, r: usize, c: usize) -> (i32, f32) {
        let (tile, lane, b) = (r / TILE, r % TILE, c / BLOCK);
        let at = tile * self.blocks + b;
        let within = c % BLOCK;
        let offset = at * TILE * BLOCK + (within / LANE_BYTES) * TILE * LANE_BYTES + lane * LANE_BYTES;
        (self.quants[offset + within % LANE_BYTES] as i32 - 128, self.scales[at * TILE + lane])
    }

    /// The matrix back in f32 (`[rows, cols]`), as it computes.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for r in 0..self.rows {
            for c in 0..self.cols {
                let (q, scale) = self.stored(r, c);
                out.push(q as f32 * scale);
            }
        }
        out
    }

    /// `y = x W^T` for `n` inputs: `x` is `[n, cols]`, the result `[n, rows]`.
    pub fn matmul(&self, x: &[f32], n: usize) -> Vec<f32> {
        assert_eq!(x.len(), n * self.cols, "{n} inputs of {} values", self.cols);
        let inputs = self.quantize_inputs(x, n);
        let tiles = self.rows.div_ceil(TILE);
        let mut y = vec![0f32; n * self.rows];
        let out = Out { ptr: y.as_mut_ptr(), rows: self.rows };
        // A task is worth handing to the pool only with enough work in it (a hand-off
        // costs microseconds: a decode step's small products stay on this thread, the
        // vocabulary head and batched steps are split); on one thread nothing is handed.
        const MIN_TASK_MACS: usize = 1 << 21;
        let threads = rayon::current_num_threads();
        let tasks = (tiles * TILE * self.cols * n / MIN_TASK_MACS).clamp(1, 4 * threads);
        let per_task = tiles.div_ceil(tasks);
        if threads == 1 || per_task >= tiles {
            // SAFETY: `out` is `y`, `[n, rows]`, and only this call writes it.
            unsafe { self.tiles_into(&inputs, 0..tiles, out) };
        } else {
            (0..tiles).step_by(per_task).collect::<Vec<_>>().into_par_iter().for_each(|start| {
                // SAFETY: tasks write disjoint tiles of `y`.
                unsafe { self.tiles_into(&inputs, start..(start + per_task).min(tiles), out) };
            });
        }
        y
    }

    fn quantize_inputs(&self, x: &[f32], n: usize) -> Int8Inputs {
        let stride = self.blocks * BLOCK;
        let mut inputs = Int8Inputs {
            n,
            quants: vec![0i8; n * stride],
            scales: vec![0f32; n * self.blocks],
            corrections: vec![0i32; n * self.blocks],
        };
        #[cfg(target_arch = "x86_64")]
        if kernel() == Kernel::Avx512Vnni {
            // SAFETY: the CPU has the features the function is compiled for.
            unsafe { x86::quantize_inputs(x, self.cols, &mut inputs) };
            return inputs;
        }
        self.quantize_inputs_portable(x, &mut inputs);
        inputs
    }

    fn quantize_inputs_portable(&self, x: &[f32], inputs: &mut Int8Inputs) {
        let stride = self.blocks * BLOCK;
        for i in 0..inputs.n {
            let row = &x[i * self.cols..(i + 1) * self.cols];
            for (b, chunk) in row.chunks(BLOCK).enumerate() {
                let q = &mut inputs.quants[i * stride + b * BLOCK..][..chunk.len()];
                inputs.scales[i * self.blocks + b] = quantize_block(chunk, q);
                inputs.corrections[i * self.blocks + b] = 128 * q.iter().map(|&v| v as i32).sum::<i32>();
            }
        }
    }

    /// Tiles `tiles` of the product, written into `out`.
    ///
    /// # Safety
    /// `out` is `[inputs.n, rows]` and no other thread writes these tiles' rows.
    unsafe fn tiles_into(&self, inputs: &Int8Inputs, tiles: std::ops::Range<usize>, out: Out) {
        // SAFETY: `kernel()` is one this CPU runs; `out` as the caller promised.
        unsafe { self.tiles_into_with(kernel(), inputs, tiles, out) }
    }

    /// # Safety
    /// As [`Self::tiles_into`], and the CPU runs `kernel`.
    unsafe fn tiles_into_with(&self, kernel: Kernel, inputs: &Int8Inputs, tiles: std::ops::Range<usize>, out: Out) {
        // SAFETY: as the caller promised.
        unsafe {
            match kernel {
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx512Vnni => x86::tiles_into(self, inputs, tiles, out),
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx2 => x86::tiles_into_avx2(self, inputs, tiles, out),
                Kernel::Portable => self.tiles_into_portable(inputs, tiles, out),
            }
        }
    }

    /// # Safety
    /// As [`Self::tiles_into`].
    unsafe fn tiles_into_portable(&self, inputs: &Int8Inputs, tiles: std::ops::Range<usize>, out: Out) {
        let stride = self.blocks * BLOCK;
        for tile in tiles {
            for i in 0..inputs.n {
                let mut acc = [0f32; TILE];
                for b in 0..self.blocks {
                    let at = tile * self.blocks + b;
                    let w = &self.quants[at * TILE * BLOCK..(at + 1) * TILE * BLOCK];
                    let a = &inputs.quants[i * stride + b * BLOCK..][..BLOCK];
                    // Lanes innermost, as the SIMD kernels do: this loop vectorises.
                    let mut dot = [-inputs.corrections[i * self.blocks + b]; TILE];
                    for (w, a) in w.chunks_exact(TILE * LANE_BYTES).zip(a.chunks_exact(LANE_BYTES)) {
                        for (lane, dot) in dot.iter_mut().enumerate() {
                            let w = &w[lane * LANE_BYTES..][..LANE_BYTES];
                            *dot += (0..LANE_BYTES).map(|k| w[k] as i32 * a[k] as i32).sum::<i32>();
                        }
                    }
                    let x_scale = inputs.scales[i * self.blocks + b];
                    let scales = &self.scales[at * TILE..(at + 1) * TILE];
                    for ((acc, dot), scale) in acc.iter_mut().zip(dot).zip(scales) {
                        *acc += dot as f32 * (scale * x_scale);
                    }
                }
                let row0 = tile * TILE;
                // SAFETY: as the caller promised; `valid` stops at the last row.
                unsafe { out.store(i, row0, TILE.min(self.rows - row0), &acc) };
            }
        }
    }
}

/// The 8-bit product kernels, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// 512-bit `vpdpbusd`: 64 multiply-adds per instruction.
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
    /// 256-bit `vpmaddubsw` + `vpmaddwd` on signed weights (llama.cpp's AVX2 method).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// Plain Rust: the reference the others are tested against.
    Portable,
}

impl Kernel {
    /// Every kernel this CPU can run, best first.
    pub fn available() -> Vec<Kernel> {
        let mut kernels = vec![];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512bw") && has!("avx512vnni") {
                kernels.push(Kernel::Avx512Vnni);
            }
            if has!("avx2") && has!("fma") {
                kernels.push(Kernel::Avx2);
            }
        }
        kernels.push(Kernel::Portable);
        kernels
    }

    pub fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => "avx512-vnni",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => "avx2",
            Kernel::Portable => "portable",
        }
    }
}

/// The kernel the 8-bit products use: the best this CPU runs, or the one named by
/// `EVA_INT8_KERNEL` (for benchmarks; an unknown or unavailable name is ignored).
pub fn kernel() -> Kernel {
    use std::sync::OnceLock;
    static CHOSEN: OnceLock<Kernel> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let available = Kernel::available();
        let wanted = std::env::var("EVA_INT8_KERNEL").ok();
        let chosen = available.iter().copied().find(|k| wanted.as_deref() == Some(k.name())).unwrap_or(available[0]);
        if wanted.as_deref().is_some_and(|w| w != chosen.name()) {
            tracing::warn!(
                wanted = wanted.as_deref(),
                using = chosen.name(),
                "EVA_INT8_KERNEL names no kernel this CPU runs"
            );
        }
        tracing::debug!(kernel = chosen.name(), "8-bit matrix kernel");
        chosen
    })
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BLOCK, Int8Inputs, Int8Matrix, LANE_BYTES, Out, TILE};

    /// Inputs per pass of the microkernel.
    const GROUP: usize = 4;
    /// 512-bit registers per tile and block.
    const STEPS: usize = BLOCK / LANE_BYTES;

    /// # Safety
    /// The CPU has AVX-512 F, BW and VNNI; `out` as [`Int8Matrix::tiles_into`] requires.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn tiles_into(m: &Int8Matrix, inputs: &Int8Inputs, tiles: std::ops::Range<usize>, out: Out) {
        let n = inputs.n;
        for tile in tiles {
            let mut i0 = 0;
            // Eight inputs per pass, then the remainder; each instance is fully unrolled.
            while n - i0 >= GROUP {
                // SAFETY: the CPU has the features this function is compiled for; the
                // callee's bounds are `tile` and `i0 + GROUP <= n`, `out` as promised.
                unsafe { group::<GROUP>(m, inputs, tile, i0, out) };
                i0 += GROUP;
            }
            // SAFETY: as above, with the remaining `n - i0` inputs.
            unsafe {
                match n - i0 {
                    0 => {}
                    1 => group::<1>(m, inputs, tile, i0, out),
                    2 => group::<2>(m, inputs, tile, i0, out),
                    3 => group::<3>(m, inputs, tile, i0, out),
                    4 => group::<4>(m, inputs, tile, i0, out),
                    5 => group::<5>(m, inputs, tile, i0, out),
                    6 => group::<6>(m, inputs, tile, i0, out),
                    _ => group::<7>(m, inputs, tile, i0, out),
                }
            }
        }
    }

    /// Inputs per pass of the AVX2 kernel (it has 16 registers, not 32).
    const GROUP_AVX2: usize = 2;

    /// As [`tiles_into`] with AVX2 only.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `out` as [`Int8Matrix::tiles_into`] requires.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tiles_into_avx2(m: &Int8Matrix, inputs: &Int8Inputs, tiles: std::ops::Range<usize>, out: Out) {
        let n = inputs.n;
        for tile in tiles {
            let mut i0 = 0;
            while i0 < n {
                // SAFETY: the CPU has the features; `tile` and `i0 + G <= n` in bounds.
                unsafe {
                    if n - i0 >= GROUP_AVX2 {
                        group_avx2::<GROUP_AVX2>(m, inputs, tile, i0, out);
                        i0 += GROUP_AVX2;
                    } else {
                        group_avx2::<1>(m, inputs, tile, i0, out);
                        i0 += 1;
                    }
                }
            }
        }
    }

    /// One tile against inputs `i0..i0 + G`, 8 rows per register. The stored `q + 128`
    /// is flipped back to signed `q`, and `|q| · (a · sign q)` keeps every pair of
    /// products within `vpmaddubsw`'s 16 bits (2 · 127 · 127), so no correction is needed.
    ///
    /// # Safety
    /// As [`tiles_into_avx2`].
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::needless_range_loop, reason = "`half` and `j` name registers; indexing reads plainer")]
    unsafe fn group_avx2<const G: usize>(m: &Int8Matrix, inputs: &Int8Inputs, tile: usize, i0: usize, out: Out) {
        let stride = m.blocks * BLOCK;
        assert!(tile * TILE < m.rows && i0 + G <= inputs.n);
        // SAFETY: as in `group`.
        unsafe {
            let ones = _mm256_set1_epi16(1);
            let flip = _mm256_set1_epi8(-128);
            let mut acc = [[_mm256_setzero_ps(); 2]; G];
            for b in 0..m.blocks {
                let at = tile * m.blocks + b;
                let w = m.quants.as_ptr().add(at * TILE * BLOCK) as *const __m256i;
                let a: [*const i32; G] =
                    std::array::from_fn(|j| inputs.quants.as_ptr().add((i0 + j) * stride + b * BLOCK) as *const i32);
                let mut dot = [[_mm256_setzero_si256(); 2]; G];
                for s in 0..STEPS {
                    let act: [__m256i; G] = std::array::from_fn(|j| _mm256_set1_epi32(a[j].add(s).read_unaligned()));
                    for half in 0..2 {
                        let signed = _mm256_xor_si256(_mm256_loadu_si256(w.add(2 * s + half)), flip);
                        let magnitude = _mm256_abs_epi8(signed);
                        for j in 0..G {
                            let pairs = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(act[j], signed));
                            dot[j][half] = _mm256_add_epi32(dot[j][half], _mm256_madd_epi16(pairs, ones));
                        }
                    }
                }
                let scales = [
                    _mm256_loadu_ps(m.scales.as_ptr().add(at * TILE)),
                    _mm256_loadu_ps(m.scales.as_ptr().add(at * TILE + 8)),
                ];
                for j in 0..G {
                    let x_scale = _mm256_set1_ps(*inputs.scales.get_unchecked((i0 + j) * m.blocks + b));
                    for half in 0..2 {
                        let scale = _mm256_mul_ps(scales[half], x_scale);
                        acc[j][half] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[j][half]), scale, acc[j][half]);
                    }
                }
            }
            let row0 = tile * TILE;
            let valid = TILE.min(m.rows - row0);
            for (j, acc) in acc.iter().enumerate() {
                let mut values = [0f32; TILE];
                _mm256_storeu_ps(values.as_mut_ptr(), acc[0]);
                _mm256_storeu_ps(values.as_mut_ptr().add(8), acc[1]);
                out.store(i0 + j, row0, valid, &values);
            }
        }
    }

    /// [`Int8Matrix::quantize_inputs`] (`x` is `[inputs.n, cols]`): the same integers and
    /// scales as [`super::quantize_block`], sixteen values per instruction.
    ///
    /// # Safety
    /// The CPU has AVX-512 F and BW.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn quantize_inputs(x: &[f32], cols: usize, inputs: &mut Int8Inputs) {
        let blocks = cols.div_ceil(BLOCK);
        assert!(x.len() == inputs.n * cols && inputs.quants.len() == inputs.n * blocks * BLOCK);
        for i in 0..inputs.n {
            for b in 0..blocks {
                let start = b * BLOCK;
                let len = BLOCK.min(cols - start);
                let mask = |from: usize| -> __mmask16 {
                    let k = len.saturating_sub(from).min(16);
                    if k == 16 { !0 } else { (1u32 << k) as u16 - 1 }
                };
                // SAFETY: masked loads read only the block's `len` values of row `i`;
                // the stores write its `BLOCK` quants (zero past `len`).
                unsafe {
                    let p = x.as_ptr().add(i * cols + start);
                    let x0 = _mm512_maskz_loadu_ps(mask(0), p);
                    let x1 = _mm512_maskz_loadu_ps(mask(16), p.add(16));
                    let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
                    let scale = amax / 127.0;
                    let inv = _mm512_set1_ps(if scale > 0.0 { 1.0 / scale } else { 0.0 });
                    // The default rounding mode: to nearest, ties to even.
                    let q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, inv));
                    let q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, inv));
                    let q = inputs.quants.as_mut_ptr().add(i * blocks * BLOCK + start) as *mut __m128i;
                    _mm_storeu_si128(q, _mm512_cvtsepi32_epi8(q0));
                    _mm_storeu_si128(q.add(1), _mm512_cvtsepi32_epi8(q1));
                    inputs.scales[i * blocks + b] = scale;
                    inputs.corrections[i * blocks + b] = 128 * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
                }
            }
        }
    }

    /// Inputs `i0..i0 + G` against one tile: every weight register is loaded once and
    /// used `G` times, and each input keeps two independent integer chains (even and odd
    /// steps) so that `vpdpbusd`'s latency overlaps instead of adding up.
    ///
    /// # Safety
    /// As [`tiles_into`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn group<const G: usize>(m: &Int8Matrix, inputs: &Int8Inputs, tile: usize, i0: usize, out: Out) {
        let stride = m.blocks * BLOCK;
        assert!(tile * TILE < m.rows && i0 + G <= inputs.n);
        // SAFETY: `tile` and every block index inside `quants`/`scales` (asserted above,
        // and blocks < m.blocks); inputs i0..i0 + G inside the inputs' buffers; `out`
        // as the caller promised.
        unsafe {
            let mut acc = [_mm512_setzero_ps(); G];
            for b in 0..m.blocks {
                let at = tile * m.blocks + b;
                let w = m.quants.as_ptr().add(at * TILE * BLOCK) as *const __m512i;
                let ws = _mm512_loadu_ps(m.scales.as_ptr().add(at * TILE));
                let a: [*const i32; G] =
                    std::array::from_fn(|j| inputs.quants.as_ptr().add((i0 + j) * stride + b * BLOCK) as *const i32);
                let mut even: [__m512i; G] = std::array::from_fn(|j| {
                    _mm512_set1_epi32(-*inputs.corrections.get_unchecked((i0 + j) * m.blocks + b))
                });
                let mut odd = [_mm512_setzero_si512(); G];
                for s in (0..STEPS).step_by(2) {
                    let (w0, w1) = (_mm512_loadu_si512(w.add(s)), _mm512_loadu_si512(w.add(s + 1)));
                    for j in 0..G {
                        even[j] = _mm512_dpbusd_epi32(even[j], w0, _mm512_set1_epi32(a[j].add(s).read_unaligned()));
                        odd[j] = _mm512_dpbusd_epi32(odd[j], w1, _mm512_set1_epi32(a[j].add(s + 1).read_unaligned()));
                    }
                }
                for j in 0..G {
                    let dot = _mm512_cvtepi32_ps(_mm512_add_epi32(even[j], odd[j]));
                    let scale =
                        _mm512_mul_ps(ws, _mm512_set1_ps(*inputs.scales.get_unchecked((i0 + j) * m.blocks + b)));
                    acc[j] = _mm512_fmadd_ps(dot, scale, acc[j]);
                }
            }
            let row0 = tile * TILE;
            let valid = TILE.min(m.rows - row0);
            let mask: __mmask16 = if valid == TILE { !0 } else { (1 << valid) - 1 };
            for (j, acc) in acc.iter().enumerate() {
                _mm512_mask_storeu_ps(out.ptr.add((i0 + j) * out.rows + row0), mask, *acc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn naive(w: &[f32], x: &[f32], rows: usize, cols: usize, n: usize) -> Vec<f32> {
        let mut y = vec![0f32; n * rows];
        for i in 0..n {
            for r in 0..rows {
                y[i * rows + r] = (0..cols).map(|c| x[i * cols + c] * w[r * cols + c]).sum();
            }
        }
        y
    }

    #[test]
    fn quantization_round_trips_within_half_a_step() {
        let (rows, cols) = (3, 80);
        let w = pseudo_random(rows * cols, 1);
        let m = Int8Matrix::quantize(&w, rows, cols);
        let back = m.dequantize();
        for (r, chunk) in w.chunks(cols).enumerate() {
            for (b, block) in chunk.chunks(BLOCK).enumerate() {
                let step = block.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
                for (c, v) in block.iter().enumerate() {
                    let got = back[r * cols + b * BLOCK + c];
                    assert!((got - v).abs() <= step / 2.0 + 1e-7, "row {r} block {b}: {got} vs {v}");
                }
            }
        }
    }

    /// Every column count class (padded tail, one block, odd blocks) and input count
    /// (groups of four and a remainder), against f32 and against the integer reference.
    #[test]
    fn matmul_matches_f32_and_the_portable_kernel() {
        for (rows, cols, n) in [(5, 32, 1), (7, 96, 3), (33, 576, 6), (4, 50, 2), (17, 128, 9)] {
            let w = pseudo_random(rows * cols, rows as u64);
            let x = pseudo_random(n * cols, cols as u64);
            let m = Int8Matrix::quantize(&w, rows, cols);
            let y = m.matmul(&x, n);
            // Against f32: each product carries at most ~1/127 relative error per side.
            let exact = naive(&w, &x, rows, cols, n);
            let bound = 0.02 * (cols as f32).sqrt();
            for (a, b) in y.iter().zip(&exact) {
                assert!((a - b).abs() < bound, "[{rows}x{cols}] n={n}: {a} vs {b}");
            }
            // Against the portable code: the same integers, another summation order.
            let inputs = m.quantize_inputs(&x, n);
            let mut portable_inputs = Int8Inputs { n, ..m.quantize_inputs(&vec![0.0; x.len()], n) };
            m.quantize_inputs_portable(&x, &mut portable_inputs);
            assert_eq!(inputs.quants, portable_inputs.quants, "[{rows}x{cols}] n={n}: quantized inputs");
            assert_eq!(inputs.scales, portable_inputs.scales);
            assert_eq!(inputs.corrections, portable_inputs.corrections);
            let mut portable = vec![f32::NAN; n * rows];
            let out = Out { ptr: portable.as_mut_ptr(), rows };
            // SAFETY: `portable` is `[n, rows]`.
            unsafe { m.tiles_into_portable(&inputs, 0..rows.div_ceil(TILE), out) };
            for kernel in Kernel::available() {
                println!("[{rows}x{cols}] n={n}: {} kernel", kernel.name());
                let mut y = vec![f32::NAN; n * rows];
                let out = Out { ptr: y.as_mut_ptr(), rows };
                // SAFETY: `y` is `[n, rows]`; the CPU runs every available kernel.
                unsafe { m.tiles_into_with(kernel, &inputs, 0..rows.div_ceil(TILE), out) };
                for (a, b) in y.iter().zip(&portable) {
                    assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{kernel:?} [{rows}x{cols}] n={n}: {a} vs {b}");
                }
            }
        }
    }

    /// A product big enough to be split across a pool's threads gives the same bits as
    /// on one thread (each row is computed by one task, whole).
    #[test]
    fn split_products_equal_single_thread_ones() {
        let (rows, cols, n) = (1000, 512, 9);
        let m = Int8Matrix::quantize(&pseudo_random(rows * cols, 3), rows, cols);
        let x = pseudo_random(n * cols, 4);
        let pool = |threads| rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let one = pool(1).install(|| m.matmul(&x, n));
        let split = pool(2).install(|| m.matmul(&x, n));
        assert_eq!(one, split);
    }

    /// Values that land exactly halfway between two integers round to even everywhere.
    #[test]
    fn ties_round_to_even() {
        let mut x = vec![0f32; 32];
        x[0] = 127.0;
        (1..32).for_each(|i| x[i] = i as f32 - 16.5);
        let m = Int8Matrix::quantize(&x, 1, 32);
        let inputs = m.quantize_inputs(&x, 1);
        let want: Vec<i8> =
            std::iter::once(127).chain((1..32).map(|i| (i as f32 - 16.5).round_ties_even() as i8)).collect();
        assert_eq!(inputs.quants, want);
        let (q, _) = m.stored(0, 2);
        assert_eq!(q, -14, "-14.5 stored as -14");
    }

    #[test]
    fn zero_blocks_give_zero_not_nan() {
        let m = Int8Matrix::quantize(&[0.0; 64], 1, 64);
        let y = m.matmul(&[0.0; 64], 1);
        assert_eq!(y, vec![0.0]);
    }
}
