//! facegate: face recognition for door camera appliances.
//!
//! Layout: `config` (the one TOML file), `engine` (detection, landmarks, alignment,
//! embeddings on ONNX Runtime), `eval` (verification metrics for `facegate eval`), `bench`
//! (per-stage timings for `facegate bench`).

pub mod bench;
pub mod config;
pub mod engine;
pub mod eval;
