//! Local embedding and reranking models: a BERT encoder (sentence-transformers bi-encoders) or a
//! BERT cross-encoder, loaded from a Hugging Face directory and run in pure Rust on the CPU.
//!
//! A directory holds `config.json`, `tokenizer.json` and `model.safetensors`, and for
//! sentence-transformers models `modules.json`, `1_Pooling/config.json` and
//! `sentence_bert_config.json` (`config`). The tokenizer is the `tokenizers` crate; the forward pass
//! is written here (`bert`) on `gemm`, the matrix kernels candle's CPU backend uses (`kernels`).
//!
//! Invariants:
//! - A [`Model`] exists only for a directory whose every needed file parsed, whose every tensor has
//!   the shape its configuration implies, and whose forward pass ran once at load with finite
//!   output; after that, inference fails only on a tokenizer error or non-finite output, never
//!   panics on input.
//! - Inputs are truncated to [`Model::max_tokens`] word-pieces, special tokens included, as
//!   sentence-transformers truncates; the reported token counts are the tokens actually fed.
//! - Results come back in input order, whatever order the batches ran in; a text's vector does
//!   not depend on the other texts of the call beyond float rounding (batches are sorted by length
//!   and packed, never padded).
//! - A call runs entirely on the calling thread: no rayon, no candle or gemm thread pool, no
//!   process-wide knob. The caller bounds inference CPU by bounding the threads that call (the
//!   daemon's CPU pool), and gets `n` cores' throughput by `n` concurrent calls.
//! - [`ModelStats`] only grow; they count public calls, not the load-time self-check.
//! - Under a query deadline ([`crate::deadline::with_deadline`]) a call stops between batches
//!   once the deadline has passed and fails: it never returns part of its texts' results.
//!
//! Why not candle's tensors: candle-core 0.11's CPU backend runs large element-wise ops on a
//! process-wide pool of spinning workers that serves one call at a time (behind a mutex),
//! candle-nn's softmax and LayerNorm on rayon's global pool, and matrix products through gemm on
//! rayon, all sized once for the whole process from `RAYON_NUM_THREADS` / `CANDLE_NUM_THREADS`.
//! Concurrent calls from the daemon's pool threads would queue behind one another and
//! oversubscribe the cores the pool is meant to bound. The forward pass therefore calls gemm
//! itself, with `Parallelism::None`.

mod bert;
mod config;
mod error;
mod kernels;
mod pooling;
mod reach;
mod weights;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

pub use config::{Activation, PoolingMode};
pub use error::{ModelError, ModelErrorKind};

use bert::Packed;
use config::ModelConfig;
use weights::BertWeights;

/// Most tokens one packed batch holds: enough rows that each product reuses its weight matrix
/// well, few enough that a call's scratch (about 17 KB a token for MiniLM) stays in the megabytes.
/// Measured on Debian documents: 1024 to 4096 run within 3% of each other, 1024 the fastest.
const BATCH_TOKENS: usize = 1024;
/// Most sequences one batch holds.
const BATCH_SEQUENCES: usize = 64;

/// A model the operator configured: its name and directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    /// The name requests use.
    pub name: String,
    /// The Hugging Face / sentence-transformers directory.
    pub path: PathBuf,
}

/// What a model does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// A bi-encoder: text → vector.
    Embedding,
    /// A cross-encoder: (query, document) → relevance score.
    CrossEncoder,
}

impl ModelKind {
    /// Its name in reports (`config check`, `GET /v1/whoami`).
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Embedding => "embedding",
            ModelKind::CrossEncoder => "cross-encoder",
        }
    }
}

/// Vectors of a batch of texts, in input order.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedded {
    /// One vector of [`Model::dims`] floats per text.
    pub vectors: Vec<Vec<f32>>,
    /// Word-pieces fed to the model (after truncation, special tokens included).
    pub tokens: u64,
}

/// Scores of (query, document) pairs, in document order.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    /// One score per document: higher is more relevant.
    pub scores: Vec<f32>,
    /// Word-pieces fed to the model.
    pub tokens: u64,
}

/// A model's cumulative work since it was loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelStats {
    /// Calls of `embed` or `score_pairs`.
    pub calls: u64,
    /// Texts embedded or pairs scored (an embedding rerank counts its query too).
    pub texts: u64,
    /// Word-pieces fed to the model.
    pub tokens: u64,
    /// Wall time spent in calls, in nanoseconds.
    pub nanos: u64,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    texts: AtomicU64,
    tokens: AtomicU64,
    nanos: AtomicU64,
}

