//! The in-memory search index of one collection: an int8 copy of every template in one
//! contiguous array, scanned in full for each query, with exact re-scoring of the few
//! candidates the scan cannot rule out.
//!
//! Why int8: a 512-d template is 2 KiB in `f32` but 512 bytes as codes, so the scan streams a
//! quarter of the bytes (1M templates: 512 MB instead of 2 GB) and the full-precision
//! templates can stay in LMDB, paged in only for re-scoring.
//!
//! Why the result is still exact: each template `x` is stored as `s·q` (`q` int8, one scale
//! per template) and its quantisation residual `r = ‖x − s·q‖` is kept; the query `y` is
//! quantised the same way (`t·p`, residual `e`). Then
//! `|x·y − s·t·(q·p)| ≤ e·‖x‖ + ‖t·p‖·r` (Cauchy–Schwarz on both error terms), so every
//! approximate score comes with a rigorous interval. A template whose upper bound is below
//! the k-th best lower bound (or below the threshold) cannot be among the top k; the others
//! are re-scored from full precision with the same arithmetic as a brute-force scan.

use std::collections::HashMap;

use crate::engine::embedder::Metric;

/// Slack for `f32` rounding in the approximate and the exact scores, relative to `‖x‖·‖y‖`
/// (a 512-term dot product rounds by at most ~3e-5 of that).
const ROUNDING_SLACK: f32 = 2e-4;

/// A template quantised for the scan.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantised {
    pub codes: Vec<i8>,
    pub scale: f32,
    pub residual: f32,
    pub norm: f32,
}

/// Symmetric per-vector int8 quantisation.
pub fn quantise(x: &[f32]) -> Quantised {
    let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let codes: Vec<i8> = x
        .iter()
        .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8)
        .collect();
    let residual = x
        .iter()
        .zip(&codes)
        .map(|(v, &q)| {
            let d = (*v as f64) - (q as f64) * (scale as f64);
            d * d
        })
        .sum::<f64>()
        .sqrt() as f32;
    let norm = x
        .iter()
        .map(|v| (*v as f64) * (*v as f64))
        .sum::<f64>()
        .sqrt() as f32;
    Quantised {
        codes,
        scale,
        residual,
        norm,
    }
}

/// The closeness key the index ranks by: higher is more alike. Cosine (normalised vectors):
/// the dot product. Euclidean: `2·x·y − ‖x‖²`, which is `‖y‖² − distance²` and so orders
/// templates like the distance does.
pub fn exact_key(metric: Metric, x: &[f32], y: &[f32]) -> f32 {
    let dot: f32 = x.iter().zip(y).map(|(a, b)| a * b).sum();
    match metric {
        Metric::Cosine => dot,
        Metric::Euclidean => 2.0 * dot - x.iter().map(|a| a * a).sum::<f32>(),
    }
}

/// The closeness (cosine, or minus the distance) from a key and the query's squared norm.
pub fn closeness_of_key(metric: Metric, key: f32, query_norm_sq: f32) -> f32 {
    match metric {
        Metric::Cosine => key,
        Metric::Euclidean => -(query_norm_sq - key).max(0.0).sqrt(),
    }
}

/// The smallest key a template may have for its closeness to reach `closeness`.
pub fn key_of_closeness(metric: Metric, closeness: f32, query_norm_sq: f32) -> f32 {
    match metric {
        Metric::Cosine => closeness,
        Metric::Euclidean => {
            let d = (-closeness).max(0.0);
            query_norm_sq - d * d
        }
    }
}

/// One collection's templates: one slot per face, so a person with several faces has several
/// slots (see [`CollectionIndex::max_faces`] for how a search still finds `k` persons).
#[derive(Debug, Clone)]
pub struct CollectionIndex {
    dim: usize,
    metric: Metric,
    codes: Vec<i8>,
    scale: Vec<f32>,
    residual: Vec<f32>,
    norm: Vec<f32>,
    /// Person id of each slot.
    ids: Vec<Box<str>>,
    /// Face id of each slot.
    faces: Vec<u32>,
    slots: HashMap<(Box<str>, u32), u32>,
    max_faces: u32,
}

/// A search hit: the template's slot and exact closeness key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub slot: u32,
    pub key: f32,
}

/// What one scan did, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    pub scanned: usize,
    pub rescored: usize,
}

