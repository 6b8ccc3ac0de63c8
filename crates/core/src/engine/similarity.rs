//! The similarity score: one number in [0, 1] that means the same security level whichever
//! embedder is active.
//!
//! The score is defined by the false-match rate (FMR) of a single comparison, measured on the
//! all-pairs impostor distribution of an LFW-derived verification set (3.6 million impostor
//! pairs, `facegate eval --all-pairs`):
//!
//! ```text
//! score = 0.2 + 0.1 × (−log10 FMR)      0.5 ⇔ FMR 1e-3, 0.6 ⇔ 1e-4, 0.7 ⇔ 1e-5, 0.8 ⇔ 1e-6
//! ```
//!
//! Each embedder has a table of raw values (cosine, or Euclidean distance) at FMR = 1 (the
//! least similar impostor seen, score 0), 1e-1 … 1e-5 (measured) and 1e-6 … 1e-8 (extrapolated
//! log-linearly from the 1e-3…1e-5 tail, where the data runs out). Between knots the score is
//! linear in the raw value, so the mapping is monotone and invertible.

use super::embedder::Metric;
use crate::config::EmbedderKind;

/// FMR exponents of the knots after the first: 1e-1 … 1e-8.
pub const KNOT_EXPONENTS: [i32; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

/// Score at a false-match rate of 10^-e.
pub fn score_at_exponent(e: f32) -> f32 {
    (0.2 + 0.1 * e).clamp(0.0, 1.0)
}

/// The `e` of the false-match rate 10^-e that a score means (the inverse of
/// [`score_at_exponent`] inside [0, 1]).
pub fn exponent_at_score(score: f32) -> f32 {
    (score - 0.2) / 0.1
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    pub metric: Metric,
    /// Closeness (higher = more alike: cosine, or −distance) at FMR 1, 1e-1, …, 1e-8.
    pub knots: [f32; 9],
}

// Measured with `facegate eval --pairs PAIRS.csv --all-pairs` (docs/accuracy.md) on the
// default configuration (both detector ranges, one FaceMesh pass, mirrored averaging): 2,687
// images, 3,605,038 impostor pairs, no failure to enrol. The `calibration_knots` it prints are
// these tables; re-run it and paste them when the pipeline changes. See docs/accuracy.md,
// "Similarity score".
const ARCFACE512: Calibration = Calibration {
    metric: Metric::Cosine,
    knots: [
        -0.4794, 0.1295, 0.2444, 0.3377, 0.4150, 0.4756, 0.5473, 0.6163, 0.6852,
    ],
};
const DLIB128: Calibration = Calibration {
    metric: Metric::Euclidean,
    knots: [
        -1.1856, -0.6929, -0.6036, -0.5335, -0.4696, -0.4181, -0.3583, -0.3006, -0.2429,
    ],
};

impl Calibration {
    pub fn for_embedder(kind: EmbedderKind) -> Calibration {
        match kind {
            EmbedderKind::Arcface512 => ARCFACE512,
            EmbedderKind::Dlib128 => DLIB128,
        }
    }

    fn knot_score(i: usize) -> f32 {
        if i == 0 {
            0.0
        } else {
            score_at_exponent(KNOT_EXPONENTS[i - 1] as f32)
        }
    }

    /// Raw comparison value (cosine or distance) → score in [0, 1].
    pub fn score(&self, raw: f32) -> f32 {
        let c = self.metric.closeness(raw);
        let k = &self.knots;
        if c.is_nan() || c <= k[0] {
            return 0.0;
        }
        for i in 1..k.len() {
            if c <= k[i] {
                let t = (c - k[i - 1]) / (k[i] - k[i - 1]);
                let (s0, s1) = (Self::knot_score(i - 1), Self::knot_score(i));
                return s0 + t * (s1 - s0);
            }
        }
        1.0
    }

    /// Score → the raw value at which it is reached (inverse of `score`).
    pub fn raw_threshold(&self, score: f32) -> f32 {
        let k = &self.knots;
        let s = score.clamp(0.0, 1.0);
        for i in 1..k.len() {
            let (s0, s1) = (Self::knot_score(i - 1), Self::knot_score(i));
            if s <= s1 {
                let t = (s - s0) / (s1 - s0);
                let c = k[i - 1] + t * (k[i] - k[i - 1]);
                return self.metric.raw_from_closeness(c);
            }
        }
        self.metric.raw_from_closeness(k[8])
    }
}

/// Fit the knots from impostor closeness values (any order). Knots beyond what the data can
/// show (fewer than 20 impostors above the threshold) are extrapolated on the log-linear tail
/// through the measured 1e-3 … deepest reliable knot.
pub fn calibrate(metric: Metric, mut impostor_closeness: Vec<f32>) -> Option<Calibration> {
    let n = impostor_closeness.len();
    if n < 1000 {
        return None;
    }
    impostor_closeness.sort_by(|a, b| b.total_cmp(a)); // most alike first
    let mut knots = [0f32; 9];
    knots[0] = *impostor_closeness.last()?;
    let mut reliable = 0;
    for (i, &e) in KNOT_EXPONENTS.iter().enumerate() {
        let k = (n as f64 * 10f64.powi(-e)).floor() as usize;
        if k >= 20 {
            knots[i + 1] = impostor_closeness[k - 1];
            reliable = i + 1;
        }
    }
    if reliable < 3 {
        return None;
    }
    // Least-squares line of closeness against exponent over the knots 1e-3 … deepest reliable.
    let pts: Vec<(f32, f32)> = (3..=reliable).map(|i| (i as f32, knots[i])).collect();
    let (slope, intercept) = if pts.len() >= 2 {
        let m = pts.len() as f32;
        let sx: f32 = pts.iter().map(|p| p.0).sum();
        let sy: f32 = pts.iter().map(|p| p.1).sum();
        let sxx: f32 = pts.iter().map(|p| p.0 * p.0).sum();
        let sxy: f32 = pts.iter().map(|p| p.0 * p.1).sum();
        let slope = (m * sxy - sx * sy) / (m * sxx - sx * sx);
        (slope, (sy - slope * sx) / m)
    } else {
        let slope = knots[reliable] - knots[reliable - 1];
        (slope, knots[reliable] - slope * reliable as f32)
    };
    for (i, knot) in knots.iter_mut().enumerate().skip(reliable + 1) {
        *knot = intercept + slope * i as f32;
    }
    // Keep the table strictly increasing so the mapping stays invertible.
    for i in 1..knots.len() {
        if knots[i] <= knots[i - 1] {
            knots[i] = knots[i - 1] + 1e-4;
        }
    }
    Some(Calibration { metric, knots })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_levels_follow_the_false_match_rate() {
        assert!((score_at_exponent(3.0) - 0.5).abs() < 1e-6);
        assert!((score_at_exponent(5.0) - 0.7).abs() < 1e-6);
        assert!((score_at_exponent(6.0) - 0.8).abs() < 1e-6);
    }

    #[test]
    fn score_is_monotone_and_the_threshold_inverts_it() {
        for kind in [EmbedderKind::Arcface512, EmbedderKind::Dlib128] {
            let cal = Calibration::for_embedder(kind);
            for s in [0.05, 0.3, 0.5, 0.6, 0.67, 0.7, 0.8, 0.95] {
                let raw = cal.raw_threshold(s);
                assert!((cal.score(raw) - s).abs() < 1e-4, "{kind:?} {s} -> {raw}");
            }
            let raws: Vec<f32> = (0..200).map(|i| -1.5 + i as f32 * 0.02).collect();
            let scores: Vec<f32> = raws.iter().map(|&r| cal.score(r)).collect();
            let increasing = cal.metric == Metric::Cosine;
            for w in scores.windows(2) {
                if increasing {
                    assert!(w[1] >= w[0]);
                } else {
                    assert!(w[1] <= w[0]);
                }
            }
            assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
        }
    }

    #[test]
    fn calibration_puts_the_score_levels_at_the_measured_false_match_rates() {
        // Impostor closeness uniform on [0, 1): FMR(t) = 1 - t.
        let n = 1_000_000;
        let v: Vec<f32> = (0..n).map(|i| i as f32 / n as f32).collect();
        let cal = calibrate(Metric::Cosine, v).unwrap();
        assert!((cal.knots[3] - 0.999).abs() < 1e-4, "{:?}", cal.knots);
        assert!((cal.score(0.999) - 0.5).abs() < 1e-3);
        for w in cal.knots.windows(2) {
            assert!(w[1] > w[0], "{:?}", cal.knots);
        }
    }
}
