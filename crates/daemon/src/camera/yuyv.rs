//! YUYV (YUV 4:2:2, BT.601 limited range, as UVC cameras send it) to RGB.

use image::RgbImage;

/// Convert a packed YUYV buffer; `None` when it is shorter than `width × height × 2` bytes or
/// the width is odd. Extra bytes (driver padding) are ignored.
pub fn yuyv_to_rgb(data: &[u8], width: u32, height: u32) -> Option<RgbImage> {
    if !width.is_multiple_of(2) || width == 0 || height == 0 {
        return None;
    }
    let needed = width as usize * height as usize * 2;
    let data = data.get(..needed)?;
    let mut out = vec![0u8; width as usize * height as usize * 3];
    for (src, dst) in data.chunks_exact(4).zip(out.chunks_exact_mut(6)) {
        let (y0, u, y1, v) = (src[0], src[1], src[2], src[3]);
        dst[..3].copy_from_slice(&pixel(y0, u, v));
        dst[3..].copy_from_slice(&pixel(y1, u, v));
    }
    RgbImage::from_raw(width, height, out)
}

/// BT.601 limited range in fixed point (×256).
fn pixel(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = (y as i32 - 16).max(0) * 298;
    let d = u as i32 - 128;
    let e = v as i32 - 128;
    let clamp = |x: i32| ((x + 128) >> 8).clamp(0, 255) as u8;
    [
        clamp(c + 409 * e),
        clamp(c - 100 * d - 208 * e),
        clamp(c + 516 * d),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limited_range_white_black_and_red_convert_to_their_rgb_values() {
        // Two pixels per 4 bytes: white/black, then BT.601 red (Y 81, U 90, V 240).
        let data = [235, 128, 16, 128, 81, 90, 81, 240];
        let img = yuyv_to_rgb(&data, 2, 2).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(1, 0).0, [0, 0, 0]);
        let red = img.get_pixel(0, 1).0;
        assert!(red[0] >= 250 && red[1] <= 5 && red[2] <= 5, "{red:?}");
    }

    #[test]
    fn a_short_buffer_or_odd_width_is_refused_and_padding_is_ignored() {
        assert!(yuyv_to_rgb(&[0; 7], 2, 2).is_none());
        assert!(yuyv_to_rgb(&[0; 12], 3, 2).is_none());
        assert!(yuyv_to_rgb(&[128; 100], 2, 2).is_some());
    }
}
