//! The capture thread of one camera: open the source, hand frames to the pipeline through a
//! [`FrameSlot`], and on failure log it, record it for `/health`, back off and reopen.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use facegate_core::pipeline::gallery_threshold::GalleryThreshold;
use serde::Serialize;

use super::slot::FrameSlot;
use super::{CameraError, Frame, Negotiated, SourceOpener};
use crate::daemon::shutdown;

/// First and longest wait before reopening a failed source.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// What `/health` shows of a camera; the capture thread and the pipeline update it.
#[derive(Debug, Clone, Serialize)]
pub struct CameraHealth {
    pub name: String,
    pub source: String,
    /// starting, streaming, reconnecting, ended (a replay played once) or stopped.
    pub state: &'static str,
    /// Frames per second delivered by the camera over the last second or so.
    pub fps: f32,
    /// Frames per second the pipeline processed.
    pub processed_fps: f32,
    pub frames: u64,
    /// Frames replaced before the pipeline took them (the pipeline was slower).
    pub dropped: u64,
    pub processed: u64,
    pub errors: u64,
    pub reconnects: u64,
    #[serde(with = "facegate_core::clock::rfc3339_opt")]
    pub last_frame_at: Option<SystemTime>,
    pub last_error: Option<String>,
    #[serde(with = "facegate_core::clock::rfc3339_opt")]
    pub last_error_at: Option<SystemTime>,
    /// What the V4L2 driver agreed to at the last open (format, size, rate); null for other
    /// sources and before the first open.
    pub negotiated: Option<Negotiated>,
    /// The score a match needs now and how it was worked out; null before the pipeline starts.
    pub threshold: Option<GalleryThreshold>,
}

/// Shared, lock-protected [`CameraHealth`] with frame-rate meters, and the heartbeats of the
/// camera's two threads for the systemd watchdog.
pub struct CameraStatus {
    inner: Mutex<(CameraHealth, RateMeter, RateMeter)>,
    epoch: Instant,
    capture_beat_ms: AtomicU64,
    pipeline_beat_ms: AtomicU64,
    /// The newest frame the pipeline looked at, with its faces (`GET /cameras/{name}/snapshot`).
    pub latest: super::snapshot::LatestFrame,
}

impl CameraStatus {
    pub fn new(name: &str, source: String) -> Self {
        Self {
            inner: Mutex::new((
                CameraHealth {
                    name: name.to_owned(),
                    source,
                    state: "starting",
                    fps: 0.0,
                    processed_fps: 0.0,
                    frames: 0,
                    dropped: 0,
                    processed: 0,
                    errors: 0,
                    reconnects: 0,
                    last_frame_at: None,
                    last_error: None,
                    last_error_at: None,
                    negotiated: None,
                    threshold: None,
                },
                RateMeter::default(),
                RateMeter::default(),
            )),
            epoch: Instant::now(),
            capture_beat_ms: AtomicU64::new(0),
            pipeline_beat_ms: AtomicU64::new(0),
            latest: Default::default(),
        }
    }

