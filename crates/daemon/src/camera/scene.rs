//! Replay scenes for the demo, the tests and the pipeline benchmark: camera-sized frames that
//! show a photo's face at a chosen size, and folders of numbered frames that play them as
//! "person walks up, stays, leaves" sequences.

use std::path::Path;

use image::RgbImage;

use facegate_core::engine::geometry::BoundingBox;
use facegate_core::engine::{Engine, EngineError};

const BACKGROUND: image::Rgb<u8> = image::Rgb([96, 96, 96]);

/// A `width`×`height` frame showing `photo` scaled so that `face` spans `face_px` pixels,
/// with the face at the centre.
pub fn face_frame(
    photo: &RgbImage,
    face: &BoundingBox,
    face_px: f32,
    width: u32,
    height: u32,
) -> RgbImage {
    let scale = face_px / face.width().max(1.0);
    let (w, h) = (
        ((photo.width() as f32 * scale).round() as u32).max(1),
        ((photo.height() as f32 * scale).round() as u32).max(1),
    );
    let scaled = image::imageops::resize(photo, w, h, image::imageops::FilterType::Triangle);
    let c = face.center();
    let x = width as f32 / 2.0 - c.x * scale;
    let y = height as f32 / 2.0 - c.y * scale;
    let mut canvas = RgbImage::from_pixel(width, height, BACKGROUND);
    image::imageops::overlay(&mut canvas, &scaled, x.round() as i64, y.round() as i64);
    canvas
}

/// A frame with nobody in it.
pub fn empty_frame(width: u32, height: u32) -> RgbImage {
    RgbImage::from_pixel(width, height, BACKGROUND)
}

/// The frame of [`face_frame`] for the largest face the engine finds in the photo at `path`.
pub fn photo_frame(
    engine: &mut Engine,
    path: &Path,
    face_px: f32,
    width: u32,
    height: u32,
) -> Result<RgbImage, EngineError> {
    let bytes = std::fs::read(path)
        .map_err(|e| EngineError::Inference(format!("cannot read {}: {e}", path.display())))?;
    let photo = engine.decode(&bytes)?;
    let face = engine
        .detect(&photo)?
        .into_iter()
        .max_by(|a, b| a.bbox.width().total_cmp(&b.bbox.width()))
        .ok_or_else(|| EngineError::Inference(format!("no face in {}", path.display())))?;
    Ok(face_frame(&photo, &face.bbox, face_px, width, height))
}

/// Write `count` copies of each frame, in order, as `NNNNNN.jpg` files after the ones already
/// in `dir`. Returns the number of frames in the folder.
pub fn append_frames(dir: &Path, frames: &[(&RgbImage, usize)]) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut n = std::fs::read_dir(dir)?.count();
    for (frame, count) in frames {
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
            .encode_image(*frame)
            .map_err(std::io::Error::other)?;
        for _ in 0..*count {
            std::fs::write(dir.join(format!("{n:06}.jpg")), &jpeg)?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_face_is_scaled_to_the_asked_size_and_centred() {
        let mut photo = RgbImage::from_pixel(400, 400, image::Rgb([0, 0, 0]));
        for y in 100..200 {
            for x in 200..300 {
                photo.put_pixel(x, y, image::Rgb([255, 255, 255]));
            }
        }
        let face = BoundingBox {
            left: 200.0,
            top: 100.0,
            right: 300.0,
            bottom: 200.0,
        };
        let frame = face_frame(&photo, &face, 200.0, 1280, 720);
        assert_eq!(frame.get_pixel(640, 360).0, [255, 255, 255]);
        assert_eq!(frame.get_pixel(640 - 90, 360).0, [255, 255, 255]);
        assert_eq!(frame.get_pixel(640 - 110, 360).0, [0, 0, 0]);
    }
}
