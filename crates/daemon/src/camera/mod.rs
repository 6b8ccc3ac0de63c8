//! Frame sources. The pipeline sees only [`FrameSource`]; each kind of camera (V4L2, MJPEG
//! over HTTP, replay of files) implements it, and [`capture`] runs one on its own thread with
//! reconnection and a one-frame mailbox, so a slow pipeline drops frames instead of queueing
//! them.

pub mod capture;
pub mod mjpeg_http;
pub use facegate_core::redact;
pub mod replay;
pub mod scene;
pub mod slot;
pub mod snapshot;
pub mod v4l2;
pub mod yuyv;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use image::RgbImage;

use facegate_core::config::{CameraConfig, SourceKind};
pub use facegate_core::engine::frame::DecodeLimits;

/// One decoded frame and when it was captured.
#[derive(Clone)]
pub struct Frame {
    pub image: Arc<RgbImage>,
    /// Frame number since the capture thread started (across reconnects).
    pub seq: u64,
    /// Monotonic capture instant, for latencies.
    pub captured_at: Instant,
    /// Wall-clock capture time, for event timestamps.
    pub captured_wall: SystemTime,
}

#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    /// The source cannot be opened or has failed; the capture loop reopens it after a backoff.
    #[error("{0}")]
    Unavailable(String),
    /// One frame could not be decoded; the source itself is fine.
    #[error("bad frame: {0}")]
    BadFrame(String),
}

/// What a driver agreed to when the camera was opened, which may differ from what the
/// configuration asked for (drivers pick the nearest size and rate they have).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Negotiated {
    /// The fourcc, e.g. "MJPG" or "YUYV".
    pub format: String,
    pub width: u32,
    pub height: u32,
    /// Frames per second the driver set; `None` when it does not say.
    pub fps: Option<f32>,
}

/// A camera once opened. `next_frame` blocks until a frame is there; `Ok(None)` is the end of
/// a finite source (a replay played once).
pub trait FrameSource: Send {
    fn next_frame(&mut self) -> Result<Option<RgbImage>, CameraError>;

    /// The format the device agreed to; sources without a negotiation have none.
    fn negotiated(&self) -> Option<Negotiated> {
        None
    }
}

/// Opens (and reopens, after a failure) a camera's source.
pub trait SourceOpener: Send {
    fn open(&mut self) -> Result<Box<dyn FrameSource>, CameraError>;
    /// What is being opened, for logs and `/health` (device path, URL, folder).
    fn describe(&self) -> String;
}

/// The opener for a configured camera.
pub fn opener_for(config: &CameraConfig, limits: DecodeLimits) -> Box<dyn SourceOpener> {
    match config.source {
        SourceKind::V4l2 => Box::new(v4l2::V4l2Opener::new(config, limits)),
        SourceKind::Mjpeg => Box::new(mjpeg_http::MjpegOpener::new(&config.url, limits)),
        SourceKind::Replay => Box::new(replay::ReplayOpener::new(
            config.path.as_deref().unwrap_or(std::path::Path::new("")),
            config.fps,
            config.replay_loop,
            limits,
        )),
    }
}

/// Decode a JPEG or PNG frame, refusing images over the size limit before decoding.
pub fn decode_frame(bytes: &[u8], limits: DecodeLimits) -> Result<RgbImage, CameraError> {
    facegate_core::engine::frame::decode(bytes, &limits)
        .map_err(|e| CameraError::BadFrame(e.to_string()))
}
