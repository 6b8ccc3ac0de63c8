//! `facegate bench search`: one exact 1:N search over N random unit templates, next to the
//! time it takes to stream the bytes the scan reads once from memory (the bandwidth floor),
//! both measured in the same run on one thread.

use std::time::Instant;

use serde::Serialize;

use super::{percentiles, RandomVectors};
use facegate_core::engine::embedder::Metric;
use facegate_core::store::index::{exact_key, CollectionIndex};

#[derive(Debug, Clone, Serialize)]
pub struct SearchRow {
    pub templates: usize,
    pub dim: usize,
    /// Bytes one scan reads (int8 codes and per-template numbers), MiB.
    pub scanned_mib: f64,
    /// Median time to stream those bytes once, ms.
    pub floor_ms: f64,
    /// Median time of one exact top-1 search with no threshold (the hardest case for the
    /// pruning), ms.
    pub search_ms: f64,
    pub search_p99_ms: f64,
    /// search_ms / floor_ms.
    pub ratio: f64,
    /// Median templates re-scored from full precision per search.
    pub rescored: f64,
    /// Median time of a top-1 search at the API default threshold (score 0.7) for a query
    /// of someone not enrolled, ms.
    pub search_at_threshold_ms: f64,
    /// Every search returned the brute-force answer (checked on a sample).
    pub exact: bool,
}

/// Cosine at which the default 512-d calibration reaches score 0.7 is ~0.48; a random query
/// is far below it. The same cut-off is used for both dimensions (it only sets pruning).
const THRESHOLD_COSINE: f32 = 0.48;

pub fn bench_search(templates: usize, dim: usize, queries: usize) -> SearchRow {
    let mut rng = RandomVectors::new(templates as u64 * 31 + dim as u64);
    let mut full = vec![0f32; templates * dim];
    let mut index = CollectionIndex::new(dim, Metric::Cosine);
    for (i, v) in full.chunks_exact_mut(dim).enumerate() {
        rng.fill_unit(v);
        index.upsert(&format!("p{i}"), 1, v);
    }
    let queries: Vec<Vec<f32>> = (0..queries.max(3))
        .map(|_| {
            let mut q = vec![0f32; dim];
            rng.fill_unit(&mut q);
            q
        })
        .collect();
    let template = |slot: u32| &full[slot as usize * dim..(slot as usize + 1) * dim];

    // Warm both paths once, then alternate them so that neither gets a cooler machine.
    std::hint::black_box(index.stream_scanned_bytes());
    let mut floor = Vec::new();
    let mut search = Vec::new();
    let mut thresholded = Vec::new();
    let mut rescored = Vec::new();
    let mut exact = true;
    for (n, q) in queries.iter().enumerate() {
        let t = Instant::now();
        std::hint::black_box(index.stream_scanned_bytes());
        floor.push(t.elapsed().as_secs_f64() * 1e3);

        let mut key = |slot: u32| Some(exact_key(Metric::Cosine, template(slot), q));
        let t = Instant::now();
        let (hits, stats) = index.search(q, 1, f32::MIN, &mut key);
        search.push(t.elapsed().as_secs_f64() * 1e3);
        rescored.push(stats.rescored as f64);

        let t = Instant::now();
        std::hint::black_box(index.search(q, 1, THRESHOLD_COSINE, &mut key));
        thresholded.push(t.elapsed().as_secs_f64() * 1e3);

        if n < 3 {
            exact &= hits == index.brute_force(1, f32::MIN, &mut key);
        }
    }
    let (floor_ms, _) = percentiles(&mut floor);
    let (search_ms, search_p99_ms) = percentiles(&mut search);
    let (search_at_threshold_ms, _) = percentiles(&mut thresholded);
    let (rescored, _) = percentiles(&mut rescored);
    SearchRow {
        templates,
        dim,
        scanned_mib: index.scanned_bytes() as f64 / (1 << 20) as f64,
        floor_ms,
        search_ms,
        search_p99_ms,
        ratio: search_ms / floor_ms,
        rescored,
        search_at_threshold_ms,
        exact,
    }
}

pub fn format_search_table(rows: &[SearchRow]) -> String {
    let mut out = format!(
        "{:>9} {:>4} {:>9} {:>9} {:>10} {:>9} {:>6} {:>9} {:>12} {:>6}\n",
        "templates",
        "dim",
        "scan MiB",
        "floor ms",
        "search ms",
        "p99 ms",
        "ratio",
        "rescored",
        "@0.7 ms",
        "exact"
    );
    for r in rows {
        out += &format!(
            "{:>9} {:>4} {:>9.1} {:>9.2} {:>10.2} {:>9.2} {:>6.2} {:>9.0} {:>12.2} {:>6}\n",
            r.templates,
            r.dim,
            r.scanned_mib,
            r.floor_ms,
            r.search_ms,
            r.search_p99_ms,
            r.ratio,
            r.rescored,
            r.search_at_threshold_ms,
            r.exact
        );
    }
    out
}
