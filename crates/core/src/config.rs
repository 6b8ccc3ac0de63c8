//! The one configuration file. Every key has a documented default; `facegate print-config`
//! prints them all, and a file only needs the keys it changes. Unknown keys are an error, so a
//! typo never silently falls back to a default.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key {key} = {value}: {why}")]
    Invalid {
        key: &'static str,
        value: String,
        why: &'static str,
    },
}

/// Execution-provider names accepted in `inference.execution_providers`.
pub const KNOWN_PROVIDERS: [&str; 7] = [
    "cpu", "cuda", "tensorrt", "xnnpack", "acl", "openvino", "qnn",
];

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub inference: InferenceConfig,
    pub detector: DetectorConfig,
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub liveness: LivenessConfig,
    pub mqtt: MqttConfig,
    /// The cameras `facegate serve` watches (`[[cameras]]` tables); none by default.
    pub cameras: Vec<CameraConfig>,
}

/// Numeric precision of the embedding network.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// int8 where the project ships a quantised model that kept its accuracy on the
    /// evaluation set (arcface512), fp32 otherwise (dlib128).
    #[default]
    Auto,
    /// The converted float model.
    Fp32,
    /// Its int8 QDQ quantisation (`make models-int8`), for CPUs and NPUs with int8 paths.
    Int8,
}

impl Precision {
    /// The precision actually used for `kind`.
    pub fn resolve(self, kind: EmbedderKind) -> Precision {
        match (self, kind) {
            (Precision::Auto, EmbedderKind::Arcface512) => Precision::Int8,
            (Precision::Auto, EmbedderKind::Dlib128) => Precision::Fp32,
            (p, _) => p,
        }
    }
}

/// Which embedding network turns an aligned face into a template.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum EmbedderKind {
    /// ArcFace-style 512-d network on a 112×112 chip, compared by cosine. Accurate; default.
    #[default]
    Arcface512,
    /// dlib's ResNet, 128-d on a 150×150 chip, compared by Euclidean distance. ~15× faster.
    Dlib128,
}

impl EmbedderKind {
    pub fn name(self) -> &'static str {
        match self {
            EmbedderKind::Arcface512 => "arcface512",
            EmbedderKind::Dlib128 => "dlib128",
        }
    }
}

impl std::str::FromStr for EmbedderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "arcface512" => Ok(EmbedderKind::Arcface512),
            "dlib128" => Ok(EmbedderKind::Dlib128),
            other => Err(format!(
                "unknown embedder {other:?} (expected arcface512 or dlib128)"
            )),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// Path of libonnxruntime.so. Empty: `$ORT_DYLIB_PATH`, then `<model_dir>/libonnxruntime.so`
    /// (what `make models` links), then `/usr/lib/facegate/libonnxruntime.so`.
    pub ort_library: String,
    /// Folder with the converted models. Empty: the repository's `models/` when the binary was
    /// built from a checkout that has it, else `/usr/share/facegate/models`.
    pub model_dir: String,
    /// Execution providers in order of preference: cpu, cuda, tensorrt, xnnpack, acl, openvino,
    /// qnn. One that is not compiled in or not offered by the library falls back with a warning.
    pub execution_providers: Vec<String>,
    /// Threads per ONNX Runtime session; 0 lets ONNX Runtime use every core.
    pub threads: usize,
    /// Which embedder produces templates: "arcface512" (default) or "dlib128".
    pub embedder: EmbedderKind,
    /// `auto` (int8 for arcface512, fp32 for dlib128), `fp32`, or `int8`.
    pub precision: Precision,
    /// Average each face's embedding with the embedding of its mirrored chip (more accurate,
    /// twice the embedding work, run in the same batch).
    pub mirror_average: bool,
    /// Run FaceMesh a second time on a crop re-centred from its first landmarks (steadier
    /// alignment, one more FaceMesh call per face).
    pub refine_landmarks: bool,
    /// Folder for execution-provider caches (TensorRT engines). Empty: `~/.cache/facegate/ep`.
    pub cache_dir: String,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            ort_library: String::new(),
            model_dir: String::new(),
            execution_providers: vec!["cpu".into()],
            threads: 0,
            embedder: EmbedderKind::Arcface512,
            precision: Precision::Auto,
            mirror_average: true,
            refine_landmarks: false,
            cache_dir: String::new(),
        }
    }
}

/// Which BlazeFace models run on each frame.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DetectorRange {
    /// Both models, results merged: small far faces and faces filling the frame alike.
    #[default]
    Both,
    /// Full range only (192 px input, faces up to about 5 m).
    Full,
    /// Short range only (128 px input, faces at selfie distance): a door camera with a close
    /// mount needs nothing else and saves a third of the detection time.
    Short,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Which models run: "both" (default), "full" or "short".
    pub range: DetectorRange,
    /// Minimum detection score (sigmoid of the model's logit) for a face to count.
    pub score_threshold: f32,
    /// Detections scoring below this are kept only when FaceMesh confirms a face in them
    /// (face presence ≥ 0.5). Filters the small false candidates of the tiled search; profile
    /// faces, which FaceMesh does not confirm, score above it.
    pub confirm_below: f32,
    /// Boxes overlapping more than this (intersection over union) are merged into one face.
    pub nms_iou: f32,
    /// Smallest face to find, in frame pixels (narrower faces are ignored). When the
    /// whole-frame pass cannot resolve faces this small (it sees faces of about 1/12 of the
    /// frame's longer side), the full-range model also searches overlapping tiles, at a cost
    /// that grows with the frame area: a door camera whose faces are large sets this high.
    pub min_face_px: f32,
    /// Largest image accepted, in megapixels; bigger images are refused before decoding.
    pub max_megapixels: f32,
    /// Memory the decoded pixels of one image may take, in MiB (width × height × bytes per
    /// pixel of its format, plus the RGB copy); checked from the header before decoding.
    pub max_decoded_mib: usize,
    /// Longer side over shorter side; narrower strips are refused before decoding.
    pub max_aspect_ratio: f32,
    /// Most tiles of the small-face search on one image: when `min_face_px` would need more,
    /// the search looks for proportionally larger faces instead, so every image costs a
    /// bounded amount of work.
    pub max_tiles: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            range: DetectorRange::Both,
            score_threshold: 0.5,
            confirm_below: 0.65,
            nms_iou: 0.3,
            min_face_px: 24.0,
            max_megapixels: 40.0,
            max_decoded_mib: 160,
            max_aspect_ratio: 20.0,
            max_tiles: 64,
        }
    }
}

