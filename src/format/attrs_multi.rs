//! The multi-vector attribute value (tag 8 of the attribute *value*, `storage-format.md`
//! 3.2): the vectors of a `[][N]f32` / `[][N]f16` (late interaction) attribute.
//!
//! ```text
//! multi := u8 8, u32 dim (1..=MAX_VECTOR_DIM), u32 count (1..=MAX_MULTI_VECTORS),
//!          count × dim little-endian f32, every one finite, vector after vector
//! ```
//!
//! Invariants: the encoding is canonical; the decoder refuses what the encoder refuses
//! (empty, ragged, over either cap, non-finite) and checks that `count × dim × 4` bytes are
//! present before allocating; it never panics.

use crate::model::{Value, MAX_MULTI_VECTORS, MAX_VECTOR_DIM};

use super::{len_u64, FormatError, Reader, Writer};

/// The value tag of a multi-vector value.
pub(super) const VAL_MULTI: u8 = 8;

/// Writes `vs` (tag included) to `w`, and returns the first rule the decoder would refuse it
/// by (the attribute encoder records it as its violation), in the order the decoder checks.
pub(super) fn write_multi(w: &mut Writer, vs: &[Vec<f32>], nested: bool) -> Option<FormatError> {
    let dim = vs.first().map_or(0, Vec::len);
    let violation = if nested {
        Some(FormatError::Malformed("array values hold scalars only".into()))
    } else if dim == 0 || vs.iter().any(|v| v.len() != dim || v.iter().any(|x| !x.is_finite())) {
        Some(FormatError::Malformed(
            "a vector array holds 1 or more vectors of one non-zero dimension, finite f32".into(),
        ))
    } else if dim > MAX_VECTOR_DIM {
        Some(FormatError::TooLarge {
            what: "vector array dimension",
            len: len_u64(dim),
            max: len_u64(MAX_VECTOR_DIM),
        })
    } else if vs.len() > MAX_MULTI_VECTORS {
        Some(FormatError::TooLarge {
            what: "vector array",
            len: len_u64(vs.len()),
            max: len_u64(MAX_MULTI_VECTORS),
        })
    } else {
        None
    };
    w.u8(VAL_MULTI);
    w.u32(u32::try_from(dim).unwrap_or(u32::MAX));
    w.u32(u32::try_from(vs.len()).unwrap_or(u32::MAX));
    for x in vs.iter().flatten() {
        w.f32(*x);
    }
    violation
}

/// The payload of a multi-vector value (after its tag): (dimension, the checked f32 bytes).
pub(super) fn multi_bytes<'a>(r: &mut Reader<'a>) -> Result<(usize, &'a [u8]), FormatError> {
    let dim = usize::try_from(r.u32("vector array dimension")?).unwrap_or(usize::MAX);
    let n = usize::try_from(r.u32("vector array count")?).unwrap_or(usize::MAX);
    if !(1..=MAX_VECTOR_DIM).contains(&dim) || !(1..=MAX_MULTI_VECTORS).contains(&n) {
        return Err(FormatError::Malformed(format!(
            "a vector array has {n} vectors of {dim} dimensions (1..={MAX_MULTI_VECTORS} of 1..={MAX_VECTOR_DIM})"
        )));
    }
    // Both factors are capped above, so the product cannot overflow.
    let b = r.bytes("vector array", n * dim * 4)?;
    if b.chunks_exact(4).any(|c| !f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite()) {
        return Err(FormatError::Malformed("a vector array holds finite f32 only".into()));
    }
    Ok((dim, b))
}

/// Reads a multi-vector value's payload (after its tag).
pub(super) fn read_multi(r: &mut Reader<'_>) -> Result<Value, FormatError> {
    let (dim, b) = multi_bytes(r)?;
    let flat = crate::codec::f32s_le(b);
    Ok(Value::Multi(flat.chunks_exact(dim).map(<[f32]>::to_vec).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::attrs::{decode_attrs, encode_attrs};
    use crate::format::Writer;
    use crate::model::AttrMap;

    fn map_of(payload: &[u8]) -> Vec<u8> {
        let mut b = 1u32.to_le_bytes().to_vec();
        b.extend_from_slice(&1u32.to_le_bytes());
        b.push(b'x');
        b.extend_from_slice(payload);
        b
    }

    fn payload(dim: u32, n: u32, xs: &[f32]) -> Vec<u8> {
        let mut p = vec![VAL_MULTI];
        p.extend_from_slice(&dim.to_le_bytes());
        p.extend_from_slice(&n.to_le_bytes());
        for x in xs {
            p.extend_from_slice(&x.to_le_bytes());
        }
        p
    }

    #[test]
    fn multi_values_round_trip_and_are_canonical() {
        let mut m = AttrMap::with_capacity(1);
        m.insert("x".into(), Value::Multi(vec![vec![1.0, -0.5], vec![0.25, 2.0]]));
        let mut w = Writer::default();
        encode_attrs(&mut w, &m).unwrap();
        let bytes = w.into_inner();
        assert_eq!(bytes, map_of(&payload(2, 2, &[1.0, -0.5, 0.25, 2.0])));
        assert_eq!(decode_attrs(&mut Reader::new(&bytes)).unwrap(), m);
    }

    #[test]
    fn the_encoder_refuses_what_the_decoder_refuses() {
        for bad in [vec![], vec![vec![]], vec![vec![1.0], vec![1.0, 2.0]], vec![vec![f32::NAN]]] {
            let mut m = AttrMap::with_capacity(1);
            m.insert("x".into(), Value::Multi(bad.clone()));
            assert!(encode_attrs(&mut Writer::default(), &m).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn malformed_multi_values_are_refused() {
        let cap = u32::try_from(MAX_MULTI_VECTORS).unwrap();
        for (why, p) in [
            ("no vectors", payload(2, 0, &[])),
            ("zero dimensions", payload(0, 1, &[])),
            ("over the count cap", payload(1, cap + 1, &[1.0])),
            ("over the dimension cap", payload(u32::MAX, 1, &[1.0])),
            ("shorter than its count", payload(2, 3, &[1.0, 2.0])),
            ("NaN", payload(1, 2, &[1.0, f32::NAN])),
            ("infinite", payload(1, 1, &[f32::NEG_INFINITY])),
        ] {
            assert!(decode_attrs(&mut Reader::new(&map_of(&p))).is_err(), "{why}");
        }
    }
}
