//! Liveness over a camera track: pure functions over the landmark sequence of one face.
//!
//! A printed photo, or a screen showing a still, is a plane: however it is moved, tilted or
//! turned in front of the camera, its image points in two frames are related by one
//! homography, up to landmark noise. A real head turning is not a plane: the nose tip, the
//! cheeks and the eyes sit at different depths, and their parallax leaves a residual no
//! homography removes. Motion that any 2-D affine map explains (sliding, in-plane rotation,
//! scaling) tells the two apart in neither direction, so a track with too little
//! out-of-affine motion is `undetermined` — never `live` by default.

use serde::Serialize;

use crate::engine::geometry::Point;

/// FaceMesh points used: texture features at several depths (eye corners and lids, brows,
/// nose bridge, tip and wings, mouth). Outline points (cheeks, jaw, chin) are left out:
/// FaceMesh places them on the silhouette of the head it imagines, which on a tilted photo
/// is not where they lie on the paper.
pub const TRACK_POINTS: [usize; 28] = [
    33, 133, 362, 263, 159, 145, 386, 374, 70, 105, 107, 336, 334, 300, 1, 2, 4, 5, 6, 168, 98,
    327, 61, 291, 0, 17, 13, 14,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackVerdict {
    Live,
    Spoof,
    Undetermined,
}

/// Decision limits. Motion and residuals are fractions of the eye distance.
///
/// Measured on the synthetic presentations of `facegate eval-liveness`: FaceMesh's landmark
/// noise alone leaves residuals of ~0.01–0.03 whatever the motion, so a plane shows as
/// out-of-affine motion whose residual stays near that floor (residual ÷ motion ≤ ~0.65 once
/// the motion clears it), while a turning head leaves nearly all of it (≥ ~0.88).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrackLimits {
    /// Out-of-affine motion (RMS affine residual) a track needs before it can be judged.
    pub min_motion: f32,
    /// Homography residual ÷ motion at or below which the motion is planar (spoof).
    pub max_planar_ratio: f32,
    /// Homography residual ÷ motion at or above which it is three-dimensional (live)...
    pub min_depth_ratio: f32,
    /// ...provided the residual itself clears the landmark-noise floor.
    pub min_depth_residual: f32,
    /// Frames needed.
    pub min_frames: usize,
}

