//! The V4L2 path of `facegate serve` and `facegate doctor` — the real capture code of the `v4l`
//! crate, mmap buffers, poll with its timeout, reopening — against the userspace fake camera
//! of `crates/fake-v4l2`, loaded with `LD_PRELOAD` (these machines have no /dev/video*, no
//! vivid, no v4l2loopback and no CUSE). The fake's log (`FAKE_V4L2_LOG`) says what the device
//! saw; `/health`, the MQTT events and the notify socket say what the daemon did.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::broker::{Broker, Subscriber};
use common::cameras::{enrol_obama, health, scene_folder, wait_health};
use common::server::{Options, Server};
use serde_json::Value;

const DEVICE: &str = "/dev/video-fake0";

/// The fake camera library, built next to the `facegate` binary under test, and not older
/// than its sources (nothing depends on it, so `cargo test` alone does not rebuild it).
fn fake_library() -> PathBuf {
    let lib = Path::new(env!("CARGO_BIN_EXE_facegate")).with_file_name("libfacegate_fake_v4l2.so");
    let hint = "`make test` builds it (cargo build --release -p facegate-fake-v4l2)";
    let built = std::fs::metadata(&lib)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} is missing: {hint}", lib.display()));
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/fake-v4l2/src");
    for source in std::fs::read_dir(&sources).unwrap() {
        let changed = source.unwrap().metadata().unwrap().modified().unwrap();
        assert!(
            changed <= built,
            "{} is older than its sources: {hint}",
            lib.display()
        );
    }
    lib
}

/// The environment that puts the fake camera(s) `devices` (comma-separated) under the
/// process, showing the pictures of `frames`, logging to `log`, plus `extra` settings.
fn fake_env(
    devices: &str,
    frames: &Path,
    log: &Path,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "LD_PRELOAD".to_string(),
            fake_library().display().to_string(),
        ),
        ("FAKE_V4L2_DEVICES".into(), devices.into()),
        ("FAKE_V4L2_FRAMES".into(), frames.display().to_string()),
        ("FAKE_V4L2_FPS".into(), "10".into()),
        ("FAKE_V4L2_LOG".into(), log.display().to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// A `[[cameras]]` table for a V4L2 camera.
fn v4l2_camera(name: &str, device: &str, format: &str, size: (u32, u32)) -> String {
    format!(
        "[[cameras]]\nname = \"{name}\"\nsource = \"v4l2\"\ndevice = \"{device}\"\n\
         format = \"{format}\"\nwidth = {}\nheight = {}\nfps = 10.0\ncollection = \"staff\"\n\
         hold_off_s = 60.0\n",
        size.0, size.1
    )
}

fn config(broker_port: Option<u16>, cameras: &str) -> String {
    let mqtt = broker_port
        .map(|port| {
            format!(
                "[mqtt]\nenabled = true\nport = {port}\ndevice_id = \"gate\"\nkeep_alive_s = 5\n"
            )
        })
        .unwrap_or_default();
    format!("[inference]\nembedder = \"dlib128\"\n{mqtt}{cameras}")
}

/// `facegate serve` without a broker, with `cameras` and the environment `env` (the fake).
fn serve(data: &Path, cameras: &str, env: Vec<(String, String)>) -> Server {
    Server::start_with(
        data,
        &Options {
            config: config(None, cameras),
            env,
            ..Options::default()
        },
    )
    .unwrap()
}

/// One line of the fake's log: milliseconds since it was loaded, and what happened.
#[derive(Debug, Clone)]
struct Logged {
    ms: u64,
    what: String,
}

fn fake_log(path: &Path) -> Vec<Logged> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (ms, rest) = line.split_once(' ')?;
            let (_device, what) = rest.split_once(' ')?;
            Some(Logged {
                ms: ms.parse().ok()?,
                what: what.to_string(),
            })
        })
        .collect()
}

fn cam<'a>(h: &'a Value, name: &str) -> &'a Value {
    h["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no camera {name} in {h:#}"))
}

