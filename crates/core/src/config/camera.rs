//! `[[cameras]]`: the cameras of the main job.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Problems;

/// Where a camera's frames come from.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A V4L2 device (USB or CSI camera).
    #[default]
    V4l2,
    /// MJPEG over HTTP (`multipart/x-mixed-replace`), as many IP cameras serve it.
    Mjpeg,
    /// A folder of JPEG/PNG frames (name order) or a single image, for demos and tests.
    Replay,
}

/// Pixel format asked of a V4L2 device.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    #[default]
    /// Compressed frames, decoded on the board.
    Mjpeg,
    /// Raw YUV 4:2:2, converted on the board.
    Yuyv,
}

/// What liveness a camera requires before a match opens its door.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LivenessMode {
    /// Not checked: every match is accepted (reported as `skipped`).
    Off,
    /// The still-image checks and the PAD model on the track's best frame must pass.
    #[default]
    Still,
    /// As `still`, and the track's landmark motion must show a three-dimensional head.
    Track,
}

/// One camera of `facegate serve` (a `[[cameras]]` table).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CameraConfig {
    /// Name in topics, /health and metrics (letters, digits, '-', '_').
    pub name: String,
    /// "v4l2" (device), "mjpeg" (url: MJPEG over HTTP) or "replay" (path: folder or image).
    pub source: SourceKind,
    /// V4L2 device path.
    pub device: PathBuf,
    /// V4L2 pixel format: "mjpeg" or "yuyv".
    pub format: PixelFormat,
    /// V4L2 frame size asked for (the driver may pick the nearest it has).
    pub width: u32,
    /// (height of the frame size)
    pub height: u32,
    /// V4L2 frames per second asked for; replay pace (0: as fast as the pipeline takes them).
    pub fps: f32,
    /// MJPEG stream URL (http://...).
    pub url: String,
    /// Replay: a folder of JPEG/PNG frames (played in name order) or one image.
    #[serde(with = "super::optional_path")]
    pub path: Option<PathBuf>,
    /// Replay: start again at the end (false: play once, then the camera is "ended").
    pub replay_loop: bool,
    /// Collection searched for this camera's faces.
    pub collection: String,
    /// A match needs a fused similarity_score at or above this (0.7 = FMR 1e-5, see docs/accuracy.md).
    pub min_similarity_score: f32,
    /// The false-accept rate one attempt may have (a stranger taken for anyone enrolled), e.g.
    /// 1e-3: the threshold then rises with the number of templates in the collection
    /// (min_similarity_score stays the floor). 0: off, the threshold is min_similarity_score.
    pub max_false_accept_per_attempt: f64,
    /// Liveness required before a match: "off", "still" (still checks + PAD on the best frame)
    /// or "track" (also 3-D head motion over the track).
    pub liveness: LivenessMode,
    /// Door this camera guards: access messages go to <prefix>/<device>/<door>/access. Empty: none.
    pub door: String,
    /// Run the detector on every k-th frame (tracks coast in between).
    pub detect_every: u32,
    /// Smallest face side in pixels the detector looks for on this camera (from 1/12 of the
    /// frame's longer side up, no tiled search is needed: 107 px at 1280x720).
    pub min_face_px: f32,
    /// No second event for the same person on this camera within this many seconds.
    pub hold_off_s: f32,
    /// Embedded frames of a track without a match before it is declared unknown.
    pub decide_after: u32,
    /// A track still waiting for liveness evidence after this many seconds is decided with
    /// what it has (undetermined).
    pub decision_timeout_s: f32,
    /// A track not seen for this many seconds has ended.
    pub track_lost_s: f32,
}

impl Default for CameraConfig {
    fn default() -> Self {
        Self {
            name: "camera".into(),
            source: SourceKind::V4l2,
            device: PathBuf::from("/dev/video0"),
            format: PixelFormat::Mjpeg,
            width: 1280,
            height: 720,
            fps: 15.0,
            url: String::new(),
            path: None,
            replay_loop: true,
            collection: "default".into(),
            min_similarity_score: 0.7,
            max_false_accept_per_attempt: 0.0,
            liveness: LivenessMode::Still,
            door: String::new(),
            detect_every: 1,
            min_face_px: 110.0,
            hold_off_s: 10.0,
            decide_after: 3,
            decision_timeout_s: 3.0,
            track_lost_s: 0.5,
        }
    }
}

/// Add every problem of the `[[cameras]]` tables to `p`.
pub(super) fn validate_all(cameras: &[CameraConfig], p: &mut Problems) {
    let mut names = std::collections::HashSet::new();
    for c in cameras {
        if !super::is_topic_segment(&c.name) {
            p.add(
                "cameras.name",
                c.name.clone(),
                "must be 1-64 letters, digits, '-' or '_' (it is an MQTT topic level)",
            );
        }
        if !names.insert(c.name.as_str()) {
            p.add("cameras.name", c.name.clone(), "two cameras have this name");
        }
        if !c.door.is_empty() && !super::is_topic_segment(&c.door) {
            p.add(
                "cameras.door",
                c.door.clone(),
                "must be empty or 1-64 letters, digits, '-' or '_'",
            );
        }
        match c.source {
            SourceKind::Replay if c.path.is_none() => {
                p.add(
                    "cameras.path",
                    String::new(),
                    "a replay camera needs the path of a folder or an image",
                );
            }
            SourceKind::Mjpeg if !c.url.starts_with("http://") => {
                p.add(
                    "cameras.url", // The message reaches the log: never the URL's credentials.
                    crate::redact::redact_urls(&c.url),
                    "an mjpeg camera needs an http:// URL",
                );
            }
            SourceKind::V4l2 if c.device.as_os_str().is_empty() => {
                p.add(
                    "cameras.device",
                    String::new(),
                    "a v4l2 camera needs a device path",
                );
            }
            _ => {}
        }
        if !(0.0..=240.0).contains(&c.fps) {
            p.add(
                "cameras.fps",
                c.fps.to_string(),
                "must be between 0 and 240",
            );
        }
        if c.width == 0 || c.height == 0 {
            p.add(
                "cameras.width",
                format!("{}x{}", c.width, c.height),
                "width and height must be positive",
            );
        }
        if !(0.0..=1.0).contains(&c.min_similarity_score) {
            p.add(
                "cameras.min_similarity_score",
                c.min_similarity_score.to_string(),
                "must be between 0 and 1",
            );
        }
        if !(0.0..1.0).contains(&c.max_false_accept_per_attempt) {
            p.add(
                "cameras.max_false_accept_per_attempt",
                c.max_false_accept_per_attempt.to_string(),
                "must be at least 0 (off) and below 1, e.g. 1e-3",
            );
        }
        if c.detect_every == 0 {
            p.add("cameras.detect_every", "0".into(), "must be at least 1");
        }
        if c.decide_after == 0 {
            p.add("cameras.decide_after", "0".into(), "must be at least 1");
        }
        if c.min_face_px.is_nan() || c.min_face_px < 16.0 {
            p.add(
                "cameras.min_face_px",
                c.min_face_px.to_string(),
                "must be at least 16",
            );
        }
        for (key, v) in [
            ("cameras.hold_off_s", c.hold_off_s),
            ("cameras.decision_timeout_s", c.decision_timeout_s),
            ("cameras.track_lost_s", c.track_lost_s),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                p.add(
                    key,
                    v.to_string(),
                    "must be a non-negative number of seconds",
                );
            }
        }
    }
}
