//! The face engine: pure functions around ONNX Runtime sessions.
//!
//! detect (BlazeFace) → landmarks (FaceMesh) → align (similarity transform onto the embedder's
//! chip) → embed (ArcFace-style 512-d or dlib 128-d). An [`Engine`] owns one session per model
//! and is used from one thread at a time (`Session::run` takes `&mut self`); run several
//! engines for parallelism.

pub mod align;
pub mod analyzer;
pub mod detector;
pub mod embedder;
pub mod frame;
pub mod geometry;
pub mod landmarks;
pub mod liveness;
pub mod one_face;
pub mod pad;
pub mod precision;
pub mod quality;
pub mod runtime;
pub mod sampling;
pub mod similarity;
pub mod workers;

use image::RgbImage;
use serde::Serialize;

use crate::config::{Config, EmbedderKind};
use detector::{Detection, Detector};
use embedder::{Embedder, Metric, OnnxEmbedder};
use frame::DecodeError;
use geometry::{BoundingBox, Point};
use landmarks::{LandmarkModel, Landmarks};
use runtime::{Runtime, RuntimeError};
use similarity::Calibration;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("a model returned an unexpected output: {0}")]
    Output(String),
}

impl From<ort::Error> for EngineError {
    fn from(e: ort::Error) -> Self {
        EngineError::Inference(e.to_string())
    }
}

/// The five points reported for a face, in frame pixels. "Left" and "right" are as seen in
/// the image (the subject's right eye is `left_eye`).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct FivePoints {
    pub left_eye: Point,
    pub right_eye: Point,
    pub nose: Point,
    pub left_mouth: Point,
    pub right_mouth: Point,
}

impl FivePoints {
    pub fn from_landmarks(lm: &Landmarks) -> Self {
        use landmarks::index::*;
        Self {
            left_eye: lm.right_eye_center(),
            right_eye: lm.left_eye_center(),
            nose: lm.get(NOSE_TIP),
            left_mouth: lm.get(MOUTH_RIGHT),
            right_mouth: lm.get(MOUTH_LEFT),
        }
    }
}

/// One analysed face.
#[derive(Debug, Clone)]
pub struct Face {
    pub detection: Detection,
    pub landmarks: Landmarks,
    /// `None` when the landmarks were too degenerate to align.
    pub embedding: Option<Vec<f32>>,
}

impl Face {
    pub fn bbox(&self) -> BoundingBox {
        self.detection.bbox
    }
}

pub struct Engine {
    detector: Detector,
    landmarks: LandmarkModel,
    embedder: Box<dyn Embedder>,
    calibration: Calibration,
    decode_limits: frame::DecodeLimits,
    refine_landmarks: bool,
    confirm_below: f32,
    score_threshold: f32,
    fingerprint: String,
    pad: Option<pad::PadModel>,
}

/// FaceMesh face-presence needed to confirm a low-scoring detection.
const MIN_FACE_PRESENCE: f32 = 0.5;
/// Face-presence needed to confirm a face the frame's edge cuts that scores below
/// `detector.score_threshold` (see `detector.border_score_threshold`). Measured: 73 of 74 real
/// faces cut 30–40 % by an edge and scoring 0.3–0.5 had a presence of 0.9 and up, while the
/// hands, fists and statues such a low score lets in at the edges of portraits had 0.5–0.75.
const MIN_BORDER_FACE_PRESENCE: f32 = 0.8;

/// Face-presence a detection needs to count (`None`: it counts as it is): a faint one
/// ([`Engine::is_faint`]) the surer kind, one scoring below `confirm_below` the usual kind.
fn presence_needed(faint: bool, score: f32, confirm_below: f32) -> Option<f32> {
    if faint {
        Some(MIN_BORDER_FACE_PRESENCE)
    } else if score < confirm_below {
        Some(MIN_FACE_PRESENCE)
    } else {
        None
    }
}

impl Engine {
    /// Load ONNX Runtime and open every model the configuration needs.
    pub fn open(config: &Config) -> Result<Self, EngineError> {
        let runtime = Runtime::load(&config.inference)?;
        Self::with_runtime(&runtime, config)
    }

