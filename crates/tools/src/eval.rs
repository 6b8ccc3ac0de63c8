//! Verification metrics for `facegate eval`: accuracy, EER, TAR at fixed FAR, over listed
//! pairs and over every pair of the listed images.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use facegate_core::config::Config;
use facegate_core::engine::similarity::Calibration;
use facegate_core::engine::{most_central, Engine, EngineError};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {why} (expected `left,right,same` with same = 0 or 1)")]
    Format {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("{path} lists no pairs")]
    Empty { path: PathBuf },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub left: usize,
    pub right: usize,
    pub same: bool,
}

/// The pairs of a CSV file plus the distinct images they name (paths resolved against the
/// CSV's folder).
#[derive(Debug, Clone)]
pub struct PairList {
    pub images: Vec<PathBuf>,
    pub pairs: Vec<Pair>,
}

pub fn read_pairs(path: &Path) -> Result<PairList, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Read {
        path: path.to_owned(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut index = std::collections::HashMap::new();
    let mut images = Vec::new();
    let mut pairs = Vec::new();
    let mut intern = |name: &str| -> usize {
        *index.entry(name.to_owned()).or_insert_with(|| {
            images.push(base.join(name));
            images.len() - 1
        })
    };
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.starts_with("left,")) {
            continue;
        }
        let err = |why: &str| EvalError::Format {
            path: path.to_owned(),
            line: i + 1,
            why: why.to_owned(),
        };
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != 3 {
            return Err(err("not three fields"));
        }
        let same = match fields[2] {
            "1" | "true" => true,
            "0" | "false" => false,
            _ => return Err(err("third field is not 0 or 1")),
        };
        let left = intern(fields[0]);
        let right = intern(fields[1]);
        pairs.push(Pair { left, right, same });
    }
    if pairs.is_empty() {
        return Err(EvalError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(PairList { images, pairs })
}

/// The template of the most central face of each image (`None`: no usable face, or the file
/// could not be read), computed on `threads` engines in parallel.
pub fn embed_images(
    config: &Config,
    images: &[PathBuf],
    threads: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<Option<Vec<f32>>>, EvalError> {
    map_images(config, images, threads, progress, |engine, path| {
        let embedding = embed_file(engine, path);
        if let Err(e) = &embedding {
            tracing::warn!(image = %path.display(), error = %e, "image failed");
        }
        embedding.ok().flatten()
    })
}

/// `each` of every image, on `threads` engines in parallel (one ONNX Runtime thread each),
/// in the images' order.
pub fn map_images<T: Clone + Default + Send>(
    config: &Config,
    images: &[PathBuf],
    threads: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
    each: impl Fn(&mut Engine, &Path) -> T + Sync,
) -> Result<Vec<T>, EvalError> {
    let runtime = facegate_core::engine::runtime::Runtime::load(&config.inference)
        .map_err(EngineError::from)?;
    let mut single = config.clone();
    single.inference.threads = 1;
    let engines: Vec<Engine> = (0..threads.max(1))
        .map(|_| Engine::with_runtime(&runtime, &single))
        .collect::<Result<_, _>>()?;
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results = Mutex::new(vec![T::default(); images.len()]);
    std::thread::scope(|s| {
        for mut engine in engines {
            let (next, done, results, each) = (&next, &done, &results, &each);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= images.len() {
                    break;
                }
                let value = each(&mut engine, &images[i]);
                results.lock().expect("no panics while locked")[i] = value;
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, images.len());
            });
        }
    });
    Ok(results.into_inner().expect("threads joined"))
}

fn embed_file(engine: &mut Engine, path: &Path) -> Result<Option<Vec<f32>>, EngineError> {
    let bytes = std::fs::read(path)
        .map_err(|e| EngineError::Inference(format!("{}: {e}", path.display())))?;
    let frame = engine.decode(&bytes)?;
    let faces = engine.analyse(&frame)?;
    Ok(most_central(&faces, frame.width(), frame.height()).and_then(|f| f.embedding.clone()))
}

