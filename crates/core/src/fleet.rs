//! One gallery for a site of many appliances, replicated through the MQTT broker: what a
//! change record is, how it is versioned, signed and checked. No I/O here: the store writes
//! and applies records (`store::replication`), the daemon moves them over MQTT.
//!
//! Each person (and each collection) is a last-writer-wins register. Its version is a hybrid
//! logical clock stamp `(wall_ms, counter, device)`: later than every version the appliance
//! has seen, close to real time, and never equal on two appliances (the device id breaks
//! ties). A record carries the whole state of its person (or a tombstone), so records can be
//! applied in any order, any number of times: the highest version wins everywhere.
//!
//! On the wire a record is one line of header, then the body's JSON:
//!
//! ```text
//! facegate-fleet-v1 <signer device id> <base64 Ed25519 signature>\n
//! {"collection":…,"person_id":…,"version":{…},…}
//! ```
//!
//! The signature covers `facegate-fleet-v1\n` followed by the body bytes (the prefix keeps a
//! fleet signature from ever reading as an access message's, and the other way round).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::access::rules::PersonAccess;
use crate::store::FaceStorage;

/// The first word of a record's header and of the signed bytes.
pub const FORMAT: &str = "facegate-fleet-v1";

/// A register's version: hybrid logical clock time, then the device that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// Milliseconds since the epoch (the writer's clock, or later).
    pub wall_ms: i64,
    /// Orders writes within one millisecond (and writes after seeing a clock ahead of ours).
    pub counter: u32,
    /// The device that made the change.
    pub device: String,
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.wall_ms, self.counter, &self.device).cmp(&(
            other.wall_ms,
            other.counter,
            &other.device,
        ))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The hybrid logical clock's state: the latest time this appliance has issued or seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockState {
    pub wall_ms: i64,
    pub counter: u32,
}

impl ClockState {
    /// The stamp for a local change at `now_ms`: after everything issued or seen.
    pub fn tick(&mut self, now_ms: i64) -> (i64, u32) {
        if now_ms > self.wall_ms {
            *self = ClockState {
                wall_ms: now_ms,
                counter: 0,
            };
        } else {
            self.counter = self.counter.saturating_add(1);
        }
        (self.wall_ms, self.counter)
    }

    /// Take a version seen from another appliance into account, so that the next local
    /// change is later than it (a person edited here after it came from there wins).
    pub fn observe(&mut self, seen: &Version) {
        if (seen.wall_ms, seen.counter) > (self.wall_ms, self.counter) {
            self.wall_ms = seen.wall_ms;
            self.counter = seen.counter;
        }
    }

    /// As kept in the store's meta table: `wall_ms:counter`.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.wall_ms, self.counter)
    }

    pub fn decode(text: &str) -> Option<ClockState> {
        let (wall, counter) = text.split_once(':')?;
        Some(ClockState {
            wall_ms: wall.parse().ok()?,
            counter: counter.parse().ok()?,
        })
    }
}

/// The state one record replicates: a person, a collection, or a tombstone of either.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub collection: String,
    /// `None`: the record is about the collection itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_id: Option<String>,
    pub version: Version,
    /// A tombstone: the person (or collection) was deleted at `version`.
    #[serde(default)]
    pub deleted: bool,
    /// The person's state; present for a person that is not deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<PersonState>,
    /// For a collection created again: when it was last deleted. Persons written before
    /// stay deleted, also on an appliance that never saw the deletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<Version>,
}

/// A person as every appliance of the fleet stores them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonState {
    pub person_name: String,
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<PersonAccess>,
    pub created_at_ms: i64,
    /// The embedding model of the templates (`arcface512@<fingerprint>`): an appliance with
    /// another model refuses the record.
    pub model: String,
    /// Oldest first, as the person's faces are ordered.
    pub faces: Vec<FaceState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaceState {
    /// Base64 of the template's little-endian `f32` values.
    pub template: String,
    pub storage: FaceStorage,
    /// Base64 of the stored thumbnail (with `fleet.thumbnails` and `StoreThumbnails`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl FaceState {
    /// The template's values; `None` unless whole `f32`s of base64.
    pub fn values(&self) -> Option<Vec<f32>> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.template)
            .ok()?;
        if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
            return None;
        }
        Some(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        )
    }

    pub fn encode_values(values_le: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(values_le)
    }
}

/// Why a received record was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("not a facegate fleet record ({0})")]
    Malformed(String),
    #[error("signed by {0:?}, which is not in fleet.trusted_devices")]
    Untrusted(String),
    #[error("the signature of {0:?} does not match the record")]
    BadSignature(String),
}

