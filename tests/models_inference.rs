//! Guards the local inference library (`tidepool::models`) against the real thing:
//! - fidelity: all-MiniLM-L6-v2 (installed by `scripts/models.sh`) embeds Debian documents and dev
//!   queries to the very vectors sentence-transformers shipped in `../shared/data/debian`
//!   (cosine ≥ 0.999 each);
//! - truncation at the model's 256 word-pieces, the empty text, batch-order independence, the
//!   bi-encoder rerank (`score_pairs` = cosine of separate embeds), counters, a passed query
//!   deadline failing the call between batches;
//! - a cross-encoder (a tiny seeded BertForSequenceClassification written here, since no pip
//!   package bundles one) loads as such, scores deterministically and order-sensitively, and its
//!   logit equals a plain f64 reference forward pass over the same weights; a tiny sentence
//!   embedding model (no `bert.` prefix, CLS pooling, a Normalize module without a folder) likewise;
//! - damaged directories fail with an error naming the path and the file, never a panic.
//!
//! The model is found at `$TIDEPOOL_TEST_MODELS/all-minilm-l6-v2` (default
//! `target/test-models/all-minilm-l6-v2`); when it is missing the tests fail, naming the script.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common;

use common::tiny_bert::{tiny_config, write_safetensors, TinyDir, HEADS, HIDDEN, LAYERS, POSITIONS};
use tidepool::models::{Model, ModelErrorKind, ModelKind, ModelSet, ModelSpec};

const DIMS: usize = 384;

fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn minilm_dir() -> PathBuf {
    let root = std::env::var_os("TIDEPOOL_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_root().join("target/test-models"));
    let dir = root.join("all-minilm-l6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "the test model is not installed at {}: run `scripts/models.sh {}` (scripts/test.sh does)",
        dir.display(),
        root.display()
    );
    dir
}

fn minilm() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let spec = ModelSpec { name: "minilm".to_string(), path: minilm_dir() };
        Model::load(&spec).unwrap_or_else(|e| panic!("{e}"))
    })
}

fn debian() -> PathBuf {
    crate_root().join("../shared/data/debian")
}

fn json_lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::io::BufReader::new(file)
        .lines()
        .take(n)
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect()
}

