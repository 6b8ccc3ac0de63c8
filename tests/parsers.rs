//! Property tests of every parser of outside bytes: base64 images, image headers and decode
//! limits, the MJPEG multipart stream, the JSON bodies of the API and the config file.
//!
//! Each property runs a bounded number of cases (256; `PROPTEST_CASES` overrides) so that the
//! whole file takes about a second in release mode. Failures are not persisted to files (the
//! tree stays clean); proptest prints the minimal failing input.

use std::io::Cursor;

use facegate_core::config::Config;
use facegate_core::engine::frame::{decode, DecodeError, DecodeLimits, MIN_SIDE};
use facegate_daemon::api::collections::CollectionBody;
use facegate_daemon::api::error::{ApiError, ErrorCode};
use facegate_daemon::api::extract::{decode_base64_image, parse_json};
use facegate_daemon::api::ops::{DetectBody, LivenessBody};
use facegate_daemon::api::persons::{
    parse_bulk, BulkBody, BulkItem, PersonBody, PersonEditBody, PersonRef,
};
use facegate_daemon::api::search::{CompareBody, FaceSearchBody, MultiFaceSearchBody};
use facegate_daemon::api::unknowns::EnrolUnknownBody;
use facegate_daemon::camera::mjpeg_http::{boundary_of, MultipartReader};
use image::{DynamicImage, ImageFormat};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value};

/// `n` cases, or `PROPTEST_CASES` when set (for a longer hunt: `PROPTEST_CASES=20000`).
fn cases(n: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Base64 images
// ---------------------------------------------------------------------------------------------

/// One of the forms clients send a base64 image in.
#[derive(Debug, Clone)]
struct Base64Form {
    url_safe: bool,
    padded: bool,
    /// Line length and line break, or one line.
    wrap: Option<(usize, &'static str)>,
    prefix: &'static str,
    /// Whitespace around the whole text.
    around: (&'static str, &'static str),
}

fn base64_form() -> impl Strategy<Value = Base64Form> {
    (
        any::<bool>(),
        any::<bool>(),
        proptest::option::of((1usize..=80, select(vec!["\n", "\r\n", " ", "\t"]))),
        select(vec![
            "",
            "data:image/jpeg;base64,",
            "data:image/png;base64,",
            "data:;base64,",
        ]),
        (
            select(vec!["", " ", "\n", "\r\n  "]),
            select(vec!["", " ", "\n", "\r\n"]),
        ),
    )
        .prop_map(|(url_safe, padded, wrap, prefix, around)| Base64Form {
            url_safe,
            padded,
            wrap,
            prefix,
            around,
        })
}

fn encode_in(bytes: &[u8], form: &Base64Form) -> String {
    use base64::Engine as _;
    let engine = match (form.url_safe, form.padded) {
        (false, true) => base64::engine::general_purpose::STANDARD,
        (false, false) => base64::engine::general_purpose::STANDARD_NO_PAD,
        (true, true) => base64::engine::general_purpose::URL_SAFE,
        (true, false) => base64::engine::general_purpose::URL_SAFE_NO_PAD,
    };
    let plain = engine.encode(bytes);
    let body = match form.wrap {
        None => plain,
        Some((width, brk)) => plain
            .as_bytes()
            .chunks(width)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(brk),
    };
    format!("{}{}{}{}", form.around.0, form.prefix, body, form.around.1)
}

/// Text that is partly base64: the alphabets, padding, whitespace and data-URL pieces.
fn base64ish_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9+/=_ \n-]{0,64}",
        (
            "[ \n]{0,2}",
            "data:[a-z/;0-9]{0,20},?",
            "[A-Za-z0-9+/=_ \n-]{0,64}"
        )
            .prop_map(|(a, b, c)| format!("{a}{b}{c}")),
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn base64_extraction_never_panics_and_round_trips_any_bytes(
        bytes in vec(any::<u8>(), 1..600),
        form in base64_form(),
    ) {
        let text = encode_in(&bytes, &form);
        match decode_base64_image(&text) {
            Ok(decoded) => prop_assert_eq!(decoded, bytes, "form {:?}: {:?}", form, text),
            Err(e) => prop_assert!(false, "form {:?} refused ({}): {:?}", form, e.message, text),
        }
    }

    #[test]
    fn base64_extraction_of_any_text_never_panics_and_fails_only_as_undecodable_base64(
        text in base64ish_text(),
    ) {
        match decode_base64_image(&text) {
            Ok(decoded) => {
                // Every accepted text is base64 of exactly its length: 3 bytes per 4 characters
                // of the alphabet, whitespace and padding not counted.
                let body = match text.trim_start().strip_prefix("data:") {
                    Some(rest) => rest.split_once(',').map(|(_, b)| b).unwrap_or(""),
                    None => text.as_str(),
                };
                let symbols = body
                    .bytes()
                    .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
                    .count();
                prop_assert!(symbols > 0);
                prop_assert_eq!(decoded.len(), symbols * 3 / 4, "{:?}", text);
            }
            Err(e) => prop_assert_eq!(e.code, ErrorCode::ErrBase64ImageCannotBeDecoded, "{:?}", text),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Image decoding and decode limits
// ---------------------------------------------------------------------------------------------

/// Pixel layouts the PNG encoder writes; JPEG only takes the first and third.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    L8,
    La8,
    Rgb8,
    Rgba8,
    L16,
    La16,
    Rgb16,
    Rgba16,
}

impl Layout {
    const ALL: [Layout; 8] = [
        Layout::L8,
        Layout::La8,
        Layout::Rgb8,
        Layout::Rgba8,
        Layout::L16,
        Layout::La16,
        Layout::Rgb16,
        Layout::Rgba16,
    ];

    fn bytes_per_pixel(self) -> u64 {
        match self {
            Layout::L8 => 1,
            Layout::La8 | Layout::L16 => 2,
            Layout::Rgb8 => 3,
            Layout::Rgba8 | Layout::La16 => 4,
            Layout::Rgb16 => 6,
            Layout::Rgba16 => 8,
        }
    }
}

/// A `w`×`h` image of `layout` with content that depends on `seed` (cheap to make, not flat).
fn make_image(layout: Layout, w: u32, h: u32, seed: u32) -> DynamicImage {
    let buf = image::ImageBuffer::from_fn(w, h, |x, y| {
        let v = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503) ^ seed)
            .wrapping_mul(2_246_822_519);
        image::Rgba([
            (v >> 16) as u16,
            (v & 0xffff) as u16,
            (x * 977 + y * 131) as u16,
            (v >> 8) as u16 | 0x8000,
        ])
    });
    let img = DynamicImage::ImageRgba16(buf);
    match layout {
        Layout::L8 => DynamicImage::ImageLuma8(img.into_luma8()),
        Layout::La8 => DynamicImage::ImageLumaA8(img.into_luma_alpha8()),
        Layout::Rgb8 => DynamicImage::ImageRgb8(img.into_rgb8()),
        Layout::Rgba8 => DynamicImage::ImageRgba8(img.into_rgba8()),
        Layout::L16 => DynamicImage::ImageLuma16(img.into_luma16()),
        Layout::La16 => DynamicImage::ImageLumaA16(img.into_luma_alpha16()),
        Layout::Rgb16 => DynamicImage::ImageRgb16(img.into_rgb16()),
        Layout::Rgba16 => img,
    }
}

