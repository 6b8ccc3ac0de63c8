//! The main job beside the API: per camera a capture thread and a pipeline thread with its
//! own engine, and one MQTT publisher task draining the durable outbox. Started by
//! `facegate serve`, stopped in order on SIGTERM: capture first, then the pipelines finish
//! the frame in hand (its decisions reach the outbox), then the publisher flushes what the
//! broker will take and says `offline`.

pub mod camera_worker;
pub mod limits;
pub mod live_feed;
pub mod metrics;
pub mod shutdown;
pub mod systemd;

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;

use crate::camera::capture::{self, CameraStatus};
use crate::camera::slot::FrameSlot;
use crate::fleet::{FleetLink, FleetStatus};
use crate::mqtt::discovery::{self, DiscoveredCamera};
use crate::mqtt::outbox::{Outbox, OutboxError};
use crate::mqtt::publisher::{self, LinkStatus, MqttSetupError, PublishTimes, Publisher};
use crate::mqtt::Topics;
use camera_worker::{CameraWorker, DoorAccess, Sink};
use facegate_core::access::device_key::{self, KeyError};
use facegate_core::audit::EventLog;
use facegate_core::config::{Config, SourceKind};
use facegate_core::engine::runtime::Runtime;
use facegate_core::engine::{Engine, EngineError};
use facegate_core::store::Store;
use metrics::{CameraLabels, DaemonMetrics};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("camera engine: {0}")]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Mqtt(#[from] MqttSetupError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("fleet change feed: {0}")]
    Store(#[from] facegate_core::store::StoreError),
    #[error("cannot start a thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error(
        "camera {camera}: its engine embeds with {engine} but the store holds templates of \
         {store}; set inference.embedder and inference.precision to the store's model"
    )]
    ModelMismatch {
        camera: String,
        engine: String,
        store: String,
    },
}

/// What `/health` and `/metrics` read of the running job.
pub struct DaemonStatus {
    cameras: Vec<Arc<CameraStatus>>,
    link: Option<Arc<LinkStatus>>,
    outbox: Option<Arc<Outbox>>,
    broker: String,
    device_id: String,
    /// The Ed25519 public key that signs access messages (base64).
    public_key: String,
    /// The fleet link, when `fleet.enabled`.
    fleet: Option<Arc<FleetStatus>>,
}

impl DaemonStatus {
    pub fn cameras_json(&self) -> serde_json::Value {
        json!(self
            .cameras
            .iter()
            .map(|c| c.snapshot())
            .collect::<Vec<_>>())
    }

    pub fn mqtt_json(&self) -> serde_json::Value {
        match (&self.link, &self.outbox) {
            (Some(link), Some(outbox)) => {
                let mut v = serde_json::to_value(link.snapshot()).unwrap_or_default();
                v["enabled"] = json!(true);
                v["broker"] = json!(self.broker);
                v["device_id"] = json!(self.device_id);
                v["outbox_depth"] = json!(outbox.depth());
                v["outbox_dropped"] = json!(outbox.dropped_total());
                v["outbox_dead_letters"] = json!(outbox.dead_letters_total());
                v
            }
            _ => json!({"enabled": false}),
        }
    }

    /// Set the gauges that mirror state (called at scrape time).
    pub fn update_metrics(&self, m: &DaemonMetrics, store: &Store) {
        if let Some(f) = &self.fleet {
            m.fleet_connected.set(i64::from(f.connected()));
            m.fleet_pending.set(store.pending_count() as i64);
            let published = f.published();
            m.fleet_published
                .inc_by(published.saturating_sub(m.fleet_published.get()));
            for (outcome, n) in f.outcomes() {
                let c = m.fleet_received.get_or_create(&metrics::OutcomeLabels {
                    outcome: outcome.to_owned(),
                });
                c.inc_by(n.saturating_sub(c.get()));
            }
            for (peer, lag) in f.peer_lags() {
                m.fleet_peer_lag
                    .get_or_create(&metrics::PeerLabels { peer })
                    .set(lag);
            }
        }
        for c in &self.cameras {
            let h = c.snapshot();
            let l = CameraLabels {
                camera: h.name.clone(),
            };
            let frames = m.frames.get_or_create(&l);
            frames.inc_by(h.frames.saturating_sub(frames.get()));
            m.frames_dropped.get_or_create(&l).set(h.dropped as i64);
            m.camera_errors.get_or_create(&l).set(h.errors as i64);
            m.camera_fps.get_or_create(&l).set(h.fps as f64);
        }
        if let (Some(link), Some(outbox)) = (&self.link, &self.outbox) {
            m.mqtt_connected.set(i64::from(link.connected()));
            m.outbox_depth.set(outbox.depth() as i64);
            let dropped = outbox.dropped_total();
            m.outbox_dropped
                .inc_by(dropped.saturating_sub(m.outbox_dropped.get()));
            let dead = outbox.dead_letters_total();
            m.outbox_dead_letters
                .inc_by(dead.saturating_sub(m.outbox_dead_letters.get()));
            let acked = link.acknowledged();
            m.mqtt_acknowledged
                .inc_by(acked.saturating_sub(m.mqtt_acknowledged.get()));
        }
    }