    pub fn with_runtime(runtime: &Runtime, config: &Config) -> Result<Self, EngineError> {
        let detector = Detector::open(runtime, &config.detector)?;
        let landmarks = LandmarkModel::open(runtime)?;
        let embedder = OnnxEmbedder::open(
            runtime,
            config.inference.embedder,
            config.inference.precision,
            config.inference.mirror_average,
        )?;
        let (kind, precision) = (config.inference.embedder, config.inference.precision);
        let fingerprint =
            embedder::fingerprint(&runtime.model_dir, kind, precision).map_err(|e| {
                EngineError::Inference(format!(
                    "cannot read {}: {e}",
                    runtime
                        .model_path(embedder::model_file(kind, precision))
                        .display()
                ))
            })?;
        let pad = if config.liveness.pad_enabled {
            Some(pad::PadModel::open(runtime, &config.liveness)?)
        } else {
            None
        };
        Ok(Self {
            pad,
            fingerprint,
            detector,
            landmarks,
            calibration: Calibration::for_embedder(config.inference.embedder),
            embedder: Box::new(embedder),
            decode_limits: frame::DecodeLimits::from_config(&config.detector),
            refine_landmarks: config.inference.refine_landmarks,
            confirm_below: config.detector.confirm_below,
            score_threshold: config.detector.score_threshold,
        })
    }

    /// Which execution provider each model runs on.
    pub fn providers(&self) -> Vec<(&'static str, &'static str)> {
        let mut v = self.detector.providers();
        v.push(("facemesh", self.landmarks.provider));
        if let Some(pad) = &self.pad {
            v.push(("pad", pad.provider));
        }
        v.push((self.embedder.kind().name(), self.embedder.provider()));
        v
    }

    pub fn embedder_kind(&self) -> EmbedderKind {
        self.embedder.kind()
    }

    /// Embedder name and model-file hash (see [`embedder::fingerprint`]).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Length of the templates.
    pub fn dimension(&self) -> usize {
        self.embedder.dimension()
    }

    pub fn metric(&self) -> Metric {
        self.embedder.metric()
    }

    pub fn calibration(&self) -> &Calibration {
        &self.calibration
    }

    /// Decode image bytes with this engine's size limit.
    pub fn decode(&self, bytes: &[u8]) -> Result<RgbImage, EngineError> {
        Ok(frame::decode(bytes, &self.decode_limits)?)
    }

    /// Faces with their landmarks. A detection scoring below `detector.confirm_below` is kept
    /// only if FaceMesh sees a face in it: the small, low-scoring candidates the tiles produce
    /// on hair, skin and highlights have a face-presence near 0, real faces near 1. A face cut
    /// by the frame's edge and scoring below `detector.score_threshold` needs a surer presence.
    pub fn locate(&mut self, frame: &RgbImage) -> Result<Vec<(Detection, Landmarks)>, EngineError> {
        let detections = self.detector.detect(frame)?;
        let mut out = Vec::with_capacity(detections.len());
        for d in detections {
            let lm = self.landmarks(frame, &d)?;
            let needed = presence_needed(self.is_faint(&d), d.score, self.confirm_below);
            if needed.is_none_or(|p| lm.presence >= p) {
                out.push((d, lm));
            }
        }
        Ok(out)
    }

    /// Every face of the frame, best first (see [`Engine::locate`]).
    pub fn detect(&mut self, frame: &RgbImage) -> Result<Vec<Detection>, EngineError> {
        Ok(self.locate(frame)?.into_iter().map(|(d, _)| d).collect())
    }

    /// Whether a detection counts only thanks to `detector.border_score_threshold`: a face
    /// the frame's edge cuts, scoring below `detector.score_threshold` (see
    /// [`one_face::choose_among`]).
    pub fn is_faint(&self, detection: &Detection) -> bool {
        detection.score < self.score_threshold
    }

    pub fn landmarks(
        &mut self,
        frame: &RgbImage,
        det: &Detection,
    ) -> Result<Landmarks, EngineError> {
        self.landmarks.run(frame, det, self.refine_landmarks)
    }

