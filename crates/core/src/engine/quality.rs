//! How good a frame of a face is for recognition: size, sharpness and frontal pose. Tracks
//! embed their best frames by this score.

use image::RgbImage;

use super::geometry::BoundingBox;

/// Side of the grid the face box is sampled on for sharpness, so that the measure does not
/// depend on the face's size in pixels.
const GRID: usize = 64;

/// Variance of the Laplacian of the face's grey levels (sampled on a 64×64 grid over the box).
/// Sharp faces give hundreds; motion-blurred or defocused ones tens.
pub fn sharpness(frame: &RgbImage, bbox: &BoundingBox) -> f32 {
    let (w, h) = (frame.width() as f32, frame.height() as f32);
    let mut grey = vec![0f32; GRID * GRID];
    for gy in 0..GRID {
        let y = (bbox.top + (gy as f32 + 0.5) / GRID as f32 * bbox.height()).clamp(0.0, h - 1.0);
        for gx in 0..GRID {
            let x =
                (bbox.left + (gx as f32 + 0.5) / GRID as f32 * bbox.width()).clamp(0.0, w - 1.0);
            let p = frame.get_pixel(x as u32, y as u32).0;
            grey[gy * GRID + gx] = 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
        }
    }
    let mut sum = 0f64;
    let mut sum_sq = 0f64;
    let mut n = 0f64;
    for y in 1..GRID - 1 {
        for x in 1..GRID - 1 {
            let i = y * GRID + x;
            let lap = grey[i - 1] + grey[i + 1] + grey[i - GRID] + grey[i + GRID] - 4.0 * grey[i];
            sum += lap as f64;
            sum_sq += (lap * lap) as f64;
            n += 1.0;
        }
    }
    let mean = sum / n;
    (sum_sq / n - mean * mean).max(0.0) as f32
}

/// A score in [0, 1]: face side (saturating at 160 px), sharpness (half credit at 50) and the
/// cosines of yaw and pitch (degrees).
pub fn quality(bbox: &BoundingBox, sharpness: f32, yaw_deg: f32, pitch_deg: f32) -> f32 {
    let side = bbox.width().min(bbox.height());
    let size = (side / 160.0).clamp(0.0, 1.0);
    let sharp = sharpness / (sharpness + 50.0);
    let frontal = yaw_deg.to_radians().cos().max(0.0) * pitch_deg.to_radians().cos().max(0.0);
    size * sharp * frontal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkerboard(cell: u32) -> RgbImage {
        RgbImage::from_fn(128, 128, |x, y| {
            if (x / cell + y / cell).is_multiple_of(2) {
                image::Rgb([220; 3])
            } else {
                image::Rgb([30; 3])
            }
        })
    }

    #[test]
    fn fine_detail_is_sharper_than_a_smooth_patch() {
        let b = BoundingBox {
            left: 0.0,
            top: 0.0,
            right: 128.0,
            bottom: 128.0,
        };
        let fine = sharpness(&checkerboard(4), &b);
        let flat = sharpness(&RgbImage::from_pixel(128, 128, image::Rgb([90; 3])), &b);
        assert!(fine > 1000.0, "{fine}");
        assert!(flat < 1e-3, "{flat}");
    }

    #[test]
    fn a_bigger_sharper_frontal_face_scores_higher() {
        let big = BoundingBox {
            left: 0.0,
            top: 0.0,
            right: 200.0,
            bottom: 220.0,
        };
        let small = BoundingBox {
            left: 0.0,
            top: 0.0,
            right: 80.0,
            bottom: 90.0,
        };
        assert!(quality(&big, 300.0, 0.0, 0.0) > quality(&small, 300.0, 0.0, 0.0));
        assert!(quality(&big, 300.0, 0.0, 0.0) > quality(&big, 20.0, 0.0, 0.0));
        assert!(quality(&big, 300.0, 0.0, 0.0) > quality(&big, 300.0, 35.0, 0.0));
    }
}