#[test]
fn a_face_shown_by_a_v4l2_camera_is_matched_and_granted_and_health_shows_what_was_negotiated() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    enrol_obama(&data);
    let frames = scene_folder(dir.path(), &["obama2.jpg"], 12, 8);
    let log = dir.path().join("fake.log");
    let broker = Broker::start(&dir.path().join("broker"), false);
    let sub = Subscriber::start(broker.port(), "test-sub", "facegate/#", false);
    let camera = v4l2_camera("front", DEVICE, "mjpeg", (1280, 720)) + "door = \"main\"\n";
    let mut s = Server::start_with(
        &data,
        &Options {
            config: config(Some(broker.port()), &camera),
            env: fake_env(DEVICE, &frames, &log, &[]),
            ..Options::default()
        },
    )
    .unwrap();
    sub.wait_for(Duration::from_secs(30), "a grant at the main door", |m| {
        m.iter().any(|m| m.topic == "facegate/gate/main/access")
    });
    let h = health(&s);
    let front = cam(&h, "front");
    assert_eq!(front["state"], "streaming", "{front:#}");
    assert_eq!(front["errors"], 0, "{front:#}");
    assert_eq!(
        front["negotiated"],
        serde_json::json!({"format": "MJPG", "width": 1280, "height": 720, "fps": 10.0})
    );
    assert!(s.stop().success());
    let event = sub.on("facegate/gate/front/event")[0].json();
    assert_eq!(event["type"], "match", "{event:#}");
    assert_eq!(event["person_id"], "obama");
    assert!(
        event["similarity_score"].as_f64().unwrap() >= 0.7,
        "{event:#}"
    );
    let access = sub.on("facegate/gate/main/access")[0].json();
    assert_eq!(access["granted"], true, "{access:#}");
    assert_eq!(access["event_id"], event["event_id"]);
    // The frames came through the driver's buffers: MJPEG, each shorter than its buffer.
    let log = fake_log(&log);
    assert!(
        log.iter()
            .any(|l| l.what == "STREAMON MJPG 1280x720 at 10 fps"),
        "{log:#?}"
    );
    let used: Vec<u64> = log
        .iter()
        .filter_map(|l| l.what.split("bytesused=").nth(1)?.parse().ok())
        .collect();
    assert!(used.len() >= 2, "{log:#?}");
    assert!(used.iter().all(|&n| n > 0 && n < 1280 * 720 * 2));
    // Stopping returned every buffer and closed the device.
    assert!(
        log.iter().any(|l| l.what == "munmap (0 buffers mapped)"),
        "{log:#?}"
    );
    assert!(log.last().unwrap().what.starts_with("close"), "{log:#?}");
}

#[test]
fn a_driver_that_ignores_the_requested_size_is_followed_and_health_shows_the_size_it_chose() {
    let dir = tempfile::tempdir().unwrap();
    let frames = scene_folder(dir.path(), &["obama2.jpg"], 2, 0);
    let log = dir.path().join("fake.log");
    let s = serve(
        &dir.path().join("data"),
        &v4l2_camera("front", DEVICE, "yuyv", (1280, 720)),
        fake_env(
            DEVICE,
            &frames,
            &log,
            &[
                // It offers 1280x720 too, but keeps the size it has (the first).
                ("FAKE_V4L2_SIZES", "640x480,1280x720"),
                ("FAKE_V4L2_IGNORE_SIZE", "1"),
            ],
        ),
    );
    let h = wait_health(&s, Duration::from_secs(20), "processed frames", |h| {
        cam(h, "front")["processed"].as_u64().unwrap_or(0) >= 5
    });
    let front = cam(&h, "front");
    assert_eq!(
        front["negotiated"],
        serde_json::json!({"format": "YUYV", "width": 640, "height": 480, "fps": 10.0}),
        "{front:#}"
    );
    // The YUYV frames were decoded at the size the driver chose, not the one asked for.
    assert_eq!(front["errors"], 0, "{front:#}");
    let chose = "the camera chose another frame size";
    let stderr = s.wait_for_log(chose);
    assert!(stderr.contains(chose), "{stderr}");
    let log = fake_log(&log);
    assert!(
        log.iter()
            .any(|l| l.what == "S_FMT YUYV 1280x720 -> YUYV 640x480"),
        "{log:#?}"
    );
}

