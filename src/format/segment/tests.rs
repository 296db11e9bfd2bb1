use super::assemble::assemble;
use super::*;
use crate::model::Value;
use proptest::prelude::*;

/// Invariant: with range checksums any byte range, widened to chunks, verifies on its own;
/// a flipped bit in it does not; a segment whose checksums disagree with its bytes does not
/// open; rebuilding from the extension sections reproduces the file.
#[test]
fn range_checksums_verify_ranged_reads() {
    let docs: Vec<Document> = (0..3000u64)
        .map(|i| Document {
            id: DocId::U64(i),
            vector: Some(vec![i as f32, 1.0].into()),
            attrs: attrs(&[("t", Value::Str("x".repeat((i % 50) as usize)))]),
        })
        .collect();
    let mut b = SegmentBuilder::new(IdType::U64, Some(2)).with_range_checksums();
    for d in &docs {
        b.push(d).unwrap();
    }
    b.add_section(SECTION_TEXT_INDEX, vec![3; 1000]);
    let bytes = b.finish().unwrap();
    let seg = Segment::open(Bytes::from(bytes.clone())).unwrap();
    let table = section_table(&bytes).unwrap();
    let last = table.last().unwrap();
    assert_eq!(last.kind, SECTION_RANGE_CHECKSUMS);
    let sums = RangeChecksums::decode(seg.section(SECTION_RANGE_CHECKSUMS).unwrap()).unwrap();
    assert_eq!(sums.covered(), last.offset);
    assert!(sums.covered() > 3 << RANGE_CHUNK_LOG2, "the test spans several chunks");
    for (a, z) in [(0u64, 1u64), (100, 40_000), (16_383, 16_385), (sums.covered() - 5, sums.covered())] {
        let w = sums.widen(a..z).unwrap();
        assert!(w.start <= a && z <= w.end);
        let got = &bytes[w.start as usize..w.end as usize];
        sums.verify(w.start, got).unwrap();
        let mut bad = got.to_vec();
        bad[(a - w.start) as usize] ^= 0x04;
        assert!(sums.verify(w.start, &bad).is_err());
        assert!(sums.verify(w.start + 1, &got[1..]).is_err(), "unaligned start refused");
    }
    assert!(sums.widen(0..sums.covered() + 1).is_none());
    assert_eq!(rebuild(&seg), bytes, "canonical with the checksum section");
    // A builder that lies: the checksums no longer match the bytes.
    let mut forged = bytes.clone();
    let at = last.offset as usize + RANGE_HEADER_LEN;
    forged[at] ^= 1;
    let crc = crc32c::crc32c(&forged[last.offset as usize..(last.offset + last.len) as usize]);
    let table_at = forged.len() - 4 - SECTION_ENTRY_LEN * table.len();
    let entry = table_at + SECTION_ENTRY_LEN * (table.len() - 1);
    forged[entry + 4..entry + 8].copy_from_slice(&crc.to_le_bytes());
    let tcrc = crc32c::crc32c(&forged[table_at..forged.len() - 4]);
    let n = forged.len();
    forged[n - 4..].copy_from_slice(&tcrc.to_le_bytes());
    assert!(matches!(Segment::open(Bytes::from(forged)), Err(FormatError::ChecksumMismatch { .. })));
}

/// Invariant: `open_settling` hands every verified byte over in stretches of at most
/// `VERIFY_STRETCH`, in file order, each one read before the next (the section pass and then
/// the range-checksum pass), and opens the same segment as `open`; a flipped bit still refuses
/// the file.
#[test]
fn open_settling_hands_the_file_over_stretch_by_stretch() {
    let dim = 1024u32;
    let rows = VERIFY_STRETCH / (dim as usize * 4) + 300; // a vectors section over one stretch
    let mut b = SegmentBuilder::new(IdType::U64, Some(dim)).with_range_checksums();
    for i in 0..rows {
        let v: Vec<f32> = (0..dim).map(|d| (i as f32) + d as f32 * 0.5).collect();
        b.push(&Document { id: DocId::U64(i as u64), vector: Some(v.into()), attrs: AttrMap::new() })
            .unwrap();
    }
    let bytes = b.finish().unwrap();
    let handed = std::sync::Mutex::new(Vec::new());
    let buf = Bytes::from(bytes.clone());
    let seen = |s: &[u8]| {
        let at = s.as_ptr() as usize - buf.as_ptr() as usize;
        handed.lock().unwrap().push(at..at + s.len());
    };
    let seg = Segment::open_settling(buf.clone(), &seen).unwrap();
    assert_eq!(seg.len(), rows);
    assert_eq!(seg.vector(rows - 1), Segment::open(buf.clone()).unwrap().vector(rows - 1));
    let handed = handed.into_inner().unwrap();
    assert!(handed.iter().all(|r| r.len() <= VERIFY_STRETCH && !r.is_empty()));
    let table = section_table(&bytes).unwrap();
    let covered = table.last().unwrap().offset as usize;
    let (sections, ranges): (Vec<_>, Vec<_>) = handed.iter().cloned().partition(|r| {
        // The section pass comes first; the range pass restarts at byte 0.
        handed.iter().position(|x| x == r) < handed.iter().position(|x| x.start == 0)
    });
    let section_bytes: usize = table.iter().map(|e| e.len as usize).sum();
    assert_eq!(sections.iter().map(|r| r.len()).sum::<usize>(), section_bytes, "every section byte");
    assert!(sections.windows(2).all(|w| w[0].end <= w[1].start), "in file order");
    let whole: Vec<_> =
        (0..covered).step_by(VERIFY_STRETCH).map(|a| a..(a + VERIFY_STRETCH).min(covered)).collect();
    assert_eq!(ranges, whole, "the range pass: the file before its checksums, stretch by stretch");
    assert!(sections.len() > table.len(), "the vectors section took more than one stretch");
    let mut bad = bytes.clone();
    bad[covered / 2] ^= 0x10;
    assert!(Segment::open_settling(Bytes::from(bad), &|_| {}).is_err());
}

