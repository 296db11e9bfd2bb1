//! The GC tombstone of a collected manifest generation
//! (`manifests/{gen:020}.gc`, `storage-format.md` 5.3 and 9.4).
//!
//! A tombstone's meaning is its existence: readers and writers only test
//! that the key exists (HEAD), never read the body. The body is
//! informational, for people and tools:
//! `{"magic":"tidepool.gc","generation":G,"collected_at_ms":T}\n`.
//!
//! Invariants:
//! - The encoding is exactly the bytes above (compact, fields in this order,
//!   decimal `u64`s without sign or leading zeros, one `\n`), byte for byte
//!   what every build since tombstones exist wrote (fixture
//!   `tests/fixtures/v9/tombstone.gc`).
//! - The decoder accepts exactly that shape and nothing else; it never
//!   panics, allocates nothing from the input, and uses no JSON or API
//!   parser. A change of shape gets a new magic (there is no version field:
//!   no reader ever depends on the body).

use crate::codec::FormatError;

/// The magic of a tombstone body.
pub const TOMBSTONE_MAGIC: &str = "tidepool.gc";

const HEAD: &str = "{\"magic\":\"tidepool.gc\",\"generation\":";
const MIDDLE: &str = ",\"collected_at_ms\":";
const TAIL: &str = "}\n";

/// The body of a GC tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tombstone {
    /// The generation collected.
    pub generation: u64,
    /// When it was collected (ms since the Unix epoch, the collector's clock).
    pub collected_at_ms: u64,
}

impl Tombstone {
    /// The body (see the module doc).
    pub fn encode(&self) -> Vec<u8> {
        format!("{HEAD}{}{MIDDLE}{}{TAIL}", self.generation, self.collected_at_ms).into_bytes()
    }

    /// Decode a body, refusing anything but the exact shape.
    pub fn decode(b: &[u8]) -> Result<Tombstone, FormatError> {
        let bad = |m: &str| FormatError::Malformed(format!("GC tombstone: {m}"));
        let rest = b.strip_prefix(HEAD.as_bytes()).ok_or(FormatError::BadMagic { what: "GC tombstone" })?;
        let (generation, rest) = decimal(rest).ok_or_else(|| bad("generation"))?;
        let rest = rest.strip_prefix(MIDDLE.as_bytes()).ok_or_else(|| bad("collected_at_ms"))?;
        let (collected_at_ms, rest) = decimal(rest).ok_or_else(|| bad("collected_at_ms"))?;
        if rest != TAIL.as_bytes() {
            return Err(bad("end"));
        }
        Ok(Tombstone { generation, collected_at_ms })
    }
}

/// A canonical decimal `u64` at the start of `b` (no sign, no leading zero
/// except `0` itself, no overflow), and the bytes after it.
fn decimal(b: &[u8]) -> Option<(u64, &[u8])> {
    let len = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let (digits, rest) = b.split_at(len);
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    let mut n: u64 = 0;
    for d in digits {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some((n, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_historical_bytes_and_reads_them_back() {
        let t = Tombstone { generation: 7, collected_at_ms: 1_764_000_000_000 };
        let b = t.encode();
        assert_eq!(b, b"{\"magic\":\"tidepool.gc\",\"generation\":7,\"collected_at_ms\":1764000000000}\n");
        assert_eq!(Tombstone::decode(&b).unwrap(), t);
        let max = Tombstone { generation: u64::MAX, collected_at_ms: 0 };
        assert_eq!(Tombstone::decode(&max.encode()).unwrap(), max);
    }

    #[test]
    fn anything_but_the_exact_shape_is_refused() {
        let good = Tombstone { generation: 12, collected_at_ms: 34 }.encode();
        for cut in 0..good.len() {
            assert!(Tombstone::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let text = String::from_utf8(good).unwrap();
        for bad in [
            text.replace("12", "012"),
            text.replace("12", "+12"),
            text.replace("12", "-12"),
            text.replace("34", "18446744073709551616"),
            text.replace("tidepool.gc", "tidepool.gx"),
            text.replace('\n', ""),
            text.replace(',', ", "),
            format!("{text}x"),
        ] {
            assert!(Tombstone::decode(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
