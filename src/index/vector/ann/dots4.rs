//! Integer dot products of four query codes against every centroid code at once: the IVF
//! assignment's inner loop (`assign.rs`), blocked by rows.
//!
//! One row against all centroids reads the whole centroid code block (2,700 × 384 bytes for a
//! 1M-row segment: L2, not L1) for every row, and spends one load of it per multiply. Four rows
//! at a time read each centroid code once for four rows, and the four sums are reduced together.
//!
//! Invariants: every output is the exact integer dot product `Σ q[i]·code[i]` (i32, no
//! overflow for codes of up to 2^16 bytes: |q| ≤ 127, code ≤ 255), so the result is the same
//! bits as the one-row kernel's ([`Kernels::u8i8_batch`]) on every CPU and for every path here.

use super::Kernels;

/// Rows per block.
pub(super) const ROWS: usize = 4;

/// `out[r * n + c] = q_r · codes_c` for the [`ROWS`] rows of `q` (each `dim` bytes, row-major)
/// and the `n = codes.len() / dim` codes: blocked with `kern`'s VNNI instructions, else a row at
/// a time with its one-row kernel.
pub(super) fn dots4(kern: &Kernels, q: &[i8], dim: usize, codes: &[u8], out: &mut [i32]) {
    let n = codes.len().checked_div(dim).unwrap_or(0);
    debug_assert!(q.len() >= ROWS * dim && out.len() >= ROWS * n);
    #[cfg(target_arch = "x86_64")]
    if dim > 0 && kern.is_vnni() {
        // SAFETY: the VNNI set is chosen only where the CPU has AVX-512 F/BW/VNNI
        // (`distance::available_kernels`); the slices are bounds-checked.
        return unsafe { x86::dots4_vnni(q, dim, codes, out) };
    }
    one_by_one(kern, q, dim, codes, out)
}

/// [`dots4`] a row at a time with `kern`'s one-row kernel.
fn one_by_one(kern: &Kernels, q: &[i8], dim: usize, codes: &[u8], out: &mut [i32]) {
    let n = codes.len().checked_div(dim).unwrap_or(0);
    for r in 0..ROWS {
        kern.u8i8_batch(&q[r * dim..(r + 1) * dim], codes, &mut out[r * n..(r + 1) * n]);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::ROWS;

    /// The four lanes' sums of `a[0..4]`, as `[Σa0, Σa1, Σa2, Σa3]`.
    #[inline(always)]
    unsafe fn reduce4(a: [__m512i; 4]) -> __m128i {
        // Interleave pairs: each 32-bit lane then holds a partial sum of one accumulator.
        let t01 = _mm512_add_epi32(_mm512_unpacklo_epi32(a[0], a[1]), _mm512_unpackhi_epi32(a[0], a[1]));
        let t23 = _mm512_add_epi32(_mm512_unpacklo_epi32(a[2], a[3]), _mm512_unpackhi_epi32(a[2], a[3]));
        // Per 128-bit lane: [a0, a1, a0, a1] + ... → [Σa0, Σa1, Σa2, Σa3] partials.
        let t = _mm512_add_epi32(_mm512_unpacklo_epi64(t01, t23), _mm512_unpackhi_epi64(t01, t23));
        let h = _mm256_add_epi32(_mm512_castsi512_si256(t), _mm512_extracti64x4_epi64::<1>(t));
        _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn dots4_vnni(q: &[i8], dim: usize, codes: &[u8], out: &mut [i32]) {
        let n = codes.len() / dim;
        assert!(q.len() >= ROWS * dim && out.len() >= ROWS * n);
        let full = dim / 64;
        let tail = dim % 64;
        let mask: __mmask64 = if tail == 0 { 0 } else { (1u64 << tail) - 1 };
        let pq = q.as_ptr();
        for c in 0..n {
            let pc = codes.as_ptr().add(c * dim);
            let mut acc = [_mm512_setzero_si512(); ROWS];
            for k in 0..full {
                let cv = _mm512_loadu_si512(pc.add(64 * k) as *const _);
                for (r, a) in acc.iter_mut().enumerate() {
                    *a =
                        _mm512_dpbusd_epi32(*a, cv, _mm512_loadu_si512(pq.add(r * dim + 64 * k) as *const _));
                }
            }
            if tail != 0 {
                let cv = _mm512_maskz_loadu_epi8(mask, pc.add(64 * full) as *const i8);
                for (r, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_dpbusd_epi32(
                        *a,
                        cv,
                        _mm512_maskz_loadu_epi8(mask, pq.add(r * dim + 64 * full)),
                    );
                }
            }
            let mut sums = [0i32; ROWS];
            _mm_storeu_si128(sums.as_mut_ptr() as *mut __m128i, reduce4(acc));
            for (r, s) in sums.iter().enumerate() {
                out[r * n + c] = *s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::vector::distance::{available_kernels, kernels};

    /// The exact sums, a multiply at a time.
    fn exact(q: &[i8], dim: usize, codes: &[u8]) -> Vec<i32> {
        let n = codes.len() / dim;
        let mut want = vec![0i32; ROWS * n];
        for r in 0..ROWS {
            for c in 0..n {
                let (qr, cc) = (&q[r * dim..(r + 1) * dim], &codes[c * dim..(c + 1) * dim]);
                want[r * n + c] = qr.iter().zip(cc).map(|(a, b)| i32::from(*a) * i32::from(*b)).sum();
            }
        }
        want
    }

    /// The blocked kernel and every one-row fallback give the exact sums, for dims with and
    /// without a tail and codes at the extremes of their range.
    #[test]
    fn four_rows_at_once_are_the_one_row_sums() {
        let mut s = 0x5eed_u64;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 33) as u32
        };
        for dim in [1, 63, 64, 96, 384, 385, 1536] {
            let n = 37;
            let q: Vec<i8> = (0..ROWS * dim)
                .map(|i| if i % 7 == 0 { -127 } else { ((next() % 255) as i32 - 127) as i8 })
                .collect();
            let codes: Vec<u8> = (0..n * dim).map(|i| if i % 5 == 0 { 255 } else { next() as u8 }).collect();
            let want = exact(&q, dim, &codes);
            let mut got = vec![0i32; ROWS * n];
            dots4(kernels(), &q, dim, &codes, &mut got);
            assert_eq!(got, want, "dim {dim}, blocked");
            for kern in available_kernels() {
                one_by_one(kern, &q, dim, &codes, &mut got);
                assert_eq!(got, want, "dim {dim}, {}", kern.name());
            }
        }
    }
}
