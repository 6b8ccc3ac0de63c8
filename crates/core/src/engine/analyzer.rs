//! What the camera pipeline asks of an engine, as a trait: the daemon's camera worker runs
//! on [`Engine`] and its unit tests on a scripted analyser, without models or threads.

use image::RgbImage;

use super::detector::Detection;
use super::embedder::Metric;
use super::landmarks::Landmarks;
use super::liveness::Verdict;
use super::similarity::Calibration;
use super::{Engine, EngineError};
use crate::config::LivenessConfig;

pub trait FaceAnalyzer: Send {
    /// Every face of the frame with its landmarks, best detection first.
    fn locate(&mut self, frame: &RgbImage) -> Result<Vec<(Detection, Landmarks)>, EngineError>;
    /// The template of one face (`None` when it cannot be aligned).
    fn embed_one(
        &mut self,
        frame: &RgbImage,
        face: &Landmarks,
    ) -> Result<Option<Vec<f32>>, EngineError>;
    /// The still-image liveness verdict of one face.
    fn still_liveness(
        &mut self,
        frame: &RgbImage,
        face: &(Detection, Landmarks),
        limits: &LivenessConfig,
    ) -> Result<Verdict, EngineError>;
    /// How templates compare.
    fn metric(&self) -> Metric;
    /// Raw similarity to the documented score.
    fn calibration(&self) -> Calibration;
}

impl FaceAnalyzer for Engine {
    fn locate(&mut self, frame: &RgbImage) -> Result<Vec<(Detection, Landmarks)>, EngineError> {
        Engine::locate(self, frame)
    }

    fn embed_one(
        &mut self,
        frame: &RgbImage,
        face: &Landmarks,
    ) -> Result<Option<Vec<f32>>, EngineError> {
        Ok(self.embed(frame, &[face])?.pop().flatten())
    }

    fn still_liveness(
        &mut self,
        frame: &RgbImage,
        face: &(Detection, Landmarks),
        limits: &LivenessConfig,
    ) -> Result<Verdict, EngineError> {
        self.liveness(frame, std::slice::from_ref(face), limits)
    }

    fn metric(&self) -> Metric {
        Engine::metric(self)
    }

    fn calibration(&self) -> Calibration {
        *Engine::calibration(self)
    }
}
