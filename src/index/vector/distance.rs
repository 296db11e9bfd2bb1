//! Distance kernels for dense vectors: f32 dot / cosine distance / squared euclidean, and an
//! integer kernel (biased-u8 codes × i8 query) for quantized candidate scans.
//!
//! Dispatch happens once per process ([`kernels`]): AVX-512F (+ AVX-512 VNNI for the integer
//! kernel), else AVX2+FMA, else the portable path. Batch functions (`*_batch`) loop over a
//! whole row-major list inside the `#[target_feature]` function, so a scan pays one indirect
//! call, not one per vector.
//!
//! Invariants:
//! - Every kernel tolerates mismatched slice lengths: it uses the shorter length (callers
//!   pass equal lengths; this only keeps memory access in bounds). Batch functions score
//!   `min(out.len(), rows.len() / q.len())` rows.
//! - Dimensions need not be multiples of any lane width (masked or scalar tails).
//! - The SIMD f32 paths agree with the scalar reference to ~1e-5 relative; the integer kernel
//!   is exact (i32 accumulation cannot overflow up to dimension 65,536: 255 · 128 · 65,536 < 2³¹).
//! - The `det_*` functions are bit-reproducible across CPUs: a fixed 16-lane accumulation order
//!   with separate multiply and add (no FMA contraction), only compiled with wider vector
//!   instructions where available. Index builds use them, so the same input gives the same
//!   bytes on every machine.
//! - Cosine distance is `1 - a·b / (|a| |b|)`; when either norm is zero it is defined as 1.0.
//! - Within one kernel set a pair's distance has the same bits from every entry point (single,
//!   batch, or the fused one-pass cosine scan): the fused scan accumulates each sum in exactly
//!   its single kernel's order. A row's `$dist` therefore does not depend on which path (a
//!   scan, a graph or IVF rerank, a `VectorDist` attribute) computed it.

pub use crate::model::DistanceMetric as Metric;
use std::sync::OnceLock;

/// A set of kernels chosen for one instruction set. Obtain it from [`kernels`] (best available)
/// or [`available_kernels`] (every set the CPU supports, for tests and benchmarks).
pub struct Kernels {
    name: &'static str,
    dot: fn(&[f32], &[f32]) -> f32,
    l2sq: fn(&[f32], &[f32]) -> f32,
    dot_batch: fn(&[f32], &[f32], &mut [f32]),
    l2sq_batch: fn(&[f32], &[f32], &mut [f32]),
    cos_batch: fn(&[f32], &[f32], &mut [f32]),
    u8i8: fn(&[i8], &[u8]) -> i32,
    u8i8_batch: fn(&[i8], &[u8], &mut [i32]),
}

