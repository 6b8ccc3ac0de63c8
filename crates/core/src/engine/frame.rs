//! Turning encoded bytes into an upright RGB frame, refusing bad input before it costs memory.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

/// Smallest side accepted: below this no face the detector could find would fit.
pub const MIN_SIDE: u32 = 16;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not an image: the data is neither JPEG, PNG nor WebP")]
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
    #[error(
        "the image is {width}×{height} pixels of {bytes_per_pixel} bytes each: decoding it needs \
         {mib} MiB, above the limit of {limit_mib} MiB"
    )]
    TooManyBytes {
        width: u32,
        height: u32,
        bytes_per_pixel: u64,
        mib: u64,
        limit_mib: u64,
    },
    #[error("the image is {width}×{height} pixels, an aspect ratio above the limit of {limit}:1")]
    TooNarrow { width: u32, height: u32, limit: f32 },
    #[error("decoding the image needs more than the limit of {limit_mib} MiB")]
    DecoderLimit { limit_mib: u64 },
}

/// What an image may cost before a pixel of it is decoded. Every limit is checked against the
/// header, so a small file that declares a huge or pathological image costs nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeLimits {
    /// Width × height, in megapixels (`detector.max_megapixels`).
    pub max_megapixels: f32,
    /// Memory the decoded pixels may take, in bytes: width × height × bytes per pixel of the
    /// stored format (a 16-bit RGBA PNG takes 8 bytes a pixel), plus the RGB copy when the
    /// format is not 8-bit RGB (`detector.max_decoded_mib`).
    pub max_decoded_bytes: u64,
    /// Longer side over shorter side (`detector.max_aspect_ratio`): a 16 × 2,500,000 strip is
    /// no photo of a face, and would make the tiled detector's work explode.
    pub max_aspect_ratio: f32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        let d = crate::config::DetectorConfig::default();
        Self::from_config(&d)
    }
}

impl DecodeLimits {
    pub fn from_config(d: &crate::config::DetectorConfig) -> Self {
        Self {
            max_megapixels: d.max_megapixels,
            max_decoded_bytes: (d.max_decoded_mib as u64).saturating_mul(1 << 20),
            max_aspect_ratio: d.max_aspect_ratio,
        }
    }

    /// Refuse a declared size and pixel format that would break a limit. `rotated`: the
    /// EXIF orientation asks for a turn or flip, which takes one more RGB copy.
    pub fn check(
        &self,
        width: u32,
        height: u32,
        bytes_per_pixel: u64,
        rotated: bool,
    ) -> Result<(), DecodeError> {
        if width < MIN_SIDE || height < MIN_SIDE {
            return Err(DecodeError::TooSmall { width, height });
        }
        let pixels = width as u64 * height as u64;
        if pixels as f64 > self.max_megapixels as f64 * 1e6 {
            return Err(DecodeError::TooLarge {
                width,
                height,
                limit_mp: self.max_megapixels,
            });
        }
        let (long, short) = (width.max(height) as f32, width.min(height) as f32);
        if long > short * self.max_aspect_ratio {
            return Err(DecodeError::TooNarrow {
                width,
                height,
                limit: self.max_aspect_ratio,
            });
        }
        // The decoder's buffer, and the RGB copy unless the image is 8-bit RGB already.
        let rgb_copy = if bytes_per_pixel == 3 { 0 } else { 3 };
        let turn_copy = if rotated { 3 } else { 0 };
        let bytes = pixels * (bytes_per_pixel + rgb_copy + turn_copy);
        if bytes > self.max_decoded_bytes {
            return Err(DecodeError::TooManyBytes {
                width,
                height,
                bytes_per_pixel,
                mib: bytes.div_ceil(1 << 20),
                limit_mib: self.max_decoded_bytes >> 20,
            });
        }
        Ok(())
    }
}

fn format_name(format: Option<image::ImageFormat>) -> &'static str {
    match format {
        Some(image::ImageFormat::Jpeg) => "JPEG",
        Some(image::ImageFormat::Png) => "PNG",
        Some(image::ImageFormat::WebP) => "WebP",
        _ => "image",
    }
}

/// The file name extensions of the photos facegate reads from folders (enrolment, replay).
const PHOTO_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

