//! The pictures a fake camera shows, rendered as it would send them: the folder's JPEGs as
//! they are when the size matches (otherwise scaled to fit and encoded again), YUYV converted
//! from the same pictures, and trailing bytes after the JPEG end marker when asked for.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use image::{imageops, Rgb, RgbImage};

use crate::format::PixelFormat;

/// A stream's frames, each as the device sends it, shared by the streams of one format and size.
pub type Frames = Arc<Vec<Vec<u8>>>;

/// The folder's pictures, loaded once, and their frames, rendered once per format and size.
/// It has its own lock: rendering a folder takes a while, and the driver's lock must not be
/// held meanwhile (other cameras poll and dequeue under it).
pub struct Renderer {
    folder: Option<PathBuf>,
    trailing_garbage: usize,
    pictures: OnceLock<Vec<Picture>>,
    rendered: Mutex<HashMap<(PixelFormat, u32, u32), Frames>>,
}

impl Renderer {
    pub fn new(folder: Option<PathBuf>, trailing_garbage: usize) -> Self {
        Self {
            folder,
            trailing_garbage,
            pictures: OnceLock::new(),
            rendered: Mutex::default(),
        }
    }

    pub fn frames(&self, format: PixelFormat, width: u32, height: u32) -> Frames {
        let mut rendered = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        rendered
            .entry((format, width, height))
            .or_insert_with(|| {
                let pictures = self.pictures.get_or_init(|| load(self.folder.as_deref()));
                Arc::new(render(
                    pictures,
                    format,
                    width,
                    height,
                    self.trailing_garbage,
                ))
            })
            .clone()
    }
}

/// One picture of the folder: its file bytes (served unchanged when they fit) and pixels.
pub struct Picture {
    file: Option<Vec<u8>>,
    image: RgbImage,
}

const GREY: Rgb<u8> = Rgb([128, 128, 128]);

/// The pictures of `dir` in name order; a grey picture when there is no folder or nothing in it
/// decodes (a camera always shows something).
pub fn load(dir: Option<&Path>) -> Vec<Picture> {
    let mut names: Vec<_> = dir
        .and_then(|d| std::fs::read_dir(d).ok())
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        })
        .collect();
    names.sort();
    let mut pictures: Vec<Picture> = names
        .iter()
        .filter_map(|p| {
            let bytes = std::fs::read(p).ok()?;
            let image = image::load_from_memory(&bytes).ok()?.to_rgb8();
            let is_jpeg = bytes.starts_with(&[0xff, 0xd8]);
            Some(Picture {
                file: is_jpeg.then_some(bytes),
                image,
            })
        })
        .collect();
    if pictures.is_empty() {
        pictures.push(Picture {
            file: None,
            image: RgbImage::from_pixel(64, 48, GREY),
        });
    }
    pictures
}

/// Every picture as a frame of `format` at `width`×`height`.
pub fn render(
    pictures: &[Picture],
    format: PixelFormat,
    width: u32,
    height: u32,
    trailing_garbage: usize,
) -> Vec<Vec<u8>> {
    pictures
        .iter()
        .map(|p| {
            let same_size = p.image.dimensions() == (width, height);
            match format {
                PixelFormat::Mjpeg => {
                    let mut jpeg = match (&p.file, same_size) {
                        (Some(file), true) => file.clone(),
                        _ => encode_jpeg(&fit(&p.image, width, height)),
                    };
                    jpeg.extend((0..trailing_garbage).map(|i| (i * 37 + 11) as u8));
                    jpeg
                }
                PixelFormat::Yuyv => {
                    if same_size {
                        rgb_to_yuyv(&p.image)
                    } else {
                        rgb_to_yuyv(&fit(&p.image, width, height))
                    }
                }
            }
        })
        .collect()
}

