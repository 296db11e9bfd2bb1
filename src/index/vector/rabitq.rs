//! Compact bit-plane codes of rotated vectors (RaBitQ, Gao & Long 2024, and its B-bit
//! extension): the graph's traversal codes when a section is built with [`super::graph::GraphCode::RaBitQ`].
//!
//! A row `r` (the centred indexed vector, zero-padded to a multiple of 64 and rotated by
//! [`Rotation`]) is stored as B-bit unsigned codes `u_j` (`x̄_j = u_j − c`, `c = (2^B − 1)/2`) in
//! B bit planes, and three factors: `|r|²`, `a = |r|² / ⟨x̄, r⟩` and `su = Σ u_j − c·P`. The
//! estimator of `⟨r, q⟩` is `a · ⟨x̄, q⟩` (RaBitQ's `⟨ō, q⟩ / ⟨ō, o⟩` scaled by the norms:
//! unbiased for a random rotation), with the query quantized to `qbits` unsigned levels
//! (`q_j ≈ lo + Δ·v_j`), so that `⟨x̄, q⟩ ≈ Δ·IP + lo·su − c·Δ·Σv` where
//! `IP = Σ_j u_j v_j` is an exact integer computed from popcounts of the planes
//! ([`super::distance::Kernels::planes_dot`]).
//!
//! One bit (B = 1) is RaBitQ's sign code; B > 1 picks, per row, the code scale (from a fixed
//! grid) that maximises the cosine between `x̄` and `r` (extended RaBitQ's criterion).
//!
//! Invariants:
//! - The rotation is orthogonal (sign flips, normalised 64-point Walsh–Hadamard blocks and
//!   permutations, [`ROUNDS`] times) and a pure function of (padded length, seed); it is
//!   computed with scalar f32 operations in a fixed order, so rows and queries rotate to the
//!   same bits on every CPU (builds are deterministic).
//! - Codes and factors are a pure function of the row (f64 sums in a fixed order).
//! - A record is `bits × P/8` code bytes then the three factors (f32 LE), padded with zeros to
//!   [`record_len`] (graph sections versions 3 and 4) or [`record_len_tight`] (version 5);
//!   `P` = the dimension rounded up to 64.
//! - Estimates never panic on any bytes: a short record reads as zeros.

use super::splitmix;

/// Rotation rounds: each mixes within 64-blocks and then permutes across them.
pub const ROUNDS: usize = 3;
/// Bytes of the per-row factors (|r|², a, su).
pub const FACTOR_BYTES: usize = 12;
/// Widest code a section may hold.
pub const MAX_BITS: u32 = 8;

/// The padded length: `dim` rounded up to 64.
pub fn padded(dim: usize) -> usize {
    dim.div_ceil(64) * 64
}

/// Bytes of one row record for `bits`-bit codes over padded length `p`: codes, factors,
/// rounded up to 16 (graph sections versions 3 and 4).
pub fn record_len(bits: u32, p: usize) -> usize {
    (bits as usize * p / 8 + FACTOR_BYTES).div_ceil(16) * 16
}

/// Bytes of one row record without the padding to 16 (graph section version 5): codes and
/// factors, rounded up to 4 (they are already a multiple of 4: `p` is a multiple of 64). The
/// estimator reads the planes and factors with unaligned loads, so nothing needs the padding.
pub fn record_len_tight(bits: u32, p: usize) -> usize {
    (bits as usize * p / 8 + FACTOR_BYTES).div_ceil(4) * 4
}

/// Query levels used with `bits`-bit codes: enough that the query's rounding error stays small
/// against the code's (RaBitQ: 4 bits for 1-bit codes).
pub fn query_bits(bits: u32) -> u32 {
    (bits + 3).min(MAX_BITS)
}

/// A random orthogonal transform of padded vectors (see the module invariants).
#[derive(Debug, Clone)]
pub struct Rotation {
    p: usize,
    signs: Vec<Vec<bool>>,
    perms: Vec<Vec<u32>>,
}

