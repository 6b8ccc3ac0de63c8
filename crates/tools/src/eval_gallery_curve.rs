//! How false accepts grow with the gallery (`facegate eval --open-set`): the standard split
//! searched against galleries of several sizes, each measured FPIR set beside the one the
//! threshold arithmetic of `cameras.max_false_accept_per_attempt` predicts.
//!
//! A gallery smaller than the enrolled half keeps a seeded subset of the enrolled people
//! (their mated probes only). A larger one adds distractors: single photos of people not
//! enrolled, each a gallery entry of its own. A non-mated probe is never searched against a
//! photo of its own identity (that would be a mate), so each probe's distractors are the first
//! photos, in one seeded order, of identities other than its own. The set bounds the largest
//! gallery: enrolled people plus every other photo of other identities.

use serde::Serialize;

#[cfg(test)]
use facegate_core::engine::embedder::Metric;
use facegate_core::engine::similarity::Calibration;
use facegate_core::pipeline::gallery_threshold::{gallery_threshold, predicted_fpir};

use crate::eval_open_set::{OperatingPoint, PhotoTemplate, Searches, Split};

/// Scores each point reports: 0.9 is what 1e-3 per attempt asks of 10,000 templates.
pub const CURVE_SCORES: [f32; 4] = [0.6, 0.7, 0.8, 0.9];

/// The per-attempt false-accept rate whose derived threshold each point also reports.
pub const PER_ATTEMPT: f64 = 1e-3;

/// FNIR and FPIR at one score, and the FPIR the arithmetic predicts there.
#[derive(Debug, Clone, Serialize)]
pub struct CurveAtScore {
    pub score: f32,
    pub fnir: f64,
    pub fpir: f64,
    pub predicted_fpir: f64,
    /// Non-mated probes accepted (the FPIR's numerator: few counts are noisy).
    pub false_accepts: usize,
}

/// One gallery size.
#[derive(Debug, Clone, Serialize)]
pub struct GalleryPoint {
    /// Templates searched per probe.
    pub templates: usize,
    pub enrolled: usize,
    pub distractors: usize,
    pub mated_probes: usize,
    pub non_mated_probes: usize,
    pub rank1_identification_rate: f64,
    /// FNIR at FPIR 3e-3 and its threshold.
    pub fnir_at_fpir_3e3: OperatingPoint,
    pub at_score: Vec<CurveAtScore>,
    /// What `cameras.max_false_accept_per_attempt = 1e-3` would set, measured there.
    pub per_attempt_1e3: CurveAtScore,
}

