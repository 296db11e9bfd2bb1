//! Four deterministic dot products per row: the calibration's exact pass (`calibrate::kth_distances`)
//! scores every row of a segment against a hundred or more sampled queries; one query at a time
//! it re-read each block of rows from memory per query and ran two dependent add chains.
//!
//! Invariant: every result is bit for bit [`det_dot`]`(q, row)`: per query the same 16 lanes
//! (lane l sums the products of elements i ≡ l mod 16, a separate multiply and add, no fused
//! multiply-add), the tail added lane by lane, the same `reduce16`. Only the interleaving of
//! four queries' independent chains differs, so the record a build stores does not change.

use super::distance::det_dot;

/// `outs[j][i] = det_dot(qs[j], rows[i])` for the rows of `rows` (rows × `qs[j].len()`; every
/// query as long as the first, else each is scored alone).
pub fn det_dot4_batch(qs: [&[f32]; 4], rows: &[f32], mut outs: [&mut [f32]; 4]) {
    let dim = qs[0].len();
    if dim == 0 || qs.iter().any(|q| q.len() != dim) {
        for (q, out) in qs.into_iter().zip(outs) {
            super::distance::det_dot_batch(q, rows, out);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if super::distance::x86::has_avx2() {
            // SAFETY: AVX2 presence checked at runtime (the check `det_dot` itself dispatches on).
            return unsafe { x86::batch4(qs, rows, outs) };
        }
    }
    for (i, row) in rows.chunks_exact(dim).enumerate() {
        for (q, out) in qs.iter().zip(outs.iter_mut()) {
            if let Some(o) = out.get_mut(i) {
                *o = det_dot(q, row);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::distance::reduce16;

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn batch4(qs: [&[f32]; 4], rows: &[f32], outs: [&mut [f32]; 4]) {
        let dim = qs[0].len();
        let n = outs.iter().map(|o| o.len()).min().unwrap_or(0).min(rows.len() / dim);
        let [o0, o1, o2, o3] = outs;
        for (i, row) in rows.chunks_exact(dim).take(n).enumerate() {
            let d = dots4(&qs, row);
            (o0[i], o1[i], o2[i], o3[i]) = (d[0], d[1], d[2], d[3]);
        }
    }

    /// The four dots of `row`, each in `det_dot`'s order (see the module docs).
    #[inline(always)]
    unsafe fn dots4(qs: &[&[f32]; 4], row: &[f32]) -> [f32; 4] {
        let n = row.len();
        let pr = row.as_ptr();
        let pq = [qs[0].as_ptr(), qs[1].as_ptr(), qs[2].as_ptr(), qs[3].as_ptr()];
        let mut lo = [_mm256_setzero_ps(); 4];
        let mut hi = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 16 <= n {
            let (r0, r1) = (_mm256_loadu_ps(pr.add(i)), _mm256_loadu_ps(pr.add(i + 8)));
            for j in 0..4 {
                // det_dot multiplies query × row; the product commutes bit for bit.
                lo[j] = _mm256_add_ps(lo[j], _mm256_mul_ps(_mm256_loadu_ps(pq[j].add(i)), r0));
                hi[j] = _mm256_add_ps(hi[j], _mm256_mul_ps(_mm256_loadu_ps(pq[j].add(i + 8)), r1));
            }
            i += 16;
        }
        let mut out = [0f32; 4];
        for j in 0..4 {
            let mut acc = [0f32; 16];
            _mm256_storeu_ps(acc.as_mut_ptr(), lo[j]);
            _mm256_storeu_ps(acc.as_mut_ptr().add(8), hi[j]);
            for (l, k) in (i..n).enumerate() {
                acc[l] += *pq[j].add(k) * *pr.add(k);
            }
            out[j] = reduce16(&acc);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values with many significant bits and mixed signs, so a changed order shows in the bits.
    fn noisy(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.7
            })
            .collect()
    }

    #[test]
    fn four_at_once_are_det_dot_bit_for_bit() {
        for dim in [1usize, 7, 15, 16, 17, 31, 48, 384, 385] {
            let rows = noisy(dim * 37, dim as u64);
            let qv: Vec<Vec<f32>> = (0..4).map(|j| noisy(dim, 1000 + j)).collect();
            let mut outs = vec![vec![0f32; 37]; 4];
            {
                let [a, b, c, d] = &mut outs[..] else { unreachable!() };
                det_dot4_batch([&qv[0], &qv[1], &qv[2], &qv[3]], &rows, [a, b, c, d]);
            }
            for (j, out) in outs.iter().enumerate() {
                for (i, row) in rows.chunks_exact(dim).enumerate() {
                    assert_eq!(
                        out[i].to_bits(),
                        det_dot(&qv[j], row).to_bits(),
                        "dim {dim} query {j} row {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn queries_of_other_lengths_are_scored_alone() {
        let rows = noisy(16 * 3, 9);
        let (q, short) = (noisy(16, 1), noisy(8, 2));
        let mut outs = vec![vec![0f32; 3]; 4];
        {
            let [a, b, c, d] = &mut outs[..] else { unreachable!() };
            det_dot4_batch([&q, &short, &q, &q], &rows, [a, b, c, d]);
        }
        let mut want = vec![0f32; 3];
        super::super::distance::det_dot_batch(&short, &rows, &mut want);
        assert_eq!(outs[1], want);
        assert_eq!(outs[0][2].to_bits(), det_dot(&q, &rows[32..48]).to_bits());
    }
}