impl CollectionIndex {
    pub fn new(dim: usize, metric: Metric) -> Self {
        Self {
            dim,
            metric,
            codes: Vec::new(),
            scale: Vec::new(),
            residual: Vec::new(),
            norm: Vec::new(),
            ids: Vec::new(),
            faces: Vec::new(),
            slots: HashMap::new(),
            max_faces: 1,
        }
    }

    /// Number of templates (faces), not persons.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The person of a slot.
    pub fn id(&self, slot: u32) -> &str {
        &self.ids[slot as usize]
    }

    /// The face id of a slot.
    pub fn face(&self, slot: u32) -> u32 {
        self.faces[slot as usize]
    }

    /// The slot of a face (tests: the store finds faces by the search, not by id).
    #[cfg(test)]
    pub fn slot(&self, id: &str, face: u32) -> Option<u32> {
        self.slots.get(&(Box::from(id), face)).copied()
    }

    /// At least as many faces as any one person of this index has (it never decreases): a
    /// search for the best `k` persons asks for the best `k · max_faces` templates, which
    /// always include every one of those persons' best template.
    pub fn max_faces(&self) -> u32 {
        self.max_faces
    }

    /// Record that some person now has `n` faces.
    pub fn note_faces(&mut self, n: u32) {
        self.max_faces = self.max_faces.max(n);
    }

    /// Bytes the scan reads per query (codes and per-template numbers).
    pub fn scanned_bytes(&self) -> usize {
        self.codes.len() + 12 * self.len()
    }

    /// Heap bytes held (approximate).
    pub fn heap_bytes(&self) -> usize {
        self.codes.capacity()
            + 4 * (self.scale.capacity() + self.residual.capacity() + self.norm.capacity())
            + 4 * self.faces.capacity()
            + self
                .ids
                .iter()
                .map(|s| 2 * (s.len() + 16) + 40)
                .sum::<usize>()
    }

    /// Give back the spare capacity left by growing while loading.
    pub fn shrink_to_fit(&mut self) {
        self.codes.shrink_to_fit();
        self.scale.shrink_to_fit();
        self.residual.shrink_to_fit();
        self.norm.shrink_to_fit();
        self.ids.shrink_to_fit();
        self.faces.shrink_to_fit();
        self.slots.shrink_to_fit();
    }

    /// Add or replace the template of face `face` of `id`.
    pub fn upsert(&mut self, id: &str, face: u32, template: &[f32]) {
        assert_eq!(template.len(), self.dim, "template dimension");
        let q = quantise(template);
        let key: (Box<str>, u32) = (id.into(), face);
        match self.slots.get(&key) {
            Some(&slot) => {
                let s = slot as usize;
                self.codes[s * self.dim..(s + 1) * self.dim].copy_from_slice(&q.codes);
                self.scale[s] = q.scale;
                self.residual[s] = q.residual;
                self.norm[s] = q.norm;
            }
            None => {
                let slot = self.ids.len() as u32;
                self.codes.extend_from_slice(&q.codes);
                self.scale.push(q.scale);
                self.residual.push(q.residual);
                self.norm.push(q.norm);
                self.ids.push(key.0.clone());
                self.faces.push(face);
                self.slots.insert(key, slot);
            }
        }
    }

    /// Remove the template of face `face` of `id`; the last template moves into its slot.
    pub fn remove(&mut self, id: &str, face: u32) -> bool {
        let Some(slot) = self.slots.remove(&(Box::from(id), face)) else {
            return false;
        };
        let s = slot as usize;
        let last = self.ids.len() - 1;
        if s != last {
            let (head, tail) = self.codes.split_at_mut(last * self.dim);
            head[s * self.dim..(s + 1) * self.dim].copy_from_slice(&tail[..self.dim]);
            self.scale[s] = self.scale[last];
            self.residual[s] = self.residual[last];
            self.norm[s] = self.norm[last];
            self.ids.swap(s, last);
            self.faces.swap(s, last);
            self.slots
                .insert((self.ids[s].clone(), self.faces[s]), slot);
        }
        self.codes.truncate(last * self.dim);
        self.scale.truncate(last);
        self.residual.truncate(last);
        self.norm.truncate(last);
        self.ids.truncate(last);
        self.faces.truncate(last);
        true
    }