/// A loaded model, ready to run (shared across threads behind an `Arc`).
pub struct Model {
    name: String,
    path: PathBuf,
    config: ModelConfig,
    dims: usize,
    tokenizer: Tokenizer,
    /// Whether texts may be cut to [`reach::reach`] before tokenizing (BERT's normaliser and
    /// pre-tokeniser, which its invariants are about).
    cuts_long_texts: bool,
    weights: BertWeights,
    counters: Counters,
}

/// One tokenized input.
struct Sequence {
    ids: Vec<u32>,
    types: Vec<u32>,
}

impl Model {
    /// Loads and checks the model directory of `spec`, then runs one tiny forward pass as a
    /// self-check. A missing or damaged directory is an error naming the path and the file.
    pub fn load(spec: &ModelSpec) -> Result<Model, ModelError> {
        let dir = spec.path.as_path();
        if !dir.is_dir() {
            return Err(ModelError::Missing { path: dir.to_path_buf(), file: "the directory".to_string() });
        }
        let config = ModelConfig::read(dir)?;
        let tokenizer = load_tokenizer(dir, &config)?;
        let weights = BertWeights::read(dir, &config)?;
        let dims = match config.kind {
            ModelKind::Embedding => config.pooling.len() * config.bert.hidden,
            ModelKind::CrossEncoder => 0,
        };
        let model = Model {
            name: spec.name.clone(),
            path: spec.path.clone(),
            config,
            dims,
            cuts_long_texts: bert_word_splitting(&tokenizer),
            tokenizer,
            weights,
            counters: Counters::default(),
        };
        model.self_check()?;
        Ok(model)
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Embedding or cross-encoder.
    pub fn kind(&self) -> ModelKind {
        self.config.kind
    }

    /// Width of the vectors [`Model::embed`] returns (0 for a cross-encoder).
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Word-pieces per input, special tokens included: `sentence_bert_config.json`'s
    /// `max_seq_length`, else `config.json`'s `max_position_embeddings`.
    pub fn max_tokens(&self) -> usize {
        self.config.max_tokens
    }

    /// The pooling modes (empty for a cross-encoder).
    pub fn pooling(&self) -> &[PoolingMode] {
        &self.config.pooling
    }

    /// Whether vectors are L2-normalised.
    pub fn normalized(&self) -> bool {
        self.config.normalize
    }

    /// Embeds `texts` (embedding models only), each truncated to [`Model::max_tokens`]
    /// word-pieces as sentence-transformers does. Runs on the calling thread; CPU-bound and
    /// synchronous.
    pub fn embed(&self, texts: &[&str]) -> Result<Embedded, ModelError> {
        self.require(ModelKind::Embedding, "embed texts")?;
        let started = Instant::now();
        let embedded = self.embed_unmetered(texts)?;
        self.record(started, texts.len(), embedded.tokens);
        Ok(embedded)
    }

    /// Scores (`query`, doc) pairs with a cross-encoder, or, for an embedding model, by the
    /// cosine of the embedded query and each embedded doc (a bi-encoder rerank). Runs on the
    /// calling thread; CPU-bound and synchronous.
    ///
    /// A cross-encoder reads each pair as `[CLS] query [SEP] doc [SEP]`, cut to
    /// [`Model::max_tokens`] by trimming the longer of the two first (Hugging Face's
    /// `longest_first`, what sentence-transformers' `CrossEncoder` uses). Its score is its single
    /// logit; with two or more labels, the last label's logit (by the convention of MS MARCO-style
    /// classifiers, the last label is "relevant"). Raw logits, no sigmoid: the order is the same,
    /// and they compare across calls.
    pub fn score_pairs(&self, query: &str, docs: &[&str]) -> Result<Scored, ModelError> {
        let started = Instant::now();
        let scored = match self.kind() {
            _ if docs.is_empty() => Scored { scores: Vec::new(), tokens: 0 },
            ModelKind::CrossEncoder => self.cross_scores(query, docs)?,
            ModelKind::Embedding => self.cosine_scores(query, docs)?,
        };
        let texts = docs.len() + usize::from(self.kind() == ModelKind::Embedding && !docs.is_empty());
        self.record(started, texts, scored.tokens);
        Ok(scored)
    }

    /// Cumulative work since load.
    pub fn stats(&self) -> ModelStats {
        let c = &self.counters;
        ModelStats {
            calls: c.calls.load(Ordering::Relaxed),
            texts: c.texts.load(Ordering::Relaxed),
            tokens: c.tokens.load(Ordering::Relaxed),
            nanos: c.nanos.load(Ordering::Relaxed),
        }
    }

    fn record(&self, started: Instant, texts: usize, tokens: u64) {
        let c = &self.counters;
        c.calls.fetch_add(1, Ordering::Relaxed);
        c.texts.fetch_add(texts as u64, Ordering::Relaxed);
        c.tokens.fetch_add(tokens, Ordering::Relaxed);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        c.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn require(&self, kind: ModelKind, wanted: &'static str) -> Result<(), ModelError> {
        if self.kind() == kind {
            return Ok(());
        }
        Err(ModelError::WrongKind {
            name: self.name.clone(),
            path: self.path.clone(),
            kind: self.kind(),
            wanted,
        })
    }

    fn embed_unmetered(&self, texts: &[&str]) -> Result<Embedded, ModelError> {
        let sequences =
            texts.iter().map(|t| self.tokenize(self.within_reach(t))).collect::<Result<Vec<_>, _>>()?;
        let tokens = sequences.iter().map(|s| s.ids.len() as u64).sum();
        let mut vectors = vec![Vec::new(); texts.len()];
        for batch in plan_batches(&sequences) {
            self.check_deadline(batch.len())?;
            let packed = pack(&sequences, &batch);
            let states = bert::encode(&self.weights, &self.config.bert, &packed);
            for (&index, (start, len)) in batch.iter().zip(packed.starts()) {
                vectors[index] = self.sentence_vector(&states, start, len)?;
            }
        }
        Ok(Embedded { vectors, tokens })
    }

    /// Pools (and normalises) the states of the sequence at `start`, `len` tokens.
    fn sentence_vector(&self, states: &[f32], start: usize, len: usize) -> Result<Vec<f32>, ModelError> {
        let h = self.config.bert.hidden;
        let mut vector = Vec::with_capacity(self.dims);
        pooling::pool(&self.config.pooling, &states[start * h..(start + len) * h], h, &mut vector);
        if self.config.normalize {
            pooling::normalize(&mut vector);
        }
        self.finite(&vector)?;
        Ok(vector)
    }

    fn cosine_scores(&self, query: &str, docs: &[&str]) -> Result<Scored, ModelError> {
        let texts: Vec<&str> = std::iter::once(query).chain(docs.iter().copied()).collect();
        let embedded = self.embed_unmetered(&texts)?;
        let (q, rest) = embedded.vectors.split_first().expect("the query was embedded");
        let scores = rest.iter().map(|d| pooling::cosine(q, d)).collect();
        Ok(Scored { scores, tokens: embedded.tokens })
    }

    fn cross_scores(&self, query: &str, docs: &[&str]) -> Result<Scored, ModelError> {
        let head = self.weights.head.as_ref().expect("a cross-encoder has its head (checked at load)");
        let query = self.within_reach(query);
        let sequences = docs
            .iter()
            .map(|d| self.tokenize((query, self.within_reach(d))))
            .collect::<Result<Vec<_>, _>>()?;
        let tokens = sequences.iter().map(|s| s.ids.len() as u64).sum();
        let labels = self.config.num_labels;
        let mut scores = vec![0.0; docs.len()];
        for batch in plan_batches(&sequences) {
            self.check_deadline(batch.len())?;
            let packed = pack(&sequences, &batch);
            let states = bert::encode(&self.weights, &self.config.bert, &packed);
            let logits = bert::classify(head, &self.config.bert, &states, &packed);
            for (&index, row) in batch.iter().zip(logits.chunks_exact(labels)) {
                scores[index] = row[labels - 1];
            }
        }
        self.finite(&scores)?;
        Ok(Scored { scores, tokens })
    }

    /// `text`, or the prefix of it that holds every token truncation keeps (`reach`).
    fn within_reach<'t>(&self, text: &'t str) -> &'t str {
        if self.cuts_long_texts {
            reach::reach(text, self.config.max_tokens)
        } else {
            text
        }
    }

