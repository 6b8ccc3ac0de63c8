//! The signed access message: what the appliance tells a door controller, and how the
//! controller knows the appliance said it.
//!
//! The signature is Ed25519 over a canonical encoding of every field but the signature
//! itself, so that a controller written in any language verifies the fields it reads without
//! re-serialising JSON (docs/access.md and the README give the encoding and a test vector):
//!
//! ```text
//! facegate-access-v1\n
//! <field>:<byte length>:<value>\n     for each field, in CANONICAL_FIELDS order
//! <field>:-\n                         for a null field
//! ```
//!
//! Strings are their UTF-8 bytes, `granted` is `true` or `false`, `sequence` is decimal.

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The first line of the canonical encoding: the format and its version.
pub const CANONICAL_HEADER: &str = "facegate-access-v1";

/// The fields covered by the signature, in the order of the canonical encoding.
pub const CANONICAL_FIELDS: [&str; 11] = [
    "device_id",
    "door",
    "granted",
    "person_id",
    "person_name",
    "reason",
    "event_id",
    "sequence",
    "issued_at",
    "expires_at",
    "ts",
];

/// A grant or denial for one door (`<prefix>/<device_id>/<door>/access`).
///
/// Fields a later version adds are not covered by this version's signature: a controller
/// reads only these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessMessage {
    /// The appliance that decided (its key signs the message).
    pub device_id: String,
    pub door: String,
    pub granted: bool,
    /// The recognised person, also when refused by the access rules; null for a stranger.
    pub person_id: Option<String>,
    pub person_name: Option<String>,
    /// `match` when granted; otherwise the decision (`unknown`, `spoof`, `undetermined`) or
    /// the rule that refused a recognised person (`blocked`, `not_yet_valid`, `expired`,
    /// `door_not_allowed`, `outside_schedule`, `unknown_schedule`, `clock_not_set`).
    pub reason: String,
    /// The event this message goes with.
    pub event_id: String,
    /// Strictly increasing per appliance, persisted across restarts (the event's sequence).
    pub sequence: u64,
    /// Capture time of the deciding frame (RFC 3339, UTC, milliseconds).
    pub issued_at: String,
    /// `issued_at` + `access.grant_ttl_s`: a controller ignores the message after it.
    pub expires_at: String,
    /// The same instant as `issued_at` (the field of earlier versions).
    pub ts: String,
    /// Base64 (standard, padded) Ed25519 signature of [`AccessMessage::canonical`].
    pub signature: String,
}

/// Why a message's signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature is not base64 of 64 bytes")]
    Malformed,
    #[error("the signature does not match the message and the device's key")]
    Mismatch,
}

