//! The latest frame a camera's pipeline looked at, with the faces it found, for
//! `GET /cameras/{name}/snapshot`: kept as a reference to the frame (no copy, no encoding per
//! frame) and drawn and encoded only when asked.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use image::{Rgb, RgbImage};

use facegate_core::engine::geometry::BoundingBox;

/// How a face of the snapshot was decided so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaceState {
    /// A recognised person.
    Known,
    /// Decided, but not a recognised person (unknown, spoof, undetermined).
    Refused,
    /// Not decided yet.
    Pending,
}

impl FaceState {
    fn colour(self) -> Rgb<u8> {
        match self {
            FaceState::Known => Rgb([40, 200, 80]),
            FaceState::Refused => Rgb([230, 50, 50]),
            FaceState::Pending => Rgb([250, 190, 20]),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SnapshotFace {
    pub bbox: BoundingBox,
    pub state: FaceState,
    /// The person id, for a known face.
    pub label: Option<String>,
}

#[derive(Clone)]
pub struct Snapshot {
    pub image: Arc<RgbImage>,
    pub captured_wall: SystemTime,
    pub faces: Vec<SnapshotFace>,
}

/// The newest snapshot of one camera.
#[derive(Default)]
pub struct LatestFrame(Mutex<Option<Snapshot>>);

impl LatestFrame {
    pub fn set(&self, snapshot: Snapshot) {
        *self.0.lock().unwrap() = Some(snapshot);
    }

    pub fn get(&self) -> Option<Snapshot> {
        self.0.lock().unwrap().clone()
    }
}

/// The frame scaled to at most `max_width` pixels wide with a box around each face (green:
/// known, red: refused, amber: deciding), as a JPEG.
pub fn render_jpeg(snapshot: &Snapshot, max_width: u32) -> Result<Vec<u8>, image::ImageError> {
    let source = &*snapshot.image;
    let scale = if source.width() > max_width {
        max_width as f32 / source.width() as f32
    } else {
        1.0
    };
    let mut image = if scale < 1.0 {
        image::imageops::resize(
            source,
            max_width,
            ((source.height() as f32 * scale).round() as u32).max(1),
            image::imageops::FilterType::Triangle,
        )
    } else {
        source.clone()
    };
    let thickness = ((image.width() / 320).max(2)) as i64;
    for face in &snapshot.faces {
        let b = &face.bbox;
        draw_box(
            &mut image,
            (b.left * scale) as i64,
            (b.top * scale) as i64,
            (b.right * scale) as i64,
            (b.bottom * scale) as i64,
            thickness,
            face.state.colour(),
        );
    }
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 75).encode_image(&image)?;
    Ok(out)
}

/// A rectangle outline `thickness` pixels wide, clipped to the image.
fn draw_box(
    image: &mut RgbImage,
    left: i64,
    top: i64,
    right: i64,
    bottom: i64,
    thickness: i64,
    colour: Rgb<u8>,
) {
    let (w, h) = (image.width() as i64, image.height() as i64);
    let mut fill = |x0: i64, y0: i64, x1: i64, y1: i64| {
        for y in y0.max(0)..y1.min(h) {
            for x in x0.max(0)..x1.min(w) {
                image.put_pixel(x as u32, y as u32, colour);
            }
        }
    };
    fill(left, top, right, top + thickness);
    fill(left, bottom - thickness, right, bottom);
    fill(left, top, left + thickness, bottom);
    fill(right - thickness, top, right, bottom);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_face_box_is_drawn_in_its_state_colour_and_the_frame_is_scaled_down() {
        let snapshot = Snapshot {
            image: Arc::new(RgbImage::from_pixel(1280, 720, Rgb([0, 0, 0]))),
            captured_wall: SystemTime::now(),
            faces: vec![SnapshotFace {
                bbox: BoundingBox {
                    left: 100.0,
                    top: 100.0,
                    right: 500.0,
                    bottom: 500.0,
                },
                state: FaceState::Known,
                label: Some("alice".into()),
            }],
        };
        let jpeg = render_jpeg(&snapshot, 640).unwrap();
        let decoded = image::load_from_memory(&jpeg).unwrap().to_rgb8();
        assert_eq!((decoded.width(), decoded.height()), (640, 360));
        // The top edge of the box, at half scale: green; the middle of the face: black.
        let edge = decoded.get_pixel(150, 51);
        assert!(edge[1] > 150 && edge[0] < 100, "{edge:?}");
        let inside = decoded.get_pixel(150, 150);
        assert!(inside[1] < 30, "{inside:?}");
    }
}