    /// Tokenizes one text or pair, truncated, and checks its ids against the weights.
    fn tokenize<'s>(&self, input: impl Into<tokenizers::EncodeInput<'s>>) -> Result<Sequence, ModelError> {
        let encoding =
            self.tokenizer.encode_fast(input, true).map_err(|e| self.inference(format!("tokenizer: {e}")))?;
        let b = &self.config.bert;
        let ids = encoding.get_ids();
        let types = encoding.get_type_ids();
        if ids.is_empty() || ids.len() > b.max_positions {
            return Err(self.inference(format!("{} tokens after truncation", ids.len())));
        }
        if ids.iter().any(|&i| i as usize >= b.vocab_size)
            || types.iter().any(|&t| t as usize >= b.type_vocab)
        {
            return Err(self.inference("a token or token type outside the model's embeddings".to_string()));
        }
        Ok(Sequence { ids: ids.to_vec(), types: types.to_vec() })
    }

    /// Fails once the calling thread's query deadline ([`crate::deadline`]) has passed, so a
    /// long call winds down between batches instead of finishing work nobody will read.
    /// `expired` reads the clock on every 32nd question; asking once per sequence of the next
    /// batch reads it at least every 32 sequences (a few batches of the longest texts).
    fn check_deadline(&self, sequences: usize) -> Result<(), ModelError> {
        if (0..sequences).any(|_| crate::deadline::expired()) {
            return Err(self.inference("the request's deadline passed".to_string()));
        }
        Ok(())
    }

    fn finite(&self, values: &[f32]) -> Result<(), ModelError> {
        if values.iter().all(|v| v.is_finite()) {
            return Ok(());
        }
        Err(self.inference("non-finite output".to_string()))
    }

    fn inference(&self, detail: String) -> ModelError {
        ModelError::Inference { name: self.name.clone(), path: self.path.clone(), detail }
    }

    /// One tiny forward pass: the weights at least produce finite numbers of the right width.
    fn self_check(&self) -> Result<(), ModelError> {
        match self.kind() {
            ModelKind::Embedding => {
                let width = self.embed_unmetered(&["tidepool self-check"])?.vectors[0].len();
                if width == 0 || width != self.dims {
                    let detail = format!("the self-check gave a vector of {width} floats, not {}", self.dims);
                    return Err(ModelError::damaged(&self.path, "model.safetensors", detail));
                }
            }
            ModelKind::CrossEncoder => {
                self.cross_scores("tidepool", &["self-check"])?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("kind", &self.kind())
            .field("dims", &self.dims)
            .field("max_tokens", &self.max_tokens())
            .finish()
    }
}

/// Whether `tokenizer` splits words as BERT does (its normaliser, if any, BERT's; its
/// pre-tokeniser BERT's), which is what `reach` assumes.
fn bert_word_splitting(tokenizer: &Tokenizer) -> bool {
    use tokenizers::normalizers::NormalizerWrapper;
    use tokenizers::pre_tokenizers::PreTokenizerWrapper;
    let normalizer = matches!(tokenizer.get_normalizer(), None | Some(NormalizerWrapper::BertNormalizer(_)));
    normalizer && matches!(tokenizer.get_pre_tokenizer(), Some(PreTokenizerWrapper::BertPreTokenizer(_)))
}

/// Reads `tokenizer.json` and sets it to truncate at the model's length and never pad (batches
/// are packed). The file's own truncation and padding settings are replaced: sentence-transformers
/// overrides them the same way.
fn load_tokenizer(dir: &Path, config: &ModelConfig) -> Result<Tokenizer, ModelError> {
    const FILE: &str = "tokenizer.json";
    let text = config::read_required(dir, FILE)?;
    let mut tokenizer: Tokenizer = text
        .parse()
        .map_err(|e: tokenizers::Error| ModelError::damaged_by(dir, FILE, "not a tokenizer", e))?;
    tokenizer.with_padding(None);
    // The crate parallelises batch encoding and padding on rayon's global pool, neither of which
    // is used here; switched off for the process all the same, so that no path of it ever spreads
    // a call over threads the daemon does not bound (tidepool has no other tokenizers user).
    tokenizers::utils::parallelism::set_parallelism(false);
    let truncation = TruncationParams {
        max_length: config.max_tokens,
        strategy: TruncationStrategy::LongestFirst,
        stride: 0,
        direction: TruncationDirection::Right,
    };
    tokenizer
        .with_truncation(Some(truncation))
        .map_err(|e| ModelError::damaged_by(dir, FILE, "cannot truncate", e))?;
    let vocab = tokenizer.get_vocab_size(true);
    if vocab > config.bert.vocab_size {
        return Err(ModelError::damaged(
            dir,
            FILE,
            format!("{vocab} tokens, more than the model's {} embeddings", config.bert.vocab_size),
        ));
    }
    Ok(tokenizer)
}

/// Groups sequence indices into batches of similar length: sorted by length (shortest first), cut
/// at [`BATCH_SEQUENCES`] sequences or [`BATCH_TOKENS`] tokens (a longer sequence goes alone).
fn plan_batches(sequences: &[Sequence]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..sequences.len()).collect();
    order.sort_by_key(|&i| sequences[i].ids.len());
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut tokens = 0;
    for i in order {
        let len = sequences[i].ids.len();
        let full = batches.last().is_none_or(|b| b.len() >= BATCH_SEQUENCES || tokens + len > BATCH_TOKENS);
        if full {
            batches.push(Vec::new());
            tokens = 0;
        }
        batches.last_mut().expect("a batch was pushed").push(i);
        tokens += len;
    }
    batches
}

