//! Tests of the compressed document store (segment version 2, `docblocks.rs`): round trips
//! against the raw layout, random access in any order, the per-thread block cache, and damage
//! behind good section checksums (a clear error for the rows of the damaged block, never a
//! panic or a wrong document).

use super::*;
use crate::model::Value;
use proptest::prelude::*;

fn attrs(pairs: Vec<(&str, Value)>) -> AttrMap {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Text-like rows (compressible), an empty row every 7th, named and multi vectors.
fn corpus(n: u64) -> Vec<Document> {
    (0..n)
        .map(|i| {
            let a = if i % 7 == 3 {
                AttrMap::new()
            } else {
                attrs(vec![
                    (
                        "body",
                        Value::Str(
                            format!("package {i} provides the library {} for the tools", i % 13).repeat(3),
                        ),
                    ),
                    ("emb", Value::Dense(vec![i as f32, -1.5, 0.25].into())),
                    ("multi", Value::Multi(vec![vec![1.0, i as f32], vec![0.5, -2.0]])),
                    ("size", Value::Int(i128::from(i) * 1000)),
                ])
            };
            Document { id: DocId::U64(i * 3), vector: None, attrs: a }
        })
        .collect()
}

fn build(docs: &[Document], raw: bool) -> Vec<u8> {
    let mut b = SegmentBuilder::new(docs.first().map_or(IdType::U64, |d| d.id.id_type()), None);
    if raw {
        b = b.with_raw_docs();
    }
    docs.iter().for_each(|d| b.push(d).unwrap());
    b.finish().unwrap()
}

fn open(bytes: &[u8]) -> Result<Segment, FormatError> {
    Segment::open(Bytes::copy_from_slice(bytes))
}

/// The block table entries of a version 2 segment.
fn entries(seg: &Segment) -> Vec<docblocks::Entry> {
    let sec = seg.section(SECTION_DOC_BLOCKS).unwrap();
    let n = le_u32(sec, 0) as usize;
    (0..n).map(|i| docblocks::Entry::parse(&sec[8 + 32 * i..])).collect()
}

/// `bytes` with every section crc and the table crc recomputed (no range checksums).
fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
    let count = le_u32(&bytes, 28) as usize;
    let at = le_u64(&bytes, 32) as usize;
    for i in 0..count {
        let e = at + i * SECTION_ENTRY_LEN;
        let (off, len) = (le_u64(&bytes, e + 8) as usize, le_u64(&bytes, e + 16) as usize);
        let crc = crc32c::crc32c(&bytes[off..off + len]);
        bytes[e + 4..e + 8].copy_from_slice(&crc.to_le_bytes());
    }
    let end = at + count * SECTION_ENTRY_LEN;
    let crc = crc32c::crc32c(&bytes[at..end]);
    bytes[end..end + 4].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// Invariant: a version 2 segment holds the same rows as the raw layout, read in any order,
/// by every row reader, and is smaller on compressible rows.
#[test]
fn blocks_hold_the_raw_layouts_rows_in_any_order() {
    let docs = corpus(3000);
    let (packed, raw) = (build(&docs, false), build(&docs, true));
    assert_eq!(le_u16(&packed, 8), SEGMENT_FORMAT_VERSION);
    assert_eq!(le_u16(&raw, 8), SEGMENT_FORMAT_V1);
    let (p, r) = (open(&packed).unwrap(), open(&raw).unwrap());
    assert!(p.section(SECTION_DOCS).is_none() && r.section(SECTION_DOC_BLOCKS).is_none());
    let blocks = entries(&p);
    assert!(blocks.len() > 10, "{} blocks", blocks.len());
    assert!(blocks.iter().all(|e| e.codec == CODEC_LZ4));
    let sizes = (p.section(SECTION_DOC_BLOCKS).unwrap().len(), r.section(SECTION_DOCS).unwrap().len());
    assert!(sizes.0 * 2 < sizes.1, "compressed {} vs raw {}", sizes.0, sizes.1);
    let forward: Vec<usize> = (0..docs.len()).collect();
    let backward: Vec<usize> = forward.iter().rev().copied().collect();
    let scattered: Vec<usize> = (0..docs.len()).map(|i| i * 997 % docs.len()).collect();
    for order in [forward, backward, scattered] {
        for &row in &order {
            assert_eq!(p.doc(row).unwrap(), docs[row]);
            assert_eq!(p.attrs_without_dense(row).unwrap(), r.attrs_without_dense(row).unwrap());
            assert_eq!(p.dense_attr(row, "emb").unwrap(), r.dense_attr(row, "emb").unwrap());
            assert_eq!(p.multi_attr(row, "multi").unwrap(), r.multi_attr(row, "multi").unwrap());
        }
    }
    assert!(p.doc(docs.len()).is_err());
}

/// Invariant: the thread's cache is keyed by segment, not address or row alone: two segments
/// with the same rows numbers and different contents, read alternately, each give their own.
#[test]
fn the_block_cache_never_mixes_segments() {
    let a = corpus(400);
    let b: Vec<Document> =
        a.iter().map(|d| Document { attrs: attrs(vec![("other", Value::Int(7))]), ..d.clone() }).collect();
    for _ in 0..3 {
        let (sa, sb) = (open(&build(&a, false)).unwrap(), open(&build(&b, false)).unwrap());
        for row in 0..a.len() {
            assert_eq!(sa.attrs(row).unwrap(), a[row].attrs);
            assert_eq!(sb.attrs(row).unwrap(), b[row].attrs);
        }
        // Dropped here: the next round's segments may reuse the addresses.
    }
}

/// Invariant: a row larger than a block gets a block of its own; an incompressible block is
/// stored as is (codec 0); both read back.
#[test]
fn huge_and_incompressible_rows_read_back() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        char::from(b'!' + (x % 90) as u8)
    };
    let random: String = (0..3 * DOC_BLOCK_TARGET).map(|_| noise()).collect();
    let docs = vec![
        Document { id: DocId::U64(1), vector: None, attrs: attrs(vec![("t", Value::Str("small".into()))]) },
        Document {
            id: DocId::U64(2),
            vector: None,
            attrs: attrs(vec![("t", Value::Str("y".repeat(200_000)))]),
        },
        Document { id: DocId::U64(3), vector: None, attrs: attrs(vec![("t", Value::Str(random))]) },
        Document { id: DocId::U64(4), vector: None, attrs: AttrMap::new() },
    ];
    let seg = open(&build(&docs, false)).unwrap();
    let e = entries(&seg);
    assert_eq!(e.iter().map(|e| e.first_row).collect::<Vec<_>>(), vec![0, 2, 3]);
    assert_eq!(e.iter().map(|e| e.codec).collect::<Vec<_>>(), vec![CODEC_LZ4, CODEC_STORED, CODEC_STORED]);
    for row in [3, 1, 0, 2, 1] {
        assert_eq!(seg.doc(row).unwrap(), docs[row]);
    }
}

