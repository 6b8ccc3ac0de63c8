//! `facegate doctor`: checks an installation line by line — the ONNX Runtime library and the
//! execution providers it really offers, each model against the lock file and the provider it
//! runs on, the V4L2 cameras and their formats, the store, and the broker — each line `OK`,
//! `--` (for information) or `FIX` with what to do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use facegate_core::config::{Config, Precision};
use facegate_core::engine::precision;
use facegate_core::engine::runtime::Runtime;
use facegate_core::engine::Engine;
use facegate_core::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Info,
    Fix,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub level: Level,
    pub text: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = match self.level {
            Level::Ok => "OK ",
            Level::Info => "-- ",
            Level::Fix => "FIX",
        };
        write!(f, "{tag}  {}", self.text)
    }
}

fn ok(text: String) -> Finding {
    Finding {
        level: Level::Ok,
        text,
    }
}
fn info(text: String) -> Finding {
    Finding {
        level: Level::Info,
        text,
    }
}
fn fix(text: String) -> Finding {
    Finding {
        level: Level::Fix,
        text,
    }
}

/// Every check, in order. Stops after the runtime when the library cannot be loaded.
pub fn run(config: &Config, data_dir: &Path) -> Vec<Finding> {
    let mut out = Vec::new();
    let runtime = match Runtime::load(&config.inference) {
        Ok(r) => r,
        Err(e) => {
            out.push(fix(format!("ONNX Runtime: {e}")));
            return out;
        }
    };
    out.push(ok(format!(
        "ONNX Runtime {} ({}); providers it offers: {}",
        std::fs::canonicalize(&runtime.library)
            .unwrap_or_else(|_| runtime.library.clone())
            .display(),
        ort::info().trim(),
        available_providers().join(", ")
    )));
    out.extend(models(config, &runtime.model_dir));
    let mut config = config.clone();
    match precision_finding(&config, &runtime, data_dir) {
        Ok((finding, precision)) => {
            out.push(finding);
            config.inference.precision = precision;
        }
        Err(finding) => out.push(finding),
    }
    let config = &config;
    let fingerprint = match Engine::with_runtime(&runtime, config) {
        Ok(engine) => {
            for (model, provider) in engine.providers() {
                out.push(ok(format!("{model} runs on {provider}")));
            }
            Some(facegate_core::store::ModelId {
                id: engine.fingerprint().to_owned(),
                dim: engine.dimension(),
                metric: engine.metric(),
            })
        }
        Err(e) => {
            out.push(fix(format!("models cannot be opened: {e}")));
            None
        }
    };
    out.extend(cameras(config));
    if let Some(model) = &fingerprint {
        out.push(store(data_dir, model.clone()));
    }
    out.push(broker(config));
    if let Some(model) = &fingerprint {
        out.push(fleet(config, &model.id));
    }
    out.push(transport(config));
    out.push(signing_key(data_dir));
    out
}

/// The access signing key: its public key for the door controllers' configuration.
fn signing_key(data_dir: &Path) -> Finding {
    let path = facegate_core::access::device_key::key_path(data_dir);
    if !path.exists() {
        return info(format!(
            "access signing key {}: not created yet (facegate serve creates it on first start)",
            path.display()
        ));
    }
    match facegate_core::access::device_key::load(&path) {
        Ok(key) => ok(format!(
            "access messages are signed with Ed25519 public key {} ({}); door controllers \
             list it in door.trusted_keys",
            facegate_core::access::device_key::public_key_text(&key.verifying_key()),
            path.display()
        )),
        Err(e) => fix(format!("access signing key: {e}")),
    }
}

