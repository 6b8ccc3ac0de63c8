//! The score a camera's match needs when the risk is set per attempt, not per comparison.
//!
//! A similarity score means a false-match rate (FMR) of one comparison:
//! `score = 0.2 + 0.1 × (−log10 FMR)` (see `engine::similarity`). A face at a door is compared
//! with every template of the collection, and a stranger is let in when any one of them
//! matches, so with `N` templates the false-accept rate of one attempt (NIST's FPIR) is
//!
//! ```text
//! FPIR(t) = 1 − (1 − FMR(t))^N  ≈  N × FMR(t)
//! ```
//!
//! and the comparison rate that keeps it at `p` is `FMR = 1 − (1 − p)^(1/N)` (≈ `p / N`). Its
//! score is the threshold. The configured `min_similarity_score` stays the floor: a small
//! gallery never lowers the bar the installer set. `N` counts templates, not persons: a person
//! with three faces gives a stranger three chances. A camera searches a track's fused template
//! several times as frames arrive; those searches see nearly the same template and count as
//! one attempt.

use serde::Serialize;

use crate::engine::similarity::{exponent_at_score, score_at_exponent, KNOT_EXPONENTS};

/// A camera's threshold and where it came from (shown in `/health`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GalleryThreshold {
    /// `cameras.min_similarity_score`.
    pub configured: f32,
    /// `cameras.max_false_accept_per_attempt` (0: off).
    pub max_false_accept_per_attempt: f64,
    /// Templates in the camera's collection when this was worked out.
    pub templates: usize,
    /// The false-match rate one comparison may have (`None`: off).
    pub per_comparison_fmr: Option<f64>,
    /// The score a match needs now: the larger of the configured one and the one derived.
    pub effective: f32,
    /// The rate asked for is below the calibration's deepest point (FMR 1e-8, score 1): the
    /// threshold stops at 1 and the gallery is too large for `max_false_accept_per_attempt`.
    pub capped: bool,
    /// The false-accept rate per attempt that `effective` gives this gallery.
    pub predicted_fpir: f64,
}

/// The threshold for a collection of `templates` templates.
pub fn gallery_threshold(
    configured: f32,
    max_false_accept_per_attempt: f64,
    templates: usize,
) -> GalleryThreshold {
    let off = GalleryThreshold {
        configured,
        max_false_accept_per_attempt,
        templates,
        per_comparison_fmr: None,
        effective: configured,
        capped: false,
        predicted_fpir: predicted_fpir(configured, templates),
    };
    let p = max_false_accept_per_attempt;
    if !(p > 0.0 && p < 1.0) {
        return off;
    }
    let n = templates.max(1) as f64;
    // 1 − (1 − p)^(1/n), without the cancellation of subtracting from 1.
    let fmr = -((-p).ln_1p() / n).exp_m1();
    let exponent = -fmr.log10();
    let derived = score_at_exponent(exponent as f32);
    let effective = configured.max(derived);
    GalleryThreshold {
        per_comparison_fmr: Some(fmr),
        effective,
        capped: exponent > f64::from(*KNOT_EXPONENTS.last().unwrap()),
        predicted_fpir: predicted_fpir(effective, templates),
        ..off
    }
}

/// The false-accept rate per attempt that a threshold gives a gallery of `templates`
/// (the prediction the measured FPIR is checked against).
pub fn predicted_fpir(score: f32, templates: usize) -> f64 {
    let fmr = 10f64.powf(-f64::from(exponent_at_score(score)));
    -((templates.max(1) as f64) * (-fmr.min(1.0)).ln_1p()).exp_m1()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_template_needs_the_score_of_the_per_attempt_rate_itself() {
        let t = gallery_threshold(0.0, 1e-3, 1);
        assert!((t.per_comparison_fmr.unwrap() - 1e-3).abs() < 1e-12);
        assert!((t.effective - 0.5).abs() < 1e-5, "{t:?}");
    }

    #[test]
    fn the_threshold_rises_by_a_tenth_for_every_tenfold_growth_of_the_gallery() {
        let scores: Vec<f32> = [100, 1_000, 10_000, 100_000]
            .iter()
            .map(|&n| gallery_threshold(0.0, 1e-3, n).effective)
            .collect();
        // FMR 1e-5, 1e-6, 1e-7, 1e-8: scores 0.7, 0.8, 0.9, 1.0 (to within the (1 − p)^(1/N)
        // correction, below 5e-5 of a score here).
        for (got, want) in scores.iter().zip([0.7, 0.8, 0.9, 1.0]) {
            assert!((got - want).abs() < 1e-3, "{scores:?}");
        }
        // A door with 421 templates (the evaluation's gallery) and 1e-3 per attempt.
        let t = gallery_threshold(0.0, 1e-3, 421);
        assert!((t.effective - 0.7624).abs() < 1e-3, "{t:?}");
    }

    #[test]
    fn the_configured_score_stays_the_floor_and_zero_turns_it_off() {
        assert_eq!(gallery_threshold(0.7, 1e-3, 10).effective, 0.7);
        let off = gallery_threshold(0.7, 0.0, 1_000_000);
        assert_eq!(off.effective, 0.7);
        assert_eq!(off.per_comparison_fmr, None);
        // An empty collection is treated as one template, not as an infinite threshold.
        assert_eq!(gallery_threshold(0.0, 1e-3, 0).effective, 0.5);
        // Past the calibrated range (FMR 1e-8) the score stops at 1 and says so: 1e7 templates
        // at FMR 1e-8 let about 10 % of strangers in, not 1e-3.
        let capped = gallery_threshold(0.0, 1e-3, 10_000_000);
        assert_eq!(capped.effective, 1.0);
        assert!(capped.capped);
        assert!((capped.predicted_fpir - 0.095).abs() < 0.001, "{capped:?}");
        assert!(!gallery_threshold(0.0, 1e-3, 100_000).capped);
    }

    #[test]
    fn the_prediction_inverts_the_threshold() {
        for n in [1, 421, 100_000] {
            let t = gallery_threshold(0.0, 1e-3, n);
            let p = predicted_fpir(t.effective, n);
            assert!((p - 1e-3).abs() < 1e-6, "{n}: {p}");
        }
        // 421 templates at 0.7 (FMR 1e-5): about 0.42 % of strangers per attempt.
        assert!((predicted_fpir(0.7, 421) - 0.00420).abs() < 1e-4);
    }
}