/// The curve over `sizes` (templates per search) that the set can reach, and at the largest
/// gallery it can: every enrolled person with a template plus every stranger photo with one,
/// less the most photos one stranger identity has (a probe's own photos are not its
/// distractors).
pub fn gallery_curve(
    split: &Split,
    identities: &[String],
    templates: &[PhotoTemplate],
    sizes: &[usize],
    seed: u64,
    cal: &Calibration,
) -> Vec<GalleryPoint> {
    let metric = cal.metric;
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x9a11e7);
    // Enrolled entries with a template (one enrolment photo each), in a seeded order.
    let mut entries: Vec<(usize, usize)> = split
        .gallery
        .iter()
        .enumerate()
        .filter_map(|(entry, photos)| {
            let p = *photos.first()?;
            templates[p].template().map(|_| (entry, p))
        })
        .collect();
    rng.shuffle(&mut entries);
    let mut pool: Vec<usize> = split
        .non_mated
        .iter()
        .copied()
        .filter(|&p| templates[p].template().is_some())
        .collect();
    rng.shuffle(&mut pool);
    let mut own: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for &p in &pool {
        *own.entry(identities[p].as_str()).or_default() += 1;
    }
    let largest = entries.len() + pool.len() - own.values().copied().max().unwrap_or(0);
    let sizes: Vec<usize> = sizes
        .iter()
        .copied()
        .filter(|&n| n < largest)
        .chain([largest])
        .collect();
    let close = |a: usize, b: usize| -> Option<f32> {
        let (x, y) = (templates[a].template()?, templates[b].template()?);
        Some(metric.closeness(metric.compare(x, y)))
    };
    // Every probe's closeness to every pool photo, once for all sizes.
    let pool_closeness = |probe: usize| -> Vec<Option<f32>> {
        pool.iter()
            .map(|&q| {
                if identities[q] == identities[probe] {
                    None
                } else {
                    close(probe, q)
                }
            })
            .collect()
    };
    let mated_pool: Vec<Vec<Option<f32>>> = split
        .mated
        .iter()
        .map(|&(p, _)| pool_closeness(p))
        .collect();
    let non_mated_pool: Vec<Vec<Option<f32>>> =
        split.non_mated.iter().map(|&p| pool_closeness(p)).collect();
    let mut out = Vec::new();
    for &size in &sizes {
        let enrolled = size.min(entries.len());
        let distractors = size - enrolled;
        let in_gallery = &entries[..enrolled];
        // The best of the first `distractors` pool photos not of the probe's identity.
        let best_distractor = |row: &[Option<f32>]| -> Result<Option<f32>, ()> {
            let mut taken = 0;
            let mut best: Option<f32> = None;
            for c in row.iter().flatten() {
                if taken == distractors {
                    break;
                }
                taken += 1;
                best = Some(best.map_or(*c, |b: f32| b.max(*c)));
            }
            if taken < distractors {
                Err(())
            } else {
                Ok(best)
            }
        };
        let best_entry = |probe: usize| -> Option<(usize, f32)> {
            in_gallery
                .iter()
                .filter_map(|&(entry, p)| close(probe, p).map(|c| (entry, c)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
        };
        // A probe's best enrolled entry and best distractor; `Ok(None)` for a refused or
        // faceless probe (it finds nobody, whatever the gallery); `Err` when the set holds too
        // few distractors for it.
        type Found = Option<(Option<(usize, f32)>, Option<f32>)>;
        let search = |p: usize, row: &[Option<f32>]| -> Result<Found, ()> {
            if templates[p].template().is_none() {
                return Ok(None);
            }
            Ok(Some((best_entry(p), best_distractor(row)?)))
        };
        let mated: Result<Vec<Option<f32>>, ()> = split
            .mated
            .iter()
            .enumerate()
            .filter(|(_, &(_, mate))| in_gallery.iter().any(|&(entry, _)| entry == mate))
            .map(|(i, &(p, mate))| {
                Ok(
                    search(p, &mated_pool[i])?.and_then(|(entry, distractor)| match entry {
                        Some((e, c)) if e == mate && distractor.is_none_or(|d| c >= d) => Some(c),
                        _ => None,
                    }),
                )
            })
            .collect();
        let non_mated: Result<Vec<Option<f32>>, ()> = split
            .non_mated
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                Ok(
                    search(p, &non_mated_pool[i])?.and_then(|(entry, distractor)| {
                        match (entry.map(|(_, c)| c), distractor) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            (a, b) => a.or(b),
                        }
                    }),
                )
            })
            .collect();
        let (Ok(mated), Ok(non_mated)) = (mated, non_mated) else {
            continue;
        };
        let searches = Searches { mated, non_mated };
        let score_of = |closeness: f32| cal.score(metric.raw_from_closeness(closeness));
        let at = |score: f32| {
            let t = metric.closeness(cal.raw_threshold(score));
            CurveAtScore {
                score,
                fnir: searches.fnir(|c| c >= t),
                fpir: searches.fpir(|c| c >= t),
                predicted_fpir: predicted_fpir(score, size),
                false_accepts: searches
                    .non_mated
                    .iter()
                    .flatten()
                    .filter(|&&c| c >= t)
                    .count(),
            }
        };
        let (fnir, t) = searches.fnir_at_fpir(3e-3);
        out.push(GalleryPoint {
            templates: size,
            enrolled,
            distractors,
            mated_probes: searches.mated.len(),
            non_mated_probes: searches.non_mated.len(),
            rank1_identification_rate: searches.rank1(),
            fnir_at_fpir_3e3: OperatingPoint {
                fnir,
                threshold_score: score_of(t.next_up()),
            },
            at_score: CURVE_SCORES.iter().map(|&s| at(s)).collect(),
            per_attempt_1e3: at(gallery_threshold(0.0, PER_ATTEMPT, size).effective),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32]) -> PhotoTemplate {
        PhotoTemplate::Template(v.to_vec())
    }

    #[test]
    fn distractors_raise_false_accepts_and_never_include_the_probes_own_identity() {
        // Two enrolled people (a, b), strangers x (two photos) and y, z.
        let identities: Vec<String> = ["a", "a", "b", "b", "x", "x", "y", "z", "w"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let templates = vec![
            t(&[1.0, 0.0, 0.0]),
            t(&[0.99, 0.141, 0.0]),
            t(&[0.0, 1.0, 0.0]),
            t(&[0.0, 0.99, 0.141]),
            t(&[0.0, 0.0, 1.0]),
            t(&[0.0, 0.0, 1.0]), // x's second photo: identical to the first
            t(&[0.0, -1.0, 0.0]),
            t(&[-1.0, 0.0, 0.0]),
            PhotoTemplate::SeveralFaces,
        ];
        let split = Split {
            gallery: vec![vec![0], vec![2]],
            mated: vec![(1, 0), (3, 1)],
            // w's only photo was refused: it finds nobody and does not stop the curve.
            non_mated: vec![4, 5, 6, 7, 8],
        };
        let cal = Calibration {
            metric: Metric::Cosine,
            knots: [-1.0, 0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99],
        };
        let curve = gallery_curve(&split, &identities, &templates, &[1, 2, 3, 5], 1, &cal);
        let sizes: Vec<usize> = curve.iter().map(|p| p.templates).collect();
        // 5 templates would need 3 distractors of identities other than x for x's probes:
        // only y and z exist. The largest reachable is 2 enrolled + 2.
        assert_eq!(sizes, [1, 2, 3, 4]);
        assert_eq!(curve[0].mated_probes, 1);
        assert_eq!(curve[1].mated_probes, 2);
        assert_eq!(curve[1].rank1_identification_rate, 1.0);
        // Strangers far from everyone but themselves: no false accept at 0.6, whichever
        // distractor each probe meets, though the arithmetic predicts some.
        let three = &curve[2];
        assert_eq!(three.distractors, 1);
        assert_eq!(three.non_mated_probes, 5);
        assert_eq!(three.at_score[0].score, 0.6);
        assert_eq!(three.at_score[0].false_accepts, 0);
        assert!(three.at_score[0].predicted_fpir > 0.0);
        assert_eq!(three.at_score[0].fnir, 0.0, "both mates are found");
    }
}
