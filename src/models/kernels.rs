//! The numeric kernels of the encoder: matrix products through `gemm` (the kernels candle's CPU
//! backend calls), LayerNorm, softmax and the activations, on plain `f32` slices.
//!
//! Invariants: every kernel runs on the calling thread — `gemm` is built without its rayon feature
//! and always called with `Parallelism::None` — so an inference call occupies exactly the thread
//! that makes it and no process-wide pool. A product's operand views are checked against their
//! slices before the unsafe call (a failed check is a bug here, and panics, never reads out of
//! bounds).
//!
//! What gemm keeps besides: a packing buffer per thread that has multiplied (thread-local, about
//! the L2 cache's size), and the cache sizes it tiles for, read once per process from
//! `/sys/devices/system/cpu/*/cache` (falling back to running `lscpu`, then to defaults).

use super::config::Activation;

/// A read-only strided matrix over a slice: element (r, c) is `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    /// The floats the view reads.
    pub data: &'a [f32],
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Distance between rows.
    pub rs: usize,
    /// Distance between columns.
    pub cs: usize,
}

impl<'a> View<'a> {
    /// A row-major `rows × cols` matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        View { data, rows, cols, rs: cols, cs: 1 }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// A writable strided matrix over a slice (see [`View`]).
pub struct ViewMut<'a> {
    /// The floats the view writes.
    pub data: &'a mut [f32],
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Distance between rows.
    pub rs: usize,
}

impl ViewMut<'_> {
    fn fits(&self) -> bool {
        self.rows == 0 || self.cols == 0 || (self.rows - 1) * self.rs + self.cols - 1 < self.data.len()
    }
}

/// `dst = scale · a · b`, or `dst += scale · a · b` when `accumulate`.
pub fn matmul(dst: ViewMut<'_>, a: View<'_>, b: View<'_>, scale: f32, accumulate: bool) {
    assert!(a.rows == dst.rows && b.cols == dst.cols && a.cols == b.rows, "matmul shapes");
    assert!(dst.fits() && a.fits() && b.fits(), "matmul view outside its slice");
    if dst.rows == 0 || dst.cols == 0 {
        return;
    }
    // SAFETY: the three views were checked to lie inside their slices; `dst` is a unique borrow,
    // so it overlaps neither operand.
    unsafe {
        gemm::gemm(
            dst.rows,
            dst.cols,
            a.cols,
            dst.data.as_mut_ptr(),
            1,
            dst.rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `y = x · wᵀ + bias` for `rows` rows, from `wt`, the transpose of the weights: `x` is
/// `rows × inputs`, `wt` is `inputs × outputs`, `y` is `rows × outputs`.
pub fn linear(y: &mut [f32], x: &[f32], rows: usize, wt: &[f32], bias: &[f32]) {
    let outputs = bias.len();
    let inputs = wt.len() / outputs;
    for row in y[..rows * outputs].chunks_exact_mut(outputs) {
        row.copy_from_slice(bias);
    }
    let dst = ViewMut { data: y, rows, cols: outputs, rs: outputs };
    matmul(dst, View::rows(x, rows, inputs), View::rows(wt, inputs, outputs), 1.0, true);
}

// The element-wise kernels below are written so the compiler vectorises them (no calls, no
// branches, reductions in explicit lanes since float addition does not reassociate), then compiled
// three times: for the build's baseline target (x86-64 v1 in release: SSE2) and, chosen at run
// time, for AVX2 + FMA and for AVX-512.

/// Defines `pub fn $name` running `$body` compiled for the best instruction set the CPU has.
macro_rules! multiversion {
    ($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) => $body:ident) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                match isa() {
                    // SAFETY: `isa` found these features on this CPU.
                    Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    Isa::Baseline => {}
                }
            }
            $body($($arg),*)
        }
    };
}

#[cfg(target_arch = "x86_64")]
enum Isa {
    Avx512,
    Avx2,
    Baseline,
}

