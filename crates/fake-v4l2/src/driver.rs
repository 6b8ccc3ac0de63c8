//! The fake camera's driver: what open, each ioctl, mmap, poll and close do to a device and
//! its open handles, with the rules of the kernel's videobuf2 and uvcvideo where facegate
//! could notice a difference: formats are the device's; one handle at a time owns the
//! buffers; each frame, when due, fills the oldest queued buffer (or is dropped when none is
//! queued) and `DQBUF` hands out the oldest filled one, `EAGAIN` on a non-blocking handle when
//! none is; a device that vanished answers `ENODEV` on every old handle forever and comes back
//! fresh.

use std::collections::{HashMap, VecDeque};
use std::ffi::{c_int, c_void};
use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libc::{EAGAIN, EBUSY, EFAULT, EINVAL, ENODEV, ENOENT, ENOTTY};
use v4l::v4l2::vidioc::*;
use v4l::v4l_sys::*;

use crate::format::PixelFormat;
use crate::frames::{Frames, Renderer};
use crate::settings::Settings;

pub type Errno = c_int;

const CAPTURE: u32 = v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
const MMAP: u32 = v4l2_memory_V4L2_MEMORY_MMAP;
const MAX_BUFFERS: u32 = 32;

/// Whether a handle has something for `poll`.
#[derive(Debug, PartialEq, Eq)]
pub enum Readiness {
    /// These `revents` now.
    Ready(i16),
    /// Nothing yet; the next frame is due then (`None`: nothing will come by itself).
    Wait(Option<Instant>),
}

pub struct Driver {
    settings: Settings,
    epoch: Instant,
    devices: Vec<Device>,
    handles: HashMap<c_int, Handle>,
    renderer: Arc<Renderer>,
    log: Option<File>,
}

struct Device {
    path: String,
    /// The format is the device's, not a handle's: it outlives closes, as on a real driver.
    format: PixelFormat,
    width: u32,
    height: u32,
    fps: u32,
    /// The handle whose buffers are allocated; the others get `EBUSY`.
    owner: Option<c_int>,
    /// Bumped when the device vanishes (once at most): handles of an older generation are dead.
    generation: u64,
    gone_since: Option<Instant>,
    delivered: u64,
}

struct Handle {
    device: usize,
    generation: u64,
    buffers: Vec<Buffer>,
    /// Buffers the application queued, oldest first, with when: a buffer only takes frames
    /// that were due after it was queued.
    queued: VecDeque<(u32, Instant)>,
    buffer_len: u32,
    stream: Option<Stream>,
}

#[derive(Default, Clone, Copy)]
struct Buffer {
    queued: bool,
    mapped: bool,
}

struct Stream {
    started: Instant,
    fps: u32,
    /// The next frame the camera will send.
    next_sequence: u64,
    /// Frames put in a buffer so far (a stall counts these).
    produced: u64,
    frames: Frames,
    /// Filled buffers in the order they were filled, for `DQBUF`.
    done: VecDeque<Filled>,
}

struct Filled {
    index: u32,
    sequence: u64,
    bytes_used: u32,
    at: Instant,
}

impl Stream {
    fn due(&self, sequence: u64) -> Instant {
        self.started + Duration::from_secs_f64(sequence as f64 / f64::from(self.fps))
    }
}

/// The device's state as it is when plugged in.
fn fresh_device(settings: &Settings, path: String) -> Device {
    Device {
        path,
        format: settings.formats[0],
        width: settings.sizes[0].0,
        height: settings.sizes[0].1,
        fps: settings.fps,
        owner: None,
        generation: 0,
        gone_since: None,
        delivered: 0,
    }
}

fn page_round(n: u32) -> u32 {
    let page = 4096;
    n.div_ceil(page) * page
}

fn copy_text(dst: &mut [u8], text: &str) {
    let n = text.len().min(dst.len() - 1);
    dst[..n].copy_from_slice(&text.as_bytes()[..n]);
    dst[n..].fill(0);
}

