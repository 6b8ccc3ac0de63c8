//! What a door controller does with an access message before it touches the relay: verify
//! the signature with the sending device's trusted key, check the door, refuse a sequence it
//! has seen (replays, and old messages delivered late or out of order), and refuse a message
//! past its `expires_at` by the controller's own clock. Pure (sans-IO): the payload, the
//! clock reading and the sequence state are arguments; `facegate door` does the MQTT, the
//! state file and the relay around it.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::message::AccessMessage;

/// Whom and what a controller trusts.
#[derive(Debug, Clone)]
pub struct Guard {
    /// The door this controller drives.
    pub door: String,
    /// Public keys by device id.
    pub trusted: BTreeMap<String, VerifyingKey>,
    /// How far the appliance's clock may be from this one's, in milliseconds: a message is
    /// accepted up to this long after its `expires_at`, and refused when issued more than
    /// this ahead of now.
    pub max_skew_ms: i64,
}

/// The last sequence accepted from each device (persisted by the controller).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequences(pub BTreeMap<String, u64>);

/// A verified message the controller acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A fresh grant: open the door.
    Open(AccessMessage),
    /// A fresh, genuine denial: keep the door shut (the appliance's reason is in the message).
    Denied(AccessMessage),
}

/// Why a message was refused without acting on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("not an access message: {0}")]
    Malformed(String),
    #[error("device {0:?} is not trusted (door.trusted_keys)")]
    UntrustedDevice(String),
    #[error("the signature does not verify with the key of device {0:?}")]
    BadSignature(String),
    #[error("the message is for door {0:?}")]
    WrongDoor(String),
    #[error(
        "sequence {sequence} is not above {last}, the last accepted from this device (a replay \
         or an older message; if the appliance's state directory was restored or reset, delete \
         this controller's state file)"
    )]
    Replayed { sequence: u64, last: u64 },
    #[error("expired at {expires_at} (now {now})")]
    Expired { expires_at: String, now: String },
    #[error("issued at {issued_at}, ahead of this clock ({now}) by more than the allowed skew")]
    IssuedInFuture { issued_at: String, now: String },
    /// The controller could not make the new sequence durable, so it does not act (acting
    /// would let the same message act again after a restart).
    #[error("the controller cannot save its sequence state: {0}")]
    StateNotSaved(String),
}

impl Rejection {
    /// The reason as the state topic names it.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Malformed(_) => "malformed",
            Rejection::UntrustedDevice(_) => "untrusted_device",
            Rejection::BadSignature(_) => "bad_signature",
            Rejection::WrongDoor(_) => "wrong_door",
            Rejection::Replayed { .. } => "replayed",
            Rejection::Expired { .. } => "expired",
            Rejection::IssuedInFuture { .. } => "issued_in_future",
            Rejection::StateNotSaved(_) => "state_not_saved",
        }
    }
}

