//! `inference.precision = "auto"`: which of an embedder's models (fp32, int8) this device runs,
//! chosen by timing both on it rather than by the name of its architecture.
//!
//! int8 was 5× faster than fp32 on one x86 build machine and slower on another x86 machine of
//! the same kind with AVX-512 VNNI/BF16; ARM cores without dot-product instructions can go
//! either way. So when a store is created, both models are timed here on a one-face batch,
//! the faster one is chosen (int8 only where its accuracy loss is within the documented
//! budget), and the choice is recorded with the store as its model fingerprint. Every later
//! start reads that record back, because templates of the two models are not comparable.

use std::time::{Duration, Instant};

use super::embedder::{self, OnnxEmbedder};
use super::runtime::Runtime;
use super::EngineError;
use crate::config::{EmbedderKind, InferenceConfig, Precision};

/// Runs of each model timed after one warm-up run; the median counts.
pub const TIMED_RUNS: usize = 5;

/// Whether the int8 model of `kind` stays within the accuracy budget of docs/accuracy.md
/// (at most 0.3 points of accuracy and 1 point of all-pairs TAR at FAR 1e-4 lost against fp32
/// on the whole evaluation set). arcface512's int8 model was measured within it (−0.03 points
/// of accuracy, −0.28 points of TAR at 1e-4); dlib128 has no int8 model.
pub fn int8_within_budget(kind: EmbedderKind) -> bool {
    match kind {
        EmbedderKind::Arcface512 => true,
        EmbedderKind::Dlib128 => false,
    }
}

/// One model's measured embedding time on this device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub precision: Precision,
    /// Median of [`TIMED_RUNS`] runs on one face (two chips with `mirror_average`).
    pub median: Duration,
}

/// What `auto` chose and why, for the log and `doctor`.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoChoice {
    pub precision: Precision,
    pub timings: Vec<Timing>,
    pub reason: String,
}

impl AutoChoice {
    /// The measured median of `precision`'s model in milliseconds, if it was timed.
    pub fn median_ms(&self, precision: Precision) -> Option<f64> {
        self.timings
            .iter()
            .find(|t| t.precision == precision)
            .map(|t| t.median.as_secs_f64() * 1e3)
    }
}

/// Time every model of `kind` that exists in the model folder (fp32 always; int8 when `make
/// models-int8` made it).
pub fn time_models(
    runtime: &Runtime,
    kind: EmbedderKind,
    mirror_average: bool,
) -> Result<Vec<Timing>, EngineError> {
    let mut timings = Vec::new();
    for precision in [Precision::Fp32, Precision::Int8] {
        if !runtime
            .model_path(embedder::model_file(kind, precision))
            .exists()
        {
            continue;
        }
        let mut model = OnnxEmbedder::open(runtime, kind, precision, mirror_average)?;
        model.run_one_face()?; // warm-up: first-run allocations and kernel selection
        let mut runs: Vec<Duration> = (0..TIMED_RUNS)
            .map(|_| {
                let start = Instant::now();
                model.run_one_face().map(|()| start.elapsed())
            })
            .collect::<Result<_, _>>()?;
        runs.sort();
        timings.push(Timing {
            precision,
            median: runs[runs.len() / 2],
        });
    }
    Ok(timings)
}

/// The faster model, except that int8 is chosen only where it is within the accuracy budget.
pub fn choose(kind: EmbedderKind, timings: &[Timing]) -> AutoChoice {
    let of = |p: Precision| timings.iter().find(|t| t.precision == p).map(|t| t.median);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (precision, reason) = match (of(Precision::Fp32), of(Precision::Int8)) {
        (_, None) => (
            Precision::Fp32,
            "no int8 model in the model folder".to_owned(),
        ),
        (_, Some(_)) if !int8_within_budget(kind) => (
            Precision::Fp32,
            "its int8 model is outside the accuracy budget".to_owned(),
        ),
        (None, Some(_)) => (
            Precision::Int8,
            "no fp32 model in the model folder".to_owned(),
        ),
        (Some(fp32), Some(int8)) if int8 < fp32 => (
            Precision::Int8,
            format!(
                "int8 is faster here ({:.1} ms vs {:.1} ms fp32)",
                ms(int8),
                ms(fp32)
            ),
        ),
        (Some(fp32), Some(int8)) => (
            Precision::Fp32,
            format!(
                "fp32 is as fast or faster here ({:.1} ms vs {:.1} ms int8)",
                ms(fp32),
                ms(int8)
            ),
        ),
    };
    AutoChoice {
        precision,
        timings: timings.to_vec(),
        reason,
    }
}