fn pack(sequences: &[Sequence], batch: &[usize]) -> Packed {
    let mut packed = Packed::default();
    for &i in batch {
        packed.push(&sequences[i].ids, &sequences[i].types);
    }
    packed
}

/// The loaded models by name.
#[derive(Default)]
pub struct ModelSet {
    models: BTreeMap<String, Arc<Model>>,
}

impl ModelSet {
    /// No models.
    pub fn empty() -> ModelSet {
        ModelSet::default()
    }

    /// Loads every spec; a name given twice is refused before anything loads.
    pub fn load(specs: &[ModelSpec]) -> Result<ModelSet, ModelError> {
        ModelSet::empty().reload(specs)
    }

    /// The set `specs` describe, for a configuration reload: a model whose name and directory are
    /// unchanged is kept as it is (the same `Arc`, its counters running on), every other one is
    /// loaded afresh. Nothing changes in `self`; on an error the caller keeps serving from it.
    pub fn reload(&self, specs: &[ModelSpec]) -> Result<ModelSet, ModelError> {
        check_unique(specs)?;
        let mut models = BTreeMap::new();
        for spec in specs {
            let kept = self.models.get(&spec.name).filter(|m| m.path == spec.path);
            let model = match kept {
                Some(model) => Arc::clone(model),
                None => Arc::new(Model::load(spec)?),
            };
            models.insert(spec.name.clone(), model);
        }
        Ok(ModelSet { models })
    }

