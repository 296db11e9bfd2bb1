//! The numeric kernels of the encoder: matrix products through `gemm` (the kernels candle's CPU
//! backend calls), LayerNorm, softmax and the activations, on plain `f32` slices.
//!
//! Invariants: every kernel runs on the calling thread — `gemm` is built without its rayon feature
//! and always called with `Parallelism::None` — so an inference call occupies exactly the thread
//! that makes it and no process-wide pool. A product's operand views are checked against their
//! slices before the unsafe call (a failed check is a bug here, and panics, never reads out of
//! bounds).

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

    /// The transpose of a row-major `rows × cols` matrix (a `cols × rows` view of the same floats).
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        View { data, rows: cols, cols: rows, rs: 1, cs: cols }
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

/// `y = x · wᵀ + bias` for `rows` rows: `x` is `rows × inputs`, `w` is `outputs × inputs`
/// (PyTorch's `Linear` layout), `y` is `rows × outputs`.
pub fn linear(y: &mut [f32], x: &[f32], rows: usize, w: &[f32], bias: &[f32]) {
    let outputs = bias.len();
    let inputs = w.len() / outputs;
    for row in y[..rows * outputs].chunks_exact_mut(outputs) {
        row.copy_from_slice(bias);
    }
    let dst = ViewMut { data: y, rows, cols: outputs, rs: outputs };
    matmul(dst, View::rows(x, rows, inputs), View::transposed(w, outputs, inputs), 1.0, true);
}

/// Each `gamma.len()`-wide row of `x` becomes `LayerNorm(x + residual)`.
pub fn add_layer_norm(x: &mut [f32], residual: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let width = gamma.len();
    for (row, res) in x.chunks_exact_mut(width).zip(residual.chunks_exact(width)) {
        for (v, r) in row.iter_mut().zip(res) {
            *v += *r;
        }
        layer_norm_row(row, gamma, beta, eps);
    }
}

/// Each `gamma.len()`-wide row of `x` becomes `LayerNorm(x)`.
pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(gamma.len()) {
        layer_norm_row(row, gamma, beta, eps);
    }
}

fn layer_norm_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// Softmax of one row, in place (max-subtracted, so large scores do not overflow).
pub fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in row {
        *v *= inv;
    }
}

/// Applies the feed-forward activation in place.
pub fn activate(x: &mut [f32], activation: Activation) {
    match activation {
        Activation::GeluErf => x.iter_mut().for_each(|v| *v = gelu_erf(*v)),
        Activation::GeluTanh => x.iter_mut().for_each(|v| *v = gelu_tanh(*v)),
        Activation::Relu => x.iter_mut().for_each(|v| *v = v.max(0.0)),
    }
}

/// `x · Φ(x)`: PyTorch's exact GELU.
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The tanh approximation of GELU (`gelu_new`).
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}

/// The error function, to within 1.5e-7 (Abramowitz & Stegun 7.1.26): far below what f32
/// matrix products round away, and one `exp` instead of a library call per branch.
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152_1, 1.061_405_4];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = ((((A[4] * t + A[3]) * t + A[2]) * t + A[1]) * t + A[0]) * t;
    let y = 1.0 - poly * (-a * a).exp();
    y.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_is_x_times_w_transposed_plus_bias() {
        // x: 2×3, w: 2×3 (two outputs), bias 2.
        let x = [1.0, 2.0, 3.0, -1.0, 0.0, 1.0];
        let w = [1.0, 0.0, 0.0, 0.5, 0.5, 0.5];
        let mut y = [0.0; 4];
        linear(&mut y, &x, 2, &w, &[10.0, 20.0]);
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
        matmul(dst, av, View::transposed(&b, 2, 2), 2.0, false);
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
        softmax(&mut row);
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
    }
}
