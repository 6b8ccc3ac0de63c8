//! The one configuration file. Every key has a documented default; `facegate print-config`
//! prints them all (`default.toml`, kept equal to the code by the tests), and a file only
//! needs the keys it changes. Unknown keys are an error, so a typo never silently falls back
//! to a default; every invalid value of a file is reported at once, each with its key.
//!
//! One module per section; [`Config::resolve`] is the one place where the file, the
//! environment and the command line meet.

mod access;
mod camera;
mod detector;
mod door;
mod events;
mod fleet;
mod inference;
mod liveness;
mod mqtt;
mod server;
mod store;
mod strangers;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use access::{AccessConfig, DoorAccessConfig, ScheduleConfig};
pub use camera::{CameraConfig, LivenessMode, PixelFormat, SourceKind};
pub use detector::{DetectorConfig, DetectorRange};
pub use door::{DoorConfig, RelayKind};
pub use events::EventsConfig;
pub use fleet::FleetConfig;
pub use inference::{EmbedderKind, ExecutionProvider, InferenceConfig, Precision};
pub use liveness::{ChannelOrder, LivenessConfig};
pub use mqtt::MqttConfig;
pub use server::{PublicHealth, ServerConfig};
pub use store::StoreConfig;
pub use strangers::{StrangersConfig, MAX_FACES_KEPT};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(Problems),
    #[error("cannot read server.api_key_file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One invalid value: its key, the value (never a secret) and what it must be.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// `section.key` (`cameras.key` for any camera).
    pub key: &'static str,
    /// The value as written, with credentials redacted.
    pub value: String,
    /// What the value must be.
    pub why: &'static str,
}

/// Every invalid value of a configuration, gathered by each section's `validate`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn add(&mut self, key: &'static str, value: String, why: &'static str) {
        self.0.push(Problem { key, value, why });
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() > 1 {
            write!(f, "{} problems: ", self.0.len())?;
        }
        for (n, p) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str("; ")?;
            }
            write!(f, "config key {} = {}: {}", p.key, p.value, p.why)?;
        }
        Ok(())
    }
}

