//! The recognition pipeline of one camera, on its own thread with its own engine: it takes
//! the newest frame, detects faces, follows them in tracks, embeds and checks liveness on a
//! track's best frames, searches the fused template, and commits each decision (event, and
//! access for a door) to the outbox before waking the publisher.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use image::RgbImage;
use tokio::sync::Notify;

use super::metrics::{CameraLabels, DaemonMetrics, DecisionLabels, KindLabel};
use crate::camera::capture::CameraStatus;
use crate::camera::slot::{FrameSlot, Take};
use crate::camera::Frame;
use crate::mqtt::event::{AccessMessage, EventBox, FaceEvent, Latency, LivenessReport};
use crate::mqtt::outbox::{Outbox, OutboxMessage};
use crate::mqtt::publisher::PublishTimes;
use crate::mqtt::Topics;
use facegate_core::access::rules::{self, PersonAccess};
use facegate_core::access::schedule::Schedule;
use facegate_core::audit::EventLog;
use facegate_core::clock::{Clocks, RealClocks};
use facegate_core::config::{AccessConfig, CameraConfig, LivenessConfig, LivenessMode};
use facegate_core::engine::analyzer::FaceAnalyzer;
use facegate_core::engine::detector::Detection;
use facegate_core::engine::embedder::Metric;
use facegate_core::engine::landmarks::Landmarks;
use facegate_core::engine::similarity::Calibration;
use facegate_core::engine::{liveness, quality, Engine, EngineError};
use facegate_core::pipeline::decision::{Decision, DecisionKind, HoldOff, Policy};
use facegate_core::pipeline::evidence::Candidate;
use facegate_core::pipeline::gallery_threshold::{gallery_threshold, GalleryThreshold};
use facegate_core::pipeline::track_decision::decide_track;
use facegate_core::pipeline::track_liveness::{TrackLimits, TRACK_POINTS};
use facegate_core::pipeline::tracker::{Track, Tracker};
use facegate_core::store::{Store, StoreError};
use facegate_core::strangers::{self, Sighting, Strangers};

use super::live_feed::LiveFeed;
use crate::camera::snapshot::{FaceState, Snapshot, SnapshotFace};

/// A new embedding scoring below this against its track's fused template is another person
/// under the same box: the track is split. (Same-person frames score far above it.)
const SAME_FACE_MIN_SCORE: f32 = 0.3;
/// Candidates below this score are not reported at all.
const MIN_CANDIDATE_SCORE: f32 = 0.01;

/// Where decisions go.
pub struct Sink {
    /// None when MQTT is off: decisions are logged and counted only.
    pub outbox: Option<Arc<Outbox>>,
    pub wake: Arc<Notify>,
    pub times: Arc<PublishTimes>,
    pub topics: Topics,
    pub thumbnails: bool,
    /// Largest payload the MQTT link accepts.
    pub max_payload: usize,
    /// How doors are decided and access messages signed.
    pub access: DoorAccess,
    /// The audit trail, when `events.enabled`.
    pub audit: Option<Arc<EventLog>>,
    /// Keep a face thumbnail with each audit record (`events.keep_thumbnails`).
    pub audit_thumbnails: bool,
    /// Persistent ids for unknown faces, when `strangers.enabled`.
    pub strangers: Option<Arc<Strangers>>,
    /// Decisions as they happen, for the console.
    pub live: Arc<LiveFeed>,
}

/// The access rules' configuration and the key that signs access messages.
pub struct DoorAccess {
    pub key: SigningKey,
    /// `access.grant_ttl_s` in milliseconds.
    pub grant_ttl_ms: i64,
    pub schedules: BTreeMap<String, Schedule>,
    pub config: AccessConfig,
}

impl DoorAccess {
    /// From the configuration (already validated, so its schedules parse).
    pub fn new(key: SigningKey, config: &AccessConfig) -> Self {
        Self {
            key,
            grant_ttl_ms: (config.grant_ttl_s * 1000.0).round() as i64,
            schedules: config.schedules().unwrap_or_default(),
            config: config.clone(),
        }
    }

    /// Whether a recognised person with `access` rules may pass `door` at `at`: `Ok` or the
    /// reason of the refusal.
    pub fn check(
        &self,
        access: Option<&PersonAccess>,
        door: &str,
        at: std::time::SystemTime,
    ) -> Result<(), &'static str> {
        let now = jiff::Timestamp::try_from(at).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let none = PersonAccess::default();
        rules::check(
            access.unwrap_or(&none),
            door,
            self.config.door_schedule(door),
            &self.schedules,
            now,
        )
        .map_err(|r| r.reason())
    }
}

/// The pipeline of one camera over an analyser `A` (the engine; a scripted one in tests)
/// and clocks `C` (the system's; simulated ones in tests).
pub struct CameraWorker<A: FaceAnalyzer = Engine, C: Clocks = RealClocks> {
    camera: CameraConfig,
    engine: A,
    clocks: Arc<C>,
    store: Arc<Store>,
    sink: Arc<Sink>,
    status: Arc<CameraStatus>,
    metrics: DaemonMetrics,
    labels: CameraLabels,
    tracker: Tracker,
    hold_off: HoldOff,
    policy: Policy,
    liveness_limits: LivenessConfig,
    track_limits: TrackLimits,
    metric: Metric,
    calibration: Calibration,
    thumbnail_px: u32,
    started: Instant,
    frame_index: u64,
    /// Thumbnails of tracks' best embedded frames (only when events carry them).
    thumbnails: HashMap<u64, Vec<u8>>,
    /// How each decided track in view was decided, and the person it claimed (snapshots).
    decided: HashMap<u64, (DecisionKind, Option<String>)>,
    warned_missing_collection: bool,
    /// The threshold in force and the gallery size it was worked out for.
    threshold: Option<GalleryThreshold>,
}

/// Per-frame stage times in seconds.
#[derive(Default, Clone, Copy)]
struct Stages {
    queue: f64,
    detect: f64,
    embed: f64,
    liveness: f64,
    search: f64,
}