/// Still-image liveness checks (`check_liveness`, `POST /liveness`): the upstream capture
/// requirements, each with its limit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LivenessConfig {
    /// FACE_TOO_SMALL below this face-box side, in pixels.
    pub min_face_px: f32,
    /// FACE_TOO_SMALL below this distance between the eye centres, in pixels.
    pub min_eye_distance_px: f32,
    /// FACE_CLOSE_TO_BORDER when the face box is nearer an image edge, in pixels.
    pub min_border_px: f32,
    /// FACE_TOO_CLOSE when the face box is wider than this share of the image width.
    pub max_face_share: f32,
    /// TOO_MANY_FACES when another face is at least this share of the main face's width.
    pub second_face_share: f32,
    /// FACE_ANGLE_TOO_LARGE beyond this head yaw, in degrees.
    pub max_yaw_deg: f32,
    /// FACE_ANGLE_TOO_LARGE beyond this head pitch, in degrees.
    pub max_pitch_deg: f32,
    /// EYES_CLOSED when both eyes' aspect ratio (lid opening over eye width) is below this.
    pub min_eye_aspect_ratio: f32,
    /// EYES_CLOSED when, on both eyes, less than this share of a box around the eye is darker
    /// than half the cheek's grey: no iris or pupil in view.
    pub min_eye_darkness: f32,
    /// FACE_IS_OCCLUDED below this FaceMesh face-presence probability.
    pub min_face_presence: f32,
    /// FACE_IS_OCCLUDED when the eyes-to-mouth distance over the eye distance is outside
    /// this range (landmarks fitted to something that is not a whole face).
    pub face_proportion: [f32; 2],
    /// FACE_IS_OCCLUDED when the grey-level spread (standard deviation, 0–255) around an eye
    /// or the mouth is below this: a uniform occluder over a feature.
    pub min_feature_contrast: f32,
    /// Run the presentation-attack (PAD) model on faces that pass the geometric checks.
    /// Without it no face is ever reported live.
    pub pad_enabled: bool,
    /// PAD model file (in `inference.model_dir` unless absolute).
    pub pad_model: String,
    /// Side of the PAD model's square input, in pixels.
    pub pad_input_size: u32,
    /// The crop around the face box the model expects: box × this, about its centre.
    pub pad_crop_scale: f32,
    /// Channel order of the input planes: "rgb" or "bgr".
    pub pad_channel_order: String,
    /// Input value = (pixel − mean) × scale, per channel (R, G, B), pixels 0–255.
    pub pad_mean: [f32; 3],
    pub pad_scale: [f32; 3],
    /// Apply softmax to the outputs (false: the outputs are probabilities already).
    pub pad_softmax: bool,
    /// Which output is the live class.
    pub pad_live_output: usize,
    /// FACE_NOT_LIVE below this live probability.
    pub pad_threshold: f32,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            min_face_px: 150.0,
            min_eye_distance_px: 50.0,
            min_border_px: 15.0,
            max_face_share: 0.8,
            second_face_share: 0.4,
            max_yaw_deg: 30.0,
            max_pitch_deg: 30.0,
            min_eye_aspect_ratio: 0.12,
            min_eye_darkness: 0.15,
            min_face_presence: 0.5,
            face_proportion: [0.6, 1.8],
            min_feature_contrast: 5.0,
            pad_enabled: true,
            pad_model: "pad.onnx".into(),
            pad_input_size: 128,
            pad_crop_scale: 2.7,
            pad_channel_order: "rgb".into(),
            pad_mean: [0.0; 3],
            pad_scale: [1.0; 3],
            pad_softmax: true,
            pad_live_output: 0,
            pad_threshold: 0.3,
        }
    }
}

/// The HTTP API (`facegate serve`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub listen: String,
    /// Keys accepted in the `x-api-key` header. More come from `$FACEGATE_API_KEYS`
    /// (comma-separated), `api_key_file` and `--api-key`; with none at all the server refuses
    /// to start unless `--insecure-no-auth` is given.
    pub api_keys: Vec<String>,
    /// File with one key per line (`#` starts a comment). Empty: none.
    pub api_key_file: String,
    /// Wrong keys one client address may send per minute; past that it gets 429
    /// `ERR_RATE_LIMITED` until the minute is over. 0: no limit.
    pub auth_failures_per_minute: u32,
    /// Wrong keys all client addresses together may send per minute; past that every client
    /// without a valid key gets 429 `ERR_RATE_LIMITED` until the minute is over (so many
    /// addresses cannot guess faster than one). A valid key is never throttled. 0: no limit.
    pub auth_failures_per_minute_global: u32,
    /// `GET /health` without a key: "minimal" (status and version only), "full" (everything),
    /// or false (a key is needed). With a key it always shows everything.
    pub public_health: PublicHealth,
    /// Serve `GET /metrics` without a key.
    pub public_metrics: bool,
    /// Serve `GET /docs` and `GET /openapi.json` without a key.
    pub public_docs: bool,
    /// Largest request body in bytes (413 `ERR_PAYLOAD_TOO_LARGE` above it).
    pub max_body_bytes: usize,
    /// Inference workers, one engine each; 0: one per core, at most 4.
    pub inference_workers: usize,
    /// Requests that may wait for a worker; beyond that a request gets 503 `ERR_BUSY` at once.
    pub inference_queue: usize,
    /// Seconds a client is told to wait (`Retry-After`) after `ERR_BUSY`.
    pub busy_retry_after_s: u32,
    /// A second face narrower than this share of the largest one is ignored where one face is
    /// required (`ERR_MULTIPLE_FACES` otherwise).
    pub secondary_face_ratio: f32,
    /// Most persons in one `PUT /persons` request (413 `ERR_PAYLOAD_TOO_LARGE` above it,
    /// counted while the body is parsed).
    pub max_bulk_items: usize,
    /// Open client connections at most; one more is answered 503 `ERR_BUSY` at once and
    /// closed. The systemd unit's `LimitNOFILE` is sized above it.
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers, from the connection's start or the
    /// end of its previous response; it also closes idle keep-alive connections.
    pub header_read_timeout_s: u32,
    /// Seconds a request may take, body upload included (408 `ERR_REQUEST_TIMEOUT` beyond it;
    /// `PUT /persons` gets ten times this). 0: no limit.
    pub request_timeout_s: u32,
    /// Largest response that lists stored images (`include_images=true`), in MiB: images past
    /// it are left out (null) and counted in the `x-facegate-images-omitted` header.
    pub max_response_mib: usize,
    /// PEM certificate chain for HTTPS; with `tls_key_file` the API speaks only HTTPS. Both
    /// are read again on SIGHUP. Empty: plain HTTP (a warning at start when listening on a
    /// non-loopback address).
    pub tls_cert_file: String,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: String,
}

