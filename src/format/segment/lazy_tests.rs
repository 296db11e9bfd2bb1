//! Lazy open (`lazy.rs`): a segment with range checksums opens after reading only what open parses,
//! a byte changed in a bulk section (vectors, doc blocks, an index section) is met as rot by the
//! first read of its chunk and never by a read elsewhere, while a full open (verify) and a lazy
//! open of a segment without range checksums still refuse it; the whole-file crc32c combined
//! from the range checksums equals the file's; a large section's first check runs through the
//! segment's readahead, once, and still meets rot.

use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use super::*;
use crate::integrity::within;
use crate::model::Value;

const ROWS: u64 = 4000;
const DIM: usize = 32;
/// An opaque index section big enough to span many 16 KiB chunks (and to be read ahead).
const INDEX_LEN: usize = 300_000;

fn vector_of(i: u64) -> Vec<f32> {
    (0..DIM).map(|d| (i * 31 + d as u64) as f32).collect()
}

fn built(range_checksums: bool) -> Vec<u8> {
    let mut b = SegmentBuilder::new(IdType::U64, Some(DIM as u32));
    if range_checksums {
        b = b.with_range_checksums();
    }
    for i in 0..ROWS {
        let attrs = [("t".to_string(), Value::Str(format!("row-{i}-{}", "y".repeat((i % 40) as usize))))];
        let doc = Document {
            id: DocId::U64(i),
            vector: Some(vector_of(i).into()),
            attrs: attrs.into_iter().collect(),
        };
        b.push(&doc).unwrap();
    }
    b.add_section(SECTION_TEXT_INDEX, (0..INDEX_LEN).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    b.finish().unwrap()
}

fn range_of(bytes: &[u8], kind: u16) -> Range<usize> {
    let s = section_table(bytes).unwrap().into_iter().find(|s| s.kind == kind).unwrap();
    s.offset as usize..(s.offset + s.len) as usize
}

/// The bytes handed to `verified` by a lazy open of `bytes`, and the segment.
fn open_counting(bytes: &[u8]) -> (Result<Segment, FormatError>, usize) {
    let read = AtomicUsize::new(0);
    let seg = Segment::open_lazy(Bytes::copy_from_slice(bytes), &|b| {
        read.fetch_add(b.len(), AtomicOrdering::Relaxed);
    });
    (seg, read.into_inner())
}

fn flipped(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at] ^= 0x10;
    b
}

#[test]
fn a_lazy_open_reads_only_the_sections_it_parses() {
    let bytes = built(true);
    let (vectors, docs, index) = (
        range_of(&bytes, SECTION_VECTORS),
        range_of(&bytes, SECTION_DOC_BLOCKS),
        range_of(&bytes, SECTION_TEXT_INDEX),
    );
    let (seg, read) = open_counting(&bytes);
    let seg = seg.unwrap();
    let ids = range_of(&bytes, SECTION_IDS);
    let deferred = vectors.len() + docs.len() + index.len();
    // The ids and the doc blocks' table, in whole 16 KiB chunks, plus the kind-22 section.
    assert!(read >= ids.len(), "the ids are checked: {read}");
    assert!(read < bytes.len() - deferred + 8 * (16 << 10), "read {read} of {} bytes", bytes.len());
    let guard = seg.chunk_guard().unwrap();
    assert!(guard.settled_bytes() < bytes.len() / 4, "{} settled", guard.settled_bytes());
    // A full open reads every byte (twice: section crcs, then range checksums).
    let full = AtomicUsize::new(0);
    Segment::open_settling(Bytes::copy_from_slice(&bytes), &|b| {
        full.fetch_add(b.len(), AtomicOrdering::Relaxed);
    })
    .unwrap();
    assert!(full.into_inner() >= bytes.len() - 64, "the full open checks everything");
    // Reads settle what they touch, and answer the stored values.
    within(|| {
        assert_eq!(seg.vector(7).unwrap(), &vector_of(7)[..]);
        assert_eq!(seg.doc(3999).unwrap().id, DocId::U64(3999));
        assert_eq!(seg.section(SECTION_TEXT_INDEX).unwrap().len(), INDEX_LEN);
    })
    .unwrap();
    assert!(guard.settled_bytes() >= INDEX_LEN, "the index section settled whole on its first use");
}

#[test]
fn a_changed_vector_opens_lazily_and_fails_only_the_reads_of_its_chunk() {
    let good = built(true);
    let vectors = range_of(&good, SECTION_VECTORS);
    let victim = 3000usize;
    let bytes = flipped(&good, vectors.start + victim * DIM * 4 + 5);
    assert!(Segment::open(Bytes::copy_from_slice(&bytes)).is_err(), "a full open (verify) refuses it");
    let mut seg = open_counting(&bytes).0.expect("a lazy open does not read the vectors");
    seg = seg.with_object("ns/segments/s/data.seg");
    let far = within(|| seg.vector(10).map(<[f32]>::to_vec)).unwrap();
    assert_eq!(far.as_deref(), Some(&vector_of(10)[..]), "a row in another chunk answers");
    let rot = within(|| seg.vector(victim).map(<[f32]>::to_vec)).unwrap_err();
    assert_eq!(rot.object, "ns/segments/s/data.seg");
    let chunk = (vectors.start + victim * DIM * 4 + 5) >> RANGE_CHUNK_LOG2 << RANGE_CHUNK_LOG2;
    assert_eq!(rot.offset, chunk as u64, "the stored chunk, named by its offset");
    assert!(within(|| seg.vector(victim).is_some()).is_err(), "never settled: it fails every time");
    // A neighbour in the same stored chunk is refused too (the chunk is checked whole).
    let neighbour = (chunk + 16 - vectors.start) / (DIM * 4) + 1;
    assert!(within(|| seg.vector(neighbour).is_some()).is_err());
}