/// Invariant: a cold reader that fetches only the section table's ranges sees the ids the
/// segment holds, for every id kind (`section_table`, `IdsSection`).
#[test]
fn ids_section_read_alone_matches_the_segment() {
    let kinds: [(IdType, Vec<DocId>); 3] = [
        (IdType::U64, vec![DocId::U64(1), DocId::U64(7), DocId::U64(u64::MAX)]),
        (IdType::Uuid, (1u128..4).map(|u| DocId::Uuid(uuid::Uuid::from_u128(u << 64))).collect()),
        (IdType::String, ["a", "bé", "zzzz"].iter().map(|s| DocId::Str((*s).to_owned())).collect()),
    ];
    for (ty, ids) in kinds {
        let mut b = SegmentBuilder::new(ty, None);
        for id in &ids {
            b.push(&Document { id: id.clone(), vector: None, attrs: AttrMap::new() }).unwrap();
        }
        let bytes = b.finish().unwrap();
        let table = section_table(&bytes).unwrap();
        let seg = Segment::open(Bytes::from(bytes.clone())).unwrap();
        assert_eq!(table, seg.section_infos());
        let e = table.iter().find(|s| s.kind == SECTION_IDS).unwrap();
        let sec = Bytes::copy_from_slice(&bytes[e.offset as usize..(e.offset + e.len) as usize]);
        assert_eq!(crc32c::crc32c(&sec), e.crc32c);
        let view = IdsSection::parse(sec.clone(), ty, ids.len()).unwrap();
        for (row, id) in ids.iter().enumerate() {
            assert_eq!(view.id(row).as_ref(), Some(id));
        }
        assert_eq!(view.id(ids.len()), None);
        assert!(IdsSection::parse(sec.slice(..sec.len() - 1), ty, ids.len()).is_err());
        assert!(IdsSection::parse(sec, ty, ids.len() + 1).is_err());
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(section_table(&bad).is_err(), "the table crc is checked");
    }
}