/// Who may read the details of `GET /health`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PublicHealth {
    /// Everyone gets status and version; the rest needs a key.
    #[default]
    Minimal,
    /// Everyone gets everything.
    Full,
    /// A key is needed even for the status.
    Off,
}

impl Serialize for PublicHealth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PublicHealth::Minimal => s.serialize_str("minimal"),
            PublicHealth::Full => s.serialize_str("full"),
            PublicHealth::Off => s.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for PublicHealth {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PublicHealth;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"minimal\", \"full\" or false")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<PublicHealth, E> {
                // `true` was the old spelling of "everything public".
                Ok(if v {
                    PublicHealth::Full
                } else {
                    PublicHealth::Off
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PublicHealth, E> {
                match v {
                    "minimal" => Ok(PublicHealth::Minimal),
                    "full" => Ok(PublicHealth::Full),
                    other => Err(E::custom(format!(
                        "public_health = {other:?}: expected \"minimal\", \"full\" or false"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            api_keys: Vec::new(),
            api_key_file: String::new(),
            auth_failures_per_minute: 20,
            auth_failures_per_minute_global: 100,
            public_health: PublicHealth::Minimal,
            public_metrics: true,
            public_docs: true,
            max_body_bytes: 16 << 20,
            inference_workers: 0,
            inference_queue: 8,
            busy_retry_after_s: 1,
            secondary_face_ratio: 0.4,
            max_bulk_items: 1000,
            max_connections: 512,
            header_read_timeout_s: 10,
            request_timeout_s: 300,
            max_response_mib: 64,
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
        }
    }
}

/// Where a camera's frames come from.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A V4L2 device (USB or CSI camera).
    #[default]
    V4l2,
    /// MJPEG over HTTP (`multipart/x-mixed-replace`), as many IP cameras serve it.
    Mjpeg,
    /// A folder of JPEG/PNG frames (name order) or a single image, for demos and tests.
    Replay,
}

/// Pixel format asked of a V4L2 device.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    #[default]
    Mjpeg,
    Yuyv,
}

/// What liveness a camera requires before a match opens its door.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LivenessMode {
    /// Not checked: every match is accepted (reported as `skipped`).
    Off,
    /// The still-image checks and the PAD model on the track's best frame must pass.
    #[default]
    Still,
    /// As `still`, and the track's landmark motion must show a three-dimensional head.
    Track,
}

/// One camera of `facegate serve` (a `[[cameras]]` table).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CameraConfig {
    pub name: String,
    pub source: SourceKind,
    pub device: String,
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    pub fps: f32,
    pub url: String,
    pub path: String,
    pub replay_loop: bool,
    pub collection: String,
    pub min_similarity_score: f32,
    pub liveness: LivenessMode,
    pub door: String,
    pub detect_every: u32,
    pub min_face_px: f32,
    pub hold_off_s: f32,
    pub decide_after: u32,
    pub decision_timeout_s: f32,
    pub track_lost_s: f32,
}

impl Default for CameraConfig {
    fn default() -> Self {
        Self {
            name: "camera".into(),
            source: SourceKind::V4l2,
            device: "/dev/video0".into(),
            format: PixelFormat::Mjpeg,
            width: 1280,
            height: 720,
            fps: 15.0,
            url: String::new(),
            path: String::new(),
            replay_loop: true,
            collection: "default".into(),
            min_similarity_score: 0.7,
            liveness: LivenessMode::Still,
            door: String::new(),
            detect_every: 1,
            min_face_px: 110.0,
            hold_off_s: 10.0,
            decide_after: 3,
            decision_timeout_s: 3.0,
            track_lost_s: 0.5,
        }
    }
}

/// The MQTT link to door controllers and home automation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub ca_file: String,
    pub client_cert_file: String,
    pub client_key_file: String,
    pub username: String,
    pub password_file: String,
    pub client_id: String,
    pub device_id: String,
    pub topic_prefix: String,
    pub keep_alive_s: u16,
    pub max_packet_kib: usize,
    pub outbox_max_events: usize,
    pub outbox_map_mib: usize,
    pub event_thumbnail: bool,
    pub homeassistant: bool,
    pub discovery_prefix: String,
    pub flush_timeout_s: f32,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 1883,
            tls: false,
            ca_file: String::new(),
            client_cert_file: String::new(),
            client_key_file: String::new(),
            username: String::new(),
            password_file: String::new(),
            client_id: String::new(),
            device_id: String::new(),
            topic_prefix: "facegate".into(),
            keep_alive_s: 15,
            max_packet_kib: 512,
            outbox_max_events: 10_000,
            outbox_map_mib: 256,
            event_thumbnail: false,
            homeassistant: true,
            discovery_prefix: "homeassistant".into(),
            flush_timeout_s: 5.0,
        }
    }
}

