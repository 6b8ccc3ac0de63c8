//! What the fake device is and how it misbehaves, read once from the environment of the
//! process it is loaded into. Every variable is optional except `FAKE_V4L2_DEVICES`.

use std::ffi::CString;
use std::path::PathBuf;
use std::time::Duration;

use crate::format::PixelFormat;

/// `FAKE_V4L2_DEVICES`: comma-separated device paths the fake answers for (default
/// `/dev/video-fake0`). Each is an independent camera with the settings below.
pub const DEVICES: &str = "FAKE_V4L2_DEVICES";
/// `FAKE_V4L2_FRAMES`: a folder of JPEG/PNG pictures, served in name order and looped (default:
/// a grey picture).
pub const FRAMES: &str = "FAKE_V4L2_FRAMES";
/// `FAKE_V4L2_FPS`: the frame rate offered (default 15); half of it is offered too.
pub const FPS: &str = "FAKE_V4L2_FPS";
/// `FAKE_V4L2_SIZES`: the discrete frame sizes offered, `WxH` comma-separated; the first is the
/// size the device starts with (default `1280x720,640x480`).
pub const SIZES: &str = "FAKE_V4L2_SIZES";
/// `FAKE_V4L2_FORMATS`: the pixel formats offered, `MJPG` and/or `YUYV` (default both).
pub const FORMATS: &str = "FAKE_V4L2_FORMATS";
/// `FAKE_V4L2_IGNORE_SIZE=1`: `S_FMT` keeps the current size whatever is asked (as some
/// drivers do) instead of choosing the nearest offered one.
pub const IGNORE_SIZE: &str = "FAKE_V4L2_IGNORE_SIZE";
/// `FAKE_V4L2_TRAILING_GARBAGE=N`: N bytes after each JPEG's end marker, inside `bytesused`.
pub const TRAILING_GARBAGE: &str = "FAKE_V4L2_TRAILING_GARBAGE";
/// `FAKE_V4L2_STALL_AFTER=N`: each stream delivers N frames, then no buffer is ever ready
/// again (poll times out, `DQBUF` says `EAGAIN`) until the stream is stopped.
pub const STALL_AFTER: &str = "FAKE_V4L2_STALL_AFTER";
/// `FAKE_V4L2_GONE_AFTER=N`: after N frames in all the device disappears: its open handles
/// answer `ENODEV` (poll `POLLERR|POLLHUP`), and opening the path says `ENOENT`.
pub const GONE_AFTER: &str = "FAKE_V4L2_GONE_AFTER";
/// `FAKE_V4L2_GONE_FOR_MS=M`: a device that disappeared comes back after M ms (default:
/// never). Handles opened before stay dead, as after a real unplug.
pub const GONE_FOR_MS: &str = "FAKE_V4L2_GONE_FOR_MS";
/// `FAKE_V4L2_LOG=path`: one line per thing the device did (open, format, stream, frame,
/// failure), with milliseconds since the fake was loaded, for tests to read.
pub const LOG: &str = "FAKE_V4L2_LOG";

#[derive(Debug, Clone)]
pub struct Settings {
    pub devices: Vec<CString>,
    pub frames: Option<PathBuf>,
    pub fps: u32,
    pub sizes: Vec<(u32, u32)>,
    pub formats: Vec<PixelFormat>,
    pub ignore_size: bool,
    pub trailing_garbage: usize,
    pub stall_after: Option<u64>,
    pub gone_after: Option<u64>,
    pub gone_for: Option<Duration>,
    pub log: Option<PathBuf>,
}

impl Settings {
    /// From the process environment. A value that does not parse is a panic with the
    /// variable named: a test that set it wrong must not silently test something else.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        fn number<T: std::str::FromStr>(name: &str, value: Option<String>) -> Option<T> {
            value.map(|v| {
                v.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
            })
        }
        let devices = get(DEVICES)
            .unwrap_or_else(|| "/dev/video-fake0".into())
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| CString::new(p).expect("a device path without NUL"))
            .collect();
        let sizes = get(SIZES)
            .unwrap_or_else(|| "1280x720,640x480".into())
            .split(',')
            .map(|s| parse_size(s).unwrap_or_else(|| panic!("{SIZES}: {s:?} is not WxH")))
            .collect::<Vec<_>>();
        assert!(!sizes.is_empty(), "{SIZES} names no size");
        let formats = get(FORMATS)
            .unwrap_or_else(|| "MJPG,YUYV".into())
            .split(',')
            .map(|f| {
                PixelFormat::from_name(f.trim())
                    .unwrap_or_else(|| panic!("{FORMATS}: {f:?} is neither MJPG nor YUYV"))
            })
            .collect::<Vec<_>>();
        assert!(!formats.is_empty(), "{FORMATS} names no format");
        Self {
            devices,
            frames: get(FRAMES).map(PathBuf::from),
            fps: number::<u32>(FPS, get(FPS)).unwrap_or(15).max(1),
            sizes,
            formats,
            ignore_size: get(IGNORE_SIZE).is_some_and(|v| v == "1"),
            trailing_garbage: number(TRAILING_GARBAGE, get(TRAILING_GARBAGE)).unwrap_or(0),
            stall_after: number(STALL_AFTER, get(STALL_AFTER)),
            gone_after: number(GONE_AFTER, get(GONE_AFTER)),
            gone_for: number::<u64>(GONE_FOR_MS, get(GONE_FOR_MS)).map(Duration::from_millis),
            log: get(LOG).map(PathBuf::from),
        }
    }

    /// The frame rates offered for every size: the configured one and half of it.
    pub fn rates(&self) -> Vec<u32> {
        let mut rates = vec![self.fps];
        if self.fps >= 2 {
            rates.push(self.fps / 2);
        }
        rates
    }
}

fn parse_size(s: &str) -> Option<(u32, u32)> {
    let (w, h) = s.trim().split_once('x')?;
    let (w, h) = (w.parse().ok()?, h.parse().ok()?);
    (w > 0 && h > 0 && w % 2 == 0).then_some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_offer_two_sizes_both_formats_at_15_and_7_fps() {
        let s = Settings::from_lookup(|_| None);
        assert_eq!(s.devices, vec![CString::new("/dev/video-fake0").unwrap()]);
        assert_eq!(s.sizes, vec![(1280, 720), (640, 480)]);
        assert_eq!(s.formats, vec![PixelFormat::Mjpeg, PixelFormat::Yuyv]);
        assert_eq!(s.rates(), vec![15, 7]);
        assert!(s.stall_after.is_none() && s.gone_after.is_none());
    }

    #[test]
    #[should_panic(expected = "FAKE_V4L2_SIZES")]
    fn a_size_that_does_not_parse_is_refused_with_the_variable_named() {
        Settings::from_lookup(|name| (name == SIZES).then(|| "640by480".into()));
    }
}