fn attrs(pairs: &[(&str, Value)]) -> AttrMap {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

fn every_value() -> AttrMap {
    attrs(&[
        ("arr", Value::Array(vec![Value::Int(1), Value::Str("x".into()), Value::Bool(false)])),
        ("b", Value::Bool(true)),
        ("f", Value::Float(-2.5e-300)),
        ("i", Value::Int(i128::from(i64::MIN))),
        ("n", Value::Null),
        ("s", Value::Str("héllo".into())),
        ("sp", Value::Sparse(vec![("k1".into(), 0.25), ("k2".into(), -1.0)])),
        ("u", Value::Int(i128::from(u64::MAX))),
    ])
}

fn build(id_type: IdType, dim: Option<u32>, docs: &[Document]) -> Vec<u8> {
    let mut b = SegmentBuilder::new(id_type, dim);
    for d in docs {
        b.push(d).unwrap();
    }
    assert_eq!(b.len(), docs.len());
    b.finish().unwrap()
}

fn open(bytes: &[u8]) -> Result<Segment, FormatError> {
    Segment::open(Bytes::copy_from_slice(bytes))
}

fn check_all(seg: &Segment, docs: &[Document]) {
    assert_eq!(seg.len(), docs.len());
    for (row, d) in docs.iter().enumerate() {
        assert_eq!(seg.id(row), d.id);
        assert_eq!(seg.find(&d.id), Some(row));
        assert_eq!(seg.lower_bound(&d.id), row);
        assert_eq!(&seg.doc(row).unwrap(), d);
        assert_eq!(seg.vector(row), d.vector.as_deref());
    }
    assert_eq!(seg.try_id(docs.len()), None);
    assert!(seg.doc(docs.len()).is_err());
}

fn small_docs() -> Vec<Document> {
    vec![
        Document { id: DocId::U64(3), vector: Some(vec![1.0, 2.0].into()), attrs: every_value() },
        Document { id: DocId::U64(10), vector: Some(vec![-0.5, 0.0].into()), attrs: AttrMap::new() },
        Document {
            id: DocId::U64(u64::MAX),
            vector: Some(vec![f32::MIN_POSITIVE, 7.0].into()),
            attrs: attrs(&[("a", Value::Int(1))]),
        },
    ]
}

fn small_segment() -> Vec<u8> {
    build(IdType::U64, Some(2), &small_docs())
}

/// `small_docs` as segment version 1 writes them (raw docs, kind 2).
fn small_raw_segment() -> Vec<u8> {
    let mut b = SegmentBuilder::new(IdType::U64, Some(2)).with_raw_docs();
    small_docs().iter().for_each(|d| b.push(d).unwrap());
    b.finish().unwrap()
}

#[test]
fn every_value_kind_round_trips_with_u64_ids_and_vectors() {
    let docs = small_docs();
    let seg = open(&small_segment()).unwrap();
    check_all(&seg, &docs);
    assert_eq!(seg.vector_dim(), Some(2));
    assert_eq!(seg.id_type(), IdType::U64);
    assert_eq!(seg.vectors().unwrap(), &[1.0, 2.0, -0.5, 0.0, f32::MIN_POSITIVE, 7.0]);
    assert_eq!(seg.find(&DocId::U64(4)), None);
    assert_eq!(seg.lower_bound(&DocId::U64(4)), 1);
    assert_eq!(seg.lower_bound(&DocId::U64(0)), 0);
    assert_eq!(seg.find(&DocId::Str("3".into())), None);
    // Cross-kind order: u64 < UUID < string.
    assert_eq!(seg.lower_bound(&DocId::Str("a".into())), 3);
    assert_eq!(seg.lower_bound(&DocId::Uuid(uuid::Uuid::nil())), 3);
}

#[test]
fn uuid_ids_round_trip() {
    let docs: Vec<Document> = [1u128, 0xff, u128::MAX]
        .iter()
        .map(|&u| Document {
            id: DocId::Uuid(uuid::Uuid::from_u128(u)),
            vector: None,
            attrs: attrs(&[("x", Value::Str(format!("{u}")))]),
        })
        .collect();
    let seg = open(&build(IdType::Uuid, None, &docs)).unwrap();
    check_all(&seg, &docs);
    assert_eq!(seg.vectors(), None);
    assert_eq!(seg.vector_dim(), None);
    assert_eq!(seg.find(&DocId::Uuid(uuid::Uuid::from_u128(2))), None);
    assert_eq!(seg.lower_bound(&DocId::Uuid(uuid::Uuid::from_u128(2))), 1);
    assert_eq!(seg.lower_bound(&DocId::U64(u64::MAX)), 0);
    assert_eq!(seg.lower_bound(&DocId::Str("a".into())), 3);
}

#[test]
fn string_ids_round_trip() {
    let ids = ["a", "ab", "b", "héllo", &"z".repeat(MAX_STRING_ID_BYTES)];
    let docs: Vec<Document> = ids
        .iter()
        .map(|s| Document { id: DocId::Str((*s).into()), vector: None, attrs: every_value() })
        .collect();
    let seg = open(&build(IdType::String, None, &docs)).unwrap();
    check_all(&seg, &docs);
    assert_eq!(seg.find(&DocId::Str("aa".into())), None);
    assert_eq!(seg.lower_bound(&DocId::Str("aa".into())), 1);
    assert_eq!(seg.lower_bound(&DocId::Str("zzz".into())), 4);
    assert_eq!(seg.lower_bound(&DocId::U64(1)), 0);
}

#[test]
fn rows_without_vectors_are_recorded() {
    let docs = vec![
        Document { id: DocId::U64(1), vector: None, attrs: AttrMap::new() },
        Document { id: DocId::U64(2), vector: Some(vec![1.0, 2.0, 3.0].into()), attrs: AttrMap::new() },
        Document { id: DocId::U64(3), vector: None, attrs: AttrMap::new() },
    ];
    let bytes = build(IdType::U64, Some(3), &docs);
    let seg = open(&bytes).unwrap();
    check_all(&seg, &docs);
    assert!(!seg.has_vector(0) && seg.has_vector(1) && !seg.has_vector(2) && !seg.has_vector(3));
    assert_eq!(seg.vectors().unwrap().len(), 9);
    assert!(seg.section(SECTION_VECTOR_ABSENT).is_some());
    // All rows with vectors: no absent bitmap.
    assert!(open(&small_segment()).unwrap().section(SECTION_VECTOR_ABSENT).is_none());
}

#[test]
fn empty_segments_round_trip() {
    for (t, dim) in [(IdType::U64, None), (IdType::Uuid, Some(4)), (IdType::String, None)] {
        let seg = open(&build(t, dim, &[])).unwrap();
        assert_eq!(seg.len(), 0);
        assert!(seg.is_empty());
        assert_eq!(seg.id_type(), t);
        assert_eq!(seg.vector_dim(), dim);
        assert_eq!(seg.find(&DocId::U64(1)), None);
        assert_eq!(seg.lower_bound(&DocId::Str("x".into())), 0);
        assert_eq!(seg.vectors().map(<[f32]>::len), dim.map(|_| 0));
    }
}

#[test]
fn builder_refuses_bad_pushes_without_appending() {
    let mut b = SegmentBuilder::new(IdType::U64, Some(2));
    b.push(&Document { id: DocId::U64(5), vector: Some(vec![0.0, 1.0].into()), attrs: AttrMap::new() })
        .unwrap();
    let bad = [
        Document { id: DocId::U64(5), vector: Some(vec![0.0, 1.0].into()), attrs: AttrMap::new() },
        Document { id: DocId::U64(4), vector: Some(vec![0.0, 1.0].into()), attrs: AttrMap::new() },
        Document { id: DocId::Str("x".into()), vector: None, attrs: AttrMap::new() },
        Document { id: DocId::U64(6), vector: Some(vec![0.0].into()), attrs: AttrMap::new() },
        Document {
            id: DocId::U64(7),
            vector: None,
            attrs: attrs(&[("a", Value::Array(vec![Value::Array(vec![])]))]),
        },
    ];
    for d in &bad {
        assert!(b.push(d).is_err(), "{d:?}");
    }
    assert_eq!(b.len(), 1);
    let seg = open(&b.finish().unwrap()).unwrap();
    assert_eq!(seg.len(), 1);
    assert!(!seg.is_empty());

    let mut b = SegmentBuilder::new(IdType::U64, None);
    assert!(b
        .push(&Document { id: DocId::U64(1), vector: Some(vec![1.0].into()), attrs: AttrMap::new() })
        .is_err());
    let mut b = SegmentBuilder::new(IdType::String, None);
    assert!(b.push(&Document::new(DocId::Str(String::new()))).is_err());
    assert!(b.push(&Document::new(DocId::Str("x".repeat(65)))).is_err());
    assert!(b.is_empty());
    assert!(SegmentBuilder::new(IdType::U64, Some(0)).finish().is_err());
    let mut b = SegmentBuilder::new(IdType::U64, None);
    b.add_section(SECTION_DOCS, vec![1]);
    assert!(b.finish().is_err());
}

#[test]
fn extension_sections_are_kept_and_unknown_ones_skipped() {
    let mut b = SegmentBuilder::new(IdType::U64, Some(2));
    for d in small_docs() {
        b.push(&d).unwrap();
    }
    b.add_section(SECTION_TEXT_INDEX, b"title...");
    b.add_section(SECTION_ANN_INDEX, vec![9; 100]);
    b.add_section(SECTION_TEXT_INDEX, b"body...");
    b.add_section(999, vec![]);
    b.add_section(u16::MAX, vec![7; 3]);
    let bytes = b.finish().unwrap();
    let seg = open(&bytes).unwrap();
    check_all(&seg, &small_docs());
    assert_eq!(rebuild(&seg), bytes);
    assert_eq!(seg.section(SECTION_ANN_INDEX), Some(&[9u8; 100][..]));
    assert_eq!(seg.sections(SECTION_TEXT_INDEX), vec![&b"title..."[..], &b"body..."[..]]);
    assert_eq!(seg.section(SECTION_TEXT_INDEX), Some(&b"title..."[..]));
    assert_eq!(seg.section(999), Some(&[][..]));
    assert_eq!(seg.section(u16::MAX), Some(&[7u8; 3][..]));
    assert_eq!(seg.section(SECTION_SPARSE_INDEX), None);
    assert!(seg.sections(SECTION_ATTRIBUTE_INDEX).is_empty());
    let infos = seg.section_infos();
    assert_eq!(infos.len(), 8);
    assert!(infos.iter().all(|s| s.offset % 64 == 0));
    assert_eq!(infos.iter().map(|s| s.kind).collect::<Vec<_>>(), vec![1, 3, 5, 17, 16, 17, 999, 65535]);
}

#[test]
fn unknown_core_kinds_are_refused() {
    let seg = open(&small_raw_segment()).unwrap();
    let ids = seg.section(SECTION_IDS).unwrap().to_vec();
    let docs = seg.section(SECTION_DOCS).unwrap().to_vec();
    let vecs = seg.section(SECTION_VECTORS).unwrap().to_vec();
    let good = assemble(
        ID_KIND_U64,
        3,
        2,
        &[(SECTION_IDS, &ids), (SECTION_DOCS, &docs), (SECTION_VECTORS, &vecs), (16, b"x")],
        false,
    )
    .unwrap();
    assert_eq!(good.len(), small_raw_segment().len() + SECTION_ALIGN + SECTION_ENTRY_LEN);
    check_all(&open(&good).unwrap(), &small_docs());
    // Kind 5 is known, but not in a segment with raw docs.
    for bad_kind in [0u16, 5, 6, 15] {
        let bytes = assemble(
            ID_KIND_U64,
            3,
            2,
            &[(SECTION_IDS, &ids), (SECTION_DOCS, &docs), (SECTION_VECTORS, &vecs), (bad_kind, b"x")],
            false,
        )
        .unwrap();
        assert!(matches!(open(&bytes), Err(FormatError::Malformed(_))), "kind {bad_kind}");
    }
    // Duplicated and missing core sections.
    let dup = assemble(
        ID_KIND_U64,
        3,
        2,
        &[(SECTION_IDS, &ids), (SECTION_DOCS, &docs), (SECTION_VECTORS, &vecs), (SECTION_IDS, &ids)],
        false,
    )
    .unwrap();
    assert!(matches!(open(&dup), Err(FormatError::Malformed(_))));
    let missing = assemble(ID_KIND_U64, 3, 2, &[(SECTION_IDS, &ids), (SECTION_DOCS, &docs)], false).unwrap();
    assert!(matches!(open(&missing), Err(FormatError::Malformed(_))));
    let no_dim =
        assemble(ID_KIND_U64, 3, 0, &[(SECTION_IDS, &ids), (SECTION_DOCS, &docs), (3, &vecs)], false);
    assert!(matches!(open(&no_dim.unwrap()), Err(FormatError::Malformed(_))));
}

/// Rebuild a segment from its documents and extension sections.
fn rebuild(seg: &Segment) -> Vec<u8> {
    let mut b = SegmentBuilder::new(seg.id_type(), seg.vector_dim());
    for row in 0..seg.len() {
        b.push(&seg.doc(row).unwrap()).unwrap();
    }
    for (kind, bytes) in seg.extension_sections() {
        b.add_section(kind, bytes);
    }
    b.finish().unwrap()
}

#[test]
fn core_sections_come_first_in_kind_order_and_absent_vectors_are_zero() {
    let docs = [
        Document { id: DocId::U64(1), vector: None, attrs: AttrMap::new() },
        Document { id: DocId::U64(2), vector: Some(vec![1.0, 2.0].into()), attrs: AttrMap::new() },
    ];
    let mut b = SegmentBuilder::new(IdType::U64, Some(2)).with_raw_docs();
    docs.iter().for_each(|d| b.push(d).unwrap());
    let seg = open(&b.finish().unwrap()).unwrap();
    let ids = seg.section(SECTION_IDS).unwrap().to_vec();
    let d = seg.section(SECTION_DOCS).unwrap().to_vec();
    let v = seg.section(SECTION_VECTORS).unwrap().to_vec();
    let a = seg.section(SECTION_VECTOR_ABSENT).unwrap().to_vec();
    let mk = |secs: &[(u16, &[u8])]| open(&assemble(ID_KIND_U64, 2, 2, secs, false).unwrap());
    assert!(mk(&[(1, &ids), (2, &d), (3, &v), (4, &a), (16, b"x")]).is_ok());
    for bad in [
        vec![(2, &d[..]), (1, &ids[..]), (3, &v[..]), (4, &a[..])],
        vec![(1, &ids[..]), (2, &d[..]), (4, &a[..]), (3, &v[..])],
        vec![(1, &ids[..]), (2, &d[..]), (16, b"x"), (3, &v[..]), (4, &a[..])],
    ] {
        assert!(
            matches!(mk(&bad), Err(FormatError::Malformed(_))),
            "{:?}",
            bad.iter().map(|s| s.0).collect::<Vec<_>>()
        );
    }
    let mut nonzero = v.clone();
    nonzero[0] = 1;
    assert!(matches!(mk(&[(1, &ids), (2, &d), (3, &nonzero), (4, &a)]), Err(FormatError::Malformed(_))));
    assert!(matches!(mk(&[(1, &ids), (2, &d), (3, &v), (4, &[0; 8])]), Err(FormatError::Malformed(_))));
}

#[test]
fn structurally_bad_sections_behind_good_checksums_are_refused() {
    let seg = open(&small_raw_segment()).unwrap();
    let ids = seg.section(SECTION_IDS).unwrap().to_vec();
    let docs = seg.section(SECTION_DOCS).unwrap().to_vec();
    let vecs = seg.section(SECTION_VECTORS).unwrap().to_vec();
    let mk = |ids: &[u8], docs: &[u8], vecs: &[u8], rows: usize| {
        open(&assemble(ID_KIND_U64, rows, 2, &[(1, ids), (2, docs), (3, vecs)], false).unwrap())
    };
    assert!(mk(&ids, &docs, &vecs, 3).is_ok());
    // Ids not increasing.
    let mut swapped = ids.clone();
    swapped[..8].copy_from_slice(&ids[8..16]);
    swapped[8..16].copy_from_slice(&ids[..8]);
    assert!(matches!(mk(&swapped, &docs, &vecs, 3), Err(FormatError::Malformed(_))));
    let mut dup = ids.clone();
    dup[8..16].copy_from_slice(&ids[..8]);
    assert!(matches!(mk(&dup, &docs, &vecs, 3), Err(FormatError::Malformed(_))));
    // Wrong lengths for the row count.
    assert!(mk(&ids[..16], &docs, &vecs, 3).is_err());
    assert!(mk(&ids, &docs, &vecs[..20], 3).is_err());
    assert!(mk(&ids, &docs, &vecs, 2).is_err());
    // Docs offsets: not starting at 0, decreasing, past the end.
    for (at, v) in [(0usize, 1u64), (8, 1_000_000), (16, 0), (24, 1 << 40)] {
        let mut d = docs.clone();
        d[at..at + 8].copy_from_slice(&v.to_le_bytes());
        assert!(matches!(mk(&ids, &d, &vecs, 3), Err(FormatError::Malformed(_))), "offset at {at}");
    }
    assert!(mk(&ids, &docs[..20], &vecs, 3).is_err());
    // String ids: empty, too long, bad UTF-8.
    let str_ids = |parts: &[&[u8]]| {
        let mut w = Writer::new();
        let mut o = 0u64;
        w.u64(0);
        for p in parts {
            o += len_u64(p.len());
            w.u64(o);
        }
        for p in parts {
            w.bytes(p);
        }
        w.into_inner()
    };
    let mk_str = |ids: Vec<u8>| {
        open(&assemble(ID_KIND_STR, 3, 2, &[(1, &ids), (2, &docs), (3, &vecs)], false).unwrap())
    };
    assert!(mk_str(str_ids(&[b"a", b"b", b"c"])).is_ok());
    assert!(mk_str(str_ids(&[b"a", b"", b"c"])).is_err());
    assert!(mk_str(str_ids(&[b"a", &[b'b'; 65], b"c"])).is_err());
    assert!(mk_str(str_ids(&[b"a", &[0xc3, 0x28], b"c"])).is_err());
    assert!(mk_str(str_ids(&[b"a", b"c", b"b"])).is_err());
    // Bad attribute bytes behind a good checksum: open succeeds (rows are
    // decoded lazily), `doc` of that row fails cleanly.
    let mut d = docs.clone();
    let row2 = 32 + usize::try_from(le_u64(&docs, 16)).unwrap();
    d[row2..row2 + 4].copy_from_slice(&9u32.to_le_bytes());
    let seg = mk(&ids, &d, &vecs, 3).unwrap();
    assert!(seg.doc(0).is_ok());
    assert!(seg.doc(2).is_err());
}

#[test]
fn truncation_at_every_length_is_refused() {
    let bytes = small_segment();
    for n in 0..bytes.len() {
        assert!(open(&bytes[..n]).is_err(), "prefix of {n} bytes opened");
    }
    let mut long = bytes.clone();
    long.push(0);
    assert!(matches!(open(&long), Err(FormatError::TrailingBytes { extra: 1, .. })));
}

#[test]
fn every_single_bit_flip_is_refused() {
    let mut b = SegmentBuilder::new(IdType::String, Some(1));
    b.push(&Document { id: DocId::Str("a".into()), vector: Some(vec![1.0].into()), attrs: every_value() })
        .unwrap();
    b.push(&Document { id: DocId::Str("b".into()), vector: None, attrs: AttrMap::new() }).unwrap();
    b.add_section(SECTION_ANN_INDEX, vec![1, 2, 3]);
    for bytes in [small_segment(), b.finish().unwrap()] {
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(open(&b).is_err(), "flip of bit {i} went unnoticed");
        }
    }
}

