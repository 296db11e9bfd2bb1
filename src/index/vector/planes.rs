//! The bit-plane integer kernel of the RaBitQ codes (`rabitq`): `Σ_j u_j · v_j` of `bits`-bit
//! codes against `qbits`-bit query levels, both stored as bit planes, by popcounts.
//!
//! Invariants:
//! - Exact: every path (AVX-512 VPOPCNTDQ, hardware popcount, portable) returns the same integer,
//!   so graph builds and searches over the codes agree on every CPU.
//! - A code shorter than its planes gives 0 (never an out-of-bounds read).
//! - Dispatch happens once per process.

use std::sync::OnceLock;

/// `Σ_j u_j · v_j` of `bits`-bit codes `u` and `qbits`-bit query levels `v`, both stored as bit
/// planes (`code`: `bits` planes of `q.len() / qbits` little-endian u64 words, plane-major;
/// `q`: `qbits` planes of words): `Σ_b Σ_p 2^(b+p) · popcount(u_b & v_p)`. Exact; 0 when
/// `code` is shorter than the planes. Dispatch picks a hardware popcount where the CPU has one
/// (the result is the same integer on every CPU).
#[inline]
pub fn planes_dot(code: &[u8], q: &[u64], bits: u32, qbits: u32) -> u64 {
    static CHOSEN: OnceLock<PlanesFn> = OnceLock::new();
    (CHOSEN.get_or_init(planes_kernel))(code, q, bits, qbits)
}

type PlanesFn = fn(&[u8], &[u64], u32, u32) -> u64;

fn planes_kernel() -> PlanesFn {
    #[cfg(target_arch = "x86_64")]
    {
        if x86::has_vpopcnt() {
            // SAFETY: AVX-512F and VPOPCNTDQ presence checked at runtime.
            return |c, q, b, qb| unsafe { x86::planes_vpopcnt(c, q, b, qb) };
        }
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: popcnt presence checked at runtime.
            return |c, q, b, qb| unsafe { x86::planes_popcnt(c, q, b, qb) };
        }
    }
    planes_portable
}

fn planes_portable(code: &[u8], q: &[u64], bits: u32, qbits: u32) -> u64 {
    planes_dispatch(code, q, bits, qbits)
}

/// The planes kernel for the common widths with the plane counts known at compile time.
#[inline(always)]
fn planes_dispatch(code: &[u8], q: &[u64], bits: u32, qbits: u32) -> u64 {
    match (bits, qbits) {
        (1, 4) => planes_body::<1, 4>(code, q),
        (2, 5) => planes_body::<2, 5>(code, q),
        (4, 7) => planes_body::<4, 7>(code, q),
        _ => planes_any(code, q, bits as usize, qbits as usize),
    }
}

#[inline(always)]
fn planes_body<const B: usize, const Q: usize>(code: &[u8], q: &[u64]) -> u64 {
    let words = q.len() / Q;
    let plane = words * 8;
    if code.len() < B * plane {
        return 0;
    }
    let mut total = 0u64;
    for b in 0..B {
        let mut acc = [0u64; Q];
        for (w, c8) in code[b * plane..(b + 1) * plane].chunks_exact(8).enumerate() {
            let cw = u64::from_le_bytes([c8[0], c8[1], c8[2], c8[3], c8[4], c8[5], c8[6], c8[7]]);
            for (p, a) in acc.iter_mut().enumerate() {
                *a += u64::from((cw & q[p * words + w]).count_ones());
            }
        }
        total += acc.iter().enumerate().map(|(p, a)| a << (b + p)).sum::<u64>();
    }
    total
}