/// Both models of the embedder timed on this device, and the precision the daemon runs with
/// the store in `data_dir` (engine::precision: recorded with the store, or timed for a new one).
fn precision_finding(
    config: &Config,
    runtime: &Runtime,
    data_dir: &Path,
) -> Result<(Finding, Precision), Finding> {
    let kind = config.inference.embedder;
    // Timed as serve times them: with the threads each of its inference workers gets.
    let mut timing = config.inference.clone();
    timing.threads = crate::api::server::worker_layout(config).1;
    let timings = Runtime::load(&timing)
        .map_err(Into::into)
        .and_then(|timing_runtime| {
            precision::time_models(&timing_runtime, kind, config.inference.mirror_average)
        })
        .map_err(|e: facegate_core::engine::EngineError| {
            fix(format!("{} cannot be timed: {e}", kind.name()))
        })?;
    let measured = precision::choose(kind, &timings);
    let times = ["fp32", "int8"]
        .iter()
        .zip([Precision::Fp32, Precision::Int8])
        .filter_map(|(name, p)| measured.median_ms(p).map(|ms| format!("{name} {ms:.1} ms")))
        .collect::<Vec<_>>()
        .join(", ");
    let recorded = Store::recorded_model(data_dir).ok().flatten();
    let (precision, why) = match config.inference.precision {
        Precision::Auto => match recorded
            .as_deref()
            .and_then(|m| precision::recorded(runtime, kind, m))
        {
            Some(p) => (p, "recorded with the store".to_owned()),
            None if recorded.is_some() => (
                Precision::Auto.resolve(kind),
                "the store holds another embedder's templates".to_owned(),
            ),
            None => (
                measured.precision,
                format!("for a new store: {}", measured.reason),
            ),
        },
        p => (p, "inference.precision".to_owned()),
    };
    let text = format!(
        "{} per face here (median of {}): {times}; runs {} ({why})",
        kind.name(),
        precision::TIMED_RUNS,
        match precision {
            Precision::Int8 => "int8",
            _ => "fp32",
        },
    );
    Ok((ok(text), precision))
}

/// HTTPS, or a warning when the API is reachable from the network in plain text.
fn transport(config: &Config) -> Finding {
    let s = &config.server;
    if let Some(cert) = &s.tls_cert_file {
        return match crate::api::listener::load_tls(s) {
            Ok(_) => ok(format!("API on https://{} ({})", s.listen, cert.display())),
            Err(e) => fix(format!("HTTPS: {e}")),
        };
    }
    match crate::api::listener::plaintext_warning(s) {
        Some(w) => fix(w),
        None => info(format!("API on http://{} (loopback only)", s.listen)),
    }
}

/// Execution providers compiled into the loaded ONNX Runtime library, by ONNX Runtime's
/// names. ort's safe API (`ExecutionProvider::is_available`) only exists for the providers
/// this binary was built with, and the doctor must also name those it was not built with,
/// so this is one narrow call of the C API.
pub fn available_providers() -> Vec<String> {
    let api = ort::api();
    let mut list: *mut *mut std::ffi::c_char = std::ptr::null_mut();
    let mut n: std::ffi::c_int = 0;
    // SAFETY: GetAvailableProviders fills `list` with `n` NUL-terminated strings owned by
    // ONNX Runtime (or fails and returns a status we release). They are copied before
    // ReleaseAvailableProviders frees them, and neither pointer is used afterwards.
    unsafe {
        let status = (api.GetAvailableProviders)(&mut list, &mut n);
        if !status.0.is_null() {
            (api.ReleaseStatus)(status.0);
            return Vec::new();
        }
        if list.is_null() {
            return Vec::new();
        }
        let names = (0..n.max(0) as isize)
            .map(|i| {
                std::ffi::CStr::from_ptr(*list.offset(i))
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        let status = (api.ReleaseAvailableProviders)(list, n);
        if !status.0.is_null() {
            (api.ReleaseStatus)(status.0);
        }
        names
    }
}

fn models(config: &Config, model_dir: &Path) -> Vec<Finding> {
    let lock_path = model_dir.join("models.lock");
    let lock: BTreeMap<String, serde_json::Value> = match std::fs::read(&lock_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(l) => l,
        Err(e) => {
            return vec![fix(format!(
                "{}: {e} (run `make models`, or reinstall the package)",
                lock_path.display()
            ))]
        }
    };
    let mut out = Vec::new();
    for (file, entry) in &lock {
        if file == &config.liveness.pad_model || file.ends_with(".onnx") {
            let path = model_dir.join(file);
            let want = entry["sha256"].as_str().unwrap_or("");
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let got = format!("{:x}", Sha256::digest(&bytes));
                    if got == want {
                        out.push(ok(format!("model {file}: sha256 matches models.lock")));
                    } else {
                        out.push(fix(format!(
                            "model {file}: sha256 {} differs from models.lock {} (re-run `make models`)",
                            &got[..12],
                            &want[..want.len().min(12)]
                        )));
                    }
                }
                Err(_)
                    if file.contains("_int8")
                        && config.inference.precision.resolve(config.inference.embedder)
                            == facegate_core::config::Precision::Fp32 =>
                {
                    out.push(info(format!(
                        "model {file}: not made (`make models-int8`; only for inference.precision = \"int8\")"
                    )))
                }
                Err(e) => out.push(fix(format!(
                    "model {}: {e} (run `make models`)",
                    path.display()
                ))),
            }
        }
    }
    out
}