/// A configured path for a message: the path, or empty when unset.
pub fn path_text(path: &Option<PathBuf>) -> String {
    path.as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Serde for an optional path written as a string, where the empty string means "not set"
/// (the documented defaults print every key, unset paths as `""`).
mod optional_path {
    use std::path::PathBuf;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match path {
            Some(p) => s.serialize_str(&p.to_string_lossy()),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        let text = String::deserialize(d)?;
        Ok((!text.is_empty()).then(|| PathBuf::from(text)))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[inference]`: ONNX Runtime, its providers and the embedder.
    pub inference: InferenceConfig,
    /// `[detector]`: face detection and decoding limits.
    pub detector: DetectorConfig,
    /// `[server]`: the HTTP API.
    pub server: ServerConfig,
    /// `[store]`: the LMDB gallery.
    pub store: StoreConfig,
    /// `[liveness]`: still-image liveness checks and the PAD model.
    pub liveness: LivenessConfig,
    /// `[mqtt]`: the link to door controllers.
    pub mqtt: MqttConfig,
    /// `[access]`: access messages, schedules and door defaults.
    pub access: AccessConfig,
    /// `[door]`: the door controller (`facegate door`).
    pub door: DoorConfig,
    /// `[events]`: the audit trail.
    pub events: EventsConfig,
    /// `[strangers]`: persistent ids for unknown faces.
    pub strangers: StrangersConfig,
    /// `[fleet]`: the gallery replicated between the appliances of a site.
    pub fleet: FleetConfig,
    /// The cameras `facegate serve` watches (`[[cameras]]` tables); none by default.
    pub cameras: Vec<CameraConfig>,
}

/// What the command line adds to the configuration file.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--embedder`.
    pub embedder: Option<EmbedderKind>,
    /// `--listen` (serve).
    pub listen: Option<SocketAddr>,
    /// `--data-dir` (serve).
    pub data_dir: Option<PathBuf>,
    /// `--api-key` flags of a command that serves. `None` for the other commands: their keys
    /// are not gathered, so an unreadable key file does not stop `facegate doctor`.
    pub api_keys: Option<Vec<String>>,
}

/// The built-in defaults with the documentation of every key.
const DEFAULT_TOML: &str = include_str!("default.toml");

impl Config {
    /// The configuration a command runs with: `file` (or the defaults), then the flags; for a
    /// command that serves, `server.api_keys` gathers every key: the file's, `env`'s
    /// `FACEGATE_API_KEYS` (comma-separated), `server.api_key_file`'s and the flags', blank
    /// ones dropped.
    pub fn resolve(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        flags: &Flags,
    ) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(kind) = flags.embedder {
            config.inference.embedder = kind;
        }
        if let Some(addr) = flags.listen {
            config.server.listen = addr;
        }
        // An empty --data-dir means "not set", as an empty store.data_dir does.
        if let Some(dir) = flags
            .data_dir
            .as_ref()
            .filter(|d| !d.as_os_str().is_empty())
        {
            config.store.data_dir = Some(dir.clone());
        }
        if let Some(flag_keys) = &flags.api_keys {
            let s = &mut config.server;
            if let Some(list) = env("FACEGATE_API_KEYS") {
                s.api_keys
                    .extend(list.split(',').map(|k| k.trim().to_owned()));
            }
            if let Some(path) = &s.api_key_file {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::KeyFile {
                        path: path.clone(),
                        source,
                    })?;
                s.api_keys.extend(parse_key_file(&text));
            }
            s.api_keys.extend(flag_keys.iter().cloned());
            s.api_keys.retain(|k| !k.trim().is_empty());
        }
        Ok(config)
    }

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

    /// Parse and validate a configuration. A value of the wrong type names its key with its
    /// section (`server.listen: ...`); invalid values are all reported together.
    pub fn parse(text: &str) -> Result<Self, String> {
        let deserializer = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." || inner.contains(&path) {
                inner
            } else {
                format!("{path}: {inner}")
            }
        })?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// Every invalid value of every section, at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        self.inference.validate(&mut p);
        self.detector.validate(&mut p);
        self.server.validate(&mut p);
        self.store.validate(&mut p);
        self.liveness.validate(&mut p);
        self.mqtt.validate(&mut p);
        self.access.validate(&mut p);
        self.door.validate(&mut p);
        self.events.validate(&mut p);
        self.strangers.validate(&mut p);
        self.fleet.validate(&mut p, self.mqtt.enabled);
        camera::validate_all(&self.cameras, &mut p);
        if p.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(p))
        }
    }

    /// The defaults as a commented TOML document (what `facegate print-config` prints).
    pub fn default_toml() -> &'static str {
        DEFAULT_TOML
    }
}

