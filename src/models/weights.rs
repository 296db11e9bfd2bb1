//! A BERT encoder's weights, read from `model.safetensors` into plain `f32` vectors.
//!
//! Invariants: a [`BertWeights`] holds every tensor the forward pass reads, each with the shape the
//! configuration implies (checked here, so the forward pass indexes without failing); the query,
//! key and value projections of a layer are fused into one matrix (one product instead of three),
//! and every dense layer's matrix is stored transposed (see [`Linear`]). Names are found with or without the `bert.` prefix that
//! `BertFor…` checkpoints carry, and LayerNorm's `gamma`/`beta` as old checkpoints name them.
//! `F16` and `BF16` tensors are widened to `f32` on load; nothing else is accepted.

use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use super::config::ModelConfig;
use super::error::ModelError;
use super::ModelKind;

const FILE: &str = "model.safetensors";

/// A dense layer, its weight matrix stored transposed.
pub struct Linear {
    /// The weights as `inputs × outputs`, row-major: the transpose of PyTorch's `outputs × inputs`.
    /// In this layout gemm reads the matrix as it is, where the stored layout would have it
    /// repack the whole matrix on every product — most of the time of a one-query call.
    pub wt: Vec<f32>,
    /// The bias, one per output.
    pub b: Vec<f32>,
}

impl Linear {
    /// A layer from PyTorch's `outputs × inputs` weight matrix `w` and its bias.
    fn new(w: &[f32], b: Vec<f32>) -> Linear {
        let outputs = b.len();
        let inputs = w.len() / outputs;
        let mut wt = vec![0.0; w.len()];
        for (o, row) in w.chunks_exact(inputs).enumerate() {
            for (i, v) in row.iter().enumerate() {
                wt[i * outputs + o] = *v;
            }
        }
        Linear { wt, b }
    }
}

/// A LayerNorm's scale and shift.
pub struct Norm {
    /// Scale.
    pub gamma: Vec<f32>,
    /// Shift.
    pub beta: Vec<f32>,
}

/// One encoder layer.
pub struct Layer {
    /// Query, key and value projections stacked (rows: queries, then keys, then values).
    pub qkv: Linear,
    /// The attention output projection.
    pub attn_out: Linear,
    /// LayerNorm after attention.
    pub attn_norm: Norm,
    /// The feed-forward expansion.
    pub up: Linear,
    /// The feed-forward projection back.
    pub down: Linear,
    /// LayerNorm after the feed-forward.
    pub out_norm: Norm,
}

/// A cross-encoder's head: BERT's pooler (tanh dense over `[CLS]`) and the classifier.
pub struct Head {
    /// `hidden × hidden`.
    pub pooler: Linear,
    /// `num_labels × hidden`.
    pub classifier: Linear,
}

/// Every weight of the encoder (and head, for a cross-encoder).
pub struct BertWeights {
    /// `vocab × hidden`.
    pub word: Vec<f32>,
    /// `max_positions × hidden`.
    pub position: Vec<f32>,
    /// `type_vocab × hidden`.
    pub token_type: Vec<f32>,
    /// LayerNorm of the summed embeddings.
    pub embed_norm: Norm,
    /// The encoder layers.
    pub layers: Vec<Layer>,
    /// The classification head (cross-encoders only).
    pub head: Option<Head>,
}

impl BertWeights {
    /// Reads `dir/model.safetensors` and checks it against `config`.
    pub fn read(dir: &Path, config: &ModelConfig) -> Result<BertWeights, ModelError> {
        let bytes = match std::fs::read(dir.join(FILE)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ModelError::Missing { path: dir.to_path_buf(), file: FILE.to_string() })
            }
            Err(e) => return Err(ModelError::damaged_by(dir, FILE, "cannot be read", e)),
        };
        let tensors = SafeTensors::deserialize(&bytes)
            .map_err(|e| ModelError::damaged_by(dir, FILE, "not a safetensors file", e))?;
        let reader = Reader::new(dir, tensors)?;
        reader.weights(config)
    }
}

/// Looks tensors up by their name in a bare encoder.
struct Reader<'a> {
    dir: &'a Path,
    tensors: SafeTensors<'a>,
    prefix: &'static str,
}

impl<'a> Reader<'a> {
    fn new(dir: &'a Path, tensors: SafeTensors<'a>) -> Result<Self, ModelError> {
        let probe = "embeddings.word_embeddings.weight";
        let prefix = ["", "bert."]
            .into_iter()
            .find(|p| tensors.tensor(&format!("{p}{probe}")).is_ok())
            .ok_or_else(|| ModelError::damaged(dir, FILE, format!("no tensor {probe} (nor bert.{probe})")))?;
        Ok(Reader { dir, tensors, prefix })
    }