impl Kernels {
    /// Name of the instruction set ("avx512vnni", "avx512", "avx2", "portable").
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// `a · b`.
    #[inline]
    pub fn dot(&self, a: &[f32], b: &[f32]) -> f32 {
        (self.dot)(a, b)
    }
    /// `|a - b|²`.
    #[inline]
    pub fn euclidean_squared(&self, a: &[f32], b: &[f32]) -> f32 {
        (self.l2sq)(a, b)
    }
    /// `1 - cos(a, b)`, norms computed here (use [`Kernels::cosine_batch`] for scans).
    #[inline]
    pub fn cosine_distance(&self, a: &[f32], b: &[f32]) -> f32 {
        let ab = (self.dot)(a, b);
        let aa = (self.dot)(a, a);
        let bb = (self.dot)(b, b);
        cosine_from(ab, aa.sqrt() * bb.sqrt())
    }
    /// Distance under `metric`.
    #[inline]
    pub fn distance(&self, metric: Metric, a: &[f32], b: &[f32]) -> f32 {
        match metric {
            Metric::CosineDistance => self.cosine_distance(a, b),
            Metric::EuclideanSquared => self.euclidean_squared(a, b),
        }
    }
    /// [`Kernels::distance`] with the query's norm given (`qn` = `self.dot(q, q).sqrt()`, worked
    /// out once per query): the same bits, one dot product fewer per row.
    #[inline]
    pub fn distance_with_norm(&self, metric: Metric, q: &[f32], qn: f32, x: &[f32]) -> f32 {
        match metric {
            Metric::CosineDistance => cosine_from(self.dot(q, x), qn * self.dot(x, x).sqrt()),
            Metric::EuclideanSquared => self.euclidean_squared(q, x),
        }
    }
    /// `out[i] = q · rows[i]` for the row-major `rows` (row length `q.len()`).
    #[inline]
    pub fn dot_batch(&self, q: &[f32], rows: &[f32], out: &mut [f32]) {
        (self.dot_batch)(q, rows, out)
    }
    /// `out[i] = |q - rows[i]|²`.
    #[inline]
    pub fn euclidean_squared_batch(&self, q: &[f32], rows: &[f32], out: &mut [f32]) {
        (self.l2sq_batch)(q, rows, out)
    }
    /// `out[i] = 1 - cos(q, rows[i])`; each row's norm is computed in the same pass.
    #[inline]
    pub fn cosine_batch(&self, q: &[f32], rows: &[f32], out: &mut [f32]) {
        (self.cos_batch)(q, rows, out)
    }
    /// `Σ code[j] · q[j]` with `code` read as unsigned bytes and `q` as signed bytes (exact).
    #[inline]
    pub fn u8i8(&self, q: &[i8], code: &[u8]) -> i32 {
        (self.u8i8)(q, code)
    }
    /// [`super::planes::planes_dot`] (one integer kernel for every set: exact, the same on every CPU).
    #[inline]
    pub fn planes_dot(&self, code: &[u8], q: &[u64], bits: u32, qbits: u32) -> u64 {
        super::planes::planes_dot(code, q, bits, qbits)
    }
    /// `out[i] = Σ codes[i][j] · q[j]` over row-major codes of row length `q.len()` (exact).
    #[inline]
    pub fn u8i8_batch(&self, q: &[i8], codes: &[u8], out: &mut [i32]) {
        (self.u8i8_batch)(q, codes, out)
    }
    /// Whether this is the AVX-512 VNNI set (chosen only on a CPU that has it; `ann/dots4.rs`).
    pub fn is_vnni(&self) -> bool {
        self.name == "avx512vnni"
    }
}

#[inline]
fn cosine_from(dot: f32, norms: f32) -> f32 {
    if norms > 0.0 && norms.is_finite() {
        1.0 - dot / norms
    } else {
        1.0
    }
}

/// The best kernel set for this CPU, chosen once per process.
pub fn kernels() -> &'static Kernels {
    static CHOSEN: OnceLock<&'static Kernels> = OnceLock::new();
    CHOSEN.get_or_init(|| available_kernels()[0])
}

/// Kernels whose every result is the same bits on every CPU: the best integer (code) kernels,
/// exact by construction, with the fixed-order `det_*` float kernels. Build-time calibration
/// searches with them, so the section bytes stay deterministic at SIMD speed.
pub fn deterministic() -> &'static Kernels {
    static DET: OnceLock<Kernels> = OnceLock::new();
    DET.get_or_init(|| {
        let best = kernels();
        Kernels {
            name: "deterministic",
            dot: det_dot,
            l2sq: |a, b| {
                let mut o = [0f32];
                det_l2sq_batch(a, &b[..a.len().min(b.len())], &mut o);
                o[0]
            },
            dot_batch: det_dot_batch,
            l2sq_batch: det_l2sq_batch,
            cos_batch: |q, r, o| batch_cos(q, r, o, dot_norm_portable),
            u8i8: best.u8i8,
            u8i8_batch: best.u8i8_batch,
        }
    })
}

/// Every kernel set this CPU can run, best first; the portable set is always last.
pub fn available_kernels() -> Vec<&'static Kernels> {
    let mut v: Vec<&'static Kernels> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if x86::has_avx512() {
            if x86::has_vnni() {
                v.push(&x86::AVX512_VNNI);
            }
            v.push(&x86::AVX512);
        }
        if x86::has_avx2() {
            v.push(&x86::AVX2);
        }
    }
    v.push(&PORTABLE);
    v
}

