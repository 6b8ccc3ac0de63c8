//! `facegate bench fleet`: gallery replication through a real loopback mosquitto with
//! persistence (docs/fleet.md). Two stores with the daemon's fleet links in one process:
//! appliance A publishes a gallery of N persons, appliance B joins and catches up; then the
//! latency from a commit on A to the person being searchable on B, next to the commit itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use serde::Serialize;
use tokio::sync::Notify;

use super::{err, percentiles, BenchError, RandomVectors};
use crate::local_broker::LocalBroker;
use facegate_core::clock::SystemClock;
use facegate_core::config::MqttConfig;
use facegate_core::engine::embedder::Metric;
use facegate_core::fleet::Trusted;
use facegate_core::store::{Enrolment, FaceStorage, Images, ModelId, Store, StoreOptions};
use facegate_daemon::daemon::shutdown;
use facegate_daemon::fleet::{FleetLink, FleetStatus};
use facegate_daemon::mqtt::publisher;

#[derive(Debug, Clone, Serialize)]
pub struct FleetBench {
    /// Persons in the gallery a joining appliance catches up with (512-d, no thumbnails).
    pub persons: usize,
    /// Writing them into A's store in bulk, s (the reference: local work for the same persons).
    pub local_enrol_s: f64,
    /// A's link publishing them all until the broker acknowledged the last, s.
    pub publish_s: f64,
    /// B (an empty store) from start to every person applied, s.
    pub catch_up_s: f64,
    /// catch_up_s / local_enrol_s.
    pub catch_up_ratio: f64,
    /// Record payload bytes B received while catching up.
    pub catch_up_bytes: u64,
    /// Mean retained record (payload and topic) per person, bytes.
    pub retained_bytes_per_person: f64,
    /// mosquitto's persistence file after a clean stop, bytes per person.
    pub broker_file_bytes_per_person: Option<f64>,
    /// B's digest of the collection equals A's after the catch-up.
    pub digests_equal: bool,
    /// Enrolments timed one by one.
    pub latency_samples: usize,
    /// One person committed on A (one synced LMDB transaction), ms: the reference.
    pub commit_p50_ms: f64,
    /// Commit on A → searchable on B (through the broker), ms.
    pub replication_p50_ms: f64,
    pub replication_p99_ms: f64,
    /// replication_p50_ms / commit_p50_ms.
    pub replication_ratio: f64,
}

struct Appliance {
    store: Arc<Store>,
    status: Arc<FleetStatus>,
    key: SigningKey,
}

fn model() -> ModelId {
    ModelId {
        id: "bench512@fleet".into(),
        dim: 512,
        metric: Metric::Cosine,
    }
}

fn appliance(dir: &std::path::Path, device: &str, seed: u8) -> Result<Appliance, BenchError> {
    let store = Store::open(
        dir,
        model(),
        &StoreOptions::default(),
        Arc::new(SystemClock),
    )
    .map_err(err("open a store"))?;
    Ok(Appliance {
        store: Arc::new(store),
        status: Arc::new(FleetStatus::new("bench", device)),
        key: SigningKey::from_bytes(&[seed; 32]),
    })
}

/// Start `a`'s change feed: what it writes from now on is queued for publishing.
fn feed(a: &Appliance) -> Result<Arc<Notify>, BenchError> {
    let wake = Arc::new(Notify::new());
    let notify = wake.clone();
    a.store
        .start_change_feed(&a.status.device_id, Box::new(move || notify.notify_one()))
        .map_err(err("start the change feed"))?;
    Ok(wake)
}

/// Start `a`'s fleet link on `runtime`.
fn link(
    runtime: &tokio::runtime::Runtime,
    a: &Appliance,
    wake: Arc<Notify>,
    port: u16,
    trusted: &Trusted,
    stop: shutdown::Receiver,
) -> Result<(), BenchError> {
    let mqtt = MqttConfig {
        port,
        ..MqttConfig::default()
    };
    let options =
        publisher::connection_options(&mqtt, &format!("bench-{}-fleet", a.status.device_id))
            .map_err(err("MQTT options"))?;
    let l = FleetLink {
        options,
        base: "facegate/fleet/bench".into(),
        store: a.store.clone(),
        key: a.key.clone(),
        trusted: trusted.clone(),
        thumbnails: false,
        tombstone_ms: 30 * 86_400_000,
        wake,
        status: a.status.clone(),
        max_packet: mqtt.max_packet_kib << 10,
    };
    runtime.spawn(l.run(stop));
    Ok(())
}

