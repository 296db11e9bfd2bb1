//! tidepool's own binary encoding of a [`Filter`] (filters and conditions in
//! WAL records; see `storage-format.md` 3.2.1).
//!
//! ```text
//! node    := 0x01 And  u32 n, n × node
//!          | 0x02 Or   u32 n, n × node
//!          | 0x03 Not  node
//!          | 0x04 Cond str attr, u8 op (OP_TAGS), operand
//! operand := 0x01 literal value (the attribute value encoding of `attrs`)
//!          | 0x02 $ref_new str attr
//!          | 0x03 pattern str
//!          | 0x04 fuzzy str text, u8 max_edit_distance, u8 case_sensitive (0/1)
//!          | 0x05 token text str
//!          | 0x06 tokens u32 n, n × str
//! str     := u32 byte length, UTF-8 bytes
//! ```
//!
//! Invariants:
//! - Operators are stored by the numeric tags of [`OP_TAGS`], chosen here and
//!   never reused or renumbered, not by their wire names: renaming an API
//!   operator changes nothing on disk.
//! - The decoder applies only structural bounds: nesting at most
//!   [`MAX_FILTER_NESTING`] levels (a stack guard, at least the API's
//!   `MAX_DEPTH`), counts and lengths bounded by the bytes present, strings of
//!   at most `MAX_STRING_BYTES`. It applies no API limit (leaf count, pattern
//!   length, regex count, token-query length): leaves are rebuilt through
//!   [`Condition::new`], which applies none, so a stored filter stays readable
//!   whatever the API accepts later.
//! - The encoding is canonical: `encode(decode(b)) == b` for every accepted `b`.
//! - Decoding never panics and never allocates from an unchecked length.

use crate::filter::{Condition, Filter, LeafOperand, Op, Operand, MAX_DEPTH};

use super::attrs::{read_value, Enc, MAX_STRING_BYTES};
use super::{FormatError, Reader, Writer};

/// Deepest nesting the codec writes and reads (the top-level node is level
/// 1): a stack guard for the recursive decoder, independent of the API's
/// `MAX_DEPTH` but never below it, so every filter the API accepts encodes.
pub const MAX_FILTER_NESTING: usize = 64;
const _: () = assert!(MAX_DEPTH <= MAX_FILTER_NESTING);

const NODE_AND: u8 = 1;
const NODE_OR: u8 = 2;
const NODE_NOT: u8 = 3;
const NODE_COND: u8 = 4;

const OPERAND_VALUE: u8 = 1;
const OPERAND_REF_NEW: u8 = 2;
const OPERAND_PATTERN: u8 = 3;
const OPERAND_FUZZY: u8 = 4;
const OPERAND_TOKEN_TEXT: u8 = 5;
const OPERAND_TOKENS: u8 = 6;

/// Largest encoded filter embedded in a WAL record: the WAL body's own cap
/// (binary literals can be longer than their JSON, so the 16 MiB string cap
/// would refuse filters the JSON encoding took).
pub const MAX_FILTER_BLOB_BYTES: usize = 1 << 30;

/// Smallest encoded node: an empty `And`/`Or` (tag and a u32 count).
const MIN_NODE_BYTES: usize = 1 + 4;
/// Smallest encoded string: its u32 length (an empty token).
const MIN_STR_BYTES: usize = 4;

/// The stored operator tags (tidepool's numbering; 0 is never used).
pub const OP_TAGS: [(Op, u8); 25] = [
    (Op::Eq, 1),
    (Op::NotEq, 2),
    (Op::In, 3),
    (Op::NotIn, 4),
    (Op::Lt, 5),
    (Op::Lte, 6),
    (Op::Gt, 7),
    (Op::Gte, 8),
    (Op::AnyLt, 9),
    (Op::AnyLte, 10),
    (Op::AnyGt, 11),
    (Op::AnyGte, 12),
    (Op::Contains, 13),
    (Op::NotContains, 14),
    (Op::ContainsAny, 15),
    (Op::NotContainsAny, 16),
    (Op::Glob, 17),
    (Op::NotGlob, 18),
    (Op::IGlob, 19),
    (Op::NotIGlob, 20),
    (Op::Regex, 21),
    (Op::Fuzzy, 22),
    (Op::ContainsAllTokens, 23),
    (Op::ContainsAnyToken, 24),
    (Op::ContainsTokenSequence, 25),
];