/// `a · b` with the process-wide kernels.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    kernels().dot(a, b)
}
/// `1 - cos(a, b)` with the process-wide kernels (1.0 when a norm is zero).
#[inline]
pub fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    kernels().cosine_distance(a, b)
}
/// `|a - b|²` with the process-wide kernels.
#[inline]
pub fn euclidean_squared(a: &[f32], b: &[f32]) -> f32 {
    kernels().euclidean_squared(a, b)
}
/// Distance under `metric` with the process-wide kernels.
#[inline]
pub fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    kernels().distance(metric, a, b)
}

// ---------------------------------------------------------------------------------------------
// Portable (and deterministic) kernels: 16 independent lanes, separate mul and add, fixed
// reduction order. `#[inline(always)]` so the target_feature wrappers recompile them wider.

#[inline(always)]
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (ca, ra) = a[..n].as_chunks::<16>();
    let (cb, rb) = b[..n].as_chunks::<16>();
    let mut acc = [0f32; 16];
    for (x, y) in ca.iter().zip(cb) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    for (l, (x, y)) in ra.iter().zip(rb).enumerate() {
        acc[l] += x * y;
    }
    reduce16(&acc)
}

#[inline(always)]
fn l2sq_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (ca, ra) = a[..n].as_chunks::<16>();
    let (cb, rb) = b[..n].as_chunks::<16>();
    let mut acc = [0f32; 16];
    for (x, y) in ca.iter().zip(cb) {
        for l in 0..16 {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    for (l, (x, y)) in ra.iter().zip(rb).enumerate() {
        let d = x - y;
        acc[l] += d * d;
    }
    reduce16(&acc)
}

/// `(q · b, b · b)` in one pass, each sum in exactly the order of [`dot_portable`].
#[inline(always)]
fn dot_norm_portable(q: &[f32], b: &[f32]) -> (f32, f32) {
    let n = q.len().min(b.len());
    let (ca, ra) = q[..n].as_chunks::<16>();
    let (cb, rb) = b[..n].as_chunks::<16>();
    let mut acc = [0f32; 16];
    let mut nrm = [0f32; 16];
    for (x, y) in ca.iter().zip(cb) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
            nrm[l] += y[l] * y[l];
        }
    }
    for (l, (x, y)) in ra.iter().zip(rb).enumerate() {
        acc[l] += x * y;
        nrm[l] += y * y;
    }
    (reduce16(&acc), reduce16(&nrm))
}

#[inline(always)]
pub(super) fn reduce16(acc: &[f32; 16]) -> f32 {
    let mut s8 = [0f32; 8];
    for l in 0..8 {
        s8[l] = acc[l] + acc[l + 8];
    }
    let s4 = [s8[0] + s8[4], s8[1] + s8[5], s8[2] + s8[6], s8[3] + s8[7]];
    (s4[0] + s4[2]) + (s4[1] + s4[3])
}

#[inline(always)]
fn u8i8_portable(q: &[i8], code: &[u8]) -> i32 {
    let n = q.len().min(code.len());
    let (cq, rq) = q[..n].as_chunks::<32>();
    let (cc, rc) = code[..n].as_chunks::<32>();
    let mut acc = [0i32; 32];
    for (x, y) in cq.iter().zip(cc) {
        for l in 0..32 {
            acc[l] += i32::from(x[l]) * i32::from(y[l]);
        }
    }
    let mut s: i32 = acc.iter().sum();
    for (x, y) in rq.iter().zip(rc) {
        s += i32::from(*x) * i32::from(*y);
    }
    s
}

#[inline(always)]
fn batch_f32(q: &[f32], rows: &[f32], out: &mut [f32], f: impl Fn(&[f32], &[f32]) -> f32) {
    if q.is_empty() {
        out.iter_mut().for_each(|o| *o = f(q, q));
        return;
    }
    for (row, o) in rows.chunks_exact(q.len()).zip(out.iter_mut()) {
        *o = f(q, row);
    }
}