#[test]
fn yuyv_and_mjpeg_frames_of_the_same_pictures_find_the_same_face_and_person() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    enrol_obama(&data);
    let frames = scene_folder(dir.path(), &["obama2.jpg"], 12, 8);
    let log = dir.path().join("fake.log");
    let broker = Broker::start(&dir.path().join("broker"), false);
    let sub = Subscriber::start(broker.port(), "test-sub", "facegate/+/+/event", false);
    let cameras = v4l2_camera("mjpeg", "/dev/video-fake0", "mjpeg", (1280, 720))
        + &v4l2_camera("yuyv", "/dev/video-fake1", "yuyv", (1280, 720));
    let mut s = Server::start_with(
        &data,
        &Options {
            config: config(Some(broker.port()), &cameras),
            env: fake_env("/dev/video-fake0,/dev/video-fake1", &frames, &log, &[]),
            ..Options::default()
        },
    )
    .unwrap();
    sub.wait_for(Duration::from_secs(40), "an event from each camera", |m| {
        ["mjpeg", "yuyv"].iter().all(|c| {
            m.iter()
                .any(|m| m.topic == format!("facegate/gate/{c}/event"))
        })
    });
    assert!(s.stop().success());
    let mjpeg = sub.on("facegate/gate/mjpeg/event")[0].json();
    let yuyv = sub.on("facegate/gate/yuyv/event")[0].json();
    for e in [&mjpeg, &yuyv] {
        assert_eq!(e["type"], "match", "{e:#}");
        assert_eq!(e["person_id"], "obama", "{e:#}");
    }
    let score = |e: &Value| e["similarity_score"].as_f64().unwrap();
    assert!(
        (score(&mjpeg) - score(&yuyv)).abs() < 0.05,
        "MJPEG {} vs YUYV {}",
        score(&mjpeg),
        score(&yuyv)
    );
    for side in ["left", "top", "right", "bottom"] {
        let (a, b) = (
            mjpeg["box"][side].as_i64().unwrap(),
            yuyv["box"][side].as_i64().unwrap(),
        );
        assert!((a - b).abs() <= 8, "box {side}: MJPEG {a} vs YUYV {b}");
    }
    let log = fake_log(&log);
    assert!(
        log.iter()
            .any(|l| l.what == "STREAMON YUYV 1280x720 at 10 fps"),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.what.contains(&format!("bytesused={}", 1280 * 720 * 2))),
        "YUYV frames fill their buffers: {log:#?}"
    );
}

#[test]
fn mjpeg_frames_with_bytes_after_the_jpeg_end_marker_decode_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let frames = scene_folder(dir.path(), &["obama2.jpg"], 2, 0);
    let jpeg_len = std::fs::metadata(frames.join("000000.jpg")).unwrap().len();
    let log = dir.path().join("fake.log");
    let s = serve(
        &dir.path().join("data"),
        &v4l2_camera("front", DEVICE, "mjpeg", (1280, 720)),
        fake_env(
            DEVICE,
            &frames,
            &log,
            &[("FAKE_V4L2_TRAILING_GARBAGE", "3000")],
        ),
    );
    let h = wait_health(&s, Duration::from_secs(20), "processed frames", |h| {
        cam(h, "front")["processed"].as_u64().unwrap_or(0) >= 5
    });
    let front = cam(&h, "front");
    assert_eq!(front["errors"], 0, "{front:#}");
    assert_eq!(front["last_error"], Value::Null, "{front:#}");
    let log = fake_log(&log);
    let garbage = format!("bytesused={}", jpeg_len + 3000);
    assert!(
        log.iter().any(|l| l.what.ends_with(&garbage)),
        "{garbage}: {log:#?}"
    );
}