/// Invariant: a flipped byte anywhere in a block's stored bytes, behind resealed section
/// checksums, never yields a wrong row: the block's rows read as they were or fail (a
/// decompression error, a length or crc mismatch), and the other blocks' rows still read.
#[test]
fn a_damaged_block_fails_its_rows_alone() {
    let docs = corpus(600);
    let bytes = build(&docs, false);
    let seg = open(&bytes).unwrap();
    let e = entries(&seg);
    let info = seg.section_infos().into_iter().find(|s| s.kind == SECTION_DOC_BLOCKS).unwrap();
    let data = info.offset as usize + 8 + 32 * e.len();
    let (victim, next) = (&e[1], e[2].first_row as usize);
    let rows = victim.first_row as usize..next;
    let mut failed = 0;
    for at in (0..victim.stored_len as usize).step_by(3) {
        let mut bad = bytes.clone();
        bad[data + victim.offset as usize + at] ^= 0x5a;
        let seg = open(&reseal(bad)).expect("the table is intact");
        for row in rows.clone() {
            match seg.doc(row) {
                Ok(d) => assert_eq!(d, docs[row], "flip at {at}: a wrong row"),
                Err(err) => {
                    failed += 1;
                    assert!(matches!(err, FormatError::Malformed(_) | FormatError::ChecksumMismatch { .. }));
                }
            }
        }
        assert_eq!(seg.doc(0).unwrap(), docs[0]);
        assert_eq!(seg.doc(next).unwrap(), docs[next]);
    }
    assert!(failed > 0);
}