/// Whether `path` names a JPEG, PNG or WebP photo by its extension (any case).
pub fn is_photo_file(path: &std::path::Path) -> bool {
    path.extension()
        .and_then(|x| x.to_str())
        .is_some_and(|x| PHOTO_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
}

/// A WebP file's chunks, walked before the decoder sees them: a chunk that declares more
/// bytes than the file has would make the decoder allocate what it declares (an EXIF chunk of
/// 4 GiB in a 100-byte file), and an animation is refused (its frames are composed on a canvas
/// the size checks do not see; a door wants a still).
fn check_webp_chunks(bytes: &[u8]) -> Result<(), DecodeError> {
    let corrupt = |detail: &str| DecodeError::Corrupt {
        format: "WebP",
        detail: detail.to_string(),
    };
    let u32_at = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let mut at = 12; // "RIFF", size, "WEBP"
    while at < bytes.len() {
        let (Some(fourcc), Some(size)) = (bytes.get(at..at + 4), u32_at(at + 4)) else {
            return Err(corrupt("a chunk header is cut short"));
        };
        let payload = at + 8;
        if size > bytes.len().saturating_sub(payload) {
            return Err(corrupt("a chunk declares more bytes than the file has"));
        }
        let animated_flag = fourcc == b"VP8X" && bytes.get(payload).is_some_and(|f| f & 0x02 != 0);
        if animated_flag || fourcc == b"ANIM" || fourcc == b"ANMF" {
            return Err(corrupt(
                "an animated WebP is not accepted: send a still image",
            ));
        }
        at = payload + size + (size & 1);
    }
    Ok(())
}

/// Decode JPEG, PNG or WebP bytes into an RGB frame. EXIF orientation is applied, grayscale is
/// expanded and alpha dropped. The declared size and pixel format are checked against
/// `limits` before any pixel is decoded.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, DecodeError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| DecodeError::NotAnImage)?;
    let format = reader.format();
    if !matches!(
        format,
        Some(image::ImageFormat::Jpeg | image::ImageFormat::Png | image::ImageFormat::WebP)
    ) {
        return Err(DecodeError::NotAnImage);
    }
    let webp = format == Some(image::ImageFormat::WebP);
    if webp {
        check_webp_chunks(bytes)?;
    }
    // The decoders' own allocation limit backs up the header check (metadata chunks, a
    // decoder that allocates more than the pixels); the WebP decoder does not take it, hence
    // `check_webp_chunks`.
    let mut image_limits = image::Limits::default();
    image_limits.max_alloc = Some(limits.max_decoded_bytes.max(1 << 20));
    reader.limits(image_limits);
    let corrupt = |e: image::ImageError| DecodeError::Corrupt {
        format: format_name(format),
        detail: e.to_string(),
    };
    let mut decoder = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Limits(_) => DecodeError::TooLarge {
            width: 0,
            height: 0,
            limit_mp: limits.max_megapixels,
        },
        other => corrupt(other),
    })?;
    let (width, height) = decoder.dimensions();
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    // The WebP decoder works in RGBA whatever it hands out: 4 more bytes a pixel.
    let working = if webp { 4 } else { 0 };
    limits.check(
        width,
        height,
        decoder.color_type().bytes_per_pixel() as u64 + working,
        orientation != image::metadata::Orientation::NoTransforms,
    )?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| match e {
        image::ImageError::Limits(_) => DecodeError::DecoderLimit {
            limit_mib: limits.max_decoded_bytes >> 20,
        },
        other => corrupt(other),
    })?;
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

    fn webp_bytes(img: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::webp::WebPEncoder::new_lossless(&mut out)
            .encode(
                img.as_raw(),
                img.width(),
                img.height(),
                image::ExtendedColorType::Rgb8,
            )
            .unwrap();
        out
    }

    #[test]
    fn a_webp_decodes_to_its_pixels_and_its_header_is_held_to_the_limits() {
        let mut img = RgbImage::from_pixel(64, 48, image::Rgb([10, 200, 30]));
        img.put_pixel(5, 7, image::Rgb([255, 0, 255]));
        let decoded = decode(&webp_bytes(&img), &DecodeLimits::default()).unwrap();
        assert_eq!(decoded, img, "lossless WebP comes back pixel for pixel");
        // 1200×1000 is 1.2 megapixels: refused from the header under a 1-megapixel limit.
        let big = webp_bytes(&RgbImage::new(1200, 1000));
        let limits = DecodeLimits {
            max_megapixels: 1.0,
            ..DecodeLimits::default()
        };
        assert!(matches!(
            decode(&big, &limits),
            Err(DecodeError::TooLarge {
                width: 1200,
                height: 1000,
                ..
            })
        ));
        let truncated = &webp_bytes(&img)[..40];
        assert!(matches!(
            decode(truncated, &DecodeLimits::default()),
            Err(DecodeError::Corrupt { format: "WebP", .. })
        ));
    }

    #[test]
    fn a_webp_chunk_declaring_more_than_the_file_has_is_refused_before_decoding() {
        // VP8X announcing EXIF, then an EXIF chunk that claims 4 GiB.
        let mut bytes = b"RIFF\0\0\0\0WEBPVP8X".to_vec();
        bytes.extend(10u32.to_le_bytes());
        bytes.extend([0x08, 0, 0, 0, 15, 0, 0, 15, 0, 0]);
        bytes.extend(b"EXIF");
        bytes.extend(0xffff_fff0u32.to_le_bytes());
        bytes.extend([0u8; 16]);
        let size = (bytes.len() - 8) as u32;
        bytes[4..8].copy_from_slice(&size.to_le_bytes());
        let err = decode(&bytes, &DecodeLimits::default()).unwrap_err();
        assert!(
            err.to_string()
                .contains("declares more bytes than the file has"),
            "{err}"
        );
        // An animation is refused, whatever its frames.
        let mut animated = bytes[..30].to_vec();
        animated[20] = 0x02;
        let size = (animated.len() - 8) as u32;
        animated[4..8].copy_from_slice(&size.to_le_bytes());
        let err = decode(&animated, &DecodeLimits::default()).unwrap_err();
        assert!(err.to_string().contains("animated WebP"), "{err}");
    }

    #[test]
    fn photo_files_are_known_by_their_extension_in_any_case() {
        for name in ["a.jpg", "b.JPEG", "c.png", "d.WebP"] {
            assert!(is_photo_file(std::path::Path::new(name)), "{name}");
        }
        for name in ["e.gif", "f", "g.jpg.txt"] {
            assert!(!is_photo_file(std::path::Path::new(name)), "{name}");
        }
    }

    #[test]
    fn text_is_not_an_image() {
        assert!(matches!(
            decode(b"hello, world", &DecodeLimits::default()),
            Err(DecodeError::NotAnImage)
        ));
    }

    #[test]
    fn a_one_pixel_image_is_too_small() {
        let img = DynamicImage::ImageRgb8(RgbImage::new(1, 1));
        assert!(matches!(
            decode(&png_bytes(&img), &DecodeLimits::default()),
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
        let rgb = decode(&png_bytes(&gray), &DecodeLimits::default()).unwrap();
        assert_eq!((rgb.width(), rgb.height()), (20, 30));
        assert_eq!(rgb.get_pixel(3, 3).0, [77, 77, 77]);
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            24,
            24,
            image::Rgba([10, 20, 30, 0]),
        ));
        assert_eq!(
            decode(&png_bytes(&rgba), &DecodeLimits::default())
                .unwrap()
                .get_pixel(0, 0)
                .0,
            [10, 20, 30]
        );
    }

    #[test]
    fn a_truncated_png_is_reported_as_corrupt() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 64, image::Rgb([1, 2, 3])));
        let bytes = png_bytes(&img);
        let err = decode(&bytes[..bytes.len() / 2], &DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, DecodeError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn a_deep_pixel_format_is_refused_by_its_decoded_bytes_before_decoding() {
        // 40 MP of 16-bit RGBA is 8 bytes a pixel: 320 MB of pixels, refused at the header.
        let limits = DecodeLimits::default();
        let err = limits.check(8000, 5000, 8, false).unwrap_err();
        assert!(matches!(err, DecodeError::TooManyBytes { .. }), "{err}");
        assert!(
            limits.check(8000, 5000, 3, false).is_ok(),
            "40 MP of 8-bit RGB fits"
        );
        assert!(
            limits.check(8000, 5000, 3, true).is_err(),
            "turning it takes a second copy"
        );
        // A real 16-bit RGBA PNG against a small budget.
        let img = DynamicImage::ImageRgba16(image::ImageBuffer::from_pixel(
            512,
            512,
            image::Rgba([1u16, 2, 3, 4]),
        ));
        let tight = DecodeLimits {
            max_decoded_bytes: 1 << 20,
            ..DecodeLimits::default()
        };
        let err = decode(&png_bytes(&img), &tight).unwrap_err();
        assert!(matches!(err, DecodeError::TooManyBytes { .. }), "{err}");
    }

    #[test]
    fn an_extreme_aspect_ratio_is_refused_before_decoding() {
        let limits = DecodeLimits::default();
        let err = limits.check(2_500_000, 16, 3, false).unwrap_err();
        assert!(matches!(err, DecodeError::TooNarrow { .. }), "{err}");
        let img = DynamicImage::ImageRgb8(RgbImage::new(16 * 40, 16));
        let err = decode(&png_bytes(&img), &limits).unwrap_err();
        assert!(matches!(err, DecodeError::TooNarrow { .. }), "{err}");
        assert!(limits.check(1920, 1080, 3, false).is_ok());
    }
}