#[test]
fn version_and_magic_are_checked_first() {
    let mut bytes = small_segment();
    bytes[OFF_VERSION..OFF_VERSION + 2].copy_from_slice(&3u16.to_le_bytes());
    assert_eq!(
        open(&bytes).unwrap_err(),
        FormatError::UnsupportedVersion { what: "segment", version: 3, supported: 2 }
    );
    // Even if the rest is a different (future) layout.
    assert!(matches!(open(&bytes[..10]), Err(FormatError::UnsupportedVersion { .. })));
    let mut bytes = small_segment();
    bytes[0] = b'X';
    assert_eq!(open(&bytes).unwrap_err(), FormatError::BadMagic { what: "segment" });
    assert!(matches!(open(b"TIDE"), Err(FormatError::Truncated { .. })));
}

#[test]
fn huge_declared_sizes_fail_fast() {
    let reseal = |mut b: Vec<u8>| {
        let crc = crc32c::crc32c(&b[..OFF_HEADER_CRC]);
        b[OFF_HEADER_CRC..SEGMENT_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
        b
    };
    for (at, v) in [(OFF_ROWS, u64::MAX), (OFF_TABLE_OFFSET, u64::MAX), (OFF_TABLE_OFFSET, 1 << 40)] {
        let mut b = small_segment();
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        assert!(open(&reseal(b)).is_err());
    }
    let mut b = small_segment();
    b[OFF_SECTION_COUNT..OFF_SECTION_COUNT + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(open(&reseal(b)), Err(FormatError::TooLarge { .. })));
    let mut b = small_segment();
    b[OFF_VECTOR_DIM..OFF_VECTOR_DIM + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(open(&reseal(b)), Err(FormatError::TooLarge { .. })));
}

/// A copy of `bytes` whose first byte sits at `misalign` bytes past a
/// 64-byte boundary in memory.
fn placed(bytes: &[u8], misalign: usize) -> Bytes {
    let mut v = vec![0u8; bytes.len() + 128];
    let off = v.as_ptr().align_offset(64) + misalign;
    v[off..off + bytes.len()].copy_from_slice(bytes);
    let b = Bytes::from(v);
    let b = b.slice(off..off + bytes.len());
    assert_eq!(b.as_ptr().align_offset(64), if misalign == 0 { 0 } else { 64 - misalign });
    b
}

#[test]
fn aligned_buffers_are_read_in_place_and_misaligned_ones_copied() {
    let bytes = small_segment();
    let seg = Segment::open(placed(&bytes, 0)).unwrap();
    assert!(seg.vectors_zero_copy());
    let v = seg.vectors().unwrap();
    let sec = seg.section(SECTION_VECTORS).unwrap();
    assert_eq!(v.as_ptr().cast::<u8>(), sec.as_ptr());
    assert_eq!(sec.as_ptr().align_offset(64), 0);
    check_all(&seg, &small_docs());
    for misalign in [1, 2, 3] {
        let seg = Segment::open(placed(&bytes, misalign)).unwrap();
        assert!(!seg.vectors_zero_copy());
        check_all(&seg, &small_docs());
        assert_eq!(seg.vectors().unwrap(), v);
    }
}

#[test]
fn mmap_backed_segments_are_zero_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SEGMENT_FILE);
    std::fs::write(&path, small_segment()).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    // SAFETY (test): the file is private to this test and not modified while mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
    let seg = Segment::open(Bytes::from_owner(map)).unwrap();
    assert!(seg.vectors_zero_copy());
    check_all(&seg, &small_docs());
    let clone = seg.clone();
    drop(seg);
    assert_eq!(clone.byte_len(), small_segment().len());
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    assert_send_sync(&clone);
}