    /// The best `k` templates whose exact key is at least `min_key`, best first (ties by
    /// slot). `exact` returns the exact key of a slot from full precision.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        min_key: f32,
        exact: &mut dyn FnMut(u32) -> Option<f32>,
    ) -> (Vec<Hit>, ScanStats) {
        assert_eq!(query.len(), self.dim, "query dimension");
        if k == 0 || self.is_empty() {
            return (Vec::new(), ScanStats::default());
        }
        let q = quantise(query);
        let query_scale = q.scale;
        // ‖t·p‖ and ‖e‖ of the query; the bound uses them for every template.
        let tp_norm = (q
            .codes
            .iter()
            .map(|&c| (c as f32) * (c as f32))
            .sum::<f32>())
        .sqrt()
            * query_scale;
        let params = ScanParams {
            alpha: match self.metric {
                Metric::Cosine => 1.0,
                Metric::Euclidean => 2.0,
            },
            subtract_norm_sq: self.metric == Metric::Euclidean,
            query_scale,
            query_residual: q.residual,
            tp_norm,
            query_norm: q.norm,
            min_key,
            k,
        };
        let candidates = scan(self, &q.codes, &params);
        let stats = ScanStats {
            scanned: self.len(),
            rescored: candidates.len(),
        };
        let mut hits: Vec<Hit> = candidates
            .into_iter()
            .filter_map(|slot| exact(slot).map(|key| Hit { slot, key }))
            .filter(|h| h.key >= min_key)
            .collect();
        hits.sort_by(|a, b| b.key.total_cmp(&a.key).then(a.slot.cmp(&b.slot)));
        hits.truncate(k);
        (hits, stats)
    }

    /// Every template scored exactly: the reference the scan is tested against.
    pub fn brute_force(
        &self,
        k: usize,
        min_key: f32,
        exact: &mut dyn FnMut(u32) -> Option<f32>,
    ) -> Vec<Hit> {
        let mut hits: Vec<Hit> = (0..self.len() as u32)
            .filter_map(|slot| exact(slot).map(|key| Hit { slot, key }))
            .filter(|h| h.key >= min_key)
            .collect();
        hits.sort_by(|a, b| b.key.total_cmp(&a.key).then(a.slot.cmp(&b.slot)));
        hits.truncate(k);
        hits
    }

    /// Stream the bytes a scan reads once, doing nothing with them but a cheap fold: the
    /// memory-bandwidth floor a scan is compared with.
    pub fn stream_scanned_bytes(&self) -> u64 {
        let mut acc = self.codes.iter().fold(0u8, |a, &c| a ^ c as u8) as u64;
        for v in [&self.scale, &self.residual, &self.norm] {
            acc = acc.wrapping_add(v.iter().fold(0u32, |a, f| a ^ f.to_bits()) as u64);
        }
        acc
    }
}

struct ScanParams {
    alpha: f32,
    subtract_norm_sq: bool,
    query_scale: f32,
    query_residual: f32,
    tp_norm: f32,
    query_norm: f32,
    min_key: f32,
    k: usize,
}

/// The slots whose upper bound reaches the final cut-off.
fn scan(index: &CollectionIndex, query: &[i8], p: &ScanParams) -> Vec<u32> {
    let query: Vec<i16> = query.iter().map(|&c| c as i16).collect();
    let query = query.as_slice();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has AVX-512BW (checked just above).
            return unsafe { scan_avx512(index, query, p) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { scan_avx2(index, query, p) };
        }
    }
    scan_portable(index, query, p)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
unsafe fn scan_avx512(index: &CollectionIndex, query: &[i16], p: &ScanParams) -> Vec<u32> {
    scan_body(index, query, p)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scan_avx2(index: &CollectionIndex, query: &[i16], p: &ScanParams) -> Vec<u32> {
    scan_body(index, query, p)
}

fn scan_portable(index: &CollectionIndex, query: &[i16], p: &ScanParams) -> Vec<u32> {
    scan_body(index, query, p)
}

/// Integer dot product of template codes with the query's codes, which are widened to i16
/// once per search so that only the template side is sign-extended in the loop; written so
/// LLVM vectorises it (`vpmovsxbw` + `vpmaddwd` on x86, `smlal` on ARM).
#[inline(always)]
fn dot_i8(a: &[i8], b: &[i16]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x as i32 * y as i32).sum()
}

/// Templates ahead of the one being scored whose codes are requested from memory early: the
/// scan does enough arithmetic per template that the hardware prefetcher alone falls behind
/// once the index is larger than the last-level cache.
const PREFETCH_AHEAD: usize = 16;

