//! In-process speed of the local embedding model (`tidepool::models`), the side of
//! `bench/embed.sh` that sentence-transformers is measured against: the first `--docs` Debian
//! texts (`title + ". " + body`, cut at 256 word-pieces) embedded by `--threads` threads, each
//! taking chunks of 32 texts as the daemon's query pool does; then a 10-word query embedded alone,
//! 50 times (p50). Prints one JSON object with docs/s, tokens/s, the query p50 and the cosine of
//! the vectors with the shipped ones.
//!
//! `cargo run --release --example embed_bench -- --model DIR --data ../shared/data/debian`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use tidepool::models::{Model, ModelSpec};

const DIM: usize = 384;
const CHUNK: usize = 32;

/// One embedded chunk: its first text's index, its vectors, its tokens.
type Chunk = (usize, Vec<Vec<f32>>, u64);

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

fn main() {
    let model_dir = arg("--model", "target/test-models/all-minilm-l6-v2");
    let data = arg("--data", "../shared/data/debian");
    let n: usize = arg("--docs", "2000").parse().expect("--docs");
    let threads: usize = arg("--threads", "2").parse().expect("--threads");
    let model = Model::load(&ModelSpec { name: "minilm".into(), path: model_dir.into() }).expect("model");
    let docs = std::fs::read_to_string(format!("{data}/docs.jsonl")).expect("docs.jsonl");
    let texts: Vec<String> = docs
        .lines()
        .take(n)
        .map(|l| {
            let d: serde_json::Value = serde_json::from_str(l).expect("doc");
            format!("{}. {}", d["title"].as_str().unwrap_or(""), d["body"].as_str().unwrap_or(""))
        })
        .collect();
    let shipped = std::fs::read(format!("{data}/vectors.f32")).expect("vectors.f32");

    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Chunk>> = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(CHUNK, Ordering::SeqCst);
                if i >= texts.len() {
                    break;
                }
                let chunk: Vec<&str> =
                    texts[i..(i + CHUNK).min(texts.len())].iter().map(String::as_str).collect();
                let e = model.embed(&chunk).expect("embed");
                out.lock().unwrap().push((i, e.vectors, e.tokens));
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let mut parts = out.into_inner().unwrap();
    parts.sort_by_key(|p| p.0);
    let tokens: u64 = parts.iter().map(|p| p.2).sum();
    let vectors: Vec<Vec<f32>> = parts.into_iter().flat_map(|p| p.1).collect();
    let cosines: Vec<f32> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let s: Vec<f32> = shipped[i * DIM * 4..(i + 1) * DIM * 4]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let dot: f32 = v.iter().zip(&s).map(|(a, b)| a * b).sum();
            let norm = |x: &[f32]| x.iter().map(|a| a * a).sum::<f32>().sqrt();
            dot / (norm(v) * norm(&s))
        })
        .collect();
    let words: Vec<&str> = "fast secure web server with proxy cache and load balancing".split(' ').collect();
    let mut lat: Vec<f64> = (0..50)
        .map(|i| {
            let q = [&words[i % 3..], &words[..i % 3]].concat().join(" ");
            let t = Instant::now();
            model.embed(&[q.as_str()]).expect("query");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "docs": texts.len(), "threads": threads, "seconds": (secs * 100.0).round() / 100.0,
            "docs_per_s": (texts.len() as f64 / secs * 10.0).round() / 10.0,
            "tokens_per_s": (tokens as f64 / secs).round(), "tokens": tokens,
            "min_cosine_vs_shipped": cosines.iter().copied().fold(f32::MAX, f32::min),
            "mean_cosine_vs_shipped": cosines.iter().sum::<f32>() / cosines.len() as f32,
            "query_p50_ms": (lat[lat.len() / 2] * 100.0).round() / 100.0,
        })
    );
}
