//! The scale benchmark's data (`scale_bench.rs` module header: the generator, why noise 0.6):
//! rows regenerated alone from (seed, row), the exact top 10 of every query folded in batch by batch,
//! and the write requests encoded once into a spool file before the daemon starts.

use super::*;

// ---------------------------------------------------------------- generator

/// SplitMix64: a tiny, well-mixed PRNG; one stream per row.
pub(super) struct SplitMix(pub(super) u64);

impl SplitMix {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    pub(super) fn unit(&mut self) -> f64 {
        ((self.next() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The deterministic row generator (see the module header).
pub(super) struct Generator {
    pub(super) base: Vec<f32>,
    pub(super) base_rows: usize,
    pub(super) sigma: f64,
    pub(super) seed: u64,
}

impl Generator {
    pub(super) fn new(corpus: &Path, noise: f64, seed: u64) -> Generator {
        let base = read_f32(&corpus.join("vectors.f32"));
        assert!(base.len().is_multiple_of(DIM) && !base.is_empty(), "vectors.f32 is not N x {DIM}");
        Generator { base_rows: base.len() / DIM, base, sigma: noise / (DIM as f64).sqrt(), seed }
    }

    pub(super) fn base_of(&self, i: u64) -> usize {
        (i % self.base_rows as u64) as usize
    }

    pub(super) fn base_row(&self, b: usize) -> &[f32] {
        &self.base[b * DIM..(b + 1) * DIM]
    }

    /// Row `i` into `out` (length DIM), unit length.
    pub(super) fn row(&self, i: u64, out: &mut [f32]) {
        let mut rng = SplitMix(self.seed ^ (i.wrapping_add(1)).wrapping_mul(0xD1B5_4A32_D192_ED03));
        let base = self.base_row(self.base_of(i));
        for (pair, b) in out.chunks_exact_mut(2).zip(base.chunks_exact(2)) {
            // Box–Muller: two independent standard normals per two uniforms.
            let r = (-2.0 * rng.unit().ln()).sqrt();
            let theta = std::f64::consts::TAU * rng.unit();
            pair[0] = (b[0] as f64 + self.sigma * r * theta.cos()) as f32;
            pair[1] = (b[1] as f64 + self.sigma * r * theta.sin()) as f32;
        }
        normalize(out);
    }
}

pub(super) fn normalize(v: &mut [f32]) {
    let n = dot(v, v).sqrt();
    v.iter_mut().for_each(|x| *x /= n);
}

/// f32 dot product with 8 independent accumulators (vectorizes).
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    let tail: f32 =
        a.chunks_exact(8).remainder().iter().zip(b.chunks_exact(8).remainder()).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

pub(super) fn read_f32(path: &Path) -> Vec<f32> {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

// ---------------------------------------------------------------- exact ground truth

/// The best K (cosine, id) of one query, best first.
#[derive(Clone)]
pub(super) struct TopK(pub(super) Vec<(f32, u64)>);

impl TopK {
    pub(super) fn new() -> TopK {
        TopK(Vec::with_capacity(K + 1))
    }

    pub(super) fn offer(&mut self, score: f32, id: u64) {
        if self.0.len() == K && score <= self.0[K - 1].0 {
            return;
        }
        let at = self.0.partition_point(|&(s, _)| s >= score);
        self.0.insert(at, (score, id));
        self.0.truncate(K);
    }

    pub(super) fn merge(&mut self, other: &TopK) {
        for &(s, id) in &other.0 {
            self.offer(s, id);
        }
    }
}

// ---------------------------------------------------------------- prepare: rows → GT + spool

/// One encoded write request in the spool file.
pub(super) struct Spooled {
    pub(super) offset: u64,
    pub(super) len: usize,
    pub(super) rows: usize,
}

/// Rows `[start, start + n)`: their exact-top-K contribution and the request body.
pub(super) fn prepare_batch(
    g: &Generator,
    queries: &[f32],
    start: u64,
    n: usize,
    top: &mut [TopK],
) -> Vec<u8> {
    let mut rows = vec![0f32; n * DIM];
    for (r, out) in rows.chunks_exact_mut(DIM).enumerate() {
        g.row(start + r as u64, out);
    }
    for (r, row) in rows.chunks_exact(DIM).enumerate() {
        for (q, t) in queries.chunks_exact(DIM).zip(top.iter_mut()) {
            t.offer(dot(row, q), start + r as u64);
        }
    }
    encode_body(start, &rows)
}

/// `{"upsert_columns": {"id": [...], "vector": ["<base64 f32 LE>", ...], "cat": [...]}, ...}`.
pub(super) fn encode_body(start: u64, rows: &[f32]) -> Vec<u8> {
    let n = rows.len() / DIM;
    let ids: Vec<u64> = (start..start + n as u64).collect();
    let mut out = Vec::with_capacity(n * (DIM * 4 * 4 / 3 + 40) + 256);
    out.extend_from_slice(b"{\"upsert_columns\":{\"id\":");
    serde_json::to_writer(&mut out, &ids).unwrap();
    out.extend_from_slice(b",\"vector\":[");
    let mut bytes = Vec::with_capacity(DIM * 4);
    for (r, row) in rows.chunks_exact(DIM).enumerate() {
        bytes.clear();
        row.iter().for_each(|x| bytes.extend_from_slice(&x.to_le_bytes()));
        if r > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(&bytes).as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b"],\"cat\":");
    serde_json::to_writer(&mut out, &ids.iter().map(|i| i % 100).collect::<Vec<_>>()).unwrap();
    out.extend_from_slice(b"},\"distance_metric\":\"cosine_distance\"}");
    out
}

/// Generates every batch on 2 threads (two batches per round, written in order), returns the
/// spool index and each query's exact top K.
pub(super) fn prepare(
    args: &Args,
    g: &Generator,
    queries: &[f32],
    spool: &mut File,
) -> (Vec<Spooled>, Vec<TopK>) {
    let nq = queries.len() / DIM;
    let batches: Vec<(u64, usize)> =
        (0..args.rows).step_by(args.batch).map(|s| (s as u64, args.batch.min(args.rows - s))).collect();
    let mut tops = [vec![TopK::new(); nq], vec![TopK::new(); nq]];
    let mut index = Vec::with_capacity(batches.len());
    let mut offset = 0u64;
    let started = Instant::now();
    for (round, pair) in batches.chunks(2).enumerate() {
        let bodies: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = pair
                .iter()
                .zip(tops.iter_mut())
                .map(|(&(start, n), top)| s.spawn(move || prepare_batch(g, queries, start, n, top)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (body, &(_, n)) in bodies.iter().zip(pair) {
            spool.write_all(body).unwrap();
            index.push(Spooled { offset, len: body.len(), rows: n });
            offset += body.len() as u64;
        }
        if round % 20 == 19 {
            eprintln!(
                "prepare: {} / {} rows ({:.0} s)",
                index.iter().map(|s| s.rows).sum::<usize>(),
                args.rows,
                started.elapsed().as_secs_f64()
            );
        }
    }
    spool.flush().unwrap();
    let [mut a, b] = tops;
    a.iter_mut().zip(&b).for_each(|(x, y)| x.merge(y));
    (index, a)
}

/// Figures about the generated data (why the noise level is what it is).
pub(super) fn data_stats(g: &Generator, gt: &[TopK]) -> Json {
    // Real nearest-neighbour cosine among the Debian vectors, on a sample of 500.
    let sample: Vec<usize> = (0..500).map(|k| k * g.base_rows / 500).collect();
    let mut nn: Vec<f32> = std::thread::scope(|s| {
        let halves: Vec<_> = sample
            .chunks(sample.len().div_ceil(2))
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|&a| {
                            (0..g.base_rows)
                                .filter(|&b| b != a)
                                .map(|b| dot(g.base_row(a), g.base_row(b)))
                                .fold(f32::MIN, f32::max)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    nn.sort_by(f32::total_cmp);
    // Two noisy copies of one base, and a copy against its base.
    let (mut sib, mut to_base) = (0f64, 0f64);
    let (mut a, mut b) = (vec![0f32; DIM], vec![0f32; DIM]);
    let pairs = 1000u64;
    for k in 0..pairs {
        g.row(k, &mut a);
        g.row(k + g.base_rows as u64, &mut b);
        sib += dot(&a, &b) as f64;
        to_base += dot(&a, g.base_row(g.base_of(k))) as f64;
    }
    let distinct: f64 = gt
        .iter()
        .map(|t| t.0.iter().map(|&(_, id)| g.base_of(id)).collect::<HashSet<_>>().len() as f64)
        .sum::<f64>()
        / gt.len() as f64;
    json!({
        "generator": "row i = normalize(debian[i % 36000] + sigma * N(0, I)), SplitMix64 + Box-Muller seeded by (seed, i)",
        "noise_norm_ratio": g.sigma * (DIM as f64).sqrt(),
        "sigma": g.sigma,
        "debian_nn_cos_median": nn[nn.len() / 2],
        "debian_nn_cos_p10": nn[nn.len() / 10],
        "sibling_cos_mean": sib / pairs as f64,
        "copy_to_base_cos_mean": to_base / pairs as f64,
        "gt_distinct_bases_mean": distinct,
    })
}