/// How the precision of the engines was settled.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// `inference.precision` names one (or `auto` met a store of another embedder, which
    /// opening the store then reports).
    Configured(Precision),
    /// `auto` with an existing store: the model recorded with it.
    Recorded { precision: Precision, model: String },
    /// `auto` with a new store: both models timed on this device.
    Timed(AutoChoice),
}

impl Settled {
    pub fn precision(&self) -> Precision {
        match self {
            Settled::Configured(p) => *p,
            Settled::Recorded { precision, .. } => *precision,
            Settled::Timed(choice) => choice.precision,
        }
    }
}

/// Settle `inference.precision` for a store whose recorded model is `recorded_model` (`None`:
/// the store is about to be created).
pub fn settle(
    runtime: &Runtime,
    inference: &InferenceConfig,
    recorded_model: Option<&str>,
) -> Result<Settled, EngineError> {
    let kind = inference.embedder;
    if inference.precision != Precision::Auto {
        return Ok(Settled::Configured(inference.precision));
    }
    if let Some(model) = recorded_model {
        return Ok(match recorded(runtime, kind, model) {
            Some(precision) => Settled::Recorded {
                precision,
                model: model.to_owned(),
            },
            None => Settled::Configured(inference.precision.resolve(kind)),
        });
    }
    let timings = time_models(runtime, kind, inference.mirror_average)?;
    Ok(Settled::Timed(choose(kind, &timings)))
}

/// The precision whose model has the fingerprint a store recorded, if either does.
pub fn recorded(runtime: &Runtime, kind: EmbedderKind, stored: &str) -> Option<Precision> {
    [Precision::Fp32, Precision::Int8]
        .into_iter()
        .find(|&p| embedder::fingerprint(&runtime.model_dir, kind, p).is_ok_and(|f| f == stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timings(fp32_ms: u64, int8_ms: Option<u64>) -> Vec<Timing> {
        let mut v = vec![Timing {
            precision: Precision::Fp32,
            median: Duration::from_millis(fp32_ms),
        }];
        if let Some(ms) = int8_ms {
            v.push(Timing {
                precision: Precision::Int8,
                median: Duration::from_millis(ms),
            });
        }
        v
    }

    #[test]
    fn auto_takes_int8_where_it_is_faster_on_this_device() {
        let c = choose(EmbedderKind::Arcface512, &timings(76, Some(15)));
        assert_eq!(c.precision, Precision::Int8, "{}", c.reason);
    }

    #[test]
    fn auto_keeps_fp32_where_int8_is_slower_on_this_device() {
        // The AVX-512 VNNI/BF16 machine: fp32 8.4 ms, int8 10.7 ms.
        let c = choose(EmbedderKind::Arcface512, &timings(8, Some(11)));
        assert_eq!(c.precision, Precision::Fp32, "{}", c.reason);
        assert!(c.reason.contains("8.0 ms"), "{}", c.reason);
    }

    #[test]
    fn auto_never_takes_an_int8_model_outside_the_accuracy_budget_however_fast() {
        let c = choose(EmbedderKind::Dlib128, &timings(50, Some(5)));
        assert_eq!(c.precision, Precision::Fp32);
    }

    #[test]
    fn auto_without_an_int8_model_is_fp32() {
        let c = choose(EmbedderKind::Arcface512, &timings(76, None));
        assert_eq!(c.precision, Precision::Fp32);
    }
}