impl RecordError {
    /// The metric label and /health counter of this refusal.
    pub fn label(&self) -> &'static str {
        match self {
            RecordError::Malformed(_) => "malformed",
            RecordError::Untrusted(_) => "untrusted",
            RecordError::BadSignature(_) => "bad_signature",
        }
    }
}

fn signed_bytes(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FORMAT.len() + 1 + body.len());
    out.extend_from_slice(FORMAT.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// A record as published: header line and body, signed by `device` with `key`.
pub fn seal(record: &Record, device: &str, key: &SigningKey) -> Vec<u8> {
    let body = serde_json::to_vec(record).expect("a record serialises");
    let signature = key.sign(&signed_bytes(&body));
    let mut out = format!(
        "{FORMAT} {device} {}\n",
        base64::engine::general_purpose::STANDARD.encode(signature.to_bytes())
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// A received payload split into signer, signature and body, before anything is trusted.
pub struct Sealed<'a> {
    pub signer: &'a str,
    signature: &'a str,
    pub body: &'a [u8],
}

impl<'a> Sealed<'a> {
    pub fn parse(payload: &'a [u8]) -> Result<Sealed<'a>, RecordError> {
        let malformed = |why: &str| RecordError::Malformed(why.to_owned());
        let end = payload
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| malformed("no header line"))?;
        let header =
            std::str::from_utf8(&payload[..end]).map_err(|_| malformed("header not UTF-8"))?;
        let mut words = header.split(' ');
        if words.next() != Some(FORMAT) {
            return Err(malformed("unknown format"));
        }
        let (Some(signer), Some(signature), None) = (words.next(), words.next(), words.next())
        else {
            return Err(malformed("header is not `format signer signature`"));
        };
        Ok(Sealed {
            signer,
            signature,
            body: &payload[end + 1..],
        })
    }

    /// The record, if the signer is trusted and the signature holds.
    pub fn open(&self, trusted: &Trusted) -> Result<Record, RecordError> {
        let key = trusted
            .get(self.signer)
            .ok_or_else(|| RecordError::Untrusted(self.signer.to_owned()))?;
        let bad = || RecordError::BadSignature(self.signer.to_owned());
        let signature: [u8; 64] = base64::engine::general_purpose::STANDARD
            .decode(self.signature)
            .map_err(|_| bad())?
            .try_into()
            .map_err(|_| bad())?;
        key.verify(&signed_bytes(self.body), &Signature::from_bytes(&signature))
            .map_err(|_| bad())?;
        let record: Record = serde_json::from_slice(self.body)
            .map_err(|e| RecordError::Malformed(format!("body: {e}")))?;
        if record.deleted != record.person.is_none() && record.person_id.is_some() {
            return Err(RecordError::Malformed(
                "a person record carries its state unless it is a tombstone".into(),
            ));
        }
        Ok(record)
    }
}

/// Devices whose records are applied: device id → public key.
pub type Trusted = HashMap<String, VerifyingKey>;

/// A topic level for a collection name or person id: `%`, `/`, `+`, `#` and control
/// characters percent-encoded, so that any id is exactly one level and never a wildcard.
pub fn topic_level(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' | '/' | '+' | '#' | '\u{0}'..='\u{1f}' | '\u{7f}' => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Person records are spread over this many shards (a topic level of two hex digits), so that
/// an appliance can take the broker's retained state one shard at a time: a broker queues the
/// retained messages of one subscription at once and drops what exceeds its per-client queue
/// (mosquitto: `max_inflight_messages` + `max_queued_messages`, 1,020 by default), which a
/// whole gallery would.
pub const SHARDS: usize = 256;

/// The shard of a person: the first byte of SHA-256 of `collection`, NUL, `person_id`.
pub fn shard(collection: &str, person_id: &str) -> u8 {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(collection.as_bytes());
    h.update([0]);
    h.update(person_id.as_bytes());
    h.finalize()[0]
}

/// The retained topic of a record under `base` (`<prefix>/fleet/<site>`):
/// `<base>/person/<collection>/<id>/<shard>` or `<base>/collection/<name>`.
pub fn topic(base: &str, collection: &str, person_id: Option<&str>) -> String {
    match person_id {
        Some(id) => format!(
            "{base}/person/{}/{}/{:02x}",
            topic_level(collection),
            topic_level(id),
            shard(collection, id)
        ),
        None => format!("{base}/collection/{}", topic_level(collection)),
    }
}

/// The subscription filter of one shard's person records.
pub fn shard_filter(base: &str, shard: usize) -> String {
    format!("{base}/person/+/+/{shard:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(wall_ms: i64, counter: u32, device: &str) -> Version {
        Version {
            wall_ms,
            counter,
            device: device.into(),
        }
    }

    fn record() -> Record {
        Record {
            collection: "staff".into(),
            person_id: Some("alice".into()),
            version: v(1_000, 0, "door-a"),
            deleted: false,
            person: Some(PersonState {
                person_name: "Alice".into(),
                metadata: BTreeMap::new(),
                access: None,
                created_at_ms: 5,
                model: "arcface512@x".into(),
                faces: vec![FaceState {
                    template: FaceState::encode_values(&1.5f32.to_le_bytes()),
                    storage: FaceStorage::NoStorage,
                    image: None,
                }],
            }),
            deleted_at: None,
        }
    }

    #[test]
    fn versions_order_by_time_then_counter_then_device() {
        assert!(v(2, 0, "a") > v(1, 9, "z"));
        assert!(v(1, 1, "a") > v(1, 0, "z"));
        assert!(v(1, 0, "b") > v(1, 0, "a"));
        assert_eq!(v(1, 0, "a").cmp(&v(1, 0, "a")), Ordering::Equal);
    }

    #[test]
    fn the_clock_never_goes_back_and_passes_what_it_has_seen() {
        let mut c = ClockState::default();
        assert_eq!(c.tick(100), (100, 0));
        assert_eq!(c.tick(100), (100, 1));
        // The wall clock stepped back: still later than the last stamp.
        assert_eq!(c.tick(50), (100, 2));
        // A peer's clock runs ahead: the next local change is after its record.
        c.observe(&v(500, 7, "b"));
        assert_eq!(c.tick(200), (500, 8));
        assert!(v(500, 8, "a") > v(500, 7, "b"));
        assert_eq!(ClockState::decode(&c.encode()), Some(c));
        assert_eq!(ClockState::decode("x"), None);
    }

    #[test]
    fn a_sealed_record_opens_only_with_its_signers_key() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let payload = seal(&record(), "door-a", &key);
        let trusted: Trusted = [("door-a".to_owned(), key.verifying_key())].into();
        let sealed = Sealed::parse(&payload).unwrap();
        assert_eq!(sealed.signer, "door-a");
        assert_eq!(sealed.open(&trusted).unwrap(), record());
        assert_eq!(
            record().person.unwrap().faces[0].values(),
            Some(vec![1.5f32])
        );

        // Another device's key under the trusted name.
        let forged = seal(&record(), "door-a", &other);
        assert_eq!(
            Sealed::parse(&forged).unwrap().open(&trusted),
            Err(RecordError::BadSignature("door-a".into()))
        );
        // A device nobody trusts.
        let stranger = seal(&record(), "mallory", &other);
        assert_eq!(
            Sealed::parse(&stranger).unwrap().open(&trusted),
            Err(RecordError::Untrusted("mallory".into()))
        );
        // One byte of the body changed.
        let mut altered = payload.clone();
        let at = altered.len() - 3;
        altered[at] ^= 1;
        assert!(matches!(
            Sealed::parse(&altered).unwrap().open(&trusted),
            Err(RecordError::BadSignature(_))
        ));
        for junk in [
            &b""[..],
            b"hello",
            b"facegate-fleet-v1 a\n{}",
            b"other a b\n{}",
        ] {
            assert!(matches!(
                Sealed::parse(junk),
                Err(RecordError::Malformed(_))
            ));
        }
    }

    #[test]
    fn ids_become_one_topic_level_and_never_a_wildcard() {
        assert_eq!(topic_level("a/b+c#d%e"), "a%2Fb%2Bc%23d%25e");
        assert_eq!(topic_level("Zoë"), "Zoë");
        let t = topic("f/fleet/s", "staff", Some("x/y"));
        assert!(t.starts_with("f/fleet/s/person/staff/x%2Fy/"), "{t}");
        // The shard level is the person's, and the shard's filter matches it.
        let shard = shard("staff", "x/y") as usize;
        assert_eq!(
            t,
            shard_filter("f/fleet/s", shard).replace("+/+", "staff/x%2Fy")
        );
        // Persons spread over the shards.
        let used: std::collections::HashSet<u8> = (0..2000)
            .map(|i| super::shard("staff", &format!("p{i}")))
            .collect();
        assert!(used.len() > 240, "{}", used.len());
        assert_eq!(
            topic("f/fleet/s", "staff", None),
            "f/fleet/s/collection/staff"
        );
    }
}
