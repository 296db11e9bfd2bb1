//! A model directory's JSON descriptions, read into one [`ModelConfig`].
//!
//! The layout is Hugging Face's plus sentence-transformers' (`config.json`; `modules.json`,
//! `1_Pooling/config.json`, `sentence_bert_config.json` where present). Missing optional parts take
//! the value Hugging Face's `BertConfig` or sentence-transformers would use.
//!
//! Invariants: a [`ModelConfig`] only exists for a model this build runs exactly as
//! sentence-transformers would: a BERT encoder with absolute positions, a known activation, no
//! module in `modules.json` besides Transformer, Pooling and Normalize (a Dense layer we skipped
//! would silently give other vectors); everything else is [`ModelError::Unsupported`]. Sizes are
//! non-zero and the hidden width divides into the heads.

use std::path::Path;

use serde::Deserialize;

use super::error::ModelError;
use super::ModelKind;

/// The encoder's feed-forward activation (`hidden_act`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: the exact form, `x·Φ(x)` through erf.
    GeluErf,
    /// `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`: the tanh approximation.
    GeluTanh,
    /// `relu`.
    Relu,
}

/// The sizes of a BERT encoder (`config.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    /// Rows of the word-embedding table.
    pub vocab_size: usize,
    /// Width of every hidden state.
    pub hidden: usize,
    /// Encoder layers.
    pub layers: usize,
    /// Attention heads per layer.
    pub heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate: usize,
    /// Rows of the position-embedding table: the longest input.
    pub max_positions: usize,
    /// Rows of the token-type table.
    pub type_vocab: usize,
    /// LayerNorm epsilon.
    pub eps: f32,
    /// The feed-forward activation.
    pub activation: Activation,
}

/// One way sentence-transformers pools token states into a sentence vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolingMode {
    /// The first token's state (`[CLS]`).
    Cls,
    /// The element-wise maximum over the tokens.
    Max,
    /// The mean over the tokens (special tokens included, as the attention mask has them).
    Mean,
    /// The sum over the tokens divided by the square root of their number.
    MeanSqrtLen,
}

/// Everything the loader needs to know besides the weights and the tokenizer.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// The encoder's sizes.
    pub bert: BertConfig,
    /// Embedding or cross-encoder.
    pub kind: ModelKind,
    /// Classifier outputs (cross-encoders; 0 for embedding models).
    pub num_labels: usize,
    /// Pooling modes, concatenated in sentence-transformers' order (embedding models).
    pub pooling: Vec<PoolingMode>,
    /// Whether a Normalize module L2-normalises the pooled vector.
    pub normalize: bool,
    /// Word-pieces per input, special tokens included.
    pub max_tokens: usize,
}

impl ModelConfig {
    /// Reads the configuration of the model directory `dir`.
    pub fn read(dir: &Path) -> Result<ModelConfig, ModelError> {
        let config = read_required(dir, "config.json")?;
        let (bert, kind, num_labels) = parse_bert_config(dir, &config)?;
        let (pooling, normalize) = match kind {
            ModelKind::Embedding => read_pooling(dir, bert.hidden)?,
            ModelKind::CrossEncoder => (Vec::new(), false),
        };
        let max_seq_length = match read_optional(dir, "sentence_bert_config.json")? {
            Some(text) => parse_max_seq_length(dir, &text)?,
            None => None,
        };
        let max_tokens = max_seq_length.unwrap_or(bert.max_positions).min(bert.max_positions);
        Ok(ModelConfig { bert, kind, num_labels, pooling, normalize, max_tokens })
    }
}