impl MqttConfig {
    /// This appliance's name in topics: `device_id`, else the host name.
    pub fn resolved_device_id(&self) -> String {
        if !self.device_id.is_empty() {
            return self.device_id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .unwrap_or_default();
        let host: String = host
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if host.is_empty() {
            "facegate".into()
        } else {
            host
        }
    }
}

/// The LMDB gallery.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Folder of the LMDB store. Empty: `$STATE_DIRECTORY` (set by systemd's
    /// `StateDirectory=`, e.g. /var/lib/facegate), else `./data`.
    pub data_dir: String,
    /// Initial LMDB map size in MiB; the map doubles whenever it fills.
    pub map_size_mib: usize,
    /// The map never grows past this many MiB: a write that needs more fails with
    /// `ERR_DATABASE_ERROR` ("store full") instead of taking the disk or address space.
    pub max_map_mib: usize,
    /// Side in pixels of stored face thumbnails (aligned crops).
    pub thumbnail_px: u32,
    /// JPEG quality of thumbnails.
    pub thumbnail_quality: u8,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_dir: String::new(),
            map_size_mib: 256,
            max_map_mib: 16384,
            thumbnail_px: 160,
            thumbnail_quality: 85,
        }
    }
}

impl StoreConfig {
    /// The data directory this configuration means.
    pub fn resolved_data_dir(&self) -> PathBuf {
        if !self.data_dir.is_empty() {
            return PathBuf::from(&self.data_dir);
        }
        match std::env::var_os("STATE_DIRECTORY") {
            // systemd may pass several, colon-separated; the first is ours.
            Some(v) if !v.is_empty() => {
                PathBuf::from(v.to_string_lossy().split(':').next().unwrap_or("data"))
            }
            _ => PathBuf::from("data"),
        }
    }
}

