//! `[liveness]`: the still-image liveness checks and the PAD model.

use serde::{Deserialize, Serialize};

use super::Problems;

/// Still-image liveness checks (`check_liveness`, `POST /liveness`): the upstream capture
/// requirements, each with its limit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LivenessConfig {
    /// FACE_TOO_SMALL below this face-box side, in pixels.
    pub min_face_px: f32,
    /// FACE_TOO_SMALL below this distance between the eye centres, in pixels.
    pub min_eye_distance_px: f32,
    /// FACE_CLOSE_TO_BORDER when the face box is nearer an image edge, in pixels.
    pub min_border_px: f32,
    /// FACE_TOO_CLOSE when the face box is wider than this share of the image width.
    pub max_face_share: f32,
    /// TOO_MANY_FACES when another face is at least this share of the main face's width.
    pub second_face_share: f32,
    /// FACE_ANGLE_TOO_LARGE beyond this head yaw, in degrees.
    pub max_yaw_deg: f32,
    /// FACE_ANGLE_TOO_LARGE beyond this head pitch, in degrees.
    pub max_pitch_deg: f32,
    /// EYES_CLOSED when both eyes' aspect ratio (lid opening over eye width) is below this.
    pub min_eye_aspect_ratio: f32,
    /// EYES_CLOSED when, on both eyes, less than this share of a box around the eye is darker
    /// than half the cheek's grey: no iris or pupil in view.
    pub min_eye_darkness: f32,
    /// FACE_IS_OCCLUDED below this FaceMesh face-presence probability.
    pub min_face_presence: f32,
    /// FACE_IS_OCCLUDED when the eyes-to-mouth distance over the eye distance is outside
    /// this range (landmarks fitted to something that is not a whole face).
    pub face_proportion: [f32; 2],
    /// FACE_IS_OCCLUDED when the grey-level spread (standard deviation, 0–255) around an eye
    /// or the mouth is below this: a uniform occluder over a feature.
    pub min_feature_contrast: f32,
    /// Run the presentation-attack (PAD) model on faces that pass the geometric checks.
    /// Without it no face is ever reported live.
    pub pad_enabled: bool,
    /// PAD model file (in `inference.model_dir` unless absolute).
    pub pad_model: String,
    /// Side of the PAD model's square input, in pixels.
    pub pad_input_size: u32,
    /// The crop around the face box the model expects: box × this, about its centre.
    pub pad_crop_scale: f32,
    /// Channel order of the input planes: "rgb" or "bgr".
    pub pad_channel_order: ChannelOrder,
    /// Input value = (pixel − mean) × scale, per channel (R, G, B), pixels 0–255.
    pub pad_mean: [f32; 3],
    /// Per-channel scale applied after subtracting `pad_mean`.
    pub pad_scale: [f32; 3],
    /// Apply softmax to the outputs (false: the outputs are probabilities already).
    pub pad_softmax: bool,
    /// Which output is the live class.
    pub pad_live_output: usize,
    /// FACE_NOT_LIVE below this live probability.
    pub pad_threshold: f32,
}

/// The order of the colour channels a model expects.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    #[default]
    Rgb,
    /// Blue, green, red (OpenCV's order, for models trained on it).
    Bgr,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            min_face_px: 150.0,
            min_eye_distance_px: 50.0,
            min_border_px: 15.0,
            max_face_share: 0.8,
            second_face_share: 0.4,
            max_yaw_deg: 30.0,
            max_pitch_deg: 30.0,
            min_eye_aspect_ratio: 0.12,
            min_eye_darkness: 0.15,
            min_face_presence: 0.5,
            face_proportion: [0.6, 1.8],
            min_feature_contrast: 5.0,
            pad_enabled: true,
            pad_model: "pad.onnx".into(),
            pad_input_size: 128,
            pad_crop_scale: 2.7,
            pad_channel_order: ChannelOrder::Rgb,
            pad_mean: [0.0; 3],
            pad_scale: [1.0; 3],
            pad_softmax: true,
            pad_live_output: 0,
            pad_threshold: 0.3,
        }
    }
}

impl LivenessConfig {
    /// Add every problem of this section to `p`.
    pub(super) fn validate(&self, p: &mut Problems) {
        let l = self;
        if !(0.0..=1.0).contains(&l.pad_threshold) {
            p.add(
                "liveness.pad_threshold",
                l.pad_threshold.to_string(),
                "must be between 0 and 1",
            );
        }
        if !(16..=1024).contains(&l.pad_input_size) {
            p.add(
                "liveness.pad_input_size",
                l.pad_input_size.to_string(),
                "must be between 16 and 1024",
            );
        }
    }
}
