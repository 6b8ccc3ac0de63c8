//! Still-image liveness: the upstream capture requirements measured on one photo, each
//! reported with its value and limit.
//!
//! Geometry (face count, size, border, crop, distance, head pose, open eyes, plausible
//! landmarks) says whether a photo is fit to judge; it cannot tell a live face from a printed
//! one. Only the presentation-attack (PAD) model can say "live", and it runs only on faces that
//! pass the geometry (it is unreliable on small or clipped faces); without it the verdict is
//! never live: it reports `pad: not_run` and `UNKNOWN_ERROR`.

use image::RgbImage;
use serde::Serialize;

use super::detector::Detection;
use super::geometry::{BoundingBox, Point};
use super::landmarks::Landmarks;
use super::FivePoints;
use crate::config::LivenessConfig;

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

/// The upstream liveness codes: `OK`, or why a face is not (or cannot be judged) live.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LivenessCode {
    Ok,
    FaceNotFound,
    TooManyFaces,
    FaceCropped,
    FaceTooSmall,
    FaceTooClose,
    FaceCloseToBorder,
    FaceIsOccluded,
    FaceAngleTooLarge,
    EyesClosed,
    UnknownError,
    /// The PAD model judged the face a presentation attack.
    FaceNotLive,
}

impl LivenessCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::FaceNotFound => "FACE_NOT_FOUND",
            Self::TooManyFaces => "TOO_MANY_FACES",
            Self::FaceCropped => "FACE_CROPPED",
            Self::FaceTooSmall => "FACE_TOO_SMALL",
            Self::FaceTooClose => "FACE_TOO_CLOSE",
            Self::FaceCloseToBorder => "FACE_CLOSE_TO_BORDER",
            Self::FaceIsOccluded => "FACE_IS_OCCLUDED",
            Self::FaceAngleTooLarge => "FACE_ANGLE_TOO_LARGE",
            Self::EyesClosed => "EYES_CLOSED",
            Self::UnknownError => "UNKNOWN_ERROR",
            Self::FaceNotLive => "FACE_NOT_LIVE",
        }
    }
}

impl std::fmt::Display for LivenessCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for LivenessCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verdict {
    pub is_live: bool,
    pub liveness_score: f32,
    /// `OK` when live, else one of the upstream liveness codes.
    pub code: LivenessCode,
    pub checks: Vec<Check>,
}

/// Head pose from FaceMesh's 3-D landmarks, in degrees (0, 0 = facing the camera).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HeadPose {
    pub yaw: f32,
    pub pitch: f32,
}

/// FaceMesh eye contours: outer corner, two upper-lid points, inner corner, two lower-lid
/// points (the subject's right eye, then left).
const RIGHT_EYE: [usize; 6] = [33, 160, 158, 133, 153, 144];
const LEFT_EYE: [usize; 6] = [263, 387, 385, 362, 380, 373];

/// Eye aspect ratio (Soukupová & Čech): lid opening over eye width; ~0.3 open, near 0 shut.
pub fn eye_aspect_ratio(lm: &Landmarks, eye: &[usize; 6]) -> f32 {
    let p = |i: usize| lm.get(eye[i]);
    let width = p(0).distance(p(3));
    if width <= f32::EPSILON {
        return 0.0;
    }
    (p(1).distance(p(5)) + p(2).distance(p(4))) / (2.0 * width)
}

/// The mean eye aspect ratio of both eyes (for blink series).
pub fn eye_aspect_ratio_pair(lm: &Landmarks) -> f32 {
    (eye_aspect_ratio(lm, &RIGHT_EYE) + eye_aspect_ratio(lm, &LEFT_EYE)) / 2.0
}