/// Every V4L2 node under /dev and every configured V4L2 camera's device (which may live
/// elsewhere, e.g. a udev symlink under /dev/v4l/by-id), each opened and enumerated as the
/// capture code will: formats, frame sizes and frame rates.
fn cameras(config: &Config) -> Vec<Finding> {
    let mut paths: Vec<PathBuf> = v4l::context::enum_devices()
        .into_iter()
        .map(|node| node.path().to_owned())
        .collect();
    paths.sort();
    let configured: Vec<&facegate_core::config::CameraConfig> = config
        .cameras
        .iter()
        .filter(|c| c.source == facegate_core::config::SourceKind::V4l2)
        .collect();
    for cam in &configured {
        if !paths.contains(&cam.device) {
            paths.push(cam.device.clone());
        }
    }
    if paths.is_empty() {
        return vec![info("no V4L2 devices (/dev/video*)".into())];
    }
    let mut out = Vec::new();
    for path in paths {
        let users: Vec<_> = configured
            .iter()
            .copied()
            .filter(|c| c.device == path)
            .collect();
        out.extend(describe_device(&path, &users));
    }
    out
}

/// One device: its card name and what it offers, then for each camera configured on it
/// whether the format it asks for is offered.
fn describe_device(path: &Path, users: &[&facegate_core::config::CameraConfig]) -> Vec<Finding> {
    use v4l::video::Capture;
    let shown = path.display();
    let dev = match v4l::Device::with_path(path) {
        Ok(d) => d,
        Err(e) => {
            let what = if e.kind() == std::io::ErrorKind::NotFound {
                "which does not exist".to_string()
            } else {
                format!("which cannot be opened: {e} (is the user in the video group?)")
            };
            if users.is_empty() {
                return vec![fix(format!("camera {shown}, {what}"))];
            }
            return users
                .iter()
                .map(|cam| {
                    fix(format!(
                        "configured camera {} uses {shown}, {what}",
                        cam.name
                    ))
                })
                .collect();
        }
    };
    let card = dev.query_caps().map(|c| c.card).unwrap_or_default();
    let formats = dev.enum_formats().unwrap_or_default();
    if formats.is_empty() {
        let mut out = vec![info(format!(
            "camera {shown} ({card}): no capture formats (a metadata node)"
        ))];
        out.extend(users.iter().map(|cam| {
            fix(format!(
                "configured camera {} uses {shown}, which captures no video",
                cam.name
            ))
        }));
        return out;
    }
    let listed: Vec<String> = formats
        .iter()
        .map(|f| format!("{} {}", f.fourcc, sizes_and_rates(&dev, f.fourcc)))
        .collect();
    let mut out = vec![ok(format!(
        "camera {shown} ({card}): {}",
        listed.join("; ")
    ))];
    for cam in users {
        let wanted = crate::camera::v4l2::fourcc_of(cam.format);
        if !formats.iter().any(|f| f.fourcc == wanted) {
            out.push(fix(format!(
                "configured camera {} asks {shown} for {wanted}, which it does not offer; set \
                 format to one listed above",
                cam.name
            )));
        }
    }
    out
}

