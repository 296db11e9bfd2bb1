//! Tests of the calibration record and its measurement: the recall it promises holds on
//! held-out rows, and every record version decodes what it encodes (bad bytes: an error).

use super::*;

/// Rows in tight groups of near-copies (`copies` per centre), unit-normalised.
fn copies(groups: usize, copies: usize, dim: usize) -> Vec<f32> {
    let mut s = 5u64;
    let mut next = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let mut out = Vec::new();
    for _ in 0..groups {
        let centre: Vec<f32> = (0..dim).map(|_| next()).collect();
        for _ in 0..copies {
            let mut v: Vec<f32> = centre.iter().map(|c| c + 0.05 * next()).collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= n);
            out.extend(v);
        }
    }
    out
}

/// The exact K + 1 nearest rows of `q` (brute force), `hidden` left out.
fn exact_top(data: &[f32], dim: usize, m: Metric, q: &[f32], hidden: Option<u32>) -> Vec<u32> {
    let mut d: Vec<(f32, u32)> = data
        .chunks_exact(dim)
        .enumerate()
        .filter(|(r, _)| Some(*r as u32) != hidden)
        .map(|(r, x)| (det_distance(m, q, x), r as u32))
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0));
    d.iter().take(K + 1).map(|p| p.1).collect()
}

/// Invariant: every sampled row also gives a perturbed query (nothing hidden), off its row
/// by about the row's own 10th-neighbour radius, the same bits on every call.
#[test]
fn perturbed_queries_sit_near_their_rows_but_off_them() {
    let (dim, m) = (32, Metric::CosineDistance);
    let data = copies(60, 20, dim);
    let s = sample(&data, dim, m);
    let own = s.hidden.iter().filter(|h| h.is_some()).count();
    assert!(own >= MIN_QUERIES && s.len() == 2 * own, "{own} of {}", s.len());
    assert!(s.hidden[..own].iter().all(Option::is_some) && s.hidden[own..].iter().all(Option::is_none));
    for i in 0..own {
        let row = s.hidden[i].unwrap() as usize;
        let x = &data[row * dim..(row + 1) * dim];
        assert_eq!(s.query(i), x);
        let d = det_distance(m, s.query(own + i), x);
        // Unit rows: the perturbation's norm is the 10th-neighbour radius, so the query sits
        // at about the 10th neighbour's cosine distance (less once renormalised).
        let k = s.kth[i];
        assert!(d > 0.25 * k && d < 1.5 * k, "perturbed query {i} at {d}, 10th row at {k}");
        assert!(s.kth[own + i] > s.kth[i], "an outside query is farther from its 10th row");
    }
    let again = sample(&data, dim, m);
    assert_eq!((again.queries, again.kth), (s.queries, s.kth));
}

/// Invariant: a rung's recall is the lower of the own-row and the perturbed queries'; an
/// index that only finds its own rows' copies is not credited for it.
#[test]
fn a_rung_measures_the_worse_of_both_query_kinds() {
    let (dim, m) = (16, Metric::EuclideanSquared);
    let data = copies(40, 10, dim);
    let s = sample(&data, dim, m);
    let exact = |q: &[f32], hidden: Option<u32>| exact_top(&data, dim, m, q, hidden);
    let perfect = calibrate(&data, dim, m, &s, &[(1, 1)], |q, h, _, _| exact(q, h));
    assert_eq!(perfect.rungs[0].recall_bp, 10_000);
    // Exact for own rows, nothing for outside queries: 0, not the average 0.5.
    let own_only =
        calibrate(
            &data,
            dim,
            m,
            &s,
            &[(1, 1)],
            |q, h, _, _| if h.is_some() { exact(q, h) } else { Vec::new() },
        );
    assert_eq!(own_only.rungs[0].recall_bp, 0);
    assert_eq!(usize::from(own_only.queries), s.len());
}

/// Invariant: a stored recall is its sample's lower bound: the mean when every query agrees,
/// [`STD_ERRORS`] standard errors under it when they spread (one query in ten answered with
/// nothing: mean 0.9, stored about 0.857 on 200 queries per kind).
#[test]
fn a_rung_stores_the_lower_bound_of_its_sample() {
    let mut even = Tally::default();
    (0..100).for_each(|_| even.add(0.9));
    assert!((even.lower_bound().unwrap() - 0.9).abs() < 1e-12);
    let mut spread = Tally::default();
    (0..100).for_each(|i| spread.add(if i % 10 == 0 { 0.0 } else { 1.0 }));
    let want = 0.9 - STD_ERRORS * (0.09f64 * 100.0 / 99.0).sqrt() / 10.0;
    assert!((spread.lower_bound().unwrap() - want).abs() < 1e-9);
    assert_eq!(Tally::default().lower_bound(), None);

    let (dim, m) = (16, Metric::EuclideanSquared);
    let data = copies(40, 10, dim);
    let s = sample(&data, dim, m);
    assert_eq!(s.len(), 400, "200 rows and their perturbed copies");
    let mut call = 0;
    let cal = calibrate(&data, dim, m, &s, &[(1, 1)], |q, h, _, _| {
        call += 1;
        if call % 10 == 1 {
            return Vec::new();
        }
        exact_top(&data, dim, m, q, h)
    });
    let bound = 0.9 - STD_ERRORS * (0.09f64 * 200.0 / 199.0).sqrt() / 200f64.sqrt();
    assert_eq!(cal.rungs[0].recall_bp, (bound * 10_000.0).floor() as u16, "{cal:?}");
}

