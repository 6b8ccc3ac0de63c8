//! Turning encoded bytes into an upright RGB frame, refusing bad input before it costs memory.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

/// Smallest side accepted: below this no face the detector could find would fit.
pub const MIN_SIDE: u32 = 16;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not an image: the data is neither JPEG nor PNG")]
    NotAnImage,
    #[error("the image could not be decoded (corrupt or truncated {format}): {detail}")]
    Corrupt {
        format: &'static str,
        detail: String,
    },
    #[error("the image is {width}×{height} pixels; at least {MIN_SIDE}×{MIN_SIDE} is needed")]
    TooSmall { width: u32, height: u32 },
    #[error("the image is {width}×{height} pixels, above the limit of {limit_mp} megapixels")]
    TooLarge {
        width: u32,
        height: u32,
        limit_mp: f32,
    },
}

fn format_name(format: Option<image::ImageFormat>) -> &'static str {
    match format {
        Some(image::ImageFormat::Jpeg) => "JPEG",
        Some(image::ImageFormat::Png) => "PNG",
        _ => "image",
    }
}

/// Decode JPEG or PNG bytes into an RGB frame. EXIF orientation is applied, grayscale is
/// expanded and alpha dropped. The declared size is checked against `max_megapixels` before
/// any pixel is decoded, so a small file claiming a huge image costs nothing.
pub fn decode(bytes: &[u8], max_megapixels: f32) -> Result<RgbImage, DecodeError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| DecodeError::NotAnImage)?;
    let format = reader.format();
    if !matches!(
        format,
        Some(image::ImageFormat::Jpeg) | Some(image::ImageFormat::Png)
    ) {
        return Err(DecodeError::NotAnImage);
    }
    let corrupt = |e: image::ImageError| DecodeError::Corrupt {
        format: format_name(format),
        detail: e.to_string(),
    };
    let mut decoder = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Limits(_) => DecodeError::TooLarge {
            width: 0,
            height: 0,
            limit_mp: max_megapixels,
        },
        other => corrupt(other),
    })?;
    let (width, height) = decoder.dimensions();
    if width < MIN_SIDE || height < MIN_SIDE {
        return Err(DecodeError::TooSmall { width, height });
    }
    if (width as f64) * (height as f64) > max_megapixels as f64 * 1e6 {
        return Err(DecodeError::TooLarge {
            width,
            height,
            limit_mp: max_megapixels,
        });
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    img.apply_orientation(orientation);
    Ok(match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_bytes(img: &DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn text_is_not_an_image() {
        assert!(matches!(
            decode(b"hello, world", 50.0),
            Err(DecodeError::NotAnImage)
        ));
    }

    #[test]
    fn a_one_pixel_image_is_too_small() {
        let img = DynamicImage::ImageRgb8(RgbImage::new(1, 1));
        assert!(matches!(
            decode(&png_bytes(&img), 50.0),
            Err(DecodeError::TooSmall {
                width: 1,
                height: 1
            })
        ));
    }

    #[test]
    fn grayscale_and_rgba_become_rgb() {
        let gray =
            DynamicImage::ImageLuma8(image::GrayImage::from_pixel(20, 30, image::Luma([77])));
        let rgb = decode(&png_bytes(&gray), 50.0).unwrap();
        assert_eq!((rgb.width(), rgb.height()), (20, 30));
        assert_eq!(rgb.get_pixel(3, 3).0, [77, 77, 77]);
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            24,
            24,
            image::Rgba([10, 20, 30, 0]),
        ));
        assert_eq!(
            decode(&png_bytes(&rgba), 50.0).unwrap().get_pixel(0, 0).0,
            [10, 20, 30]
        );
    }

    #[test]
    fn a_truncated_png_is_reported_as_corrupt() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 64, image::Rgb([1, 2, 3])));
        let bytes = png_bytes(&img);
        let err = decode(&bytes[..bytes.len() / 2], 50.0).unwrap_err();
        assert!(matches!(err, DecodeError::Corrupt { .. }), "{err}");
    }
}