impl Default for TrackLimits {
    fn default() -> Self {
        Self {
            min_motion: 0.06,
            max_planar_ratio: 0.7,
            min_depth_ratio: 0.85,
            min_depth_residual: 0.05,
            min_frames: 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackLiveness {
    pub verdict: TrackVerdict,
    /// In [0, 1]: how far the evidence points to a live head (0.5 = none either way).
    pub score: f32,
    /// Largest RMS affine residual over the track (out-of-affine motion), ÷ eye distance.
    pub motion: f32,
    /// Homography residual of the frame with the most motion, ÷ eye distance.
    pub planar_residual: f32,
    pub blinks: usize,
    pub reasons: Vec<String>,
}

/// Judge a track from its landmark frames (the [`TRACK_POINTS`] of each, in frame pixels, in
/// the same order) and its eye-aspect-ratio series.
pub fn judge_track(frames: &[Vec<Point>], ear: &[f32], limits: &TrackLimits) -> TrackLiveness {
    let blinks = count_blinks(ear);
    let mut reasons = Vec::new();
    if blinks > 0 {
        reasons.push(format!("{blinks} blink(s)"));
    }
    let undetermined = |reasons: Vec<String>, motion, residual| TrackLiveness {
        verdict: TrackVerdict::Undetermined,
        score: 0.5,
        motion,
        planar_residual: residual,
        blinks,
        reasons,
    };
    if frames.len() < limits.min_frames {
        reasons.push(format!(
            "{} frames, {} needed",
            frames.len(),
            limits.min_frames
        ));
        return undetermined(reasons, 0.0, 0.0);
    }
    let base = &frames[0];
    let eye = base[0]
        .midpoint(base[1])
        .distance(base[2].midpoint(base[3]))
        .max(1.0);
    // Every frame against the first: its out-of-affine motion and what a homography leaves.
    let mut moved: Vec<(f32, f32)> = Vec::new();
    let mut most = 0.0f32;
    for f in &frames[1..] {
        let (Some(affine), Some(homography)) =
            (fit_affine_rms(base, f), fit_homography_rms(base, f))
        else {
            continue;
        };
        let (motion, residual) = (affine / eye, homography / eye);
        most = most.max(motion);
        if motion >= limits.min_motion {
            moved.push((motion, residual));
        }
    }
    // One frame can be a landmark outlier; judge on the median of the frames that moved
    // enough, and need two of them.
    if moved.len() < 2 {
        reasons.push(format!(
            "too little out-of-plane motion ({} frame(s) beyond {} of the eye distance, 2 needed)",
            moved.len(),
            limits.min_motion
        ));
        return undetermined(reasons, most, 0.0);
    }
    moved.sort_by(|a, b| (a.1 / a.0).total_cmp(&(b.1 / b.0)));
    let (motion, residual) = moved[moved.len() / 2];
    let ratio = residual / motion;
    if ratio <= limits.max_planar_ratio {
        reasons.push(format!(
            "moves as a plane: one homography leaves {ratio:.2} of the out-of-affine motion"
        ));
        return TrackLiveness {
            verdict: TrackVerdict::Spoof,
            score: 0.5 * ratio / limits.max_planar_ratio * 0.5,
            motion,
            planar_residual: residual,
            blinks,
            reasons,
        };
    }
    if ratio >= limits.min_depth_ratio && residual >= limits.min_depth_residual {
        reasons.push(format!(
            "depth parallax: no homography explains it ({ratio:.2} of the motion is left)"
        ));
        return TrackLiveness {
            verdict: TrackVerdict::Live,
            score: 0.5
                + 0.5
                    * ((ratio - limits.min_depth_ratio) / (1.0 - limits.min_depth_ratio))
                        .clamp(0.0, 1.0),
            motion,
            planar_residual: residual,
            blinks,
            reasons,
        };
    }
    reasons.push(format!(
        "residual {ratio:.2} of the motion: between the planar and the depth limits"
    ));
    undetermined(reasons, motion, residual)
}

/// Blinks in an eye-aspect-ratio series: a dip below 60 % of the series' upper quartile that
/// recovers above 80 % of it.
pub fn count_blinks(ear: &[f32]) -> usize {
    if ear.len() < 3 {
        return 0;
    }
    let mut sorted = ear.to_vec();
    sorted.sort_by(f32::total_cmp);
    let open = sorted[sorted.len() * 3 / 4];
    let mut blinks = 0;
    let mut closed = false;
    for &e in ear {
        if !closed && e < 0.6 * open {
            closed = true;
        } else if closed && e > 0.8 * open {
            closed = false;
            blinks += 1;
        }
    }
    blinks
}

/// Hartley normalisation: centre on the centroid, mean distance √2.
fn normaliser(points: &[Point]) -> [f64; 3] {
    let n = points.len() as f64;
    let (cx, cy) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p.x as f64, y + p.y as f64));
    let (cx, cy) = (cx / n, cy / n);
    let mean = points
        .iter()
        .map(|p| ((p.x as f64 - cx).powi(2) + (p.y as f64 - cy).powi(2)).sqrt())
        .sum::<f64>()
        / n;
    let s = if mean > 0.0 { 2f64.sqrt() / mean } else { 1.0 };
    [s, cx, cy]
}

/// Solve the normal equations of a linear least-squares problem (rows of `a`, values `b`).
fn least_squares<const N: usize>(rows: &[([f64; N], f64)]) -> Option<[f64; N]> {
    let mut m = [[0f64; N]; N];
    let mut v = [0f64; N];
    for (a, b) in rows {
        for i in 0..N {
            v[i] += a[i] * b;
            for j in 0..N {
                m[i][j] += a[i] * a[j];
            }
        }
    }
    // Gaussian elimination with partial pivoting.
    for col in 0..N {
        let pivot = (col..N).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[pivot][col].abs() < 1e-12 {
            return None;
        }
        m.swap(col, pivot);
        v.swap(col, pivot);
        let (done, rest) = m.split_at_mut(col + 1);
        let pivot_row = &done[col];
        for (offset, row) in rest.iter_mut().enumerate() {
            let f = row[col] / pivot_row[col];
            for (r, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *r -= f * p;
            }
            v[col + 1 + offset] -= f * v[col];
        }
    }
    let mut x = [0f64; N];
    for row in (0..N).rev() {
        let s: f64 = (row + 1..N).map(|k| m[row][k] * x[k]).sum();
        x[row] = (v[row] - s) / m[row][row];
    }
    Some(x)
}

/// RMS distance left after the best 2-D affine map from `a` to `b`.
pub fn fit_affine_rms(a: &[Point], b: &[Point]) -> Option<f32> {
    let (na, nb) = (normaliser(a), normaliser(b));
    let pa: Vec<(f64, f64)> = a.iter().map(|p| norm(p, &na)).collect();
    let pb: Vec<(f64, f64)> = b.iter().map(|p| norm(p, &nb)).collect();
    let rows_x: Vec<([f64; 3], f64)> = pa
        .iter()
        .zip(&pb)
        .map(|(&(x, y), &(u, _))| ([x, y, 1.0], u))
        .collect();
    let rows_y: Vec<([f64; 3], f64)> = pa
        .iter()
        .zip(&pb)
        .map(|(&(x, y), &(_, v))| ([x, y, 1.0], v))
        .collect();
    let cx = least_squares(&rows_x)?;
    let cy = least_squares(&rows_y)?;
    let sq: f64 = pa
        .iter()
        .zip(&pb)
        .map(|(&(x, y), &(u, v))| {
            let du = cx[0] * x + cx[1] * y + cx[2] - u;
            let dv = cy[0] * x + cy[1] * y + cy[2] - v;
            du * du + dv * dv
        })
        .sum();
    Some(((sq / pa.len() as f64).sqrt() / nb[0]) as f32)
}

/// RMS distance left after the best homography from `a` to `b` (DLT with `h33 = 1` on
/// normalised coordinates; the residual is measured in `b`'s pixels).
pub fn fit_homography_rms(a: &[Point], b: &[Point]) -> Option<f32> {
    let (na, nb) = (normaliser(a), normaliser(b));
    let pa: Vec<(f64, f64)> = a.iter().map(|p| norm(p, &na)).collect();
    let pb: Vec<(f64, f64)> = b.iter().map(|p| norm(p, &nb)).collect();
    let mut rows = Vec::with_capacity(2 * pa.len());
    for (&(x, y), &(u, v)) in pa.iter().zip(&pb) {
        rows.push(([x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y], u));
        rows.push(([0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y], v));
    }
    let h = least_squares(&rows)?;
    let sq: f64 = pa
        .iter()
        .zip(&pb)
        .map(|(&(x, y), &(u, v))| {
            let w = h[6] * x + h[7] * y + 1.0;
            let du = (h[0] * x + h[1] * y + h[2]) / w - u;
            let dv = (h[3] * x + h[4] * y + h[5]) / w - v;
            du * du + dv * dv
        })
        .sum();
    Some(((sq / pa.len() as f64).sqrt() / nb[0]) as f32)
}

fn norm(p: &Point, n: &[f64; 3]) -> (f64, f64) {
    ((p.x as f64 - n[1]) * n[0], (p.y as f64 - n[2]) * n[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A face-like 3-D point set (x right, y down, z towards the camera, eye distance 1).
    fn head() -> Vec<[f32; 3]> {
        let mut pts = Vec::new();
        for i in 0..TRACK_POINTS.len() {
            let t = i as f32 * 0.7;
            let (x, y) = (0.9 * t.sin(), 0.9 * (1.3 * t).cos());
            // The nose protrudes, the sides recede: the depth that makes parallax.
            let z = 2.0 * (-(x * x + y * y) * 3.0).exp() - 0.8 * x.abs();
            pts.push([x, y, z]);
        }
        pts[0] = [-0.6, 0.0, 0.0];
        pts[1] = [-0.4, 0.0, 0.05];
        pts[2] = [0.4, 0.0, 0.05];
        pts[3] = [0.6, 0.0, 0.0];
        pts
    }

    fn project(pts: &[[f32; 3]], yaw: f32, pitch: f32, flat: bool) -> Vec<Point> {
        let (sy, cy, sp, cp) = (yaw.sin(), yaw.cos(), pitch.sin(), pitch.cos());
        pts.iter()
            .map(|&[x, y, z]| {
                let z = if flat { 0.0 } else { z };
                let (x1, z1) = (cy * x + sy * z, -sy * x + cy * z);
                let (y2, z2) = (cp * y - sp * z1, sp * y + cp * z1);
                let depth = 4.0 - z2;
                Point::new(320.0 + 400.0 * x1 / depth, 240.0 + 400.0 * y2 / depth)
            })
            .collect()
    }

    #[test]
    fn a_plane_turned_in_depth_fits_one_homography_and_a_head_does_not() {
        let h = head();
        let base_flat = project(&h, 0.0, 0.0, true);
        let base_head = project(&h, 0.0, 0.0, false);
        let turned_flat = project(&h, 0.35, 0.1, true);
        let turned_head = project(&h, 0.35, 0.1, false);
        assert!(fit_homography_rms(&base_flat, &turned_flat).unwrap() < 1e-3);
        assert!(fit_homography_rms(&base_head, &turned_head).unwrap() > 1.0);
        assert!(
            fit_affine_rms(&base_flat, &turned_flat).unwrap() > 0.1,
            "perspective is not affine"
        );
    }

    #[test]
    fn tracks_are_judged_live_spoof_or_undetermined() {
        let h = head();
        let limits = TrackLimits::default();
        let seq = |flat: bool, amplitude: f32| -> Vec<Vec<Point>> {
            (0..6)
                .map(|i| {
                    project(
                        &h,
                        amplitude * (i as f32 * 0.9).sin(),
                        0.3 * amplitude * (i as f32).cos(),
                        flat,
                    )
                })
                .collect()
        };
        let live = judge_track(&seq(false, 0.35), &[], &limits);
        assert_eq!(live.verdict, TrackVerdict::Live, "{live:?}");
        let flat = judge_track(&seq(true, 0.6), &[], &limits);
        assert_eq!(flat.verdict, TrackVerdict::Spoof, "{flat:?}");
        assert_eq!(
            judge_track(&seq(false, 0.0), &[], &limits).verdict,
            TrackVerdict::Undetermined
        );
        assert_eq!(
            judge_track(&seq(false, 0.35)[..2], &[], &limits).verdict,
            TrackVerdict::Undetermined
        );
    }

    #[test]
    fn a_dip_in_the_eye_aspect_ratio_is_a_blink() {
        assert_eq!(
            count_blinks(&[0.3, 0.31, 0.29, 0.08, 0.05, 0.28, 0.3, 0.3]),
            1
        );
        assert_eq!(count_blinks(&[0.3, 0.29, 0.31, 0.3, 0.28, 0.3]), 0);
    }
}
