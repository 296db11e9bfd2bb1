//! The BERT encoder's forward pass over a packed batch of token sequences.
//!
//! A batch is packed, not padded: its sequences' tokens are concatenated into one `tokens × hidden`
//! matrix, so every row-wise step (embeddings, projections, feed-forward, LayerNorm) runs on real
//! tokens only, and attention runs per sequence over exactly its own tokens — the same result as
//! a padded batch with an attention mask, without computing the padding.
//!
//! Invariants: the caller guarantees every id is below the vocabulary size, every type id below the
//! token-type count, and every sequence no longer than the position table and non-empty (the
//! tokenizer adds `[CLS]` and `[SEP]`); shapes are those [`BertWeights`] checked at load. Runs on
//! the calling thread (see `kernels`).

use super::config::BertConfig;
use super::kernels::{self, View, ViewMut};
use super::weights::{BertWeights, Head};

/// Token sequences concatenated: `ids[i]` and `types[i]` belong to one token, `lens` says where each
/// sequence ends.
#[derive(Default)]
pub struct Packed {
    /// Word-piece ids.
    pub ids: Vec<u32>,
    /// Token-type (segment) ids.
    pub types: Vec<u32>,
    /// Tokens per sequence, in order.
    pub lens: Vec<usize>,
}

impl Packed {
    /// Appends one sequence.
    pub fn push(&mut self, ids: &[u32], types: &[u32]) {
        self.ids.extend_from_slice(ids);
        self.types.extend_from_slice(types);
        self.lens.push(ids.len());
    }

    /// Where each sequence starts, in tokens.
    pub fn starts(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.lens.iter().scan(0, |at, &len| {
            let start = *at;
            *at += len;
            Some((start, len))
        })
    }
}

/// The last layer's hidden states of every token: `tokens × hidden`, row-major.
pub fn encode(w: &BertWeights, cfg: &BertConfig, batch: &Packed) -> Vec<f32> {
    let h = cfg.hidden;
    let tokens = batch.ids.len();
    let mut x = embed(w, cfg, batch);
    let mut qkv = vec![0.0; tokens * 3 * h];
    let mut ctx = vec![0.0; tokens * h];
    let mut mid = vec![0.0; tokens * h];
    let mut up = vec![0.0; tokens * cfg.intermediate];
    let mut scores = Vec::new();
    for layer in &w.layers {
        kernels::linear(&mut qkv, &x, tokens, &layer.qkv.wt, &layer.qkv.b);
        attend(&mut ctx, &qkv, batch, cfg, &mut scores);
        kernels::linear(&mut mid, &ctx, tokens, &layer.attn_out.wt, &layer.attn_out.b);
        kernels::add_layer_norm(&mut mid, &x, &layer.attn_norm.gamma, &layer.attn_norm.beta, cfg.eps);
        kernels::linear(&mut up, &mid, tokens, &layer.up.wt, &layer.up.b);
        kernels::activate(&mut up, cfg.activation);
        kernels::linear(&mut x, &up, tokens, &layer.down.wt, &layer.down.b);
        kernels::add_layer_norm(&mut x, &mid, &layer.out_norm.gamma, &layer.out_norm.beta, cfg.eps);
    }
    x
}

/// Word + position + token-type embeddings, LayerNormed.
fn embed(w: &BertWeights, cfg: &BertConfig, batch: &Packed) -> Vec<f32> {
    let h = cfg.hidden;
    let mut x = vec![0.0; batch.ids.len() * h];
    for (start, len) in batch.starts() {
        for pos in 0..len {
            let t = start + pos;
            let word = &w.word[batch.ids[t] as usize * h..][..h];
            let position = &w.position[pos * h..][..h];
            let kind = &w.token_type[batch.types[t] as usize * h..][..h];
            for (i, out) in x[t * h..(t + 1) * h].iter_mut().enumerate() {
                *out = word[i] + position[i] + kind[i];
            }
        }
    }
    kernels::layer_norm(&mut x, &w.embed_norm.gamma, &w.embed_norm.beta, cfg.eps);
    x
}

/// Multi-head self-attention of each sequence over its own tokens: `ctx` (`tokens × hidden`) gets
/// `softmax(Q·Kᵀ/√d)·V` head by head, from `qkv` (`tokens × 3·hidden`: queries, keys, values).
fn attend(ctx: &mut [f32], qkv: &[f32], batch: &Packed, cfg: &BertConfig, scores: &mut Vec<f32>) {
    let h = cfg.hidden;
    let d = h / cfg.heads;
    let scale = 1.0 / (d as f32).sqrt();
    for (start, len) in batch.starts() {
        scores.resize(len * len, 0.0);
        let rows = &qkv[start * 3 * h..];
        for head in 0..cfg.heads {
            let q = View { data: &rows[head * d..], rows: len, cols: d, rs: 3 * h, cs: 1 };
            let k_t = View { data: &rows[h + head * d..], rows: d, cols: len, rs: 1, cs: 3 * h };
            let v = View { data: &rows[2 * h + head * d..], rows: len, cols: d, rs: 3 * h, cs: 1 };
            let s = ViewMut { data: scores, rows: len, cols: len, rs: len };
            kernels::matmul(s, q, k_t, scale, false);
            kernels::softmax_rows(scores, len);
            let out = ViewMut { data: &mut ctx[start * h + head * d..], rows: len, cols: d, rs: h };
            kernels::matmul(out, View::rows(scores, len, len), v, 1.0, false);
        }
    }
}

/// A cross-encoder's logits for each sequence (`sequences × num_labels`): the classifier over
/// BERT's pooler, `tanh(W·h[CLS] + b)`.
pub fn classify(head: &Head, cfg: &BertConfig, states: &[f32], batch: &Packed) -> Vec<f32> {
    let h = cfg.hidden;
    let n = batch.lens.len();
    let mut cls = Vec::with_capacity(n * h);
    for (start, _) in batch.starts() {
        cls.extend_from_slice(&states[start * h..(start + 1) * h]);
    }
    let mut pooled = vec![0.0; n * h];
    kernels::linear(&mut pooled, &cls, n, &head.pooler.wt, &head.pooler.b);
    pooled.iter_mut().for_each(|v| *v = v.tanh());
    let labels = head.classifier.b.len();
    let mut logits = vec![0.0; n * labels];
    kernels::linear(&mut logits, &pooled, n, &head.classifier.wt, &head.classifier.b);
    logits
}
