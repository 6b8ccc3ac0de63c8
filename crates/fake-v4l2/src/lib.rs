//! A V4L2 capture device in userspace, for tests: built as a shared object and loaded with
//! `LD_PRELOAD` into `facegate`, it answers the C library calls the `v4l` crate makes for the
//! configured device paths (`open`, the `ioctl`s — which `v4l` issues through `syscall` —,
//! `mmap`, `munmap`, `poll`, `select`, `read`, `close`) and passes every other call to the C
//! library untouched. The capture code under test is the real one: it cannot tell the fake
//! from a driver. What the device offers and how it misbehaves is set by environment
//! variables ([`settings`]).
//!
//! Each handle's file descriptor is a real memfd holding its buffers, so `mmap` maps real
//! shared memory and the kernel keeps descriptors unique; the fake writes each frame into its
//! buffer with `pwrite` at `DQBUF`.
//!
//! Calls on other descriptors and paths take only atomic loads and a path comparison before
//! going on to the C library: the fake's own lock is never taken on them, so the allocator,
//! the fake's own file reads and its log cannot deadlock against it.

pub mod driver;
pub mod format;
pub mod frames;
pub mod settings;

use std::ffi::{c_char, c_int, c_long, c_ulong, c_void, CStr};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use driver::{Driver, Readiness};
use frames::Renderer;
use settings::Settings;

/// The address of the C library's own `name` (the next definition after this object's).
macro_rules! real {
    ($name:literal as $ty:ty) => {{
        static ADDRESS: AtomicUsize = AtomicUsize::new(0);
        let mut address = ADDRESS.load(Ordering::Relaxed);
        if address == 0 {
            // SAFETY: a NUL-terminated symbol name; RTLD_NEXT is a valid pseudo-handle.
            address = unsafe { libc::dlsym(libc::RTLD_NEXT, concat!($name, "\0").as_ptr().cast()) }
                as usize;
            assert!(address != 0, concat!("fake-v4l2: no C library ", $name));
            ADDRESS.store(address, Ordering::Relaxed);
        }
        // SAFETY: the symbol has the C library's signature, which `$ty` spells.
        unsafe { std::mem::transmute::<usize, $ty>(address) }
    }};
}

const SLOTS: usize = 64;
/// The open fake descriptors (-1: free slot), read without a lock on every intercepted call.
static FAKE_FDS: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];
/// The addresses of the buffer mappings `mmap` handed out (0: free slot), so that `munmap`
/// can log how many are left. More than 64 at once is a leak the log would show anyway.
static MAPPED: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];

static SETTINGS: OnceLock<Settings> = OnceLock::new();
static RENDERER: OnceLock<Arc<Renderer>> = OnceLock::new();
static DRIVER: OnceLock<Mutex<Driver>> = OnceLock::new();

fn settings() -> &'static Settings {
    SETTINGS.get_or_init(Settings::from_env)
}

fn renderer() -> &'static Arc<Renderer> {
    RENDERER.get_or_init(|| {
        let s = settings();
        Arc::new(Renderer::new(s.frames.clone(), s.trailing_garbage))
    })
}

fn driver() -> MutexGuard<'static, Driver> {
    DRIVER
        .get_or_init(|| Mutex::new(Driver::new(settings().clone(), renderer().clone())))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn is_fake(fd: c_int) -> bool {
    fd >= 0
        && FAKE_FDS
            .iter()
            .any(|slot| slot.load(Ordering::Relaxed) == fd)
}

fn set_errno(errno: c_int) {
    // SAFETY: the calling thread's errno.
    unsafe { *libc::__errno_location() = errno };
}

/// The fake device `path` names, if it is one.
unsafe fn fake_device(path: *const c_char) -> Option<usize> {
    if path.is_null() {
        return None;
    }
    let path = CStr::from_ptr(path);
    settings().devices.iter().position(|d| d.as_c_str() == path)
}

fn open_fake(device: usize, flags: c_int) -> c_int {
    let fd = match driver().open(device, flags & libc::O_CLOEXEC != 0) {
        Ok(fd) => fd,
        Err(errno) => {
            set_errno(errno);
            return -1;
        }
    };
    if flags & libc::O_NONBLOCK != 0 {
        // SAFETY: fd is the memfd just created; a blocking DQBUF reads this flag back.
        unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
    }
    let registered = FAKE_FDS.iter().any(|slot| {
        slot.compare_exchange(-1, fd, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    });
    assert!(registered, "fake-v4l2: more than {SLOTS} open handles");
    fd
}

type OpenFn = unsafe extern "C" fn(*const c_char, c_int, ...) -> c_int;
type OpenAtFn = unsafe extern "C" fn(c_int, *const c_char, c_int, ...) -> c_int;

/// `open` and `open64`: the fake device's paths open a fake handle, the rest the C library's.
macro_rules! interpose_open {
    ($name:ident, $symbol:literal) => {
        /// # Safety
        /// The C library's function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            path: *const c_char,
            flags: c_int,
            mode: libc::mode_t,
        ) -> c_int {
            match fake_device(path) {
                Some(device) => open_fake(device, flags),
                None => real!($symbol as OpenFn)(path, flags, mode),
            }
        }
    };
}