#[inline(always)]
fn planes_any(code: &[u8], q: &[u64], bits: usize, qbits: usize) -> u64 {
    let words = q.len().checked_div(qbits).unwrap_or(0);
    let plane = words * 8;
    if code.len() < bits * plane {
        return 0;
    }
    let mut total = 0u64;
    for b in 0..bits {
        for (w, c8) in code[b * plane..(b + 1) * plane].chunks_exact(8).enumerate() {
            let cw = u64::from_le_bytes([c8[0], c8[1], c8[2], c8[3], c8[4], c8[5], c8[6], c8[7]]);
            for p in 0..qbits {
                total += u64::from((cw & q[p * words + w]).count_ones()) << (b + p);
            }
        }
    }
    total
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Whether AVX-512F and VPOPCNTDQ are present.
    pub(super) fn has_vpopcnt() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
    }

    /// [`super::planes_dot`] eight words at a time (VPOPCNTDQ): each (code plane, query plane)
    /// pair is one and, one popcount and one shifted add per 512 dimensions.
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    pub(super) unsafe fn planes_vpopcnt(code: &[u8], q: &[u64], bits: u32, qbits: u32) -> u64 {
        let (bits, qbits) = (bits as usize, qbits as usize);
        let words = q.len().checked_div(qbits).unwrap_or(0);
        let plane = words * 8;
        if code.len() < bits * plane || words == 0 {
            return 0;
        }
        let mut total = _mm512_setzero_si512();
        let mut w0 = 0;
        while w0 < words {
            let n = (words - w0).min(8);
            let mask = ((1u16 << n) - 1) as __mmask8;
            for b in 0..bits {
                // SAFETY: words w0..w0 + n of plane b lie within `code` (length checked above);
                // masked lanes are not read.
                let c =
                    unsafe { _mm512_maskz_loadu_epi64(mask, code.as_ptr().add(b * plane + w0 * 8).cast()) };
                for p in 0..qbits {
                    // SAFETY: words w0..w0 + n of query plane p lie within `q`.
                    let v = unsafe { _mm512_maskz_loadu_epi64(mask, q.as_ptr().add(p * words + w0).cast()) };
                    let pc = _mm512_popcnt_epi64(_mm512_and_si512(c, v));
                    total = _mm512_add_epi64(total, _mm512_sll_epi64(pc, _mm_cvtsi64_si128((b + p) as i64)));
                }
            }
            w0 += 8;
        }
        _mm512_reduce_add_epi64(total) as u64
    }

    /// [`super::planes_dot`] with the hardware popcount.
    #[target_feature(enable = "popcnt")]
    pub(super) unsafe fn planes_popcnt(code: &[u8], q: &[u64], bits: u32, qbits: u32) -> u64 {
        super::planes_dispatch(code, q, bits, qbits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Invariant: the planes kernel (hardware popcount, VPOPCNTDQ, portable) is exactly the sum
    /// over the decoded codes, for every width and for lengths that are not a multiple of 512.
    #[test]
    fn planes_kernel_is_the_exact_code_sum() {
        let mut s = 9u64;
        for (bits, qbits, words) in [(1u32, 4u32, 6usize), (2, 5, 2), (4, 7, 6), (3, 6, 9), (8, 8, 1)] {
            let code: Vec<u8> = (0..bits as usize * words * 8)
                .map(|_| crate::index::vector::splitmix(&mut s) as u8)
                .collect();
            let q: Vec<u64> =
                (0..qbits as usize * words).map(|_| crate::index::vector::splitmix(&mut s)).collect();
            let bit = |w: u64, j: usize| (w >> (j % 64)) & 1;
            let mut want = 0u64;
            for j in 0..words * 64 {
                let u: u64 = (0..bits as usize)
                    .map(|b| u64::from(code[b * words * 8 + j / 8] >> (j % 8) & 1) << b)
                    .sum();
                let v: u64 = (0..qbits as usize).map(|p| bit(q[p * words + j / 64], j) << p).sum();
                want += u * v;
            }
            assert_eq!(planes_dot(&code, &q, bits, qbits), want, "{bits}/{qbits} bits, {words} words");
            assert_eq!(planes_portable(&code, &q, bits, qbits), want);
            assert_eq!(planes_dot(&code[..code.len() - 1], &q, bits, qbits), 0, "short code");
        }
    }
}