    pub fn camera(&self, name: &str) -> Option<crate::camera::capture::CameraHealth> {
        self.cameras
            .iter()
            .map(|c| c.snapshot())
            .find(|h| h.name == name)
    }

    /// A camera thread that has not run for longer than `max_age` (the systemd watchdog is
    /// not petted while there is one), as "camera X: capture thread silent for N s".
    pub fn stuck(&self, max_age: Duration) -> Option<String> {
        self.cameras.iter().find_map(|c| {
            let (thread, age) = c.stuck_thread(max_age)?;
            Some(format!(
                "camera {}: {thread} thread silent for {:.1} s",
                c.snapshot().name,
                age.as_secs_f32()
            ))
        })
    }

    /// A camera's live status, with its newest frame.
    pub fn camera_status(&self, name: &str) -> Option<Arc<CameraStatus>> {
        self.cameras
            .iter()
            .find(|c| c.snapshot().name == name)
            .cloned()
    }

    /// The public key door controllers trust for this appliance (base64).
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    pub fn outbox_depth(&self) -> Option<usize> {
        self.outbox.as_ref().map(|o| o.depth())
    }

    /// `/health`'s `fleet` section.
    pub fn fleet_json(&self, store: &Store) -> serde_json::Value {
        match &self.fleet {
            Some(f) => f.json(store),
            None => json!({"enabled": false}),
        }
    }

    pub fn mqtt_connected(&self) -> bool {
        self.link.as_ref().is_some_and(|l| l.connected())
    }
}

/// Where the cameras' decisions go beside the outbox, shared with the API that reads them.
#[derive(Clone, Default)]
pub struct DecisionOutputs {
    /// The audit trail, when `events.enabled`.
    pub audit: Option<Arc<EventLog>>,
    /// Persistent ids for unknown faces, when `strangers.enabled`.
    pub strangers: Option<Arc<facegate_core::strangers::Strangers>>,
    /// Decisions as they happen (`GET /events/stream`).
    pub live: Arc<live_feed::LiveFeed>,
}

pub struct Daemon {
    status: Arc<DaemonStatus>,
    /// Stops capture and the pipelines.
    stop: shutdown::Sender,
    captures: Vec<JoinHandle<()>>,
    pipelines: Vec<JoinHandle<()>>,
    /// Stops the MQTT publisher, once the pipelines have committed their last decisions.
    mqtt_stop: shutdown::Sender,
    mqtt_task: Option<tokio::task::JoinHandle<()>>,
    fleet_task: Option<tokio::task::JoinHandle<()>>,
}

