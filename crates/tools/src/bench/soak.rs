//! `facegate bench soak [--minutes N]`: N minutes of mixed load on one `facegate serve`
//! process, on loopback only, to show what only time shows: memory growth, lost events, errors
//! and crashes while the broker comes and goes. Everything it starts it stops: its own
//! mosquitto on a free 127.0.0.1 port, the server (this executable) on 127.0.0.1:0 with a
//! temporary data folder, a replay camera, API clients and an MQTT subscriber.
//!
//! The run is bounded in time (N minutes of load, then at most a few minutes of shutdown and
//! draining, each step with its own limit) and in count (each client stops after a fixed
//! number of requests).

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde::Serialize;
use serde_json::{json, Value};

use super::{err, proc_status_kib, BenchError};
use crate::local_broker::LocalBroker;
use facegate_core::config::{CameraConfig, Config, LivenessMode, MqttConfig, SourceKind};
use facegate_core::engine::Engine;
use facegate_daemon::camera::scene;
use facegate_daemon::mqtt::outbox::Outbox;

const KEY: &str = "soak-bench-key";
const DEVICE: &str = "soak";
const COLLECTION: &str = "soak";
const CAMERA: &str = "soak-cam";
const DOOR: &str = "soak-door";
/// The person the camera knows, enrolled before the camera starts.
const ENROLLED: (&str, &str) = ("obama", "obama.jpg");
/// What the replay camera shows, in a loop: the enrolled person and strangers, alternately
/// (biden.jpg is one stranger, sample1.jpg a group of three).
const SCENE: [&str; 4] = ["obama2.jpg", "biden.jpg", "obama3.jpg", "sample1.jpg"];
const REPLAY_FPS: f32 = 5.0;
/// Photos the API clients enrol and search with.
const LOAD_PHOTOS: [&str; 7] = [
    "obama.jpg",
    "obama2.jpg",
    "obama3.jpg",
    "obama_partial_face.jpg",
    "biden.jpg",
    "32bit.png",
    // Three faces: searches and enrolments refused with ERR_MULTIPLE_FACES are part of the mix.
    "sample2.jpg",
];
const CLIENTS: usize = 3;
/// Pause between a client's requests: mixed load beside the camera, not a saturation test.
const CLIENT_PAUSE: Duration = Duration::from_millis(150);
const MAX_REQUESTS_PER_CLIENT: u64 = 50_000;
/// Persons a client keeps enrolled at most before it deletes instead of enrolling.
const MAX_OWN_PERSONS: usize = 40;
const OUTAGE_EVERY: Duration = Duration::from_secs(60);
const OUTAGE_FOR: Duration = Duration::from_secs(10);
/// The broker is up at least this long before the load ends, so the outbox can drain.
const UP_BEFORE_END: Duration = Duration::from_secs(20);
const SERVER_START_LIMIT: Duration = Duration::from_secs(180);
const SERVER_STOP_LIMIT: Duration = Duration::from_secs(60);
const DRAIN_LIMIT: Duration = Duration::from_secs(30);
const MAX_LISTED: usize = 20;
const MAX_LOG_GROUPS: usize = 100;