    fn beat(&self, which: &AtomicU64) {
        which.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// The capture thread is alive (called on every loop turn, frame or not).
    pub fn beat_capture(&self) {
        self.beat(&self.capture_beat_ms);
    }

    /// The pipeline thread is alive (called at least every 100 ms while it runs).
    pub fn beat_pipeline(&self) {
        self.beat(&self.pipeline_beat_ms);
    }

    /// The thread that has not beaten for longer than `max_age`, if any. A camera whose
    /// source ended or that was stopped has no running threads and is never stuck.
    pub fn stuck_thread(&self, max_age: Duration) -> Option<(&'static str, Duration)> {
        let state = self.inner.lock().unwrap().0.state;
        if matches!(state, "ended" | "stopped") {
            return None;
        }
        let now = self.epoch.elapsed();
        [
            ("capture", &self.capture_beat_ms),
            ("pipeline", &self.pipeline_beat_ms),
        ]
        .into_iter()
        .map(|(name, beat)| {
            (
                name,
                now.saturating_sub(Duration::from_millis(beat.load(Ordering::Relaxed))),
            )
        })
        .find(|(_, age)| *age > max_age)
    }

    pub fn snapshot(&self) -> CameraHealth {
        let mut g = self.inner.lock().unwrap();
        let (h, captured, processed) = &mut *g;
        let now = Instant::now();
        h.fps = captured.rate(now);
        h.processed_fps = processed.rate(now);
        h.clone()
    }

    fn frame(&self, dropped: bool) {
        let mut g = self.inner.lock().unwrap();
        g.0.frames += 1;
        g.0.dropped += u64::from(dropped);
        g.0.state = "streaming";
        g.0.last_frame_at = Some(SystemTime::now());
        g.1.tick(Instant::now());
    }

    /// The pipeline finished a frame.
    pub fn processed(&self) {
        let mut g = self.inner.lock().unwrap();
        g.0.processed += 1;
        g.2.tick(Instant::now());
    }

    /// Record an error; returns its text as stored, for the log. Whatever source produced it,
    /// no URL credential reaches /health or the log.
    fn error(&self, message: &str, state: &'static str) -> String {
        let message = super::redact::redact_urls(message);
        let mut g = self.inner.lock().unwrap();
        g.0.errors += 1;
        g.0.last_error = Some(message.clone());
        g.0.last_error_at = Some(SystemTime::now());
        g.0.state = state;
        message
    }

    fn set_state(&self, state: &'static str) {
        self.inner.lock().unwrap().0.state = state;
    }

    /// The pipeline worked out its threshold again.
    pub fn set_threshold(&self, threshold: GalleryThreshold) {
        self.inner.lock().unwrap().0.threshold = Some(threshold);
    }

    fn opened(&self, negotiated: Option<Negotiated>) {
        self.inner.lock().unwrap().0.negotiated = negotiated;
    }

    fn reconnected(&self) {
        self.inner.lock().unwrap().0.reconnects += 1;
    }
}

/// Frames per second over windows of about a second.
#[derive(Default)]
struct RateMeter {
    window_start: Option<Instant>,
    count: u32,
    last_rate: f32,
    last_tick: Option<Instant>,
}

impl RateMeter {
    fn tick(&mut self, now: Instant) {
        self.last_tick = Some(now);
        let start = *self.window_start.get_or_insert(now);
        self.count += 1;
        let elapsed = now - start;
        if elapsed >= Duration::from_secs(1) {
            self.last_rate = (self.count - 1) as f32 / elapsed.as_secs_f32();
            self.window_start = Some(now);
            self.count = 1;
        }
    }