    /// Templates for the given faces, in one batched inference call.
    pub fn embed(
        &mut self,
        frame: &RgbImage,
        faces: &[&Landmarks],
    ) -> Result<Vec<Option<Vec<f32>>>, EngineError> {
        self.embedder.embed(frame, faces)
    }

    /// The embedder's input for each face: the aligned chip as it is fed to the network
    /// (3 × side × side, normalised), for calibrating a quantised model.
    pub fn chips(&self, frame: &RgbImage, faces: &[&Landmarks]) -> Vec<Vec<f32>> {
        let template = self.embedder.template();
        let side = template.size;
        faces
            .iter()
            .filter_map(|lm| {
                let to_frame = align::chip_to_frame(template, lm)?;
                let mut chip = vec![0f32; 3 * side * side];
                align::cut_chip(frame, template, &to_frame, &mut chip);
                Some(chip)
            })
            .collect()
    }

    /// Detect, landmark and embed every face of the frame.
    pub fn analyse(&mut self, frame: &RgbImage) -> Result<Vec<Face>, EngineError> {
        let (detections, lms): (Vec<Detection>, Vec<Landmarks>) =
            self.locate(frame)?.into_iter().unzip();
        let refs: Vec<&Landmarks> = lms.iter().collect();
        let embeddings = if refs.is_empty() {
            Vec::new()
        } else {
            self.embed(frame, &refs)?
        };
        Ok(detections
            .into_iter()
            .zip(lms)
            .zip(embeddings)
            .map(|((detection, landmarks), embedding)| Face {
                detection,
                landmarks,
                embedding,
            })
            .collect())
    }

    /// Still-image liveness of a photo's faces: the geometric checks, then (only when they
    /// pass) the PAD model when it is enabled.
    pub fn liveness(
        &mut self,
        frame: &RgbImage,
        faces: &[(Detection, Landmarks)],
        limits: &crate::config::LivenessConfig,
    ) -> Result<liveness::Verdict, EngineError> {
        let mut failure = None;
        let pad = &mut self.pad;
        let verdict = liveness::check_still(frame, faces, limits, &mut |bbox| {
            let model = pad.as_mut()?;
            match model.live_probability(frame, bbox) {
                Ok(p) => Some(p),
                Err(e) => {
                    failure = Some(e);
                    None
                }
            }
        });
        match failure {
            Some(e) => Err(e),
            None => Ok(verdict),
        }
    }

    /// The PAD model's live probability for a face box, whatever the geometric checks say
    /// (for measuring the model; `None` when PAD is disabled).
    pub fn pad_live_probability(
        &mut self,
        frame: &RgbImage,
        bbox: &BoundingBox,
    ) -> Result<Option<f32>, EngineError> {
        match self.pad.as_mut() {
            Some(model) => Ok(Some(model.live_probability(frame, bbox)?)),
            None => Ok(None),
        }
    }

    /// Raw comparison value (cosine or distance) of two templates.
    pub fn compare(&self, a: &[f32], b: &[f32]) -> f32 {
        self.metric().compare(a, b)
    }

    /// Similarity score in [0, 1] of two templates (see [`similarity`]).
    pub fn similarity(&self, a: &[f32], b: &[f32]) -> f32 {
        self.calibration.score(self.compare(a, b))
    }
}

/// The face nearest the image centre: the subject of a portrait or an ID photo.
pub fn most_central(faces: &[Face], width: u32, height: u32) -> Option<&Face> {
    let c = Point::new(width as f32 / 2.0, height as f32 / 2.0);
    faces.iter().min_by(|a, b| {
        a.bbox()
            .center()
            .distance(c)
            .total_cmp(&b.bbox().center().distance(c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_low_score_needs_facemesh_to_confirm_a_face_and_a_border_face_more_surely() {
        let confirm_below = 0.65;
        assert_eq!(presence_needed(false, 0.9, confirm_below), None);
        assert_eq!(
            presence_needed(false, 0.55, confirm_below),
            Some(MIN_FACE_PRESENCE)
        );
        // A faint face (cut by the edge, below the detector threshold) needs more.
        assert_eq!(
            presence_needed(true, 0.35, confirm_below),
            Some(MIN_BORDER_FACE_PRESENCE)
        );
    }
}