#[test]
fn builder_output_is_canonical() {
    assert_eq!(small_segment(), small_segment());
    assert_eq!(rebuild(&open(&small_segment()).unwrap()), small_segment());
}

// ------------------------------------------------------------ deletion sets

#[test]
fn deletion_set_operations() {
    let mut d = DeletionSet::new(130);
    assert!(d.is_empty());
    assert!(d.insert(0));
    assert!(d.insert(64));
    assert!(d.insert(129));
    assert!(!d.insert(129));
    assert!(!d.insert(130));
    assert!(!d.insert(usize::MAX));
    assert_eq!(d.len(), 3);
    assert_eq!(d.rows(), 130);
    assert_eq!(d.live_rows(), 127);
    assert!(d.contains(64) && !d.contains(63) && !d.contains(130) && !d.contains(usize::MAX));
    assert_eq!(d.iter().collect::<Vec<_>>(), vec![0, 64, 129]);
    let mut e = DeletionSet::new(130);
    e.insert(1);
    e.insert(64);
    let u = d.union(&e);
    assert_eq!(u.iter().collect::<Vec<_>>(), vec![0, 1, 64, 129]);
    assert_eq!(u.len(), 4);
    assert_eq!(u, e.union(&d));
    let empty = DeletionSet::new(0);
    assert!(!empty.contains(0));
    assert_eq!(DeletionSet::decode(&empty.encode()).unwrap(), empty);
    let wider = DeletionSet::new(200).union(&d);
    assert_eq!((wider.rows(), wider.len()), (200, 3));
}

