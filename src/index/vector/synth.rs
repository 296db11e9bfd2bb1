//! Deterministic synthetic vector sets for the recall tests and the robustness benchmark
//! (`bench/ann_robust.sh`): the distributions a user may bring without knowing it.
//!
//! Invariant: the same (kind, rows, dim, seed) gives the same vectors (splitmix64 stream,
//! Box–Muller normals computed in f64).

/// A distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Gaussian mixture: 64 centres N(0, 1), points centre + N(0, 0.35²).
    Clustered,
    /// i.i.d. N(0, 1) components (no structure at all).
    Gaussian,
    /// A narrow cone: one shared direction (N(0, 1) components) plus N(0, 0.08²) noise.
    Cone,
    /// Non-negative histogram-like counts (SIFT-like): rounded, clipped at 0, mostly small.
    Histogram,
    /// Uniform in the unit cube (meant for low dimensions).
    Uniform,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 5] = [Kind::Clustered, Kind::Gaussian, Kind::Cone, Kind::Histogram, Kind::Uniform];

    /// Short name (benchmark tables, file names).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Clustered => "clustered",
            Kind::Gaussian => "gaussian",
            Kind::Cone => "cone",
            Kind::Histogram => "histogram",
            Kind::Uniform => "uniform",
        }
    }
}

/// A splitmix64 stream with uniform and normal draws.
pub struct Rng(u64);

impl Rng {
    /// A stream from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// `rows` × `dim` vectors of `kind` (row order).
pub fn generate(kind: Kind, rows: usize, dim: usize, seed: u64) -> Vec<f32> {
    // The shared structure (centres, cone axis) comes from a fixed stream so that queries
    // generated with another seed come from the same distribution.
    let mut shared = Rng::new(0x005E_ED0F_5EED);
    let mut r = Rng::new(seed);
    let mut out = Vec::with_capacity(rows * dim);
    match kind {
        Kind::Clustered => {
            let centres: Vec<f64> = (0..64 * dim).map(|_| shared.normal()).collect();
            for _ in 0..rows {
                let c = (r.next_u64() % 64) as usize;
                out.extend((0..dim).map(|j| (centres[c * dim + j] + 0.35 * r.normal()) as f32));
            }
        }
        Kind::Gaussian => out.extend((0..rows * dim).map(|_| r.normal() as f32)),
        Kind::Cone => {
            let axis: Vec<f64> = (0..dim).map(|_| shared.normal()).collect();
            for _ in 0..rows {
                out.extend(axis.iter().map(|a| (a + 0.08 * r.normal()) as f32));
            }
        }
        Kind::Histogram => {
            let centres: Vec<f64> = (0..32 * dim).map(|_| shared.normal()).collect();
            for _ in 0..rows {
                let c = (r.next_u64() % 32) as usize;
                out.extend((0..dim).map(|j| {
                    let g = centres[c * dim + j] + 0.8 * r.normal();
                    (12.0 * g).round().max(0.0) as f32
                }));
            }
        }
        Kind::Uniform => out.extend((0..rows * dim).map(|_| r.uniform() as f32)),
    }
    out
}
