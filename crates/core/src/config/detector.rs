//! `[detector]`: face detection and the limits on what is decoded.

use serde::{Deserialize, Serialize};

use super::Problems;

/// Which BlazeFace models run on each frame.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DetectorRange {
    /// Both models, results merged: small far faces and faces filling the frame alike.
    #[default]
    Both,
    /// Full range only (192 px input, faces up to about 5 m).
    Full,
    /// Short range only (128 px input, faces at selfie distance): a door camera with a close
    /// mount needs nothing else and saves a third of the detection time.
    Short,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Which models run: "both" (default), "full" or "short".
    pub range: DetectorRange,
    /// Minimum detection score (sigmoid of the model's logit) for a face to count.
    pub score_threshold: f32,
    /// Minimum score of a face the frame's edge cuts (the lower of this and `score_threshold`
    /// applies): with part of the face outside the frame the model scores real faces lower.
    /// Measured on faces cut 40 % by an edge: 0.3 finds 80 % of them, 0.5 finds 54 %
    /// (docs/accuracy.md). Such a face must also satisfy FaceMesh (face presence 0.8).
    pub border_score_threshold: f32,
    /// Detections scoring below this are kept only when FaceMesh confirms a face in them
    /// (face presence ≥ 0.5). Filters the small false candidates of the tiled search; profile
    /// faces, which FaceMesh does not confirm, score above it.
    pub confirm_below: f32,
    /// Boxes overlapping more than this (intersection over union) are merged into one face.
    pub nms_iou: f32,
    /// Smallest face to find, in frame pixels (narrower faces are ignored). When the
    /// whole-frame pass cannot resolve faces this small (it sees faces of about 1/12 of the
    /// frame's longer side), the full-range model also searches overlapping tiles, at a cost
    /// that grows with the frame area: a door camera whose faces are large sets this high.
    pub min_face_px: f32,
    /// Largest image accepted, in megapixels; bigger images are refused before decoding.
    pub max_megapixels: f32,
    /// Memory the decoded pixels of one image may take, in MiB (width × height × bytes per
    /// pixel of its format, plus the RGB copy); checked from the header before decoding.
    pub max_decoded_mib: usize,
    /// Longer side over shorter side; narrower strips are refused before decoding.
    pub max_aspect_ratio: f32,
    /// Most tiles of the small-face search on one image: when `min_face_px` would need more,
    /// the search looks for proportionally larger faces instead, so every image costs a
    /// bounded amount of work.
    pub max_tiles: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            range: DetectorRange::Both,
            score_threshold: 0.5,
            border_score_threshold: 0.3,
            confirm_below: 0.65,
            nms_iou: 0.3,
            min_face_px: 24.0,
            max_megapixels: 40.0,
            max_decoded_mib: 160,
            max_aspect_ratio: 20.0,
            max_tiles: 64,
        }
    }
}

impl DetectorConfig {
    /// Add every problem of this section to `p`.
    pub(super) fn validate(&self, p: &mut Problems) {
        let d = self;
        if !(0.0..=1.0).contains(&d.score_threshold) {
            p.add(
                "detector.score_threshold",
                d.score_threshold.to_string(),
                "must be between 0 and 1",
            );
        }
        if !(0.0..=1.0).contains(&d.border_score_threshold) {
            p.add(
                "detector.border_score_threshold",
                d.border_score_threshold.to_string(),
                "must be between 0 and 1",
            );
        }
        if !(0.0..=1.0).contains(&d.confirm_below) {
            p.add(
                "detector.confirm_below",
                d.confirm_below.to_string(),
                "must be between 0 and 1",
            );
        }
        if d.min_face_px.is_nan() || d.min_face_px < 0.0 {
            p.add(
                "detector.min_face_px",
                d.min_face_px.to_string(),
                "must be zero or positive",
            );
        }
        if !(0.0..1.0).contains(&d.nms_iou) || d.nms_iou == 0.0 {
            p.add(
                "detector.nms_iou",
                d.nms_iou.to_string(),
                "must be above 0 and below 1",
            );
        }
        if !(d.max_megapixels.is_finite() && d.max_megapixels > 0.0) {
            p.add(
                "detector.max_megapixels",
                d.max_megapixels.to_string(),
                "must be positive",
            );
        }
        if !(1..=1 << 20).contains(&d.max_decoded_mib) {
            p.add(
                "detector.max_decoded_mib",
                d.max_decoded_mib.to_string(),
                "must be between 1 and 1048576 (1 TiB)",
            );
        }
        if !(d.max_aspect_ratio.is_finite() && d.max_aspect_ratio >= 1.0) {
            p.add(
                "detector.max_aspect_ratio",
                d.max_aspect_ratio.to_string(),
                "must be at least 1",
            );
        }
        if d.max_tiles == 0 {
            p.add("detector.max_tiles", "0".into(), "must be at least 1");
        }
    }
}