/// Keys from a key file: one per line, `#` comments and blank lines ignored.
pub fn parse_key_file(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Check a table of trusted appliances (`device_id = "<Ed25519 public key, base64>"`): each id
/// a device id, each key a key. Shared by door.trusted_keys and fleet.trusted_devices.
fn validate_trusted_keys(
    p: &mut Problems,
    key: &'static str,
    devices: &std::collections::BTreeMap<String, String>,
) {
    for (device, public_key) in devices {
        if !is_topic_segment(device) {
            p.add(
                key,
                device.clone(),
                "must be a device id: 1 to 64 letters, digits, '-' or '_' (mqtt.device_id of \
                 the appliance)",
            );
        }
        if crate::access::device_key::parse_public_key(public_key).is_err() {
            p.add(
                key,
                format!("{device} = {public_key:?}"),
                "must be a base64 Ed25519 public key (44 characters, from the appliance's \
                 /health access.public_key, facegate doctor or <prefix>/<device_id>/pubkey)",
            );
        }
    }
}

/// 1 to 64 characters that are safe as one MQTT topic level and in Home Assistant ids.
pub fn is_topic_segment(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

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
        let c = Config::parse(include_str!("../../../../systemd/facegate.toml")).unwrap();
        assert_eq!(
            c.server.api_key_file.as_deref(),
            Some(Path::new("/etc/facegate/api-keys"))
        );
        assert!(
            c.store.data_dir.is_none(),
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
            (
                "[detector]\nborder_score_threshold = 1.2\n",
                "detector.border_score_threshold",
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

    #[test]
    fn every_problem_of_a_file_is_reported_at_once() {
        let err = Config::parse(
            "[detector]\nscore_threshold = 1.5\nmax_tiles = 0\n[mqtt]\nkeep_alive_s = 1\n\
             [[cameras]]\nname = \"a/b\"\ndetect_every = 0\n",
        )
        .unwrap_err();
        for key in [
            "detector.score_threshold",
            "detector.max_tiles",
            "mqtt.keep_alive_s",
            "cameras.name",
            "cameras.detect_every",
        ] {
            assert!(err.contains(key), "{key} missing from: {err}");
        }
        assert!(err.contains("5 problems"), "{err}");
    }

    #[test]
    fn a_typed_key_with_a_wrong_value_is_named_with_its_section() {
        for (text, key) in [
            ("[server]\nlisten = \"localhost\"\n", "server.listen"),
            (
                "[liveness]\npad_channel_order = \"grb\"\n",
                "liveness.pad_channel_order",
            ),
            ("[[cameras]]\nsource = \"usb\"\n", "cameras[0].source"),
        ] {
            let err = Config::parse(text).unwrap_err();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn empty_paths_mean_none_and_print_as_empty() {
        let c =
            Config::parse("[server]\napi_key_file = \"\"\n[store]\ndata_dir = \"/d\"\n").unwrap();
        assert_eq!(c.server.api_key_file, None);
        assert_eq!(c.store.data_dir, Some(PathBuf::from("/d")));
        let printed = toml::to_string(&c).unwrap();
        assert!(printed.contains("api_key_file = \"\""), "{printed}");
    }

    #[test]
    fn keys_are_gathered_from_the_file_the_environment_the_key_file_and_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("keys");
        std::fs::write(&key_file, "# operators\nfrom-file\n\n  spaced  # note\n").unwrap();
        let config = dir.path().join("facegate.toml");
        std::fs::write(
            &config,
            format!("[server]\napi_keys = [\"in-config\", \" \"]\napi_key_file = {key_file:?}\n"),
        )
        .unwrap();
        let env = |name: &str| (name == "FACEGATE_API_KEYS").then(|| "a, b,,".to_owned());
        let flags = Flags {
            api_keys: Some(vec!["flag".into()]),
            ..Flags::default()
        };
        let c = Config::resolve(Some(&config), env, &flags).unwrap();
        assert_eq!(
            c.server.api_keys,
            ["in-config", "a", "b", "from-file", "spaced", "flag"]
        );
        // A command that does not serve neither reads the key file nor needs it readable.
        std::fs::remove_file(&key_file).unwrap();
        let c = Config::resolve(Some(&config), env, &Flags::default()).unwrap();
        assert_eq!(c.server.api_keys, ["in-config", " "]);
        let err = Config::resolve(Some(&config), env, &flags).unwrap_err();
        assert!(err.to_string().contains("server.api_key_file"), "{err}");
    }

    #[test]
    fn flags_override_the_file() {
        let flags = Flags {
            embedder: Some(EmbedderKind::Dlib128),
            listen: Some("0.0.0.0:9000".parse().unwrap()),
            data_dir: Some(PathBuf::from("/srv/fg")),
            api_keys: None,
        };
        let c = Config::resolve(None, |_: &str| None, &flags).unwrap();
        assert_eq!(c.inference.embedder, EmbedderKind::Dlib128);
        assert_eq!(c.server.listen.port(), 9000);
        assert_eq!(c.store.data_dir, Some(PathBuf::from("/srv/fg")));
    }
}