impl<A: FaceAnalyzer, C: Clocks> CameraWorker<A, C> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        camera: CameraConfig,
        engine: A,
        clocks: Arc<C>,
        store: Arc<Store>,
        sink: Arc<Sink>,
        status: Arc<CameraStatus>,
        metrics: DaemonMetrics,
        liveness_limits: LivenessConfig,
        thumbnail_px: u32,
    ) -> Self {
        let policy = Policy {
            min_similarity_score: camera.min_similarity_score,
            liveness: camera.liveness,
            decide_after: camera.decide_after as usize,
            timeout_ms: (camera.decision_timeout_s * 1000.0) as u64,
        };
        Self {
            labels: CameraLabels {
                camera: camera.name.clone(),
            },
            tracker: Tracker::new((camera.track_lost_s * 1000.0) as u64),
            hold_off: HoldOff::new((camera.hold_off_s * 1000.0) as u64),
            policy,
            metric: engine.metric(),
            calibration: engine.calibration(),
            camera,
            engine,
            store,
            sink,
            status,
            metrics,
            liveness_limits,
            track_limits: TrackLimits::default(),
            thumbnail_px,
            started: clocks.monotonic(),
            clocks,
            frame_index: 0,
            thumbnails: HashMap::new(),
            decided: HashMap::new(),
            warned_missing_collection: false,
            threshold: None,
        }
    }

    /// Work the threshold out again when the collection's size changed since the last time
    /// (`cameras.max_false_accept_per_attempt`): a cheap look at the index's length.
    fn refresh_threshold(&mut self) {
        let templates = self
            .store
            .template_count(&self.camera.collection)
            .unwrap_or(0);
        if self.threshold.is_some_and(|t| t.templates == templates) {
            return;
        }
        let t = gallery_threshold(
            self.camera.min_similarity_score,
            self.camera.max_false_accept_per_attempt,
            templates,
        );
        if t.capped && self.threshold.is_none_or(|old| !old.capped) {
            tracing::warn!(camera = %self.camera.name, collection = %self.camera.collection,
                templates, max_false_accept_per_attempt = t.max_false_accept_per_attempt,
                predicted_fpir = t.predicted_fpir,
                "the collection is too large for cameras.max_false_accept_per_attempt: the \
                 threshold stops at 1.0 (FMR 1e-8, the end of the calibration) and strangers \
                 get in more often than asked");
        }
        if self
            .threshold
            .is_none_or(|old| old.effective != t.effective)
        {
            tracing::info!(camera = %self.camera.name, collection = %self.camera.collection,
                templates, configured = t.configured,
                max_false_accept_per_attempt = t.max_false_accept_per_attempt,
                per_comparison_fmr = ?t.per_comparison_fmr, effective = t.effective,
                "match threshold");
        }
        self.policy.min_similarity_score = t.effective;
        self.status.set_threshold(t);
        self.threshold = Some(t);
    }

    /// Process frames until the capture side closes the slot or `stop` is set; the frame in
    /// hand is always finished (its decisions committed) before returning.
    pub fn run(mut self, slot: Arc<FrameSlot>, stop: super::shutdown::Receiver) {
        self.refresh_threshold();
        loop {
            self.status.beat_pipeline();
            match slot.take(Duration::from_millis(100)) {
                Take::Frame(frame) => {
                    let span =
                        tracing::debug_span!("frame", camera = %self.camera.name, seq = frame.seq);
                    let _g = span.enter();
                    if let Err(e) = self.process(&frame) {
                        tracing::error!(camera = %self.camera.name, error = %e, "frame failed");
                    }
                    self.status.processed();
                    self.metrics
                        .frames_processed
                        .get_or_create(&self.labels)
                        .inc();
                }
                Take::Empty => {
                    self.idle();
                }
                Take::Closed => break,
            }
            if stop.is_requested() {
                break;
            }
        }
        tracing::info!(camera = %self.camera.name, "pipeline stopped");
    }

    /// No frame came: end the tracks that are lost and decide the ones past their timeout.
    fn idle(&mut self) {
        let now = self.clocks.monotonic();
        self.end_lost_tracks(self.ms(now), now, Stages::default());
    }

    /// Seconds from `t` to now, on this worker's clock.
    fn since(&self, t: Instant) -> f64 {
        self.clocks
            .monotonic()
            .saturating_duration_since(t)
            .as_secs_f64()
    }

    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.started).as_millis() as u64
    }

    fn process(&mut self, frame: &Frame) -> Result<(), EngineError> {
        let start = self.clocks.monotonic();
        let mut stages = Stages {
            queue: start
                .saturating_duration_since(frame.captured_at)
                .as_secs_f64(),
            ..Stages::default()
        };
        self.metrics.stage("queue", stages.queue);
        let now_ms = self.ms(frame.captured_at);
        let index = self.frame_index;
        self.frame_index += 1;
        if index.is_multiple_of(self.camera.detect_every as u64) {
            let image = &frame.image;
            let t = self.clocks.monotonic();
            let faces = self.engine.locate(image)?;
            stages.detect = self.since(t);
            self.metrics.stage("detect", stages.detect);
            let boxes: Vec<_> = faces.iter().map(|(d, _)| d.bbox).collect();
            let ids = self.tracker.update(&boxes, now_ms);
            for ((det, lm), &id) in faces.iter().zip(&ids) {
                self.observe(frame, image, det, lm, id, now_ms, &mut stages)?;
            }
            self.keep_snapshot(frame, &boxes, &ids);
        }
        self.end_lost_tracks(now_ms, frame.captured_at, stages);
        Ok(())
    }

    /// The frame and its faces as the console's snapshot shows them.
    fn keep_snapshot(
        &self,
        frame: &Frame,
        boxes: &[facegate_core::engine::geometry::BoundingBox],
        ids: &[u64],
    ) {
        let faces = boxes
            .iter()
            .zip(ids)
            .map(|(bbox, id)| {
                // Green only for a match: a spoof of an enrolled face is refused, in red.
                let (state, label) = match self.decided.get(id) {
                    Some((DecisionKind::Match, person)) => (FaceState::Known, person.clone()),
                    Some(_) => (FaceState::Refused, None),
                    None => (FaceState::Pending, None),
                };
                SnapshotFace {
                    bbox: *bbox,
                    state,
                    label,
                }
            })
            .collect();
        self.status.latest.set(Snapshot {
            image: frame.image.clone(),
            captured_wall: frame.captured_wall,
            faces,
        });
    }

    /// The stranger an `unknown` track is (`None`: strangers off, or no template).
    fn place_stranger(&self, track: &Track) -> Option<strangers::Placed> {
        let book = self.sink.strangers.as_ref()?;
        let template = track.fused(self.metric == Metric::Cosine)?;
        let (metric, calibration) = (self.metric, self.calibration);
        let score = move |a: &[f32], b: &[f32]| calibration.score(metric.compare(a, b));
        let sighting = Sighting {
            template,
            quality: track.best_quality,
            thumbnail: self.thumbnails.get(&track.id).cloned(),
            camera: self.camera.name.clone(),
            now_ms: facegate_core::clock::unix_ms(self.clocks.realtime()),
        };
        match book.sight(sighting, &score, self.policy.min_similarity_score) {
            Ok(placed) => Some(placed),
            Err(e) => {
                tracing::error!(error = %e, "cannot record the stranger");
                None
            }
        }
    }

    /// One face of the frame, on track `id`.
    #[allow(clippy::too_many_arguments)]
    fn observe(
        &mut self,
        frame: &Frame,
        image: &RgbImage,
        det: &Detection,
        lm: &Landmarks,
        mut id: u64,
        now_ms: u64,
        stages: &mut Stages,
    ) -> Result<(), EngineError> {
        let mode = self.camera.liveness;
        let decide_after = self.policy.decide_after;
        let Some(track) = self.tracker.get_mut(id) else {
            return Ok(());
        };
        // Most frames belong to decided tracks between their once-a-second re-checks: they need
        // nothing, not even the quality score.
        if track.decided && !track.wants_embedding(0.0, decide_after, now_ms) {
            return Ok(());
        }
        let pose = liveness::head_pose(lm);
        let sharp = quality::sharpness(image, &det.bbox);
        let q = quality::quality(&det.bbox, sharp, pose.yaw, pose.pitch);
        let track = self.tracker.get_mut(id).expect("track exists");
        if mode == LivenessMode::Track && !track.decided {
            let points = TRACK_POINTS.iter().map(|&i| lm.get(i)).collect();
            track.add_motion(points, liveness::eye_aspect_ratio_pair(lm));
        }
        if !track.wants_embedding(q, decide_after, now_ms) {
            return self.try_decide(id, frame, now_ms, stages);
        }
        let t = self.clocks.monotonic();
        let template = self.engine.embed_one(image, lm)?;
        stages.embed += self.since(t);
        self.metrics.stage("embed", self.since(t));
        let Some(template) = template else {
            return Ok(());
        };
        let normalise = self.metric == Metric::Cosine;
        let track = self.tracker.get_mut(id).expect("track exists");
        if let Some(fused) = track.fused(normalise) {
            let score = self
                .calibration
                .score(self.metric.compare(&fused, &template));
            if score < SAME_FACE_MIN_SCORE {
                // Another face took this one's place: close the old track, start a new one.
                if let Some((old, new_id)) = self.tracker.split(id, now_ms) {
                    self.finish(old, frame.captured_at, *stages);
                    id = new_id;
                }
            }
        }
        let thumbnails = self.sink.thumbnails
            || self.sink.strangers.is_some()
            || (self.sink.audit.is_some() && self.sink.audit_thumbnails);
        let track = self.tracker.get_mut(id).expect("track exists");
        let is_best = q >= track.best_quality;
        let decided = track.decided;
        track.add_embedding(q, template, now_ms);
        if decided {
            return Ok(());
        }
        if thumbnails && is_best {
            if let Some(jpeg) = liveness_thumbnail(image, lm, self.thumbnail_px) {
                self.thumbnails.insert(id, jpeg);
            }
        }
        if mode != LivenessMode::Off {
            let t = self.clocks.monotonic();
            let face = (det.clone(), lm.clone());
            let verdict = self
                .engine
                .still_liveness(image, &face, &self.liveness_limits)?;
            stages.liveness += self.since(t);
            self.metrics.stage("liveness", self.since(t));
            if let Some(track) = self.tracker.get_mut(id) {
                track
                    .still
                    .add(verdict.is_live, verdict.liveness_score, verdict.code);
            }
        }
        // The fused template changed: search it again.
        let t = self.clocks.monotonic();
        let candidate = self.search(id);
        stages.search += self.since(t);
        self.metrics.stage("search", self.since(t));
        if let Some(track) = self.tracker.get_mut(id) {
            track.candidate = candidate;
        }
        self.try_decide(id, frame, now_ms, stages)
    }

    fn search(&mut self, id: u64) -> Option<Candidate> {
        self.refresh_threshold();
        let normalise = self.metric == Metric::Cosine;
        let fused = self.tracker.get_mut(id)?.fused(normalise)?;
        let min_closeness = self
            .metric
            .closeness(self.calibration.raw_threshold(MIN_CANDIDATE_SCORE));
        match self.store.search(
            &self.camera.collection,
            &fused,
            1,
            min_closeness,
            facegate_core::store::Images::NONE,
        ) {
            Ok((matches, _)) => matches.into_iter().next().map(|m| Candidate {
                person_id: m.person.person_id,
                score: self
                    .calibration
                    .score(self.metric.raw_from_closeness(m.closeness)),
            }),
            Err(StoreError::CollectionNotFound) => {
                if !self.warned_missing_collection {
                    tracing::warn!(camera = %self.camera.name, collection = %self.camera.collection,
                        "the camera's collection does not exist: every face is unknown until it is created");
                    self.warned_missing_collection = true;
                }
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "search failed");
                None
            }
        }
    }

    fn try_decide(
        &mut self,
        id: u64,
        frame: &Frame,
        now_ms: u64,
        stages: &mut Stages,
    ) -> Result<(), EngineError> {
        let policy = self.policy;
        let limits = self.track_limits;
        let Some(track) = self.tracker.get_mut(id) else {
            return Ok(());
        };
        if track.decided {
            return Ok(());
        }
        let decision = decide_track(&policy, &limits, track, now_ms, false);
        if let Some(decision) = decision {
            track.decided = true;
            let snapshot = track.clone();
            self.publish(
                &snapshot,
                decision,
                frame.captured_at,
                frame.captured_wall,
                *stages,
            );
        }
        Ok(())
    }

    fn end_lost_tracks(&mut self, now_ms: u64, captured_at: Instant, stages: Stages) {
        for track in self.tracker.take_lost(now_ms) {
            self.finish(track, captured_at, stages);
        }
        // Tracks waiting past their timeout are decided even while still in view.
        let policy = self.policy;
        let limits = self.track_limits;
        let mut due = Vec::new();
        for track in self.tracker.tracks_mut() {
            if !track.decided && track.age_ms(now_ms) >= policy.timeout_ms {
                if let Some(d) = decide_track(&policy, &limits, track, now_ms, false) {
                    track.decided = true;
                    due.push((track.clone(), d));
                }
            }
        }
        for (track, d) in due {
            self.publish(&track, d, captured_at, self.clocks.realtime(), stages);
        }
    }

    /// A track has ended: decide it with what it has, if it has not decided yet.
    fn finish(&mut self, track: Track, captured_at: Instant, stages: Stages) {
        let thumbnail_key = track.id;
        if !track.decided {
            let now_ms = self.ms(self.clocks.monotonic());
            if let Some(d) = decide_track(&self.policy, &self.track_limits, &track, now_ms, true) {
                self.publish(&track, d, captured_at, self.clocks.realtime(), stages);
            }
        }
        self.thumbnails.remove(&thumbnail_key);
        self.decided.remove(&thumbnail_key);
    }

    fn publish(
        &mut self,
        track: &Track,
        decision: Decision,
        captured_at: Instant,
        captured_wall: std::time::SystemTime,
        stages: Stages,
    ) {
        let kind = decision.kind;
        self.metrics
            .decisions
            .get_or_create(&DecisionLabels {
                camera: self.camera.name.clone(),
                kind: KindLabel {
                    r#type: kind.name().to_owned(),
                },
            })
            .inc();
        // The hold-off is per identity: a person claimed by a match (or by a spoof of them).
        let claimed = track
            .candidate
            .as_ref()
            .filter(|c| c.score >= self.policy.min_similarity_score)
            .map(|c| c.person_id.clone());
        self.decided.insert(track.id, (kind, claimed.clone()));
        if let Some(person) = &claimed {
            if !self
                .hold_off
                .allow(person, self.ms(self.clocks.monotonic()))
            {
                self.metrics.suppressed.get_or_create(&self.labels).inc();
                tracing::info!(camera = %self.camera.name, track = track.id, person = %person,
                    decision = kind.name(), "held off: same person within cameras.hold_off_s");
                return;
            }
        }
        // A stranger gets its persistent id; one the operator ignored is not reported at all.
        let stranger = if kind == DecisionKind::Unknown {
            self.place_stranger(track)
        } else {
            None
        };
        if let Some(s) = stranger.as_ref().filter(|s| s.ignored) {
            self.metrics
                .ignored_strangers
                .get_or_create(&self.labels)
                .inc();
            tracing::info!(camera = %self.camera.name, track = track.id,
                unknown_id = %strangers::id_text(s.id), "ignored stranger: not reported");
            return;
        }
        // The matched person's record; `None` for a person deleted since the search.
        let record = match (&claimed, kind) {
            (Some(pid), DecisionKind::Match) => self
                .store
                .person(&self.camera.collection, pid)
                .ok()
                .map(|(p, _)| p),
            _ => None,
        };
        let door = (!self.camera.door.is_empty()).then(|| self.camera.door.clone());
        // The door opens for a match whose person's access rules allow this door now.
        let access_outcome: Option<(bool, String)> = door.as_ref().map(|d| match kind {
            DecisionKind::Match => match &record {
                Some(p) => match self.sink.access.check(p.access.as_ref(), d, captured_wall) {
                    Ok(()) => (true, kind.name().to_owned()),
                    Err(reason) => (false, reason.to_owned()),
                },
                None => (false, DecisionKind::Unknown.name().to_owned()),
            },
            other => (false, other.name().to_owned()),
        });
        let (person_name, metadata) = match record {
            Some(p) => (Some(p.person_name), p.metadata),
            None => (None, Default::default()),
        };
        let person_id = if kind == DecisionKind::Match {
            claimed.clone()
        } else {
            None
        };
        let mut reasons = decision.reasons.clone();
        if reasons.is_empty() {
            reasons.push(kind.name().to_owned());
        }
        let b = track.bbox;
        let captured_ms = facegate_core::clock::unix_ms(captured_wall);
        let ts = facegate_core::clock::rfc3339(captured_ms);
        let event_id = uuid::Uuid::now_v7().to_string();
        let ms = |s: f64| (s * 1e4).round() as f32 / 10.0;
        let build_started = self.clocks.monotonic();
        let clocks = self.clocks.clone();
        let mut event = FaceEvent {
            event_id: event_id.clone(),
            sequence: 0,
            kind,
            ts: ts.clone(),
            device_id: self.sink.topics.device_id().to_owned(),
            camera: self.camera.name.clone(),
            collection: self.camera.collection.clone(),
            person_id: person_id.clone(),
            person_name: person_name.clone(),
            metadata,
            similarity_score: track
                .candidate
                .as_ref()
                .map(|c| (c.score * 1000.0).round() / 1000.0),
            liveness: LivenessReport {
                verdict: decision.liveness,
                score: (track.still.live > 0).then_some(track.still.best_live_score),
                reasons: decision.liveness_reasons.clone(),
            },
            reasons,
            track_id: track.id,
            frames: track.frames,
            embedded_frames: track.embeddings.len() as u32,
            bbox: EventBox {
                left: b.left.round() as i32,
                top: b.top.round() as i32,
                right: b.right.round() as i32,
                bottom: b.bottom.round() as i32,
            },
            door: door.clone(),
            granted: access_outcome.as_ref().map(|(g, _)| *g),
            access_reason: access_outcome.as_ref().map(|(_, r)| r.clone()),
            latency_ms: Latency {
                queue: ms(stages.queue),
                detect: ms(stages.detect),
                embed: ms(stages.embed),
                liveness: ms(stages.liveness),
                search: ms(stages.search),
                outbox: 0.0,
                total: 0.0,
            },
            thumbnail: self
                .thumbnails
                .get(&track.id)
                .filter(|_| self.sink.thumbnails)
                .map(|j| base64::engine::general_purpose::STANDARD.encode(j)),
            unknown_id: stranger.as_ref().map(|s| strangers::id_text(s.id)),
            sightings: stranger.as_ref().map(|s| s.sightings),
            truncated: false,
        };
        let mut access = door
            .as_ref()
            .zip(access_outcome)
            .map(|(d, (granted, reason))| AccessMessage {
                device_id: self.sink.topics.device_id().to_owned(),
                door: d.clone(),
                granted,
                person_id: person_id.clone(),
                // Names are bounded at the API, but a person enrolled before the bound may
                // have any length: the grant must still fit in a packet.
                person_name: person_name.map(|n| {
                    n.chars()
                        .take(crate::api::extract::MAX_PERSON_NAME_CHARS)
                        .collect()
                }),
                reason,
                event_id: event_id.clone(),
                sequence: 0,
                issued_at: ts.clone(),
                expires_at: facegate_core::clock::rfc3339(
                    captured_ms + self.sink.access.grant_ttl_ms,
                ),
                ts,
                signature: String::new(),
            });
        let max_payload = self.sink.max_payload;
        let event_topic = self.sink.topics.event(&self.camera.name);
        let access_topic = door.as_ref().map(|d| self.sink.topics.access(d));
        let key = &self.sink.access.key;
        let build = |seq: u64,
                     event: &mut FaceEvent,
                     access: &mut Option<AccessMessage>|
         -> Vec<OutboxMessage> {
            event.sequence = seq;
            let now = clocks.monotonic();
            event.latency_ms.outbox =
                ms(now.saturating_duration_since(build_started).as_secs_f64());
            event.latency_ms.total = ms(now.saturating_duration_since(captured_at).as_secs_f64());
            let payload = crate::mqtt::event::encode_within(event, max_payload);
            let mut out = vec![OutboxMessage {
                topic: event_topic.clone(),
                payload,
                retain: false,
            }];
            if let (Some(a), Some(t)) = (access.as_mut(), &access_topic) {
                a.sequence = seq;
                a.sign(key);
                out.push(OutboxMessage {
                    topic: t.clone(),
                    payload: serde_json::to_vec(&*a).unwrap_or_default(),
                    retain: false,
                });
            }
            out
        };
        let published = match &self.sink.outbox {
            Some(outbox) => {
                let t = self.clocks.monotonic();
                match outbox.append(|seq| build(seq, &mut event, &mut access)) {
                    Ok(appended) => {
                        self.metrics.stage("outbox", self.since(t));
                        for key in &appended.keys {
                            self.sink.times.record(*key, captured_at);
                        }
                        self.sink.wake.notify_one();
                        true
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot write the event to the outbox: it is lost");
                        false
                    }
                }
            }
            None => {
                let _ = build(0, &mut event, &mut access);
                false
            }
        };
        if let Some(audit) = &self.sink.audit {
            let thumbnail = self
                .thumbnails
                .get(&track.id)
                .filter(|_| self.sink.audit_thumbnails);
            let t = self.clocks.monotonic();
            let entry = facegate_core::audit::Entry {
                event: serde_json::to_value(&event).unwrap_or_default(),
                access: access.as_ref().and_then(|a| serde_json::to_value(a).ok()),
                thumbnail: thumbnail.cloned(),
                published,
            };
            let now_ms = facegate_core::clock::unix_ms(self.clocks.realtime());
            match audit.append(&entry, now_ms) {
                Ok(_) => self.metrics.stage("audit", self.since(t)),
                Err(e) => tracing::error!(error = %e, event_id = %event.event_id,
                    "cannot write the decision to the event log"),
            }
        }
        // The console's live view: the event as published, less the thumbnail (a keyed
        // `GET /events/{event_id}` fetches it).
        let thumbnail = event.thumbnail.take();
        if let Ok(json) = serde_json::to_string(&event) {
            self.sink.live.send(json);
        }
        event.thumbnail = thumbnail;
        tracing::info!(
            camera = %self.camera.name,
            decision = kind.name(),
            track = track.id,
            person = person_id_or_dash(&event.person_id),
            score = ?event.similarity_score,
            liveness = ?decision.liveness,
            latency_ms = event.latency_ms.total,
            event_id = %event.event_id,
            "decision"
        );
    }
}

