//! facegate-tools: what the `facegate` binary offers beyond the daemon. `bench` (benchmarks
//! for `facegate bench` and `cargo bench`), `eval` and `eval_liveness` (accuracy on labelled
//! sets), `demo` (what `make run` starts) and `local_broker` (a loopback mosquitto for the
//! demo, the soak benchmark and the tests).

pub mod bench;
pub mod demo;
pub mod eval;
pub mod eval_gallery_curve;
pub mod eval_liveness;
pub mod eval_open_set;
pub mod local_broker;