impl Config {
    /// Load a TOML file; keys it does not name keep their defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let d = &self.detector;
        if !(0.0..=1.0).contains(&d.score_threshold) {
            return Err(ConfigError::Invalid {
                key: "detector.score_threshold",
                value: d.score_threshold.to_string(),
                why: "must be between 0 and 1",
            });
        }
        if !(0.0..=1.0).contains(&d.confirm_below) {
            return Err(ConfigError::Invalid {
                key: "detector.confirm_below",
                value: d.confirm_below.to_string(),
                why: "must be between 0 and 1",
            });
        }
        if d.min_face_px.is_nan() || d.min_face_px < 0.0 {
            return Err(ConfigError::Invalid {
                key: "detector.min_face_px",
                value: d.min_face_px.to_string(),
                why: "must be zero or positive",
            });
        }
        if !(0.0..1.0).contains(&d.nms_iou) || d.nms_iou == 0.0 {
            return Err(ConfigError::Invalid {
                key: "detector.nms_iou",
                value: d.nms_iou.to_string(),
                why: "must be above 0 and below 1",
            });
        }
        if !(d.max_megapixels.is_finite() && d.max_megapixels > 0.0) {
            return Err(ConfigError::Invalid {
                key: "detector.max_megapixels",
                value: d.max_megapixels.to_string(),
                why: "must be positive",
            });
        }
        if !(1..=1 << 20).contains(&d.max_decoded_mib) {
            return Err(ConfigError::Invalid {
                key: "detector.max_decoded_mib",
                value: d.max_decoded_mib.to_string(),
                why: "must be between 1 and 1048576 (1 TiB)",
            });
        }
        if !(d.max_aspect_ratio.is_finite() && d.max_aspect_ratio >= 1.0) {
            return Err(ConfigError::Invalid {
                key: "detector.max_aspect_ratio",
                value: d.max_aspect_ratio.to_string(),
                why: "must be at least 1",
            });
        }
        if d.max_tiles == 0 {
            return Err(ConfigError::Invalid {
                key: "detector.max_tiles",
                value: "0".into(),
                why: "must be at least 1",
            });
        }
        let s = &self.server;
        if s.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid {
                key: "server.listen",
                value: s.listen.clone(),
                why: "must be an address and port such as 127.0.0.1:8080",
            });
        }
        if s.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid {
                key: "server.max_body_bytes",
                value: s.max_body_bytes.to_string(),
                why: "must be at least 1024",
            });
        }
        if s.inference_queue == 0 {
            return Err(ConfigError::Invalid {
                key: "server.inference_queue",
                value: "0".into(),
                why: "must be at least 1",
            });
        }
        for (key, v) in [
            ("server.max_bulk_items", s.max_bulk_items),
            ("server.max_connections", s.max_connections),
            (
                "server.header_read_timeout_s",
                s.header_read_timeout_s as usize,
            ),
            ("server.max_response_mib", s.max_response_mib),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    value: "0".into(),
                    why: "must be at least 1",
                });
            }
        }
        if s.max_connections > 65_536 {
            return Err(ConfigError::Invalid {
                key: "server.max_connections",
                value: s.max_connections.to_string(),
                why: "must be at most 65536",
            });
        }
        if s.max_response_mib > 4096 {
            return Err(ConfigError::Invalid {
                key: "server.max_response_mib",
                value: s.max_response_mib.to_string(),
                why: "must be at most 4096",
            });
        }
        if s.tls_cert_file.is_empty() != s.tls_key_file.is_empty() {
            return Err(ConfigError::Invalid {
                key: "server.tls_key_file",
                value: s.tls_key_file.clone(),
                why: "HTTPS needs both tls_cert_file and tls_key_file",
            });
        }
        if self.store.max_map_mib < self.store.map_size_mib {
            return Err(ConfigError::Invalid {
                key: "store.max_map_mib",
                value: self.store.max_map_mib.to_string(),
                why: "must be at least store.map_size_mib",
            });
        }
        if !(0.0..=1.0).contains(&s.secondary_face_ratio) {
            return Err(ConfigError::Invalid {
                key: "server.secondary_face_ratio",
                value: s.secondary_face_ratio.to_string(),
                why: "must be between 0 and 1",
            });
        }
        if !(32..=1024).contains(&self.store.thumbnail_px) {
            return Err(ConfigError::Invalid {
                key: "store.thumbnail_px",
                value: self.store.thumbnail_px.to_string(),
                why: "must be between 32 and 1024",
            });
        }
        if !(1..=100).contains(&self.store.thumbnail_quality) {
            return Err(ConfigError::Invalid {
                key: "store.thumbnail_quality",
                value: self.store.thumbnail_quality.to_string(),
                why: "must be between 1 and 100",
            });
        }
        if self.store.map_size_mib == 0 {
            return Err(ConfigError::Invalid {
                key: "store.map_size_mib",
                value: "0".into(),
                why: "must be at least 1",
            });
        }
        let l = &self.liveness;
        if !["rgb", "bgr"].contains(&l.pad_channel_order.as_str()) {
            return Err(ConfigError::Invalid {
                key: "liveness.pad_channel_order",
                value: l.pad_channel_order.clone(),
                why: "must be \"rgb\" or \"bgr\"",
            });
        }
        if !(0.0..=1.0).contains(&l.pad_threshold) {
            return Err(ConfigError::Invalid {
                key: "liveness.pad_threshold",
                value: l.pad_threshold.to_string(),
                why: "must be between 0 and 1",
            });
        }
        if !(16..=1024).contains(&l.pad_input_size) {
            return Err(ConfigError::Invalid {
                key: "liveness.pad_input_size",
                value: l.pad_input_size.to_string(),
                why: "must be between 16 and 1024",
            });
        }
        if let Some(bad) = self
            .inference
            .execution_providers
            .iter()
            .find(|p| !KNOWN_PROVIDERS.contains(&p.as_str()))
        {
            return Err(ConfigError::Invalid {
                key: "inference.execution_providers",
                value: bad.clone(),
                why: "unknown provider (known: cpu, cuda, tensorrt, xnnpack, acl, openvino, qnn)",
            });
        }
        self.validate_cameras()?;
        self.validate_mqtt()?;
        if self.inference.execution_providers.is_empty() {
            return Err(ConfigError::Invalid {
                key: "inference.execution_providers",
                value: "[]".into(),
                why: "list at least one provider (\"cpu\" always works)",
            });
        }
        Ok(())
    }

    fn validate_cameras(&self) -> Result<(), ConfigError> {
        let invalid = |key, value: String, why| Err(ConfigError::Invalid { key, value, why });
        let mut names = std::collections::HashSet::new();
        for c in &self.cameras {
            if !is_topic_segment(&c.name) {
                return invalid(
                    "cameras.name",
                    c.name.clone(),
                    "must be 1-64 letters, digits, '-' or '_' (it is an MQTT topic level)",
                );
            }
            if !names.insert(c.name.as_str()) {
                return invalid("cameras.name", c.name.clone(), "two cameras have this name");
            }
            if !c.door.is_empty() && !is_topic_segment(&c.door) {
                return invalid(
                    "cameras.door",
                    c.door.clone(),
                    "must be empty or 1-64 letters, digits, '-' or '_'",
                );
            }
            match c.source {
                SourceKind::Replay if c.path.is_empty() => {
                    return invalid(
                        "cameras.path",
                        String::new(),
                        "a replay camera needs the path of a folder or an image",
                    );
                }
                SourceKind::Mjpeg if !c.url.starts_with("http://") => {
                    return invalid(
                        "cameras.url",
                        // The message reaches the log: never the URL's credentials.
                        crate::redact::redact_urls(&c.url),
                        "an mjpeg camera needs an http:// URL",
                    );
                }
                SourceKind::V4l2 if c.device.is_empty() => {
                    return invalid(
                        "cameras.device",
                        String::new(),
                        "a v4l2 camera needs a device path",
                    );
                }
                _ => {}
            }
            if !(0.0..=240.0).contains(&c.fps) {
                return invalid(
                    "cameras.fps",
                    c.fps.to_string(),
                    "must be between 0 and 240",
                );
            }
            if c.width == 0 || c.height == 0 {
                return invalid(
                    "cameras.width",
                    format!("{}x{}", c.width, c.height),
                    "width and height must be positive",
                );
            }
            if !(0.0..=1.0).contains(&c.min_similarity_score) {
                return invalid(
                    "cameras.min_similarity_score",
                    c.min_similarity_score.to_string(),
                    "must be between 0 and 1",
                );
            }
            if c.detect_every == 0 {
                return invalid("cameras.detect_every", "0".into(), "must be at least 1");
            }
            if c.decide_after == 0 {
                return invalid("cameras.decide_after", "0".into(), "must be at least 1");
            }
            if c.min_face_px.is_nan() || c.min_face_px < 16.0 {
                return invalid(
                    "cameras.min_face_px",
                    c.min_face_px.to_string(),
                    "must be at least 16",
                );
            }
            for (key, v) in [
                ("cameras.hold_off_s", c.hold_off_s),
                ("cameras.decision_timeout_s", c.decision_timeout_s),
                ("cameras.track_lost_s", c.track_lost_s),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    return invalid(
                        key,
                        v.to_string(),
                        "must be a non-negative number of seconds",
                    );
                }
            }
        }
        Ok(())
    }

    fn validate_mqtt(&self) -> Result<(), ConfigError> {
        let m = &self.mqtt;
        let invalid = |key, value: String, why| Err(ConfigError::Invalid { key, value, why });
        if m.topic_prefix.is_empty()
            || m.topic_prefix.contains(['#', '+'])
            || m.topic_prefix.ends_with('/')
        {
            return invalid(
                "mqtt.topic_prefix",
                m.topic_prefix.clone(),
                "must be non-empty, without '#', '+' or a trailing '/'",
            );
        }
        if !m.device_id.is_empty() && !is_topic_segment(&m.device_id) {
            return invalid(
                "mqtt.device_id",
                m.device_id.clone(),
                "must be empty or 1-64 letters, digits, '-' or '_'",
            );
        }
        if m.tls && m.ca_file.is_empty() {
            return invalid(
                "mqtt.ca_file",
                String::new(),
                "TLS needs the broker's CA certificate (PEM)",
            );
        }
        if m.client_cert_file.is_empty() != m.client_key_file.is_empty()
            || (!m.client_cert_file.is_empty() && !m.tls)
        {
            return invalid(
                "mqtt.client_cert_file",
                m.client_cert_file.clone(),
                "a client certificate needs client_key_file too, and tls = true",
            );
        }
        if m.max_packet_kib < 16 {
            return invalid(
                "mqtt.max_packet_kib",
                m.max_packet_kib.to_string(),
                "must be at least 16",
            );
        }
        if m.outbox_max_events == 0 {
            return invalid("mqtt.outbox_max_events", "0".into(), "must be at least 1");
        }
        if m.outbox_map_mib == 0 {
            return invalid("mqtt.outbox_map_mib", "0".into(), "must be at least 1");
        }
        if m.keep_alive_s < 5 {
            return invalid(
                "mqtt.keep_alive_s",
                m.keep_alive_s.to_string(),
                "must be at least 5",
            );
        }
        if !(m.flush_timeout_s.is_finite() && m.flush_timeout_s >= 0.0) {
            return invalid(
                "mqtt.flush_timeout_s",
                m.flush_timeout_s.to_string(),
                "must be a non-negative number of seconds",
            );
        }
        Ok(())
    }

    /// The defaults as a commented TOML document (what `facegate print-config` prints).
    pub fn default_toml() -> &'static str {
        DEFAULT_TOML
    }
}

