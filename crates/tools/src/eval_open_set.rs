//! Open-set identification for `facegate eval --open-set`, as NIST FRTE 1:N measures it and
//! as a door meets it: most people in front of it are not enrolled. The identities of a
//! labelled set (identity = a photo's folder) are shuffled with a seed; half are enrolled, the
//! other half's photos are non-mated probes (strangers), the enrolled people's other photos
//! mated probes. Every photo goes through the API's one-face rule: a photo it refuses enrols
//! nothing, and a refused probe finds no one (a miss when mated).
//!
//! The door acts on the best candidate, so a mated probe counts as found when its best
//! candidate is its mate at or above the threshold (rank 1); a non-mated probe is a false
//! positive when its best candidate reaches the threshold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use facegate_core::config::Config;
use facegate_core::engine::embedder::{l2_normalise, Metric};
use facegate_core::engine::one_face::{self, OneFace};
use facegate_core::engine::similarity::Calibration;
use facegate_core::engine::Engine;

use crate::eval::{map_images, EvalError};

/// What the engine and the one-face rule made of a photo.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum PhotoTemplate {
    Template(Vec<f32>),
    /// No usable face, or the file could not be read or decoded.
    #[default]
    NoFace,
    /// Refused as showing several faces (`ERR_MULTIPLE_FACES`).
    SeveralFaces,
}

impl PhotoTemplate {
    pub fn template(&self) -> Option<&[f32]> {
        match self {
            PhotoTemplate::Template(t) => Some(t),
            _ => None,
        }
    }
}

/// The template the API would compute for a photo (`server.secondary_face_ratio` applied).
pub fn photo_template(engine: &mut Engine, path: &Path, ratio: f32) -> PhotoTemplate {
    let analysed = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| engine.decode(&bytes).map_err(|e| e.to_string()))
        .and_then(|frame| {
            let faces = engine.analyse(&frame).map_err(|e| e.to_string())?;
            Ok((frame, faces))
        });
    let (frame, faces) = match analysed {
        Ok(done) => done,
        Err(e) => {
            tracing::warn!(image = %path.display(), error = %e, "image failed");
            return PhotoTemplate::NoFace;
        }
    };
    let usable = |f: &facegate_core::engine::Face| {
        f.embedding.is_some().then(|| one_face::Usable {
            bbox: f.bbox(),
            faint: engine.is_faint(&f.detection),
        })
    };
    match one_face::choose_among(&faces, usable, frame.width(), frame.height(), ratio) {
        OneFace::Chosen(i) => {
            PhotoTemplate::Template(faces[i].embedding.clone().unwrap_or_default())
        }
        OneFace::NoFace => PhotoTemplate::NoFace,
        OneFace::Several(_) => PhotoTemplate::SeveralFaces,
    }
}

/// Who is enrolled with which photos, and who probes.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Per enrolled identity, its enrolment photos (indexes into the photo list).
    pub gallery: Vec<Vec<usize>>,
    /// Each mated probe: (photo, its identity's gallery entry).
    pub mated: Vec<(usize, usize)>,
    pub non_mated: Vec<usize>,
}

/// The seeded split. Identities with at least `min_photos` photos are eligible for the
/// gallery; half of them (shuffled) are enrolled with their first `enrol_photos` photos (in
/// a seeded order) and probe with their photos from `probe_from` on, so that runs with 1, 2
/// and 3 enrolment photos search with the same probes. Every photo of every identity not
/// enrolled is a non-mated probe.
pub fn split(
    identities: &[String],
    seed: u64,
    enrol_photos: usize,
    min_photos: usize,
    probe_from: usize,
) -> Split {
    let mut by_identity: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, who) in identities.iter().enumerate() {
        by_identity.entry(who).or_default().push(i);
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut eligible: Vec<&str> = by_identity
        .iter()
        .filter(|(_, photos)| photos.len() >= min_photos.max(1))
        .map(|(who, _)| *who)
        .collect();
    rng.shuffle(&mut eligible);
    let enrolled: std::collections::BTreeSet<&str> =
        eligible[..eligible.len() / 2].iter().copied().collect();
    let mut out = Split {
        gallery: Vec::new(),
        mated: Vec::new(),
        non_mated: Vec::new(),
    };
    for (who, photos) in &by_identity {
        if !enrolled.contains(who) {
            out.non_mated.extend(photos);
            continue;
        }
        let mut photos = photos.clone();
        rng.shuffle(&mut photos);
        let entry = out.gallery.len();
        out.gallery
            .push(photos[..enrol_photos.min(photos.len())].to_vec());
        out.mated
            .extend(photos.iter().skip(probe_from).map(|&p| (p, entry)));
    }
    out
}