/// Invariant: a table entry that is inconsistent (codec, lengths, offsets, first rows,
/// reserved bytes), behind resealed checksums, is refused at open or fails its rows' reads.
#[test]
fn damaged_block_tables_are_refused() {
    let docs = corpus(300);
    let bytes = build(&docs, false);
    let seg = open(&bytes).unwrap();
    let info = seg.section_infos().into_iter().find(|s| s.kind == SECTION_DOC_BLOCKS).unwrap();
    let table = info.offset as usize;
    let head = 8 + 32 * entries(&seg).len();
    for at in 0..head {
        for flip in [0x01u8, 0x80] {
            let mut bad = bytes.clone();
            bad[table + at] ^= flip;
            let Ok(seg) = open(&reseal(bad)) else { continue };
            for (row, d) in docs.iter().enumerate() {
                if let Ok(got) = seg.doc(row) {
                    assert_eq!(&got, d, "byte {at} flip {flip:#x}: a wrong row");
                }
            }
        }
    }
}

/// Invariant: a version 2 segment must hold doc blocks and no raw docs; a version 1 segment the
/// reverse.
#[test]
fn the_version_names_the_docs_layout() {
    let docs = corpus(20);
    let mut v2_as_v1 = build(&docs, false);
    v2_as_v1[8..10].copy_from_slice(&SEGMENT_FORMAT_V1.to_le_bytes());
    let crc = crc32c::crc32c(&v2_as_v1[..60]);
    v2_as_v1[60..64].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(open(&v2_as_v1), Err(FormatError::Malformed(_))));
    let mut v1_as_v2 = build(&docs, true);
    v1_as_v2[8..10].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
    let crc = crc32c::crc32c(&v1_as_v2[..60]);
    v1_as_v2[60..64].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(open(&v1_as_v2), Err(FormatError::Malformed(_))));
}

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| Value::Int(i128::from(i))),
        (proptest::num::f64::NORMAL | proptest::num::f64::ZERO).prop_map(Value::Float),
        ".{0,40}".prop_map(Value::Str),
        proptest::collection::vec(".{0,5}".prop_map(Value::Str), 0..4).prop_map(Value::Array),
        proptest::collection::vec((".{0,6}", -1e30f32..1e30f32), 0..4).prop_map(Value::Sparse),
        proptest::collection::vec(-1e6f32..1e6f32, 1..6).prop_map(|v| Value::Dense(v.into())),
        proptest::collection::vec(proptest::collection::vec(-1e6f32..1e6f32, 2..=2), 1..3)
            .prop_map(Value::Multi),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Invariant: random rows (every value kind, empty rows, now and then one row larger than a
    /// block) read back from a version 2 segment exactly as from a version 1 one, in a random
    /// order, and the build is deterministic.
    #[test]
    fn random_rows_round_trip_through_blocks(
        rows in proptest::collection::vec(proptest::collection::btree_map("[a-z]{1,6}", arb_value(), 0..5), 0..300),
        huge_at in proptest::option::of(any::<prop::sample::Index>()),
        order in proptest::collection::vec(any::<prop::sample::Index>(), 0..200),
    ) {
        let mut docs: Vec<Document> = rows
            .into_iter()
            .enumerate()
            .map(|(i, a)| Document { id: DocId::U64(i as u64), vector: None, attrs: a.into_iter().collect() })
            .collect();
        if let (Some(h), false) = (huge_at, docs.is_empty()) {
            let i = h.index(docs.len());
            docs[i].attrs = attrs(vec![("huge", Value::Str("z".repeat(DOC_BLOCK_TARGET * 2 + 17)))]);
        }
        let packed = build(&docs, false);
        prop_assert_eq!(&build(&docs, false), &packed);
        let (p, r) = (open(&packed).unwrap(), open(&build(&docs, true)).unwrap());
        prop_assert_eq!(p.len(), docs.len());
        for i in order.iter().filter(|_| !docs.is_empty()).map(|i| i.index(docs.len())).chain(0..docs.len()) {
            prop_assert_eq!(&p.doc(i).unwrap(), &docs[i]);
            prop_assert_eq!(p.attrs_without_dense(i).unwrap(), r.attrs_without_dense(i).unwrap());
        }
    }
}