impl AccessMessage {
    /// The bytes the signature covers.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(CANONICAL_HEADER.as_bytes());
        out.push(b'\n');
        let sequence = self.sequence.to_string();
        let values: [Option<&str>; 11] = [
            Some(&self.device_id),
            Some(&self.door),
            Some(if self.granted { "true" } else { "false" }),
            self.person_id.as_deref(),
            self.person_name.as_deref(),
            Some(&self.reason),
            Some(&self.event_id),
            Some(&sequence),
            Some(&self.issued_at),
            Some(&self.expires_at),
            Some(&self.ts),
        ];
        for (name, value) in CANONICAL_FIELDS.iter().zip(values) {
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            match value {
                Some(v) => {
                    out.extend_from_slice(v.len().to_string().as_bytes());
                    out.push(b':');
                    out.extend_from_slice(v.as_bytes());
                }
                None => out.push(b'-'),
            }
            out.push(b'\n');
        }
        out
    }

    /// Set `signature` from the other fields.
    pub fn sign(&mut self, key: &SigningKey) {
        let signature = key.sign(&self.canonical());
        self.signature = base64::engine::general_purpose::STANDARD.encode(signature.to_bytes());
    }

    /// Whether `key` signed exactly these fields.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), SignatureError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.signature)
            .map_err(|_| SignatureError::Malformed)?;
        let bytes: [u8; 64] = bytes.try_into().map_err(|_| SignatureError::Malformed)?;
        key.verify(&self.canonical(), &Signature::from_bytes(&bytes))
            .map_err(|_| SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::device_key::public_key_text;

    /// The README's test vector: key seed 0x00..0x1f.
    pub(crate) fn vector() -> (SigningKey, AccessMessage) {
        let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
        let message = AccessMessage {
            device_id: "door-cam-1".into(),
            door: "main".into(),
            granted: true,
            person_id: Some("alice".into()),
            person_name: Some("Alice Liddell".into()),
            reason: "match".into(),
            event_id: "01937b2e-5c3a-7000-8000-000000000001".into(),
            sequence: 42,
            issued_at: "2026-12-01T08:30:00.000Z".into(),
            expires_at: "2026-12-01T08:30:03.000Z".into(),
            ts: "2026-12-01T08:30:00.000Z".into(),
            signature: String::new(),
        };
        (SigningKey::from_bytes(&seed), message)
    }

    const VECTOR_CANONICAL: &str = "facegate-access-v1\n\
        device_id:10:door-cam-1\n\
        door:4:main\n\
        granted:4:true\n\
        person_id:5:alice\n\
        person_name:13:Alice Liddell\n\
        reason:5:match\n\
        event_id:36:01937b2e-5c3a-7000-8000-000000000001\n\
        sequence:2:42\n\
        issued_at:24:2026-12-01T08:30:00.000Z\n\
        expires_at:24:2026-12-01T08:30:03.000Z\n\
        ts:24:2026-12-01T08:30:00.000Z\n";
    const VECTOR_PUBLIC_KEY: &str = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";
    const VECTOR_SIGNATURE: &str =
        "5CVM28GOIQ+6ifWyyta0utdK+4iVr8o/zhUHEJzvoJPtd1d09VFEx8FQwaIhe+lWmNBdJqhxhl8JoOmbnN/JAQ==";

    #[test]
    fn the_canonical_encoding_and_signature_are_the_documented_test_vector() {
        let (key, mut m) = vector();
        assert_eq!(String::from_utf8(m.canonical()).unwrap(), VECTOR_CANONICAL);
        m.sign(&key);
        assert_eq!(public_key_text(&key.verifying_key()), VECTOR_PUBLIC_KEY);
        assert_eq!(m.signature, VECTOR_SIGNATURE);
        let readme = include_str!("../../../../README.md");
        for value in [VECTOR_PUBLIC_KEY, VECTOR_SIGNATURE] {
            assert!(readme.contains(value), "the README shows {value}");
        }
    }

    #[test]
    fn a_signed_message_verifies_and_any_altered_field_does_not() {
        let (key, mut m) = vector();
        m.sign(&key);
        assert_eq!(m.verify(&key.verifying_key()), Ok(()));
        let alterations: [fn(&mut AccessMessage); 11] = [
            |m| m.device_id.push('x'),
            |m| m.door = "back".into(),
            |m| m.granted = false,
            |m| m.person_id = Some("mallory".into()),
            |m| m.person_name = None,
            |m| m.reason = "unknown".into(),
            |m| m.event_id.push('0'),
            |m| m.sequence += 1,
            |m| m.issued_at = "2026-12-01T08:31:00.000Z".into(),
            |m| m.expires_at = "2026-12-01T09:30:03.000Z".into(),
            |m| m.ts = "2026-12-01T08:31:00.000Z".into(),
        ];
        for (n, alter) in alterations.iter().enumerate() {
            let mut forged = m.clone();
            alter(&mut forged);
            assert_eq!(
                forged.verify(&key.verifying_key()),
                Err(SignatureError::Mismatch),
                "altering {} must break the signature",
                CANONICAL_FIELDS[n]
            );
        }
        let other = SigningKey::from_bytes(&[9; 32]);
        assert_eq!(
            m.verify(&other.verifying_key()),
            Err(SignatureError::Mismatch)
        );
        let mut garbled = m.clone();
        garbled.signature = "not base64!".into();
        assert_eq!(
            garbled.verify(&key.verifying_key()),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn a_null_field_is_told_apart_from_an_empty_one() {
        let (_, mut m) = vector();
        m.person_id = None;
        let null = m.canonical();
        m.person_id = Some(String::new());
        assert_ne!(null, m.canonical());
        assert!(String::from_utf8(null).unwrap().contains("\nperson_id:-\n"));
    }

    #[test]
    fn a_message_round_trips_through_json_and_a_missing_field_is_an_error() {
        let (key, mut m) = vector();
        m.sign(&key);
        let json = serde_json::to_string(&m).unwrap();
        let back: AccessMessage = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v.as_object_mut().unwrap().remove("expires_at");
        assert!(serde_json::from_value::<AccessMessage>(v).is_err());
    }
}
