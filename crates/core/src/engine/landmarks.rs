//! MediaPipe FaceMesh: 468 landmarks from a crop rotated so the eyes are level.

use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;

use super::detector::{Detection, KP_LEFT_EYE, KP_RIGHT_EYE};
use super::geometry::{Affine, Point};
use super::sampling::{warp, Normalisation};
use super::EngineError;

pub const POINTS: usize = 468;
const INPUT: usize = 192;
/// The crop is this many times the detection box's longer side (MediaPipe's ROI scale).
const CROP_SCALE: f32 = 1.5;
const NORMALISATION: Normalisation = Normalisation::uniform(0.0, 1.0 / 255.0);

/// FaceMesh indices used elsewhere. "Right"/"left" are the subject's.
pub mod index {
    pub const RIGHT_EYE_OUTER: usize = 33;
    pub const RIGHT_EYE_INNER: usize = 133;
    pub const LEFT_EYE_OUTER: usize = 263;
    pub const LEFT_EYE_INNER: usize = 362;
    /// dlib's inner eye-corner points sit slightly differently from 133/362.
    pub const RIGHT_EYE_INNER_DLIB: usize = 173;
    pub const LEFT_EYE_INNER_DLIB: usize = 398;
    pub const NOSE_TIP: usize = 1;
    pub const NOSE_BASE: usize = 2;
    pub const MOUTH_RIGHT: usize = 61;
    pub const MOUTH_LEFT: usize = 291;
}

#[derive(Debug, Clone)]
pub struct Landmarks {
    /// The 468 points in frame pixels.
    pub points: Vec<Point>,
    /// Relative depth of each point, in frame pixels (smaller = nearer the camera).
    pub depth: Vec<f32>,
    /// FaceMesh's face-presence probability for the crop.
    pub presence: f32,
}

impl Landmarks {
    pub fn get(&self, i: usize) -> Point {
        self.points[i]
    }

    pub fn right_eye_center(&self) -> Point {
        self.get(index::RIGHT_EYE_OUTER)
            .midpoint(self.get(index::RIGHT_EYE_INNER))
    }

    pub fn left_eye_center(&self) -> Point {
        self.get(index::LEFT_EYE_OUTER)
            .midpoint(self.get(index::LEFT_EYE_INNER))
    }
}

/// The map from the 192×192 crop to the frame for a detected face: centred on the box,
/// 1.5 × its longer side, rotated so the line between the eyes is horizontal.
pub fn crop_for(det: &Detection) -> Affine {
    let r = det.keypoints[KP_RIGHT_EYE];
    let l = det.keypoints[KP_LEFT_EYE];
    let angle = (l.y - r.y).atan2(l.x - r.x);
    let side = det.bbox.width().max(det.bbox.height()) * CROP_SCALE;
    Affine::rotated_crop(det.bbox.center(), side, angle, INPUT as f32)
}

/// The crop for a second pass: rotated so the outer eye corners are level, centred on the
/// landmarks' extent in that rotated frame, 1.5 × its longer side.
pub fn crop_from_landmarks(points: &[Point]) -> Affine {
    let r = points[index::RIGHT_EYE_OUTER];
    let l = points[index::LEFT_EYE_OUTER];
    let angle = (l.y - r.y).atan2(l.x - r.x);
    let (sin, cos) = angle.sin_cos();
    let (mut u0, mut u1, mut v0, mut v1) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
    for p in points {
        let u = p.x * cos + p.y * sin;
        let v = -p.x * sin + p.y * cos;
        u0 = u0.min(u);
        u1 = u1.max(u);
        v0 = v0.min(v);
        v1 = v1.max(v);
    }
    let (uc, vc) = ((u0 + u1) / 2.0, (v0 + v1) / 2.0);
    let center = Point::new(uc * cos - vc * sin, uc * sin + vc * cos);
    let side = (u1 - u0).max(v1 - v0) * CROP_SCALE;
    Affine::rotated_crop(center, side, angle, INPUT as f32)
}

pub struct LandmarkModel {
    session: Session,
    pub provider: &'static str,
    buf: Vec<f32>,
}

impl LandmarkModel {
    pub fn open(rt: &super::runtime::Runtime) -> Result<Self, EngineError> {
        let side = INPUT as i64;
        let (session, provider) = rt.open_expecting("facemesh.onnx", &[1, 3, side, side])?;
        Ok(Self {
            session,
            provider,
            buf: vec![0.0; 3 * INPUT * INPUT],
        })
    }

    /// Landmarks for a detected face. With `refine`, a second pass runs on a crop re-centred
    /// and re-rotated from the first pass's landmarks (MediaPipe's tracking ROI): the face then
    /// sits where FaceMesh was trained to see it, which steadies the eye and mouth points.
    pub fn run(
        &mut self,
        frame: &RgbImage,
        det: &Detection,
        refine: bool,
    ) -> Result<Landmarks, EngineError> {
        let first = self.run_crop(frame, &crop_for(det))?;
        if !refine {
            return Ok(first);
        }
        self.run_crop(frame, &crop_from_landmarks(&first.points))
    }

    fn run_crop(&mut self, frame: &RgbImage, to_frame: &Affine) -> Result<Landmarks, EngineError> {
        let to_frame = *to_frame;
        warp(
            frame,
            &to_frame,
            INPUT,
            INPUT,
            &NORMALISATION,
            &mut self.buf,
        );
        let input = TensorRef::from_array_view(([1usize, 3, INPUT, INPUT], self.buf.as_slice()))?;
        let outputs = self.session.run(ort::inputs![input])?;
        let (_, raw) = outputs[0].try_extract_tensor::<f32>()?;
        let (_, presence) = outputs[1].try_extract_tensor::<f32>()?;
        if raw.len() != POINTS * 3 || presence.is_empty() {
            return Err(EngineError::Output(format!(
                "FaceMesh returned {} values, expected {}",
                raw.len(),
                POINTS * 3
            )));
        }
        let scale = to_frame.scale();
        let mut points = Vec::with_capacity(POINTS);
        let mut depth = Vec::with_capacity(POINTS);
        for p in raw.chunks_exact(3) {
            points.push(to_frame.apply(Point::new(p[0], p[1])));
            depth.push(p[2] * scale);
        }
        Ok(Landmarks {
            points,
            depth,
            presence: 1.0 / (1.0 + (-presence[0]).exp()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::geometry::BoundingBox;

    #[test]
    fn crop_is_rotated_so_the_eyes_are_level() {
        // Eyes on a 45° line: the crop's horizontal axis must follow it.
        let mut kp = [Point::default(); 6];
        kp[KP_RIGHT_EYE] = Point::new(100.0, 100.0);
        kp[KP_LEFT_EYE] = Point::new(140.0, 140.0);
        let det = Detection {
            bbox: BoundingBox::from_center(120.0, 130.0, 100.0, 80.0),
            score: 0.9,
            keypoints: kp,
        };
        let m = crop_for(&det);
        let a = m.apply(Point::new(10.0, 96.0));
        let b = m.apply(Point::new(180.0, 96.0));
        assert!(
            ((b.y - a.y) / (b.x - a.x) - 1.0).abs() < 1e-4,
            "crop x axis follows the eye line"
        );
        assert!(
            (m.scale() - 150.0 / 192.0).abs() < 1e-5,
            "side = 1.5 × the longer box side"
        );
        let c = m.apply(Point::new(96.0, 96.0));
        assert!(c.distance(Point::new(120.0, 130.0)) < 1e-3);
    }
}
