//! Fuzz the segment and deletion-set decoders.
//!
//! Invariants checked:
//! - `Segment::open` and `DeletionSet::decode` never panic and never allocate
//!   from an unchecked length, on any input; nor does `Segment::open_lazy` nor the
//!   reads of a segment it opened (which answer or fail as rot in their scope), and
//!   a segment `Segment::open` accepts opens lazily with the same rows and no rot.
//! - An opened segment's accessors never panic for any row < len, and agree
//!   with each other: `find(id(row)) == Some(row)`, `lower_bound(id(row)) ==
//!   row`, `doc(row)` carries `id(row)` and `vector(row)`, `vectors()` holds
//!   rows × dim floats.
//! - The partial row decoders agree with `doc(row)`: `attrs_without_dense(row)` is its
//!   attributes minus the dense (named vector) values, `dense_attr(row, name)` each dense
//!   value; `attrs_without_dense` succeeds whenever `doc(row)` does (it skips dense values by
//!   length, so it may also accept a row `doc(row)` refuses for a non-finite element).
//! - `multi_attr(row, name)` reads each vector array (multi-vector) value; it fails exactly
//!   when `doc(row)` does.
//! - Canonical encoding: a version 1 segment (raw docs) whose rows all decode is
//!   rebuilt byte for byte from its documents and extension sections; an
//!   accepted deletion set re-encodes to the same bytes.
//! - Doc blocks (version 2): every row read goes through a block decoded and
//!   checked whole (exact length, raw crc32c, row offsets), so a damaged block
//!   fails its rows, never panics; rows read in reverse order (each a cache
//!   miss at a block's end) give the same results as in order. A reader accepts
//!   any LZ4 stream that decodes to the block, so the rebuild is compared by
//!   content: it opens, holds the same documents, and rebuilds to itself.
//!
//! Input: the first byte selects the mode. Even: the rest is opened as is.
//! Odd: the rest is "resealed" first (header crc, every in-bounds section's
//! crc and the table crc recomputed) so that the fuzzer reaches the structural
//! checks behind the checksums.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tidepool::format::segment::{
    DeletionSet, Segment, SegmentBuilder, SECTION_ENTRY_LEN, SECTION_RANGE_CHECKSUMS, SEGMENT_HEADER_LEN,
};

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Recompute every checksum the layout lets us find (best effort).
fn reseal(mut b: Vec<u8>) -> Vec<u8> {
    if b.len() < SEGMENT_HEADER_LEN {
        return b;
    }
    let count = le_u32(&b, 28).unwrap_or(0) as usize;
    let table = le_u64(&b, 32).unwrap_or(0) as usize;
    let table_end = count.checked_mul(SECTION_ENTRY_LEN).and_then(|n| n.checked_add(table));
    if let Some(table_end) = table_end
        .filter(|&e| table >= SEGMENT_HEADER_LEN && e.checked_add(4).is_some_and(|end| end <= b.len()))
    {
        for i in 0..count {
            let e = table + i * SECTION_ENTRY_LEN;
            let (Some(off), Some(len)) = (le_u64(&b, e + 8), le_u64(&b, e + 16)) else { break };
            let (off, len) = (off as usize, len as usize);
            if let Some(sec) = off.checked_add(len).and_then(|end| b.get(off..end)) {
                let crc = crc32c::crc32c(sec);
                b[e + 4..e + 8].copy_from_slice(&crc.to_le_bytes());
            }
        }
        let crc = crc32c::crc32c(&b[table..table_end]);
        b[table_end..table_end + 4].copy_from_slice(&crc.to_le_bytes());
    }
    let crc = crc32c::crc32c(&b[..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    b
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let input = if mode % 2 == 0 { rest.to_vec() } else { reseal(rest.to_vec()) };

    if let Ok(d) = DeletionSet::decode(&input) {
        assert_eq!(d.encode(), input, "deletion set encoding is not canonical");
        assert_eq!(d.iter().count(), d.len());
    }

    // A lazy open (what the engine serves from) never panics either: its reads, in an integrity
    // scope, answer or fail as rot. Whatever a full open accepts, it accepts with the same rows.
    let lazy = Segment::open_lazy(Bytes::from(input.clone()), &|_| {});
    let lazy_docs = lazy.as_ref().ok().map(|l| {
        tidepool::integrity::within(|| {
            for kind in [3u16, 5, 16, 17, 18, 19, 20, 22, 23] {
                let _ = (l.section(kind), l.sections(kind));
            }
            (0..l.len()).map(|row| format!("{:?} {:?}", l.doc(row).ok(), l.vector(row))).collect::<Vec<_>>()
        })
    });
    let Ok(seg) = Segment::open(Bytes::from(input.clone())) else {
        return;
    };
    let full_docs: Vec<_> = (0..seg.len()).map(|row| format!("{:?} {:?}", seg.doc(row).ok(), seg.vector(row))).collect();
    match lazy_docs {
        Some(Ok(rows)) => assert_eq!(rows, full_docs, "a lazy open reads other rows"),
        Some(Err(rot)) => panic!("a segment a full open accepts is rot to a lazy one: {rot}"),
        None => panic!("a segment a full open accepts is refused by a lazy open"),
    }
    let n = seg.len();
    let dim = seg.vector_dim().map_or(0, |d| d as usize);
    if let Some(v) = seg.vectors() {
        assert_eq!(v.len(), n * dim);
    }
    let mut docs = Vec::with_capacity(n);
    for row in 0..n {
        let id = seg.id(row);
        assert_eq!(seg.try_id(row).as_ref(), Some(&id));
        assert_eq!(seg.find(&id), Some(row));
        assert_eq!(seg.lower_bound(&id), row);
        let vector = seg.vector(row);
        assert_eq!(vector.is_some(), seg.has_vector(row));
        let full = seg.doc(row);
        let again = seg.doc(n - 1 - row);
        let _ = (again, seg.attrs(row));
        let light = seg.attrs_without_dense(row);
        assert!(full.is_err() || light.is_ok(), "row {row}: a decodable row's light decode failed");
        if let (Ok(doc), Ok(light)) = (&full, &light) {
            use tidepool::model::Value;
            let kept: Vec<_> =
                doc.attrs.iter().filter(|(_, v)| !matches!(v, Value::Dense(_) | Value::Multi(_))).collect();
            // Debug text, not `==`: a stored float NaN must compare equal to itself here.
            assert_eq!(format!("{kept:?}"), format!("{:?}", light.iter().collect::<Vec<_>>()));
            for (name, v) in doc.attrs.iter() {
                let want = if let Value::Dense(d) = v { Some(d.to_vec()) } else { None };
                assert_eq!(seg.dense_attr(row, name).expect("a decodable row"), want);
                let want = if let Value::Multi(m) = v { Some(m.clone()) } else { None };
                assert_eq!(seg.multi_attr(row, name).expect("a decodable row"), want);
            }
        }
        if let Ok(doc) = full {
            assert_eq!(doc.id, id);
            // Bitwise: a stored NaN is returned as stored.
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(doc.vector.as_deref().map(bits), vector.map(bits));
            docs.push(doc);
        }
    }
    assert!(seg.try_id(n).is_none());
    assert!(seg.doc(n).is_err());
    for kind in [1u16, 2, 3, 4, 5, 16, 17, 18, 19] {
        let all = seg.sections(kind);
        assert_eq!(seg.section(kind), all.first().copied());
    }
    if docs.len() == n {
        let raw = input.get(8..10) == Some(&[1, 0][..]);
        // Range checksums (kind 22) cover the docs' bytes, which a content rebuild may change.
        let rebuild = |docs: &[tidepool::model::Document]| {
            let mut b = SegmentBuilder::new(seg.id_type(), seg.vector_dim());
            if raw {
                b = b.with_raw_docs();
            }
            for d in docs {
                b.push(d).expect("an opened segment's documents push back");
            }
            for (kind, bytes) in seg.extension_sections() {
                if raw || kind != SECTION_RANGE_CHECKSUMS {
                    b.add_section(kind, bytes.to_vec());
                }
            }
            b.finish().expect("an opened segment rebuilds")
        };
        let rebuilt = rebuild(&docs);
        if raw {
            assert_eq!(rebuilt, input, "segment encoding is not canonical");
        } else {
            let again = Segment::open(Bytes::from(rebuilt.clone())).expect("a rebuilt segment opens");
            let docs_again: Vec<_> = (0..n).map(|r| again.doc(r).expect("a rebuilt row")).collect();
            assert_eq!(format!("{docs:?}"), format!("{docs_again:?}"), "the rebuild holds other rows");
            assert_eq!(rebuild(&docs_again), rebuilt, "doc blocks are not deterministic");
        }
    }
});