/// Yaw and pitch of the face plane: its normal is the cross product of the eye line and the
/// line from the eyes' midpoint to the mouth's, in FaceMesh's 3-D coordinates (depth has the
/// same scale as x and y).
pub fn head_pose(lm: &Landmarks) -> HeadPose {
    let p3 = |i: usize| {
        let p = lm.get(i);
        [p.x, p.y, lm.depth[i]]
    };
    let mid = |a: [f32; 3], b: [f32; 3]| {
        [
            (a[0] + b[0]) / 2.0,
            (a[1] + b[1]) / 2.0,
            (a[2] + b[2]) / 2.0,
        ]
    };
    let sub = |a: [f32; 3], b: [f32; 3]| [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
    let right_eye = mid(p3(33), p3(133));
    let left_eye = mid(p3(263), p3(362));
    let mouth = mid(p3(61), p3(291));
    let x = sub(left_eye, right_eye);
    let y = sub(mouth, mid(left_eye, right_eye));
    let n = [
        x[1] * y[2] - x[2] * y[1],
        x[2] * y[0] - x[0] * y[2],
        x[0] * y[1] - x[1] * y[0],
    ];
    // The eye line runs image-left to image-right (the subject's right eye first) and the
    // mouth is below the eyes, so a frontal face has n.z > 0.
    HeadPose {
        yaw: (-n[0]).atan2(n[2]).to_degrees(),
        pitch: (-n[1]).atan2(n[2]).to_degrees(),
    }
}

fn measured(name: &'static str, value: f32, limit: String, passed: bool) -> Check {
    Check {
        name,
        value: Some(value),
        limit,
        result: if passed { "passed" } else { "failed" },
    }
}

/// Standard deviation of the grey level in a square of side `side` centred on `c`: near 0 on
/// a uniform occluder (a mask, a hand, a sticker), tens on an eye or a mouth.
pub fn region_contrast(frame: &RgbImage, c: Point, side: f32) -> f32 {
    let half = (side / 2.0).max(1.0);
    let (x0, x1) = (
        (c.x - half).max(0.0) as u32,
        (c.x + half).min(frame.width() as f32 - 1.0).max(0.0) as u32,
    );
    let (y0, y1) = (
        (c.y - half).max(0.0) as u32,
        (c.y + half).min(frame.height() as f32 - 1.0).max(0.0) as u32,
    );
    let (mut n, mut sum, mut sum_sq) = (0f64, 0f64, 0f64);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let p = frame.get_pixel(x, y);
            let g = 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64;
            n += 1.0;
            sum += g;
            sum_sq += g * g;
        }
    }
    if n < 2.0 {
        return 0.0;
    }
    let mean = sum / n;
    ((sum_sq / n - mean * mean).max(0.0)).sqrt() as f32
}

/// How open an eye looks: the share of pixels in a box around it (eye width × half of it)
/// that are darker than half the cheek's median grey. An open eye shows its iris and pupil
/// (a fifth to a third of the box); a shut one shows lid skin and a thin lash line.
pub fn eye_darkness(frame: &RgbImage, lm: &Landmarks, eye: &[usize; 6], cheek: Point) -> f32 {
    let grey = |x: u32, y: u32| {
        let p = frame.get_pixel(x, y);
        0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32
    };
    let clamp_x = |v: f32| v.clamp(0.0, frame.width() as f32 - 1.0) as u32;
    let clamp_y = |v: f32| v.clamp(0.0, frame.height() as f32 - 1.0) as u32;
    let (outer, inner) = (lm.get(eye[0]), lm.get(eye[3]));
    let c = outer.midpoint(inner);
    let w = outer.distance(inner);
    let (hw, hh) = (w / 2.0, w / 4.0);
    let half = (w / 4.0).max(1.0);
    let mut skin: Vec<f32> = Vec::new();
    for y in clamp_y(cheek.y - half)..=clamp_y(cheek.y + half) {
        for x in clamp_x(cheek.x - half)..=clamp_x(cheek.x + half) {
            skin.push(grey(x, y));
        }
    }
    if skin.is_empty() {
        return 0.0;
    }
    skin.sort_by(f32::total_cmp);
    let dark = skin[skin.len() / 2] * 0.5;
    let (mut n, mut d) = (0u32, 0u32);
    for y in clamp_y(c.y - hh)..=clamp_y(c.y + hh) {
        for x in clamp_x(c.x - hw)..=clamp_x(c.x + hw) {
            n += 1;
            if grey(x, y) < dark {
                d += 1;
            }
        }
    }
    if n == 0 {
        0.0
    } else {
        d as f32 / n as f32
    }
}

