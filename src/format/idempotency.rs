//! Idempotency records: what `meta.redb`'s table `idempotency` keeps for a
//! request that carried an idempotency key and was acknowledged
//! (`storage-format.md` 6.1): the row counts it answered and the generation
//! it committed at.
//!
//! Invariants:
//! - A record is written as version 1 of the binary layout below (48 bytes:
//!   magic `TIDE.IDM`, version, flags, four `u64`, crc32c of the 44 bytes
//!   before it). Nothing of the HTTP response is stored: `wire/` renders a
//!   deduplicated answer from these values, so the record does not change
//!   when the wire response does.
//! - Builds before this codec stored the turbopuffer response body as JSON.
//!   Such a record keeps reading, through [`decode_legacy_json`] only: the
//!   counts `rows_upserted`, `rows_patched`, `rows_deleted`, their sum
//!   `rows_affected` and `version` must be present, once, as unsigned
//!   integers, and agree. These names are the frozen legacy record's, not
//!   the wire's.
//! - Decoding never yields a default: a record that is truncated, extended,
//!   damaged (checksum, magic, flags, a missing or non-integer count) is an
//!   error, so a damaged record can never answer a retry with zero counts.

use serde::Deserialize;

use super::{len_u64, FormatError, Reader, Writer};
use crate::ops::RowCounts;

/// Magic at offset 0 of a binary record.
pub const IDEMPOTENCY_MAGIC: &[u8; 8] = b"TIDE.IDM";
/// The version this build writes (and the highest it reads).
pub const IDEMPOTENCY_VERSION: u16 = 1;
/// Length of a version 1 record.
pub const IDEMPOTENCY_RECORD_LEN: usize = 48;
/// Offset of the crc32c (it covers every byte before it).
const OFF_CRC: usize = IDEMPOTENCY_RECORD_LEN - 4;
const WHAT: &str = "idempotency record";

/// What a request with an idempotency key was acknowledged with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The rows it upserted, patched and deleted.
    pub counts: RowCounts,
    /// The generation it committed at.
    pub generation: u64,
}

impl IdempotencyRecord {
    /// Encode as the current version (6.1).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(IDEMPOTENCY_MAGIC);
        w.u16(IDEMPOTENCY_VERSION);
        w.u16(0);
        for v in [self.counts.upserted, self.counts.patched, self.counts.deleted, self.generation] {
            w.u64(v);
        }
        let crc = crc32c::crc32c(w.as_slice());
        w.u32(crc);
        w.into_inner()
    }

    /// Decode a record of any version this build reads: the binary layout,
    /// or the JSON response body earlier builds stored.
    pub fn decode(b: &[u8]) -> Result<IdempotencyRecord, FormatError> {
        match b.first() {
            Some(b'{') => decode_legacy_json(b),
            _ => decode_binary(b),
        }
    }
}

/// The binary layout: magic and version first, then the length, the
/// checksum, and only then the flags and values it covers.
fn decode_binary(b: &[u8]) -> Result<IdempotencyRecord, FormatError> {
    let mut r = Reader::new(b);
    if r.bytes("idempotency record magic", IDEMPOTENCY_MAGIC.len())? != IDEMPOTENCY_MAGIC {
        return Err(FormatError::BadMagic { what: WHAT });
    }
    let version = r.u16("idempotency record version")?;
    if version != IDEMPOTENCY_VERSION {
        return Err(FormatError::UnsupportedVersion {
            what: WHAT,
            version: u64::from(version),
            supported: u64::from(IDEMPOTENCY_VERSION),
        });
    }
    let covered = b.get(..OFF_CRC).ok_or(FormatError::Truncated {
        what: WHAT,
        needed: len_u64(IDEMPOTENCY_RECORD_LEN),
        available: len_u64(b.len()),
    })?;
    let flags = r.u16("idempotency record flags")?;
    let (upserted, patched, deleted) =
        (r.u64("rows upserted")?, r.u64("rows patched")?, r.u64("rows deleted")?);
    let generation = r.u64("generation")?;
    let stored = r.u32("idempotency record crc32c")?;
    r.finish(WHAT)?;
    let actual = crc32c::crc32c(covered);
    if stored != actual {
        return Err(FormatError::ChecksumMismatch { what: WHAT, expected: stored, actual });
    }
    if flags != 0 {
        return Err(FormatError::Malformed(format!("{WHAT}: unknown flags {flags:#06x}")));
    }
    Ok(IdempotencyRecord { counts: RowCounts { upserted, patched, deleted }, generation })
}

/// The response body earlier builds stored. Unknown members are ignored (they
/// were informational); a duplicate member is refused.
#[derive(Deserialize)]
struct LegacyResponse {
    rows_affected: u64,
    rows_upserted: u64,
    rows_patched: u64,
    rows_deleted: u64,
    version: u64,
}

