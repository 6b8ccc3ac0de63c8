//! A face as JSON: its box, five landmarks and detection score. One type for the API's
//! `POST /detect` and the CLI's `facegate detect` / `embed`, so both print the same thing.

use serde::Serialize;
use utoipa::ToSchema;

use facegate_core::engine::geometry::{BoundingBox, Point};
use facegate_core::engine::FivePoints;

/// Whole pixels, clamped to the image.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BoxOut {
    pub left: i32,
    pub top: i32,
    pub right: i32,
    pub bottom: i32,
}

/// Pixels, to a tenth.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PointOut {
    pub x: f32,
    pub y: f32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FiveLandmarks {
    pub left_eye: PointOut,
    pub right_eye: PointOut,
    pub nose: PointOut,
    pub left_mouth: PointOut,
    pub right_mouth: PointOut,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DetectedFace {
    #[serde(rename = "box")]
    pub bbox: BoxOut,
    pub landmarks: FiveLandmarks,
    /// To four decimals.
    pub detection_score: f32,
    /// JPEG of the aligned face (the API; absent from the CLI's output).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail_base_64: Option<String>,
}

fn point(p: Point) -> PointOut {
    PointOut {
        x: (p.x * 10.0).round() / 10.0,
        y: (p.y * 10.0).round() / 10.0,
    }
}

impl DetectedFace {
    /// A face found in an image of `(width, height)` pixels.
    pub fn new(bbox: &BoundingBox, points: &FivePoints, score: f32, (w, h): (u32, u32)) -> Self {
        let clamp = |v: f32, max: u32| v.round().clamp(0.0, max as f32) as i32;
        Self {
            bbox: BoxOut {
                left: clamp(bbox.left, w),
                top: clamp(bbox.top, h),
                right: clamp(bbox.right, w),
                bottom: clamp(bbox.bottom, h),
            },
            landmarks: FiveLandmarks {
                left_eye: point(points.left_eye),
                right_eye: point(points.right_eye),
                nose: point(points.nose),
                left_mouth: point(points.left_mouth),
                right_mouth: point(points.right_mouth),
            },
            detection_score: (score * 1e4).round() / 1e4,
            thumbnail_base_64: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_face_prints_whole_pixel_boxes_inside_the_image_and_rounded_points() {
        let b = BoundingBox {
            left: -3.4,
            top: 10.6,
            right: 700.2,
            bottom: 200.0,
        };
        let p = Point { x: 12.34, y: 56.78 };
        let five = FivePoints {
            left_eye: p,
            right_eye: p,
            nose: p,
            left_mouth: p,
            right_mouth: p,
        };
        let json =
            serde_json::to_value(DetectedFace::new(&b, &five, 0.987654, (640, 480))).unwrap();
        assert_eq!(
            json["box"],
            serde_json::json!({"left": 0, "top": 11, "right": 640, "bottom": 200})
        );
        assert_eq!(
            json["landmarks"]["nose"]["x"].as_f64().unwrap() as f32,
            12.3
        );
        assert_eq!(json["detection_score"].as_f64().unwrap() as f32, 0.9877);
        assert!(json.get("thumbnail_base_64").is_none());
    }
}