impl Rotation {
    /// The rotation of length `p` (a multiple of 64) drawn from `seed`.
    pub fn new(p: usize, seed: u64) -> Self {
        let mut s = seed;
        let mut signs = Vec::with_capacity(ROUNDS);
        let mut perms = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            signs.push((0..p).map(|_| splitmix(&mut s) & 1 == 1).collect());
            let mut perm: Vec<u32> = (0..p as u32).collect();
            for i in (1..p).rev() {
                let j = (splitmix(&mut s) % (i as u64 + 1)) as usize;
                perm.swap(i, j);
            }
            perms.push(perm);
        }
        Rotation { p, signs, perms }
    }

    /// Padded length.
    pub fn len(&self) -> usize {
        self.p
    }

    /// Whether the length is zero.
    pub fn is_empty(&self) -> bool {
        self.p == 0
    }

    /// `out` (length P) = the rotation of `x` zero-padded to P.
    pub fn apply(&self, x: &[f32], out: &mut [f32]) {
        let mut buf = vec![0f32; self.p];
        out.iter_mut().for_each(|o| *o = 0.0);
        let n = x.len().min(self.p).min(out.len());
        out[..n].copy_from_slice(&x[..n]);
        if out.len() != self.p {
            return;
        }
        for (signs, perm) in self.signs.iter().zip(&self.perms) {
            out.iter_mut().zip(signs).for_each(|(v, s)| {
                if *s {
                    *v = -*v
                }
            });
            out.chunks_exact_mut(64).for_each(fwht64);
            buf.iter_mut().zip(perm).for_each(|(b, &i)| *b = out[i as usize]);
            out.copy_from_slice(&buf);
        }
    }
}

/// Normalised Walsh–Hadamard transform of 64 values in place (orthogonal: scaled by 1/8).
fn fwht64(v: &mut [f32]) {
    let mut h = 1;
    while h < 64 {
        for i in (0..64).step_by(2 * h) {
            for j in i..i + h {
                let (a, b) = (v[j], v[j + h]);
                v[j] = a + b;
                v[j + h] = a - b;
            }
        }
        h *= 2;
    }
    v.iter_mut().for_each(|x| *x *= 0.125);
}

/// Code-scale grid for B > 1: multiples of `max|r_j| / c` tried per row.
const SCALE_GRID: [f32; 12] = [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 0.9, 1.0];

/// Writes the record of rotated row `r` (length P) into `rec` (at least [`record_len`] bytes).
pub fn encode(r: &[f32], bits: u32, rec: &mut [u8]) {
    let p = r.len();
    let levels = (1u32 << bits) - 1;
    let c = f64::from(levels) / 2.0;
    let n2: f64 = r.iter().map(|v| f64::from(*v) * f64::from(*v)).sum();
    let maxabs = r.iter().fold(0f32, |m, v| m.max(v.abs()));
    let code = |t: f32, j: usize| -> u32 {
        if bits == 1 {
            return u32::from(r[j] > 0.0);
        }
        let delta = maxabs * t / c as f32;
        ((r[j] / delta + c as f32).round().max(0.0) as u32).min(levels)
    };
    // ⟨x̄, r⟩ and |x̄|² of a candidate scale.
    let fit = |t: f32| -> (f64, f64) {
        (0..p).fold((0.0, 0.0), |(xr, xx), j| {
            let xb = f64::from(code(t, j)) - c;
            (xr + xb * f64::from(r[j]), xx + xb * xb)
        })
    };
    let t = if bits == 1 || maxabs <= 0.0 {
        1.0
    } else {
        let cos = |t: f32| {
            let (xr, xx) = fit(t);
            if xx > 0.0 {
                xr / xx.sqrt()
            } else {
                f64::NEG_INFINITY
            }
        };
        SCALE_GRID
            .iter()
            .copied()
            .fold((1.0f32, f64::NEG_INFINITY), |(bt, bc), t| {
                let v = cos(t);
                if v > bc {
                    (t, v)
                } else {
                    (bt, bc)
                }
            })
            .0
    };
    let (xr, _) = fit(t);
    rec.iter_mut().for_each(|b| *b = 0);
    let plane = p / 8;
    let mut sum_u = 0u64;
    for j in 0..p {
        let u = code(t, j);
        sum_u += u64::from(u);
        for b in 0..bits as usize {
            if u >> b & 1 == 1 {
                rec[b * plane + j / 8] |= 1 << (j % 8);
            }
        }
    }
    let a = if xr > 0.0 { n2 / xr } else { 0.0 };
    let su = sum_u as f64 - c * p as f64;
    let at = bits as usize * plane;
    for (i, v) in [n2, a, su].into_iter().enumerate() {
        rec[at + 4 * i..at + 4 * i + 4].copy_from_slice(&(v as f32).to_le_bytes());
    }
}

