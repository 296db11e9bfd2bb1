//! Token states → one sentence vector, as sentence-transformers' Pooling and Normalize modules do.
//!
//! Invariants: `pool` sees exactly one sequence's token states (special tokens included, padding
//! never: batches here are packed, so every row is a real token, which is what the attention mask
//! selects in sentence-transformers); modes are concatenated in the order given; `normalize`
//! divides by `max(‖v‖, 1e-12)`, as `torch.nn.functional.normalize` does.

use super::config::PoolingMode;

/// Appends the pooled vector of one sequence (`states`: `len` rows of `hidden` floats) to `out`,
/// one `hidden`-wide block per mode.
pub fn pool(modes: &[PoolingMode], states: &[f32], hidden: usize, out: &mut Vec<f32>) {
    let len = states.len() / hidden;
    debug_assert_eq!(len * hidden, states.len());
    for mode in modes {
        let at = out.len();
        match mode {
            PoolingMode::Cls => out.extend_from_slice(&states[..hidden]),
            PoolingMode::Max => {
                out.extend_from_slice(&states[..hidden]);
                for row in states.chunks_exact(hidden).skip(1) {
                    for (m, x) in out[at..].iter_mut().zip(row) {
                        *m = m.max(*x);
                    }
                }
            }
            PoolingMode::Mean | PoolingMode::MeanSqrtLen => {
                out.resize(at + hidden, 0.0);
                for row in states.chunks_exact(hidden) {
                    for (s, x) in out[at..].iter_mut().zip(row) {
                        *s += *x;
                    }
                }
                // The sum divided by the token count (or its root), clamped as sentence-transformers
                // clamps it, so an empty sequence divides by 1e-9 rather than zero.
                let count = (len as f32).max(1e-9);
                let divisor = if *mode == PoolingMode::Mean { count } else { count.sqrt() };
                for s in &mut out[at..] {
                    *s /= divisor;
                }
            }
        }
    }
}

/// Scales `v` to unit L2 length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    for x in v {
        *x /= norm;
    }
}

/// The cosine of `a` and `b` (0 where either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Three tokens of width 2.
    const STATES: [f32; 6] = [1.0, -2.0, 3.0, 4.0, -1.0, 1.0];

    fn pooled(modes: &[PoolingMode]) -> Vec<f32> {
        let mut out = Vec::new();
        pool(modes, &STATES, 2, &mut out);
        out
    }

    #[test]
    fn each_mode_pools_as_sentence_transformers() {
        assert_eq!(pooled(&[PoolingMode::Cls]), vec![1.0, -2.0]);
        assert_eq!(pooled(&[PoolingMode::Max]), vec![3.0, 4.0]);
        assert_eq!(pooled(&[PoolingMode::Mean]), vec![1.0, 1.0]);
        let root = 3f32.sqrt();
        assert_eq!(pooled(&[PoolingMode::MeanSqrtLen]), vec![3.0 / root, 3.0 / root]);
    }

    #[test]
    fn modes_concatenate_in_order() {
        assert_eq!(
            pooled(&[PoolingMode::Cls, PoolingMode::Max, PoolingMode::Mean]),
            vec![1.0, -2.0, 3.0, 4.0, 1.0, 1.0]
        );
    }

    #[test]
    fn normalize_gives_unit_length_and_keeps_zero() {
        let mut v = vec![3.0, 4.0];
        normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut zero = vec![0.0; 3];
        normalize(&mut zero);
        assert_eq!(zero, vec![0.0; 3]);
    }

    #[test]
    fn cosine_ignores_length() {
        assert!((cosine(&[1.0, 0.0], &[5.0, 0.0]) - 1.0).abs() < 1e-7);
        assert!(cosine(&[1.0, 0.0], &[0.0, 2.0]).abs() < 1e-7);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
    }
}
