//! Benchmarks behind `facegate bench` and `cargo bench`. Every figure is reported next to a
//! reference measured in the same run (a ratio), never asserted as a time.

pub mod door;
pub mod engine;
pub mod fleet;
pub mod http;
pub mod memory;
pub mod pipeline;
pub mod search;
pub mod soak;

pub use engine::{bench_engine, bench_frame, format_table, frame_1280x720, StageTimes};
pub use facegate_core::synthetic::RandomVectors;

/// A benchmark that could not run, with what it was doing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BenchError(pub String);

/// Wrap an error as a [`BenchError`] saying what failed.
pub fn err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> BenchError {
    move |e| BenchError(format!("{what}: {e}"))
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`), in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Median and 99th percentile of samples, in the samples' unit.
pub fn percentiles(samples: &mut [f64]) -> (f64, f64) {
    if samples.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Enrol `persons` random unit templates (`NoStorage`) into `collection`, 5,000 per
/// transaction.
pub fn enrol_random(
    store: &facegate_core::store::Store,
    collection: &str,
    persons: usize,
    seed: u64,
) -> Result<(), facegate_core::store::StoreError> {
    let dim = store.model().dim;
    let mut rng = RandomVectors::new(seed);
    for start in (0..persons).step_by(5000) {
        let batch = (start..(start + 5000).min(persons))
            .map(|i| {
                let mut template = vec![0f32; dim];
                rng.fill_unit(&mut template);
                facegate_core::store::Enrolment::one_face(
                    format!("p{i:07}"),
                    format!("Person {i}"),
                    Default::default(),
                    template,
                    None,
                    facegate_core::store::FaceStorage::NoStorage,
                )
            })
            .collect();
        store.enrol(collection, batch, None)?;
    }
    Ok(())
}
