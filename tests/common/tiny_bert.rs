//! Tiny seeded BERT model directories for tests: a `BertForSequenceClassification` cross-encoder
//! (no pip package bundles a cross-encoder's weights) or a plain `BertModel`, with all-MiniLM-L6-v2's
//! tokenizer and xorshift-seeded weights, written with the `safetensors` crate. Deterministic: the
//! same name gives the same weights.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tidepool::models::{Model, ModelSpec};

pub const HIDDEN: usize = 32;
pub const LAYERS: usize = 2;
pub const HEADS: usize = 4;
pub const INTER: usize = 64;
pub const VOCAB: usize = 30522;
pub const POSITIONS: usize = 512;

/// Seeded weights by tensor name (shape, floats).
pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        // xorshift64*, top 24 bits → [-1, 1).
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        bits as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn tensor(&mut self, shape: &[usize], centre: f32, spread: f32) -> (Vec<usize>, Vec<f32>) {
        let n = shape.iter().product();
        (shape.to_vec(), (0..n).map(|_| centre + spread * self.next()).collect())
    }
}

fn tiny_tensors(prefix: &str, head: bool, seed: u64) -> Tensors {
    let mut rng = Rng(seed);
    let mut t = Tensors::new();
    let mut put = |name: String, shape: &[usize], centre: f32, spread: f32, rng: &mut Rng| {
        t.insert(name, rng.tensor(shape, centre, spread));
    };
    let p = prefix;
    put(format!("{p}embeddings.word_embeddings.weight"), &[VOCAB, HIDDEN], 0.0, 0.5, &mut rng);
    put(format!("{p}embeddings.position_embeddings.weight"), &[POSITIONS, HIDDEN], 0.0, 0.5, &mut rng);
    put(format!("{p}embeddings.token_type_embeddings.weight"), &[2, HIDDEN], 0.0, 0.5, &mut rng);
    let dense = |name: String, out: usize, inp: usize, rng: &mut Rng, t: &mut Tensors| {
        t.insert(format!("{name}.weight"), rng.tensor(&[out, inp], 0.0, 0.3));
        t.insert(format!("{name}.bias"), rng.tensor(&[out], 0.0, 0.1));
    };
    let norm = |name: String, rng: &mut Rng, t: &mut Tensors| {
        t.insert(format!("{name}.weight"), rng.tensor(&[HIDDEN], 1.0, 0.1));
        t.insert(format!("{name}.bias"), rng.tensor(&[HIDDEN], 0.0, 0.1));
    };
    norm(format!("{p}embeddings.LayerNorm"), &mut rng, &mut t);
    for i in 0..LAYERS {
        let at = format!("{p}encoder.layer.{i}.");
        for part in ["query", "key", "value"] {
            dense(format!("{at}attention.self.{part}"), HIDDEN, HIDDEN, &mut rng, &mut t);
        }
        dense(format!("{at}attention.output.dense"), HIDDEN, HIDDEN, &mut rng, &mut t);
        norm(format!("{at}attention.output.LayerNorm"), &mut rng, &mut t);
        dense(format!("{at}intermediate.dense"), INTER, HIDDEN, &mut rng, &mut t);
        dense(format!("{at}output.dense"), HIDDEN, INTER, &mut rng, &mut t);
        norm(format!("{at}output.LayerNorm"), &mut rng, &mut t);
    }
    if head {
        dense(format!("{p}pooler.dense"), HIDDEN, HIDDEN, &mut rng, &mut t);
        dense("classifier".to_string(), 1, HIDDEN, &mut rng, &mut t);
    }
    t
}

/// Writes `tensors` as an f32 safetensors file.
pub fn write_safetensors(path: &Path, tensors: &Tensors) {
    let bytes: BTreeMap<&str, (Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, (shape, values))| {
            (name.as_str(), (shape.clone(), values.iter().flat_map(|v| v.to_le_bytes()).collect()))
        })
        .collect();
    let views = bytes.iter().map(|(name, (shape, data))| {
        (*name, safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data).unwrap())
    });
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// The `config.json` of a tiny model of `architecture`.
pub fn tiny_config(architecture: &str) -> String {
    format!(
        r#"{{"architectures": ["{architecture}"], "model_type": "bert", "hidden_size": {HIDDEN},
            "num_hidden_layers": {LAYERS}, "num_attention_heads": {HEADS}, "intermediate_size": {INTER},
            "vocab_size": {VOCAB}, "max_position_embeddings": {POSITIONS}, "type_vocab_size": 2,
            "hidden_act": "gelu", "layer_norm_eps": 1e-12, "num_labels": 1}}"#
    )
}

/// A tiny model directory in a temporary dir, with MiniLM's tokenizer.
pub struct TinyDir {
    _tmp: tempfile::TempDir,
    /// The model directory.
    pub path: PathBuf,
    /// Its weights by name.
    pub tensors: Tensors,
    prefix: &'static str,
}

impl TinyDir {
    /// A model named `name` (its seed), of `architecture`, weights under `prefix`, with a
    /// classification head when `head`; the tokenizer copied from `tokenizer_json`.
    pub fn new(
        name: &str,
        architecture: &str,
        prefix: &'static str,
        head: bool,
        tokenizer_json: &Path,
    ) -> TinyDir {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(name);
        std::fs::create_dir(&path).unwrap();
        std::fs::copy(tokenizer_json, path.join("tokenizer.json")).unwrap();
        std::fs::write(path.join("config.json"), tiny_config(architecture)).unwrap();
        let tensors = tiny_tensors(prefix, head, 0x5eed_0000 + name.len() as u64);
        write_safetensors(&path.join("model.safetensors"), &tensors);
        TinyDir { _tmp: tmp, path, tensors, prefix }
    }

    /// A BertForSequenceClassification with one label, weights under `bert.`.
    pub fn cross_encoder(name: &str, tokenizer_json: &Path) -> TinyDir {
        TinyDir::new(name, "BertForSequenceClassification", "bert.", true, tokenizer_json)
    }

    /// Loads it.
    pub fn load(&self) -> Result<Model, tidepool::models::ModelError> {
        Model::load(&ModelSpec { name: "tiny".to_string(), path: self.path.clone() })
    }

    /// A tensor's values as f64, by its name without the prefix.
    pub fn get(&self, name: &str) -> Vec<f64> {
        let key = if name == "classifier" || name.starts_with("classifier.") {
            name.to_string()
        } else {
            format!("{}{name}", self.prefix)
        };
        self.tensors[&key].1.iter().map(|&v| f64::from(v)).collect()
    }
}