/// How a person's several templates make one score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fusion {
    /// The best score over the person's templates.
    Best,
    /// The score of the normalised mean of the person's templates.
    Mean,
}

/// Each gallery entry's templates as searched: all of them (`Best`) or their mean (`Mean`,
/// normalised again where the metric is the cosine of normalised templates).
fn gallery_templates(
    split: &Split,
    templates: &[PhotoTemplate],
    fusion: Fusion,
    metric: Metric,
) -> Vec<Vec<Vec<f32>>> {
    split
        .gallery
        .iter()
        .map(|photos| {
            let ts: Vec<&[f32]> = photos
                .iter()
                .filter_map(|&p| templates[p].template())
                .collect();
            match fusion {
                Fusion::Best => ts.iter().map(|t| t.to_vec()).collect(),
                Fusion::Mean if ts.is_empty() => Vec::new(),
                Fusion::Mean => {
                    let mut mean = vec![0.0f32; ts[0].len()];
                    for t in &ts {
                        mean.iter_mut()
                            .zip(*t)
                            .for_each(|(m, x)| *m += x / ts.len() as f32);
                    }
                    if metric == Metric::Cosine {
                        l2_normalise(&mut mean);
                    }
                    vec![mean]
                }
            }
        })
        .collect()
}

/// The best candidate of a probe: (gallery entry, closeness), `None` when the probe has no
/// template or the gallery is empty.
fn best_candidate(
    probe: &[f32],
    gallery: &[Vec<Vec<f32>>],
    metric: Metric,
) -> Option<(usize, f32)> {
    gallery
        .iter()
        .enumerate()
        .flat_map(|(entry, ts)| {
            ts.iter()
                .map(move |t| (entry, metric.closeness(metric.compare(probe, t))))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// The best candidates of every probe: mated (candidate, is the mate) and non-mated.
#[derive(Debug, Clone)]
pub struct Searches {
    /// Per mated probe: the best candidate's closeness if it is the mate, `None` otherwise
    /// (another person ranked first, no template, or a refused photo).
    pub mated: Vec<Option<f32>>,
    /// Per non-mated probe: the best candidate's closeness (`None`: nothing returned).
    pub non_mated: Vec<Option<f32>>,
}

pub fn search(
    split: &Split,
    templates: &[PhotoTemplate],
    fusion: Fusion,
    metric: Metric,
) -> Searches {
    let gallery = gallery_templates(split, templates, fusion, metric);
    let best = |p: usize| {
        templates[p]
            .template()
            .and_then(|t| best_candidate(t, &gallery, metric))
    };
    Searches {
        mated: split
            .mated
            .iter()
            .map(|&(p, mate)| best(p).filter(|(entry, _)| *entry == mate).map(|(_, c)| c))
            .collect(),
        non_mated: split
            .non_mated
            .iter()
            .map(|&p| best(p).map(|(_, c)| c))
            .collect(),
    }
}

impl Searches {
    /// Share of mated probes not found: their best candidate is not their mate, or its
    /// closeness is not accepted by `accept`.
    pub fn fnir(&self, accept: impl Fn(f32) -> bool) -> f64 {
        let found = self.mated.iter().flatten().filter(|&&c| accept(c)).count();
        1.0 - found as f64 / self.mated.len().max(1) as f64
    }

    pub fn fpir(&self, accept: impl Fn(f32) -> bool) -> f64 {
        let false_positives = self
            .non_mated
            .iter()
            .flatten()
            .filter(|&&c| accept(c))
            .count();
        false_positives as f64 / self.non_mated.len().max(1) as f64
    }

    /// The closeness above which at most `fpir` of the non-mated probes pass: the
    /// ⌊fpir × n⌋-th highest best-candidate closeness.
    pub fn threshold_at_fpir(&self, fpir: f64) -> f32 {
        let mut desc: Vec<f32> = self.non_mated.iter().flatten().copied().collect();
        desc.sort_by(|a, b| b.total_cmp(a));
        let allowed = (fpir * self.non_mated.len() as f64).floor() as usize;
        desc.get(allowed).copied().unwrap_or(f32::NEG_INFINITY)
    }

    /// FNIR at the threshold that holds FPIR at `fpir`, and that threshold's closeness.
    pub fn fnir_at_fpir(&self, fpir: f64) -> (f64, f32) {
        let t = self.threshold_at_fpir(fpir);
        (self.fnir(|c| c > t), t)
    }

    /// Rank-1 identification rate: mated probes whose best candidate is their mate.
    pub fn rank1(&self) -> f64 {
        self.mated.iter().flatten().count() as f64 / self.mated.len().max(1) as f64
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OperatingPoint {
    pub fnir: f64,
    /// The similarity score of the threshold.
    pub threshold_score: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct AtScore {
    pub fnir: f64,
    pub fpir: f64,
}

/// One run of the protocol.
#[derive(Debug, Clone, Serialize)]
pub struct OpenSetReport {
    /// "all": every identity eligible, probes from the second photo on; "same probes": only
    /// identities with more photos than the most enrolment photos of the evaluation, probing
    /// with the same photos whatever the number enrolled.
    pub protocol: &'static str,
    pub enrol_photos: usize,
    pub fusion: Fusion,
    pub identities_enrolled: usize,
    /// Gallery entries with no template (every enrolment photo refused or faceless).
    pub failures_to_enrol: usize,
    pub mated_probes: usize,
    pub non_mated_probes: usize,
    pub rank1_identification_rate: f64,
    /// FNIR at FPIR 1e-2, 3e-3 and 1e-3, with the similarity score of each threshold.
    pub fnir_at_fpir: BTreeMap<String, OperatingPoint>,
    /// FNIR and FPIR at similarity scores 0.6, 0.7 and 0.8.
    pub at_score: BTreeMap<String, AtScore>,
}

/// How many refused photos the report names.
const REFUSED_EXAMPLES: usize = 40;

pub const FPIR_POINTS: [(&str, f64); 3] = [("1e-2", 1e-2), ("3e-3", 3e-3), ("1e-3", 1e-3)];
pub const SCORES: [f32; 3] = [0.6, 0.7, 0.8];

pub fn report(
    protocol: &'static str,
    split: &Split,
    templates: &[PhotoTemplate],
    enrol_photos: usize,
    fusion: Fusion,
    cal: &Calibration,
) -> OpenSetReport {
    let metric = cal.metric;
    let searches = search(split, templates, fusion, metric);
    let score_of = |closeness: f32| cal.score(metric.raw_from_closeness(closeness));
    let fnir_at_fpir = FPIR_POINTS
        .iter()
        .map(|(name, fpir)| {
            let (fnir, t) = searches.fnir_at_fpir(*fpir);
            // The API accepts a score at or above its threshold; the evaluation accepts above
            // `t`: the threshold to configure is the next value up.
            let point = OperatingPoint {
                fnir,
                threshold_score: score_of(t.next_up()),
            };
            (name.to_string(), point)
        })
        .collect();
    let at_score = SCORES
        .iter()
        .map(|&s| {
            let t = metric.closeness(cal.raw_threshold(s));
            let at = AtScore {
                fnir: searches.fnir(|c| c >= t),
                fpir: searches.fpir(|c| c >= t),
            };
            (format!("{s}"), at)
        })
        .collect();
    OpenSetReport {
        protocol,
        enrol_photos,
        fusion,
        identities_enrolled: split.gallery.len(),
        failures_to_enrol: split
            .gallery
            .iter()
            .filter(|photos| photos.iter().all(|&p| templates[p].template().is_none()))
            .count(),
        mated_probes: split.mated.len(),
        non_mated_probes: split.non_mated.len(),
        rank1_identification_rate: searches.rank1(),
        fnir_at_fpir,
        at_score,
    }
}

/// What `facegate eval --open-set` prints.
#[derive(Debug, Clone, Serialize)]
pub struct OpenSetEval {
    pub embedder: &'static str,
    pub seed: u64,
    pub secondary_face_ratio: f32,
    pub photos: usize,
    /// Photos the one-face rule refused as showing several faces.
    pub photos_refused_several_faces: usize,
    /// The first of them by name, to look at.
    pub refused_examples: Vec<PathBuf>,
    pub photos_without_face: usize,
    /// The standard run (one enrolment photo, every identity), then, when more than one
    /// enrolment photo is asked for, one run per number on the same probes (and per fusion
    /// when more than one).
    pub runs: Vec<OpenSetReport>,
    /// The standard split searched against galleries of growing size (100, 300, 1,000 and
    /// the largest the set allows), measured FPIR beside the predicted one.
    pub gallery_curve: Vec<crate::eval_gallery_curve::GalleryPoint>,
}

/// Embed every photo once (identity: its folder's name) and run the standard protocol; when
/// `enrol_photos` asks for more than one photo (largest `k`), also one run per number listed
/// in which only identities with at least `k + 1` photos are enrolled and every run probes
/// with their photos after the `k`-th, so those runs compare on the same probes.
pub fn evaluate(
    config: &Config,
    photos: &[PathBuf],
    seed: u64,
    enrol_photos: &[usize],
    threads: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<OpenSetEval, EvalError> {
    let ratio = config.server.secondary_face_ratio;
    let templates = map_images(config, photos, threads, progress, |engine, path| {
        photo_template(engine, path, ratio)
    })?;
    let identities: Vec<String> = photos
        .iter()
        .map(|p| {
            p.parent()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    let cal = Calibration::for_embedder(config.inference.embedder);
    let standard = split(&identities, seed, 1, 1, 1);
    let mut runs = vec![report("all", &standard, &templates, 1, Fusion::Best, &cal)];
    let gallery_curve = crate::eval_gallery_curve::gallery_curve(
        &standard,
        &identities,
        &templates,
        &[100, 300, 1_000, 10_000, 100_000],
        seed,
        &cal,
    );
    let most = enrol_photos.iter().copied().max().unwrap_or(1);
    if most > 1 {
        for &k in enrol_photos {
            let k = k.max(1);
            let same_probes = split(&identities, seed, k, most + 1, most);
            let fusions: &[Fusion] = if k > 1 {
                &[Fusion::Best, Fusion::Mean]
            } else {
                &[Fusion::Best]
            };
            for &fusion in fusions {
                runs.push(report(
                    "same probes",
                    &same_probes,
                    &templates,
                    k,
                    fusion,
                    &cal,
                ));
            }
        }
    }
    Ok(OpenSetEval {
        embedder: config.inference.embedder.name(),
        seed,
        secondary_face_ratio: ratio,
        photos: photos.len(),
        photos_refused_several_faces: templates
            .iter()
            .filter(|t| **t == PhotoTemplate::SeveralFaces)
            .count(),
        refused_examples: {
            let mut refused: Vec<PathBuf> = photos
                .iter()
                .zip(&templates)
                .filter(|(_, t)| **t == PhotoTemplate::SeveralFaces)
                .map(|(p, _)| p.clone())
                .collect();
            refused.sort();
            refused.truncate(REFUSED_EXAMPLES);
            refused
        },
        photos_without_face: templates
            .iter()
            .filter(|t| **t == PhotoTemplate::NoFace)
            .count(),
        runs,
        gallery_curve,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32]) -> PhotoTemplate {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        PhotoTemplate::Template(v.iter().map(|x| x / n).collect())
    }

    #[test]
    fn the_split_enrols_half_the_eligible_identities_and_probes_with_the_rest() {
        // a: 4 photos, b: 4, c: 1, d: 2.
        let who: Vec<String> = ["a", "a", "a", "a", "b", "b", "b", "b", "c", "d", "d"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let s = split(&who, 7, 1, 1, 1);
        assert_eq!(s.gallery.len(), 2, "half of four identities");
        assert!(s.gallery.iter().all(|g| g.len() == 1));
        let enrolled: usize = s.gallery.len() + s.mated.len();
        assert_eq!(
            enrolled + s.non_mated.len(),
            who.len(),
            "every photo has one role"
        );
        assert_eq!(s, split(&who, 7, 1, 1, 1), "the seed decides");
        // Three enrolment photos, probes from the fourth: only a and b are eligible.
        let s3 = split(&who, 7, 3, 4, 3);
        assert_eq!(s3.gallery.len(), 1);
        assert_eq!(s3.gallery[0].len(), 3);
        assert_eq!(s3.mated.len(), 1);
        assert_eq!(
            s3.non_mated.len(),
            7,
            "the other identity of four and c and d"
        );
        let s1 = split(&who, 7, 1, 4, 3);
        assert_eq!(s1.mated, s3.mated, "the same probes whatever the enrolment");
    }

    #[test]
    fn fnir_fpir_and_rank1_follow_the_best_candidate() {
        // Gallery: x (photo 0), y (photo 1). Mated probes: 2 (x, close), 3 (x, but nearer y),
        // 4 (refused). Non-mated: 5 (near x), 6 (far from everyone).
        let templates = vec![
            t(&[1.0, 0.0, 0.0]),
            t(&[0.0, 1.0, 0.0]),
            t(&[0.95, 0.1, 0.0]),
            t(&[0.4, 0.6, 0.0]),
            PhotoTemplate::SeveralFaces,
            t(&[0.8, 0.0, 0.6]),
            t(&[0.0, 0.0, 1.0]),
        ];
        let split = Split {
            gallery: vec![vec![0], vec![1]],
            mated: vec![(2, 0), (3, 0), (4, 0)],
            non_mated: vec![5, 6],
        };
        let s = search(&split, &templates, Fusion::Best, Metric::Cosine);
        assert!((s.rank1() - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(
            s.mated[1], None,
            "ranked y first: a miss whatever the threshold"
        );
        assert!((s.non_mated[0].unwrap() - 0.8).abs() < 1e-6);
        // FPIR 0.5 lets one of the two non-mated through: threshold at the second (0.0).
        let (fnir, threshold) = s.fnir_at_fpir(0.5);
        assert!(threshold.abs() < 1e-6);
        assert!((fnir - 2.0 / 3.0).abs() < 1e-9);
        // FPIR 0: threshold at the highest non-mated (0.8); probe 2 (0.995) still passes.
        let (fnir, threshold) = s.fnir_at_fpir(0.0);
        assert!((threshold - 0.8).abs() < 1e-6);
        assert!((fnir - 2.0 / 3.0).abs() < 1e-9);
        assert!((s.fpir(|c| c >= 0.5) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn several_templates_score_by_the_best_or_by_their_mean() {
        let templates = vec![t(&[1.0, 0.0]), t(&[0.0, 1.0]), t(&[0.0, 1.0])];
        let split = Split {
            gallery: vec![vec![0, 1]],
            mated: vec![(2, 0)],
            non_mated: vec![],
        };
        let best = search(&split, &templates, Fusion::Best, Metric::Cosine);
        assert!((best.mated[0].unwrap() - 1.0).abs() < 1e-6);
        let mean = search(&split, &templates, Fusion::Mean, Metric::Cosine);
        assert!((mean.mated[0].unwrap() - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    }
}