impl Guard {
    /// Judge one payload at `now`. A genuine message for this door whose sequence is new
    /// advances `sequences` (even when it has expired: anything older is older still), so the
    /// caller persists `sequences` when it changed, before acting.
    pub fn judge(
        &self,
        payload: &[u8],
        now: Timestamp,
        sequences: &mut Sequences,
    ) -> Result<Verdict, Rejection> {
        let m: AccessMessage =
            serde_json::from_slice(payload).map_err(|e| Rejection::Malformed(e.to_string()))?;
        let key = self
            .trusted
            .get(&m.device_id)
            .ok_or_else(|| Rejection::UntrustedDevice(m.device_id.clone()))?;
        m.verify(key)
            .map_err(|_| Rejection::BadSignature(m.device_id.clone()))?;
        if m.door != self.door {
            return Err(Rejection::WrongDoor(m.door));
        }
        let last = sequences.0.get(&m.device_id).copied().unwrap_or(0);
        if m.sequence <= last {
            return Err(Rejection::Replayed {
                sequence: m.sequence,
                last,
            });
        }
        sequences.0.insert(m.device_id.clone(), m.sequence);
        let at = |text: &str| {
            text.parse::<Timestamp>()
                .map_err(|_| Rejection::Malformed(format!("{text:?} is not an RFC 3339 time")))
        };
        let (issued, expires) = (at(&m.issued_at)?, at(&m.expires_at)?);
        let skew = jiff::SignedDuration::from_millis(self.max_skew_ms);
        let out_of_range = || Rejection::Malformed("a time out of range".into());
        let (expires_late, issued_early) = (
            expires.checked_add(skew).map_err(|_| out_of_range())?,
            issued.checked_sub(skew).map_err(|_| out_of_range())?,
        );
        if now > expires_late {
            return Err(Rejection::Expired {
                expires_at: m.expires_at,
                now: now.to_string(),
            });
        }
        if issued_early > now {
            return Err(Rejection::IssuedInFuture {
                issued_at: m.issued_at,
                now: now.to_string(),
            });
        }
        Ok(if m.granted {
            Verdict::Open(m)
        } else {
            Verdict::Denied(m)
        })
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;

    const ISSUED: &str = "2026-12-01T08:30:00.000Z";

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[5; 32])
    }

    fn guard() -> Guard {
        Guard {
            door: "main".into(),
            trusted: [("gate".to_string(), key().verifying_key())].into(),
            max_skew_ms: 2000,
        }
    }

    fn grant(sequence: u64) -> AccessMessage {
        let mut m = AccessMessage {
            device_id: "gate".into(),
            door: "main".into(),
            granted: true,
            person_id: Some("alice".into()),
            person_name: Some("Alice".into()),
            reason: "match".into(),
            event_id: format!("e{sequence}"),
            sequence,
            issued_at: ISSUED.into(),
            expires_at: "2026-12-01T08:30:03.000Z".into(),
            ts: ISSUED.into(),
            signature: String::new(),
        };
        m.sign(&key());
        m
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn judge(m: &AccessMessage, now: &str, seq: &mut Sequences) -> Result<Verdict, Rejection> {
        guard().judge(&serde_json::to_vec(m).unwrap(), at(now), seq)
    }

    #[test]
    fn a_fresh_signed_grant_opens_and_a_fresh_denial_does_not() {
        let mut seq = Sequences::default();
        let m = grant(7);
        assert_eq!(
            judge(&m, "2026-12-01T08:30:00.400Z", &mut seq),
            Ok(Verdict::Open(m))
        );
        assert_eq!(seq.0["gate"], 7);
        let mut d = grant(8);
        d.granted = false;
        d.reason = "outside_schedule".into();
        d.sign(&key());
        assert_eq!(
            judge(&d, "2026-12-01T08:30:01Z", &mut seq),
            Ok(Verdict::Denied(d))
        );
    }

    #[test]
    fn forged_messages_are_refused_whatever_was_changed() {
        let mut seq = Sequences::default();
        let now = "2026-12-01T08:30:01Z";
        let mut other_key = grant(1);
        other_key.sign(&SigningKey::from_bytes(&[6; 32]));
        assert_eq!(
            judge(&other_key, now, &mut seq).unwrap_err().reason(),
            "bad_signature"
        );
        let mut altered = grant(2);
        altered.person_id = Some("mallory".into());
        assert_eq!(
            judge(&altered, now, &mut seq).unwrap_err().reason(),
            "bad_signature"
        );
        let mut later = grant(3);
        later.expires_at = "2026-12-31T00:00:00.000Z".into();
        assert_eq!(
            judge(&later, now, &mut seq).unwrap_err().reason(),
            "bad_signature"
        );
        let mut stranger = grant(4);
        stranger.device_id = "evil".into();
        stranger.sign(&SigningKey::from_bytes(&[6; 32]));
        assert_eq!(
            judge(&stranger, now, &mut seq).unwrap_err().reason(),
            "untrusted_device"
        );
        assert_eq!(
            guard()
                .judge(b"{\"granted\": true}", at(now), &mut seq)
                .unwrap_err()
                .reason(),
            "malformed"
        );
        assert!(seq.0.is_empty(), "nothing forged moves the sequence");
    }

    #[test]
    fn replayed_and_reordered_messages_are_refused() {
        let mut seq = Sequences::default();
        let now = "2026-12-01T08:30:01Z";
        assert!(judge(&grant(10), now, &mut seq).is_ok());
        assert_eq!(
            judge(&grant(10), now, &mut seq),
            Err(Rejection::Replayed {
                sequence: 10,
                last: 10
            })
        );
        assert_eq!(
            judge(&grant(9), now, &mut seq).unwrap_err().reason(),
            "replayed",
            "an older message delivered late"
        );
        assert!(judge(&grant(12), now, &mut seq).is_ok());
    }

    #[test]
    fn a_message_is_refused_after_it_expires_allowing_for_skew_and_when_from_the_future() {
        let m = grant(1);
        let mut seq = Sequences::default();
        assert!(judge(&m, "2026-12-01T08:30:04.900Z", &mut seq).is_ok());
        let mut seq = Sequences::default();
        assert_eq!(
            judge(&m, "2026-12-01T08:30:05.001Z", &mut seq)
                .unwrap_err()
                .reason(),
            "expired"
        );
        assert_eq!(
            seq.0["gate"], 1,
            "an expired genuine message still moves the sequence"
        );
        let mut seq = Sequences::default();
        assert_eq!(
            judge(&m, "2026-12-01T08:29:57.000Z", &mut seq)
                .unwrap_err()
                .reason(),
            "issued_in_future"
        );
    }

    #[test]
    fn a_message_for_another_door_is_refused() {
        let mut m = grant(1);
        m.door = "back".into();
        m.sign(&key());
        let mut seq = Sequences::default();
        assert_eq!(
            judge(&m, "2026-12-01T08:30:01Z", &mut seq)
                .unwrap_err()
                .reason(),
            "wrong_door"
        );
        assert!(seq.0.is_empty());
    }
}