/// The widest instruction set of this CPU the kernels have a version for (the standard library
/// caches the detection, so this is a few atomic loads).
#[cfg(target_arch = "x86_64")]
fn isa() -> Isa {
    use std::arch::is_x86_feature_detected as has;
    let avx2 = has!("avx2") && has!("fma");
    if avx2 && has!("avx512f") && has!("avx512vl") {
        Isa::Avx512
    } else if avx2 {
        Isa::Avx2
    } else {
        Isa::Baseline
    }
}

multiversion! {
    /// Each `gamma.len()`-wide row of `x` becomes `LayerNorm(x + residual)`.
    pub fn add_layer_norm(x: &mut [f32], residual: &[f32], gamma: &[f32], beta: &[f32], eps: f32) => add_layer_norm_body
}

multiversion! {
    /// Each `gamma.len()`-wide row of `x` becomes `LayerNorm(x)`.
    pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) => layer_norm_body
}

multiversion! {
    /// Softmax of each `width`-wide row of `x`, in place (max-subtracted, so large scores do
    /// not overflow).
    pub fn softmax_rows(x: &mut [f32], width: usize) => softmax_rows_body
}

multiversion! {
    /// Applies the feed-forward activation in place.
    pub fn activate(x: &mut [f32], activation: Activation) => activate_body
}

#[inline(always)]
fn add_layer_norm_body(x: &mut [f32], residual: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let width = gamma.len();
    for (row, res) in x.chunks_exact_mut(width).zip(residual.chunks_exact(width)) {
        for (v, r) in row.iter_mut().zip(res) {
            *v += *r;
        }
        layer_norm_row(row, gamma, beta, eps);
    }
}

#[inline(always)]
fn layer_norm_body(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(gamma.len()) {
        layer_norm_row(row, gamma, beta, eps);
    }
}

#[inline(always)]
fn layer_norm_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = lane_sum(row, |v| v) / n;
    let var = lane_sum(row, |v| (v - mean) * (v - mean)) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

#[inline(always)]
fn softmax_rows_body(x: &mut [f32], width: usize) {
    for row in x.chunks_exact_mut(width) {
        let max = lane_max(row);
        for v in row.iter_mut() {
            *v = exp(*v - max);
        }
        let inv = 1.0 / lane_sum(row, |v| v);
        for v in row {
            *v *= inv;
        }
    }
}

#[inline(always)]
fn activate_body(x: &mut [f32], activation: Activation) {
    match activation {
        Activation::GeluErf => x.iter_mut().for_each(|v| *v = gelu_erf(*v)),
        Activation::GeluTanh => x.iter_mut().for_each(|v| *v = gelu_tanh(*v)),
        Activation::Relu => x.iter_mut().for_each(|v| *v = if *v > 0.0 { *v } else { 0.0 }),
    }
}

/// Lanes of the reductions: one AVX-512 register, two AVX2 ones.
const LANES: usize = 16;

/// `Σ f(v)` in [`LANES`] partial sums.
#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|v| f(*v)).sum();
    for chunk in chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += f(*v);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The largest value (`-∞` for none; NaN-blind, which softmax's inputs never are).
#[inline(always)]
fn lane_max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, v| if *v > m { *v } else { m });
    for chunk in chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane = if *v > *lane { *v } else { *lane };
        }
    }
    lanes.iter().fold(tail, |m, v| if *v > m { *v } else { m })
}

/// `x · Φ(x)`: PyTorch's exact GELU.
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The tanh approximation of GELU (`gelu_new`), through `tanh(u) = 1 - 2 / (e^{2u} + 1)`.
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
    let tanh = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
    0.5 * x * (1.0 + tanh)
}

