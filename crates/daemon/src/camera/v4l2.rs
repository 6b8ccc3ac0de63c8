//! V4L2 cameras through the `v4l` crate: MJPEG (decoded here) or YUYV (converted), at the
//! configured size and rate, from memory-mapped buffers.

use std::time::Duration;

use image::RgbImage;
use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use super::{
    decode_frame, yuyv::yuyv_to_rgb, CameraError, DecodeLimits, FrameSource, Negotiated,
    SourceOpener,
};
use facegate_core::config::{CameraConfig, PixelFormat};

/// A dead or unplugged camera makes `next` fail after this instead of blocking forever.
const FRAME_TIMEOUT: Duration = Duration::from_secs(2);
const BUFFERS: u32 = 4;

pub struct V4l2Opener {
    device: String,
    format: PixelFormat,
    width: u32,
    height: u32,
    fps: f32,
    limits: DecodeLimits,
}

impl V4l2Opener {
    pub fn new(config: &CameraConfig, limits: DecodeLimits) -> Self {
        Self {
            limits,
            device: config.device.display().to_string(),
            format: config.format,
            width: config.width,
            height: config.height,
            fps: config.fps,
        }
    }
}

/// The fourcc V4L2 names a configured pixel format by.
pub fn fourcc_of(format: PixelFormat) -> FourCC {
    match format {
        PixelFormat::Mjpeg => FourCC::new(b"MJPG"),
        PixelFormat::Yuyv => FourCC::new(b"YUYV"),
    }
}

impl SourceOpener for V4l2Opener {
    fn open(&mut self) -> Result<Box<dyn FrameSource>, CameraError> {
        let fail = |what: &str, e: std::io::Error| {
            CameraError::Unavailable(format!("{} {what}: {e}", self.device))
        };
        let dev = Device::with_path(&self.device).map_err(|e| fail("cannot be opened", e))?;
        let caps = dev.query_caps().map_err(|e| fail("capabilities", e))?;
        if !caps
            .capabilities
            .contains(v4l::capability::Flags::VIDEO_CAPTURE)
        {
            return Err(CameraError::Unavailable(format!(
                "{} ({}) is not a video capture node (UVC cameras often have a second, \
                 metadata node)",
                self.device, caps.card
            )));
        }
        let mut fmt = dev.format().map_err(|e| fail("format", e))?;
        fmt.width = self.width;
        fmt.height = self.height;
        fmt.fourcc = fourcc_of(self.format);
        // The driver answers with what it actually chose, which may differ.
        let fmt = dev.set_format(&fmt).map_err(|e| fail("set format", e))?;
        let wanted = fourcc_of(self.format);
        if fmt.fourcc != wanted {
            return Err(CameraError::Unavailable(format!(
                "{} does not offer {} (it chose {}); set cameras.format to what \
                 `v4l2-ctl --list-formats-ext` lists",
                self.device, wanted, fmt.fourcc
            )));
        }
        if fmt.width != self.width || fmt.height != self.height {
            // A warning: the faces are smaller or larger than the configuration was sized for
            // (min_face_px, the detector's tiles).
            tracing::warn!(device = %self.device,
                asked = %format!("{}x{}", self.width, self.height),
                chosen = %format!("{}x{}", fmt.width, fmt.height),
                "the camera chose another frame size");
        }
        if self.fps > 0.0 {
            let fps = self.fps.round().max(1.0) as u32;
            if let Err(e) = dev.set_params(&v4l::video::capture::Parameters::with_fps(fps)) {
                tracing::warn!(device = %self.device, error = %e, "cannot set the frame rate");
            }
        }
        let fps = dev
            .params()
            .ok()
            .map(|p| p.interval)
            .filter(|i| i.numerator > 0 && i.denominator > 0)
            .map(|i| i.denominator as f32 / i.numerator as f32);
        let negotiated = Negotiated {
            format: fmt.fourcc.to_string(),
            width: fmt.width,
            height: fmt.height,
            fps,
        };
        let mut stream = Stream::with_buffers(&dev, Type::VideoCapture, BUFFERS)
            .map_err(|e| fail("cannot start streaming", e))?;
        stream.set_timeout(FRAME_TIMEOUT);
        Ok(Box::new(V4l2Source {
            stream,
            _device: dev,
            format: self.format,
            width: fmt.width,
            height: fmt.height,
            limits: self.limits,
            negotiated,
        }))
    }

    fn describe(&self) -> String {
        format!(
            "v4l2 {} {:?} {}x{}",
            self.device, self.format, self.width, self.height
        )
    }
}

struct V4l2Source {
    stream: Stream<'static>,
    _device: Device,
    format: PixelFormat,
    width: u32,
    height: u32,
    limits: DecodeLimits,
    negotiated: Negotiated,
}

impl FrameSource for V4l2Source {
    fn negotiated(&self) -> Option<Negotiated> {
        Some(self.negotiated.clone())
    }

    fn next_frame(&mut self) -> Result<Option<RgbImage>, CameraError> {
        let (buf, meta) = self.stream.next().map_err(|e| {
            CameraError::Unavailable(if e.kind() == std::io::ErrorKind::TimedOut {
                format!(
                    "no frame within {} s: the camera stopped delivering",
                    FRAME_TIMEOUT.as_secs()
                )
            } else {
                format!("capture failed: {e}")
            })
        })?;
        // The mmap buffer is larger than the frame; only `bytesused` bytes are the picture.
        let used = (meta.bytesused as usize).min(buf.len());
        let data = &buf[..used];
        match self.format {
            PixelFormat::Mjpeg => decode_frame(data, self.limits).map(Some),
            PixelFormat::Yuyv => yuyv_to_rgb(data, self.width, self.height)
                .map(Some)
                .ok_or_else(|| {
                    CameraError::BadFrame(format!(
                        "YUYV frame of {used} bytes is short for {}x{}",
                        self.width, self.height
                    ))
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs a camera: `FACEGATE_TEST_V4L2_DEVICE=/dev/video0 cargo test --release v4l2`.
    /// Without the variable it says it was skipped (CI has no camera and cannot load vivid).
    #[test]
    fn a_real_v4l2_device_delivers_frames_of_the_negotiated_size() {
        let Ok(device) = std::env::var("FACEGATE_TEST_V4L2_DEVICE") else {
            eprintln!("skipped: set FACEGATE_TEST_V4L2_DEVICE=/dev/videoN to test a real camera");
            return;
        };
        let config = CameraConfig {
            device: device.into(),
            width: 640,
            height: 480,
            ..CameraConfig::default()
        };
        let mut source = V4l2Opener::new(&config, DecodeLimits::default())
            .open()
            .expect("the device opens");
        for _ in 0..5 {
            let frame = source.next_frame().unwrap().unwrap();
            assert!(frame.width() > 0 && frame.height() > 0);
        }
    }

    #[test]
    fn a_missing_device_is_a_camera_that_cannot_be_opened_with_its_path_named() {
        let config = CameraConfig {
            device: "/dev/video-does-not-exist".into(),
            ..CameraConfig::default()
        };
        let err = V4l2Opener::new(&config, DecodeLimits::default())
            .open()
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("/dev/video-does-not-exist"),
            "{err}"
        );
    }
}