#[test]
fn changed_doc_blocks_and_index_sections_fail_their_first_read() {
    let good = built(true);
    let docs = range_of(&good, SECTION_DOC_BLOCKS);
    let bytes = flipped(&good, docs.end - 100);
    let seg = open_counting(&bytes).0.expect("the last block is not read at open");
    assert!(within(|| seg.doc(0).is_ok()).unwrap(), "the first block answers");
    assert!(within(|| seg.doc(ROWS as usize - 1)).is_err(), "the last block's read is rot");

    let index = range_of(&good, SECTION_TEXT_INDEX);
    let bytes = flipped(&good, index.start + INDEX_LEN / 2);
    let seg = open_counting(&bytes).0.expect("index sections are not read at open");
    assert!(within(|| seg.section(SECTION_TEXT_INDEX).is_none()).is_err(), "handed out only once checked");
    assert!(within(|| seg.checked_sections(SECTION_TEXT_INDEX).is_none()).is_err());
    assert!(within(|| seg.vector(1).is_some()).unwrap(), "the rest answers");
}

#[test]
fn what_open_parses_is_refused_at_open_and_old_segments_are_verified_whole() {
    let good = built(true);
    let ids = range_of(&good, SECTION_IDS);
    assert!(open_counting(&flipped(&good, ids.start + 8 * 1000)).0.is_err(), "a changed id is refused");
    let docs = range_of(&good, SECTION_DOC_BLOCKS);
    assert!(open_counting(&flipped(&good, docs.start + 9)).0.is_err(), "a changed block table is refused");

    let old = built(false);
    let vectors = range_of(&old, SECTION_VECTORS);
    let (seg, read) = open_counting(&old);
    assert!(seg.unwrap().chunk_guard().is_none());
    let sections: u64 = section_table(&old).unwrap().iter().map(|s| s.len).sum();
    assert_eq!(read as u64, sections, "without range checksums the lazy open checks every section");
    let err = open_counting(&flipped(&old, vectors.start + 77)).0.unwrap_err();
    assert!(matches!(err, FormatError::ChecksumMismatch { .. }), "{err}");
}

#[test]
fn the_file_crc_combines_from_the_range_checksums() {
    let bytes = built(true);
    assert_eq!(crc32c_from_range_checksums(&bytes), Some(crc32c::crc32c(&bytes)));
    // Combined from the stored chunk crcs: a changed covered byte does not change it (the chunk
    // fails its first read instead); a changed tail byte does.
    let vectors = range_of(&bytes, SECTION_VECTORS);
    assert_eq!(crc32c_from_range_checksums(&flipped(&bytes, vectors.start)), Some(crc32c::crc32c(&bytes)));
    let sums = range_of(&bytes, SECTION_RANGE_CHECKSUMS);
    assert_eq!(crc32c_from_range_checksums(&flipped(&bytes, sums.start + 40)), None, "its section crc");
    assert_eq!(crc32c_from_range_checksums(&built(false)), None, "no range checksums: read it whole");
    // A file whose covered length is a whole number of chunks (no short last chunk) too.
    for rows in [1u64, 17, 500] {
        let mut b = SegmentBuilder::new(IdType::U64, None).with_range_checksums();
        for i in 0..rows {
            b.push(&Document { id: DocId::U64(i), vector: None, attrs: AttrMap::new() }).unwrap();
        }
        let bytes = b.finish().unwrap();
        assert_eq!(crc32c_from_range_checksums(&bytes), Some(crc32c::crc32c(&bytes)), "{rows} rows");
    }
}

/// Bytes handed to [`counting_readahead`] (only the test below installs it).
static READ_AHEAD: AtomicUsize = AtomicUsize::new(0);

fn counting_readahead(bytes: &[u8], check: &mut dyn FnMut()) {
    READ_AHEAD.fetch_add(bytes.len(), AtomicOrdering::Relaxed);
    check();
}

fn skipping_readahead(_: &[u8], _: &mut dyn FnMut()) {}

#[test]
fn a_large_section_is_checked_once_through_the_readahead_and_rot_is_still_met() {
    let good = built(true);
    let seg = open_counting(&good).0.unwrap().with_section_readahead(counting_readahead);
    assert!(seg.vector(1).is_some() && seg.doc(0).is_ok());
    assert_eq!(READ_AHEAD.load(AtomicOrdering::Relaxed), 0, "chunk reads are not read ahead");
    assert!(seg.section(SECTION_TEXT_INDEX).is_some());
    assert!(seg.section(SECTION_TEXT_INDEX).is_some());
    assert_eq!(READ_AHEAD.load(AtomicOrdering::Relaxed), INDEX_LEN, "the section, once");

    let index = range_of(&good, SECTION_TEXT_INDEX);
    let bytes = flipped(&good, index.start + INDEX_LEN / 3);
    let seg = open_counting(&bytes).0.unwrap().with_section_readahead(counting_readahead);
    assert!(within(|| seg.section(SECTION_TEXT_INDEX).is_none()).is_err(), "rot met through the readahead");
    // A readahead that never runs the check hands nothing out.
    let seg = open_counting(&good).0.unwrap().with_section_readahead(skipping_readahead);
    assert!(seg.section(SECTION_TEXT_INDEX).is_none());
}