#[inline(always)]
fn batch_cos(q: &[f32], rows: &[f32], out: &mut [f32], f: impl Fn(&[f32], &[f32]) -> (f32, f32)) {
    let qn = f(q, q).1.sqrt();
    if q.is_empty() {
        out.iter_mut().for_each(|o| *o = 1.0);
        return;
    }
    for (row, o) in rows.chunks_exact(q.len()).zip(out.iter_mut()) {
        let (d, n2) = f(q, row);
        *o = cosine_from(d, qn * n2.sqrt());
    }
}

#[inline(always)]
fn batch_u8i8(q: &[i8], codes: &[u8], out: &mut [i32], f: impl Fn(&[i8], &[u8]) -> i32) {
    if q.is_empty() {
        out.iter_mut().for_each(|o| *o = 0);
        return;
    }
    for (row, o) in codes.chunks_exact(q.len()).zip(out.iter_mut()) {
        *o = f(q, row);
    }
}

static PORTABLE: Kernels = Kernels {
    name: "portable",
    dot: dot_portable,
    l2sq: l2sq_portable,
    dot_batch: |q, r, o| batch_f32(q, r, o, dot_portable),
    l2sq_batch: |q, r, o| batch_f32(q, r, o, l2sq_portable),
    cos_batch: |q, r, o| batch_cos(q, r, o, dot_norm_portable),
    u8i8: u8i8_portable,
    u8i8_batch: |q, c, o| batch_u8i8(q, c, o, u8i8_portable),
};

/// Hints the CPU to load `bytes` (at most the first `max` bytes) into cache; no effect off x86-64.
#[inline]
pub fn prefetch(bytes: &[u8], max: usize) {
    #[cfg(target_arch = "x86_64")]
    x86::prefetch_lines(&bytes[..bytes.len().min(max)]);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (bytes, max);
}

/// Hints the CPU to load the cache line holding `floats[0]` (nothing for an empty slice).
#[inline]
pub fn prefetch_f32(floats: &[f32]) {
    let bytes = floats.first().map_or(&[][..], float_bytes);
    prefetch(bytes, 1);
}

/// The bytes of one float, in place.
fn float_bytes(f: &f32) -> &[u8] {
    // SAFETY: an f32 is 4 initialised bytes with no padding; u8 has alignment 1 and the slice
    // borrows `f` for its lifetime.
    unsafe { std::slice::from_raw_parts((f as *const f32).cast::<u8>(), 4) }
}

/// Deterministic `a · b` (same bits on every CPU; see the module invariants).
pub fn det_dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if x86::has_avx2() {
            // SAFETY: AVX2 presence checked at runtime.
            return unsafe { x86::det_dot_avx2(a, b) };
        }
    }
    dot_portable(a, b)
}

/// Deterministic `out[i] = q · rows[i]`.
pub fn det_dot_batch(q: &[f32], rows: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if x86::has_avx2() {
            // SAFETY: AVX2 presence checked at runtime.
            return unsafe { x86::det_dot_batch_avx2(q, rows, out) };
        }
    }
    batch_f32(q, rows, out, dot_portable)
}