fn wait(
    what: &'static str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<(), BenchError> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            return Err(BenchError(format!("timed out: {what}")));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

pub fn bench_fleet(persons: usize, samples: usize) -> Result<FleetBench, BenchError> {
    let dir = tempfile_dir()?;
    let mut broker =
        LocalBroker::start(&dir.join("broker"), 0, true).map_err(err("start mosquitto"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(err("tokio runtime"))?;
    let a = appliance(&dir.join("a"), "bench-a", 1)?;
    let b = appliance(&dir.join("b"), "bench-b", 2)?;
    let trusted: Trusted = [
        ("bench-a".to_owned(), a.key.verifying_key()),
        ("bench-b".to_owned(), b.key.verifying_key()),
    ]
    .into();
    let (stop, stop_rx) = shutdown::channel();

    // A's gallery, queued by its change feed, then published.
    a.store
        .create_collection("bench")
        .map_err(err("create the collection"))?;
    let started = Instant::now();
    let a_wake = feed(&a)?;
    super::enrol_random(&a.store, "bench", persons, 7).map_err(err("enrol"))?;
    let local_enrol_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    link(&runtime, &a, a_wake, broker.port, &trusted, stop_rx.clone())?;
    wait("A publishes its gallery", Duration::from_secs(600), || {
        a.store.pending_count() == 0
    })?;
    let publish_s = started.elapsed().as_secs_f64();

    // B joins with an empty store.
    let started = Instant::now();
    let b_wake = feed(&b)?;
    link(&runtime, &b, b_wake, broker.port, &trusted, stop_rx.clone())?;
    // Seconds, not minutes, on this machine: a catch-up that stalls (records a broker
    // dropped) fails in a minute.
    let patience = Duration::from_secs((persons as u64 / 50).max(60));
    wait("B catches up", patience, || b.store.counts().1 >= persons)?;
    let catch_up_s = started.elapsed().as_secs_f64();
    let catch_up_bytes = b.status.bytes_received();
    let records = persons + 1;
    let topic_bytes = "facegate/fleet/bench/person/bench/p0000000".len() as f64;
    let retained_bytes_per_person = catch_up_bytes as f64 / records as f64 + topic_bytes;
    let digests_equal = a.store.digest("bench").ok() == b.store.digest("bench").ok();

    // One at a time: commit on A, searchable on B.
    let mut rng = RandomVectors::new(99);
    let (mut commit, mut replication) = (Vec::new(), Vec::new());
    for i in 0..samples {
        let mut template = vec![0f32; 512];
        rng.fill_unit(&mut template);
        let item = Enrolment::one_face(
            format!("late{i:05}"),
            format!("Late {i}"),
            Default::default(),
            template.clone(),
            None,
            FaceStorage::NoStorage,
        );
        let t0 = Instant::now();
        a.store
            .enrol("bench", vec![item], None)
            .map_err(err("enrol one"))?;
        let committed = Instant::now();
        let id = format!("late{i:05}");
        wait("B finds the new person", Duration::from_secs(30), || {
            b.store
                .search("bench", &template, 1, 0.99, Images::NONE)
                .is_ok_and(|(hits, _)| hits.first().is_some_and(|h| h.person.person_id == id))
        })?;
        commit.push((committed - t0).as_secs_f64() * 1000.0);
        replication.push(committed.elapsed().as_secs_f64() * 1000.0);
    }
    let (commit_p50_ms, _) = percentiles(&mut commit);
    let (replication_p50_ms, replication_p99_ms) = percentiles(&mut replication);

    stop.request();
    runtime.shutdown_timeout(Duration::from_secs(3));
    broker.stop();
    let broker_file_bytes_per_person = std::fs::metadata(dir.join("broker/mosquitto.db"))
        .ok()
        .map(|m| m.len() as f64 / (persons + samples) as f64);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(FleetBench {
        persons,
        local_enrol_s,
        publish_s,
        catch_up_s,
        catch_up_ratio: catch_up_s / local_enrol_s,
        catch_up_bytes,
        retained_bytes_per_person,
        broker_file_bytes_per_person,
        digests_equal,
        latency_samples: samples,
        commit_p50_ms,
        replication_p50_ms,
        replication_p99_ms,
        replication_ratio: replication_p50_ms / commit_p50_ms,
    })
}

fn tempfile_dir() -> Result<std::path::PathBuf, BenchError> {
    let dir = std::env::temp_dir().join(format!("facegate-bench-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(err("create a temporary folder"))?;
    Ok(dir)
}

pub fn format_fleet_report(r: &FleetBench) -> String {
    let mut out = String::new();
    out += &format!(
        "joining appliance, {} persons (512-d, no thumbnails): caught up in {:.2} s = {:.2}× the \
         local bulk enrolment ({:.2} s); {:.1} MB received; A published them in {:.2} s\n",
        r.persons,
        r.catch_up_s,
        r.catch_up_ratio,
        r.local_enrol_s,
        r.catch_up_bytes as f64 / 1e6,
        r.publish_s
    );
    out += &format!(
        "retained per person: {:.0} bytes (record + topic); broker file {} bytes per person; \
         digests equal: {}\n",
        r.retained_bytes_per_person,
        r.broker_file_bytes_per_person
            .map_or("-".into(), |b| format!("{b:.0}")),
        r.digests_equal
    );
    out += &format!(
        "commit on A → searchable on B over {} enrolments: p50 {:.2} ms, p99 {:.2} ms = {:.1}× \
         the commit itself (p50 {:.2} ms)\n",
        r.latency_samples,
        r.replication_p50_ms,
        r.replication_p99_ms,
        r.replication_ratio,
        r.commit_p50_ms
    );
    out
}
