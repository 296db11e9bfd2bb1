//! Format compatibility of segment version 2, the compressed document store (core kind 5, doc
//! blocks, `storage-format.md` 8.5.1): `tests/fixtures/v14/segment_blocks.seg` was written once
//! by `write_v14_fixtures` and is never regenerated. It must open and read back the content built
//! here, by the segment's readers and by ranged reads of its blocks (the cold path), and the
//! encoder must write exactly its bytes (the encoding is deterministic).
//!
//! Also guarded: every earlier segment fixture (version 1, raw docs: `v1/segment.seg`,
//! `v2/segment_cold.seg`, `v2/segment_ranges.seg`, `v11/segment_dense.seg`,
//! `v12/segment_multi.seg`) still opens and reads every row in the same build that writes
//! version 2; and the doc blocks' layout is pinned field by field on a two-row segment.
//!
//! To write missing fixtures (existing files are never overwritten):
//! `TIDEPOOL_WRITE_FIXTURES=1 cargo test --test suite -- --ignored format_compat_docblocks::write_v14_fixtures`

use std::path::PathBuf;

use bytes::Bytes;
use tidepool::format::segment::{
    section_table, DocBlockTable, RangeChecksums, Segment, SegmentBuilder, CODEC_LZ4, CODEC_STORED,
    SECTION_DOCS, SECTION_DOC_BLOCKS, SECTION_RANGE_CHECKSUMS, SECTION_TEXT_INDEX, SEGMENT_FORMAT_VERSION,
};
use tidepool::model::{AttrMap, DocId, Document, IdType, Value};

fn fixture_path(dir: &str, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir).join(name)
}

fn read_fixture(dir: &str, name: &str) -> Vec<u8> {
    let path = fixture_path(dir, name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {} is missing: {e}", path.display()))
}

fn attrs(pairs: Vec<(&str, Value)>) -> AttrMap {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// 400 rows over several blocks: text rows, every value kind, empty rows, and one
/// incompressible row (a block stored as is).
fn v14_docs() -> Vec<Document> {
    let mut x = 0x1234_5678_9abc_def1u64;
    let noise: String = (0..40_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'0' + (x % 75) as u8)
        })
        .collect();
    (0..400u64)
        .map(|i| {
            let a = match i % 10 {
                0 => AttrMap::new(),
                1 => attrs(vec![
                    ("arr", Value::Array(vec![Value::Int(1), Value::Str("x".into()), Value::Bool(false)])),
                    ("b", Value::Bool(true)),
                    ("emb", Value::Dense(vec![i as f32, -0.5, 2.0].into())),
                    ("f", Value::Float(-2.5e-300)),
                    ("m", Value::Multi(vec![vec![1.0, 2.0], vec![-1.0, i as f32]])),
                    ("n", Value::Null),
                    ("sp", Value::Sparse(vec![("k1".into(), 0.25), ("k2".into(), -1.0)])),
                    ("u", Value::Int(i128::from(u64::MAX))),
                ]),
                // A long compressible row closes a block; the noise after it fills one alone.
                _ if i == 204 => attrs(vec![("long", Value::Str("y".repeat(20_000)))]),
                _ if i == 205 => attrs(vec![("noise", Value::Str(noise.clone()))]),
                _ => attrs(vec![
                    (
                        "body",
                        Value::Str(
                            format!("Debian package {i}: a library for the {} tools", i % 17).repeat(4),
                        ),
                    ),
                    ("section", Value::Str(["libs", "games", "net"][(i % 3) as usize].into())),
                    ("size", Value::Int(i128::from(i * 37))),
                ]),
            };
            Document { id: DocId::U64(i * 2 + 1), vector: Some(vec![i as f32, 1.0].into()), attrs: a }
        })
        .collect()
}

fn v14_segment() -> Vec<u8> {
    let mut b = SegmentBuilder::new(IdType::U64, Some(2)).with_range_checksums();
    for d in v14_docs() {
        b.push(&d).unwrap();
    }
    b.add_section(SECTION_TEXT_INDEX, b"a text index");
    b.finish().unwrap()
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn v14_segment_fixture_reads_back() {
    let bytes = read_fixture("v14", "segment_blocks.seg");
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 2, "segment version 2");
    let seg = Segment::open(Bytes::from(bytes)).unwrap();
    let docs = v14_docs();
    assert!(seg.section(SECTION_DOCS).is_none());
    let blocks = seg.section(SECTION_DOC_BLOCKS).unwrap();
    let count = le_u32(blocks, 0) as usize;
    assert!(count >= 3, "{count} blocks");
    let codecs: Vec<u8> = (0..count).map(|i| blocks[8 + 32 * i + 24]).collect();
    assert!(codecs.contains(&CODEC_LZ4) && codecs.contains(&CODEC_STORED), "{codecs:?}");
    for row in (0..docs.len()).rev().chain(0..docs.len()) {
        assert_eq!(seg.doc(row).unwrap(), docs[row]);
    }
    assert_eq!(seg.dense_attr(1, "emb").unwrap(), Some(vec![1.0, -0.5, 2.0]));
    assert_eq!(seg.multi_attr(11, "m").unwrap(), Some(vec![vec![1.0, 2.0], vec![-1.0, 11.0]]));
}

/// The encoder writes exactly the fixture's bytes while version 2 is current.
#[test]
fn current_encoder_reproduces_the_v14_fixture() {
    assert_eq!(v14_segment(), read_fixture("v14", "segment_blocks.seg"));
}

