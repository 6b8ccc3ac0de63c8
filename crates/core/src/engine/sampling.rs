//! Pixels into model tensors: letterboxed resizes for the detector and affine warps (rotated
//! crops, aligned chips) for everything after it. All outputs are planar NCHW `f32`.

use fast_image_resize as fr;
use image::RgbImage;

use super::geometry::{Affine, Point};

/// `v' = (v - mean[c]) * scale[c]` per channel, and the order of the channel planes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalisation {
    pub mean: [f32; 3],
    pub scale: [f32; 3],
    /// Write the planes as B, G, R (networks trained on OpenCV images) instead of R, G, B.
    pub bgr: bool,
}

impl Normalisation {
    pub const fn uniform(mean: f32, scale: f32) -> Self {
        Self {
            mean: [mean; 3],
            scale: [scale; 3],
            bgr: false,
        }
    }

    pub const fn bgr(self) -> Self {
        Self { bgr: true, ..self }
    }

    /// The plane an RGB channel is written to.
    #[inline]
    fn plane(&self, c: usize) -> usize {
        if self.bgr {
            2 - c
        } else {
            c
        }
    }

    /// The tensor value of a black (zero) pixel, used for padding.
    fn black(&self, c: usize) -> f32 {
        -self.mean[c] * self.scale[c]
    }
}

/// A rectangle of the frame, in whole pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub left: u32,
    pub top: u32,
    pub width: u32,
    pub height: u32,
}

impl Region {
    pub fn whole(img: &RgbImage) -> Self {
        Self {
            left: 0,
            top: 0,
            width: img.width(),
            height: img.height(),
        }
    }
}

/// `region` of a frame shrunk to fit a `size`×`size` square (aspect ratio kept), not yet
/// padded: what the detector's letterbox holds before normalisation.
pub struct Letterboxed {
    pub image: RgbImage,
    /// Frame pixels per letterbox pixel: frame point = region origin + point × factor.
    pub factor: f32,
}

/// Resize `region` of `img` to fit a `size`×`size` square, keeping the aspect ratio.
pub fn shrink_to_fit(img: &RgbImage, region: Region, size: u32) -> Letterboxed {
    let side = region.width.max(region.height) as f32;
    let factor = side / size as f32;
    let w = ((region.width as f32 / factor).round() as u32).clamp(1, size);
    let h = ((region.height as f32 / factor).round() as u32).clamp(1, size);
    let src =
        fr::images::ImageRef::new(img.width(), img.height(), img.as_raw(), fr::PixelType::U8x3)
            .expect("an RgbImage buffer always matches its dimensions");
    let mut dst = fr::images::Image::new(w, h, fr::PixelType::U8x3);
    let options = fr::ResizeOptions::new()
        .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear))
        .crop(
            region.left as f64,
            region.top as f64,
            region.width as f64,
            region.height as f64,
        );
    fr::Resizer::new()
        .resize(&src, &mut dst, &options)
        .expect("same pixel type in and out");
    let image = RgbImage::from_raw(w, h, dst.into_vec()).expect("w × h × 3 bytes");
    Letterboxed { image, factor }
}

/// Write a shrunk image into a `size`×`size` NCHW tensor with its top-left corner at `at`
/// (tensor pixels), padding the rest with black.
pub fn pad_to_tensor(
    img: &RgbImage,
    size: u32,
    at: (u32, u32),
    norm: &Normalisation,
    out: &mut Vec<f32>,
) {
    debug_assert!(at.0 + img.width() <= size && at.1 + img.height() <= size);
    let n = (size * size) as usize;
    out.clear();
    out.resize(3 * n, 0.0);
    for c in 0..3 {
        out[norm.plane(c) * n..(norm.plane(c) + 1) * n].fill(norm.black(c));
    }
    let (w, buf) = (img.width() as usize, img.as_raw());
    for y in 0..img.height() as usize {
        for x in 0..w {
            let p = (y * w + x) * 3;
            let o = (y + at.1 as usize) * size as usize + x + at.0 as usize;
            for c in 0..3 {
                out[norm.plane(c) * n + o] = (buf[p + c] as f32 - norm.mean[c]) * norm.scale[c];
            }
        }
    }
}

#[inline]
fn pixel(img: &RgbImage, x: i64, y: i64) -> Option<[f32; 3]> {
    if x < 0 || y < 0 || x >= img.width() as i64 || y >= img.height() as i64 {
        return None;
    }
    let i = (y as usize * img.width() as usize + x as usize) * 3;
    let raw = img.as_raw();
    Some([raw[i] as f32, raw[i + 1] as f32, raw[i + 2] as f32])
}

/// Bilinear sample at a continuous pixel position (pixel centres at integers); black outside.
#[inline]
fn bilinear(img: &RgbImage, p: Point) -> [f32; 3] {
    let x0 = p.x.floor();
    let y0 = p.y.floor();
    let (fx, fy) = (p.x - x0, p.y - y0);
    let (xi, yi) = (x0 as i64, y0 as i64);
    let mut acc = [0f32; 3];
    for (dx, dy, w) in [
        (0, 0, (1.0 - fx) * (1.0 - fy)),
        (1, 0, fx * (1.0 - fy)),
        (0, 1, (1.0 - fx) * fy),
        (1, 1, fx * fy),
    ] {
        if w == 0.0 {
            continue;
        }
        if let Some(px) = pixel(img, xi + dx, yi + dy) {
            for c in 0..3 {
                acc[c] += w * px[c];
            }
        }
    }
    acc
}