/// `config.json` as Hugging Face writes it; absent fields take `BertConfig`'s defaults.
#[derive(Deserialize)]
#[serde(default)]
struct RawBertConfig {
    model_type: Option<String>,
    architectures: Vec<String>,
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    type_vocab_size: usize,
    layer_norm_eps: f64,
    hidden_act: String,
    position_embedding_type: Option<String>,
    num_labels: Option<usize>,
    id2label: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Default for RawBertConfig {
    fn default() -> Self {
        RawBertConfig {
            model_type: None,
            architectures: Vec::new(),
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_act: "gelu".to_string(),
            position_embedding_type: None,
            num_labels: None,
            id2label: None,
        }
    }
}

/// Parses `config.json`: the encoder's sizes, the model's kind and its number of labels.
pub fn parse_bert_config(dir: &Path, text: &str) -> Result<(BertConfig, ModelKind, usize), ModelError> {
    let raw: RawBertConfig = serde_json::from_str(text)
        .map_err(|e| ModelError::damaged_by(dir, "config.json", "not a model configuration", e))?;
    check_bert_family(dir, &raw)?;
    let activation = parse_activation(dir, &raw.hidden_act)?;
    if let Some(p) = raw.position_embedding_type.as_deref().filter(|p| *p != "absolute") {
        return Err(ModelError::unsupported(dir, format!("position_embedding_type {p:?}")));
    }
    let bert = BertConfig {
        vocab_size: raw.vocab_size,
        hidden: raw.hidden_size,
        layers: raw.num_hidden_layers,
        heads: raw.num_attention_heads,
        intermediate: raw.intermediate_size,
        max_positions: raw.max_position_embeddings,
        type_vocab: raw.type_vocab_size,
        eps: raw.layer_norm_eps as f32,
        activation,
    };
    check_sizes(dir, &bert)?;
    let cross_encoder = raw.architectures.iter().any(|a| a.ends_with("ForSequenceClassification"));
    if !cross_encoder {
        return Ok((bert, ModelKind::Embedding, 0));
    }
    // Hugging Face's default for a classifier without either field is two labels.
    let num_labels = raw.num_labels.or(raw.id2label.as_ref().map(|m| m.len())).unwrap_or(2);
    if num_labels == 0 {
        return Err(ModelError::damaged(dir, "config.json", "num_labels is 0"));
    }
    Ok((bert, ModelKind::CrossEncoder, num_labels))
}

/// Only BERT runs here: other encoders (RoBERTa's shifted positions, ...) would load and compute
/// wrong vectors, so they are refused by name.
fn check_bert_family(dir: &Path, raw: &RawBertConfig) -> Result<(), ModelError> {
    let is_bert = match raw.model_type.as_deref() {
        Some(t) => t == "bert",
        None => !raw.architectures.is_empty() && raw.architectures.iter().all(|a| a.starts_with("Bert")),
    };
    if is_bert {
        return Ok(());
    }
    Err(ModelError::unsupported(
        dir,
        format!(
            "model_type {:?} with architectures {:?} (only BERT encoders: BertModel, BertForSequenceClassification)",
            raw.model_type, raw.architectures
        ),
    ))
}

fn parse_activation(dir: &Path, name: &str) -> Result<Activation, ModelError> {
    match name {
        "gelu" => Ok(Activation::GeluErf),
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
        "relu" => Ok(Activation::Relu),
        other => Err(ModelError::unsupported(dir, format!("hidden_act {other:?}"))),
    }
}

fn check_sizes(dir: &Path, b: &BertConfig) -> Result<(), ModelError> {
    let sizes = [b.vocab_size, b.hidden, b.layers, b.heads, b.intermediate, b.max_positions, b.type_vocab];
    if sizes.contains(&0) || !b.hidden.is_multiple_of(b.heads) || !b.eps.is_finite() || b.eps < 0.0 {
        return Err(ModelError::damaged(
            dir,
            "config.json",
            format!(
                "impossible sizes: hidden {} in {} heads, {} layers, intermediate {}, vocabulary {}, \
                 {} positions, {} token types, eps {}",
                b.hidden,
                b.heads,
                b.layers,
                b.intermediate,
                b.vocab_size,
                b.max_positions,
                b.type_vocab,
                b.eps
            ),
        ));
    }
    Ok(())
}

/// One entry of `modules.json`.
#[derive(Deserialize)]
struct RawModule {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// What `modules.json` says: the Pooling module's folder, and whether a Normalize module follows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Modules {
    /// The Pooling module's folder, relative to the model directory.
    pub pooling_path: Option<String>,
    /// Whether a Normalize module is listed (it has no weights, so its folder may be absent).
    pub normalize: bool,
}

/// Parses `modules.json`; a module this build does not run is refused.
pub fn parse_modules(dir: &Path, text: &str) -> Result<Modules, ModelError> {
    let raw: Vec<RawModule> = serde_json::from_str(text)
        .map_err(|e| ModelError::damaged_by(dir, "modules.json", "not a module list", e))?;
    let mut modules = Modules::default();
    for module in raw {
        let name = module.kind.rsplit('.').next().unwrap_or_default();
        match name {
            "Transformer" => {}
            "Pooling" => modules.pooling_path = Some(module.path),
            "Normalize" => modules.normalize = true,
            _ => {
                return Err(ModelError::unsupported(dir, format!("module {:?} in modules.json", module.kind)))
            }
        }
    }
    Ok(modules)
}

/// A Pooling module's `config.json`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawPooling {
    word_embedding_dimension: Option<usize>,
    pooling_mode_cls_token: bool,
    pooling_mode_mean_tokens: bool,
    pooling_mode_max_tokens: bool,
    pooling_mode_mean_sqrt_len_tokens: bool,
    pooling_mode_weightedmean_tokens: bool,
    pooling_mode_lasttoken: bool,
}