    /// The model called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Model>> {
        self.models.get(name).cloned()
    }

    /// The names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.models.keys().cloned().collect()
    }

    /// The models, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Model>> {
        self.models.values()
    }
}

fn check_unique(specs: &[ModelSpec]) -> Result<(), ModelError> {
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    for spec in specs {
        if let Some(first) = seen.insert(&spec.name, &spec.path) {
            return Err(ModelError::Duplicate {
                name: spec.name.clone(),
                first: first.to_path_buf(),
                second: spec.path.clone(),
            });
        }
    }
    Ok(())
}

impl fmt::Debug for ModelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.models.values()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(lens: &[usize]) -> Vec<Sequence> {
        lens.iter().map(|&n| Sequence { ids: vec![1; n], types: vec![0; n] }).collect()
    }

    #[test]
    fn batches_hold_every_sequence_once_by_ascending_length() {
        let lens: Vec<usize> = (0..200).map(|i| 2 + (i * 37) % 250).collect();
        let sequences = seqs(&lens);
        let batches = plan_batches(&sequences);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        let in_order: Vec<usize> = seen.iter().map(|&i| lens[i]).collect();
        assert!(in_order.windows(2).all(|w| w[0] <= w[1]));
        seen.sort_unstable();
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
        for b in &batches {
            let tokens: usize = b.iter().map(|&i| lens[i]).sum();
            assert!(b.len() <= BATCH_SEQUENCES && (tokens <= BATCH_TOKENS || b.len() == 1));
        }
    }

    #[test]
    fn an_over_long_sequence_goes_alone() {
        let batches = plan_batches(&seqs(&[3, BATCH_TOKENS + 5, 4]));
        assert_eq!(batches, vec![vec![0, 2], vec![1]]);
        assert!(plan_batches(&[]).is_empty());
    }

    #[test]
    fn models_are_shared_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Model>();
        shareable::<ModelSet>();
    }

    #[test]
    fn duplicate_names_are_refused_before_loading() {
        let spec = |p: &str| ModelSpec { name: "m".to_string(), path: PathBuf::from(p) };
        let err = ModelSet::load(&[spec("/nowhere/a"), spec("/nowhere/b")]).unwrap_err();
        assert_eq!(err.kind(), ModelErrorKind::Duplicate);
        assert!(err.to_string().contains("/nowhere/b"), "{err}");
        let missing = ModelSet::load(&[spec("/nowhere/a")]).unwrap_err();
        assert_eq!(missing.kind(), ModelErrorKind::Missing);
        assert!(missing.to_string().contains("/nowhere/a"), "{missing}");
        assert!(ModelSet::empty().names().is_empty());
    }
}
