//! Still-image liveness: the upstream capture requirements checked on one photo.
//!
//! What is here is geometry only (face count, size, distance to the border, landmarks inside
//! the image). Geometry cannot tell a live face from a printed one, so without a
//! presentation-attack (PAD) check the verdict is never "live": it reports `pad: not_run`
//! and the code `UNKNOWN_ERROR` ("liveness could not be established").

use serde::Serialize;

use super::detector::Detection;
use super::landmarks::Landmarks;
use super::FivePoints;

/// Upstream requirements (OpenCV FR Server documentation).
pub const MIN_FACE_PX: f32 = 150.0;
pub const MIN_EYE_DISTANCE_PX: f32 = 50.0;
pub const MIN_BORDER_PX: f32 = 15.0;
/// A second face at least this share of the main face's width counts as another person.
pub const SECOND_FACE_SHARE: f32 = 0.4;

/// One measured requirement.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    pub name: &'static str,
    /// The measured value (`null` when the check did not run).
    pub value: Option<f32>,
    /// The limit it is held to, and which side passes.
    pub limit: String,
    /// `passed`, `failed` or `not_run`.
    pub result: &'static str,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verdict {
    pub is_live: bool,
    pub liveness_score: f32,
    /// `OK` when live, else one of the upstream liveness codes.
    pub code: &'static str,
    pub checks: Vec<Check>,
}

fn check(name: &'static str, value: f32, limit: String, passed: bool) -> Check {
    Check {
        name,
        value: Some(value),
        limit,
        result: if passed { "passed" } else { "failed" },
    }
}

/// Check one photo. `faces` are the detected faces with landmarks, best first.
pub fn check_still(width: u32, height: u32, faces: &[(Detection, Landmarks)]) -> Verdict {
    let mut checks = Vec::new();
    let fail = |code, checks| Verdict {
        is_live: false,
        liveness_score: 0.0,
        code,
        checks,
    };
    let Some(main) = faces
        .iter()
        .max_by(|a, b| a.0.bbox.width().total_cmp(&b.0.bbox.width()))
    else {
        checks.push(check("face_count", 0.0, ">= 1".into(), false));
        return fail("FACE_NOT_FOUND", checks);
    };
    let main_w = main.0.bbox.width();
    let others = faces
        .iter()
        .filter(|f| !std::ptr::eq(*f, main) && f.0.bbox.width() >= SECOND_FACE_SHARE * main_w)
        .count();
    checks.push(check(
        "second_faces",
        others as f32,
        format!("0 faces at least {SECOND_FACE_SHARE} of the main face's width"),
        others == 0,
    ));
    if others > 0 {
        return fail("TOO_MANY_FACES", checks);
    }
    let b = main.0.bbox;
    let side = b.width().min(b.height());
    checks.push(check(
        "face_size_px",
        side,
        format!(">= {MIN_FACE_PX}"),
        side >= MIN_FACE_PX,
    ));
    let p = FivePoints::from_landmarks(&main.1);
    let eyes = p.left_eye.distance(p.right_eye);
    checks.push(check(
        "eye_distance_px",
        eyes,
        format!(">= {MIN_EYE_DISTANCE_PX}"),
        eyes >= MIN_EYE_DISTANCE_PX,
    ));
    if side < MIN_FACE_PX || eyes < MIN_EYE_DISTANCE_PX {
        return fail("FACE_TOO_SMALL", checks);
    }
    let (w, h) = (width as f32, height as f32);
    let inside = [p.left_eye, p.right_eye, p.nose, p.left_mouth, p.right_mouth]
        .iter()
        .all(|q| q.x >= 0.0 && q.y >= 0.0 && q.x < w && q.y < h);
    checks.push(Check {
        name: "landmarks_inside",
        value: Some(if inside { 1.0 } else { 0.0 }),
        limit: "all five inside the image".into(),
        result: if inside { "passed" } else { "failed" },
    });
    if !inside {
        return fail("FACE_CROPPED", checks);
    }
    let border = b.left.min(b.top).min(w - b.right).min(h - b.bottom);
    checks.push(check(
        "border_px",
        border,
        format!(">= {MIN_BORDER_PX}"),
        border >= MIN_BORDER_PX,
    ));
    if border < MIN_BORDER_PX {
        return fail("FACE_CLOSE_TO_BORDER", checks);
    }
    checks.push(Check {
        name: "pad",
        value: None,
        limit: "presentation-attack model".into(),
        result: "not_run",
    });
    fail("UNKNOWN_ERROR", checks)
}