/// Decode a record in the JSON shape earlier builds stored (see the module
/// invariants): refused unless every count is there, an integer, and they
/// add up.
pub fn decode_legacy_json(b: &[u8]) -> Result<IdempotencyRecord, FormatError> {
    let v: LegacyResponse = serde_json::from_slice(b)
        .map_err(|e| FormatError::Malformed(format!("{WHAT} (JSON, written by an earlier build): {e}")))?;
    let counts = RowCounts { upserted: v.rows_upserted, patched: v.rows_patched, deleted: v.rows_deleted };
    let sum = v.rows_upserted.checked_add(v.rows_patched).and_then(|s| s.checked_add(v.rows_deleted));
    if sum != Some(v.rows_affected) {
        return Err(FormatError::Malformed(format!(
            "{WHAT} (JSON, written by an earlier build): rows_affected {} is not the sum of its counts",
            v.rows_affected
        )));
    }
    Ok(IdempotencyRecord { counts, generation: v.version })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> IdempotencyRecord {
        IdempotencyRecord { counts: RowCounts { upserted: 3, patched: 2, deleted: 1 }, generation: 77 }
    }

    #[test]
    fn a_record_round_trips_in_48_bytes() {
        let b = record().encode();
        assert_eq!(b.len(), IDEMPOTENCY_RECORD_LEN);
        assert_eq!(&b[..8], IDEMPOTENCY_MAGIC);
        assert_eq!(IdempotencyRecord::decode(&b).unwrap(), record());
        let max = IdempotencyRecord {
            counts: RowCounts { upserted: u64::MAX, patched: 0, deleted: u64::MAX },
            generation: u64::MAX,
        };
        assert_eq!(IdempotencyRecord::decode(&max.encode()).unwrap(), max);
    }

    #[test]
    fn every_flipped_bit_truncation_and_extension_is_refused() {
        let b = record().encode();
        for i in 0..b.len() {
            for bit in 0..8 {
                let mut bad = b.clone();
                bad[i] ^= 1 << bit;
                assert!(IdempotencyRecord::decode(&bad).is_err(), "byte {i} bit {bit}");
            }
        }
        for cut in 0..b.len() {
            assert!(IdempotencyRecord::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(matches!(IdempotencyRecord::decode(&long), Err(FormatError::TrailingBytes { .. })));
    }

    #[test]
    fn a_newer_version_is_unsupported_and_unknown_flags_are_refused() {
        let reseal = |mut b: Vec<u8>| {
            let crc = crc32c::crc32c(&b[..OFF_CRC]);
            b[OFF_CRC..].copy_from_slice(&crc.to_le_bytes());
            b
        };
        let mut v2 = record().encode();
        v2[8] = 2;
        assert!(matches!(
            IdempotencyRecord::decode(&reseal(v2)),
            Err(FormatError::UnsupportedVersion { version: 2, supported: 1, .. })
        ));
        let mut flagged = record().encode();
        flagged[10] = 1;
        assert!(matches!(IdempotencyRecord::decode(&reseal(flagged)), Err(FormatError::Malformed(_))));
    }

    const LEGACY: &str = r#"{"status":"OK","message":"success","rows_affected":6,"rows_upserted":3,"rows_patched":2,"rows_deleted":1,"rows_remaining":false,"version":77,"deduplicated":false,"billing":{"billable_logical_bytes_written":0}}"#;

    #[test]
    fn the_json_earlier_builds_stored_still_reads() {
        assert_eq!(IdempotencyRecord::decode(LEGACY.as_bytes()).unwrap(), record());
    }

    #[test]
    fn legacy_json_without_every_count_as_an_integer_is_refused_never_zero() {
        let cases = [
            LEGACY.replace(r#""rows_patched":2,"#, ""),
            LEGACY.replace(r#""rows_affected":6,"#, ""),
            LEGACY.replace(r#""version":77,"#, ""),
            LEGACY.replace(r#""rows_deleted":1"#, r#""rows_deleted":"1""#),
            LEGACY.replace(r#""rows_deleted":1"#, r#""rows_deleted":1.5"#),
            LEGACY.replace(r#""rows_deleted":1"#, r#""rows_deleted":-1"#),
            LEGACY.replace(r#""rows_deleted":1"#, r#""rows_deleted":null"#),
            LEGACY.replace(r#""rows_affected":6"#, r#""rows_affected":7"#),
            LEGACY.replace(r#""rows_upserted":3"#, r#""rows_upserted":3,"rows_upserted":4"#),
            LEGACY[..LEGACY.len() - 1].to_owned(),
            "{}".to_owned(),
            "{\"rows_affected\":0".to_owned(),
        ];
        for case in cases {
            let got = IdempotencyRecord::decode(case.as_bytes());
            assert!(matches!(got, Err(FormatError::Malformed(_))), "{case}: {got:?}");
        }
    }

    #[test]
    fn empty_and_foreign_bytes_are_refused() {
        assert!(IdempotencyRecord::decode(&[]).is_err());
        assert!(matches!(IdempotencyRecord::decode(b"TIDE.WAL\x01\x00"), Err(FormatError::BadMagic { .. })));
        assert!(IdempotencyRecord::decode(b"[1,2,3]").is_err());
    }
}
