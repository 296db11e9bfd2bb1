//! JSON read with bounded memory: a request body is never turned into one
//! tree before its size is known to be sane.
//!
//! A `serde_json::Value` costs tens of bytes per value, so a 64 MB body of
//! tiny values (`[0,0,0,…]`, 260 KB gzipped) became gigabytes of tree before
//! any row cap applied. Here a body is split into borrowed raw parts first
//! (no copy: `RawValue` points into the body), arrays are cut at their cap
//! while being split, and a part becomes a tree only after a linear scan has
//! bounded how many values it holds.
//!
//! Invariants:
//! - [`exceeds_values`] is one linear pass with no allocation; it counts at
//!   least one per value (every value but the first of a container follows a
//!   `,` or opens with `[`/`{`), so a part it admits holds at most `cap`
//!   values and its tree at most `cap` nodes.
//! - [`elements`] never holds more than `cap` element references (16 bytes
//!   each): the cap-plus-first element is an error, not an allocation.
//! - Errors are strings naming the part and the limit; callers wrap them in
//!   their 400.

use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value as Json;

/// Most values one request part (a query body, a write's filter, schema or
/// `deletes`) may hold before it is parsed: 1,048,576.
pub const MAX_JSON_VALUES: usize = 1 << 20;
/// Most JSON values one written row (document or patch) may hold: 131,072
/// (a 10,752-dimension vector as JSON floats is 10,753).
pub const MAX_ROW_JSON_VALUES: usize = 1 << 17;

/// Whether `bytes` (JSON text) holds more than `cap` values.
pub fn exceeds_values(bytes: &[u8], cap: usize) -> bool {
    let (mut n, mut in_string, mut escaped) = (1usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b',' | b'[' | b'{' => {
                n += 1;
                if n > cap {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// Parse `text` into a tree once it is known to hold at most `cap` values.
pub fn tree(text: &str, cap: usize, what: &str) -> Result<Json, String> {
    if exceeds_values(text.as_bytes(), cap) {
        return Err(format!("{what} holds more than {cap} JSON values"));
    }
    serde_json::from_str(text).map_err(|e| format!("{what}: {e}"))
}

/// The elements of the JSON array `raw`, borrowed, refusing more than `cap`.
pub fn elements<'a>(raw: &'a RawValue, cap: usize, what: &str) -> Result<Vec<&'a RawValue>, String> {
    if !raw.get().trim_start().starts_with('[') {
        return Err(format!("{what} must be an array"));
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    Capped { cap }.deserialize(&mut de).map_err(|e| format!("{what}: {e}"))
}

struct Capped {
    cap: usize,
}

impl<'de> DeserializeSeed<'de> for Capped {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Capped {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "an array of at most {} elements", self.cap)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(x) = seq.next_element::<&'de RawValue>()? {
            if out.len() == self.cap {
                return Err(A::Error::custom(format!("more than {} elements", self.cap)));
            }
            out.push(x);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_bounds_the_values_and_ignores_strings() {
        assert!(!exceeds_values(b"[0,0,0]", 4));
        assert!(exceeds_values(b"[0,0,0,0,0]", 4));
        assert!(
            !exceeds_values(br#"{"a":"x,[{,\",","b":[]}"#, 4),
            "commas and brackets inside strings do not count"
        );
        assert!(exceeds_values(br#"{"a":[[[[1]]]]}"#, 4));
        let tiny = format!("[{}0]", "0,".repeat(1_000_000));
        assert!(exceeds_values(tiny.as_bytes(), MAX_JSON_VALUES / 2));
        assert!(tree(&tiny, 1000, "body").unwrap_err().contains("more than 1000"));
    }

    #[test]
    fn elements_stop_at_the_cap() {
        let raw: Box<RawValue> = serde_json::from_str("[1, {\"a\": [2]}, \"x\"]").unwrap();
        let got = elements(&raw, 3, "rows").unwrap();
        assert_eq!(got.iter().map(|r| r.get()).collect::<Vec<_>>(), ["1", "{\"a\": [2]}", "\"x\""]);
        assert!(elements(&raw, 2, "rows").unwrap_err().contains("more than 2"));
        let obj: Box<RawValue> = serde_json::from_str("{\"a\": 1}").unwrap();
        assert!(elements(&obj, 2, "rows").unwrap_err().contains("must be an array"));
    }
}