    /// The last window's rate, or 0 once nothing has come for two seconds.
    fn rate(&self, now: Instant) -> f32 {
        match self.last_tick {
            Some(t) if now - t < Duration::from_secs(2) => self.last_rate,
            _ => 0.0,
        }
    }
}

/// Start the capture thread of camera `name`. It runs until `stop` is set (or a finite
/// source ends), then closes `slot`.
pub fn spawn(
    name: &str,
    mut opener: Box<dyn SourceOpener>,
    slot: Arc<FrameSlot>,
    status: Arc<CameraStatus>,
    stop: shutdown::Receiver,
    paced: bool,
) -> std::io::Result<JoinHandle<()>> {
    let name = name.to_owned();
    std::thread::Builder::new()
        .name(format!("capture-{name}"))
        .spawn(move || {
            run(&name, opener.as_mut(), &slot, &status, &stop, paced);
            slot.close();
        })
}

fn run(
    name: &str,
    opener: &mut dyn SourceOpener,
    slot: &FrameSlot,
    status: &CameraStatus,
    stop: &shutdown::Receiver,
    paced: bool,
) {
    let mut backoff = BACKOFF_FIRST;
    let mut seq = 0u64;
    let mut opened_before = false;
    while !stop.is_requested() {
        status.beat_capture();
        let mut source = match opener.open() {
            Ok(s) => s,
            Err(e) => {
                let error = status.error(&e.to_string(), "reconnecting");
                tracing::warn!(camera = name, source = %opener.describe(), %error, retry_in = ?backoff, "camera cannot be opened");
                sleep_unless_stopped(backoff, stop, status);
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        if opened_before {
            status.reconnected();
        }
        opened_before = true;
        let negotiated = source.negotiated();
        tracing::info!(camera = name, source = %opener.describe(), ?negotiated, "camera opened");
        status.opened(negotiated);
        loop {
            status.beat_capture();
            if stop.is_requested() {
                status.set_state("stopped");
                return;
            }
            match source.next_frame() {
                Ok(Some(image)) => {
                    backoff = BACKOFF_FIRST;
                    let frame = Frame {
                        image: Arc::new(image),
                        seq,
                        captured_at: Instant::now(),
                        captured_wall: SystemTime::now(),
                    };
                    seq += 1;
                    if !paced {
                        while !slot.wait_empty(Duration::from_millis(100)) {
                            status.beat_capture();
                            if stop.is_requested() {
                                status.set_state("stopped");
                                return;
                            }
                        }
                    }
                    let dropped = slot.put(frame);
                    status.frame(dropped);
                }
                Ok(None) => {
                    tracing::info!(camera = name, "camera source ended");
                    status.set_state("ended");
                    return;
                }
                Err(CameraError::BadFrame(e)) => {
                    let error = status.error(&format!("bad frame: {e}"), "streaming");
                    tracing::warn!(camera = name, %error, "camera frame skipped");
                }
                Err(e @ CameraError::Unavailable(_)) => {
                    let error = status.error(&e.to_string(), "reconnecting");
                    tracing::warn!(camera = name, %error, retry_in = ?backoff, "camera failed; reopening");
                    break;
                }
            }
        }
        drop(source);
        sleep_unless_stopped(backoff, stop, status);
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    status.set_state("stopped");
}

fn sleep_unless_stopped(total: Duration, stop: &shutdown::Receiver, status: &CameraStatus) {
    let until = Instant::now() + total;
    while !stop.is_requested() {
        status.beat_capture();
        let now = Instant::now();
        if now >= until {
            return;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::{slot::Take, FrameSource};

    /// Fails to open twice, then gives two frames and fails, then gives one frame and ends.
    struct Scripted {
        opens: u32,
    }

    struct Frames(Vec<Result<Option<image::RgbImage>, CameraError>>);

    impl FrameSource for Frames {
        fn next_frame(&mut self) -> Result<Option<image::RgbImage>, CameraError> {
            if self.0.is_empty() {
                return Ok(None);
            }
            self.0.remove(0)
        }
    }

    impl SourceOpener for Scripted {
        fn open(&mut self) -> Result<Box<dyn FrameSource>, CameraError> {
            self.opens += 1;
            let img = || Ok(Some(image::RgbImage::new(4, 4)));
            match self.opens {
                1 | 2 => Err(CameraError::Unavailable("no such device".into())),
                3 => Ok(Box::new(Frames(vec![
                    img(),
                    Err(CameraError::BadFrame("truncated".into())),
                    img(),
                    Err(CameraError::Unavailable("unplugged".into())),
                ]))),
                _ => Ok(Box::new(Frames(vec![img()]))),
            }
        }
        fn describe(&self) -> String {
            "scripted".into()
        }
    }

    #[test]
    fn a_failing_source_is_reopened_with_backoff_and_every_failure_is_reported() {
        let slot = Arc::new(FrameSlot::new());
        let status = Arc::new(CameraStatus::new("test", "scripted".into()));
        let (_stop, stop_rx) = crate::daemon::shutdown::channel();
        let handle = spawn(
            "test",
            Box::new(Scripted { opens: 0 }),
            slot.clone(),
            status.clone(),
            stop_rx,
            false,
        )
        .unwrap();
        let mut got = Vec::new();
        loop {
            match slot.take(Duration::from_secs(20)) {
                Take::Frame(f) => got.push(f.seq),
                Take::Closed => break,
                Take::Empty => panic!("the capture thread stalled"),
            }
        }
        handle.join().unwrap();
        assert_eq!(got, vec![0, 1, 2]);
        let h = status.snapshot();
        assert_eq!(h.frames, 3);
        // two failed opens, one bad frame, one failure while streaming
        assert_eq!(h.errors, 4);
        assert_eq!(h.reconnects, 1);
        assert_eq!(h.state, "ended");
        assert_eq!(h.last_error.as_deref(), Some("unplugged"));
        // Ended: no thread to watch.
        assert_eq!(status.stuck_thread(Duration::ZERO), None);
    }

    #[test]
    fn a_thread_that_stops_beating_is_reported_stuck_and_a_beating_one_is_not() {
        let status = CameraStatus::new("cam", "test".into());
        status.beat_capture();
        status.beat_pipeline();
        assert_eq!(status.stuck_thread(Duration::from_secs(5)), None);
        std::thread::sleep(Duration::from_millis(30));
        status.beat_capture();
        let (thread, age) = status.stuck_thread(Duration::from_millis(20)).unwrap();
        assert_eq!(thread, "pipeline");
        assert!(age >= Duration::from_millis(20));
    }
}
