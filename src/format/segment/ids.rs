//! The ids section (kind 1) and the docs section's per-row attributes, read on their own
//! by cold readers that fetched just those byte ranges (already checked against the crc the
//! manifest records). Parsing validates lengths and offsets once; accessors do not re-check.

use super::*;

/// The ids section (kind 1, 8.4) of a segment read on its own — a cold
/// reader fetches just this range (its bytes checked against the section crc
/// recorded in the manifest before they get here). Parsing checks the length
/// for fixed-width ids and the offsets table for string ids.
#[derive(Clone, Debug)]
pub struct IdsSection {
    bytes: Bytes,
    id_type: IdType,
    rows: usize,
    /// String ids: where the id bytes start.
    data_at: usize,
}

impl IdsSection {
    /// Parse the section of a segment of `rows` rows whose ids are `id_type`.
    pub fn parse(bytes: Bytes, id_type: IdType, rows: usize) -> Result<IdsSection, FormatError> {
        let fixed = |w: usize| {
            let want = rows.checked_mul(w).ok_or(FormatError::TooLarge {
                what: "ids section",
                len: len_u64(rows),
                max: len_u64(MAX_SEGMENT_ROWS),
            })?;
            if bytes.len() != want {
                return Err(malformed(format_args!("ids section is {} bytes, expected {want}", bytes.len())));
            }
            Ok(0)
        };
        let data_at = match id_type {
            IdType::U64 => fixed(8)?,
            IdType::Uuid => fixed(UUID_LEN)?,
            IdType::String => {
                let max = len_u64(MAX_STRING_ID_BYTES);
                let (_, data) = offsets_table("string ids", &bytes, &(0..bytes.len()), rows, 1, max)?;
                std::str::from_utf8(&bytes[data.clone()])
                    .map_err(|_| malformed(format_args!("string ids are not UTF-8")))?;
                data.start
            }
        };
        Ok(IdsSection { bytes, id_type, rows, data_at })
    }

    /// The id of `row` (None past the end, or for a string id that does not
    /// start on a character boundary).
    pub fn id(&self, row: usize) -> Option<DocId> {
        if row >= self.rows {
            return None;
        }
        let b = &self.bytes;
        Some(match self.id_type {
            IdType::U64 => DocId::U64(le_u64(b, row * 8)),
            IdType::Uuid => {
                DocId::Uuid(uuid::Uuid::from_slice(b.get(row * UUID_LEN..(row + 1) * UUID_LEN)?).ok()?)
            }
            IdType::String => {
                let at = |i: usize| {
                    usize::try_from(le_u64(b, i * 8)).ok().and_then(|o| o.checked_add(self.data_at))
                };
                let s = b.get(at(row)?..at(row + 1)?)?;
                DocId::Str(std::str::from_utf8(s).ok()?.to_owned())
            }
        })
    }
}

/// Decode one row's attributes as stored in the docs section (kind 2, 8.5):
/// exactly one attributes map. For readers that fetched the row's bytes by range.
pub fn decode_row_attributes(bytes: &[u8]) -> Result<AttrMap, FormatError> {
    let mut r = Reader::new(bytes);
    let attrs = decode_attrs(&mut r)?;
    r.finish("segment doc")?;
    Ok(attrs)
}
