//! Metrics of the main job (cameras, decisions, outbox, MQTT), registered with the API's
//! Prometheus registry so `/metrics` shows them beside the HTTP ones.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CameraLabels {
    pub camera: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub camera: String,
    #[prometheus(flatten)]
    pub kind: KindLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub peer: String,
}

/// Samples kept of capture-to-PUBLISH latency for `facegate bench pipeline`.
const RECENT: usize = 4096;

#[derive(Clone)]
pub struct DaemonMetrics {
    pub frames: Family<CameraLabels, Counter>,
    pub frames_dropped: Family<CameraLabels, Gauge>,
    pub frames_processed: Family<CameraLabels, Counter>,
    pub camera_errors: Family<CameraLabels, Gauge>,
    pub camera_fps: Family<CameraLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub decisions: Family<DecisionLabels, Counter>,
    pub suppressed: Family<CameraLabels, Counter>,
    /// Unknown decisions of strangers the operator ignored (not published).
    pub ignored_strangers: Family<CameraLabels, Counter>,
    pub stage_seconds: Family<StageLabels, Histogram>,
    pub capture_to_publish_seconds: Histogram,
    pub outbox_depth: Gauge,
    pub outbox_dropped: Counter,
    pub outbox_dead_letters: Counter,
    pub mqtt_connected: Gauge,
    pub mqtt_acknowledged: Counter,
    pub fleet_connected: Gauge,
    pub fleet_pending: Gauge,
    pub fleet_published: Counter,
    pub fleet_received: Family<OutcomeLabels, Counter>,
    pub fleet_peer_lag: Family<PeerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    recent_publish_ms: Arc<Mutex<VecDeque<f32>>>,
}

impl DaemonMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            frames: Family::default(),
            frames_dropped: Family::default(),
            frames_processed: Family::default(),
            camera_errors: Family::default(),
            camera_fps: Family::default(),
            decisions: Family::default(),
            suppressed: Family::default(),
            ignored_strangers: Family::default(),
            stage_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 14))
            }),
            capture_to_publish_seconds: Histogram::new(exponential_buckets(0.002, 2.0, 12)),
            outbox_depth: Gauge::default(),
            outbox_dropped: Counter::default(),
            outbox_dead_letters: Counter::default(),
            mqtt_connected: Gauge::default(),
            mqtt_acknowledged: Counter::default(),
            fleet_connected: Gauge::default(),
            fleet_pending: Gauge::default(),
            fleet_published: Counter::default(),
            fleet_received: Family::default(),
            fleet_peer_lag: Family::default(),
            recent_publish_ms: Arc::new(Mutex::new(VecDeque::with_capacity(RECENT))),
        };
        registry.register("camera_frames", "Frames captured", m.frames.clone());
        registry.register(
            "camera_frames_dropped",
            "Frames replaced before the pipeline took them (pipeline slower than the camera)",
            m.frames_dropped.clone(),
        );
        registry.register(
            "pipeline_frames",
            "Frames the pipeline processed",
            m.frames_processed.clone(),
        );
        registry.register(
            "camera_errors",
            "Camera open, read and decode failures",
            m.camera_errors.clone(),
        );
        registry.register(
            "camera_fps",
            "Frames per second delivered by the camera",
            m.camera_fps.clone(),
        );
        registry.register("decisions", "Track decisions by type", m.decisions.clone());
        registry.register(
            "decisions_held_off",
            "Decisions not published because the same person had an event on the camera within the hold-off",
            m.suppressed.clone(),
        );
        registry.register(
            "decisions_ignored_strangers",
            "Unknown decisions not published because the stranger was ignored (POST /unknowns/{id}/ignore)",
            m.ignored_strangers.clone(),
        );
        registry.register(
            "pipeline_stage_duration_seconds",
            "Time per pipeline stage (queue, detect, embed, liveness, search, outbox)",
            m.stage_seconds.clone(),
        );
        registry.register(
            "capture_to_publish_seconds",
            "Time from frame capture to the event's PUBLISH being written to the broker",
            m.capture_to_publish_seconds.clone(),
        );
        registry.register(
            "outbox_depth",
            "Messages waiting for the broker's acknowledgement",
            m.outbox_depth.clone(),
        );
        registry.register(
            "outbox_dropped",
            "Messages dropped because the outbox was full (over the outbox's life)",
            m.outbox_dropped.clone(),
        );
        registry.register(
            "outbox_dead_letters",
            "Messages set aside because they could not be delivered: larger than the packet limit, or the broker dropped the connection on each of three tries (over the outbox's life)",
            m.outbox_dead_letters.clone(),
        );
        registry.register(
            "mqtt_connected",
            "1 while connected to the broker",
            m.mqtt_connected.clone(),
        );
        registry.register(
            "mqtt_acknowledged",
            "Outbox messages acknowledged by the broker",
            m.mqtt_acknowledged.clone(),
        );
        registry.register(
            "fleet_connected",
            "1 while the fleet link is connected to the broker",
            m.fleet_connected.clone(),
        );
        registry.register(
            "fleet_pending",
            "Gallery changes of this appliance not yet acknowledged by the broker",
            m.fleet_pending.clone(),
        );
        registry.register(
            "fleet_published",
            "Fleet records acknowledged by the broker",
            m.fleet_published.clone(),
        );
        registry.register(
            "fleet_received",
            "Fleet records received, by outcome (applied, same, older, superseded, wrong_model, invalid, malformed, untrusted, bad_signature)",
            m.fleet_received.clone(),
        );
        registry.register(
            "fleet_peer_lag_seconds",
            "Per peer appliance, applied-here minus written-there of its latest applied change",
            m.fleet_peer_lag.clone(),
        );
        m
    }

    pub fn stage(&self, stage: &str, seconds: f64) {
        self.stage_seconds
            .get_or_create(&StageLabels {
                stage: stage.to_owned(),
            })
            .observe(seconds);
    }

    pub fn published(&self, seconds: f64) {
        self.capture_to_publish_seconds.observe(seconds);
        let mut r = self.recent_publish_ms.lock().unwrap();
        if r.len() == RECENT {
            r.pop_front();
        }
        r.push_back(seconds as f32 * 1000.0);
    }

    /// The capture-to-PUBLISH latencies recorded so far (most recent last).
    pub fn recent_publish_ms(&self) -> Vec<f32> {
        self.recent_publish_ms
            .lock()
            .unwrap()
            .iter()
            .copied()
            .collect()
    }
}
