//! Segment bytes by section kind (issue 36 item 4): where a data dir's segment bytes go.
//!
//! Reads every `*.seg` file under the given paths (a data dir, a segments directory, or files)
//! with the segment reader (`Segment::open`, so each file is verified whole) and sums, over the
//! segments with at least `--min-rows` rows, the bytes of each section kind — split by the
//! section's own version (extension sections start with a magic and a u32 version) and, for the
//! graph (kind 20), its code kind and bits — plus the file's own structure (header, section
//! table, the 64-byte alignment gaps). Prints one line per segment and a table of bytes a row
//! per part, and the total against the raw f32 vector bytes (`4 × dim` a row).
//!
//! `--attr-timing`: for each attribute index section (kind 19) of int values, rebuilds its
//! column from `Eq` lookups of the ints `0..--attr-values` (default 100: the scale benchmark's
//! `cat`), and times, in one process on that column, the version-1 and version-2 sections:
//! `open_trusted` (the check when a segment's table is built), `reopen` (what a query does per
//! filter and segment) and the `Eq` lookups of every value (ns a returned row). Best of 5
//! rounds of at least 100 ms.
//!
//! `--graph-timing VECTORS_F32`: for each graph section version 5 (RaBitQ records at their
//! tight length), builds its version-4 twin (the same section with each record padded to 16
//! bytes again, restamped and resealed: the layout builds wrote before) and searches both over
//! the segment's own vectors with the first 200 rows of the f32 file as queries (e.g. the Debian
//! dev queries the scale benchmark asks, `queries/query_vectors.f32`) at ef 48, rerank 48, k 10: checks that both
//! answer alike and prints the best of 5 alternating rounds, µs a query.
//!
//! Run: `cargo run --profile profiling --example seg_bytes -- DATA_DIR [--min-rows N] [--attr-timing] [--graph-timing F32_FILE]`
//! Invariants: the files are only read; a file that does not open is reported and skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tidepool::format::segment::Segment;
use tidepool::index::attr::{self, AttrIndex};
use tidepool::model::Value;

/// Section kinds by name (storage-format.md 8.3).
fn kind_name(kind: u16) -> &'static str {
    match kind {
        1 => "ids",
        2 => "docs (raw)",
        3 => "vectors",
        4 => "vector_absent",
        5 => "doc blocks",
        16 => "IVF",
        17 => "full-text",
        18 => "sparse",
        19 => "attribute index",
        20 => "graph",
        21 => "cold IVF lists",
        22 => "range checksums",
        23 => "named vector",
        24 => "named cold IVF",
        30 => "MUVERA",
        _ => "other",
    }
}

/// What distinguishes sections of one kind: the version of an extension section (its bytes
/// 8..12, after the magic), and the code kind and bits of a graph (bytes 17 and 18).
fn label(kind: u16, bytes: &[u8]) -> String {
    let name = kind_name(kind);
    if kind < 16 || bytes.len() < 20 {
        return format!("{kind:>2} {name}");
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if kind == 20 && version >= 3 {
        let code = if bytes[17] == 0 { "sq8".to_string() } else { format!("rabitq{}", bytes[18]) };
        return format!("{kind:>2} {name} v{version} {code}");
    }
    format!("{kind:>2} {name} v{version}")
}

fn seg_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let Ok(dir) = std::fs::read_dir(path) else { return };
        let mut entries: Vec<PathBuf> = dir.filter_map(|e| Some(e.ok()?.path())).collect();
        entries.sort();
        entries.iter().for_each(|p| seg_files(p, out));
    } else if path.extension().is_some_and(|e| e == "seg") {
        out.push(path.to_path_buf());
    }
}

struct Args {
    paths: Vec<PathBuf>,
    min_rows: usize,
    attr_timing: bool,
    attr_values: i128,
    /// Queries for `--graph-timing` (f32 LE rows of the segments' dimension).
    graph_queries: Option<Vec<f32>>,
}

fn read_f32(path: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn parse_args() -> Args {
    let mut a =
        Args { paths: Vec::new(), min_rows: 0, attr_timing: false, attr_values: 100, graph_queries: None };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = |what: &str| {
            it.next().and_then(|v| v.parse::<usize>().ok()).unwrap_or_else(|| panic!("{what} N"))
        };
        match arg.as_str() {
            "--min-rows" => a.min_rows = num("--min-rows"),
            "--attr-values" => a.attr_values = num("--attr-values") as i128,
            "--attr-timing" => a.attr_timing = true,
            "--graph-timing" => {
                a.graph_queries = Some(read_f32(&it.next().expect("--graph-timing F32_FILE")))
            }
            _ => a.paths.push(PathBuf::from(arg)),
        }
    }
    assert!(!a.paths.is_empty(), "usage: seg_bytes PATH... [--min-rows N] [--attr-timing] [--attr-values N]");
    a
}

