//! The event and access messages (schema: `event.schema.json` next to this file, and
//! `docs/mqtt.md`). The access message and its signature are facegate-core's
//! (`access::message`), shared with `facegate door`.

use std::collections::BTreeMap;

use serde::Serialize;

use facegate_core::pipeline::decision::{DecisionKind, LivenessState};

/// The JSON Schema of [`FaceEvent`] and [`AccessMessage`], shipped with the source.
pub const SCHEMA: &str = include_str!("event.schema.json");

/// One decision about one face track.
#[derive(Debug, Clone, Serialize)]
pub struct FaceEvent {
    /// UUID v7 (time-ordered); subscribers drop duplicates of at-least-once delivery by it.
    pub event_id: String,
    /// Per-appliance event counter (persistent): a gap means events were dropped from a full
    /// outbox.
    pub sequence: u64,
    #[serde(rename = "type")]
    pub kind: DecisionKind,
    /// Capture time of the frame that decided (RFC 3339, UTC).
    pub ts: String,
    pub device_id: String,
    pub camera: String,
    pub collection: String,
    /// The matched person (`match` only).
    pub person_id: Option<String>,
    pub person_name: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// Score of the best candidate of the track's fused template (null: nobody enrolled).
    pub similarity_score: Option<f32>,
    pub liveness: LivenessReport,
    /// Why the decision was taken.
    pub reasons: Vec<String>,
    pub track_id: u64,
    /// Frames the track had been seen in, and of them embedded.
    pub frames: u32,
    pub embedded_frames: u32,
    #[serde(rename = "box")]
    pub bbox: EventBox,
    /// The door this camera guards (an access message went with the event), or null.
    pub door: Option<String>,
    /// Whether the door was opened (null without a door).
    pub granted: Option<bool>,
    /// The access message's reason (null without a door): `match` when granted; the
    /// decision, or the access rule that refused a recognised person.
    pub access_reason: Option<String>,
    pub latency_ms: Latency,
    /// Base64 JPEG of the aligned face, when `mqtt.event_thumbnail` is on.
    pub thumbnail: Option<String>,
    /// The stranger's persistent id (`unknown` events, `strangers.enabled`): the same
    /// `unknown-<n>` each time the same face comes back.
    pub unknown_id: Option<String>,
    /// How many times that stranger has been seen, this time included.
    pub sightings: Option<u64>,
    /// Something was left out to fit the message in one MQTT packet (see [`encode_within`]).
    pub truncated: bool,
}

/// Characters of the person name kept when even a message without thumbnail and metadata
/// would not fit.
const NAME_KEPT_CHARS: usize = 64;

/// The event as JSON of at most `max` bytes where that can be had: the thumbnail is left out
/// first, then the person's metadata, then the person name is cut; `truncated` says so. An
/// event that still does not fit is returned as it is (the publisher sets it aside).
pub fn encode_within(event: &mut FaceEvent, max: usize) -> Vec<u8> {
    let encode = |e: &FaceEvent| serde_json::to_vec(e).unwrap_or_default();
    let mut payload = encode(event);
    let shrinks: [fn(&mut FaceEvent) -> bool; 3] = [
        |e| e.thumbnail.take().is_some(),
        |e| {
            let had = !e.metadata.is_empty();
            e.metadata.clear();
            had
        },
        |e| match &mut e.person_name {
            Some(n) if n.chars().count() > NAME_KEPT_CHARS => {
                *n = n.chars().take(NAME_KEPT_CHARS).collect();
                true
            }
            _ => false,
        },
    ];
    for shrink in shrinks {
        if payload.len() <= max {
            break;
        }
        if shrink(event) {
            event.truncated = true;
            payload = encode(event);
        }
    }
    payload
}

#[derive(Debug, Clone, Serialize)]
pub struct LivenessReport {
    pub verdict: LivenessState,
    /// Best still-liveness (PAD) score of the track, when checked.
    pub score: Option<f32>,
    pub reasons: Vec<String>,
}

/// The face box in the deciding frame, in pixels (as in the HTTP API).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EventBox {
    pub left: i32,
    pub top: i32,
    pub right: i32,
    pub bottom: i32,
}

/// Milliseconds spent per stage on the frame that decided, from its capture.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Capture to the pipeline taking the frame.
    pub queue: f32,
    /// Detection and landmarks.
    pub detect: f32,
    /// Alignment and embedding (0 when this frame was not embedded).
    pub embed: f32,
    /// Still liveness (geometry and PAD) and track motion.
    pub liveness: f32,
    /// 1:N search of the fused template.
    pub search: f32,
    /// Building the event and access messages (their outbox commit follows).
    pub outbox: f32,
    /// Capture to the messages being written to the outbox. The commit and the PUBLISH come
    /// after; `facegate_capture_to_publish_seconds` measures up to the PUBLISH.
    pub total: f32,
}