fn encode_image(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), format).unwrap();
    out
}

/// A small valid image: its layout, format, size and encoded bytes.
fn small_image(max_side: u32) -> impl Strategy<Value = (Layout, ImageFormat, u32, u32, Vec<u8>)> {
    (
        any::<bool>(),
        select(Layout::ALL.to_vec()),
        MIN_SIDE..=max_side,
        MIN_SIDE..=max_side,
        any::<u32>(),
    )
        .prop_map(|(jpeg, layout, w, h, seed)| {
            let (format, layout) = if jpeg {
                let layout = if matches!(layout, Layout::L8 | Layout::La8 | Layout::L16) {
                    Layout::L8
                } else {
                    Layout::Rgb8
                };
                (ImageFormat::Jpeg, layout)
            } else {
                (ImageFormat::Png, layout)
            };
            let bytes = encode_image(&make_image(layout, w, h, seed), format);
            (layout, format, w, h, bytes)
        })
}

/// CRC-32 as PNG chunks use it (ISO 3309, reflected, 0xEDB88320).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid PNG whose IHDR claims `w`×`h`; the pixel data is still that of a 16×16 image.
fn png_declaring(layout: Layout, w: u32, h: u32) -> Vec<u8> {
    let mut png = encode_image(&make_image(layout, 16, 16, 7), ImageFormat::Png);
    assert_eq!(&png[12..16], b"IHDR", "the encoder writes IHDR first");
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// Whether a declared image breaks one of `limits`, with a 1 % margin either side so that
/// float rounding at the boundary does not decide: `Some(true)` clearly over a limit,
/// `Some(false)` clearly within all of them, `None` too close to call.
fn over_limits(limits: &DecodeLimits, w: u32, h: u32, bytes_per_pixel: u64) -> Option<bool> {
    if w < MIN_SIDE || h < MIN_SIDE {
        return Some(true);
    }
    let pixels = w as f64 * h as f64;
    let (long, short) = (w.max(h) as f64, w.min(h) as f64);
    // Documented: the decoder's buffer plus the RGB copy unless the image is 8-bit RGB.
    let copy = if bytes_per_pixel == 3 { 0 } else { 3 };
    let bytes = pixels * (bytes_per_pixel + copy) as f64;
    let ratios = [
        pixels / (limits.max_megapixels as f64 * 1e6),
        long / (short * limits.max_aspect_ratio as f64),
        bytes / limits.max_decoded_bytes as f64,
    ];
    if ratios.iter().any(|&r| r > 1.01) {
        Some(true)
    } else if ratios.iter().all(|&r| r < 0.99) {
        Some(false)
    } else {
        None
    }
}

fn is_limit_error(e: &DecodeError) -> bool {
    matches!(
        e,
        DecodeError::TooSmall { .. }
            | DecodeError::TooLarge { .. }
            | DecodeError::TooManyBytes { .. }
            | DecodeError::TooNarrow { .. }
    )
}

fn decode_limits() -> impl Strategy<Value = DecodeLimits> {
    (0.01f32..200.0, (1u64 << 20)..(256u64 << 20), 1.0f32..100.0).prop_map(
        |(max_megapixels, max_decoded_bytes, max_aspect_ratio)| DecodeLimits {
            max_megapixels,
            max_decoded_bytes,
            max_aspect_ratio,
        },
    )
}

/// A RIFF/WebP container holding `body`, its size field right (so the decoder reads on).
fn webp_container(body: &[u8]) -> Vec<u8> {
    let mut webp = b"RIFF".to_vec();
    webp.extend(((body.len() + 4) as u32).to_le_bytes());
    webp.extend(b"WEBP");
    webp.extend(body);
    webp
}

/// Arbitrary bytes, some behind a PNG, JPEG or WebP signature so that they reach the decoders
/// (for WebP also behind a VP8X header, to reach the chunk walk and the metadata readers).
fn image_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let body = vec(any::<u8>(), 0..2048);
    prop_oneof![
        body.clone(),
        body.clone()
            .prop_map(|b| [b"\x89PNG\r\n\x1a\n".as_slice(), &b].concat()),
        body.clone()
            .prop_map(|b| [b"\xff\xd8\xff".as_slice(), &b].concat()),
        body.clone().prop_map(|b| webp_container(&b)),
        body.prop_map(|b| webp_container(&[b"VP8X\x0a\0\0\0".as_slice(), &b].concat())),
    ]
}

/// A damage done to a valid file.
#[derive(Debug, Clone)]
enum Damage {
    /// Keep this share (per mille) of the file.
    Truncate(u32),
    /// Flip these bits (positions taken modulo the file length).
    FlipBits(Vec<(usize, u8)>),
    /// Both.
    Both(u32, Vec<(usize, u8)>),
}

fn damage() -> impl Strategy<Value = Damage> {
    let flips = vec((any::<usize>(), 0u8..8), 1..8);
    prop_oneof![
        (0u32..1000).prop_map(Damage::Truncate),
        flips.clone().prop_map(Damage::FlipBits),
        ((0u32..1000), flips).prop_map(|(t, f)| Damage::Both(t, f)),
    ]
}

fn apply(bytes: &[u8], damage: &Damage) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let flip = |out: &mut Vec<u8>, flips: &[(usize, u8)]| {
        if !out.is_empty() {
            let n = out.len();
            for &(at, bit) in flips {
                out[at % n] ^= 1 << bit;
            }
        }
    };
    match damage {
        Damage::Truncate(keep) => out.truncate(bytes.len() * *keep as usize / 1000),
        Damage::FlipBits(flips) => flip(&mut out, flips),
        Damage::Both(keep, flips) => {
            flip(&mut out, flips);
            out.truncate(bytes.len() * *keep as usize / 1000);
        }
    }
    out
}