#[test]
fn a_camera_that_stops_delivering_is_noticed_within_the_dequeue_timeout_and_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let frames = scene_folder(dir.path(), &["obama2.jpg"], 2, 0);
    let log_path = dir.path().join("fake.log");
    let s = serve(
        &dir.path().join("data"),
        &v4l2_camera("front", DEVICE, "mjpeg", (1280, 720)),
        fake_env(
            DEVICE,
            &frames,
            &log_path,
            &[("FAKE_V4L2_STALL_AFTER", "5")],
        ),
    );
    let h = wait_health(&s, Duration::from_secs(30), "two reconnects", |h| {
        cam(h, "front")["reconnects"].as_u64().unwrap_or(0) >= 2
    });
    let front = cam(&h, "front");
    assert!(
        front["last_error"]
            .as_str()
            .unwrap()
            .contains("no frame within 2 s: the camera stopped delivering"),
        "{front:#}"
    );
    assert!(front["frames"].as_u64().unwrap() >= 10, "{front:#}");
    let log = fake_log(&log_path);
    let stalls: Vec<&Logged> = log.iter().filter(|l| l.what == "stalled").collect();
    assert!(stalls.len() >= 2, "{log:#?}");
    // The first two: a third stream may have stalled just now, not yet given up on.
    for stall in stalls.into_iter().take(2) {
        let after: Vec<&Logged> = log.iter().filter(|l| l.ms >= stall.ms).collect();
        let closed = after
            .iter()
            .find(|l| l.what.starts_with("close"))
            .unwrap_or_else(|| panic!("the stalled device was not closed: {log:#?}"));
        let reopened = after
            .iter()
            .find(|l| l.what.starts_with("open fd="))
            .unwrap_or_else(|| panic!("the stalled device was not reopened: {log:#?}"));
        // Given up at the 2 s dequeue timeout (not before, not long after), reopened after
        // the first backoff step (0.5 s).
        let noticed = closed.ms - stall.ms;
        assert!(
            (1900..3500).contains(&noticed),
            "closed {noticed} ms after the stall"
        );
        let waited = reopened.ms - closed.ms;
        assert!(
            (400..2000).contains(&waited),
            "reopened {waited} ms after closing"
        );
    }
}

