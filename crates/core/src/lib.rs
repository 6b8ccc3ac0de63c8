//! facegate-core: what the appliance does with a frame, without any I/O but files.
//!
//! `access` (door schedules, access rules, signed access messages and what a door controller
//! checks), `audit` (the hash-chained event log), `config` (the one TOML file), `engine`
//! (detection, landmarks, alignment, embeddings and
//! liveness on ONNX Runtime, and the inference workers), `pipeline` (tracking, per-track
//! evidence and decisions: pure), `store` (the LMDB gallery and its search index), `clock`,
//! `strangers` (persistent ids for unknown faces), `fleet` (the gallery replicated between appliances: versions, signed records), `redact` (secrets out of camera URLs) and `synthetic` (reproducible random templates).
//!
//! This crate must not depend on an async runtime, an HTTP stack or an MQTT client: the
//! daemon (`facegate-daemon`) brings those (docs/structure.md).

pub mod access;
pub mod audit;
pub mod clock;
pub mod config;
pub mod engine;
pub mod fleet;
pub mod pipeline;
pub mod redact;
pub mod store;
pub mod strangers;
pub mod synthetic;