/// Fraction of `genuine` strictly above the threshold that lets at most `far` of the
/// impostors through. `impostor_desc` must be sorted most-alike first. Returns (TAR,
/// threshold closeness).
pub fn tar_at_far(genuine: &[f32], impostor_desc: &[f32], far: f64) -> (f64, f32) {
    let allowed = (far * impostor_desc.len() as f64).floor() as usize;
    let threshold = impostor_desc
        .get(allowed)
        .copied()
        .unwrap_or(f32::NEG_INFINITY);
    let accepted = genuine.iter().filter(|&&g| g > threshold).count();
    (accepted as f64 / genuine.len().max(1) as f64, threshold)
}

/// Every score labelled genuine (`true`) or impostor, least alike first.
fn labelled_ascending(genuine: &[f32], impostor: &[f32]) -> Vec<(f32, bool)> {
    let mut all: Vec<(f32, bool)> = genuine
        .iter()
        .map(|&g| (g, true))
        .chain(impostor.iter().map(|&i| (i, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    all
}

/// Equal error rate: where the false-accept and false-reject rates cross.
pub fn equal_error_rate(genuine: &[f32], impostor: &[f32]) -> f64 {
    let all = labelled_ascending(genuine, impostor);
    let (ng, ni) = (genuine.len() as f64, impostor.len() as f64);
    // Threshold just above all[k]: rejects everything up to k.
    let mut rejected_genuine = 0.0;
    let mut rejected_impostor = 0.0;
    let mut best = 1.0f64;
    for (_, is_genuine) in &all {
        if *is_genuine {
            rejected_genuine += 1.0;
        } else {
            rejected_impostor += 1.0;
        }
        let frr = rejected_genuine / ng;
        let far = 1.0 - rejected_impostor / ni;
        best = best.min(frr.max(far));
    }
    best
}

/// Accuracy when accepting closeness ≥ `threshold`.
pub fn accuracy_at(genuine: &[f32], impostor: &[f32], threshold: f32) -> f64 {
    let right = genuine.iter().filter(|&&g| g >= threshold).count()
        + impostor.iter().filter(|&&i| i < threshold).count();
    right as f64 / (genuine.len() + impostor.len()).max(1) as f64
}

/// Best accuracy over all thresholds, and the threshold reaching it.
pub fn best_accuracy(genuine: &[f32], impostor: &[f32]) -> (f64, f32) {
    let all = labelled_ascending(genuine, impostor);
    let total = all.len() as f64;
    // Start with the threshold below everything: every genuine right, every impostor wrong.
    let mut right = genuine.len() as f64;
    let mut best = (right / total, f32::NEG_INFINITY);
    for (k, (v, is_genuine)) in all.iter().enumerate() {
        if *is_genuine {
            right -= 1.0;
        } else {
            right += 1.0;
        }
        let next = all.get(k + 1).map(|n| n.0).unwrap_or(f32::INFINITY);
        if next > *v && right / total > best.0 {
            best = (right / total, next);
        }
    }
    best
}

#[derive(Debug, Clone, Serialize)]
pub struct AllPairs {
    pub all_genuine_pairs: usize,
    pub all_impostor_pairs: usize,
    #[serde(rename = "all_tar_at_far_1e-3")]
    pub tar_1e3: f64,
    #[serde(rename = "all_tar_at_far_1e-4")]
    pub tar_1e4: f64,
    #[serde(rename = "all_tar_at_far_1e-5")]
    pub tar_1e5: f64,
    /// Raw closeness at FMR 1, 1e-1 … 1e-8 (see `engine::similarity`).
    pub calibration_knots: Vec<f32>,
    /// Closeness of every genuine pair (−∞ where an image had no template).
    #[serde(skip)]
    pub genuine: Vec<f32>,
}

impl AllPairs {
    /// Share of genuine pairs at or above `closeness`.
    pub fn true_match_rate(&self, closeness: f32) -> f64 {
        let hits = self.genuine.iter().filter(|&&g| g >= closeness).count();
        hits as f64 / self.genuine.len().max(1) as f64
    }
}

/// Score every pair of images; identity = the image's parent folder name. Images without a
/// template count as non-matches on both sides.
pub fn all_pairs(
    images: &[PathBuf],
    templates: &[Option<Vec<f32>>],
    metric: facegate_core::engine::embedder::Metric,
) -> AllPairs {
    let identity: Vec<Option<&std::ffi::OsStr>> = images
        .iter()
        .map(|p| p.parent().and_then(|d| d.file_name()))
        .collect();
    let mut genuine = Vec::new();
    let mut impostor = Vec::with_capacity(images.len() * images.len() / 2);
    for i in 0..images.len() {
        for j in i + 1..images.len() {
            let c = match (&templates[i], &templates[j]) {
                (Some(a), Some(b)) => metric.closeness(metric.compare(a, b)),
                _ => f32::NEG_INFINITY,
            };
            if identity[i].is_some() && identity[i] == identity[j] {
                genuine.push(c);
            } else {
                impostor.push(c);
            }
        }
    }
    let finite: Vec<f32> = impostor.iter().copied().filter(|v| v.is_finite()).collect();
    let knots = facegate_core::engine::similarity::calibrate(metric, finite)
        .map(|c| c.knots.to_vec())
        .unwrap_or_default();
    impostor.sort_by(|a, b| b.total_cmp(a));
    AllPairs {
        all_genuine_pairs: genuine.len(),
        all_impostor_pairs: impostor.len(),
        tar_1e3: tar_at_far(&genuine, &impostor, 1e-3).0,
        tar_1e4: tar_at_far(&genuine, &impostor, 1e-4).0,
        tar_1e5: tar_at_far(&genuine, &impostor, 1e-5).0,
        calibration_knots: knots,
        genuine,
    }
}

/// What `facegate eval` prints: verification figures over the listed pairs and, with
/// `all_pairs`, over every pair of the listed images.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub embedder: &'static str,
    pub pairs: usize,
    pub images: usize,
    /// Images without a template (no face, or one that could not be aligned).
    pub failures_to_enrol: usize,
    /// Accuracy at the default similarity score threshold (0.7).
    pub accuracy_at_default: f64,
    pub accuracy_best: f64,
    pub threshold_best_raw: f32,
    pub threshold_best_score: f32,
    pub eer: f64,
    #[serde(rename = "tar_at_far_1e-2")]
    pub tar_at_far_1e2: f64,
    #[serde(rename = "tar_at_far_1e-3")]
    pub tar_at_far_1e3: f64,
    #[serde(rename = "threshold_at_far_1e-3")]
    pub threshold_at_far_1e3: f32,
    #[serde(rename = "threshold_at_far_1e-3_raw")]
    pub threshold_at_far_1e3_raw: f32,
    pub images_per_second: f64,
    pub threads: usize,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub all: Option<AllPairs>,
    /// True-match rate over all genuine pairs at the score levels of docs/accuracy.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_true_match_rate_at_score: Option<std::collections::BTreeMap<String, f64>>,
}

/// Score levels at which the all-pairs true-match rate is reported.
const SCORE_LEVELS: [f32; 5] = [0.5, 0.6, 0.67, 0.7, 0.8];

/// Embed every image of `list` on `threads` engines and compute the report.
pub fn evaluate(
    config: &Config,
    list: &PairList,
    threads: usize,
    all: bool,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<EvalReport, EvalError> {
    let started = std::time::Instant::now();
    let templates = embed_images(config, &list.images, threads, progress)?;
    let seconds = started.elapsed().as_secs_f64();
    let cal = Calibration::for_embedder(config.inference.embedder);
    let metric = cal.metric;
    let closeness = |p: &Pair| match (&templates[p.left], &templates[p.right]) {
        (Some(a), Some(b)) => metric.closeness(metric.compare(a, b)),
        _ => f32::NEG_INFINITY, // a failure to enrol is a non-match
    };
    let genuine: Vec<f32> = list
        .pairs
        .iter()
        .filter(|p| p.same)
        .map(closeness)
        .collect();
    let impostor: Vec<f32> = list
        .pairs
        .iter()
        .filter(|p| !p.same)
        .map(closeness)
        .collect();
    let mut impostor_desc = impostor.clone();
    impostor_desc.sort_by(|a, b| b.total_cmp(a));
    let default_threshold = metric.closeness(cal.raw_threshold(0.7));
    let (best, best_threshold) = best_accuracy(&genuine, &impostor);
    let (tar2, _) = tar_at_far(&genuine, &impostor_desc, 1e-2);
    let (tar3, thr3) = tar_at_far(&genuine, &impostor_desc, 1e-3);
    let raw_of = |c: f32| metric.raw_from_closeness(c);
    let all = all.then(|| all_pairs(&list.images, &templates, metric));
    let levels = all.as_ref().map(|ap| {
        SCORE_LEVELS
            .iter()
            .map(|&s| {
                let rate = ap.true_match_rate(metric.closeness(cal.raw_threshold(s)));
                (format!("{s}"), rate)
            })
            .collect()
    });
    Ok(EvalReport {
        embedder: config.inference.embedder.name(),
        pairs: list.pairs.len(),
        images: list.images.len(),
        failures_to_enrol: templates.iter().filter(|t| t.is_none()).count(),
        accuracy_at_default: accuracy_at(&genuine, &impostor, default_threshold),
        accuracy_best: best,
        threshold_best_raw: raw_of(best_threshold),
        threshold_best_score: cal.score(raw_of(best_threshold)),
        eer: equal_error_rate(&genuine, &impostor),
        tar_at_far_1e2: tar2,
        tar_at_far_1e3: tar3,
        threshold_at_far_1e3: cal.score(raw_of(thr3)),
        threshold_at_far_1e3_raw: raw_of(thr3),
        images_per_second: list.images.len() as f64 / seconds,
        threads,
        all,
        all_true_match_rate_at_score: levels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_at_far_uses_the_threshold_that_admits_the_allowed_impostors() {
        let impostor: Vec<f32> = (0..1000).rev().map(|i| i as f32 / 1000.0).collect();
        let genuine = [0.9995, 0.9985, 0.5];
        let (tar, thr) = tar_at_far(&genuine, &impostor, 1e-3);
        assert_eq!(thr, 0.998, "one impostor (0.999) may pass");
        assert!((tar - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn perfectly_separated_scores_have_zero_eer_and_full_accuracy() {
        let g = [0.8, 0.9, 0.95];
        let i = [0.1, 0.2, 0.3, 0.4];
        assert_eq!(equal_error_rate(&g, &i), 0.0);
        let (acc, thr) = best_accuracy(&g, &i);
        assert_eq!(acc, 1.0);
        assert!(thr > 0.4 && thr <= 0.8);
        assert_eq!(accuracy_at(&g, &i, 0.5), 1.0);
    }

    #[test]
    fn overlapping_scores_give_the_crossing_error_rate() {
        let g = [0.2, 0.6, 0.7, 0.8];
        let i = [0.1, 0.3, 0.4, 0.65];
        assert!((equal_error_rate(&g, &i) - 0.25).abs() < 1e-9);
        assert!((best_accuracy(&g, &i).0 - 0.75).abs() < 1e-9);
    }

    #[test]
    fn pairs_file_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pairs.csv");
        std::fs::write(&p, "left,right,same\na.jpg,b.jpg,1\na.jpg,c.jpg,maybe\n").unwrap();
        let err = read_pairs(&p).unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
        std::fs::write(
            &p,
            "left,right,same\na/1.jpg,b/1.jpg,0\na/1.jpg,a/2.jpg,1\n",
        )
        .unwrap();
        let list = read_pairs(&p).unwrap();
        assert_eq!(list.images.len(), 3, "a/1.jpg is listed once");
        assert_eq!(
            list.pairs[1],
            Pair {
                left: 0,
                right: 2,
                same: true
            }
        );
    }
}