/// Parses a Pooling module's `config.json` (`file` names it in errors) into its modes, in the order
/// sentence-transformers concatenates them.
pub fn parse_pooling(
    dir: &Path,
    file: &str,
    text: &str,
    hidden: usize,
) -> Result<Vec<PoolingMode>, ModelError> {
    let raw: RawPooling = serde_json::from_str(text)
        .map_err(|e| ModelError::damaged_by(dir, file, "not a pooling configuration", e))?;
    if raw.pooling_mode_weightedmean_tokens || raw.pooling_mode_lasttoken {
        return Err(ModelError::unsupported(dir, "weighted-mean or last-token pooling"));
    }
    if let Some(width) = raw.word_embedding_dimension.filter(|w| *w != hidden) {
        return Err(ModelError::damaged(
            dir,
            file,
            format!("word_embedding_dimension {width} but the encoder's hidden size is {hidden}"),
        ));
    }
    let modes: Vec<PoolingMode> = [
        (raw.pooling_mode_cls_token, PoolingMode::Cls),
        (raw.pooling_mode_max_tokens, PoolingMode::Max),
        (raw.pooling_mode_mean_tokens, PoolingMode::Mean),
        (raw.pooling_mode_mean_sqrt_len_tokens, PoolingMode::MeanSqrtLen),
    ]
    .into_iter()
    .filter_map(|(on, mode)| on.then_some(mode))
    .collect();
    if modes.is_empty() {
        return Err(ModelError::damaged(dir, file, "no pooling mode is on"));
    }
    Ok(modes)
}

/// The pooling and normalisation of an embedding model. Without `modules.json` (a plain Hugging
/// Face encoder) sentence-transformers mean-pools and does not normalise; so does this.
fn read_pooling(dir: &Path, hidden: usize) -> Result<(Vec<PoolingMode>, bool), ModelError> {
    let modules = match read_optional(dir, "modules.json")? {
        Some(text) => parse_modules(dir, &text)?,
        None => Modules { pooling_path: Some("1_Pooling".to_string()), normalize: false },
    };
    let Some(folder) = modules.pooling_path else {
        return Ok((vec![PoolingMode::Mean], modules.normalize));
    };
    let file = if folder.is_empty() { "config.json".to_string() } else { format!("{folder}/config.json") };
    let pooling = match read_optional(dir, &file)? {
        Some(text) => parse_pooling(dir, &file, &text, hidden)?,
        None => vec![PoolingMode::Mean],
    };
    Ok((pooling, modules.normalize))
}

/// `sentence_bert_config.json`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawSentenceBert {
    max_seq_length: Option<usize>,
}

/// Parses `sentence_bert_config.json`'s `max_seq_length` (absent or 0: none).
pub fn parse_max_seq_length(dir: &Path, text: &str) -> Result<Option<usize>, ModelError> {
    let raw: RawSentenceBert = serde_json::from_str(text).map_err(|e| {
        ModelError::damaged_by(
            dir,
            "sentence_bert_config.json",
            "not a sentence-transformers configuration",
            e,
        )
    })?;
    Ok(raw.max_seq_length.filter(|n| *n > 0))
}

/// Reads `dir/file` as UTF-8; its absence is [`ModelError::Missing`].
pub fn read_required(dir: &Path, file: &str) -> Result<String, ModelError> {
    read_optional(dir, file)?
        .ok_or_else(|| ModelError::Missing { path: dir.to_path_buf(), file: file.to_string() })
}