#[test]
fn a_camera_that_disappears_is_reopened_with_growing_backoff_and_the_watchdog_is_petted_meanwhile()
{
    let dir = tempfile::tempdir().unwrap();
    let frames = scene_folder(dir.path(), &["obama2.jpg"], 2, 0);
    let log_path = dir.path().join("fake.log");
    let socket = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // Every datagram with when it came, from a thread that outlives the waits below.
    let pets: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let collector = {
        let pets = pets.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let until = Instant::now() + Duration::from_secs(90);
            while Instant::now() < until {
                if let Ok(n) = sock.recv(&mut buf) {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if msg.contains("WATCHDOG=1") {
                        pets.lock().unwrap().push(Instant::now());
                    }
                    if msg.contains("STOPPING=1") {
                        return;
                    }
                }
            }
        })
    };
    let mut env = fake_env(
        DEVICE,
        &frames,
        &log_path,
        &[
            ("FAKE_V4L2_GONE_AFTER", "10"),
            ("FAKE_V4L2_GONE_FOR_MS", "4000"),
        ],
    );
    env.push(("NOTIFY_SOCKET".into(), socket.display().to_string()));
    // A 2 s watchdog, petted every second while no camera thread has been silent for 2 s:
    // shorter than the longest backoff (4 s), so a capture thread that did not beat while it
    // waits to reopen would be seen.
    env.push(("WATCHDOG_USEC".into(), "2000000".into()));
    let mut s = serve(
        &dir.path().join("data"),
        &v4l2_camera("front", DEVICE, "mjpeg", (1280, 720)),
        env,
    );
    wait_health(&s, Duration::from_secs(20), "the device to vanish", |h| {
        cam(h, "front")["state"] == "reconnecting"
    });
    let gone_seen = Instant::now();
    let h = wait_health(
        &s,
        Duration::from_secs(30),
        "frames after the device returned",
        |h| {
            let c = cam(h, "front");
            c["reconnects"].as_u64().unwrap_or(0) >= 1
                && c["state"] == "streaming"
                && c["frames"].as_u64().unwrap_or(0) > 12
        },
    );
    let back_seen = Instant::now();
    let front = cam(&h, "front");
    assert!(
        front["errors"].as_u64().unwrap() >= 3,
        "ENODEV and failed opens: {front:#}"
    );
    // Some streaming after the return, so that pets missed before it would show as a gap.
    let frames = front["frames"].as_u64().unwrap();
    wait_health(&s, Duration::from_secs(10), "more frames", |h| {
        cam(h, "front")["frames"].as_u64().unwrap_or(0) >= frames + 15
    });
    assert!(s.stop().success());
    collector.join().unwrap();

    let log = fake_log(&log_path);
    let gone = log
        .iter()
        .position(|l| l.what == "gone")
        .expect("the device vanished");
    let back = log
        .iter()
        .position(|l| l.what == "back")
        .expect("the device came back");
    // From the close after ENODEV to each failed open to the open that worked, every wait is
    // about twice the one before (0.5 s, 1 s, 2 s, 4 s).
    let times: Vec<u64> = log[gone..=back + 1]
        .iter()
        .filter(|l| {
            l.what.starts_with("close") || l.what == "open ENOENT" || l.what.starts_with("open fd=")
        })
        .map(|l| l.ms)
        .collect();
    let waits: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(waits.len() >= 3, "{waits:?} from {log:#?}");
    assert!(
        (400..1000).contains(&waits[0]),
        "first retry after {} ms",
        waits[0]
    );
    for w in waits.windows(2) {
        assert!(w[1] * 10 >= w[0] * 17, "backoff does not grow: {waits:?}");
    }
    // The watchdog was petted all along: while the camera was away too.
    let pets = pets.lock().unwrap();
    let during = pets
        .iter()
        .filter(|&&t| t >= gone_seen && t <= back_seen)
        .count();
    assert!(
        during >= 2,
        "{during} pets in the {:?} the camera was away",
        back_seen - gone_seen
    );
    let longest = pets
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    // Pets come every second; a beat missed for the watchdog's 2 s would make a gap of 2 s
    // or more.
    assert!(
        longest < Duration::from_millis(1800),
        "{longest:?} between two pets"
    );
}

#[test]
fn doctor_lists_a_v4l2_devices_formats_sizes_and_rates_and_a_format_it_does_not_offer() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        config(None, &v4l2_camera("front", DEVICE, "yuyv", (1280, 720))),
    )
    .unwrap();
    let log = dir.path().join("fake.log");
    let out = common::facegate_command()
        .args(["--config", cfg.to_str().unwrap(), "doctor", "--data-dir"])
        .arg(dir.path().join("data"))
        .envs(fake_env(
            DEVICE,
            dir.path(),
            &log,
            &[
                ("FAKE_V4L2_FORMATS", "MJPG"),
                ("FAKE_V4L2_SIZES", "1920x1080,640x480"),
            ],
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "OK   camera /dev/video-fake0 (facegate fake camera): MJPG 1920x1080@10,5 640x480@10,5"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "FIX  configured camera front asks /dev/video-fake0 for YUYV, which it does not offer"
        ),
        "{text}"
    );
    // That is the one thing to fix (so the exit status is about it).
    let fixes: Vec<&str> = text.lines().filter(|l| l.starts_with("FIX")).collect();
    assert_eq!(fixes.len(), 1, "{text}");
    assert!(!out.status.success());
}
