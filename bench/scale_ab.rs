//! The scale benchmark's A/B phase (`--ab-per-segment`, issue 36 item 3): on the indexed data dir,
//! the warm queries through a daemon searching every segment for the whole top 10 at its
//! calibrated depth (`TIDEPOOL_ANN_PER_SEGMENT=1`, as before stop 46) and through the default
//! (each graph segment first at its share of the top 10), twice each, alternating, so the page
//! cache and the machine's load are shared. Each run: p50, p99, recall@10 and the daemon's CPU
//! seconds per query (after a pass that loads the segments).

use super::*;

/// Spawns a daemon on the indexed data dir with extra environment.
type Spawn<'a> = dyn Fn(&[(&str, &str)]) -> Daemon + 'a;

/// The A/B figures; `start` spawns a daemon on the data dir with extra environment.
pub(super) fn per_segment_ab(
    rt: &tokio::runtime::Runtime,
    start: &Spawn<'_>,
    queries: &[f32],
    gt: &[TopK],
) -> Json {
    let nq = (queries.len() / DIM) as f64;
    let mut runs = Vec::new();
    for round in 0..2 {
        for (name, env) in [("per_segment", &[("TIDEPOOL_ANN_PER_SEGMENT", "1")][..]), ("shares", &[][..])] {
            let d = start(env);
            // A first pass loads (verifies) the segments and warms the daemon's caches.
            warm_queries(rt, &d.url, queries, gt);
            let cpu0 = cpu_seconds(d.pid());
            let mut j = warm_queries(rt, &d.url, queries, gt);
            // Its own warm-up and measured passes: two passes over the queries.
            j["daemon_cpu_ms_per_query"] = json!((cpu_seconds(d.pid()) - cpu0) * 1000.0 / (2.0 * nq));
            j["mode"] = json!(name);
            j["round"] = json!(round);
            eprintln!("a/b: {j}");
            runs.push(j);
            d.stop();
        }
    }
    json!(runs)
}