/// Rows in groups of noisy copies whose centres sit around a few topics (unit-normalised),
/// and queries from outside the groups: fresh centres around the same topics, as a Debian
/// dev query is near Debian vectors but a copy of none. Returns (rows, queries).
fn topics_with_copies(dim: usize, centres: usize, copies: usize, queries: usize) -> (Vec<f32>, Vec<f32>) {
    let mut s = 9u64;
    let mut normal = || {
        let u = ((splitmix(&mut s) >> 11) as f64 / (1u64 << 53) as f64).max(1e-300);
        let v = (splitmix(&mut s) >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    };
    let unit = |mut v: Vec<f32>| {
        let n = norm(v.iter().copied()).max(f32::MIN_POSITIVE);
        v.iter_mut().for_each(|x| *x /= n);
        v
    };
    let sd = 1.0 / (dim as f32).sqrt();
    let topics: Vec<Vec<f32>> = (0..16).map(|_| unit((0..dim).map(|_| normal()).collect())).collect();
    let mut around = |t: usize, spread: f32| -> Vec<f32> {
        unit(topics[t % 16].iter().map(|c| c + spread * sd * normal()).collect())
    };
    let centres: Vec<Vec<f32>> = (0..centres).map(|i| around(i, 0.8)).collect();
    let outside: Vec<f32> = (0..queries).flat_map(|i| around(i, 0.8)).collect();
    let mut rows = Vec::new();
    for c in &centres {
        for _ in 0..copies {
            let v: Vec<f32> = c.iter().map(|x| x + 0.5 * sd * normal()).collect();
            rows.extend(unit(v));
        }
    }
    (rows, outside)
}

/// Invariant (honesty on near-copies): where rows come in groups of noisy copies (28 each,
/// the 1M scale benchmark's density) and queries come from outside the groups (farther from
/// their rows than the rows are from their copies), every stored rung is at most the recall
/// those queries get there, less sampling slack. A stored figure above what outside queries
/// get (own rows alone, a sample too small for its margin) fails this.
#[test]
fn near_copies_do_not_inflate_the_stored_recall() {
    use crate::index::vector::graph::{build, GraphIndex, GraphParams, GraphSearchParams};
    let (dim, m) = (32, Metric::CosineDistance);
    let (rows, outside) = topics_with_copies(dim, 160, 28, 200);
    let ix = GraphIndex::open(bytes::Bytes::from(build(&rows, dim, m, &GraphParams::default()))).unwrap();
    let cal = ix.calibration().clone();
    assert!(cal.is_calibrated(), "{cal:?}");
    let truths: Vec<Vec<u32>> =
        outside.chunks_exact(dim).map(|q| exact_top(&rows, dim, m, q, None)).collect();
    let kth = |q: &[f32], t: &[u32]| det_distance(m, q, &rows[t[K - 1] as usize * dim..][..dim]);
    for r in &cal.rungs {
        let p = GraphSearchParams { ef: r.effort, rerank: r.rerank };
        let mut hit = 0usize;
        for (q, t) in outside.chunks_exact(dim).zip(&truths) {
            let bound = kth(q, t) + 1e-5;
            hit += ix.search(&rows, q, K, None, &p).iter().filter(|f| f.1 <= bound).count();
        }
        let got = hit as f64 / (truths.len() * K) as f64;
        assert!(
            r.recall() <= got + 0.02,
            "ef {}: stored {} but outside queries get {got}",
            r.effort,
            r.recall()
        );
    }
    // The regime: outside queries are farther out than own rows (whose top 10 are copies).
    let s = sample(&rows, dim, m);
    let own = s.hidden.iter().filter(|h| h.is_some()).count();
    let own_kth = s.kth[..own].iter().map(|d| f64::from(*d)).sum::<f64>() / own as f64;
    let out_kth =
        outside.chunks_exact(dim).zip(&truths).map(|(q, t)| f64::from(kth(q, t))).sum::<f64>() / 200.0;
    assert!(out_kth > 1.2 * own_kth, "outside 10th distance {out_kth}, own rows' {own_kth}");
}

#[test]
fn record_round_trips_and_refuses_bad_bytes() {
    let c = Calibration {
        queries: 200,
        target_bp: 9500,
        rungs: vec![
            Rung { effort: 24, rerank: 24, recall_bp: 9012 },
            Rung { effort: 64, rerank: 64, recall_bp: 9733 },
        ],
        reach_bits: 0.4375f32.to_bits(),
    };
    let b = c.encode();
    assert_eq!(Calibration::decode(&b).unwrap(), c);
    assert_eq!(c.pick(0.95).map(|r| r.effort), Some(64));
    assert_eq!(c.pick(0.9).map(|r| r.effort), Some(24));
    assert_eq!(c.pick(0.99), None, "no rung reaches it: exact");
    assert_eq!(Calibration::decode(&[0; RECORD_LEN]).unwrap(), Calibration::default());
    assert!(Calibration::decode(&b[..10]).is_err());
    for (at, v) in [(0, 2u8), (1, 0), (1, 7), (8, 0), (13, 0xff), (16, 1), (17, 0)] {
        let mut x = b;
        x[at] = v;
        if at == 16 || at == 17 {
            // Second rung's effort below the first's.
            x[14] = 1;
            x[15] = 0;
        }
        assert!(Calibration::decode(&x).is_err(), "byte {at} = {v}");
    }
    // The reach: a finite positive f32, or 0 for records written before it.
    assert_eq!(c.reach(), Some(0.4375));
    assert!(c.beyond_reach(0.44) && !c.beyond_reach(0.4375) && !c.beyond_reach(f32::NAN));
    for bad in [f32::NAN, f32::INFINITY, -1.0, -0.0] {
        let mut x = b;
        x[44..48].copy_from_slice(&bad.to_bits().to_le_bytes());
        assert!(Calibration::decode(&x).is_err(), "reach {bad}");
    }
    let mut old = b;
    old[44..48].fill(0);
    let old = Calibration::decode(&old).unwrap();
    assert_eq!((old.reach(), old.beyond_reach(f32::MAX)), (None, false), "an older record never escalates");
    assert_eq!(old.rungs, c.rungs);
}

/// Invariant: the wide record (graph version 4) holds up to 12 rungs in the narrow record's
/// rung layout, the reach after them, and refuses non-zero reserved bytes, unused rung slots
/// or tail; the narrow encoding of the same record keeps its first six rungs.
#[test]
fn the_wide_record_holds_twelve_rungs() {
    let rungs: Vec<Rung> = (0..WIDE_RUNGS as u32)
        .map(|i| Rung { effort: 10 + 8 * i, rerank: 10 + 8 * i, recall_bp: 9000 + 80 * i as u16 })
        .collect();
    let c = Calibration { queries: 800, target_bp: 9500, rungs, reach_bits: 0.25f32.to_bits() };
    let b = c.encode_wide();
    assert_eq!(Calibration::decode_wide(&b).unwrap(), c);
    assert_eq!(&b[80..84], &0.25f32.to_le_bytes());
    assert!(Calibration::decode_wide(&b[..WIDE_RECORD_LEN - 1]).is_err());
    let narrow = Calibration::decode(&c.encode()).unwrap();
    assert_eq!((&narrow.rungs[..], narrow.reach()), (&c.rungs[..MAX_RUNGS], Some(0.25)));
    let short = Calibration { rungs: c.rungs[..3].to_vec(), ..c.clone() };
    let sb = short.encode_wide();
    assert_eq!(Calibration::decode_wide(&sb).unwrap(), short);
    for at in [6, 7, 8 + 6 * 3, 79, 84, 87] {
        let mut x = sb;
        x[at] = 1;
        assert!(Calibration::decode_wide(&x).is_err(), "byte {at}");
    }
    assert_eq!(Calibration::decode_wide(&[0; WIDE_RECORD_LEN]).unwrap(), Calibration::default());
}

proptest::proptest! {
    /// Invariant: any 88 bytes decode as a wide record or give an error, never a panic; a
    /// decoded one re-encodes to the same bytes.
    #[test]
    fn any_wide_record_bytes_decode_without_panicking(
        mut b in proptest::collection::vec(proptest::prelude::any::<u8>(), WIDE_RECORD_LEN),
        rungs in 1u8..=12,
    ) {
        b[0] = 1;
        b[1] = rungs;
        // Mostly zero reserved bytes, so the rung and reach checks are reached.
        if b[2] % 4 != 0 {
            b[6..8].fill(0);
            b[8 + 6 * usize::from(rungs)..80].fill(0);
            b[84..].fill(0);
        }
        if let Ok(c) = Calibration::decode_wide(&b) {
            proptest::prop_assert_eq!(&c.encode_wide()[..], &b[..]);
        }
    }

    /// Invariant: any 48 bytes decode to a record or an error, never a panic; a decoded
    /// record re-encodes to bytes that decode to it again, and its reach, if any, is a finite
    /// positive distance.
    #[test]
    fn any_record_bytes_decode_without_panicking(
        mut b in proptest::collection::vec(proptest::prelude::any::<u8>(), RECORD_LEN),
        calibrated in proptest::prelude::any::<bool>(),
        reach in proptest::prelude::any::<f32>(),
    ) {
        if calibrated {
            // Bias towards records that pass the state and rung checks, so the reach's own
            // check is reached.
            b[0] = 1;
            b[1] = 1 + b[1] % 6;
            b[44..48].copy_from_slice(&reach.to_le_bytes());
        }
        if let Ok(c) = Calibration::decode(&b) {
            proptest::prop_assert_eq!(Calibration::decode(&c.encode()).unwrap(), c.clone());
            proptest::prop_assert!(c.reach().is_none_or(|r| r.is_finite() && r > 0.0));
        }
    }
}

/// Invariant: the reach is the [`REACH_QUANTILE`] quantile of the sampled queries' K-th
/// distances (nearest rank), over both query kinds; a sample with no positive distance stores
/// none.
#[test]
fn the_reach_is_a_high_quantile_of_the_sampled_kth_distances() {
    let kth: Vec<f32> = (1..=200).map(|i| i as f32).collect();
    assert_eq!(reach(&kth), Some(198.0), "ceil(0.99 × 200) = 198th smallest");
    assert_eq!(reach(&[0.0; 50]), None);
    assert_eq!(reach(&[]), None);
    let (dim, m) = (16, Metric::EuclideanSquared);
    let data = copies(40, 10, dim);
    let s = sample(&data, dim, m);
    let cal = calibrate(&data, dim, m, &s, &[(1, 1)], |q, h, _, _| exact_top(&data, dim, m, q, h));
    let r = cal.reach().expect("stored");
    let over = s.kth.iter().filter(|d| **d > r).count();
    assert!(s.kth.contains(&r) && over <= s.len() / 100, "{over} of {} over {r}", s.len());
}

/// Invariant (stop 50): the rungs' perturbed queries may sit closer in (graph sections: 0.5 ×
/// the radius), but the reach is always the quantile over the own rows and the rows perturbed at
/// [`PERTURB`]: the same distances, bit for bit, as a sample taken at that scale, so a query as far
/// out as a 1.0 × perturbation does not escalate.
#[test]
fn the_reach_is_measured_at_the_full_perturbation_whatever_the_rungs_scale() {
    let (dim, m) = (16, Metric::CosineDistance);
    let data = copies(40, 10, dim);
    let full = sample(&data, dim, m);
    let half = sample_rows_scaled(&Flat { rows: &data, dim }, dim, m, 0.5);
    assert_eq!(full.reach_kth, full.kth, "at the full scale the reach's queries are the rungs'");
    assert_eq!(half.reach_kth, full.kth, "the reach's queries do not follow the rungs' scale");
    let own = half.len() / 2;
    assert_eq!((half.len(), &half.kth[..own]), (full.len(), &full.kth[..own]));
    let sum = |v: &[f32]| v.iter().map(|d| f64::from(*d)).sum::<f64>();
    assert!(sum(&half.kth[own..]) < sum(&full.kth[own..]), "closer queries, nearer 10th rows");
    let exact = |q: &[f32], h: Option<u32>| exact_top(&data, dim, m, q, h);
    let cal = calibrate(&data, dim, m, &half, &[(1, 1)], |q, h, _, _| exact(q, h));
    assert_eq!(cal.reach(), reach(&full.kth));
}

/// Invariant (stop 50): a rung reranking fewer than [`FULL_RERANK`] candidates never ends the
/// ladder, however well it measures: the record keeps the first full rung reaching [`ENOUGH`]
/// (a target above the narrow rung's still finds a rung, not an exact scan).
#[test]
fn narrow_rungs_never_end_the_ladder() {
    let (dim, m) = (16, Metric::EuclideanSquared);
    let data = copies(40, 10, dim);
    let s = sample(&data, dim, m);
    let exact = |q: &[f32], h: Option<u32>| exact_top(&data, dim, m, q, h);
    let ladder = [(10, 10), (16, 16), (22, 22), (32, 32)];
    let cal = calibrate(&data, dim, m, &s, &ladder, |q, h, _, _| exact(q, h));
    let measured: Vec<(u32, u16)> = cal.rungs.iter().map(|r| (r.effort, r.recall_bp)).collect();
    assert_eq!(measured, vec![(10, 10_000), (16, 10_000), (22, 10_000)]);
    assert_eq!(cal.pick(0.95).map(|r| r.effort), Some(10), "the cheapest rung reaching the target");
}