/// Scaled to fit inside `width`×`height` keeping its proportions, centred on grey: a face
/// keeps its shape whatever size the driver chose.
fn fit(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let scale = (width as f32 / image.width() as f32).min(height as f32 / image.height() as f32);
    let w = ((image.width() as f32 * scale).round() as u32).clamp(1, width);
    let h = ((image.height() as f32 * scale).round() as u32).clamp(1, height);
    let scaled = imageops::resize(image, w, h, imageops::FilterType::Triangle);
    let mut canvas = RgbImage::from_pixel(width, height, GREY);
    imageops::replace(
        &mut canvas,
        &scaled,
        i64::from((width - w) / 2),
        i64::from((height - h) / 2),
    );
    canvas
}

fn encode_jpeg(image: &RgbImage) -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(image)
        .expect("encoding a JPEG in memory");
    jpeg
}

/// Packed YUYV, BT.601 limited range as UVC cameras send it; each pair of pixels shares the
/// average of their chroma.
pub fn rgb_to_yuyv(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::with_capacity(image.width() as usize * image.height() as usize * 2);
    for row in image.rows() {
        let row: Vec<&Rgb<u8>> = row.collect();
        for pair in row.chunks(2) {
            let (a, b) = (pair[0], *pair.get(1).unwrap_or(&pair[0]));
            let (ua, va) = chroma(a);
            let (ub, vb) = chroma(b);
            out.extend([
                luma(a),
                ((ua + ub) / 2.0).round() as u8,
                luma(b),
                ((va + vb) / 2.0).round() as u8,
            ]);
        }
    }
    out
}

fn luma(p: &Rgb<u8>) -> u8 {
    let [r, g, b] = p.0.map(f32::from);
    (16.0 + (65.738 * r + 129.057 * g + 25.064 * b) / 256.0)
        .round()
        .clamp(16.0, 235.0) as u8
}

fn chroma(p: &Rgb<u8>) -> (f32, f32) {
    let [r, g, b] = p.0.map(f32::from);
    let u = 128.0 + (-37.945 * r - 74.494 * g + 112.439 * b) / 256.0;
    let v = 128.0 + (112.439 * r - 94.154 * g - 18.285 * b) / 256.0;
    (u.clamp(16.0, 240.0), v.clamp(16.0, 240.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn white_black_and_grey_are_limited_range_yuyv() {
        let mut img = RgbImage::new(4, 1);
        img.put_pixel(0, 0, Rgb([255, 255, 255]));
        img.put_pixel(1, 0, Rgb([255, 255, 255]));
        img.put_pixel(2, 0, Rgb([0, 0, 0]));
        img.put_pixel(3, 0, Rgb([0, 0, 0]));
        assert_eq!(
            rgb_to_yuyv(&img),
            vec![235, 128, 235, 128, 16, 128, 16, 128]
        );
    }

    #[test]
    fn a_picture_of_another_size_is_fitted_and_a_jpeg_of_the_same_size_served_as_it_is() {
        let dir = std::env::temp_dir().join(format!("fake-v4l2-frames-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let picture = RgbImage::from_pixel(320, 240, Rgb([200, 10, 10]));
        let file = encode_jpeg(&picture);
        std::fs::write(dir.join("a.jpg"), &file).unwrap();
        let pictures = load(Some(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(render(&pictures, PixelFormat::Mjpeg, 320, 240, 0)[0], file);
        let garbage = &render(&pictures, PixelFormat::Mjpeg, 320, 240, 5)[0];
        assert_eq!(garbage.len(), file.len() + 5);
        // 320x240 into 640x360: scaled to 480x360 and centred, grey bars left and right.
        let wide = image::load_from_memory(&render(&pictures, PixelFormat::Mjpeg, 640, 360, 0)[0])
            .unwrap()
            .to_rgb8();
        assert_eq!(wide.dimensions(), (640, 360));
        assert!(wide.get_pixel(20, 180).0[0].abs_diff(128) < 8);
        assert!(wide.get_pixel(320, 180).0[0] > 180);
        assert_eq!(
            render(&pictures, PixelFormat::Yuyv, 640, 360, 0)[0].len(),
            640 * 360 * 2
        );
    }

    #[test]
    fn no_folder_shows_grey() {
        let frames = render(&load(None), PixelFormat::Yuyv, 4, 2, 0);
        assert_eq!(frames, vec![[126, 128].repeat(4 * 2)]);
    }
}