/// Reads `dir/file` as UTF-8, or `None` when it does not exist.
pub fn read_optional(dir: &Path, file: &str) -> Result<Option<String>, ModelError> {
    match std::fs::read(dir.join(file)) {
        Ok(bytes) => {
            String::from_utf8(bytes).map(Some).map_err(|e| ModelError::damaged_by(dir, file, "not UTF-8", e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ModelError::damaged_by(dir, file, "cannot be read", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::error::ModelErrorKind;

    const MINILM: &str = r#"{"architectures": ["BertModel"], "hidden_act": "gelu", "hidden_size": 384,
        "intermediate_size": 1536, "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
        "model_type": "bert", "num_attention_heads": 12, "num_hidden_layers": 6,
        "position_embedding_type": "absolute", "type_vocab_size": 2, "vocab_size": 30522}"#;

    fn dir() -> &'static Path {
        Path::new("/models/m")
    }

    #[test]
    fn an_embedding_config_reads_its_sizes() {
        let (bert, kind, labels) = parse_bert_config(dir(), MINILM).unwrap();
        assert_eq!(kind, ModelKind::Embedding);
        assert_eq!(labels, 0);
        assert_eq!((bert.hidden, bert.layers, bert.heads, bert.intermediate), (384, 6, 12, 1536));
        assert_eq!((bert.vocab_size, bert.max_positions, bert.type_vocab), (30522, 512, 2));
        assert_eq!(bert.activation, Activation::GeluErf);
        assert_eq!(bert.eps, 1e-12);
    }

    #[test]
    fn a_sequence_classifier_is_a_cross_encoder_with_its_labels() {
        let one =
            r#"{"model_type": "bert", "architectures": ["BertForSequenceClassification"], "num_labels": 1}"#;
        assert_eq!(parse_bert_config(dir(), one).unwrap().1, ModelKind::CrossEncoder);
        assert_eq!(parse_bert_config(dir(), one).unwrap().2, 1);
        let by_map = r#"{"architectures": ["BertForSequenceClassification"], "id2label": {"0": "a", "1": "b", "2": "c"}}"#;
        assert_eq!(parse_bert_config(dir(), by_map).unwrap().2, 3);
        let default = r#"{"model_type": "bert", "architectures": ["BertForSequenceClassification"]}"#;
        assert_eq!(parse_bert_config(dir(), default).unwrap().2, 2);
    }

    #[test]
    fn other_encoders_and_activations_are_refused_by_name() {
        for text in [
            r#"{"model_type": "roberta", "architectures": ["RobertaModel"]}"#,
            r#"{"architectures": ["XLMRobertaModel"]}"#,
            r#"{"model_type": "bert", "hidden_act": "swish"}"#,
            r#"{"model_type": "bert", "position_embedding_type": "relative_key"}"#,
        ] {
            let err = parse_bert_config(dir(), text).unwrap_err();
            assert_eq!(err.kind(), ModelErrorKind::Unsupported, "{text}");
            assert!(err.to_string().contains("/models/m"), "{err}");
        }
    }

    #[test]
    fn impossible_sizes_and_bad_json_are_damage() {
        for text in [r#"{"model_type": "bert", "hidden_size": 100, "num_attention_heads": 12}"#, "{", "[1]"] {
            let err = parse_bert_config(dir(), text).unwrap_err();
            assert_eq!(err.kind(), ModelErrorKind::Damaged, "{text}");
            assert!(err.to_string().contains("config.json"), "{err}");
        }
    }

    #[test]
    fn modules_list_pooling_and_normalize_and_refuse_the_rest() {
        let text = r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]"#;
        let modules = parse_modules(dir(), text).unwrap();
        assert_eq!(modules.pooling_path.as_deref(), Some("1_Pooling"));
        assert!(modules.normalize);
        let dense = r#"[{"path": "2_Dense", "type": "sentence_transformers.models.Dense"}]"#;
        assert_eq!(parse_modules(dir(), dense).unwrap_err().kind(), ModelErrorKind::Unsupported);
    }

    #[test]
    fn pooling_modes_come_in_sentence_transformers_order() {
        let mean = r#"{"word_embedding_dimension": 384, "pooling_mode_mean_tokens": true}"#;
        assert_eq!(parse_pooling(dir(), "p", mean, 384).unwrap(), vec![PoolingMode::Mean]);
        let all = r#"{"pooling_mode_mean_sqrt_len_tokens": true, "pooling_mode_mean_tokens": true,
            "pooling_mode_max_tokens": true, "pooling_mode_cls_token": true}"#;
        let expected = vec![PoolingMode::Cls, PoolingMode::Max, PoolingMode::Mean, PoolingMode::MeanSqrtLen];
        assert_eq!(parse_pooling(dir(), "p", all, 384).unwrap(), expected);
        assert_eq!(parse_pooling(dir(), "p", "{}", 384).unwrap_err().kind(), ModelErrorKind::Damaged);
        assert_eq!(parse_pooling(dir(), "p", mean, 768).unwrap_err().kind(), ModelErrorKind::Damaged);
        let last = r#"{"pooling_mode_lasttoken": true}"#;
        assert_eq!(parse_pooling(dir(), "p", last, 384).unwrap_err().kind(), ModelErrorKind::Unsupported);
    }

    #[test]
    fn max_seq_length_is_optional() {
        assert_eq!(
            parse_max_seq_length(dir(), r#"{"max_seq_length": 256, "do_lower_case": false}"#).unwrap(),
            Some(256)
        );
        assert_eq!(parse_max_seq_length(dir(), "{}").unwrap(), None);
        assert!(parse_max_seq_length(dir(), "nope").is_err());
    }
}
