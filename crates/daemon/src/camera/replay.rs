//! Replay of a folder of JPEG/PNG frames (in name order) or of one image, at a set frame rate,
//! looped or once: the camera of demos, tests and benchmarks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::RgbImage;

use super::{decode_frame, CameraError, DecodeLimits, FrameSource, SourceOpener};

pub struct ReplayOpener {
    path: PathBuf,
    fps: f32,
    looped: bool,
    limits: DecodeLimits,
}

impl ReplayOpener {
    pub fn new(path: &Path, fps: f32, looped: bool, limits: DecodeLimits) -> Self {
        Self {
            path: path.to_owned(),
            fps,
            looped,
            limits,
        }
    }
}

/// The frame files of a replay path: the image itself, or the folder's JPEG/PNG/WebP files by
/// name.
pub fn frame_files(path: &Path) -> Result<Vec<PathBuf>, CameraError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| CameraError::Unavailable(format!("replay path {}: {e}", path.display())))?;
    if meta.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| CameraError::Unavailable(format!("replay folder {}: {e}", path.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| facegate_core::engine::frame::is_photo_file(p))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(CameraError::Unavailable(format!(
            "replay folder {} has no .jpg, .jpeg, .png or .webp frames",
            path.display()
        )));
    }
    Ok(files)
}

impl SourceOpener for ReplayOpener {
    fn open(&mut self) -> Result<Box<dyn FrameSource>, CameraError> {
        let files = frame_files(&self.path)?;
        Ok(Box::new(Replay {
            files,
            next: 0,
            interval: (self.fps > 0.0).then(|| Duration::from_secs_f64(1.0 / self.fps as f64)),
            due: None,
            looped: self.looped,
            limits: self.limits,
        }))
    }

    fn describe(&self) -> String {
        format!("replay {}", self.path.display())
    }
}

struct Replay {
    files: Vec<PathBuf>,
    next: usize,
    interval: Option<Duration>,
    due: Option<Instant>,
    looped: bool,
    limits: DecodeLimits,
}

impl FrameSource for Replay {
    fn next_frame(&mut self) -> Result<Option<RgbImage>, CameraError> {
        if self.next == self.files.len() {
            if !self.looped {
                return Ok(None);
            }
            self.next = 0;
        }
        // Keep the schedule of a real camera: frame n is due at start + n × interval. A replay
        // that fell more than a second behind restarts its schedule instead of bursting.
        if let Some(interval) = self.interval {
            let now = Instant::now();
            let due = match self.due {
                Some(d) if now.saturating_duration_since(d) < Duration::from_secs(1) => d,
                _ => now,
            };
            if due > now {
                std::thread::sleep(due - now);
            }
            self.due = Some(due + interval);
        }
        let path = &self.files[self.next];
        self.next += 1;
        let bytes = std::fs::read(path).map_err(|e| {
            CameraError::Unavailable(format!("cannot read replay frame {}: {e}", path.display()))
        })?;
        decode_frame(&bytes, self.limits)
            .map(Some)
            .map_err(|e| CameraError::BadFrame(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, shade: u8) {
        image::RgbImage::from_pixel(32, 24, image::Rgb([shade; 3]))
            .save(path)
            .unwrap();
    }

    #[test]
    fn a_folder_replays_its_images_in_name_order_and_once_means_once() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("b.png"), 20);
        write_png(&dir.path().join("a.png"), 10);
        std::fs::write(dir.path().join("notes.txt"), "not a frame").unwrap();
        let mut source = ReplayOpener::new(dir.path(), 0.0, false, DecodeLimits::default())
            .open()
            .unwrap();
        let shades: Vec<u8> = std::iter::from_fn(|| source.next_frame().unwrap())
            .map(|f| f.get_pixel(0, 0).0[0])
            .collect();
        assert_eq!(shades, vec![10, 20]);
    }

    #[test]
    fn a_looped_replay_starts_again_and_keeps_its_frame_rate() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("one.png");
        write_png(&one, 5);
        let mut source = ReplayOpener::new(&one, 50.0, true, DecodeLimits::default())
            .open()
            .unwrap();
        let start = Instant::now();
        for _ in 0..6 {
            assert!(source.next_frame().unwrap().is_some());
        }
        // 6 frames at 50 fps: the sixth is due 100 ms after the first.
        assert!(
            start.elapsed() >= Duration::from_millis(95),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_missing_or_empty_replay_path_is_a_camera_that_cannot_open() {
        let dir = tempfile::tempdir().unwrap();
        let err = ReplayOpener::new(dir.path(), 0.0, true, DecodeLimits::default())
            .open()
            .err()
            .unwrap();
        assert!(err.to_string().contains("no .jpg"), "{err}");
        let missing = dir.path().join("nope");
        assert!(
            ReplayOpener::new(&missing, 0.0, true, DecodeLimits::default())
                .open()
                .is_err()
        );
    }
}