fn f32_rows(path: &Path, n: usize) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(DIMS * 4)
        .take(n)
        .map(|row| row.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

/// Asserts every pair's cosine is at least `floor`; returns (min, mean).
fn assert_close(what: &str, ours: &[Vec<f32>], shipped: &[Vec<f32>], floor: f32) -> (f32, f32) {
    assert_eq!(ours.len(), shipped.len());
    let cosines: Vec<f32> = ours.iter().zip(shipped).map(|(a, b)| cosine(a, b)).collect();
    let min = cosines.iter().copied().fold(f32::INFINITY, f32::min);
    let mean = cosines.iter().sum::<f32>() / cosines.len() as f32;
    eprintln!("{what}: {} vectors, cosine min {min:.7} mean {mean:.7}", cosines.len());
    for (i, c) in cosines.iter().enumerate() {
        assert!(*c >= floor, "{what} {i}: cosine {c} < {floor}");
    }
    (min, mean)
}

fn doc_text(doc: &serde_json::Value) -> String {
    format!("{}. {}", doc["title"].as_str().unwrap(), doc["body"].as_str().unwrap())
}

#[test]
fn documents_embed_to_the_shipped_vectors() {
    const N: usize = 300;
    let docs = json_lines(&debian().join("docs.jsonl"), N);
    let texts: Vec<String> = docs.iter().map(doc_text).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let embedded = minilm().embed(&refs).unwrap();
    assert!(embedded.vectors.iter().all(|v| v.len() == DIMS));
    let shipped = f32_rows(&debian().join("vectors.f32"), N);
    assert_close("docs", &embedded.vectors, &shipped, 0.999);
    assert!(embedded.tokens <= (N * 256) as u64);
}

#[test]
fn the_longest_documents_embed_truncated_to_the_shipped_vectors() {
    const N: usize = 24;
    let docs = json_lines(&debian().join("docs.jsonl"), usize::MAX);
    let mut rows: Vec<usize> = (0..docs.len()).collect();
    rows.sort_by_key(|&r| std::cmp::Reverse(doc_text(&docs[r]).len()));
    rows.truncate(N);
    let texts: Vec<String> = rows.iter().map(|&r| doc_text(&docs[r])).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let embedded = minilm().embed(&refs).unwrap();
    assert_eq!(embedded.tokens, (N * 256) as u64, "every one cut at 256 word-pieces");
    let shipped = f32_rows(&debian().join("vectors.f32"), docs.len());
    let wanted: Vec<Vec<f32>> = rows.iter().map(|&r| shipped[r].clone()).collect();
    assert_close("longest docs", &embedded.vectors, &wanted, 0.999);
}

#[test]
fn megabytes_past_the_last_kept_token_cost_nothing_and_change_nothing() {
    // The longest documents exceed 256 word-pieces: whatever follows them is truncated away, so
    // 4 MB more of it (mixed ASCII, non-ASCII, punctuation, control characters) must give the same
    // vectors bit for bit, and without tokenizing the 4 MB (a text is cut where provably enough
    // words lie before; src/models/reach.rs).
    let docs = json_lines(&debian().join("docs.jsonl"), usize::MAX);
    let mut texts: Vec<String> = docs.iter().map(doc_text).collect();
    texts.sort_by_key(|t| std::cmp::Reverse(t.len()));
    texts.truncate(8);
    let tail = "naïve café, \u{0}x-y z;日本 ".repeat(4 << 20 >> 5);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let longer: Vec<String> = texts.iter().map(|t| format!("{t} {tail}")).collect();
    let longer_refs: Vec<&str> = longer.iter().map(String::as_str).collect();
    let model = minilm();
    model.embed(&refs).unwrap(); // warm: the first call pays for lazy set-up
    let started = std::time::Instant::now();
    let plain = model.embed(&refs).unwrap();
    let plain_took = started.elapsed();
    let started = std::time::Instant::now();
    let padded = model.embed(&longer_refs).unwrap();
    let padded_took = started.elapsed();
    assert_eq!(padded, plain, "the same tokens, the same vectors");
    // Relative to the same texts without tails, so a loaded debug run does not fail it: tokenizing
    // the 32 MB of tails costs about a thousand times the plain texts' tokenizing.
    let bound = plain_took * 2 + std::time::Duration::from_secs(2);
    assert!(
        padded_took < bound,
        "{padded_took:?} against {plain_took:?} without tails: the tails were tokenized"
    );
    // A query against such a text reranks the same way.
    let q = minilm().score_pairs(&longer[0], &longer_refs[1..3]).unwrap();
    assert_eq!(q, minilm().score_pairs(&texts[0], &refs[1..3]).unwrap());
}

#[test]
fn dev_queries_embed_to_the_shipped_vectors() {
    let queries = json_lines(&debian().join("queries/queries.jsonl"), 500);
    let texts: Vec<&str> = queries.iter().map(|q| q["text"].as_str().unwrap()).collect();
    let embedded = minilm().embed(&texts).unwrap();
    let shipped = f32_rows(&debian().join("queries/query_vectors.f32"), texts.len());
    assert_close("queries", &embedded.vectors, &shipped, 0.999);
}

#[test]
fn long_texts_are_cut_at_max_tokens_and_the_empty_text_embeds() {
    let model = minilm();
    assert_eq!(model.max_tokens(), 256);
    assert_eq!((model.kind(), model.dims()), (ModelKind::Embedding, DIMS));
    // "word" is one word-piece: 254 of them plus [CLS] and [SEP] fill the window exactly.
    let long = "word ".repeat(2000);
    let exact = "word ".repeat(254);
    let embedded = model.embed(&[&long]).unwrap();
    assert_eq!(embedded.tokens, 256);
    let cut = model.embed(&[&exact]).unwrap();
    assert_eq!(cut.tokens, 256);
    assert!(cosine(&embedded.vectors[0], &cut.vectors[0]) > 0.99999);

    let empty = model.embed(&[""]).unwrap();
    assert_eq!(empty.tokens, 2, "[CLS] [SEP]");
    let norm: f32 = empty.vectors[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "normalised: {norm}");
    assert!(model.embed(&[]).unwrap().vectors.is_empty());
}

#[test]
fn a_vector_does_not_depend_on_its_batch() {
    let texts = [
        "apt",
        "a library for parsing JSON in C",
        "",
        "kernel modules for wireless network cards of many vendors",
    ];
    let together = minilm().embed(&texts).unwrap();
    for (i, text) in texts.iter().enumerate() {
        let alone = minilm().embed(&[text]).unwrap();
        assert!(cosine(&alone.vectors[0], &together.vectors[i]) > 0.99999, "text {i}");
        let gap =
            alone.vectors[0].iter().zip(&together.vectors[i]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(gap < 1e-5, "text {i}: {gap}");
    }
}

#[test]
fn embedding_rerank_is_the_cosine_of_separate_embeds() {
    let model = minilm();
    let query = "tools to read email in a terminal";
    let docs = [
        "mutt: text-based mailreader supporting MIME, GPG, PGP and threading",
        "GNU C compiler",
        "a terminal email client",
    ];
    let scored = model.score_pairs(query, &docs).unwrap();
    let q = model.embed(&[query]).unwrap();
    let separate = model.embed(&docs).unwrap();
    assert_eq!(scored.tokens, q.tokens + separate.tokens);
    for (score, d) in scored.scores.iter().zip(&separate.vectors) {
        assert!((score - cosine(&q.vectors[0], d)).abs() < 1e-5, "{score}");
    }
    assert!(
        scored.scores[0] > scored.scores[1] && scored.scores[2] > scored.scores[1],
        "{:?}",
        scored.scores
    );
}

#[test]
fn counters_add_up_calls_texts_and_tokens() {
    let dir = minilm_dir();
    let model = Model::load(&ModelSpec { name: "counted".to_string(), path: dir }).unwrap();
    assert_eq!(model.stats().calls, 0, "the load-time self-check is not counted");
    let a = model.embed(&["one", "two words"]).unwrap();
    let b = model.score_pairs("q", &["d"]).unwrap();
    let stats = model.stats();
    assert_eq!((stats.calls, stats.texts, stats.tokens), (2, 4, a.tokens + b.tokens));
    assert!(stats.nanos > 0);
}

#[test]
fn a_passed_deadline_stops_a_call_between_batches() {
    use std::time::{Duration, Instant};
    use tidepool::deadline::{with_deadline, Expired};
    let texts: Vec<String> = (0..400).map(|i| format!("document {i} {}", "word ".repeat(i % 200))).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let past = Instant::now() - Duration::from_millis(1);
    let started = Instant::now();
    let mut inner = None;
    let outcome = with_deadline(past, || inner = Some(minilm().embed(&refs).map(|e| e.vectors.len())));
    assert_eq!(outcome, Err(Expired));
    let err = inner.expect("the call ran").expect_err("the call itself fails: no partial results");
    assert_eq!(err.kind(), ModelErrorKind::Inference);
    assert!(err.to_string().contains("deadline"), "{err}");
    // Loose on purpose (a debug build on a loaded 2-core machine): the whole call takes far longer.
    assert!(started.elapsed() < Duration::from_secs(10), "wound down early: {:?}", started.elapsed());
    assert_eq!(minilm().embed(&refs[..2]).unwrap().vectors.len(), 2, "no deadline, no failure");
}

#[test]
fn a_model_set_serves_its_models_by_name() {
    let tiny = TinyDir::cross_encoder("set", &minilm_dir().join("tokenizer.json"));
    let specs = [
        ModelSpec { name: "rerank".to_string(), path: tiny.path.clone() },
        ModelSpec { name: "embed".to_string(), path: minilm_dir() },
    ];
    let set = ModelSet::load(&specs).unwrap();
    assert_eq!(set.names(), vec!["embed", "rerank"]);
    assert_eq!(set.get("rerank").unwrap().kind(), ModelKind::CrossEncoder);
    assert!(set.get("other").is_none());
    assert_eq!(set.iter().count(), 2);
    let err = set.get("rerank").unwrap().embed(&["x"]).unwrap_err();
    assert_eq!(err.kind(), ModelErrorKind::WrongKind);

    // A reload keeps what did not change and loads the rest.
    let other = TinyDir::cross_encoder("other", &minilm_dir().join("tokenizer.json"));
    let moved = [
        ModelSpec { name: "rerank".to_string(), path: other.path.clone() },
        ModelSpec { name: "embed".to_string(), path: minilm_dir() },
    ];
    let reloaded = set.reload(&moved).unwrap();
    assert!(std::sync::Arc::ptr_eq(&reloaded.get("embed").unwrap(), &set.get("embed").unwrap()));
    assert!(!std::sync::Arc::ptr_eq(&reloaded.get("rerank").unwrap(), &set.get("rerank").unwrap()));
    assert_eq!(reloaded.get("rerank").unwrap().path(), other.path);
    assert_eq!(set.reload(&specs[1..]).unwrap().names(), vec!["embed"]);
    let twice = [specs[0].clone(), ModelSpec { name: "rerank".to_string(), path: other.path.clone() }];
    assert_eq!(set.reload(&twice).unwrap_err().kind(), ModelErrorKind::Duplicate);
}

/// Word-piece ids and type ids of a text or pair, from MiniLM's tokenizer with its own settings
/// replaced by "no padding, truncate at `max`".
fn reference_tokens(input: tokenizers::EncodeInput<'_>, max: usize) -> (Vec<u32>, Vec<u32>) {
    let mut tok = tokenizers::Tokenizer::from_file(minilm_dir().join("tokenizer.json")).unwrap();
    tok.with_padding(None);
    tok.with_truncation(Some(tokenizers::TruncationParams { max_length: max, ..Default::default() }))
        .unwrap();
    let enc = tok.encode(input, true).unwrap();
    (enc.get_ids().to_vec(), enc.get_type_ids().to_vec())
}

/// erf in f64: its Maclaurin series below 3, the asymptotic series of erfc above.
fn erf64(x: f64) -> f64 {
    let a = x.abs();
    let y = if a < 3.0 {
        let (mut term, mut sum) = (a, a);
        for n in 1..80 {
            term *= -a * a / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let z = 1.0 / (a * a);
        let tail = 1.0 - z / 2.0 + 3.0 * z * z / 4.0 - 15.0 * z * z * z / 8.0;
        1.0 - (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * tail
    };
    y.copysign(x)
}

fn ref_linear(x: &[Vec<f64>], w: &[f64], b: &[f64]) -> Vec<Vec<f64>> {
    let inputs = x[0].len();
    x.iter()
        .map(|row| {
            (0..b.len())
                .map(|o| b[o] + (0..inputs).map(|i| row[i] * w[o * inputs + i]).sum::<f64>())
                .collect()
        })
        .collect()
}

fn ref_layer_norm(x: &mut [Vec<f64>], g: &[f64], b: &[f64]) {
    for row in x {
        let n = row.len() as f64;
        let mean = row.iter().sum::<f64>() / n;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        for (i, v) in row.iter_mut().enumerate() {
            *v = (*v - mean) / (var + 1e-12).sqrt() * g[i] + b[i];
        }
    }
}

/// The last hidden states of one sequence, computed the slow obvious way in f64.
fn reference_states(m: &TinyDir, ids: &[u32], types: &[u32]) -> Vec<Vec<f64>> {
    let (word, pos, kind) = (
        m.get("embeddings.word_embeddings.weight"),
        m.get("embeddings.position_embeddings.weight"),
        m.get("embeddings.token_type_embeddings.weight"),
    );
    let mut x: Vec<Vec<f64>> = (0..ids.len())
        .map(|t| {
            (0..HIDDEN)
                .map(|i| {
                    word[ids[t] as usize * HIDDEN + i]
                        + pos[t * HIDDEN + i]
                        + kind[types[t] as usize * HIDDEN + i]
                })
                .collect()
        })
        .collect();
    ref_layer_norm(&mut x, &m.get("embeddings.LayerNorm.weight"), &m.get("embeddings.LayerNorm.bias"));
    let d = HIDDEN / HEADS;
    for l in 0..LAYERS {
        let at = format!("encoder.layer.{l}.");
        let lin = |x: &[Vec<f64>], name: &str| {
            ref_linear(x, &m.get(&format!("{at}{name}.weight")), &m.get(&format!("{at}{name}.bias")))
        };
        let (q, k, v) =
            (lin(&x, "attention.self.query"), lin(&x, "attention.self.key"), lin(&x, "attention.self.value"));
        let mut ctx = vec![vec![0.0; HIDDEN]; x.len()];
        for h in 0..HEADS {
            for i in 0..x.len() {
                let scores: Vec<f64> = (0..x.len())
                    .map(|j| {
                        (0..d).map(|c| q[i][h * d + c] * k[j][h * d + c]).sum::<f64>() / (d as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = exps.iter().sum();
                for c in 0..d {
                    ctx[i][h * d + c] = (0..x.len()).map(|j| exps[j] / total * v[j][h * d + c]).sum();
                }
            }
        }
        let mut attn = lin(&ctx, "attention.output.dense");
        attn.iter_mut().zip(&x).for_each(|(a, r)| a.iter_mut().zip(r).for_each(|(a, r)| *a += r));
        ref_layer_norm(
            &mut attn,
            &m.get(&format!("{at}attention.output.LayerNorm.weight")),
            &m.get(&format!("{at}attention.output.LayerNorm.bias")),
        );
        let mut up = lin(&attn, "intermediate.dense");
        up.iter_mut().flatten().for_each(|v| *v = 0.5 * *v * (1.0 + erf64(*v / std::f64::consts::SQRT_2)));
        let mut out = lin(&up, "output.dense");
        out.iter_mut().zip(&attn).for_each(|(a, r)| a.iter_mut().zip(r).for_each(|(a, r)| *a += r));
        ref_layer_norm(
            &mut out,
            &m.get(&format!("{at}output.LayerNorm.weight")),
            &m.get(&format!("{at}output.LayerNorm.bias")),
        );
        x = out;
    }
    x
}

fn reference_logit(m: &TinyDir, query: &str, doc: &str) -> f64 {
    let (ids, types) = reference_tokens((query, doc).into(), POSITIONS);
    let states = reference_states(m, &ids, &types);
    let mut pooled = ref_linear(&states[..1], &m.get("pooler.dense.weight"), &m.get("pooler.dense.bias"));
    pooled[0].iter_mut().for_each(|v| *v = v.tanh());
    ref_linear(&pooled, &m.get("classifier.weight"), &m.get("classifier.bias"))[0][0]
}

#[test]
fn a_cross_encoder_scores_pairs_like_the_reference_forward_pass() {
    let tiny = TinyDir::cross_encoder("rerank", &minilm_dir().join("tokenizer.json"));
    let model = tiny.load().unwrap();
    assert_eq!((model.kind(), model.dims(), model.max_tokens()), (ModelKind::CrossEncoder, 0, POSITIONS));
    let query = "how do I read mail in a terminal";
    let docs = ["mutt is a text-based mail reader", "GNU C compiler", ""];
    let scored = model.score_pairs(query, &docs).unwrap();
    assert_eq!(scored.scores.len(), 3);
    assert_eq!(model.score_pairs(query, &docs).unwrap(), scored, "deterministic");
    for (doc, score) in docs.iter().zip(&scored.scores) {
        let want = reference_logit(&tiny, query, doc);
        assert!((f64::from(*score) - want).abs() < 1e-4, "{doc:?}: {score} vs reference {want}");
        let alone = model.score_pairs(query, &[doc]).unwrap().scores[0];
        assert!((alone - score).abs() < 1e-5, "batch independent: {alone} vs {score}");
    }
    let swapped = model.score_pairs(docs[0], &[query]).unwrap().scores[0];
    assert!((swapped - scored.scores[0]).abs() > 1e-4, "the pair's order matters: {swapped}");
    let tokens: usize = docs.iter().map(|d| reference_tokens((query, *d).into(), POSITIONS).0.len()).sum();
    assert_eq!(scored.tokens, tokens as u64);
    assert_eq!(model.embed(&["x"]).unwrap_err().kind(), ModelErrorKind::WrongKind);
}

#[test]
fn a_sentence_model_without_prefix_pools_cls_and_normalises_like_the_reference() {
    let tiny = TinyDir::new("sentence", "BertModel", "", false, &minilm_dir().join("tokenizer.json"));
    let modules = r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]"#;
    std::fs::write(tiny.path.join("modules.json"), modules).unwrap();
    std::fs::create_dir(tiny.path.join("1_Pooling")).unwrap();
    let pooling = format!(r#"{{"word_embedding_dimension": {HIDDEN}, "pooling_mode_cls_token": true}}"#);
    std::fs::write(tiny.path.join("1_Pooling/config.json"), pooling).unwrap();
    std::fs::write(tiny.path.join("sentence_bert_config.json"), r#"{"max_seq_length": 16}"#).unwrap();
    let model = tiny.load().unwrap();
    assert_eq!((model.kind(), model.dims(), model.max_tokens()), (ModelKind::Embedding, HIDDEN, 16));
    let text =
        "a long sentence that surely holds more than sixteen word pieces once it is tokenized by the model";
    let embedded = model.embed(&[text]).unwrap();
    assert_eq!(embedded.tokens, 16);
    let (ids, types) = reference_tokens(text.into(), 16);
    let cls = &reference_states(&tiny, &ids, &types)[0];
    let norm = cls.iter().map(|v| v * v).sum::<f64>().sqrt();
    for (ours, want) in embedded.vectors[0].iter().zip(cls) {
        assert!((f64::from(*ours) - want / norm).abs() < 1e-5, "{ours} vs {}", want / norm);
    }
}

/// Loads `dir` expecting an error of `kind` whose message names the directory and `file`.
fn assert_refused(dir: &Path, kind: ModelErrorKind, file: &str) {
    let err = Model::load(&ModelSpec { name: "bad".to_string(), path: dir.to_path_buf() }).unwrap_err();
    let message = err.to_string();
    assert_eq!(err.kind(), kind, "{message}");
    assert!(message.contains(&dir.display().to_string()), "{message}");
    assert!(message.contains(file), "{message} should name {file}");
}

#[test]
fn damaged_directories_are_refused_naming_path_and_file() {
    let tiny = TinyDir::cross_encoder("damaged", &minilm_dir().join("tokenizer.json"));
    let weights = tiny.path.join("model.safetensors");
    let intact = std::fs::read(&weights).unwrap();

    std::fs::write(&weights, &intact[..intact.len() / 2]).unwrap();
    assert_refused(&tiny.path, ModelErrorKind::Damaged, "model.safetensors");
    std::fs::write(&weights, &intact[..5]).unwrap();
    assert_refused(&tiny.path, ModelErrorKind::Damaged, "model.safetensors");

    let mut wrong = tiny.tensors.clone();
    wrong.insert("classifier.weight".to_string(), (vec![2, HIDDEN], vec![0.0; 2 * HIDDEN]));
    write_safetensors(&weights, &wrong);
    assert_refused(&tiny.path, ModelErrorKind::Damaged, "classifier.weight");
    let mut gone = tiny.tensors.clone();
    gone.remove("bert.encoder.layer.1.output.dense.weight");
    write_safetensors(&weights, &gone);
    assert_refused(&tiny.path, ModelErrorKind::Damaged, "bert.encoder.layer.1.output.dense.weight");
    std::fs::remove_file(&weights).unwrap();
    assert_refused(&tiny.path, ModelErrorKind::Missing, "model.safetensors");
    std::fs::write(&weights, &intact).unwrap();
    tiny.load().unwrap();

    let tokenizer = tiny.path.join("tokenizer.json");
    let tokenizer_bytes = std::fs::read(&tokenizer).unwrap();
    std::fs::write(&tokenizer, &tokenizer_bytes[..1000]).unwrap();
    assert_refused(&tiny.path, ModelErrorKind::Damaged, "tokenizer.json");
    std::fs::remove_file(&tokenizer).unwrap();
    assert_refused(&tiny.path, ModelErrorKind::Missing, "tokenizer.json");
    std::fs::write(&tokenizer, &tokenizer_bytes).unwrap();

    let config = tiny.path.join("config.json");
    std::fs::write(&config, "{\"model_type\": \"bert\", \"hidden_size\": ").unwrap();
    assert_refused(&tiny.path, ModelErrorKind::Damaged, "config.json");
    std::fs::write(
        &config,
        tiny_config("BertForSequenceClassification").replace("\"hidden_size\": 32", "\"hidden_size\": 64"),
    )
    .unwrap();
    assert_refused(&tiny.path, ModelErrorKind::Damaged, "shape");
    std::fs::remove_file(&config).unwrap();
    assert_refused(&tiny.path, ModelErrorKind::Missing, "config.json");

    assert_refused(&tiny.path.join("nowhere"), ModelErrorKind::Missing, "directory");
}
