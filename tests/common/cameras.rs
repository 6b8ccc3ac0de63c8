//! Helpers of the tests that run `facegate serve` with cameras: frames that show the fixture
//! faces, a person enrolled beforehand, and waiting on `/health`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use facegate_core::config::EmbedderKind;
use facegate_daemon::camera::scene;
use serde_json::{json, Value};

use super::server::{b64, Options, Server};
use super::{fixture, fixture_bytes};

/// How big the faces of [`scene_folder`] are, in pixels.
pub const FACE_PX: f32 = 220.0;

/// A folder of 1280x720 frames: each photo's face shown for `on` frames, then `off` empty ones.
pub fn scene_folder(dir: &Path, photos: &[&str], on: usize, off: usize) -> PathBuf {
    let mut engine = super::engine(EmbedderKind::Dlib128);
    let empty = scene::empty_frame(1280, 720);
    let frames = dir.join("frames");
    for p in photos {
        let face = scene::photo_frame(&mut engine, &fixture(p), FACE_PX, 1280, 720).unwrap();
        scene::append_frames(&frames, &[(&face, on), (&empty, off)]).unwrap();
    }
    frames
}

/// Enrol obama.jpg as "obama" (name "Barack Obama", badge 44) in collection "staff" through
/// the API of a server without cameras on `data`.
pub fn enrol_obama(data: &Path) {
    enrol_obama_with(data, "", Value::Null);
}

/// [`enrol_obama`] with access rules (`null`: none) and configuration added (schedules the
/// rules name).
pub fn enrol_obama_with(data: &Path, config: &str, access: Value) {
    let mut s = Server::start_with(
        data,
        &Options {
            config: format!("[inference]\nembedder = \"dlib128\"\n{config}"),
            ..Options::default()
        },
    )
    .unwrap();
    let (status, _) = s.call("POST", "/collection", Some(&json!({"name": "staff"})));
    assert_eq!(status, 200);
    let (status, body) = s.call(
        "PUT",
        "/person",
        Some(&json!({
            "collection_name": "staff",
            "person_id": "obama",
            "person_name": "Barack Obama",
            "face_base_64": b64(&fixture_bytes("obama.jpg")),
            "metadata": {"badge": "44"},
            "access": access,
        })),
    );
    assert_eq!(status, 200, "{body}");
    assert!(s.stop().success());
}

pub fn health(s: &Server) -> Value {
    s.call("GET", "/health", None).1
}

/// `/health` once `pred` holds, asked every 100 ms; fails the test after `timeout` (stretched
/// by [`super::patience`]).
pub fn wait_health(
    s: &Server,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + super::patience(timeout);
    loop {
        let h = health(s);
        if pred(&h) {
            return h;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {h:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