#[derive(Default)]
struct Totals {
    rows: u64,
    files: u64,
    file_bytes: u64,
    raw_bytes: u64,
    parts: BTreeMap<String, (u64, u64)>,
}

impl Totals {
    fn add(&mut self, part: String, bytes: u64) {
        let e = self.parts.entry(part).or_default();
        e.0 += bytes;
        e.1 += 1;
    }

    fn print(&self) {
        let per_row = |b: u64| b as f64 / self.rows.max(1) as f64;
        println!("\n{} segments, {} rows, {} bytes", self.files, self.rows, self.file_bytes);
        println!("{:<34} {:>14} {:>9} {:>12} {:>8}", "part", "bytes", "sections", "bytes a row", "x raw");
        for (part, (bytes, n)) in &self.parts {
            let raw = *bytes as f64 / self.raw_bytes.max(1) as f64;
            println!("{part:<34} {bytes:>14} {n:>9} {:>12.2} {raw:>8.4}", per_row(*bytes));
        }
        let total = self.file_bytes as f64 / self.raw_bytes.max(1) as f64;
        println!(
            "{:<34} {:>14} {:>9} {:>12.2} {total:>8.4}",
            "total",
            self.file_bytes,
            "",
            per_row(self.file_bytes)
        );
    }
}

fn main() {
    let args = parse_args();
    let mut files = Vec::new();
    args.paths.iter().for_each(|p| seg_files(p, &mut files));
    let mut t = Totals::default();
    for path in &files {
        let seg = match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|b| Segment::open(bytes::Bytes::from(b)).map_err(|e| e.to_string()))
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                continue;
            }
        };
        let (rows, len) = (seg.len() as u64, seg.byte_len() as u64);
        let dim = u64::from(seg.vector_dim().unwrap_or(0));
        println!("{} rows {rows} bytes {len} ({:.1} a row)", path.display(), len as f64 / rows.max(1) as f64);
        if (rows as usize) < args.min_rows {
            continue;
        }
        let whole = seg.bytes();
        let mut in_sections = 0;
        for info in seg.section_infos() {
            let bytes = &whole[info.offset as usize..(info.offset + info.len) as usize];
            t.add(label(info.kind, bytes), info.len);
            in_sections += info.len;
            if args.attr_timing && info.kind == 19 {
                attr_timing(bytes, args.attr_values);
            }
            if let (Some(queries), 20) = (&args.graph_queries, info.kind) {
                graph_timing(&seg, bytes, queries);
            }
        }
        t.add("   header, table, alignment".into(), len - in_sections);
        (t.rows, t.files, t.file_bytes, t.raw_bytes) =
            (t.rows + rows, t.files + 1, t.file_bytes + len, t.raw_bytes + rows * dim * 4);
    }
    t.print();
}

/// The best time of 5 rounds of `f` repeated for at least 100 ms, per call.
fn best_per_call(mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut out = 0;
    for _ in 0..5 {
        let (start, mut calls) = (Instant::now(), 0u32);
        while start.elapsed() < Duration::from_millis(100) {
            out = std::hint::black_box(f());
            calls += 1;
        }
        best = best.min(start.elapsed() / calls);
    }
    (best, out)
}