fn op_tag(op: Op) -> u8 {
    // Every operator is in the table (a test checks it); 0 would be refused
    // by the decoder rather than misread.
    OP_TAGS.iter().find(|(o, _)| *o == op).map_or(0, |(_, t)| *t)
}

fn op_of_tag(tag: u8) -> Option<Op> {
    OP_TAGS.iter().find(|(_, t)| *t == tag).map(|(o, _)| *o)
}

/// Encode a filter on its own (as a fuzz corpus or a test would).
pub fn encode_filter(f: &Filter) -> Result<Vec<u8>, FormatError> {
    let mut e = Enc { w: Writer::new(), violation: None };
    e.filter_node(f, 1);
    match e.violation {
        None => Ok(e.w.into_inner()),
        Some(v) => Err(v),
    }
}

/// Decode a whole buffer holding exactly one encoded filter.
pub fn decode_filter(bytes: &[u8]) -> Result<Filter, FormatError> {
    let mut r = Reader::new(bytes);
    let f = read_filter_node(&mut r, 1)?;
    r.finish("filter")?;
    Ok(f)
}

impl Enc {
    /// One filter as a u32 byte length and the encoded node (how WAL records
    /// embed it, so a reader can bound and check it on its own).
    pub(super) fn filter_blob(&mut self, what: &'static str, f: &Filter) {
        let mut inner = Enc { w: Writer::new(), violation: None };
        inner.filter_node(f, 1);
        if let Some(v) = inner.violation {
            self.violate(v);
        }
        let bytes = inner.w.into_inner();
        let n = self.count(what, bytes.len(), MAX_FILTER_BLOB_BYTES);
        self.w.u32(n);
        self.w.bytes(&bytes);
    }

    fn filter_node(&mut self, f: &Filter, depth: usize) {
        if depth > MAX_FILTER_NESTING {
            self.violate(FormatError::Malformed(format!(
                "filter nests deeper than {MAX_FILTER_NESTING} levels"
            )));
            return;
        }
        match f {
            Filter::And(fs) | Filter::Or(fs) => {
                self.w.u8(if matches!(f, Filter::And(_)) { NODE_AND } else { NODE_OR });
                let n = self.count("filter children", fs.len(), usize::MAX);
                self.w.u32(n);
                for sub in fs {
                    self.filter_node(sub, depth + 1);
                }
            }
            Filter::Not(sub) => {
                self.w.u8(NODE_NOT);
                self.filter_node(sub, depth + 1);
            }
            Filter::Cond(c) => self.condition(c),
        }
    }

    fn condition(&mut self, c: &Condition) {
        self.w.u8(NODE_COND);
        self.str("filter attribute", c.attr());
        self.w.u8(op_tag(c.op()));
        match c.leaf_operand() {
            LeafOperand::Value(Operand::Value(v)) => {
                self.w.u8(OPERAND_VALUE);
                self.value(&v, false);
            }
            LeafOperand::Value(Operand::RefNew(a)) => {
                self.w.u8(OPERAND_REF_NEW);
                self.str("$ref_new attribute", &a);
            }
            LeafOperand::Pattern(p) => {
                self.w.u8(OPERAND_PATTERN);
                self.str("filter pattern", &p);
            }
            LeafOperand::Fuzzy { text, max_edit_distance, case_sensitive } => {
                self.w.u8(OPERAND_FUZZY);
                self.str("fuzzy text", &text);
                self.w.u8(max_edit_distance);
                self.w.bool(case_sensitive);
            }
            LeafOperand::TokenText(t) => {
                self.w.u8(OPERAND_TOKEN_TEXT);
                self.str("token query", &t);
            }
            LeafOperand::Tokens(ts) => {
                self.w.u8(OPERAND_TOKENS);
                let n = self.count("tokens", ts.len(), usize::MAX);
                self.w.u32(n);
                for t in &ts {
                    self.str("token", t);
                }
            }
        }
    }
}

