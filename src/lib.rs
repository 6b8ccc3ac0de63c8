//! facegate: face recognition for door camera appliances.
//!
//! Layout: `config` (the one TOML file), `engine` (detection, landmarks, alignment,
//! embeddings on ONNX Runtime, and the inference workers), `store` (LMDB gallery and search
//! index), `api` (the HTTP API), `eval` (verification metrics for `facegate eval`), `bench`
//! (benchmarks for `facegate bench`).

pub mod api;
pub mod bench;
pub mod camera;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod doctor;
pub mod engine;
pub mod eval;
pub mod eval_liveness;
pub mod mqtt;
pub mod pipeline;
pub mod store;