#[test]
fn deletion_set_codec_round_trips_and_refuses_corruption() {
    let mut d = DeletionSet::new(70);
    for r in [0, 5, 63, 69] {
        d.insert(r);
    }
    let bytes = d.encode();
    assert_eq!(bytes.len(), DELETES_HEADER_LEN + 16 + 4);
    assert_eq!(DeletionSet::decode(&bytes).unwrap(), d);
    for n in 0..bytes.len() {
        assert!(DeletionSet::decode(&bytes[..n]).is_err(), "prefix {n}");
    }
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        assert!(DeletionSet::decode(&b).is_err(), "flip of bit {i} went unnoticed");
    }
    let mut long = bytes.clone();
    long.push(0);
    assert!(matches!(DeletionSet::decode(&long), Err(FormatError::TrailingBytes { .. })));
    let mut v2 = bytes.clone();
    v2[8] = 2;
    assert!(matches!(DeletionSet::decode(&v2), Err(FormatError::UnsupportedVersion { version: 2, .. })));
    // Behind a good crc: a bit beyond `rows`, a wrong count, huge rows.
    let reseal = |mut b: Vec<u8>| {
        let n = b.len() - 4;
        let crc = crc32c::crc32c(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
        b
    };
    let mut beyond = bytes.clone();
    beyond[DELETES_HEADER_LEN + 8] |= 0x80;
    beyond[24] = 5;
    assert!(matches!(DeletionSet::decode(&reseal(beyond)), Err(FormatError::Malformed(_))));
    let mut count = bytes.clone();
    count[24] = 3;
    assert!(matches!(DeletionSet::decode(&reseal(count)), Err(FormatError::Malformed(_))));
    let mut huge = bytes;
    huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(DeletionSet::decode(&reseal(huge)), Err(FormatError::TooLarge { .. })));
}