/// Requests to one endpoint, by answer ("200", "404 ERR_PERSON_NOT_FOUND", "transport: …").
#[derive(Debug, Clone, Serialize)]
pub struct EndpointCounts {
    pub endpoint: String,
    pub requests: u64,
    pub by_status: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HttpSummary {
    pub endpoints: Vec<EndpointCounts>,
    /// 5xx answers other than 503 ERR_BUSY (a full inference queue is an answer, not a fault).
    pub unexpected_5xx: u64,
    pub unexpected_5xx_examples: Vec<String>,
    pub transport_errors: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RssSummary {
    /// VmRSS once the server had started, before any load.
    pub start_mib: f64,
    /// The last sample before SIGTERM.
    pub end_mib: f64,
    /// The largest sample (one a second).
    pub peak_mib: f64,
    /// VmHWM just before SIGTERM: the peak the kernel saw, between samples too.
    pub hwm_mib: f64,
    /// One sample at each full minute of load.
    pub by_minute_mib: Vec<f64>,
    /// End minus the first minute's sample: growth once the models are warm (the start
    /// figure is before ONNX Runtime's first runs allocate).
    pub growth_after_first_minute_mib: Option<f64>,
    pub samples: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MqttSummary {
    pub outages: u32,
    pub broker_down_s: f64,
    pub broker_errors: Vec<String>,
    /// `/health` mqtt.outbox_depth, sampled each second.
    pub outbox_depth_max: u64,
    pub outbox_depth_before_stop: u64,
    /// Messages still in the outbox once the server had exited (sent at its next start).
    pub left_in_outbox: Option<usize>,
    pub outbox_dropped: u64,
    /// Messages the publisher set aside as undeliverable (when the server reports them).
    pub outbox_dead_letters: Option<u64>,
    pub connections: u64,
    pub acknowledged: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CameraSummary {
    pub state: String,
    pub frames: u64,
    pub processed: u64,
    pub dropped: u64,
    pub errors: u64,
    pub reconnects: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct EventSummary {
    /// How `produced` was counted.
    pub produced_by: String,
    pub produced: usize,
    /// `facegate_decisions_total` and `facegate_decisions_held_off_total` before SIGTERM
    /// (decisions after the last scrape are not in them).
    pub decisions_metric: Option<u64>,
    pub held_off_metric: Option<u64>,
    /// Distinct `event_id`s on `…/event`, and all messages there (duplicates included).
    pub received_events: usize,
    pub event_messages: u64,
    /// Distinct `event_id`s on `…/access`, and all messages there.
    pub received_access: usize,
    pub access_messages: u64,
    pub max_sequence: Option<u64>,
    /// Sequence numbers in 1..=max_sequence never received.
    pub sequence_gaps: u64,
    /// Produced but never received as an event / as an access message.
    pub lost_events: usize,
    pub lost_access: usize,
    pub lost_examples: Vec<String>,
    /// Received but not produced (should not exist).
    pub unexpected: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogGroup {
    pub level: String,
    pub count: u64,
    pub example: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LogSummary {
    pub lines: u64,
    pub warn: u64,
    pub error: u64,
    /// Lines that are not tracing records (a panic, a library printing on its own).
    pub other: u64,
    /// WARN, ERROR and other lines, grouped with their numbers masked, most frequent first.
    pub distinct: Vec<LogGroup>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerSummary {
    /// Set when the server exited during the load: when and how.
    pub died: Option<String>,
    /// How it ended after SIGTERM (or after the kill when it did not stop in time).
    pub exit: String,
    pub clean_exit: bool,
    pub stop_s: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SoakReport {
    pub minutes: u32,
    pub seconds: f64,
    pub embedder: String,
    pub clients: usize,
    pub server: ServerSummary,
    pub http: HttpSummary,
    pub rss: RssSummary,
    pub mqtt: MqttSummary,
    pub camera: CameraSummary,
    pub events: EventSummary,
    pub log: LogSummary,
    /// Why the run failed; empty when it passed.
    pub failures: Vec<String>,
    /// The work folder (server log, data, broker), kept when the run failed.
    pub kept_dir: Option<String>,
}

/// Run the soak: `photos` is the fixture folder, `exe` this executable.
pub fn bench_soak(
    config: &Config,
    exe: &Path,
    photos: &Path,
    minutes: u32,
) -> Result<SoakReport, BenchError> {
    let dir = std::env::temp_dir().join(format!("facegate-bench-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(err("work folder"))?;
    let result = run_soak(config, exe, photos, minutes.max(1), &dir);
    match result {
        Ok(mut report) => {
            if report.failures.is_empty() {
                let _ = std::fs::remove_dir_all(&dir);
            } else {
                report.kept_dir = Some(dir.display().to_string());
            }
            Ok(report)
        }
        Err(e) => Err(BenchError(format!(
            "{e} (work folder kept: {})",
            dir.display()
        ))),
    }
}

fn run_soak(
    config: &Config,
    exe: &Path,
    photos: &Path,
    minutes: u32,
    dir: &Path,
) -> Result<SoakReport, BenchError> {
    let frames = dir.join("frames");
    build_scene(config, photos, &frames)?;
    let data = dir.join("data");
    enrol_known_person(config, exe, photos, dir, &data)?;
    let mut broker = LocalBroker::start(&dir.join("broker"), 0, true).map_err(err("mosquitto"))?;
    let subscriber = Subscriber::start(broker.port)?;
    let serve = serve_config(config, &frames, broker.port);
    let config_path = write_config(&serve, &dir.join("serve.toml"))?;
    let mut server = ServerProcess::start(exe, &config_path, &data, &dir.join("server.log"))?;
    let load = LoadContext::new(&server.url, photos)?;
    let observed = drive(&mut server, &mut broker, load, minutes)?;
    let ended = stop_server(server, &observed.url);
    let produced: HashSet<String> = ended.stopped.log.decision_ids.iter().cloned().collect();
    subscriber.wait_for(&produced, DRAIN_LIMIT);
    let received = subscriber.stop();
    let left_in_outbox = outbox_left(&data.join("outbox"), &serve.mqtt);
    drop(broker);
    Ok(assemble(
        minutes,
        observed,
        ended,
        &produced,
        &received,
        left_in_outbox,
    ))
}

// ---------------------------------------------------------------- set-up

/// The replay folder: each scene photo's face for 2 s, then 1 s of empty hall (long enough
/// for the track to end, so every appearance is a new track and a new decision).
fn build_scene(config: &Config, photos: &Path, frames: &Path) -> Result<(), BenchError> {
    let mut engine_config = config.clone();
    engine_config.inference.threads = 1;
    engine_config.detector.min_face_px = CameraConfig::default().min_face_px;
    let mut engine = Engine::open(&engine_config).map_err(err("engine"))?;
    let empty = scene::empty_frame(1280, 720);
    let on = (REPLAY_FPS * 2.0) as usize;
    let off = REPLAY_FPS as usize;
    for photo in SCENE {
        let face = scene::photo_frame(&mut engine, &photos.join(photo), 220.0, 1280, 720)
            .map_err(err("scene photo"))?;
        scene::append_frames(frames, &[(&face, on), (&empty, off)])
            .map_err(err("replay frames"))?;
    }
    Ok(())
}

/// Enrol the person the camera knows through a first server run without camera or MQTT, so
/// the soak server's camera never looks into a missing collection (which it would log).
fn enrol_known_person(
    config: &Config,
    exe: &Path,
    photos: &Path,
    dir: &Path,
    data: &Path,
) -> Result<(), BenchError> {
    let mut plain = config.clone();
    plain.cameras.clear();
    plain.mqtt.enabled = false;
    let path = write_config(&plain, &dir.join("enrol.toml"))?;
    let server = ServerProcess::start(exe, &path, data, &dir.join("enrol.log"))?;
    let agent = agent(Duration::from_secs(120));
    let created = call(
        &agent,
        "POST",
        &format!("{}/collection", server.url),
        Some(&json!({"name": COLLECTION})),
    );
    if !matches!(created, Outcome::Status(200 | 409, _)) {
        return Err(BenchError(format!(
            "POST /collection answered {}",
            created.key()
        )));
    }
    let (id, photo) = ENROLLED;
    let enrolled = call(
        &agent,
        "PUT",
        &format!("{}/person", server.url),
        Some(&json!({
            "collection_name": COLLECTION,
            "person_id": id,
            "person_name": "Enrolled for the soak",
            "face_base_64": read_base64(&photos.join(photo))?,
        })),
    );
    if !matches!(enrolled, Outcome::Status(200, _)) {
        return Err(BenchError(format!(
            "enrolling {photo} answered {}",
            enrolled.key()
        )));
    }
    server.terminate(SERVER_STOP_LIMIT);
    Ok(())
}

/// The server's configuration: the caller's (embedder, detector…), with the API on loopback,
/// MQTT towards the soak's broker and the one replay camera.
fn serve_config(config: &Config, frames: &Path, broker_port: u16) -> Config {
    let mut c = config.clone();
    c.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    c.mqtt = MqttConfig {
        enabled: true,
        host: "127.0.0.1".into(),
        port: broker_port,
        device_id: DEVICE.into(),
        keep_alive_s: 5,
        ..MqttConfig::default()
    };
    c.cameras = vec![CameraConfig {
        name: CAMERA.into(),
        source: SourceKind::Replay,
        path: Some(frames.to_path_buf()),
        fps: REPLAY_FPS,
        replay_loop: true,
        collection: COLLECTION.into(),
        liveness: LivenessMode::Off,
        door: DOOR.into(),
        // Every appearance of the enrolled person is an event, not only the first in 10 s.
        hold_off_s: 0.0,
        ..CameraConfig::default()
    }];
    c
}

fn write_config(config: &Config, path: &Path) -> Result<PathBuf, BenchError> {
    let text = toml::to_string(config).map_err(err("config"))?;
    std::fs::write(path, text).map_err(err("config file"))?;
    Ok(path.to_owned())
}

fn read_base64(path: &Path) -> Result<String, BenchError> {
    use base64::Engine as _;
    let bytes = std::fs::read(path)
        .map_err(|e| BenchError(format!("cannot read {}: {e}", path.display())))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

// ---------------------------------------------------------------- the server process

/// A `facegate serve` child; its stderr (the log) is written to a file and tallied as it
/// comes, its stdout drained so it never blocks.
struct ServerProcess {
    child: Option<Child>,
    url: String,
    log: Arc<Mutex<LogTally>>,
    log_reader: Option<JoinHandle<()>>,
}

struct Stopped {
    exit: String,
    clean: bool,
    seconds: f64,
    log: LogTally,
}

impl ServerProcess {
    fn start(exe: &Path, config: &Path, data: &Path, log_path: &Path) -> Result<Self, BenchError> {
        let mut child = Command::new(exe)
            .arg("--config")
            .arg(config)
            .args(["serve", "--listen", "127.0.0.1:0", "--api-key", KEY])
            .arg("--data-dir")
            .arg(data)
            // Info level: the `decision` lines are how the events produced are counted.
            .env("FACEGATE_LOG", "info,ort=warn")
            .env_remove("FACEGATE_API_KEYS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(err("cannot start facegate serve"))?;
        let log = Arc::new(Mutex::new(LogTally::default()));
        let file = std::fs::File::create(log_path).map_err(err("server log"))?;
        let stderr = child.stderr.take().expect("piped");
        let sink = log.clone();
        let log_reader = std::thread::spawn(move || read_log(stderr, file, &sink));
        let listening = watch_stdout(child.stdout.take().expect("piped"));
        let mut server = Self {
            child: Some(child),
            url: String::new(),
            log,
            log_reader: Some(log_reader),
        };
        match listening.recv_timeout(SERVER_START_LIMIT) {
            Ok(url) => {
                server.url = url;
                Ok(server)
            }
            Err(_) => {
                let tail = server.terminate(Duration::from_secs(5)).log.tail;
                Err(BenchError(format!(
                    "facegate serve did not start; its log ends with:\n{}",
                    Vec::from(tail).join("\n")
                )))
            }
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status when the process has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// SIGTERM and wait up to `limit` (then SIGKILL); the complete log once it is closed.
    fn terminate(mut self, limit: Duration) -> Stopped {
        let started = Instant::now();
        let (exit, clean) = match self.child.take() {
            Some(child) => end_child(child, limit),
            None => ("not running".to_owned(), false),
        };
        let seconds = started.elapsed().as_secs_f64();
        if let Some(reader) = self.log_reader.take() {
            let _ = reader.join();
        }
        let log = std::mem::take(&mut *self.log.lock().unwrap());
        Stopped {
            exit,
            clean,
            seconds,
            log,
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// SIGTERM `child` and wait up to `limit`, then SIGKILL. How it ended, and whether cleanly.
fn end_child(mut child: Child, limit: Duration) -> (String, bool) {
    if let Ok(Some(status)) = child.try_wait() {
        return (format!("had already exited: {status}"), false);
    }
    // SAFETY: plain kill(2) on the pid of a child not yet reaped.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return (status.to_string(), status.success());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
    (
        format!(
            "killed after {} s without exiting ({status})",
            limit.as_secs()
        ),
        false,
    )
}

/// Sends the URL of the "listening on" line, then keeps draining stdout.
fn watch_stdout(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("facegate: listening on ") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    rx
}

fn read_log(stderr: std::process::ChildStderr, mut file: std::fs::File, tally: &Mutex<LogTally>) {
    for bytes in BufReader::new(stderr).split(b'\n').map_while(Result::ok) {
        let line = String::from_utf8_lossy(&bytes);
        let _ = writeln!(file, "{line}");
        tally.lock().unwrap().record(&line);
    }
}

// ---------------------------------------------------------------- the server's log

#[derive(Default)]
struct LogTally {
    lines: u64,
    warn: u64,
    error: u64,
    other: u64,
    /// (level, line with numbers masked) → (count, first example).
    groups: BTreeMap<(String, String), (u64, String)>,
    /// `event_id` of every `decision` line, in order: one per event committed to the outbox.
    decision_ids: Vec<String>,
    tail: VecDeque<String>,
}

impl LogTally {
    fn record(&mut self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        self.lines += 1;
        self.tail.push_back(line.to_owned());
        if self.tail.len() > 30 {
            self.tail.pop_front();
        }
        let (level, rest) = split_level(line);
        if let Some(id) = decision_event_id(rest) {
            self.decision_ids.push(id.to_owned());
        }
        let level = match level {
            Some("WARN") => {
                self.warn += 1;
                "WARN"
            }
            Some("ERROR") => {
                self.error += 1;
                "ERROR"
            }
            Some(_) => return,
            None => {
                self.other += 1;
                "other"
            }
        };
        self.group(level, rest);
    }

    fn group(&mut self, level: &str, rest: &str) {
        let key = (level.to_owned(), mask_numbers(rest));
        if let Some(g) = self.groups.get_mut(&key) {
            g.0 += 1;
        } else if self.groups.len() < MAX_LOG_GROUPS {
            let example: String = rest.chars().take(400).collect();
            self.groups.insert(key, (1, example));
        }
    }

    fn summary(&self) -> LogSummary {
        let mut distinct: Vec<LogGroup> = self
            .groups
            .iter()
            .map(|((level, _), (count, example))| LogGroup {
                level: level.clone(),
                count: *count,
                example: example.clone(),
            })
            .collect();
        distinct.sort_by_key(|g| std::cmp::Reverse(g.count));
        LogSummary {
            lines: self.lines,
            warn: self.warn,
            error: self.error,
            other: self.other,
            distinct,
        }
    }
}

/// A tracing line is `<timestamp> <LEVEL> <target/spans>: <message> <fields>`: its level and
/// what follows it; no level for anything else (a panic message, a library's own print).
fn split_level(line: &str) -> (Option<&str>, &str) {
    let trimmed = line.trim();
    let Some((ts, after)) = trimmed.split_once(char::is_whitespace) else {
        return (None, trimmed);
    };
    let after = after.trim_start();
    let level = after.split_whitespace().next().unwrap_or("");
    let is_ts = ts.starts_with(|c: char| c.is_ascii_digit()) && ts.contains('T');
    let known = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level);
    if is_ts && known {
        (Some(level), after[level.len()..].trim_start())
    } else {
        (None, trimmed)
    }
}

/// The `event_id` of the pipeline's `decision` line (logged once the event is in the outbox).
fn decision_event_id(rest: &str) -> Option<&str> {
    if !rest.contains(": decision ") {
        return None;
    }
    let (_, after) = rest.split_once("event_id=")?;
    after.split_whitespace().next()
}

/// Every word that contains a digit becomes `#`, so lines that differ only in counts, ids
/// and times group together.
fn mask_numbers(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut word = String::new();
    for c in s.chars() {
        // '.' belongs to the word so that 1.6s and 127.0.0.1 mask as one number each.
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            word.push(c);
        } else {
            push_masked(&mut out, &mut word);
            out.push(c);
        }
    }
    push_masked(&mut out, &mut word);
    out
}

fn push_masked(out: &mut String, word: &mut String) {
    if word.chars().any(|c| c.is_ascii_digit()) {
        out.push('#');
    } else {
        out.push_str(word);
    }
    word.clear();
}

// ---------------------------------------------------------------- HTTP

enum Outcome {
    /// The HTTP status and, for an error body, its `code`.
    Status(u16, Option<String>),
    Transport(String),
}

impl Outcome {
    fn key(&self) -> String {
        match self {
            Outcome::Status(s, Some(code)) => format!("{s} {code}"),
            Outcome::Status(s, None) => s.to_string(),
            Outcome::Transport(kind) => format!("transport: {kind}"),
        }
    }

    fn unexpected_5xx(&self) -> bool {
        match self {
            Outcome::Status(503, Some(code)) if code == "ERR_BUSY" => false,
            Outcome::Status(s, _) => *s >= 500,
            Outcome::Transport(_) => false,
        }
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(timeout).build()
}

/// One request with the key; the body is read to the end so the connection is reused.
fn call(agent: &ureq::Agent, method: &str, url: &str, body: Option<&Value>) -> Outcome {
    let request = agent.request(method, url).set("x-api-key", KEY);
    let result = match body {
        Some(b) => request.send_json(b),
        None => request.call(),
    };
    match result {
        Ok(r) => {
            let status = r.status();
            let _ = r.into_string();
            Outcome::Status(status, None)
        }
        Err(ureq::Error::Status(status, r)) => {
            let body: Value = r.into_json().unwrap_or(Value::Null);
            Outcome::Status(status, body["code"].as_str().map(str::to_owned))
        }
        Err(ureq::Error::Transport(t)) => Outcome::Transport(format!("{:?}", t.kind())),
    }
}

fn get_json(agent: &ureq::Agent, url: &str) -> Option<Value> {
    agent
        .get(url)
        .set("x-api-key", KEY)
        .call()
        .ok()?
        .into_json()
        .ok()
}

// ---------------------------------------------------------------- API load

struct LoadContext {
    url: String,
    /// (file name, base64) of the load photos.
    photos: Vec<(String, String)>,
}

impl LoadContext {
    fn new(url: &str, photos: &Path) -> Result<Arc<Self>, BenchError> {
        let photos = LOAD_PHOTOS
            .iter()
            .map(|p| Ok(((*p).to_owned(), read_base64(&photos.join(p))?)))
            .collect::<Result<_, BenchError>>()?;
        Ok(Arc::new(Self {
            url: url.to_owned(),
            photos,
        }))
    }
}

#[derive(Default)]
struct LoadTally {
    by_endpoint: BTreeMap<&'static str, BTreeMap<String, u64>>,
    unexpected_5xx: u64,
    unexpected_examples: Vec<String>,
    transport_errors: u64,
}

impl LoadTally {
    fn record(&mut self, endpoint: &'static str, outcome: &Outcome) {
        *self
            .by_endpoint
            .entry(endpoint)
            .or_default()
            .entry(outcome.key())
            .or_default() += 1;
        if outcome.unexpected_5xx() {
            self.unexpected_5xx += 1;
            if self.unexpected_examples.len() < MAX_LISTED {
                self.unexpected_examples
                    .push(format!("{endpoint}: {}", outcome.key()));
            }
        }
        if matches!(outcome, Outcome::Transport(_)) {
            self.transport_errors += 1;
        }
    }

    fn merge(&mut self, other: LoadTally) {
        for (endpoint, counts) in other.by_endpoint {
            let mine = self.by_endpoint.entry(endpoint).or_default();
            for (k, n) in counts {
                *mine.entry(k).or_default() += n;
            }
        }
        self.unexpected_5xx += other.unexpected_5xx;
        self.transport_errors += other.transport_errors;
        let room = MAX_LISTED.saturating_sub(self.unexpected_examples.len());
        self.unexpected_examples
            .extend(other.unexpected_examples.into_iter().take(room));
    }

    fn summary(&self) -> HttpSummary {
        HttpSummary {
            endpoints: self
                .by_endpoint
                .iter()
                .map(|(e, counts)| EndpointCounts {
                    endpoint: (*e).to_owned(),
                    requests: counts.values().sum(),
                    by_status: counts.clone(),
                })
                .collect(),
            unexpected_5xx: self.unexpected_5xx,
            unexpected_5xx_examples: self.unexpected_examples.clone(),
            transport_errors: self.transport_errors,
        }
    }
}

/// SplitMix64: reproducible choices, no statistical claims.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One API client: enrolments, searches, deletes, listings and health checks in a random
/// mix, until `stop` or its request budget.
struct ApiClient {
    ctx: Arc<LoadContext>,
    agent: ureq::Agent,
    rng: Rng,
    seed: u64,
    own: Vec<String>,
    tally: LoadTally,
}

impl ApiClient {
    fn run(mut self, stop: &AtomicBool) -> LoadTally {
        for _ in 0..MAX_REQUESTS_PER_CLIENT {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let (endpoint, outcome) = self.one_request();
            self.tally.record(endpoint, &outcome);
            std::thread::sleep(CLIENT_PAUSE);
        }
        self.tally
    }

    fn one_request(&mut self) -> (&'static str, Outcome) {
        match self.rng.below(20) {
            0..=4 if self.own.len() < MAX_OWN_PERSONS => self.enrol(),
            0..=4 | 12..=14 => self.delete(),
            5..=11 => self.search(),
            15..=16 => self.list(),
            _ => self.health(),
        }
    }

    fn photo(&mut self) -> String {
        let i = self.rng.below(self.ctx.photos.len());
        self.ctx.photos[i].1.clone()
    }

    fn enrol(&mut self) -> (&'static str, Outcome) {
        let id = format!("load-{:x}-{:08x}", self.seed, self.rng.next() as u32);
        let body = json!({
            "collection_name": COLLECTION,
            "person_id": id,
            "person_name": format!("Load {id}"),
            "face_base_64": self.photo(),
            "metadata": {"source": "soak"},
        });
        let outcome = call(
            &self.agent,
            "PUT",
            &format!("{}/person", self.ctx.url),
            Some(&body),
        );
        if matches!(outcome, Outcome::Status(200, _)) {
            self.own.push(id);
        }
        ("PUT /person", outcome)
    }

    /// One of this client's persons, or (when it has none) an id nobody enrolled: a 404.
    fn delete(&mut self) -> (&'static str, Outcome) {
        let id = if self.own.is_empty() {
            format!("absent-{:08x}", self.rng.next() as u32)
        } else {
            let i = self.rng.below(self.own.len());
            self.own.swap_remove(i)
        };
        let url = format!("{}/person/{COLLECTION}/{id}", self.ctx.url);
        (
            "DELETE /person/{c}/{id}",
            call(&self.agent, "DELETE", &url, None),
        )
    }

    fn search(&mut self) -> (&'static str, Outcome) {
        let body = json!({
            "collection_name": COLLECTION,
            "face_base_64": self.photo(),
            "min_similarity_score": 0.7,
            "max_results": 3,
        });
        let url = format!("{}/face-search", self.ctx.url);
        (
            "POST /face-search",
            call(&self.agent, "POST", &url, Some(&body)),
        )
    }

    fn list(&mut self) -> (&'static str, Outcome) {
        let url = format!(
            "{}/persons?collection_name={COLLECTION}&take=100",
            self.ctx.url
        );
        ("GET /persons", call(&self.agent, "GET", &url, None))
    }

    fn health(&mut self) -> (&'static str, Outcome) {
        let url = format!("{}/health", self.ctx.url);
        ("GET /health", call(&self.agent, "GET", &url, None))
    }
}

struct LoadClients {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<LoadTally>>,
}

impl LoadClients {
    fn start(ctx: &Arc<LoadContext>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..CLIENTS as u64)
            .map(|i| {
                let client = ApiClient {
                    ctx: ctx.clone(),
                    agent: agent(Duration::from_secs(60)),
                    rng: Rng(0x50AC + i),
                    seed: i,
                    own: Vec::new(),
                    tally: LoadTally::default(),
                };
                let stop = stop.clone();
                std::thread::spawn(move || client.run(&stop))
            })
            .collect();
        Self { stop, threads }
    }

    fn stop(self) -> LoadTally {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = LoadTally::default();
        for t in self.threads {
            if let Ok(tally) = t.join() {
                all.merge(tally);
            }
        }
        all
    }
}

// ---------------------------------------------------------------- MQTT subscriber

#[derive(Default)]
struct Received {
    subscribed: bool,
    event_ids: HashSet<String>,
    access_ids: HashSet<String>,
    event_messages: u64,
    access_messages: u64,
    sequences: BTreeSet<u64>,
}

impl Received {
    fn record(&mut self, topic: &str, payload: &[u8]) {
        let v: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
        let id = v["event_id"].as_str().map(str::to_owned);
        if topic.ends_with("/event") {
            self.event_messages += 1;
            self.event_ids.extend(id);
            self.sequences.extend(v["sequence"].as_u64());
        } else if topic.ends_with("/access") {
            self.access_messages += 1;
            self.access_ids.extend(id);
        }
    }
}

/// A subscriber on `facegate/#` with a persistent session (fixed client id, clean_session
/// false), so what is published while it reconnects after an outage is kept for it.
struct Subscriber {
    state: Arc<Mutex<Received>>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Subscriber {
    fn start(port: u16) -> Result<Self, BenchError> {
        let id = format!("facegate-soak-sub-{}", std::process::id());
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_clean_session(false);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, connection) = Client::new(opts, 100);
        let state = Arc::new(Mutex::new(Received::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || subscribe_loop(client, connection, &s, &st));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !state.lock().unwrap().subscribed {
            if Instant::now() > deadline {
                return Err(BenchError("the MQTT subscriber could not subscribe".into()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            state,
            stop,
            thread,
        })
    }

    /// Wait until every produced event has arrived as an event and as an access message, or
    /// `limit` has passed.
    fn wait_for(&self, produced: &HashSet<String>, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            {
                let r = self.state.lock().unwrap();
                if produced
                    .iter()
                    .all(|id| r.event_ids.contains(id) && r.access_ids.contains(id))
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(self) -> Received {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        std::mem::take(&mut *self.state.lock().unwrap())
    }
}

fn subscribe_loop(
    client: Client,
    mut connection: rumqttc::Connection,
    state: &Mutex<Received>,
    stop: &AtomicBool,
) {
    let filter = format!("{}/#", MqttConfig::default().topic_prefix);
    while !stop.load(Ordering::Relaxed) {
        match connection.recv_timeout(Duration::from_millis(200)) {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
            }
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                state.lock().unwrap().subscribed = true;
            }
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                state.lock().unwrap().record(&p.topic, &p.payload);
            }
            Ok(Ok(_)) | Err(_) => {}
            // The broker is down (an outage): retry the connection shortly.
            Ok(Err(_)) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    let _ = client.disconnect();
}

// ---------------------------------------------------------------- the run

/// Broker outages: stopped every minute, started again 10 s later, never in the last
/// `OUTAGE_FOR + UP_BEFORE_END` of the load.
struct Outages {
    next: Instant,
    last_start: Instant,
    down_since: Option<Instant>,
    count: u32,
    down: Duration,
    errors: Vec<String>,
}

impl Outages {
    fn new(started: Instant, end: Instant) -> Self {
        Self {
            next: started + OUTAGE_EVERY,
            last_start: end
                .checked_sub(OUTAGE_FOR + UP_BEFORE_END)
                .unwrap_or(started),
            down_since: None,
            count: 0,
            down: Duration::ZERO,
            errors: Vec::new(),
        }
    }

    fn tick(&mut self, broker: &mut LocalBroker, now: Instant) {
        match self.down_since {
            Some(since) if now - since >= OUTAGE_FOR => self.bring_up(broker),
            None if now >= self.next && now <= self.last_start => {
                // SIGTERM, not SIGKILL: mosquitto saves its sessions only when it exits
                // normally, and the subscriber's persistent session must survive the outage
                // for the end-to-end count to mean anything. For the server the two are the
                // same: its connection drops with publishes in flight and PUBACKs never come.
                broker.stop();
                self.down_since = Some(now);
                self.count += 1;
                self.next += OUTAGE_EVERY;
            }
            _ => {}
        }
    }

    fn bring_up(&mut self, broker: &mut LocalBroker) {
        if let Some(since) = self.down_since.take() {
            self.down += since.elapsed();
            if let Err(e) = broker.restart() {
                self.errors.push(format!("mosquitto did not restart: {e}"));
            }
        }
    }
}

/// Once-a-second samples of the server: RSS and `/health`.
#[derive(Default)]
struct Samples {
    rss_kib: Vec<u64>,
    by_minute_kib: Vec<u64>,
    outbox_depth_max: u64,
    last_health: Value,
}

impl Samples {
    fn take(&mut self, pid: Option<u32>, health_agent: &ureq::Agent, url: &str, elapsed: f64) {
        if let Some(kib) = pid.and_then(|p| proc_status_kib(p, "VmRSS:")) {
            self.rss_kib.push(kib);
            if elapsed >= 60.0 * (self.by_minute_kib.len() + 1) as f64 {
                self.by_minute_kib.push(kib);
            }
        }
        if let Some(h) = get_json(health_agent, &format!("{url}/health")) {
            let depth = h["mqtt"]["outbox_depth"].as_u64().unwrap_or(0);
            self.outbox_depth_max = self.outbox_depth_max.max(depth);
            self.last_health = h;
        }
    }
}

/// What the load phase saw.
struct Observed {
    url: String,
    seconds: f64,
    died: Option<String>,
    samples: Samples,
    outages: Outages,
    load: LoadTally,
    start_rss_kib: u64,
}

/// The load phase: clients running, samples each second, the broker stopped each minute;
/// ends after `minutes`, or early when the server dies.
fn drive(
    server: &mut ServerProcess,
    broker: &mut LocalBroker,
    ctx: Arc<LoadContext>,
    minutes: u32,
) -> Result<Observed, BenchError> {
    let health_agent = agent(Duration::from_secs(5));
    let start_rss_kib = server
        .pid()
        .and_then(|p| proc_status_kib(p, "VmRSS:"))
        .unwrap_or(0);
    let started = Instant::now();
    let end = started + Duration::from_secs(60 * u64::from(minutes));
    let mut outages = Outages::new(started, end);
    let mut samples = Samples::default();
    let clients = LoadClients::start(&ctx);
    let mut died = None;
    while Instant::now() < end {
        let tick = Instant::now();
        if let Some(status) = server.exited() {
            died = Some(format!(
                "exited after {:.0} s of load: {status}",
                started.elapsed().as_secs_f64()
            ));
            break;
        }
        let elapsed = started.elapsed().as_secs_f64();
        samples.take(server.pid(), &health_agent, &ctx.url, elapsed);
        outages.tick(broker, Instant::now());
        std::thread::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed()));
    }
    let load = clients.stop();
    // The outbox can only drain to a running broker.
    outages.bring_up(broker);
    Ok(Observed {
        url: ctx.url.clone(),
        seconds: started.elapsed().as_secs_f64(),
        died,
        samples,
        outages,
        load,
        start_rss_kib,
    })
}

/// What was read just before SIGTERM, and how the server ended.
struct Ended {
    stopped: Stopped,
    health: Option<Value>,
    metrics: Option<String>,
    end_rss_kib: Option<u64>,
    hwm_kib: Option<u64>,
}

/// Wait (bounded) for the MQTT link to be back, read the last figures, SIGTERM the server and
/// wait for it to flush its outbox and exit.
fn stop_server(mut server: ServerProcess, url: &str) -> Ended {
    let a = agent(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.exited().is_none() && Instant::now() < deadline {
        let connected = get_json(&a, &format!("{url}/health"))
            .is_some_and(|h| h["mqtt"]["connected"] == json!(true));
        if connected {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let pid = server.pid();
    let health = get_json(&a, &format!("{url}/health"));
    let metrics = a
        .get(&format!("{url}/metrics"))
        .set("x-api-key", KEY)
        .call()
        .ok()
        .and_then(|r| r.into_string().ok());
    let end_rss_kib = pid.and_then(|p| proc_status_kib(p, "VmRSS:"));
    let hwm_kib = pid.and_then(|p| proc_status_kib(p, "VmHWM:"));
    let stopped = server.terminate(SERVER_STOP_LIMIT);
    Ended {
        stopped,
        health,
        metrics,
        end_rss_kib,
        hwm_kib,
    }
}

/// Messages left in the outbox after the server exited (read through the outbox itself).
fn outbox_left(dir: &Path, mqtt: &MqttConfig) -> Option<usize> {
    Outbox::open(dir, mqtt.outbox_max_events, mqtt.outbox_map_mib)
        .ok()
        .map(|o| o.depth())
}

/// The sum of a Prometheus counter's samples over all its labels: 0 when the family is
/// declared but has no sample yet (no label set was ever counted), `None` when it is unknown.
fn metric_sum(text: &str, name: &str) -> Option<u64> {
    let family = name.strip_suffix("_total").unwrap_or(name);
    let declared = text.lines().any(|l| {
        l.strip_prefix("# TYPE ")
            .and_then(|r| r.split_whitespace().next())
            == Some(family)
    });
    let mut found = declared.then_some(0);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(value) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0) += value as u64;
        }
    }
    found
}

// ---------------------------------------------------------------- the report

fn assemble(
    minutes: u32,
    observed: Observed,
    ended: Ended,
    produced: &HashSet<String>,
    received: &Received,
    left_in_outbox: Option<usize>,
) -> SoakReport {
    let health = ended
        .health
        .clone()
        .unwrap_or_else(|| observed.samples.last_health.clone());
    let mut report = SoakReport {
        minutes,
        seconds: observed.seconds,
        embedder: health["models"]["embedder"]
            .as_str()
            .unwrap_or("?")
            .to_owned(),
        clients: CLIENTS,
        server: ServerSummary {
            died: observed.died.clone(),
            exit: ended.stopped.exit.clone(),
            clean_exit: ended.stopped.clean,
            stop_s: ended.stopped.seconds,
        },
        http: observed.load.summary(),
        rss: rss_summary(&observed, &ended),
        mqtt: mqtt_summary(&observed, &health, left_in_outbox),
        camera: camera_summary(&health),
        events: event_summary(produced, received, ended.metrics.as_deref()),
        log: ended.stopped.log.summary(),
        failures: Vec::new(),
        kept_dir: None,
    };
    report.failures = failures(&report);
    report
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn rss_summary(observed: &Observed, ended: &Ended) -> RssSummary {
    let s = &observed.samples;
    let end = ended.end_rss_kib.or(s.rss_kib.last().copied()).unwrap_or(0);
    let peak = s.rss_kib.iter().copied().chain([end]).max().unwrap_or(0);
    RssSummary {
        start_mib: mib(observed.start_rss_kib),
        end_mib: mib(end),
        peak_mib: mib(peak),
        hwm_mib: mib(ended.hwm_kib.unwrap_or(peak)),
        by_minute_mib: s.by_minute_kib.iter().map(|&k| mib(k)).collect(),
        growth_after_first_minute_mib: s.by_minute_kib.first().map(|&k| mib(end) - mib(k)),
        samples: s.rss_kib.len(),
    }
}

fn mqtt_summary(observed: &Observed, health: &Value, left: Option<usize>) -> MqttSummary {
    let m = &health["mqtt"];
    let n = |k: &str| m[k].as_u64().unwrap_or(0);
    MqttSummary {
        outages: observed.outages.count,
        broker_down_s: observed.outages.down.as_secs_f64(),
        broker_errors: observed.outages.errors.clone(),
        outbox_depth_max: observed.samples.outbox_depth_max,
        outbox_depth_before_stop: n("outbox_depth"),
        left_in_outbox: left,
        outbox_dropped: n("outbox_dropped"),
        outbox_dead_letters: m["outbox_dead_letters"].as_u64(),
        connections: n("connections"),
        acknowledged: n("acknowledged"),
    }
}

fn camera_summary(health: &Value) -> CameraSummary {
    let c = &health["cameras"][0];
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    CameraSummary {
        state: c["state"].as_str().unwrap_or("?").to_owned(),
        frames: n("frames"),
        processed: n("processed"),
        dropped: n("dropped"),
        errors: n("errors"),
        reconnects: n("reconnects"),
    }
}

fn event_summary(
    produced: &HashSet<String>,
    received: &Received,
    metrics: Option<&str>,
) -> EventSummary {
    let lost: Vec<&String> = produced
        .iter()
        .filter(|id| !received.event_ids.contains(*id))
        .collect();
    let lost_access = produced
        .iter()
        .filter(|id| !received.access_ids.contains(*id))
        .count();
    let max_sequence = received.sequences.last().copied();
    let decisions_metric = metrics.and_then(|t| metric_sum(t, "facegate_decisions_total"));
    EventSummary {
        produced_by: "event_id of the server's `decision` log lines (one per outbox commit)".into(),
        produced: produced.len(),
        decisions_metric,
        // A labelled family is not written at all before its first count: absent is 0 when
        // the scrape itself worked.
        held_off_metric: metrics
            .and_then(|t| metric_sum(t, "facegate_decisions_held_off_total"))
            .or(decisions_metric.map(|_| 0)),
        received_events: received.event_ids.len(),
        event_messages: received.event_messages,
        received_access: received.access_ids.len(),
        access_messages: received.access_messages,
        max_sequence,
        sequence_gaps: max_sequence.map_or(0, |m| m - received.sequences.len() as u64),
        lost_events: lost.len(),
        lost_access,
        lost_examples: lost.iter().take(MAX_LISTED).map(|s| (*s).clone()).collect(),
        unexpected: received
            .event_ids
            .iter()
            .filter(|id| !produced.contains(*id))
            .count(),
    }
}

fn failures(r: &SoakReport) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(d) = &r.server.died {
        out.push(format!("the server died: {d}"));
    } else if !r.server.clean_exit {
        out.push(format!(
            "the server did not stop cleanly: {}",
            r.server.exit
        ));
    }
    if r.http.unexpected_5xx > 0 {
        out.push(format!(
            "{} HTTP 5xx answers other than 503 ERR_BUSY",
            r.http.unexpected_5xx
        ));
    }
    let e = &r.events;
    if e.produced == 0 {
        out.push("no event was produced: nothing to compare".into());
    }
    if e.lost_events > 0 || e.lost_access > 0 {
        out.push(format!(
            "events lost: {} of {} never arrived as events, {} never as access messages \
             ({} left in the outbox, {} dead letters, {} dropped)",
            e.lost_events,
            e.produced,
            e.lost_access,
            r.mqtt.left_in_outbox.unwrap_or(0),
            opt(r.mqtt.outbox_dead_letters),
            r.mqtt.outbox_dropped
        ));
    }
    if e.unexpected > 0 || e.sequence_gaps > 0 {
        out.push(format!(
            "{} events received that the server did not log; {} sequence gaps",
            e.unexpected, e.sequence_gaps
        ));
    }
    out.extend(r.mqtt.broker_errors.iter().cloned());
    out
}

pub fn format_soak_report(r: &SoakReport) -> String {
    let mut out = format!(
        "soak, {} min of load ({:.0} s), {} embedder, {} API clients, broker stopped for {} s \
         every {} s ({} outages, {:.0} s down)\n",
        r.minutes,
        r.seconds,
        r.embedder,
        r.clients,
        OUTAGE_FOR.as_secs(),
        OUTAGE_EVERY.as_secs(),
        r.mqtt.outages,
        r.mqtt.broker_down_s
    );
    out += "| measure | value |\n|---|---|\n";
    for (k, v) in summary_rows(r) {
        out += &format!("| {k} | {v} |\n");
    }
    out += "\n| endpoint | requests | answers |\n|---|---|---|\n";
    for e in &r.http.endpoints {
        let answers: Vec<String> = e
            .by_status
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        out += &format!(
            "| {} | {} | {} |\n",
            e.endpoint,
            e.requests,
            answers.join(", ")
        );
    }
    out += &format_log(&r.log);
    out += &match r.failures.is_empty() {
        true => "\nresult: PASS\n".to_owned(),
        false => format!("\nresult: FAIL\n- {}\n", r.failures.join("\n- ")),
    };
    if let Some(dir) = &r.kept_dir {
        out += &format!("work folder kept (server.log, data, broker): {dir}\n");
    }
    out
}

fn summary_rows(r: &SoakReport) -> Vec<(&'static str, String)> {
    let (e, m, c, s) = (&r.events, &r.mqtt, &r.camera, &r.server);
    let minutes: Vec<String> = r
        .rss
        .by_minute_mib
        .iter()
        .map(|v| format!("{v:.1}"))
        .collect();
    vec![
        (
            "server",
            match &s.died {
                Some(d) => format!("DIED: {d}"),
                None => format!("SIGTERM → {} in {:.1} s", s.exit, s.stop_s),
            },
        ),
        (
            "RSS start / end / peak (VmHWM)",
            format!(
                "{:.1} / {:.1} / {:.1} MiB ({:.1})",
                r.rss.start_mib, r.rss.end_mib, r.rss.peak_mib, r.rss.hwm_mib
            ),
        ),
        ("RSS at each minute, MiB", minutes.join(", ")),
        (
            "RSS growth after the first minute",
            r.rss
                .growth_after_first_minute_mib
                .map_or("-".into(), |g| format!("{g:+.1} MiB")),
        ),
        (
            "outbox depth max / before SIGTERM / left after exit",
            format!(
                "{} / {} / {} (dropped {}, dead letters {})",
                m.outbox_depth_max,
                m.outbox_depth_before_stop,
                m.left_in_outbox.map_or("?".into(), |n| n.to_string()),
                m.outbox_dropped,
                opt(m.outbox_dead_letters)
            ),
        ),
        (
            "MQTT connections / messages acknowledged",
            format!("{} / {}", m.connections, m.acknowledged),
        ),
        (
            "camera frames / processed / dropped / errors",
            format!(
                "{} / {} / {} / {} ({})",
                c.frames, c.processed, c.dropped, c.errors, c.state
            ),
        ),
        (
            "events produced (server's decision log lines)",
            e.produced.to_string(),
        ),
        (
            "decisions / held off (metrics, before SIGTERM)",
            format!("{} / {}", opt(e.decisions_metric), opt(e.held_off_metric)),
        ),
        (
            "events received: distinct event_id / messages",
            format!("{} / {}", e.received_events, e.event_messages),
        ),
        (
            "access messages received: distinct / messages",
            format!("{} / {}", e.received_access, e.access_messages),
        ),
        (
            "highest sequence received / gaps",
            format!("{} / {}", opt(e.max_sequence), e.sequence_gaps),
        ),
        (
            "lost: events / access messages / unexpected",
            format!("{} / {} / {}", e.lost_events, e.lost_access, e.unexpected),
        ),
        (
            "HTTP 5xx other than 503 ERR_BUSY / transport errors",
            format!("{} / {}", r.http.unexpected_5xx, r.http.transport_errors),
        ),
        (
            "server log: lines / WARN / ERROR / other",
            format!(
                "{} / {} / {} / {}",
                r.log.lines, r.log.warn, r.log.error, r.log.other
            ),
        ),
    ]
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |n| n.to_string())
}

fn format_log(log: &LogSummary) -> String {
    if log.distinct.is_empty() {
        return "\nserver log: no WARN or ERROR line\n".into();
    }
    let mut out = String::from("\ndistinct WARN / ERROR / other lines of the server log:\n");
    for g in &log.distinct {
        out += &format!("{:>5}× {:<5} {}\n", g.count, g.level, g.example);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracing_lines_are_split_into_level_and_rest() {
        let line = "2026-01-02T03:04:05.678901Z  WARN facegate::mqtt::publisher: MQTT \
                    connection lost error=refused retry_in=1s backlog=3";
        let (level, rest) = split_level(line);
        assert_eq!(level, Some("WARN"));
        assert!(rest.starts_with("facegate::mqtt::publisher: MQTT"));
        assert_eq!(split_level("thread 'x' panicked at src/a.rs:1:2").0, None);
    }

    #[test]
    fn decision_lines_give_their_event_id() {
        let line = "2026-01-02T03:04:05.678901Z  INFO facegate::daemon::camera_worker: \
                    decision camera=c decision=match track=1 person=obama score=Some(0.9) \
                    liveness=Skipped latency_ms=10.5 event_id=0196-abc";
        let (_, rest) = split_level(line);
        assert_eq!(decision_event_id(rest), Some("0196-abc"));
        assert_eq!(decision_event_id("facegate::x: stopped event_id=1"), None);
    }

    #[test]
    fn numbers_are_masked_so_similar_lines_group() {
        assert_eq!(
            mask_numbers("lost error=refused retry_in=1.6s backlog=3 at 127.0.0.1:1883"),
            "lost error=refused retry_in=# backlog=# at #:#"
        );
    }

    #[test]
    fn busy_is_not_an_unexpected_5xx_but_others_are() {
        assert!(!Outcome::Status(503, Some("ERR_BUSY".into())).unexpected_5xx());
        assert!(Outcome::Status(503, None).unexpected_5xx());
        assert!(Outcome::Status(500, Some("ERR_INTERNAL".into())).unexpected_5xx());
        assert!(!Outcome::Status(404, None).unexpected_5xx());
    }

    #[test]
    fn counters_are_summed_over_labels() {
        let text = "# TYPE facegate_decisions counter\n\
                    # TYPE facegate_outbox_dropped counter\n\
                    facegate_decisions_total{camera=\"a\",type=\"match\"} 3\n\
                    facegate_decisions_total{camera=\"a\",type=\"unknown\"} 4\n\
                    facegate_decisions_held_off_total{camera=\"a\"} 1\n";
        assert_eq!(metric_sum(text, "facegate_decisions_total"), Some(7));
        assert_eq!(
            metric_sum(text, "facegate_decisions_held_off_total"),
            Some(1)
        );
        assert_eq!(metric_sum(text, "facegate_outbox_dropped_total"), Some(0));
        assert_eq!(metric_sum(text, "facegate_nothing_total"), None);
    }
}
