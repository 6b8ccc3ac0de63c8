//! `[server]`: the HTTP API, its keys and its limits.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Problems;

/// The HTTP API (`facegate serve`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// Keys accepted in the `x-api-key` header. More come from `$FACEGATE_API_KEYS`
    /// (comma-separated), `api_key_file` and `--api-key`; with none at all the server refuses
    /// to start unless `--insecure-no-auth` is given.
    pub api_keys: Vec<String>,
    /// File with one key per line (`#` starts a comment). Empty: none.
    #[serde(with = "super::optional_path")]
    pub api_key_file: Option<PathBuf>,
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
    /// Where one face is required, another face at least this share of the width of the face
    /// used is `ERR_MULTIPLE_FACES`, unless it is a bystander (`engine::one_face`).
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
    #[serde(with = "super::optional_path")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    #[serde(with = "super::optional_path")]
    pub tls_key_file: Option<PathBuf>,
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
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_keys: Vec::new(),
            api_key_file: None,
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
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

impl ServerConfig {
    /// Add every problem of this section to `p`.
    pub(super) fn validate(&self, p: &mut Problems) {
        let s = self;
        if s.max_body_bytes < 1024 {
            p.add(
                "server.max_body_bytes",
                s.max_body_bytes.to_string(),
                "must be at least 1024",
            );
        }
        if s.inference_queue == 0 {
            p.add("server.inference_queue", "0".into(), "must be at least 1");
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
                p.add(key, "0".into(), "must be at least 1");
            }
        }
        if s.max_connections > 65_536 {
            p.add(
                "server.max_connections",
                s.max_connections.to_string(),
                "must be at most 65536",
            );
        }
        if s.max_response_mib > 4096 {
            p.add(
                "server.max_response_mib",
                s.max_response_mib.to_string(),
                "must be at most 4096",
            );
        }
        if s.tls_cert_file.is_some() != s.tls_key_file.is_some() {
            p.add(
                "server.tls_key_file",
                super::path_text(&s.tls_key_file),
                "HTTPS needs both tls_cert_file and tls_key_file",
            );
        }
        if !(0.0..=1.0).contains(&s.secondary_face_ratio) {
            p.add(
                "server.secondary_face_ratio",
                s.secondary_face_ratio.to_string(),
                "must be between 0 and 1",
            );
        }
    }
}