// ------------------------------------------------------------ proptest

fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| Value::Int(i128::from(i))),
        any::<u64>().prop_map(|i| Value::Int(i128::from(i))),
        (proptest::num::f64::NORMAL | proptest::num::f64::ZERO).prop_map(Value::Float),
        ".{0,12}".prop_map(Value::Str),
    ]
}

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => arb_scalar(),
        1 => proptest::collection::vec(arb_scalar(), 0..4).prop_map(Value::Array),
        1 => proptest::collection::vec((".{0,6}", -1e30f32..1e30f32), 0..4).prop_map(Value::Sparse),
    ]
}

fn arb_ids() -> impl Strategy<Value = Vec<DocId>> {
    prop_oneof![
        proptest::collection::btree_set(any::<u64>(), 0..40)
            .prop_map(|s| s.into_iter().map(DocId::U64).collect()),
        proptest::collection::btree_set(any::<u128>(), 0..40)
            .prop_map(|s| s.into_iter().map(|u| DocId::Uuid(uuid::Uuid::from_u128(u))).collect()),
        proptest::collection::btree_set("[a-zé0-9_-]{1,20}", 0..40)
            .prop_map(|s| s.into_iter().map(DocId::Str).collect()),
    ]
}

fn arb_docs() -> impl Strategy<Value = (Option<u32>, Vec<Document>)> {
    (arb_ids(), proptest::option::of(1u32..6)).prop_flat_map(|(ids, dim)| {
        let n = ids.len();
        let d = dim.map_or(0, |d| d as usize);
        let has_dim = dim.is_some();
        let vec = proptest::option::weighted(0.9, proptest::collection::vec(-1e6f32..1e6f32, d..=d))
            .prop_map(move |v| v.filter(|_| has_dim));
        let attrs = proptest::collection::btree_map(".{0,8}", arb_value(), 0..4);
        proptest::collection::vec((vec, attrs), n..=n).prop_map(move |rows| {
            let docs = ids
                .iter()
                .zip(rows)
                .map(|(id, (vector, attrs))| Document {
                    id: id.clone(),
                    vector: vector.map(Into::into),
                    attrs: attrs.into_iter().collect(),
                })
                .collect();
            (dim, docs)
        })
    })
}