/// Times one int attribute section's column as version 1 and version 2 (see the module doc).
fn attr_timing(section: &[u8], values: i128) {
    let Ok(ix) = AttrIndex::open_trusted(section) else { return };
    let key = |v: i128| attr::key_of(&Value::Int(v)).expect("an int key");
    let column: Vec<(u32, Value)> = (0..values)
        .flat_map(|v| {
            ix.range(Some((&key(v), true)), Some((&key(v), true)))
                .into_iter()
                .map(move |r| (r, Value::Int(v)))
        })
        .collect();
    if ix.kind() != 1 || column.len() != ix.entries() {
        println!("  attr {}: not an int column within 0..{values}, not timed", ix.attr());
        return;
    }
    let rows = u32::from_le_bytes([section[24], section[25], section[26], section[27]]) as usize;
    let keys: Vec<Vec<u8>> = (0..values).map(key).collect();
    for version in [1, 2] {
        let values_of = column.iter().map(|(r, v)| (*r, v));
        let bytes = if version == 1 {
            attr::build_v1(ix.attr(), rows, values_of)
        } else {
            attr::build(ix.attr(), rows, values_of)
        }
        .expect("a section");
        let (check, _) = best_per_call(|| AttrIndex::open_trusted(&bytes).map_or(0, |i| i.entries()));
        let (reopen, _) = best_per_call(|| AttrIndex::reopen(&bytes).map_or(0, |i| i.entries()));
        let opened = AttrIndex::reopen(&bytes).expect("opens");
        let (eq, found) =
            best_per_call(|| keys.iter().map(|k| opened.range(Some((k, true)), Some((k, true))).len()).sum());
        println!(
            "  attr {} v{}: {} bytes ({:.2} a row), open_trusted {:.1} µs, reopen {:.2} µs, Eq of {values} values {:.1} µs ({:.2} ns a row, {found} rows)",
            opened.attr(),
            opened.version(),
            bytes.len(),
            bytes.len() as f64 / rows.max(1) as f64,
            check.as_secs_f64() * 1e6,
            reopen.as_secs_f64() * 1e6,
            eq.as_secs_f64() * 1e6,
            eq.as_secs_f64() * 1e9 / found.max(1) as f64,
        );
    }
}

/// The version-4 twin of a version-5 graph section: each record padded to 16 bytes again, the
/// version and record length restamped, the crc resealed (storage-format 11.5). None for a
/// section of another version.
fn padded_twin(v5: &[u8]) -> Option<Vec<u8>> {
    let le = |at: usize| Some(u32::from_le_bytes(v5.get(at..at + 4)?.try_into().ok()?) as usize);
    if le(8)? != 5 {
        return None;
    }
    let (bits, rows, stride, record) = (usize::from(*v5.get(18)?), le(24)?, le(32)?, le(52)?);
    let padded = (bits * stride / 8 + 12).div_ceil(16) * 16;
    let codes = v5.len().checked_sub(rows.checked_mul(record)?)?;
    let mut out = v5[..codes].to_vec();
    out[8..12].copy_from_slice(&4u32.to_le_bytes());
    out[52..56].copy_from_slice(&(padded as u32).to_le_bytes());
    for rec in v5[codes..].chunks_exact(record) {
        out.extend_from_slice(rec);
        out.resize(out.len() + padded - record, 0);
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[..56]), &out[64..]);
    out[56..60].copy_from_slice(&crc.to_le_bytes());
    Some(out)
}

/// Times a version-5 graph section against its version-4 twin (see the module doc).
fn graph_timing(seg: &Segment, section: &[u8], queries: &[f32]) {
    use tidepool::index::vector::graph::{GraphIndex, GraphSearchParams};
    let (Some(vectors), Some(twin)) = (seg.vectors(), padded_twin(section)) else { return };
    let opened = (
        GraphIndex::open(bytes::Bytes::copy_from_slice(section)),
        GraphIndex::open(bytes::Bytes::from(twin)),
    );
    let (Ok(tight), Ok(wide)) = opened else {
        println!("  graph: the version-4 twin does not open");
        return;
    };
    let p = GraphSearchParams { ef: 48, rerank: 48 };
    let qs: Vec<&[f32]> = queries.chunks_exact(tight.dim()).take(200).collect();
    let alike =
        qs.iter().all(|q| tight.search(vectors, q, 10, None, &p) == wide.search(vectors, q, 10, None, &p));
    let mut best = [Duration::MAX; 2];
    for _ in 0..5 {
        for (i, g) in [&tight, &wide].into_iter().enumerate() {
            let start = Instant::now();
            qs.iter().for_each(|q| {
                std::hint::black_box(g.search(vectors, q, 10, None, &p));
            });
            best[i] = best[i].min(start.elapsed() / qs.len().max(1) as u32);
        }
    }
    println!(
        "  graph v5 ({} rows): {:.1} µs a query, v4 twin {:.1} µs ({:.3}×), {} queries answered alike: {alike}",
        tight.rows(),
        best[0].as_secs_f64() * 1e6,
        best[1].as_secs_f64() * 1e6,
        best[0].as_secs_f64() / best[1].as_secs_f64(),
        qs.len(),
    );
}