pub use facegate_core::access::message::AccessMessage;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FaceEvent {
        FaceEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            sequence: 1,
            kind: DecisionKind::Match,
            ts: "2026-11-25T10:00:00.000Z".into(),
            device_id: "door1".into(),
            camera: "front".into(),
            collection: "staff".into(),
            person_id: Some("alice".into()),
            person_name: Some("Alice".into()),
            metadata: BTreeMap::new(),
            similarity_score: Some(0.93),
            liveness: LivenessReport {
                verdict: LivenessState::Live,
                score: Some(0.9),
                reasons: vec![],
            },
            reasons: vec!["alice scored 0.930 >= 0.7".into()],
            track_id: 4,
            frames: 1,
            embedded_frames: 1,
            bbox: EventBox {
                left: 1,
                top: 2,
                right: 3,
                bottom: 4,
            },
            door: Some("main".into()),
            granted: Some(true),
            access_reason: Some("match".into()),
            latency_ms: Latency::default(),
            thumbnail: None,
            unknown_id: None,
            sightings: None,
            truncated: false,
        }
    }

    #[test]
    fn an_event_too_large_for_a_packet_drops_thumbnail_then_metadata_then_cuts_the_name() {
        let mut e = sample();
        e.thumbnail = Some("T".repeat(5000));
        e.metadata = (0..64)
            .map(|i| (format!("k{i}"), "v".repeat(100)))
            .collect();
        e.person_name = Some("N".repeat(256));
        let whole = serde_json::to_vec(&e).unwrap().len();
        let mut fits = e.clone();
        assert_eq!(encode_within(&mut fits, whole).len(), whole);
        assert!(!fits.truncated, "nothing is cut from an event that fits");

        let mut a = e.clone();
        let p = encode_within(&mut a, whole - 1000);
        assert!(p.len() <= whole - 1000 && a.thumbnail.is_none() && a.metadata.len() == 64);
        assert!(a.truncated);

        let mut bare = e.clone();
        bare.thumbnail = None;
        bare.metadata.clear();
        let max = serde_json::to_vec(&bare).unwrap().len() - 10;
        let mut b = e.clone();
        let p = encode_within(&mut b, max);
        assert!(p.len() <= max, "{} > {max}", p.len());
        assert!(b.metadata.is_empty());
        assert_eq!(b.person_name.as_ref().unwrap().chars().count(), 64);
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(v["truncated"], true);
        assert_eq!(v["person_id"], "alice", "the id is never cut");
    }

    /// Every property the schema requires is in the serialised message, and the message has
    /// no property the schema does not describe.
    fn conforms(value: &serde_json::Value, schema: &serde_json::Value) {
        let props = schema["properties"].as_object().unwrap();
        for req in schema["required"].as_array().unwrap() {
            assert!(value.get(req.as_str().unwrap()).is_some(), "missing {req}");
        }
        for key in value.as_object().unwrap().keys() {
            assert!(props.contains_key(key), "{key} is not in the schema");
        }
    }

    #[test]
    fn events_and_access_messages_match_the_published_schema() {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        let event = serde_json::to_value(sample()).unwrap();
        conforms(&event, &schema["$defs"]["event"]);
        conforms(
            &event["latency_ms"],
            &schema["$defs"]["event"]["properties"]["latency_ms"],
        );
        conforms(
            &event["liveness"],
            &schema["$defs"]["event"]["properties"]["liveness"],
        );
        let mut message = AccessMessage {
            device_id: "door1".into(),
            door: "main".into(),
            granted: true,
            person_id: Some("alice".into()),
            person_name: Some("Alice".into()),
            reason: "match".into(),
            event_id: uuid::Uuid::now_v7().to_string(),
            sequence: 1,
            issued_at: "2026-11-25T10:00:00.000Z".into(),
            expires_at: "2026-11-25T10:00:03.000Z".into(),
            ts: "2026-11-25T10:00:00.000Z".into(),
            signature: String::new(),
        };
        message.sign(&ed25519_dalek::SigningKey::from_bytes(&[1; 32]));
        let access = serde_json::to_value(&message).unwrap();
        conforms(&access, &schema["$defs"]["access"]);
        assert_eq!(event["type"], "match");
        assert_eq!(event["liveness"]["verdict"], "live");
    }
}