#[inline(always)]
fn prefetch(codes: &[i8], start: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if start + len <= codes.len() {
            let base = codes[start..].as_ptr();
            let mut offset = 0;
            while offset < len {
                // SAFETY: prefetch is a hint; the address lies inside `codes`.
                unsafe {
                    std::arch::x86_64::_mm_prefetch(
                        base.add(offset),
                        std::arch::x86_64::_MM_HINT_T0,
                    );
                }
                offset += 64;
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (codes, start, len);
}

#[inline(always)]
fn scan_body(index: &CollectionIndex, query: &[i16], p: &ScanParams) -> Vec<u32> {
    let dim = index.dim;
    // The k best lower bounds seen so far, smallest first; with `min_key` they give the
    // running cut-off, which only rises, so a template dropped earlier stays dropped.
    let mut best_lower: Vec<f32> = Vec::with_capacity(p.k + 1);
    let mut cutoff = p.min_key;
    let mut candidates: Vec<(u32, f32)> = Vec::new();
    for (slot, codes) in index.codes.chunks_exact(dim).enumerate() {
        prefetch(&index.codes, (slot + PREFETCH_AHEAD) * dim, dim);
        let dot = dot_i8(codes, query) as f32;
        let norm = index.norm[slot];
        let approx_dot = dot * index.scale[slot] * p.query_scale;
        let bound_dot = p.query_residual * norm
            + p.tp_norm * index.residual[slot]
            + ROUNDING_SLACK * norm * p.query_norm.max(p.tp_norm);
        let mut key = p.alpha * approx_dot;
        if p.subtract_norm_sq {
            key -= norm * norm;
        }
        let bound = p.alpha * bound_dot
            + if p.subtract_norm_sq {
                ROUNDING_SLACK * norm * norm
            } else {
                0.0
            };
        let upper = key + bound;
        if upper < cutoff {
            continue;
        }
        candidates.push((slot as u32, upper));
        let lower = key - bound;
        if best_lower.len() < p.k {
            let at = best_lower.partition_point(|&v| v < lower);
            best_lower.insert(at, lower);
        } else if lower > best_lower[0] {
            best_lower.remove(0);
            let at = best_lower.partition_point(|&v| v < lower);
            best_lower.insert(at, lower);
        }
        if best_lower.len() == p.k {
            cutoff = cutoff.max(best_lower[0]);
        }
    }
    candidates
        .into_iter()
        .filter(|&(_, upper)| upper >= cutoff)
        .map(|(slot, _)| slot)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic test vectors: unit vectors for cosine, unnormalised (norm ~0.3) for
    /// Euclidean.
    struct TestVectors(crate::synthetic::RandomVectors);
    impl TestVectors {
        fn new(seed: u64) -> Self {
            Self(crate::synthetic::RandomVectors::new(seed))
        }
        fn vector(&mut self, dim: usize, unit: bool) -> Vec<f32> {
            let mut v = vec![0f32; dim];
            self.0.fill_unit(&mut v);
            if !unit {
                v.iter_mut().for_each(|x| *x *= 0.3);
            }
            v
        }
    }

    fn build(metric: Metric, dim: usize, n: usize, seed: u64) -> (CollectionIndex, Vec<Vec<f32>>) {
        let mut rng = TestVectors::new(seed);
        let unit = metric == Metric::Cosine;
        // Clusters of near-identical templates (the same person enrolled several ways) make
        // ties and near-ties, where a loose bound would go wrong.
        let centres: Vec<Vec<f32>> = (0..n / 10 + 1).map(|_| rng.vector(dim, unit)).collect();
        let mut index = CollectionIndex::new(dim, metric);
        let mut all = Vec::new();
        for i in 0..n {
            let c = &centres[i % centres.len()];
            let noise = rng.vector(dim, unit);
            let mut v: Vec<f32> = c.iter().zip(&noise).map(|(a, b)| a + 0.15 * b).collect();
            if unit {
                crate::engine::embedder::l2_normalise(&mut v);
            }
            index.upsert(&format!("p{i}"), 1, &v);
            all.push(v);
        }
        (index, all)
    }

    fn check_against_brute_force(metric: Metric, dim: usize) {
        let (index, all) = build(metric, dim, 3000, 7);
        let mut rng = TestVectors::new(99);
        let unit = metric == Metric::Cosine;
        let mut rescored_total = 0;
        for trial in 0..60 {
            // Half the queries sit next to a stored template, half anywhere.
            let query: Vec<f32> = if trial % 2 == 0 {
                let base = &all[(trial * 37) % all.len()];
                let noise = rng.vector(dim, unit);
                let mut v: Vec<f32> = base.iter().zip(&noise).map(|(a, b)| a + 0.2 * b).collect();
                if unit {
                    crate::engine::embedder::l2_normalise(&mut v);
                }
                v
            } else {
                rng.vector(dim, unit)
            };
            let key = |slot: u32| Some(exact_key(metric, &all[slot as usize], &query));
            let qn: f32 = query.iter().map(|v| v * v).sum();
            let cut = |closeness: f32| key_of_closeness(metric, closeness, qn);
            let limits = match metric {
                Metric::Cosine => [cut(0.3), cut(-0.02)],
                Metric::Euclidean => [cut(-0.25), cut(-0.4)],
            };
            for (k, min_key) in [
                (1, f32::MIN),
                (5, f32::MIN),
                (20, f32::MIN),
                (10, limits[0]),
                (3, limits[1]),
            ] {
                let (hits, stats) = index.search(&query, k, min_key, &mut { key });
                let expected = index.brute_force(k, min_key, &mut { key });
                assert_eq!(
                    hits, expected,
                    "{metric:?} trial {trial} k {k} min {min_key}"
                );
                rescored_total += stats.rescored;
            }
        }
        // The point of the scan: it re-scores a small share of the collection.
        assert!(
            rescored_total < 60 * 5 * 3000 / 10,
            "re-scored {rescored_total}"
        );
    }

    #[test]
    fn compact_scan_returns_exactly_the_brute_force_top_k_for_cosine() {
        check_against_brute_force(Metric::Cosine, 512);
        check_against_brute_force(Metric::Cosine, 128);
    }

    #[test]
    fn compact_scan_returns_exactly_the_brute_force_top_k_for_euclidean() {
        check_against_brute_force(Metric::Euclidean, 128);
    }

    #[test]
    fn the_quantisation_bound_holds_for_every_template() {
        let mut rng = TestVectors::new(3);
        for _ in 0..200 {
            let x = rng.vector(512, true);
            let y = rng.vector(512, true);
            let qx = quantise(&x);
            let qy = quantise(&y);
            let exact: f64 = x
                .iter()
                .zip(&y)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum();
            let wide: Vec<i16> = qy.codes.iter().map(|&c| c as i16).collect();
            let approx = dot_i8(&qx.codes, &wide) as f64 * qx.scale as f64 * qy.scale as f64;
            let tp: f64 = qy
                .codes
                .iter()
                .map(|&c| (c as f64).powi(2))
                .sum::<f64>()
                .sqrt()
                * qy.scale as f64;
            let bound = qy.residual as f64 * qx.norm as f64 + tp * qx.residual as f64;
            assert!((exact - approx).abs() <= bound, "{exact} {approx} {bound}");
        }
    }

    #[test]
    fn removing_a_template_keeps_the_others_findable() {
        let (mut index, all) = build(Metric::Cosine, 64, 50, 1);
        assert!(index.remove("p10", 1));
        assert!(!index.remove("p10", 1));
        assert_eq!(index.len(), 49);
        assert_eq!(index.slot("p10", 1), None);
        for i in [0usize, 11, 49] {
            let id = format!("p{i}");
            let slot = index.slot(&id, 1).unwrap();
            assert_eq!(index.id(slot), id);
            let (hits, _) = index.search(&all[i], 1, f32::MIN, &mut |s| {
                Some(exact_key(
                    Metric::Cosine,
                    &all[index.id(s)[1..].parse::<usize>().unwrap()],
                    &all[i],
                ))
            });
            assert_eq!(index.id(hits[0].slot), id);
        }
    }

    #[test]
    fn replacing_a_template_keeps_one_slot() {
        let mut index = CollectionIndex::new(4, Metric::Cosine);
        index.upsert("a", 1, &[1.0, 0.0, 0.0, 0.0]);
        index.upsert("a", 1, &[0.0, 1.0, 0.0, 0.0]);
        assert_eq!(index.len(), 1);
        let (hits, _) = index.search(&[0.0, 1.0, 0.0, 0.0], 1, 0.9, &mut |_| Some(1.0));
        assert_eq!(hits.len(), 1);
    }
}