/// `openat` and `openat64`, likewise (the fake paths are absolute: `dir` does not matter).
macro_rules! interpose_openat {
    ($name:ident, $symbol:literal) => {
        /// # Safety
        /// The C library's function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            dir: c_int,
            path: *const c_char,
            flags: c_int,
            mode: libc::mode_t,
        ) -> c_int {
            match fake_device(path) {
                Some(device) => open_fake(device, flags),
                None => real!($symbol as OpenAtFn)(dir, path, flags, mode),
            }
        }
    };
}

interpose_open!(open, "open");
interpose_open!(open64, "open64");
interpose_openat!(openat, "openat");
interpose_openat!(openat64, "openat64");

/// # Safety
/// The C library's `close`.
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if is_fake(fd) {
        driver().close(fd);
        for slot in &FAKE_FDS {
            let _ = slot.compare_exchange(fd, -1, Ordering::SeqCst, Ordering::SeqCst);
        }
    }
    real!("close" as unsafe extern "C" fn(c_int) -> c_int)(fd)
}

/// An ioctl on a fake descriptor. A blocking handle's `DQBUF` waits for its frame, as a
/// driver's does.
unsafe fn ioctl_fake(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int {
    // The kernel takes the request as an unsigned int.
    let request = request as u32;
    if request == v4l::v4l2::vidioc::VIDIOC_STREAMON as u32 {
        // Render the stream's frames first, without the driver's lock (see `Renderer`).
        let format = driver().stream_format(fd);
        if let Some((format, width, height)) = format {
            renderer().frames(format, width, height);
        }
    }
    loop {
        let result = driver().ioctl(fd, request, arg);
        match result {
            Ok(()) => return 0,
            Err(libc::EAGAIN) if libc::fcntl(fd, libc::F_GETFL) & libc::O_NONBLOCK == 0 => {
                let mut one = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                poll(&mut one, 1, -1);
            }
            Err(errno) => {
                set_errno(errno);
                return -1;
            }
        }
    }
}

/// # Safety
/// The C library's `ioctl`.
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int {
    if is_fake(fd) {
        return ioctl_fake(fd, request, arg);
    }
    real!("ioctl" as unsafe extern "C" fn(c_int, c_ulong, ...) -> c_int)(fd, request, arg)
}

/// The `v4l` crate issues its ioctls as `syscall(SYS_ioctl, …)`. Every other system call
/// goes on with six arguments, which is what the C library's `syscall` reads whatever the
/// caller passed (on x86_64 the sixth comes from the caller's stack, as it does there).
///
/// # Safety
/// The C library's `syscall`.
#[no_mangle]
pub unsafe extern "C" fn syscall(
    number: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    if number == libc::SYS_ioctl && is_fake(a1 as c_int) {
        return c_long::from(ioctl_fake(a1 as c_int, a2 as c_ulong, a3 as *mut c_void));
    }
    real!("syscall" as unsafe extern "C" fn(c_long, ...) -> c_long)(number, a1, a2, a3, a4, a5, a6)
}

/// A fake handle's buffer: mapped from its memfd once the driver agrees that `offset` and
/// `length` are a buffer's.
unsafe fn mmap_fake(
    map: impl FnOnce() -> *mut c_void,
    fd: c_int,
    length: usize,
    offset: i64,
) -> *mut c_void {
    if let Err(errno) = driver().mmap(fd, length, offset) {
        set_errno(errno);
        return libc::MAP_FAILED;
    }
    let mapped = map();
    if mapped != libc::MAP_FAILED {
        let _ = MAPPED.iter().any(|slot| {
            slot.compare_exchange(0, mapped as usize, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        });
    }
    mapped
}

/// `mmap` (offset `off_t`: 32 bits on armv7) and `mmap64` (offset `off64_t`).
macro_rules! interpose_mmap {
    ($name:ident, $symbol:literal, $offset:ty) => {
        /// # Safety
        /// The C library's function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            addr: *mut c_void,
            length: usize,
            prot: c_int,
            flags: c_int,
            fd: c_int,
            offset: $offset,
        ) -> *mut c_void {
            type MmapFn = unsafe extern "C" fn(
                *mut c_void,
                usize,
                c_int,
                c_int,
                c_int,
                $offset,
            ) -> *mut c_void;
            let real = real!($symbol as MmapFn);
            let map = || real(addr, length, prot, flags, fd, offset);
            if !is_fake(fd) {
                return map();
            }
            #[allow(clippy::useless_conversion)]
            mmap_fake(map, fd, length, i64::from(offset))
        }
    };
}

interpose_mmap!(mmap, "mmap", libc::off_t);
interpose_mmap!(mmap64, "mmap64", libc::off64_t);

/// Buffer mappings still held by the application (`FAKE_V4L2_LOG` shows the count as each
/// goes, so a test sees that reconnecting does not leak them).
///
/// # Safety
/// The C library's `munmap`.
#[no_mangle]
pub unsafe extern "C" fn munmap(addr: *mut c_void, length: usize) -> c_int {
    let was_buffer = addr as usize != 0
        && MAPPED.iter().any(|slot| {
            slot.compare_exchange(addr as usize, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        });
    let result = real!("munmap" as unsafe extern "C" fn(*mut c_void, usize) -> c_int)(addr, length);
    if was_buffer {
        let left = MAPPED
            .iter()
            .filter(|slot| slot.load(Ordering::SeqCst) != 0)
            .count();
        driver().note(format_args!("munmap ({left} buffers mapped)"));
    }
    result
}

type PollFn = unsafe extern "C" fn(*mut libc::pollfd, libc::nfds_t, c_int) -> c_int;

/// # Safety
/// The C library's `poll`.
#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut libc::pollfd, nfds: libc::nfds_t, timeout: c_int) -> c_int {
    let real_poll = real!("poll" as PollFn);
    if fds.is_null() || nfds == 0 {
        return real_poll(fds, nfds, timeout);
    }
    let all = std::slice::from_raw_parts_mut(fds, nfds as usize);
    if !all.iter().any(|p| is_fake(p.fd)) {
        return real_poll(fds, nfds, timeout);
    }
    let deadline = (timeout >= 0).then(|| Instant::now() + Duration::from_millis(timeout as u64));
    loop {
        let now = Instant::now();
        let mut ready = 0;
        let mut wake: Option<Instant> = None;
        let mut fake = Vec::new();
        for (i, p) in all.iter_mut().enumerate() {
            if !is_fake(p.fd) {
                continue;
            }
            p.revents = 0;
            match driver().poll(p.fd, now) {
                Readiness::Ready(revents) => {
                    // POLLERR and POLLHUP are reported whatever was asked, as by the kernel.
                    p.revents = revents & (p.events | libc::POLLERR | libc::POLLHUP);
                    ready += c_int::from(p.revents != 0);
                }
                Readiness::Wait(due) => {
                    if let Some(due) = due {
                        wake = Some(wake.map_or(due, |w| w.min(due)));
                    }
                }
            }
            fake.push((i, p.fd, p.revents));
        }
        let has_real = all.iter().any(|p| p.fd >= 0 && !is_fake(p.fd));
        if has_real {
            // The others are looked at without waiting, the fakes hidden (poll skips a
            // negative descriptor).
            for &(i, _, _) in &fake {
                all[i].fd = -1;
            }
            let n = real_poll(fds, nfds, 0);
            for &(i, fd, revents) in &fake {
                all[i].fd = fd;
                all[i].revents = revents;
            }
            if n < 0 {
                return n;
            }
            ready += n;
        }
        if ready > 0 {
            return ready;
        }
        if deadline.is_some_and(|d| now >= d) {
            return 0;
        }
        // Sleep until the next frame, the deadline, or a short while (a device coming back, a
        // real descriptor becoming ready).
        let mut until = now + Duration::from_millis(if has_real { 5 } else { 50 });
        if let Some(w) = wake {
            until = until.min(w);
        }
        if let Some(d) = deadline {
            until = until.min(d);
        }
        std::thread::sleep(until.saturating_duration_since(now));
    }
}

/// `select` on a set holding a fake descriptor goes through [`poll`]; other sets go on as
/// they are.
///
/// # Safety
/// The C library's `select`.
#[no_mangle]
pub unsafe extern "C" fn select(
    nfds: c_int,
    read: *mut libc::fd_set,
    write: *mut libc::fd_set,
    except: *mut libc::fd_set,
    timeout: *mut libc::timeval,
) -> c_int {
    type SelectFn = unsafe extern "C" fn(
        c_int,
        *mut libc::fd_set,
        *mut libc::fd_set,
        *mut libc::fd_set,
        *mut libc::timeval,
    ) -> c_int;
    let in_set = |set: *mut libc::fd_set, fd: c_int| !set.is_null() && libc::FD_ISSET(fd, set);
    let fds: Vec<c_int> = (0..nfds.clamp(0, libc::FD_SETSIZE as c_int))
        .filter(|&fd| in_set(read, fd) || in_set(write, fd) || in_set(except, fd))
        .collect();
    if !fds.iter().any(|&fd| is_fake(fd)) {
        return real!("select" as SelectFn)(nfds, read, write, except, timeout);
    }
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: (if in_set(read, fd) { libc::POLLIN } else { 0 })
                | (if in_set(write, fd) { libc::POLLOUT } else { 0 })
                | (if in_set(except, fd) { libc::POLLPRI } else { 0 }),
            revents: 0,
        })
        .collect();
    let ms = if timeout.is_null() {
        -1
    } else {
        ((*timeout).tv_sec * 1000 + (*timeout).tv_usec / 1000) as c_int
    };
    let n = poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, ms);
    if n < 0 {
        return n;
    }
    let mut count = 0;
    for (set, bits) in [
        (read, libc::POLLIN | libc::POLLERR | libc::POLLHUP),
        (write, libc::POLLOUT | libc::POLLERR),
        (except, libc::POLLPRI),
    ] {
        if set.is_null() {
            continue;
        }
        for p in &polled {
            if libc::FD_ISSET(p.fd, set) {
                if p.revents & bits != 0 {
                    count += 1;
                } else {
                    libc::FD_CLR(p.fd, set);
                }
            }
        }
    }
    count
}