/// `1280x720@30,15 640x480@30` for discrete sizes; a stepwise range as `min-max`.
fn sizes_and_rates(dev: &v4l::Device, fourcc: v4l::FourCC) -> String {
    use v4l::framesize::FrameSizeEnum;
    use v4l::video::Capture;
    let rates = |width: u32, height: u32| -> String {
        let fps: Vec<String> = dev
            .enum_frameintervals(fourcc, width, height)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| match i.interval {
                v4l::frameinterval::FrameIntervalEnum::Discrete(f) if f.numerator > 0 => {
                    let fps = f64::from(f.denominator) / f64::from(f.numerator);
                    Some(format!("{}", (fps * 100.0).round() / 100.0))
                }
                _ => None,
            })
            .collect();
        if fps.is_empty() {
            String::new()
        } else {
            format!("@{}", fps.join(","))
        }
    };
    dev.enum_framesizes(fourcc)
        .unwrap_or_default()
        .into_iter()
        .map(|s| match s.size {
            FrameSizeEnum::Discrete(d) => {
                format!("{}x{}{}", d.width, d.height, rates(d.width, d.height))
            }
            FrameSizeEnum::Stepwise(r) => format!(
                "{}x{}-{}x{}",
                r.min_width, r.min_height, r.max_width, r.max_height
            ),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn store(data_dir: &Path, model: facegate_core::store::ModelId) -> Finding {
    if !data_dir.join("data.mdb").exists() {
        return info(format!(
            "store {}: not created yet (the first `serve` creates it)",
            data_dir.display()
        ));
    }
    let size = std::fs::metadata(data_dir.join("data.mdb"))
        .map(|m| m.len())
        .unwrap_or(0);
    let options = facegate_core::store::StoreOptions::default();
    match facegate_core::store::Store::open(
        data_dir,
        model,
        &options,
        std::sync::Arc::new(facegate_core::clock::SystemClock),
    ) {
        Ok(s) => {
            let (collections, persons) = s.counts();
            ok(format!(
                "store {}: schema {}, {collections} collections, {persons} persons, {:.1} MiB on disk",
                data_dir.display(),
                facegate_core::store::SCHEMA_VERSION,
                size as f64 / (1 << 20) as f64
            ))
        }
        Err(e) => fix(format!("store {}: {e}", data_dir.display())),
    }
}

/// The fleet's appliances as they announce themselves on the broker, and whether they all
/// embed with this appliance's model.
fn fleet(config: &Config, model: &str) -> Finding {
    let f = &config.fleet;
    if !f.enabled {
        return info("fleet replication is off (fleet.enabled = false)".into());
    }
    let base = format!("{}/fleet/{}", config.mqtt.topic_prefix, f.site);
    let id = format!("facegate-doctor-{}", std::process::id());
    let options = match crate::mqtt::publisher::connection_options(&config.mqtt, &id) {
        Ok(o) => o,
        Err(e) => return fix(format!("fleet: {e}")),
    };
    let (client, mut connection) = rumqttc::Client::new(options, 10);
    if let Err(e) = client.subscribe(format!("{base}/device/+"), rumqttc::QoS::AtMostOnce) {
        return fix(format!("fleet: cannot subscribe: {e}"));
    }
    let mut devices = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match connection.recv_timeout(left) {
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) => {
                if let Ok(d) =
                    serde_json::from_slice::<crate::fleet::DeviceAnnouncement>(&p.payload)
                {
                    devices.insert(d.device_id, d.model);
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return fix(format!("fleet: broker {}: {e}", config.mqtt.host)),
            Err(_) => break,
        }
    }
    let _ = client.disconnect();
    let listed: Vec<String> = devices
        .iter()
        .map(|(d, m)| {
            let trust = match f.trusted_devices.contains_key(d) {
                true => "",
                false => ", NOT in fleet.trusted_devices",
            };
            format!("{d} ({m}{trust})")
        })
        .collect();
    let others: Vec<&String> = devices
        .iter()
        .filter(|(_, m)| m.as_str() != model)
        .map(|(d, _)| d)
        .collect();
    let text = format!(
        "fleet site {}: {} appliance(s) announced: {}",
        f.site,
        devices.len(),
        if listed.is_empty() {
            "none yet".to_owned()
        } else {
            listed.join(", ")
        }
    );
    if others.is_empty() {
        ok(format!("{text}; this one embeds with {model}"))
    } else {
        fix(format!(
            "{text}; this one embeds with {model}: records of {others:?} are refused here \
             (every appliance of a site needs the same inference.embedder and inference.precision)"
        ))
    }
}

fn broker(config: &Config) -> Finding {
    let m = &config.mqtt;
    if !m.enabled {
        return info("MQTT is off (mqtt.enabled = false)".into());
    }
    let addr = format!("{}:{}", m.host, m.port);
    let resolved = std::net::ToSocketAddrs::to_socket_addrs(&addr).map(|mut a| a.next());
    match resolved {
        Ok(Some(sock)) => match std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(3))
        {
            Ok(_) => ok(format!(
                "broker {addr} reachable{}",
                if m.tls { " (TLS not checked)" } else { "" }
            )),
            Err(e) => fix(format!(
                "broker {addr} unreachable: {e} (start the broker or set mqtt.host/port)"
            )),
        },
        _ => fix(format!(
            "broker {addr}: the name does not resolve (set mqtt.host)"
        )),
    }
}