fn person_id_or_dash(p: &Option<String>) -> &str {
    p.as_deref().unwrap_or("-")
}

/// JPEG of the aligned face for an event.
fn liveness_thumbnail(image: &RgbImage, lm: &Landmarks, size: u32) -> Option<Vec<u8>> {
    let thumb = facegate_core::engine::align::thumbnail(image, lm, size)?;
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&thumb)
        .ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    //! The worker on a scripted analyser and simulated clocks: no models, no threads, no
    //! sleeps. The store and the outbox are the real LMDB ones, in a temporary folder.

    use std::sync::Mutex;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use facegate_core::clock::SimulatedClocks;
    use facegate_core::config::EmbedderKind;
    use facegate_core::engine::geometry::{BoundingBox, Point};
    use facegate_core::engine::liveness::{LivenessCode, Verdict};
    use facegate_core::store::{Enrolment, FaceStorage, ModelId, StoreOptions};

    use super::*;

    const DIM: usize = 4;
    const ALICE: [f32; DIM] = [1.0, 0.0, 0.0, 0.0];
    const STRANGER: [f32; DIM] = [0.0, 1.0, 0.0, 0.0];

    /// What the camera shows now: one face with this template and still-liveness code, or
    /// nothing.
    #[derive(Clone, Default)]
    struct Scene(Arc<Mutex<Option<Shown>>>);

    /// The template of the face in view and its still-liveness code.
    type Shown = ([f32; DIM], LivenessCode);

    impl Scene {
        fn show(&self, template: [f32; DIM], code: LivenessCode) {
            *self.0.lock().unwrap() = Some((template, code));
        }
        fn clear(&self) {
            *self.0.lock().unwrap() = None;
        }
        fn now(&self) -> Option<Shown> {
            *self.0.lock().unwrap()
        }
    }

    struct ScriptedAnalyzer(Scene);

    fn face() -> (Detection, Landmarks) {
        let bbox = BoundingBox {
            left: 200.0,
            top: 100.0,
            right: 400.0,
            bottom: 300.0,
        };
        let mut points = vec![Point::new(300.0, 200.0); 468];
        // A frontal face: eye corners level, the mouth below them.
        for (i, x, y) in [
            (33, 250.0, 170.0),
            (133, 280.0, 170.0),
            (362, 320.0, 170.0),
            (263, 350.0, 170.0),
            (61, 270.0, 260.0),
            (291, 330.0, 260.0),
        ] {
            points[i] = Point::new(x, y);
        }
        let det = Detection {
            bbox,
            score: 0.95,
            keypoints: [Point::new(300.0, 200.0); 6],
        };
        let lm = Landmarks {
            points,
            depth: vec![0.0; 468],
            presence: 1.0,
        };
        (det, lm)
    }

    impl FaceAnalyzer for ScriptedAnalyzer {
        fn locate(&mut self, _: &RgbImage) -> Result<Vec<(Detection, Landmarks)>, EngineError> {
            Ok(self.0.now().map(|_| face()).into_iter().collect())
        }
        fn embed_one(
            &mut self,
            _: &RgbImage,
            _: &Landmarks,
        ) -> Result<Option<Vec<f32>>, EngineError> {
            Ok(self.0.now().map(|(t, _)| t.to_vec()))
        }
        fn still_liveness(
            &mut self,
            _: &RgbImage,
            _: &(Detection, Landmarks),
            _: &LivenessConfig,
        ) -> Result<Verdict, EngineError> {
            let code = self.0.now().map_or(LivenessCode::FaceNotFound, |(_, c)| c);
            Ok(Verdict {
                is_live: code == LivenessCode::Ok,
                liveness_score: if code == LivenessCode::Ok { 0.97 } else { 0.02 },
                code,
                checks: Vec::new(),
            })
        }
        fn metric(&self) -> Metric {
            Metric::Cosine
        }
        fn calibration(&self) -> Calibration {
            Calibration::for_embedder(EmbedderKind::Arcface512)
        }
    }

    /// The seed of the bench's signing key.
    const KEY_SEED: [u8; 32] = [3; 32];

    /// The access side of a bench: the configuration, Alice's rules and the wall-clock time
    /// the bench starts at (a Friday, 2027-01-15 08:00 UTC, by default).
    struct Doors {
        config: AccessConfig,
        alice: Option<PersonAccess>,
        boot: SystemTime,
    }

    impl Default for Doors {
        fn default() -> Self {
            Self {
                config: AccessConfig::default(),
                alice: None,
                boot: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            }
        }
    }

    struct Bench {
        _dir: tempfile::TempDir,
        scene: Scene,
        clocks: Arc<SimulatedClocks>,
        outbox: Arc<Outbox>,
        strangers: Arc<Strangers>,
        worker: CameraWorker<ScriptedAnalyzer, SimulatedClocks>,
        seq: u64,
    }

    impl Bench {
        fn new() -> Self {
            Self::with_camera(|_| {})
        }

        fn with_camera(configure: impl FnOnce(&mut CameraConfig)) -> Self {
            Self::with(configure, Doors::default())
        }

        fn with(configure: impl FnOnce(&mut CameraConfig), doors: Doors) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let clocks = Arc::new(SimulatedClocks::new(doors.boot));
            let store = Store::open(
                &dir.path().join("store"),
                ModelId {
                    id: "scripted@test".into(),
                    dim: DIM,
                    metric: Metric::Cosine,
                },
                &StoreOptions::default(),
                Arc::new(facegate_core::clock::SystemClock),
            )
            .unwrap();
            store.create_collection("staff").unwrap();
            store
                .enrol(
                    "staff",
                    vec![Enrolment {
                        access: doors.alice,
                        ..Enrolment::one_face(
                            "alice".into(),
                            "Alice".into(),
                            Default::default(),
                            ALICE.to_vec(),
                            None,
                            FaceStorage::NoStorage,
                        )
                    }],
                    None,
                )
                .unwrap();
            let outbox = Arc::new(Outbox::open(&dir.path().join("outbox"), 1000, 16).unwrap());
            let strangers = Arc::new(
                Strangers::open(
                    &dir.path().join("strangers"),
                    strangers::Limits {
                        max_count: 10,
                        max_age_ms: 0,
                        faces_kept: 5,
                    },
                    8,
                    "scripted@test",
                )
                .unwrap(),
            );
            let sink = Arc::new(Sink {
                outbox: Some(outbox.clone()),
                wake: Arc::new(Notify::new()),
                times: Arc::new(PublishTimes::default()),
                topics: Topics::new("facegate", "door1"),
                thumbnails: false,
                max_payload: 64 << 10,
                access: DoorAccess::new(SigningKey::from_bytes(&KEY_SEED), &doors.config),
                audit: Some(Arc::new(
                    EventLog::open(&dir.path().join("events"), 1000, 0, 16).unwrap(),
                )),
                audit_thumbnails: true,
                strangers: Some(strangers.clone()),
                live: Default::default(),
            });
            let mut camera = CameraConfig {
                name: "front".into(),
                collection: "staff".into(),
                door: "main".into(),
                liveness: LivenessMode::Still,
                ..CameraConfig::default()
            };
            configure(&mut camera);
            let scene = Scene::default();
            let worker = CameraWorker::new(
                camera,
                ScriptedAnalyzer(scene.clone()),
                clocks.clone(),
                Arc::new(store),
                sink,
                Arc::new(CameraStatus::new("front", "scripted".into())),
                DaemonMetrics::register(&mut prometheus_client::registry::Registry::default()),
                LivenessConfig::default(),
                160,
            );
            Bench {
                _dir: dir,
                scene,
                clocks,
                outbox,
                strangers,
                worker,
                seq: 0,
            }
        }

        /// One frame at 15 fps.
        fn frame(&mut self) {
            self.clocks.advance(Duration::from_millis(66));
            let image = RgbImage::from_fn(640, 480, |x, y| {
                image::Rgb([if (x / 8 + y / 8) % 2 == 0 { 40 } else { 210 }; 3])
            });
            let frame = Frame {
                image: Arc::new(image),
                seq: self.seq,
                captured_at: self.clocks.monotonic(),
                captured_wall: self.clocks.realtime(),
            };
            self.seq += 1;
            self.worker.process(&frame).unwrap();
        }

        fn frames(&mut self, n: usize) {
            for _ in 0..n {
                self.frame();
            }
        }

        /// No frame for `ms` (the capture side is quiet).
        fn quiet(&mut self, ms: u64) {
            self.clocks.advance(Duration::from_millis(ms));
            self.worker.idle();
        }

        /// (topic, payload) of every message committed to the outbox so far.
        fn messages(&self) -> Vec<(String, serde_json::Value)> {
            self.outbox
                .next_after(None, 1000)
                .unwrap()
                .into_iter()
                .map(|(_, m)| (m.topic, serde_json::from_slice(&m.payload).unwrap()))
                .collect()
        }

        fn events(&self) -> Vec<serde_json::Value> {
            self.messages()
                .into_iter()
                .filter(|(t, _)| t.ends_with("/event"))
                .map(|(_, v)| v)
                .collect()
        }

        fn access_messages(&self) -> Vec<AccessMessage> {
            self.messages()
                .into_iter()
                .filter(|(t, _)| t == "facegate/door1/main/access")
                .map(|(_, v)| serde_json::from_value(v).unwrap())
                .collect()
        }

        fn audit_count(&self) -> usize {
            let log = self.worker.sink.audit.as_ref().unwrap();
            log.query(&Default::default(), 1000, None).unwrap().0.len()
        }

        fn grants(&self) -> Vec<bool> {
            self.messages()
                .into_iter()
                .filter(|(t, _)| t == "facegate/door1/main/access")
                .map(|(_, v)| v["granted"].as_bool().unwrap())
                .collect()
        }
    }

    #[test]
    fn a_live_enrolled_face_opens_the_door_once_and_is_held_off_when_it_comes_back() {
        let mut b = Bench::new();
        b.scene.show(ALICE, LivenessCode::Ok);
        b.frames(30);
        let events = b.events();
        assert_eq!(events.len(), 1, "one decision per track: {events:?}");
        assert_eq!(events[0]["type"], "match");
        assert_eq!(events[0]["person_id"], "alice");
        assert_eq!(events[0]["person_name"], "Alice");
        assert_eq!(events[0]["liveness"]["verdict"], "live");
        let wall: SystemTime = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert!(
            events[0]["ts"].as_str().unwrap().starts_with("2027-01-15"),
            "the event carries the simulated wall clock ({wall:?}): {}",
            events[0]["ts"]
        );
        assert_eq!(b.grants(), [true]);
        // She steps away and comes back within cameras.hold_off_s (10 s): no second grant.
        b.scene.clear();
        b.quiet(1000);
        b.scene.show(ALICE, LivenessCode::Ok);
        b.frames(10);
        assert_eq!(b.grants(), [true], "held off");
        // After the hold-off she is let in again.
        b.scene.clear();
        b.quiet(11_000);
        b.scene.show(ALICE, LivenessCode::Ok);
        b.frames(10);
        assert_eq!(b.grants(), [true, true]);
    }

    #[test]
    fn an_access_message_is_signed_expires_after_the_grant_ttl_and_carries_the_event_sequence() {
        let mut b = Bench::new();
        b.scene.show(STRANGER, LivenessCode::Ok);
        b.frames(10);
        b.scene.clear();
        b.quiet(1000);
        b.scene.show(ALICE, LivenessCode::Ok);
        b.frames(10);
        let (events, access) = (b.events(), b.access_messages());
        assert_eq!(access.len(), 2);
        let key = SigningKey::from_bytes(&KEY_SEED).verifying_key();
        for (e, a) in events.iter().zip(&access) {
            a.verify(&key).expect("signed with the appliance's key");
            assert_eq!(a.device_id, "door1");
            assert_eq!(a.door, "main");
            assert_eq!(e["sequence"], a.sequence, "the event's sequence");
            assert_eq!(e["event_id"], a.event_id.as_str());
            assert_eq!(a.issued_at, e["ts"].as_str().unwrap());
            assert_eq!(a.ts, a.issued_at);
            let issued: jiff::Timestamp = a.issued_at.parse().unwrap();
            let expires: jiff::Timestamp = a.expires_at.parse().unwrap();
            assert_eq!(expires.as_millisecond() - issued.as_millisecond(), 3000);
            assert_eq!(e["granted"], a.granted);
            assert_eq!(e["access_reason"], a.reason.as_str());
        }
        assert!(access[1].sequence > access[0].sequence);
        assert_eq!(
            (access[0].granted, access[0].reason.as_str()),
            (false, "unknown")
        );
        assert_eq!(access[0].person_id, None);
        assert_eq!(
            (access[1].granted, access[1].reason.as_str()),
            (true, "match")
        );
        assert_eq!(access[1].person_id.as_deref(), Some("alice"));
    }

    /// Office hours in Berlin, Monday to Thursday only: the bench's Friday is outside them.
    fn office_mon_thu() -> AccessConfig {
        let office = facegate_core::config::ScheduleConfig {
            time_zone: "Europe/Berlin".into(),
            holidays: vec![],
            days: [("mon-thu".to_string(), "07:00-19:00".to_string())].into(),
        };
        let friday = facegate_core::config::ScheduleConfig {
            time_zone: "Europe/Berlin".into(),
            holidays: vec![],
            days: [("fri".to_string(), "08:00-12:00".to_string())].into(),
        };
        AccessConfig {
            schedules: [
                ("office".to_string(), office),
                ("friday".to_string(), friday),
            ]
            .into(),
            ..AccessConfig::default()
        }
    }

    /// The one access message of Alice walking up to the door.
    fn alice_at_the_door(doors: Doors) -> AccessMessage {
        let mut b = Bench::with(|_| {}, doors);
        b.scene.show(ALICE, LivenessCode::Ok);
        b.frames(10);
        let events = b.events();
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0]["type"], "match",
            "still a match: the event names her"
        );
        assert_eq!(events[0]["person_id"], "alice");
        let mut access = b.access_messages();
        assert_eq!(access.len(), 1);
        let a = access.remove(0);
        assert_eq!(events[0]["granted"], a.granted);
        assert_eq!(events[0]["access_reason"], a.reason.as_str());
        a
    }

    #[test]
    fn a_recognised_person_outside_their_rules_is_refused_with_the_rule_and_still_named() {
        let rules = |access: PersonAccess| Doors {
            config: office_mon_thu(),
            alice: Some(access),
            ..Doors::default()
        };
        for (access, reason) in [
            (
                PersonAccess {
                    blocked: true,
                    ..Default::default()
                },
                "blocked",
            ),
            (
                PersonAccess {
                    valid_until: Some("2027-01-01T00:00:00Z".parse().unwrap()),
                    ..Default::default()
                },
                "expired",
            ),
            (
                PersonAccess {
                    valid_from: Some("2027-02-01T00:00:00Z".parse().unwrap()),
                    ..Default::default()
                },
                "not_yet_valid",
            ),
            (
                PersonAccess {
                    doors: Some(vec!["back".into()]),
                    ..Default::default()
                },
                "door_not_allowed",
            ),
            (
                PersonAccess {
                    schedule: Some("office".into()),
                    ..Default::default()
                },
                "outside_schedule",
            ),
        ] {
            let a = alice_at_the_door(rules(access));
            assert_eq!((a.granted, a.reason.as_str()), (false, reason));
            assert_eq!(a.person_id.as_deref(), Some("alice"), "{reason}");
            a.verify(&SigningKey::from_bytes(&KEY_SEED).verifying_key())
                .unwrap();
        }
        // Friday 09:00 in Berlin is inside her own schedule, at a door she may pass.
        let a = alice_at_the_door(rules(PersonAccess {
            schedule: Some("friday".into()),
            doors: Some(vec!["main".into()]),
            valid_until: Some("2027-02-01T00:00:00Z".parse().unwrap()),
            ..Default::default()
        }));
        assert_eq!((a.granted, a.reason.as_str()), (true, "match"));
    }

    #[test]
    fn a_door_s_default_schedule_applies_and_refuses_while_the_clock_is_not_set() {
        let mut config = office_mon_thu();
        config.doors.insert(
            "main".into(),
            facegate_core::config::DoorAccessConfig {
                schedule: "office".into(),
            },
        );
        let a = alice_at_the_door(Doors {
            config: config.clone(),
            ..Doors::default()
        });
        assert_eq!((a.granted, a.reason.as_str()), (false, "outside_schedule"));
        // A Thursday at 10:00 in Berlin opens.
        let a = alice_at_the_door(Doors {
            config: config.clone(),
            boot: UNIX_EPOCH + Duration::from_secs(1_799_917_200),
            ..Doors::default()
        });
        assert_eq!((a.granted, a.reason.as_str()), (true, "match"));
        // The same weekday and hour in 1970, before NTP set the clock: refused.
        let a = alice_at_the_door(Doors {
            config,
            boot: UNIX_EPOCH + Duration::from_secs(9 * 3600),
            ..Doors::default()
        });
        assert_eq!((a.granted, a.reason.as_str()), (false, "clock_not_set"));
    }

    #[test]
    fn with_a_false_accept_rate_per_attempt_the_threshold_rises_as_the_collection_grows() {
        let mut b = Bench::with_camera(|c| c.max_false_accept_per_attempt = 1e-3);
        // A face that scores 0.75 against Alice: above the configured 0.7.
        let calibration = Calibration::for_embedder(EmbedderKind::Arcface512);
        let c = calibration.raw_threshold(0.75);
        let near_alice = [c, (1.0 - c * c).sqrt(), 0.0, 0.0];
        b.scene.show(near_alice, LivenessCode::Ok);
        b.frames(10);
        assert_eq!(b.grants(), [true]);
        let t = b.worker.status.snapshot().threshold.unwrap();
        assert_eq!(t.templates, 1);
        assert_eq!(t.effective, 0.7, "the configured score is the floor: {t:?}");
        // 2,000 more people (none of them like her): with 2,001 templates a stranger's
        // chance per attempt at 0.75 would be about 2,001 × 10^-5.5 = 0.6 %, so the bar rises
        // above her score and the same face is no longer let in.
        let others = (0..2000)
            .map(|i| {
                Enrolment::one_face(
                    format!("p{i}"),
                    String::new(),
                    Default::default(),
                    vec![0.0, 0.0, 1.0, 0.0],
                    None,
                    FaceStorage::NoStorage,
                )
            })
            .collect();
        b.worker.store.enrol("staff", others, None).unwrap();
        b.scene.clear();
        b.quiet(11_000);
        b.scene.show(near_alice, LivenessCode::Ok);
        b.frames(10);
        assert_eq!(b.grants(), [true, false]);
        let t = b.worker.status.snapshot().threshold.unwrap();
        assert_eq!(t.templates, 2001);
        assert!((t.effective - 0.83).abs() < 0.005, "{t:?}");
        let fmr = t.per_comparison_fmr.unwrap();
        assert!((fmr * 2001.0 - 1e-3).abs() < 1e-6, "{fmr}");
    }

    #[test]
    fn a_stranger_is_reported_unknown_after_enough_embedded_frames_and_denied() {
        let mut b = Bench::new();
        b.scene.show(STRANGER, LivenessCode::Ok);
        b.frame();
        b.frame();
        assert!(
            b.events().is_empty(),
            "two frames are not enough to call a face unknown"
        );
        b.frame();
        let events = b.events();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["type"], "unknown");
        assert!(events[0]["person_id"].is_null());
        assert_eq!(b.grants(), [false]);
    }

    #[test]
    fn a_stranger_who_comes_back_keeps_its_id_and_one_ignored_is_never_reported_again() {
        let mut b = Bench::new();
        let visit = |b: &mut Bench| {
            b.scene.show(STRANGER, LivenessCode::Ok);
            b.frames(5);
            b.scene.clear();
            b.quiet(5_000);
        };
        visit(&mut b);
        visit(&mut b);
        let events = b.events();
        assert_eq!(events.len(), 2, "{events:?}");
        for (e, n) in events.iter().zip([1, 2]) {
            assert_eq!(e["type"], "unknown");
            assert_eq!(e["unknown_id"], "unknown-1");
            assert_eq!(e["sightings"], n);
        }
        // A known face is nobody's stranger.
        b.scene.show(ALICE, LivenessCode::Ok);
        b.frames(5);
        b.scene.clear();
        b.quiet(5_000);
        let events = b.events();
        assert_eq!(events[2]["type"], "match");
        assert!(events[2]["unknown_id"].is_null() && events[2]["sightings"].is_null());
        // Ignored: still recognised and counted, but no event, access message or audit record.
        assert!(b.strangers.ignore(1).unwrap());
        let (messages, records) = (b.messages().len(), b.audit_count());
        visit(&mut b);
        assert_eq!(b.messages().len(), messages);
        assert_eq!(b.audit_count(), records);
        assert_eq!(b.strangers.get(1).unwrap().unwrap().sightings, 3);
    }

    #[test]
    fn a_presentation_attack_on_an_enrolled_face_is_a_spoof_and_never_a_grant() {
        let mut b = Bench::new();
        b.scene.show(ALICE, LivenessCode::FaceNotLive);
        b.frames(10);
        let events = b.events();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["type"], "spoof");
        assert_eq!(b.grants(), [false]);
    }

    #[test]
    fn a_face_that_leaves_before_its_decision_is_decided_when_its_track_is_lost() {
        let mut b = Bench::new();
        b.scene.show(STRANGER, LivenessCode::Ok);
        b.frame();
        b.scene.clear();
        b.quiet(100);
        assert!(
            b.events().is_empty(),
            "not lost yet (cameras.track_lost_s = 0.5)"
        );
        b.quiet(600);
        let events = b.events();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["type"], "unknown");
    }

    #[test]
    fn a_face_whose_liveness_cannot_be_established_is_decided_at_the_timeout_while_in_view() {
        let mut b = Bench::new();
        b.scene.show(ALICE, LivenessCode::FaceAngleTooLarge);
        // 2.9 s of frames: still waiting for liveness evidence.
        b.frames(44);
        assert!(b.events().is_empty(), "{:?}", b.events());
        // cameras.decision_timeout_s = 3: decided with what it has, and not a grant.
        b.frames(3);
        let events = b.events();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["type"], "undetermined");
        assert_eq!(b.grants(), [false]);
    }
}
