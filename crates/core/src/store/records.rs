//! What the store keeps, and how keys and templates are laid out in LMDB.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the on-disk layout; a store written by another version is refused.
pub const SCHEMA_VERSION: u32 = 1;

/// How a template is encoded: version byte, model-id length, model id, then `f32` LE values.
const TEMPLATE_FORMAT: u8 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CollectionRecord {
    pub name: String,
    pub num_persons: u64,
    pub created_at_ms: i64,
}

/// What is kept of the enrolment photo (`face_storage_type`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum FaceStorage {
    /// Nothing but the template.
    NoStorage,
    /// The aligned face crop as a JPEG.
    #[default]
    StoreThumbnails,
    /// The posted image bytes as they came.
    StoreFullImage,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PersonRecord {
    pub person_id: String,
    pub person_name: String,
    pub metadata: BTreeMap<String, String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub num_faces: u32,
    pub storage: FaceStorage,
}

/// The key of everything stored per person: collection-name length (one byte; names are at
/// most 64 bytes), the name, then the person id. All keys of a collection share a prefix, so
/// deleting or listing a collection is one range.
pub fn person_key(collection: &str, person_id: &str) -> Vec<u8> {
    let mut key = collection_prefix(collection);
    key.extend_from_slice(person_id.as_bytes());
    key
}

pub fn collection_prefix(collection: &str) -> Vec<u8> {
    debug_assert!(collection.len() <= u8::MAX as usize);
    let mut key = Vec::with_capacity(1 + collection.len() + 16);
    key.push(collection.len() as u8);
    key.extend_from_slice(collection.as_bytes());
    key
}

/// Split a person key into collection and person id.
pub fn split_person_key(key: &[u8]) -> Option<(&str, &str)> {
    let (&len, rest) = key.split_first()?;
    let len = len as usize;
    if rest.len() < len {
        return None;
    }
    let (c, p) = rest.split_at(len);
    Some((std::str::from_utf8(c).ok()?, std::str::from_utf8(p).ok()?))
}

pub fn encode_template(model: &str, values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + model.len() + 4 * values.len());
    out.push(TEMPLATE_FORMAT);
    out.push(model.len() as u8);
    out.extend_from_slice(model.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// The model id and the values of an encoded template.
pub fn decode_template(bytes: &[u8]) -> Option<(&str, Vec<f32>)> {
    let (model, values) = template_parts(bytes)?;
    Some((
        model,
        values
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
    ))
}

/// The model id and the raw little-endian values, without copying.
pub fn template_parts(bytes: &[u8]) -> Option<(&str, &[u8])> {
    if bytes.len() < 2 || bytes[0] != TEMPLATE_FORMAT {
        return None;
    }
    let len = bytes[1] as usize;
    let model = std::str::from_utf8(bytes.get(2..2 + len)?).ok()?;
    let values = &bytes[2 + len..];
    values.len().is_multiple_of(4).then_some((model, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_keys_round_trip_and_share_the_collection_prefix() {
        let k = person_key("staff", "p\u{0}1");
        assert!(k.starts_with(&collection_prefix("staff")));
        assert_eq!(split_person_key(&k), Some(("staff", "p\u{0}1")));
        // "staff" and "staff2" must not share a prefix, or deleting one would touch the other.
        assert!(!person_key("staff2", "x").starts_with(&collection_prefix("staff")));
    }

    #[test]
    fn templates_round_trip_with_their_model_id() {
        let t = encode_template("arcface512@abc", &[0.5, -1.25]);
        assert_eq!(
            decode_template(&t),
            Some(("arcface512@abc", vec![0.5, -1.25]))
        );
        assert_eq!(decode_template(&[9, 0]), None);
    }
}