/// A frame that `decode` returned obeys `limits`.
fn check_within(
    img: &image::RgbImage,
    limits: &DecodeLimits,
) -> Result<(), proptest::test_runner::TestCaseError> {
    let (w, h) = img.dimensions();
    prop_assert!(
        w >= MIN_SIDE && h >= MIN_SIDE,
        "{w}×{h} is below the minimum"
    );
    prop_assert!(
        (w as f64 * h as f64) <= limits.max_megapixels as f64 * 1e6,
        "{w}×{h} is above {} MP",
        limits.max_megapixels
    );
    prop_assert!(
        (w as u64 * h as u64 * 3) <= limits.max_decoded_bytes,
        "{w}×{h} is above {} bytes",
        limits.max_decoded_bytes
    );
    prop_assert!(
        w.max(h) as f64 <= w.min(h) as f64 * limits.max_aspect_ratio as f64 * 1.01,
        "{w}×{h} is narrower than 1:{}",
        limits.max_aspect_ratio
    );
    Ok(())
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn image_decoding_of_arbitrary_bytes_never_panics_and_returns_only_frames_within_limits(
        bytes in image_like_bytes(),
    ) {
        let limits = DecodeLimits::default();
        if let Ok(img) = decode(&bytes, &limits) {
            check_within(&img, &limits)?;
        }
    }

    #[test]
    fn truncated_or_bit_flipped_png_and_jpeg_never_panic_and_give_a_frame_or_an_error(
        (layout, format, w, h, bytes) in small_image(48),
        damage in damage(),
    ) {
        let limits = DecodeLimits::default();
        let damaged = apply(&bytes, &damage);
        match decode(&damaged, &limits) {
            Ok(img) => check_within(&img, &limits)?,
            Err(e) => prop_assert!(!e.to_string().is_empty(), "{layout:?} {format:?} {w}×{h}"),
        }
    }

    #[test]
    fn an_image_whose_header_declares_more_than_the_limits_is_refused_before_decoding(
        layout in select(Layout::ALL.to_vec()),
        (w, h) in prop_oneof![
            (16u32..5000, 16u32..5000),
            (1u32..=0x7fff_ffff, 1u32..=0x7fff_ffff),
            (1u32..64, 1u32..200_000),
            (1u32..200_000, 1u32..64),
        ],
        limits in decode_limits(),
    ) {
        let png = png_declaring(layout, w, h);
        let result = decode(&png, &limits);
        match over_limits(&limits, w, h, layout.bytes_per_pixel()) {
            Some(true) => match result {
                // The file holds 16×16 pixels: anything but a limit error means it was decoded.
                Err(DecodeError::TooManyBytes { bytes_per_pixel, .. }) => prop_assert!(
                    bytes_per_pixel > 0,
                    "{layout:?} {w}×{h} under {limits:?}: refused by the decoder's allocation \
                     limit, not by the header check"
                ),
                Err(e) => prop_assert!(
                    is_limit_error(&e),
                    "{layout:?} {w}×{h} under {limits:?}: {e}"
                ),
                Ok(img) => prop_assert!(
                    false,
                    "{layout:?} {w}×{h} under {limits:?} decoded to {:?}",
                    img.dimensions()
                ),
            },
            Some(false) => match result {
                Ok(img) => prop_assert_eq!(img.dimensions(), (w, h)),
                Err(e) => prop_assert!(
                    !is_limit_error(&e),
                    "{layout:?} {w}×{h} within {limits:?} refused: {e}"
                ),
            },
            None => {}
        }
    }

    #[test]
    fn a_valid_image_within_the_limits_decodes_to_its_declared_size(
        (layout, format, w, h, bytes) in small_image(160),
        slack in (1.01f32..4.0, 1.0f64..4.0, 1.01f32..4.0),
    ) {
        let need_mp = w as f32 * h as f32 / 1e6;
        let bpp = layout.bytes_per_pixel();
        let need_bytes = w as u64 * h as u64 * (bpp + if bpp == 3 { 0 } else { 3 });
        let need_ratio = w.max(h) as f32 / w.min(h) as f32;
        let limits = DecodeLimits {
            max_megapixels: need_mp * slack.0,
            max_decoded_bytes: (need_bytes as f64 * slack.1).ceil() as u64,
            max_aspect_ratio: need_ratio * slack.2,
        };
        let rgb = match decode(&bytes, &limits) {
            Ok(rgb) => rgb,
            Err(e) => {
                return Err(TestCaseError::fail(format!(
                    "{layout:?} {format:?} {w}×{h} under {limits:?}: {e}"
                )))
            }
        };
        prop_assert_eq!(rgb.dimensions(), (w, h));
        if format == ImageFormat::Png {
            // Lossless: the very pixels, alpha dropped and 16 bits narrowed to 8.
            let original = image::load_from_memory(&bytes).unwrap().to_rgb8();
            prop_assert!(rgb == original, "{layout:?} {w}×{h}: the pixels changed");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// MJPEG multipart streams
// ---------------------------------------------------------------------------------------------

/// Boundaries of RFC 2046's alphabet (without space), not starting with a dash.
fn boundary() -> impl Strategy<Value = String> {
    "[A-Za-z0-9'()+_,./:=?][A-Za-z0-9'()+_,./:=?-]{0,39}"
}

/// Part bodies made of arbitrary bytes, line breaks, dashes and pieces of the delimiter.
fn part_body(boundary: &str) -> impl Strategy<Value = Vec<u8>> {
    let delimiter = format!("--{boundary}");
    let prefix_of = delimiter.clone();
    let piece = prop_oneof![
        3 => vec(any::<u8>(), 0..40),
        1 => select(vec![
            b"\r\n".to_vec(),
            b"\n".to_vec(),
            b"\r".to_vec(),
            b"--".to_vec(),
            b"\r\n\r\n".to_vec(),
            b"Content-Length: 3\r\n".to_vec(),
        ]),
        1 => (0..delimiter.len()).prop_map(move |n| prefix_of.as_bytes()[..n].to_vec()),
        1 => select(vec![
            delimiter.clone().into_bytes(),
            format!("{delimiter}--").into_bytes(),
            format!("\r\n{delimiter}\r\n").into_bytes(),
        ]),
    ];
    vec(piece, 0..10).prop_map(|pieces| pieces.concat())
}

/// Whether a line of `body` would start with the delimiter once the body sits after a header
/// block: a body without Content-Length cannot contain one (RFC 2046 §5.1.1).
fn has_delimiter_line(body: &[u8], delimiter: &[u8]) -> bool {
    body.starts_with(delimiter)
        || body
            .windows(delimiter.len() + 1)
            .any(|w| w[0] == b'\n' && &w[1..] == delimiter)
}

#[derive(Debug, Clone)]
struct StreamPart {
    body: Vec<u8>,
    with_length: bool,
    /// Which spelling of the Content-Length header, and whether another header comes first.
    header_style: usize,
    extra_header: bool,
}

#[derive(Debug, Clone)]
struct Stream {
    boundary: String,
    /// CRLF, or bare LF as some cameras send.
    crlf: bool,
    preamble: Vec<String>,
    parts: Vec<StreamPart>,
    /// 0: closing delimiter and CRLF, 1: closing delimiter at the very end, 2: none (the
    /// connection ends), 3: closing delimiter and an epilogue.
    ending: usize,
}

impl Stream {
    fn delimiter(&self) -> Vec<u8> {
        format!("--{}", self.boundary).into_bytes()
    }

    /// Whether a part must carry its length for the stream to be unambiguous.
    fn needs_length(&self, body: &[u8]) -> bool {
        has_delimiter_line(body, &self.delimiter())
            // With bare LF line ends, a CR at the end of a body reads as part of the CRLF.
            || (!self.crlf && body.ends_with(b"\r"))
    }

    fn bytes(&self) -> Vec<u8> {
        let eol: &[u8] = if self.crlf { b"\r\n" } else { b"\n" };
        let delimiter = self.delimiter();
        let mut out = Vec::new();
        for line in &self.preamble {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(eol);
        }
        for part in &self.parts {
            out.extend_from_slice(&delimiter);
            out.extend_from_slice(eol);
            if part.extra_header {
                out.extend_from_slice(b"Content-Type: image/jpeg");
                out.extend_from_slice(eol);
            }
            if part.with_length || self.needs_length(&part.body) {
                let n = part.body.len();
                let header = match part.header_style % 3 {
                    0 => format!("Content-Length: {n}"),
                    1 => format!("content-length:{n}"),
                    _ => format!("CONTENT-LENGTH :  {n} "),
                };
                out.extend_from_slice(header.as_bytes());
                out.extend_from_slice(eol);
            }
            if part.header_style >= 3 {
                out.extend_from_slice(b"X-Timestamp: 1712345678.123");
                out.extend_from_slice(eol);
            }
            out.extend_from_slice(eol);
            out.extend_from_slice(&part.body);
            out.extend_from_slice(eol);
        }
        match self.ending {
            0 | 3 => {
                out.extend_from_slice(&delimiter);
                out.extend_from_slice(b"--");
                out.extend_from_slice(eol);
                if self.ending == 3 {
                    out.extend_from_slice(b"an epilogue, to be ignored");
                    out.extend_from_slice(eol);
                }
            }
            1 => {
                out.extend_from_slice(&delimiter);
                out.extend_from_slice(b"--");
            }
            _ => {}
        }
        out
    }
}

fn stream() -> impl Strategy<Value = Stream> {
    boundary().prop_flat_map(|b| {
        let part = (part_body(&b), any::<bool>(), 0usize..6, any::<bool>()).prop_map(
            |(body, with_length, header_style, extra_header)| StreamPart {
                body,
                with_length,
                header_style,
                extra_header,
            },
        );
        (
            Just(b),
            any::<bool>(),
            vec("[A-Za-z0-9 ]{0,20}", 0..3),
            vec(part, 0..6),
            0usize..4,
        )
            .prop_map(|(boundary, crlf, preamble, parts, ending)| Stream {
                boundary,
                crlf,
                preamble,
                parts,
                ending,
            })
    })
}

/// Bytes that look like a multipart stream in places, and its boundary.
fn multipart_noise() -> impl Strategy<Value = (String, Vec<u8>)> {
    boundary().prop_flat_map(|b| {
        let delimiter = format!("--{b}");
        let piece = prop_oneof![
            vec(any::<u8>(), 0..64),
            select(vec![
                format!("{delimiter}\r\n").into_bytes(),
                format!("{delimiter}--\r\n").into_bytes(),
                delimiter.clone().into_bytes(),
                b"\r\n".to_vec(),
                b"\n".to_vec(),
                b"\r\n\r\n".to_vec(),
                b"Content-Type: image/jpeg\r\n".to_vec(),
                b"Content-Length: \r\n".to_vec(),
                b"Content-Length: -1\r\n".to_vec(),
                b"Content-Length: 99999999999999999999999\r\n".to_vec(),
                b"Content-Length: 16777216\r\n".to_vec(),
                b"Content-Length: 16777217\r\n".to_vec(),
            ]),
            (0usize..300).prop_map(|n| format!("Content-Length: {n}\r\n").into_bytes()),
        ];
        (Just(b), vec(piece, 0..30).prop_map(|p| p.concat()))
    })
}

/// A `multipart/x-mixed-replace` content type spelled as cameras spell it, carrying `boundary`.
fn content_type_with(boundary: &str) -> impl Strategy<Value = String> {
    let boundary = boundary.to_owned();
    (
        vec(any::<bool>(), 25),
        select(vec![";", "; ", " ; ", ";\t"]),
        select(vec!["boundary", "Boundary", "BOUNDARY"]),
        select(vec!["=", " = "]),
        any::<bool>(),
        any::<bool>(),
        select(vec!["", "charset=utf-8; ", "foo=bar;"]),
        select(vec!["", "; charset=utf-8", ";x=\"y\""]),
    )
        .prop_map(
            move |(upper, sep, key, eq, quoted, dashes, before, after)| {
                let kind: String = "multipart/x-mixed-replace"
                    .chars()
                    .zip(upper)
                    .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
                    .collect();
                let dashes = if dashes { "--" } else { "" };
                let value = if quoted {
                    format!("\"{dashes}{boundary}\"")
                } else {
                    format!("{dashes}{boundary}")
                };
                format!("{kind}{sep}{before}{key}{eq}{value}{after}")
            },
        )
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn a_multipart_stream_gives_back_exactly_its_parts_with_or_without_content_length(
        stream in stream(),
    ) {
        let bytes = stream.bytes();
        let mut reader = MultipartReader::new(Cursor::new(bytes.clone()), &stream.boundary);
        for (i, part) in stream.parts.iter().enumerate() {
            match reader.next_part() {
                Ok(Some(body)) => prop_assert!(
                    body == part.body,
                    "part {i}: got {:?}, sent {:?}, stream {:?}",
                    String::from_utf8_lossy(&body),
                    String::from_utf8_lossy(&part.body),
                    String::from_utf8_lossy(&bytes)
                ),
                other => prop_assert!(
                    false,
                    "part {i}: got {other:?}, stream {:?}",
                    String::from_utf8_lossy(&bytes)
                ),
            }
        }
        for _ in 0..2 {
            let end = reader.next_part();
            prop_assert!(
                matches!(end, Ok(None)),
                "after the last part: {end:?}, stream {:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    #[test]
    fn nothing_after_the_closing_delimiter_is_a_part(stream in stream()) {
        let mut bytes = Stream { ending: 0, ..stream.clone() }.bytes();
        bytes.extend_from_slice(
            format!("--{}\r\nContent-Length: 3\r\n\r\nabc\r\n", stream.boundary).as_bytes(),
        );
        let mut reader = MultipartReader::new(Cursor::new(bytes.clone()), &stream.boundary);
        for _ in &stream.parts {
            prop_assert!(matches!(reader.next_part(), Ok(Some(_))));
        }
        for _ in 0..2 {
            let end = reader.next_part();
            prop_assert!(
                matches!(end, Ok(None)),
                "after the closing delimiter: {:?}, stream {:?}",
                end,
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    #[test]
    fn the_multipart_reader_on_arbitrary_bytes_never_panics_and_ends(
        (boundary, bytes) in multipart_noise(),
    ) {
        let mut reader = MultipartReader::new(Cursor::new(bytes.clone()), &boundary);
        // Every part consumes at least one byte of the stream, so the stream ends (None or an
        // error) within this many calls, and the parts hold no more bytes than the stream.
        let mut returned = 0;
        let mut ended = false;
        for _ in 0..=bytes.len() + 1 {
            match reader.next_part() {
                Ok(Some(part)) => returned += part.len(),
                Ok(None) | Err(_) => {
                    ended = true;
                    break;
                }
            }
        }
        prop_assert!(ended, "no end after {} calls", bytes.len() + 2);
        prop_assert!(returned <= bytes.len(), "{returned} bytes of parts from {}", bytes.len());
    }

    #[test]
    fn the_boundary_is_found_in_every_spelling_of_the_content_type(
        (boundary, content_type) in boundary().prop_flat_map(|b| {
            let ct = content_type_with(&b);
            (Just(b), ct)
        }),
    ) {
        prop_assert_eq!(boundary_of(&content_type), Some(boundary), "{}", content_type);
    }

    #[test]
    fn boundary_extraction_never_panics_and_only_finds_boundaries_of_multipart_types(
        content_type in prop_oneof![
            any::<String>(),
            "[Mm]ultipart/[a-z-]{0,20}[ ;=\"a-z-]{0,30}",
            ("[ -~]{0,10}", any::<String>()).prop_map(|(a, b)| format!("multipart/x;{a}={b}")),
        ],
    ) {
        if let Some(b) = boundary_of(&content_type) {
            prop_assert!(
                content_type.to_ascii_lowercase().starts_with("multipart/"),
                "{:?} gave {:?}",
                content_type,
                b
            );
            prop_assert!(content_type.contains(&b), "{:?} gave {:?}", content_type, b);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON bodies of the API
// ---------------------------------------------------------------------------------------------

type Parser = fn(&[u8]) -> Result<(), ApiError>;

/// `server.max_bulk_items` for the bulk bodies (above what the generated arrays hold).
const BULK_LIMIT: usize = 1000;

/// Every request body type, by name.
const BODIES: [(&str, Parser); 12] = [
    ("CollectionBody", |b| {
        parse_json::<CollectionBody>(b).map(drop)
    }),
    ("PersonBody", |b| parse_json::<PersonBody>(b).map(drop)),
    ("BulkBody", |b| parse_bulk(b, BULK_LIMIT).map(drop)),
    // Bulk items are parsed from the raw text of each item of the parsed body.
    ("BulkItem", |b| parse_json::<BulkItem>(b).map(drop)),
    ("PersonRef", |b| parse_json::<PersonRef>(b).map(drop)),
    ("FaceSearchBody", |b| {
        parse_json::<FaceSearchBody>(b).map(drop)
    }),
    ("MultiFaceSearchBody", |b| {
        parse_json::<MultiFaceSearchBody>(b).map(drop)
    }),
    ("CompareBody", |b| parse_json::<CompareBody>(b).map(drop)),
    ("DetectBody", |b| parse_json::<DetectBody>(b).map(drop)),
    ("LivenessBody", |b| parse_json::<LivenessBody>(b).map(drop)),
    ("PersonEditBody", |b| {
        parse_json::<PersonEditBody>(b).map(drop)
    }),
    ("EnrolUnknownBody", |b| {
        parse_json::<EnrolUnknownBody>(b).map(drop)
    }),
];

/// What a field of a body holds, for valid and wrong-typed values.
#[derive(Debug, Clone, Copy, PartialEq)]
enum FieldKind {
    Str,
    OptStr,
    OptBool,
    OptF32,
    OptUsize,
    OptStorage,
    OptStrMap,
    OptStrList,
    OptAccess,
    Values,
}

use FieldKind::*;

/// The fields of each body (the `Deserialize` structs of `facegate_daemon::api`).
const FIELDS: [(&str, &[(&str, FieldKind)]); 12] = [
    ("CollectionBody", &[("name", Str)]),
    (
        "PersonBody",
        &[
            ("person_id", Str),
            ("person_name", OptStr),
            ("collection_name", Str),
            ("face_base_64", Str),
            ("face_storage_type", OptStorage),
            ("metadata", OptStrMap),
            ("check_duplicates", OptBool),
            ("duplicate_check_min_similarity", OptF32),
            ("check_liveness", OptBool),
            ("access", OptAccess),
        ],
    ),
    (
        "BulkBody",
        &[
            ("collection_name", Str),
            ("face_storage_type", OptStorage),
            ("check_same_person", OptBool),
            ("persons", Values),
        ],
    ),
    (
        "BulkItem",
        &[
            ("person_id", Str),
            ("person_name", OptStr),
            ("face_base_64", OptStr),
            ("faces_base_64", OptStrList),
            ("metadata", OptStrMap),
            ("access", OptAccess),
        ],
    ),
    ("PersonRef", &[("collection_name", Str), ("person_id", Str)]),
    (
        "FaceSearchBody",
        &[
            ("collection_name", Str),
            ("face_base_64", Str),
            ("min_similarity_score", OptF32),
            ("max_results", OptUsize),
            ("check_liveness", OptBool),
        ],
    ),
    (
        "MultiFaceSearchBody",
        &[
            ("collection_name", Str),
            ("multi_face_img_base_64", Str),
            ("min_similarity_score", OptF32),
            ("max_results", OptUsize),
        ],
    ),
    (
        "CompareBody",
        &[
            ("face_base_64", Str),
            ("ref_face_base_64", Str),
            ("min_similarity_score", OptF32),
            ("check_liveness", OptBool),
        ],
    ),
    ("DetectBody", &[("image_base_64", Str)]),
    ("LivenessBody", &[("face_base_64", Str)]),
    (
        "PersonEditBody",
        &[
            ("person_name", OptStr),
            ("metadata", OptStrMap),
            ("access", OptAccess),
        ],
    ),
    (
        "EnrolUnknownBody",
        &[
            ("collection_name", Str),
            ("person_id", OptStr),
            ("person_name", OptStr),
            ("metadata", OptStrMap),
            ("access", OptAccess),
        ],
    ),
];

fn parser_of(body: &str) -> Parser {
    BODIES.iter().find(|(n, _)| *n == body).unwrap().1
}

fn all_field_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = FIELDS
        .iter()
        .flat_map(|(_, fields)| fields.iter().map(|(n, _)| *n))
        .collect();
    names.push("Persons");
    names.sort_unstable();
    names.dedup();
    names
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-2i64..1002).prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON numbers are finite", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        any::<String>().prop_map(Value::String),
        select(vec![
            "",
            "x",
            "NoStorage",
            "StoreThumbnails",
            "StoreFullImage",
            "/9j/4AAQ"
        ])
        .prop_map(|s| Value::String(s.into())),
    ]
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => select(all_field_names()).prop_map(str::to_owned),
        1 => "[a-z_]{0,12}",
        1 => any::<String>(),
    ]
}

/// JSON values at most a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((json_key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Objects that carry many of the real field names at once, with arbitrary values.
fn json_body_like() -> impl Strategy<Value = Value> {
    let names = all_field_names();
    vec(proptest::option::weighted(0.6, json_value()), names.len()).prop_map(move |values| {
        Value::Object(
            names
                .iter()
                .zip(values)
                .filter_map(|(n, v)| v.map(|v| (n.to_string(), v)))
                .collect(),
        )
    })
}

/// Bytes of JSON-like text: arbitrary bytes, JSON tokens and field names.
fn json_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        vec(any::<u8>(), 0..8),
        select(vec![
            "{",
            "}",
            "[",
            "]",
            ":",
            ",",
            " ",
            "\n",
            "null",
            "true",
            "false",
            "-",
            "0",
            "1.5",
            "1e999",
            "-0",
            "\"",
            "\\u00",
            "\\ud800",
            "\"x\"",
            "\"é\"",
            "18446744073709551616",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        select(all_field_names()).prop_map(|n| format!("\"{n}\"").into_bytes()),
    ];
    prop_oneof![
        vec(any::<u8>(), 0..256),
        vec(token, 0..40).prop_map(|t| t.concat()),
    ]
}

/// The outcome of parsing any input: a body, or `ERR_INVALID_REQUEST` with a message.
fn check_parse_outcome(
    name: &str,
    result: Result<(), ApiError>,
    input: &[u8],
) -> Result<Option<ApiError>, TestCaseError> {
    match result {
        Ok(()) => Ok(None),
        Err(e) => {
            prop_assert_eq!(
                e.code,
                ErrorCode::ErrInvalidRequest,
                "{}: {:?} for {:?}",
                name,
                e.message,
                String::from_utf8_lossy(input)
            );
            prop_assert!(!e.message.trim().is_empty(), "{name}: an empty message");
            Ok(Some(e))
        }
    }
}

fn field_of(e: &ApiError) -> Option<&str> {
    e.metadata.as_ref()?.get("field")?.as_str()
}

/// A value of the right type for a field.
fn valid_value(kind: FieldKind) -> Value {
    match kind {
        Str => Value::from("abc"),
        OptStr => Value::from("Ada Lovelace"),
        OptBool => Value::from(true),
        OptF32 => Value::from(0.5),
        OptUsize => Value::from(3),
        OptStorage => Value::from("NoStorage"),
        OptStrMap => serde_json::json!({"role": "staff"}),
        OptStrList => serde_json::json!(["AAAA", "BBBB"]),
        OptAccess => serde_json::json!({"doors": ["main"], "blocked": false}),
        Values => serde_json::json!([{"person_id": "p1", "face_base_64": "AAAA"}]),
    }
}

/// A value of the wrong type for a field (`None`: the field left out).
fn wrong_value(kind: FieldKind) -> BoxedStrategy<Option<Value>> {
    let null = Just(Value::Null);
    let boolean = any::<bool>().prop_map(Value::Bool);
    let number = prop_oneof![
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
    ];
    let string = any::<String>().prop_map(Value::String);
    let array = vec(json_leaf(), 0..3).prop_map(Value::Array);
    let object = vec(("[a-z]{1,6}", json_leaf()), 0..3)
        .prop_map(|kv| Value::Object(kv.into_iter().collect()));
    match kind {
        Str => prop_oneof![
            null.prop_map(Some),
            boolean.prop_map(Some),
            number.prop_map(Some),
            array.prop_map(Some),
            object.prop_map(Some),
            Just(None),
        ]
        .boxed(),
        OptStr => prop_oneof![boolean, number, array, object]
            .prop_map(Some)
            .boxed(),
        OptBool => prop_oneof![number, string, array, object]
            .prop_map(Some)
            .boxed(),
        OptF32 => prop_oneof![boolean, string, array, object]
            .prop_map(Some)
            .boxed(),
        OptUsize => prop_oneof![
            boolean,
            string,
            array,
            object,
            (i64::MIN..0).prop_map(Value::from),
            (0.0f64..1e6)
                .prop_filter("not whole", |f| f.fract() != 0.0)
                .prop_map(Value::from),
        ]
        .prop_map(Some)
        .boxed(),
        // Strings and objects that name no variant. Booleans, numbers and arrays are another
        // property (`a_face_storage_type_that_is_not_a_string_...`).
        OptStorage => prop_oneof![
            string.prop_filter("not a variant", |s| !matches!(
                s.as_str().unwrap_or(""),
                "NoStorage" | "StoreThumbnails" | "StoreFullImage"
            )),
            "[A-Za-z]{1,12}"
                .prop_filter("not a variant", |s| !s.starts_with("Store")
                    && s != "NoStorage")
                .prop_map(|k| serde_json::json!({ k: null })),
        ]
        .prop_map(Some)
        .boxed(),
        OptStrList => prop_oneof![
            boolean,
            number,
            string,
            object,
            // An array with an element that is not a string.
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
            ]
            .prop_map(|v| serde_json::json!(["AAAA", v])),
        ]
        .prop_map(Some)
        .boxed(),
        OptStrMap => prop_oneof![
            boolean,
            number,
            string,
            array,
            // An object with a value that is not a string.
            (
                "[a-z]{1,6}",
                prop_oneof![
                    Just(Value::Null),
                    any::<bool>().prop_map(Value::Bool),
                    any::<i64>().prop_map(Value::from),
                ]
            )
                .prop_map(|(k, v)| serde_json::json!({ k: v })),
        ]
        .prop_map(Some)
        .boxed(),
        // Not an object, or an object with a field the rules do not have.
        OptAccess => prop_oneof![
            boolean,
            number,
            string,
            array,
            "[a-z]{1,6}"
                .prop_filter("not a field", |k| !matches!(
                    k.as_str(),
                    "doors" | "blocked" | "schedule"
                ))
                .prop_map(|k| serde_json::json!({ k: true })),
        ]
        .prop_map(Some)
        .boxed(),
        Values => prop_oneof![
            null.prop_map(Some),
            boolean.prop_map(Some),
            number.prop_map(Some),
            string.prop_map(Some),
            object.prop_map(Some),
            Just(None),
        ]
        .boxed(),
    }
}

/// A body type, one of its fields, and a wrong value (or none) for that field.
fn body_with_a_wrong_field() -> impl Strategy<Value = (&'static str, &'static str, Option<Value>)> {
    select(FIELDS.to_vec())
        .prop_flat_map(|(body, fields)| (Just(body), select(fields.to_vec())))
        .prop_flat_map(|(body, (field, kind))| (Just(body), Just(field), wrong_value(kind)))
}

fn valid_body(body: &str) -> Map<String, Value> {
    let fields = FIELDS.iter().find(|(n, _)| *n == body).unwrap().1;
    fields
        .iter()
        .map(|(n, kind)| (n.to_string(), valid_value(*kind)))
        .collect()
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn json_bodies_of_arbitrary_bytes_never_panic_and_fail_as_invalid_request(
        bytes in json_like_bytes(),
    ) {
        for (name, parse) in BODIES {
            check_parse_outcome(name, parse(&bytes), &bytes)?;
        }
    }

    #[test]
    fn json_bodies_of_arbitrary_json_values_parse_or_fail_naming_a_field_they_contain(
        value in prop_oneof![json_value(), json_body_like()],
    ) {
        let bytes = serde_json::to_vec(&value).unwrap();
        for (name, parse) in BODIES {
            let Some(e) = check_parse_outcome(name, parse(&bytes), &bytes)? else {
                continue;
            };
            // A field named by an error is one the body has (its first path segment).
            if let (Some(path), Value::Object(map)) = (field_of(&e), &value) {
                let root = path.split(['.', '[']).next().unwrap_or("");
                prop_assert!(
                    map.contains_key(root),
                    "{}: field {:?} is not in {}",
                    name,
                    path,
                    value
                );
            }
        }
    }

    #[test]
    fn a_body_with_one_wrong_typed_or_missing_field_gives_an_error_naming_that_field(
        (body, field, wrong) in body_with_a_wrong_field(),
    ) {
        check_wrong_field(body, field, wrong)?;
    }

    #[test]
    fn a_face_storage_type_that_is_not_a_string_gives_an_error_naming_that_field(
        body in select(vec!["PersonBody", "BulkBody"]),
        wrong in prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            vec(json_leaf(), 0..3).prop_map(Value::Array),
        ],
    ) {
        check_wrong_field(body, "face_storage_type", Some(wrong))?;
    }

    #[test]
    fn a_bulk_body_over_the_item_limit_is_refused_while_parsing_and_one_within_is_accepted(
        limit in 0usize..20,
        items in vec(json_value(), 0..30),
        alias in any::<bool>(),
    ) {
        let key = if alias { "Persons" } else { "persons" };
        let body = serde_json::json!({ "collection_name": "staff", key: items });
        let bytes = serde_json::to_vec(&body).unwrap();
        match parse_bulk(&bytes, limit) {
            Ok(parsed) => {
                prop_assert!(items.len() <= limit, "{} items accepted under {limit}", items.len());
                prop_assert_eq!(parsed.persons.0.len(), items.len());
            }
            Err(e) => {
                prop_assert!(items.len() > limit, "{} items under {limit}: {}", items.len(), e.message);
                prop_assert_eq!(e.code, ErrorCode::ErrPayloadTooLarge);
                prop_assert_eq!(field_of(&e), Some("persons"));
            }
        }
        // The limit applies to that one parse only: a plain parse afterwards has none.
        let again = serde_json::to_vec(&body).unwrap();
        prop_assert!(parse_json::<BulkBody>(&again).is_ok());
    }
}

/// A body of type `body` that is valid but for `field` (set to `wrong`, or left out) gives
/// `ERR_INVALID_REQUEST` naming `field`.
fn check_wrong_field(body: &str, field: &str, wrong: Option<Value>) -> Result<(), TestCaseError> {
    let parse = parser_of(body);
    let mut map = valid_body(body);
    let valid = serde_json::to_vec(&map).unwrap();
    prop_assert!(
        parse(&valid).is_ok(),
        "{body}: the valid body {:?} is refused",
        String::from_utf8_lossy(&valid)
    );
    match &wrong {
        Some(v) => map.insert(field.to_owned(), v.clone()),
        None => map.remove(field),
    };
    let bytes = serde_json::to_vec(&map).unwrap();
    let e = match parse(&bytes) {
        Ok(()) => {
            return Err(TestCaseError::fail(format!(
                "{body}: accepted {field} = {wrong:?}"
            )))
        }
        Err(e) => e,
    };
    prop_assert_eq!(e.code, ErrorCode::ErrInvalidRequest);
    let named = match field_of(&e) {
        Some(path) => {
            path == field
                || path.starts_with(&format!("{field}."))
                || path.starts_with(&format!("{field}["))
        }
        None => e.message.contains(&format!("`{field}`")),
    };
    prop_assert!(
        named,
        "{}: {} = {:?} gave {:?} (metadata {:?})",
        body,
        field,
        wrong,
        e.message,
        e.metadata
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Config files
// ---------------------------------------------------------------------------------------------

/// The numeric keys of the printed defaults: line index, table and key.
fn numeric_keys() -> Vec<(usize, String, String)> {
    let mut table = String::new();
    let mut keys = Vec::new();
    for (i, line) in Config::default_toml().lines().enumerate() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = name.to_owned();
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let value = value.trim();
            if value.parse::<f64>().is_ok() || value.parse::<i64>().is_ok() {
                keys.push((i, table.clone(), key.trim().to_owned()));
            }
        }
    }
    keys
}

/// A number as TOML spells it, and what it means.
#[derive(Debug, Clone)]
enum Number {
    Int(i64),
    Float(f64),
    /// Beyond what TOML integers hold.
    TooBig,
}

fn toml_number() -> impl Strategy<Value = (String, Number)> {
    let float_text = |f: f64| {
        if f.is_nan() {
            "nan".to_owned()
        } else if f.is_infinite() {
            if f > 0.0 { "inf" } else { "-inf" }.to_owned()
        } else {
            format!("{f:e}")
        }
    };
    prop_oneof![
        any::<i64>().prop_map(|i| (i.to_string(), Number::Int(i))),
        (-10i64..2000).prop_map(|i| (i.to_string(), Number::Int(i))),
        (0i64..100_000).prop_map(|i| (format!("0x{i:x}"), Number::Int(i))),
        any::<f64>().prop_map(move |f| (float_text(f), Number::Float(f))),
        (-10.0f64..2000.0).prop_map(move |f| (float_text(f), Number::Float(f))),
        select(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            1e-45,
            3.5e38
        ])
        .prop_map(move |f| (float_text(f), Number::Float(f))),
        Just(("18446744073709551616".to_owned(), Number::TooBig)),
    ]
}

/// The value a parsed config holds at `table.key`, as TOML.
fn config_value(config: &Config, table: &str, key: &str) -> Option<toml::Value> {
    let all = toml::Value::try_from(config).ok()?;
    all.get(table)?.get(key).cloned()
}

/// Text shaped like a config file: arbitrary text, or the defaults with a line replaced.
fn config_like_text() -> impl Strategy<Value = String> {
    let lines: Vec<String> = Config::default_toml().lines().map(str::to_owned).collect();
    let n = lines.len();
    prop_oneof![
        any::<String>(),
        "(\\[[a-z_]{0,10}\\]\n|[a-z_]{1,12} ?= ?[-0-9.e\"a-z\\[\\], ]{0,12}\n){0,6}",
        (
            0..n,
            prop_oneof![
                any::<String>(),
                "[a-z_]{1,24} = [-0-9.e\"a-z\\[\\],_ ]{0,16}",
            ]
        )
            .prop_map(move |(i, replacement)| {
                let mut lines = lines.clone();
                lines[i] = replacement;
                lines.join("\n")
            }),
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn config_parsing_of_arbitrary_text_never_panics_and_what_it_accepts_prints_back_the_same(
        text in config_like_text(),
    ) {
        match Config::parse(&text) {
            Ok(config) => {
                let printed = toml::to_string(&config).unwrap();
                let reparsed = Config::parse(&printed);
                prop_assert!(reparsed.is_ok(), "{:?} does not parse back: {:?}", printed, reparsed);
                prop_assert_eq!(toml::to_string(&reparsed.unwrap()).unwrap(), printed);
            }
            Err(message) => prop_assert!(!message.trim().is_empty()),
        }
    }

    #[test]
    fn a_numeric_config_key_set_to_any_number_is_that_number_or_an_error_naming_the_key(
        (line, table, key) in select(numeric_keys()),
        (text, number) in toml_number(),
    ) {
        match Config::parse(&defaults_with(line, &key, &text)) {
            Ok(config) => {
                let held = config_value(&config, &table, &key);
                let same = match (&held, &number) {
                    (Some(toml::Value::Integer(v)), Number::Int(i)) => v == i,
                    (Some(toml::Value::Float(v)), Number::Int(i)) => {
                        *v == *i as f64 || *v == (*i as f32) as f64
                    }
                    (Some(toml::Value::Float(v)), Number::Float(f)) => {
                        (v.is_nan() && f.is_nan()) || *v == *f || *v == (*f as f32) as f64
                    }
                    _ => false,
                };
                prop_assert!(same, "{}.{} = {} parsed to {:?}", table, key, text, held);
            }
            Err(message) => prop_assert!(
                message.contains(&key),
                "{}.{} = {}: the error does not name the key: {}",
                table,
                key,
                text,
                message
            ),
        }
    }

    #[test]
    fn an_accepted_megapixel_limit_is_a_number_that_limits(
        (text, _number) in toml_number(),
    ) {
        let (line, key) = key_line("detector", "max_megapixels");
        if let Ok(config) = Config::parse(&defaults_with(line, &key, &text)) {
            let limits = DecodeLimits::from_config(&config.detector);
            prop_assert!(
                !limits.max_megapixels.is_nan(),
                "max_megapixels = {} accepted as {:?}",
                text,
                limits.max_megapixels
            );
        }
    }

    #[test]
    fn an_accepted_decoded_memory_limit_is_the_configured_one(
        mib in prop_oneof![1u64..1_000_000, 1u64..=i64::MAX as u64, (40u32..63).prop_map(|b| 1u64 << b)],
    ) {
        let (line, key) = key_line("detector", "max_decoded_mib");
        if let Ok(config) = Config::parse(&defaults_with(line, &key, &mib.to_string())) {
            let limits = DecodeLimits::from_config(&config.detector);
            prop_assert!(
                limits.max_decoded_bytes >> 20 == mib || limits.max_decoded_bytes == u64::MAX,
                "max_decoded_mib = {} gave a limit of {} bytes",
                mib,
                limits.max_decoded_bytes
            );
        }
    }
}

/// The printed defaults with line `line` set to `key = text`.
fn defaults_with(line: usize, key: &str, text: &str) -> String {
    let mut lines: Vec<String> = Config::default_toml().lines().map(str::to_owned).collect();
    lines[line] = format!("{key} = {text}");
    lines.join("\n")
}

/// The line of `table.key` in the printed defaults.
fn key_line(table: &str, key: &str) -> (usize, String) {
    numeric_keys()
        .into_iter()
        .find(|(_, t, k)| t == table && k == key)
        .map(|(line, _, key)| (line, key))
        .unwrap_or_else(|| panic!("{table}.{key} is not in the printed defaults"))
}

#[test]
fn the_printed_defaults_have_numeric_keys_in_every_table_the_config_property_covers() {
    let keys = numeric_keys();
    for table in [
        "inference",
        "detector",
        "server",
        "liveness",
        "store",
        "mqtt",
    ] {
        assert!(
            keys.iter().any(|(_, t, _)| t == table),
            "no numeric key found in [{table}]: {keys:?}"
        );
    }
    // Each is where the property looks for it.
    let config = Config::parse(Config::default_toml()).unwrap();
    for (_, table, key) in &keys {
        assert!(
            config_value(&config, table, key).is_some(),
            "{table}.{key} not in the serialised config"
        );
    }
}

#[test]
fn the_field_lists_of_the_json_property_match_the_bodies() {
    assert_eq!(
        BODIES.map(|(n, _)| n),
        FIELDS.map(|(n, _)| n),
        "BODIES and FIELDS list the same bodies in the same order"
    );
    for (body, fields) in FIELDS {
        let parse = parser_of(body);
        // All listed fields valid: accepted.
        let valid = serde_json::to_vec(&valid_body(body)).unwrap();
        assert!(parse(&valid).is_ok(), "{body}");
        // Only the required ones: accepted; any one of them missing: refused.
        let required: Vec<_> = fields
            .iter()
            .filter(|(_, k)| matches!(k, Str | Values))
            .collect();
        let minimal: Map<String, Value> = required
            .iter()
            .map(|(n, k)| (n.to_string(), valid_value(*k)))
            .collect();
        assert!(
            parse(&serde_json::to_vec(&minimal).unwrap()).is_ok(),
            "{body}: {minimal:?}"
        );
        for (n, _) in &required {
            let mut m = minimal.clone();
            m.remove(*n);
            let e = parse(&serde_json::to_vec(&m).unwrap()).unwrap_err();
            assert!(
                e.message.contains(&format!("`{n}`")),
                "{body}: {}",
                e.message
            );
        }
    }
}
