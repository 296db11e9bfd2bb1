//! The scale benchmark's A/B phase, on the indexed data dir after the cold phase: the warm queries
//! through two or more daemons, twice each, alternating, so the page cache and the machine's load
//! are shared. `--ab-per-segment` (issue 36 item 3): every segment searched for the whole top 10
//! at its calibrated depth (`TIDEPOOL_ANN_PER_SEGMENT=1`, as before stop 46) against the default
//! (each graph segment first at its share of the top 10). `--ab-binary A`: another daemon binary
//! (A) against `--binary` (B) on the same files. `--ab-env NAME:KEY=VALUE`: `--binary` with that
//! environment, one side each.
//!
//! Each run: a pass that loads the segments; the measured pass over the same queries (their rows
//! now in the page cache, as far as the cap lets it hold them); then, after the kernel's clean
//! page cache is dropped (`/proc/sys/vm/drop_caches`: the daemon's mapped, resident graph pages
//! stay), the same queries again with their rows on disk ("uncached"). Each pass: p50, p99,
//! recall@10 and the daemon's CPU milliseconds per query.

use super::*;

/// Spawns a daemon binary on the indexed data dir with extra environment.
type Spawn<'a> = dyn Fn(&Path, &[(&str, &str)]) -> Daemon + 'a;

/// One side of the A/B: its name in the JSON, its binary and its extra environment.
pub(super) struct Side {
    pub name: String,
    pub binary: PathBuf,
    pub env: Vec<(String, String)>,
}

/// The A/B figures; `start` spawns a daemon on the data dir.
pub(super) fn ab(
    rt: &tokio::runtime::Runtime,
    start: &Spawn<'_>,
    sides: &[Side],
    queries: &[f32],
    gt: &[TopK],
) -> Json {
    let mut runs = Vec::new();
    for round in 0..2 {
        for side in sides {
            let env: Vec<(&str, &str)> = side.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let d = start(&side.binary, &env);
            // A first pass loads (verifies) the segments and warms the daemon's caches.
            warm_queries(rt, &d.url, queries, gt);
            for pass in ["cached", "uncached"] {
                if pass == "uncached" {
                    drop_page_cache();
                }
                let mut j = timed_pass(rt, &d, queries, gt);
                j["mode"] = json!(side.name);
                j["round"] = json!(round);
                j["pass"] = json!(pass);
                eprintln!("a/b: {j}");
                runs.push(j);
            }
            d.stop();
        }
    }
    json!(runs)
}

/// The queries once, timed, with the daemon's CPU per query.
fn timed_pass(rt: &tokio::runtime::Runtime, d: &Daemon, queries: &[f32], gt: &[TopK]) -> Json {
    let nq = (queries.len() / DIM) as f64;
    let cpu0 = cpu_seconds(d.pid());
    let mut j = timed_queries(rt, &d.url, queries, gt);
    j["daemon_cpu_ms_per_query"] = json!((cpu_seconds(d.pid()) - cpu0) * 1000.0 / nq);
    j
}

/// Drops the kernel's clean, unmapped page-cache pages (root only; a refusal is reported, and
/// the "uncached" pass then reads cached rows).
fn drop_page_cache() {
    if let Err(e) = std::fs::write("/proc/sys/vm/drop_caches", "1") {
        eprintln!("a/b: cannot drop the page cache ({e}): the uncached pass is not");
    }
}