    fn weights(&self, config: &ModelConfig) -> Result<BertWeights, ModelError> {
        let b = &config.bert;
        let h = b.hidden;
        let layers =
            (0..b.layers).map(|i| self.layer(i, h, b.intermediate)).collect::<Result<Vec<_>, _>>()?;
        let head = match config.kind {
            ModelKind::Embedding => None,
            ModelKind::CrossEncoder => Some(Head {
                pooler: self.linear(&format!("{}pooler.dense", self.prefix), h, h)?,
                classifier: self.linear("classifier", config.num_labels, h)?,
            }),
        };
        Ok(BertWeights {
            word: self.encoder("embeddings.word_embeddings.weight", &[b.vocab_size, h])?,
            position: self.encoder("embeddings.position_embeddings.weight", &[b.max_positions, h])?,
            token_type: self.encoder("embeddings.token_type_embeddings.weight", &[b.type_vocab, h])?,
            embed_norm: self.norm(&format!("{}embeddings.LayerNorm", self.prefix), h)?,
            layers,
            head,
        })
    }

    fn layer(&self, i: usize, h: usize, inter: usize) -> Result<Layer, ModelError> {
        let at = format!("{}encoder.layer.{i}.", self.prefix);
        let (qw, qb) = self.dense(&format!("{at}attention.self.query"), h, h)?;
        let (kw, kb) = self.dense(&format!("{at}attention.self.key"), h, h)?;
        let (vw, vb) = self.dense(&format!("{at}attention.self.value"), h, h)?;
        Ok(Layer {
            qkv: Linear::new(&[qw, kw, vw].concat(), [qb, kb, vb].concat()),
            attn_out: self.linear(&format!("{at}attention.output.dense"), h, h)?,
            attn_norm: self.norm(&format!("{at}attention.output.LayerNorm"), h)?,
            up: self.linear(&format!("{at}intermediate.dense"), inter, h)?,
            down: self.linear(&format!("{at}output.dense"), h, inter)?,
            out_norm: self.norm(&format!("{at}output.LayerNorm"), h)?,
        })
    }

    /// A tensor of the encoder proper (under the prefix).
    fn encoder(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        self.tensor(&[&format!("{}{name}", self.prefix)], shape)
    }

    fn linear(&self, name: &str, outputs: usize, inputs: usize) -> Result<Linear, ModelError> {
        let (w, b) = self.dense(name, outputs, inputs)?;
        Ok(Linear::new(&w, b))
    }

    /// A dense layer's weight (`outputs × inputs`) and bias as stored.
    fn dense(&self, name: &str, outputs: usize, inputs: usize) -> Result<(Vec<f32>, Vec<f32>), ModelError> {
        Ok((
            self.tensor(&[&format!("{name}.weight")], &[outputs, inputs])?,
            self.tensor(&[&format!("{name}.bias")], &[outputs])?,
        ))
    }

    fn norm(&self, name: &str, width: usize) -> Result<Norm, ModelError> {
        Ok(Norm {
            gamma: self.tensor(&[&format!("{name}.weight"), &format!("{name}.gamma")], &[width])?,
            beta: self.tensor(&[&format!("{name}.bias"), &format!("{name}.beta")], &[width])?,
        })
    }

    /// The first of `names` present, as `f32`, checked to have `shape`.
    fn tensor(&self, names: &[&str], shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let found = names.iter().find_map(|n| self.tensors.tensor(n).ok().map(|t| (*n, t)));
        let Some((name, view)) = found else {
            return Err(ModelError::damaged(self.dir, FILE, format!("no tensor {}", names[0])));
        };
        if view.shape() != shape {
            return Err(ModelError::damaged(
                self.dir,
                FILE,
                format!("tensor {name} has shape {:?}, the configuration needs {shape:?}", view.shape()),
            ));
        }
        widen(view.dtype(), view.data()).ok_or_else(|| {
            ModelError::unsupported(self.dir, format!("tensor {name} of type {:?}", view.dtype()))
        })
    }
}

/// Little-endian `F32`, `F16` or `BF16` bytes as `f32`s (`None` for any other type).
fn widen(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    let halves = || bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]));
    match dtype {
        Dtype::F32 => {
            Some(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        }
        Dtype::BF16 => Some(halves().map(|h| f32::from_bits(u32::from(h) << 16)).collect()),
        Dtype::F16 => Some(halves().map(f16_to_f32).collect()),
        _ => None,
    }
}

/// IEEE half precision to single (exact: every half is a single).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: shift the mantissa up to an implicit leading one.
            let mut e = 127 - 14;
            let mut m = man;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((m & 0x3ff) << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linear_layer_stores_its_matrix_transposed() {
        // Two outputs, three inputs.
        let layer = Linear::new(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], vec![0.5, 0.25]);
        assert_eq!(layer.wt, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }

    #[test]
    fn halves_widen_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
        let bf = widen(Dtype::BF16, &[0x80, 0x3f]).unwrap();
        assert_eq!(bf, vec![1.0]);
        assert!(widen(Dtype::I64, &[0; 8]).is_none());
    }
}