proptest! {
    #[test]
    fn any_segment_round_trips((dim, docs) in arb_docs(), probes in proptest::collection::vec(any::<u64>(), 0..8)) {
        let id_type = docs.first().map_or(IdType::U64, |d| d.id.id_type());
        let bytes = build(id_type, dim, &docs);
        let seg = open(&bytes).unwrap();
        check_all(&seg, &docs);
        prop_assert_eq!(rebuild(&seg), bytes);
        prop_assert_eq!(seg.vector_dim(), dim);
        let ids: Vec<DocId> = docs.iter().map(|d| d.id.clone()).collect();
        for p in probes {
            let probe = match id_type {
                IdType::U64 => DocId::U64(p),
                IdType::Uuid => DocId::Uuid(uuid::Uuid::from_u128(u128::from(p) << 64)),
                IdType::String => DocId::Str(format!("{p}")),
            };
            prop_assert_eq!(seg.lower_bound(&probe), ids.partition_point(|i| *i < probe));
            prop_assert_eq!(seg.find(&probe), ids.binary_search(&probe).ok());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(seg) = open(&bytes) {
            for row in 0..seg.len() {
                let _ = seg.doc(row);
            }
        }
        let _ = DeletionSet::decode(&bytes);
    }

    #[test]
    fn any_deletion_set_round_trips(rows in 0usize..300, picks in proptest::collection::vec(any::<usize>(), 0..50)) {
        let mut d = DeletionSet::new(rows);
        let mut model = std::collections::BTreeSet::new();
        for p in picks {
            if rows > 0 {
                let r = p % rows;
                prop_assert_eq!(d.insert(r), model.insert(r));
            }
        }
        prop_assert_eq!(d.iter().collect::<Vec<_>>(), model.into_iter().collect::<Vec<_>>());
        prop_assert_eq!(DeletionSet::decode(&d.encode()).unwrap(), d);
    }
}

#[test]
fn a_row_that_passes_the_checksums_but_does_not_decode_fails_alone() {
    let docs: Vec<Document> =
        (0..3).map(|i| Document { id: DocId::U64(i), vector: None, attrs: AttrMap::new() }).collect();
    let bad = super::with_undecodable_row(&build(IdType::U64, None, &docs), 1);
    let seg = open(&bad).expect("every checksum holds");
    assert!(seg.doc(1).is_err(), "the damaged row is an error, never a document");
    assert_eq!(seg.doc(0).unwrap(), docs[0]);
    assert_eq!(seg.doc(2).unwrap(), docs[2]);
}

/// Builders with the same `rows` pushes (`doc(i)`): one in memory, one spooled.
fn twin_builders(
    dir: &std::path::Path,
    dim: u32,
    rows: u32,
    doc: impl Fn(u32) -> Document,
) -> (SegmentBuilder, SegmentBuilder) {
    let mut mem = SegmentBuilder::new(IdType::String, Some(dim)).with_range_checksums();
    let mut spooled = SegmentBuilder::spooled(IdType::String, Some(dim), dir).unwrap().with_range_checksums();
    for i in 0..rows {
        let d = doc(i);
        mem.push(&d).unwrap();
        spooled.push(&d).unwrap();
    }
    (mem, spooled)
}

#[test]
fn a_spooled_build_streams_the_same_bytes_as_an_in_memory_one() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 96u32;
    // Enough rows that the vectors cross several 1 MiB copy chunks and many
    // 16 KiB range-checksum chunks; some rows without a vector.
    let (mut mem, mut spooled) = twin_builders(dir.path(), dim, 4000, |i| {
        let vector = (i % 7 != 3).then(|| (0..dim).map(|j| (i * dim + j) as f32 * 0.001).collect());
        let a = if i % 5 == 0 { every_value() } else { attrs(&[("n", Value::Int(i128::from(i)))]) };
        Document { id: DocId::Str(format!("doc-{i:06}")), vector, attrs: a }
    });
    assert_eq!(mem.vectors_f32().unwrap().as_slice(), spooled.vectors_f32().unwrap().as_slice());
    assert!(
        matches!(spooled.vectors_f32().unwrap(), F32Rows::Mapped(_)),
        "spooled vectors are mapped, not copied"
    );
    for (kind, len) in [(FIRST_EXTENSION_KIND, 3usize), (FIRST_EXTENSION_KIND + 1, (1 << 20) + 77), (40, 0)] {
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        mem.add_section(kind, bytes.clone());
        spooled.add_section(kind, bytes);
    }
    let expected = mem.finish().unwrap();
    let streamed = spooled.finish_into(Vec::new()).unwrap();
    assert_eq!(streamed.len(), expected.len());
    assert!(streamed == expected, "the streamed file differs from the in-memory one");
    let seg = open(&streamed).unwrap();
    assert_eq!(seg.len(), 4000);
    assert!(seg.section(SECTION_RANGE_CHECKSUMS).is_some());
}

/// Invariant: a spooled row read by a positioned read ([`F32Rows::row`], how the index builds
/// read scattered rows) is the mapped row, for every row; past the end there is none.
#[test]
fn a_spooled_row_read_by_position_is_the_mapped_row() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 5u32;
    let (mut mem, mut spooled) = twin_builders(dir.path(), dim, 3000, |i| {
        let vector = Some((0..dim).map(|j| (i * dim + j) as f32 * 0.5 - 7.0).collect());
        Document { id: DocId::Str(format!("doc-{i:06}")), vector, attrs: AttrMap::new() }
    });
    let (owned, mapped) = (mem.vectors_f32().unwrap(), spooled.vectors_f32().unwrap());
    assert!(matches!(mapped, F32Rows::Mapped(_)));
    let (d, mut buf) = (dim as usize, Vec::new());
    for r in (0..3000).rev() {
        let want = &owned.as_slice()[r * d..(r + 1) * d];
        assert_eq!(mapped.row(r, d, &mut buf), want, "row {r}");
        assert_eq!(owned.row(r, d, &mut buf), want, "row {r}");
    }
    assert!(mapped.row(3000, d, &mut buf).is_empty());
    assert!(owned.row(3000, d, &mut buf).is_empty());
}

#[test]
fn a_spooled_build_refuses_core_kinds_like_an_in_memory_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = SegmentBuilder::spooled(IdType::U64, None, dir.path()).unwrap();
    b.add_section(SECTION_DOCS, vec![1, 2, 3]);
    assert!(matches!(b.finish_into(Vec::new()), Err(BuildError::Format(_))));
}