/// Deterministic `out[i] = |q - rows[i]|²`.
pub fn det_l2sq_batch(q: &[f32], rows: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if x86::has_avx2() {
            // SAFETY: AVX2 presence checked at runtime.
            return unsafe { x86::det_l2sq_batch_avx2(q, rows, out) };
        }
    }
    batch_f32(q, rows, out, l2sq_portable)
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    pub(in crate::index::vector) fn has_avx2() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    pub(super) fn has_avx512() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
    }
    pub(super) fn has_vnni() -> bool {
        is_x86_feature_detected!("avx512vnni")
    }

    // ---- Deterministic kernels: the portable 16-lane order (lane l sums elements i ≡ l mod 16,
    // separate mul and add), written with AVX2 intrinsics; the reduction reuses `reduce16`.
    #[inline(always)]
    unsafe fn det_dot_body(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= n {
            lo = _mm256_add_ps(lo, _mm256_mul_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))));
            hi = _mm256_add_ps(
                hi,
                _mm256_mul_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8))),
            );
            i += 16;
        }
        let mut acc = [0f32; 16];
        _mm256_storeu_ps(acc.as_mut_ptr(), lo);
        _mm256_storeu_ps(acc.as_mut_ptr().add(8), hi);
        let mut l = 0;
        while i < n {
            acc[l] += *pa.add(i) * *pb.add(i);
            i += 1;
            l += 1;
        }
        reduce16(&acc)
    }

    #[inline(always)]
    unsafe fn det_l2sq_body(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= n {
            let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            let d1 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)));
            lo = _mm256_add_ps(lo, _mm256_mul_ps(d0, d0));
            hi = _mm256_add_ps(hi, _mm256_mul_ps(d1, d1));
            i += 16;
        }
        let mut acc = [0f32; 16];
        _mm256_storeu_ps(acc.as_mut_ptr(), lo);
        _mm256_storeu_ps(acc.as_mut_ptr().add(8), hi);
        let mut l = 0;
        while i < n {
            let d = *pa.add(i) - *pb.add(i);
            acc[l] += d * d;
            i += 1;
            l += 1;
        }
        reduce16(&acc)
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn det_dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        det_dot_body(a, b)
    }
    // Note: pass closures (which inherit the target features), not fn items, to the batch
    // helpers: a fn item's call shim would be compiled for the baseline target.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn det_dot_batch_avx2(q: &[f32], rows: &[f32], out: &mut [f32]) {
        batch_f32(q, rows, out, |a, b| det_dot_body(a, b))
    }
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn det_l2sq_batch_avx2(q: &[f32], rows: &[f32], out: &mut [f32]) {
        batch_f32(q, rows, out, |a, b| det_l2sq_body(a, b))
    }

    // ---- AVX2 + FMA intrinsics.
    #[inline(always)]
    unsafe fn hsum256(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    #[inline(always)]
    unsafe fn dot_avx2_body(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, x) in acc.iter_mut().enumerate() {
                *x = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 8 * j)),
                    _mm256_loadu_ps(pb.add(i + 8 * j)),
                    *x,
                );
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc[0]);
            i += 8;
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut s = hsum256(v);
        while i < n {
            s += *pa.add(i) * *pb.add(i);
            i += 1;
        }
        s
    }

    #[inline(always)]
    unsafe fn l2sq_avx2_body(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, x) in acc.iter_mut().enumerate() {
                let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i + 8 * j)), _mm256_loadu_ps(pb.add(i + 8 * j)));
                *x = _mm256_fmadd_ps(d, d, *x);
            }
            i += 32;
        }
        while i + 8 <= n {
            let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            acc[0] = _mm256_fmadd_ps(d, d, acc[0]);
            i += 8;
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut s = hsum256(v);
        while i < n {
            let d = *pa.add(i) - *pb.add(i);
            s += d * d;
            i += 1;
        }
        s
    }

    /// `(q · b, b · b)` in one pass, each sum in exactly the order of [`dot_avx2_body`] (the same
    /// accumulators, blocks, reduction and tail), so a scan's cosine equals `cosine_distance`'s bits.
    #[inline(always)]
    unsafe fn dot_norm_avx2_body(q: &[f32], b: &[f32]) -> (f32, f32) {
        let n = q.len().min(b.len());
        let (pa, pb) = (q.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut nrm = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for j in 0..4 {
                let y = _mm256_loadu_ps(pb.add(i + 8 * j));
                acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8 * j)), y, acc[j]);
                nrm[j] = _mm256_fmadd_ps(y, y, nrm[j]);
            }
            i += 32;
        }
        while i + 8 <= n {
            let y = _mm256_loadu_ps(pb.add(i));
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), y, acc[0]);
            nrm[0] = _mm256_fmadd_ps(y, y, nrm[0]);
            i += 8;
        }
        let mut d = hsum256(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
        let mut m = hsum256(_mm256_add_ps(_mm256_add_ps(nrm[0], nrm[1]), _mm256_add_ps(nrm[2], nrm[3])));
        while i < n {
            let y = *pb.add(i);
            d += *pa.add(i) * y;
            m += y * y;
            i += 1;
        }
        (d, m)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        dot_avx2_body(a, b)
    }
    #[target_feature(enable = "avx2,fma")]
    unsafe fn l2sq_avx2(a: &[f32], b: &[f32]) -> f32 {
        l2sq_avx2_body(a, b)
    }
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_batch_avx2(q: &[f32], r: &[f32], o: &mut [f32]) {
        batch_f32(q, r, o, |a, b| dot_avx2_body(a, b))
    }
    #[target_feature(enable = "avx2,fma")]
    unsafe fn l2sq_batch_avx2(q: &[f32], r: &[f32], o: &mut [f32]) {
        batch_f32(q, r, o, |a, b| l2sq_avx2_body(a, b))
    }
    #[target_feature(enable = "avx2,fma")]
    unsafe fn cos_batch_avx2(q: &[f32], r: &[f32], o: &mut [f32]) {
        batch_cos(q, r, o, |a, b| dot_norm_avx2_body(a, b))
    }
    #[target_feature(enable = "avx2,fma")]
    unsafe fn u8i8_avx2(q: &[i8], c: &[u8]) -> i32 {
        u8i8_avx2_body(q, c)
    }
    #[target_feature(enable = "avx2,fma")]
    unsafe fn u8i8_batch_avx2(q: &[i8], c: &[u8], o: &mut [i32]) {
        batch_u8i8(q, c, o, |a, b| u8i8_avx2_body(a, b))
    }

    /// `Σ q[i] · c[i]` with explicit instructions (16 bytes of each widened to 16 bits, `madd` into
    /// 32-bit lanes; exact: a lane gains at most 2 · 255 · 128 a step), not the portable loop: that one
    /// is vectorised only by an optimising build, and at the test profile's opt-level 1 it was most of
    /// a graph build on a CPU without AVX-512 (a 2,000-row merge over 2 minutes).
    #[inline(always)]
    unsafe fn u8i8_avx2_body(q: &[i8], c: &[u8]) -> i32 {
        let n = q.len().min(c.len());
        let (pq, pc) = (q.as_ptr(), c.as_ptr());
        let (mut a0, mut a1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let mut i = 0;
        while i + 32 <= n {
            a0 = _mm256_add_epi32(a0, madd16(pq.add(i), pc.add(i)));
            a1 = _mm256_add_epi32(a1, madd16(pq.add(i + 16), pc.add(i + 16)));
            i += 32;
        }
        if i + 16 <= n {
            a0 = _mm256_add_epi32(a0, madd16(pq.add(i), pc.add(i)));
            i += 16;
        }
        let v = _mm256_add_epi32(a0, a1);
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        let mut sum = _mm_cvtsi128_si32(s);
        while i < n {
            sum += i32::from(*pq.add(i)) * i32::from(*pc.add(i));
            i += 1;
        }
        sum
    }

    /// The 16 products of `q[..16]` and `c[..16]`, summed in pairs into 8 lanes.
    #[inline(always)]
    unsafe fn madd16(q: *const i8, c: *const u8) -> __m256i {
        let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(q as *const __m128i));
        let y = _mm256_cvtepu8_epi16(_mm_loadu_si128(c as *const __m128i));
        _mm256_madd_epi16(x, y)
    }

    // SAFETY (all fn pointers below): these tables are only handed out by `available_kernels`
    // after the matching runtime feature check.
    pub(super) static AVX2: Kernels = Kernels {
        name: "avx2",
        dot: |a, b| unsafe { dot_avx2(a, b) },
        l2sq: |a, b| unsafe { l2sq_avx2(a, b) },
        dot_batch: |q, r, o| unsafe { dot_batch_avx2(q, r, o) },
        l2sq_batch: |q, r, o| unsafe { l2sq_batch_avx2(q, r, o) },
        cos_batch: |q, r, o| unsafe { cos_batch_avx2(q, r, o) },
        u8i8: |q, c| unsafe { u8i8_avx2(q, c) },
        u8i8_batch: |q, c, o| unsafe { u8i8_batch_avx2(q, c, o) },
    };

    // ---- AVX-512F intrinsics (masked tails).
    #[inline(always)]
    fn tail_mask(rem: usize) -> __mmask16 {
        ((1u32 << rem) - 1) as __mmask16
    }

    #[inline(always)]
    unsafe fn dot_512_body(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for (j, x) in acc.iter_mut().enumerate() {
                *x = _mm512_fmadd_ps(
                    _mm512_loadu_ps(pa.add(i + 16 * j)),
                    _mm512_loadu_ps(pb.add(i + 16 * j)),
                    *x,
                );
            }
            i += 64;
        }
        while i + 16 <= n {
            acc[0] = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc[0]);
            i += 16;
        }
        if i < n {
            let m = tail_mask(n - i);
            acc[1] = _mm512_fmadd_ps(
                _mm512_maskz_loadu_ps(m, pa.add(i)),
                _mm512_maskz_loadu_ps(m, pb.add(i)),
                acc[1],
            );
        }
        _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])))
    }

    #[inline(always)]
    unsafe fn l2sq_512_body(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for (j, x) in acc.iter_mut().enumerate() {
                let d =
                    _mm512_sub_ps(_mm512_loadu_ps(pa.add(i + 16 * j)), _mm512_loadu_ps(pb.add(i + 16 * j)));
                *x = _mm512_fmadd_ps(d, d, *x);
            }
            i += 64;
        }
        while i + 16 <= n {
            let d = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
            acc[0] = _mm512_fmadd_ps(d, d, acc[0]);
            i += 16;
        }
        if i < n {
            let m = tail_mask(n - i);
            let d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, pa.add(i)), _mm512_maskz_loadu_ps(m, pb.add(i)));
            acc[1] = _mm512_fmadd_ps(d, d, acc[1]);
        }
        _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])))
    }

    /// `(q · b, b · b)` in one pass, each sum in exactly the order of [`dot_512_body`].
    #[inline(always)]
    unsafe fn dot_norm_512_body(q: &[f32], b: &[f32]) -> (f32, f32) {
        let n = q.len().min(b.len());
        let (pa, pb) = (q.as_ptr(), b.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut nrm = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for j in 0..4 {
                let y = _mm512_loadu_ps(pb.add(i + 16 * j));
                acc[j] = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i + 16 * j)), y, acc[j]);
                nrm[j] = _mm512_fmadd_ps(y, y, nrm[j]);
            }
            i += 64;
        }
        while i + 16 <= n {
            let y = _mm512_loadu_ps(pb.add(i));
            acc[0] = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), y, acc[0]);
            nrm[0] = _mm512_fmadd_ps(y, y, nrm[0]);
            i += 16;
        }
        if i < n {
            let m = tail_mask(n - i);
            let y = _mm512_maskz_loadu_ps(m, pb.add(i));
            acc[1] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, pa.add(i)), y, acc[1]);
            nrm[1] = _mm512_fmadd_ps(y, y, nrm[1]);
        }
        (
            _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]))),
            _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(nrm[0], nrm[1]), _mm512_add_ps(nrm[2], nrm[3]))),
        )
    }

    #[inline(always)]
    unsafe fn u8i8_vnni_body(q: &[i8], c: &[u8]) -> i32 {
        let n = q.len().min(c.len());
        let (pq, pc) = (q.as_ptr(), c.as_ptr());
        let (mut a0, mut a1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        let mut i = 0;
        while i + 128 <= n {
            a0 = _mm512_dpbusd_epi32(
                a0,
                _mm512_loadu_si512(pc.add(i) as *const _),
                _mm512_loadu_si512(pq.add(i) as *const _),
            );
            a1 = _mm512_dpbusd_epi32(
                a1,
                _mm512_loadu_si512(pc.add(i + 64) as *const _),
                _mm512_loadu_si512(pq.add(i + 64) as *const _),
            );
            i += 128;
        }
        if i + 64 <= n {
            a0 = _mm512_dpbusd_epi32(
                a0,
                _mm512_loadu_si512(pc.add(i) as *const _),
                _mm512_loadu_si512(pq.add(i) as *const _),
            );
            i += 64;
        }
        if i < n {
            let m: __mmask64 = (1u64 << (n - i)) - 1;
            a1 = _mm512_dpbusd_epi32(
                a1,
                _mm512_maskz_loadu_epi8(m, pc.add(i) as *const i8),
                _mm512_maskz_loadu_epi8(m, pq.add(i)),
            );
        }
        _mm512_reduce_add_epi32(_mm512_add_epi32(a0, a1))
    }

    #[target_feature(enable = "avx512f,avx512bw,fma,avx2")]
    unsafe fn dot_512(a: &[f32], b: &[f32]) -> f32 {
        dot_512_body(a, b)
    }
    #[target_feature(enable = "avx512f,avx512bw,fma,avx2")]
    unsafe fn l2sq_512(a: &[f32], b: &[f32]) -> f32 {
        l2sq_512_body(a, b)
    }
    #[target_feature(enable = "avx512f,avx512bw,fma,avx2")]
    unsafe fn dot_batch_512(q: &[f32], r: &[f32], o: &mut [f32]) {
        batch_f32(q, r, o, |a, b| dot_512_body(a, b))
    }
    #[target_feature(enable = "avx512f,avx512bw,fma,avx2")]
    unsafe fn l2sq_batch_512(q: &[f32], r: &[f32], o: &mut [f32]) {
        batch_f32(q, r, o, |a, b| l2sq_512_body(a, b))
    }
    #[target_feature(enable = "avx512f,avx512bw,fma,avx2")]
    unsafe fn cos_batch_512(q: &[f32], r: &[f32], o: &mut [f32]) {
        batch_cos(q, r, o, |a, b| dot_norm_512_body(a, b))
    }
    #[target_feature(enable = "avx512f,avx512bw,fma,avx2")]
    unsafe fn u8i8_512(q: &[i8], c: &[u8]) -> i32 {
        u8i8_avx2_body(q, c)
    }
    #[target_feature(enable = "avx512f,avx512bw,fma,avx2")]
    unsafe fn u8i8_batch_512(q: &[i8], c: &[u8], o: &mut [i32]) {
        batch_u8i8(q, c, o, |a, b| u8i8_avx2_body(a, b))
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn u8i8_vnni(q: &[i8], c: &[u8]) -> i32 {
        u8i8_vnni_body(q, c)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn u8i8_batch_vnni(q: &[i8], c: &[u8], o: &mut [i32]) {
        let d = q.len();
        if d == 0 {
            return batch_u8i8(q, c, o, |a, b| u8i8_vnni_body(a, b));
        }
        let rows = (c.len() / d).min(o.len());
        const AHEAD: usize = 4;
        for r in 0..rows {
            if r + AHEAD < rows {
                prefetch_lines(&c[(r + AHEAD) * d..(r + AHEAD + 1) * d]);
            }
            o[r] = u8i8_vnni_body(q, &c[r * d..(r + 1) * d]);
        }
    }

    /// Prefetches the cache lines of `b` into L1 (a hint; never faults).
    #[inline(always)]
    pub(super) fn prefetch_lines(b: &[u8]) {
        let mut off = 0;
        while off < b.len() {
            // SAFETY: prefetch is a hint on an in-bounds address; it cannot fault.
            unsafe { _mm_prefetch(b.as_ptr().add(off) as *const i8, _MM_HINT_T0) };
            off += 64;
        }
    }

    pub(super) static AVX512: Kernels = Kernels {
        name: "avx512",
        dot: |a, b| unsafe { dot_512(a, b) },
        l2sq: |a, b| unsafe { l2sq_512(a, b) },
        dot_batch: |q, r, o| unsafe { dot_batch_512(q, r, o) },
        l2sq_batch: |q, r, o| unsafe { l2sq_batch_512(q, r, o) },
        cos_batch: |q, r, o| unsafe { cos_batch_512(q, r, o) },
        u8i8: |q, c| unsafe { u8i8_512(q, c) },
        u8i8_batch: |q, c, o| unsafe { u8i8_batch_512(q, c, o) },
    };

    pub(super) static AVX512_VNNI: Kernels = Kernels {
        name: "avx512vnni",
        u8i8: |q, c| unsafe { u8i8_vnni(q, c) },
        u8i8_batch: |q, c, o| unsafe { u8i8_batch_vnni(q, c, o) },
        ..AVX512
    };
}

#[cfg(test)]
#[path = "distance_tests.rs"]
mod tests;