/// Read a filter embedded by [`Enc::filter_blob`]: the node must fill its
/// declared length exactly.
pub(super) fn read_filter_blob(r: &mut Reader<'_>, what: &'static str) -> Result<Filter, FormatError> {
    let n = r.count(what, 1, MAX_FILTER_BLOB_BYTES)?;
    decode_filter(r.bytes(what, n)?)
}

fn read_filter_node(r: &mut Reader<'_>, depth: usize) -> Result<Filter, FormatError> {
    if depth > MAX_FILTER_NESTING {
        return Err(FormatError::Malformed(format!("filter nests deeper than {MAX_FILTER_NESTING} levels")));
    }
    match r.u8("filter node tag")? {
        tag @ (NODE_AND | NODE_OR) => {
            let n = r.count("filter children", MIN_NODE_BYTES, usize::MAX)?;
            let mut subs = Vec::with_capacity(n);
            for _ in 0..n {
                subs.push(read_filter_node(r, depth + 1)?);
            }
            Ok(if tag == NODE_AND { Filter::And(subs) } else { Filter::Or(subs) })
        }
        NODE_NOT => Ok(Filter::Not(Box::new(read_filter_node(r, depth + 1)?))),
        NODE_COND => read_condition(r).map(Filter::Cond),
        t => Err(FormatError::Malformed(format!("unknown filter node tag {t}"))),
    }
}

fn read_condition(r: &mut Reader<'_>) -> Result<Condition, FormatError> {
    let attr = r.str("filter attribute", MAX_STRING_BYTES)?.to_owned();
    let tag = r.u8("filter operator")?;
    let op =
        op_of_tag(tag).ok_or_else(|| FormatError::Malformed(format!("unknown filter operator tag {tag}")))?;
    let operand = read_operand(r)?;
    Condition::new(attr, op, operand).map_err(|e| FormatError::Malformed(format!("filter condition: {e}")))
}

fn read_operand(r: &mut Reader<'_>) -> Result<LeafOperand, FormatError> {
    let string = |r: &mut Reader<'_>, what| r.str(what, MAX_STRING_BYTES).map(str::to_owned);
    Ok(match r.u8("filter operand tag")? {
        OPERAND_VALUE => LeafOperand::Value(Operand::Value(read_value(r, false)?)),
        OPERAND_REF_NEW => LeafOperand::Value(Operand::RefNew(string(r, "$ref_new attribute")?)),
        OPERAND_PATTERN => LeafOperand::Pattern(string(r, "filter pattern")?),
        OPERAND_FUZZY => LeafOperand::Fuzzy {
            text: string(r, "fuzzy text")?,
            max_edit_distance: r.u8("fuzzy max_edit_distance")?,
            case_sensitive: r.bool("fuzzy case_sensitive")?,
        },
        OPERAND_TOKEN_TEXT => LeafOperand::TokenText(string(r, "token query")?),
        OPERAND_TOKENS => {
            let n = r.count("tokens", MIN_STR_BYTES, usize::MAX)?;
            let mut tokens = Vec::with_capacity(n);
            for _ in 0..n {
                tokens.push(string(r, "token")?);
            }
            LeafOperand::Tokens(tokens)
        }
        t => return Err(FormatError::Malformed(format!("unknown filter operand tag {t}"))),
    })
}

#[cfg(test)]
#[path = "filter_tests.rs"]
pub(crate) mod tests;