impl Driver {
    pub fn new(settings: Settings, renderer: Arc<Renderer>) -> Self {
        let devices = settings
            .devices
            .iter()
            .map(|path| fresh_device(&settings, path.to_string_lossy().into_owned()))
            .collect();
        let log = settings.log.as_ref().map(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap_or_else(|e| panic!("FAKE_V4L2_LOG {}: {e}", p.display()))
        });
        Self {
            settings,
            epoch: Instant::now(),
            devices,
            handles: HashMap::new(),
            renderer,
            log,
        }
    }

    /// A line in the log that belongs to no one device.
    pub fn note(&mut self, what: std::fmt::Arguments) {
        if let Some(log) = &mut self.log {
            let ms = self.epoch.elapsed().as_millis();
            let _ = writeln!(log, "{ms} - {what}");
        }
    }

    fn log(&mut self, device: usize, what: std::fmt::Arguments) {
        if let Some(log) = &mut self.log {
            let ms = self.epoch.elapsed().as_millis();
            let _ = writeln!(log, "{ms} {} {what}", self.devices[device].path);
        }
    }

    /// Open device number `device`; the file descriptor is a memfd that holds the buffers.
    pub fn open(&mut self, device: usize, cloexec: bool) -> Result<c_int, Errno> {
        let now = Instant::now();
        let dev = &mut self.devices[device];
        if let Some(since) = dev.gone_since {
            match self.settings.gone_for {
                Some(gone_for) if now >= since + gone_for => {
                    dev.gone_since = None;
                    self.log(device, format_args!("back"));
                }
                _ => {
                    self.log(device, format_args!("open ENOENT"));
                    return Err(ENOENT);
                }
            }
        }
        let flags = if cloexec { libc::MFD_CLOEXEC } else { 0 };
        // SAFETY: a NUL-terminated name and valid flags.
        let fd = unsafe { libc::memfd_create(c"facegate-fake-v4l2".as_ptr(), flags) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(EINVAL));
        }
        let generation = self.devices[device].generation;
        self.handles.insert(
            fd,
            Handle {
                device,
                generation,
                buffers: Vec::new(),
                queued: VecDeque::new(),
                buffer_len: 0,
                stream: None,
            },
        );
        self.log(device, format_args!("open fd={fd}"));
        Ok(fd)
    }

    pub fn close(&mut self, fd: c_int) {
        if let Some(h) = self.handles.remove(&fd) {
            let dev = &mut self.devices[h.device];
            if dev.owner == Some(fd) {
                dev.owner = None;
            }
            self.log(h.device, format_args!("close fd={fd}"));
        }
    }

    /// The handle of `fd` when its device is still there.
    fn live(&self, fd: c_int) -> Result<usize, Errno> {
        let h = self.handles.get(&fd).ok_or(EINVAL)?;
        let dev = &self.devices[h.device];
        if dev.generation != h.generation || dev.gone_since.is_some() {
            return Err(ENODEV);
        }
        Ok(h.device)
    }

    /// # Safety
    /// `arg` is what the caller passed with `request`: null or pointing at that request's
    /// structure.
    pub unsafe fn ioctl(&mut self, fd: c_int, request: u32, arg: *mut c_void) -> Result<(), Errno> {
        let device = self.live(fd)?;
        if arg.is_null() {
            return Err(EFAULT);
        }
        let r = |code: _IOC_TYPE| code as u32;
        match request {
            x if x == r(VIDIOC_QUERYCAP) => {
                self.query_caps(device, &mut *arg.cast());
                Ok(())
            }
            x if x == r(VIDIOC_ENUM_FMT) => self.enum_format(&mut *arg.cast()),
            x if x == r(VIDIOC_ENUM_FRAMESIZES) => self.enum_sizes(&mut *arg.cast()),
            x if x == r(VIDIOC_ENUM_FRAMEINTERVALS) => self.enum_intervals(&mut *arg.cast()),
            x if x == r(VIDIOC_G_FMT) => self.get_format(device, &mut *arg.cast()),
            x if x == r(VIDIOC_S_FMT) => self.set_format(device, &mut *arg.cast()),
            x if x == r(VIDIOC_G_PARM) => self.get_params(device, &mut *arg.cast()),
            x if x == r(VIDIOC_S_PARM) => self.set_params(fd, device, &mut *arg.cast()),
            x if x == r(VIDIOC_REQBUFS) => self.request_buffers(fd, device, &mut *arg.cast()),
            x if x == r(VIDIOC_QUERYBUF) => self.query_buffer(fd, &mut *arg.cast()),
            x if x == r(VIDIOC_QBUF) => self.queue(fd, &mut *arg.cast()),
            x if x == r(VIDIOC_DQBUF) => self.dequeue(fd, device, &mut *arg.cast()),
            x if x == r(VIDIOC_STREAMON) => self.stream_on(fd, device, *arg.cast::<u32>()),
            x if x == r(VIDIOC_STREAMOFF) => self.stream_off(fd, device, *arg.cast::<u32>()),
            _ => Err(ENOTTY),
        }
    }

    fn query_caps(&self, device: usize, caps: &mut v4l2_capability) {
        copy_text(&mut caps.driver, "facegate-fake");
        copy_text(&mut caps.card, "facegate fake camera");
        copy_text(&mut caps.bus_info, &format!("platform:fake-v4l2-{device}"));
        caps.version = (6 << 16) | (1 << 8);
        caps.device_caps = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING;
        caps.capabilities = caps.device_caps | V4L2_CAP_DEVICE_CAPS;
        caps.reserved = [0; 3];
    }

    fn enum_format(&self, desc: &mut v4l2_fmtdesc) -> Result<(), Errno> {
        if desc.type_ != CAPTURE {
            return Err(EINVAL);
        }
        let format = *self
            .settings
            .formats
            .get(desc.index as usize)
            .ok_or(EINVAL)?;
        desc.flags = if format.compressed() {
            V4L2_FMT_FLAG_COMPRESSED
        } else {
            0
        };
        copy_text(&mut desc.description, format.description());
        desc.pixelformat = format.fourcc();
        desc.mbus_code = 0;
        Ok(())
    }

    fn offered(&self, fourcc: u32) -> Result<PixelFormat, Errno> {
        PixelFormat::from_fourcc(fourcc)
            .filter(|f| self.settings.formats.contains(f))
            .ok_or(EINVAL)
    }

    fn enum_sizes(&self, e: &mut v4l2_frmsizeenum) -> Result<(), Errno> {
        self.offered(e.pixel_format)?;
        let (width, height) = *self.settings.sizes.get(e.index as usize).ok_or(EINVAL)?;
        e.type_ = v4l2_frmsizetypes_V4L2_FRMSIZE_TYPE_DISCRETE;
        e.__bindgen_anon_1.discrete = v4l2_frmsize_discrete { width, height };
        Ok(())
    }

    fn enum_intervals(&self, e: &mut v4l2_frmivalenum) -> Result<(), Errno> {
        self.offered(e.pixel_format)?;
        if !self.settings.sizes.contains(&(e.width, e.height)) {
            return Err(EINVAL);
        }
        let fps = *self.settings.rates().get(e.index as usize).ok_or(EINVAL)?;
        e.type_ = v4l2_frmivaltypes_V4L2_FRMIVAL_TYPE_DISCRETE;
        e.__bindgen_anon_1.discrete = v4l2_fract {
            numerator: 1,
            denominator: fps,
        };
        Ok(())
    }

    fn fill_pix(pix: &mut v4l2_pix_format, format: PixelFormat, width: u32, height: u32) {
        pix.width = width;
        pix.height = height;
        pix.pixelformat = format.fourcc();
        pix.field = v4l2_field_V4L2_FIELD_NONE;
        pix.bytesperline = format.bytes_per_line(width);
        pix.sizeimage = format.size_image(width, height);
        pix.colorspace = match format {
            PixelFormat::Mjpeg => v4l2_colorspace_V4L2_COLORSPACE_JPEG,
            PixelFormat::Yuyv => v4l2_colorspace_V4L2_COLORSPACE_SRGB,
        };
        pix.priv_ = 0;
        pix.flags = 0;
    }

    unsafe fn get_format(&self, device: usize, f: &mut v4l2_format) -> Result<(), Errno> {
        if f.type_ != CAPTURE {
            return Err(EINVAL);
        }
        let d = &self.devices[device];
        f.fmt = std::mem::zeroed();
        Self::fill_pix(&mut f.fmt.pix, d.format, d.width, d.height);
        Ok(())
    }

    /// The driver picks an offered format (the current one when the asked one is not
    /// offered) and the nearest offered size, or keeps its size when told to ignore the
    /// request, and answers with what it chose.
    unsafe fn set_format(&mut self, device: usize, f: &mut v4l2_format) -> Result<(), Errno> {
        if f.type_ != CAPTURE {
            return Err(EINVAL);
        }
        let d = &self.devices[device];
        // uvcvideo: no format change once buffers are allocated, by this handle or another.
        if d.owner.is_some() {
            return Err(EBUSY);
        }
        let asked = f.fmt.pix;
        let format = self.offered(asked.pixelformat).unwrap_or(d.format);
        let (width, height) = if self.settings.ignore_size {
            (d.width, d.height)
        } else {
            nearest(&self.settings.sizes, asked.width, asked.height)
        };
        f.fmt = std::mem::zeroed();
        Self::fill_pix(&mut f.fmt.pix, format, width, height);
        let d = &mut self.devices[device];
        d.format = format;
        d.width = width;
        d.height = height;
        let asked_fourcc = String::from_utf8_lossy(&asked.pixelformat.to_le_bytes()).into_owned();
        self.log(
            device,
            format_args!(
                "S_FMT {asked_fourcc} {}x{} -> {} {width}x{height}",
                asked.width,
                asked.height,
                format.name()
            ),
        );
        Ok(())
    }

    fn streaming(&self, fd: c_int) -> bool {
        self.handles.get(&fd).is_some_and(|h| h.stream.is_some())
    }

    unsafe fn get_params(&self, device: usize, p: &mut v4l2_streamparm) -> Result<(), Errno> {
        if p.type_ != CAPTURE {
            return Err(EINVAL);
        }
        p.parm = std::mem::zeroed();
        p.parm.capture.capability = V4L2_CAP_TIMEPERFRAME;
        p.parm.capture.timeperframe = v4l2_fract {
            numerator: 1,
            denominator: self.devices[device].fps,
        };
        Ok(())
    }

    /// The offered rate nearest to the one asked for; `EBUSY` while streaming, as uvcvideo.
    unsafe fn set_params(
        &mut self,
        fd: c_int,
        device: usize,
        p: &mut v4l2_streamparm,
    ) -> Result<(), Errno> {
        if p.type_ != CAPTURE {
            return Err(EINVAL);
        }
        if self.streaming(fd) {
            return Err(EBUSY);
        }
        let t = p.parm.capture.timeperframe;
        if t.numerator != 0 && t.denominator != 0 {
            let asked = f64::from(t.denominator) / f64::from(t.numerator);
            let fps = self
                .settings
                .rates()
                .into_iter()
                .min_by(|a, b| {
                    (f64::from(*a) - asked)
                        .abs()
                        .total_cmp(&(f64::from(*b) - asked).abs())
                })
                .unwrap_or(self.settings.fps);
            self.devices[device].fps = fps;
            self.log(device, format_args!("S_PARM {asked:.2} fps -> {fps}"));
        }
        self.get_params(device, p)
    }

    fn request_buffers(
        &mut self,
        fd: c_int,
        device: usize,
        req: &mut v4l2_requestbuffers,
    ) -> Result<(), Errno> {
        if req.type_ != CAPTURE || req.memory != MMAP {
            return Err(EINVAL);
        }
        if self.streaming(fd) {
            return Err(EBUSY);
        }
        let d = &self.devices[device];
        if d.owner.is_some_and(|owner| owner != fd) {
            return Err(EBUSY);
        }
        let count = if req.count == 0 {
            0
        } else {
            req.count.clamp(2, MAX_BUFFERS)
        };
        let buffer_len = page_round(d.format.size_image(d.width, d.height));
        // SAFETY: fd is this handle's memfd.
        if unsafe { libc::ftruncate64(fd, i64::from(count) * i64::from(buffer_len)) } != 0 {
            return Err(libc::ENOMEM);
        }
        let h = self.handles.get_mut(&fd).ok_or(EINVAL)?;
        h.buffers = vec![Buffer::default(); count as usize];
        h.queued.clear();
        h.buffer_len = buffer_len;
        self.devices[device].owner = (count > 0).then_some(fd);
        req.count = count;
        req.capabilities = V4L2_BUF_CAP_SUPPORTS_MMAP;
        self.log(
            device,
            format_args!("REQBUFS {count} of {buffer_len} bytes"),
        );
        Ok(())
    }

    fn describe(h: &Handle, index: u32, b: &mut v4l2_buffer) {
        let buffer = h.buffers[index as usize];
        b.length = h.buffer_len;
        b.m.offset = index * h.buffer_len;
        let mut flags = V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC;
        if buffer.mapped {
            flags |= V4L2_BUF_FLAG_MAPPED;
        }
        if buffer.queued {
            flags |= V4L2_BUF_FLAG_QUEUED;
        }
        b.flags = flags;
    }

    fn query_buffer(&self, fd: c_int, b: &mut v4l2_buffer) -> Result<(), Errno> {
        let h = &self.handles[&fd];
        if b.type_ != CAPTURE || b.memory != MMAP || b.index as usize >= h.buffers.len() {
            return Err(EINVAL);
        }
        Self::describe(h, b.index, b);
        Ok(())
    }

    fn queue(&mut self, fd: c_int, b: &mut v4l2_buffer) -> Result<(), Errno> {
        let h = self.handles.get_mut(&fd).ok_or(EINVAL)?;
        let index = b.index;
        if b.type_ != CAPTURE || b.memory != MMAP || index as usize >= h.buffers.len() {
            return Err(EINVAL);
        }
        if h.buffers[index as usize].queued {
            return Err(EINVAL);
        }
        h.buffers[index as usize].queued = true;
        h.queued.push_back((index, Instant::now()));
        Self::describe(h, index, b);
        Ok(())
    }

    fn stalled(&self, stream: &Stream) -> bool {
        self.settings
            .stall_after
            .is_some_and(|n| stream.produced >= n)
    }

    /// Let the camera run until `now`: each frame due fills the oldest queued buffer, or is
    /// dropped when the application has none queued. Returns an errno when a buffer cannot
    /// be written.
    fn advance(&mut self, fd: c_int, device: usize, now: Instant) -> Result<(), Errno> {
        let stall_after = self.settings.stall_after;
        let h = self.handles.get_mut(&fd).ok_or(EINVAL)?;
        let Some(stream) = h.stream.as_mut() else {
            return Ok(());
        };
        let mut stalled_now = false;
        while stream.due(stream.next_sequence) <= now
            && stall_after.is_none_or(|n| stream.produced < n)
        {
            let sequence = stream.next_sequence;
            stream.next_sequence += 1;
            let due = stream.due(sequence);
            let index = match h.queued.front() {
                Some(&(index, queued_at)) if queued_at <= due => index,
                _ => continue,
            };
            h.queued.pop_front();
            let frame = &stream.frames[(sequence % stream.frames.len() as u64) as usize];
            let used = frame.len().min(h.buffer_len as usize);
            // SAFETY: the memfd is at least buffers × buffer_len long; `used` ≤ buffer_len.
            let written = unsafe {
                libc::pwrite64(
                    fd,
                    frame.as_ptr().cast(),
                    used,
                    i64::from(index) * i64::from(h.buffer_len),
                )
            };
            if written != used as isize {
                return Err(libc::EIO);
            }
            stream.done.push_back(Filled {
                index,
                sequence,
                bytes_used: used as u32,
                at: due,
            });
            stream.produced += 1;
            stalled_now = stall_after == Some(stream.produced);
        }
        if stalled_now {
            self.log(device, format_args!("stalled"));
        }
        Ok(())
    }

    fn dequeue(&mut self, fd: c_int, device: usize, b: &mut v4l2_buffer) -> Result<(), Errno> {
        if b.type_ != CAPTURE || b.memory != MMAP {
            return Err(EINVAL);
        }
        let now = Instant::now();
        if self.handles[&fd].stream.is_none() {
            return Err(EINVAL);
        }
        self.advance(fd, device, now)?;
        let h = self.handles.get_mut(&fd).ok_or(EINVAL)?;
        let stream = h.stream.as_mut().expect("streaming");
        let filled = stream.done.pop_front().ok_or(EAGAIN)?;
        h.buffers[filled.index as usize].queued = false;
        Self::describe(h, filled.index, b);
        b.index = filled.index;
        b.bytesused = filled.bytes_used;
        b.flags |= V4L2_BUF_FLAG_DONE;
        b.field = v4l2_field_V4L2_FIELD_NONE;
        b.sequence = filled.sequence as u32;
        // The monotonic clock at the moment the frame was due.
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec to fill.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let monotonic = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
        let at = monotonic.saturating_sub(now.saturating_duration_since(filled.at));
        b.timestamp.tv_sec = at.as_secs() as _;
        b.timestamp.tv_usec = at.subsec_micros() as _;
        self.log(
            device,
            format_args!(
                "DQBUF seq={} buf={} bytesused={}",
                filled.sequence, filled.index, filled.bytes_used
            ),
        );
        let d = &mut self.devices[device];
        d.delivered += 1;
        if d.generation == 0 && self.settings.gone_after == Some(d.delivered) {
            // Unplugged: every handle is dead, and what comes back is a fresh device.
            let path = d.path.clone();
            *d = Device {
                generation: 1,
                gone_since: Some(now),
                ..fresh_device(&self.settings, path)
            };
            self.log(device, format_args!("gone"));
        }
        Ok(())
    }

    /// The format a handle's stream will have, so that its frames can be rendered before
    /// `STREAMON`, outside the driver's lock.
    pub fn stream_format(&self, fd: c_int) -> Option<(PixelFormat, u32, u32)> {
        let d = &self.devices[self.handles.get(&fd)?.device];
        Some((d.format, d.width, d.height))
    }

    fn stream_on(&mut self, fd: c_int, device: usize, typ: u32) -> Result<(), Errno> {
        if typ != CAPTURE {
            return Err(EINVAL);
        }
        if self.handles[&fd].buffers.is_empty() {
            return Err(EINVAL);
        }
        if self.handles[&fd].stream.is_some() {
            return Ok(());
        }
        let d = &self.devices[device];
        let (format, width, height, fps) = (d.format, d.width, d.height, d.fps);
        let frames = self.renderer.frames(format, width, height);
        let h = self.handles.get_mut(&fd).ok_or(EINVAL)?;
        h.stream = Some(Stream {
            started: Instant::now(),
            fps,
            next_sequence: 0,
            produced: 0,
            frames,
            done: VecDeque::new(),
        });
        self.log(
            device,
            format_args!("STREAMON {} {width}x{height} at {fps} fps", format.name()),
        );
        Ok(())
    }

    fn stream_off(&mut self, fd: c_int, device: usize, typ: u32) -> Result<(), Errno> {
        if typ != CAPTURE {
            return Err(EINVAL);
        }
        let h = self.handles.get_mut(&fd).ok_or(EINVAL)?;
        // Every buffer goes back to the application, dequeued.
        h.queued.clear();
        h.buffers.iter_mut().for_each(|b| b.queued = false);
        if h.stream.take().is_some() {
            self.log(device, format_args!("STREAMOFF"));
        }
        Ok(())
    }

    /// Where `mmap(length, offset)` of `fd` maps: the same offset of the memfd, when it is a
    /// buffer's start and the length fits it.
    pub fn mmap(&mut self, fd: c_int, length: usize, offset: i64) -> Result<(), Errno> {
        let device = self.live(fd)?;
        let h = self.handles.get_mut(&fd).ok_or(EINVAL)?;
        if h.buffer_len == 0 || offset < 0 || offset % i64::from(h.buffer_len) != 0 {
            return Err(EINVAL);
        }
        let index = (offset / i64::from(h.buffer_len)) as usize;
        if index >= h.buffers.len() || length > h.buffer_len as usize {
            return Err(EINVAL);
        }
        h.buffers[index].mapped = true;
        self.log(device, format_args!("mmap buf={index}"));
        Ok(())
    }

    pub fn poll(&mut self, fd: c_int, now: Instant) -> Readiness {
        const ERR: i16 = libc::POLLERR | libc::POLLHUP;
        let Ok(device) = self.live(fd) else {
            return Readiness::Ready(ERR);
        };
        if self.handles[&fd].stream.is_none() {
            // videobuf2: nothing to wait for on a queue that is not streaming.
            return Readiness::Ready(libc::POLLERR);
        }
        if self.advance(fd, device, now).is_err() {
            return Readiness::Ready(libc::POLLERR);
        }
        let h = &self.handles[&fd];
        let stream = h.stream.as_ref().expect("streaming");
        if !stream.done.is_empty() {
            Readiness::Ready(libc::POLLIN | libc::POLLRDNORM)
        } else if h.queued.is_empty() || self.stalled(stream) {
            Readiness::Wait(None)
        } else {
            Readiness::Wait(Some(stream.due(stream.next_sequence)))
        }
    }
}

/// The offered size nearest to the one asked for (by area, then by width).
fn nearest(sizes: &[(u32, u32)], width: u32, height: u32) -> (u32, u32) {
    let area = u64::from(width) * u64::from(height);
    *sizes
        .iter()
        .min_by_key(|(w, h)| {
            (
                (u64::from(*w) * u64::from(*h)).abs_diff(area),
                w.abs_diff(width),
            )
        })
        .expect("at least one size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_offered_size_is_chosen() {
        let sizes = [(1280, 720), (640, 480), (320, 240)];
        assert_eq!(nearest(&sizes, 1280, 720), (1280, 720));
        assert_eq!(nearest(&sizes, 800, 600), (640, 480));
        assert_eq!(nearest(&sizes, 1920, 1080), (1280, 720));
        assert_eq!(nearest(&sizes, 1, 1), (320, 240));
    }
}