/// The three factors of a record (zeros when it is short).
#[inline]
pub fn factors(rec: &[u8], bits: u32, p: usize) -> [f32; 3] {
    let at = bits as usize * p / 8;
    let f = |i: usize| {
        rec.get(at + 4 * i..at + 4 * i + 4).map_or(0.0, |c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    };
    [f(0), f(1), f(2)]
}

/// The rotated row a record approximates, `a · (u_j − c)` for each of the `p` coordinates: the
/// direction of the code scaled so that its inner products estimate the row's, as the
/// estimator's. Zeros where the record is short.
pub fn decode(rec: &[u8], bits: u32, p: usize) -> Vec<f32> {
    let a = factors(rec, bits, p)[1];
    let c = ((1u32 << bits) - 1) as f32 / 2.0;
    let plane = p / 8;
    (0..p)
        .map(|j| {
            let u = (0..bits as usize).fold(0u32, |u, b| {
                let bit = rec.get(b * plane + j / 8).map_or(0, |byte| (byte >> (j % 8)) & 1);
                u | u32::from(bit) << b
            });
            a * (u as f32 - c)
        })
        .collect()
}

/// A rotated query, quantized: `qbits` bit planes of P/64 words each, and the constants of the
/// estimator.
pub struct Query {
    /// Planes, plane-major: plane p's word w at `p × words + w`.
    pub planes: Vec<u64>,
    /// Quantization step Δ.
    pub step: f32,
    /// Lowest value `lo`.
    pub lo: f32,
    /// `c·Δ·Σv`.
    pub offset: f32,
}

/// Quantizes rotated query `q` (length P) for `bits`-bit codes.
pub fn quantize(q: &[f32], bits: u32) -> Query {
    let qbits = query_bits(bits);
    let levels = (1u32 << qbits) - 1;
    let words = q.len() / 64;
    let lo = q.iter().fold(f32::INFINITY, |m, v| m.min(*v));
    let hi = q.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    let step = if hi > lo { (hi - lo) / levels as f32 } else { 1.0 };
    let lo = if lo.is_finite() { lo } else { 0.0 };
    let mut planes = vec![0u64; qbits as usize * words];
    let mut sum_v = 0u64;
    for (j, x) in q.iter().enumerate() {
        let v = (((x - lo) / step).round().max(0.0) as u32).min(levels);
        sum_v += u64::from(v);
        for p in 0..qbits as usize {
            if v >> p & 1 == 1 {
                planes[p * words + j / 64] |= 1 << (j % 64);
            }
        }
    }
    let c = ((1u32 << bits) - 1) as f32 / 2.0;
    Query { planes, step, lo, offset: c * step * sum_v as f32 }
}

/// The estimated `|r|² − 2⟨r, q⟩` of a record (the query's own |q|² left out: the ranking
/// does not need it), given `ip` = [`super::distance::Kernels::planes_dot`] of its planes.
#[inline]
pub fn estimate(q: &Query, f: [f32; 3], ip: u64) -> f32 {
    let [n2, a, su] = f;
    let xq = q.step * ip as f32 + q.lo * su - q.offset;
    n2 - 2.0 * a * xq
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::vector::distance::kernels;

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n).map(|_| (splitmix(&mut s) >> 40) as f32 / (1u64 << 24) as f32 - 0.5).collect()
    }

    /// Invariant: the rotation is orthogonal (norms and dot products kept to f32 rounding).
    #[test]
    fn rotation_keeps_norms_and_dot_products() {
        let rot = Rotation::new(128, 7);
        let (x, y) = (noise(100, 1), noise(100, 2));
        let (mut rx, mut ry) = (vec![0f32; 128], vec![0f32; 128]);
        rot.apply(&x, &mut rx);
        rot.apply(&y, &mut ry);
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f32>();
        assert!((dot(&x, &y) - dot(&rx, &ry)).abs() < 1e-4);
        assert!((dot(&x, &x) - dot(&rx, &rx)).abs() < 1e-4);
        assert_ne!(&rx[..100], &x[..], "it moves the vector");
    }

    /// Invariant: the estimate tracks the true |r|² − 2⟨r, q⟩, closer with more bits, and the
    /// integer kernel agrees with a plain sum over the codes.
    #[test]
    fn estimates_track_true_distances_and_tighten_with_bits() {
        let p = 256;
        let rot = Rotation::new(p, 3);
        let mut err = Vec::new();
        for bits in [1u32, 2, 4] {
            let mut worst = 0f32;
            let mut total = 0f32;
            for i in 0..50 {
                let (mut r, mut q) = (vec![0f32; p], vec![0f32; p]);
                rot.apply(&noise(200, 10 + i), &mut r);
                rot.apply(&noise(200, 1000 + i), &mut q);
                let mut rec = vec![0u8; record_len(bits, p)];
                encode(&r, bits, &mut rec);
                let qq = quantize(&q, bits);
                let ip =
                    kernels().planes_dot(&rec[..bits as usize * p / 8], &qq.planes, bits, query_bits(bits));
                let truth: f32 = r.iter().map(|v| v * v).sum::<f32>()
                    - 2.0 * r.iter().zip(&q).map(|(a, b)| a * b).sum::<f32>();
                let est = estimate(&qq, factors(&rec, bits, p), ip);
                let scale: f32 = r.iter().map(|v| v * v).sum::<f32>();
                worst = worst.max((est - truth).abs() / scale);
                total += (est - truth).abs() / scale;
            }
            assert!(worst < 0.5, "{bits} bits: worst relative error {worst}");
            err.push(total);
        }
        assert!(err[0] > err[1] && err[1] > err[2], "more bits, smaller errors: {err:?}");
    }

    /// Invariant: a decoded record points where its row does (cosine near 1, nearer with more
    /// bits) and keeps the row's inner product with itself (`⟨decode, r⟩ = |r|²`, the factor `a`).
    #[test]
    fn decoded_records_approximate_their_rows() {
        let p = 128;
        let rot = Rotation::new(p, 5);
        let mut cosines = Vec::new();
        for bits in [1u32, 4, 8] {
            let mut r = vec![0f32; p];
            rot.apply(&noise(100, 77), &mut r);
            let mut rec = vec![0u8; record_len(bits, p)];
            encode(&r, bits, &mut rec);
            let d = decode(&rec, bits, p);
            let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
            let r2 = dot(&r, &r);
            assert!((dot(&d, &r) - r2).abs() < 1e-3 * r2, "{bits} bits");
            cosines.push(dot(&d, &r) / (dot(&d, &d) * r2).sqrt());
        }
        assert!(cosines[0] > 0.7 && cosines[1] > cosines[0] && cosines[2] > 0.999, "{cosines:?}");
        assert_eq!(decode(&[], 4, p), vec![0.0; p], "a short record decodes to zeros");
    }
}