/// Ranged reads as the cold path does them (11.4): the block table by its recorded head, then
/// the block holding a row, each verified by the range checksums.
#[test]
fn v14_segment_rows_read_by_range() {
    let bytes = read_fixture("v14", "segment_blocks.seg");
    let table = section_table(&bytes).unwrap();
    let at = |kind| table.iter().find(|s| s.kind == kind).unwrap().clone();
    let (docs_sec, sums_sec) = (at(SECTION_DOC_BLOCKS), at(SECTION_RANGE_CHECKSUMS));
    let sums =
        RangeChecksums::decode(&bytes[sums_sec.offset as usize..(sums_sec.offset + sums_sec.len) as usize])
            .unwrap();
    let read = |r: std::ops::Range<u64>| {
        let w = sums.widen(r.clone()).unwrap();
        sums.verify(w.start, &bytes[w.start as usize..w.end as usize]).unwrap();
        bytes[r.start as usize..r.end as usize].to_vec()
    };
    let head_len = DocBlockTable::head_len(&read(docs_sec.offset..docs_sec.offset + 8)).unwrap();
    let head = read(docs_sec.offset..docs_sec.offset + head_len);
    let docs = v14_docs();
    let t = DocBlockTable::parse(&head, docs.len(), docs_sec.len).unwrap();
    for row in [0, 1, 205, 204, 206, 399] {
        let (block, r) = t.locate(row).unwrap();
        let stored = read(docs_sec.offset + r.start..docs_sec.offset + r.end);
        assert_eq!(t.row_attributes(block, &stored, row).unwrap(), docs[row].attrs);
        let mut bad = stored.clone();
        bad[stored.len() / 2] ^= 0x20;
        assert!(t.row_attributes(block, &bad, row).is_err(), "row {row}: a damaged block is refused");
    }
    assert!(t.locate(docs.len()).is_none());
    assert!(DocBlockTable::parse(&head[..head.len() - 1], docs.len(), docs_sec.len).is_err());
}

/// Every segment fixture of version 1 (raw docs) reads every row beside version 2.
#[test]
fn version_1_segment_fixtures_still_read_every_row() {
    for (dir, name) in [
        ("v1", "segment.seg"),
        ("v2", "segment_cold.seg"),
        ("v2", "segment_ranges.seg"),
        ("v11", "segment_dense.seg"),
        ("v12", "segment_multi.seg"),
    ] {
        let bytes = read_fixture(dir, name);
        assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 1, "{dir}/{name}");
        let seg = Segment::open(Bytes::from(bytes)).unwrap_or_else(|e| panic!("{dir}/{name}: {e}"));
        assert!(seg.section(SECTION_DOCS).is_some() && seg.section(SECTION_DOC_BLOCKS).is_none());
        for row in 0..seg.len() {
            let doc = seg.doc(row).unwrap_or_else(|e| panic!("{dir}/{name} row {row}: {e}"));
            assert!(seg.attrs_without_dense(row).unwrap().len() <= doc.attrs.len());
        }
    }
}

/// The doc blocks' layout, field by field (8.5.1): two rows, one block.
#[test]
fn doc_blocks_layout_is_pinned() {
    let mut b = SegmentBuilder::new(IdType::U64, None);
    let a = attrs(vec![("a", Value::Int(1))]);
    b.push(&Document { id: DocId::U64(1), vector: None, attrs: a }).unwrap();
    b.push(&Document { id: DocId::U64(2), vector: None, attrs: AttrMap::new() }).unwrap();
    let bytes = b.finish().unwrap();
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), SEGMENT_FORMAT_VERSION);
    let kinds: Vec<u16> = section_table(&bytes).unwrap().iter().map(|s| s.kind).collect();
    assert_eq!(kinds, vec![1, 5]);
    let seg = Segment::open(Bytes::from(bytes)).unwrap();
    let sec = seg.section(SECTION_DOC_BLOCKS).unwrap();
    assert_eq!((le_u32(sec, 0), le_u32(sec, 4)), (1, 0), "block count, reserved");
    assert_eq!(le_u64(sec, 8), 0, "block 0 at offset 0");
    assert_eq!(le_u32(sec, 16), 0, "first row 0");
    let (stored, raw) = (le_u32(sec, 20) as usize, le_u32(sec, 24) as usize);
    assert_eq!(&sec[33..40], &[0; 7]);
    assert_eq!(sec.len(), 8 + 32 + stored);
    let block = match sec[32] {
        CODEC_STORED => sec[40..].to_vec(),
        CODEC_LZ4 => lz4_flex::block::decompress(&sec[40..], raw).unwrap(),
        c => panic!("codec {c}"),
    };
    assert_eq!(block.len(), raw);
    let block = &block[..];
    assert_eq!(le_u32(sec, 28), crc32c::crc32c(block), "crc32c of the raw block");
    let (o0, o1, o2) = (le_u32(block, 0), le_u32(block, 4), le_u32(block, 8));
    assert_eq!((o0, o2 - o1), (0, 4), "row offsets; the empty map is 4 bytes");
    assert_eq!(raw, 12 + o2 as usize);
    assert_eq!(&block[12 + o1 as usize..], &[0, 0, 0, 0]);
    assert_eq!(&block[12..16], &1u32.to_le_bytes(), "row 0: one attribute");
}

#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v14_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    let dir = fixture_path("v14", "");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("segment_blocks.seg");
    if path.exists() {
        eprintln!("keeping existing {}", path.display());
        return;
    }
    std::fs::write(&path, v14_segment()).unwrap();
    eprintln!("wrote {}", path.display());
}