/// The fake offers streaming I/O only (no `V4L2_CAP_READWRITE`): `read` is `EINVAL`, as on
/// a driver without it.
///
/// # Safety
/// The C library's `read`.
#[no_mangle]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, count: usize) -> isize {
    if is_fake(fd) {
        set_errno(libc::EINVAL);
        return -1;
    }
    real!("read" as unsafe extern "C" fn(c_int, *mut c_void, usize) -> isize)(fd, buf, count)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use v4l::io::traits::CaptureStream;
    use v4l::video::Capture;

    /// In this test binary the interposers are linked ahead of the C library, so the `v4l`
    /// crate's calls reach the fake as they do under `LD_PRELOAD` (here with the default
    /// settings: `/dev/video-fake0`, 15 fps, a grey picture).
    #[test]
    fn the_v4l_crate_streams_from_the_fake_oldest_frame_first_and_select_and_read_behave() {
        let dev = v4l::Device::with_path("/dev/video-fake0").unwrap();
        assert_eq!(dev.query_caps().unwrap().card, "facegate fake camera");
        let mut fmt = dev.format().unwrap();
        fmt.width = 640;
        fmt.height = 480;
        fmt.fourcc = v4l::FourCC::new(b"YUYV");
        let fmt = dev.set_format(&fmt).unwrap();
        assert_eq!((fmt.width, fmt.height, fmt.stride), (640, 480, 1280));
        let fd = dev.handle().fd();
        let mut stream =
            v4l::io::mmap::Stream::with_buffers(&dev, v4l::buffer::Type::VideoCapture, 4).unwrap();
        stream.set_timeout(Duration::from_secs(2));
        let mut sequences = Vec::new();
        for _ in 0..3 {
            let (buf, meta) = stream.next().unwrap();
            assert_eq!(meta.bytesused, 640 * 480 * 2);
            assert_eq!(&buf[..4], &[126, 128, 126, 128]);
            sequences.push(meta.sequence);
        }
        assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
        // A reader that falls behind: the three queued buffers take the next three frames,
        // the frames after them are dropped, and the oldest is handed out first.
        std::thread::sleep(Duration::from_millis(500));
        // SAFETY: a zeroed fd_set and a valid timeval, as select wants them.
        unsafe {
            let mut readable: libc::fd_set = std::mem::zeroed();
            libc::FD_SET(fd, &mut readable);
            let mut timeout = libc::timeval {
                tv_sec: 1,
                tv_usec: 0,
            };
            let n = super::select(
                fd + 1,
                &mut readable,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut timeout,
            );
            assert_eq!(n, 1);
            assert!(libc::FD_ISSET(fd, &readable));
            let mut byte = 0u8;
            assert_eq!(super::read(fd, (&mut byte as *mut u8).cast(), 1), -1);
            assert_eq!(*libc::__errno_location(), libc::EINVAL);
        }
        for _ in 0..4 {
            sequences.push(stream.next().unwrap().1.sequence);
        }
        let last = sequences[2];
        assert_eq!(sequences[3..6], [last + 1, last + 2, last + 3]);
        assert!(
            sequences[6] > last + 4,
            "frames were dropped: {sequences:?}"
        );
    }
}