/// Fill a `width`×`height` NCHW tensor by sampling `img` at `to_image(output pixel)`.
/// Bilinear; when the map shrinks the image by more than 1.5× each output pixel averages a
/// k×k grid of samples (k up to 4) so that small chips of large faces do not alias.
pub fn warp(
    img: &RgbImage,
    to_image: &Affine,
    width: usize,
    height: usize,
    norm: &Normalisation,
    out: &mut [f32],
) {
    let n = width * height;
    assert_eq!(out.len(), 3 * n, "warp output has the wrong size");
    let k = (to_image.scale() / 1.5).ceil().clamp(1.0, 4.0) as usize;
    let inv_k = 1.0 / k as f32;
    let weight = inv_k * inv_k;
    for y in 0..height {
        for x in 0..width {
            let mut acc = [0f32; 3];
            for sy in 0..k {
                for sx in 0..k {
                    let u = x as f32 + (sx as f32 + 0.5) * inv_k - 0.5;
                    let v = y as f32 + (sy as f32 + 0.5) * inv_k - 0.5;
                    let s = bilinear(img, to_image.apply(Point::new(u, v)));
                    for c in 0..3 {
                        acc[c] += s[c];
                    }
                }
            }
            let o = y * width + x;
            for c in 0..3 {
                out[norm.plane(c) * n + o] = (acc[c] * weight - norm.mean[c]) * norm.scale[c];
            }
        }
    }
}

/// The horizontally mirrored copy of a CHW tensor.
pub fn mirror(chw: &[f32], width: usize, height: usize, out: &mut [f32]) {
    assert_eq!(chw.len(), out.len());
    for (src_row, dst_row) in chw.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        for (d, s) in dst_row.iter_mut().zip(src_row.iter().rev()) {
            *d = *s;
        }
    }
    debug_assert_eq!(chw.len(), 3 * width * height);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 200]))
    }

    #[test]
    fn an_image_placed_inside_the_tensor_is_framed_by_padding() {
        let img = RgbImage::from_pixel(4, 2, image::Rgb([255, 255, 255]));
        let mut out = Vec::new();
        pad_to_tensor(&img, 8, (2, 3), &Normalisation::uniform(0.0, 1.0), &mut out);
        let at = |x: usize, y: usize| out[y * 8 + x];
        assert_eq!((at(2, 3), at(5, 4)), (255.0, 255.0), "the image's corners");
        assert_eq!(
            (at(1, 3), at(6, 3), at(2, 2), at(2, 5)),
            (0.0, 0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn letterbox_pads_the_short_side_and_reports_the_scale() {
        let img = RgbImage::from_pixel(400, 200, image::Rgb([255, 255, 255]));
        let mut out = Vec::new();
        let shrunk = shrink_to_fit(&img, Region::whole(&img), 100);
        pad_to_tensor(
            &shrunk.image,
            100,
            (0, 0),
            &Normalisation::uniform(0.0, 1.0),
            &mut out,
        );
        assert_eq!(shrunk.factor, 4.0);
        assert_eq!(shrunk.image.dimensions(), (100, 50));
        assert_eq!(out.len(), 3 * 100 * 100);
        assert_eq!(out[10 * 100 + 10], 255.0, "inside the image");
        assert_eq!(out[80 * 100 + 10], 0.0, "in the bottom padding");
    }

    #[test]
    fn identity_warp_reproduces_the_pixels() {
        let img = gradient(50, 40);
        let id = Affine {
            m: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        };
        let mut out = vec![0.0; 3 * 50 * 40];
        warp(
            &img,
            &id,
            50,
            40,
            &Normalisation::uniform(0.0, 1.0),
            &mut out,
        );
        assert_eq!(out[7 * 50 + 13], 13.0);
        assert_eq!(out[50 * 40 + 7 * 50 + 13], 7.0);
        assert_eq!(out[2 * 50 * 40], 200.0);
    }

    #[test]
    fn warp_interpolates_between_pixels_and_is_black_outside() {
        let img = gradient(50, 40);
        let shift = Affine {
            m: [1.0, 0.0, 0.5, 0.0, 1.0, -100.0],
        };
        let mut out = vec![0.0; 3 * 4 * 4];
        warp(
            &img,
            &shift,
            4,
            4,
            &Normalisation::uniform(0.0, 1.0),
            &mut out,
        );
        assert!(
            out.iter().all(|&v| v == 0.0),
            "whole crop lies above the image"
        );
        let half = Affine {
            m: [1.0, 0.0, 0.5, 0.0, 1.0, 0.0],
        };
        warp(
            &img,
            &half,
            4,
            4,
            &Normalisation::uniform(0.0, 1.0),
            &mut out,
        );
        assert!((out[1] - 1.5).abs() < 1e-5);
    }

    #[test]
    fn bgr_normalisation_writes_the_planes_in_reverse_order() {
        let img = RgbImage::from_pixel(4, 4, image::Rgb([10, 20, 30]));
        let id = Affine {
            m: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        };
        let mut out = vec![0.0; 3 * 16];
        warp(
            &img,
            &id,
            4,
            4,
            &Normalisation::uniform(0.0, 1.0).bgr(),
            &mut out,
        );
        assert_eq!((out[0], out[16], out[32]), (30.0, 20.0, 10.0));
    }

    #[test]
    fn mirror_reverses_each_row() {
        let t: Vec<f32> = (0..3 * 2 * 3).map(|v| v as f32).collect();
        let mut m = vec![0.0; t.len()];
        mirror(&t, 3, 2, &mut m);
        assert_eq!(&m[..6], &[2.0, 1.0, 0.0, 5.0, 4.0, 3.0]);
    }
}