/// Check one photo. `faces` are the detected faces with landmarks; `pad` gives the live
/// probability of a face box (`None`: no PAD model) and is called only when every geometric
/// check has passed.
pub fn check_still(
    frame: &RgbImage,
    faces: &[(Detection, Landmarks)],
    limits: &LivenessConfig,
    pad: &mut dyn FnMut(&BoundingBox) -> Option<f32>,
) -> Verdict {
    let (width, height) = (frame.width(), frame.height());
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
        checks.push(measured("face_count", 0.0, ">= 1".into(), false));
        return fail(LivenessCode::FaceNotFound, checks);
    };
    let (det, lm) = main;
    let main_w = det.bbox.width();
    let others = faces
        .iter()
        .filter(|f| {
            !std::ptr::eq(*f, main) && f.0.bbox.width() >= limits.second_face_share * main_w
        })
        .count();
    checks.push(measured(
        "other_faces",
        others as f32,
        format!(
            "0 faces of at least {} of the main face's width",
            limits.second_face_share
        ),
        others == 0,
    ));
    if others > 0 {
        return fail(LivenessCode::TooManyFaces, checks);
    }
    let (w, h) = (width as f32, height as f32);
    let p = FivePoints::from_landmarks(lm);
    let inside = [p.left_eye, p.right_eye, p.nose, p.left_mouth, p.right_mouth]
        .iter()
        .all(|q| q.x >= 0.0 && q.y >= 0.0 && q.x < w && q.y < h);
    checks.push(measured(
        "landmarks_inside",
        if inside { 1.0 } else { 0.0 },
        "eyes, nose and mouth inside the image".into(),
        inside,
    ));
    if !inside {
        return fail(LivenessCode::FaceCropped, checks);
    }
    let b = det.bbox;
    let side = b.width().min(b.height());
    checks.push(measured(
        "face_size_px",
        side,
        format!(">= {}", limits.min_face_px),
        side >= limits.min_face_px,
    ));
    let eyes = p.left_eye.distance(p.right_eye);
    checks.push(measured(
        "eye_distance_px",
        eyes,
        format!(">= {}", limits.min_eye_distance_px),
        eyes >= limits.min_eye_distance_px,
    ));
    if side < limits.min_face_px || eyes < limits.min_eye_distance_px {
        return fail(LivenessCode::FaceTooSmall, checks);
    }
    let share = b.width() / w;
    checks.push(measured(
        "face_width_share",
        share,
        format!("<= {}", limits.max_face_share),
        share <= limits.max_face_share,
    ));
    if share > limits.max_face_share {
        return fail(LivenessCode::FaceTooClose, checks);
    }
    let border = b.left.min(b.top).min(w - b.right).min(h - b.bottom);
    checks.push(measured(
        "border_px",
        border,
        format!(">= {}", limits.min_border_px),
        border >= limits.min_border_px,
    ));
    if border < limits.min_border_px {
        return fail(LivenessCode::FaceCloseToBorder, checks);
    }
    checks.push(measured(
        "face_presence",
        lm.presence,
        format!(">= {}", limits.min_face_presence),
        lm.presence >= limits.min_face_presence,
    ));
    // Mouth-to-eyes distance over eye distance: ~0.9–1.3 on real faces of any pose within
    // the angle limits; far outside when the landmarks were fitted to something else.
    let proportion = p
        .left_mouth
        .midpoint(p.right_mouth)
        .distance(p.left_eye.midpoint(p.right_eye))
        / eyes.max(f32::EPSILON);
    let plausible = (limits.face_proportion[0]..=limits.face_proportion[1]).contains(&proportion);
    checks.push(measured(
        "face_proportion",
        proportion,
        format!(
            "{} to {}",
            limits.face_proportion[0], limits.face_proportion[1]
        ),
        plausible,
    ));
    // FaceMesh fits a whole face even over a mask or a hand (its presence stays near 1), so
    // the eyes and the mouth must also show texture.
    let eye_side = 0.4 * eyes;
    let contrast = [
        region_contrast(frame, p.left_eye, eye_side),
        region_contrast(frame, p.right_eye, eye_side),
        region_contrast(frame, p.left_mouth.midpoint(p.right_mouth), eye_side),
    ];
    let least = contrast.iter().copied().fold(f32::INFINITY, f32::min);
    checks.push(measured(
        "feature_contrast",
        least,
        format!(
            ">= {} (grey-level spread at each eye and the mouth)",
            limits.min_feature_contrast
        ),
        least >= limits.min_feature_contrast,
    ));
    if lm.presence < limits.min_face_presence || !plausible || least < limits.min_feature_contrast {
        return fail(LivenessCode::FaceIsOccluded, checks);
    }
    let pose = head_pose(lm);
    checks.push(measured(
        "yaw_deg",
        pose.yaw,
        format!("within ±{}", limits.max_yaw_deg),
        pose.yaw.abs() <= limits.max_yaw_deg,
    ));
    checks.push(measured(
        "pitch_deg",
        pose.pitch,
        format!("within ±{}", limits.max_pitch_deg),
        pose.pitch.abs() <= limits.max_pitch_deg,
    ));
    if pose.yaw.abs() > limits.max_yaw_deg || pose.pitch.abs() > limits.max_pitch_deg {
        return fail(LivenessCode::FaceAngleTooLarge, checks);
    }
    // Cheek reference: halfway from each eye to the mouth corner below it.
    let darkness = [
        eye_darkness(frame, lm, &RIGHT_EYE, p.left_eye.midpoint(p.left_mouth)),
        eye_darkness(frame, lm, &LEFT_EYE, p.right_eye.midpoint(p.right_mouth)),
    ];
    let darkest = darkness[0].max(darkness[1]);
    checks.push(measured(
        "eye_darkness",
        darkest,
        format!(
            ">= {} on at least one eye (share of the eye box darker than half the cheek)",
            limits.min_eye_darkness
        ),
        darkest >= limits.min_eye_darkness,
    ));
    let ears = [
        eye_aspect_ratio(lm, &RIGHT_EYE),
        eye_aspect_ratio(lm, &LEFT_EYE),
    ];
    let open = ears[0].max(ears[1]);
    checks.push(measured(
        "eye_aspect_ratio",
        open,
        format!(">= {} on at least one eye", limits.min_eye_aspect_ratio),
        open >= limits.min_eye_aspect_ratio,
    ));
    // FaceMesh's lids barely follow a closing eye, so the eye must also show a dark iris.
    if open < limits.min_eye_aspect_ratio || darkest < limits.min_eye_darkness {
        return fail(LivenessCode::EyesClosed, checks);
    }
    match pad(&det.bbox) {
        None => {
            checks.push(Check {
                name: "pad",
                value: None,
                limit: "presentation-attack model".into(),
                result: "not_run",
            });
            fail(LivenessCode::UnknownError, checks)
        }
        Some(live) => {
            let passed = live >= limits.pad_threshold;
            checks.push(measured(
                "pad_live_probability",
                live,
                format!(">= {}", limits.pad_threshold),
                passed,
            ));
            Verdict {
                is_live: passed,
                liveness_score: live,
                code: if passed {
                    LivenessCode::Ok
                } else {
                    LivenessCode::FaceNotLive
                },
                checks,
            }
        }
    }
}