/// The error function, to within 1.5e-7 (Abramowitz & Stegun 7.1.26): far below what f32
/// matrix products round away, with one `exp` and no branch.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152_1, 1.061_405_4];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = ((((A[4] * t + A[3]) * t + A[2]) * t + A[1]) * t + A[0]) * t;
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// `e^x` to within 4e-7 relative, branch-free so that loops over it vectorise: `x = n·ln 2 + r`
/// with `|r| ≤ ln 2 / 2`, a degree-6 Taylor polynomial for `e^r` (truncation error 1.2e-7), and
/// `2^n` built in the exponent bits. Below `-87.3` (where `2^n` would leave the normal range) the
/// result is 0, above `88.3` it saturates at `e^88.3`.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so `n · LN2_HI` is exact for the n that occur.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer (no call to `round`).
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.clamp(-87.3, 88.3);
    let n = (clamped * LOG2_E + ROUND) - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < -87.3 {
        0.0
    } else {
        p * scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_is_x_times_w_transposed_plus_bias() {
        // x: 2×3; w: 2×3 (two outputs: [1, 0, 0] and [0.5, 0.5, 0.5]), given transposed; bias 2.
        let x = [1.0, 2.0, 3.0, -1.0, 0.0, 1.0];
        let wt = [1.0, 0.5, 0.0, 0.5, 0.0, 0.5];
        let mut y = [0.0; 4];
        linear(&mut y, &x, 2, &wt, &[10.0, 20.0]);
        assert_eq!(y, [11.0, 23.0, 9.0, 20.0]);
    }

    #[test]
    fn strided_views_multiply_like_dense_ones() {
        // a: 2×2 read with a row stride of 3 out of a wider buffer; b transposed.
        let a = [1.0, 2.0, 99.0, 3.0, 4.0];
        let b = [5.0, 6.0, 7.0, 8.0]; // row-major [[5,6],[7,8]], used as its transpose
        let mut out = [0.0; 4];
        let dst = ViewMut { data: &mut out, rows: 2, cols: 2, rs: 2 };
        let av = View { data: &a, rows: 2, cols: 2, rs: 3, cs: 1 };
        let bt = View { data: &b, rows: 2, cols: 2, rs: 1, cs: 2 };
        matmul(dst, av, bt, 2.0, false);
        // [[1,2],[3,4]] · [[5,7],[6,8]] = [[17,23],[39,53]], times 2.
        assert_eq!(out, [34.0, 46.0, 78.0, 106.0]);
    }

    #[test]
    fn layer_norm_centres_and_scales() {
        let mut x = [1.0, 2.0, 3.0, 4.0];
        layer_norm(&mut x, &[1.0; 4], &[0.0; 4], 0.0);
        let mean: f32 = x.iter().sum::<f32>() / 4.0;
        let var: f32 = x.iter().map(|v| v * v).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "{x:?}");
    }

    #[test]
    fn softmax_sums_to_one_without_overflow() {
        let mut row = [1000.0, 1000.0, f32::NEG_INFINITY];
        softmax_rows(&mut row, 3);
        assert_eq!(row, [0.5, 0.5, 0.0]);
    }

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in
            [(0.0, 0.0), (0.5, 0.520_499_9), (1.0, 0.842_700_8), (-2.0, -0.995_322_3), (4.0, 0.999_999_98)]
        {
            assert!((erf(x) - want).abs() < 3e-7, "erf({x}) = {} not {want}", erf(x));
        }
        assert!((gelu_erf(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-6);
        assert!((gelu_tanh(-20.0)).abs() < 1e-6 && (gelu_tanh(20.0) - 20.0).abs() < 1e-4);
    }

    #[test]
    fn exp_is_within_a_few_ulp_over_its_range() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (ours, want) = (exp(x), x.exp());
            assert!(((ours - want) / want).abs() < 4e-7, "exp({x}) = {ours}, not {want}");
            x += 0.013;
        }
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert!(exp(100.0).is_finite());
    }

    #[test]
    fn lane_reductions_see_every_value() {
        let values: Vec<f32> = (1..=37).map(|v| v as f32).collect();
        assert_eq!(lane_sum(&values, |v| v), 703.0);
        assert_eq!(lane_sum(&values, |v| 2.0 * v), 1406.0);
        assert_eq!(lane_max(&values), 37.0);
        assert_eq!(lane_max(&values[..3]), 3.0);
        assert_eq!(lane_max(&[]), f32::NEG_INFINITY);
        let mut rows: Vec<f32> = (0..38).map(|v| v as f32 / 3.0).collect();
        softmax_rows(&mut rows, 19);
        for row in rows.chunks(19) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            assert!(row.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
