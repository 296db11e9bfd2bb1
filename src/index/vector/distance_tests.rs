//! Tests of the distance kernels: every kernel set against an f64 reference, and the same
//! bits from every entry point of one set.
//!
//! Invariants guarded: the module's (`distance.rs`): SIMD sets agree with the reference to
//! ~1e-5; a pair's distance has the same bits from the single, batch and fused cosine kernels
//! of one set; the deterministic kernels equal the portable ones bit for bit; the integer kernel
//! is exact.

use super::*;
use rand::{Rng, SeedableRng};

fn naive_dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum()
}
fn naive_l2(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2)).sum()
}
fn close(got: f32, want: f64, scale: f64) -> bool {
    (f64::from(got) - want).abs() <= 1e-5 * scale.max(1e-3)
}
fn rand_vec(rng: &mut rand::rngs::StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

#[test]
fn every_kernel_set_matches_the_reference() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let sets = available_kernels();
    assert_eq!(sets.last().map(|k| k.name()), Some("portable"));
    for dim in [1usize, 3, 15, 16, 17, 31, 33, 64, 100, 384, 1000] {
        let rows = 5;
        let q = rand_vec(&mut rng, dim);
        let data = rand_vec(&mut rng, dim * rows);
        for k in &sets {
            let mut out = vec![0f32; rows];
            for (r, row) in data.chunks_exact(dim).enumerate() {
                let scale = q.iter().zip(row).map(|(x, y)| f64::from((x * y).abs())).sum::<f64>();
                let d = naive_dot(&q, row);
                assert!(close(k.dot(&q, row), d, scale), "{} dot dim {dim}", k.name());
                let l = naive_l2(&q, row);
                assert!(close(k.euclidean_squared(&q, row), l, l), "{} l2 dim {dim}", k.name());
                let c = 1.0 - d / (naive_dot(&q, &q).sqrt() * naive_dot(row, row).sqrt());
                assert!(close(k.cosine_distance(&q, row), c, 1.0), "{} cos dim {dim}", k.name());
                k.dot_batch(&q, &data, &mut out);
                assert!(close(out[r], d, scale), "{} dot_batch dim {dim}", k.name());
                k.euclidean_squared_batch(&q, &data, &mut out);
                assert!(close(out[r], l, l), "{} l2_batch dim {dim}", k.name());
                k.cosine_batch(&q, &data, &mut out);
                assert!(close(out[r], c, 1.0), "{} cos_batch dim {dim}", k.name());
            }
        }
        // Deterministic kernels equal the portable ones bit for bit.
        let mut a = vec![0f32; rows];
        let mut b = vec![0f32; rows];
        det_dot_batch(&q, &data, &mut a);
        PORTABLE.dot_batch(&q, &data, &mut b);
        assert_eq!(a, b);
        assert_eq!(det_dot(&q, &data[..dim]).to_bits(), dot_portable(&q, &data[..dim]).to_bits());
        det_l2sq_batch(&q, &data, &mut a);
        PORTABLE.euclidean_squared_batch(&q, &data, &mut b);
        assert_eq!(a, b);
    }
}

#[test]
fn a_pair_has_the_same_distance_bits_from_every_entry_point() {
    // A row's `$dist` and a `VectorDist` of it come from different entry points (a fused
    // cosine scan, a rerank's single distance); a user compares them for equality.
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let dims = (1usize..=80).chain([96, 127, 128, 129, 255, 384, 385, 768, 1000]);
    for dim in dims {
        let rows = 7;
        let q = rand_vec(&mut rng, dim);
        let data = rand_vec(&mut rng, dim * rows);
        for k in available_kernels().into_iter().chain([deterministic()]) {
            let (mut cos, mut l2, mut dot) = (vec![0f32; rows], vec![0f32; rows], vec![0f32; rows]);
            k.cosine_batch(&q, &data, &mut cos);
            k.euclidean_squared_batch(&q, &data, &mut l2);
            k.dot_batch(&q, &data, &mut dot);
            for (r, row) in data.chunks_exact(dim).enumerate() {
                let (name, d) = (k.name(), dim);
                assert_eq!(cos[r].to_bits(), k.cosine_distance(&q, row).to_bits(), "{name} cos dim {d}");
                let single = k.distance(Metric::CosineDistance, &q, row);
                assert_eq!(cos[r].to_bits(), single.to_bits(), "{name} cos dim {d}");
                let qn = k.dot(&q, &q).sqrt();
                let hoisted = k.distance_with_norm(Metric::CosineDistance, &q, qn, row);
                assert_eq!(cos[r].to_bits(), hoisted.to_bits(), "{name} cos dim {d}");
                let e = k.distance(Metric::EuclideanSquared, &q, row);
                assert_eq!(l2[r].to_bits(), e.to_bits(), "{name} l2 dim {d}");
                assert_eq!(dot[r].to_bits(), k.dot(&q, row).to_bits(), "{name} dot dim {d}");
            }
        }
    }
}

#[test]
fn integer_kernel_is_exact_on_every_set() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for dim in [1usize, 3, 15, 16, 17, 31, 32, 48, 63, 64, 65, 128, 384, 1000] {
        let q: Vec<i8> = (0..dim).map(|_| rng.random_range(-128i8..=127)).collect();
        let codes: Vec<u8> = (0..dim * 4).map(|_| rng.random::<u8>()).collect();
        let want: Vec<i32> = codes
            .chunks_exact(dim)
            .map(|c| c.iter().zip(&q).map(|(a, b)| i32::from(*a) * i32::from(*b)).sum())
            .collect();
        for k in available_kernels() {
            let mut out = vec![0i32; 4];
            k.u8i8_batch(&q, &codes, &mut out);
            assert_eq!(out, want, "{} dim {dim}", k.name());
            assert_eq!(k.u8i8(&q, &codes[..dim]), want[0], "{} dim {dim}", k.name());
        }
    }
}

#[test]
fn zero_vectors_and_empty_inputs() {
    for k in available_kernels() {
        assert_eq!(k.cosine_distance(&[0.0; 5], &[1.0; 5]), 1.0);
        assert_eq!(k.dot(&[], &[]), 0.0);
        let mut out = [5.0f32; 2];
        k.cosine_batch(&[0.0, 0.0], &[1.0, 2.0, 3.0, 4.0], &mut out);
        assert_eq!(out, [1.0, 1.0]);
        // Mismatched lengths use the shorter one and never read out of bounds.
        assert_eq!(k.dot(&[1.0, 2.0, 3.0], &[1.0]), 1.0);
        assert_eq!(k.u8i8(&[1, 2, 3], &[2]), 2);
    }
}