impl Daemon {
    /// Start the cameras and the MQTT link of `config`. Must run inside a tokio runtime.
    pub fn start(
        config: &Config,
        store: Arc<Store>,
        metrics: DaemonMetrics,
        data_dir: &Path,
        outputs: DecisionOutputs,
    ) -> Result<Self, DaemonError> {
        let m = &config.mqtt;
        let topics = Topics::new(&m.topic_prefix, &m.resolved_device_id());
        let signing_key = device_key::load_or_create(data_dir)?;
        let public_key = device_key::public_key_text(&signing_key.verifying_key());
        let wake = Arc::new(Notify::new());
        let times = Arc::new(PublishTimes::default());
        let (mqtt_stop, mqtt_stop_rx) = shutdown::channel();
        let (mut link, mut outbox, mut mqtt_task) = (None, None, None);
        if m.enabled {
            let ob = Arc::new(Outbox::open(
                &data_dir.join("outbox"),
                m.outbox_max_events,
                m.outbox_map_mib,
            )?);
            let options = publisher::options(m, &topics)?;
            let cams: Vec<DiscoveredCamera> = config
                .cameras
                .iter()
                .map(|c| DiscoveredCamera {
                    name: &c.name,
                    door: (!c.door.is_empty()).then_some(c.door.as_str()),
                })
                .collect();
            let mut announcements = vec![crate::mqtt::outbox::OutboxMessage {
                topic: topics.pubkey(),
                payload: public_key.clone().into_bytes(),
                retain: true,
            }];
            let ha_status = if m.homeassistant {
                announcements.extend(discovery::messages(&m.discovery_prefix, &topics, &cams));
                Some(format!("{}/status", m.discovery_prefix))
            } else {
                None
            };
            let st = Arc::new(LinkStatus::default());
            let observer_metrics = metrics.clone();
            let p = Publisher {
                options,
                topics: topics.clone(),
                outbox: ob.clone(),
                wake: wake.clone(),
                announcements,
                ha_status,
                status: st.clone(),
                flush_timeout: Duration::from_secs_f32(m.flush_timeout_s),
                times: times.clone(),
                observer: Box::new(move |d| observer_metrics.published(d.as_secs_f64())),
                max_packet: m.max_packet_kib << 10,
            };
            tracing::info!(broker = %format!("{}:{}", m.host, m.port), device_id = topics.device_id(),
                backlog = ob.depth(), "MQTT publisher starting");
            mqtt_task = Some(tokio::spawn(p.run(mqtt_stop_rx.clone())));
            link = Some(st);
            outbox = Some(ob);
        }
        let (mut fleet, mut fleet_task) = (None, None);
        if config.fleet.enabled && m.enabled {
            let f = &config.fleet;
            let device = topics.device_id().to_owned();
            let fleet_wake = Arc::new(Notify::new());
            let notify = fleet_wake.clone();
            let queued = store.start_change_feed(&device, Box::new(move || notify.notify_one()))?;
            let status = Arc::new(FleetStatus::new(&f.site, &device));
            let mut trusted = f.trusted_keys();
            trusted.insert(device.clone(), signing_key.verifying_key());
            let client_id = format!("{}-fleet", publisher::client_id(m, &topics));
            let link = FleetLink {
                options: publisher::connection_options(m, &client_id)?,
                base: format!("{}/fleet/{}", m.topic_prefix, f.site),
                store: store.clone(),
                key: signing_key.clone(),
                trusted,
                thumbnails: f.thumbnails,
                tombstone_ms: i64::from(f.tombstone_days) * 86_400_000,
                wake: fleet_wake,
                status: status.clone(),
                max_packet: m.max_packet_kib << 10,
            };
            tracing::info!(site = %f.site, device_id = %device, queued,
                trusted = ?f.trusted_devices.keys().collect::<Vec<_>>(), "fleet replication starting");
            fleet_task = Some(tokio::spawn(link.run(mqtt_stop_rx.clone())));
            fleet = Some(status);
        }
        let sink = Arc::new(Sink {
            outbox: outbox.clone(),
            wake,
            times,
            topics: topics.clone(),
            thumbnails: m.event_thumbnail,
            max_payload: (m.max_packet_kib << 10).saturating_sub(1024),
            access: DoorAccess::new(signing_key, &config.access),
            audit: outputs.audit.clone(),
            audit_thumbnails: config.events.keep_thumbnails,
            strangers: outputs.strangers.clone(),
            live: outputs.live.clone(),
        });
        let (stop, stop_rx) = shutdown::channel();
        let mut statuses = Vec::new();
        let (mut captures, mut pipelines) = (Vec::new(), Vec::new());
        if !config.cameras.is_empty() {
            let runtime = Runtime::load(&config.inference).map_err(EngineError::from)?;
            for cam in &config.cameras {
                let mut engine_config = config.clone();
                engine_config.detector.min_face_px = cam.min_face_px;
                // One thread per session: these small models do not gain from more on a
                // small board, and the API's workers need the other cores.
                engine_config.inference.threads = 1;
                let engine = Engine::with_runtime(&runtime, &engine_config)?;
                // Templates of another model (an unsettled `auto`, say) would be compared
                // with the gallery's without any error: refuse to start instead.
                if engine.fingerprint() != store.model().id {
                    return Err(DaemonError::ModelMismatch {
                        camera: cam.name.clone(),
                        engine: engine.fingerprint().to_owned(),
                        store: store.model().id.clone(),
                    });
                }
                let opener = crate::camera::opener_for(
                    cam,
                    facegate_core::engine::frame::DecodeLimits::from_config(&config.detector),
                );
                let status = Arc::new(CameraStatus::new(&cam.name, opener.describe()));
                let slot = Arc::new(FrameSlot::new());
                let paced = !(cam.source == SourceKind::Replay && cam.fps == 0.0);
                captures.push(capture::spawn(
                    &cam.name,
                    opener,
                    slot.clone(),
                    status.clone(),
                    stop_rx.clone(),
                    paced,
                )?);
                let worker = CameraWorker::new(
                    cam.clone(),
                    engine,
                    Arc::new(facegate_core::clock::RealClocks),
                    store.clone(),
                    sink.clone(),
                    status.clone(),
                    metrics.clone(),
                    config.liveness.clone(),
                    config.store.thumbnail_px,
                );
                let stop = stop_rx.clone();
                pipelines.push(
                    std::thread::Builder::new()
                        .name(format!("pipeline-{}", cam.name))
                        .spawn(move || worker.run(slot, stop))?,
                );
                tracing::info!(camera = %cam.name, collection = %cam.collection, door = %cam.door,
                    liveness = ?cam.liveness, "camera started");
                statuses.push(status);
            }
        }
        Ok(Self {
            status: Arc::new(DaemonStatus {
                cameras: statuses,
                link,
                outbox,
                broker: format!("{}:{}", m.host, m.port),
                device_id: topics.device_id().to_owned(),
                public_key,
                fleet,
            }),
            stop,
            captures,
            pipelines,
            mqtt_stop,
            mqtt_task,
            fleet_task,
        })
    }

    pub fn status(&self) -> Arc<DaemonStatus> {
        self.status.clone()
    }

    /// Stop capture, let the pipelines finish their frame, then flush and close MQTT.
    pub async fn shutdown(self) {
        self.stop.request();
        let threads: Vec<JoinHandle<()>> =
            self.captures.into_iter().chain(self.pipelines).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        self.mqtt_stop.request();
        if let Some(task) = self.mqtt_task {
            let _ = task.await;
        }
        if let Some(task) = self.fleet_task {
            let _ = task.await;
        }
    }
}
