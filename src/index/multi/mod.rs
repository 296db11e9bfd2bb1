//! Multi-vector (late interaction) search: the exact MaxSim distance ([`maxsim`]) and the
//! MUVERA fixed dimensional encodings ([`fde`]) that index it.
//!
//! The distance of a document D (vectors d) to a query Q (vectors q) under a metric is
//! `Σ_q min_d dist(q, d)`: each query vector is matched to its nearest document vector.
//! For cosine distance this is `|Q| − Σ_q max_d cos(q, d)`, i.e. `|Q| − MaxSim`, so ranking
//! smallest first is ranking by MaxSim largest first (ColBERT); for squared euclidean it is
//! the sum of the per-query nearest distances.

pub mod fde;
pub mod maxsim;
#[cfg(test)]
mod recall_tests;
pub mod section;

/// How many MUVERA candidates a query for `k` results reranks exactly per segment: the
/// default that reaches recall@10 ≥ 0.95 against exact late-interaction distance
/// (`recall_tests`, `bench/multivector.py`).
pub fn candidate_depth(k: usize) -> usize {
    k.saturating_mul(CANDIDATES_PER_RESULT).max(MIN_CANDIDATES)
}

/// Candidates reranked per requested result.
pub const CANDIDATES_PER_RESULT: usize = 20;
/// Fewest candidates reranked.
pub const MIN_CANDIDATES: usize = 200;