/// 1 to 64 characters that are safe as one MQTT topic level and in Home Assistant ids.
pub fn is_topic_segment(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The built-in defaults with the documentation of every key. Tests keep it equal to
/// `Config::default()` and complete.
const DEFAULT_TOML: &str = r#"# facegate configuration: the built-in defaults. Every key is optional; a file only
# needs the keys it changes, and an unknown key is an error.

# Cameras watched by `facegate serve`: none by default. Each is a [[cameras]] table; the
# commented example at the end of this file lists every key with its default.
cameras = []

[inference]
# Path of libonnxruntime.so. Empty: $ORT_DYLIB_PATH, then <model_dir>/libonnxruntime.so (what
# `make models` links), then /usr/lib/facegate/libonnxruntime.so.
ort_library = ""
# Folder with the converted models. Empty: the checkout's models/ when the binary was built
# from one, else /usr/share/facegate/models.
model_dir = ""
# Execution providers in order of preference: cpu, cuda, tensorrt, xnnpack, acl, openvino,
# qnn. Non-CPU providers need the cargo feature of the same name and an ONNX Runtime build that
# has them; one that fails falls back to the next with a warning.
execution_providers = ["cpu"]
# Threads per ONNX Runtime session; 0 lets ONNX Runtime choose (one per core).
threads = 0
# Which network makes templates: "arcface512" (accurate) or "dlib128" (6.5x cheaper per face,
# for weak boards). Templates of one cannot be compared with the other's.
embedder = "arcface512"
# Precision of the embedder: "auto" (int8 for arcface512, whose quantised model kept its
# accuracy on the evaluation set; fp32 for dlib128), "fp32" or "int8". Templates of one
# precision are not comparable with the other's: the store asks to re-enrol.
precision = "auto"
# Average each face's embedding with the embedding of its mirrored chip (same batch).
mirror_average = true
# Run FaceMesh a second time on a crop re-centred from its first landmarks.
refine_landmarks = false
# Folder for execution-provider caches (TensorRT engines). Empty: ~/.cache/facegate/ep.
cache_dir = ""

[detector]
# Which BlazeFace models run: "both", "full" (faces up to ~5 m) or "short" (selfie distance).
range = "both"
# Minimum detection score for a face to count.
score_threshold = 0.5
# Detections scoring below this are kept only when FaceMesh confirms a face in them.
confirm_below = 0.65
# Boxes overlapping more than this (intersection over union) are one face.
nms_iou = 0.3
# Smallest face to find, in pixels. Below about 1/12 of the frame's longer side this adds a
# tiled search whose cost grows with the frame area: a door camera sets its smallest face.
min_face_px = 24.0
# Larger images are refused before decoding (HTTP: 413 ERR_IMAGE_TOO_LARGE).
max_megapixels = 40.0
# Memory the decoded pixels of one image may take, in MiB: width x height x bytes per pixel of
# its format (a 16-bit RGBA PNG takes 8), plus the RGB copy. Checked from the header before
# decoding (HTTP: 413 ERR_IMAGE_TOO_LARGE).
max_decoded_mib = 160
# Longer side over shorter side; narrower strips are refused before decoding (413).
max_aspect_ratio = 20.0
# Most tiles of the small-face search on one image; beyond that it looks for larger faces, so
# every image is answered within a bounded amount of work.
max_tiles = 64

[server]
# Address and port of the HTTP API.
listen = "127.0.0.1:8080"
# Keys accepted in the x-api-key header. More come from $FACEGATE_API_KEYS (comma-separated),
# api_key_file and --api-key. With no key at all `facegate serve` refuses to start unless
# --insecure-no-auth is given.
api_keys = []
# File with one key per line ('#' starts a comment). Empty: none.
api_key_file = ""
# Wrong keys one client address may send per minute; past that it gets 429 ERR_RATE_LIMITED
# until the minute is over. 0: no limit.
auth_failures_per_minute = 20
# Wrong keys all client addresses together may send per minute; past that every client without
# a valid key gets 429 until the minute is over. A valid key is never throttled. 0: no limit.
auth_failures_per_minute_global = 100
# GET /health without a key: "minimal" (status and version), "full" (everything) or false (a
# key is needed). With a key it always shows everything.
public_health = "minimal"
# Serve GET /metrics without a key.
public_metrics = true
# Serve GET /docs and GET /openapi.json without a key.
public_docs = true
# Largest request body in bytes (413 ERR_PAYLOAD_TOO_LARGE above it).
max_body_bytes = 16777216
# Inference workers, one engine each; 0: one per core, at most 4.
inference_workers = 0
# Requests that may wait for a worker; beyond that a request gets 503 ERR_BUSY at once.
inference_queue = 8
# Seconds a client is told to wait (Retry-After) after ERR_BUSY.
busy_retry_after_s = 1
# Where one face is required, a second face narrower than this share of the largest one is
# ignored; a larger one is ERR_MULTIPLE_FACES.
secondary_face_ratio = 0.4
# Most persons in one PUT /persons request (413 ERR_PAYLOAD_TOO_LARGE above it).
max_bulk_items = 1000
# Open client connections at most; one more gets 503 ERR_BUSY at once and is closed. The
# systemd unit's LimitNOFILE is sized above it.
max_connections = 512
# Seconds a client has to send a request's headers (from connecting, or from the end of its
# previous response: idle keep-alive connections are closed after it too).
header_read_timeout_s = 10
# Seconds a request may take, body upload included (408 ERR_REQUEST_TIMEOUT beyond it;
# PUT /persons gets ten times this). 0: no limit.
request_timeout_s = 300
# Largest response listing stored images (include_images=true), in MiB; images past it are left
# out (null) and counted in the x-facegate-images-omitted header.
max_response_mib = 64
# PEM certificate chain and private key for HTTPS (both, or neither); read again on SIGHUP.
# Empty: plain HTTP, with a warning at every start when listening on a non-loopback address.
tls_cert_file = ""
# (the private key of tls_cert_file)
tls_key_file = ""

[liveness]
# Still-image checks run by check_liveness and POST /liveness (upstream capture requirements).
# FACE_TOO_SMALL below this face-box side, in pixels.
min_face_px = 150.0
# FACE_TOO_SMALL below this distance between the eye centres, in pixels.
min_eye_distance_px = 50.0
# FACE_CLOSE_TO_BORDER when the face box is nearer an image edge, in pixels.
min_border_px = 15.0
# FACE_TOO_CLOSE when the face box is wider than this share of the image width.
max_face_share = 0.8
# TOO_MANY_FACES when another face is at least this share of the main face's width.
second_face_share = 0.4
# FACE_ANGLE_TOO_LARGE beyond this head yaw, in degrees.
max_yaw_deg = 30.0
# FACE_ANGLE_TOO_LARGE beyond this head pitch, in degrees.
max_pitch_deg = 30.0
# EYES_CLOSED when both eyes' aspect ratio (lid opening over eye width) is below this.
min_eye_aspect_ratio = 0.12
# EYES_CLOSED when, on both eyes, less than this share of a box around the eye is darker than
# half the cheek's grey: no iris or pupil in view.
min_eye_darkness = 0.15
# FACE_IS_OCCLUDED below this FaceMesh face-presence probability.
min_face_presence = 0.5
# FACE_IS_OCCLUDED when eyes-to-mouth distance over eye distance is outside this range.
face_proportion = [0.6, 1.8]
# FACE_IS_OCCLUDED when the grey-level spread (standard deviation, 0-255) around an eye or the
# mouth is below this: a uniform occluder over a feature.
min_feature_contrast = 5.0
# Run the presentation-attack (PAD) model on faces that pass the checks above. Without it no
# face is ever reported live.
pad_enabled = true
# PAD model file (in inference.model_dir unless absolute) and its input convention, so that
# another model of the MiniFASNet family can be swapped in without code changes:
pad_model = "pad.onnx"
# side of its square input,
pad_input_size = 128
# the crop it expects (the face box times this, about its centre),
pad_crop_scale = 2.7
# channel order of the planes ("rgb" or "bgr"),
pad_channel_order = "rgb"
# input value = (pixel - mean) * scale per channel, pixels 0-255,
pad_mean = [0.0, 0.0, 0.0]
# (the scale of each channel)
pad_scale = [1.0, 1.0, 1.0]
# whether to apply softmax to its outputs,
pad_softmax = true
# and which output is the live class.
pad_live_output = 0
# FACE_NOT_LIVE below this live probability.
pad_threshold = 0.3

[store]
# Folder of the LMDB store. Empty: $STATE_DIRECTORY (set by systemd's StateDirectory=, e.g.
# /var/lib/facegate), else ./data.
data_dir = ""
# Initial LMDB map size in MiB; the map doubles whenever it fills.
map_size_mib = 256
# Ceiling of the map in MiB: past it writes fail with ERR_DATABASE_ERROR ("store full").
max_map_mib = 16384
# Side in pixels of stored face thumbnails (aligned crops, JPEG).
thumbnail_px = 160
# JPEG quality of thumbnails.
thumbnail_quality = 85

[mqtt]
# Publish decisions to an MQTT broker (events, door access, availability, Home Assistant).
enabled = false
# Broker address.
host = "127.0.0.1"
# Broker port (8883 is the usual TLS port).
port = 1883
# TLS to the broker (rustls); needs ca_file.
tls = false
# PEM file of the CA that signed the broker's certificate.
ca_file = ""
# PEM client certificate (chain) for brokers that authenticate clients by certificate
# (mosquitto's require_certificate); needs tls and client_key_file. Empty: none.
client_cert_file = ""
# PEM private key of client_cert_file.
client_key_file = ""
# User name; empty: connect without credentials.
username = ""
# File whose first line is the password (or $FACEGATE_MQTT_PASSWORD).
password_file = ""
# MQTT client id (the broker keeps this session across restarts). Empty: facegate-<device_id>.
client_id = ""
# This appliance's topic level. Empty: the host name.
device_id = ""
# Topics: <topic_prefix>/<device_id>/status, .../<camera>/event, .../<door>/access.
topic_prefix = "facegate"
# Seconds between keep-alive pings; the broker publishes the Last Will ("offline") after 1.5x.
keep_alive_s = 15
# Largest MQTT packet in KiB, both ways (rumqttc's 10 KiB default drops the connection on a
# thumbnail). An event that would exceed it is sent without its thumbnail, then without the
# person's metadata, then with the name cut ("truncated": true); a message the broker still
# refuses is set aside as a dead letter (facegate_outbox_dead_letters_total) so that the
# messages behind it go out.
max_packet_kib = 512
# Messages kept in the durable outbox (LMDB, <data_dir>/outbox) while the broker is away;
# past this the oldest are dropped and counted (facegate_outbox_dropped_total).
outbox_max_events = 10000
# LMDB map size of the outbox in MiB (address space, not memory).
outbox_map_mib = 256
# Put a base64 JPEG face thumbnail into each event.
event_thumbnail = false
# Announce a Home Assistant device (MQTT discovery), again whenever HA comes online.
homeassistant = true
# Home Assistant's discovery prefix (it announces itself on <prefix>/status).
discovery_prefix = "homeassistant"
# On shutdown, seconds to wait for the broker to acknowledge the outbox before exiting.
flush_timeout_s = 5.0

# An example camera with every key at its default (uncomment and adapt):
# [[cameras]]
# # Name in topics, /health and metrics (letters, digits, '-', '_').
# name = "camera"
# # "v4l2" (device), "mjpeg" (url: MJPEG over HTTP) or "replay" (path: folder or image).
# source = "v4l2"
# # V4L2 device path.
# device = "/dev/video0"
# # V4L2 pixel format: "mjpeg" or "yuyv".
# format = "mjpeg"
# # V4L2 frame size asked for (the driver may pick the nearest it has).
# width = 1280
# # (height of the frame size)
# height = 720
# # V4L2 frames per second asked for; replay pace (0: as fast as the pipeline takes them).
# fps = 15.0
# # MJPEG stream URL (http://...).
# url = ""
# # Replay: a folder of JPEG/PNG frames (played in name order) or one image.
# path = ""
# # Replay: start again at the end (false: play once, then the camera is "ended").
# replay_loop = true
# # Collection searched for this camera's faces.
# collection = "default"
# # A match needs a fused similarity_score at or above this (0.7 = FMR 1e-5, see docs/accuracy.md).
# min_similarity_score = 0.7
# # Liveness required before a match: "off", "still" (still checks + PAD on the best frame)
# # or "track" (also 3-D head motion over the track).
# liveness = "still"
# # Door this camera guards: access messages go to <prefix>/<device>/<door>/access. Empty: none.
# door = ""
# # Run the detector on every k-th frame (tracks coast in between).
# detect_every = 1
# # Smallest face side in pixels the detector looks for on this camera (from 1/12 of the
# # frame's longer side up, no tiled search is needed: 107 px at 1280x720).
# min_face_px = 110.0
# # No second event for the same person on this camera within this many seconds.
# hold_off_s = 10.0
# # Embedded frames of a track without a match before it is declared unknown.
# decide_after = 3
# # A track still waiting for liveness evidence after this many seconds is decided with
# # what it has (undetermined).
# decision_timeout_s = 3.0
# # A track not seen for this many seconds has ended.
# track_lost_s = 0.5
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_defaults_parse_back_to_the_defaults() {
        let parsed = Config::parse(Config::default_toml()).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn printed_defaults_name_and_document_every_key() {
        let all = toml::to_string(&Config::default()).unwrap();
        let lines: Vec<&str> = DEFAULT_TOML.lines().collect();
        for line in all.lines().filter(|l| l.contains(" = ")) {
            let key = line.split(" = ").next().unwrap();
            let at = lines
                .iter()
                .position(|l| l.starts_with(&format!("{key} = ")))
                .unwrap_or_else(|| panic!("print-config lacks {key}"));
            assert!(
                at > 0 && lines[at - 1].starts_with('#'),
                "{key} has no comment"
            );
        }
    }

    #[test]
    fn printed_defaults_document_every_camera_key_in_the_example() {
        let all = toml::to_string(&CameraConfig::default()).unwrap();
        let lines: Vec<&str> = DEFAULT_TOML.lines().collect();
        for line in all.lines().filter(|l| l.contains(" = ")) {
            let at = lines
                .iter()
                .position(|l| *l == format!("# {line}"))
                .unwrap_or_else(|| panic!("the camera example lacks `{line}`"));
            assert!(lines[at - 1].starts_with("# #"), "{line} has no comment");
        }
    }

    #[test]
    fn a_camera_table_parses_and_bad_camera_keys_are_named() {
        let c = Config::parse(
            "[[cameras]]\nname = \"front\"\nsource = \"replay\"\npath = \"/tmp/x\"\ndoor = \"main\"\n",
        )
        .unwrap();
        assert_eq!(c.cameras.len(), 1);
        assert_eq!(c.cameras[0].door, "main");
        assert_eq!(c.cameras[0].hold_off_s, 10.0);
        for (text, key) in [
            ("[[cameras]]\nsource = \"replay\"\n", "cameras.path"),
            ("[[cameras]]\nname = \"a/b\"\n", "cameras.name"),
            (
                "[[cameras]]\nname = \"a\"\n[[cameras]]\nname = \"a\"\n",
                "cameras.name",
            ),
            (
                "[[cameras]]\nmin_similarity_score = 2.0\n",
                "cameras.min_similarity_score",
            ),
            ("[mqtt]\ntopic_prefix = \"a/#\"\n", "mqtt.topic_prefix"),
            ("[mqtt]\ntls = true\n", "mqtt.ca_file"),
        ] {
            let err = Config::parse(text).unwrap_err();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn the_packaged_config_is_valid() {
        let c = Config::parse(include_str!("../../../systemd/facegate.toml")).unwrap();
        assert_eq!(c.server.api_key_file, "/etc/facegate/api-keys");
        assert!(
            c.store.data_dir.is_empty(),
            "the package uses systemd's StateDirectory"
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Config::parse("[detector]\nscore_treshold = 0.4\n").unwrap_err();
        assert!(err.contains("score_treshold"), "{err}");
    }

    #[test]
    fn a_partial_file_keeps_the_other_defaults() {
        let c = Config::parse("[inference]\nembedder = \"dlib128\"\n").unwrap();
        assert_eq!(c.inference.embedder, EmbedderKind::Dlib128);
        assert_eq!(c.detector, DetectorConfig::default());
    }

    #[test]
    fn out_of_range_values_are_rejected_with_the_key_named() {
        for (text, key) in [
            (
                "[detector]\nscore_threshold = 1.5\n",
                "detector.score_threshold",
            ),
            (
                "[detector]\nconfirm_below = -0.1\n",
                "detector.confirm_below",
            ),
            ("[detector]\nmin_face_px = -3.0\n", "detector.min_face_px"),
            ("[detector]\nnms_iou = 1.0\n", "detector.nms_iou"),
            (
                "[detector]\nmax_megapixels = 0.0\n",
                "detector.max_megapixels",
            ),
            (
                "[inference]\nexecution_providers = [\"gpu\"]\n",
                "inference.execution_providers",
            ),
            (
                "[inference]\nexecution_providers = []\n",
                "inference.execution_providers",
            ),
            (
                "[server]\nmax_connections = 100000\n",
                "server.max_connections",
            ),
            ("[server]\nmax_bulk_items = 0\n", "server.max_bulk_items"),
            (
                "[server]\ntls_cert_file = \"/c.pem\"\n",
                "server.tls_key_file",
            ),
            ("[store]\nmax_map_mib = 10\n", "store.max_map_mib"),
            (
                "[detector]\nmax_megapixels = nan\n",
                "detector.max_megapixels",
            ),
            (
                "[mqtt]\nclient_cert_file = \"/c.pem\"\n",
                "mqtt.client_cert_file",
            ),
        ] {
            let err = Config::parse(text).unwrap_err();
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
